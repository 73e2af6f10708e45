"""The supervisor's side of node hosts (``--nodes-per-process K``, ``node.host``).

Contract
--------
* A node host is a child (role ``nodehost``, ``nodehost-1`` ...) holding ``members``:
  (node name, node index). Each of its nodes keeps a child record of its own (role
  ``node``, ``host`` = the host's name, ``pid`` = the host's pid) whose state the
  supervisor keeps, so ``state.json``, ``kemu lab status`` and chaos name nodes as
  they do when every node is a process.
* The supervisor talks to a host over a Unix socket pair made at the fork (no
  ZeroMQ here: the supervisor forks), one JSON line each way per request, with an
  ``id`` (a late reply to a request that timed out is skipped).
* Signals to a packed node act on that node only, in its host: KILL, TERM and INT
  -> ``node-stop`` (the node is ``exited``, exit code -signal), STOP ->
  ``node-pause`` (``paused``), CONT -> ``node-resume``. ``restart`` of a packed node
  is ``node-stop`` then ``node-start`` in a running host; in a host that is not
  running it starts the host with that node only (its other nodes stay exited
  until they are restarted). A host that exits takes its running nodes with it
  (``exited``, the host's exit code).
* ``add-nodes`` packs the new nodes into new hosts; ``remove-node`` stops the
  node in its host, and stops the host when it was its last node.
"""
from __future__ import annotations

import itertools
import json
import select
import signal
import socket
import time
from typing import Any

HOST_CALL_TIMEOUT = 5.0
NODE_OPS = {signal.SIGKILL: "node-stop", signal.SIGTERM: "node-stop", signal.SIGINT: "node-stop",
            signal.SIGSTOP: "node-pause", signal.SIGCONT: "node-resume"}


class HostError(Exception):
    pass


class NodeHosts:
    """Mixed into ``lab.supervisor.Supervisor``; uses its ``children``, ``_fork`` and ``log``."""

    _call_ids = itertools.count(1)

    def _host_call(self, host: Any, op: str, args: dict, timeout: float = HOST_CALL_TIMEOUT) -> Any:
        if host.state != "running" or host.cmd is None:
            raise HostError(f"its node host {host.name} is {host.state}")
        rid = next(self._call_ids)
        sock: socket.socket = host.cmd
        try:
            sock.sendall(json.dumps({"id": rid, "op": op, "args": args}).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while True:
                while b"\n" not in host.cmd_buf:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([sock], [], [], left)[0]:
                        raise HostError(f"node host {host.name} did not answer {op} within {timeout:g}s")
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise HostError(f"node host {host.name} closed its command channel")
                    host.cmd_buf += chunk
                line, host.cmd_buf = host.cmd_buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") in (rid, None):
                    break
        except OSError as e:
            raise HostError(f"node host {host.name}: {e}") from None
        if not reply.get("ok"):
            raise HostError(f"node host {host.name}: {op}: {reply.get('error')}")
        return reply.get("result")

    def _new_hosts(self, names: list[str], first_index: int) -> list[Any]:
        from lab.supervisor import Child
        first_host = 1 + max([c.index for c in self.children.values() if c.role == "nodehost"] or [0])
        hosts = []
        for hname, members in self.config.host_groups(names, first_host, first_index):
            h = self.children.setdefault(hname, Child(hname, "nodehost", int(hname.rsplit("-", 1)[1])))
            h.members = list(members)
            for name, i in members:
                self.children.setdefault(name, Child(name, "node", i, host=hname))
            hosts.append(h)
        return hosts

    def _host_forked(self, h: Any) -> None:
        """After a host's fork: its started nodes share its pid and start time."""
        started = set(h.start_nodes if h.start_nodes is not None else [n for n, _ in h.members])
        h.start_nodes = None
        for name, _i in h.members:
            c = self.children.get(name)
            if c is not None and name in started:
                c.pid, c.state, c.started_at, c.exit_code = h.pid, "running", h.started_at, None

    def _host_exited(self, h: Any, code: int | None) -> None:
        if h.cmd is not None:
            h.cmd.close()
            h.cmd, h.cmd_buf = None, b""
        for name, _i in h.members:
            c = self.children.get(name)
            if c is not None and c.state in ("running", "paused"):
                c.state, c.exit_code = "exited", code

    def _packed_signal(self, c: Any, sig: int) -> None:
        op = NODE_OPS.get(sig)
        if op is None:
            raise HostError(f"{signal.Signals(sig).name} has no meaning for a node in a node host")
        if c.state not in ("running", "paused"):
            raise HostError(f"{c.name} is not running")
        self._host_call(self.children[c.host], op, {"node": c.name})
        if op == "node-stop":
            c.state, c.exit_code = "exited", -int(sig)
            self.log.warning("process exited", process=c.name, role=c.role, pid=c.pid, host=c.host,
                             exit_code=c.exit_code, uptime_s=round(time.time() - c.started_at, 3))
        else:
            c.state = "paused" if op == "node-pause" else "running"
            self.log.warning("signal sent", process=c.name, signal=signal.Signals(sig).name,
                             pid=c.pid, host=c.host)

    def _packed_restart(self, c: Any) -> None:
        h = self.children[c.host]
        c.wanted = True
        if h.state == "running":
            if c.state in ("running", "paused"):
                self._host_call(h, "node-stop", {"node": c.name})
            self._host_call(h, "node-start", {"node": c.name})
            c.state, c.exit_code, c.started_at, c.pid = "running", None, time.time(), h.pid
        elif h.state == "paused":
            raise HostError(f"its node host {h.name} is paused; resume it first (kill {h.name} CONT)")
        else:
            h.wanted = True
            h.restart_at = None
            h.start_nodes = [c.name]
            h.restarts += 1
            self._fork(h)
        c.restarts += 1
        self.log.info("node restarted in its host", process=c.name, host=h.name)

    def _packed_remove(self, c: Any) -> None:
        h = self.children[c.host]
        if c.state in ("running", "paused") and h.state == "running":
            try:
                self._host_call(h, "node-stop", {"node": c.name})
            except HostError as e:
                self.log.warning("node stop failed", process=c.name, error=str(e))
        h.members = [(n, i) for n, i in h.members if n != c.name]
        if not h.members:   # its last node: the host goes too
            h.wanted = False
            self._signal(h, signal.SIGCONT)
            self._signal(h, signal.SIGTERM)
            del self.children[h.name]
            self._reap_removed(h)
