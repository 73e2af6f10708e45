"""The StatefulSet controller (after ``pkg/controller/statefulset``).

Decisions live in ``statefulset_logic``; this module moves objects.

Contract
--------
* Informers: StatefulSets, Pods, ControllerRevisions and
  PersistentVolumeClaims (all namespaces, shared).
* A StatefulSet is synced when it changes, when one of its pods or revisions
  changes (an orphan pod dirties the set its name belongs to), when a claim
  in its namespace changes (if it has claim templates), and when a ready pod
  becomes available (``minReadySeconds``).
* A sync, as ``UpdateStatefulSet``: adopt orphan pods that match the selector
  and are named ``<set>-<n>``, release owned pods that no longer match (ownerRefs
  patched with the pod's resourceVersion); find or create the update
  ControllerRevision (``<set>-<hash>``; an equal older revision is renumbered
  instead; a name taken by a different revision bumps ``status.collisionCount``);
  apply ``statefulset_logic.plan``'s actions in order, stopping at the first
  failure; write the status subresource when it changed; delete revisions
  beyond ``revisionHistoryLimit``. A set being deleted is left alone (the
  garbage collector takes its pods, and its claims if whenDeleted=Delete).
* No expectations: pods have fixed names, so a create the cache has not shown
  yet fails with AlreadyExists and the pass stops until the informer catches up.
* Events on the set, in Kubernetes' words: ``SuccessfulCreate`` (``create Pod
  web-0 in StatefulSet web successful``, ``create Claim www-web-0 Pod web-0 in
  StatefulSet web success``), ``SuccessfulDelete`` (``delete Pod web-2 in
  StatefulSet web successful``), ``SuccessfulUpdate``, and the Warnings
  ``FailedCreate``/``FailedDelete``/``FailedUpdate`` (``... failed error: MSG``).
* Logs: ``statefulset_pod_created``, ``statefulset_pod_deleted`` (with the
  reason: failed, scale-down, update), ``statefulset_claim_created``,
  ``controllerrevision_created``, ``controllerrevision_deleted``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import controller_utils as cu
from control.controllers import statefulset_history as history
from control.controllers import statefulset_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.selectors import label_selector_from_dict
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]
MAX_COLLISIONS = 20
_TRANSIENT = (errors.UNAVAILABLE, errors.TIMEOUT)


def _key(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class _Stop(Exception):
    """The pass stops here (an action failed); the informer or a retry resumes it."""


class StatefulSetController(cu.KeyedSync):
    name = "statefulset"
    kind = "StatefulSet"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.sets = ctx.informers.informer("StatefulSet")
        self.pods = ctx.informers.informer("Pod")
        self.revisions = ctx.informers.informer("ControllerRevision")
        self.claims = ctx.informers.informer("PersistentVolumeClaim")
        self.recorder = EventRecorder(self.client, "statefulset-controller", clock=self.wall)
        self.dirty: set[Key] = set()
        self.timers: dict[Key, float] = {}
        self.pods_by_ns: dict[str, set[str]] = {}
        self.sets.add_event_handler(lambda o: self.dirty.add(_key(o)), lambda _o, n: self.dirty.add(_key(n)),
                                    self._set_deleted)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.revisions.add_event_handler(self._owned_changed, lambda _o, n: self._owned_changed(n),
                                         self._owned_changed)
        self.claims.add_event_handler(self._claim_changed, lambda _o, n: self._claim_changed(n),
                                      self._claim_changed)

    # -- handlers ---------------------------------------------------------------
    def _set_deleted(self, sts: dict) -> None:
        self.timers.pop(_key(sts), None)
        self.dirty.discard(_key(sts))

    def _owned_changed(self, obj: dict) -> None:
        ref = cu.controller_ref(obj)
        ns = obj["metadata"].get("namespace") or ""
        if ref is not None:
            if ref.get("kind") == "StatefulSet":
                self.dirty.add((ns, ref.get("name", "")))
            return
        parent, _ = logic.parent_and_ordinal(obj["metadata"].get("name", ""))
        if parent and self.sets.get(parent, ns) is not None:
            self.dirty.add((ns, parent))

    def _pod_added(self, pod: dict) -> None:
        self.pods_by_ns.setdefault(pod["metadata"].get("namespace") or "", set()).add(pod["metadata"]["name"])
        self._owned_changed(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if cu.controller_ref(old) != cu.controller_ref(new):
            self._owned_changed(old)
        self._owned_changed(new)

    def _pod_deleted(self, pod: dict) -> None:
        names = self.pods_by_ns.get(pod["metadata"].get("namespace") or "")
        if names is not None:
            names.discard(pod["metadata"]["name"])
        self._owned_changed(pod)

    def _claim_changed(self, claim: dict) -> None:
        ns = claim["metadata"].get("namespace") or ""
        for sts in self.sets.list():
            if (sts["metadata"].get("namespace") or "") == ns and logic.spec_of(sts).get("volumeClaimTemplates"):
                self.dirty.add(_key(sts))

    # -- loop -------------------------------------------------------------------
    def start(self) -> None:
        pass

    def sync_one(self, key: Key) -> None:
        self.sync_statefulset(key)

    def sync_statefulset(self, key: Key) -> None:
        sts = self.sets.get(key[1], key[0])
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        pods = self._claim_pods(sts)
        revisions = self._owned(self.revisions.list(), sts)
        update_cr, collision = self._update_revision(sts, revisions)
        if update_cr is None:
            return
        choice_current = (sts.get("status") or {}).get("currentRevision")
        by_name = {r["metadata"]["name"]: r for r in revisions}
        by_name[update_cr["metadata"]["name"]] = update_cr
        current_cr = by_name.get(choice_current or "", update_cr)
        current = logic.Revision(current_cr["metadata"]["name"], history.revision_template(current_cr), current_cr)
        update = logic.Revision(update_cr["metadata"]["name"], history.revision_template(update_cr), update_cr)
        stored_status = sts.get("status") or {}
        sts = {**sts, "status": {**stored_status, "collisionCount": collision}}
        claims: dict[str, dict] = {}
        if logic.spec_of(sts).get("volumeClaimTemplates"):
            claims = {c["metadata"]["name"]: c for c in self.claims.list()
                      if (c["metadata"].get("namespace") or "") == key[0]}
        plan = logic.plan(sts, pods, claims, current, update, self.wall())
        try:
            for action in plan.actions:
                self._apply(sts, action)
        except _Stop:
            pass
        if plan.requeue_at is not None:
            self.timers[key] = min(plan.requeue_at + 0.001, self.timers.get(key, float("inf")))
        if logic.status_changed(stored_status, plan.status):
            cu.write_status(self.client, sts, {**stored_status, **plan.status}, self.dirty, key)
        live = {current.name, update.name}
        for cr in history.history_to_delete(sts, pods, list(by_name.values()), live):
            self._delete_revision(cr)

    # -- pods -------------------------------------------------------------------
    def _owned(self, objs: list[dict], sts: dict) -> list[dict]:
        ns, uid = sts["metadata"].get("namespace") or "", sts["metadata"].get("uid")
        return [o for o in objs if (o["metadata"].get("namespace") or "") == ns
                and (cu.controller_ref(o) or {}).get("uid") == uid]

    def _claim_pods(self, sts: dict) -> list[dict]:
        """``ClaimPods``: owned members, adopting matching orphans and releasing non-matching pods."""
        ns, uid = sts["metadata"].get("namespace") or "", sts["metadata"].get("uid", "")
        selector = label_selector_from_dict(logic.spec_of(sts).get("selector"))
        out = []
        for name in sorted(self.pods_by_ns.get(ns, ())):
            pod = self.pods.get(name, ns)
            if pod is None:
                continue
            ref = cu.controller_ref(pod)
            match = selector.matches(cu.labels_of(pod)) and logic.is_member(sts, pod)
            if ref is not None and ref.get("uid") == uid:
                if match:
                    out.append(pod)
                elif self._patch_refs(pod, cu.refs_without(pod, uid)):
                    self.log.info("pod_released", kind="Pod", namespace=ns, name=name, owner=sts["metadata"]["name"])
            elif ref is None and match and not logic.is_terminating(pod):
                refs = cu.refs_without(pod, uid) + [cu.owner_ref(sts, "StatefulSet")]
                if self._patch_refs(pod, refs):
                    self.log.info("pod_adopted", kind="Pod", namespace=ns, name=name, owner=sts["metadata"]["name"])
                    out.append({**pod, "metadata": {**pod["metadata"], "ownerReferences": refs}})
        return out

    def _patch_refs(self, obj: dict, refs: list[dict], kind: str = "Pod") -> bool:
        md = obj["metadata"]
        try:
            self.client.patch(kind, md["name"], {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                                              "ownerReferences": refs}}, md.get("namespace"))
            return True
        except APIError as e:
            if e.code in (errors.CONFLICT, errors.NOT_FOUND, errors.INVALID):
                return False
            raise

    def _event_fail(self, sts: dict, verb: str, what: str, e: APIError) -> None:
        reason = "Failed" + verb.capitalize()
        self.recorder.event(sts, "Warning", reason,
                            f"{verb} {what} in StatefulSet {sts['metadata']['name']} failed error: {e.message}")

    def _apply(self, sts: dict, a: logic.Action) -> None:
        set_name, ns = sts["metadata"]["name"], sts["metadata"].get("namespace") or "default"
        pname = a.pod["metadata"]["name"]
        if a.op in ("create", "create_claims"):
            self._create_claims(sts, a)
        if a.op == "create":
            try:
                pod = self.client.create(a.pod, ns)
            except APIError as e:
                if e.code in _TRANSIENT:
                    raise
                if e.code != errors.ALREADY_EXISTS:   # AlreadyExists: the cache is behind
                    self._event_fail(sts, "create", f"Pod {pname}", e)
                    self.log.warning("statefulset_pod_create_failed", kind="StatefulSet", namespace=ns,
                                     name=set_name, pod=pname, code=e.code, error=e.message)
                raise _Stop() from e
            self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                f"create Pod {pname} in StatefulSet {set_name} successful")
            self.log.info("statefulset_pod_created", kind="StatefulSet", namespace=ns, name=set_name,
                          pod=pod["metadata"]["name"])
        elif a.op == "delete":
            try:
                self.client.delete("Pod", pname, ns)
            except APIError as e:
                if e.code in _TRANSIENT:
                    raise
                if e.code == errors.NOT_FOUND:
                    return
                self._event_fail(sts, "delete", f"Pod {pname}", e)
                raise _Stop() from e
            self.recorder.event(sts, "Normal", "SuccessfulDelete",
                                f"delete Pod {pname} in StatefulSet {set_name} successful")
            self.log.info("statefulset_pod_deleted", kind="StatefulSet", namespace=ns, name=set_name,
                          pod=pname, reason=a.reason)
        elif a.op == "update_claim":
            assert a.claim is not None
            if not self._patch_refs(a.claim, a.claim["metadata"].get("ownerReferences") or [],
                                    kind="PersistentVolumeClaim"):
                raise _Stop()
        elif a.op == "update_pod":
            md = a.pod["metadata"]
            try:
                self.client.patch("Pod", pname, {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                                              "labels": a.labels}}, ns)
            except APIError as e:
                if e.code in _TRANSIENT:
                    raise
                self._event_fail(sts, "update", f"Pod {pname}", e)
                raise _Stop() from e
            self.recorder.event(sts, "Normal", "SuccessfulUpdate",
                                f"update Pod {pname} in StatefulSet {set_name} successful")
        elif a.op == "fail":
            self.recorder.event(sts, "Warning", "FailedCreate",
                                f"create Pod {pname} in StatefulSet {set_name} failed error: {a.reason}")
            raise _Stop()

    def _create_claims(self, sts: dict, a: logic.Action) -> None:
        set_name, ns = sts["metadata"]["name"], sts["metadata"].get("namespace") or "default"
        pname = a.pod["metadata"]["name"]
        for claim in a.claims:
            cname = claim["metadata"]["name"]
            try:
                self.client.create(claim, ns)
            except APIError as e:
                if e.code in _TRANSIENT:
                    raise
                if e.code == errors.ALREADY_EXISTS:
                    continue
                self.recorder.event(sts, "Warning", "FailedCreate",
                                    f"create Claim {cname} for Pod {pname} in StatefulSet {set_name} "
                                    f"failed error: {e.message}")
                self.recorder.event(sts, "Warning", "FailedCreate",
                                    f"create Pod {pname} in StatefulSet {set_name} failed error: "
                                    f"failed to create PVC {cname}: {e.message}")
                self.log.warning("statefulset_claim_create_failed", kind="StatefulSet", namespace=ns,
                                 name=set_name, claim=cname, code=e.code, error=e.message)
                raise _Stop() from e
            self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                f"create Claim {cname} Pod {pname} in StatefulSet {set_name} success")
            self.log.info("statefulset_claim_created", kind="StatefulSet", namespace=ns, name=set_name,
                          claim=cname)

    # -- revisions --------------------------------------------------------------
    def _update_revision(self, sts: dict, revisions: list[dict]) -> tuple[dict | None, int]:
        """``getStatefulSetRevisions``: the update revision (created or renumbered) and the collision count."""
        collision = int((sts.get("status") or {}).get("collisionCount") or 0)
        choice = history.choose_revisions(sts, revisions)
        if choice.update is not None:
            return choice.update, collision
        md = sts["metadata"]
        ns = md.get("namespace") or "default"
        if choice.renumber is not None:
            cr, number = choice.renumber
            return self.client.patch("ControllerRevision", cr["metadata"]["name"], {"revision": number}, ns), collision
        assert choice.create is not None
        number = choice.create["revision"]
        for _ in range(MAX_COLLISIONS):
            cr = history.new_revision(sts, number, collision)
            try:
                created = self.client.create(cr, ns)
            except APIError as e:
                if e.code != errors.ALREADY_EXISTS:
                    raise
                existing = self.client.get("ControllerRevision", cr["metadata"]["name"], ns)
                if existing.get("data") == cr["data"]:
                    return existing, collision
                collision += 1   # a hash collision: try the next name
                continue
            self.log.info("controllerrevision_created", kind="ControllerRevision", namespace=ns,
                          name=cr["metadata"]["name"], revision=number, owner=md["name"])
            return created, collision
        self.log.error("controllerrevision_collisions", kind="StatefulSet", namespace=ns, name=md["name"])
        return None, collision

    def _delete_revision(self, cr: dict) -> None:
        md = cr["metadata"]
        try:
            self.client.delete("ControllerRevision", md["name"], md.get("namespace"))
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
            return
        self.log.info("controllerrevision_deleted", kind="ControllerRevision", namespace=md.get("namespace"),
                      name=md["name"], reason="revisionHistoryLimit")

    def status(self) -> dict[str, Any]:
        return {"statefulsets": len(self.sets.cache), "dirty": len(self.dirty)}
