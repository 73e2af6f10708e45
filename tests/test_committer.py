"""Pipelined group commit: acknowledgements wait for the sync that covers them."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from control.storage.committer import Committer
from control.storage.wal import WALFailedError, WriteAheadLog
from emulator.client import Client
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
    assert srv.server.committer is not None
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
