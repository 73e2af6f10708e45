"""CrashLoopBackOff: the kubelet's per-container restart back-off.

Contract (client-go's ``flowcontrol.Backoff`` as the kubelet uses it)
--------------------------------------------------------------------
* Keyed by (pod uid, container name).
* ``in_backoff(key, finished_at, now)``: True while ``now - finished_at`` is
  shorter than the current delay, so the restart must wait.
* ``next(key, finished_at, now)`` is called when a restart goes ahead: the
  first restart (or one whose last restart is more than ``reset`` seconds
  before ``finished_at``, i.e. the container ran that long) sets the delay
  to ``initial``; each later one doubles it, up to ``maximum``.
* All times are seconds on one clock; nothing here reads a clock.
* ``format_duration`` prints seconds as Go's ``time.Duration`` does
  ("10s", "2m40s", "500ms"), for messages in Kubernetes' words.
"""
from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float, maximum: float, reset: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.reset = reset
        self.entries: dict[Key, _Entry] = {}

    def _expired(self, event_time: float, e: _Entry) -> bool:
        return event_time - e.last_update > self.reset

    def delay(self, key: Key) -> float:
        e = self.entries.get(key)
        return e.delay if e else 0.0

    def in_backoff(self, key: Key, finished_at: float, now: float) -> bool:
        e = self.entries.get(key)
        if e is None or self._expired(now, e):
            return False
        return now - finished_at < e.delay

    def ready_at(self, key: Key, finished_at: float) -> float:
        """When the restart of a container that finished at ``finished_at`` may go ahead."""
        return finished_at + self.delay(key)

    def next(self, key: Key, finished_at: float, now: float) -> float:
        e = self.entries.get(key)
        if e is None or self._expired(finished_at, e):
            e = self.entries[key] = _Entry(self.initial, now)
        else:
            e.delay = min(self.maximum, e.delay * 2)
            e.last_update = now
        return e.delay

    def forget(self, pod_uid: str) -> None:
        for k in [k for k in self.entries if k[0] == pod_uid]:
            del self.entries[k]


def format_duration(seconds: float) -> str:
    """Go's Duration.String() for non-negative values."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    total = round(seconds, 9)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    s_txt = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{s_txt}"
    if m:
        return f"{int(m)}m{s_txt}"
    return s_txt
