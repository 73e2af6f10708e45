"""Fan-out of the dashboard's stream: one publisher (the watch loop), many SSE subscribers.

Contract
--------
* ``Hub.subscribe(first)`` registers a subscriber whose queue starts with ``first``
  (the snapshot message); ``publish(msg)`` appends ``msg`` to every subscriber's queue.
  The caller makes ``subscribe`` and ``publish`` atomic with respect to the state the
  snapshot and the deltas come from (the dashboard holds its state lock around both),
  so a subscriber sees the snapshot followed by exactly the deltas after it.
* A message is ``(event, data)``: an SSE event name and a JSON-able dict, encoded once
  by ``encode`` and shared between subscribers.
* Never blocks the publisher: a subscriber whose queue is full (``maxsize`` messages:
  a browser that stopped reading) is dropped; its stream ends, and the browser's
  EventSource reconnects and starts over from a fresh snapshot.
* ``Subscriber.get(timeout)``: the next encoded message, ``b""`` when ``timeout``
  passes (the caller sends a keep-alive comment), or None once the subscriber is
  dropped or the hub is closed (what was still queued is discarded). ``close()`` ends every subscriber.
"""
from __future__ import annotations

import json
import queue
import threading
from typing import Any

_END = None


def encode(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Events message; JSON has no raw newlines, so one data line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize)
        self.dropped = False

    def get(self, timeout: float) -> bytes | None:
        if self.dropped:
            return None   # it missed messages: what is queued is no use
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None if self.dropped else b""


class Hub:
    def __init__(self, maxsize: int = 2000) -> None:
        self.maxsize = maxsize
        self.subscribers: list[Subscriber] = []
        self.closed = False
        self._lock = threading.Lock()

    def subscribe(self, first: bytes) -> Subscriber:
        sub = Subscriber(self.maxsize)
        sub.queue.put_nowait(first)
        with self._lock:
            if self.closed:
                sub.dropped = True
            else:
                self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def publish(self, msg: bytes) -> None:
        with self._lock:
            subs = list(self.subscribers)
        for sub in subs:
            try:
                sub.queue.put_nowait(msg)
            except queue.Full:
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        self.unsubscribe(sub)
        try:
            sub.queue.put_nowait(_END)   # wakes a get() that is waiting
        except queue.Full:
            pass   # a full queue: get() does not wait

    def close(self) -> None:
        with self._lock:
            self.closed = True
            subs, self.subscribers = self.subscribers, []
        for sub in subs:
            self._drop(sub)
