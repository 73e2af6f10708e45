"""The ReplicaSet controller (after ``pkg/controller/replicaset/replica_set.go``).

Decisions live in ``replicaset_logic``; this module moves objects and timers.

Contract
--------
* Informers: ReplicaSets and Pods (all namespaces, shared).
* A ReplicaSet is synced when it or one of its pods changes (a pod's
  controller ownerRef names its RS; an orphan dirties every RS of its
  namespace whose selector matches), and again when one of its ready pods
  becomes available (``minReadySeconds``).
* Expectations (Kubernetes' ``ControllerExpectations``): after creating N pods
  or deleting M, the RS is not managed again until the informer has shown
  those N creations and M deletions (or ``EXPECTATIONS_TIMEOUT`` passed), so
  a stale cache never makes it create twice. Status is still written.
* Creates are pipelined in slow-start batches (1, 2, 4, ...): each batch is
  sent at once (``client.send``) then collected (``client.wait``); a failed
  create stops the remaining batches (``FailedCreate`` Warning event) and they
  are retried on a later sync. Deletes are pipelined in one batch.
* Adoption and release patch ``metadata.ownerReferences`` with the pod's
  resourceVersion (a Conflict is retried on the next sync).
* Status goes through the status subresource, only when it changed.
* Events on the RS: ``SuccessfulCreate`` (``Created pod: NAME``),
  ``SuccessfulDelete`` (``Deleted pod: NAME``), ``FailedCreate``.
* Logs: ``pod_created`` (each pod, on the create's reply), ``pods_created``, ``pods_deleted``,
  ``pod_adopted``, ``pod_released``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import controller_utils as cu
from control.controllers import replicaset_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.selectors import label_selector_from_dict
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]
EXPECTATIONS_TIMEOUT = 300.0   # Kubernetes' ExpectationsTimeout


class Expectations:
    """Creations and deletions a controller waits to see through its informer."""

    def __init__(self) -> None:
        self.adds: dict[Key, int] = {}
        self.dels: dict[Key, set[str]] = {}
        self.since: dict[Key, float] = {}

    def expect(self, key: Key, adds: int, dels: list[str], now: float) -> None:
        self.adds[key] = self.adds.get(key, 0) + adds
        self.dels.setdefault(key, set()).update(dels)
        self.since[key] = now

    def lower(self, key: Key, adds: int) -> None:
        if key in self.adds:
            self.adds[key] -= adds

    def creation_observed(self, key: Key) -> None:
        if self.adds.get(key, 0) > 0:
            self.adds[key] -= 1

    def deletion_observed(self, key: Key, uid: str) -> None:
        if key in self.dels:
            self.dels[key].discard(uid)

    def satisfied(self, key: Key, now: float) -> bool:
        if self.adds.get(key, 0) <= 0 and not self.dels.get(key):
            return True
        return now - self.since.get(key, now) > EXPECTATIONS_TIMEOUT

    def forget(self, key: Key) -> None:
        for d in (self.adds, self.dels, self.since):
            d.pop(key, None)


def _key(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class ReplicaSetController(cu.KeyedSync):
    name = "replicaset"
    kind = "ReplicaSet"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.rss = ctx.informers.informer("ReplicaSet")
        self.pods = ctx.informers.informer("Pod")
        self.recorder = EventRecorder(self.client, "replicaset-controller", clock=self.wall)
        self.expectations = Expectations()
        self.pods_by_ns: dict[str, set[str]] = {}
        self.dirty: set[Key] = set()
        self.timers: dict[Key, float] = {}   # wall time a pod becomes available
        self.rss.add_event_handler(lambda o: self.dirty.add(_key(o)),
                                   lambda _o, n: self.dirty.add(_key(n)), self._rs_deleted)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- handlers ---------------------------------------------------------------
    def _rs_deleted(self, rs: dict) -> None:
        key = _key(rs)
        self.expectations.forget(key)
        self.timers.pop(key, None)
        self.dirty.discard(key)

    def _owner_key(self, pod: dict) -> Key | None:
        ref = cu.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        key = (pod["metadata"].get("namespace") or "", ref.get("name", ""))
        rs = self.rss.get(key[1], key[0])
        return key if rs is not None and rs["metadata"].get("uid") == ref.get("uid") else None

    def _dirty_for(self, pod: dict) -> None:
        if cu.controller_ref(pod) is not None:
            key = self._owner_key(pod)
            if key is not None:
                self.dirty.add(key)
            return
        ns = pod["metadata"].get("namespace") or ""
        labels = cu.labels_of(pod)
        for rs in self.rss.list():
            if (rs["metadata"].get("namespace") or "") == ns and \
                    label_selector_from_dict((rs.get("spec") or {}).get("selector")).matches(labels):
                self.dirty.add(_key(rs))

    def _pod_added(self, pod: dict) -> None:
        self.pods_by_ns.setdefault(pod["metadata"].get("namespace") or "", set()).add(pod["metadata"]["name"])
        key = self._owner_key(pod)
        if pod["metadata"].get("deletionTimestamp"):
            if key is not None:
                self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        elif key is not None:
            self.expectations.creation_observed(key)
        self._dirty_for(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if new["metadata"].get("deletionTimestamp") and not old["metadata"].get("deletionTimestamp"):
            key = self._owner_key(new)
            if key is not None:
                self.expectations.deletion_observed(key, new["metadata"].get("uid", ""))
        if cu.labels_of(old) != cu.labels_of(new) or cu.controller_ref(old) != cu.controller_ref(new):
            self._dirty_for(old)
        self._dirty_for(new)

    def _pod_deleted(self, pod: dict) -> None:
        names = self.pods_by_ns.get(pod["metadata"].get("namespace") or "")
        if names is not None:
            names.discard(pod["metadata"]["name"])
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self._dirty_for(pod)

    # -- loop -------------------------------------------------------------------
    def start(self) -> None:
        pass

    def pods_in(self, ns: str) -> list[dict]:
        out = []
        for name in self.pods_by_ns.get(ns, ()):
            p = self.pods.get(name, ns)
            if p is not None:
                out.append(p)
        return out

    def sync_one(self, key: tuple[str, str]) -> None:
        self.sync_replicaset(key)

    def sync_replicaset(self, key: Key) -> None:
        rs = self.rss.get(key[1], key[0])
        if rs is None:
            self.expectations.forget(key)
            return
        wall = self.wall()
        plan = logic.reconcile_replicaset(rs, self.pods_in(key[0]), wall)
        if self.expectations.satisfied(key, self.clock()):
            self._adopt_and_release(rs, plan)
            if plan.create:
                self._create_pods(rs, key, plan.create)
            if plan.delete:
                self._delete_pods(rs, key, plan.delete)
        if plan.requeue_at is not None:
            self.timers[key] = min(plan.requeue_at + 0.001, self.timers.get(key, float("inf")))
        old = rs.get("status") or {}
        if logic.status_changed(old, plan.status):
            cu.write_status(self.client, rs, {**old, **plan.status}, self.dirty, key)

    def _patch_refs(self, pod: dict, refs: list[dict]) -> bool:
        md = pod["metadata"]
        try:
            self.client.patch("Pod", md["name"], {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                                               "ownerReferences": refs}}, md.get("namespace"))
            return True
        except APIError as e:
            if e.code in (errors.CONFLICT, errors.NOT_FOUND, errors.INVALID):
                return False
            raise

    def _adopt_and_release(self, rs: dict, plan: logic.ReplicaSetPlan) -> None:
        ns, name, uid = rs["metadata"].get("namespace"), rs["metadata"]["name"], rs["metadata"].get("uid", "")
        for pod in plan.adopt:
            if self._patch_refs(pod, cu.refs_without(pod, uid) + [cu.owner_ref(rs, "ReplicaSet")]):
                self.log.info("pod_adopted", kind="Pod", namespace=ns, name=pod["metadata"]["name"], owner=name)
        for pod in plan.release:
            if self._patch_refs(pod, cu.refs_without(pod, uid)):
                self.log.info("pod_released", kind="Pod", namespace=ns, name=pod["metadata"]["name"], owner=name)

    def _create_pods(self, rs: dict, key: Key, n: int) -> None:
        ns = key[0]
        self.expectations.expect(key, n, [], self.clock())
        created = attempted = 0
        template = logic.pod_from_template(rs)
        for batch in cu.slow_start_batches(n):
            try:
                rids = [self.client.send("create", object=template, namespace=ns) for _ in range(batch)]
            except APIError:
                self.expectations.forget(key)   # some may have gone out: trust the informer
                raise
            attempted += batch
            failed: APIError | None = None
            for rid in rids:
                try:
                    pod = self.client.wait(rid)
                except APIError as e:
                    if e.code in (errors.UNAVAILABLE, errors.TIMEOUT):
                        self.expectations.forget(key)   # unknown outcome: trust the informer
                        raise
                    failed = e
                    self.expectations.lower(key, 1)
                    continue
                created += 1
                self.log.info("pod_created", kind="Pod", namespace=ns, name=pod["metadata"]["name"], replicaset=key[1])
                self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
            if failed is not None:
                self.expectations.lower(key, n - attempted)   # the skipped batches
                self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {failed.message}")
                self.log.warning("pod_create_failed", kind="ReplicaSet", namespace=ns, name=key[1],
                                 code=failed.code, error=failed.message)
                self.dirty.add(key)
                break
        self.log.info("pods_created", kind="ReplicaSet", namespace=ns, name=key[1], count=created)

    def _delete_pods(self, rs: dict, key: Key, pods: list[dict]) -> None:
        """Delete ``pods`` pipelined. A pod whose delete failed, or whose outcome is unknown
        (the apiserver lost), or that was never sent, is no longer expected to go (as
        Kubernetes' DeletionObserved on error): the informer has the last word, and the
        next sync does not wait out the ExpectationsTimeout. A lost apiserver is raised."""
        ns = key[0]
        self.expectations.expect(key, 0, [p["metadata"].get("uid", "") for p in pods], self.clock())
        sent: list[tuple[dict, int]] = []
        lost: APIError | None = None
        for p in pods:
            try:
                sent.append((p, self.client.send("delete", kind="Pod", name=p["metadata"]["name"],
                                                 namespace=ns)))
            except APIError as e:
                lost = e
                break
        deleted = 0
        for pod, rid in sent:
            try:
                # Once the apiserver is lost, collect what already came without waiting again.
                self.client.wait(rid, 0.0 if lost is not None else None)
            except APIError as e:
                self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
                if e.code in (errors.UNAVAILABLE, errors.TIMEOUT):
                    lost = lost or e
                continue
            deleted += 1
            self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        for pod in pods[len(sent):]:
            self.expectations.deletion_observed(key, pod["metadata"].get("uid", ""))
        self.log.info("pods_deleted", kind="ReplicaSet", namespace=ns, name=key[1], count=deleted)
        if lost is not None:
            raise lost

    def status(self) -> dict[str, Any]:
        return {"replicasets": len(self.rss.cache), "dirty": len(self.dirty)}

