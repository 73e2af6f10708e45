"""The scheduler component: informers, the scheduling queue, batched binding.

Contract:
* Informers on Nodes and on all Pods feed the ``Cache`` (assigned,
  non-terminal pods) and the ``SchedulingQueue`` (pods with no
  ``spec.nodeName``, ``spec.schedulerName`` equal to ``scheduler_name`` and no
  ``deletionTimestamp``).
* ``step(timeout)`` polls the client (never longer than the next queue
  timer), applies informer events, flushes the queue, then schedules up to
  ``batch`` pods: each chosen pod is assumed in the cache and its Binding is
  sent (``client.send``) without waiting, as kube-scheduler's binding cycle
  runs beside the next scheduling cycles. At most ``max_binds_in_flight``
  Bindings are unanswered; replies are taken as they come, at every step
  (``binds_in_flight()``). Waiting for each batch's replies had tied the
  scheduler's rate to the apiserver's reply time under load. A bound pod
  gets a Normal ``Scheduled`` Event; a failed or unanswered binding (no reply
  within the client's timeout) forgets the assumed pod and backs it off (a
  Conflict because it is already bound is left to the informer).
* A pod that fits nowhere gets ``PodScheduled=False``, reason
  ``Unschedulable`` and the FitError message on its status (patched only when
  they change), a Warning ``FailedScheduling`` Event with the same message,
  and goes back to the queue's unschedulable pods.
* Cluster events that may free room (a node added, or changed in what
  scheduling reads; an assigned pod deleted or finished) move unschedulable
  pods back to activeQ or backoffQ; a PVC, PV or StorageClass change moves
  those that use claims.
* Volumes (``volumes``, ``volumebinding``): informers on PVCs, PVs and
  StorageClasses feed a ``VolumeBinder``. Its PreFilter rejects a pod on every
  node; its filters run after the built-in ones. A pod whose chosen node
  needs unbound WaitForFirstConsumer claims is reserved there (assumed in the
  cache), its claims get ``volume.kubernetes.io/selected-node`` (pipelined
  patches), and it waits, in flight, until the PV controller has bound every
  claim; then it is bound like any other pod. A failed wait (claim gone,
  annotation removed, ``volume_bind_timeout``) forgets the pod, records a
  FailedScheduling Event and ``PodScheduled=False/SchedulerError``, and backs
  it off.
* ``step`` never raises for a lost apiserver: it logs and retries later.
* Metrics (``control.scheduler.metrics``): each attempt, from the pop to the
  binding's reply or the failure, by result.
"""
from __future__ import annotations

import random
import time
from collections import deque
from typing import Any, Callable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.events import EventRecorder, rfc3339
from emulator.informer import Informer, start_informers
from emulator.logging import configure, get_logger
from emulator.profiles import Profile

from control.scheduler.cache import Cache
from control.scheduler.framework import Framework, pre_filter_fit_error
from control.scheduler.metrics import SchedulerMetrics
from control.scheduler.podinfo import pod_info, pod_key
from control.scheduler.queue import QueuedPod, SchedulingQueue
from control.scheduler.volumecache import ANN_SELECTED_NODE, pod_claim_names
from control.scheduler.volumes import VolumeBinder

DEFAULT_SCHEDULER_NAME = "default-scheduler"


def _terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def unschedulable_conditions(pod: dict, message: str, now: float,
                             reason: str = "Unschedulable") -> list[dict] | None:
    """The pod's conditions with PodScheduled=False/reason/message; None if already so."""
    conds = list((pod.get("status") or {}).get("conditions") or [])
    for i, c in enumerate(conds):
        if c.get("type") == "PodScheduled":
            if c.get("status") == "False" and c.get("reason") == reason \
                    and c.get("message") == message:
                return None
            transition = c.get("lastTransitionTime") if c.get("status") == "False" else None
            conds[i] = {"type": "PodScheduled", "status": "False", "reason": reason,
                        "message": message, "lastProbeTime": None,
                        "lastTransitionTime": transition or rfc3339(now)}
            return conds
    conds.append({"type": "PodScheduled", "status": "False", "reason": reason,
                  "message": message, "lastProbeTime": None, "lastTransitionTime": rfc3339(now)})
    return conds


