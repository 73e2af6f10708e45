"""The apiserver process: one event loop over a transport, the store, the WAL and watches.

Contract
--------
* Each loop turn takes every frame that is ready (a batch), handles them in
  arrival order and hands the batch to its ``CommitPipeline``
  (``control.apiserver.commit``), which makes its WAL records durable, in the
  loop or in a committer thread while the loop goes on. Once a batch is
  durable its replies are sent, then its watch events, in batch order. No
  reply and no watch event ever reveals a write that is not durable.
  Bookmarks carry the last revision whose events were sent.
* Replies echo the request id. A frame that cannot be decoded gets an error
  reply with ``id: None``; nothing a client sends can stop the loop.
* Hello first: a request from a peer that has not said hello gets BadRequest
  with the cause field ``hello``; clients re-hello and retry (this is how a
  client notices a restarted apiserver).
* Retried writes are deduplicated: a mutating request whose (session, id) was
  already answered gets the same reply again, without a second write. A
  repeated watch request (a retransmission on a lossy link) gets the first
  one's reply while that watch lives, and no second watch; a repeated hello
  of the same session on the same connection keeps its watches.
* New watches are registered after the batch's events are sent, so a watch
  starting at revision R sees exactly the events after R.
* A snapshot is written by a forked child while the loop goes on
  (``control.storage.background``) once the log since the last one holds at
  least ``snapshot_every`` records and at least as many as the store held
  objects when the last one started (after a restart: when it recovered), as
  Redis rewrites its append-only file once it has doubled
  (``auto-aof-rewrite-percentage 100``). A snapshot packs at most its base
  plus the records since, so its cost per write stays bounded however large
  the store grows, where a fixed interval made it grow with the store.
  ``close()`` stops a child that is running (the WAL is whole: the next start
  replays it).
* Metrics (``control.apiserver.metrics``): each request's latency, from its
  batch's arrival to its reply's release, and the watch counters.
"""
from __future__ import annotations

import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from control.apiserver.commit import CommitPipeline
from control.apiserver.eventttl import EventExpiry
from control.apiserver.metrics import RequestMetrics, watch_metrics
from control.apiserver.nodeauthorizer import authorize_get
from control.apiserver.resources import Resources
from control.apiserver.watch import Watcher, WatchHub
from control.storage.background import BackgroundSnapshot, Done
from control.storage.store import Store
from control.storage.wal import WriteAheadLog
from emulator import protocol, transport
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.registry import REGISTRY
from emulator.api.selectors import parse_field_selector, parse_label_selector
from emulator.logging import get_logger

MUTATING = frozenset(("create", "update", "patch", "delete"))
DEDUPE_ENTRIES = 20_000


@dataclass
class Peer:
    component: str
    node: str | None
    session: str
    said_hello_at: float


@dataclass
class PendingWatch:
    peer: bytes
    rid: int
    watcher: Watcher
    resource_version: int | None


