"""Sleeping long and still stopping at once: StopFlag's wake-up pipe, the ZeroMQ
connection that polls it, the ctl thread that close() wakes."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from emulator import ctl
from emulator.client import Client
from emulator.process import StopFlag
from emulator.transport.zmq import ZmqConnection


@pytest.fixture
def restore_signals():  # type: ignore[no-untyped-def]
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    signal.set_wakeup_fd(-1)
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.timeout(20)
def test_sigterm_sets_the_flag_and_ends_a_long_recv(restore_signals) -> None:  # type: ignore[no-untyped-def]
    stop = StopFlag(wakeup=True)
    assert stop.wake_fd is not None
    conn = ZmqConnection("tcp://127.0.0.1:9")   # nothing answers: only the signal can end the wait
    conn.set_wakeup_fd(stop.wake_fd)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert conn.recv(600) is None   # would wait 10 minutes without the wake-up
        assert stop
        conn.reconnect()                # the wake-up survives a reconnect
        assert conn.wake_fd == stop.wake_fd and conn._poller is not None
    finally:
        conn.close()


@pytest.mark.timeout(20)
def test_client_passes_the_wakeup_fd_to_its_connection() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    c = Client("tcp://127.0.0.1:9")
    try:
        c.set_wakeup_fd(r)
        threading.Timer(0.2, os.write, (w, b"x")).start()
        assert c._conn.recv(600) is None   # ended by the pipe, not by the 10-minute timeout
        with pytest.raises(BlockingIOError):
            os.read(r, 10)                 # the connection drained it
    finally:
        c.close()
        os.close(r), os.close(w)


@pytest.mark.timeout(20)
def test_ctl_close_wakes_its_thread_and_is_idempotent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = ctl.CtlServer(f"ipc://@kemu-test-wake-{os.getpid()}", {}).start()
    server.close()          # the thread sleeps STATE_RECHECK seconds between checks: close wakes it
    assert server._thread is not None and not server._thread.is_alive()
    server.close()          # a second close does nothing (its descriptors are gone)
