"""Shared benchmark plumbing: an apiserver process, workers, percentiles.

Contract: everything a benchmark starts it stops (SIGTERM, then SIGKILL), and
every loop is bounded in time. Workers are forked before any ZeroMQ context
exists in them (the parent creates none before forking).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from typing import Any, Callable

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
