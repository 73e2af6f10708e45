"""The disruption controller (after ``pkg/controller/disruption/disruption.go``).

Decisions live in ``disruption_logic``; this module moves objects and timers.

Contract
--------
* Informers: PodDisruptionBudgets, Pods, and the controllers whose scale a
  PDB may need (ReplicaSets, Deployments, StatefulSets), all shared.
* A PDB is synced when it changes, when a pod its selector matches (before or
  after the change) is added, changed or deleted, when a ReplicaSet,
  Deployment or StatefulSet of its namespace changes, and again when its
  oldest ``status.disruptedPods`` entry expires (2 minutes after the eviction).
* Status goes through the status subresource (``write_status``), only when it
  changed; a Conflict (an eviction wrote the status meanwhile) syncs the PDB
  again from the newer copy.
* A PDB whose pods have no known controller gets the fail-safe status
  (``disruptionsAllowed: 0``, DisruptionAllowed False/SyncFailed) and a
  ``CalculateExpectedPodCountFailed`` Warning event; unmanaged pods (no
  controller at all, with a percent or maxUnavailable budget) an
  ``UnmanagedPods`` Warning event, once per PDB generation.
* Logs: ``pdb_status_updated`` (name, disruptionsAllowed, currentHealthy,
  desiredHealthy, expectedPods).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control.controllers import controller_utils as cu
from control.controllers import disruption_logic as logic
from emulator.api.errors import APIError
from emulator.api.selectors import label_selector_from_dict
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

Key = tuple[str, str]
OWNER_KINDS = ("ReplicaSet", "Deployment", "StatefulSet")


def _key(obj: dict) -> Key:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class DisruptionController(cu.KeyedSync):
    name = "disruption"
    kind = "PodDisruptionBudget"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.pdbs = ctx.informers.informer("PodDisruptionBudget")
        self.pods = ctx.informers.informer("Pod")
        self.owners = {k: ctx.informers.informer(k) for k in OWNER_KINDS}
        self.recorder = EventRecorder(self.client, "controllermanager", clock=self.wall)
        self.dirty: set[Key] = set()
        self.timers: dict[Key, float] = {}
        self.warned: dict[Key, tuple[str, int]] = {}   # (reason, generation) last reported
        self.pdbs.add_event_handler(lambda o: self.dirty.add(_key(o)),
                                    lambda _o, n: self.dirty.add(_key(n)), self._pdb_deleted)
        self.pods.add_event_handler(self._pod_changed, lambda o, n: (self._pod_changed(o), self._pod_changed(n)),
                                    self._pod_changed)
        for inf in self.owners.values():
            inf.add_event_handler(self._owner_changed, lambda _o, n: self._owner_changed(n), self._owner_changed)

    # -- handlers ---------------------------------------------------------------
    def _pdb_deleted(self, pdb: dict) -> None:
        key = _key(pdb)
        self.timers.pop(key, None)
        self.dirty.discard(key)
        self.warned.pop(key, None)

    def _pdbs_in(self, ns: str) -> list[dict]:
        return [p for p in self.pdbs.list() if (p["metadata"].get("namespace") or "") == ns]

    def _pod_changed(self, pod: dict) -> None:
        labels = cu.labels_of(pod)
        for pdb in self._pdbs_in(pod["metadata"].get("namespace") or ""):
            try:
                if label_selector_from_dict((pdb.get("spec") or {}).get("selector")).matches(labels):
                    self.dirty.add(_key(pdb))
            except APIError:   # an invalid selector matches nothing
                continue

    def _owner_changed(self, obj: dict) -> None:
        for pdb in self._pdbs_in(obj["metadata"].get("namespace") or ""):
            self.dirty.add(_key(pdb))

    # -- loop -------------------------------------------------------------------
    def start(self) -> None:
        pass

    def _get_owner(self, kind: str, ns: str, name: str) -> dict | None:
        inf = self.owners.get(kind)
        return inf.get(name, ns) if inf is not None else None

    def sync_one(self, key: Key) -> None:
        pdb = self.pdbs.get(key[1], key[0])
        if pdb is None:
            return
        pods = [p for p in self.pods.list() if (p["metadata"].get("namespace") or "") == key[0]]
        plan = logic.compute_pdb_status(pdb, pods, self._get_owner, self.wall())
        gen = pdb["metadata"].get("generation") or 0
        if plan.error is not None:
            self._warn_once(pdb, key, "CalculateExpectedPodCountFailed",
                            f"Failed to calculate the number of expected pods: {plan.error}", gen)
        elif plan.unmanaged:
            self._warn_once(pdb, key, "UnmanagedPods",
                            "Pods selected by this PodDisruptionBudget were found to be unmanaged: "
                            f"{', '.join(sorted(plan.unmanaged))}. As a result, the status of the PDB "
                            "cannot be calculated correctly, which may result in undefined behavior. To "
                            'account for these pods please set ".spec.minAvailable" field of the PDB to '
                            "an integer value.", gen)
        if plan.recheck_at is not None:
            self.timers[key] = plan.recheck_at + 0.001
        else:
            self.timers.pop(key, None)
        if plan.changed and cu.write_status(self.client, pdb, plan.status, self.dirty, key):
            st = plan.status
            self.log.info("pdb_status_updated", kind="PodDisruptionBudget", namespace=key[0], name=key[1],
                          disruptionsAllowed=st.get("disruptionsAllowed"), currentHealthy=st.get("currentHealthy"),
                          desiredHealthy=st.get("desiredHealthy"), expectedPods=st.get("expectedPods"))

    def _warn_once(self, pdb: dict, key: Key, reason: str, message: str, gen: int) -> None:
        if self.warned.get(key) == (reason, gen):
            return
        self.warned[key] = (reason, gen)
        self.recorder.event(pdb, "Warning", reason, message)

    def status(self) -> dict[str, Any]:
        return {"poddisruptionbudgets": len(self.pdbs.cache), "dirty": len(self.dirty)}
