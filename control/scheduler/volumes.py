"""The scheduler's side of volume binding: storage informers' handlers, Reserve and PreBind.

Contract (after kube-scheduler's VolumeBinding Reserve/PreBind):
* ``VolumeBinder`` feeds a ``VolumeCache`` from the PVC, PV and StorageClass
  informers. Any storage change sets ``changed``; the scheduler then moves its
  unschedulable pods that use claims back to activeQ or backoffQ, once per step.
* ``track(pod)`` counts an assigned or assumed pod as a user of its claims
  (ReadWriteOncePod); ``untrack(key)`` forgets it.
* ``reserve(key, state, node)``, after a node is chosen for a pod with delayed
  (WaitForFirstConsumer, unbound) claims: assumes the PVs the plan takes and
  the claims' selected node, registers the pod as waiting, and returns the
  claims whose ``volume.kubernetes.io/selected-node`` annotation must be
  patched to ``node``. The PV controller then binds or provisions.
* ``check_waiting(now, cache)`` ends waits: a pod is ready to bind once every
  one of its delayed claims is bound (``spec.volumeName`` and bind-completed
  or phase Bound) to a known PV whose node affinity admits the node. It fails
  (with kube-scheduler's PreBind error) when a claim is gone, its selected-node
  annotation is not ``node`` in a version at least as new as our patch's, or
  after it was seen set (the provisioner's signal to reschedule), its PV does
  not admit the node, or ``bind_timeout`` passed.
  Only waits whose claims or PVs changed, or whose deadline passed, are looked
  at. Ready or failed pods' assumptions are released by the caller (``done``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.scheduler.cache import Cache
from control.scheduler.volumebinding import (PodVolumes, is_fully_bound, not_found_message, pre_filter,
                                             pv_admits)
from control.scheduler.volumecache import (ANN_SELECTED_NODE, ClaimKey, PodKey, VolumeCache, claim_ref_key,
                                           pod_claim_names)

PREBIND = 'running PreBind plugin "VolumeBinding": binding volumes: '


def _rv(obj: dict) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or -1)
    except (TypeError, ValueError):
        return -1


@dataclass
class WaitingPod:
    key: PodKey
    qp: Any                     # the QueuedPod, in flight while it waits
    node: str
    claims: list[ClaimKey]
    deadline: float
    seen: set[ClaimKey] = field(default_factory=set)   # claims seen annotated with ``node``
    patched: dict[ClaimKey, int] = field(default_factory=dict)   # resourceVersion our patch made


class VolumeBinder:
    def __init__(self, bind_timeout: float) -> None:
        self.cache = VolumeCache()
        self.bind_timeout = bind_timeout
        self.changed = False
        self.waiting: dict[PodKey, WaitingPod] = {}
        self.by_claim: dict[ClaimKey, set[PodKey]] = {}
        self.dirty: set[ClaimKey] = set()

    # -- informer handlers -------------------------------------------------
    def _touch(self, key: ClaimKey | None) -> None:
        self.changed = True
        if key is not None and key in self.by_claim:
            self.dirty.add(key)

    def on_pvc(self, pvc: dict) -> None:
        self.cache.add_pvc(pvc)
        md = pvc["metadata"]
        self._touch((md.get("namespace") or "", md["name"]))

    def on_pvc_update(self, _old: dict, new: dict) -> None:
        self.on_pvc(new)

    def on_pvc_delete(self, pvc: dict) -> None:
        self.cache.remove_pvc(pvc)
        md = pvc["metadata"]
        self._touch((md.get("namespace") or "", md["name"]))

    def on_pv(self, pv: dict) -> None:
        self.cache.add_pv(pv)
        self._touch(claim_ref_key(pv))

    def on_pv_update(self, old: dict, new: dict) -> None:
        self.on_pv(new)
        ref = claim_ref_key(old)
        if ref is not None and ref in self.by_claim:
            self.dirty.add(ref)

    def on_pv_delete(self, pv: dict) -> None:
        self.cache.remove_pv(pv)
        self._touch(claim_ref_key(pv))

    def on_class(self, sc: dict) -> None:
        self.cache.add_class(sc)
        self.changed = True

    def on_class_update(self, _old: dict, new: dict) -> None:
        self.on_class(new)

    def on_class_delete(self, sc: dict) -> None:
        self.cache.remove_class(sc)
        self.changed = True

    # -- pods using claims ---------------------------------------------------
    def track(self, pod: dict) -> None:
        md = pod["metadata"]
        key = (md.get("namespace") or "", md["name"])
        names = pod_claim_names(pod)
        if names or key in self.cache.pod_claims:
            self.cache.track_pod(key, key[0], names)

    def untrack(self, key: PodKey) -> None:
        if key in self.cache.pod_claims:
            self.cache.track_pod(key, key[0], [])

    # -- a scheduling cycle --------------------------------------------------
    def pre_filter(self, pod: dict, cache: Cache) -> tuple[PodVolumes | None, str]:
        return pre_filter(pod, self.cache, lambda n: n in cache.nodes and cache.nodes[n].node is not None)

    def reserve(self, key: PodKey, qp: Any, state: PodVolumes, node: str, now: float,
                cache: Cache) -> list[ClaimKey] | None:
        """Assume the plan on ``node``; the claims to annotate. None if the plan no longer fits."""
        ni = cache.nodes.get(node)
        plan = state.plan(ni) if ni is not None else None
        if plan is None:
            return None
        patches: list[ClaimKey] = []
        for dc, pv in plan:
            if pv is not None:
                self.cache.assume_pv(pv, dc.key, key)
            ann = (dc.pvc.get("metadata") or {}).get("annotations") or {}
            if ann.get(ANN_SELECTED_NODE) != node:
                patches.append(dc.key)
            self.cache.assume_selected_node(dc.key, node, key)
        wp = WaitingPod(key, qp, node, [dc.key for dc, _ in plan], now + self.bind_timeout)
        self.waiting[key] = wp
        for ck in wp.claims:
            self.by_claim.setdefault(ck, set()).add(key)
            self.dirty.add(ck)      # it may already be bound (another pod's claim)
        return patches

    def patched(self, key: PodKey, claim: ClaimKey, obj: Any) -> None:
        """Our selected-node patch of ``claim`` succeeded, giving ``obj``."""
        wp = self.waiting.get(key)
        rv = _rv(obj) if isinstance(obj, dict) else -1
        if wp is not None and rv >= 0:
            wp.patched[claim] = rv
            self.dirty.add(claim)

    def next_deadline(self) -> float | None:
        if not self.waiting:
            return None
        return min(wp.deadline for wp in self.waiting.values())

    def check_waiting(self, now: float, cache: Cache) -> tuple[list[WaitingPod], list[tuple[WaitingPod, str]]]:
        """Waiting pods now ready to bind, and those that failed (with their error)."""
        if not self.waiting:
            return [], []
        keys: set[PodKey] = set()
        for ck in self.dirty:
            keys.update(self.by_claim.get(ck) or ())
        self.dirty.clear()
        keys.update(k for k, wp in self.waiting.items() if wp.deadline <= now)
        ready: list[WaitingPod] = []
        failed: list[tuple[WaitingPod, str]] = []
        for key in sorted(keys):
            wp = self.waiting.get(key)
            if wp is None:
                continue
            verdict = self._check(wp, cache)
            if verdict is True:
                ready.append(self._forget(key))
            elif verdict:
                failed.append((self._forget(key), PREBIND + verdict))
            elif wp.deadline <= now:
                failed.append((self._forget(key), PREBIND + "context deadline exceeded"))
        return ready, failed

    def _check(self, wp: WaitingPod, cache: Cache) -> bool | str:
        """True: all bound; False: keep waiting; a string: why the wait failed."""
        ni = cache.nodes.get(wp.node)
        for ck in wp.claims:
            pvc = self.cache.pvcs.get(ck)
            if pvc is None:
                return f"failed to check provisioning pvc: {not_found_message(ck[1])}"
            if is_fully_bound(pvc):
                pv = self.cache.pvs.get(pvc["spec"]["volumeName"])
                if pv is None:
                    return False       # the PV may not have reached the informer yet
                if ni is None or not pv_admits(pv, ni):
                    return f'pv "{pv["metadata"]["name"]}" node affinity doesn\'t match node "{wp.node}"'
                continue
            selected = ((pvc.get("metadata") or {}).get("annotations") or {}).get(ANN_SELECTED_NODE)
            if selected == wp.node:
                wp.seen.add(ck)
            elif ck in wp.seen or _rv(pvc) >= wp.patched.get(ck, 1 << 62):
                return f'provisioning failed for PVC "{ck[1]}"'
            return False
        return True

    def _forget(self, key: PodKey) -> WaitingPod:
        wp = self.waiting.pop(key)
        for ck in wp.claims:
            users = self.by_claim.get(ck)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.by_claim[ck]
        return wp

    def drop(self, key: PodKey) -> WaitingPod | None:
        """Stop waiting for ``key`` (deleted, or bound elsewhere) and release its assumptions."""
        wp = self._forget(key) if key in self.waiting else None
        self.cache.release(key)
        return wp

    def done(self, key: PodKey) -> None:
        self.cache.release(key)
