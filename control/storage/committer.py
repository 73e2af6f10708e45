"""A background fdatasync for the WAL, so the apiserver loop keeps working while the disk syncs.

Contract: the loop calls ``wal.write()`` for a batch, then ``request(rev)``;
the committer thread runs ``wal.sync()`` and then ``durable_rev`` reaches that
rev (one sync covers every batch written before it started: group commit
across batches). The loop acknowledges a batch only once ``durable_rev`` has
reached it; with nothing else to do, it blocks in ``wait_durable(rev)``, which
the committer ends as soon as its sync covers ``rev``: a poll with a short
timeout instead cost an idle apiserver three times the CPU (its timeout,
under a millisecond, became 0 and the loop spun through every sync).
``wait_idle()`` blocks until everything requested is durable; the
loop calls it before anything that must not race a sync (a segment change, a
snapshot, closing). A failed sync is kept in ``error`` and re-raised by
``check()`` in the loop, which must then stop: the WAL is poisoned.
``measure_fdatasync(dir)`` times the disk, for the choice between the
committer and a sync in the loop (``PIPELINE_ABOVE_S``). The probe at start
sees an idle disk; ``SyncLatency`` goes on timing the loop's own syncs and
says when their median over a window has passed the same limit.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from control.storage.wal import WriteAheadLog

PIPELINE_ABOVE_S = 0.0003   # pipeline the commit when fdatasync takes longer than this


def measure_fdatasync(directory: Any, samples: int = 8) -> float:
    """The median time of a small write + fdatasync in ``directory``."""
    path = os.path.join(str(directory), ".fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 256)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return sorted(times)[len(times) // 2]


class SyncLatency:
    """The median of the loop's fdatasyncs over windows of ``window``; ``observe(seconds)``
    is True once a window's median is over ``limit`` (the loop should pipeline from then on).

    A median, so that a lone slow sync (another process flushing) changes nothing; in a
    lab, a hundred node hosts writing their files made the apiserver's syncs take about
    0.5 ms where the probe at start had measured 0.1 ms.
    """

    def __init__(self, limit: float = PIPELINE_ABOVE_S, window: int = 64) -> None:
        self.limit = limit
        self.window = window
        self.samples: list[float] = []
        self.median = 0.0   # of the last full window

    def observe(self, seconds: float) -> bool:
        self.samples.append(seconds)
        if len(self.samples) < self.window:
            return False
        self.samples.sort()
        self.median = self.samples[len(self.samples) // 2]
        self.samples.clear()
        return self.median > self.limit


class Committer:
    def __init__(self, wal: WriteAheadLog) -> None:
        self.wal = wal
        self.durable_rev = wal.committed_rev
        self.requested = self.durable_rev
        self.error: BaseException | None = None
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wal-committer", daemon=True)
        self._thread.start()

    def request(self, rev: int) -> None:
        with self._cv:
            if rev > self.requested:
                self.requested = rev
                self._cv.notify_all()

    @property
    def busy(self) -> bool:
        return self.durable_rev < self.requested

    def wait_durable(self, rev: int, timeout: float) -> bool:
        """Block until ``rev`` is durable (or a sync failed), at most ``timeout`` seconds."""
        with self._cv:
            return self._cv.wait_for(lambda: self.durable_rev >= rev or self.error is not None, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self.durable_rev >= self.requested or
                                     self.error is not None, timeout)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.wait_idle(30)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopping or self.requested > self.durable_rev)
                if self.requested <= self.durable_rev:
                    return   # stopping, and nothing left to sync
                target = self.requested
            try:
                self.wal.sync()
            except BaseException as e:   # the loop re-raises it; the WAL is poisoned
                with self._cv:
                    self.error = e
                    self._cv.notify_all()
                return
            with self._cv:
                self.wal.mark_durable(target)
                self.durable_rev = target
                self._cv.notify_all()
