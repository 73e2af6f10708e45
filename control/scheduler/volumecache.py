"""The scheduler's storage caches: PersistentVolumeClaims, PersistentVolumes, StorageClasses.

Contract (after kube-scheduler's ``volumebinding`` assume caches):
* ``VolumeCache`` mirrors three informers (``add_*``/``remove_*``) and keeps
  indexes so that no scheduling step walks every PV:
  - ``available[class]``: PVs of that class in phase Available, with no
    ``claimRef``, not being deleted and not assumed by a waiting pod;
  - ``prebound[(namespace, claim)]``: PVs whose ``claimRef`` names the claim;
  - ``claim_users[(namespace, claim)]``: the assigned (or assumed) pods that
    use the claim, for ReadWriteOncePod conflicts.
* Assumptions made when a pod is reserved on a node, and undone by
  ``release(pod)`` once the pod is bound or gives up:
  - ``assume_pv(pv, claim, pod)`` takes a PV out of ``available``, so two
    pods in one scheduling cycle never count on the same PV;
  - ``assume_selected_node(claim, node, pod)`` makes the claim read as if its
    ``volume.kubernetes.io/selected-node`` annotation were already set.
* ``pvc(ns, name)`` returns the informer's object; ``selected_node(pvc)``
  reads an assumed node first. Objects are shared with the informers: never
  mutated here.
"""
from __future__ import annotations

from typing import Iterable

ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_STORAGE_CLASS_BETA = "volume.beta.kubernetes.io/storage-class"
PodKey = tuple[str, str]
ClaimKey = tuple[str, str]


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def claim_class(pvc: dict) -> str:
    """``GetPersistentVolumeClaimClass``: the beta annotation, then ``spec.storageClassName``."""
    ann = _md(pvc).get("annotations") or {}
    if ANN_STORAGE_CLASS_BETA in ann:
        return ann[ANN_STORAGE_CLASS_BETA] or ""
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def pv_class(pv: dict) -> str:
    ann = _md(pv).get("annotations") or {}
    if ANN_STORAGE_CLASS_BETA in ann:
        return ann[ANN_STORAGE_CLASS_BETA] or ""
    return (pv.get("spec") or {}).get("storageClassName") or ""


def claim_ref_key(pv: dict) -> ClaimKey | None:
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref or not ref.get("name"):
        return None
    return (ref.get("namespace") or "", ref["name"])


def pod_claim_names(pod: dict) -> list[str]:
    """The claim names of the pod's ``persistentVolumeClaim`` volumes, in order, once each."""
    out: list[str] = []
    for v in (pod.get("spec") or {}).get("volumes") or ():
        src = v.get("persistentVolumeClaim") if isinstance(v, dict) else None
        if isinstance(src, dict) and src.get("claimName") and src["claimName"] not in out:
            out.append(src["claimName"])
    return out


def _pv_is_available(pv: dict) -> bool:
    return (pv.get("status") or {}).get("phase") == "Available" and \
        not (pv.get("spec") or {}).get("claimRef") and not _md(pv).get("deletionTimestamp")


