"""The kubelet component: one node's agent.

Contract
--------
* ``start()`` registers the Node (create; if it exists, adopt it by updating
  its status), creates or renews the Lease, and starts an Informer on this
  node's pods only (``spec.nodeName=<node>``). It may raise APIError.
* ``step(timeout)`` is one loop turn (the kubelet's ``syncLoopIteration``):
  wait for watch events up to the next timer, hand them to the informer, let
  the runtime advance (``tick``), then do what is due: renew the Lease every
  ``node_lease_renew_interval`` (jittered), compute NodeStatus every
  ``node_status_update_frequency`` and post it when it changed or every
  ``node_status_report_frequency``, resync every pod every
  ``kubelet_sync_frequency`` (these timers coalesce: one due within
  ``jitter x node_lease_renew_interval`` of the turn runs in it, so an idle node
  wakes once for them all), and sync each pod that an event, a runtime
  change or a back-off expiry made dirty. It never raises for a lost
  apiserver: the work is retried on a later turn.
* Syncing a pod: admit it (or reject: phase Failed, ``OutOfcpu`` ...), create
  its sandbox (pod IP from the node's ``pod_cidr``), start containers,
  restart them with CrashLoopBackOff, and hand the status to the status
  manager (``node.kubelet.status_manager``), which writes it through the
  status subresource when it changed, without holding up the loop. A pod
  with ``deletionTimestamp`` has its containers stopped within its grace
  period, then its deletion is confirmed with a grace-0 delete. Containers
  of pods that no longer exist are removed.
* Each container is created with its environment (``envvars``: env,
  envFrom, valueFrom, ``$(VAR)`` in env/command/args, plus ``POD_IP`` and
  ``KEMU_NODE_ROOT``). Failures are waiting reasons, as Kubernetes reports
  them, with a Warning ``Failed`` Event ``Error: <message>``:
  CreateContainerConfigError (a missing Secret/ConfigMap or key),
  CreateContainerError (the runtime cannot create it: no command),
  RunContainerError (it cannot start: a command that does not exist).
* The runtime's ``list_*`` are the source of truth: a kubelet started on a
  node root where another left containers adopts them and starts no duplicates.
* Volumes (``node.volumes``): no container starts before every volume of its
  pod is set up; failures are Warning Events (FailedMount,
  FailedAttachVolume) retried with back-off while the pod stays Pending
  (ContainerCreating). configMap/secret/downwardAPI/projected contents are
  rewritten every ``kubelet_sync_frequency``. The kubelet GETs only the
  ConfigMaps, Secrets, PVCs and PVs its own pods reference. Each container is
  created with its mount table. A pod's directory goes when the pod finishes
  or is deleted; hostPath, local and shared data stay.
* Housekeeping every ``housekeeping_interval`` (the eviction manager): pods
  whose emptyDir exceeds its ``sizeLimit`` (or whose ephemeral usage exceeds
  their containers' limits) are evicted; node disk usage (apparent bytes
  under the node root) against ``ephemeral_storage`` and the profile's
  ``eviction_hard_nodefs_available`` sets DiskPressure and evicts one pod per
  pass, ranked as Kubernetes ranks them. Under DiskPressure new pods are
  rejected (``The node had condition: [DiskPressure]. ``). The memory signal
  (``node.kubelet.pressure``) sets MemoryPressure the same way; memory is
  reclaimed first, and under MemoryPressure only BestEffort pods are rejected.
* Probes (``node.kubelet.prober``): liveness, readiness and startup probes
  run off the loop in a small thread pool; readiness sets the container's
  ``ready`` (and so the pod's Ready condition), a failed startup or liveness
  probe kills the container, which is restarted unless restartPolicy is Never.
* Metrics (``node.kubelet.metrics``): each pod sync's duration and the pod
  startup SLI.
"""
from __future__ import annotations

import heapq
import os
import random
import time
import uuid
from typing import Any, Callable

