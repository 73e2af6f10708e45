"""The Lease kind (coordination.k8s.io/v1, namespaced): leader election and
node heartbeats.

Contract: no defaults. ``validate_lease`` checks spec.holderIdentity (a
string), spec.leaseDurationSeconds (> 0 when set), spec.leaseTransitions
(>= 0) and spec.acquireTime/renewTime (RFC 3339 "micro" date-times such as
``2024-01-02T15:04:05.000000Z``).
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes, check_rfc3339
from emulator.api.meta import invalid, is_int, validate_nonnegative_int
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["LEASE", "validate_lease"]


def validate_lease(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if spec is None:
        return out
    if not isinstance(spec, dict):
        return [invalid("spec", spec, "must be an object")]
    holder = spec.get("holderIdentity")
    if holder is not None and not isinstance(holder, str):
        out.append(invalid("spec.holderIdentity", holder, "must be a string"))
    dur = spec.get("leaseDurationSeconds")
    if dur is not None and (not is_int(dur) or dur <= 0):
        out.append(invalid("spec.leaseDurationSeconds", dur, "must be greater than 0"))
    if spec.get("leaseTransitions") is not None:
        validate_nonnegative_int("spec.leaseTransitions", spec["leaseTransitions"], out)
    for key in ("acquireTime", "renewTime"):
        check_rfc3339(f"spec.{key}", spec.get(key), out)
    return out


LEASE = ResourceType(
    kind="Lease", group="coordination.k8s.io", version="v1", plural="leases",
    singular="lease", short_names=(), namespaced=True, has_status=False,
    has_generation=False, validate=validate_lease,
)
REGISTRY.register(LEASE)
