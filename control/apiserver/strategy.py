"""Per-kind write strategies, after the kube-apiserver's ``pkg/registry`` strategies.

Contract: each hook receives fresh dicts it may change in place.

* ``prepare_for_create(obj)``: reset what a client may not set on create
  (a Pod's status becomes ``{phase: Pending}``; defaulting then fills qosClass).
* ``prepare_for_update(new, old)``: carry over what the main resource may not
  change (status, for kinds with a status subresource).
* ``prepare_for_status_update(new, old)``: the reverse: only status changes.
* ``graceful_period(obj, requested)``: the grace period a delete gets, or 0 to
  delete at once. Only pods are graceful: an unscheduled or finished pod goes
  at once, as in Kubernetes.
"""
from __future__ import annotations

from typing import Any

from emulator.api.registry import ResourceType


def prepare_for_create(rt: ResourceType, obj: dict) -> None:
    if rt.kind == "Pod":
        obj["status"] = {"phase": "Pending"}
    elif rt.kind == "Namespace":
        obj["status"] = {"phase": "Active"}


def prepare_for_update(rt: ResourceType, new: dict, old: dict) -> None:
    if rt.has_status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)


def prepare_for_status_update(rt: ResourceType, new: dict, old: dict) -> dict:
    """Build the object a status write stores: the old object with the new status."""
    out = dict(old)
    out["metadata"] = dict(old["metadata"])
    if "status" in new:
        out["status"] = new["status"]
    else:
        out.pop("status", None)
    return out


def graceful_period(rt: ResourceType, obj: dict, requested: int | None) -> int:
    if rt.kind != "Pod":
        return 0
    spec: dict[str, Any] = obj.get("spec") or {}
    if requested is None:
        requested = spec.get("terminationGracePeriodSeconds", 30)
    if not spec.get("nodeName"):
        return 0
    if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    return max(0, int(requested))