from emulator import logging as klog
from emulator import runtime_state
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.quantity import memory_bytes
from emulator.client import Client
from emulator.component import start_with_backoff
from emulator.events import EventRecorder
from emulator.informer import Informer
from emulator.process import StopFlag, die_with_parent
from emulator.profiles import Profile, get_profile
from node.kubelet import admission, envvars, eviction, ipam, node_status, pressure, sync
from node.kubelet.podmemo import PodMemo
from node.kubelet.backoff import Backoff
from node.kubelet.heartbeat import NodeHeartbeat
from node.kubelet.housekeeping import PodVolumesAndEviction
from node.kubelet.metrics import KubeletMetrics
from node.kubelet.prober import ProbeManager
from node.kubelet.status_manager import StatusManager
from node.runtime.fake import FakeRuntime
from node.runtime import make_runtime
from node.runtime.interface import (EXITED, RUNNING, SANDBOX_READY, ContainerStatus,
                                    CreateContainerError, PodSandbox, Runtime, StartContainerError)
from node.volumes.manager import MountConfigError, VolumeManager
from node.volumes.plugins import NodeContext
from node.volumes.usage import DirUsage

COMPONENT = "kubelet"
IDLE_WAIT = 5.0   # the longest sleep of the node loop: a safety net under node_next_due


_SYNCED_METADATA = ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds")


