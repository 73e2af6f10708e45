"""Events expire ``event_ttl`` after their last write, in the apiserver (``--event-ttl``).

Why here: kube-apiserver stores each Event in etcd under a lease of ``--event-ttl``
(1 h by default), granted again at every write, so the store itself removes an Event
an hour after its last create or update, whatever timestamps the Event carries; no
controller watches Events for it. kemu's store has no leases, so the apiserver keeps
the expiry times beside it. This was a controller in the controller-manager: it
watched every Event (at 10,000 nodes, four per pod start) and read the expiry from
the Event's own timestamps, so a node whose clock was skewed back wrote Events that
were deleted on arrival.

Contract
--------
* ``EventExpiry(ttl)``: ``observe(store_events, now)`` queues each Event written
  (added or modified) at ``now + ttl``; ``rebuild(store, now)`` queues every stored
  Event at ``now + ttl`` (recovery: the write times are not stored, so a restart
  gives every Event a full TTL, as etcd's leases' remaining time would at most).
* ``due(now, store, limit)`` pops the queued Events whose expiry has come and that
  are still stored as queued (the same resourceVersion: one written since was
  queued again then) and returns them as ``(namespace, name, resourceVersion)``, at
  most ``limit``; the rest wait for the next call. ``next_due()``: the earliest
  queued expiry, or None.
* The apiserver deletes each due Event as a client's delete with a
  ``resourceVersion`` precondition would, so a watcher sees it DELETED. It may
  linger until the loop's next turn after its expiry (etcd's lease expiry is not
  exact either).
"""
from __future__ import annotations

import heapq
from typing import Any, Iterable


class EventExpiry:
    def __init__(self, ttl: float) -> None:
        self.ttl = float(ttl)
        self.queue: list[tuple[float, str, str, str]] = []   # (expiry, namespace, name, resourceVersion)

    def _push(self, ev: dict, now: float) -> None:
        md = ev.get("metadata") or {}
        heapq.heappush(self.queue, (now + self.ttl, md.get("namespace") or "", md.get("name") or "",
                                    md.get("resourceVersion") or ""))

    def observe(self, events: Iterable[Any], now: float) -> None:
        """Store events (``control.storage.store.Event``): queue the Events written."""
        for e in events:
            if e.kind == "Event" and e.type != "DELETED":
                self._push(e.obj, now)

    def rebuild(self, store: Any, now: float) -> None:
        self.queue = []
        for ev in store.iter_kind("Event"):
            self._push(ev, now)

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def due(self, now: float, store: Any, limit: int) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        q = self.queue
        while q and q[0][0] <= now and len(out) < limit:
            _at, ns, name, rv = heapq.heappop(q)
            cur = store.get("Event", ns, name)
            if cur is None or (cur.get("metadata") or {}).get("resourceVersion") != rv:
                continue   # deleted, or written since (and queued again then)
            out.append((ns, name, rv))
        return out
