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
    """Observed from the scheduler's one loop thread: lock-free series (``emulator.metrics``'
    loop kinds); prometheus_client's locks cost the loop about 5% at scale."""

    def __init__(self) -> None:
        self._attempts = metrics.loop_counter(
            "scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result. "
            "'unschedulable' means a pod could not be scheduled, while 'error' means an internal "
            "scheduler problem.", ("result",))
        self._duration = metrics.loop_histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            ("result",), metrics.exponential_buckets(0.001, 2, 15))
        for r in RESULTS:   # every series is exposed from the start, at zero
            self._attempts.inc((r,), 0)
            self._duration.child((r,))
        self._labels = {r: (r,) for r in RESULTS}
        self._started: dict[tuple[str, str], float] = {}

    def start(self, key: tuple[str, str]) -> None:
        self._started[key] = time.perf_counter()

    def done(self, key: tuple[str, str], result: str) -> None:
        labels = self._labels[result]
        self._attempts.inc(labels)
        t0 = self._started.pop(key, None)
        if t0 is not None:
            self._duration.observe(labels, time.perf_counter() - t0)

    def forget(self, key: tuple[str, str]) -> None:
        self._started.pop(key, None)
