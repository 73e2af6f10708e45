"""The client library every component and user script uses to talk to the apiserver.

Contract
--------
* One ``Client`` owns one connection and is used from one thread (like a
  ZeroMQ socket). Concurrency comes from pipelining (``send``/``wait``) and
  from watches, whose events are buffered per watch while the client waits for
  replies, and handed out by ``Watch.next`` or ``Client.poll``.
* Every request has a deadline (``timeout``). On a timeout the client
  reconnects with jittered exponential backoff and retries the same request id
  up to ``retries`` times; the apiserver deduplicates retried writes by
  (session, id) while it lives. After the last try it raises
  ``APIError(UNAVAILABLE)`` naming the address.
* Errors from the server are raised as ``APIError`` with the server's code,
  message and causes.
* A restarted apiserver is noticed by its "hello required" answer: a client
  with watches pings when it has heard nothing for ``bookmarkInterval / 4``
  (at least 1 s; 15 s with the default profile's one-minute bookmarks), and a
  watch that hears nothing (not even a bookmark) for ``3 x bookmarkInterval``
  is resumed;
  the client then says hello again and resumes every watch from the last
  resourceVersion it delivered (the new server numbers watches afresh, so the
  old numbers are all forgotten first). The liveness check covers every open
  watch, mapped to a server-side number or not. A resume the server can no longer serve ends
  the watch with an ERROR event whose ``object.reason`` is ``Expired``; the
  informer then relists.
* Lost, repeated and reordered frames (chaos on the bus, ``emulator.netem``):
  each watch event carries ``seq``, its number in its watch. A repeat is
  dropped; a gap (a lost or overtaken event) stops delivery and, on the next
  ``poll``, resumes the watch from the last resourceVersion delivered (a watch
  still in its initial listing, before the ``k8s.io/initial-events-end``
  bookmark, starts over). While the connection says it is ``lossy``, requests
  waiting for a reply are retransmitted with the same id every ``RTO``
  (doubling), as TCP would; the apiserver answers a repeat from its cache.
* ``cancelled``, when a process sets it (its StopFlag), is checked every
  ``CANCEL_CHECK`` seconds while a request waits and before each retry: a
  process stopping with its apiserver gives up (``UNAVAILABLE``) instead of
  riding out timeouts and retries. Stopping a watch never waits for a reply.
"""
from __future__ import annotations

import itertools
import random
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterable

import msgpack

from emulator import netem, protocol, transport
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client_watch import Watch

__all__ = ["Client", "Watch"]


RTO = 0.2               # first retransmission timeout on a lossy link (TCP's minimum)
CANCEL_CHECK = 0.25     # how often a waiting request checks Client.cancelled


def _unpack(frame: bytes) -> object:
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


def _needs_hello(err: APIError) -> bool:
    """The apiserver does not know this connection (it restarted): hello again."""
    return any(c.get("field") == "hello" for c in err.causes)


