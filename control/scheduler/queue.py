"""The scheduling queue: activeQ, backoffQ and unschedulable pods.

Contract (after kube-scheduler's ``PriorityQueue``), with an injected clock:
* ``add``/``update``/``delete`` mirror the informer. A new pod goes to
  activeQ, ordered by priority (higher first), then by the time it was added
  (FIFO).
* ``pop`` hands out the next pod and marks it in flight; the caller ends the
  attempt with ``done`` (bound), ``add_unschedulable`` (no node fits) or
  ``add_backoff`` (an error, such as a failed binding).
* Each failed attempt backs the pod off for ``initial * 2**(attempts-1)``
  seconds, at most ``max_backoff``.
* An unschedulable pod waits in ``unschedulable`` until a cluster event
  (``move_all_to_active_or_backoff``: node added or changed, assigned pod
  deleted) or until it has waited ``unschedulable_flush_interval``; it then
  goes to backoffQ if its back-off has not expired, else to activeQ. A pod
  whose attempt overlapped a cluster event goes to backoffQ directly, so the
  event is not missed (``moveRequestCycle``). ``which`` narrows a move to the
  pods an event can help (a storage event: pods that use claims).
* An update that changes an unschedulable pod's spec or labels moves it.
* ``flush(now)`` moves due pods; ``next_due()`` tells the loop when to wake.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable

PodKey = tuple[str, str]


@dataclass
class QueuedPod:
    key: PodKey
    pod: dict
    attempts: int = 0
    seq: int = 0               # order of entering activeQ
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    popped_cycle: int = -1


def _priority(pod: dict) -> int:
    p = (pod.get("spec") or {}).get("priority")
    return p if isinstance(p, int) else 0


def _relevant(pod: dict) -> tuple:
    return ((pod.get("spec") or {}), (pod.get("metadata") or {}).get("labels"))


class SchedulingQueue:
    def __init__(self, initial_backoff: float, max_backoff: float, unschedulable_flush_interval: float,
                 clock: Callable[[], float]) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.flush_interval = unschedulable_flush_interval
        self.clock = clock
        self.pods: dict[PodKey, QueuedPod] = {}
        self.active: list[tuple[int, int, PodKey]] = []      # (-priority, seq, key), lazily pruned
        self.in_active: dict[PodKey, int] = {}                # key -> seq of its live heap entry
        self.backoff: list[tuple[float, int, PodKey]] = []    # (until, seq, key), lazily pruned
        self.in_backoff: dict[PodKey, float] = {}
        self.unschedulable: dict[PodKey, QueuedPod] = {}
        self.in_flight: set[PodKey] = set()
        self.cycle = 0          # bumped by every cluster event (moveRequestCycle)
        self._seq = itertools.count()

    # -- informer side -------------------------------------------------------
    def add(self, pod: dict, key: PodKey) -> None:
        qp = self.pods.get(key)
        if qp is not None:
            self.update(pod, key)
            return
        qp = self.pods[key] = QueuedPod(key, pod)
        self._to_active(qp)

    def update(self, pod: dict, key: PodKey) -> None:
        qp = self.pods.get(key)
        if qp is None:
            self.add(pod, key)
            return
        changed = _relevant(qp.pod) != _relevant(pod)
        qp.pod = pod
        if changed and key in self.unschedulable:
            del self.unschedulable[key]
            self._to_active_or_backoff(qp)

    def delete(self, key: PodKey) -> None:
        self.pods.pop(key, None)
        self.in_active.pop(key, None)
        self.in_backoff.pop(key, None)
        self.unschedulable.pop(key, None)
        self.in_flight.discard(key)

    def __contains__(self, key: PodKey) -> bool:
        return key in self.pods

    def __len__(self) -> int:
        return len(self.pods)

    # -- scheduler side ------------------------------------------------------
    def pop(self) -> QueuedPod | None:
        while self.active:
            _p, seq, key = heapq.heappop(self.active)
            if self.in_active.get(key) != seq:
                continue   # a stale entry
            del self.in_active[key]
            qp = self.pods[key]
            qp.attempts += 1
            qp.popped_cycle = self.cycle
            self.in_flight.add(key)
            return qp
        return None

    def done(self, key: PodKey) -> None:
        self.delete(key)

    def _backoff_duration(self, attempts: int) -> float:
        return min(self.max_backoff, self.initial_backoff * 2 ** max(0, attempts - 1))

    def add_unschedulable(self, qp: QueuedPod) -> None:
        self.in_flight.discard(qp.key)
        if qp.key not in self.pods:
            return   # deleted or bound meanwhile
        now = self.clock()
        qp.backoff_until = now + self._backoff_duration(qp.attempts)
        if qp.popped_cycle != self.cycle:
            self._to_backoff(qp)
        else:
            qp.unschedulable_since = now
            self.unschedulable[qp.key] = qp

    def add_backoff(self, qp: QueuedPod) -> None:
        self.in_flight.discard(qp.key)
        if qp.key not in self.pods:
            return
        qp.backoff_until = self.clock() + self._backoff_duration(qp.attempts)
        self._to_backoff(qp)

    def move_all_to_active_or_backoff(self, which: Callable[[QueuedPod], bool] | None = None) -> int:
        """A cluster event that may make unschedulable pods fit (those ``which`` picks, or all)."""
        self.cycle += 1
        if which is None:
            moved = list(self.unschedulable.values())
            self.unschedulable.clear()
        else:
            moved = [qp for qp in self.unschedulable.values() if which(qp)]
            for qp in moved:
                del self.unschedulable[qp.key]
        for qp in moved:
            self._to_active_or_backoff(qp)
        return len(moved)

    def flush(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        while self.backoff and self.backoff[0][0] <= now:
            until, _s, key = heapq.heappop(self.backoff)
            if self.in_backoff.get(key) != until:
                continue
            del self.in_backoff[key]
            self._to_active(self.pods[key])
        if self.unschedulable:
            stale = [qp for qp in self.unschedulable.values()
                     if now - qp.unschedulable_since >= self.flush_interval]
            for qp in stale:
                del self.unschedulable[qp.key]
                self._to_active_or_backoff(qp, now)

    def next_due(self) -> float | None:
        """When ``flush`` next has something to do; None if nothing is waiting."""
        times = []
        while self.backoff and self.in_backoff.get(self.backoff[0][2]) != self.backoff[0][0]:
            heapq.heappop(self.backoff)
        if self.backoff:
            times.append(self.backoff[0][0])
        if self.unschedulable:
            times.append(min(qp.unschedulable_since for qp in self.unschedulable.values())
                         + self.flush_interval)
        return min(times) if times else None

    def has_active(self) -> bool:
        return bool(self.in_active)

    # -- internals -----------------------------------------------------------
    def _to_active(self, qp: QueuedPod) -> None:
        qp.seq = next(self._seq)
        self.in_active[qp.key] = qp.seq
        heapq.heappush(self.active, (-_priority(qp.pod), qp.seq, qp.key))

    def _to_backoff(self, qp: QueuedPod) -> None:
        self.in_backoff[qp.key] = qp.backoff_until
        heapq.heappush(self.backoff, (qp.backoff_until, next(self._seq), qp.key))

    def _to_active_or_backoff(self, qp: QueuedPod, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if qp.key in self.in_flight:
            return
        if qp.backoff_until > now:
            self._to_backoff(qp)
        else:
            self._to_active(qp)
