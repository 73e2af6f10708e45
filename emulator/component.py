"""The loop every component process runs: start with back-off, then step until stopped.

Contract: a component has ``start()`` (may raise APIError or ConnectionError
while the apiserver is unreachable) and ``step(timeout)`` (never raises for a
lost apiserver). ``start_with_backoff`` retries ``start`` with jittered
exponential back-off (0.1 s doubling to ``max_delay``) until it succeeds or
``stop`` turns true, logging each failure; it returns whether it started.

Readiness (after systemd's ``sd_notify(READY=1)``): a supervisor that forks a
component and wants to know when it has started sets ``notify_fd`` to the
write end of a pipe in the child; ``start_with_backoff`` writes one byte to it
when ``start`` first succeeds, then closes it.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable

from emulator.api.errors import APIError


notify_fd: int | None = None


def notify_ready() -> None:
    """Tell the supervisor (if it asked) that this process has started."""
    global notify_fd
    if notify_fd is not None:
        fd, notify_fd = notify_fd, None
        try:
            os.write(fd, b"r")
        except OSError:
            pass   # the supervisor stopped listening: nothing to tell
        finally:
            os.close(fd)


def start_with_backoff(start: Callable[[], Any], stop: Any, log: Any, max_delay: float = 5.0) -> bool:
    delay = 0.1
    while not stop:
        try:
            start()
            notify_ready()
            return True
        except (APIError, ConnectionError) as e:
            log.warning("apiserver_unavailable", error=str(e), retry_in=round(delay, 3))
            deadline = time.monotonic() + random.uniform(delay / 2, delay)
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            delay = min(max_delay, delay * 2)
    return False
