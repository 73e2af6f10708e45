"""The scheduler's node cache: one NodeInfo per Node, updated incrementally.

Contract (after kube-scheduler's ``internal/cache``):
* ``NodeInfo`` holds the Node's allocatable resources, its effective taints,
  and the summed requests of the pods assigned to it, counted once each.
* Pods reach the cache from the Pod informer (``add_pod``/``update_pod``/
  ``remove_pod``) when they have ``spec.nodeName`` and are not terminal
  (Succeeded/Failed pods free their resources, as the scheduler's informer
  filters them out). ``assume_pod`` counts a pod on its chosen node as soon as
  the binding is sent; the informer's later add confirms it, ``forget_pod``
  undoes it when the binding fails.
* A pod on a Node the cache has not seen yet is kept on a placeholder
  NodeInfo (``node is None``) that is never offered for scheduling, so its
  requests are counted once the Node arrives.
* Per-owner counts (``ownerReferences`` controller uid) are kept per node and
  per zone (``topology.kubernetes.io/zone``) for spreading, so scoring never
  walks the pod list. Every operation is O(1) in the number of pods.
* A Node whose Ready condition is not True gets the taint the node lifecycle
  controller would add (``node.kubernetes.io/not-ready`` for False,
  ``node.kubernetes.io/unreachable`` for Unknown or missing), with effect
  NoSchedule, unless the Node already carries it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.api.quantity import cpu_millis, memory_bytes

from control.scheduler.podinfo import (PodInfo, Resources, controller_uid, non_zero_requests, pod_key,
                                      pod_requests)

ZONE_LABEL = "topology.kubernetes.io/zone"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
PodKey = tuple[str, str]
UNKNOWN = -1        # a score row's entry for a node not known to fit the shape (scores are 0..100)
MAX_SHAPES = 32     # score rows kept; the oldest shape's row goes first


def _q(fn: Any, v: Any, default: int = 0) -> int:
    if v is None:
        return default
    try:
        return fn(v)
    except (ValueError, TypeError):
        return default


def ready_status(node: dict) -> str:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status") or "Unknown"
    return "Unknown"


def effective_taints(node: dict) -> list[dict]:
    """The Node's NoSchedule/NoExecute taints, plus the not-ready/unreachable one its Ready condition implies."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or ()
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    ready = ready_status(node)
    if ready != "True":
        key = TAINT_NOT_READY if ready == "False" else TAINT_UNREACHABLE
        if not any(t.get("key") == key for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


@dataclass(slots=True)
class NodeInfo:
    name: str
    node: dict | None = None
    labels: dict[str, str] = field(default_factory=dict)
    zone: str = ""
    allocatable: Resources = (0, 0, 0)
    allowed_pods: int = 0
    taints: list[dict] = field(default_factory=list)
    unschedulable: bool = False
    requested: Resources = (0, 0, 0)
    non_zero_requested: Resources = (0, 0, 0)
    pods: dict[PodKey, tuple[Resources, Resources, str | None]] = field(default_factory=dict)
    owner_counts: dict[str, int] = field(default_factory=dict)
    # Derived, kept by ``_derive`` at every change above, for the per-node loops of a cycle:
    # ``plain``: schedulable and untainted; ``free``: allocatable minus requested (cpu,
    # memory, ephemeral-storage) and the pod slots left; ``fit``: allocatable cpu and memory
    # minus the non-zero requests, then allocatable cpu and memory (least_allocated's inputs).
    # ``slot``: the node's index in the cache's ``node_infos()`` (-1: not a candidate);
    # ``scores``: the cache's score rows (``Cache.shape_row``), shared by every NodeInfo of
    # the cache; every change marks the node's slot UNKNOWN in each, so none is stale.
    plain: bool = True
    free: tuple[int, int, int, int] = (0, 0, 0, 0)
    fit: tuple[int, int, int, int] = (0, 0, 0, 0)
    slot: int = -1
    scores: dict[str, list[int]] | None = None

    def _derive(self) -> None:
        a, r, n = self.allocatable, self.requested, self.non_zero_requested
        self.plain = not self.unschedulable and not self.taints
        self.free = (a[0] - r[0], a[1] - r[1], a[2] - r[2], self.allowed_pods - len(self.pods))
        self.fit = (a[0] - n[0], a[1] - n[1], a[0], a[1])
        if self.slot >= 0 and self.scores:
            slot = self.slot
            for row in self.scores.values():
                row[slot] = UNKNOWN

    def set_node(self, node: dict) -> None:
        self.node = node
        md = node.get("metadata") or {}
        self.labels = dict(md.get("labels") or {})
        self.zone = self.labels.get(ZONE_LABEL, "")
        alloc = (node.get("status") or {}).get("allocatable") or {}
        self.allocatable = (_q(cpu_millis, alloc.get("cpu")), _q(memory_bytes, alloc.get("memory")),
                            _q(memory_bytes, alloc.get("ephemeral-storage")))
        self.allowed_pods = _q(memory_bytes, alloc.get("pods"))
        self.taints = effective_taints(node)
        self.unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
        self._derive()

    def fingerprint(self) -> tuple:
        """What filtering and scoring read from the Node; a change may make pods schedulable."""
        return (self.allocatable, self.allowed_pods, tuple(sorted(self.labels.items())),
                tuple((t.get("key"), t.get("value"), t.get("effect")) for t in self.taints),
                self.unschedulable)

    def add(self, key: PodKey, req: Resources, nz: Resources, owner: str | None) -> None:
        self.pods[key] = (req, nz, owner)
        r, n = self.requested, self.non_zero_requested
        self.requested = (r[0] + req[0], r[1] + req[1], r[2] + req[2])
        self.non_zero_requested = (n[0] + nz[0], n[1] + nz[1], n[2] + nz[2])
        self._derive()
        if owner:
            self.owner_counts[owner] = self.owner_counts.get(owner, 0) + 1

    def remove(self, key: PodKey) -> str | None:
        req, nz, owner = self.pods.pop(key)
        r, n = self.requested, self.non_zero_requested
        self.requested = (r[0] - req[0], r[1] - req[1], r[2] - req[2])
        self.non_zero_requested = (n[0] - nz[0], n[1] - nz[1], n[2] - nz[2])
        self._derive()
        if owner:
            left = self.owner_counts.get(owner, 0) - 1
            if left > 0:
                self.owner_counts[owner] = left
            else:
                self.owner_counts.pop(owner, None)
        return owner


def _terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.node_order: list[str] = []       # schedulable candidates, in arrival order
        self.pod_node: dict[PodKey, str] = {}
        self.assumed: set[PodKey] = set()
        self.zone_owner_counts: dict[str, dict[str, int]] = {}
        self._node_infos: list[NodeInfo] | None = None
        # shape key -> each candidate's least_allocated score for a pod of that shape, by slot
        # (``node_infos()`` order), or UNKNOWN: kept for plain nodes only, by the framework.
        self.score_rows: dict[str, list[int]] = {}

    def _new_node_info(self, name: str) -> NodeInfo:
        ni = self.nodes[name] = NodeInfo(name)
        ni.scores = self.score_rows
        return ni

    # -- nodes --------------------------------------------------------------
    def add_node(self, node: dict) -> bool:
        """Add or update a Node; True if anything scheduling reads changed."""
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self._new_node_info(name)
        before = ni.fingerprint() if ni.node is not None else None
        old_zone = ni.zone
        was_real = ni.node is not None
        ni.set_node(node)
        if not was_real:
            self.node_order.append(name)
            self._node_infos = None
        if ni.zone != old_zone:
            for owner, n in ni.owner_counts.items():
                self._zone_count(old_zone, owner, -n)
                self._zone_count(ni.zone, owner, n)
        return before != ni.fingerprint()

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self.nodes.get(name)
        if ni is None or ni.node is None:
            return
        self.node_order.remove(name)
        self._node_infos = None
        if ni.pods:
            ni.node = None   # keep counting its pods until they go, as kube-scheduler does
            ni.taints = []
            ni._derive()
        else:
            for owner, n in ni.owner_counts.items():
                self._zone_count(ni.zone, owner, -n)
            del self.nodes[name]

    def node_infos(self) -> list[NodeInfo]:
        """The schedulable candidates (shared list: do not mutate)."""
        if self._node_infos is None:
            for ni in self.nodes.values():
                ni.slot = -1
            self._node_infos = [self.nodes[n] for n in self.node_order]
            for i, ni in enumerate(self._node_infos):
                ni.slot = i
            self.score_rows.clear()   # slots moved: every row starts again
        return self._node_infos

    def shape_row(self, key: str) -> list[int]:
        """The score row of pods of shape ``key``, one entry per ``node_infos()`` slot
        (UNKNOWN until the framework fills it in); at most MAX_SHAPES rows are kept."""
        n = len(self.node_infos())
        row = self.score_rows.get(key)
        if row is None:
            if len(self.score_rows) >= MAX_SHAPES:
                del self.score_rows[next(iter(self.score_rows))]
            row = self.score_rows[key] = [UNKNOWN] * n
        return row

    # -- pods ---------------------------------------------------------------
    def _zone_count(self, zone: str, owner: str, delta: int) -> None:
        if not zone:
            return
        counts = self.zone_owner_counts.setdefault(zone, {})
        v = counts.get(owner, 0) + delta
        if v > 0:
            counts[owner] = v
        else:
            counts.pop(owner, None)

    def _place(self, key: PodKey, pod: dict, node_name: str, info: PodInfo | None = None) -> None:
        ni = self.nodes.get(node_name)
        if ni is None:
            ni = self._new_node_info(node_name)
        if info is not None:
            req, nz, owner = info.requests, info.non_zero, info.owner
        else:
            req, nz, owner = pod_requests(pod), non_zero_requests(pod), controller_uid(pod)
        ni.add(key, req, nz, owner)
        self.pod_node[key] = node_name
        if owner:
            self._zone_count(ni.zone, owner, 1)

    def _unplace(self, key: PodKey) -> None:
        node_name = self.pod_node.pop(key, None)
        if node_name is None:
            return
        ni = self.nodes[node_name]
        owner = ni.remove(key)
        if owner:
            self._zone_count(ni.zone, owner, -1)
        if ni.node is None and not ni.pods:
            del self.nodes[node_name]

    def assume_pod(self, pod: dict, node_name: str, info: PodInfo | None = None) -> None:
        """Count the pod on its chosen node; ``info`` (its PodInfo) saves reading the pod again."""
        key = pod_key(pod)
        self._unplace(key)
        self._place(key, pod, node_name, info)
        self.assumed.add(key)

    def forget_pod(self, key: PodKey) -> None:
        if key in self.assumed:
            self.assumed.discard(key)
            self._unplace(key)

    def add_pod(self, pod: dict) -> None:
        """An assigned pod from the informer (confirms an assumed one)."""
        key = pod_key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        self.assumed.discard(key)
        if not node_name or _terminal(pod):
            self._unplace(key)
            return
        if self.pod_node.get(key) == node_name and key in self.pod_node:
            # Same node: requests are immutable for a bound pod; only refresh if they differ.
            ni = self.nodes[node_name]
            req, nz, owner = ni.pods[key]
            if req == pod_requests(pod) and owner == controller_uid(pod):
                return
        self._unplace(key)
        self._place(key, pod, node_name)

    update_pod = add_pod

    def remove_pod(self, pod: dict) -> bool:
        """True if the pod was counted on a node (its resources are now free)."""
        key = pod_key(pod)
        self.assumed.discard(key)
        had = key in self.pod_node
        self._unplace(key)
        return had

    def owner_count_in_zone(self, zone: str, owner: str) -> int:
        return self.zone_owner_counts.get(zone, {}).get(owner, 0)
