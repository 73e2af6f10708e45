"""What the scheduler reads from a Pod, computed once per scheduling attempt.

Contract: ``pod_requests(pod)`` is Kubernetes' effective request
(``resource.PodRequests``): the sum over containers, the max with each init
container (restartable "sidecar" init containers add to the sum and to every
later init container), plus ``spec.overhead``. A container with limits but no
requests uses its limits (the apiserver's defaulting already copies them, this
keeps the rule for objects that skipped it). ``non_zero_requests`` applies the
scoring defaults (100m cpu, 200Mi memory per container without a request), as
``schedutil.GetNonzeroRequests`` does. Bad quantities count as zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.api.quantity import cpu_millis, memory_bytes

DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

Resources = tuple[int, int, int]   # (milli-cpu, memory bytes, ephemeral-storage bytes)


def _q(fn: Any, v: Any) -> int:
    try:
        return fn(v)
    except (ValueError, TypeError, ZeroDivisionError):
        return 0


def container_requests(c: dict) -> tuple[Resources, Resources]:
    """(requests, non-zero requests) of one container."""
    res = c.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    cpu_q = req.get("cpu", lim.get("cpu"))
    mem_q = req.get("memory", lim.get("memory"))
    eph_q = req.get("ephemeral-storage", lim.get("ephemeral-storage"))
    cpu = _q(cpu_millis, cpu_q) if cpu_q is not None else 0
    mem = _q(memory_bytes, mem_q) if mem_q is not None else 0
    eph = _q(memory_bytes, eph_q) if eph_q is not None else 0
    nz = (cpu if cpu_q is not None else DEFAULT_MILLI_CPU_REQUEST,
          mem if mem_q is not None else DEFAULT_MEMORY_REQUEST, eph)
    return (cpu, mem, eph), nz


def _add(a: Resources, b: Resources) -> Resources:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _max(a: Resources, b: Resources) -> Resources:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]))


def _pod_requests(spec: dict, which: int) -> Resources:
    total: Resources = (0, 0, 0)
    for c in spec.get("containers") or ():
        total = _add(total, container_requests(c)[which])
    sidecars: Resources = (0, 0, 0)
    init_max: Resources = (0, 0, 0)
    for c in spec.get("initContainers") or ():
        r = container_requests(c)[which]
        if c.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, r)
            init_max = _max(init_max, sidecars)
        else:
            init_max = _max(init_max, _add(r, sidecars))
    total = _max(_add(total, sidecars), init_max)
    ov = spec.get("overhead") or {}
    if ov:
        total = _add(total, (_q(cpu_millis, ov.get("cpu", 0)), _q(memory_bytes, ov.get("memory", 0)),
                             _q(memory_bytes, ov.get("ephemeral-storage", 0))))
    return total


def pod_requests(pod: dict) -> Resources:
    return _pod_requests(pod.get("spec") or {}, 0)


def non_zero_requests(pod: dict) -> Resources:
    return _pod_requests(pod.get("spec") or {}, 1)


def controller_uid(pod: dict) -> str | None:
    """The uid of the Pod's controller (ownerReferences with controller: true)."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def pod_key(pod: dict) -> tuple[str, str]:
    md = pod["metadata"]
    return (md.get("namespace") or "", md["name"])


@dataclass
class PodInfo:
    """A Pod as the filters and scorers see it."""
    key: tuple[str, str]
    pod: dict
    requests: Resources
    non_zero: Resources
    tolerations: list[dict]
    node_selector: dict[str, str]
    required_terms: list[dict] | None   # None: no required node affinity
    owner: str | None
    preemption_never: bool = False
    labels: dict[str, str] = field(default_factory=dict)


def pod_info(pod: dict) -> PodInfo:
    spec = pod.get("spec") or {}
    aff = ((spec.get("affinity") or {}).get("nodeAffinity") or {}) \
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = None if aff is None else list(aff.get("nodeSelectorTerms") or [])
    return PodInfo(key=pod_key(pod), pod=pod, requests=pod_requests(pod),
                   non_zero=non_zero_requests(pod), tolerations=list(spec.get("tolerations") or []),
                   node_selector=dict(spec.get("nodeSelector") or {}), required_terms=terms,
                   owner=controller_uid(pod), preemption_never=spec.get("preemptionPolicy") == "Never",
                   labels=dict((pod.get("metadata") or {}).get("labels") or {}))
