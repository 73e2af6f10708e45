"""The Deployment controller (after ``pkg/controller/deployment``).

Decisions live in ``deployment_logic``; this module moves objects and timers.

Contract
--------
* Informers: Deployments, ReplicaSets and Pods (all namespaces, shared).
* A Deployment is synced when it or one of its ReplicaSets changes, when a
  pod of one of its RSs is deleted (Recreate waits for old pods to go), and
  when its progress deadline is due.
* A sync: adopt orphan RSs matching the selector (ownerRefs patch); find the
  new RS (template equal ignoring ``pod-template-hash``) or create it
  (``<deploy>-<hash>``, revision = max old revision + 1; an AlreadyExists with
  a different template bumps ``status.collisionCount``); keep the RS's and the
  Deployment's ``deployment.kubernetes.io/revision``; then, unless
  a scaling event or ``spec.paused`` (then RSs are only resized, in proportion:
  ``scale_plan``), apply one step of the strategy (RollingUpdate or Recreate)
  by updating RS ``spec.replicas`` with their resourceVersion (a Conflict
  means a newer RS is on its way: the sync is retried); when the rollout is
  complete, delete old RSs beyond ``revisionHistoryLimit``; finally write the
  status (status subresource) when it changed.
* Events on the Deployment: ``ScalingReplicaSet`` (``Scaled up replica set
  web-7d4b9 to 3 from 0`` / ``Scaled down ...``).
* Logs: ``replicaset_created``, ``replicaset_scaled``, ``replicaset_deleted``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import controller_utils as cu
from control.controllers import deployment_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.selectors import label_selector_from_dict
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]


def _key(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class DeploymentController(cu.KeyedSync):
    name = "deployment"
    kind = "Deployment"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.deploys = ctx.informers.informer("Deployment")
        self.rss = ctx.informers.informer("ReplicaSet")
        self.pods = ctx.informers.informer("Pod")
        self.recorder = EventRecorder(self.client, "deployment-controller", clock=self.wall)
        self.dirty: set[Key] = set()
        self.timers: dict[Key, float] = {}
        self.deploys.add_event_handler(lambda o: self.dirty.add(_key(o)),
                                       lambda _o, n: self.dirty.add(_key(n)),
                                       lambda o: self.timers.pop(_key(o), None))
        self.rss.add_event_handler(self._rs_changed, lambda o, n: (self._rs_changed(o), self._rs_changed(n)),
                                   self._rs_changed)
        self.pods.add_event_handler(None, None, self._pod_deleted)

    # -- handlers ---------------------------------------------------------------
    def _owner(self, obj: dict, kind: str) -> Key | None:
        ref = cu.controller_ref(obj)
        if ref is None or ref.get("kind") != kind:
            return None
        return (obj["metadata"].get("namespace") or "", ref.get("name", ""))

    def _rs_changed(self, rs: dict) -> None:
        key = self._owner(rs, "Deployment")
        if key is not None:
            self.dirty.add(key)
            return
        ns, labels = rs["metadata"].get("namespace") or "", cu.labels_of(rs)
        for d in self.deploys.list():
            if (d["metadata"].get("namespace") or "") == ns and \
                    label_selector_from_dict((d.get("spec") or {}).get("selector")).matches(labels):
                self.dirty.add(_key(d))

    def _pod_deleted(self, pod: dict) -> None:
        rs_key = self._owner(pod, "ReplicaSet")
        rs = self.rss.get(rs_key[1], rs_key[0]) if rs_key else None
        key = self._owner(rs, "Deployment") if rs else None
        if key is not None:
            self.dirty.add(key)

    # -- loop -------------------------------------------------------------------
    def start(self) -> None:
        pass

    def owned_rss(self, d: dict) -> list[dict]:
        ns, uid = d["metadata"].get("namespace") or "", d["metadata"].get("uid")
        selector = label_selector_from_dict((d.get("spec") or {}).get("selector"))
        out = []
        for rs in self.rss.list():
            if (rs["metadata"].get("namespace") or "") != ns:
                continue
            ref = cu.controller_ref(rs)
            if ref is not None:
                if ref.get("uid") == uid:
                    out.append(rs)
            elif selector.matches(cu.labels_of(rs)) and not rs["metadata"].get("deletionTimestamp"):
                md = rs["metadata"]
                rs = self.client.patch("ReplicaSet", md["name"], {"metadata": {
                    "resourceVersion": md.get("resourceVersion"),
                    "ownerReferences": (md.get("ownerReferences") or []) + [cu.owner_ref(d, "Deployment")]}}, ns)
                self.log.info("replicaset_adopted", kind="ReplicaSet", namespace=ns, name=md["name"],
                              owner=d["metadata"]["name"])
                out.append(rs)
        return out

    def sync_one(self, key: tuple[str, str]) -> None:
        self.sync_deployment(key)

    def sync_deployment(self, key: Key) -> None:
        d = self.deploys.get(key[1], key[0])
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        rss = self.owned_rss(d)
        new_rs, olds = logic.find_new_and_old(d, rss)
        paused = bool((d.get("spec") or {}).get("paused"))
        reason = None
        max_old = max((logic.revision(r) for r in olds), default=0)
        if new_rs is not None:
            new_rs = self._sync_revision(d, new_rs, max_old + 1)
            if not any(c.get("type") == "Progressing" for c in (d.get("status") or {}).get("conditions") or []):
                reason = "FoundNewReplicaSet"
        elif not paused and (logic.is_rolling(d) or self._recreate_ready(d, olds)):
            count = logic.replicas(d) if not logic.is_rolling(d) else \
                logic.rolling_update_plan(d, {"metadata": {"name": ""}, "spec": {"replicas": 0}},
                                          olds).get("", 0)
            new_rs = self._create_rs(d, max_old + 1, count)
            if new_rs is None:
                return
            reason = "NewReplicaSetCreated"
        if new_rs is not None:
            d = self._set_deploy_revision(d, logic.revision(new_rs))
        scaling = paused or logic.is_scaling_event(d, new_rs, olds)
        plan = logic.scale_plan(d, new_rs, olds) if scaling else {}
        if not plan and not paused:   # one step of the rollout
            if logic.is_rolling(d):
                plan = logic.rolling_update_plan(d, new_rs, olds)
            else:
                plan, _ = logic.recreate_plan(d, new_rs, olds, not self._recreate_ready(d, olds))
        if plan:
            new_name = new_rs["metadata"]["name"] if new_rs is not None else None
            for name, count in plan.items():
                if name == new_name:
                    assert new_rs is not None
                    new_rs = self._scale(d, new_rs, count)
                else:
                    olds = [self._scale(d, r, count) if r["metadata"]["name"] == name else r for r in olds]
        all_rss = olds + ([new_rs] if new_rs is not None else [])
        status, recheck = logic.calculate_status(d, all_rss, new_rs, self.wall(), reason)
        if not scaling and logic.is_complete(d, status):
            for rs in logic.rss_to_cleanup(d, olds):
                self._delete_rs(rs)
        if recheck is not None:
            self.timers[key] = recheck
        if logic.status_differs(d.get("status") or {}, status):
            cu.write_status(self.client, d, status, self.dirty, key)

    def _pods_of(self, rss: list[dict]) -> list[dict]:
        uids = {r["metadata"].get("uid") for r in rss}
        return [p for p in self.pods.list() if (cu.controller_ref(p) or {}).get("uid") in uids]

    def _recreate_ready(self, d: dict, olds: list[dict]) -> bool:
        """Recreate may scale up: old RSs at 0 and none of their pods left running."""
        if any(logic.replicas(r) > 0 for r in olds):
            return False
        return not any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                       for p in self._pods_of(olds))

    def _sync_revision(self, d: dict, rs: dict, want: int) -> dict:
        if logic.revision(rs) >= want:
            return rs
        md = rs["metadata"]
        return self.client.patch("ReplicaSet", md["name"], {"metadata": {
            "resourceVersion": md.get("resourceVersion"), "annotations": {logic.REVISION: str(want)}}},
            md.get("namespace"))

    def _set_deploy_revision(self, d: dict, rev: int) -> dict:
        if logic.revision(d) == rev:
            return d
        md = d["metadata"]
        return self.client.patch("Deployment", md["name"], {"metadata": {"annotations": {logic.REVISION: str(rev)}}},
                          md.get("namespace"))

    def _create_rs(self, d: dict, rev: int, count: int) -> dict | None:
        rs = logic.new_replicaset(d, rev, count)
        ns = rs["metadata"]["namespace"]
        try:
            created = self.client.create(rs, ns)
        except APIError as e:
            if e.code != errors.ALREADY_EXISTS:
                raise
            existing = self.client.get("ReplicaSet", rs["metadata"]["name"], ns)
            if cu.is_owned_by(existing, d) and logic.template_without_hash(existing["spec"].get("template")) == \
                    logic.template_without_hash(d["spec"].get("template")):
                return existing
            count_ = int((d.get("status") or {}).get("collisionCount") or 0) + 1   # a hash collision
            self.client.update_status({**d, "status": {**(d.get("status") or {}), "collisionCount": count_}})
            return None
        self.log.info("replicaset_created", kind="ReplicaSet", namespace=ns, name=rs["metadata"]["name"],
                      revision=rev, replicas=count)
        if count > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {rs['metadata']['name']} to {count} from 0")
        return created

    def _scale(self, d: dict, rs: dict, count: int) -> dict:
        """Set an RS's replicas and its desired/max-replicas annotations (when either changed)."""
        old = logic.replicas(rs)
        surge, _ = logic.resolve_fenceposts(d)
        md = rs["metadata"]
        annotations = {logic.DESIRED_REPLICAS: str(logic.replicas(d)),
                       logic.MAX_REPLICAS: str(logic.replicas(d) + (surge if logic.is_rolling(d) else 0))}
        current = md.get("annotations") or {}
        if old == count and all(current.get(k) == v for k, v in annotations.items()):
            return rs
        new = self.client.update({**rs, "metadata": {**md, "annotations": {**current, **annotations}},
                                  "spec": {**rs["spec"], "replicas": count}})
        if old == count:
            return new
        verb = "up" if count > old else "down"
        self.log.info("replicaset_scaled", kind="ReplicaSet", namespace=md.get("namespace"), name=md["name"],
                      replicas=count, previous=old)
        self.recorder.event(d, "Normal", "ScalingReplicaSet",
                            f"Scaled {verb} replica set {md['name']} to {count} from {old}")
        return new

    def _delete_rs(self, rs: dict) -> None:
        md = rs["metadata"]
        try:
            self.client.delete("ReplicaSet", md["name"], md.get("namespace"))
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
            return
        self.log.info("replicaset_deleted", kind="ReplicaSet", namespace=md.get("namespace"), name=md["name"],
                      reason="revisionHistoryLimit")

    def status(self) -> dict[str, Any]:
        return {"deployments": len(self.deploys.cache), "dirty": len(self.dirty)}
