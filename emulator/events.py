"""Recording Kubernetes Events from any component.

Contract: ``EventRecorder.event(obj, type, reason, message)`` records an Event
about ``obj`` the way Kubernetes components do: ``involvedObject`` (kind,
namespace, name, uid, apiVersion, resourceVersion), ``reason``, ``message``,
``type`` (Normal or Warning), ``source`` (component, host), ``count``,
``firstTimestamp`` and ``lastTimestamp``. A repeat of the same (object,
reason, message) within ``aggregate_window`` seconds bumps ``count`` and
``lastTimestamp`` on the existing Event instead of creating another.
Recording is fire-and-forget: it never blocks the caller on a reply and never
raises; a lost Event is acceptable, as in Kubernetes.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from emulator.client import Client


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 clock: Callable[[], float] = time.time, aggregate_window: float = 600.0) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.window = aggregate_window
        self._seen: dict[tuple, tuple[str, str, int, float, str]] = {}
        self._n = 0

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        md = obj.get("metadata") or {}
        ns = md.get("namespace") or "default"
        now = self.clock()
        key = (obj.get("kind"), ns, md.get("name"), md.get("uid"), type_, reason, message)
        seen = self._seen.get(key)
        try:
            if seen is not None and now - seen[3] < self.window:
                name, _ns, count, _last, first = seen
                count += 1
                self.client.post("patch", kind="Event", name=name, namespace=ns,
                                 patch={"count": count, "lastTimestamp": rfc3339(now)})
                self._seen[key] = (name, ns, count, now, first)
                return
            self._n += 1
            name = f"{md.get('name', 'unknown')}.{int(now * 1e9):x}{self._n:x}"
            stamp = rfc3339(now)
            ev: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"kind": obj.get("kind"), "namespace": md.get("namespace"),
                                   "name": md.get("name"), "uid": md.get("uid"),
                                   "apiVersion": obj.get("apiVersion"),
                                   "resourceVersion": md.get("resourceVersion")},
                "reason": reason, "message": message, "type": type_,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "reportingComponent": self.component, "reportingInstance": self.host or "",
                "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
            }
            self.client.post("create", object=ev, namespace=ns)
            self._seen[key] = (name, ns, 1, now, stamp)
            if len(self._seen) > 10_000:
                self._seen.pop(next(iter(self._seen)))
        except Exception:   # events are best effort; never fail the caller
            pass
