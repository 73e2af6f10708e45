"""The lab supervisor: spawns, watches and stops every process of one lab.

Contract
--------
* Runs as its own process (``python -m lab.supervisor LAB_DIR``), started by
  ``kemu lab up``. It never uses ZeroMQ, so it can fork safely: it imports
  everything the components need, freezes the heap (``gc.freeze``) and then
  forks the scheduler, the controller-manager and every node from itself
  (it is the zygote). The apiserver is a fresh interpreter (it owns the store).
* Order: the apiserver, then the scheduler, controller-manager, DNS and the
  metrics collector (``lab.metrics_addon``); nodes
  are forked once those have said they started (a byte on a pipe, as
  ``sd_notify`` does; at most 10 s), as kubeadm joins nodes to a running
  control plane.
* Every child asks Linux to kill it when the supervisor dies
  (``PR_SET_PDEATHSIG``): a lab never leaves orphans.
* A control-plane process that exits unexpectedly is restarted with
  exponential back-off (1 s doubling to 30 s, reset after 60 s of uptime). A
  node is not restarted unless asked (``restart``): a dead node is an
  experiment's result. Every exit and restart is logged.
* The apiserver keeps its first address across restarts, so clients reconnect.
* Control: a Unix socket ``run/supervisor.sock`` takes one JSON request per
  connection and answers one JSON reply: ``status``, ``add-nodes``,
  ``remove-node``, ``kill`` (any signal), ``restart``, ``down``.
* ``run/state.json`` is rewritten on every change; readers never see half a file.
* With ``nodes_per_process`` K > 1 the nodes run K to a node host (``nodehost-N``,
  ``node.host``); each node still has its own record (``host``: its host, ``pid``:
  the host's) and ``kill``/``restart``/``remove-node`` of a node act on that node
  only, in its host (``lab.supervisor_hosts``).
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import component, ctl, metrics
from emulator.logging import ENV_MAX_FILE_SIZE, ENV_MAX_LAB_SIZE, configure, get_logger
from emulator.process import StopFlag, die_with_parent
from lab.children import ROLES, ChildContext, preimport
from lab.config import LabConfig
from lab.paths import LabLayout
from lab.supervisor_hosts import HostError, NodeHosts

CONTROL_PLANE = ("apiserver", "scheduler", "controller-manager", "dns", "metrics")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP,
           "CONT": signal.SIGCONT, "INT": signal.SIGINT}


@dataclass
class Child:
    name: str
    role: str
    index: int = 0
    pid: int = 0
    popen: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    state: str = "pending"          # running | exited | stopped | paused
    exit_code: int | None = None
    backoff: float = 1.0
    restart_at: float | None = None
    wanted: bool = True
    host: str = ""                  # a node in a node host: the host's name
    members: list[tuple[str, int]] = field(default_factory=list)   # a node host: its nodes
    start_nodes: list[str] | None = None   # a node host's next start: only these (None: all)
    cmd: socket.socket | None = None       # a node host: the supervisor's end of its commands
    cmd_buf: bytes = b""

    def as_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "role": self.role, "pid": self.pid, "state": self.state,
             "started_at": self.started_at, "restarts": self.restarts,
             "exit_code": self.exit_code}
        if self.host:
            d["host"] = self.host
        return d


@dataclass
class Supervisor(NodeHosts):
    layout: LabLayout
    config: LabConfig
    children: dict[str, Child] = field(default_factory=dict)
    server: str = ""
    stop: StopFlag | None = None

    def __post_init__(self) -> None:
        self.log = get_logger()
        self.sock: socket.socket | None = None

    # -- lifecycle ----------------------------------------------------------
    def main(self) -> int:
        self.stop = StopFlag()
        failed = preimport()
        if failed:
            self.log.warning("preimport failed", modules=failed)
        gc.freeze()   # children share the imported heap copy-on-write
        self._open_control()
        self.layout.supervisor_pid.write_text(f"{os.getpid()}\n")
        try:
            self._start_apiserver(self.children.setdefault(
                "apiserver", Child("apiserver", "apiserver")))
            ready = [self._fork(self.children.setdefault(role, Child(role, role)), notify=True)
                     for role in ("scheduler", "controller-manager") + (("dns",) if self.config.dns else ())
                     + (("metrics",) if self.config.metrics else ())]
            self._wait_started([fd for fd in ready if fd is not None])
            # Nodes wait at a starting gate until all are forked: a fork loop that
            # competes with a hundred starting children for two cores runs 3x slower.
            gate_r, gate_w = os.pipe()
            forks = (self._new_hosts(self.config.node_names, 1) if self.config.packed else
                     [self.children.setdefault(name, Child(name, "node", i))
                      for i, name in enumerate(self.config.node_names, start=1)])
            for c in forks:
                self._fork(c, gate=(gate_r, gate_w))
            os.close(gate_r)
            os.write(gate_w, b"g" * len(forks))
            os.close(gate_w)
            self._save_state()
            while not self.stop:
                self._serve_control(0.1)
                self._reap()
                self._restart_due()
        except Exception:
            self.log.exception("supervisor failed")
            return 1
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        for c in self.children.values():
            c.wanted = False
        live = [c for c in self.children.values() if c.state in ("running", "paused") and not c.host]
        for c in live:
            self._signal(c, signal.SIGCONT)
            self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.state in ("running", "paused") for c in live):
            self._reap()
            time.sleep(0.02)
        for c in live:
            if c.state in ("running", "paused"):
                self._signal(c, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.state in ("running", "paused") for c in live):
            self._reap()
            time.sleep(0.02)
        for c in self.children.values():
            if c.host and c.state in ("running", "paused"):
                c.state = "exited"
        self._save_state(final=True)
        for p in (self.layout.supervisor_sock, self.layout.endpoint, self.layout.supervisor_pid):
            try:
                p.unlink()
            except OSError:
                pass
        self.log.info("lab stopped", lab=self.config.name)

    # -- starting children --------------------------------------------------
    def _start_apiserver(self, c: Child) -> None:
        listen = self.server or f"tcp://127.0.0.1:{self.config.port}"
        from emulator.profiles import get_profile
        prof = get_profile(self.config.process_profile)
        if self.layout.endpoint.exists():
            self.layout.endpoint.unlink()
        c.popen = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--data-dir", str(self.layout.store),
             "--listen", listen, "--endpoint-file", str(self.layout.endpoint),
             "--log-file", str(self.layout.log_for("apiserver")), "--lab", self.config.name,
             "--bookmark-interval", str(prof.watch_bookmark_interval),
             "--default-toleration-seconds", str(prof.default_toleration_seconds),
             "--event-ttl", str(prof.event_ttl),
             "--ctl-dir", str(self.layout.run)],
            preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)
        c.pid, c.state, c.started_at, c.exit_code = c.popen.pid, "running", time.time(), None
        deadline = time.monotonic() + 30
        while not self.layout.endpoint.exists():
            if c.popen.poll() is not None:
                raise RuntimeError(f"apiserver exited with {c.popen.returncode} while starting "
                                   f"(see {self.layout.log_for('apiserver')})")
            if time.monotonic() > deadline:
                raise RuntimeError("apiserver did not start within 30s")
            time.sleep(0.01)
        self.server = self.layout.endpoint.read_text().strip()
        self.log.info("process started", process="apiserver", pid=c.pid, address=self.server)

    def _wait_started(self, fds: list[int], timeout: float = 10.0) -> None:
        """Wait until each control-plane child has started (one byte on its pipe), or
        died (EOF), or ``timeout`` passes, so that nodes join a running control plane
        as they do under kubeadm, and do not compete with its start for the cores."""
        t0 = time.monotonic()
        pending = set(fds)
        while pending and time.monotonic() - t0 < timeout:
            readable, _, _ = select.select(list(pending), [], [], max(0.0, timeout - (time.monotonic() - t0)))
            for fd in readable:
                os.read(fd, 1)
                pending.discard(fd)
        for fd in fds:
            os.close(fd)
        self.log.info("control plane started", waited_s=round(time.monotonic() - t0, 3),
                      not_started=len(pending))

    def _fork(self, c: Child, gate: tuple[int, int] | None = None, notify: bool = False) -> int | None:
        """Fork ``c``. With ``notify``, returns the read end of a pipe on which the
        child writes one byte once it has started (see emulator.component)."""
        ctx = ChildContext(self.layout, self.config, c.name, c.index, self.server,
                           members=list(c.members), start=c.start_nodes)
        ready_r, ready_w = os.pipe() if notify else (None, None)
        cmd_parent, cmd_child = socket.socketpair() if c.role == "nodehost" else (None, None)
        pid = os.fork()
        if pid == 0:   # the child
            code = 0
            ctl_server = None
            try:
                if self.sock is not None:
                    self.sock.close()
                for other in self.children.values():   # other hosts' command channels
                    if other.cmd is not None:
                        other.cmd.close()
                if cmd_child is not None:
                    cmd_parent.close()
                    ctx.command_fd = cmd_child.detach()
                if ready_w is not None:
                    os.close(ready_r)
                    component.notify_fd = ready_w
                if gate is not None:
                    os.close(gate[1])
                    os.read(gate[0], 1)   # EOF (the supervisor died) also opens the gate
                    os.close(gate[0])
                die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                ctl_server = ctl.serve(c.name, self.layout.run, [c.name])
                metrics.install(ctl_server)   # the ``metrics`` op; the registry is made after the fork
                ROLES[c.role](ctx)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                if ctl_server is not None:
                    ctl_server.close()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        c.pid, c.popen, c.state, c.started_at, c.exit_code = pid, None, "running", time.time(), None
        if cmd_child is not None:
            cmd_child.close()
            c.cmd, c.cmd_buf = cmd_parent, b""
            self._host_forked(c)
        self.log.info("process started", process=c.name, role=c.role, pid=pid)
        if ready_w is not None:
            os.close(ready_w)
        return ready_r

    def _start(self, c: Child) -> None:
        if c.role == "apiserver":
            self._start_apiserver(c)
        else:
            self._fork(c)

    # -- watching children --------------------------------------------------
    def _reap(self) -> None:
        changed = False
        for c in self.children.values():
            if c.state not in ("running", "paused") or c.host:
                continue
            if c.popen is not None:
                code = c.popen.poll()
                if code is None:
                    continue
            else:
                try:
                    pid, status = os.waitpid(c.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = c.pid, 0
                if pid == 0:
                    continue
                code = os.waitstatus_to_exitcode(status)
            changed = True
            c.state, c.exit_code = "exited", code
            uptime = time.time() - c.started_at
            self.log.warning("process exited", process=c.name, role=c.role, pid=c.pid,
                             exit_code=code, uptime_s=round(uptime, 3))
            if c.role == "nodehost":
                self._host_exited(c, code)
            if c.wanted and c.role in CONTROL_PLANE and not self.stop:
                if uptime > 60:
                    c.backoff = 1.0
                c.restart_at = time.monotonic() + c.backoff
                self.log.info("restart scheduled", process=c.name, in_s=c.backoff)
                c.backoff = min(30.0, c.backoff * 2)
        if changed:
            self._save_state()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for c in self.children.values():
            if c.restart_at is not None and now >= c.restart_at and c.state == "exited" and c.wanted:
                c.restart_at = None
                c.restarts += 1
                try:
                    self._start(c)
                    self.log.info("process restarted", process=c.name, restarts=c.restarts)
                except Exception as e:
                    self.log.error("restart failed", process=c.name, error=str(e))
                    c.restart_at = now + c.backoff
                    c.backoff = min(30.0, c.backoff * 2)
                self._save_state()

    def _signal(self, c: Child, sig: int) -> bool:
        if c.state not in ("running", "paused") or c.pid <= 0:
            return False
        try:
            os.kill(c.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _save_state(self, final: bool = False) -> None:
        self.layout.write_json(self.layout.state, {
            "supervisor": 0 if final else os.getpid(), "server": self.server,
            "lab": self.config.name, "updated": time.time(),
            "processes": [c.as_dict() for c in self.children.values()]})

    # -- control socket -----------------------------------------------------
    def _open_control(self) -> None:
        path = str(self.layout.supervisor_sock)
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(16)
        s.setblocking(False)
        self.sock = s

    def _serve_control(self, timeout: float) -> None:
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                req = json.loads(data.decode() or "{}")
                reply = self._handle(req)
            except Exception as e:
                reply = {"ok": False, "error": f"bad control request: {e}"}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    def _handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return {"ok": True, "server": self.server, "processes":
                    [c.as_dict() for c in self.children.values()]}
        if op == "add-nodes":
            count = int(req.get("count", 0))
            if count < 1:
                return {"ok": False, "error": "add-nodes: count must be at least 1"}
            start = 1 + max([c.index for c in self.children.values() if c.role == "node"] or [0])
            names = [f"node-{i}" for i in range(start, start + count)]
            self.config.node_names.extend(names)
            forks = (self._new_hosts(names, start) if self.config.packed else
                     [self.children.setdefault(n, Child(n, "node", i)) for i, n in enumerate(names, start)])
            for c in forks:
                self._fork(c)
            self.config.nodes = len(self.config.node_names)
            self.layout.write_json(self.layout.config, self.config.as_dict())
            self._save_state()
            return {"ok": True, "added": names}
        name = req.get("name")
        c = self.children.get(str(name))
        if op in ("remove-node", "kill", "restart", "down") and op != "down" and c is None:
            return {"ok": False, "error": f'no process "{name}" in lab {self.config.name}; '
                                          f'see "kemu lab status"'}
        if op == "remove-node":
            if c.role != "node":
                return {"ok": False, "error": f"{name} is not a node"}
            c.wanted = False
            if c.host:
                self._packed_remove(c)
            else:
                self._signal(c, signal.SIGCONT)
                self._signal(c, signal.SIGTERM)
            del self.children[c.name]
            self.config.node_names.remove(c.name)
            self.config.nodes = len(self.config.node_names)
            self.layout.write_json(self.layout.config, self.config.as_dict())
            self._save_state()
            if not c.host:
                self._reap_removed(c)
            return {"ok": True, "removed": c.name}
        if op in ("kill", "restart") and c.host:
            return self._handle_packed(op, c, req)
        if op == "kill":
            sig = SIGNALS.get(str(req.get("signal", "KILL")).upper())
            if sig is None:
                return {"ok": False, "error": f"unknown signal {req.get('signal')!r}; "
                                              f"one of {', '.join(SIGNALS)}"}
            if not self._signal(c, sig):
                return {"ok": False, "error": f"{name} is not running"}
            if sig == signal.SIGSTOP:
                c.state = "paused"
            elif sig == signal.SIGCONT and c.state == "paused":
                c.state = "running"
            self.log.warning("signal sent", process=c.name, signal=sig.name, pid=c.pid)
            self._save_state()
            return {"ok": True}
        if op == "restart":
            c.wanted = True
            if c.state in ("running", "paused"):
                self._signal(c, signal.SIGCONT)
                self._signal(c, signal.SIGKILL)
                c.restart_at = time.monotonic()
            else:
                c.restarts += 1
                self._start(c)
            self._save_state()
            return {"ok": True}
        if op == "down":
            assert self.stop is not None
            self.stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown control op {op!r}"}

    def _handle_packed(self, op: str, c: Child, req: dict[str, Any]) -> dict[str, Any]:
        try:
            if op == "restart":
                self._packed_restart(c)
            else:
                sig = SIGNALS.get(str(req.get("signal", "KILL")).upper())
                if sig is None:
                    return {"ok": False, "error": f"unknown signal {req.get('signal')!r}; "
                                                  f"one of {', '.join(SIGNALS)}"}
                self._packed_signal(c, sig)
        except HostError as e:
            return {"ok": False, "error": f"{c.name}: {e}"}
        finally:
            self._save_state()
        return {"ok": True}

    def _reap_removed(self, c: Child) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(c.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.02)
        self._signal(c, signal.SIGKILL)
        try:
            os.waitpid(c.pid, 0)
        except ChildProcessError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    layout = LabLayout(Path(argv[0]))
    config = LabConfig.from_dict(json.loads(layout.config.read_text())).validate()
    from emulator.profiles import get_profile
    prof = get_profile(config.profile)   # every process's log rotation and the lab's cap (inherited)
    os.environ.setdefault(ENV_MAX_FILE_SIZE, prof.log_max_file_size)
    os.environ.setdefault(ENV_MAX_LAB_SIZE, prof.log_max_lab_size)
    configure("supervisor", lab=config.name, path=str(layout.log_for("supervisor")))
    return Supervisor(layout, config).main()


if __name__ == "__main__":
    sys.exit(main())
