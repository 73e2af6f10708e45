"""The pvc-protection and pv-protection controllers (after ``pkg/controller/volume/pvcprotection``
and ``pkg/controller/volume/pvprotection``).

Decisions live in ``volumeprotection_logic``.

Contract
--------
* ``PVCProtectionController`` (``pvc-protection``): informers
  PersistentVolumeClaims and Pods, with an index of pods by the claims they
  use. A claim is synced when it changes and needs work (being deleted with
  ``kubernetes.io/pvc-protection``, or lacking it), and when a pod that uses
  it changes or goes. The finalizer is removed only when no pod uses the
  claim, by the cache and then by a live list of the namespace's pods (one
  list per namespace per pass), as Kubernetes' ``askAPIServer`` does; until
  then the claim stays Terminating. A claim not being deleted that lacks the
  finalizer gets it.
* ``PVProtectionController`` (``pv-protection``): informer PersistentVolumes;
  removes ``kubernetes.io/pv-protection`` from a volume being deleted once its
  phase is not Bound; adds it to one lacking it.
* Finalizers are written by a merge patch carrying the resourceVersion read
  (a Conflict is retried on the next pass); a lost apiserver keeps the keys.
* Logs: ``finalizer_removed``, ``finalizer_added``, ``claim_in_use``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import controller_utils as cu
from control.controllers import volumeprotection_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]


def _key(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class _FinalizerSync(cu.KeyedSync):
    finalizer: str

    def _init(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.dirty: set[Key] = set()
        self.timers: dict[Key, float] = {}

    def start(self) -> None:
        pass

    def _maybe(self, obj: dict) -> None:
        if logic.needs_work(obj, self.finalizer):
            self.dirty.add(_key(obj))

    def _patch(self, obj: dict, fins: list[str]) -> None:
        md = obj["metadata"]
        try:
            self.client.patch(self.kind, md["name"], {"metadata": {"finalizers": fins,
                                                                   "resourceVersion": md.get("resourceVersion")}},
                              md.get("namespace") or None)
        except APIError as e:
            if e.code == errors.NOT_FOUND:
                return
            raise
        added = self.finalizer in fins
        self.log.info("finalizer_added" if added else "finalizer_removed", kind=self.kind,
                      namespace=md.get("namespace"), name=md["name"], finalizer=self.finalizer)


class PVCProtectionController(_FinalizerSync):
    name = "pvc-protection"
    kind = "PersistentVolumeClaim"
    finalizer = logic.PVC_PROTECTION

    def __init__(self, ctx: "ControllerContext") -> None:
        self._init(ctx)
        self.pvcs = ctx.informers.informer("PersistentVolumeClaim")
        self.pods = ctx.informers.informer("Pod")
        self.pods_by_claim: dict[Key, set[str]] = {}
        self._live: dict[str, list[dict]] = {}
        self.pvcs.add_event_handler(self._maybe, lambda _o, n: self._maybe(n))
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def _index(self, pod: dict, add: bool) -> None:
        ns, name = _key(pod)
        for claim in logic.claims_of_pod(pod):
            key = (ns, claim)
            if add:
                self.pods_by_claim.setdefault(key, set()).add(name)
            else:
                names = self.pods_by_claim.get(key)
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self.pods_by_claim[key]
            pvc = self.pvcs.get(claim, ns)
            if pvc is not None and pvc["metadata"].get("deletionTimestamp"):
                self.dirty.add(key)

    def _pod_added(self, pod: dict) -> None:
        self._index(pod, True)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._index(old, False)
        self._index(new, True)

    def _pod_deleted(self, pod: dict) -> None:
        self._index(pod, False)

    def next_due(self) -> float:
        if not (self.pvcs.has_synced and self.pods.has_synced):
            return self.clock() + 3600.0
        return super().next_due()

    def sync(self) -> None:
        if not (self.pvcs.has_synced and self.pods.has_synced):
            return
        self._live = {}
        super().sync()

    def in_use(self, ns: str, claim: str) -> bool:
        for name in self.pods_by_claim.get((ns, claim), ()):
            pod = self.pods.get(name, ns)
            if pod is not None and logic.pod_uses_claim(pod, claim):
                return True
        if ns not in self._live:
            self._live[ns] = self.client.list_all("Pod", ns)["items"]
        return any(logic.pod_uses_claim(p, claim) for p in self._live[ns])

    def sync_one(self, key: Key) -> None:
        pvc = self.pvcs.get(key[1], key[0])
        if pvc is None or not logic.needs_work(pvc, self.finalizer):
            return
        deleting = bool(pvc["metadata"].get("deletionTimestamp"))
        used = deleting and self.in_use(*key)
        fins = logic.pvc_finalizers(pvc, used)
        if fins is not None:
            self._patch(pvc, fins)
        elif used:
            self.log.info("claim_in_use", kind=self.kind, namespace=key[0], name=key[1])

    def status(self) -> dict[str, Any]:
        return {"dirty": len(self.dirty), "claims_in_use": len(self.pods_by_claim)}


class PVProtectionController(_FinalizerSync):
    name = "pv-protection"
    kind = "PersistentVolume"
    finalizer = logic.PV_PROTECTION

    def __init__(self, ctx: "ControllerContext") -> None:
        self._init(ctx)
        self.pvs = ctx.informers.informer("PersistentVolume")
        self.pvs.add_event_handler(self._maybe, lambda _o, n: self._maybe(n))

    def sync_one(self, key: Key) -> None:
        pv = self.pvs.get(key[1])
        if pv is None:
            return
        fins = logic.pv_finalizers(pv)
        if fins is not None:
            self._patch(pv, fins)
