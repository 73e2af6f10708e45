"""Where a batch's WAL records become durable, and when its replies and events may go out.

The apiserver's loop hands every handled batch to a ``CommitPipeline``. No
reply and no watch event reveals a write before it is durable.

Contract
--------
* ``CommitPipeline(wal, mode, fsync, release, log)``; ``release(replies, events,
  upto, t0, reqs)`` is the server's: it sends a durable batch's replies and
  events. ``wal`` may be None (an in-memory server: everything is "durable").
* ``start(recovery)`` (after recovery's own commit) picks where the sync runs
  and records ``commit_mode`` (and, for "auto", ``fdatasync_ms``) in
  ``recovery``:
  - "sync": in the loop;
  - "pipelined": a committer thread (``control.storage.committer``) syncs
    while the loop handles the next batch;
  - "auto": measures the disk at start (``measure_fdatasync``) and pipelines
    when a sync takes more than ``PIPELINE_ABOVE_S``. The probe sees an idle
    disk, so while it syncs in the loop it keeps timing the loop's own syncs
    (``SyncLatency``) and pipelines from the first window whose median is over
    the limit, logging ``commit_mode_changed``. The switch is for the
    server's life: going back would flap with the load.
* ``submit(replies, events, rev, t0, reqs)``: a handled batch whose records
  are buffered in the WAL (``rev``: the store's revision after it). Syncing in
  the loop, it is committed and released at once. Pipelined, it is written,
  the committer is asked to sync it, and it waits in ``inflight`` until
  ``release_durable()`` finds a sync that covers it; batches are released in
  order.
* ``busy``: a batch waits for its sync. ``wait(timeout)``: with nothing else
  to do, block until the oldest one's sync ends (``Committer.wait_durable``).
* ``drain()``: wait for every sync and release every batch. The loop calls it
  before anything that must not race a sync or must see everything sent: a
  new segment, a snapshot, a new watch, closing. ``stop()`` drains and stops
  the committer.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from control.storage.committer import PIPELINE_ABOVE_S, Committer, SyncLatency, measure_fdatasync
from control.storage.wal import WriteAheadLog

Release = Callable[[list, list, int, float, list], None]


class CommitPipeline:
    def __init__(self, wal: WriteAheadLog | None, mode: str, fsync: bool, release: Release, log: Any) -> None:
        self.wal = wal
        self.mode = mode
        self.fsync = fsync
        self.release = release
        self.log = log
        self.committer: Committer | None = None
        self.sync_latency: SyncLatency | None = None   # "auto" syncing in the loop: when to stop
        self.inflight: deque[tuple[int, list, list, float, list]] = deque()
        self.written_rev = 0   # the last revision written to the WAL
        self.recovery: dict[str, Any] = {}

    def start(self, rev: int, recovery: dict[str, Any]) -> None:
        self.written_rev = rev
        self.recovery = recovery
        if self.wal is None or not self.fsync:
            return
        if self.mode != "auto":
            pipelined = self.mode == "pipelined"
        else:
            # On a disk whose fdatasync takes tens of microseconds, handing each batch to
            # a thread costs more than the sync; where it takes milliseconds, the loop
            # would idle through it.
            latency = measure_fdatasync(self.wal.data_dir)
            pipelined = latency > PIPELINE_ABOVE_S
            recovery["fdatasync_ms"] = round(latency * 1000, 3)
            if not pipelined:   # the probe saw an idle disk: keep timing the loop's syncs
                self.sync_latency = SyncLatency()
        recovery["commit_mode"] = "pipelined" if pipelined else "sync"
        if pipelined:
            self.committer = Committer(self.wal)

    def commit(self) -> int:
        """Make the buffered records durable in the loop; how many there were (0: no sync)."""
        return self.wal.commit() if self.wal is not None else 0

    def submit(self, replies: list, events: list, rev: int, t0: float, reqs: list) -> None:
        if self.committer is None:
            synced = self.commit()
            self.release(replies, events, rev, t0, reqs)
            if synced and self.sync_latency is not None and self.sync_latency.observe(self.wal.last_sync_s):
                self._pipeline_from_now()
            return
        assert self.wal is not None
        if self.wal.needs_rotation:   # a new segment must not race a sync
            self.drain()
        written = self.wal.write()
        if written:
            self.written_rev = written
            self.committer.request(written)
        self.inflight.append((self.written_rev, replies, events, t0, reqs))

    def _pipeline_from_now(self) -> None:
        assert self.wal is not None and self.sync_latency is not None
        self.committer = Committer(self.wal)
        self.log.info("commit_mode_changed", commit_mode="pipelined", previous="sync",
                      fdatasync_median_ms=round(self.sync_latency.median * 1000, 3),
                      limit_ms=round(PIPELINE_ABOVE_S * 1000, 3))
        self.recovery["commit_mode"] = "pipelined"
        self.sync_latency = None

    @property
    def busy(self) -> bool:
        return bool(self.inflight)

    def wait(self, timeout: float) -> None:
        if self.committer is not None and self.inflight:
            self.committer.wait_durable(self.inflight[0][0], timeout)

    def release_durable(self) -> None:
        if self.committer is None or not self.inflight:
            return
        self.committer.check()
        durable = self.committer.durable_rev
        while self.inflight and self.inflight[0][0] <= durable:
            upto, replies, events, t0, reqs = self.inflight.popleft()
            self.release(replies, events, upto, t0, reqs)

    def drain(self) -> None:
        """Wait for every written batch to be durable, and send all of it."""
        if self.committer is not None and self.inflight:
            self.committer.wait_idle()
            self.release_durable()

    def stop(self) -> None:
        self.drain()
        if self.committer is not None:
            self.committer.stop()
            self.committer = None
