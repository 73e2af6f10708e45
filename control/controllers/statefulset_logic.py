"""The StatefulSet controller's decisions, without I/O.

After Kubernetes' ``pkg/controller/statefulset`` (``stateful_set_utils.go``,
``stateful_set_control.go``: ``updateStatefulSet``, ``processReplica``,
``processCondemned``, ``completeRollingUpdate``; ``stateful_pod_control.go``:
claims and their retention; ``pkg/controller/history``: ControllerRevisions).
Plain dicts in, plans out.

Contract
--------
* Identity: pod ``<set>-<ordinal>`` (ordinals from ``spec.ordinals.start``),
  labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index``
  and ``controller-revision-hash`` (the revision's name), ``spec.hostname`` =
  pod name, ``spec.subdomain`` = ``serviceName``, ``generateName: <set>-`` and a
  controller ownerRef (``new_pod``). ``parent_and_ordinal(name)`` parses
  ``(.*)-([0-9]+)$``.
* Storage: one claim per ``volumeClaimTemplates[]`` item, named
  ``<template>-<set>-<ordinal>``, labels = template labels + the selector's
  matchLabels (``claims_for``); the pod's volume of the template's name becomes
  ``persistentVolumeClaim: {claimName}`` (replacing a template volume of the
  same name).
* Retention (``persistentVolumeClaimRetentionPolicy``): ``claim_refs`` gives a
  claim's ownerReferences as ``updateClaimOwnerRefForSetAndPod`` sets them:
  whenDeleted=Delete -> a controller ref to the StatefulSet (for pods in
  range); whenScaled=Delete -> a controller ref to the Pod once the pod's
  ordinal is outside the range (scaled down). ``claim_refs_up_to_date`` is
  ``isClaimOwnerUpToDate`` (stale refs and foreign controllers are left alone).
* Revisions are ``statefulset_history``'s; ``plan`` takes the current and
  update ``Revision`` (name + template).
* ``plan(set, pods, claims, current, update, now)`` -> ``Plan``: the ordered
  actions of one ``updateStatefulSet`` pass and the status to write.
  OrderedReady creates one missing pod at a time and only when every lower
  ordinal is Running, Ready and available; scales down one pod at a time from
  the highest ordinal, only when all others are healthy (or it is the first
  unhealthy one); waits for terminating pods. Parallel does all of that at
  once. Failed/Succeeded pods are deleted (recreated with the same name on a
  later pass). RollingUpdate then deletes pods at or above ``partition`` not at
  the update revision, highest ordinal first, at most ``maxUnavailable``
  (default 1; int or percent of replicas rounded down, at least 1) minus the
  pods already unavailable at a time (Kubernetes 1.35's
  MaxUnavailableStatefulSet, on by default); OnDelete never deletes for an update (missing pods are
  created at the update revision, below ``partition`` at the current one).
  A pod's claims that are missing are created before it; a claim being
  deleted blocks its pod (``pvc <name> is being deleted``); a claim still
  owned by a previous pod of that name (whenScaled=Delete) makes the pass wait.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from control.controllers import controller_utils as cu
from control.controllers.statefulset_history import (
    CR_HASH_LABEL,
    REVISION_LABEL,
    Revision,
)

__all__ = ["CR_HASH_LABEL", "POD_INDEX_LABEL", "POD_NAME_LABEL", "REVISION_LABEL", "Action", "Plan",
           "Revision", "plan"]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_POD_RE = re.compile(r"^(.*)-([0-9]+)$")
MAX_INT32 = 2 ** 31 - 1


# -- identity -------------------------------------------------------------------
def parent_and_ordinal(name: str) -> tuple[str, int]:
    m = _POD_RE.match(name or "")
    if not m:
        return "", -1
    n = int(m.group(2))
    return m.group(1), (n if n <= MAX_INT32 else -1)


def ordinal_of(pod: dict) -> int:
    return parent_and_ordinal(pod["metadata"].get("name", ""))[1]


def spec_of(sts: dict) -> dict:
    return sts.get("spec") or {}


def replicas(sts: dict) -> int:
    r = spec_of(sts).get("replicas")
    return 1 if r is None else int(r)


def start_ordinal(sts: dict) -> int:
    return int((spec_of(sts).get("ordinals") or {}).get("start") or 0)


def in_range(pod: dict, sts: dict) -> bool:
    o = ordinal_of(pod)
    return start_ordinal(sts) <= o < start_ordinal(sts) + replicas(sts)


def pod_name(sts: dict, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def is_member(sts: dict, pod: dict) -> bool:
    return parent_and_ordinal(pod["metadata"].get("name", ""))[0] == sts["metadata"]["name"]


def retention(sts: dict) -> tuple[str, str]:
    """(whenDeleted, whenScaled); an unknown value counts as Retain."""
    p = spec_of(sts).get("persistentVolumeClaimRetentionPolicy") or {}
    wd, ws = p.get("whenDeleted"), p.get("whenScaled")
    return ("Delete" if wd == "Delete" else "Retain"), ("Delete" if ws == "Delete" else "Retain")


def identity_matches(sts: dict, pod: dict) -> bool:
    md = pod["metadata"]
    parent, o = parent_and_ordinal(md.get("name", ""))
    return (o >= 0 and parent == sts["metadata"]["name"]
            and (md.get("namespace") or "") == (sts["metadata"].get("namespace") or "")
            and (md.get("labels") or {}).get(POD_NAME_LABEL) == md.get("name"))


def identity_labels(pod: dict) -> dict[str, str]:
    """The identity labels a pod should carry (``updateIdentity``)."""
    name = pod["metadata"]["name"]
    return {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal_of(pod))}


# -- pod state ------------------------------------------------------------------
def phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_created(pod: dict) -> bool:
    return phase(pod) != ""


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: dict) -> bool:
    return phase(pod) == "Running" and cu.is_pod_ready(pod)


def is_available(pod: dict, min_ready: int, now: float) -> bool:
    return cu.is_pod_available(pod, min_ready, now)


def is_unavailable(pod: dict, min_ready: int, now: float) -> bool:
    return not is_available(pod, min_ready, now) or is_terminating(pod)


def pod_revision(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, "")


# -- pods and claims ------------------------------------------------------------
def claims_for(sts: dict, ordinal: int) -> list[tuple[str, dict]]:
    """(template name, claim) for every claim template, as ``getPersistentVolumeClaims``."""
    md, spec = sts["metadata"], spec_of(sts)
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    out = []
    for tpl in spec.get("volumeClaimTemplates") or []:
        tmd = tpl.get("metadata") or {}
        tname = tmd.get("name", "")
        cmd: dict[str, Any] = {"name": claim_name(tname, md["name"], ordinal),
                               "namespace": md.get("namespace") or "default",
                               "labels": {**(tmd.get("labels") or {}), **match}}
        if tmd.get("annotations"):
            cmd["annotations"] = dict(tmd["annotations"])
        out.append((tname, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": cmd,
                            "spec": copy.deepcopy(tpl.get("spec") or {})}))
    return out


def new_pod(sts: dict, ordinal: int, template: dict, revision_name: str) -> dict:
    """The pod for ``ordinal`` built from ``template`` (``newStatefulSetPod`` + ``setPodRevision``)."""
    md, spec = sts["metadata"], spec_of(sts)
    tmd = template.get("metadata") or {}
    name = pod_name(sts, ordinal)
    labels = {**(tmd.get("labels") or {}), POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
              REVISION_LABEL: revision_name}
    meta: dict[str, Any] = {"name": name, "generateName": f"{md['name']}-",
                            "namespace": md.get("namespace") or "default", "labels": labels,
                            "ownerReferences": [cu.owner_ref(sts, "StatefulSet")]}
    if tmd.get("annotations"):
        meta["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        meta["finalizers"] = list(tmd["finalizers"])
    pspec = copy.deepcopy(template.get("spec") or {})
    pspec["hostname"] = name
    if spec.get("serviceName"):
        pspec["subdomain"] = spec["serviceName"]
    claims = claims_for(sts, ordinal)
    if claims:
        names = {t for t, _ in claims}
        vols = [{"name": t, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}} for t, c in claims]
        pspec["volumes"] = vols + [v for v in pspec.get("volumes") or [] if v.get("name") not in names]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pspec}


def versioned_pod(sts: dict, ordinal: int, current: Revision, update: Revision) -> dict:
    """``newVersionedStatefulSetPod``: below the partition at the current revision, else the update one."""
    us = spec_of(sts).get("updateStrategy") or {}
    ru = us.get("rollingUpdate")
    start = start_ordinal(sts)
    cur_replicas = int((sts.get("status") or {}).get("currentReplicas") or 0)
    use_current = (us.get("type") == "RollingUpdate" and ru is None and ordinal < start + cur_replicas) or \
        (ru is not None and ordinal < start + int(ru.get("partition") or 0))
    rev = current if use_current else update
    return new_pod(sts, ordinal, rev.template, rev.name)


# -- claim ownership (retention policy) -----------------------------------------
def _ref_matches(ref: dict, kind: str, api_version: str, name: str) -> bool:
    return ref.get("kind") == kind and ref.get("apiVersion") == api_version and ref.get("name") == name


def _refs(obj: dict) -> list[dict]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def _has_ref(claim: dict, uid: str | None) -> bool:
    return bool(uid) and any(r.get("uid") == uid for r in _refs(claim))


def _stale(claim: dict, kind: str, api_version: str, name: str, uid: str | None) -> bool:
    for r in _refs(claim):
        if _ref_matches(r, kind, api_version, name):
            return r.get("uid") != (uid or "")
    return False


def claim_is_stale(claim: dict, pod: dict) -> bool:
    """``PodClaimIsStale`` for one claim: a ref to a Pod of this name with another uid."""
    md = pod["metadata"]
    return _stale(claim, "Pod", "v1", md["name"], md.get("uid"))


def _unexpected_controller(claim: dict, sts: dict, pod: dict) -> bool:
    if retention(sts) == ("Retain", "Retain"):
        return False
    smd, pmd = sts["metadata"], pod["metadata"]
    for r in _refs(claim):
        if _ref_matches(r, "StatefulSet", "apps/v1", smd["name"]):
            if r.get("uid") != smd.get("uid"):
                return True
            continue
        if _ref_matches(r, "Pod", "v1", pmd["name"]):
            if r.get("uid") != (pmd.get("uid") or ""):
                return True
            continue
        if r.get("controller"):
            return True
    return False


def claim_refs_up_to_date(claim: dict, sts: dict, pod: dict) -> bool:
    """``isClaimOwnerUpToDate``."""
    smd, pmd = sts["metadata"], pod["metadata"]
    if _stale(claim, "StatefulSet", "apps/v1", smd["name"], smd.get("uid")) or \
            _stale(claim, "Pod", "v1", pmd["name"], pmd.get("uid")):
        return True
    has_set, has_pod = _has_ref(claim, smd.get("uid")), _has_ref(claim, pmd.get("uid"))
    if _unexpected_controller(claim, sts, pod):
        return not (has_set or has_pod)
    if any(r.get("uid") in (smd.get("uid"), pmd.get("uid")) and not r.get("controller") for r in _refs(claim)):
        return False
    when_deleted, when_scaled = retention(sts)
    scaled_down = not in_range(pod, sts)
    if when_scaled == "Retain":
        want_set, want_pod = when_deleted == "Delete", False
    else:
        want_pod = scaled_down
        want_set = when_deleted == "Delete" and not scaled_down
    return has_set == want_set and has_pod == want_pod


def claim_refs(claim: dict, sts: dict, pod: dict) -> list[dict]:
    """``updateClaimOwnerRefForSetAndPod``: the claim's ownerReferences under the policy."""
    smd, pmd = sts["metadata"], pod["metadata"]
    unexpected = _unexpected_controller(claim, sts, pod)
    refs = [r for r in _refs(claim) if not (_ref_matches(r, "StatefulSet", "apps/v1", smd["name"])
                                             or _ref_matches(r, "Pod", "v1", pmd["name"]))]
    if unexpected:
        return refs
    when_deleted, when_scaled = retention(sts)
    scaled_down = not in_range(pod, sts)
    if when_scaled == "Delete" and scaled_down and pmd.get("uid"):
        refs.append(cu.owner_ref(pod, "Pod", api_version="v1"))
    elif when_deleted == "Delete" and (when_scaled == "Retain" or not scaled_down):
        refs.append(cu.owner_ref(sts, "StatefulSet"))
    return refs


