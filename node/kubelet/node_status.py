"""The Node object a kubelet registers, and the status it reports.

Contract (the kubelet's ``initialNode`` and ``setNodeStatus`` functions)
-----------------------------------------------------------------------
* ``build_node(cfg, now)`` is the Node to create: labels
  ``kubernetes.io/hostname``, ``kubernetes.io/os=linux``,
  ``kubernetes.io/arch=amd64``, ``topology.kubernetes.io/zone`` (and
  ``beta.kubernetes.io/os|arch``); spec ``podCIDR``/``podCIDRs`` when the
  node has one and ``providerID`` ``kemu://<name>``; and ``node_status``.
* ``node_status(cfg, now, previous)`` is ``status``: capacity = allocatable
  (kemu reserves nothing) for cpu, memory, pods, ephemeral-storage;
  conditions MemoryPressure, DiskPressure, PIDPressure (False) and Ready
  (True) with Kubernetes' reasons and messages (DiskPressure True,
  KubeletHasDiskPressure, while ``cfg.disk_pressure``; MemoryPressure True,
  KubeletHasInsufficientMemory, while ``cfg.memory_pressure``); ``addresses`` InternalIP and
  Hostname; ``daemonEndpoints``; ``nodeInfo``. ``lastHeartbeatTime`` is
  ``now``; ``lastTransitionTime`` is kept from ``previous`` while a
  condition's status is unchanged.
* ``status_changed(a, b)`` compares two statuses ignoring heartbeat times:
  the kubelet posts when it is True, or every ``node_status_report_frequency``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from emulator.events import rfc3339

KUBELET_VERSION = "v1.32.0-kemu"
KUBELET_PORT = 10250

# (type, status, reason, message) with Kubernetes' wording
HEALTHY_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
DISK_PRESSURE = ("True", "KubeletHasDiskPressure", "kubelet has disk pressure")
MEMORY_PRESSURE = ("True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")


@dataclass
class NodeConfig:
    name: str
    zone: str = ""
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    node_ip: str = "127.0.0.1"
    pod_cidr: str = ""
    runtime_version: str = "fake://0.1"
    labels: dict[str, str] = field(default_factory=dict)
    disk_pressure: bool = False   # set by the eviction manager
    memory_pressure: bool = False  # set by the eviction manager

    def resources(self) -> dict[str, str]:
        return {"cpu": str(self.cpu), "ephemeral-storage": str(self.ephemeral_storage),
                "memory": str(self.memory), "pods": str(self.pods)}


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": cfg.name,
              "kubernetes.io/os": "linux"}
    if cfg.zone:
        labels["topology.kubernetes.io/zone"] = cfg.zone
    labels.update(cfg.labels)
    return labels


def _machine_id(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


def status_inputs(cfg: NodeConfig, boot_id: str = "") -> tuple:
    """Everything ``node_status`` reads besides the time and ``previous``: two calls with equal
    inputs and the same ``previous`` differ only in heartbeat times (``status_changed`` False)."""
    return (cfg.name, cfg.cpu, cfg.memory, cfg.pods, cfg.ephemeral_storage, cfg.node_ip,
            cfg.runtime_version, cfg.disk_pressure, cfg.memory_pressure, boot_id)


def node_status(cfg: NodeConfig, now: float, previous: dict | None = None,
                boot_id: str = "") -> dict:
    stamp = rfc3339(now)
    prev = {c.get("type"): c for c in ((previous or {}).get("conditions") or ())}
    conditions = []
    for typ, status, reason, message in HEALTHY_CONDITIONS:
        if typ == "DiskPressure" and cfg.disk_pressure:
            status, reason, message = DISK_PRESSURE
        if typ == "MemoryPressure" and cfg.memory_pressure:
            status, reason, message = MEMORY_PRESSURE
        old = prev.get(typ)
        transition = old["lastTransitionTime"] if old and old.get("status") == status \
            and old.get("lastTransitionTime") else stamp
        conditions.append({"type": typ, "status": status, "lastHeartbeatTime": stamp,
                           "lastTransitionTime": transition, "reason": reason, "message": message})
    mid = _machine_id(cfg.name)
    return {
        "capacity": cfg.resources(),
        "allocatable": cfg.resources(),
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip},
                      {"type": "Hostname", "address": cfg.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": mid, "systemUUID": f"{mid[:8]}-{mid[8:12]}-{mid[12:16]}-{mid[16:20]}-{mid[20:]}",
            "bootID": boot_id, "kernelVersion": "6.1.0-kemu", "osImage": "kemu emulated node",
            "containerRuntimeVersion": cfg.runtime_version, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
        "images": [],
    }


def build_node(cfg: NodeConfig, now: float, boot_id: str = "") -> dict:
    spec: dict = {"providerID": f"kemu://{cfg.name}"}
    if cfg.pod_cidr:
        spec["podCIDR"] = cfg.pod_cidr
        spec["podCIDRs"] = [cfg.pod_cidr]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": cfg.name, "labels": node_labels(cfg),
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": spec, "status": node_status(cfg, now, None, boot_id)}


def _without_heartbeats(conditions: list | None) -> list:
    return [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in conditions or ()]


def status_changed(a: dict | None, b: dict | None) -> bool:
    """Whether two NodeStatuses differ in anything but the conditions' heartbeat times.
    Shallow: it runs every status period on every node (deep copies of both statuses
    were half of an idle fast node's CPU)."""
    a, b = a or {}, b or {}
    if a.keys() != b.keys():
        return True
    for k, v in a.items():
        if k == "conditions":
            if _without_heartbeats(v) != _without_heartbeats(b[k]):
                return True
        elif v != b[k]:
            return True
    return False
