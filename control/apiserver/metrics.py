"""The apiserver's metrics, under Kubernetes' names.

Contract
--------
* ``RequestMetrics.observe(requests, t0)``: ``requests`` is a batch's
  ``[(msg, code), ...]`` (the decoded request, or None when it could not be
  decoded, and the error code, or None for success), ``t0`` the
  ``perf_counter`` when the batch was received. The server calls it when the
  batch's replies are sent (after the WAL sync covering them), so a request's
  duration runs from its batch's arrival to its reply, as
  ``apiserver_request_duration_seconds{verb,resource}`` does in Kubernetes
  (there, until the response is written). ``apiserver_request_total
  {verb,resource,code}`` counts them with the HTTP status code (201 for a
  create). Verbs are Kubernetes': GET, LIST, POST, PUT, PATCH, DELETE; the
  resource is the plural (``pods``), with ``/subresource`` appended (for
  ``pods/binding``, ``pods/status``). Watches, hello and ping are not counted.
* ``watch_metrics(hub)``: ``apiserver_watch_events_total{kind}`` and
  ``apiserver_watch_events_dropped_total`` (kemu's: a slow watcher removed),
  read from the hub's counters at scrape time, so fan-out pays nothing.
"""
from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily

from emulator import metrics
from emulator.api.errors import HTTP_STATUS
from emulator.api.registry import REGISTRY

VERBS = {"get": "GET", "list": "LIST", "create": "POST", "update": "PUT", "patch": "PATCH",
         "delete": "DELETE"}
SUCCESS = {"create": "201"}
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    def __init__(self) -> None:
        self.duration = metrics.loop_histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb and resource.",
            ("verb", "resource"), REQUEST_BUCKETS)
        self.total = metrics.loop_counter(
            "apiserver_request_total", "Counter of apiserver requests broken out for each verb, "
            "resource and HTTP response code.", ("verb", "resource", "code"))
        self._resources: dict[tuple[str, str], str] = {}
        # (op, kind, subresource, error code) -> (the duration child, the counter's labels), or None
        self._series: dict[tuple, tuple[list, tuple] | None] = {}

    def _resource(self, kind: str, sub: str) -> str:
        key = (kind, sub)
        r = self._resources.get(key)
        if r is None:
            try:
                r = REGISTRY.resolve(kind).plural
            except Exception:
                r = kind.lower()
            if sub:
                r = f"{r}/{sub}"
            self._resources[key] = r
        return r

    def _series_for(self, op: Any, kind: Any, sub: Any, code: str | None) -> tuple[list, tuple] | None:
        verb = VERBS.get(op) if isinstance(op, str) else None
        if verb is None:
            return None
        sub = sub if isinstance(sub, str) else ""
        if sub and op == "create":
            kind = "Pod"   # binding and eviction are pods' subresources
        resource = self._resource(kind if isinstance(kind, str) else "", sub)
        status = SUCCESS.get(op, "200") if code is None else str(HTTP_STATUS.get(code, 500))
        return self.duration.child((verb, resource)), (verb, resource, status)

    def observe(self, requests: list[tuple[dict | None, str | None]], t0: float) -> None:
        dt = time.perf_counter() - t0
        i = bisect_left(self.duration.bounds, dt)   # one batch, one duration
        series, totals = self._series, self.total.values
        for msg, code in requests:
            if msg is None:
                continue
            kind = msg.get("kind")
            if kind is None:
                obj = msg.get("object")
                kind = obj.get("kind") if obj.__class__ is dict else None
            key = (msg.get("op"), kind, msg.get("subresource"), code)
            try:
                s = series[key]
            except KeyError:
                s = series[key] = self._series_for(*key)
            except TypeError:   # an unhashable field: not a request we count
                continue
            if s is None:
                continue
            c, labels = s
            c[i] += 1
            c[-1] += dt
            totals[labels] = totals.get(labels, 0) + 1


_hubs: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _watch_families() -> Iterable[Any]:
    sent = CounterMetricFamily("apiserver_watch_events", "Number of events sent in watch clients",
                               labels=("kind",))
    dropped = CounterMetricFamily("apiserver_watch_events_dropped",
                                  "Number of watchers removed because their peer could not take an "
                                  "event (gone, or its queue full); kemu-specific")
    by_kind: dict[str, int] = {}
    total_dropped = 0
    for hub in list(_hubs):
        for kind, n in hub.events_by_kind().items():
            by_kind[kind] = by_kind.get(kind, 0) + n
        total_dropped += hub.watchers_dropped
    for kind, n in sorted(by_kind.items()):
        sent.add_metric([kind], n)
    dropped.add_metric([], total_dropped)
    return [sent, dropped]


def watch_metrics(hub: Any) -> None:
    """Expose ``hub``'s counters (summed over every live hub of this process)."""
    _hubs.add(hub)
    metrics.collector("apiserver_watch", _watch_families)