class VolumeCache:
    def __init__(self) -> None:
        self.pvcs: dict[ClaimKey, dict] = {}
        self.pvs: dict[str, dict] = {}
        self.classes: dict[str, dict] = {}
        self.available: dict[str, dict[str, dict]] = {}
        self.prebound: dict[ClaimKey, set[str]] = {}
        self.claim_users: dict[ClaimKey, set[PodKey]] = {}
        self.pod_claims: dict[PodKey, tuple[ClaimKey, ...]] = {}
        self.assumed_pvs: dict[str, tuple[ClaimKey, PodKey]] = {}
        self.assumed_nodes: dict[ClaimKey, tuple[str, PodKey]] = {}
        self._by_pod: dict[PodKey, tuple[list[str], list[ClaimKey]]] = {}

    # -- informer side -----------------------------------------------------
    def add_pvc(self, pvc: dict) -> None:
        md = _md(pvc)
        self.pvcs[(md.get("namespace") or "", md["name"])] = pvc

    def remove_pvc(self, pvc: dict) -> None:
        md = _md(pvc)
        self.pvcs.pop((md.get("namespace") or "", md["name"]), None)

    def add_class(self, sc: dict) -> None:
        self.classes[_md(sc)["name"]] = sc

    def remove_class(self, sc: dict) -> None:
        self.classes.pop(_md(sc)["name"], None)

    def add_pv(self, pv: dict) -> None:
        name = _md(pv)["name"]
        self._unindex(name)
        self.pvs[name] = pv
        ref = claim_ref_key(pv)
        if ref is not None:
            self.prebound.setdefault(ref, set()).add(name)
        if _pv_is_available(pv) and name not in self.assumed_pvs:
            self.available.setdefault(pv_class(pv), {})[name] = pv

    def remove_pv(self, pv: dict) -> None:
        name = _md(pv)["name"]
        self._unindex(name)
        self.pvs.pop(name, None)

    def _unindex(self, name: str) -> None:
        old = self.pvs.get(name)
        if old is None:
            return
        bucket = self.available.get(pv_class(old))
        if bucket is not None:
            bucket.pop(name, None)
            if not bucket:
                del self.available[pv_class(old)]
        ref = claim_ref_key(old)
        if ref is not None:
            names = self.prebound.get(ref)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.prebound[ref]

    # -- reads -------------------------------------------------------------
    def pvc(self, namespace: str, name: str) -> dict | None:
        return self.pvcs.get((namespace, name))

    def selected_node(self, pvc: dict) -> str:
        md = _md(pvc)
        assumed = self.assumed_nodes.get((md.get("namespace") or "", md["name"]))
        if assumed is not None:
            return assumed[0]
        return (md.get("annotations") or {}).get(ANN_SELECTED_NODE) or ""

    def available_in_class(self, cls: str) -> Iterable[dict]:
        return (self.available.get(cls) or {}).values()

    def prebound_to(self, key: ClaimKey) -> list[dict]:
        return [self.pvs[n] for n in self.prebound.get(key) or () if n in self.pvs]

    def other_users(self, key: ClaimKey, pod: PodKey) -> int:
        users = self.claim_users.get(key)
        if not users:
            return 0
        return len(users) - (1 if pod in users else 0)

    # -- pods using claims (ReadWriteOncePod) --------------------------------
    def track_pod(self, key: PodKey, namespace: str, claims: list[str]) -> None:
        """The pod is assigned (or assumed) and uses ``claims``; [] forgets it."""
        keys = tuple((namespace, c) for c in claims)
        old = self.pod_claims.get(key, ())
        if old == keys:
            return
        for ck in old:
            users = self.claim_users.get(ck)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.claim_users[ck]
        if keys:
            self.pod_claims[key] = keys
            for ck in keys:
                self.claim_users.setdefault(ck, set()).add(key)
        else:
            self.pod_claims.pop(key, None)

    # -- assumptions -------------------------------------------------------
    def assume_pv(self, pv: dict, claim: ClaimKey, pod: PodKey) -> None:
        name = _md(pv)["name"]
        self.assumed_pvs[name] = (claim, pod)
        bucket = self.available.get(pv_class(pv))
        if bucket is not None:
            bucket.pop(name, None)
        self._by_pod.setdefault(pod, ([], []))[0].append(name)

    def assume_selected_node(self, claim: ClaimKey, node: str, pod: PodKey) -> None:
        self.assumed_nodes[claim] = (node, pod)
        self._by_pod.setdefault(pod, ([], []))[1].append(claim)

    def release(self, pod: PodKey) -> None:
        """Undo the pod's assumptions (it is bound, gave up, or is gone)."""
        pvs, claims = self._by_pod.pop(pod, ((), ()))
        for name in pvs:
            if self.assumed_pvs.get(name, (None, None))[1] == pod:
                del self.assumed_pvs[name]
                pv = self.pvs.get(name)
                if pv is not None and _pv_is_available(pv):
                    self.available.setdefault(pv_class(pv), {})[name] = pv
        for ck in claims:
            if self.assumed_nodes.get(ck, (None, None))[1] == pod:
                del self.assumed_nodes[ck]
