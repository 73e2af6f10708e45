"""Watch fan-out: which watcher gets which event.

Contract (Kubernetes' watch semantics)
--------------------------------------
* A watcher sees, in revision order, every event of its kind after its start
  revision that concerns an object matching its namespace, label selector
  and field selector.
* Selector transitions are events: an object that starts matching reaches the
  watcher as ADDED; one that stops matching reaches it as DELETED, carrying
  the previous state with the new resourceVersion (as the kube-apiserver's
  cacher does).
* BOOKMARK events carry only ``metadata.resourceVersion``: every matching
  event up to that revision has been sent.
* Fan-out is indexed: watchers with an equality field selector on an indexed
  field (``spec.nodeName``, ``metadata.name``) or a namespace are found by
  lookup, so an event costs O(matching watchers), not O(all watchers). An
  event is looked up only under the fields some watcher of its kind is
  indexed by, and under its previous state's value only when that differs.
* A watcher whose peer cannot take a frame (gone, or its queue is full) is
  removed; the client notices the missing bookmarks and resumes from its last
  revision (or relists on Expired).
* Counters: ``events_sent`` and ``watchers_dropped``; ``events_by_kind()``
  sums, per kind, the events sent to live and removed watchers (computed
  when asked, from each watcher's ``sent``: nothing extra per event).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import msgpack

from control.storage.store import ADDED, DELETED, MODIFIED, Event
from emulator.protocol import pack_event, pack_event_body

INDEXED_FIELDS = ("spec.nodeName", "metadata.name")


def _by_path(path: str) -> Callable[[dict], str]:
    parts = tuple(path.split("."))

    def get(obj: dict) -> str:
        cur: Any = obj
        for part in parts:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(part)
        return "" if cur is None else cur if cur.__class__ is str else str(cur)
    return get


# The index keys an event is looked up under: the indexed fields, then the namespace.
INDEX_GETTERS: dict[str, Callable[[dict], str]] = {
    f: _by_path(f) for f in (*INDEXED_FIELDS, "metadata.namespace")}


@dataclass(eq=False)
class Watcher:
    wid: int
    peer: bytes
    kind: str
    namespace: str | None
    labels: Any          # LabelSelector | None
    fields: Any          # FieldSelector | None
    bookmarks: bool
    index: tuple[str, str] | None = None   # (field, value) this watcher is indexed under
    sent: int = 0

    def matches(self, obj: dict) -> bool:
        md = obj["metadata"]
        if self.namespace is not None and md.get("namespace", "") != self.namespace:
            return False
        if self.labels is not None and not self.labels.matches(md.get("labels") or {}):
            return False
        if self.fields is not None and not self.fields.matches(obj):
            return False
        return True


class WatchHub:
    def __init__(self, send: Callable[[bytes, bytes], bool]) -> None:
        self.send = send
        self.watchers: dict[int, Watcher] = {}
        self.by_peer: dict[bytes, set[int]] = {}
        self.unindexed: dict[str, set[Watcher]] = {}
        self.indexed: dict[str, dict[tuple[str, str], set[Watcher]]] = {}
        self.index_fields: dict[str, dict[str, int]] = {}   # kind -> indexed field -> watchers on it
        self.events_sent = 0
        self.watchers_dropped = 0
        self.removed_sent: dict[str, int] = {}   # kind -> events sent to watchers since removed

    def __len__(self) -> int:
        return len(self.watchers)

    def add(self, w: Watcher) -> None:
        self.watchers[w.wid] = w
        self.by_peer.setdefault(w.peer, set()).add(w.wid)
        idx = None
        if w.fields is not None:
            for f in INDEXED_FIELDS:
                v = w.fields.equality_value(f)
                if v is not None:
                    idx = (f, v)
                    break
        if idx is None and w.namespace is not None:
            idx = ("metadata.namespace", w.namespace)
        w.index = idx
        if idx is None:
            self.unindexed.setdefault(w.kind, set()).add(w)
        else:
            self.indexed.setdefault(w.kind, {}).setdefault(idx, set()).add(w)
            used = self.index_fields.setdefault(w.kind, {})
            used[idx[0]] = used.get(idx[0], 0) + 1

    def remove(self, wid: int) -> Watcher | None:
        w = self.watchers.pop(wid, None)
        if w is None:
            return None
        self.removed_sent[w.kind] = self.removed_sent.get(w.kind, 0) + w.sent
        peers = self.by_peer.get(w.peer)
        if peers is not None:
            peers.discard(wid)
            if not peers:
                del self.by_peer[w.peer]
        if w.index is None:
            self.unindexed.get(w.kind, set()).discard(w)
        else:
            bucket = self.indexed.get(w.kind, {}).get(w.index)
            if bucket is not None and w in bucket:
                bucket.discard(w)
                if not bucket:
                    del self.indexed[w.kind][w.index]
                used = self.index_fields[w.kind]
                used[w.index[0]] -= 1
                if not used[w.index[0]]:
                    del used[w.index[0]]
        return w

    def remove_peer(self, peer: bytes) -> int:
        wids = list(self.by_peer.get(peer, ()))
        for wid in wids:
            self.remove(wid)
        return len(wids)

    def events_by_kind(self) -> dict[str, int]:
        out = dict(self.removed_sent)
        for w in list(self.watchers.values()):
            out[w.kind] = out.get(w.kind, 0) + w.sent
        return out

    def candidates(self, ev: Event) -> set[Watcher]:
        kind = ev.kind
        out = set(self.unindexed.get(kind, ()))
        buckets = self.indexed.get(kind)
        if buckets:
            obj, prev = ev.obj, ev.prev
            for f in self.index_fields[kind]:   # only the fields some watcher of this kind is indexed by
                get = INDEX_GETTERS[f]
                v = get(obj)
                b = buckets.get((f, v))
                if b:
                    out |= b
                if prev is not None:
                    pv = get(prev)
                    if pv != v:
                        b = buckets.get((f, pv))
                        if b:
                            out |= b
        return out

    def dispatch(self, events: list[Event]) -> None:
        """Send committed events to the watchers they concern."""
        for ev in events:
            if not self.watchers:
                return
            cands = self.candidates(ev)
            if not cands:
                continue
            body_cache: dict[str, bytes] = {}
            for w in cands:
                typ, obj = self._transition(w, ev)
                if typ is None:
                    continue
                body = body_cache.get(typ)
                if body is None:
                    if obj is ev.obj:
                        if ev.packed is None:
                            ev.packed = msgpack.packb(ev.obj, use_bin_type=True)
                        body = pack_event_body(typ, ev.packed)
                    else:
                        body = pack_event_body(typ, msgpack.packb(obj, use_bin_type=True))
                    body_cache[typ] = body
                self.deliver(w, body)

    def backfill(self, w: Watcher, store: Any, since: int | None, api_version: str) -> None:
        """What a watch just added sees first: with no ``since``, every matching object as
        ADDED, then (when it asked for bookmarks) the BOOKMARK that ends the initial
        listing, as watch-list marks it; from revision ``since``, every event of its kind
        after it, replayed from the store's history."""
        if since is None:
            for obj in store.iter_kind(w.kind, w.namespace):
                if w.matches(obj) and not self.deliver(
                        w, pack_event_body("ADDED", msgpack.packb(obj, use_bin_type=True))):
                    return
            if w.bookmarks:
                self.deliver(w, pack_event_body("BOOKMARK", msgpack.packb(
                    {"kind": w.kind, "apiVersion": api_version,
                     "metadata": {"resourceVersion": str(store.rev), "annotations": {
                         "k8s.io/initial-events-end": "true"}}}, use_bin_type=True)))
            return
        replay = []
        for ev in reversed(store.history):
            if ev.rev <= since:
                break
            if ev.kind == w.kind:   # history holds every kind's events
                replay.append(ev)
        for ev in reversed(replay):
            typ, obj = self._transition(w, ev)
            if typ is not None and not self.deliver(
                    w, pack_event_body(typ, msgpack.packb(obj, use_bin_type=True))):
                return

    def deliver(self, w: Watcher, body: bytes) -> bool:
        """Send one event (its ``pack_event_body``) to ``w``, numbered by ``w.sent``."""
        if self.send(w.peer, pack_event(w.wid, w.sent + 1, body)):
            w.sent += 1
            self.events_sent += 1
            return True
        self.watchers_dropped += 1
        self.remove(w.wid)
        return False

    @staticmethod
    def _transition(w: Watcher, ev: Event) -> tuple[str | None, dict | None]:
        if ev.type == ADDED:
            return (ADDED, ev.obj) if w.matches(ev.obj) else (None, None)
        if ev.type == DELETED:
            return (DELETED, ev.obj) if w.matches(ev.obj) else (None, None)
        now = w.matches(ev.obj)
        before = ev.prev is not None and w.matches(ev.prev)
        if now and before:
            return MODIFIED, ev.obj
        if now:
            return ADDED, ev.obj
        if before:
            prev = dict(ev.prev)
            prev["metadata"] = dict(ev.prev["metadata"], resourceVersion=str(ev.rev))
            return DELETED, prev
        return None, None

    def bookmark(self, rev: int, api_versions: dict[str, str]) -> None:
        # One body per kind, shared by that kind's watchers: only the header is per watcher.
        bodies: dict[str, bytes] = {}
        for w in list(self.watchers.values()):
            if w.bookmarks:
                body = bodies.get(w.kind)
                if body is None:
                    obj = {"kind": w.kind, "apiVersion": api_versions.get(w.kind, "v1"),
                           "metadata": {"resourceVersion": str(rev)}}
                    body = bodies[w.kind] = pack_event_body("BOOKMARK", msgpack.packb(obj, use_bin_type=True))
                self.deliver(w, body)
