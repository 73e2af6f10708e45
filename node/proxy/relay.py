"""The relay of one proxied TCP connection, on non-blocking sockets and an asyncio loop.

Splice-like: bytes go from one socket to the other through one bounded
buffer per direction, driven by the loop's reader and writer callbacks
(``loop.add_reader`` / ``add_writer``); there are no transports and no task
per connection.

Contract
--------
* ``check_loopback(ip, what)`` returns ``ip`` or raises ``NotLoopbackError``:
  only IPv4 addresses in 127.0.0.0/8 are ever bound or connected to.
  ``listen_socket(ip, port, reuse_port=True)`` returns a non-blocking
  listening socket (refusing other addresses). ``reset(sock)`` closes with a
  TCP reset (``SO_LINGER`` 0).
* ``Conn(loop, client_sock, endpoint, stats, on_done, connect_timeout,
  connect_attempts).start()``: connects to the endpoint without blocking. A
  refused connect (or any connect error) resets the client and counts
  ``refused``; no answer within ``connect_timeout`` is retried (a fresh SYN)
  up to ``connect_attempts`` times, then the client is reset and ``timeouts``
  counted. ``on_done(conn)`` is called exactly once, when both sockets are
  closed.
* Relaying: each direction reads at most ``CHUNK`` bytes and sends them; what
  the receiver does not take at once is kept (one chunk at most) while
  reading from the sender stops until it is sent: back-pressure, so a slow
  reader holds at most ``CHUNK`` bytes per direction here (plus the kernel's
  socket buffers). EOF from one side is passed on as ``shutdown(SHUT_WR)``
  once the pending bytes are sent; the other direction stays open. Both
  directions ended: both sockets are closed (FIN). A reset or socket error on
  either side resets the other.
* ``state()`` describes the connection (for tests and diagnostics); call it on
  the loop's thread.
* Chaos (``link=(local node, endpoint's node)``): the process's netem rules for
  that link (``emulator.netem.stream_hold``) hold each chunk before it is
  sent (delay, loss as retransmission, bandwidth), with reading paused
  meanwhile, so order is kept. A cut link (a partition) holds the chunk until
  it heals, as TCP keeps retransmitting; a connect across a cut link gets no
  answer (each attempt times out).
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
from dataclasses import asdict, dataclass
from typing import Any, Callable

from emulator import netem

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
CHUNK = 64 * 1024
BACKLOG = 1024
_LINGER_RESET = struct.pack("ii", 1, 0)


class NotLoopbackError(ValueError):
    pass


def check_loopback(ip: str, what: str = "address") -> str:
    """Return ``ip`` if it is an IPv4 address in 127.0.0.0/8; raise NotLoopbackError otherwise."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise NotLoopbackError(f"{what}: {ip!r} is not a valid IPv4 address") from None
    if addr not in LOOPBACK:
        raise NotLoopbackError(f"{what} {ip}: refused, kemu only binds and connects to loopback "
                               f"addresses (127.0.0.0/8)")
    return ip


def listen_socket(ip: str, port: int, *, reuse_port: bool = True, backlog: int = BACKLOG) -> socket.socket:
    """A non-blocking listening TCP socket on a loopback ``ip:port``."""
    check_loopback(ip, "listen address")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((ip, port))
        s.listen(backlog)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


@dataclass
class PortStats:
    """Cumulative counts for one listener address."""
    opened: int = 0
    closed: int = 0
    refused: int = 0
    timeouts: int = 0
    no_endpoints: int = 0
    bytes_in: int = 0      # client -> endpoint
    bytes_out: int = 0     # endpoint -> client

    @property
    def active(self) -> int:
        return self.opened - self.closed

    def as_dict(self) -> dict[str, int]:
        return asdict(self) | {"active": self.active}

    def add(self, other: "PortStats") -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, getattr(self, f) + getattr(other, f))


class _Direction:
    """Bytes from ``src`` to ``dst``: read, send, keep what ``dst`` did not take, pause reading meanwhile."""

    __slots__ = ("conn", "src", "dst", "inbound", "pending", "eof", "shut", "reading", "writing")

    def __init__(self, conn: "Conn", src: socket.socket, dst: socket.socket, inbound: bool) -> None:
        self.conn = conn
        self.src, self.dst = src, dst
        self.inbound = inbound        # client -> endpoint
        self.pending: memoryview | None = None
        self.eof = False              # src sent FIN
        self.shut = False             # we passed it on (shutdown(SHUT_WR) on dst)
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self.reading = True
        self.conn.loop.add_reader(self.src.fileno(), self.on_readable)

    def on_readable(self) -> None:
        if self.conn.closed:
            return
        try:
            data = self.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return self.conn.abort(e)
        if not data:
            self.eof = True
            self._stop_reading()
            if self.pending is None:
                self._pass_eof()
            return
        st = self.conn.stats
        if self.inbound:
            st.bytes_in += len(data)
        else:
            st.bytes_out += len(data)
        hold = self.conn.hold(len(data), "out" if self.inbound else "in")
        if hold != 0.0:   # chaos on this link: keep the chunk, stop reading, send it later
            self.pending = memoryview(data)
            self._stop_reading()
            self.conn.loop.call_later(netem.RTO if hold is None else hold, self._release)
            return
        try:
            n = self.dst.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            return self.conn.abort(e)
        if n < len(data):   # dst is slow: keep the rest, stop reading until it is sent
            self.pending = memoryview(data)[n:]
            self._stop_reading()
            self.writing = True
            self.conn.loop.add_writer(self.dst.fileno(), self.on_writable)

    def _release(self) -> None:
        if self.conn.closed or self.pending is None:
            return
        if self.conn.hold(0, "out" if self.inbound else "in") is None:   # still cut: retransmit later
            self.conn.loop.call_later(netem.RTO, self._release)
            return
        self.writing = True
        self.conn.loop.add_writer(self.dst.fileno(), self.on_writable)

    def on_writable(self) -> None:
        if self.conn.closed or self.pending is None:
            return
        try:
            n = self.dst.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            return self.conn.abort(e)
        self.pending = self.pending[n:] if n < len(self.pending) else None
        if self.pending is not None:
            return
        self.writing = False
        self.conn.loop.remove_writer(self.dst.fileno())
        if self.eof:
            self._pass_eof()
        else:
            self.reading = True
            self.conn.loop.add_reader(self.src.fileno(), self.on_readable)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.conn.loop.remove_reader(self.src.fileno())

    def _pass_eof(self) -> None:
        self.shut = True
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError as e:
            return self.conn.abort(e)
        self.conn.maybe_done()

    def state(self) -> dict[str, Any]:
        return {"reading": self.reading, "pending": len(self.pending) if self.pending is not None else 0,
                "eof": self.eof, "shut": self.shut}


