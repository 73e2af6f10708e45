"""The ``Lab``: one emulated cluster on this machine, as a Python object.

Contract
--------
``Lab(nodes=5, profile="fast")`` describes a lab; ``up()`` starts it (a
supervisor process that runs the apiserver, scheduler, controller-manager and
one process per node) and returns once every node is Ready, or raises
``LabError`` naming the nodes that are not. ``with Lab(...) as lab:`` runs
``up()`` and, on exit, ``down()``. ``Lab.attach(name)`` returns a handle on a
lab that is already running.

``lab.client`` is a ``Client`` connected to the lab's apiserver; ``lab.apply(path|dict, ...)``
is ``kemu apply -f`` against the lab (kubectl's lines back, ``LabError`` on failure);
``lab.nodes`` the node names; ``lab.wait_for(predicate, timeout)`` polls;
``lab.kill(name)`` sends SIGKILL (or another signal) to one process through
the supervisor; ``lab.down()`` stops everything and never fails because
processes are already dead. ``runtime`` (fake, process, docker) is every
node's, ``runtime_for`` ({node: runtime}, or ``["node-3=process"]``)
overrides it per node. ``nodes_per_process`` K > 1 packs K nodes into each
node-host process (fake runtime only); ``kill``, ``restart`` and
``remove_node`` of a packed node still act on that node only. Containers of
the process runtime outlive a killed node process (its restarted kubelet
adopts them) but not the lab: ``down()`` and ``remove_node()`` kill every one
left under the node roots. ``lab.chaos``
(``lab.chaos.Chaos``) injects and heals faults; ``down()`` heals every active one
first and stops their healers.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import psutil
import yaml

from emulator.client import Client
from lab.config import NODE_HOST_NICE, LabConfig, parse_runtime_for, parse_zones
from lab.paths import (LabLayout, clear_current_if, get_current, lab_dir_for, labs_root,
                       set_current)
from lab.storage_classes import ensure_storage_classes

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


class LabError(Exception):
    """A lab operation failed; the message says what and how to fix it."""


def _supervisor_alive(layout: LabLayout) -> int | None:
    try:
        pid = int(layout.supervisor_pid.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE or "lab.supervisor" not in " ".join(p.cmdline()):
            return None
    except psutil.Error:
        return None
    return pid


def control(layout: LabLayout, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to a lab's supervisor and return its reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(layout.supervisor_sock))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise LabError(f"the lab's supervisor at {layout.supervisor_sock} does not answer ({e}); "
                       "is the lab running? see 'kemu lab list'") from None
    finally:
        s.close()
    reply = json.loads(data.decode() or "{}")
    if not reply.get("ok"):
        raise LabError(reply.get("error") or "the supervisor refused the request")
    return reply


def node_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


class Lab:
    def __init__(self, nodes: int = 3, *, name: str = "default", profile: str = "default",
                 runtime: str = "fake", node_cpu: str = "4", node_memory: str = "16Gi",
                 node_pods: int = 110, node_ephemeral_storage: str = "100Gi",
                 zones: str | list[str] = "1", port: int = 0, dir: str | Path | None = None,
                 ready_timeout: float | None = None, make_current: bool = True, dns: bool = True,
                 dns_port: int = 0, runtime_for: dict[str, str] | list[str] | None = None,
                 nodes_per_process: int = 1, metrics: bool = True, metrics_port: int = 0,
                 node_host_nice: int = NODE_HOST_NICE) -> None:
        self.config = LabConfig(name=name, nodes=nodes, profile=profile, runtime=runtime,
                                runtime_for=(dict(runtime_for) if isinstance(runtime_for, dict)
                                             else parse_runtime_for(runtime_for)),
                                node_cpu=node_cpu, node_memory=node_memory, node_pods=node_pods,
                                node_ephemeral_storage=node_ephemeral_storage,
                                zones=parse_zones(zones) if isinstance(zones, str) else list(zones),
                                port=port, dns=dns, dns_port=dns_port, metrics=metrics,
                                metrics_port=metrics_port)
        self.config.nodes_per_process = nodes_per_process   # K > 1: node hosts (node.host)
        self.config.node_host_nice = node_host_nice
        self.layout = LabLayout(Path(dir) if dir else lab_dir_for(name))
        self.ready_timeout = ready_timeout
        self.make_current = make_current
        self._client: Client | None = None
        self.started = 0.0

    # -- handles ------------------------------------------------------------
    @classmethod
    def attach(cls, name: str | None = None, dir: str | Path | None = None) -> "Lab":
        """A handle on a lab that exists (the current one when no name is given)."""
        if dir is None:
            if name is None:
                cur = get_current()
                if cur is None:
                    raise LabError("no current lab: start one with 'kemu lab up', or pass --name")
                dir = cur
            else:
                dir = lab_dir_for(name)
        layout = LabLayout(Path(dir))
        data = layout.read_json(layout.config)
        if data is None:
            raise LabError(f"no lab at {layout.root}: see 'kemu lab list'")
        lab = cls.__new__(cls)
        lab.config = LabConfig.from_dict(data)
        lab.layout = layout
        lab.ready_timeout = None
        lab.make_current = False
        lab._client = None
        lab.started = 0.0
        return lab

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def nodes(self) -> list[str]:
        data = self.layout.read_json(self.layout.config)
        return list((data or {}).get("node_names") or self.config.node_names)

    @property
    def server(self) -> str:
        try:
            return self.layout.endpoint.read_text().strip()
        except OSError:
            raise LabError(f"lab {self.name} has no running apiserver ({self.layout.endpoint} "
                           "is missing)") from None

    @property
    def metrics_address(self) -> str | None:
        """``http://127.0.0.1:P/metrics`` of the metrics add-on (Prometheus text), once it serves."""
        try:
            return (self.layout.run / "metrics.endpoint").read_text().strip() or None
        except OSError:
            return None

    @property
    def dns_address(self) -> str | None:
        """``udp://127.0.0.1:P tcp://127.0.0.1:P`` of the DNS add-on, once it serves."""
        try:
            return (self.layout.run / "dns.endpoint").read_text().strip() or None
        except OSError:
            return None

    @property
    def client(self) -> Client:
        if self._client is None:
            # A big lab's apiserver is busy while thousands of nodes connect and register: be
            # patient, and do not give up a connection in the making (a new one queues again).
            patience = 5 + self.config.nodes / 1000
            self._client = Client(self.server, component="lab", lab=self.name, timeout=patience,
                                  retries=3, connect_timeout=patience)
        return self._client

    def running(self) -> bool:
        return _supervisor_alive(self.layout) is not None

    @property
    def chaos(self) -> Any:
        """The lab's faults (``lab.chaos.Chaos``): inject, list, heal; see docs/chaos.md."""
        if getattr(self, "_chaos", None) is None:
            from lab.chaos import Chaos
            self._chaos = Chaos(self)
        return self._chaos

    # -- up -----------------------------------------------------------------
    def up(self) -> "Lab":
        try:
            self.config.validate()
        except ValueError as e:
            raise LabError(str(e)) from None
        pid = _supervisor_alive(self.layout)
        if pid is not None:
            raise LabError(f'lab "{self.name}" is already running (supervisor pid {pid}, '
                           f"{self.layout.root}): use another --name, or 'kemu lab down "
                           f"--name {self.name}' first")
        self._check_port()
        self._prepare_dir()
        self.layout.write_json(self.layout.config, self.config.as_dict())
        out = open(self.layout.logs / "supervisor.out", "ab")
        self.started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "lab.supervisor", str(self.layout.root)],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
        out.close()
        self._wait_serving(proc)
        ensure_storage_classes(self.client)
        if self.make_current:
            set_current(self.layout.root)
        self.wait_nodes_ready(self.config.node_names, self.ready_timeout)
        return self

    def _check_port(self) -> None:
        if not self.config.port:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", self.config.port))
        except OSError as e:
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e})"
            raise LabError(f"--port: 127.0.0.1:{self.config.port} {reason}; pick another port, "
                           "or 0 for a free one") from None
        finally:
            s.close()

    def _prepare_dir(self) -> None:
        root = self.layout.root
        try:
            if root.exists():   # a lab of that name that is down: start afresh
                shutil.rmtree(root)
            self.layout.make()
            probe = self.layout.run / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise LabError(f"cannot write the lab directory {root}: {e.strerror or e}; set "
                           "KEMU_HOME (or --dir) to a writable directory") from None

    def _wait_serving(self, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.layout.endpoint.exists() and self.layout.state.exists()):
            if proc.poll() is not None:
                raise LabError(f"the lab supervisor exited with {proc.returncode} while starting; "
                               f"see {self.layout.logs / 'supervisor.out'} and "
                               f"{self.layout.log_for('supervisor')}\n{self._tail_errors()}")
            if time.monotonic() > deadline:
                raise LabError(f"the lab's apiserver did not start within {timeout:g}s; see "
                               f"{self.layout.log_for('apiserver')}")
            time.sleep(0.02)

    def _tail_errors(self) -> str:
        lines = []
        for f in (self.layout.logs / "supervisor.out", self.layout.log_for("supervisor")):
            try:
                lines += [ln for ln in f.read_text().splitlines()
                          if "error" in ln.lower() or "exited" in ln][-5:]
            except OSError:
                pass
        return "\n".join(lines)

    def processes(self) -> list[dict[str, Any]]:
        data = self.layout.read_json(self.layout.state) or {}
        return list(data.get("processes") or [])

    def wait_nodes_ready(self, names: list[str], timeout: float | None = None) -> None:
        """Wait until every named Node is Ready (list, then watch, as ``kubectl wait``
        does), or raise naming the nodes that are not, or that died starting."""
        timeout = timeout if timeout is not None else 30.0 + 0.1 * len(names)
        deadline = time.monotonic() + timeout
        want = set(names)
        ready: set[str] = set()
        watch = None
        next_check = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= next_check:   # a node process that died cannot become Ready
                    next_check = now + 0.2
                    dead = [p for p in self.processes() if p["name"] in want and p["state"] == "exited"]
                    if dead:
                        raise LabError("node(s) exited during start-up: " + ", ".join(
                            f"{p['name']} (exit code {p['exit_code']})" for p in dead) +
                            f"; see 'kemu lab logs --node NAME' (logs in {self.layout.logs})")
                try:
                    if watch is None or watch.closed:
                        nodes = self.client.list_all("Node")
                        ready = {n["metadata"]["name"] for n in nodes["items"] if node_ready(n)} & want
                        watch = self.client.watch("Node", resource_version=nodes["metadata"]["resourceVersion"])
                    ev = watch.next(0.1) if ready != want else None
                    while ev is not None:
                        name = ev["object"]["metadata"]["name"]
                        if ev["type"] != "DELETED" and node_ready(ev["object"]):
                            ready.add(name)
                        else:
                            ready.discard(name)
                        ev = watch.next(0)
                    ready &= want
                except Exception:
                    watch = None
                    time.sleep(0.05)
                if ready == want:
                    return
                if time.monotonic() > deadline:
                    missing = sorted(want - ready, key=lambda n: (len(n), n))
                    shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
                    raise LabError(f"{len(missing)} of {len(want)} node(s) not Ready after {timeout:g}s: "
                                   f"{shown}; see 'kemu lab status' and 'kemu lab logs'")
        finally:
            if watch is not None:
                watch.stop()

    # -- operations ---------------------------------------------------------
    def wait_for(self, predicate: Callable[[], T], timeout: float, interval: float = 0.05,
                 what: str = "the condition") -> T:
        """Poll ``predicate`` until it returns something truthy; raise TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    def apply(self, *manifests: str | Path | dict, namespace: str | None = None) -> list[str]:
        """``kemu apply -f`` against this lab: each argument is a file, a directory or an
        object (a dict). Returns kubectl's lines (``deployment.apps/web created``); raises
        ``LabError`` with kubectl's messages when any object fails (the others are applied)."""
        if not manifests:
            raise LabError("apply: pass at least one manifest path or object")
        argv = ["apply", "--server", self.server]
        if namespace:
            argv += ["--namespace", namespace]
        objects = [m for m in manifests if isinstance(m, dict)]
        for m in manifests:
            if not isinstance(m, dict):
                argv += ["-f", str(m)]
        stdin = None
        if objects:
            argv += ["-f", "-"]
            stdin = io.StringIO(yaml.safe_dump_all(objects, sort_keys=False))
        out, err = io.StringIO(), io.StringIO()
        from emulator.cli import kubectl
        rc = kubectl.run(argv, out, err, stdin=stdin)
        if rc != 0:
            raise LabError(f"apply failed (exit {rc}): {err.getvalue().strip() or out.getvalue().strip()}")
        return out.getvalue().splitlines()

    def kill(self, name: str, sig: str = "KILL") -> None:
        """Send ``sig`` to a lab process. SIGKILL on a node is the node's death: its real
        containers die with it, as on a machine that fails (``restart`` instead restarts
        only the kubelet, which adopts the containers that kept running)."""
        control(self.layout, {"op": "kill", "name": name, "signal": sig})
        if sig.upper().removeprefix("SIG") == "KILL" and (self.layout.nodes / name).is_dir():
            self._kill_node_containers(name)

    def restart(self, name: str) -> None:
        control(self.layout, {"op": "restart", "name": name})

    def add_nodes(self, count: int, wait: bool = True) -> list[str]:
        names = control(self.layout, {"op": "add-nodes", "count": count})["added"]
        if wait:
            self.wait_nodes_ready(names)
        return names

    def remove_node(self, name: str) -> None:
        control(self.layout, {"op": "remove-node", "name": name})
        self._kill_node_containers(name)   # a removed node's real containers go with it
        try:
            self.client.delete("Node", name)
        except Exception:
            pass

    def status(self) -> list[dict[str, Any]]:
        rows = []
        now = time.time()
        for p in self.processes():
            row = dict(p)
            row["cpu_percent"] = row["rss_bytes"] = None
            row["uptime_s"] = now - p["started_at"] if p["state"] in ("running", "paused") else 0
            if p["state"] in ("running", "paused") and p["pid"]:
                try:
                    proc = psutil.Process(p["pid"])
                    row["cpu_percent"] = proc.cpu_percent(interval=None)
                    row["rss_bytes"] = proc.memory_info().rss
                    row["_proc"] = proc
                except psutil.Error:
                    row["state"] = "gone"
            rows.append(row)
        time.sleep(0.2)   # one short sampling window for CPU%, shared by all rows
        for row in rows:
            proc = row.pop("_proc", None)
            if proc is not None:
                try:
                    row["cpu_percent"] = proc.cpu_percent(interval=None)
                except psutil.Error:
                    pass
        return rows

    def ready_nodes(self) -> int:
        return sum(1 for n in self.client.list_all("Node")["items"] if node_ready(n))

    # -- down ---------------------------------------------------------------
    def down(self, timeout: float = 20.0) -> None:
        """Stop every process of the lab. Never fails because they are already dead.
        Active chaos faults are healed first, and their healers stopped."""
        if (self.layout.run / "chaos.json").exists():
            for problem in self.chaos.heal_all_for_down():
                print(f"warning: lab down: could not heal {problem}", file=sys.stderr)
        if self._client is not None:
            self._client.close()
            self._client = None
        pid = _supervisor_alive(self.layout)
        if pid is not None:
            try:
                control(self.layout, {"op": "down"}, timeout=5)
            except LabError:
                os.kill(pid, signal.SIGTERM)
            try:
                psutil.Process(pid).wait(timeout)
            except psutil.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
            except psutil.Error:
                pass
        self._kill_leftovers()
        self._kill_containers()
        from lab.chaos import ctl_state
        ctl_state.clear(self)   # no fault survives a down, not even in a state file
        for p in (self.layout.supervisor_sock, self.layout.endpoint, self.layout.supervisor_pid):
            try:
                p.unlink()
            except OSError:
                pass
        clear_current_if(self.layout.root)

    def _kill_leftovers(self) -> None:
        """Processes the state file names that are still ours (same start time): SIGKILL."""
        for p in self.processes():
            if p.get("state") not in ("running", "paused") or not p.get("pid"):
                continue
            try:
                proc = psutil.Process(p["pid"])
                if abs(proc.create_time() - p["started_at"]) < 2.0:
                    proc.kill()
            except psutil.Error:
                pass

    def _kill_containers(self) -> None:
        """Real runtimes' containers outlive a node process (a restarted kubelet adopts them);
        the lab's end is theirs: kill every one left under each node root and wait."""
        try:
            names = [p.name for p in self.layout.nodes.iterdir() if p.is_dir()]
        except OSError:
            return
        for name in names:
            self._kill_node_containers(name, docker=False)
        if "docker" in {self.config.runtime_for_node(n) for n in self.config.node_names}:
            self._remove_docker_containers(None)

    def _kill_node_containers(self, name: str, docker: bool = True) -> None:
        from node.runtime.process import kill_all
        kill_all(str(self.layout.nodes / name))
        if docker and self.config.runtime_for_node(name) == "docker":
            self._remove_docker_containers(name)

    def _remove_docker_containers(self, node: str | None) -> None:
        """docker's containers carry the lab's (and node's) label: remove them."""
        try:
            from node.runtime.docker_engine import remove_all
            remove_all(self.config.name, node=node)
        except Exception as e:   # no engine left to ask: nothing of ours can run there either
            print(f"warning: could not remove the lab's docker containers: {e}", file=sys.stderr)

    def __enter__(self) -> "Lab":
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.down()


def list_labs() -> list[dict[str, Any]]:
    out = []
    root = labs_root()
    cur = get_current()
    for d in sorted(root.glob("*/")) if root.exists() else []:
        layout = LabLayout(d)
        cfg = layout.read_json(layout.config)
        if cfg is None:
            continue
        out.append({"name": cfg.get("name", d.name), "nodes": cfg.get("nodes"),
                    "profile": cfg.get("profile"), "running": _supervisor_alive(layout) is not None,
                    "current": cur is not None and cur.resolve() == d.resolve(), "dir": str(d)})
    return out