class APIServer:
    def __init__(self, listen: str, data_dir: str | None, *, fsync: bool = True,
                 max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES,
                 bookmark_interval: float = 5.0, snapshot_every: int = 200_000,
                 history_size: int = 50_000, lab: str | None = None,
                 commit_mode: str = "auto", max_batch: int = 128, clock: Callable[[], float] = time.time,
                 default_toleration_seconds: int = 300,
                 service_cluster_ip_range: str | None = None,
                 service_node_port_range: tuple[int, int] | None = None,
                 event_ttl: float = 3600.0) -> None:
        self.listen_address = listen
        self.lab = lab
        self.max_batch = max_batch
        self.max_frame_bytes = max_frame_bytes
        self.bookmark_interval = bookmark_interval
        self.snapshot_every = snapshot_every
        self.snapshot_base = 0   # objects in the store when the last snapshot started
        self.clock = clock
        self.log = get_logger()
        self.wal = WriteAheadLog(data_dir, fsync=fsync) if data_dir else None
        self.snapshots = BackgroundSnapshot(self.wal, fsync) if self.wal is not None else None
        self.commits = CommitPipeline(self.wal, commit_mode, fsync, self._release, self.log)
        self.released_rev = 0     # every event up to here has been sent to watchers
        self.store = Store(self.wal, history_size=history_size)
        self.resources = Resources(self.store, clock, default_toleration_seconds,
                                   service_cluster_ip_range, service_node_port_range)
        self.transport: Any = None
        self.hub = WatchHub(self._send)
        self.event_expiry = EventExpiry(event_ttl)
        self.request_metrics = RequestMetrics()
        watch_metrics(self.hub)
        self._req: tuple[dict | None, str | None] = (None, None)   # the frame being handled: (msg, error code)
        self.peers: dict[bytes, Peer] = {}
        self.dedupe: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.watch_dedupe: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self.pending_watches: list[PendingWatch] = []
        self.next_watch_id = 1
        self.stopping = False
        self.next_bookmark = 0.0
        self.requests = 0
        self.frames_rejected = 0
        self.recovery: dict[str, Any] = {}
        self._handlers: dict[str, Callable[[bytes, dict], Any]] = {
            "ping": self._op_ping, "discovery": self._op_discovery, "get": self._op_get,
            "list": self._op_list, "create": self._op_create, "update": self._op_update,
            "patch": self._op_patch, "delete": self._op_delete, "watch": self._op_watch,
            "unwatch": self._op_unwatch,
        }

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> str:
        """Recover the store, then bind. Returns the bound address."""
        t0 = time.monotonic()
        self.recovery = self.store.recover()
        self.snapshot_base = self.store.count
        self.event_expiry.rebuild(self.store, self.clock())
        self.resources.rebuild_hooks()
        self.resources.ensure_system_namespaces()
        self.commits.commit()
        self.store.take_pending()
        self.released_rev = self.store.rev
        self.commits.start(self.store.rev, self.recovery)
        self.transport = transport.listen(self.listen_address)
        self.recovery["seconds"] = round(time.monotonic() - t0, 3)
        self.log.info("apiserver started", address=self.transport.address, **self.recovery)
        self.next_bookmark = time.monotonic() + self.bookmark_interval
        return self.transport.address

    @property
    def address(self) -> str:
        return self.transport.address

    def install_signal_handlers(self) -> None:
        def stop(_sig: int, _frame: Any) -> None:   # only sets a flag; clean-up runs in the loop
            self.stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def serve_forever(self) -> None:
        while not self.stopping:
            self.step(0.2)
        self.close()

    def close(self) -> None:
        self.commits.stop()
        if self.snapshots is not None:
            done = self.snapshots.abandon()
            if done is not None and not done.ok:
                self.log.info("snapshot abandoned", rev=done.rev, seconds=done.seconds)
            else:
                self._snapshot_done(done)
        if self.wal is not None:
            self.wal.commit()
            self.wal.close()
            self.wal = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.log.info("apiserver stopped", rev=self.store.rev)

    # -- the loop -----------------------------------------------------------
    def step(self, timeout: float) -> int:
        """One loop turn: handle a batch, hand it to the commit pipeline, and send what is durable.

        With a committer, the loop goes on with the next batch while the last one
        syncs; with nothing to handle it waits for that sync, not for the socket.
        """
        if self.commits.busy:   # a sync is running: take what came, else wait for the sync, not the socket
            batch = self.transport.recv_batch(0, self.max_batch)
            if not batch:
                self.commits.wait(timeout)
        else:
            batch = self.transport.recv_batch(timeout, self.max_batch)
        expired = self._expire_events()
        if batch or expired:
            t0 = time.perf_counter()
            replies: list[tuple[bytes, bytes | None]] = []
            reqs: list[tuple[dict | None, str | None]] = []
            for peer, frame in batch:
                reply = self._handle_frame(peer, frame)
                if reply is not None:
                    msg = self._req[0]
                    if msg is not None and msg.get("noreply") is True and self._req[1] is None:
                        reply = None   # fire and forget (Events): nobody reads the reply
                    replies.append((peer, reply))
                    reqs.append(self._req)
            events = self.store.take_pending()
            self.event_expiry.observe(events, self.clock())
            self.commits.submit(replies, events, self.store.rev, t0, reqs)
        self.commits.release_durable()
        if self.pending_watches:
            self.commits.drain()   # a new watch starts from a fully durable, fully sent state
            self._start_watches()
        now = time.monotonic()
        if now >= self.next_bookmark:
            self.next_bookmark = now + self.bookmark_interval
            if self.hub.watchers:
                self.hub.bookmark(self.released_rev, self._api_versions())
        if self.snapshots is not None:
            if self.snapshots.running:
                self._snapshot_done(self.snapshots.poll())
            elif self.wal.records_since_snapshot >= max(self.snapshot_every, self.snapshot_base):
                self.commits.drain()   # the new segment must not race a sync
                self._snapshot()
        return len(batch)

    def _expire_events(self) -> int:
        """Delete the Events whose TTL has passed (``eventttl``), at most a batch a turn."""
        due = self.event_expiry.next_due()
        if due is None or due > self.clock():
            return 0
        n = 0
        for ns, name, rv in self.event_expiry.due(self.clock(), self.store, self.max_batch):
            try:
                self.resources.delete("Event", name, ns, preconditions={"resourceVersion": rv})
                n += 1
            except APIError:
                continue   # gone or written meanwhile
        if n:
            self.log.info("events_expired", count=n, ttl=self.event_expiry.ttl)
        return n

    def _release(self, replies: list[tuple[bytes, bytes | None]], events: list, upto: int,
                 t0: float, reqs: list) -> None:
        """Send a durable batch's replies, then its events; everything up to ``upto`` is out."""
        send = self.transport.send
        for peer, reply in replies:
            if reply is not None:
                send(peer, reply)
        self.request_metrics.observe(reqs, t0)
        if events:
            self.hub.dispatch(events)
        self.released_rev = max(self.released_rev, upto)

    def _snapshot(self) -> None:
        """Start a snapshot of the store as of now, written by a forked child while the
        loop goes on (``control.storage.background``)."""
        assert self.snapshots is not None
        if self.snapshots.start(self.store.snapshot_items):
            self.snapshot_base = self.store.count
            self.log.info("snapshot started", rev=self.snapshots.rev, objects=self.store.count,
                          child=self.snapshots.pid, fork_ms=self.snapshots.fork_ms)

    def _snapshot_done(self, done: Done | None) -> None:
        if done is None:
            return
        if done.ok:
            self.log.info("snapshot written", rev=done.rev, seconds=done.seconds, cpu_s=round(done.cpu_s, 4))
        else:
            self.log.error("snapshot_failed", rev=done.rev, seconds=done.seconds, cpu_s=round(done.cpu_s, 4),
                           exit_code=done.exit_code,
                           error="the snapshot's child failed; the log is kept whole and the "
                                 "next snapshot is tried after the next round of records")

    def _send(self, peer: bytes, frame: bytes) -> bool:
        return self.transport.send(peer, frame)

    # -- requests -----------------------------------------------------------
    def _handle_frame(self, peer: bytes, frame: bytes) -> bytes | None:
        self.requests += 1
        rid: Any = None
        self._req = (None, None)
        try:
            msg = protocol.decode(frame, self.max_frame_bytes)
            self._req = (msg, None)
            rid = msg.get("id")
            op = msg.get("op")
            if rid.__class__ is not int or op.__class__ is not str:   # fast path above; field() words the error
                rid = protocol.field(msg, "id", int, required=True)
                op = protocol.field(msg, "op", str, required=True)
            if "noreply" in msg:
                protocol.field(msg, "noreply", bool)   # a wrong type is refused, naming the field
            if op == "hello":
                return protocol.ok_reply(rid, self._op_hello(peer, msg))
            handler = self._handlers.get(op)
            if handler is None:
                raise APIError(errors.BAD_REQUEST, f'unknown op "{op}"; supported ops: '
                                                   f'{", ".join(protocol.OPS)}')
            p = self.peers.get(peer)
            if p is None:
                raise APIError(errors.BAD_REQUEST, "no hello on this connection: send hello "
                               f"(protocol {protocol.PROTOCOL_VERSION}) first",
                               [errors.cause("hello", "HelloRequired", "send hello first")])
            if op == "watch":
                started = self.watch_dedupe.get((p.session, rid))
                if started is not None:
                    w = self.hub.watchers.get(started[0])
                    if w is not None and w.peer == peer:
                        return started[1]
                if any(pw.rid == rid and pw.peer == peer for pw in self.pending_watches):
                    return None   # the first copy is starting in this batch
            if op in MUTATING:
                dedupe = self.dedupe
                key = (p.session, rid)
                cached = dedupe.get(key)
                if cached is not None:
                    return cached
                reply = dedupe[key] = self._run(handler, peer, msg, rid)
                if len(dedupe) > DEDUPE_ENTRIES:
                    dedupe.popitem(last=False)
                return reply
            return self._run(handler, peer, msg, rid)
        except APIError as e:
            self._req = (self._req[0], e.code)
            self.frames_rejected += 1
            if e.code in (errors.BAD_REQUEST, errors.TOO_LARGE):
                self.log.warning("request rejected", peer=peer.hex(), code=e.code, reason=e.message)
            return protocol.error_reply(rid if isinstance(rid, int) else None, e)

    def _run(self, handler: Callable[[bytes, dict], Any], peer: bytes, msg: dict, rid: int) -> bytes | None:
        try:
            result = handler(peer, msg)
        except APIError as e:
            self._req = (msg, e.code)
            return protocol.error_reply(rid, e)
        except Exception as e:   # a bug must not kill the server: report it
            self._req = (msg, errors.INTERNAL_ERROR)
            self.log.exception("handler failed", op=msg.get("op"))
            return protocol.error_reply(rid, APIError(errors.BAD_REQUEST,
                                                      f"internal error: {type(e).__name__}: {e}"))
        if result is _DEFERRED:
            return None
        if msg.get("noreply") is True:
            return _UNSENT   # succeeded, and nobody reads the reply: it is not built
        if result is self.store.last_obj:   # just written: reuse its packed bytes
            return protocol.ok_reply_packed(rid, self.store.last_packed)
        return protocol.ok_reply(rid, result)

    def _op_hello(self, peer: bytes, msg: dict) -> dict:
        version = protocol.field(msg, "protocol", int, required=True)
        if version != protocol.PROTOCOL_VERSION:
            raise APIError(errors.BAD_REQUEST, f"protocol version {version} is not supported; "
                                               f"this apiserver speaks {protocol.PROTOCOL_VERSION}")
        component = protocol.field(msg, "component", str, default="unknown")
        lab = protocol.field(msg, "lab", str)
        if lab and self.lab and lab != self.lab:
            # A process left over from another lab, dialling a reused port.
            raise APIError(errors.FORBIDDEN, f'this apiserver serves lab "{self.lab}", not '
                                             f'"{lab}"; the client is connected to the wrong lab')
        node = protocol.field(msg, "node", str)
        session = protocol.field(msg, "session", str, default=peer.hex())
        known = self.peers.get(peer)
        if known is not None and known.session != session:
            self.hub.remove_peer(peer)   # a fresh hello starts a fresh session on this connection
        self.peers[peer] = Peer(component, node, session, self.clock())
        return {"protocol": protocol.PROTOCOL_VERSION, "server": "kemu-apiserver",
                "maxFrameBytes": self.max_frame_bytes, "bookmarkInterval": self.bookmark_interval,
                "resourceVersion": str(self.store.rev)}

    def _op_ping(self, peer: bytes, msg: dict) -> dict:
        return {"resourceVersion": str(self.store.rev)}

    def _op_discovery(self, peer: bytes, msg: dict) -> list[dict]:
        return [{"kind": rt.kind, "apiVersion": rt.api_version, "name": rt.plural,
                 "singularName": rt.singular, "shortNames": list(rt.short_names),
                 "namespaced": rt.namespaced} for rt in REGISTRY.all()]

    def _op_get(self, peer: bytes, msg: dict) -> dict:
        kind = protocol.field(msg, "kind", str, required=True)
        name = protocol.field(msg, "name", str, required=True)
        namespace = protocol.field(msg, "namespace", str)
        who = self.peers.get(peer)
        if who is not None and who.component == "kubelet":
            authorize_get(self.store, who.component, who.node, REGISTRY.resolve(kind).kind, namespace, name)
        return self.resources.get(kind, name, namespace)

    def _op_list(self, peer: bytes, msg: dict) -> dict:
        return self.resources.list(
            protocol.field(msg, "kind", str, required=True), protocol.field(msg, "namespace", str),
            protocol.field(msg, "labelSelector", str), protocol.field(msg, "fieldSelector", str),
            protocol.field(msg, "limit", int), protocol.field(msg, "continue", str))

    def _op_create(self, peer: bytes, msg: dict) -> dict:
        obj = protocol.field(msg, "object", dict, required=True)
        namespace = protocol.field(msg, "namespace", str)
        sub = protocol.field(msg, "subresource", str)
        if sub == "binding":
            return self.resources.bind(protocol.field(msg, "name", str, required=True), obj, namespace)
        if sub == "eviction":
            return self.resources.evict(protocol.field(msg, "name", str, required=True), obj, namespace)
        if sub:
            raise APIError(errors.NOT_FOUND, f'no subresource "{sub}" accepts create; supported: '
                                             '"binding", "eviction"')
        return self.resources.create(obj, namespace)

    def _op_update(self, peer: bytes, msg: dict) -> dict:
        return self.resources.update(protocol.field(msg, "object", dict, required=True),
                                     protocol.field(msg, "subresource", str),
                                     protocol.field(msg, "namespace", str))

    def _op_patch(self, peer: bytes, msg: dict) -> dict:
        return self.resources.patch(
            protocol.field(msg, "kind", str, required=True), protocol.field(msg, "name", str, required=True),
            protocol.field(msg, "patch", (dict, list), required=True), protocol.field(msg, "namespace", str),
            protocol.field(msg, "patchType", str, default="merge"), protocol.field(msg, "subresource", str))

    def _op_delete(self, peer: bytes, msg: dict) -> dict:
        return self.resources.delete(
            protocol.field(msg, "kind", str, required=True), protocol.field(msg, "name", str, required=True),
            protocol.field(msg, "namespace", str), protocol.field(msg, "gracePeriodSeconds", int),
            protocol.field(msg, "propagationPolicy", str), protocol.field(msg, "preconditions", dict))

    # -- watch --------------------------------------------------------------
    def _op_watch(self, peer: bytes, msg: dict) -> Any:
        rt = REGISTRY.by_kind(protocol.field(msg, "kind", str, required=True))
        ls = protocol.field(msg, "labelSelector", str)
        fs = protocol.field(msg, "fieldSelector", str)
        labels = parse_label_selector(ls) if ls else None
        fields = parse_field_selector(fs, rt) if fs else None
        rv_s = protocol.field(msg, "resourceVersion", str)
        rv: int | None = None
        if rv_s not in (None, "", "0"):
            try:
                rv = int(rv_s)
            except ValueError:
                raise APIError(errors.BAD_REQUEST, f'resourceVersion: Invalid value: "{rv_s}": '
                                                   "must be an integer string")
        ns = protocol.field(msg, "namespace", str) if rt.namespaced else None
        w = Watcher(self.next_watch_id, peer, rt.kind, ns or None,
                    labels if labels is not None and not labels.empty else None, fields,
                    bool(protocol.field(msg, "allowWatchBookmarks", bool, default=True)))
        self.next_watch_id += 1
        rid = protocol.field(msg, "id", int)
        self.pending_watches.append(PendingWatch(peer, rid, w, rv))
        return _DEFERRED

    def _start_watches(self) -> None:
        pending, self.pending_watches = self.pending_watches, []
        for pw in pending:
            w = pw.watcher
            rev = self.store.rev
            if pw.resource_version is not None:
                if pw.resource_version < self.store.compacted:
                    self._send(pw.peer, protocol.error_reply(pw.rid, APIError(
                        errors.EXPIRED, f"too old resource version: {pw.resource_version} "
                                        f"({self.store.compacted})")))
                    continue
                if pw.resource_version > rev:
                    self._send(pw.peer, protocol.error_reply(pw.rid, APIError(
                        errors.TIMEOUT, f"Too large resource version: {pw.resource_version}, "
                                        f"current: {rev}")))
                    continue
            reply = protocol.ok_reply(pw.rid, {"watch": w.wid, "resourceVersion": str(rev)})
            peer = self.peers.get(pw.peer)
            if peer is not None:
                self.watch_dedupe[(peer.session, pw.rid)] = (w.wid, reply)
                if len(self.watch_dedupe) > DEDUPE_ENTRIES:
                    self.watch_dedupe.popitem(last=False)
            if not self._send(pw.peer, reply):
                continue
            self.hub.add(w)
            self.hub.backfill(w, self.store, pw.resource_version,
                              REGISTRY.by_kind(w.kind).api_version)

    def _op_unwatch(self, peer: bytes, msg: dict) -> dict:
        wid = protocol.field(msg, "watch", int, required=True)
        w = self.hub.watchers.get(wid)
        if w is not None and w.peer == peer:
            self.hub.remove(wid)
        return {}

    def _api_versions(self) -> dict[str, str]:
        return {rt.kind: rt.api_version for rt in REGISTRY.all()}


_DEFERRED = object()
_UNSENT = b""   # a noreply request's success: stands for the reply, never sent