# -- the pass -------------------------------------------------------------------
@dataclass
class Action:
    op: str                     # create | delete | create_claims | update_claim | update_pod | fail
    pod: dict
    claims: list[dict] = field(default_factory=list)   # create/create_claims: claims to create first
    claim: dict | None = None   # update_claim: the claim, with its new ownerReferences
    reason: str = ""            # delete: failed | scale-down | update; fail: the error message
    labels: dict = field(default_factory=dict)          # update_pod: identity labels to set


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: dict = field(default_factory=dict)
    requeue_at: float | None = None


def compute_status(pods: list[dict], min_ready: int, now: float, current: str, update: str) -> dict:
    st = {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0, "updatedReplicas": 0}
    for p in pods:
        if is_created(p):
            st["replicas"] += 1
        if is_running_and_ready(p):
            st["readyReplicas"] += 1
            if is_available(p, min_ready, now):
                st["availableReplicas"] += 1
        if is_created(p) and not is_terminating(p):
            rev = pod_revision(p)
            st["currentReplicas"] += rev == current
            st["updatedReplicas"] += rev == update
    return st


class _Pass:
    def __init__(self, sts: dict, claims: dict[str, dict], min_ready: int, now: float, monotonic: bool) -> None:
        self.sts, self.claims, self.min_ready, self.now, self.monotonic = sts, claims, min_ready, now, monotonic
        self.actions: list[Action] = []

    def _missing_claims(self, pod: dict) -> tuple[list[dict], str | None]:
        missing, error = [], None
        for _t, claim in claims_for(self.sts, ordinal_of(pod)):
            have = self.claims.get(claim["metadata"]["name"])
            if have is None:
                claim["metadata"]["ownerReferences"] = claim_refs(claim, self.sts, pod)
                if not claim["metadata"]["ownerReferences"]:
                    del claim["metadata"]["ownerReferences"]
                missing.append(claim)
            elif have["metadata"].get("deletionTimestamp"):
                error = f"pvc {claim['metadata']['name']} is being deleted"
        return missing, error

    def _fix_claims(self, pod: dict) -> None:
        for _t, claim in claims_for(self.sts, ordinal_of(pod)):
            have = self.claims.get(claim["metadata"]["name"])
            if have is not None and not have["metadata"].get("deletionTimestamp") and \
                    not claim_refs_up_to_date(have, self.sts, pod):
                self.actions.append(Action("update_claim", pod, claim={
                    **have, "metadata": {**have["metadata"], "ownerReferences": claim_refs(have, self.sts, pod)}}))

    def replica(self, pod: dict) -> bool:
        """``processReplica``: True when the pass must stop here (in OrderedReady)."""
        if is_created(pod) and phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                self.actions.append(Action("delete", pod, reason="failed"))
            return True
        if not is_created(pod):
            if retention(self.sts)[1] == "Delete" and any(
                    claim_is_stale(self.claims[c["metadata"]["name"]], pod)
                    for _t, c in claims_for(self.sts, ordinal_of(pod)) if c["metadata"]["name"] in self.claims):
                return True   # the previous pod's claim is still being collected
            missing, error = self._missing_claims(pod)
            if error:
                self.actions.append(Action("fail", pod, reason=error))
                return True
            self.actions.append(Action("create", pod, claims=missing))
            return self.monotonic
        if phase(pod) == "Pending":
            missing, error = self._missing_claims(pod)
            if error:
                self.actions.append(Action("fail", pod, reason=error))
                return True
            if missing:
                self.actions.append(Action("create_claims", pod, claims=missing))
        if self.monotonic and (is_terminating(pod) or not is_running_and_ready(pod)
                               or not is_available(pod, self.min_ready, self.now)):
            return True
        self._fix_claims(pod)
        if not identity_matches(self.sts, pod):
            self.actions.append(Action("update_pod", pod, labels=identity_labels(pod)))
        return False

    def condemned(self, pod: dict, first_unhealthy: dict | None) -> bool:
        """``processCondemned``."""
        if is_terminating(pod):
            return self.monotonic
        if self.monotonic and pod is not first_unhealthy and \
                (not is_running_and_ready(pod) or not is_available(pod, self.min_ready, self.now)):
            return True
        self.actions.append(Action("delete", pod, reason="scale-down"))
        return True


