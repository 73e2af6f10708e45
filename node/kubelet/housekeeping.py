"""The kubelet's volume manager hook and eviction manager, as methods of the Kubelet.

Contract
--------
* ``_volumes_ready(pod)`` is WaitForAttachAndMount in a pod's sync: it asks
  the ``VolumeManager`` to set up what is missing, records each failure as a
  Warning Event (FailedMount / FailedAttachVolume), schedules the retry, and
  while a volume is missing posts the Pending status (containers waiting in
  ContainerCreating) and returns False.
* ``_get_object(kind, name, namespace)`` is the only way volumes reach the
  apiserver: a GET of one object a pod on this node references (None when
  it does not exist).
* ``_housekeeping(now)`` is one eviction-manager pass: node disk usage
  (apparent bytes under the node root, ``volumes.usage.DirUsage``) against the ephemeral-storage
  capacity and ``profile.eviction_hard_nodefs_available`` sets DiskPressure
  (kept ``eviction_pressure_transition_period``; Node events
  NodeHasDiskPressure / NodeHasNoDiskPressure); pods over an emptyDir
  ``sizeLimit`` or their ephemeral-storage limits are evicted; otherwise,
  while the threshold is met, one pod (ranked by ``eviction``) is evicted.
* The same pass measures ``memory.available`` (``node.kubelet.pressure``:
  allocatable memory minus the running containers' usage and any chaos
  memory hog) against ``profile.eviction_hard_memory_available`` and sets
  MemoryPressure (Node events NodeHasInsufficientMemory /
  NodeHasSufficientMemory); while it is met, memory is reclaimed first: one
  pod per pass, ranked by ``pressure.rank_for_memory_pressure``.
* ``_housekeeping`` also writes the node's usage summary (``stats``) first,
  when its figures changed since the last write.
* ``_evict(pod, message)``: Warning Event Evicted, the sandbox stopped at
  once, status phase Failed / reason Evicted / message with the
  DisruptionTarget condition, and its volumes torn down.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import rfc3339
from emulator.api.quantity import memory_bytes
from node.kubelet import eviction, pressure, stats, sync
from node.runtime.interface import RUNNING

if TYPE_CHECKING:
    from node.kubelet.kubelet import Kubelet


class PodVolumesAndEviction:
    # -- volumes --------------------------------------------------------------
    def _get_object(self: Kubelet, kind: str, name: str, namespace: str | None) -> dict | None:
        """GET one object a pod on this node references (None if it does not exist)."""
        try:
            return self.client.get(kind, name, namespace)
        except APIError as e:
            if e.code == errors.NOT_FOUND:
                return None
            raise

    def _volumes_ready(self: Kubelet, pod: dict) -> bool:
        """The volume manager's WaitForAttachAndMount: False (and a Pending status) until all are set up."""
        md = pod["metadata"]
        res = self.volumes.wait_for_attach_and_mount(pod, self.clock())
        for reason, message in res.failures:
            self.recorder.event(pod, "Warning", reason, message)
            self.log.info("volume_setup_failed", kind="Pod", namespace=md.get("namespace"),
                          name=md.get("name"), reason=reason, error=message)
        if res.retry_at is not None:
            heapq.heappush(self.wakeups, (res.retry_at, md.get("namespace") or "", md.get("name", "")))
        if res.ready:
            return True
        sandbox, containers = self._runtime_state(md.get("uid", ""))
        self._post_status(pod, sync.compute_pod_status(pod, containers, sandbox, self.wall(),
                                                       host_ip=self.cfg.node_ip,
                                                       runtime_name=self.runtime.name))
        return False

    # -- housekeeping: the eviction manager -------------------------------------
    def _active_pods(self: Kubelet) -> list[dict]:
        out = []
        for uid, pod in list(self.admitted.items()):
            latest = self.informer.get(pod["metadata"]["name"], pod["metadata"].get("namespace")) \
                if self.informer is not None else None
            pod = latest if latest is not None and latest["metadata"].get("uid") == uid else pod
            if uid in self.finished or pod["metadata"].get("deletionTimestamp"):
                continue
            out.append(pod)
        return out

    def _housekeeping(self: Kubelet, now: float) -> None:
        generation = self.runtime.generation
        if generation is None or generation != getattr(self, "_summary_generation", None):
            figures = stats.summary(self.node_name, self.runtime.list_containers())
            if figures != getattr(self, "_last_summary", None):   # the Summary API's figures, for kemu top
                try:
                    stats.write_summary(self.root_dir, figures, rfc3339(self.wall()))
                    self._last_summary = figures
                except OSError as e:
                    self.log.warning("stats_summary_failed", error=str(e))
                    generation = None
            self._summary_generation = generation
        capacity = self.capacity_bytes
        used = self.root_usage.measure()
        available = capacity - used
        threshold = eviction.threshold_bytes(self.profile.eviction_hard_nodefs_available, capacity)
        met = available < threshold
        self._set_pressure("disk_pressure", self.pressure.observe(now, met), now, used=used, capacity=capacity)
        containers = self.runtime.list_containers()
        mem_capacity = memory_bytes(self.cfg.memory)
        mem_available = pressure.memory_available(mem_capacity, containers, self.root_dir)
        mem_threshold = eviction.threshold_bytes(self.profile.eviction_hard_memory_available, mem_capacity)
        mem_met = mem_available < mem_threshold
        self._set_pressure("memory_pressure", self.memory_pressure.observe(now, mem_met), now,
                           available=mem_available, capacity=mem_capacity)
        # Only a pod with an emptyDir sizeLimit or an ephemeral-storage limit can be over it, and
        # only DiskPressure ranks pods by usage: the others' volumes are not measured.
        pods: list[dict] = []
        self.storage_limited.retain(self.admitted)
        if met or mem_met or any(self.storage_limited(p) for p in self.admitted.values()):
            pods = self._active_pods()
        usage: dict[str, int] = {}
        evicted = False
        for pod in pods:
            if not met and not self.storage_limited(pod):
                continue
            per_volume = self.volumes.volume_usage(pod)
            total = self.volumes.pod_ephemeral_usage(pod, per_volume)
            usage[pod["metadata"].get("uid", "")] = total
            message = eviction.local_storage_violation(pod, per_volume, total)
            if message is not None and eviction.evictable(pod):
                self._evict(pod, message)
                evicted = True
        if evicted or not (met or mem_met):
            return
        if mem_met:   # Kubernetes reclaims memory before disk
            self.recorder.event(self.heartbeat.node_ref(), "Warning", "EvictionThresholdMet",
                                f"Attempting to reclaim {pressure.RESOURCE}")
            mem_usage = pressure.pod_memory_usage(containers)
            ranked_mem = pressure.rank_for_memory_pressure([(p, mem_usage.get(p["metadata"].get("uid", ""), 0))
                                                            for p in pods])
            if ranked_mem:
                victim = ranked_mem[0][0]
                per_container = {c.name: int(c.memory_bytes or 0) for c in containers
                                 if c.pod_uid == victim["metadata"].get("uid") and c.state == RUNNING}
                self._evict(victim, pressure.memory_pressure_message(mem_threshold, mem_available,
                                                                     victim, per_container))
            return
        self.recorder.event(self.heartbeat.node_ref(), "Warning", "EvictionThresholdMet",
                            f"Attempting to reclaim {eviction.RESOURCE}")
        ranked = eviction.rank_for_disk_pressure([(p, usage.get(p["metadata"].get("uid", ""), 0))
                                                  for p in pods])
        if ranked:
            self._evict(ranked[0][0], eviction.node_pressure_message(threshold, available))

    _PRESSURE_EVENTS = {"disk_pressure": ("NodeHasDiskPressure", "NodeHasNoDiskPressure"),
                        "memory_pressure": ("NodeHasInsufficientMemory", "NodeHasSufficientMemory")}

    def _set_pressure(self: Kubelet, field: str, on: bool, now: float, **figures: int) -> None:
        """Set ``cfg.<field>``; on a change, a Node event and a status report on this turn."""
        if on == getattr(self.cfg, field):
            return
        setattr(self.cfg, field, on)
        what = self._PRESSURE_EVENTS[field][0 if on else 1]
        self.recorder.event(self.heartbeat.node_ref(), "Normal", what, f"Node {self.node_name} status is now: {what}")
        self.log.info(f"{field}_changed", kind="Node", name=self.node_name, pressure=on, **figures)
        self.heartbeat.next_status = now   # report it on this turn's heartbeat

    def _evict(self: Kubelet, pod: dict, message: str) -> None:
        """Kubernetes' evictPod: kill the pod at once, phase Failed, reason Evicted."""
        md = pod["metadata"]
        uid = md.get("uid", "")
        self.recorder.event(pod, "Warning", eviction.REASON, message)
        self.log.info("pod_evicted", kind="Pod", namespace=md.get("namespace"), name=md.get("name"),
                      message=message)
        sandbox, _ = self._runtime_state(uid)
        if sandbox is not None:
            self.runtime.stop_pod_sandbox(sandbox.id)
        sandbox, containers = self._runtime_state(uid)
        status = sync.compute_pod_status(pod, containers, sandbox, self.wall(), host_ip=self.cfg.node_ip,
                                         runtime_name=self.runtime.name, evicted=message)
        self.admitted.pop(uid, None)
        self.finished.add(uid)
        self.volumes.teardown(uid)
        self._post_status(pod, status)
