"""In-process backend over queues, for tests that run real components in one process.

Contract: ``mem://NAME`` names a listener in this process. Frames are delivered
in order per peer; a peer that has closed is unreachable (send returns False).
Thread-safe: a server loop in one thread and clients in others.
"""
from __future__ import annotations

import itertools
import queue
import threading

_listeners: dict[str, "MemListener"] = {}
_lock = threading.Lock()
_ids = itertools.count(1)


class MemListener:
    def __init__(self, address: str) -> None:
        self.address = address
        self.inbox: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
        self.peers: dict[bytes, MemConnection] = {}
        with _lock:
            if address in _listeners:
                raise OSError(f"address already in use: {address}")
            _listeners[address] = self

    def recv_batch(self, timeout: float, max_frames: int = 512) -> list[tuple[bytes, bytes]]:
        try:
            first = self.inbox.get(timeout=max(timeout, 0.0)) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return []
        out = [first]
        while len(out) < max_frames:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return out

    def send(self, peer: bytes, frame: bytes) -> bool:
        conn = self.peers.get(peer)
        if conn is None or conn.closed:
            return False
        conn.inbox.put(frame)
        return True

    def close(self) -> None:
        with _lock:
            if _listeners.get(self.address) is self:
                del _listeners[self.address]


class MemConnection:
    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False
        self._open()

    def _open(self) -> None:
        self.identity = next(_ids).to_bytes(8, "big")
        self.inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.closed = False

    def send(self, frame: bytes) -> None:
        listener = _listeners.get(self.address)
        if listener is None:   # as the ZeroMQ backend: no server, no queueing
            raise ConnectionError(f"no connection to {self.address}: nothing listens there")
        listener.peers[self.identity] = self
        listener.inbox.put((self.identity, frame))

    def recv(self, timeout: float) -> bytes | None:
        try:
            return self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None

    def reconnect(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        self.closed = True
        listener = _listeners.get(self.address)
        if listener is not None:
            listener.peers.pop(self.identity, None)
