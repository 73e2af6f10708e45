"""The garbage collector: cascading deletion through ownerReferences.

After Kubernetes' ``pkg/controller/garbagecollector``. Decisions live in
``garbagecollector_logic``; this module keeps the owner -> dependents index
(the GC's "graph") from informers and applies the decisions.

Contract
--------
* Informers: every kind in the registry except Event and Lease (high churn,
  never owners in kemu), shared with the other controllers. Kinds added to
  the registry later are picked up without code changes.
* Background: a dependent every one of whose owners is gone (no object of that
  kind/name with that uid) is deleted with ``propagationPolicy: Background``;
  references to gone owners are removed from a dependent that still has a live
  owner. Absence seen in the cache is confirmed with a GET before acting
  (``attemptToDeleteItem``'s live lookup), so a lagging informer cannot cause a
  deletion.
* Foreground: an owner with ``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer has its dependents deleted (``Foreground`` for those that block it);
  the finalizer is removed once no dependent with ``blockOwnerDeletion: true``
  remains (terminating dependents still block), which lets the apiserver
  remove the owner.
* Orphan: an owner with ``deletionTimestamp`` and the ``orphan`` finalizer has
  its ownerReferences removed from every dependent, then the finalizer.
* Every object is re-examined every ``kubelet_sync_frequency`` as a safety net
  (Kubernetes' collector has no such resync; it relies on its graph).
* Logs: ``gc_delete``, ``gc_remove_owner_refs``, ``gc_orphan``,
  ``gc_finalizer_removed``. No Events (Kubernetes' collector records none).
* ``sync()`` never raises for a lost apiserver: work stays queued.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import garbagecollector_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.registry import REGISTRY
from emulator.informer import Informer
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

SKIPPED_KINDS = frozenset({"Event", "Lease"})
ObjKey = tuple[str, str, str]   # kind, namespace, name


def _key(kind: str, obj: dict) -> ObjKey:
    md = obj["metadata"]
    return (kind, md.get("namespace") or "", md["name"])


class GarbageCollector:
    name = "garbagecollector"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.profile = ctx.profile
        self.clock = ctx.clock
        self.log = get_logger()
        self.kinds = sorted(rt.kind for rt in REGISTRY.all() if rt.kind not in SKIPPED_KINDS)
        self.namespaced = {rt.kind: rt.namespaced for rt in REGISTRY.all()}
        self.informers: dict[str, Informer] = {k: ctx.informers.informer(k) for k in self.kinds}
        self.dependents: dict[str, set[ObjKey]] = {}      # owner uid -> dependents
        self.dirty_dependents: set[ObjKey] = set()
        self.dirty_owners: set[ObjKey] = set()
        self.next_resync = self.clock()
        for kind, inf in self.informers.items():
            inf.add_event_handler(lambda o, k=kind: self._added(k, o),
                                  lambda old, new, k=kind: self._updated(k, old, new),
                                  lambda o, k=kind: self._deleted(k, o))

    # -- the graph --------------------------------------------------------------
    def _added(self, kind: str, obj: dict) -> None:
        key = _key(kind, obj)
        for ref in logic.owner_refs(obj):
            self.dependents.setdefault(ref.get("uid") or "", set()).add(key)
        if logic.owner_refs(obj):
            self.dirty_dependents.add(key)
        if logic.is_deleting(obj) and {logic.FOREGROUND, logic.ORPHAN} & set(logic.finalizers(obj)):
            self.dirty_owners.add(key)

    def _unindex(self, kind: str, obj: dict) -> None:
        key = _key(kind, obj)
        for ref in logic.owner_refs(obj):
            deps = self.dependents.get(ref.get("uid") or "")
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self.dependents[ref.get("uid") or ""]

    def _updated(self, kind: str, old: dict, new: dict) -> None:
        self._unindex(kind, old)
        self._added(kind, new)
        if logic.is_deleting(new) and logic.FOREGROUND in logic.finalizers(new):
            self.dirty_dependents.update(self.dependents.get(new["metadata"].get("uid", ""), ()))

    def _deleted(self, kind: str, obj: dict) -> None:
        self._unindex(kind, obj)
        key = _key(kind, obj)
        self.dirty_dependents.discard(key)
        self.dirty_owners.discard(key)
        self.dirty_dependents.update(self.dependents.get(obj["metadata"].get("uid", ""), ()))
        ns = obj["metadata"].get("namespace") or ""
        for ref in logic.owner_refs(obj):   # a foreground owner may now be free
            okind = ref.get("kind") or ""
            if okind in self.informers:
                self.dirty_owners.add((okind, ns if self.namespaced.get(okind, True) else "",
                                       ref.get("name") or ""))

    # -- lookups ----------------------------------------------------------------
    def _owner_ns(self, kind: str, namespace: str) -> str | None:
        if kind not in self.informers:
            return None
        return namespace if self.namespaced.get(kind, True) else ""

    def _cached(self, kind: str, namespace: str, name: str) -> Any:
        ns = self._owner_ns(kind, namespace)
        if ns is None or (self.namespaced.get(kind, True) and not namespace):
            return logic.UNKNOWN   # unknown kind, or a cluster-scoped dependent of a namespaced kind
        return self.informers[kind].get(name, ns)

    def _live(self, kind: str, namespace: str, name: str) -> Any:
        ns = self._owner_ns(kind, namespace)
        if ns is None or (self.namespaced.get(kind, True) and not namespace):
            return logic.UNKNOWN
        try:
            return self.client.get(kind, name, ns or None)
        except APIError as e:
            if e.code == errors.NOT_FOUND:
                return None
            raise

    # -- the loop ---------------------------------------------------------------
    def start(self) -> None:
        self.next_resync = self.clock() + self.profile.kubelet_sync_frequency

    def next_due(self) -> float:
        return self.clock() if (self.dirty_dependents or self.dirty_owners) else self.next_resync

    def sync(self) -> None:
        now = self.clock()
        if now >= self.next_resync:
            self.next_resync = now + self.profile.kubelet_sync_frequency
            for kind, inf in self.informers.items():
                for obj in inf.list():
                    self._added(kind, obj)
        if not all(inf.has_synced for inf in self.informers.values()):
            return
        work = [(self.attempt_to_delete, k) for k in sorted(self.dirty_dependents)] + \
               [(self.process_owner, k) for k in sorted(self.dirty_owners)]
        self.dirty_dependents, self.dirty_owners = set(), set()
        for i, (fn, key) in enumerate(work):
            try:
                fn(key)
            except (APIError, ConnectionError) as e:
                if isinstance(e, APIError) and e.code not in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.log.warning("gc_sync_failed", kind=key[0], namespace=key[1] or None, name=key[2],
                                     code=e.code, error=str(e))
                    continue   # the next resync retries it
                for fn2, key2 in work[i:]:
                    (self.dirty_dependents if fn2 == self.attempt_to_delete else self.dirty_owners).add(key2)
                raise

    def attempt_to_delete(self, key: ObjKey) -> None:
        kind, ns, name = key
        obj = self.informers[kind].get(name, ns)
        if obj is None or logic.dependent_action(obj, self._cached) is None:
            return
        try:   # confirm against the apiserver: the dependent's latest state, then its owners
            obj = self.client.get(kind, name, ns or None)
        except APIError as e:
            if e.code == errors.NOT_FOUND:
                return
            raise
        action = logic.dependent_action(obj, self._live)
        if action is None:
            return
        what, arg = action
        md = obj["metadata"]
        try:
            if what == "patch":
                self.client.patch(kind, name, {"metadata": {"ownerReferences": arg,
                                                            "resourceVersion": md["resourceVersion"]}},
                                  ns or None)
                self.log.info("gc_remove_owner_refs", kind=kind, namespace=ns or None, name=name)
            else:
                self.client.delete(kind, name, ns or None, propagation_policy=arg,
                                   preconditions={"uid": md.get("uid")})
                self.log.info("gc_delete", kind=kind, namespace=ns or None, name=name, propagationPolicy=arg)
        except APIError as e:
            if e.code == errors.CONFLICT:
                self.dirty_dependents.add(key)   # retried with the informer's newer copy
            elif e.code != errors.NOT_FOUND:
                raise

    def process_owner(self, key: ObjKey) -> None:
        kind, ns, name = key
        owner = self.informers[kind].get(name, ns)
        if owner is None or not logic.is_deleting(owner):
            return
        uid = owner["metadata"].get("uid", "")
        pairs = [(k, self.informers[k[0]].get(k[2], k[1])) for k in sorted(self.dependents.get(uid, ()))]
        pairs = [(k, d) for k, d in pairs if d is not None]
        fins = logic.finalizers(owner)
        if logic.ORPHAN in fins:
            for (dkind, dns, dname), d in pairs:
                kept = logic.orphan_patch(d, uid)
                if kept is None:
                    continue
                try:
                    self.client.patch(dkind, dname, {"metadata": {"ownerReferences": kept or None}}, dns or None)
                except APIError as e:
                    if e.code != errors.NOT_FOUND:
                        raise
                self.log.info("gc_orphan", kind=dkind, namespace=dns or None, name=dname, owner=name)
            self._remove_finalizer(kind, ns, owner, logic.ORPHAN)
        elif logic.FOREGROUND in fins:
            to_delete, removable = logic.foreground_action(owner, [d for _k, d in pairs])
            pending = {id(d) for d in to_delete}
            for dkey, d in pairs:
                if id(d) in pending:
                    self.attempt_to_delete(dkey)
            if removable:
                self._remove_finalizer(kind, ns, owner, logic.FOREGROUND)

    def _remove_finalizer(self, kind: str, ns: str, owner: dict, finalizer: str) -> None:
        md = owner["metadata"]
        try:
            self.client.patch(kind, md["name"], {"metadata": {
                "finalizers": logic.without_finalizer(owner, finalizer),
                "resourceVersion": md["resourceVersion"]}}, ns or None)
        except APIError as e:
            if e.code == errors.CONFLICT:
                self.dirty_owners.add((kind, ns, md["name"]))
                return
            if e.code != errors.NOT_FOUND:
                raise
            return
        self.log.info("gc_finalizer_removed", kind=kind, namespace=ns or None, name=md["name"],
                      finalizer=finalizer)
