"""The kubelet's eviction manager, for ephemeral storage: pure decisions.

Contract (Kubernetes' ``pkg/kubelet/eviction``)
----------------------------------------------
* ``threshold_bytes(spec, capacity)``: an ``evictionHard`` value, either a
  percentage of capacity (``"10%"``) or a quantity (``"1Gi"``).
* ``local_storage_violation(pod, volume_usage, pod_usage)``: the message to
  evict a pod with when one emptyDir exceeds its ``sizeLimit``
  (``Usage of EmptyDir volume "x" exceeds the limit "1Mi". ``) or its
  ephemeral usage exceeds the sum of its containers' ephemeral-storage limits
  (``Pod ephemeral local storage usage exceeds the total limit of containers
  2Mi. ``); None when it stays within.
* ``rank_for_disk_pressure(candidates)``: Kubernetes' ``rankDiskPressureFunc``
  over (pod, usage bytes): pods using more than they request first, then
  lower ``spec.priority``, then larger usage above request; ties go to
  BestEffort, then Burstable, then older pods. Critical pods
  (priority >= 2000000000) are never candidates (``evictable``).
* ``node_pressure_message(capacity_threshold, available)``: ``The node was
  low on resource: ephemeral-storage. Threshold quantity: 10Mi, available:
  512Ki. ``.
* ``PressureState``: DiskPressure is observed when available < threshold; the
  condition stays True until ``transition_period`` has passed since it was
  last observed (``evictionPressureTransitionPeriod``).
* ``format_binary(n)``: bytes as a BinarySI Quantity prints them ("10Mi", "1500").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

from emulator.api.kinds.pod import pod_qos_class
from emulator.api.quantity import parse_quantity
from node.kubelet.admission import pod_requests

REASON = "Evicted"
RESOURCE = "ephemeral-storage"
CRITICAL_PRIORITY = 2_000_000_000
_QOS_ORDER = {"BestEffort": 0, "Burstable": 1, "Guaranteed": 2}


@functools.lru_cache(maxsize=256)   # the same few (threshold, capacity) pairs, every housekeeping
def threshold_bytes(spec: str, capacity: int) -> int:
    s = str(spec).strip()
    if s.endswith("%"):
        pct = Fraction(s[:-1])
        if not 0 <= pct <= 100:
            raise ValueError(f'eviction threshold "{spec}": a percentage must be between 0% and 100%')
        return int(capacity * pct / 100)
    return int(parse_quantity(s))


def format_binary(n: int) -> str:
    n = int(n)
    if n == 0:
        return "0"
    for suffix, exp in (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n % (1 << exp) == 0:
            return f"{n >> exp}{suffix}"
    return str(n)


def _limits_sum(pod: dict) -> int | None:
    total, found = 0, False
    for c in (pod.get("spec") or {}).get("containers") or ():
        lim = ((c.get("resources") or {}).get("limits") or {}).get(RESOURCE) if isinstance(c, dict) else None
        if lim is not None:
            try:
                total += int(parse_quantity(lim))
                found = True
            except ValueError:
                continue
    return total if found else None


def _limit_text(pod: dict, total: int) -> str:
    lims = [((c.get("resources") or {}).get("limits") or {}).get(RESOURCE)
            for c in (pod.get("spec") or {}).get("containers") or () if isinstance(c, dict)]
    lims = [x for x in lims if x is not None]
    return str(lims[0]) if len(lims) == 1 else format_binary(total)


def has_local_storage_limit(pod: dict) -> bool:
    """Whether ``local_storage_violation`` can find anything: an emptyDir ``sizeLimit`` or a
    container's ephemeral-storage limit."""
    spec = pod.get("spec") or {}
    for v in spec.get("volumes") or ():
        ed = v.get("emptyDir") if isinstance(v, dict) else None
        if isinstance(ed, dict) and ed.get("sizeLimit") not in (None, ""):
            return True
    return any(RESOURCE in ((c.get("resources") or {}).get("limits") or {})
               for c in spec.get("containers") or () if isinstance(c, dict))


def local_storage_violation(pod: dict, volume_usage: dict[str, int], pod_usage: int) -> str | None:
    for v in (pod.get("spec") or {}).get("volumes") or ():
        ed = v.get("emptyDir") if isinstance(v, dict) else None
        if not isinstance(ed, dict) or ed.get("sizeLimit") in (None, ""):
            continue
        try:
            limit = parse_quantity(ed["sizeLimit"])
        except ValueError:
            continue
        used = volume_usage.get(v.get("name", ""))
        if used is not None and limit > 0 and used > limit:
            return f'Usage of EmptyDir volume "{v.get("name")}" exceeds the limit "{ed["sizeLimit"]}". '
    total = _limits_sum(pod)
    if total is not None and pod_usage > total:
        return f"Pod ephemeral local storage usage exceeds the total limit of containers {_limit_text(pod, total)}. "
    return None


def evictable(pod: dict) -> bool:
    prio = (pod.get("spec") or {}).get("priority")
    return not (isinstance(prio, int) and prio >= CRITICAL_PRIORITY)


def rank_for_pressure(candidates: list[tuple[dict, int]], resource: str) -> list[tuple[dict, int]]:
    """Kubernetes' ranking for one starved resource (rankDiskPressureFunc, rankMemoryPressure)."""
    def key(item: tuple[dict, int]) -> tuple:
        pod, usage = item
        request = pod_requests(pod).get(resource, 0)
        prio = (pod.get("spec") or {}).get("priority")
        return (0 if usage > request else 1,
                prio if isinstance(prio, int) else 0,
                -(usage - request),
                _QOS_ORDER.get(pod_qos_class(pod), 1),
                (pod.get("metadata") or {}).get("creationTimestamp") or "")
    return sorted((c for c in candidates if evictable(c[0])), key=key)


def rank_for_disk_pressure(candidates: list[tuple[dict, int]]) -> list[tuple[dict, int]]:
    return rank_for_pressure(candidates, RESOURCE)


def node_pressure_message(threshold: int, available: int) -> str:
    return (f"The node was low on resource: {RESOURCE}. "
            f"Threshold quantity: {format_binary(threshold)}, available: {format_binary(max(0, available))}. ")


@dataclass
class PressureState:
    transition_period: float
    last_observed: float | None = None

    def observe(self, now: float, met: bool) -> bool:
        """Record this pass's observation; True while the DiskPressure condition holds."""
        if met:
            self.last_observed = now
        return met or (self.last_observed is not None
                       and now - self.last_observed < self.transition_period)