class Scheduler:
    def __init__(self, client: Client, profile: Profile, clock: Callable[[], float] = time.monotonic,
                 scheduler_name: str = DEFAULT_SCHEDULER_NAME, rng: random.Random | None = None,
                 percentage_of_nodes_to_score: int | None = None, batch: int = 256,
                 wall_clock: Callable[[], float] = time.time, max_binds_in_flight: int = 1024) -> None:
        self.client = client
        self.profile = profile
        self.clock = clock
        self.wall_clock = wall_clock
        self.scheduler_name = scheduler_name
        self.batch = batch
        self.max_binds_in_flight = max(batch, max_binds_in_flight)
        self.binding: deque[tuple[int, QueuedPod, str, float]] = deque()   # (rid, pod, node, sent at), in order
        self.cache = Cache()
        self.queue = SchedulingQueue(profile.pod_initial_backoff, profile.pod_max_backoff,
                                     profile.unschedulable_flush_interval, clock)
        self.framework = Framework(rng, percentage_of_nodes_to_score)
        # Events come from the profile's schedulerName, as kube-scheduler's recorder does.
        self.recorder = EventRecorder(client, scheduler_name, clock=wall_clock)
        self.nodes = Informer(client, "Node", clock=clock)
        self.pods = Informer(client, "Pod", clock=clock)
        self.volumes = VolumeBinder(profile.volume_bind_timeout)
        self.pvcs = Informer(client, "PersistentVolumeClaim", clock=clock)
        self.pvs = Informer(client, "PersistentVolume", clock=clock)
        self.classes = Informer(client, "StorageClass", clock=clock)
        self.informers = [self.nodes, self.pods, self.pvcs, self.pvs, self.classes]
        self.log = get_logger()
        self.scheduled = 0
        self.failed_attempts = 0
        self.metrics = SchedulerMetrics()
        self._started = False

    # -- informer handlers --------------------------------------------------
    def _ours_unscheduled(self, pod: dict) -> bool:
        spec = pod.get("spec") or {}
        return not spec.get("nodeName") and \
            (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name \
            and not (pod.get("metadata") or {}).get("deletionTimestamp") and not _terminal(pod)

    def _on_pod(self, pod: dict) -> None:
        key = pod_key(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            if key in self.queue:
                self.queue.delete(key)
            if key in self.volumes.waiting:
                self.volumes.drop(key)
            freed = _terminal(pod) and key in self.cache.pod_node
            self.cache.add_pod(pod)
            if _terminal(pod):
                self.volumes.untrack(key)
            else:
                self.volumes.track(pod)
            if freed:
                self.queue.move_all_to_active_or_backoff()
        elif self._ours_unscheduled(pod):
            self.queue.add(pod, key)
        elif key in self.queue:
            self.queue.delete(key)

    def _on_pod_update(self, _old: dict, new: dict) -> None:
        self._on_pod(new)

    def _on_pod_delete(self, pod: dict) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        self.metrics.forget(key)
        self.volumes.drop(key)
        self.volumes.untrack(key)
        if self.cache.remove_pod(pod):
            self.queue.move_all_to_active_or_backoff()

    def _on_node(self, node: dict) -> None:
        if self.cache.add_node(node):
            self.queue.move_all_to_active_or_backoff()

    def _on_node_update(self, _old: dict, new: dict) -> None:
        self._on_node(new)

    def _on_node_delete(self, node: dict) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    # -- running ------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            v = self.volumes
            self.nodes.add_event_handler(self._on_node, self._on_node_update, self._on_node_delete)
            self.pods.add_event_handler(self._on_pod, self._on_pod_update, self._on_pod_delete)
            self.pvcs.add_event_handler(v.on_pvc, v.on_pvc_update, v.on_pvc_delete)
            self.pvs.add_event_handler(v.on_pv, v.on_pv_update, v.on_pv_delete)
            self.classes.add_event_handler(v.on_class, v.on_class_update, v.on_class_delete)
            self._started = True
        start_informers(self.informers)
        self.log.info("scheduler_started", nodes=len(self.cache.node_order), queued=len(self.queue))

    def binds_in_flight(self) -> int:
        return len(self.binding)

    def step(self, timeout: float) -> None:
        wait = timeout
        if self.queue.has_active() and len(self.binding) < self.max_binds_in_flight:
            wait = 0.0
        else:
            bind_due = self.binding[0][3] + self.client.timeout if self.binding else None
            for due in (self.queue.next_due(), self.volumes.next_deadline(), bind_due):
                if due is not None:
                    wait = max(0.0, min(wait, due - self.clock()))
        try:
            self.client.poll(wait)
            for inf in self.informers:
                inf.process()
        except APIError as e:
            self.log.warning("apiserver_unavailable", error=e.message)
            return
        if self.volumes.changed:
            self.volumes.changed = False
            self.queue.move_all_to_active_or_backoff(lambda qp: bool(pod_claim_names(qp.pod)))
        self.queue.flush()
        if all(inf.has_synced for inf in self.informers):
            self.schedule_batch()

    def schedule_batch(self) -> int:
        """Schedule up to ``batch`` pods from activeQ, and bind waiting pods whose volumes are bound.

        Returns how many pods were bound."""
        failures: list[tuple[QueuedPod, str, str]] = []
        patches: list[tuple[int, QueuedPod, str]] = []
        bound = self._collect_bindings()
        ready, failed = self.volumes.check_waiting(self.clock(), self.cache)
        for wp in ready:
            self._send_binding(wp.qp, wp.node)
        for wp, message in failed:
            self._unreserve(wp.qp)
            failures.append((wp.qp, message, "SchedulerError"))
        for _ in range(min(self.batch, self.max_binds_in_flight - len(self.binding))):
            qp = self.queue.pop()
            if qp is None:
                break
            self.metrics.start(qp.key)
            pod = qp.pod
            pi = pod_info(pod)
            volumes, pre_msg = self.volumes.pre_filter(pod, self.cache)
            if pre_msg:
                failures.append((qp, pre_filter_fit_error(len(self.cache.node_order), pre_msg,
                                                          pi.preemption_never), "Unschedulable"))
                continue
            res = self.framework.schedule_one(pi, self.cache, volumes.filter if volumes else None)
            if res.node is None:
                failures.append((qp, res.message, "Unschedulable"))
                continue
            self.cache.assume_pod(pod, res.node, pi)
            if volumes is not None:
                self.volumes.track(pod)
                if volumes.needs_binding:
                    self._reserve_volumes(qp, volumes, res.node, patches)
                    continue
            self._send_binding(qp, res.node)
        self._collect_patches(patches)
        bound += self._collect_bindings()
        for qp, message, reason in failures:
            self._record_failure(qp, message, reason)
        return bound

    # -- volumes: Reserve and PreBind -----------------------------------------
    def _reserve_volumes(self, qp: QueuedPod, volumes: Any, node: str,
                         patches: list[tuple[int, QueuedPod, str]]) -> None:
        claims = self.volumes.reserve(qp.key, qp, volumes, node, self.clock(), self.cache)
        if claims is None:       # cannot happen for a node that passed the filters; be safe
            self._unreserve(qp)
            self.queue.add_backoff(qp)
            return
        for ns, name in claims:
            try:
                rid = self.client.send("patch", kind="PersistentVolumeClaim", name=name, namespace=ns,
                                       patch={"metadata": {"annotations": {ANN_SELECTED_NODE: node}}},
                                       patchType="merge")
            except APIError as e:
                self._fail_wait(qp, f"failed to update PersistentVolumeClaim {ns}/{name}: {e.message}")
                return
            patches.append((rid, qp, name))
        self.log.info("pod_waiting_for_volumes", kind="Pod", namespace=qp.key[0], name=qp.key[1],
                      node=node, claims=len(volumes.delayed))

    def _collect_patches(self, patches: list[tuple[int, QueuedPod, str]]) -> None:
        lost = False
        for rid, qp, name in patches:
            try:
                obj = self.client.wait(rid, 0.0 if lost else None)
                self.volumes.patched(qp.key, (qp.key[0], name), obj)
            except APIError as e:
                lost = lost or e.code == errors.UNAVAILABLE
                if qp.key in self.volumes.waiting:
                    self._fail_wait(qp, f"failed to update PersistentVolumeClaim {qp.key[0]}/{name}: "
                                        f"{e.message}")

    def _fail_wait(self, qp: QueuedPod, message: str) -> None:
        self.volumes.drop(qp.key)
        self._unreserve(qp)
        self._record_failure(qp, message, "SchedulerError")

    def _unreserve(self, qp: QueuedPod) -> None:
        """Undo a reservation: the pod is no longer assumed on its node."""
        self.volumes.done(qp.key)
        self.volumes.untrack(qp.key)
        self.cache.forget_pod(qp.key)

    # -- binding ----------------------------------------------------------------
    def _send_binding(self, qp: QueuedPod, node: str) -> None:
        md = qp.pod["metadata"]
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            rid = self.client.send("create", object=binding, namespace=md["namespace"],
                                   name=md["name"], subresource="binding")
        except APIError as e:
            self._unreserve(qp)
            self.queue.add_backoff(qp)
            self.log.warning("bind_failed", kind="Pod", namespace=md["namespace"],
                             name=md["name"], node=node, error=e.message)
            self.metrics.done(qp.key, "error")
            return
        self.binding.append((rid, qp, node, self.clock()))

    def _collect_bindings(self) -> int:
        """Take the Bindings answered so far, oldest first, and fail those unanswered for the
        client's timeout. The apiserver answers one connection's requests in order, so the
        first unanswered one that is not yet late ends the turn."""
        bound = 0
        now = self.clock()
        while self.binding:
            rid, qp, node, sent = self.binding[0]
            done, result = self.client.take_reply(rid)
            if not done:
                if now - sent <= self.client.timeout:
                    break
                self.client.forget(rid)
                result = APIError(errors.UNAVAILABLE, f"no reply from the apiserver at {self.client.server} "
                                                      f"within {self.client.timeout:g}s")
            self.binding.popleft()
            pod = qp.pod
            md = pod["metadata"]
            self.volumes.done(qp.key)
            if isinstance(result, APIError):
                e = result
                self._unreserve(qp)
                if e.code == errors.CONFLICT and "already assigned" in e.message:
                    self.queue.done(qp.key)    # someone else bound it; the informer will tell
                elif e.code == errors.NOT_FOUND:
                    self.queue.done(qp.key)
                else:
                    self.queue.add_backoff(qp)
                self.log.warning("bind_failed", kind="Pod", namespace=md["namespace"],
                                 name=md["name"], node=node, code=e.code, error=e.message)
                self.metrics.done(qp.key, "error")
                continue
            self.queue.done(qp.key)
            self.metrics.done(qp.key, "scheduled")
            bound += 1
            self.scheduled += 1
            self.recorder.event(pod, "Normal", "Scheduled",
                                f"Successfully assigned {md['namespace']}/{md['name']} to {node}")
        return bound

    def _record_failure(self, qp: QueuedPod, message: str, reason: str = "Unschedulable") -> None:
        pod = qp.pod
        md = pod["metadata"]
        self.failed_attempts += 1
        self.metrics.done(qp.key, "unschedulable" if reason == "Unschedulable" else "error")
        if reason == "Unschedulable":
            self.queue.add_unschedulable(qp)
        else:
            self.queue.add_backoff(qp)
        self.log.info("pod_unschedulable", kind="Pod", namespace=md["namespace"], name=md["name"],
                      message=message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        conds = unschedulable_conditions(pod, message, self.wall_clock(), reason)
        if conds is None:
            return
        try:
            self.client.post("patch", kind="Pod", name=md["name"], namespace=md["namespace"],
                             patch={"status": {"conditions": conds}}, patchType="merge",
                             subresource="status")
        except APIError as e:
            self.log.warning("status_patch_failed", kind="Pod", namespace=md["namespace"],
                             name=md["name"], error=e.message)

    def stop(self) -> None:
        for inf in self.informers:
            inf.stop()


def run(server: str, profile_name: str = "default", log_path: str | None = None,
        lab: str | None = None, stop: Any = None, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        percentage_of_nodes_to_score: int | None = None) -> int:
    """The scheduler process: configure logging, connect, loop until ``stop`` (SIGTERM/SIGINT)."""
    from emulator.process import StopFlag, settle_heap
    from emulator.profiles import get_profile
    configure("scheduler", lab=lab, path=log_path)
    settle_heap()
    log = get_logger()
    profile = get_profile(profile_name)
    stop = stop if stop is not None else StopFlag()
    client = Client(server, component="scheduler", lab=lab)
    from emulator.clock import WALL
    sched = Scheduler(client, profile, scheduler_name=scheduler_name,
                      percentage_of_nodes_to_score=percentage_of_nodes_to_score, wall_clock=WALL)
    from emulator.component import start_with_backoff
    start_with_backoff(sched.start, stop, log)
    while not stop:
        sched.step(0.1)
    log.info("scheduler_stopping", scheduled=sched.scheduled)
    client.close()
    return 0