class Kubelet(PodVolumesAndEviction):
    def __init__(self, client: Client, profile: Profile, node_name: str, *, root_dir: str,
                 runtime: Runtime | None = None, zone: str = "", cpu: str = "4",
                 memory: str = "16Gi", pods: int = 110, ephemeral_storage: str = "100Gi",
                 node_ip: str = "127.0.0.1", pod_cidr: str | None = None,
                 node_index: int | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None,
                 shared_root: str | None = None) -> None:
        self.client = client
        self.profile = profile
        self.node_name = node_name
        self.root_dir = root_dir
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        if pod_cidr is None and node_index is not None:
            pod_cidr = ipam.pod_cidr_for_index(node_index)
        self.runtime: Runtime = runtime or FakeRuntime(   # buffered: flushed at the end of each turn
            profile, clock=clock, wall=wall, state_path=runtime_state.state_path(root_dir), buffered=True)
        self.cfg = node_status.NodeConfig(
            name=node_name, zone=zone, cpu=cpu, memory=memory, pods=pods,
            ephemeral_storage=ephemeral_storage, node_ip=node_ip, pod_cidr=pod_cidr or "",
            runtime_version=self.runtime.version)
        self.log = klog.get_logger()
        self.recorder = EventRecorder(client, COMPONENT, node_name, clock=wall)
        self.backoff = Backoff(profile.crashloop_backoff_initial, profile.crashloop_backoff_max,
                               profile.crashloop_backoff_reset)
        self.boot_id = str(uuid.uuid4())
        self.informer: Informer | None = None
        self.heartbeat = NodeHeartbeat(client, profile, self.cfg, boot_id=self.boot_id, clock=clock,
                                       wall=wall, rng=self.rng, recorder=self.recorder, log=self.log)
        self.admitted: dict[str, dict] = {}      # uid -> pod, non-terminal pods admitted here
        self.requests = PodMemo(admission.pod_requests)             # per admitted pod
        self.storage_limited = PodMemo(eviction.has_local_storage_limit)
        self.root_usage = DirUsage(root_dir)   # the eviction manager's nodefs figure
        self.rejected: set[str] = set()
        self.finished: set[str] = set()          # uids this kubelet drove to Succeeded/Failed
        self.status = StatusManager(client, clock, client.timeout)   # pod status writes
        self.dirty: set[tuple[str, str]] = set()  # (namespace, name)
        self.wakeups: list[tuple[float, str, str]] = []   # (monotonic, ns, name)
        self.confirmed: set[str] = set()         # uids whose deletion we confirmed
        self.stopping: set[str] = set()          # container ids asked to stop
        self.next_resync = 0.0
        self.shared_root = shared_root
        self.volumes = VolumeManager(
            NodeContext(root_dir, node_name, self._get_object, labels=node_status.node_labels(self.cfg),
                        allocatable=self.cfg.resources(), shared_root=shared_root),
            refresh_period=profile.kubelet_sync_frequency,
            backoff_initial=profile.volume_mount_backoff_initial,
            backoff_max=profile.volume_mount_backoff_max)
        self.pressure = eviction.PressureState(profile.eviction_pressure_transition_period)
        self.memory_pressure = eviction.PressureState(profile.eviction_pressure_transition_period)
        self.capacity_bytes = memory_bytes(ephemeral_storage)
        self.next_housekeeping = 0.0
        self.slack = profile.jitter * profile.node_lease_renew_interval   # timer coalescing
        self.prober = ProbeManager(self.runtime, self.recorder, clock=clock, wall=wall, log=self.log)
        self.metrics = KubeletMetrics()

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        self.recorder.event(self.heartbeat.node_ref(), "Normal", "Starting", "Starting kubelet.")
        self.heartbeat.register()
        self.heartbeat.renew_lease(self.clock())
        self.informer = Informer(self.client, "Pod", field_selector=f"spec.nodeName={self.node_name}",
                                 clock=self.clock)
        self.informer.add_event_handler(self._on_pod, self._on_pod_update, self._on_pod_deleted)
        self.informer.start()
        now = self.clock()
        self.next_resync = now + self.profile.kubelet_sync_frequency
        self._adopt()
        self.runtime.flush()
        self.log.info("kubelet_started", node_name=self.node_name, pods=len(self.informer.cache))

    def step(self, timeout: float) -> None:
        now = self.clock()
        wait = max(0.0, min(timeout, self._next_due(now) - now))
        try:
            self.client.poll(wait)
        except APIError as e:
            self.log.warning("poll_failed", error=e.message)
        if self.informer is not None:
            try:
                self.informer.process()
            except APIError as e:
                self.log.warning("informer_failed", error=e.message)
        now = self.clock()
        self.dirty.update(self.status.collect(now))
        for uid in self.runtime.tick(now):
            self._mark_uid(uid)
        self.dirty.update(self.prober.step(now))
        while self.wakeups and self.wakeups[0][0] <= now:
            _t, ns, name = heapq.heappop(self.wakeups)
            self.dirty.add((ns, name))
        # Timers due within the slack run in this turn: one wake-up for the Lease, the
        # status and housekeeping, where each woke the node on its own.
        soon = now + self.slack
        self.heartbeat.run_due(now, soon)
        if soon >= self.next_resync and self.informer is not None:
            self.next_resync = now + self.profile.kubelet_sync_frequency
            self.dirty.update(self.informer.cache.keys())
            self._cleanup_orphans()
        self._sync_dirty()
        if soon >= self.next_housekeeping:
            self.next_housekeeping = now + self.profile.housekeeping_interval
            try:
                self._housekeeping(now)
            except APIError as e:
                self.log.warning("housekeeping_failed", code=e.code, error=e.message)
        self.runtime.flush()   # this turn's runtime changes, in one write

    def next_due(self) -> float:
        """When ``step`` next has timed work (a node host steps a node only when it is due)."""
        return self._next_due(self.clock())

    def _next_due(self, now: float) -> float:
        due = [self.heartbeat.next_due(), self.next_resync, self.next_housekeeping]
        rt = self.runtime.next_event(now)
        if rt is not None:
            due.append(rt)
        if self.wakeups:
            due.append(self.wakeups[0][0])
        for extra in (self.prober.next_due(now), self.status.next_due()):
            if extra is not None:
                due.append(extra)
        if self.dirty:
            due.append(now)
        return min(due)

    # -- pods ---------------------------------------------------------------
    def _on_pod(self, pod: dict) -> None:
        md = pod.get("metadata") or {}
        self.dirty.add((md.get("namespace") or "", md.get("name", "")))

    def _on_pod_update(self, old: dict, new: dict) -> None:
        """As the kubelet's pod config does (``checkAndUpdatePod``), a pod is synced for a
        change of its spec, labels, annotations or deletion; a status that is only the
        echo of this kubelet's own write (two per pod start) is no reason to sync it."""
        md, old_md = new.get("metadata") or {}, old.get("metadata") or {}
        if (new.get("spec") == old.get("spec") and md.get("uid") == old_md.get("uid")
                and all(md.get(k) == old_md.get(k) for k in _SYNCED_METADATA)
                and new.get("status") == self.status.latest(md.get("uid", ""))):
            return
        self._on_pod(new)

    def _on_pod_deleted(self, pod: dict) -> None:
        self._on_pod(pod)
        self.confirmed.discard((pod.get("metadata") or {}).get("uid", ""))

    def _mark_uid(self, uid: str) -> None:
        for sb in self.runtime.list_pod_sandboxes():
            if sb.pod_uid == uid:
                self.dirty.add((sb.namespace, sb.name))
                return

    def _adopt(self) -> None:
        """After a restart: pods with containers in the runtime are already admitted."""
        assert self.informer is not None
        uids = {sb.pod_uid for sb in self.runtime.list_pod_sandboxes()}
        for pod in sorted(self.informer.list(), key=lambda p: p["metadata"].get("creationTimestamp", "")):
            uid = pod["metadata"].get("uid")
            if uid in uids and (pod.get("status") or {}).get("phase") not in sync.TERMINAL:
                self.admitted[uid] = pod
        self._cleanup_orphans()

    def _cleanup_orphans(self) -> None:
        assert self.informer is not None
        live = {p["metadata"].get("uid") for p in self.informer.list()}
        for sb in self.runtime.list_pod_sandboxes():
            if sb.pod_uid not in live:
                self.log.info("orphan_sandbox_removed", namespace=sb.namespace, name=sb.name, uid=sb.pod_uid)
                self.runtime.remove_pod_sandbox(sb.id)
                self._forget(sb.pod_uid)
        for uid in self.volumes.cleanup_orphans(live - self.confirmed):
            self.log.info("orphan_pod_dir_removed", uid=uid)

    def _forget(self, uid: str) -> None:
        self.admitted.pop(uid, None)
        self.status.forget(uid)
        self.rejected.discard(uid)
        self.finished.discard(uid)
        self.backoff.forget(uid)
        self.prober.remove_pod(uid)
        self.metrics.forget(uid)

    def _sync_dirty(self) -> None:
        # Oldest pods first, as the kubelet admits them (HandlePodAdditions sorts by creation time).
        keys, self.dirty = sorted(self.dirty, key=self._creation_order), set()
        for ns, name in keys:
            done = self.metrics.time_sync(self._sync_operation(ns, name))
            try:
                self._sync_pod(ns, name)
            except APIError as e:
                if e.code in (errors.UNAVAILABLE, errors.TIMEOUT, errors.CONFLICT):
                    self.dirty.add((ns, name))   # retried on a later turn
                self.log.warning("pod_sync_failed", kind="Pod", namespace=ns, name=name,
                                 code=e.code, error=e.message)
            except Exception:   # one pod's failure must not stop the others (pod workers)
                self.log.exception("pod_sync_error", kind="Pod", namespace=ns, name=name)
            finally:
                done()

    def _sync_operation(self, ns: str, name: str) -> str:
        md = ((self.informer.get(name, ns) if self.informer is not None else None) or {}).get("metadata") or {}
        if md.get("deletionTimestamp"):
            return "kill"
        uid = md.get("uid", "")
        known = uid in self.admitted or uid in self.rejected or uid in self.finished
        return "sync" if known else "create"

    def _creation_order(self, key: tuple[str, str]) -> tuple[str, str, str]:
        pod = self.informer.get(key[1], key[0]) if self.informer is not None else None
        return ((pod or {}).get("metadata", {}).get("creationTimestamp") or "", *key)

    def _runtime_state(self, uid: str) -> tuple[PodSandbox | None, list[ContainerStatus]]:
        sandboxes = [s for s in self.runtime.list_pod_sandboxes() if s.pod_uid == uid]
        sandbox = max(sandboxes, key=lambda s: s.created_at) if sandboxes else None
        return sandbox, [c for c in self.runtime.list_containers() if c.pod_uid == uid]

    def _sync_pod(self, ns: str, name: str) -> None:
        assert self.informer is not None
        pod = self.informer.get(name, ns)
        if pod is None:
            self._cleanup_orphans()
            return
        uid = pod["metadata"].get("uid", "")
        if uid in self.confirmed:
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._terminate(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if uid in self.rejected or uid in self.finished:
            return
        if uid not in self.admitted:
            if phase in sync.TERMINAL:
                return
            sandbox, _ = self._runtime_state(uid)
            if sandbox is None:
                others = [p for u, p in self.admitted.items() if u != uid]
                self.requests.retain(self.admitted)
                verdict = admission.admit(pod, others, self.cfg.resources(), self.requests)
                rejection = pressure.pressure_rejection(pod, self.cfg.disk_pressure, self.cfg.memory_pressure)
                if verdict.admit and rejection is not None:
                    verdict = admission.Admission(False, eviction.REASON, rejection)
                if not verdict.admit:
                    self._reject(pod, verdict)
                    return
        self.admitted[uid] = pod
        if not self._volumes_ready(pod):
            return
        sandbox, containers = self._runtime_state(uid)
        wall = self.wall()
        actions = sync.compute_pod_actions(pod, containers, sandbox, wall, self.backoff,
                                           self.prober.restart_ids)
        if actions.create_sandbox:
            self.metrics.track(uid)
            sandbox_id = self.runtime.run_pod_sandbox(
                pod, ipam.allocate(self.cfg.pod_cidr, (s.ip for s in self.runtime.list_pod_sandboxes()
                                                  if s.state == SANDBOX_READY)))
            sandbox = next(s for s in self.runtime.list_pod_sandboxes() if s.id == sandbox_id)
        for cname, (reason, message) in actions.waiting.items():
            self.recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                                f"{cname} in pod {sync.pod_ref(pod)}")
        for spec_c, attempt in actions.start:
            self._start_container(pod, sandbox, spec_c, attempt, containers, actions.waiting)
        if actions.wake_at is not None:
            heapq.heappush(self.wakeups, (self.clock() + max(0.0, actions.wake_at - wall), ns, name))
        sandbox, containers = self._runtime_state(uid)
        self.prober.update_pod(pod, containers, sandbox)
        status = sync.compute_pod_status(pod, containers, sandbox, wall, waiting=actions.waiting,
                                         host_ip=self.cfg.node_ip, runtime_name=self.runtime.name,
                                         probes=self.prober.status_for(uid, containers))
        self._post_status(pod, status)
        self.metrics.observe_status(pod, status, wall)
        if status["phase"] in sync.TERMINAL:
            # A finished pod's containers never run again: stop its sandbox so the
            # pod IP goes back to the pool (the status keeps podIP, as in Kubernetes).
            self.admitted.pop(uid, None)
            self.finished.add(uid)
            self.prober.remove_pod(uid)
            if sandbox is not None:
                self.runtime.stop_pod_sandbox(sandbox.id)
            self.volumes.teardown(uid)   # a finished pod's volumes are unmounted

    def _start_container(self, pod: dict, sandbox: PodSandbox, spec_c: dict, attempt: int,
                         existing: list[ContainerStatus], waiting: dict[str, tuple[str, str]]) -> None:
        uid = pod["metadata"].get("uid", "")
        cname = spec_c.get("name", "")
        try:
            mounts = self.volumes.mounts_for(pod, spec_c)
        except MountConfigError as e:
            self.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            waiting[cname] = ("CreateContainerConfigError", str(e))
            return
        if attempt > 0:
            prev = [c for c in existing if c.name == cname and c.state == EXITED]
            finished = max((c.finished_at or 0.0) for c in prev) if prev else self.wall()
            self.backoff.next((uid, cname), finished, self.wall())
            for c in prev:   # keep only the last terminated instance (for lastState)
                if c.attempt < attempt - 1:
                    self.runtime.remove_container(c.id)
        try:   # makeEnvironmentVariables; $(VAR) in command/args
            env, spec_c, warnings = envvars.container_env(
                pod, spec_c, pod_ip=sandbox.ip, host_ip=self.cfg.node_ip, node_root=self.root_dir,
                get_object=self._get_object, allocatable=self.cfg.resources())
        except envvars.EnvError as e:
            self.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            waiting[cname] = ("CreateContainerConfigError", str(e))
            return
        for w in warnings:
            self.recorder.event(pod, "Warning", "InvalidEnvironmentVariableNames", w)
        image = spec_c.get("image", "")
        if attempt == 0 and getattr(self.runtime, "has_image", lambda _i: True)(image):
            self.recorder.event(pod, "Normal", "Pulled",
                                f'Container image "{image}" already present on machine')
        try:
            cid = self.runtime.create_container(sandbox.id, pod, spec_c, attempt, mounts, env=env)
        except CreateContainerError as e:   # the runtime's reason (ErrImagePull, ImagePullBackOff, ...)
            for etype, reason, msg in getattr(e, "events", None) or [("Warning", "Failed", f"Error: {e}")]:
                self.recorder.event(pod, etype, reason, msg)
            waiting[cname] = (getattr(e, "reason", None) or "CreateContainerError", str(e))
            return
        self.recorder.event(pod, "Normal", "Created", f"Created container: {cname}")
        try:
            self.runtime.start_container(cid)
        except StartContainerError as e:   # recorded exited (StartError): RunContainerError
            self.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            waiting[cname] = ("RunContainerError", str(e))
            return
        self.recorder.event(pod, "Normal", "Started", f"Started container {cname}")
        self.log.info("container_started", kind="Pod", namespace=pod["metadata"].get("namespace"),
                      name=pod["metadata"].get("name"), container=cname, attempt=attempt)

    def _post_status(self, pod: dict, status: dict) -> None:
        self.status.set(pod, status)   # written by the status manager, without waiting

    def _reject(self, pod: dict, verdict: admission.Admission) -> None:
        uid = pod["metadata"].get("uid", "")
        self.rejected.add(uid)
        self.recorder.event(pod, "Warning", verdict.reason, verdict.message)
        self.log.info("pod_rejected", kind="Pod", namespace=pod["metadata"].get("namespace"),
                      name=pod["metadata"].get("name"), reason=verdict.reason)
        self._post_status(pod, sync.rejected_status(pod, verdict.reason, verdict.message))

    def _terminate(self, pod: dict) -> None:
        md = pod["metadata"]
        uid = md.get("uid", "")
        self.prober.remove_pod(uid)
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        sandbox, containers = self._runtime_state(uid)
        running = [c for c in containers if c.state != EXITED]
        stopping = self.stopping
        for c in running:
            if c.id not in stopping:
                stopping.add(c.id)
                if c.state == RUNNING:
                    self.recorder.event(pod, "Normal", "Killing", f"Stopping container {c.name}")
                self.runtime.stop_container(c.id, float(grace))
        sandbox, containers = self._runtime_state(uid)
        if any(c.state != EXITED for c in containers):
            return   # the runtime's tick tells us when they exit
        if sandbox is not None and (pod.get("status") or {}).get("phase") not in sync.TERMINAL:
            status = sync.compute_pod_status(pod, containers, sandbox, self.wall(),
                                             host_ip=self.cfg.node_ip, runtime_name=self.runtime.name,
                                             terminating_done=True)
            self._post_status(pod, status)
        for sb in [s for s in self.runtime.list_pod_sandboxes() if s.pod_uid == uid]:
            self.runtime.remove_pod_sandbox(sb.id)
        self.volumes.teardown(uid)
        stopping.difference_update(c.id for c in containers)
        try:
            self.client.delete("Pod", md["name"], md.get("namespace"), grace_period_seconds=0)
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
        self.confirmed.add(uid)
        self._forget(uid)
        self.log.info("pod_deletion_confirmed", kind="Pod", namespace=md.get("namespace"),
                      name=md.get("name"), uid=uid)