def plan(sts: dict, pods: list[dict], claims: dict[str, dict], current: Revision, update: Revision,
         now: float) -> Plan:
    """One ``updateStatefulSet`` pass over the set's pods (``pods``: owned members, from a cache)."""
    spec = spec_of(sts)
    min_ready = int(spec.get("minReadySeconds") or 0)
    out = Plan()
    st = (sts.get("status") or {})
    out.status = {"observedGeneration": sts["metadata"].get("generation", 1), "currentRevision": current.name,
                  "updateRevision": update.name, "collisionCount": int(st.get("collisionCount") or 0),
                  **compute_status(pods, min_ready, now, current.name, update.name)}
    for p in pods:
        if is_running_and_ready(p) and not is_available(p, min_ready, now):
            at = cu.available_at(p, min_ready)
            if at is not None:
                out.requeue_at = at if out.requeue_at is None else min(out.requeue_at, at)
    start, count = start_ordinal(sts), replicas(sts)
    slots: list[dict | None] = [None] * count
    condemned: list[dict] = []
    for p in pods:
        o = ordinal_of(p)
        if start <= o < start + count:
            slots[o - start] = p
        elif o >= 0:
            condemned.append(p)
    replicas_: list[dict] = [p if p is not None else versioned_pod(sts, start + i, current, update)
                             for i, p in enumerate(slots)]
    condemned.sort(key=ordinal_of, reverse=True)
    first_unhealthy = next((p for p in replicas_ if is_unavailable(p, min_ready, now)), None)
    if first_unhealthy is None:
        first_unhealthy = next((p for p in reversed(condemned) if is_unavailable(p, min_ready, now)), None)
    if sts["metadata"].get("deletionTimestamp"):
        return _finish(sts, out)
    monotonic = spec.get("podManagementPolicy") != "Parallel"
    ps = _Pass(sts, claims, min_ready, now, monotonic)
    out.actions = ps.actions

    def run(items: list[dict], fn: Any) -> bool:
        stop = False
        for p in items:
            if fn(p):
                stop = True
                if monotonic:
                    return True
            if ps.actions and ps.actions[-1].op == "fail":
                return True
        return stop and monotonic

    if run(replicas_, ps.replica):
        return _finish(sts, out)
    for p in condemned:
        ps._fix_claims(p)
    if run(condemned, lambda p: ps.condemned(p, first_unhealthy)):
        return _finish(sts, out)
    us = spec.get("updateStrategy") or {}
    if us.get("type") == "OnDelete":
        return _finish(sts, out)
    ru = us.get("rollingUpdate")
    update_min = int(ru.get("partition") or 0) if isinstance(ru, dict) else 0
    # updateStatefulSetAfterInvariantEstablished (MaxUnavailableStatefulSet, on by default since 1.35):
    # delete up to maxUnavailable - unavailable outdated pods, highest ordinal first
    budget = max_unavailable(sts) - sum(is_unavailable(p, min_ready, now) for p in replicas_)
    for target in range(len(replicas_) - 1, update_min - 1, -1):
        if budget <= 0:
            break
        p = replicas_[target]
        if pod_revision(p) != update.name and not is_terminating(p) and is_created(p):
            ps.actions.append(Action("delete", p, reason="update"))
            out.status["currentReplicas"] = max(0, out.status["currentReplicas"] - 1)
            budget -= 1
    return _finish(sts, out)


