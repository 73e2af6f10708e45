"""Recording Kubernetes Events from any component, correlated as client-go does.

Contract
--------
* ``EventRecorder.event(obj, type, reason, message)`` records an Event about
  ``obj`` the way Kubernetes components do: ``involvedObject`` (kind,
  namespace, name, uid, apiVersion, resourceVersion), ``reason``,
  ``message``, ``type`` (Normal or Warning), ``source`` (component, host),
  ``count``, ``firstTimestamp`` and ``lastTimestamp``. A cluster-scoped
  object's Events go to namespace ``default``.
* Every Event first passes the recorder's ``EventCorrelator`` (client-go's
  ``tools/record/events_cache.go``), one per recorder, i.e. per component
  process, as in Kubernetes:

  - the **EventAggregator** groups *similar* Events (same source,
    involvedObject, type and reason; any message). Once 10 different
    messages were seen for one group within 10 minutes of each other
    (``AGGREGATE_MAX_EVENTS``, ``AGGREGATE_INTERVAL``), each further Event of
    the group is replaced by one whose message is
    ``"(combined from similar events): <message>"``, keyed by the group;
  - the **EventLogger** dedupes *identical* Events (same source,
    involvedObject with fieldPath, type, reason and message): a repeat is a
    patch of the existing Event's ``count`` (+1), ``lastTimestamp`` and
    ``message``, keeping its name and ``firstTimestamp``;
  - the **spam filter** (``EventSourceObjectSpamFilter``: a token bucket of
    25 per source and object, refilled once every 5 minutes) is available
    but off by default (``spam_filter=True`` turns it on): lab time is
    scaled by the ``fast`` profile while that refill rate is not, and
    scenario checks rely on seeing every Event.

  Both caches are LRUs of 4096 keys, as client-go's.
* Recording is fire-and-forget: it never waits for a reply and never
  raises; a lost Event is acceptable, as in Kubernetes. Patch replies are
  collected on later calls: a patch answered NotFound (the Event outlived
  its TTL, see ``control/apiserver/eventttl.py``) re-creates the Event
  under the same name, as client-go's ``recordToSink`` does.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client

AGGREGATE_MAX_EVENTS = 10          # client-go defaultAggregateMaxEvents
AGGREGATE_INTERVAL = 600.0         # client-go defaultAggregateIntervalInSeconds
LRU_ENTRIES = 4096                 # client-go maxLruCacheEntries
SPAM_BURST = 25                    # client-go defaultSpamBurst
SPAM_QPS = 1.0 / 300.0             # client-go defaultSpamQPS: one token every 5 minutes
COMBINED_PREFIX = "(combined from similar events): "
MAX_PENDING = 256                  # patch replies kept waiting for; older ones are forgotten


def rfc3339(ts: float) -> str:
    """Kubernetes' second-precision timestamp (``metav1.Time``); one ``strftime`` per second:
    a pod start stamps about ten of them (Events, conditions, metadata)."""
    return _rfc3339_second(int(ts))


def micro_time(ts: float) -> str:
    """``metav1.MicroTime`` (a Lease's renewTime): ``rfc3339`` with microseconds, rounded
    as ``datetime.fromtimestamp`` rounds them; the seconds come from the same cache."""
    frac, whole = math.modf(ts)
    us, sec = round(frac * 1e6), int(whole)
    if us >= 1_000_000:
        us -= 1_000_000
        sec += 1
    return f"{_rfc3339_second(sec)[:-1]}.{us:06d}Z"


@lru_cache(maxsize=512)
def _rfc3339_second(sec: int) -> str:
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _LRU(OrderedDict):
    def __init__(self, size: int = LRU_ENTRIES) -> None:
        super().__init__()
        self.size = size

    def get_(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def add(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _object_key(ev: dict) -> tuple:
    src = ev.get("source") or {}
    inv = ev.get("involvedObject") or {}
    return (src.get("component"), src.get("host"), inv.get("kind"), inv.get("namespace"),
            inv.get("name"), inv.get("uid"), inv.get("apiVersion"))


def event_key(ev: dict) -> tuple:
    """client-go ``getEventKey``: what makes two Events identical."""
    return _object_key(ev) + ((ev.get("involvedObject") or {}).get("fieldPath"),
                              ev.get("type"), ev.get("reason"), ev.get("message"))


def aggregate_key(ev: dict) -> tuple[tuple, str]:
    """client-go ``EventAggregatorByReasonFunc``: (group key, local key = message)."""
    return (_object_key(ev) + (ev.get("type"), ev.get("reason"), ev.get("reportingComponent"),
                               ev.get("reportingInstance")), ev.get("message") or "")


def spam_key(ev: dict) -> tuple:
    """client-go ``getSpamKey``: source, involvedObject and type."""
    return _object_key(ev) + (ev.get("type"),)


@dataclass
class Correlation:
    """The result of ``EventCorrelator.correlate``: create ``event`` (``patch`` is None),
    patch the existing Event ``event['metadata']['name']`` with ``patch``, or ``skip``."""
    event: dict
    patch: dict | None = None
    skip: bool = False


class EventCorrelator:
    """client-go's EventCorrelator: aggregate, then dedupe, then (optionally) filter spam.
    Pure: no I/O; ``clock`` gives seconds since the epoch."""

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 max_events: int = AGGREGATE_MAX_EVENTS, max_interval: float = AGGREGATE_INTERVAL,
                 spam_filter: bool = False, spam_burst: int = SPAM_BURST,
                 spam_qps: float = SPAM_QPS) -> None:
        self.clock = clock
        self.max_events = max_events
        self.max_interval = max_interval
        self.spam_filter = spam_filter
        self.spam_burst = spam_burst
        self.spam_qps = spam_qps
        self._aggregate = _LRU()   # group key -> (set of messages, last time)
        self._logged = _LRU()      # event key -> (count, firstTimestamp, name)
        self._spam = _LRU()        # spam key -> (tokens, last refill time)
        self._n = 0

    def _name(self, inv_name: str | None, now: float) -> str:
        self._n += 1
        return f"{inv_name or 'unknown'}.{int(now * 1e9):x}{self._n:x}"

    def _aggregate_event(self, ev: dict, now: float) -> tuple[dict, tuple]:
        """client-go ``EventAggregate``: the Event to log and its dedupe key."""
        key, local = aggregate_key(ev)
        record = self._aggregate.get_(key)
        if record is None or now - record[1] > self.max_interval:
            record = (set(), now)
        messages = record[0]
        messages.add(local)
        self._aggregate.add(key, (messages, now))
        if len(messages) < self.max_events:
            return ev, event_key(ev)
        messages.pop()   # do not grow the set past the limit
        stamp = rfc3339(now)
        combined = {**ev, "metadata": {"name": self._name((ev.get("involvedObject") or {}).get("name"), now),
                                       "namespace": ev["metadata"]["namespace"]},
                    "message": COMBINED_PREFIX + (ev.get("message") or ""),
                    "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp}
        return combined, key

    def _allow(self, ev: dict, now: float) -> bool:
        """client-go ``EventSourceObjectSpamFilter``: a token bucket per source and object."""
        key = spam_key(ev)
        tokens, last = self._spam.get_(key) or (float(self.spam_burst), now)
        tokens = min(float(self.spam_burst), tokens + (now - last) * self.spam_qps)
        allowed = tokens >= 1.0
        self._spam.add(key, (tokens - 1.0 if allowed else tokens, now))
        return allowed

    def correlate(self, ev: dict) -> Correlation:
        """``ev`` is a new Event (``metadata.name`` may be empty: one is made)."""
        now = self.clock()
        ev, key = self._aggregate_event(ev, now)
        seen = self._logged.get_(key)
        patch = None
        if seen is not None:
            count, first, name = seen
            ev = {**ev, "metadata": {**ev["metadata"], "name": name}, "count": count + 1,
                  "firstTimestamp": first}
            patch = {"count": count + 1, "lastTimestamp": ev["lastTimestamp"],
                     "message": ev.get("message")}
        elif not ev["metadata"].get("name"):
            ev = {**ev, "metadata": {**ev["metadata"],
                                     "name": self._name((ev.get("involvedObject") or {}).get("name"), now)}}
        self._logged.add(key, (int(ev.get("count") or 1), ev.get("firstTimestamp"), ev["metadata"]["name"]))
        if self.spam_filter and not self._allow(ev, now):
            return Correlation(ev, patch, skip=True)
        return Correlation(ev, patch)


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str | None = None, *,
                 clock: Callable[[], float] = time.time, spam_filter: bool = False) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.correlator = EventCorrelator(clock, spam_filter=spam_filter)
        self._pending: OrderedDict[int, dict] = OrderedDict()   # patch request id -> the full Event

    def make_event(self, obj: dict, type_: str, reason: str, message: str) -> dict:
        md = obj.get("metadata") or {}
        ns = md.get("namespace") or "default"
        stamp = rfc3339(self.clock())
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "", "namespace": ns},
            "involvedObject": {"kind": obj.get("kind"), "namespace": md.get("namespace"),
                               "name": md.get("name"), "uid": md.get("uid"),
                               "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": md.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component, "reportingInstance": self.host or "",
            "count": 1, "firstTimestamp": stamp, "lastTimestamp": stamp,
        }

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        try:
            self._collect_replies()
            res = self.correlator.correlate(self.make_event(obj, type_, reason, message))
            if res.skip:
                return
            ev = res.event
            ns = ev["metadata"]["namespace"]
            if res.patch is None:
                self.client.post("create", object=ev, namespace=ns)
                return
            rid = self.client.send("patch", kind="Event", name=ev["metadata"]["name"], namespace=ns,
                                   patch=res.patch, patchType="merge", subresource=None)
            self._pending[rid] = ev
            while len(self._pending) > MAX_PENDING:
                self._forget(next(iter(self._pending)))
        except Exception:   # events are best effort; never fail the caller
            pass

    def _forget(self, rid: int) -> None:
        self._pending.pop(rid, None)
        self.client.forget(rid)

    def _collect_replies(self) -> None:
        """Patches answered NotFound (the Event expired) are re-created, as client-go does."""
        for rid in list(self._pending):
            done, result = self.client.take_reply(rid)
            if not done:
                continue
            ev = self._pending.pop(rid)
            if isinstance(result, APIError) and result.code == errors.NOT_FOUND:
                self.client.post("create", object=ev, namespace=ev["metadata"]["namespace"])
