"""The runtime state file: the fake runtime's journal, its replay, compaction and torn tails."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from emulator import runtime_state
from emulator.profiles import DEFAULT
from emulator.runtime_state import read_state
from node.runtime.fake import FakeRuntime


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def runtime(path: Path, clock: Clock | None = None) -> FakeRuntime:
    clock = clock or Clock()
    return FakeRuntime(DEFAULT, clock=clock, wall=lambda: 1e9 + clock.t, state_path=str(path))


def pod(i: int, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"u{i}", "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}


def start_pod(rt: FakeRuntime, i: int, annotations: dict | None = None) -> tuple[str, str]:
    p = pod(i, annotations)
    sid = rt.run_pod_sandbox(p, f"127.64.0.{i + 2}")
    cid = rt.create_container(sid, p, p["spec"]["containers"][0], 0)
    rt.start_container(cid)
    return sid, cid


def live(rt: FakeRuntime) -> dict:
    return {"sandboxes": {s.id: asdict(s) for s in rt.state.sandboxes.values()},
            "containers": {c.status.id: {"status": asdict(c.status), "behaviour": asdict(c.behaviour),
                                         "start_due": c.start_due, "started": c.started,
                                         "exit_due": c.exit_due, "exit_code_due": c.exit_code_due,
                                         "ready_due": c.ready_due}
                           for c in rt.state.containers.values()}}


def on_disk(path: Path) -> dict:
    doc = read_state(path)
    return {"sandboxes": {s["id"]: s for s in doc["sandboxes"]},
            "containers": {c["status"]["id"]: c for c in doc["containers"]}}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_every_change_is_on_disk_when_the_call_returns(tmp_path: Path):
    path = tmp_path / "var/lib/kemu/runtime.json"
    clock = Clock()
    rt = runtime(path, clock)
    sid0, cid0 = start_pod(rt, 0, {"kemu.io/run-duration": "5s"})
    assert on_disk(path) == live(rt)
    sid1, cid1 = start_pod(rt, 1)
    rt.stop_container(cid1, 30)
    assert on_disk(path) == live(rt)
    clock.t += 5
    assert rt.tick(clock.t) == {"u0"}          # exited by itself: saved by tick
    assert on_disk(path) == live(rt)
    rt.remove_pod_sandbox(sid1)
    rt.remove_container(cid0)
    assert on_disk(path) == live(rt)
    assert set(on_disk(path)["sandboxes"]) == {sid0} and not on_disk(path)["containers"]
    again = runtime(path, clock)
    assert live(again) == live(rt)


def test_a_change_appends_only_what_changed(tmp_path: Path):
    """Starting a pod on a node that already runs 50 appends three records, not 150."""
    path = tmp_path / "runtime.json"
    rt = runtime(path)
    for i in range(50):
        start_pod(rt, i)
    before = path.stat().st_size
    n = lines(path)
    start_pod(rt, 50)
    assert lines(path) == n + 3
    assert path.stat().st_size - before < 3 * 2048


def test_the_journal_is_compacted_and_stays_bounded(tmp_path: Path):
    path = tmp_path / "runtime.json"
    rt = runtime(path)
    sid, cid = start_pod(rt, 0)
    for _ in range(2000):      # churn one container: the journal must not grow with the history
        rt.stop_container(cid, 0)
        rt.remove_container(cid)
        cid = rt.create_container(sid, pod(0), {"name": "app", "image": "busybox"}, 0)
        rt.start_container(cid)
    assert lines(path) <= 1 + runtime_state.COMPACT_SLACK + runtime_state.COMPACT_FACTOR * 2 + 4
    assert on_disk(path) == live(rt)
    assert not (tmp_path / "runtime.json.tmp").exists()


def test_a_torn_last_record_is_ignored_and_what_came_before_stands(tmp_path: Path):
    path = tmp_path / "runtime.json"
    rt = runtime(path)
    start_pod(rt, 0)
    want = live(rt)
    with open(path, "a") as f:
        f.write('{"container": {"status": {"id": "tor')   # killed mid-write
    assert on_disk(path) == want
    assert live(runtime(path)) == want


def test_the_whole_document_format_still_reads(tmp_path: Path):
    """Version 1 (the process runtime's, and the fake runtime's before the journal)."""
    path = tmp_path / "runtime.json"
    doc = {"version": 1, "sandboxes": [{"id": "sb1", "name": "web-0"}], "containers": []}
    path.write_text(json.dumps(doc))
    assert read_state(path) == doc


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"version": 2}\n[1]\n',
                                  '{"version": 2}\n{"sandbox": {"name": "no-id"}}\n',
                                  '{"version": 2}\n{"container": 5}\n'])
def test_a_file_in_neither_format_is_a_value_error_and_the_runtime_starts_empty(tmp_path: Path, text: str):
    path = tmp_path / "runtime.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        read_state(path)
    rt = runtime(path)
    assert not rt.list_pod_sandboxes() and not rt.list_containers()
    start_pod(rt, 0)                       # and its first change replaces the file with a journal
    assert on_disk(path) == live(rt)


def test_a_malformed_journal_record_is_named_by_its_line(tmp_path: Path):
    path = tmp_path / "runtime.json"
    path.write_text('{"version": 2}\n{"sandbox": {"id": "a"}}\n{"container": {"status": {}}}\n')
    with pytest.raises(ValueError, match="journal line 3 is not a sandbox, container or removal record"):
        read_state(path)


def test_appends_follow_each_rewrite_and_survive_a_close(tmp_path: Path):
    """The journal stays open between rewrites: appends after a compaction land in the new
    file, not the replaced one; after ``close`` (a stopped node) an append opens it again."""
    path = tmp_path / "runtime.json"
    rt = runtime(path)
    for i in range(200):   # enough churn for several compactions
        sid, cid = start_pod(rt, i)
        rt.stop_container(cid, 0)
        rt.remove_container(cid)
        rt.remove_pod_sandbox(sid)
    start_pod(rt, 500)
    rt.close()
    start_pod(rt, 501)
    doc = read_state(path)
    assert sorted(s["name"] for s in doc["sandboxes"]) == ["p500", "p501"]
    assert len(doc["containers"]) == 2
    assert len(path.read_text().splitlines()) < 1 + runtime_state.COMPACT_SLACK + 4 * 4 + 6


def test_a_buffered_runtime_writes_at_flush_in_one_write(tmp_path: Path, monkeypatch):
    """The kubelet's runtime is buffered: a turn's changes reach the file at ``flush`` (one
    write), a compaction in between writes everything, and ``close`` flushes."""
    path = tmp_path / "runtime.json"
    rt = FakeRuntime(DEFAULT, clock=Clock(), wall=lambda: 1e9, state_path=str(path), buffered=True)
    start_pod(rt, 0)
    rt.flush()
    assert on_disk(path) == live(rt)
    writes: list[int] = []
    real = rt.journal._file.write
    monkeypatch.setattr(rt.journal, "_file", type("F", (), {
        "write": lambda self, b: writes.append(len(b)) or real(b), "close": lambda self: None})())
    n = lines(path)
    start_pod(rt, 1)
    assert lines(path) == n and not writes          # nothing written before the flush
    rt.flush()
    assert len(writes) == 1 and lines(path) == n + 3 and on_disk(path) == live(rt)
    rt.flush()
    assert len(writes) == 1                         # nothing new: no write
    for i in range(2, 120):                         # enough to compact while buffered
        start_pod(rt, i)
    assert on_disk(path)["sandboxes"].keys() <= live(rt)["sandboxes"].keys()
    rt.flush()
    assert on_disk(path) == live(rt)
    start_pod(rt, 500)
    rt.close()
    assert on_disk(path) == live(rt)
