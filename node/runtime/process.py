"""The ``process`` runtime: every container is a real OS process on this machine (rootless).

Contract (the runtime interface of ``interface.py``; how a spec becomes a process is ``procspec``)
-------------------------------------------------------------------------------------------------
* A sandbox is a record with the pod's IP (a loopback address, so an app that binds
  ``$(POD_IP):port`` is reachable there); there is no network namespace.
* ``create_container`` prepares ``<node root>/var/lib/kemu/containers/<id>/``: ``config.json``
  (argv, executable, env, cwd, log file, memory limit) and ``rootfs/`` (the mount symlink
  tree). ``start_container`` resolves the executable (a missing one: the container is
  recorded exited, exit code 128, reason ``StartError``, and ``StartContainerError`` is
  raised with runc's message) and starts the container's monitor, ``shim.py``, in its own
  session; the monitor starts the process (own session and process group, parent-death
  signal, ``RLIMIT_AS`` = ``resources.limits.memory``), writes its output to the CRI log
  file with rotation, and records its exit in ``state.json``. Nothing here blocks: the
  monitor does the waiting, ``tick`` reads what it recorded.
* Monitors outlive the kubelet (a restarted kubelet adopts their containers: pids and
  start times in ``state.json`` are checked against ``/proc`` so a reused pid is never
  taken for a container) but not the ``anchor_pid`` process: in a lab the supervisor,
  otherwise the kubelet's own process. When it dies, every container is killed.
* ``stop_container(id, grace)``: SIGTERM to the container's process group, SIGKILL after
  ``grace`` seconds (the monitor keeps the timer, so it holds across a kubelet restart).
  When a container's main process exits, whatever is left in its process group is
  killed: no orphans. Exit codes: the process's own, or 128+N for signal N; reasons
  ``Completed``, ``Error``, ``OOMKilled`` (the heuristic is in ``shim.py``).
* ``tick`` reports the pods whose containers changed, and every ``usage_interval``
  seconds measures each running container's CPU (millicores over the interval) and
  memory (RSS) with psutil, over the main process and its descendants.
* ``exec_sync`` runs a command with the container's env, cwd and memory limit in a
  process group of its own, killed on timeout (``TimeoutError``).
* State: ``state_path`` (``<root>/var/lib/kemu/runtime.json``, the file ``kemu crictl``
  reads) holds the sandboxes and container records; a monitor's ``state.json`` is the
  truth about its process. ``kill_all(root)`` kills every container of a node root
  (``lab down``, tests).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

import psutil

from emulator.process import die_with_parent
from emulator.profiles import Profile
from node.runtime import proclogs, procspec
from node.runtime.interface import (CREATED, EXITED, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
                                    LABEL_POD_NAMESPACE, LABEL_POD_UID, RUNNING, SANDBOX_NOTREADY,
                                    SANDBOX_READY, ContainerStatus, Mount, PodSandbox,
                                    StartContainerError)
from node.runtime.shim import alive, start_ticks, write_json

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.py")
POLL_INTERVAL = 0.1


@dataclass
class _Container:
    status: ContainerStatus
    dir: str
    shim_pid: int | None = None
    shim_start: int | None = None
    pid: int | None = None
    pid_start: int | None = None
    state_mtime: int = 0
    popen: Any = None            # the monitor, when this process started it
    proc: Any = None             # psutil.Process of the main process
    cpu_seen: tuple[float, float] | None = None   # (monotonic, cpu seconds)
    shim_checked: float = 0.0


def containers_dir(root_dir: str) -> str:
    return os.path.join(root_dir, "var", "lib", "kemu", "containers")


class ProcessRuntime:
    name = "process"
    generation = None   # usage is measured: it changes by itself
    version = f"process://{platform.python_version()}"

    def flush(self) -> None:
        """Each change is saved when made: nothing to flush."""

    def __init__(self, profile: Profile | None = None, *, root_dir: str, node_name: str = "",
                 lab: str | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, state_path: str | None = None,
                 anchor_pid: int | None = None, log_max_bytes: int = proclogs.DEFAULT_MAX_BYTES,
                 log_max_files: int = proclogs.DEFAULT_MAX_FILES, usage_interval: float = 1.0) -> None:
        self.profile = profile
        self.root_dir = os.path.abspath(root_dir)
        self.node_name = node_name
        self.lab = lab
        self.clock = clock
        self.wall = wall
        self.state_path = state_path
        self.anchor_pid = anchor_pid if anchor_pid is not None else os.getpid()
        self.anchor_start = start_ticks(self.anchor_pid)
        self.log_max_bytes = log_max_bytes
        self.log_max_files = log_max_files
        self.usage_interval = usage_interval
        self.next_usage = 0.0
        self.sandboxes: dict[str, PodSandbox] = {}
        self.containers: dict[str, _Container] = {}
        self.reap: list[subprocess.Popen] = []
        os.makedirs(containers_dir(self.root_dir), exist_ok=True)
        if state_path:
            self._load()

    # -- sandboxes ----------------------------------------------------------
    def run_pod_sandbox(self, pod: dict, ip: str = "") -> str:
        md = pod.get("metadata") or {}
        labels = {LABEL_POD_UID: md.get("uid", ""), LABEL_POD_NAMESPACE: md.get("namespace", ""),
                  LABEL_POD_NAME: md.get("name", "")}
        sid = uuid.uuid4().hex
        self.sandboxes[sid] = PodSandbox(id=sid, pod_uid=labels[LABEL_POD_UID],
                                         namespace=labels[LABEL_POD_NAMESPACE], name=labels[LABEL_POD_NAME],
                                         state=SANDBOX_READY, created_at=self.wall(), ip=ip, labels=labels)
        self._save()
        return sid

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self.sandboxes[sandbox_id]
        for c in list(self.containers.values()):
            if c.status.sandbox_id == sandbox_id and c.status.state != EXITED:
                self.stop_container(c.status.id, 0)
        sb.state = SANDBOX_NOTREADY
        self._save()

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self.sandboxes.get(sandbox_id)
        if sb is not None:
            self.stop_pod_sandbox(sandbox_id)
        for cid in [k for k, c in self.containers.items() if c.status.sandbox_id == sandbox_id]:
            self.remove_container(cid)
        self.sandboxes.pop(sandbox_id, None)
        if sb is not None and not any(s.pod_uid == sb.pod_uid for s in self.sandboxes.values()):
            shutil.rmtree(proclogs.pod_log_dir(self.root_dir, sb.namespace, sb.name, sb.pod_uid),
                          ignore_errors=True)
        self._save()

    # -- containers ---------------------------------------------------------
    def create_container(self, sandbox_id: str, pod: dict, container: dict, attempt: int,
                         mounts: list[Mount] | None = None, env: dict[str, str] | None = None) -> str:
        sb = self.sandboxes[sandbox_id]
        cid = uuid.uuid4().hex
        argv = procspec.container_argv(container, cid)   # CreateContainerError: no command
        mounts = [Mount(**vars(m)) for m in mounts or ()]
        name = container.get("name", "")
        image = container.get("image", "")
        cdir = os.path.join(containers_dir(self.root_dir), cid)
        rootfs = os.path.join(cdir, "rootfs")
        procspec.build_rootfs(rootfs, mounts)
        cwd = procspec.resolve_working_dir(container.get("workingDir") or "", mounts, rootfs)
        penv = procspec.process_env(env, pod_name=sb.name, rootfs=rootfs, mounts=mounts)
        log_path = proclogs.container_log_path(self.root_dir, sb.namespace, sb.name, sb.pod_uid, name, attempt)
        write_json(os.path.join(cdir, "config.json"), {
            "argv": argv, "env": penv, "cwd": cwd, "log_path": log_path,
            "log_max_bytes": self.log_max_bytes, "log_max_files": self.log_max_files,
            "memory_limit": procspec.memory_limit(container),
            "anchor_pid": self.anchor_pid, "anchor_start": self.anchor_start})
        st = ContainerStatus(
            id=cid, sandbox_id=sandbox_id, pod_uid=sb.pod_uid, namespace=sb.namespace, pod_name=sb.name,
            name=name, attempt=attempt, image=image, image_id="", state=CREATED, created_at=self.wall(),
            labels=dict(sb.labels, **{LABEL_CONTAINER_NAME: name}), mounts=mounts, log_path=log_path)
        self.containers[cid] = _Container(st, cdir)
        self._save()
        return cid

    def _config(self, c: _Container) -> dict:
        with open(os.path.join(c.dir, "config.json")) as f:
            return json.load(f)

    def start_container(self, container_id: str) -> None:
        c = self.containers[container_id]
        if c.status.state != CREATED or c.shim_pid is not None:
            raise RuntimeError(f"container {container_id} is {c.status.state}, not created")
        cfg = self._config(c)
        try:
            cfg["executable"] = procspec.resolve_executable(cfg["argv"][0], cfg["env"].get("PATH"), cfg["cwd"])
        except StartContainerError as e:
            now = self.wall()
            self._exited(c, 128, "StartError", f"unable to start container process: {e}", now, now)
            self._save()
            raise StartContainerError(f"unable to start container process: {e}") from None
        write_json(os.path.join(c.dir, "config.json"), cfg)
        with open(os.path.join(c.dir, "shim.log"), "ab") as out:
            c.popen = subprocess.Popen([sys.executable, "-S", "-E", SHIM, c.dir], cwd=c.dir,
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True)
        c.shim_pid, c.shim_start = c.popen.pid, start_ticks(c.popen.pid)
        c.status.state = RUNNING
        c.status.started_at = self.wall()
        c.status.ready = True   # the runtime's hint: ready once running (probes decide otherwise)
        self._save()

    def stop_container(self, container_id: str, grace_seconds: float) -> None:
        c = self.containers[container_id]
        if c.status.state == EXITED:
            return
        if c.shim_pid is None:   # created, never started
            now = self.wall()
            self._exited(c, 0, "Completed", "", now, now)
            self._save()
            return
        write_json(os.path.join(c.dir, "stop.json"), {"grace": max(0.0, float(grace_seconds))})
        if os.path.exists(os.path.join(c.dir, "state.json")) and self._shim_alive(c):
            os.kill(c.shim_pid, signal.SIGUSR1)
        elif not self._shim_alive(c):
            self._kill_group(c)

    def remove_container(self, container_id: str) -> None:
        c = self.containers.pop(container_id, None)
        if c is None:
            return
        if c.status.state != EXITED:
            self._refresh(c, self.clock())   # learn the pid if the monitor has recorded it
            self._kill_group(c)
            if self._shim_alive(c):
                os.kill(c.shim_pid, signal.SIGKILL)
        if c.popen is not None:
            self.reap.append(c.popen)
        shutil.rmtree(c.dir, ignore_errors=True)
        for p in proclogs.log_files(c.status.log_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        self._save()

    def list_pod_sandboxes(self) -> list[PodSandbox]:
        return list(self.sandboxes.values())

    def list_containers(self) -> list[ContainerStatus]:
        return [c.status for c in self.containers.values()]

    def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        c = self.containers[container_id]
        if c.status.state != RUNNING:
            raise RuntimeError(f"container {container_id} is not running (state {c.status.state})")
        cfg = self._config(c)
        if not cmd:
            return 126, b"exec: no command specified"
        try:
            exe = procspec.resolve_executable(str(cmd[0]), cfg["env"].get("PATH"), cfg["cwd"])
        except StartContainerError as e:
            return 127, str(e).encode()
        limit = int(cfg.get("memory_limit") or 0)

        def pre() -> None:   # after fork: nothing that takes a lock (no imports)
            die_with_parent()
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        p = subprocess.Popen([str(a) for a in cmd], executable=exe, env=cfg["env"], cwd=cfg["cwd"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=pre, close_fds=True)
        try:
            out, _ = p.communicate(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.communicate()
            raise TimeoutError(f"command {' '.join(map(str, cmd))!r} timed out after {timeout:g}s") from None
        try:
            os.killpg(p.pid, signal.SIGKILL)   # nothing it started outlives it
        except OSError:
            pass
        return p.returncode if p.returncode >= 0 else 128 - p.returncode, out

    # -- watching -----------------------------------------------------------
    def tick(self, now: float) -> set[str]:
        changed: set[str] = set()
        for c in self.containers.values():
            if c.status.state == RUNNING and self._refresh(c, now):
                changed.add(c.status.pod_uid)
        self.reap = [p for p in self.reap if p.poll() is None]
        if now >= self.next_usage:
            self.next_usage = now + self.usage_interval
            self._measure(now)
        if changed:
            self._save()
        return changed

    def next_event(self, now: float) -> float | None:
        if any(c.status.state == RUNNING for c in self.containers.values()):
            return now + POLL_INTERVAL
        return None

    def _refresh(self, c: _Container, now: float) -> bool:
        """Read what the monitor recorded; True if the container exited."""
        path = os.path.join(c.dir, "state.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = 0
        if mtime and mtime != c.state_mtime:
            try:
                with open(path) as f:
                    st = json.load(f)
                c.state_mtime = mtime
            except (OSError, ValueError):
                st = {}
            if st.get("pid"):
                c.pid, c.pid_start = st["pid"], st.get("pid_start")
            if st.get("state") == "exited":
                self._exited(c, int(st.get("exit_code") or 0), st.get("reason") or "Error",
                             st.get("message") or "", c.status.started_at or st.get("started_at"),
                             st.get("finished_at") or self.wall())
                if c.popen is not None:
                    self.reap.append(c.popen)
                    c.popen = None
                return True
        if c.popen is not None:
            gone = c.popen.poll() is not None
        elif now - c.shim_checked >= 1.0:
            c.shim_checked = now
            gone = not self._shim_alive(c)
        else:
            gone = False
        if gone and os.path.exists(path) and os.stat(path).st_mtime_ns != c.state_mtime:
            return self._refresh(c, now)
        if gone:   # the monitor died without recording an exit (SIGKILL)
            self._kill_group(c)
            self._exited(c, 137, "Error", "the container's monitor (shim) exited unexpectedly",
                         c.status.started_at, self.wall())
            c.popen = None
            return True
        return False

    def _exited(self, c: _Container, code: int, reason: str, message: str, started: float | None,
                finished: float) -> None:
        st = c.status
        st.state, st.exit_code, st.reason, st.message = EXITED, code, reason, message
        st.started_at = started if started is not None else finished
        st.finished_at = finished
        st.ready = False
        st.cpu_millis = st.memory_bytes = 0
        c.proc = None

    def _shim_alive(self, c: _Container) -> bool:
        if c.popen is not None:
            return c.popen.poll() is None
        return alive(c.shim_pid, c.shim_start)

    def _kill_group(self, c: _Container) -> None:
        if c.pid and alive(c.pid, c.pid_start):
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except OSError:
                pass

    def _measure(self, now: float) -> None:
        for c in self.containers.values():
            if c.status.state != RUNNING or not c.pid:
                continue
            try:
                if c.proc is None:
                    if not alive(c.pid, c.pid_start):
                        continue
                    c.proc = psutil.Process(c.pid)
                procs = [c.proc] + c.proc.children(recursive=True)
                cpu = rss = 0.0
                for p in procs:
                    try:
                        t = p.cpu_times()
                        cpu += t.user + t.system
                        rss += p.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error:
                c.proc = None
                continue
            if c.cpu_seen is not None and now > c.cpu_seen[0]:
                c.status.cpu_millis = max(0, round((cpu - c.cpu_seen[1]) / (now - c.cpu_seen[0]) * 1000))
            c.cpu_seen = (now, cpu)
            c.status.memory_bytes = int(rss)

    # -- persistence --------------------------------------------------------
    def _save(self) -> None:
        if not self.state_path:
            return
        data = {"version": 1, "runtime": self.name,
                "sandboxes": [asdict(s) for s in self.sandboxes.values()],
                "containers": [{"status": asdict(c.status), "dir": c.dir, "shim_pid": c.shim_pid,
                                "shim_start": c.shim_start, "pid": c.pid, "pid_start": c.pid_start}
                               for c in self.containers.values()]}
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        write_json(self.state_path, data)

    def _load(self) -> None:
        assert self.state_path
        try:
            with open(self.state_path) as f:
                data = json.load(f)
            if data.get("runtime") != self.name:
                return   # another runtime's file (or none): start empty
            for s in data.get("sandboxes", ()):
                self.sandboxes[s["id"]] = PodSandbox(**s)
            for d in data.get("containers", ()):
                st = ContainerStatus(**d["status"])
                st.mounts = [Mount(**m) for m in st.mounts or ()]
                self.containers[st.id] = _Container(st, d["dir"], d.get("shim_pid"), d.get("shim_start"),
                                                    d.get("pid"), d.get("pid_start"))
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, OSError):
            self.sandboxes, self.containers = {}, {}
            return
        now = self.clock()
        for c in self.containers.values():   # adopt: what did the monitors do meanwhile?
            if c.status.state == RUNNING:
                c.shim_checked = -1e18
                self._refresh(c, now)
        self._save()


def kill_all(root_dir: str, timeout: float = 5.0) -> int:
    """SIGKILL every container process (its whole group) and monitor under a node root; wait
    until they are gone (at most ``timeout``). Returns how many containers were running."""
    base = containers_dir(root_dir)
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    waiting: list[tuple[int, int | None]] = []
    for n in names:
        try:
            with open(os.path.join(base, n, "state.json")) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue
        pid, shim = st.get("pid"), st.get("shim_pid")
        if pid and alive(pid, st.get("pid_start")):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            waiting.append((pid, st.get("pid_start")))
        if shim and alive(shim, st.get("shim_start")):
            try:
                os.kill(shim, signal.SIGKILL)
            except OSError:
                pass
            waiting.append((shim, st.get("shim_start")))
    deadline = time.monotonic() + timeout
    while any(alive(p, t) for p, t in waiting) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(waiting)


__all__ = ["ProcessRuntime", "kill_all", "containers_dir"]
