"""Snapshots written by a forked child, so that the apiserver's loop never stalls on one.

Writing a snapshot packs every stored object: at 10,000 nodes and 100,000 pods
(500,000 objects with their Events) that held the loop for 4 s every 200,000
writes, and every client's round trip with it. As Redis' ``BGSAVE`` does, the
apiserver forks instead: the child has the store exactly as of the fork
(copy-on-write) and writes it while the parent goes on.

Contract
--------
* ``start(items)`` (with no batch in flight: the caller drains first) calls
  ``wal.begin_snapshot()`` (commit, new segment) and forks. The child writes
  ``snapshot-<rev>`` from ``items()``, the store as of that revision, and
  leaves with ``os._exit`` (0: written and synced). It touches no ZeroMQ
  socket, logger or lock of the parent's, runs at the lowest priority (nice
  19: it has no deadline), closes its copy of the WAL's lock
  file and dies with the parent (``PR_SET_PDEATHSIG``), so a restarted
  apiserver never finds the directory held by an orphan. The parent returns
  at once. At most one child runs: ``start`` while one runs returns False.
* ``poll()`` reaps the child without blocking: None while it runs, else a
  ``Done``. Only a child that exited 0 calls ``wal.finish_snapshot(rev)``
  (obsolete files deleted); a failed or killed one leaves the log whole and
  its ``.tmp`` removed, and the next snapshot comes after another round of
  records. ``abandon()`` (the apiserver's close) kills a running child and
  reaps it: the log is whole and committed, so nothing is lost, and a close
  never waits on a snapshot.
"""
from __future__ import annotations

import gc
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from control.storage.snapshot import snapshot_name, write_snapshot
from control.storage.wal import WriteAheadLog
from emulator.process import die_with_parent

BACKGROUND_NICE = 19


@dataclass
class Done:
    rev: int
    ok: bool
    seconds: float
    exit_code: int   # the child's exit status (negative: the signal that killed it)
    cpu_s: float = 0.0   # the child's CPU time, user and system (what the snapshot cost the cores)


class BackgroundSnapshot:
    def __init__(self, wal: WriteAheadLog, fsync: bool = True) -> None:
        self.wal = wal
        self.fsync = fsync
        self.pid: int | None = None
        self.rev = 0
        self.started_at = 0.0
        self.fork_ms = 0.0   # how long the parent's fork took (its page tables copied)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, items: Callable[[], Iterable[tuple[Any, dict]]]) -> bool:
        if self.pid is not None:
            return False
        rev = self.wal.begin_snapshot()
        self.started_at = time.monotonic()
        pid = os.fork()
        if pid == 0:   # the child: write, then leave without running any of the parent's exit code
            code = 1
            try:
                gc.disable()   # a collection would touch (and copy) every page of the store
                die_with_parent()
                os.nice(BACKGROUND_NICE)   # no deadline: the cores go to the loop and the nodes first
                self.wal.close_lock_copy()
                write_snapshot(self.wal.data_dir, rev, items(), fsync=self.fsync)
                code = 0
            finally:
                os._exit(code)
        self.fork_ms = round((time.monotonic() - self.started_at) * 1000, 1)
        self.pid, self.rev = pid, rev
        return True

    def poll(self) -> Done | None:
        return self._reap(os.WNOHANG)

    def abandon(self) -> Done | None:
        """Stop a running child and reap it (the apiserver is closing: the log is whole
        and committed, and the next start replays it). A child that already finished
        counts as written."""
        if self.pid is None:
            return None
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self._reap(0)

    def _reap(self, flags: int) -> Done | None:
        if self.pid is None:
            return None
        cpu = 0.0
        try:
            pid, status, usage = os.wait4(self.pid, flags)
            cpu = usage.ru_utime + usage.ru_stime
        except ChildProcessError:   # reaped elsewhere: what it did is unknown, so keep the log
            pid, status = self.pid, 1 << 8
        if pid == 0:
            return None
        self.pid = None
        code = os.waitstatus_to_exitcode(status)
        done = Done(self.rev, code == 0, round(time.monotonic() - self.started_at, 3), code, cpu)
        if done.ok:
            self.wal.finish_snapshot(self.rev)
        else:   # killed mid-write: its temporary file is left (an exception removes its own)
            tmp = self.wal.data_dir / (snapshot_name(self.rev) + ".tmp")
            tmp.unlink(missing_ok=True)
        return done
