"""kube-proxy's data path: real TCP forwarding from ClusterIPs and NodePorts to endpoints.

Where iptables would DNAT, this relays: one asyncio event loop in a
background thread of the node process accepts connections on the Service
addresses and relays each one to an endpoint chosen from the proxy's table
(``node.proxy.relay`` moves the bytes).

Contract
--------
* ``Forwarder(node_name="", node_ip="127.0.0.1", connect_timeout=1.0,
  connect_attempts=3, log_interval=1.0)``; ``start()`` runs its loop in a
  daemon thread; ``stop(timeout)`` closes every listener and connection and
  joins the thread. ``update(table)`` may be called from any thread: it hands
  the ``rules.Table`` to the loop (``call_soon_threadsafe``) and returns a
  ``concurrent.futures.Future`` whose result, once the listeners match the
  table, is the sorted list of ``(ip, port)`` listened on.
* Listeners: each TCP ``ServicePort`` that has endpoints gets one on
  ``clusterIP:port`` with ``SO_REUSEPORT`` and, for NodePort Services, one on
  ``<table.node_ip>:<nodePort>`` (``SO_REUSEADDR`` only, so a clash with
  another process shows as an error). Every node process of a lab shares the
  machine's loopback, so every live node's proxy binds the same ClusterIP:port
  and the kernel spreads new connections across them (a dead node's socket is
  gone with it, so it takes no more). A ServicePort with no endpoints has no
  listener: a connection to it is refused (the kernel answers the SYN with a
  reset), as the REJECT rule of iptables mode does. A Service removed, or left
  without endpoints, closes its listener; established connections finish.
* Addresses: only 127.0.0.0/8 is ever bound or connected to
  (``relay.check_loopback``). A table entry with another address is logged
  (``proxy_refused_address``) and gets no listener; an endpoint with one is
  never connected to (the client is reset). A bind that fails (a port below
  1024 without privilege, a NodePort in use) is logged as
  ``proxy_listen_failed`` and retried on the next update.
* Each accepted connection picks one endpoint of its ServicePort at random
  (uniform, as the chain of iptables ``statistic --mode random`` rules gives;
  the table holds only ready endpoints, or the serving-and-terminating ones
  when none is ready) and is relayed to it (``relay.Conn``): the endpoint is
  chosen once, as a DNAT does. Refused: the client is reset. No answer:
  ``connect_attempts`` tries of ``connect_timeout`` each (like SYN
  retransmissions, but bounded where a client of iptables would wait minutes),
  then the client is reset. A connection accepted while the table has no
  endpoint for its port is reset.
* Logs: ``proxy_connections`` per listener address with the cumulative
  ``opened``, ``closed``, ``active``, ``refused``, ``timeouts``,
  ``no_endpoints``, ``bytes_in`` (client to endpoint) and ``bytes_out``, at
  most once per ``log_interval`` and only for addresses whose counts changed
  (at most ``MAX_LOG_LINES`` lines per interval, then one
  ``proxy_connections_more`` line); ``proxy_forwarder_sync`` after each update
  with the listener changes and the totals. ``totals()`` and ``stats(key)``
  read the counters from any thread.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import random
import socket
import threading
from typing import Any, Callable

from emulator.logging import get_logger
from node.proxy import rules
from node.proxy.relay import (Conn, NotLoopbackError, PortStats, check_loopback, listen_socket,
                              reset)

CONNECT_TIMEOUT = 1.0
CONNECT_ATTEMPTS = 3
MAX_LOG_LINES = 20
ACCEPTS_PER_WAKEUP = 64

Key = tuple[str, int]


class Forwarder:
    def __init__(self, node_name: str = "", node_ip: str = "127.0.0.1", *,
                 connect_timeout: float = CONNECT_TIMEOUT, connect_attempts: int = CONNECT_ATTEMPTS,
                 log_interval: float = 1.0) -> None:
        self.node_name = node_name
        self.node_ip = node_ip
        self.connect_timeout = connect_timeout
        self.connect_attempts = max(1, connect_attempts)
        self.log_interval = log_interval
        self.log = get_logger()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # owned by the loop thread
        self._routes: dict[Key, rules.ServicePort] = {}
        self._listeners: dict[Key, socket.socket] = {}
        self._failed: dict[Key, str] = {}
        self._stats: dict[Key, PortStats] = {}
        self._names: dict[Key, str] = {}
        self._conns: set[Conn] = set()
        self._dirty: set[Key] = set()
        self._pending: rules.Table | None = None
        self._waiting: list[concurrent.futures.Future] = []
        self._reporter: asyncio.TimerHandle | None = None

    # -- lifecycle (any thread) ------------------------------------------------------
    def start(self) -> "Forwarder":
        if self._thread is not None:
            return self
        ctx = contextvars.copy_context()   # the caller's log context (lab, node, component)
        self._thread = threading.Thread(target=ctx.run, args=(self._run,), name="kube-proxy-forwarder",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder's loop did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._reporter = loop.call_later(self.log_interval, self._report_tick)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(self._shutdown)
        except RuntimeError:   # the loop is already closed
            pass
        thread.join(timeout)
        self._thread = None

    def _shutdown(self) -> None:
        for key in list(self._listeners):
            self._close_listener(key)
        for c in list(self._conns):
            c.abort()
        if self._reporter is not None:
            self._reporter.cancel()
        self._report(force=True)
        for f in self._waiting:
            f.cancel()
        assert self.loop is not None
        self.loop.stop()

    # -- table updates -----------------------------------------------------------------
    def update(self, table: rules.Table) -> concurrent.futures.Future:
        """Hand ``table`` to the loop; updates that arrive together are coalesced (the latest wins)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self.loop is None:
            self.start()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._enqueue, table, fut)
        return fut

    def _enqueue(self, table: rules.Table, fut: concurrent.futures.Future) -> None:
        if self._pending is None:
            assert self.loop is not None
            self.loop.call_soon(self._apply_pending)
        self._pending = table
        self._waiting.append(fut)

    def _apply_pending(self) -> None:
        table, futs = self._pending, self._waiting
        self._pending, self._waiting = None, []
        if table is None:
            return
        try:
            self._apply(table)
        except Exception as e:   # never leave a caller waiting
            self.log.error("proxy_forwarder_sync_failed", error=repr(e))
            for f in futs:
                f.set_exception(e)
            return
        result = sorted(self._listeners)
        for f in futs:
            f.set_result(result)

    def _apply(self, table: rules.Table) -> None:
        want: dict[Key, tuple[str, rules.ServicePort]] = {}
        for sp in table.services:
            if sp.protocol != "TCP" or not sp.endpoints:
                continue
            want[(sp.cluster_ip, sp.port)] = ("ClusterIP", sp)
            if sp.node_port:
                want[(table.node_ip, sp.node_port)] = ("NodePort", sp)
        self._routes = {k: sp for k, (_, sp) in want.items()}
        removed = [k for k in self._listeners if k not in want]
        for k in removed:
            self._close_listener(k)   # stops accepting; established connections go on
        added, failed = 0, {}
        for k, (kind, sp) in want.items():
            self._names[k] = sp.name
            if k in self._listeners:
                continue
            try:
                self._listen(k, kind)
                added += 1
            except (OSError, NotLoopbackError) as e:
                failed[k] = str(e)
                if self._failed.get(k) != str(e):   # once per distinct error
                    ev = "proxy_refused_address" if isinstance(e, NotLoopbackError) else "proxy_listen_failed"
                    self.log.warning(ev, service=sp.name, address=f"{k[0]}:{k[1]}", kind=kind,
                                     error=_explain(k, e))
        self._failed = failed
        self.log.info("proxy_forwarder_sync", node_name=self.node_name, listeners=len(self._listeners),
                      added=added, removed=len(removed), failed=len(failed), **self.totals())

    def _listen(self, key: Key, kind: str) -> None:
        assert self.loop is not None
        sock = listen_socket(key[0], key[1], reuse_port=(kind == "ClusterIP"))
        self._listeners[key] = sock
        self._stats.setdefault(key, PortStats())
        self.loop.add_reader(sock.fileno(), self._accept, key, sock)

    def _close_listener(self, key: Key) -> None:
        assert self.loop is not None
        sock = self._listeners.pop(key)
        self.loop.remove_reader(sock.fileno())
        sock.close()

    # -- the data path ------------------------------------------------------------------
    def _accept(self, key: Key, lsock: socket.socket) -> None:
        assert self.loop is not None
        stats = self._stats[key]
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                client, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # e.g. out of file descriptors: try again on the next wake-up
                self.log.warning("proxy_accept_failed", address=f"{key[0]}:{key[1]}", error=str(e))
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stats.opened += 1
            self._dirty.add(key)
            sp = self._routes.get(key)
            if sp is None or not sp.endpoints:
                stats.no_endpoints += 1
                stats.closed += 1
                reset(client)
                continue
            ep = random.choice(sp.endpoints)
            conn = Conn(self.loop, client, (ep.ip, ep.port), stats, self._done(key),
                        connect_timeout=self.connect_timeout, connect_attempts=self.connect_attempts,
                        service=sp.name, link=(self.node_name, ep.node_name))
            self._conns.add(conn)
            conn.start()

    def _done(self, key: Key) -> Callable[[Conn], None]:
        def done(conn: Conn) -> None:
            conn.stats.closed += 1
            self._dirty.add(key)
            self._conns.discard(conn)
        return done

    # -- reads ---------------------------------------------------------------------------
    def listening(self) -> list[Key]:
        """The addresses listened on (any thread)."""
        return sorted(list(self._listeners))

    def totals(self) -> dict[str, int]:
        tot = PortStats()
        for st in list(self._stats.values()):
            tot.add(st)
        return tot.as_dict()

    def failed_listeners(self) -> int:
        """How many wanted listeners could not bind at the last update (any thread)."""
        return len(self._failed)

    def stats(self, key: Key) -> dict[str, int]:
        st = self._stats.get(key)
        return (st or PortStats()).as_dict()

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn()`` on the loop's thread and return its result."""
        assert self.loop is not None
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)
        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def connections(self) -> list[dict[str, Any]]:
        """The state of every live connection (from any thread; runs on the loop)."""
        return self.call(lambda: [c.state() for c in list(self._conns)])

    # -- logging ---------------------------------------------------------------------
    def _report_tick(self) -> None:
        assert self.loop is not None
        self._report()
        self._reporter = self.loop.call_later(self.log_interval, self._report_tick)

    def _report(self, force: bool = False) -> None:
        keys = sorted(self._stats if force else self._dirty)
        self._dirty.clear()
        for k in keys[:MAX_LOG_LINES]:
            self.log.info("proxy_connections", service=self._names.get(k, ""), address=f"{k[0]}:{k[1]}",
                          **self._stats[k].as_dict())
        if len(keys) > MAX_LOG_LINES:
            self.log.info("proxy_connections_more", addresses=len(keys) - MAX_LOG_LINES, **self.totals())


def _explain(key: Key, e: BaseException) -> str:
    if isinstance(e, PermissionError) and key[1] < 1024:
        return (f"{e}: binding port {key[1]} needs root or CAP_NET_BIND_SERVICE "
                f"(or sysctl net.ipv4.ip_unprivileged_port_start={key[1]})")
    return str(e)


__all__ = ["Forwarder", "NotLoopbackError", "check_loopback", "CONNECT_TIMEOUT", "CONNECT_ATTEMPTS"]
