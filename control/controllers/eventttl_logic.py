"""When an Event expires (kube-apiserver ``--event-ttl``), without I/O.

Contract
--------
* ``last_update(event) -> float | None``: seconds since the epoch of the
  Event's last update: ``series.lastObservedTime``, else ``lastTimestamp``,
  else ``eventTime``, else ``metadata.creationTimestamp``; None when it has
  none of them (such an Event never expires here).
* ``expires_at(event, ttl)``: ``last_update + ttl`` (or None).
* ``expired(event, now, ttl)``: ``now >= expires_at``.
* ``due(events, now, ttl)``: the (namespace, name, resourceVersion) of the
  expired ones, oldest first.
"""
from __future__ import annotations

from typing import Any, Iterable

from control.controllers.controller_utils import parse_time


def _parse(ts: Any) -> float | None:
    return parse_time(ts) if isinstance(ts, str) else None


def last_update(event: dict) -> float | None:
    series = event.get("series") or {}
    for ts in (series.get("lastObservedTime"), event.get("lastTimestamp"), event.get("eventTime"),
               (event.get("metadata") or {}).get("creationTimestamp")):
        t = _parse(ts)
        if t is not None:
            return t
    return None


def expires_at(event: dict, ttl: float) -> float | None:
    t = last_update(event)
    return None if t is None else t + ttl


def expired(event: dict, now: float, ttl: float) -> bool:
    at = expires_at(event, ttl)
    return at is not None and now >= at


def due(events: Iterable[dict], now: float, ttl: float) -> list[tuple[str, str, str | None]]:
    out = []
    for ev in events:
        at = expires_at(ev, ttl)
        if at is not None and now >= at:
            md = ev.get("metadata") or {}
            out.append((at, md.get("namespace") or "", md.get("name") or "", md.get("resourceVersion")))
    out.sort()
    return [(ns, name, rv) for _at, ns, name, rv in out]
