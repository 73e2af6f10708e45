"""ZeroMQ backend: ROUTER for the server, DEALER for each client.

Contract: sockets are created in the calling process (create them after any
fork). Every socket has ``linger=0`` so that close never blocks. The ROUTER
sets ``ROUTER_MANDATORY`` so that a send to a departed peer fails at once
instead of vanishing, and sends with NOBLOCK so a slow peer never stalls the
server. ``MAXMSGSIZE`` is a hard ceiling well above the protocol's frame limit:
frames above the protocol limit reach the server and are answered TooLarge;
frames above the ceiling make ZeroMQ drop that peer's connection.
"""
from __future__ import annotations

import os

import zmq

HWM = 100_000
_SEND_MORE = zmq.NOBLOCK | zmq.SNDMORE


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
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            return out
        recv = sock.recv
        more = sock.getsockopt
        while len(out) < max_frames:
            try:
                peer = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            # The rest of a multipart message is already here (ZeroMQ delivers
            # messages whole), and a ROUTER's routing id is always followed by at
            # least one part. Two plain recv calls cost half a recv_multipart; the
            # part's own ``more`` flag costs half a getsockopt(RCVMORE) call.
            part = recv(zmq.NOBLOCK, copy=False)
            frame = part.bytes
            if part.more:
                # A DEALER sends one frame; extra frames make the request malformed,
                # which the protocol layer reports (0xc1 is never valid msgpack).
                extra = [frame]
                while more(zmq.RCVMORE):
                    extra.append(recv(zmq.NOBLOCK))
                frame = b"\xc1" + b"".join(extra)
            out.append((peer, frame))
        return out

    def send(self, peer: bytes, frame: bytes) -> bool:
        try:
            # Two sends cost less than send_multipart; ROUTER_MANDATORY refuses an
            # unknown peer on the first part, and a message is queued whole.
            self.sock.send(peer, _SEND_MORE)
            self.sock.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
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
        self._open()

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

    def send(self, frame: bytes) -> None:
        sock = self.sock
        assert sock is not None
        copy = len(frame) < 65536
        try:
            sock.send(frame, zmq.NOBLOCK, copy=copy)
            return
        except zmq.Again:   # not connected (yet), or the queue is full: wait a little
            pass
        if not sock.poll(int(self.connect_timeout * 1000), zmq.POLLOUT):
            raise ConnectionError(f"no connection to {self.address} within {self.connect_timeout:g}s")
        sock.send(frame, zmq.NOBLOCK, copy=copy)

    def recv(self, timeout: float) -> bytes | None:
        sock = self.sock
        assert sock is not None
        try:   # a frame is usually waiting when pipelining: skip the poll syscall
            return sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass
        if timeout > 0 and sock.poll(max(1, int(timeout * 1000)), zmq.POLLIN):
            return sock.recv()
        return None

    def reconnect(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
