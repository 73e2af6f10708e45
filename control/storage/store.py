"""The in-memory object store with one global revision and a bounded event history.

Contract
--------
* Keys are ``(kind, namespace, name)``; cluster-scoped kinds use namespace "".
* ``rev`` increases by one per write (put or delete) and never goes backwards,
  also across restarts (it is recovered from the write-ahead log).
  ``metadata.resourceVersion`` of a stored object is the revision of its last
  write, as a string.
* Stored objects are never mutated in place: a write stores a new dict. Callers
  may hand stored objects out (to be packed) but must copy before changing.
* An object is packed (msgpack) once per write: the same bytes go into the
  WAL record, the reply (``last_packed``) and every watch event. An object
  larger than ``MAX_OBJECT_BYTES`` is refused (TooLarge) before anything changes.
* Every write is appended to the WAL buffer and to ``pending``; the server
  commits the WAL (fsync) before it acknowledges the writes or hands
  ``pending`` to watchers.
* ``history`` keeps the newest ``history_size`` events. ``compacted`` is the
  highest revision no longer guaranteed to be in history: a watch may resume
  from any revision >= ``compacted``; older ones get Expired.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import msgpack
from sortedcontainers import SortedList

from control.storage.wal import WriteAheadLog
from emulator.api.errors import TOO_LARGE, APIError

MAX_OBJECT_BYTES = 1_500_000   # etcd's default request limit, as Kubernetes has it

_pack = msgpack.Packer(use_bin_type=True).pack
_PUT_HEAD = b"\x84" + _pack("rev")
_PUT_MID = _pack("op") + _pack("put") + _pack("key")
_OBJ_KEY = _pack("obj")

Key = tuple[str, str, str]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(slots=True)
class Event:
    rev: int
    type: str
    kind: str
    obj: dict            # the new state (for DELETED: the last state, with the delete's RV)
    prev: dict | None    # the state before this event (None for ADDED)
    packed: bytes | None = None   # msgpack of obj, filled lazily by the watch hub


@dataclass
class KindIndex:
    """Per-kind objects plus sorted keys for paging, and a spec.nodeName index for pods.

    ``sorted_keys`` is a ``SortedList``: an insert or a removal is O(log n). A plain
    list kept sorted with ``bisect.insort`` moved half the keys at every create, and
    with 100,000 pods and their Events that was a tenth of the apiserver's time."""
    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    sorted_keys: SortedList = field(default_factory=SortedList)


