"""The apiserver's snapshots are written by a forked child while its loop goes on
(``control.storage.background``). The server runs on the in-process transport; a pipe
holds the child mid-write, so nothing here depends on timing."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from control.storage import background
from control.storage.snapshot import snapshot_name
from emulator.client import Client
from tests.conftest import ThreadedServer, poll_for


def _cm(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "namespace": "default"},
            "data": {"i": str(i)}}


class Rig:
    def __init__(self, data_dir: Path, tag: str, snapshot_every: int = 20) -> None:
        self.ts = ThreadedServer(f"mem://snap-{tag}-{os.getpid()}-{time.monotonic_ns()}", str(data_dir),
                                 fsync=False, snapshot_every=snapshot_every)
        self.server = self.ts.server
        self.client = Client(self.ts.address, component="test", timeout=5)

    def create(self, i: int) -> dict:
        return self.client.create(_cm(i), namespace="default")

    def close(self) -> None:
        self.client.close()
        self.ts.stop()
        assert not self.ts.thread.is_alive()


def _names(data_dir: Path, tag: str) -> set[str]:
    r = Rig(data_dir, tag + "-again", snapshot_every=10**9)
    try:
        return {o["metadata"]["name"] for o in r.server.store.iter_kind("ConfigMap", "default")}
    finally:
        r.close()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    """The child blocks, after writing half its objects, until a byte comes down the pipe."""
    r, w = os.pipe()
    real = background.write_snapshot

    def gated(data_dir: Any, rev: int, objects: Any, **kw: Any) -> Any:
        def items() -> Iterator[Any]:
            for n, item in enumerate(objects):
                if n == 10:
                    os.read(r, 1)
                yield item
        return real(data_dir, rev, items(), **kw)
    monkeypatch.setattr(background, "write_snapshot", gated)
    yield r, w
    os.close(r)
    os.close(w)


@pytest.mark.timeout(60)
def test_the_loop_goes_on_while_a_child_writes_the_snapshot(tmp_path: Path, gate: tuple[int, int]) -> None:
    rig = Rig(tmp_path / "store", "goes-on")
    try:
        for i in range(25):   # past snapshot_every: a turn forks the child
            rig.create(i)
        snaps = rig.server.snapshots
        assert snaps is not None and snaps.running
        rev = snaps.rev
        final = tmp_path / "store" / snapshot_name(rev)
        # the child (at nice 19) opens its .tmp in its own time, then stops at the gate
        poll_for((tmp_path / "store" / (final.name + ".tmp")).exists, 20, what="the child's .tmp")
        assert not final.exists()
        for i in range(25, 35):   # the child is held mid-write: writes are still answered
            rig.create(i)
        assert snaps.running and not final.exists()
        os.write(gate[1], b"x")
        poll_for(lambda: not snaps.running, 20, what="the child reaped")
        assert final.exists() and not (tmp_path / "store" / (final.name + ".tmp")).exists()
        assert rig.server.wal._snapshot_rev == rev
    finally:
        rig.close()
    # the snapshot holds the state as of its revision; the log after it holds the rest
    r = Rig(tmp_path / "store", "goes-on-recover", snapshot_every=10**9)
    try:
        assert r.server.recovery["snapshot_rev"] == rev
        assert {o["metadata"]["name"] for o in r.server.store.iter_kind("ConfigMap", "default")} == \
            {f"cm-{i}" for i in range(35)}
    finally:
        r.close()


@pytest.mark.timeout(60)
def test_a_killed_child_leaves_the_log_whole_and_no_temporary_file(tmp_path: Path, gate: tuple[int, int]) -> None:
    rig = Rig(tmp_path / "store", "killed")
    try:
        for i in range(25):
            rig.create(i)
        snaps = rig.server.snapshots
        assert snaps is not None and snaps.running
        rev, pid = snaps.rev, snaps.pid
        tmp = tmp_path / "store" / (snapshot_name(rev) + ".tmp")
        poll_for(tmp.exists, 20, what="the child's .tmp")   # opened in the child's own time
        os.kill(pid, signal.SIGKILL)
        poll_for(lambda: not snaps.running, 20, what="the killed child reaped")
        assert not tmp.exists() and not (tmp_path / "store" / snapshot_name(rev)).exists()
        assert rig.server.wal._snapshot_rev < rev
        for i in range(25, 30):
            rig.create(i)
    finally:
        rig.close()
    assert _names(tmp_path / "store", "killed") == {f"cm-{i}" for i in range(30)}


@pytest.mark.timeout(60)
def test_a_failed_child_is_logged_and_the_next_round_tries_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [1]
    real = background.write_snapshot

    def flaky(*a: Any, **kw: Any) -> Any:
        if failures:
            raise OSError("disk full")   # in the child: its exit code says so
        return real(*a, **kw)
    monkeypatch.setattr(background, "write_snapshot", flaky)
    rig = Rig(tmp_path / "store", "failed")
    logged: list[tuple[str, dict]] = []
    rig.server.log = type("L", (), {"info": lambda self, ev, **kw: logged.append((ev, kw)),
                                    "error": lambda self, ev, **kw: logged.append((ev, kw)),
                                    "warning": lambda self, ev, **kw: logged.append((ev, kw))})()
    try:
        for i in range(25):
            rig.create(i)
        snaps = rig.server.snapshots
        assert snaps is not None
        poll_for(lambda: not snaps.running, 20, what="the failed child reaped")
        failed = [kw for ev, kw in logged if ev == "snapshot_failed"]
        assert len(failed) == 1 and failed[0]["exit_code"] == 1
        assert not list((tmp_path / "store").glob("snapshot-*"))
        failures.clear()
        for i in range(25, 50):   # another round of records: the next one is written
            rig.create(i)
        poll_for(lambda: not snaps.running and any(ev == "snapshot written" for ev, _ in logged), 20,
                 what="the second snapshot written")
        written = [kw for ev, kw in logged if ev == "snapshot written"]
        assert written[0]["cpu_s"] > 0   # the child's own CPU time, from wait4
    finally:
        rig.close()
    assert _names(tmp_path / "store", "failed") == {f"cm-{i}" for i in range(50)}


@pytest.mark.timeout(60)
def test_close_stops_a_running_child_and_loses_nothing(tmp_path: Path, gate: tuple[int, int]) -> None:
    rig = Rig(tmp_path / "store", "close")
    for i in range(25):
        rig.create(i)
    snaps = rig.server.snapshots
    assert snaps is not None and snaps.running
    pid = snaps.pid
    rig.close()   # the child is held mid-write: close does not wait for it
    assert not snaps.running
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)   # reaped, not left behind
    assert not list((tmp_path / "store").glob("snapshot-*"))
    assert rig.server.wal is None
    assert _names(tmp_path / "store", "close") == {f"cm-{i}" for i in range(25)}


@pytest.mark.timeout(60)
def test_the_next_snapshot_waits_for_as_many_records_as_the_last_one_packed(tmp_path: Path) -> None:
    """A fixed interval made a snapshot's cost per write grow with the store; the next one
    waits until the log has grown by the last one's objects (and by ``snapshot_every``)."""
    rig = Rig(tmp_path / "store", "base", snapshot_every=10**9)
    snaps, wal = rig.server.snapshots, rig.server.wal
    assert snaps is not None and wal is not None
    try:
        for i in range(30):
            rig.create(i)
        rig.server.snapshot_every = 5
        i = 30
        rig.create(i)   # by this turn at the latest, the first snapshot starts: 30 objects or more
        poll_for(lambda: not snaps.running and wal._snapshot_rev > 0, 20, what="the first snapshot written")
        first, base = wal._snapshot_rev, rig.server.snapshot_base
        assert base >= 30
        i += 1
        for _ in range(base - wal.records_since_snapshot - 1):   # one record short: none yet
            rig.create(i)
            i += 1
        assert not snaps.running and wal._snapshot_rev == first
        rig.create(i)
        poll_for(lambda: not snaps.running and wal._snapshot_rev > first, 20, what="the second snapshot written")
        assert rig.server.snapshot_base >= 2 * base - 1
    finally:
        rig.close()
