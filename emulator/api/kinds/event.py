"""The Event kind (core/v1, namespaced).

Contract: ``default_event`` sets type "Normal" and count 1 when absent, and a
missing metadata.namespace to involvedObject.namespace (the generic layer then
falls back to "default"); timestamps are kept as given. ``validate_event``
requires involvedObject with kind and name, type Normal or Warning, a reason of
at most 128 bytes, a non-negative count, RFC 3339 timestamps, and an
involvedObject.namespace (when set) equal to the event's namespace.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes, check_rfc3339
from emulator.api.meta import (invalid, not_supported, required, too_long,
                               validate_nonnegative_int)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["EVENT", "default_event", "validate_event"]

EVENT_TYPES = ("Normal", "Warning")
REASON_MAX = 128


def default_event(obj: dict[str, Any]) -> None:
    if not obj.get("type"):
        obj["type"] = "Normal"
    if obj.get("count") is None:
        obj["count"] = 1
    meta = obj.get("metadata")
    inv = obj.get("involvedObject")
    if isinstance(meta, dict) and not meta.get("namespace") and isinstance(inv, dict):
        ns = inv.get("namespace")
        if ns and isinstance(ns, str):
            meta["namespace"] = ns


def validate_event(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    inv = obj.get("involvedObject")
    if inv is None:
        out.append(required("involvedObject"))
    elif not isinstance(inv, dict):
        out.append(invalid("involvedObject", inv, "must be an object"))
    else:
        for key in ("kind", "name"):
            if not inv.get(key):
                out.append(required(f"involvedObject.{key}"))
        ns = inv.get("namespace")
        own_ns = (obj.get("metadata") or {}).get("namespace")
        if ns and own_ns and ns != own_ns:
            out.append(invalid("involvedObject.namespace", ns, "does not match event.namespace"))
    etype = obj.get("type")
    if etype is not None and etype not in EVENT_TYPES:
        out.append(not_supported("type", etype, EVENT_TYPES))
    reason = obj.get("reason")
    if reason is not None:
        if not isinstance(reason, str):
            out.append(invalid("reason", reason, "must be a string"))
        elif len(reason.encode()) > REASON_MAX:
            out.append(too_long("reason", REASON_MAX))
    message = obj.get("message")
    if message is not None and not isinstance(message, str):
        out.append(invalid("message", message, "must be a string"))
    if obj.get("count") is not None:
        validate_nonnegative_int("count", obj["count"], out)
    for key in ("firstTimestamp", "lastTimestamp", "eventTime"):
        check_rfc3339(key, obj.get(key), out)
    return out


EVENT = ResourceType(
    kind="Event", group="", version="v1", plural="events", singular="event",
    short_names=("ev",), namespaced=True, has_status=False, has_generation=False,
    default=default_event, validate=validate_event,
    selectable_fields=("involvedObject.kind", "involvedObject.name",
                       "involvedObject.namespace", "involvedObject.uid",
                       "involvedObject.apiVersion", "involvedObject.resourceVersion",
                       "involvedObject.fieldPath", "reason", "type",
                       "reportingComponent"),
)
REGISTRY.register(EVENT)
