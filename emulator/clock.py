"""The process's wall clock, which chaos can skew or strobe.

Every component reads wall time (timestamps it writes into objects: Lease
``renewTime``, conditions, Events) through an injectable callable; in a lab
process that callable is ``WALL``, so ``clock-skew node-3 +30s`` makes that
kubelet write times 30 s ahead, as a real kubelet on a skewed host would.
Monotonic time (timers, timeouts) is never skewed, as on Linux, where
CLOCK_MONOTONIC does not follow ``date``. Log timestamps are the observer's
true time, so the lab's merged timeline stays in order.

Contract
--------
* ``WallClock()`` is callable: seconds since the epoch plus the skew.
* ``set(offset=0.0, strobe=None)``: ``offset`` seconds are added; ``strobe``
  ``{"delta": s, "period": s}`` flips the clock between ``offset`` and
  ``offset + delta`` every ``period`` seconds (Jepsen's clock strobe).
  ``set()`` with no arguments is a heal. ``check(args)`` raises ValueError
  naming a bad field.
* ``skew()``: the seconds currently added.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable


def check(args: Any) -> dict:
    if not isinstance(args, dict):
        raise ValueError(f"clock: Invalid value: {args!r}: must be a mapping")
    off = args.get("offset", 0.0)
    if not isinstance(off, (int, float)) or isinstance(off, bool) or not math.isfinite(off):
        raise ValueError(f"offset: Invalid value: {off!r}: must be a number of seconds")
    strobe = args.get("strobe")
    if strobe is not None:
        if not isinstance(strobe, dict):
            raise ValueError(f"strobe: Invalid value: {strobe!r}: must be a mapping")
        for key in ("delta", "period"):
            v = strobe.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"strobe.{key}: Required value: a number of seconds")
        if strobe["period"] <= 0:
            raise ValueError(f"strobe.period: Invalid value: {strobe['period']!r}: must be > 0")
    return args


class WallClock:
    def __init__(self, now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._monotonic = monotonic
        self.offset = 0.0
        self.strobe: dict | None = None
        self._strobe_t0 = 0.0

    def set(self, offset: float = 0.0, strobe: dict | None = None) -> None:
        check({"offset": offset, "strobe": strobe})
        self.offset = float(offset)
        self.strobe = dict(strobe) if strobe else None
        self._strobe_t0 = self._monotonic()

    def skew(self) -> float:
        s = self.strobe
        if s is None:
            return self.offset
        phase = int((self._monotonic() - self._strobe_t0) / float(s["period"])) % 2
        return self.offset + (float(s["delta"]) if phase else 0.0)

    def __call__(self) -> float:
        if self.strobe is None:
            return self._now() + self.offset
        return self._now() + self.skew()


WALL = WallClock()
