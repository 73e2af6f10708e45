"""Informers: a list-then-watch cache of one kind, with event handlers.

Contract (after client-go's ``shared_informer.go``)
---------------------------------------------------
* The cache is eventually consistent with the apiserver: after the server
  stops changing, the cache converges to the server's state.
* A handler sees a subsequence of an object's states, in order. Intermediate
  states may be skipped (across a relist, only the newest state is seen).
  There is no ordering guarantee across different objects.
* ``on_add(obj)``, ``on_update(old, new)`` and ``on_delete(obj)``. After a
  relist, objects that vanished while the watch was down are delivered as
  ``on_delete`` with their last known state (client-go's
  DeletedFinalStateUnknown, simplified), and changed ones as ``on_update``.
* Handlers run on the caller's thread inside ``run_once``; they must not block.
  Objects handed to handlers are shared with the cache: do not mutate them.
* The informer relists when the watch ends with Expired (410 Gone) or any
  other error, and retries with jittered exponential backoff while the
  apiserver is unreachable. ``has_synced`` turns True after the first list.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.client_watch import Watch

Handler = Callable[..., None]


def object_key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return (md.get("namespace") or "", md["name"])


class Informer:
    def __init__(self, client: Client, kind: str, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 page_size: int = 500, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.clock = clock
        self.cache: dict[tuple[str, str], dict] = {}
        self.handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self.watch: Watch | None = None
        self.has_synced = False
        self.resource_version: str | None = None
        self.relists = 0
        self._failures = 0
        self._retry_at = 0.0

    def add_event_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                          on_delete: Handler | None = None) -> None:
        self.handlers.append((on_add, on_update, on_delete))
        for obj in list(self.cache.values()):   # a late handler sees the current state as adds
            if on_add:
                on_add(obj)

    # -- cache reads --------------------------------------------------------
    def get(self, name: str, namespace: str | None = None) -> dict | None:
        return self.cache.get((namespace or "", name))

    def list(self) -> list[dict]:
        return list(self.cache.values())

    # -- running ------------------------------------------------------------
    def start(self) -> None:
        """List, then watch from the list's resourceVersion. Raises APIError if unreachable."""
        self._relist()

    def run_once(self, timeout: float = 0.0) -> int:
        """Handle watch events that arrive within ``timeout``; returns how many were handled.

        Never raises for a lost apiserver: it backs off and relists later.
        """
        if self.watch is None or self.watch.closed:
            if self.clock() < self._retry_at:
                return 0
            try:
                self._relist()
            except APIError as e:
                if e.code not in (errors.UNAVAILABLE, errors.TIMEOUT, errors.EXPIRED):
                    raise
                self._failures += 1
                delay = min(30.0, 0.1 * 2 ** min(self._failures, 8))
                self._retry_at = self.clock() + random.uniform(delay / 2, delay)
                return 0
        assert self.watch is not None
        n = 0
        try:
            ev = self.watch.next(timeout)
            while ev is not None:
                self._apply(ev)
                n += 1
                ev = self.watch.next(0)
        except APIError:
            self.watch.closed = True
        return n

    def process(self) -> int:
        """Handle events already received by the client (after ``client.poll``)."""
        if self.watch is None or self.watch.closed:
            return self.run_once(0)
        n = 0
        while self.watch.events:
            self._apply(self.watch.events.popleft())
            n += 1
        return n

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()
            self.watch = None

    # -- internals ----------------------------------------------------------
    def _relist(self) -> None:
        start_informers([self])

    def _list_args(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "labelSelector": self.label_selector,
                "fieldSelector": self.field_selector, "limit": self.page_size, "continue": None}

    def _install(self, lst: dict, watch: Watch) -> None:
        """Replace the cache with a fresh list, firing handlers for the differences."""
        rv = lst["metadata"]["resourceVersion"]
        fresh = {object_key(o): o for o in lst["items"]}
        old = self.cache
        self.cache = fresh
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._fire(0, obj)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._fire(1, prev, obj)
        for key, prev in old.items():
            if key not in fresh:
                self._fire(2, prev)
        self.resource_version = rv
        self.watch = watch
        if self.has_synced:
            self.relists += 1
        self.has_synced = True
        self._failures = 0

    def _apply(self, ev: dict) -> None:
        typ = ev["type"]
        obj = ev["object"]
        if typ == "ERROR":
            assert self.watch is not None
            self.watch.closed = True   # relist on the next run_once (Expired: 410 Gone)
            return
        if typ == "BOOKMARK":
            return
        key = object_key(obj)
        self.resource_version = obj["metadata"].get("resourceVersion", self.resource_version)
        if typ == "DELETED":
            self.cache.pop(key, None)
            self._fire(2, obj)
            return
        prev = self.cache.get(key)
        self.cache[key] = obj
        if prev is None:
            self._fire(0, obj)
        else:
            self._fire(1, prev, obj)

    def _fire(self, which: int, *args: Any) -> None:
        for h in self.handlers:
            fn = h[which]
            if fn is not None:
                fn(*args)


def start_informers(informers: list[Informer]) -> None:
    """List, then watch, for several informers on one client in two round trips
    rather than two each: the lists are pipelined, then the watches. A list that
    spans pages fetches its remaining pages one by one. Raises APIError if the
    apiserver is unreachable; an informer that has not started retries on its own."""
    client = informers[0].client
    for inf in informers:
        if inf.watch is not None:
            inf.watch.stop()
            inf.watch = None
    firsts: list[Any] = [None]   # one informer: list_all keeps _call's retries
    if len(informers) > 1:
        firsts = client.pipeline([("list", inf._list_args()) for inf in informers])
    lists = []
    for inf, first in zip(informers, firsts):
        if isinstance(first, APIError):
            raise first
        lists.append(client.list_all(inf.kind, inf.namespace, inf.label_selector,
                                     inf.field_selector, inf.page_size, first=first))
    watches = client.watch_many([dict(kind=inf.kind, namespace=inf.namespace,
                                      label_selector=inf.label_selector,
                                      field_selector=inf.field_selector,
                                      resource_version=lst["metadata"]["resourceVersion"])
                                 for inf, lst in zip(informers, lists)])
    for inf, lst, w in zip(informers, lists, watches):
        inf._install(lst, w)
