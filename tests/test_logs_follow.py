"""Log rotation, the lab's log cap, and ``-f`` across new and rotated files."""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from emulator.logging import RotatingFile, configure, get_logger
from lab.logs import Filter, follow, raw_timeline, timeline
from lab.logs_scan import Follower
from tests.conftest import poll_for


def line(i: int, event: str = "tick", **kw: object) -> str:
    return json.dumps({"ts": f"2026-11-26T10:00:{i // 1000:02d}.{i % 1000:06d}Z", "level": "info", "lab": "t",
                       "component": "kubelet", "node": "node-1", "pid": 1, "event": event, "i": i, **kw}) + "\n"


def test_rotation_by_size_keeps_n_and_reads_back_in_order(tmp_path: Path) -> None:
    f = RotatingFile(str(tmp_path / "node-1.jsonl"), max_file_size=1000, max_lab_size=0, keep=3)
    for i in range(60):
        f.write(line(i))
    f.close()
    names = sorted(os.listdir(tmp_path))
    assert names == [".rotate.lock", "node-1.jsonl", "node-1.jsonl.1", "node-1.jsonl.2", "node-1.jsonl.3"]
    assert all(os.path.getsize(tmp_path / n) <= 1000 for n in names)
    got = [r["i"] for r, _raw in timeline(tmp_path)]
    assert got == list(range(60 - len(got), 60))   # the newest lines, in written order, none lost in between


def test_lab_cap_deletes_oldest_rotated_and_says_so(tmp_path: Path) -> None:
    a = RotatingFile(str(tmp_path / "a.jsonl"), 600, 2500, keep=5,
                     context={"lab": "t", "component": "kubelet", "node": "a", "pid": 7})
    b = RotatingFile(str(tmp_path / "b.jsonl"), 600, 2500, keep=5)
    for i in range(40):
        a.write(line(i))
        b.write(line(i))
    a.close()
    b.close()
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 2500 + 2 * 600   # the cap, plus at most the current files' growth since the last check
    caps = [r for r, _ in timeline(tmp_path, Filter(event="log_cap_reached"))]
    assert caps, "the cap was never logged"
    c = caps[0]
    assert c["level"] == "warning" and c["cap"] == 2500 and c["bytes"] > 2500 and c["files_removed"]
    assert c["bytes_after"] <= 2500 or not c["files_removed"][-1].endswith(".1")
    removed = {n for r in caps for n in r["files_removed"]}
    assert all(".jsonl." in n for n in removed)   # only rotated files are ever deleted
    assert {r["component"] for r in caps} <= {"kubelet", None}


def test_configure_rotates_from_env_and_writes_ts_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEMU_LOG_MAX_FILE_SIZE", "2Ki")
    monkeypatch.setenv("KEMU_LOG_MAX_LAB_SIZE", "0")
    try:
        configure("scheduler", lab="t", path=str(tmp_path / "scheduler.jsonl"))
        log = get_logger()
        for i in range(50):
            log.info("pod_bound", kind="Pod", namespace="default", name=f"web-{i}")
    finally:
        configure("test", stream=io.StringIO())
    assert (tmp_path / "scheduler.jsonl.1").exists()
    first = (tmp_path / "scheduler.jsonl").read_text().splitlines()[0]
    assert first.startswith('{"ts": "') and list(json.loads(first))[:7] == [
        "ts", "level", "lab", "component", "node", "pid", "event"]
    with pytest.raises(ValueError, match="KEMU_LOG_MAX_FILE_SIZE: bad size"):
        monkeypatch.setenv("KEMU_LOG_MAX_FILE_SIZE", "lots")
        configure("x", path=str(tmp_path / "x.jsonl"))


def test_follower_appends_new_files_and_rotation(tmp_path: Path) -> None:
    cur = tmp_path / "node-1.jsonl"
    cur.write_text(line(1) + line(2))
    positions: dict = {}
    assert [r for _t, _raw, r in raw_timeline(tmp_path, Filter(), positions)] == [None, None]
    assert positions["node-1"] == (cur.stat().st_ino, cur.stat().st_size)
    fol = Follower(tmp_path, Filter(), positions)
    assert fol.poll() == []
    with open(cur, "a") as f:
        f.write(line(3) + '{"ts": "2026-11-26T10:00:00.000004Z", "part')   # half a line: not yet
    assert [json.loads(raw)["i"] for _t, raw, _r in fol.poll()] == [3]
    with open(cur, "a") as f:
        f.write('ial": 1}\n' + line(5))
    assert [raw for _t, raw, _r in fol.poll()][0].endswith('"partial": 1}')
    (tmp_path / "node-2.jsonl").write_text(line(6, node="node-2"))    # a process that started later
    with open(cur, "a") as f:
        f.write(line(7))
    os.rename(cur, tmp_path / "node-1.jsonl.1")                        # rotation ...
    cur.write_text(line(8))                                            # ... and the new current file
    assert [json.loads(raw)["i"] for _t, raw, _r in fol.poll()] == [6, 7, 8]
    assert fol.poll() == []


def test_follow_prints_lines_of_a_rotating_writer(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(line(0, "old"))
    out, done = io.StringIO(), threading.Event()
    positions: dict = {}
    list(raw_timeline(tmp_path, Filter(), positions))
    t = threading.Thread(target=follow, args=(tmp_path, Filter(event="new*"), out, True),
                         kwargs={"positions": positions, "interval": 0.01, "stop": done.is_set}, daemon=True)
    t.start()
    try:
        w = RotatingFile(str(tmp_path / "b.jsonl"), 400, 0, keep=20)
        for i in range(1, 21):
            w.write(line(i, "new_line"))
        w.close()
        assert (tmp_path / "b.jsonl.3").exists()
        poll_for(lambda: out.getvalue().count("\n") >= 20, 10, what="20 followed lines")
    finally:
        done.set()
        t.join(5)
    got = [json.loads(x)["i"] for x in out.getvalue().splitlines()]
    assert got == list(range(1, 21)) and "old" not in out.getvalue()


def test_bench_logs_small(tmp_path: Path) -> None:
    from lab.bench.logs import run
    res = run(2 << 20, 100, str(tmp_path))
    assert res["bytes"] >= 2 << 20 and res["lines"] > 5000 and res["files"] == 100
    passes = {p["name"]: p for p in res["passes"]}
    assert passes["all"]["matches"] == res["lines"]
    assert 0 < passes["node+level"]["matches"] < res["lines"]
    assert 0 < passes["grep"]["matches"] < res["lines"]
    for p in passes.values():
        assert p["seconds"] > 0 and p["peak_rss_mb"] > 0 and p["mb_per_s"] > 0
    assert list(tmp_path.iterdir()) == []   # the generated logs are removed
