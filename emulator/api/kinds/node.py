"""The Node kind (core/v1, cluster-scoped).

Contract: ``default_node`` gives a missing spec/status an empty object.
``validate_node`` checks the name (DNS subdomain, via the registry),
spec.unschedulable (boolean), spec.taints (key required and a qualified name,
value a label value, effect one of NoSchedule/PreferNoSchedule/NoExecute,
unique by key and effect) and status.capacity/allocatable quantities.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import (TAINT_EFFECTS, Causes, check_rfc3339,
                                        validate_resource_list)
from emulator.api.meta import (duplicate, invalid, is_label_value, is_qualified_name,
                               not_supported, required)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["NODE", "default_node", "validate_node"]


def default_node(obj: dict[str, Any]) -> None:
    if obj.get("spec") is None:
        obj["spec"] = {}
    if obj.get("status") is None:
        obj["status"] = {}


def _validate_taints(taints: Any, out: Causes) -> None:
    if taints is None:
        return
    if not isinstance(taints, list):
        out.append(invalid("spec.taints", taints, "must be a list"))
        return
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(taints):
        path = f"spec.taints[{i}]"
        if not isinstance(t, dict):
            out.append(invalid(path, t, "must be an object"))
            continue
        key, effect, value = t.get("key") or "", t.get("effect") or "", t.get("value") or ""
        if not key:
            out.append(required(path + ".key"))
        else:
            out.extend(invalid(path + ".key", key, m) for m in is_qualified_name(str(key)))
        if value:
            out.extend(invalid(path + ".value", value, m) for m in is_label_value(str(value)))
        if not effect:
            out.append(required(path + ".effect"))
        elif effect not in TAINT_EFFECTS:
            out.append(not_supported(path + ".effect", effect, TAINT_EFFECTS))
        check_rfc3339(path + ".timeAdded", t.get("timeAdded"), out)
        pair = (str(key), str(effect))
        if pair in seen:
            out.append(duplicate(path, f"{key}:{effect}"))
        seen.add(pair)


def validate_node(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        out.append(invalid("spec", spec, "must be an object"))
    elif spec:
        u = spec.get("unschedulable")
        if u is not None and not isinstance(u, bool):
            out.append(invalid("spec.unschedulable", u, "must be a boolean"))
        _validate_taints(spec.get("taints"), out)
    status = obj.get("status")
    if status is not None and not isinstance(status, dict):
        out.append(invalid("status", status, "must be an object"))
    elif status:
        for key in ("capacity", "allocatable"):
            validate_resource_list(status.get(key), f"status.{key}", out)
    return out


NODE = ResourceType(
    kind="Node", group="", version="v1", plural="nodes", singular="node",
    short_names=("no",), namespaced=False, has_status=True, has_generation=True,
    default=default_node, validate=validate_node,
    selectable_fields=("spec.unschedulable",),
    field_defaults=(("spec.unschedulable", "false"),),
)
REGISTRY.register(NODE)