def max_unavailable(sts: dict) -> int:
    """``getStatefulSetMaxUnavailable``: int or percent of replicas (rounded down), at least 1."""
    ru = (spec_of(sts).get("updateStrategy") or {}).get("rollingUpdate")
    v = ru.get("maxUnavailable") if isinstance(ru, dict) else None
    if v is None:
        return 1
    if isinstance(v, str) and v.endswith("%"):
        n = int(v[:-1]) * replicas(sts) // 100
    else:
        n = int(v)
    return max(1, n)


def _finish(sts: dict, out: Plan) -> Plan:
    """``completeRollingUpdate``."""
    st, want = out.status, replicas(sts)
    if (spec_of(sts).get("updateStrategy") or {}).get("type") == "RollingUpdate" and \
            st["updatedReplicas"] == want and st["readyReplicas"] == want and st["replicas"] == want:
        st["currentReplicas"] = st["updatedReplicas"]
        st["currentRevision"] = st["updateRevision"]
    return out


STATUS_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "availableReplicas", "currentReplicas",
                 "updatedReplicas", "currentRevision", "updateRevision", "collisionCount")


def status_changed(old: dict | None, new: dict) -> bool:
    old = old or {}
    return any(old.get(k) != new.get(k) for k in STATUS_FIELDS if k in new)
