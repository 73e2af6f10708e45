"""The per-node control sockets of a node host, served from the host's loop.

Chaos reaches a lab process through its ctl socket (``emulator.ctl``), by name.
A packed node has no process of its own, so its host serves one ctl socket per
node, at the address a node process would have (``ctl.socket_path(run_dir,
node)``), with that node's state file (``ctl.state_path``): network and clock
faults on ``node-1234`` reach node-1234 only.

Contract
--------
* ``NodeCtl(run_dir, nodes)`` binds one ZeroMQ ROUTER per node and applies each
  node's saved state at once (a restarted host gets its nodes' faults back).
* Ops per node: ``ping`` (``{"pid", "node", "running"}``); ``netem`` (that node's
  netem local name only: its client's link to the apiserver); ``clock`` (that
  node's own wall clock, not the process's); ``reload``; ``metrics`` (empty: the
  host's own ctl socket reports the process's metrics, once).
* ``sockets()``: the ROUTERs to poll; ``serve(sock)`` answers every request
  waiting on one, without blocking; ``check_state(now)`` re-applies a state file
  that changed, checking at most every ``ctl.STATE_RECHECK`` seconds, as
  ``CtlServer``'s thread does for a node process (a ``reload`` applies it at
  once; the check is for a host that was paused when the reload came). Every
  second, it was a ``stat`` per node: 2.6% of a node host's samples while
  100,000 pods started.
* ``close()`` closes every socket.
"""
from __future__ import annotations

import os
from typing import Any

import zmq

from emulator import clock, ctl


def _node_handlers(name: str, node: Any) -> dict[str, ctl.Handler]:
    handlers = ctl.standard_handlers([name])

    def set_clock(args: dict) -> dict:
        clock.check(args)
        node.clock.set(float(args.get("offset", 0.0)), args.get("strobe"))
        return {"skew": node.clock.skew()}

    def metrics(args: dict) -> dict:
        return {"families": []} if args.get("format") == "families" else {"text": ""}

    handlers.update({"clock": set_clock, "metrics": metrics,
                     "ping": lambda _a: {"pid": os.getpid(), "node": name, "running": node.running}})
    return handlers


class NodeCtl:
    def __init__(self, run_dir: str, nodes: dict[str, Any]) -> None:
        self.servers: dict[zmq.Socket, ctl.CtlServer] = {}
        self._mtimes: dict[ctl.CtlServer, int | None] = {}
        self._next_check = 0.0
        zctx = zmq.Context.instance()
        for name, node in nodes.items():
            srv = ctl.CtlServer(ctl.socket_path(run_dir, name), _node_handlers(name, node),
                                ctl.state_path(run_dir, name))
            self._mtimes[srv] = self._mtime(srv)
            srv.reload()
            sock = zctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(srv.path)
            self.servers[sock] = srv

    @staticmethod
    def _mtime(srv: ctl.CtlServer) -> int | None:
        try:
            return os.stat(srv.state_path).st_mtime_ns if srv.state_path else None
        except OSError:
            return None

    def sockets(self) -> list[zmq.Socket]:
        return list(self.servers)

    def serve(self, sock: zmq.Socket) -> None:
        srv = self.servers[sock]
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            srv.answer(sock, parts)

    def check_state(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + ctl.STATE_RECHECK
        for srv, seen in self._mtimes.items():
            m = self._mtime(srv)
            if m != seen:
                self._mtimes[srv] = m
                srv.reload()

    def close(self) -> None:
        for sock in self.servers:
            sock.close(0)
        self.servers.clear()