class Conn:
    """One accepted client connection, relayed to one endpoint."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: socket.socket, endpoint: tuple[str, int],
                 stats: PortStats, on_done: Callable[["Conn"], None], *, connect_timeout: float = 1.0,
                 connect_attempts: int = 3, service: str = "",
                 link: tuple[str, str] | None = None) -> None:
        self.loop = loop
        self.client = client
        self.endpoint = endpoint
        self.stats = stats
        self.on_done = on_done
        self.connect_timeout = connect_timeout
        self.attempts_left = max(1, connect_attempts)
        self.service = service
        self.upstream: socket.socket | None = None
        self.up: _Direction | None = None      # client -> endpoint
        self.down: _Direction | None = None    # endpoint -> client
        self.timer: asyncio.TimerHandle | None = None
        self.connecting = False   # a writer is registered on the upstream socket
        self.closed = False
        self.link = link if link and link[0] and link[1] else None

    def hold(self, nbytes: int, direction: str) -> float | None:
        """Seconds the link's chaos holds a chunk (0.0: none), None while it is cut."""
        if self.link is None or not netem.TABLE.rules:
            return 0.0
        return netem.stream_hold(self.link[0], self.link[1], nbytes, direction)

    # -- connecting ---------------------------------------------------------------------
    def start(self) -> None:
        try:
            check_loopback(self.endpoint[0], "endpoint address")
        except NotLoopbackError:
            self.stats.refused += 1
            return self.fail()
        self.attempts_left -= 1
        if self.hold(0, "out") is None:   # a partition: the SYN is lost
            self.timer = self.loop.call_later(self.connect_timeout, self._on_cut_timeout)
            return
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:       # out of file descriptors: as if the endpoint refused
            self.stats.refused += 1
            return self.fail()
        self.upstream = s
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(self.endpoint)
        if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            # On loopback the handshake (or the refusal) has usually happened by the time
            # connect returns: look before waiting a loop turn for the socket to be writable.
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not err:
                try:
                    s.getpeername()
                except OSError:   # still connecting
                    self.connecting = True
                    self.loop.add_writer(s.fileno(), self._on_connect)
                    self.timer = self.loop.call_later(self.connect_timeout, self._on_timeout)
                    return
        if err == 0:
            return self._connected()
        self.stats.refused += 1
        self.fail()

    def _on_connect(self) -> None:
        s = self.upstream
        assert s is not None
        self.connecting = False
        self.loop.remove_writer(s.fileno())
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.stats.refused += 1
            return self.fail()
        self._connected()

    def _on_timeout(self) -> None:
        self.timer = None
        s = self.upstream
        assert s is not None
        self.connecting = False
        self.loop.remove_writer(s.fileno())
        reset(s)
        self.upstream = None
        if self.attempts_left > 0:
            return self.start()
        self.stats.timeouts += 1
        self.fail()

    def _on_cut_timeout(self) -> None:
        self.timer = None
        if self.attempts_left > 0:
            return self.start()
        self.stats.timeouts += 1
        self.fail()

    def _connected(self) -> None:
        assert self.upstream is not None
        self.up = _Direction(self, self.client, self.upstream, inbound=True)
        self.down = _Direction(self, self.upstream, self.client, inbound=False)
        self.up.start()
        self.down.start()

    def fail(self) -> None:
        """No endpoint could be reached: reset the client."""
        self._close(reset_all=True)

    # -- ending --------------------------------------------------------------------------
    def maybe_done(self) -> None:
        if self.up is not None and self.down is not None and self.up.shut and self.down.shut:
            self._close(reset_all=False)

    def abort(self, exc: BaseException | None = None) -> None:
        """An error on one side: reset both."""
        self._close(reset_all=True)

    def _close(self, reset_all: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        loop = self.loop
        if self.connecting and self.upstream is not None:
            loop.remove_writer(self.upstream.fileno())
        for d in (self.up, self.down):   # unregister exactly what is registered
            if d is not None:
                if d.reading:
                    loop.remove_reader(d.src.fileno())
                if d.writing:
                    loop.remove_writer(d.dst.fileno())
        for s in (self.client, self.upstream):
            if s is None or s.fileno() < 0:
                continue
            if reset_all:
                reset(s)
            else:
                s.close()
        self.up = self.down = None   # no reference cycles left: freed at once, not by the GC
        self.on_done(self)

    def state(self) -> dict[str, Any]:
        return {"service": self.service, "endpoint": f"{self.endpoint[0]}:{self.endpoint[1]}",
                "connected": self.up is not None, "closed": self.closed,
                "up": self.up.state() if self.up else None, "down": self.down.state() if self.down else None}
