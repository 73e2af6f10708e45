"""Pure decisions of the node lifecycle controller and the taint eviction controller.

After Kubernetes' ``pkg/controller/nodelifecycle`` (``tryUpdateNodeHealth``,
``doNoScheduleTaintingPass``, ``doNoExecuteTaintingPass``) and
``pkg/controller/tainteviction``. No I/O: every function takes plain objects
and times and returns what should change; the component applies it.

Contract
--------
* Health (``NodeHealth``, Kubernetes' ``nodeHealthData``): the controller
  keeps, per node, the *probe timestamp*: the time on its own clock at which
  it last saw the node's Lease ``spec.renewTime`` or its Ready condition's
  ``lastHeartbeatTime`` change (and when it first saw the node). Remote
  timestamps are only compared for change, never against the local clock, so
  a node's clock skew is harmless. A node is stale when
  ``now - probe_timestamp > grace``.
* A stale node gets every condition in ``NODE_CONDITIONS`` set to
  ``Unknown`` with reason ``NodeStatusUnknown`` and message
  ``Kubelet stopped posting node status.`` (a missing condition is added with
  ``NodeStatusNeverUpdated`` / ``Kubelet never posted node status.`` and the
  node's creationTimestamp as its heartbeat). ``lastHeartbeatTime`` is kept;
  ``lastTransitionTime`` is now when the status changed.
* Taints (``desired_taints``): Ready False -> ``not-ready`` NoExecute and
  NoSchedule; Ready Unknown -> ``unreachable`` NoExecute and NoSchedule;
  Ready True -> neither. MemoryPressure/DiskPressure/PIDPressure/
  NetworkUnavailable True and ``spec.unschedulable`` add their NoSchedule
  taints (TaintNodesByCondition). Taints the controller does not manage are
  kept untouched; a kept managed taint keeps its ``timeAdded``.
* Pods of a node whose Ready leaves True get their Ready condition set to
  False (``pod_not_ready_conditions``, Kubernetes' ``MarkPodsNotReady``), so
  endpoints stop routing to them although their kubelet is silent.
* Eviction (``pods_to_evict``): for a pod on a node with NoExecute taints, a
  taint no toleration matches evicts at once; otherwise the pod is evicted at
  ``taint time + min(tolerationSeconds)`` over the tolerations used, where an
  absent tolerationSeconds tolerates forever and a value <= 0 evicts at once.
  Kubernetes counts from when its taint manager saw the taint; kemu counts
  from the taint's ``timeAdded`` (so a restarted controller-manager keeps the
  schedule).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from emulator.events import rfc3339

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# condition type -> taint key added with NoSchedule when the condition is True
_CONDITION_NO_SCHEDULE = {"MemoryPressure": TAINT_MEMORY_PRESSURE, "DiskPressure": TAINT_DISK_PRESSURE,
                          "PIDPressure": TAINT_PID_PRESSURE,
                          "NetworkUnavailable": TAINT_NETWORK_UNAVAILABLE}
MANAGED_TAINTS = frozenset({(TAINT_NOT_READY, "NoExecute"), (TAINT_UNREACHABLE, "NoExecute"),
                            (TAINT_NOT_READY, "NoSchedule"), (TAINT_UNREACHABLE, "NoSchedule"),
                            (TAINT_UNSCHEDULABLE, "NoSchedule")}
                           | {(k, "NoSchedule") for k in _CONDITION_NO_SCHEDULE.values()})

REASON_UNKNOWN = "NodeStatusUnknown"
MESSAGE_UNKNOWN = "Kubelet stopped posting node status."
REASON_NEVER_UPDATED = "NodeStatusNeverUpdated"
MESSAGE_NEVER_UPDATED = "Kubelet never posted node status."

FOREVER = float("inf")


# -- time ---------------------------------------------------------------------
def parse_rfc3339(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- health ---------------------------------------------------------------------
@dataclass
class NodeHealth:
    """What the controller last saw of a node (Kubernetes' ``nodeHealthData``)."""
    probe_timestamp: float        # controller clock: last heartbeat seen changing
    renew_time: str | None        # Lease spec.renewTime last seen
    heartbeat: str | None         # Ready condition lastHeartbeatTime last seen


def condition(node: dict, type_: str) -> dict | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def ready_status(node: dict) -> str:
    """The Ready condition's status: "True", "False" or "Unknown" (missing = Unknown)."""
    c = condition(node, "Ready")
    status = c.get("status") if c else None
    return status if status in ("True", "False") else "Unknown"


def observe(health: NodeHealth | None, node: dict, lease: dict | None, now: float) -> NodeHealth:
    """Update (or start) a node's health record from what the informers show now."""
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    ready = condition(node, "Ready")
    heartbeat = ready.get("lastHeartbeatTime") if ready else None
    if health is None:
        return NodeHealth(now, renew, heartbeat)
    if renew != health.renew_time or heartbeat != health.heartbeat:
        return NodeHealth(now, renew, heartbeat)
    return health


def node_health(health: NodeHealth, now: float, grace: float) -> str:
    """"Healthy" while a heartbeat was seen within ``grace``, else "Stale"."""
    return "Stale" if now - health.probe_timestamp > grace else "Healthy"


def unknown_conditions(node: dict, now_wall: float) -> list[dict] | None:
    """The node's conditions with every ``NODE_CONDITIONS`` entry set to Unknown.

    Returns None when they already are (nothing to write).
    """
    stamp = rfc3339(now_wall)
    created = (node.get("metadata") or {}).get("creationTimestamp") or stamp
    old = [c for c in (node.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    by_type = {c.get("type"): c for c in old}
    changed = False
    out: list[dict] = []
    for c in old:
        if c.get("type") in NODE_CONDITIONS and (c.get("status") != "Unknown"
                                                 or c.get("reason") not in (REASON_UNKNOWN,
                                                                            REASON_NEVER_UPDATED)):
            c = {**c, "status": "Unknown", "reason": REASON_UNKNOWN, "message": MESSAGE_UNKNOWN,
                 "lastTransitionTime": stamp if c.get("status") != "Unknown"
                 else c.get("lastTransitionTime", stamp)}
            changed = True
        out.append(c)
    for t in NODE_CONDITIONS:
        if t not in by_type:
            out.append({"type": t, "status": "Unknown", "reason": REASON_NEVER_UPDATED,
                        "message": MESSAGE_NEVER_UPDATED, "lastHeartbeatTime": created,
                        "lastTransitionTime": stamp})
            changed = True
    return out if changed else None


# -- taints ---------------------------------------------------------------------
def _wanted_taints(node: dict) -> list[tuple[str, str]]:
    ready = ready_status(node)
    wanted: list[tuple[str, str]] = []
    if ready == "False":
        wanted += [(TAINT_NOT_READY, "NoExecute"), (TAINT_NOT_READY, "NoSchedule")]
    elif ready == "Unknown":
        wanted += [(TAINT_UNREACHABLE, "NoExecute"), (TAINT_UNREACHABLE, "NoSchedule")]
    for type_, key in _CONDITION_NO_SCHEDULE.items():
        c = condition(node, type_)
        if c and c.get("status") == "True":
            wanted.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable") is True:
        wanted.append((TAINT_UNSCHEDULABLE, "NoSchedule"))
    return wanted


def desired_taints(node: dict, now_wall: float) -> list[dict] | None:
    """The node's taints as the controller wants them, or None when they already are."""
    current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    wanted = _wanted_taints(node)
    have = {(t.get("key"), t.get("effect")) for t in current}
    out = [t for t in current if (t.get("key"), t.get("effect")) not in MANAGED_TAINTS
           or (t.get("key"), t.get("effect")) in wanted]
    for key, effect in wanted:
        if (key, effect) not in have:
            out.append({"key": key, "effect": effect, "timeAdded": rfc3339(now_wall)})
    return None if len(out) == len(current) and all(a is b for a, b in zip(out, current)) else out


def taint_changes(old: list[dict] | None, new: list[dict] | None) -> tuple[list[dict], list[dict]]:
    """(added, removed) between two taint lists, compared by (key, effect)."""
    def keys(ts: list[dict] | None) -> dict[tuple, dict]:
        return {(t.get("key"), t.get("effect")): t for t in ts or []}
    o, n = keys(old), keys(new)
    return [t for k, t in n.items() if k not in o], [t for k, t in o.items() if k not in n]


# -- pods of a node that is not ready (MarkPodsNotReady) -------------------------
def pod_not_ready_conditions(pod: dict, now_wall: float) -> list[dict] | None:
    """The pod's conditions with Ready set to False, or None when Ready is absent or already False.

    Kubernetes' ``MarkPodsNotReady`` only flips an existing Ready condition.
    """
    conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    out, changed = [], False
    for c in conds:
        if c.get("type") == "Ready" and c.get("status") != "False":
            c = {**c, "status": "False", "lastTransitionTime": rfc3339(now_wall)}
            changed = True
        out.append(c)
    return out if changed else None


# -- eviction -------------------------------------------------------------------
def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def min_toleration_seconds(pod: dict, taints: Iterable[dict]) -> float | None:
    """Seconds the pod tolerates all ``taints``: None if one is not tolerated, FOREVER if never evicted."""
    tols = [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)]
    best = FOREVER
    for taint in taints:
        used = [t for t in tols if tolerates(t, taint)]
        if not used:
            return None
        for t in used:
            secs = t.get("tolerationSeconds")
            if secs is None:
                continue
            best = min(best, max(0.0, float(secs)))
    return best


def pods_to_evict(taints: list[dict], pods: Iterable[dict], now_wall: float,
                  taint_times: dict[tuple[str, str], float] | None = None) -> list[tuple[dict, float]]:
    """(pod, when) for every pod that must go because of the node's NoExecute taints.

    ``when`` is a wall time; ``when <= now_wall`` means evict now. Pods already
    marked for deletion are skipped. ``taint_times`` overrides a taint's
    ``timeAdded`` (the controller's precise record of taints it added itself;
    ``timeAdded`` has only second precision).
    """
    no_exec = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_exec:
        return []
    times = taint_times or {}
    out: list[tuple[dict, float]] = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        secs = min_toleration_seconds(pod, no_exec)
        if secs is None:
            out.append((pod, now_wall))
            continue
        if secs == FOREVER:
            continue
        started = [times.get((t.get("key"), "NoExecute")) or parse_rfc3339(t.get("timeAdded"))
                   for t in no_exec]
        known = [s for s in started if s is not None]
        start = min(known) if known else now_wall
        out.append((pod, start + secs))
    return out
