"""A node host: many nodes in one process, as KWOK packs them into one controller.

``kemu lab up --nodes-per-process K`` runs K nodes in each host process. Each node
keeps what makes it a node: its own client (DEALER socket, netem local name),
kubelet loop, Lease, kube-proxy table, node directory, wall clock and ctl socket
(``node.host_node``, ``node.host_ctl``). Hosts run the fake runtime only: real
containers belong to one kubelet process each.

Contract
--------
* ``NodeHost(server, specs, profile, ...)``; ``run(stop)`` serves until ``stop``.
  One thread, one epoll selector over every running node's socket, the nodes'
  ctl sockets and the command channel. A node is stepped when its socket has a
  frame or when its ``next_due()`` has come (kept in a heap, refreshed after
  each of its turns); otherwise the loop sleeps in the selector, at most
  ``MAX_WAIT``. An idle host does no work per node between the nodes' timers.
* Why a selector and not ``zmq.Poller``: ``zmq_poll`` asks every socket for its
  state on every call, about 200 ZeroMQ sockets per host (a node's DEALER and
  its ctl ROUTER), which was a third of an idle host's CPU; epoll wakes for the
  sockets that changed only. A ZeroMQ socket's ``FD`` signals that its
  ``EVENTS`` may have changed, and only once: so a woken socket's ``EVENTS``
  decides whether it has a frame, and after each of a node's turns (which
  sends and receives on its socket) its ``EVENTS`` is read again and a node
  with a frame left is stepped again at once.
  One node's failure (an exception in its turn) is logged and does not stop
  the others.
* A node's requests block its turn until answered (``emulator.client``). So that
  a network fault on one node (netem rules for its local name: isolate, delay,
  loss ...) holds up that node only, a node with rules is stepped by a thread of
  its own, as its own process would be, for as long as it has rules; then it
  returns to the loop. A turn that blocks for another reason (the apiserver is
  down) blocks the host, as it blocks every node process.
* Node operations, in the loop (``command(op, args)``; the supervisor sends them
  as JSON lines on ``command_fd`` and reads one JSON reply line each):
  ``node-stop`` (as if the node's process died: its loops stop, its socket
  closes, its Lease is no longer renewed), ``node-start`` (a fresh kubelet and
  kube-proxy that adopt the node's directory), ``node-pause`` (the node is no
  longer stepped; frames queue for it, as for a SIGSTOPped process),
  ``node-resume``, and ``status`` (``{node: running | paused | stopped}``).
  A reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...}``.
* Every log record written during a node's turn carries ``node=<name>``.
"""
from __future__ import annotations

import contextvars
import heapq
import itertools
import json
import math
import os
import queue
import selectors
import socket
import threading
import time
from typing import Any, Callable

import structlog
import zmq

from emulator import logging as klog
from emulator import netem
from emulator.process import StopFlag, die_with_parent, settle_heap
from emulator.profiles import Profile, get_profile
from emulator.transport.zmq import EVENTS, POLLIN
from node.host_node import HostedNode, NodeRun, NodeSpec

MAX_WAIT = 0.5   # the longest sleep: how soon a stop (SIGTERM) is noticed


