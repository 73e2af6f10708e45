"""ZeroMQ backend: ROUTER for the server, DEALER for each client.

Contract: sockets are created in the calling process (create them after any
fork). Every socket has ``linger=0`` so that close never blocks. The ROUTER
sets ``ROUTER_MANDATORY`` so that a send to a departed peer fails at once
instead of vanishing, and sends with NOBLOCK so a slow peer never stalls the
server. The listen backlog is ``LISTEN_BACKLOG`` (ZeroMQ's default of 100 drops
the connects of a big lab coming up). ``MAXMSGSIZE`` is a hard ceiling well
above the protocol's frame limit: frames above the protocol limit reach the
server and are answered TooLarge; frames above the ceiling make ZeroMQ drop
that peer's connection.
"""
from __future__ import annotations

import math
import os

import zmq

HWM = 100_000
LISTEN_BACKLOG = 4096
# Plain ints for the hot paths: pyzmq's constants are enum flags, and each ``&`` or
# ``|`` on one costs about a microsecond of Python enum machinery.
NOBLOCK = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
RCVMORE = int(zmq.RCVMORE)
_SEND_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


def poll_ms(timeout: float) -> int:
    """A timeout in seconds as ZeroMQ's whole milliseconds, rounded up: truncated, any wait
    under a millisecond became 0 and its caller spun (0 stays 0: do not wait)."""
    return math.ceil(timeout * 1000) if timeout > 0 else 0


def _context() -> zmq.Context:
    # Context.instance() is fork-aware: a forked child gets a fresh context.
    return zmq.Context.instance()


class ZmqListener:
    def __init__(self, address: str, *, hard_max_bytes: int = 64 << 20) -> None:
        self.sock = _context().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.SNDHWM, HWM)
        self.sock.setsockopt(zmq.RCVHWM, HWM)
        self.sock.setsockopt(zmq.MAXMSGSIZE, hard_max_bytes)
        # ZeroMQ's listen backlog is 100; 10,000 nodes connecting at once overflowed it
        # (kernel ListenOverflows), their SYNs dropped and retried after 1 s, 3 s ...
        # Ask for what Go's net.Listen uses: the kernel's somaxconn (which caps it).
        self.sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
        if address.endswith(":0"):
            port = self.sock.bind_to_random_port(address[: address.rindex(":")])
            address = f"{address[: address.rindex(':')]}:{port}"
        else:
            self.sock.bind(address)
        self.address = address
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)

    def fileno(self) -> int:
        return self.sock.getsockopt(zmq.FD)

    def recv_batch(self, timeout: float, max_frames: int = 512) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        sock = self.sock
        if not sock.poll(poll_ms(timeout), POLLIN):
            return out
        recv = sock.recv
        more = sock.getsockopt
        while len(out) < max_frames:
            # Ask before each recv after the first: a recv that fails costs pyzmq an
            # exception, which ended every batch (4% of an idle 10,000-node lab's apiserver).
            if out and not more(EVENTS) & POLLIN:
                break
            try:
                peer = recv(NOBLOCK)
            except zmq.Again:
                break
            # The rest of a multipart message is already here (ZeroMQ delivers
            # messages whole), and a ROUTER's routing id is always followed by at
            # least one part. Two plain recv calls cost half a recv_multipart; the
            # part's own ``more`` flag costs half a getsockopt(RCVMORE) call.
            part = recv(NOBLOCK, copy=False)
            frame = part.bytes
            if part.more:
                # A DEALER sends one frame; extra frames make the request malformed,
                # which the protocol layer reports (0xc1 is never valid msgpack).
                extra = [frame]
                while more(RCVMORE):
                    extra.append(recv(NOBLOCK))
                frame = b"\xc1" + b"".join(extra)
            out.append((peer, frame))
        return out

    def send(self, peer: bytes, frame: bytes) -> bool:
        try:
            # Two sends cost less than send_multipart; ROUTER_MANDATORY refuses an
            # unknown peer on the first part, and a message is queued whole.
            self.sock.send(peer, _SEND_MORE)
            self.sock.send(frame, NOBLOCK, copy=len(frame) < 65536)
            return True
        except zmq.ZMQError as e:
            if e.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def close(self) -> None:
        self.sock.close(0)


class ZmqConnection:
    """A DEALER with ``IMMEDIATE`` set: frames queue only on an established
    connection, so a send to a server that is not there fails fast with
    ConnectionError (after ``connect_timeout``) instead of vanishing."""

    def __init__(self, address: str, connect_timeout: float = 1.0) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.sock: zmq.Socket | None = None
        self.wake_fd: int | None = None
        self._poller: zmq.Poller | None = None
        self._open()

    def set_wakeup_fd(self, fd: int | None) -> None:
        """A non-blocking fd (a signal wake-up pipe) that ends a ``recv`` wait early when
        readable; its bytes are drained. A process can then sleep long between timers
        and still notice SIGTERM at once."""
        self.wake_fd = fd
        self._poller = None
        if fd is not None and self.sock is not None:
            self._poller = zmq.Poller()
            self._poller.register(self.sock, zmq.POLLIN)
            self._poller.register(fd, zmq.POLLIN)

    def _open(self) -> None:
        s = _context().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.RCVHWM, HWM)
        s.setsockopt(zmq.IDENTITY, os.urandom(8))
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.setsockopt(zmq.RECONNECT_IVL, 50)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        s.connect(self.address)
        self.sock = s
        if self.wake_fd is not None:
            self.set_wakeup_fd(self.wake_fd)

    def send(self, frame: bytes) -> None:
        sock = self.sock
        assert sock is not None
        copy = len(frame) < 65536
        try:
            sock.send(frame, NOBLOCK, copy=copy)
            return
        except zmq.Again:   # not connected (yet), or the queue is full: wait a little
            pass
        if not sock.poll(int(self.connect_timeout * 1000), zmq.POLLOUT):
            raise ConnectionError(f"no connection to {self.address} within {self.connect_timeout:g}s")
        sock.send(frame, NOBLOCK, copy=copy)

    def recv(self, timeout: float) -> bytes | None:
        sock = self.sock
        assert sock is not None
        # A frame is usually waiting when pipelining: skip the poll. Asking the socket is
        # much cheaper than a recv that fails (pyzmq builds an exception for it).
        if sock.getsockopt(EVENTS) & POLLIN:
            try:
                return sock.recv(NOBLOCK)
            except zmq.Again:
                pass
        if timeout <= 0:
            return None
        poller = self._poller
        if poller is None:
            poller = self._poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
        ready = dict(poller.poll(poll_ms(timeout)))
        if ready.get(self.wake_fd):
            try:
                os.read(self.wake_fd, 512)   # type: ignore[arg-type]
            except OSError:
                pass
        return sock.recv() if ready.get(sock) else None

    def reconnect(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        self._poller = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
