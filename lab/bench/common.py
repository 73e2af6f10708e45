"""Shared benchmark plumbing: an apiserver process, workers, percentiles.

Contract: everything a benchmark starts it stops (SIGTERM, then SIGKILL), and
every loop is bounded in time. ``paced_creates`` sends creates at a steady
rate (pipelined) while a watch records when each object first reaches a
state; the latency benchmarks (pod-startup, storage) share it. Workers are forked before any ZeroMQ context
exists in them (the parent creates none before forking).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from typing import Any, Callable, Iterable

from lab.processes import ApiserverProcess as BaseApiserverProcess


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


class ApiserverProcess(BaseApiserverProcess):
    """An apiserver in its own temporary directory, removed by ``cleanup``."""

    def __init__(self, data_dir: str | None = None, *extra: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="kemu-bench-")
        super().__init__(data_dir or os.path.join(self.tmp.name, "store"), self.tmp.name, *extra)

    def cleanup(self) -> None:
        self.stop()
        self.tmp.cleanup()


def run_workers(n: int, target: Callable[..., Any], args: tuple, timeout: float) -> list[Any]:
    """Fork ``n`` workers running ``target(i, *args)``; collect their return values."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def wrap(i: int) -> None:
        try:
            q.put((i, target(i, *args)))
        except BaseException as e:   # report, never hang the parent
            q.put((i, e))

    procs = [ctx.Process(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    results: list[Any] = [None] * n
    try:
        for _ in range(n):
            i, r = q.get(timeout=timeout)
            if isinstance(r, BaseException):
                raise RuntimeError(f"worker {i} failed: {r!r}")
            results[i] = r
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    return results


def paced_creates(client: Any, watch: Any, count: int, rate: float,
                  requests: Callable[[int], tuple[str, Iterable[dict]]], reached: Callable[[dict], bool],
                  timeout: float, after_creates: Callable[[], Any] | None = None
                  ) -> tuple[dict[str, float], dict[str, float], int]:
    """Create ``count`` batches at ``rate`` per second. ``requests(i)`` gives the name
    to time and the objects to create (in the default namespace); ``reached(obj)``
    says when a watched object with that name counts as done. Returns (when each
    name was sent, when it was first seen done, how many creates failed), all in
    ``time.monotonic()`` seconds; waits at most ``timeout`` after the last create.
    ``after_creates`` runs right after the last create is sent."""
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    rids = []

    def drain(wait: float) -> None:
        ev = watch.next(wait)
        while ev is not None:
            o = ev["object"]
            name = o["metadata"]["name"]
            if name not in done and reached(o):
                done[name] = time.monotonic()
            ev = watch.next(0)

    t0 = time.monotonic()
    for i in range(count):
        target = t0 + i / rate
        while time.monotonic() < target:
            drain(max(0.0, target - time.monotonic()))
        name, objs = requests(i)
        created[name] = time.monotonic()
        rids.extend(client.send("create", object=o, namespace="default") for o in objs)
    if after_creates is not None:
        after_creates()
    deadline = time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        drain(0.2)
    errors = 0
    for rid in rids:
        try:
            client.wait(rid, timeout=10)
        except Exception:
            errors += 1
    return created, done, errors
