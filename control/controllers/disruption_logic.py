"""The disruption controller's decisions (after ``pkg/controller/disruption/disruption.go``), without I/O.

Contract
--------
``compute_pdb_status(pdb, pods, get_owner, now) -> PdbPlan`` where ``pods`` are
the pods of the PDB's namespace (from a cache), ``get_owner(kind, namespace,
name)`` returns a cached ReplicaSet/Deployment/StatefulSet or None, and
``now`` is wall-clock epoch seconds:

* the PDB's pods: those its ``spec.selector`` matches (a missing selector
  matches none, an empty one all);
* ``expectedPods`` / ``desiredHealthy`` (``getExpectedPodCount``): with an
  integer ``minAvailable``, the number of matching pods and minAvailable;
  with a percent ``minAvailable`` or any ``maxUnavailable``, the sum of the
  ``spec.replicas`` of the pods' controllers (a ReplicaSet owned by a
  Deployment counts as the Deployment; StatefulSets too), percents rounded
  up; ``desiredHealthy = expected - maxUnavailable`` (at least 0). Pods
  without a controller are listed in ``unmanaged`` and not counted; a pod
  whose controller is not found is an error;
* ``disruptedPods`` (``buildDisruptedPodMap``): the status entries of pods that
  still exist, are not being deleted and were disrupted less than
  ``DELETION_TIMEOUT`` (2 minutes) ago; ``recheck_at`` is when the earliest
  entry expires;
* ``currentHealthy`` (``countHealthyPods``): matching pods that are Ready, not
  being deleted and not in ``disruptedPods``;
* ``disruptionsAllowed = max(0, currentHealthy - desiredHealthy)``, and 0 while
  ``expectedPods`` is 0; ``observedGeneration`` = ``metadata.generation``; the
  ``DisruptionAllowed`` condition (SufficientPods / InsufficientPods).
* On an error the status is the fail-safe one (``failSafe``): the old status
  with ``disruptionsAllowed: 0`` and the condition False/SyncFailed, the
  error as its message.
``changed`` says whether the status differs from the stored one (Kubernetes'
``updatePdbStatus`` comparison), so an unchanged PDB is not written.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from control.controllers import controller_utils as cu
from emulator.api.errors import APIError
from emulator.api.kinds.apps_validation import parse_int_or_percent
from emulator.api.kinds.policy import (
    conditions_up_to_date,
    is_pod_ready,
    update_disruption_allowed_condition,
)
from emulator.api.selectors import label_selector_from_dict

DELETION_TIMEOUT = 120.0   # Kubernetes' DeletionTimeout: 2 minutes
GetOwner = Callable[[str, str, str], "dict | None"]


@dataclass
class PdbPlan:
    status: dict[str, Any]
    changed: bool
    recheck_at: float | None = None
    unmanaged: list[str] = field(default_factory=list)
    error: str | None = None


def pods_for_pdb(pdb: dict, pods: list[dict]) -> list[dict]:
    sel = (pdb.get("spec") or {}).get("selector")
    try:
        selector = label_selector_from_dict(sel)
    except APIError:   # an invalid selector matches nothing
        return []
    ns = pdb["metadata"].get("namespace") or ""
    return [p for p in pods if (p["metadata"].get("namespace") or "") == ns
            and selector.matches(cu.labels_of(p))]


def scaled_value(v: Any, total: int, round_up: bool = True) -> int:
    """Kubernetes' ``GetScaledValueFromIntOrPercent``: an int as is, a percent of ``total``."""
    parsed = parse_int_or_percent(v)
    if parsed is None:
        raise ValueError(f"invalid value for IntOrString: {v!r}")
    n, pct = parsed
    if not pct:
        return n
    return math.ceil(n * total / 100) if round_up else math.floor(n * total / 100)


def _uid_matches(obj: dict | None, ref: dict) -> bool:
    return obj is not None and obj["metadata"].get("uid") == ref.get("uid")


def controller_scale(ref: dict, namespace: str, get_owner: GetOwner) -> tuple[str, int] | None:
    """(uid, replicas) of the controller a pod's controllerRef names, as the
    disruption controller's finders resolve it, or None if it is not found."""
    kind = ref.get("kind")
    if kind == "ReplicaSet":
        rs = get_owner("ReplicaSet", namespace, ref.get("name", ""))
        if not _uid_matches(rs, ref):
            return None
        assert rs is not None
        dref = cu.controller_ref(rs)
        if dref is not None and dref.get("kind") == "Deployment":
            dep = get_owner("Deployment", namespace, dref.get("name", ""))
            if not _uid_matches(dep, dref):
                return None
            assert dep is not None
            return dep["metadata"]["uid"], int((dep.get("spec") or {}).get("replicas") or 0)
        return rs["metadata"]["uid"], int((rs.get("spec") or {}).get("replicas") or 0)
    if kind in ("StatefulSet", "Deployment"):
        obj = get_owner(kind, namespace, ref.get("name", ""))
        if not _uid_matches(obj, ref):
            return None
        assert obj is not None
        return obj["metadata"]["uid"], int((obj.get("spec") or {}).get("replicas") or 0)
    return None


