"""The PersistentVolume controller, the binder (after ``pkg/controller/volume/persistentvolume/pv_controller.go``).

Decisions live in ``persistentvolume_logic``; this module keeps the caches and
moves objects.

Contract
--------
* Informers: PersistentVolumes, PersistentVolumeClaims, StorageClasses and
  Nodes (shared). Nothing is synced before all of them have listed once.
* Its own caches of volumes and claims, updated by the informers and by the
  objects its own writes return (newest resourceVersion wins), as the
  controller's ``storeObjectUpdate`` does. A volume chosen for a claim is
  assumed bound in the cache at once, so no other claim in the same pass can
  take it. Indexes: unclaimed volumes by class, volumes by the claim their
  claimRef names, unbound claims by class; matching a claim never looks at
  volumes of other classes nor makes an API call.
* A claim is synced when it or its class changes, when a volume naming it
  changes, when an unclaimed volume of its class becomes Available, and every
  ``RESYNC_PERIOD`` while unbound (Kubernetes' 15 s ``pvclaimbinder-sync-period``).
  A volume is synced when it changes or its claim does.
* Volumes are synced before claims in each pass. Writes of one pass go out
  pipelined (``run_chains``): binding is four dependent writes per claim (PV
  claimRef, PV phase Bound, PVC volumeName and annotations, PVC status), each
  carrying the resourceVersion it read; different claims proceed in lockstep.
* A volume whose claim is missing from the cache is Released only after the
  apiserver confirms the claim is gone (a live GET), as Kubernetes does.
* Events as the ``persistentvolume-controller`` records them (see the logic
  module); Conflicts are retried on the next pass; a lost apiserver is logged
  and every key tried again later.
* Logs: ``volume_bound``, ``volume_phase``, ``volume_unbound``, ``volume_deleted``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Iterable

from control.controllers import controller_utils as cu
from control.controllers import persistentvolume_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]
Chain = Generator[tuple[str, dict], Any, None]
RESYNC_PERIOD = 15.0
WINDOW = 256


def run_chains(client: Client, chains: Iterable[Chain], window: int = WINDOW) -> None:
    """Run chains of dependent requests, the chains side by side.

    A chain is a generator yielding ``(op, args)`` for ``client.send`` and
    receiving the result, or the ``APIError``. Each round sends the next
    request of every live chain (``window`` at a time) and then collects the
    replies. Once the apiserver is found unavailable, outstanding replies are
    not waited for. Never raises APIError."""
    active: list[tuple[Chain, tuple[str, dict]]] = []

    def advance(g: Chain, value: Any, first: bool = False) -> None:
        try:
            req = next(g) if first else g.send(value)
        except StopIteration:
            return
        active.append((g, req))

    for g in chains:
        advance(g, None, first=True)
    down = False
    while active:
        current, active = active, []
        for i in range(0, len(current), window):
            sent: list[tuple[Chain, Any]] = []
            for g, (op, args) in current[i:i + window]:
                if down:
                    sent.append((g, APIError(errors.UNAVAILABLE, "the apiserver is unavailable")))
                    continue
                try:
                    sent.append((g, client.send(op, **args)))
                except APIError as e:
                    down = down or e.code in (errors.UNAVAILABLE, errors.TIMEOUT)
                    sent.append((g, e))
            for g, rid in sent:
                if isinstance(rid, APIError):
                    advance(g, rid)
                    continue
                try:
                    res = client.wait(rid, timeout=0.0 if down else None)
                except APIError as e:
                    if any(c.get("field") == "hello" for c in e.causes):
                        # a restarted apiserver: the client says hello on its next request
                        e = APIError(errors.UNAVAILABLE, f"the apiserver restarted: {e.message}")
                    down = down or e.code in (errors.UNAVAILABLE, errors.TIMEOUT)
                    res = e
                advance(g, res)


def _external_deleter(provisioner: str) -> bool:
    """Volumes of out-of-tree provisioners (ours included) are deleted by their provisioner."""
    return not provisioner.startswith("kubernetes.io/")


def rv_of(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _ckey(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


def _ref_key(pv: dict) -> Key | None:
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref or not ref.get("name"):
        return None
    return (ref.get("namespace") or "", ref["name"])


def _discard(index: dict[Any, set], key: Any, member: Any) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]


class PersistentVolumeController:
    name = "persistentvolume-binder"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.pv_informer = ctx.informers.informer("PersistentVolume")
        self.pvc_informer = ctx.informers.informer("PersistentVolumeClaim")
        self.classes = ctx.informers.informer("StorageClass")
        self.nodes = ctx.informers.informer("Node")
        self.recorder = EventRecorder(self.client, "persistentvolume-controller", clock=self.wall)
        self.volumes: dict[str, dict] = {}
        self.claims: dict[Key, dict] = {}
        self.unclaimed_by_class: dict[str, set[str]] = {}
        self.by_claim: dict[Key, set[str]] = {}
        self.unbound_by_class: dict[str, set[Key]] = {}
        self.claim_gone: dict[str, str] = {}   # volume -> uid of its claim, which the apiserver confirmed gone
        self.dirty_claims: set[Key] = set()
        self.dirty_volumes: set[str] = set()
        self.resync_at = self.clock() + RESYNC_PERIOD
        self.unavailable: APIError | None = None
        self.pv_informer.add_event_handler(self._volume_changed, lambda _o, n: self._volume_changed(n),
                                           self._volume_deleted)
        self.pvc_informer.add_event_handler(self._claim_changed, lambda _o, n: self._claim_changed(n),
                                            self._claim_deleted)
        self.classes.add_event_handler(self._class_changed, lambda _o, n: self._class_changed(n))

    # -- caches -------------------------------------------------------------------
    def put_volume(self, pv: dict, force: bool = False) -> bool:
        name = pv["metadata"]["name"]
        old = self.volumes.get(name)
        if old is not None:
            if not force and rv_of(old) >= rv_of(pv):
                return False
            self._unindex_volume(old)
        self.volumes[name] = pv
        key = _ref_key(pv)
        if key is None:
            self.unclaimed_by_class.setdefault(logic.volume_class(pv), set()).add(name)
        else:
            self.by_claim.setdefault(key, set()).add(name)
        return True

    def _unindex_volume(self, pv: dict) -> None:
        name = pv["metadata"]["name"]
        key = _ref_key(pv)
        if key is None:
            _discard(self.unclaimed_by_class, logic.volume_class(pv), name)
        else:
            _discard(self.by_claim, key, name)

    def drop_volume(self, name: str) -> None:
        old = self.volumes.pop(name, None)
        if old is not None:
            self._unindex_volume(old)

    def restore_volume(self, name: str) -> None:
        """Forget an assumption: back to what the informer last saw."""
        cached = self.pv_informer.get(name)
        if cached is None:
            self.drop_volume(name)
        else:
            self.put_volume(cached, force=True)

    def put_claim(self, pvc: dict, force: bool = False) -> bool:
        key = _ckey(pvc)
        old = self.claims.get(key)
        if old is not None:
            if not force and rv_of(old) >= rv_of(pvc):
                return False
            self._unindex_claim(old)
        self.claims[key] = pvc
        if logic.ANN_BIND_COMPLETED not in logic.annotations(pvc):
            self.unbound_by_class.setdefault(logic.claim_class(pvc), set()).add(key)
        return True

    def _unindex_claim(self, pvc: dict) -> None:
        _discard(self.unbound_by_class, logic.claim_class(pvc), _ckey(pvc))

    def drop_claim(self, key: Key) -> None:
        old = self.claims.pop(key, None)
        if old is not None:
            self._unindex_claim(old)

    # -- handlers -----------------------------------------------------------------
    def _volume_changed(self, pv: dict) -> None:
        if not self.put_volume(pv):
            return
        name = pv["metadata"]["name"]
        self.dirty_volumes.add(name)
        key = _ref_key(pv)
        if key is not None:
            self.dirty_claims.add(key)
        elif logic.phase(pv) == "Available":
            self.dirty_claims.update(self.unbound_by_class.get(logic.volume_class(pv), ()))

    def _volume_deleted(self, pv: dict) -> None:
        self.drop_volume(pv["metadata"]["name"])
        self.claim_gone.pop(pv["metadata"]["name"], None)
        self.dirty_volumes.discard(pv["metadata"]["name"])
        key = _ref_key(pv)
        if key is not None:
            self.dirty_claims.add(key)

    def _claim_changed(self, pvc: dict) -> None:
        if not self.put_claim(pvc):
            return
        key = _ckey(pvc)
        self.dirty_claims.add(key)
        vname = (pvc.get("spec") or {}).get("volumeName")
        if vname:
            self.dirty_volumes.add(vname)

    def _claim_deleted(self, pvc: dict) -> None:
        key = _ckey(pvc)
        self.drop_claim(key)
        self.dirty_claims.discard(key)
        vname = (pvc.get("spec") or {}).get("volumeName")
        if vname:
            self.dirty_volumes.add(vname)
        self.dirty_volumes.update(self.by_claim.get(key, ()))

    def _class_changed(self, sc: dict) -> None:
        self.dirty_claims.update(self.unbound_by_class.get(sc["metadata"]["name"], ()))

    # -- loop -----------------------------------------------------------------------
    def start(self) -> None:
        pass

    def _synced(self) -> bool:
        return all(i.has_synced for i in (self.pv_informer, self.pvc_informer, self.classes, self.nodes))

    def next_due(self) -> float:
        now = self.clock()
        if (self.dirty_claims or self.dirty_volumes) and self._synced():
            return now
        return max(now, self.resync_at)

    def sync(self) -> None:
        if not self._synced():
            return
        if self.clock() >= self.resync_at:
            self.resync_at = self.clock() + RESYNC_PERIOD
            self.dirty_claims.update(k for keys in self.unbound_by_class.values() for k in keys)
            self.dirty_volumes.update(n for n, v in self.volumes.items() if logic.phase(v) != "Bound")
        self.unavailable = None
        volumes, self.dirty_volumes = sorted(self.dirty_volumes), set()
        run_chains(self.client, self._volume_chains(volumes))
        claims, self.dirty_claims = sorted(self.dirty_claims), set()
        run_chains(self.client, self._claim_chains(claims))
        if self.unavailable is not None:
            self.log.warning("apiserver_unavailable", controller=self.name, error=str(self.unavailable))

    def _failed(self, err: APIError, kind: str, name: str, ns: str = "", retry: Any = None) -> None:
        """An error from one write: retry Conflicts and outages on the next pass."""
        if err.code == errors.NOT_FOUND:
            return
        if err.code in (errors.CONFLICT, errors.UNAVAILABLE, errors.TIMEOUT):
            if retry is not None:
                retry()
            if err.code != errors.CONFLICT:
                self.unavailable = err
            return
        self.log.error(f"{self.name}_sync_failed", kind=kind, namespace=ns or None, name=name,
                       code=err.code, error=str(err))

    # -- volumes --------------------------------------------------------------------
    def _volume_chains(self, names: list[str]) -> Iterable[Chain]:
        for name in names:
            pv = self.volumes.get(name)
            if pv is None:
                continue
            key = _ref_key(pv)
            claim = self.claims.get(key) if key is not None else None
            uid = ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") or ""
            plan = logic.sync_volume(pv, claim, claim_checked=self.claim_gone.get(name) == uid,
                                     external=_external_deleter)
            for ev in plan.events:
                self.recorder.event(pv, *ev)
            if plan.enqueue_claim is not None:
                self.dirty_claims.add(plan.enqueue_claim)
            if plan.check_claim and key is not None:
                yield self._check_claim(name, key, uid)
            elif plan.unbind:
                yield self._unbind(pv)
            elif plan.reclaim == "delete-object":
                yield self._delete_volume(pv)
            elif plan.phase is not None:
                yield self._set_volume_phase(pv, plan.phase, plan.message)

    def _check_claim(self, name: str, key: Key, uid: str) -> Chain:
        res = yield ("get", {"kind": "PersistentVolumeClaim", "name": key[1], "namespace": key[0] or None})
        if isinstance(res, APIError):
            if res.code == errors.NOT_FOUND:
                self.claim_gone[name] = uid
                self.dirty_volumes.add(name)
            else:
                self._failed(res, "PersistentVolumeClaim", key[1], key[0], lambda: self.dirty_volumes.add(name))
            return
        if res["metadata"].get("uid") != uid:
            self.claim_gone[name] = uid
        self.put_claim(res)
        self.dirty_volumes.add(name)

    def _set_volume_phase(self, pv: dict, new_phase: str, message: str) -> Chain:
        st = logic.volume_phase_status(pv, new_phase, message, cu.format_time(self.wall()))
        if st is None:
            return
        name = pv["metadata"]["name"]
        res = yield ("update", {"object": {**pv, "status": st}, "subresource": "status"})
        if isinstance(res, APIError):
            self._failed(res, "PersistentVolume", name, retry=lambda: self.dirty_volumes.add(name))
            return
        self.put_volume(res)
        if new_phase == "Available" and _ref_key(res) is None:   # claims of its class may now bind
            self.dirty_claims.update(self.unbound_by_class.get(logic.volume_class(res), ()))
        self.log.info("volume_phase", kind="PersistentVolume", name=name, phase=new_phase)

    def _unbind(self, pv: dict) -> Chain:
        name = pv["metadata"]["name"]
        res = yield ("update", {"object": logic.unbound_volume(pv), "subresource": None})
        if isinstance(res, APIError):
            self._failed(res, "PersistentVolume", name, retry=lambda: self.dirty_volumes.add(name))
            return
        self.put_volume(res)
        self.log.info("volume_unbound", kind="PersistentVolume", name=name)
        yield from self._set_volume_phase(res, "Available", "")

    def _delete_volume(self, pv: dict) -> Chain:
        name = pv["metadata"]["name"]
        res = yield ("delete", {"kind": "PersistentVolume", "name": name, "namespace": None})
        if isinstance(res, APIError):
            self._failed(res, "PersistentVolume", name, retry=lambda: self.dirty_volumes.add(name))
            return
        self.log.info("volume_deleted", kind="PersistentVolume", name=name)

    # -- claims ---------------------------------------------------------------------
    def _claim_chains(self, keys: list[Key]) -> Iterable[Chain]:
        chains: list[Chain] = []
        for key in keys:
            claim = self.claims.get(key)
            if claim is None:
                continue
            plan = self._plan(key, claim)
            for ev in plan.events:
                self.recorder.event(claim, *ev)
            if plan.bind is not None:
                pv = self.volumes.get(plan.bind)
                if pv is None:
                    continue
                new_pv = logic.bound_volume(pv, claim)
                if new_pv is not None:   # assume it now: no other claim may take it in this pass
                    self.put_volume(new_pv, force=True)
                chains.append(self._bind(key, claim, pv, new_pv))
            elif plan.provisioner is not None:
                new = logic.with_provisioner(claim, plan.provisioner)
                if new is not None:
                    chains.append(self._update_claim(key, new, None))
            elif plan.phase is not None:
                st = logic.claim_phase_status(claim, plan.phase, None)
                if st is not None:
                    chains.append(self._update_claim(key, {**claim, "status": st}, "status"))
        return chains

    def _plan(self, key: Key, claim: dict) -> logic.ClaimPlan:
        vname = (claim.get("spec") or {}).get("volumeName") or ""
        cls = logic.claim_class(claim)
        node_name = logic.selected_node(claim)

        def candidates() -> list[dict]:
            names = set(self.by_claim.get(key, ())) | self.unclaimed_by_class.get(cls, set())
            return [self.volumes[n] for n in sorted(names) if n in self.volumes]

        return logic.sync_claim(claim, volume=self.volumes.get(vname) if vname else None, candidates=candidates,
                                storage_class=self.classes.get(cls) if cls else None,
                                node=self.nodes.get(node_name) if node_name else None)

    def _update_claim(self, key: Key, obj: dict, subresource: str | None) -> Chain:
        res = yield ("update", {"object": obj, "subresource": subresource})
        if isinstance(res, APIError):
            self._failed(res, "PersistentVolumeClaim", key[1], key[0], lambda: self.dirty_claims.add(key))
            return
        self.put_claim(res)

    def _bind(self, key: Key, claim: dict, pv: dict, new_pv: dict | None) -> Chain:
        name = pv["metadata"]["name"]
        if new_pv is not None:
            res = yield ("update", {"object": new_pv, "subresource": None})
            if isinstance(res, APIError):
                self.restore_volume(name)
                self._failed(res, "PersistentVolume", name, retry=lambda: self.dirty_claims.add(key))
                return
            pv = res
            self.put_volume(pv, force=True)
        st = logic.bound_volume_status(pv, cu.format_time(self.wall()))
        if st is not None:
            res = yield ("update", {"object": {**pv, "status": st}, "subresource": "status"})
            if isinstance(res, APIError):
                self._failed(res, "PersistentVolume", name, retry=lambda: self.dirty_claims.add(key))
                return
            pv = res
            self.put_volume(pv)
        new_claim = logic.bound_claim(claim, pv)
        if new_claim is not None:
            res = yield ("update", {"object": new_claim, "subresource": None})
            if isinstance(res, APIError):
                self._failed(res, "PersistentVolumeClaim", key[1], key[0], lambda: self.dirty_claims.add(key))
                return
            claim = res
            self.put_claim(claim)
        cst = logic.claim_phase_status(claim, "Bound", pv)
        if cst is not None:
            res = yield ("update", {"object": {**claim, "status": cst}, "subresource": "status"})
            if isinstance(res, APIError):
                self._failed(res, "PersistentVolumeClaim", key[1], key[0], lambda: self.dirty_claims.add(key))
                return
            self.put_claim(res)
            self.log.info("volume_bound", kind="PersistentVolumeClaim", namespace=key[0], name=key[1], volume=name)

    def status(self) -> dict[str, Any]:
        return {"volumes": len(self.volumes), "claims": len(self.claims),
                "unbound": sum(len(k) for k in self.unbound_by_class.values())}
