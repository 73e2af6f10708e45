"""One transport interface, two backends.

Contract
--------
``listen(address)`` returns a ``ServerTransport``; ``connect(address)`` returns a
``ClientTransport``. Both move opaque frames (bytes); framing and meaning belong
to ``emulator.protocol``.

* ``tcp://host:port`` and ``ipc://path``: ZeroMQ ROUTER (server) and DEALER
  (client), ``linger=0``, ``ROUTER_MANDATORY`` on the ROUTER.
* ``mem://name``: an in-process backend over queues, for tests that run the
  real components in one process. Same semantics: per-peer ordering, a
  ``send`` to a vanished peer returns False.

``ClientTransport.send`` raises ConnectionError when no server is there
(fast, instead of queueing frames for a server that may never come).
``ServerTransport.send`` never blocks: it returns False when the peer is gone
or its queue is full; the caller decides what that means (a watch is closed).
"""
from __future__ import annotations

from typing import Protocol


class ServerTransport(Protocol):
    address: str

    def recv_batch(self, timeout: float, max_frames: int = 512) -> list[tuple[bytes, bytes]]:
        """Wait up to ``timeout`` seconds, then return every (peer, frame) ready, at most max_frames."""

    def send(self, peer: bytes, frame: bytes) -> bool: ...

    def close(self) -> None: ...


class ClientTransport(Protocol):
    address: str

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None:
        """One frame, or None after ``timeout`` seconds."""

    def reconnect(self) -> None:
        """Drop the connection and dial again (a new peer identity to the server)."""

    def close(self) -> None: ...


def listen(address: str, **opts) -> ServerTransport:
    if address.startswith("mem://"):
        from emulator.transport.mem import MemListener
        return MemListener(address)
    from emulator.transport.zmq import ZmqListener
    return ZmqListener(address, **opts)


def connect(address: str, **opts) -> ClientTransport:
    """A client connection; ``opts`` (``connect_timeout``) apply to ZeroMQ, the
    in-process transport connects at once and ignores them."""
    if address.startswith("mem://"):
        from emulator.transport.mem import MemConnection
        return MemConnection(address)
    from emulator.transport.zmq import ZmqConnection
    return ZmqConnection(address, **opts)


def check_address(address: str) -> str | None:
    """Return None when ``address`` is usable, else what is wrong with it."""
    for scheme in ("tcp://", "ipc://", "mem://"):
        if address.startswith(scheme):
            rest = address[len(scheme):]
            if not rest:
                return f"{address!r} has nothing after {scheme}"
            if scheme == "tcp://":
                host, _, port = rest.rpartition(":")
                if not host or not port.isdigit() or not 0 <= int(port) < 65536:
                    return f"{address!r} is not tcp://HOST:PORT"
            return None
    return f"{address!r} must start with tcp://, ipc:// or mem://"
