"""The client side of one watch: its buffered events, resume point and sequence.

Contract
--------
* A ``Watch`` is made and owned by a ``Client`` (``Client.watch``,
  ``Client.watch_many``), which feeds it frames (``_receive``) and ends it on
  an error (``_fail``); it is used from the client's thread only.
* ``next(timeout)`` hands out ``{"type": ..., "object": {...}}`` in order,
  polling the client while none is buffered; iteration ends when the watch is
  closed and drained.
* ``resource_version`` is the resume point: the last event's
  resourceVersion, and a BOOKMARK's, once the initial listing has ended (the
  ``k8s.io/initial-events-end`` bookmark); ``seq`` and ``gap`` let the client
  notice a lost event and resume (see ``emulator.client``).
* ``stop()`` never waits for a reply: the ``unwatch`` is fire and forget, and
  not sent at all when the server does not know the watch or the process is
  stopping.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

from emulator.api import errors
from emulator.api.errors import APIError

if TYPE_CHECKING:
    from emulator.client import Client

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class Watch:
    """A stream of watch events: ``{"type": ..., "object": {...}}``."""

    def __init__(self, client: "Client", args: dict[str, Any], bookmarks: bool) -> None:
        self.client = client
        self.args = args
        self.show_bookmarks = bookmarks
        self.events: deque[dict] = deque()
        self.wid: int | None = None
        self.resource_version: str | None = args.get("resourceVersion") or None
        self.initial = self.resource_version is None   # listing the current objects first
        self.closed = False
        self.last_heard = time.monotonic()
        self.seq = 0          # the last event number delivered, in the current server-side watch
        self.gap = False      # an event was lost: resume on the next poll

    def _receive(self, msg: dict) -> None:
        self.last_heard = time.monotonic()
        obj = msg.get("object") or {}
        md = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
        rv = md.get("resourceVersion")
        if msg.get("type") == "BOOKMARK":
            if self.initial and (md.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
                self.initial = False
            if rv and not self.initial:
                self.resource_version = rv
            if not self.show_bookmarks:
                return
        elif rv and not self.initial:
            self.resource_version = rv
        self.events.append({"type": msg.get("type"), "object": obj})

    def _fail(self, err: APIError) -> None:
        self.closed = True
        if self.client._watches.get(self.wid) is self:
            del self.client._watches[self.wid]
        self.events.append({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": err.code,
            "message": err.message, "code": errors.HTTP_STATUS.get(err.code, 500)}})

    def next(self, timeout: float | None = None) -> dict | None:
        """The next event, or None when ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        polled = False
        while not self.events:
            if self.closed:
                return None
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0 and polled:
                return None
            self.client.poll(max(0.0, min(remaining, 0.5)))   # next(0) still reads what has arrived
            polled = True
        return self.events.popleft()

    def __iter__(self) -> Iterator[dict]:
        while not (self.closed and not self.events):
            ev = self.next(None)
            if ev is not None:
                yield ev

    def stop(self) -> None:
        if self in self.client._all_watches:
            self.client._all_watches.remove(self)
        if self.closed:
            return
        self.closed = True
        if self.wid is not None:
            if self.client._watches.get(self.wid) is self:
                del self.client._watches[self.wid]
            c = self.client
            # Not when the server does not know this watch (no hello yet), nor when this
            # process is stopping: the server drops the watches of a peer that is gone.
            if c._said_hello and c._conn is not None and not (c.cancelled and c.cancelled()):
                try:   # fire and forget: a process stopping with its apiserver must not wait on it
                    c._send_frame(next(c._ids), "unwatch", {"watch": self.wid})
                except (APIError, ConnectionError):
                    pass
