"""The ReplicaSet controller's decisions (after ``pkg/controller/replicaset``), without I/O.

Contract
--------
``reconcile_replicaset(rs, pods, now, burst=500) -> ReplicaSetPlan`` where
``pods`` are the pods of the ReplicaSet's namespace (from a cache) and ``now``
is wall-clock epoch seconds:

* ``adopt``: active pods matching the selector with no controller ownerRef;
* ``release``: pods controlled by this RS whose labels no longer match;
* owned = controlled-and-matching plus adopted; only active pods count
  (no ``deletionTimestamp``, phase not Succeeded/Failed);
* ``create``: how many pods to create (at most ``burst``, Kubernetes'
  burstReplicas) when owned < ``spec.replicas``; ``delete``: the surplus
  pods in deletion order (``pod_deletion_rank``), at most ``burst``;
* ``status``: ``replicas``, ``fullyLabeledReplicas``, ``readyReplicas``,
  ``availableReplicas``, ``observedGeneration`` computed from the owned pods,
  as Kubernetes does (before the creates and deletes land);
* ``requeue_at``: the earliest wall time a ready pod becomes available
  (``minReadySeconds``), or None.
A RS being deleted creates and deletes nothing.

``pod_from_template(rs)`` builds the pod a ReplicaSet creates: template
labels/annotations/spec, ``generateName: <rs>-``, the controller ownerRef.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from control.controllers import controller_utils as cu
from emulator.api.selectors import label_selector_from_dict

BURST_REPLICAS = 500


@dataclass
class ReplicaSetPlan:
    adopt: list[dict] = field(default_factory=list)
    release: list[dict] = field(default_factory=list)
    create: int = 0
    delete: list[dict] = field(default_factory=list)
    status: dict = field(default_factory=dict)
    requeue_at: float | None = None


def replicas_of(obj: dict) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def calculate_status(rs: dict, owned: list[dict], now: float) -> tuple[dict, float | None]:
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully = ready = available = 0
    requeue: float | None = None
    for p in owned:
        labels = cu.labels_of(p)
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if cu.is_pod_ready(p):
            ready += 1
            if cu.is_pod_available(p, min_ready, now):
                available += 1
            else:
                at = cu.available_at(p, min_ready)
                if at is not None:
                    requeue = at if requeue is None else min(requeue, at)
    status = {"replicas": len(owned), "fullyLabeledReplicas": fully, "readyReplicas": ready,
              "availableReplicas": available,
              "observedGeneration": (rs.get("metadata") or {}).get("generation", 1)}
    return status, requeue


def reconcile_replicaset(rs: dict, pods: list[dict], now: float, burst: int = BURST_REPLICAS) -> ReplicaSetPlan:
    plan = ReplicaSetPlan()
    md = rs["metadata"]
    uid = md.get("uid")
    selector = label_selector_from_dict((rs.get("spec") or {}).get("selector"))
    owned: list[dict] = []
    for p in pods:
        ref = cu.controller_ref(p)
        matches = selector.matches(cu.labels_of(p))
        if ref is not None and ref.get("uid") == uid:
            if matches:
                if cu.is_pod_active(p):
                    owned.append(p)
            else:
                plan.release.append(p)
        elif ref is None and matches and cu.is_pod_active(p) and not md.get("deletionTimestamp"):
            plan.adopt.append(p)
            owned.append(p)
    plan.status, plan.requeue_at = calculate_status(rs, owned, now)
    if md.get("deletionTimestamp"):
        return plan
    diff = len(owned) - replicas_of(rs)
    if diff < 0:
        plan.create = min(-diff, burst)
    elif diff > 0:
        plan.delete = sorted(owned, key=cu.pod_deletion_rank)[:min(diff, burst)]
    return plan


def pod_from_template(rs: dict) -> dict:
    md = rs["metadata"]
    tmpl = (rs.get("spec") or {}).get("template") or {}
    tmd = tmpl.get("metadata") or {}
    meta: dict = {"generateName": f"{md['name']}-", "namespace": md.get("namespace") or "default",
                  "ownerReferences": [cu.owner_ref(rs, "ReplicaSet")]}
    if tmd.get("labels"):
        meta["labels"] = dict(tmd["labels"])
    if tmd.get("annotations"):
        meta["annotations"] = dict(tmd["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}


def status_changed(old: dict | None, new: dict) -> bool:
    old = old or {}
    return any(old.get(k, 0) != v for k, v in new.items())
