"""The event-ttl controller: Events disappear ``event_ttl`` after their last update.

Why a controller: kube-apiserver stores each Event in etcd under a lease of
``--event-ttl`` (1 h by default), attached again at every write, so etcd
itself removes an Event an hour after its last create or update; no
controller exists in Kubernetes for this. kemu's store has no leases, so this
controller in the controller-manager plays etcd's part. The visible contract
is the same: an Event is gone ``event_ttl`` after its last update, and a
watcher sees it DELETED. It may linger up to one sync after that (the lease
expiry in etcd is not exact either).

Decisions live in ``eventttl_logic``.

Contract
--------
* Informer: Events in every namespace (shared). Each added or updated Event
  is queued by its expiry time (``eventttl_logic.expires_at`` on the wall
  clock: ``lastTimestamp``, else ``eventTime`` or ``creationTimestamp``, plus
  ``profile.event_ttl``: 3600 s, 180 s in ``fast``).
* ``sync()`` deletes each queued Event whose expiry has come, re-checked on
  the cached copy (an Event bumped since it was queued is queued again at its
  new expiry), with a ``resourceVersion`` precondition so that an Event
  updated meanwhile survives. NotFound and Conflict are not errors.
* ``next_due()`` is the earliest expiry, so the manager wakes for it.
* Logs: ``events_expired`` (count) per sync that deleted any.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from control.controllers import eventttl_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

IDLE = 3600.0   # next_due when nothing is queued


class EventTTLController:
    name = "event-ttl"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.clock = ctx.clock
        self.wall = ctx.wall_clock
        self.ttl = float(ctx.profile.event_ttl)
        self.log = get_logger()
        self.events = ctx.informers.informer("Event")
        self.queue: list[tuple[float, str, str]] = []   # (expiry on the wall clock, namespace, name)
        self.events.add_event_handler(self._queue, lambda _old, new: self._queue(new))

    def _queue(self, ev: dict) -> None:
        at = logic.expires_at(ev, self.ttl)
        if at is not None:
            md = ev["metadata"]
            heapq.heappush(self.queue, (at, md.get("namespace") or "", md["name"]))

    def start(self) -> None:
        pass

    def next_due(self) -> float:
        if not self.queue:
            return self.clock() + IDLE
        return self.clock() + max(0.0, self.queue[0][0] - self.wall())

    def sync(self) -> None:
        now = self.wall()
        deleted = 0
        while self.queue and self.queue[0][0] <= now:
            at, ns, name = heapq.heappop(self.queue)
            ev = self.events.get(name, ns)
            if ev is None:
                continue
            current = logic.expires_at(ev, self.ttl)
            if current is None or current > now:
                continue   # bumped since: its update queued it again at the new expiry
            rv = ev["metadata"].get("resourceVersion")
            try:
                self.client.delete("Event", name, ns, preconditions={"resourceVersion": rv} if rv else None)
                deleted += 1
            except APIError as e:
                if e.code in (errors.NOT_FOUND, errors.CONFLICT):
                    continue
                heapq.heappush(self.queue, (at, ns, name))   # a lost apiserver: retry later
                raise
        if deleted:
            self.log.info("events_expired", count=deleted, ttl=self.ttl)
