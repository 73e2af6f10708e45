"""The scheduler's metrics, under Kubernetes' names.

Contract: ``SchedulerMetrics.start(key)`` marks the start of a pod's
scheduling attempt (it is popped from activeQ); ``done(key, result)`` ends
it: ``scheduler_schedule_attempts_total{result}`` counts it and
``scheduler_scheduling_attempt_duration_seconds{result}`` observes its
duration (scheduling algorithm plus binding, as in Kubernetes). ``result`` is
``scheduled``, ``unschedulable`` or ``error``. An attempt that was never
started (``done`` without ``start``) is counted with no duration.
"""
from __future__ import annotations

import time

from emulator import metrics

RESULTS = ("scheduled", "unschedulable", "error")


class SchedulerMetrics:
    def __init__(self) -> None:
        attempts = metrics.counter("scheduler_schedule_attempts",
                                   "Number of attempts to schedule pods, by the result. 'unschedulable' "
                                   "means a pod could not be scheduled, while 'error' means an internal "
                                   "scheduler problem.", ("result",))
        duration = metrics.histogram("scheduler_scheduling_attempt_duration_seconds",
                                     "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
                                     ("result",), metrics.exponential_buckets(0.001, 2, 15))
        self._attempts = {r: attempts.labels(r) for r in RESULTS}
        self._duration = {r: duration.labels(r) for r in RESULTS}
        self._started: dict[tuple[str, str], float] = {}

    def start(self, key: tuple[str, str]) -> None:
        self._started[key] = time.perf_counter()

    def done(self, key: tuple[str, str], result: str) -> None:
        self._attempts[result].inc()
        t0 = self._started.pop(key, None)
        if t0 is not None:
            self._duration[result].observe(time.perf_counter() - t0)

    def forget(self, key: tuple[str, str]) -> None:
        self._started.pop(key, None)