class Store:
    def __init__(self, wal: WriteAheadLog | None, *, history_size: int = 50_000) -> None:
        self.wal = wal
        self.rev = 0
        self.kinds: dict[str, KindIndex] = {}
        self.by_node: dict[str, set[tuple[str, str]]] = {}   # pods by spec.nodeName
        self.history: deque[Event] = deque()
        self.history_size = history_size
        self.compacted = 0
        self.pending: list[Event] = []
        self.count = 0
        self.last_obj: dict | None = None      # the last object put, and its msgpack bytes
        self.last_packed: bytes = b""

    # -- recovery -----------------------------------------------------------
    def recover(self) -> dict[str, Any]:
        """Load state from the WAL; returns facts about the recovery."""
        if self.wal is None:
            return {"rev": 0, "objects": 0}
        r = self.wal.recover()
        for (kind, namespace, name), obj in r.objects.items():   # bulk load: sort keys once
            idx = self.kinds.get(kind)
            if idx is None:
                idx = self.kinds[kind] = KindIndex()
            idx.objects[(namespace, name)] = obj
            if kind == "Pod":
                node = (obj.get("spec") or {}).get("nodeName")
                if node:
                    self.by_node.setdefault(node, set()).add((namespace, name))
        for idx in self.kinds.values():
            idx.sorted_keys = SortedList(idx.objects)
            self.count += len(idx.objects)
        self.rev = r.rev
        self.compacted = r.rev
        return {"rev": r.rev, "objects": len(r.objects), "records_replayed": r.records_replayed,
                "torn_bytes_dropped": r.torn_bytes_dropped, "snapshot_rev": r.snapshot_rev}

    # -- reads --------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        idx = self.kinds.get(kind)
        return None if idx is None else idx.objects.get((namespace, name))

    def iter_kind(self, kind: str, namespace: str | None = None,
                  after: tuple[str, str] | None = None) -> Iterator[dict]:
        """Objects of a kind in key order, optionally in one namespace, after a key."""
        idx = self.kinds.get(kind)
        if idx is None:
            return
        keys = idx.sorted_keys
        if namespace is not None:
            if after is not None and after > (namespace, ""):
                it = keys.irange(after, None, inclusive=(False, True))
            else:
                it = keys.irange((namespace, ""), None)
            for k in it:
                if k[0] != namespace:
                    break
                yield idx.objects[k]
        else:
            it = keys.irange(after, None, inclusive=(False, True)) if after is not None else iter(keys)
            for k in it:
                yield idx.objects[k]

    def pods_on_node(self, node_name: str) -> list[dict]:
        idx = self.kinds.get("Pod")
        keys = self.by_node.get(node_name)
        if idx is None or not keys:
            return []
        return [idx.objects[k] for k in sorted(keys)]

    def namespace_is_empty(self, namespace: str) -> bool:
        for kind, idx in self.kinds.items():
            if kind == "Namespace":
                continue
            first = next(idx.sorted_keys.irange((namespace, ""), None), None)
            if first is not None and first[0] == namespace:
                return False
        return True

    # -- writes -------------------------------------------------------------
    def put(self, kind: str, namespace: str, name: str, obj: dict) -> Event:
        """Store a new version of an object (which the caller built fresh)."""
        rev = self.rev + 1
        md = obj["metadata"]
        old_rv = md.get("resourceVersion")
        md["resourceVersion"] = str(rev)
        packed = _pack(obj)
        if len(packed) > MAX_OBJECT_BYTES:
            if old_rv is None:
                del md["resourceVersion"]
            else:
                md["resourceVersion"] = old_rv
            raise APIError(TOO_LARGE, f'{kind} "{name}" is too large: {len(packed)} bytes, '
                                      f"the limit is {MAX_OBJECT_BYTES} bytes")
        self.rev = rev
        key3 = (kind, namespace, name)
        prev = self._index_put(key3, obj, (namespace, name))
        ev = Event(rev, MODIFIED if prev is not None else ADDED, kind, obj, prev, packed)
        if self.wal is not None:
            self.wal.append_packed(rev, b"".join((_PUT_HEAD, _pack(rev), _PUT_MID,
                                                  _pack(key3), _OBJ_KEY, packed)))
        self._remember(ev)
        self.last_obj, self.last_packed = obj, packed
        return ev

    def delete(self, kind: str, namespace: str, name: str) -> Event:
        self.rev += 1
        rev = self.rev
        idx = self.kinds[kind]
        key = (namespace, name)
        prev = idx.objects.pop(key)
        idx.sorted_keys.remove(key)
        self.count -= 1
        if kind == "Pod":
            self._unindex_node(prev, key)
        last = dict(prev)
        last["metadata"] = dict(prev["metadata"], resourceVersion=str(rev))
        ev = Event(rev, DELETED, kind, last, prev)
        if self.wal is not None:
            self.wal.append({"rev": rev, "op": "del", "key": (kind, namespace, name)})
        self._remember(ev)
        return ev

    def take_pending(self) -> list[Event]:
        p, self.pending = self.pending, []
        return p

    def snapshot_items(self) -> Iterator[tuple[Key, dict]]:
        for kind, idx in self.kinds.items():
            for (ns, name), obj in idx.objects.items():
                yield (kind, ns, name), obj

    # -- internals ----------------------------------------------------------
    def _remember(self, ev: Event) -> None:
        self.pending.append(ev)
        h = self.history
        h.append(ev)
        if len(h) > self.history_size:
            self.compacted = h.popleft().rev

    def _index_put(self, key3: tuple, obj: dict, key: tuple[str, str] | None) -> dict | None:
        kind, namespace, name = key3
        key = key or (namespace, name)
        idx = self.kinds.get(kind)
        if idx is None:
            idx = self.kinds[kind] = KindIndex()
        objects = idx.objects
        prev = objects.get(key)
        objects[key] = obj
        if prev is None:
            idx.sorted_keys.add(key)
            self.count += 1
        if kind == "Pod":
            old_node = (prev.get("spec") or {}).get("nodeName") if prev else None
            new_node = (obj.get("spec") or {}).get("nodeName")
            if old_node != new_node:
                if prev is not None:
                    self._unindex_node(prev, key)
                if new_node:
                    self.by_node.setdefault(new_node, set()).add(key)
            elif new_node and prev is None:
                self.by_node.setdefault(new_node, set()).add(key)
        return prev

    def _unindex_node(self, obj: dict, key: tuple[str, str]) -> None:
        node = (obj.get("spec") or {}).get("nodeName")
        if node:
            s = self.by_node.get(node)
            if s is not None:
                s.discard(key)
                if not s:
                    del self.by_node[node]