def run(server: str, node_name: str, profile_name: str, root_dir: str, zone: str = "",
        cpu: str = "4", memory: str = "16Gi", pods: int = 110, log_path: str | None = None,
        lab: str | None = None, stop: Any = None, *, node_ip: str = "127.0.0.1",
        pod_cidr: str | None = None, node_index: int | None = None,
        ephemeral_storage: str = "100Gi", shared_root: str | None = None,
        runtime: str = "fake") -> int:
    """The node process's entry: configure logging, connect, and run the kubelet and
    kube-proxy in one loop on one client until stopped. ``runtime``: fake, process or
    docker; in a lab (``lab`` set) real containers outlive this process (a restarted
    kubelet adopts them) and die with the lab's supervisor, this process's parent."""
    from node.proxy.proxy import KubeProxy
    die_with_parent()
    klog.configure(COMPONENT, node=node_name, lab=lab, path=log_path)
    log = klog.get_logger()
    stop = stop if stop is not None else StopFlag(wakeup=True)
    profile = get_profile(profile_name)
    client = Client(server, component=COMPONENT, node=node_name, lab=lab)
    client.cancelled = lambda: bool(stop)   # a stopping node never waits on the apiserver
    client.set_wakeup_fd(getattr(stop, "wake_fd", None))   # SIGTERM ends the loop's sleep
    from emulator.clock import WALL
    kubelet = Kubelet(client, profile, node_name, wall=WALL, root_dir=root_dir, zone=zone, cpu=cpu,
                      memory=memory, pods=pods, ephemeral_storage=ephemeral_storage,
                      node_ip=node_ip, pod_cidr=pod_cidr, node_index=node_index,
                      shared_root=shared_root,
                      runtime=make_runtime(runtime, profile=profile, root_dir=root_dir, node_name=node_name,
                                           lab=lab, state_path=runtime_state.state_path(root_dir),
                                           anchor_pid=os.getppid() if lab else os.getpid()))
    proxy = KubeProxy(client, profile, node_name, root_dir=root_dir, node_ip=node_ip,
                      forward=kubelet.runtime.name != "fake")   # real runtimes get real service traffic
    try:
        start_with_backoff(kubelet.start, stop, log, max_delay=min(1.0, profile.node_lease_renew_interval))
        from node.host_node import node_next_due
        while not stop:
            # Sleep until the next timer (at most IDLE_WAIT), waking for any frame or SIGTERM.
            # Each wake-up costs: 10 a second was 169% of a core for 1,000 idle nodes, and
            # one a second still 0.35 ms of CPU a second per node.
            kubelet.step(min(IDLE_WAIT, max(0.0, node_next_due(kubelet, proxy, client) - time.monotonic())))
            proxy.step(0)   # handles what the kubelet's poll buffered; starts itself
    finally:
        log.info("kubelet_stopped")
        kubelet.prober.close()
        proxy.stop()
        client.close()
    return 0