class NodeHost:
    def __init__(self, server: str, specs: list[NodeSpec], profile: Profile, *, lab: str | None = None,
                 run_dir: str | None = None, command_fd: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stop: Any = None   # the process's StopFlag, once run() has it
        self.nodes = {s.name: HostedNode(s, server, profile, lab, host_stopping=self._host_stopping)
                      for s in specs}
        self.clock = clock
        self.log = klog.get_logger()
        self.selector = selectors.DefaultSelector()
        self._polled: dict[str, tuple[Any, int]] = {}   # node name -> (its socket, that socket's FD)
        self._again: set[HostedNode] = set()   # nodes with a frame left after their turn
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.steps = 0
        self.stopping = False
        self._handback: queue.SimpleQueue[tuple[HostedNode, NodeRun]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, (_WAKE, None))
        self.ctl = None
        if run_dir is not None:
            from node.host_ctl import NodeCtl
            self.ctl = NodeCtl(run_dir, self.nodes)
            for sock in self.ctl.sockets():
                self.selector.register(sock.getsockopt(zmq.FD), selectors.EVENT_READ, (_CTL, sock))
        self.commands: socket.socket | None = None
        self._cmd_buf = b""
        if command_fd is not None:
            self.commands = socket.socket(fileno=command_fd)
            self.commands.setblocking(False)
            self.selector.register(self.commands.fileno(), selectors.EVENT_READ, (_COMMANDS, None))

    # -- node operations -------------------------------------------------------
    def command(self, op: str, args: dict) -> Any:
        if op == "status":
            return {n.name: self._state(n) for n in self.nodes.values()}
        name = str(args.get("node"))
        node = self.nodes.get(name)
        if node is None:
            raise ValueError(f'node: Not found: "{name}": this host has {", ".join(self.nodes)}')
        if op == "node-stop":
            run, node.current = node.current, None
            self._unpoll(node)
            if run is not None and not run.threaded:   # a thread closes the run it steps
                run.close()
            self.log.warning("node_stopped", node=name)
        elif op == "node-start":
            if node.running:
                raise ValueError(f"{name} is already running: stop it first (node-stop)")
            node.open()
            self._schedule(node, self.clock())
            self.log.info("node_started", node=name)
        elif op == "node-pause":
            if not node.running:
                raise ValueError(f"{name} is not running")
            node.paused = True
            self._unpoll(node)   # frames wait in its socket's queue
            self._due[name] = math.inf
        elif op == "node-resume":
            if node.running and node.paused:
                node.paused = False
                self._schedule(node, self.clock())
        else:
            raise ValueError(f"unknown op {op!r}; supported: node-stop, node-start, node-pause, "
                             "node-resume, status")
        return {"node": name, "state": self._state(node)}

    @staticmethod
    def _state(node: HostedNode) -> str:
        return "stopped" if not node.running else "paused" if node.paused else "running"

    # -- the loop ------------------------------------------------------------
    def start(self, names: list[str] | None = None) -> None:
        now = self.clock()
        for name in names if names is not None else list(self.nodes):
            node = self.nodes[name]
            node.open()
            self._schedule(node, now)

    def _host_stopping(self) -> bool:
        return self.stopping or bool(self._stop)

    def run(self, stop: Any) -> None:
        self._stop = stop
        try:
            while not stop:
                self.run_once()
        finally:
            self.close()

    def run_once(self, max_wait: float = MAX_WAIT) -> None:
        now = self.clock()
        wait = max_wait
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)   # superseded: the node was stepped and rescheduled since
        if heap:
            wait = min(wait, max(0.0, heap[0][0] - now))
        if self._again:
            wait = 0.0
        # The selector rounds a wait up to whole milliseconds, so a timer is due when it ends.
        for key, _mask in self.selector.select(wait):
            what, obj = key.data
            if what is _NODE:
                polled = self._polled.get(obj.name)
                if polled is not None and _readable(polled[0]):
                    self._step(obj)
            elif what is _CTL:
                if _readable(obj):
                    self.ctl.serve(obj)
            elif what is _WAKE:
                self._take_back()
            elif what is _COMMANDS:
                self._read_commands()
        if self._again:
            again, self._again = self._again, set()
            for node in again:
                self._step(node)
        now = self.clock()
        while heap and heap[0][0] <= now:
            t, _, name = heapq.heappop(heap)
            if due.get(name) == t:
                self._step(self.nodes[name])
        if self.ctl is not None:
            self.ctl.check_state(now)

    def _step(self, node: HostedNode) -> None:
        run = node.current
        if run is None or node.paused or run.threaded:
            return
        if netem.TABLE.rules.get(node.name):
            self._detach(node, run)
            return
        structlog.contextvars.bind_contextvars(node=node.name)
        try:
            run.step()
        except Exception:   # one node's bug must not stop the host's other nodes
            self.log.exception("node_step_error")
        finally:
            structlog.contextvars.bind_contextvars(node=None)
        self.steps += 1
        self._schedule(node, None)

    def _schedule(self, node: HostedNode, at: float | None) -> None:
        self._poll(node)
        polled = self._polled.get(node.name)
        if polled is not None and _readable(polled[0]):
            # A frame that came during its turn, or before its socket was registered:
            # its FD will not signal for it, so it gets a turn at once.
            self._again.add(node)
        run = node.current
        if run is None or node.paused or run.threaded:
            t = math.inf
        else:
            t = run.next_due() if at is None else at
        self._due[node.name] = t
        if t != math.inf:
            heapq.heappush(self._heap, (t, next(self._seq), node.name))

    def _poll(self, node: HostedNode) -> None:
        """Keep the poller on the node's current socket (a reconnect makes a new one)."""
        run = node.current
        sock = None if run is None or node.paused or run.threaded else run.socket()
        old = self._polled.get(node.name)
        if old is not None and old[0] is sock:
            return
        if old is not None:
            self._unpoll(node)
        if sock is not None:
            fd = sock.getsockopt(zmq.FD)
            self.selector.register(fd, selectors.EVENT_READ, (_NODE, node))
            self._polled[node.name] = (sock, fd)

    def _unpoll(self, node: HostedNode) -> None:
        old = self._polled.pop(node.name, None)
        self._again.discard(node)
        if old is not None:
            try:
                self.selector.unregister(old[1])   # by FD: the socket may be closed already
            except (KeyError, ValueError):
                pass

    # -- nodes under a network fault: a thread each ------------------------------
    def _detach(self, node: HostedNode, run: NodeRun) -> None:
        run.threaded = True
        self._unpoll(node)
        self._due[node.name] = math.inf
        ctx = contextvars.copy_context()   # the process's log context (lab, component, pid)
        threading.Thread(target=ctx.run, args=(self._run_threaded, node, run), daemon=True,
                         name=f"node-{node.name}").start()
        self.log.info("node_detached", node=node.name, reason="netem rules")

    def _run_threaded(self, node: HostedNode, run: NodeRun) -> None:
        """The node's own loop (``node.kubelet.kubelet.run``'s), while it has netem rules."""
        structlog.contextvars.bind_contextvars(node=node.name)
        try:
            while (not self.stopping and node.current is run and not node.paused
                   and netem.TABLE.rules.get(node.name)):
                wait = max(0.0, min(MAX_WAIT, run.next_due() - time.monotonic()))
                try:
                    if run.started:
                        run.step(wait)
                    else:
                        run.step()
                        if not run.started:
                            time.sleep(wait)
                except Exception:
                    self.log.exception("node_step_error")
        finally:
            if node.current is not run or self.stopping:
                run.close()   # stopped while it ran here: it dies in this thread
            self._handback.put((node, run))
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _take_back(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                node, run = self._handback.get_nowait()
            except queue.Empty:
                return
            run.threaded = False
            if node.current is run:
                self._schedule(node, self.clock())

    def _read_commands(self) -> None:
        assert self.commands is not None
        try:
            chunk = self.commands.recv(65536)
        except BlockingIOError:
            return
        if not chunk:   # the supervisor is gone; PR_SET_PDEATHSIG ends this process
            self.selector.unregister(self.commands.fileno())
            return
        self._cmd_buf += chunk
        while b"\n" in self._cmd_buf:
            line, self._cmd_buf = self._cmd_buf.split(b"\n", 1)
            rid = None
            try:
                req = json.loads(line)
                rid = req.get("id")
                reply = {"ok": True, "result": self.command(str(req.get("op")), req.get("args") or {})}
            except Exception as e:   # noqa: BLE001 - a bad request is answered, never fatal
                reply = {"ok": False, "error": str(e)}
            reply["id"] = rid
            self.commands.setblocking(True)
            try:
                self.commands.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            finally:
                self.commands.setblocking(False)

    def close(self) -> None:
        self.stopping = True
        for node in self.nodes.values():
            self._unpoll(node)
            run, node.current = node.current, None
            if run is not None and not run.threaded:
                run.close()
        if self.ctl is not None:
            self.ctl.close()
        self.selector.close()


_NODE, _CTL, _WAKE, _COMMANDS = "node", "ctl", "wake", "commands"


def _readable(sock: Any) -> bool:
    """Whether a ZeroMQ socket has a frame to read (reading EVENTS also re-arms its FD)."""
    if sock is None or sock.closed:
        return False
    return bool(sock.getsockopt(EVENTS) & POLLIN)


def run(server: str, specs: list[NodeSpec], profile_name: str, *, run_dir: str | None = None,
        log_path: str | None = None, lab: str | None = None, command_fd: int | None = None,
        start: list[str] | None = None, stop: Any = None) -> int:
    """A node host process's entry: the nodes in ``start`` (default all) run at once."""
    die_with_parent()
    settle_heap()
    klog.configure("kubelet", lab=lab, path=log_path)
    stop = stop if stop is not None else StopFlag()
    host = NodeHost(server, specs, get_profile(profile_name), lab=lab, run_dir=run_dir,
                    command_fd=command_fd)
    host.log.info("node_host_started", nodes=len(specs), pid=os.getpid())
    host.start(start)
    host.run(stop)
    host.log.info("node_host_stopped")
    return 0