class Client:
    def __init__(self, server: str, *, component: str = "client", node: str | None = None,
                 lab: str | None = None, timeout: float = 5.0, retries: int = 2, backoff: float = 0.05,
                 backoff_max: float = 2.0, connect_timeout: float | None = None) -> None:
        """``connect_timeout``: how long a send waits for the connection to be made
        (the transport's default, 1 s, when None); a client that connects while
        thousands of others do (a big lab's own) waits longer."""
        problem = transport.check_address(server)
        if problem:
            raise APIError(errors.BAD_REQUEST, f"server address: {problem}")
        self.server = server
        self.component = component
        self.node = node
        self.lab = lab
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.session = uuid.uuid4().hex
        self.max_frame_bytes = protocol.DEFAULT_MAX_FRAME_BYTES
        self.bookmark_interval = 5.0
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self._outstanding: set[int] = set()
        self._watches: dict[int | None, Watch] = {}
        self._all_watches: list[Watch] = []
        self._said_hello = False
        opts = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
        self._conn = netem.wrap(transport.connect(server, **opts), node or component)
        self._unacked: dict[int, bytes] = {}   # frames to retransmit while the link is lossy
        self.reconnects = 0
        self.retransmits = 0
        self._last_frame = time.monotonic()   # when the server was last heard from
        # Set by a process that is stopping (its StopFlag): requests stop waiting and
        # retrying within CANCEL_CHECK seconds instead of riding out a dead apiserver.
        self.cancelled: Callable[[], bool] | None = None

    # -- plumbing -----------------------------------------------------------
    def set_wakeup_fd(self, fd: int | None) -> None:
        """End any wait for frames early when ``fd`` is readable (``signal.set_wakeup_fd``'s
        pipe): a process may sleep long between timers and still stop at once. Only the
        ZeroMQ transport has it; elsewhere it is a no-op."""
        conn = getattr(self._conn, "inner", self._conn)
        if hasattr(conn, "set_wakeup_fd"):
            conn.set_wakeup_fd(fd)

    def close(self) -> None:
        for w in list(self._all_watches):
            w.closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _dispatch(self, frame: bytes) -> None:
        self._last_frame = time.monotonic()
        try:
            msg = _unpack(frame)
        except Exception:
            return   # a garbled reply is treated as lost: the request times out and retries
        if msg.__class__ is not dict:
            return
        if "watch" in msg and "type" in msg:
            w = self._watches.get(msg["watch"])
            if w is not None and not w.gap:
                seq = msg.get("seq")
                if seq.__class__ is int:
                    if seq <= w.seq:
                        return   # a repeat
                    if seq != w.seq + 1:
                        w.gap = True   # lost or overtaken: resume from what was delivered
                        return
                    w.seq = seq
                w._receive(msg)
            return
        rid = msg.get("id")
        if rid in self._outstanding:
            self._replies[rid] = msg

    def poll(self, timeout: float) -> None:
        """Receive whatever arrives within ``timeout`` (watch events and replies), then check liveness."""
        if self._conn is None:
            raise APIError(errors.UNAVAILABLE, "client is closed")
        frame = self._conn.recv(timeout)
        while frame is not None:
            self._dispatch(frame)
            frame = self._conn.recv(0)
        for w in [w for w in self._all_watches if w.gap and not w.closed]:
            self._resume(w)
        self._check_watch_liveness()

    def next_due(self, now: float) -> float:
        """When this client next has something to hand out without reading the socket
        (monotonic): ``now`` when watch events are buffered or a watch must resume, the
        time netem releases a held frame, else infinity. For loops that sleep on the
        socket (a node process, a node host)."""
        if any(w.events or w.gap for w in self._all_watches):
            return now
        held = getattr(self._conn, "next_due", None)
        due = held() if held is not None else None
        return float("inf") if due is None else due

    def _check_watch_liveness(self) -> None:
        if not self._all_watches:
            return
        limit = max(1.0, 3 * self.bookmark_interval)
        now = time.monotonic()
        stale = [w for w in self._all_watches if not w.closed and now - w.last_heard > limit]
        # A connection that has heard nothing for a while may face a restarted server that
        # does not know it (bookmarks come only once a minute in the default profile): ask.
        quiet = now - self._last_frame > max(1.0, self.bookmark_interval / 4)
        if not stale and not quiet:
            return
        self._last_frame = now   # one ping per quiet spell, answered or not
        try:
            self._call("ping", {}, retries=self.retries)   # re-hellos a restarted server
        except APIError:
            return   # still unreachable: try again on a later poll
        for w in stale:
            if not w.closed and time.monotonic() - w.last_heard > limit:
                self._resume(w)   # the server dropped it (slow peer) or we lost its number

    def _wait_reply(self, rid: int, timeout: float) -> dict | None:
        now = time.monotonic()
        deadline = now + timeout
        rto = RTO
        resend_at = now + rto
        while rid not in self._replies:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                self._unacked.pop(rid, None)
                return None
            frame = self._unacked.get(rid)
            if frame is not None:
                if now >= resend_at:
                    self._retransmit(frame)
                    rto = min(2 * rto, 2.0)
                    resend_at = now + rto
                remaining = min(remaining, max(0.0, resend_at - now))
            cancelled = self.cancelled
            if cancelled is not None:
                if cancelled():
                    self._unacked.pop(rid, None)
                    return None
                remaining = min(remaining, CANCEL_CHECK)
            frame = self._conn.recv(remaining)
            if frame is not None:
                self._dispatch(frame)
        self._unacked.pop(rid, None)
        return self._replies.pop(rid)

    def _retransmit(self, frame: bytes) -> None:
        try:
            self._conn.send(frame)
            self.retransmits += 1
        except ConnectionError:
            pass   # the wait's deadline decides

    def _send_frame(self, rid: int, op: str, args: dict[str, Any]) -> None:
        frame = protocol.encode({"id": rid, "op": op, **args})
        if len(frame) > self.max_frame_bytes:
            raise APIError(errors.TOO_LARGE, f"request of {len(frame)} bytes exceeds the maximum "
                                             f"frame size of {self.max_frame_bytes} bytes")
        if self.lossy:
            self._unacked[rid] = frame
        self._conn.send(frame)

    def _reconnect(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff * (2 ** attempt))
        time.sleep(random.uniform(delay / 2, delay))   # jitter, as the Lazy Pirate pattern does
        self._conn.reconnect()
        self.reconnects += 1
        self._said_hello = False

    def _hello(self) -> None:
        rid = next(self._ids)
        self._outstanding.add(rid)
        try:
            self._send_frame(rid, "hello", {"protocol": protocol.PROTOCOL_VERSION,
                                            "component": self.component, "node": self.node,
                                            "lab": self.lab, "session": self.session})
            reply = self._wait_reply(rid, self.timeout)
        finally:
            self._outstanding.discard(rid)
        if reply is None:
            raise TimeoutError
        if not reply.get("ok"):
            raise APIError.from_wire(reply.get("error"))
        res = reply["result"]
        self.max_frame_bytes = int(res.get("maxFrameBytes", self.max_frame_bytes))
        self.bookmark_interval = float(res.get("bookmarkInterval", self.bookmark_interval))
        self._said_hello = True
        # A restarted server numbers watches afresh: forget every old number before
        # resuming, or a new number could land on a watch not yet resumed.
        old, self._watches = list(self._watches.values()), {}
        for w in old:
            w.wid = None
            self._resume(w)

    def _resume(self, w: Watch) -> None:
        if self._watches.get(w.wid) is w:
            del self._watches[w.wid]
        if w.gap and w.wid is not None:
            try:   # the server still sends to the old watch: stop it (best effort)
                self.post("unwatch", watch=w.wid)
            except APIError:
                pass
        w.gap = False
        args = dict(w.args)
        args["resourceVersion"] = "" if w.initial else (w.resource_version or "")
        try:
            self._start_watch(w, args)
        except APIError as e:
            if e.code == errors.UNAVAILABLE and not w.closed:
                w.wid = None   # no server-side watch now
                w.gap = True   # still unreachable (a partition): try again on a later poll
                return
            w._fail(e)

    def _start_watch(self, w: Watch, args: dict[str, Any]) -> None:
        self._adopt_watch(w, self._call("watch", args, retries=0))

    def _adopt_watch(self, w: Watch, res: dict[str, Any]) -> None:
        w.wid = res["watch"]
        w.seq = 0
        w.last_heard = time.monotonic()
        if not w.resource_version:
            w.resource_version = res.get("resourceVersion")
        self._watches[w.wid] = w

    def _call(self, op: str, args: dict[str, Any], retries: int | None = None) -> Any:
        retries = self.retries if retries is None else retries
        last: Exception | None = None
        rid = next(self._ids)
        self._outstanding.add(rid)
        try:
            for attempt in range(retries + 1):
                if self.cancelled is not None and self.cancelled():
                    raise APIError(errors.UNAVAILABLE, f"request abandoned: this {self.component} is stopping")
                try:
                    if not self._said_hello:
                        self._hello()
                    self._send_frame(rid, op, args)
                    reply = self._wait_reply(rid, self.timeout)
                    if reply is None:
                        raise TimeoutError
                except (TimeoutError, ConnectionError) as e:
                    last = e
                    if attempt < retries:
                        self._reconnect(attempt)
                    continue
                if reply.get("ok"):
                    return reply.get("result")
                err = APIError.from_wire(reply.get("error"))
                if _needs_hello(err):
                    self._said_hello = False   # a restarted apiserver: say hello, resume watches
                    if attempt < retries:
                        continue
                raise err
        finally:
            self._outstanding.discard(rid)
            self._replies.pop(rid, None)
            self._unacked.pop(rid, None)
        what = ("cannot connect to" if isinstance(last, ConnectionError) else "no reply from")
        raise APIError(errors.UNAVAILABLE, f"{what} the apiserver at {self.server} after "
                       f"{retries + 1} attempt(s): is it running? (check --server or KEMU_SERVER)")

    # -- pipelining ---------------------------------------------------------
    def _ensure_hello(self) -> None:
        """Say hello before a request sent without waiting: one round trip, or,
        when that fails, a ping with the usual retries (which says hello)."""
        if self._said_hello:
            return
        try:
            self._hello()
        except (TimeoutError, ConnectionError):
            self._call("ping", {})

    def send(self, op: str, **args: Any) -> int:
        """Send a request without waiting; ``wait(id)`` collects its reply. No retries."""
        self._ensure_hello()
        rid = next(self._ids)
        self._outstanding.add(rid)
        try:
            self._send_frame(rid, op, args)
        except ConnectionError as e:
            self._outstanding.discard(rid)
            raise APIError(errors.UNAVAILABLE, f"cannot connect to the apiserver at {self.server}: {e}")
        return rid

    def post(self, op: str, **args: Any) -> None:
        """Fire and forget: send a request whose reply nobody waits for (Events).

        Not retried. It asks for no reply (``noreply``): at 10,000 nodes the replies to
        three Events per pod were frames that woke a node only to be dropped. An error
        reply, when one comes, is dropped."""
        self._ensure_hello()
        try:
            self._send_frame(next(self._ids), op, {**args, "noreply": True})
        except ConnectionError as e:
            raise APIError(errors.UNAVAILABLE, f"cannot connect to the apiserver at {self.server}: {e}")

    def wait(self, rid: int, timeout: float | None = None) -> Any:
        try:
            reply = self._wait_reply(rid, self.timeout if timeout is None else timeout)
        finally:
            self._outstanding.discard(rid)
            self._unacked.pop(rid, None)
        if reply is None:
            raise APIError(errors.UNAVAILABLE, f"no reply from the apiserver at {self.server} "
                                               f"within {self.timeout:g}s")
        return self._result(reply)

    def _result(self, reply: dict) -> Any:
        if reply.get("ok"):
            return reply.get("result")
        err = APIError.from_wire(reply.get("error"))
        if _needs_hello(err):
            self._said_hello = False   # the next request says hello (and resumes watches) first
        raise err

    def take_reply(self, rid: int) -> tuple[bool, Any]:
        """Without blocking, the reply of a request made with ``send``, if ``poll`` has
        received it: ``(True, result or APIError)``, the request then forgotten; else
        ``(False, None)``. For loops that must not wait on one request (the kubelet's
        status manager)."""
        reply = self._replies.pop(rid, None)
        if reply is None:
            return False, None
        self.forget(rid)
        try:
            return True, self._result(reply)
        except APIError as e:
            return True, e

    @property
    def lossy(self) -> bool:
        """Whether the link drops frames now (netem loss): only a request waited for is
        retransmitted, so a caller that must get through waits rather than pipelines."""
        return bool(getattr(self._conn, "lossy", False))

    def forget(self, rid: int) -> None:
        """Give up on a request made with ``send``: its reply, if it ever comes, is dropped."""
        self._outstanding.discard(rid)
        self._replies.pop(rid, None)
        self._unacked.pop(rid, None)

    def pipeline(self, requests: Iterable[tuple[str, dict[str, Any]]], window: int = 256) -> list[Any]:
        """Run requests with up to ``window`` in flight; results (or APIErrors) in order."""
        out: list[Any] = []
        inflight: deque[int] = deque()
        for op, args in requests:
            inflight.append(self.send(op, **args))
            if len(inflight) >= window:
                out.append(self._collect(inflight.popleft()))
        while inflight:
            out.append(self._collect(inflight.popleft()))
        return out

    def _collect(self, rid: int) -> Any:
        try:
            return self.wait(rid)
        except APIError as e:
            return e

    # -- the API ------------------------------------------------------------
    def ping(self) -> dict:
        return self._call("ping", {})

    def discovery(self) -> list[dict]:
        return self._call("discovery", {})

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        return self._call("get", {"kind": kind, "name": name, "namespace": namespace})

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None,
             continue_: str | None = None) -> dict:
        return self._call("list", {"kind": kind, "namespace": namespace, "labelSelector": label_selector,
                                   "fieldSelector": field_selector, "limit": limit,
                                   "continue": continue_})

    def list_all(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, chunk: int = 500, first: dict | None = None) -> dict:
        """A whole list, fetched in pages of ``chunk``; ``first`` is its first page when
        that was already fetched (pipelined)."""
        if first is None:
            first = self.list(kind, namespace, label_selector, field_selector, chunk)
        items = list(first["items"])
        cont = first["metadata"].get("continue")
        while cont:
            page = self.list(kind, namespace, label_selector, field_selector, chunk, cont)
            items.extend(page["items"])
            cont = page["metadata"].get("continue")
        first["items"] = items
        first["metadata"].pop("continue", None)
        return first

    def create(self, obj: dict, namespace: str | None = None) -> dict:
        return self._call("create", {"object": obj, "namespace": namespace})

    def update(self, obj: dict, subresource: str | None = None) -> dict:
        return self._call("update", {"object": obj, "subresource": subresource})

    def update_status(self, obj: dict) -> dict:
        return self.update(obj, "status")

    def patch(self, kind: str, name: str, patch: Any, namespace: str | None = None,
              patch_type: str = "merge", subresource: str | None = None) -> dict:
        return self._call("patch", {"kind": kind, "name": name, "namespace": namespace, "patch": patch,
                                    "patchType": patch_type, "subresource": subresource})

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_period_seconds: int | None = None, propagation_policy: str | None = None,
               preconditions: dict | None = None) -> dict:
        return self._call("delete", {"kind": kind, "name": name, "namespace": namespace,
                                     "gracePeriodSeconds": grace_period_seconds,
                                     "propagationPolicy": propagation_policy,
                                     "preconditions": preconditions})

    def bind(self, name: str, namespace: str, node_name: str) -> dict:
        """The pods/binding subresource, as the scheduler uses it. Returns a Success Status
        (kube-apiserver's reply), not the pod."""
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": namespace},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        return self._call("create", {"object": binding, "namespace": namespace, "name": name,
                                     "subresource": "binding"})

    def evict(self, name: str, namespace: str, grace_period_seconds: int | None = None) -> dict:
        """The pods/eviction subresource, as kubectl drain uses it: deletes the pod
        unless its PodDisruptionBudget forbids it (``APIError`` TooManyRequests, 429)."""
        eviction: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                    "metadata": {"name": name, "namespace": namespace}}
        if grace_period_seconds is not None:
            eviction["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        return self._call("create", {"object": eviction, "namespace": namespace, "name": name,
                                     "subresource": "eviction"})

    def watch(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, resource_version: str | None = None,
              bookmarks: bool = False) -> Watch:
        """Start a watch. Without resource_version, the current objects arrive first as ADDED."""
        return self.watch_many([dict(kind=kind, namespace=namespace, label_selector=label_selector,
                                     field_selector=field_selector, resource_version=resource_version,
                                     bookmarks=bookmarks)])[0]

    def watch_many(self, specs: list[dict[str, Any]]) -> list[Watch]:
        """Start several watches in one round trip; each spec holds ``watch``'s keyword
        arguments. Raises the first APIError, after stopping the watches that started."""
        watches = []
        for spec in specs:
            args = {"kind": spec["kind"], "namespace": spec.get("namespace"),
                    "labelSelector": spec.get("label_selector"),
                    "fieldSelector": spec.get("field_selector"),
                    "resourceVersion": spec.get("resource_version") or "", "allowWatchBookmarks": True}
            watches.append(Watch(self, args, bool(spec.get("bookmarks"))))
        if len(watches) == 1:   # the common case keeps _call's retries
            self._start_watch(watches[0], watches[0].args)
        else:
            # Replies are collected in order and each watch is adopted as its reply
            # arrives: its events follow the reply on the wire and must find it.
            rids = [self.send("watch", **w.args) for w in watches]
            failed: APIError | None = None
            for w, rid in zip(watches, rids):
                res = self._collect(rid)
                if isinstance(res, APIError):
                    failed = failed or res
                else:
                    self._adopt_watch(w, res)
            if failed is not None:
                for w in watches:
                    if w.wid is not None:
                        w.stop()
                raise failed
        self._all_watches.extend(watches)
        return watches
