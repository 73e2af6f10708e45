"""The fault record, and the parsing of durations and parameters.

Contract
--------
* ``Fault``: ``id`` ("f-1", "f-2", ... per lab), ``kind``, ``target`` (what the
  user gave: "node-3", "nodes:zone=zone-b", ...), ``targets`` (the resolved lab
  process names), ``params`` (str -> str), ``duration`` (seconds or None: holds
  until healed), ``injected_at`` (epoch), ``state`` (what the kind needs to heal,
  JSON-serialisable), ``healer_pid``/``healer_start`` (the detached healer, if any).
  ``to_dict``/``from_dict`` round-trip through ``run/chaos.json``.
* A ``Fault`` returned by ``Chaos.inject`` is a context manager: leaving the
  ``with`` block heals it (exceptions included); healing a fault that is already
  healed is not an error there.
* ``parse_duration("30s" | "500ms" | "2m" | "1h" | 5)`` -> seconds (> 0), or
  ``ValueError`` naming the value and the accepted forms.
* ``parse_params(["k=v", ...])`` -> dict, or ``ValueError`` naming the bad one.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_FORMS = "a number with a unit: 500ms, 30s, 2m, 1h"


def parse_duration(value: Any, what: str = "--for") -> float:
    """Seconds from ``30s``/``500ms``/``2m``/``1h`` (or a positive number of seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: bad duration {value!r}: use {DURATION_FORMS}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value).strip())
        if not m:
            raise ValueError(f"{what}: bad duration {value!r}: use {DURATION_FORMS}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{what}: duration {value!r} must be more than zero")
    return seconds


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["selector=app=web", "namespace=demo"]`` -> ``{"selector": "app=web", "namespace": "demo"}``."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param: bad parameter {item!r}: use NAME=VALUE, e.g. "
                             "--param namespace=default")
        out[key.strip()] = value
    return out


def format_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60}s" if s < 600 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60}m"


@dataclass
class Fault:
    id: str
    kind: str
    target: str
    targets: list[str]
    params: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    injected_at: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    healer_pid: int | None = None
    healer_start: float | None = None
    chaos: Any = field(default=None, repr=False, compare=False)   # the Chaos that made it

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "target": self.target, "targets": list(self.targets),
                "params": dict(self.params), "duration": self.duration,
                "injected_at": self.injected_at, "state": self.state,
                "healer_pid": self.healer_pid, "healer_start": self.healer_start}

    @classmethod
    def from_dict(cls, d: dict[str, Any], chaos: Any = None) -> "Fault":
        return cls(id=d["id"], kind=d["kind"], target=d.get("target", ""),
                   targets=list(d.get("targets") or []), params=dict(d.get("params") or {}),
                   duration=d.get("duration"), injected_at=float(d.get("injected_at") or 0.0),
                   state=dict(d.get("state") or {}), healer_pid=d.get("healer_pid"),
                   healer_start=d.get("healer_start"), chaos=chaos)

    def expires_at(self) -> float | None:
        return None if self.duration is None else self.injected_at + self.duration

    def remaining(self, now: float | None = None) -> float | None:
        exp = self.expires_at()
        return None if exp is None else max(0.0, exp - (time.time() if now is None else now))

    def heal(self) -> None:
        """Heal this fault now (not an error if it is healed already)."""
        if self.chaos is None:
            raise RuntimeError(f"fault {self.id} is not attached to a lab; use lab.chaos.heal({self.id!r})")
        self.chaos.heal(self.id, missing_ok=True)

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.heal()
