"""Pipelined group commit: acknowledgements wait for the sync that covers them."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from control.apiserver import commit as commit_module
from control.storage.committer import Committer, SyncLatency
from control.storage.wal import WALFailedError, WriteAheadLog
from emulator.client import Client
from tests.conftest import poll_for
from tests.test_apiserver import cm


def test_durable_rev_follows_syncs(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.recover()
    c = Committer(wal)
    try:
        for rev in range(1, 6):
            wal.append({"rev": rev, "op": "put", "key": ["ConfigMap", "d", f"x{rev}"], "obj": {"n": rev}})
            assert wal.write() == rev
            c.request(rev)
        assert c.wait_idle(10)
        assert c.durable_rev == 5 and wal.committed_rev == 5 and not c.busy
    finally:
        c.stop()
        wal.close()
    wal = WriteAheadLog(tmp_path)
    assert wal.recover().rev == 5
    wal.close()


def test_a_failed_sync_is_raised_in_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.recover()
    c = Committer(wal)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "simulated I/O error")
    monkeypatch.setattr(os, "fdatasync", eio)
    wal.append({"rev": 1, "op": "put", "key": ["ConfigMap", "d", "x"], "obj": {}})
    wal.write()
    c.request(1)
    c.wait_idle(10)
    with pytest.raises(WALFailedError):
        c.check()
    assert c.durable_rev == 0
    monkeypatch.undo()
    c.stop()
    wal.close()


def test_pipelined_writes_and_watch_through_a_syncing_server(threaded_server, tmp_path: Path) -> None:
    srv = threaded_server("tcp://127.0.0.1:0", str(tmp_path / "synced"), fsync=True,
                          commit_mode="pipelined")
    assert srv.server.commits.committer is not None
    writer, reader = Client(srv.address), Client(srv.address)
    try:
        w = reader.watch("ConfigMap", "default", resource_version=reader.ping()["resourceVersion"],
                         bookmarks=True)
        results = writer.pipeline([("create", {"object": cm(f"c{i}")}) for i in range(300)])
        assert all(isinstance(r, dict) for r in results)
        revs = [int(r["metadata"]["resourceVersion"]) for r in results]
        assert revs == sorted(revs)
        seen: list[int] = []
        bookmarks: list[int] = []
        while len(seen) < 300:
            ev = w.next(5)
            assert ev is not None, f"only {len(seen)} events"
            rv = int(ev["object"]["metadata"]["resourceVersion"])
            if ev["type"] == "BOOKMARK":   # "every event up to rv has been sent"
                assert rv >= (seen[-1] if seen else 0)
                bookmarks.append(rv)
                continue
            assert rv > (bookmarks[-1] if bookmarks else 0)
            seen.append(rv)
        assert seen == revs
        assert writer.get("ConfigMap", "c299", "default")["metadata"]["resourceVersion"] == str(revs[-1])
    finally:
        writer.close(), reader.close()


def test_sync_latency_takes_a_windows_median_so_a_lone_slow_sync_changes_nothing() -> None:
    lat = SyncLatency(limit=0.001, window=8)
    assert not any(lat.observe(s) for s in [0.0001] * 7 + [0.5])   # one slow sync among eight
    assert lat.median == 0.0001 and lat.samples == []
    assert not any(lat.observe(s) for s in [0.002] * 4 + [0.0001] * 3)   # a window not yet full
    assert lat.observe(0.002)   # five of eight over the limit: so is the median
    assert lat.median == 0.002


@pytest.mark.parametrize("limit,pipelined", [(-1.0, True), (3600.0, False)])
def test_auto_pipelines_from_when_the_loops_syncs_are_slower_than_the_limit(
        threaded_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: float, pipelined: bool) -> None:
    monkeypatch.setattr(commit_module, "measure_fdatasync", lambda _dir: 0.0)   # an idle disk at start
    srv = threaded_server("tcp://127.0.0.1:0", str(tmp_path / "auto"), fsync=True, commit_mode="auto")
    assert srv.server.commits.committer is None and srv.server.recovery["commit_mode"] == "sync"
    srv.server.commits.sync_latency.limit = limit   # -1: every sync counts as slow; 3600: none does
    client = Client(srv.address)
    try:
        for i in range(64):   # one create a turn: 64 syncs, a full window
            client.create(cm(f"c{i}"))
        client.create(cm("after"))   # a later turn: the switch, if any, is made
        assert (srv.server.commits.committer is not None) is pipelined
        assert srv.server.recovery["commit_mode"] == ("pipelined" if pipelined else "sync")
        results = client.pipeline([("create", {"object": cm(f"p{i}")}) for i in range(100)])
        assert all(isinstance(r, dict) for r in results)
    finally:
        client.close()
        srv.stop()
    wal = WriteAheadLog(tmp_path / "auto")
    try:
        assert wal.recover().rev == int(results[-1]["metadata"]["resourceVersion"])
    finally:
        wal.close()


def test_a_loop_with_nothing_to_do_waits_for_the_sync_not_the_socket(
        threaded_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a sync running and no frame waiting, the loop blocks until the committer says the
    batch is durable (a poll with a sub-millisecond timeout became 0, and it spun)."""
    held, waited = threading.Event(), []
    real_wait = Committer.wait_durable

    def wait_durable(self: Committer, rev: int, timeout: float) -> bool:
        waited.append(rev)
        return real_wait(self, rev, timeout)
    monkeypatch.setattr(Committer, "wait_durable", wait_durable)
    srv = threaded_server("tcp://127.0.0.1:0", str(tmp_path / "held"), fsync=True, commit_mode="pipelined")
    wal = srv.server.wal
    real_sync = wal.sync

    def held_sync() -> None:
        assert held.wait(30)
        real_sync()
    monkeypatch.setattr(wal, "sync", held_sync)
    client = Client(srv.address)
    try:
        rid = client.send("create", object=cm("held"))
        poll_for(lambda: bool(waited), 10, what="the loop waiting on the held sync")
        assert waited[0] == srv.server.commits.inflight[0][0] and not client.take_reply(rid)[0]
        held.set()
        reply = client.wait(rid)
        assert int(reply["metadata"]["resourceVersion"]) == waited[0]
    finally:
        held.set()
        client.close()