def expected_scale(pods: list[dict], get_owner: GetOwner) -> tuple[int, list[str]]:
    """(sum of the pods' controllers' replicas, unmanaged pod names); raises ValueError
    naming a pod whose controller is not found."""
    scales: dict[str, int] = {}
    unmanaged: list[str] = []
    for pod in pods:
        ref = cu.controller_ref(pod)
        if ref is None:
            unmanaged.append(pod["metadata"]["name"])
            continue
        if ref.get("uid") in scales:
            continue
        found = controller_scale(ref, pod["metadata"].get("namespace") or "", get_owner)
        if found is None:
            raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        scales[found[0]] = found[1]
    return sum(scales.values()), unmanaged


def expected_pod_count(pdb: dict, pods: list[dict], get_owner: GetOwner) -> tuple[int, int, list[str]]:
    """(expectedPods, desiredHealthy, unmanaged) (``getExpectedPodCount``)."""
    spec = pdb.get("spec") or {}
    max_u, min_a = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_u is not None:
        expected, unmanaged = expected_scale(pods, get_owner)
        return expected, max(0, expected - scaled_value(max_u, expected)), unmanaged
    if min_a is not None:
        parsed = parse_int_or_percent(min_a)
        if parsed is not None and not parsed[1]:
            return len(pods), parsed[0], []
        expected, unmanaged = expected_scale(pods, get_owner)
        return expected, scaled_value(min_a, expected), unmanaged
    return 0, 0, []


def disrupted_pod_map(pdb: dict, pods: list[dict], now: float) -> tuple[dict[str, str], float | None]:
    """(the disruptedPods to keep, when the earliest kept entry expires)."""
    old = (pdb.get("status") or {}).get("disruptedPods") or {}
    out: dict[str, str] = {}
    recheck: float | None = None
    for pod in pods:
        md = pod["metadata"]
        if md.get("deletionTimestamp") or md["name"] not in old:
            continue
        at = cu.parse_time(old[md["name"]])
        if at is None:
            continue
        expires = at + DELETION_TIMEOUT
        if expires < now:
            continue   # Kubernetes records a NotDeleted warning here
        out[md["name"]] = old[md["name"]]
        recheck = expires if recheck is None else min(recheck, expires)
    return out, recheck


def count_healthy(pods: list[dict], disrupted: dict[str, str], now: float) -> int:
    n = 0
    for pod in pods:
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            continue
        at = cu.parse_time(disrupted.get(md["name"]))
        if at is not None and at + DELETION_TIMEOUT > now:
            continue
        if is_pod_ready(pod):
            n += 1
    return n


def _same_status(pdb: dict, new: dict[str, Any]) -> bool:
    old = pdb.get("status") or {}
    keys = ("currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed")
    return (all((old.get(k) or 0) == new[k] for k in keys)
            and (old.get("disruptedPods") or {}) == (new.get("disruptedPods") or {})
            and old.get("observedGeneration") == (pdb["metadata"].get("generation") or 0)
            and conditions_up_to_date(pdb))


def fail_safe_status(pdb: dict, error: str, now: float) -> dict[str, Any]:
    status = copy.deepcopy(pdb.get("status") or {})
    status["disruptionsAllowed"] = 0
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
    prev = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    stamp = cu.format_time(now)
    conds.append({"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed", "message": error,
                  "observedGeneration": status.get("observedGeneration") or 0,
                  "lastTransitionTime": prev.get("lastTransitionTime") or stamp
                  if prev is not None and prev.get("status") == "False" else stamp})
    status["conditions"] = conds
    return status


def compute_pdb_status(pdb: dict, pods: list[dict], get_owner: GetOwner, now: float) -> PdbPlan:
    mine = pods_for_pdb(pdb, pods)
    try:
        expected, desired, unmanaged = expected_pod_count(pdb, mine, get_owner)
    except ValueError as e:
        status = fail_safe_status(pdb, str(e), now)
        return PdbPlan(status, status != (pdb.get("status") or {}), error=str(e))
    disrupted, recheck = disrupted_pod_map(pdb, mine, now)
    healthy = count_healthy(mine, disrupted, now)
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status: dict[str, Any] = {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                              "disruptionsAllowed": allowed,
                              "observedGeneration": pdb["metadata"].get("generation") or 0}
    if disrupted:
        status["disruptedPods"] = disrupted
    if _same_status(pdb, status):
        return PdbPlan(pdb.get("status") or {}, False, recheck, unmanaged)
    status["conditions"] = copy.deepcopy((pdb.get("status") or {}).get("conditions") or [])
    update_disruption_allowed_condition(status, cu.format_time(now))
    return PdbPlan(status, True, recheck, unmanaged)
