"""The Namespace kind (core/v1, cluster-scoped).

Contract: ``default_namespace`` sets spec.finalizers ["kubernetes"] when the
field is absent and status.phase "Active" when unset (idempotent; an explicit
empty finalizer list is kept). ``validate_namespace`` checks finalizer names
(``kubernetes`` or a domain-qualified name) and status.phase. Names are RFC
1123 labels (at most 63 characters), checked through ``validate_name``.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes
from emulator.api.meta import invalid, is_dns1123_label, is_qualified_name, not_supported
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["NAMESPACE", "default_namespace", "validate_namespace"]

PHASES = ("Active", "Terminating")
_STANDARD_FINALIZERS = frozenset({"kubernetes"})


def default_namespace(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if isinstance(spec, dict) and spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    status = obj.get("status")
    if status is None:
        status = obj["status"] = {}
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Active"


def validate_namespace(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        out.append(invalid("spec", spec, "must be an object"))
    elif spec and spec.get("finalizers") is not None:
        fins = spec["finalizers"]
        if not isinstance(fins, list):
            out.append(invalid("spec.finalizers", fins, "must be a list of strings"))
        else:
            for i, f in enumerate(fins):
                path = f"spec.finalizers[{i}]"
                if not isinstance(f, str):
                    out.append(invalid(path, f, "must be a string"))
                    continue
                out.extend(invalid(path, f, m) for m in is_qualified_name(f))
                if "/" not in f and f not in _STANDARD_FINALIZERS:
                    out.append(invalid(path, f, "name is neither a standard finalizer name "
                                                "nor is it fully qualified"))
    status = obj.get("status")
    if isinstance(status, dict):
        phase = status.get("phase")
        if phase and phase not in PHASES:
            out.append(not_supported("status.phase", phase, PHASES))
    return out


NAMESPACE = ResourceType(
    kind="Namespace", group="", version="v1", plural="namespaces", singular="namespace",
    short_names=("ns",), namespaced=False, has_status=True, has_generation=True,
    default=default_namespace, validate=validate_namespace, validate_name=is_dns1123_label,
    selectable_fields=("status.phase",),
)
REGISTRY.register(NAMESPACE)
