"""Pod admission on the node: does the pod fit what the node can allocate?

Contract (the kubelet's ``predicateAdmitHandler`` / ``GeneralPredicates``)
-------------------------------------------------------------------------
``admit(pod, admitted, allocatable[, requests]) -> Admission``: ``admitted`` are the
non-terminal pods already admitted on this node (not ``pod`` itself);
``allocatable`` is the Node's ``status.allocatable``. A pod's request is the
larger of the sum of its containers' requests and its largest init container
request, plus ``spec.overhead``, per resource (Kubernetes'
``PodRequests``). The checks run in Kubernetes' order: pods, cpu, memory,
ephemeral-storage. A rejection has reason ``OutOf<resource>`` and Kubernetes'
message: ``Node didn't have enough resource: cpu, requested: 5000, used: 0,
capacity: 4000`` (cpu in millicores, the rest in units). The kubelet sets
the pod's status to phase Failed with that reason and the message prefixed by
``Pod was rejected: ``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from emulator.api.quantity import cpu_millis, memory_bytes

RESOURCES = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class Admission:
    admit: bool
    reason: str = ""
    message: str = ""


def _amount(resource: str, q: object) -> int:
    try:
        return cpu_millis(q) if resource == "cpu" else memory_bytes(q)  # type: ignore[arg-type]
    except ValueError:
        return 0


def pod_requests(pod: dict) -> dict[str, int]:
    """Kubernetes' PodRequests over cpu (millicores), memory and ephemeral-storage (bytes)."""
    spec = pod.get("spec") or {}
    total = dict.fromkeys(RESOURCES, 0)
    for c in spec.get("containers") or ():
        reqs = ((c.get("resources") or {}).get("requests") or {}) if isinstance(c, dict) else {}
        for r in RESOURCES:
            if r in reqs:
                total[r] += _amount(r, reqs[r])
    for c in spec.get("initContainers") or ():
        reqs = ((c.get("resources") or {}).get("requests") or {}) if isinstance(c, dict) else {}
        for r in RESOURCES:
            if r in reqs:
                total[r] = max(total[r], _amount(r, reqs[r]))
    for r, q in (spec.get("overhead") or {}).items():
        if r in total:
            total[r] += _amount(r, q)
    return total


def admit(pod: dict, admitted: Iterable[dict], allocatable: dict,
          requests: Callable[[dict], dict[str, int]] = pod_requests) -> Admission:
    """``requests(pod)`` is ``pod_requests`` or a memo of it (the kubelet keeps one per admitted pod)."""
    admitted = list(admitted)
    cap_pods = int(_amount("memory", allocatable.get("pods", 0)))
    if len(admitted) + 1 > cap_pods:
        return Admission(False, "OutOfpods", "Node didn't have enough resource: pods, requested: 1, "
                                             f"used: {len(admitted)}, capacity: {cap_pods}")
    want = pod_requests(pod)
    used = dict.fromkeys(RESOURCES, 0)
    for p in admitted:
        for r, v in requests(p).items():
            used[r] += v
    for r in RESOURCES:
        if not want[r] or r not in allocatable:
            continue
        cap = _amount(r, allocatable[r])
        if used[r] + want[r] > cap:
            return Admission(False, f"OutOf{r}", f"Node didn't have enough resource: {r}, "
                                                 f"requested: {want[r]}, used: {used[r]}, capacity: {cap}")
    return Admission(True)
