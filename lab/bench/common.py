"""Shared benchmark plumbing: an apiserver process, workers, percentiles.

Contract: everything a benchmark starts it stops (SIGTERM, then SIGKILL), and
every loop is bounded in time. Workers are forked before any ZeroMQ context
exists in them (the parent creates none before forking).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


class ApiserverProcess:
    """``kemu apiserver`` on a free loopback port, with its own data directory."""

    def __init__(self, data_dir: str | None = None, *extra: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="kemu-bench-")
        self.data_dir = data_dir or os.path.join(self.tmp.name, "store")
        self.endpoint = Path(self.tmp.name) / "apiserver.endpoint"
        self.log = Path(self.tmp.name) / "apiserver.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait until it serves; returns the seconds that took."""
        if self.endpoint.exists():
            self.endpoint.unlink()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--data-dir", self.data_dir,
             "--listen", "tcp://127.0.0.1:0", "--endpoint-file", str(self.endpoint),
             "--log-file", str(self.log), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = t0 + timeout
        while not self.endpoint.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"apiserver did not start; see {self.log}")
            time.sleep(0.005)
        self.address = self.endpoint.read_text().strip()
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

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
