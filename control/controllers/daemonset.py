"""The DaemonSet controller: one pod per eligible node.

After Kubernetes' ``pkg/controller/daemon``. Decisions live in
``daemonset_logic``; this module moves objects.

Contract
--------
* Informers: DaemonSets, Nodes and Pods (shared). A DaemonSet is synced when
  it changes, when one of its pods changes, and every DaemonSet when a node
  changes; plus a full resync every ``kubelet_sync_frequency`` as a safety net.
* A sync applies ``daemonset_logic.plan``: creates the missing pods (event
  ``SuccessfulCreate`` ``Created pod: NAME``), deletes the extra ones (event
  ``SuccessfulDelete`` ``Deleted pod: NAME``), and writes the status
  subresource when it differs. A DaemonSet being deleted is left alone (the
  garbage collector takes its pods).
* A Failed daemon pod is deleted and replaced after a per-node back-off
  (Kubernetes' ``failedPodsBackoff``: ``crashloop_backoff_initial`` doubling
  up to ``crashloop_backoff_max``, the nearest timers the profile has), so a
  pod the kubelet keeps rejecting does not churn. Expired back-offs are not
  reset (a node that failed once keeps its longer delay).
* Logs: ``daemon_pod_created``, ``daemon_pod_deleted``, ``daemonset_status``.
* ``sync()`` never raises for a lost apiserver: the DaemonSet stays dirty and
  is retried on a later turn.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from control.controllers import daemonset_logic as logic
from control.controllers.workload_common import OwnedPodHandlers, OwnedPods, key_of
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import EventRecorder
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext


class DaemonSetController(OwnedPodHandlers):
    name = "daemonset"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.profile = ctx.profile
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.log = get_logger()
        self.daemonsets = ctx.informers.informer("DaemonSet")
        self.nodes = ctx.informers.informer("Node")
        self.pods = ctx.informers.informer("Pod")
        self.events = EventRecorder(self.client, "daemonset-controller", clock=ctx.wall_clock)
        self.owned = OwnedPods(self.pods.get)
        self.by_uid: dict[str, tuple[str, str]] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.next_resync = self.clock()
        self.failed_backoff: dict[tuple[str, str], tuple[float, int]] = {}   # (ds uid, node) -> (until, n)
        self.wake: dict[tuple[str, str], float] = {}                          # back-offs still to end
        self.daemonsets.add_event_handler(self._ds_changed, lambda _o, n: self._ds_changed(n), self._ds_deleted)
        self.nodes.add_event_handler(self._all_dirty, lambda _o, _n: self._all_dirty(), self._all_dirty)
        self.pods.add_event_handler(self._pod_changed, self._pod_updated, self._pod_deleted)

    # -- handlers -------------------------------------------------------------
    def _ds_changed(self, ds: dict) -> None:
        self.by_uid[ds["metadata"].get("uid", "")] = key_of(ds)
        self.dirty.add(key_of(ds))

    def _ds_deleted(self, ds: dict) -> None:
        uid = ds["metadata"].get("uid", "")
        for k in [k for k in self.failed_backoff if k[0] == uid]:
            del self.failed_backoff[k]
            self.wake.pop(k, None)
        self.by_uid.pop(uid, None)
        self.owned.forget(uid)
        self.dirty.discard(key_of(ds))

    def _all_dirty(self, *_args: object) -> None:
        self.dirty.update(self.by_uid.values())

    # -- loop -----------------------------------------------------------------
    def start(self) -> None:
        self.next_resync = self.clock() + self.profile.kubelet_sync_frequency

    def next_due(self) -> float:
        if self.dirty:
            return self.clock()
        return min([self.next_resync, *self.wake.values()])

    def sync(self) -> None:
        now = self.clock()
        if now >= self.next_resync:
            self.next_resync = now + self.profile.kubelet_sync_frequency
            self._all_dirty()
        for (uid, node), until in list(self.wake.items()):
            if until <= now:
                del self.wake[(uid, node)]
                self._mark_owner(uid)
        todo, self.dirty = sorted(self.dirty), set()
        for i, key in enumerate(todo):
            try:
                self.sync_daemonset(key)
            except APIError as e:
                if e.code in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.dirty.update(todo[i:])
                    raise
                self.dirty.add(key)
                self.log.warning("daemonset_sync_failed", kind="DaemonSet", namespace=key[0], name=key[1],
                                 code=e.code, error=str(e))
            except ConnectionError:
                self.dirty.update(todo[i:])
                raise

    def sync_daemonset(self, key: tuple[str, str]) -> None:
        ds = self.daemonsets.get(key[1], key[0])
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        uid = ds["metadata"].get("uid", "")
        now = self.clock()
        p = logic.plan(ds, self.nodes.list(), self.owned.pods(uid, now), self.wall())
        ns = key[0]
        for pod in p.delete:
            node_name = (pod.get("spec") or {}).get("nodeName") or ""
            if (pod.get("status") or {}).get("phase") == "Failed":   # failedPodsBackoff
                _until, n = self.failed_backoff.get((uid, node_name), (0.0, 0))
                delay = min(self.profile.crashloop_backoff_max, self.profile.crashloop_backoff_initial * 2 ** n)
                self.failed_backoff[(uid, node_name)] = (now + delay, n + 1)
                self.wake[(uid, node_name)] = now + delay
            try:
                self.client.delete("Pod", pod["metadata"]["name"], ns)
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
                continue
            self.owned.expect_deleted(pod, now)
            self.log.info("daemon_pod_deleted", kind="Pod", namespace=ns, name=pod["metadata"]["name"],
                          daemonset=key[1], nodeName=(pod.get("spec") or {}).get("nodeName"))
            self.events.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
        acted = bool(p.delete)
        for node in p.create_on:
            until, _n = self.failed_backoff.get((uid, node), (0.0, 0))
            if until > now:
                continue   # a pod failed here recently; retried when the back-off ends
            pod = self.client.create(logic.new_daemon_pod(ds, node), namespace=ns)
            self.owned.expect_created(uid, pod, now)
            acted = True
            self.log.info("daemon_pod_created", kind="Pod", namespace=ns, name=pod["metadata"]["name"],
                          daemonset=key[1], nodeName=node)
            self.events.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        if acted:
            self.dirty.add(key)   # recount once the informer shows the changes
        if logic.status_changed(ds, p.status):
            new = {**ds, "status": {**(ds.get("status") or {}), **p.status}}
            try:
                self.client.update_status(new)
            except APIError as e:
                if e.code not in (errors.CONFLICT, errors.NOT_FOUND):
                    raise
                self.dirty.add(key)
                return
            self.log.info("daemonset_status", kind="DaemonSet", namespace=ns, name=key[1], **p.status)
