"""The kubelet's memory signal and node-pressure admission: pure decisions plus the chaos hog files.

Contract (Kubernetes' ``pkg/kubelet/eviction``, signal ``memory.available``)
---------------------------------------------------------------------------
* ``memory.available`` = the node's allocatable memory minus its working set:
  the ``memory_bytes`` its running containers report (the fake runtime reports
  ``kemu.io/memory-usage``; real runtimes measure) plus the bytes of every
  emulated memory hog registered under the node root (``hog_bytes``).
* A memory hog is a file ``<root>/var/lib/kemu/chaos-memory-<id>`` whose
  content is a byte count (``write_hog`` / ``hog_path``); the
  ``memory-pressure`` chaos fault writes one and its heal removes it. Nothing
  is allocated: the kubelet counts the figure as used memory. Malformed or
  negative contents count as 0.
* ``memory_available(allocatable, containers, root_dir)``; the threshold is the
  profile's ``eviction_hard_memory_available`` (``"100Mi"`` or a percentage,
  through ``eviction.threshold_bytes``); MemoryPressure is observed when
  available < threshold, and is kept ``eviction_pressure_transition_period``
  as DiskPressure is (``eviction.PressureState``).
* ``rank_for_memory_pressure(candidates)``: Kubernetes' ``rankMemoryPressure``
  over (pod, usage bytes): pods whose usage exceeds their memory request
  first, then lower ``spec.priority``, then larger usage above request; kemu
  breaks ties with BestEffort, Burstable, Guaranteed, then older pods. So,
  with no usage reported, BestEffort pods (request 0) go before Burstable
  ones. Critical pods are never candidates.
* ``memory_pressure_message(threshold, available, pod, usage)``: ``The node was
  low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. ``
  then, per container using more than it requests, ``Container app was using
  64Mi, request is 0, has larger consumption of memory. ``
* ``pressure_rejection(pod, disk, memory)``: the eviction manager's Admit: the
  message to reject a pod with (``The node had condition: [MemoryPressure]. ``),
  or None. Critical pods are admitted; under MemoryPressure alone only
  BestEffort pods (that do not tolerate the memory-pressure taint) are
  rejected; under DiskPressure every pod is.
"""
from __future__ import annotations

import os
from typing import Iterable

from emulator.api.kinds.pod import pod_qos_class
from node.kubelet import eviction
from node.kubelet.admission import pod_requests
from node.runtime.interface import RUNNING, ContainerStatus

RESOURCE = "memory"
HOG_DIR = os.path.join("var", "lib", "kemu")
HOG_PREFIX = "chaos-memory-"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"


# -- the emulated memory hogs ----------------------------------------------------
def hog_path(root_dir: str, hog_id: str) -> str:
    return os.path.join(root_dir, HOG_DIR, HOG_PREFIX + hog_id)


def write_hog(root_dir: str, hog_id: str, nbytes: int) -> str:
    path = hog_path(root_dir, hog_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{int(nbytes)}\n")
    os.replace(tmp, path)
    return path


def hog_bytes(root_dir: str) -> int:
    d = os.path.join(root_dir, HOG_DIR)
    total = 0
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    for n in names:
        if not n.startswith(HOG_PREFIX) or n.endswith(".tmp"):
            continue
        try:
            with open(os.path.join(d, n)) as f:
                total += max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            continue
    return total


# -- the signal ----------------------------------------------------------------
def pod_memory_usage(containers: Iterable[ContainerStatus]) -> dict[str, int]:
    """uid -> the memory its running containers report."""
    out: dict[str, int] = {}
    for c in containers:
        if c.state == RUNNING:
            out[c.pod_uid] = out.get(c.pod_uid, 0) + int(c.memory_bytes or 0)
    return out


def memory_available(allocatable: int, containers: Iterable[ContainerStatus], root_dir: str) -> int:
    used = sum(int(c.memory_bytes or 0) for c in containers if c.state == RUNNING)
    return allocatable - used - hog_bytes(root_dir)


# -- ranking and messages ------------------------------------------------------
def rank_for_memory_pressure(candidates: list[tuple[dict, int]]) -> list[tuple[dict, int]]:
    return eviction.rank_for_pressure(candidates, RESOURCE)


def memory_pressure_message(threshold: int, available: int, pod: dict | None = None,
                            container_usage: dict[str, int] | None = None) -> str:
    msg = (f"The node was low on resource: {RESOURCE}. Threshold quantity: {eviction.format_binary(threshold)}, "
           f"available: {eviction.format_binary(max(0, available))}. ")
    for c in ((pod or {}).get("spec") or {}).get("containers") or ():
        if not isinstance(c, dict):
            continue
        used = (container_usage or {}).get(c.get("name", ""), 0)
        req = pod_requests({"spec": {"containers": [c]}}).get(RESOURCE, 0)
        if used > req:
            msg += (f"Container {c.get('name')} was using {eviction.format_binary(used)}, request is "
                    f"{eviction.format_binary(req)}, has larger consumption of {RESOURCE}. ")
    return msg


def _tolerates_memory_pressure(pod: dict) -> bool:
    for t in (pod.get("spec") or {}).get("tolerations") or ():
        if not isinstance(t, dict):
            continue
        key_ok = t.get("key") == TAINT_MEMORY_PRESSURE or (not t.get("key") and t.get("operator") == "Exists")
        if key_ok and t.get("effect") in (None, "", "NoSchedule"):
            return True
    return False


def pressure_rejection(pod: dict, disk: bool, memory: bool) -> str | None:
    """The eviction manager's Admit: a rejection message, or None to admit."""
    conditions = [n for n, on in (("MemoryPressure", memory), ("DiskPressure", disk)) if on]
    if not conditions or not eviction.evictable(pod):
        return None
    if conditions == ["MemoryPressure"] and (pod_qos_class(pod) != "BestEffort"
                                             or _tolerates_memory_pressure(pod)):
        return None
    return f"The node had condition: [{' '.join(conditions)}]. "
