"""The docker runtime: pods' containers as real Docker containers, through the Engine API.

Contract
--------
* Containers are created with the ``docker`` SDK (low-level ``APIClient``) and
  carry the CRI's labels (``io.kubernetes.pod.uid``, ``.namespace``, ``.name``,
  ``io.kubernetes.container.name``) plus ``kemu.lab``, ``kemu.node``,
  ``kemu.sandbox``, ``kemu.attempt``, ``kemu.image`` and ``kemu.mounts``. The
  engine is the source of truth: a new ``DockerRuntime`` for the same lab and
  node lists them by label and adopts them (a restarted kubelet), and
  ``remove_all(lab)`` (used by ``lab down``) removes every container of a lab.
* Sandboxes are pause-less records: no container and no process. A pod uses
  the host's network (``network_mode="host"``, its app binds ``$(POD_IP)``,
  an address on loopback) or none (``network_mode="none"``), so there is no
  namespace to hold. The records (id, pod, IP, state) are kept in a small JSON
  file (``state_path``) with the pending stop deadlines; a sandbox missing from
  the file but named by a container's labels is rebuilt from those labels.
* ``create_container`` never pulls (no registry can be reached): the image must
  be in the engine (``kemu image build-test-images``); a missing one raises
  ``ImagePullError`` (``ErrImagePull``, then ``ImagePullBackOff``; see
  ``docker_engine.LocalImages``). ``tick`` returns the pod when its back-off ends.
* ``command``/``args`` become the entrypoint/cmd (Kubernetes' override rules);
  ``env`` is the kubelet's resolved environment; each ``Mount`` is a bind
  mount; ``limits.memory`` sets ``mem_limit`` (= ``memswap_limit``, no swap),
  ``limits.cpu`` sets ``nano_cpus`` and ``requests.cpu`` the CPU shares.
* Errors are the interface's: ``create_container`` raises ``CreateError`` (a
  ``CreateContainerError``) or ``ImagePullError``; ``start_container`` failing (a
  command that does not exist) raises ``StartError`` (a ``StartContainerError``,
  reason ``RunContainerError``, the engine's message) and the container is then
  reported exited: exit code 128, reason ``StartError``, ``message``. Each
  carries ``reason``, ``message`` and ``events`` (what the kubelet records).
  ``OOMKilled`` comes from ``State.OOMKilled``; 0 is ``Completed``, else ``Error``.
* ``stop_container`` sends the image's stop signal (SIGTERM) and never blocks:
  ``tick`` sends SIGKILL once the grace period has passed.
* Logs are read through the API (``logs(follow=True, timestamps=True)``) into
  the CRI log file of ``proclogs`` (``ContainerStatus.log_path``), so
  ``kemu logs`` reads every runtime alike. ``exec_sync`` uses the exec API and
  kills the command's processes on timeout (``TimeoutError``).
* ``list_*`` answer from a cache refreshed every ``poll_interval`` by ``tick``
  (one list call; an inspect only for containers whose state changed). CPU and
  memory usage (``kemu top``) are sampled from the containers' cgroups.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from typing import Any, Callable

from emulator.api.quantity import cpu_millis, memory_bytes
from node.runtime.docker_engine import (LABEL_ATTEMPT, LABEL_IMAGE, LABEL_LAB, LABEL_MOUNTS,  # noqa: F401
                                        LABEL_NODE, LABEL_POD_IP, LABEL_SANDBOX, NO_LAB,
                                        ContainerRuntimeError, CreateError, EngineUnavailable,
                                        ImagePullError, LocalImages, StartError, engine_client, epoch,
                                        remove_all, sample_usage)
from node.runtime.docker_logs import CriLogWriter, LogPump, cri_log_path
from node.runtime.interface import (CREATED, EXITED, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
                                    LABEL_POD_NAMESPACE, LABEL_POD_UID, RUNNING, SANDBOX_NOTREADY,
                                    SANDBOX_READY, ContainerStatus, Mount, PodSandbox)

USAGE_INTERVAL = 2.0      # seconds between cgroup usage samples (kemu top)


class DockerRuntime:
    name = "docker"
    generation = None   # usage is measured: it changes by itself

    def flush(self) -> None:
        """The engine holds the state: nothing to flush."""

    def __init__(self, profile: Any = None, *, root_dir: str, node_name: str, lab: str | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 state_path: str | None = None, client: Any = None, network_mode: str = "host",
                 poll_interval: float = 0.25) -> None:
        import docker
        self._errors = docker.errors
        self._types = docker.types
        self.profile = profile
        self.root_dir = root_dir
        self.node_name = node_name
        self.lab = lab or NO_LAB
        self.clock, self.wall = clock, wall
        self.state_path = state_path or os.path.join(root_dir, "var", "lib", "kemu", "docker-runtime.json")
        self.network_mode = network_mode
        self.poll_interval = poll_interval
        self._own_client = client is None
        self.client = client or engine_client()
        self.api = self.client.api
        self.version = "docker://" + str(self.client.version().get("Version", "unknown"))
        self.sandboxes: dict[str, PodSandbox] = {}
        self.containers: dict[str, ContainerStatus] = {}
        self._docker_state: dict[str, str] = {}
        self.stopping: dict[str, float] = {}       # container id -> wall time of its SIGKILL
        self.images = LocalImages(self.api, self._errors, clock)
        self.pumps: dict[str, LogPump] = {}
        self._pump_client: Any = None
        self.next_poll = 0.0
        self.next_usage = 0.0
        self._cpu_seen: dict[str, tuple[float, int]] = {}   # id -> (wall, cpu ns) at the last sample
        self._load()
        self._refresh()
        for st in self.containers.values():
            if st.started_at is not None:
                self._pump(st.id)

    # -- helpers ------------------------------------------------------------
    def _filters(self, **extra: str) -> dict:
        labels = [f"{LABEL_LAB}={self.lab}", f"{LABEL_NODE}={self.node_name}"]
        labels += [f"{k}={v}" for k, v in extra.items()]
        return {"label": labels}

    def _save(self) -> None:
        data = {"version": 1, "sandboxes": [vars(s) for s in self.sandboxes.values()],
                "stopping": self.stopping}
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.state_path)

    def _load(self) -> None:
        try:
            with open(self.state_path) as f:
                data = json.load(f)
            for s in data.get("sandboxes", ()):
                self.sandboxes[s["id"]] = PodSandbox(**s)
            self.stopping = {str(k): float(v) for k, v in (data.get("stopping") or {}).items()}
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, OSError):
            self.sandboxes, self.stopping = {}, {}

    def _status(self, info: dict) -> ContainerStatus:
        labels = info["Config"].get("Labels") or {}
        state = info["State"]
        ds = state.get("Status", "")
        code = state.get("ExitCode")
        reason, message = "", ""
        if ds == "created" and (state.get("Error") or code):   # the start failed
            rstate, reason, message, code = EXITED, "StartError", state.get("Error", ""), 128
        elif ds == "created":
            rstate, code = CREATED, None
        elif ds in ("running", "paused", "restarting"):
            rstate, code = RUNNING, None
        else:
            rstate = EXITED
            reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        try:
            mounts = [Mount(**m) for m in json.loads(labels.get(LABEL_MOUNTS) or "[]")]
        except (ValueError, TypeError):
            mounts = []
        finished = epoch(state.get("FinishedAt")) if rstate == EXITED else None
        if rstate == EXITED and finished is None:
            finished = self.wall()
        started = epoch(state.get("StartedAt"))
        if rstate == EXITED and started is None:
            started = finished
        uid, ns, pod = labels.get(LABEL_POD_UID, ""), labels.get(LABEL_POD_NAMESPACE, ""), \
            labels.get(LABEL_POD_NAME, "")
        name, attempt = labels.get(LABEL_CONTAINER_NAME, ""), int(labels.get(LABEL_ATTEMPT) or 0)
        st = ContainerStatus(
            id=info["Id"], sandbox_id=labels.get(LABEL_SANDBOX, ""), pod_uid=uid, namespace=ns,
            pod_name=pod, name=name, attempt=attempt, image=labels.get(LABEL_IMAGE) or info["Config"].get("Image", ""),
            image_id=info.get("Image", ""), state=rstate, created_at=epoch(info.get("Created")) or self.wall(),
            started_at=started if rstate != CREATED else None, finished_at=finished, exit_code=code,
            reason=reason, ready=rstate == RUNNING, labels=dict(labels), mounts=mounts)
        old = self.containers.get(info["Id"])
        if old is not None and rstate == RUNNING:
            st.cpu_millis, st.memory_bytes = old.cpu_millis, old.memory_bytes
        st.log_path = cri_log_path(self.root_dir, ns, pod, uid, name, attempt)
        st.message = message
        return st

    def _update(self, cid: str) -> ContainerStatus | None:
        """Inspect one container into the cache (None and dropped if it is gone)."""
        try:
            info = self.api.inspect_container(cid)
        except self._errors.NotFound:
            self.containers.pop(cid, None)
            self._docker_state.pop(cid, None)
            return None
        st = self._status(info)
        self.containers[cid] = st
        self._docker_state[cid] = info["State"].get("Status", "")
        if st.sandbox_id and st.sandbox_id not in self.sandboxes:   # adopted without its record
            labels = {k: st.labels[k] for k in (LABEL_POD_UID, LABEL_POD_NAMESPACE, LABEL_POD_NAME)
                      if k in st.labels}
            self.sandboxes[st.sandbox_id] = PodSandbox(
                id=st.sandbox_id, pod_uid=st.pod_uid, namespace=st.namespace, name=st.pod_name,
                state=SANDBOX_READY, created_at=st.created_at, ip=st.labels.get(LABEL_POD_IP, ""),
                labels=labels)
            self._save()
        return st

    def _refresh(self) -> set[str]:
        changed: set[str] = set()
        rows = self.api.containers(all=True, filters=self._filters())
        seen = set()
        for row in rows:
            cid = row["Id"]
            seen.add(cid)
            if cid not in self.containers or self._docker_state.get(cid) != row.get("State"):
                before = self.containers.get(cid)
                st = self._update(cid)
                if st is not None and (before is None or before.state != st.state):
                    changed.add(st.pod_uid)
        for cid in set(self.containers) - seen:
            changed.add(self.containers.pop(cid).pod_uid)
            self._docker_state.pop(cid, None)
            self._unpump(cid)
        return changed

    def _pump(self, cid: str) -> None:
        st = self.containers.get(cid)
        if st is None or (cid in self.pumps and self.pumps[cid].alive()):
            return
        if self._pump_client is None:   # its own connections: each followed stream holds one
            import docker
            self._pump_client = docker.from_env(version=self.api.api_version, max_pool_size=1024)
        path = cri_log_path(self.root_dir, st.namespace, st.pod_name, st.pod_uid, st.name, st.attempt)
        self.pumps[cid] = LogPump(self._pump_client.api, cid, CriLogWriter(path)).start()

    def _unpump(self, cid: str) -> None:
        pump = self.pumps.pop(cid, None)
        if pump is not None:
            pump.stop()

    # -- sandboxes ----------------------------------------------------------
    def run_pod_sandbox(self, pod: dict, ip: str = "") -> str:
        md = pod.get("metadata") or {}
        labels = {LABEL_POD_UID: md.get("uid", ""), LABEL_POD_NAMESPACE: md.get("namespace", ""),
                  LABEL_POD_NAME: md.get("name", "")}
        sid = uuid.uuid4().hex
        self.sandboxes[sid] = PodSandbox(
            id=sid, pod_uid=labels[LABEL_POD_UID], namespace=labels[LABEL_POD_NAMESPACE],
            name=labels[LABEL_POD_NAME], state=SANDBOX_READY, created_at=self.wall(), ip=ip, labels=labels)
        self._save()
        return sid

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self.sandboxes[sandbox_id]
        for c in [c for c in self.containers.values() if c.sandbox_id == sandbox_id]:
            if c.state == RUNNING:
                self._kill(c.id, "SIGKILL")
            elif c.state == CREATED:
                self._remove(c.id)
            self._update(c.id)
        sb.state = SANDBOX_NOTREADY
        self._save()

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        rows = self.api.containers(all=True, filters=self._filters(**{LABEL_SANDBOX: sandbox_id}))
        for cid in {r["Id"] for r in rows} | {c.id for c in self.containers.values()
                                               if c.sandbox_id == sandbox_id}:
            self.remove_container(cid)
        sb = self.sandboxes.pop(sandbox_id, None)
        if sb is not None:
            self.images.forget(sb.pod_uid)
            self._save()

    # -- containers ---------------------------------------------------------
    def create_container(self, sandbox_id: str, pod: dict, container: dict, attempt: int,
                         mounts: list[Mount] | None = None, env: dict[str, str] | None = None) -> str:
        sb = self.sandboxes[sandbox_id]
        name = container.get("name", "")
        image = str(container.get("image") or "")
        self.images.ensure(pod, container)
        mounts = list(mounts or ())
        labels = dict(sb.labels, **{
            LABEL_CONTAINER_NAME: name, LABEL_LAB: self.lab, LABEL_NODE: self.node_name,
            LABEL_SANDBOX: sandbox_id, LABEL_ATTEMPT: str(attempt), LABEL_IMAGE: image,
            LABEL_POD_IP: sb.ip, LABEL_MOUNTS: json.dumps([vars(m) for m in mounts])})
        if env is None:   # a kubelet that resolves nothing: plain values and POD_IP
            env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or ()
                   if isinstance(e, dict) and "name" in e and "valueFrom" not in e}
            env.setdefault("POD_IP", sb.ip)
        res = container.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        hc: dict[str, Any] = {"network_mode": self.network_mode, "init": False,
                              "mounts": [self._types.Mount(target=m.container_path, source=m.host_path,
                                                           type="bind", read_only=bool(m.read_only))
                                         for m in mounts]}
        if limits.get("memory") is not None:
            hc["mem_limit"] = hc["memswap_limit"] = memory_bytes(str(limits["memory"]))
        if limits.get("cpu") is not None:
            hc["nano_cpus"] = cpu_millis(str(limits["cpu"])) * 1_000_000
        cpu_req = requests.get("cpu", limits.get("cpu"))
        if cpu_req is not None:
            hc["cpu_shares"] = max(2, cpu_millis(str(cpu_req)) * 1024 // 1000)
        kwargs: dict[str, Any] = {
            "command": container.get("args") or None, "entrypoint": container.get("command") or None,
            "environment": [f"{k}={v}" for k, v in env.items()], "labels": labels,
            "working_dir": container.get("workingDir") or None,
            "stdin_open": bool(container.get("stdin")), "tty": False}
        if self.network_mode == "none":
            kwargs["hostname"] = (pod.get("metadata") or {}).get("name", "")[:63] or None
        cname = f"k8s_{name}_{sb.name}_{sb.namespace}_{sb.pod_uid}_{attempt}"
        try:
            host_config = self.api.create_host_config(**hc)
            try:
                cid = self.api.create_container(image, name=cname, host_config=host_config, **kwargs)["Id"]
            except self._errors.APIError as e:
                if e.status_code != 409:
                    raise
                cid = self.api.create_container(image, name=f"{cname}_{uuid.uuid4().hex[:8]}",
                                                host_config=host_config, **kwargs)["Id"]
        except (self._errors.APIError, self._errors.InvalidArgument, ValueError) as e:
            msg = getattr(e, "explanation", None) or str(e)
            raise CreateError("CreateContainerError", str(msg)) from e
        self._update(cid)
        return cid

    def start_container(self, container_id: str) -> None:
        st = self.containers.get(container_id) or self._update(container_id)
        if st is None:
            raise KeyError(container_id)
        if st.state != CREATED:
            raise RuntimeError(f"container {container_id} is {st.state}, not created")
        try:
            self.api.start(container_id)
        except self._errors.APIError as e:
            self._update(container_id)
            raise StartError("RunContainerError", str(e.explanation or e)) from e
        self._update(container_id)
        self._pump(container_id)

    def stop_container(self, container_id: str, grace_seconds: float) -> None:
        st = self.containers.get(container_id) or self._update(container_id)
        if st is None:
            raise KeyError(container_id)
        if st.state == EXITED:
            return
        if st.state == CREATED:
            self._remove(container_id)
            self._update(container_id)
            return
        grace = max(0.0, float(grace_seconds))
        if grace <= 0:
            self._kill(container_id, "SIGKILL")
        else:
            info = self.api.inspect_container(container_id)
            self._kill(container_id, info["Config"].get("StopSignal") or "SIGTERM")
            due = self.wall() + grace
            if due < self.stopping.get(container_id, float("inf")):
                self.stopping[container_id] = due
                self._save()
        self._update(container_id)

    def remove_container(self, container_id: str) -> None:
        st = self.containers.get(container_id)
        self._unpump(container_id)
        self._remove(container_id)
        self.containers.pop(container_id, None)
        self._docker_state.pop(container_id, None)
        if self.stopping.pop(container_id, None) is not None:
            self._save()
        if st is not None:
            path = cri_log_path(self.root_dir, st.namespace, st.pod_name, st.pod_uid, st.name, st.attempt)
            CriLogWriter(path).remove()

    def _kill(self, cid: str, sig: str) -> None:
        try:
            self.api.kill(cid, signal=sig)
        except self._errors.APIError as e:   # not running any more (409), or gone (404)
            if e.status_code not in (404, 409):
                raise

    def _remove(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True)
        except self._errors.NotFound:
            pass
        except self._errors.APIError as e:
            if e.status_code != 409:   # removal already in progress
                raise

    def has_image(self, image: str) -> bool:
        """Whether the engine has ``image`` (the kubelet's "already present on machine")."""
        try:
            self.api.inspect_image(image)
            return True
        except self._errors.APIError:
            return False

    def list_pod_sandboxes(self) -> list[PodSandbox]:
        return list(self.sandboxes.values())

    def list_containers(self) -> list[ContainerStatus]:
        return list(self.containers.values())

    def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        """Run ``cmd`` in the container; (exit code, stdout+stderr); TimeoutError after ``timeout``."""
        eid = self.api.exec_create(container_id, list(cmd), stdout=True, stderr=True)["Id"]
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["data"] = self.api.exec_start(eid)
            except Exception as e:   # surfaced below
                out["error"] = e

        t = threading.Thread(target=run, daemon=True, name=f"exec-{container_id[:12]}")
        t.start()
        t.join(max(0.0, float(timeout)))
        if t.is_alive():
            self._kill_exec(eid)
            t.join(5)
            raise TimeoutError(f"command {list(cmd)!r} timed out after {timeout}s")
        if "error" in out:
            raise out["error"]
        code = self.api.exec_inspect(eid).get("ExitCode")
        return (126 if code is None else int(code)), bytes(out.get("data") or b"")

    def _kill_exec(self, eid: str) -> None:
        import psutil
        pid = int(self.api.exec_inspect(eid).get("Pid") or 0)
        if pid <= 0:
            return
        try:
            root = psutil.Process(pid)
            procs = root.children(recursive=True) + [root]
        except psutil.Error:
            return
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass

    # -- time ---------------------------------------------------------------
    def tick(self, now: float) -> set[str]:
        changed: set[str] = set()
        wall = self.wall()
        for cid, due in list(self.stopping.items()):
            st = self.containers.get(cid)
            if st is None or st.state == EXITED:
                del self.stopping[cid]
                self._save()
            elif wall >= due:
                self._kill(cid, "SIGKILL")
                del self.stopping[cid]
                self._save()
                self.next_poll = 0.0
        changed |= self.images.tick(now)
        if now >= self.next_poll:
            self.next_poll = now + self.poll_interval
            changed |= self._refresh()
        if now >= self.next_usage:
            self.next_usage = now + USAGE_INTERVAL
            sample_usage(self.containers.values(), self._cpu_seen, self.wall())
        return changed

    def next_event(self, now: float) -> float | None:
        due = self.images.due(now)
        if any(c.state != EXITED for c in self.containers.values()):
            due.append(self.next_poll)
        if self.stopping:
            due.append(now + max(0.0, min(self.stopping.values()) - self.wall()))
        return min(due) if due else None

    def close(self) -> None:
        """Stop following logs and close the connections (the containers keep running)."""
        for cid in list(self.pumps):
            self._unpump(cid)
        if self._pump_client is not None:
            self._pump_client.close()
            self._pump_client = None
        if self._own_client:
            self.client.close()


def make_docker_runtime(*, profile: Any = None, root_dir: str, node_name: str, lab: str | None = None,
                        clock: Callable[[], float] = time.monotonic, state_path: str | None = None,
                        **kw: Any) -> DockerRuntime:
    """The docker branch of ``node.runtime.make_runtime``."""
    if state_path and os.path.basename(state_path) == "runtime.json":   # the fake runtime's file
        state_path = os.path.join(os.path.dirname(state_path), "docker-runtime.json")
    # Extras meant for other runtimes (the process runtime's anchor_pid) do not apply:
    # containers belong to the engine and go with `lab down` (remove_all).
    known = {k: kw[k] for k in ("client", "network_mode", "poll_interval", "wall") if k in kw}
    return DockerRuntime(profile, root_dir=root_dir, node_name=node_name, lab=lab, clock=clock,
                         state_path=state_path, **known)
