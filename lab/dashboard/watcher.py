"""The dashboard's watch loop: informers on Nodes, Pods and Events, and the chaos record.

Contract
--------
* ``WatchLoop(server, chaos_path, state, lock, hub)`` runs one thread that owns one
  ``Client`` (a client is used from one thread). It lists then watches Nodes, Pods and
  Events (``emulator.informer``: relists after an expired or broken watch, backs off
  while the apiserver is unreachable) and checks ``chaos_path`` (the lab's
  ``run/chaos.json``) for a change of its (mtime, inode, size) on every pass. There is
  no polling of the apiserver: each pass waits for watch events (``client.poll``, at
  most ``tick`` seconds).
* Each pass applies what arrived to ``state`` under ``lock`` and, if anything changed,
  publishes ``state.take_delta()`` to ``hub`` as a "delta" message, still under the
  lock (so a new subscriber's snapshot and the deltas after it never overlap).
* ``state.set_status`` says "watching", or why not: "apiserver unreachable: ..." (a list
  or watch request failed), "apiserver not answering (...)" (no watch event or bookmark
  for 3 bookmark intervals; the client keeps trying to resume), "rewatching".
* ``start()`` returns at once; ``stop()`` ends the thread (bounded) and closes the client.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from emulator.api.errors import APIError
from emulator.client import Client
from emulator.informer import Informer, start_informers
from lab.dashboard.hub import Hub, encode
from lab.dashboard.state import DashboardState

KINDS = ("Node", "Pod", "Event")


def read_faults(path: Path) -> list[dict[str, Any]]:
    """The active faults in ``run/chaos.json`` (replaced atomically, so read without its lock)."""
    import json
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    faults = data.get("faults") if isinstance(data, dict) else None
    return [f for f in (faults or {}).values() if isinstance(f, dict)]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class WatchLoop:
    def __init__(self, server: str, chaos_path: Path | None, state: DashboardState,
                 lock: threading.Lock, hub: Hub, *, lab: str | None = None, tick: float = 0.25) -> None:
        self.server = server
        self.chaos_path = chaos_path
        self.state = state
        self.lock = lock
        self.hub = hub
        self.lab = lab
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-watch", daemon=True)
        self._pending: list[tuple[str, str, dict]] = []
        self._fault_sig: tuple[int, int, int] | None | bool = False   # False: not read yet

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- the loop -----------------------------------------------------------
    def _handlers(self, kind: str) -> tuple[Any, Any, Any]:
        add = lambda obj: self._pending.append((kind, "ADDED", obj))   # noqa: E731
        upd = lambda old, new: self._pending.append((kind, "MODIFIED", new))   # noqa: E731
        dele = lambda obj: self._pending.append((kind, "DELETED", obj))   # noqa: E731
        return add, upd, dele

    def _run(self) -> None:
        client = Client(self.server, component="dashboard", lab=self.lab, timeout=3, retries=1)
        informers = []
        for kind in KINDS:
            inf = Informer(client, kind)
            inf.add_event_handler(*self._handlers(kind))
            informers.append(inf)
        started = False
        backoff = 0.1
        try:
            while not self._stop.is_set():
                try:
                    if not started:
                        start_informers(informers)
                        started = True
                        backoff = 0.1
                        self._status("watching")
                    else:
                        client.poll(self.tick)
                        for inf in informers:
                            inf.process()
                        self._status(self._health(client, informers))
                except APIError as e:
                    self._status(f"apiserver unreachable: {e.message}")
                    self._stop.wait(backoff)
                    backoff = min(5.0, backoff * 2)
                self._publish()
        finally:
            for inf in informers:
                inf.watch = None   # the connection closes with the client; no unwatch round trip
            client.close()

    @staticmethod
    def _health(client: Client, informers: list[Informer]) -> str:
        """"watching" while the apiserver is heard from: every watch hears at least a
        bookmark each bookmarkInterval, and the client resumes watches on its own."""
        watches = [i.watch for i in informers if i.watch is not None and not i.watch.closed]
        if len(watches) < len(informers):
            return "rewatching"
        silent = time.monotonic() - max(w.last_heard for w in watches)
        if silent > 3 * client.bookmark_interval:
            return f"apiserver not answering (nothing heard for {int(silent)}s)"
        return "watching"

    def _status(self, status: str) -> None:
        with self.lock:
            self.state.set_status(status)

    def _publish(self) -> None:
        pending, self._pending = self._pending, []
        faults = None
        if self.chaos_path is not None:
            sig = _signature(self.chaos_path)
            if sig != self._fault_sig:
                self._fault_sig = sig
                faults = read_faults(self.chaos_path)
        with self.lock:
            for kind, typ, obj in pending:
                if kind == "Node":
                    self.state.on_node(typ, obj)
                elif kind == "Pod":
                    self.state.on_pod(typ, obj)
                else:
                    self.state.on_event(typ, obj)
            if faults is not None:
                self.state.set_faults(faults)
            delta = self.state.take_delta()
            if delta is not None:
                self.hub.publish(encode("delta", delta))
