"""Shared fixtures: a real apiserver in a thread (tcp or mem), and one as a process."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from lab.processes import ApiserverProcess



def poll_for(predicate: Callable[[], object], timeout: float, interval: float = 0.01,
             what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def step_until(component: object, predicate: Callable[[], object], what: str,
               timeout: float = 10.0) -> object:
    """Drive ``component.step`` until ``predicate`` holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        component.step(0.02)  # type: ignore[attr-defined]
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


class FakeClock:
    """A settable clock for in-process components: ``mono()`` and ``wall()`` (epoch + mono)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


def drive(kubelets: object, clock: FakeClock, until: Callable[[], object], *, advance: float = 0.05,
          steps: int = 400, what: str = "condition", step_timeout: float = 0.005) -> object:
    """Step one kubelet (or a list of them), then advance the fake clock, until ``until()``
    returns something truthy (returned); fail naming ``what`` after ``steps`` turns."""
    ks = kubelets if isinstance(kubelets, list) else [kubelets]
    for _ in range(steps):
        for k in ks:
            k.step(step_timeout)
        v = until()
        if v:
            return v
        clock.t += advance
    raise AssertionError(f"not reached after {steps} steps: {what}")


class ThreadedServer:
    """An APIServer running its loop in a background thread."""

    def __init__(self, listen: str, data_dir: str | None, **opts: object) -> None:
        from control.apiserver.server import APIServer
        self.server = APIServer(listen, data_dir, **opts)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("apiserver thread did not start")
        if self.error:
            raise self.error
        self.address = self.server.address

    def _run(self) -> None:
        try:
            self.server.start()
        except BaseException as e:  # surfaced to the test
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.stopping = True
        self.thread.join(10)


@pytest.fixture
def threaded_server(tmp_path: Path) -> Iterator[Callable[..., ThreadedServer]]:
    started: list[ThreadedServer] = []

    def start(listen: str = "tcp://127.0.0.1:0", data_dir: str | None = None, **opts: object) -> ThreadedServer:
        s = ThreadedServer(listen, data_dir if data_dir is not None else str(tmp_path / "store"),
                           **{"fsync": False, "bookmark_interval": 0.5, **opts})
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def apiserver_addr(threaded_server: Callable[..., ThreadedServer]) -> str:
    """The tcp address of a real apiserver (in a thread) for this test."""
    return threaded_server().address


@pytest.fixture
def mem_server(threaded_server: Callable[..., ThreadedServer], request: pytest.FixtureRequest) -> ThreadedServer:
    """An apiserver on the in-process transport."""
    return threaded_server(f"mem://{request.node.name}-{os.getpid()}-{time.monotonic_ns()}", None)


class ServerProcess(ApiserverProcess):
    """``kemu apiserver`` as a real process, with short bookmarks for tests."""

    def __init__(self, data_dir: Path, run_dir: Path, *extra: str) -> None:
        super().__init__(data_dir, run_dir, "--bookmark-interval", "0.5", *extra)

    def start(self, timeout: float = 20, listen: str = "tcp://127.0.0.1:0") -> str:  # type: ignore[override]
        super().start(timeout, listen)
        return self.address


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    made: list[ServerProcess] = []

    def make(*extra: str) -> ServerProcess:
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        sp = ServerProcess(tmp_path / "store", run, *extra)
        made.append(sp)
        return sp

    yield make
    for sp in made:
        sp.stop()


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Every test ends with no child processes left behind."""
    yield
    me = psutil.Process()
    def leftovers() -> list[psutil.Process]:
        return [c for c in me.children(recursive=True) if c.is_running()
                and c.status() != psutil.STATUS_ZOMBIE]
    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = leftovers()
    for c in left:
        c.kill()
    assert not left, f"test leaked processes: {[c.pid for c in left]}"
