"""Time faults: ``clock-skew`` and ``clock-strobe``, through each process's wall clock.

Contract
--------
Both are ctl faults (``lab.chaos.ctl_state``, op ``clock``) on any lab process:
the process's ``emulator.clock.WALL`` moves, so every time it writes into an
object (a kubelet's Lease ``renewTime`` and condition times, the apiserver's
``creationTimestamp``, a controller's timestamps) moves with it. Monotonic
timers do not, as on Linux. Several clock faults on one process add up.

* ``clock-skew`` (``offset``, required: ``+30s``, ``-2m``, ``500ms``): the clock
  runs ``offset`` ahead (or behind).
* ``clock-strobe`` (``delta``, default ``+1s``; ``period``, default ``100ms``):
  the clock jumps between its time and ``delta`` ahead every ``period``
  (Jepsen's strobe).
"""
from __future__ import annotations

from typing import Any

from lab.chaos import ctl_state
from lab.chaos.model import parse_duration


def parse_offset(value: str, what: str) -> float:
    v = str(value).strip()
    sign = -1.0 if v.startswith("-") else 1.0
    try:
        return sign * parse_duration(v.lstrip("+-"), what)
    except ValueError:
        raise ValueError(f"{what}: Invalid value: {value!r}: a signed duration such as +30s, "
                         "-2m or 500ms") from None


class _ClockFault:
    name = ""
    help = ""
    params: dict[str, str] = {}
    required: tuple[str, ...] = ()

    def item(self, params: dict[str, str]) -> dict:
        raise NotImplementedError

    def check(self, params: dict[str, str]) -> None:
        self.item(params)

    def inject(self, lab: Any, fault: Any) -> dict:
        return {"clock": self.item(fault.params), "processes": ctl_state.sync(lab, adding=fault)}

    def heal(self, lab: Any, fault: Any) -> None:
        ctl_state.sync(lab, removing=fault.id)

    def ctl_items(self, lab: Any, fault: Any) -> dict[str, dict[str, list]]:
        item = self.item(fault.params)
        return {p: {"clock": [item]} for p in fault.targets}


class ClockSkew(_ClockFault):
    name = "clock-skew"
    help = "run the target's wall clock ahead or behind (offset=+30s)"
    params = {"offset": "a signed duration: +30s, -2m"}
    required = ("offset",)

    def item(self, params: dict[str, str]) -> dict:
        return {"offset": parse_offset(params.get("offset", ""), "offset")}


class ClockStrobe(_ClockFault):
    name = "clock-strobe"
    help = "flip the target's wall clock between now and now+delta every period"
    params = {"delta": "how far it jumps: +1s (default), -500ms", "period": "how often: 100ms (default)"}

    def item(self, params: dict[str, str]) -> dict:
        return {"strobe": {"delta": parse_offset(params.get("delta", "+1s"), "delta"),
                           "period": parse_duration(params.get("period", "100ms"), "period")}}


TIME_KINDS = {k.name: k for k in (ClockSkew(), ClockStrobe())}
