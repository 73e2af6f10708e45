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
* ``scale_of(rt, obj)`` / ``apply_scale(rt, old, scale)``: the ``scale``
  subresource of Deployment, ReplicaSet and StatefulSet: an ``autoscaling/v1`` Scale view
  of the object, and the object with a (patched) Scale's ``spec.replicas``
  (validated: ``Scale.autoscaling "x" is invalid: spec.replicas: ...``).
* ``KindHooks``: stateful per-kind write hooks (the Service IP and node-port
  allocators); ``kind_hooks(...)`` builds the table ``Resources`` consults:
  ``prepare_update`` before defaulting, ``before_create``/``before_update``
  after validation (may raise APIError, reserving nothing then),
  ``after_remove`` once the object is gone, ``rebuild`` after recovery.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.kinds.apps import SCALABLE_KINDS
from emulator.api.kinds.apps_validation import selector_string
from emulator.api.kinds.batch import generate_job_selector
from emulator.api.meta import invalid_error, validate_nonnegative_int
from emulator.api.patch import json_copy
from emulator.api.registry import ResourceType


# The status an object starts with; a client may not set it on create.
_CREATE_STATUS: dict[str, dict] = {
    "Pod": {"phase": "Pending"}, "Namespace": {"phase": "Active"},
    "Service": {"loadBalancer": {}}, "Deployment": {}, "ReplicaSet": {}, "DaemonSet": {},
    "Job": {}, "StatefulSet": {}, "PersistentVolume": {"phase": "Pending"}, "PersistentVolumeClaim": {"phase": "Pending"},
    "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                            "expectedPods": 0},
}
# Kind-specific create preparation; runs once metadata.uid is set.
_PREPARE_FOR_CREATE: dict[str, Callable[[dict], None]] = {
    "Job": generate_job_selector,
}


def prepare_for_create(rt: ResourceType, obj: dict) -> None:
    status = _CREATE_STATUS.get(rt.kind)
    if status is not None:
        obj["status"] = json_copy(status)
    prepare = _PREPARE_FOR_CREATE.get(rt.kind)
    if prepare is not None:
        prepare(obj)


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


class KindHooks:
    """Stateful write hooks of one kind; the base class does nothing."""

    def rebuild(self, objs: Iterable[dict]) -> None:
        pass

    def prepare_update(self, new: dict, old: dict) -> None:
        pass

    def before_create(self, obj: dict) -> None:
        pass

    def before_update(self, new: dict, old: dict) -> None:
        pass

    def after_remove(self, obj: dict) -> None:
        pass


def kind_hooks(service_cluster_ip_range: str | None = None,
               service_node_port_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """The per-kind hook table: Service gets the cluster IP and node-port allocators."""
    from control.apiserver.allocator import (DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR,
                                             ServiceAllocations)
    return {"Service": ServiceAllocations(service_cluster_ip_range or DEFAULT_SERVICE_CIDR,
                                          service_node_port_range or DEFAULT_NODE_PORT_RANGE)}


def scale_of(rt: ResourceType, obj: dict) -> dict:
    """The ``autoscaling/v1`` Scale of a Deployment or ReplicaSet."""
    if rt.kind not in SCALABLE_KINDS:
        raise APIError(errors.NOT_FOUND, f'{rt.resource} has no subresource "scale"')
    md = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    smd = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
           if k in md}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": smd,
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0),
                       "selector": selector_string(spec.get("selector"))}}


def apply_scale(rt: ResourceType, old: dict, scale: dict) -> dict:
    """``old`` with the Scale's spec.replicas (and resourceVersion precondition)."""
    name = old["metadata"]["name"]
    spec = scale.get("spec")
    replicas = spec.get("replicas") if isinstance(spec, dict) else None
    causes: list[dict[str, str]] = []
    validate_nonnegative_int("spec.replicas", replicas, causes)
    if causes:
        raise invalid_error("Scale.autoscaling", name, causes)
    new = json_copy(old)
    new["spec"] = dict(new.get("spec") or {}, replicas=replicas)
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv not in (None, ""):
        new["metadata"]["resourceVersion"] = rv
    return new
