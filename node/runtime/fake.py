"""The fake runtime: simulated containers whose life is set by pod annotations.

Contract
--------
Containers are records in memory, driven by the injected monotonic ``clock``
(``tick(now)`` moves them along; nothing happens between ticks). Reported
times are wall-clock (``wall``). KWOK's stages are the model: each container
goes created -> running -> (exited), and the pod's annotations choose when.

Annotations (on the pod; ``kemu.io/<key>.<container>`` overrides
``kemu.io/<key>`` for one container; durations are Go-style: ``500ms``,
``2s``, ``1m30s``, or a bare number of seconds):

``kemu.io/start-delay``        time from ``start_container`` to running (default 0).
``kemu.io/run-duration``       the container exits this long after it started
                               (default: it runs until stopped).
``kemu.io/exit-code``          the exit code when it exits by itself (default 0;
                               0 is reason Completed, anything else Error).
``kemu.io/crash-on-start``     ``"true"``: exits with code 1 (Error) as soon as it starts.
``kemu.io/ready-delay``        time from running to ready (default 0).
``kemu.io/never-ready``        ``"true"``: running but never ready.
``kemu.io/cpu-usage``          reported CPU usage while running, e.g. ``250m`` (default 0).
``kemu.io/memory-usage``       reported memory usage while running, e.g. ``64Mi`` (default 0).
``kemu.io/termination-delay``  how long it takes to stop after ``stop_container``
                               (default 0: immediate), capped by the grace period.
                               Stopped within the grace period: exit 0, Completed;
                               still running when the grace period ends: exit 137, Error.

Probes (the kubelet asks ``simulate_probe(container_id, kind)`` instead of
connecting, and runs ``exec`` probes through ``exec_sync``; times count from
the start of each container, so every restart starts afresh):

``kemu.io/liveness-fail-after``     liveness probes fail from this long after start (default: never).
``kemu.io/readiness-fail-after``    readiness probes fail from this long after start (default: never).
``kemu.io/readiness-recover-after`` readiness probes succeed again from this long after start
                                    (alone: they fail until then).
``kemu.io/startup-succeed-after``   startup probes fail until this long after start (default 0).
``kemu.io/probe-exec-exit-code``    the exit code of every ``exec_sync`` command (default 0).
``kemu.io/probe-exec-hang``         ``"true"``: ``exec_sync`` commands hang: ``TimeoutError``.
Readiness probes also fail while ``ready-delay``/``never-ready`` keep the container unready.

Default: a container runs until it is stopped. A pod whose
``metadata.ownerReferences`` include ``kind: Job`` and that has no
``run-duration`` completes with exit code 0 after ``profile.job_completion_delay``.

Mounts: ``create_container(..., mounts)`` keeps the container's mount table
(``ContainerStatus.mounts``: host path, container path, readOnly, volume
name) as given; nothing is bind-mounted, the table is what a real runtime
would mount. It is persisted with the rest of the state.

Persistence: with ``state_path`` (the kubelet passes
``<root>/var/lib/kemu/runtime.json``) every change is appended to the
runtime's journal (``emulator.runtime_state``: a record per sandbox or
container that changed, compacted now and then) before the call returns, or,
``buffered`` (the kubelet's runtime), at the next ``flush()``; the journal is
replayed on construction, so a restarted kubelet process finds
(and adopts) the containers it left running. Monotonic times are stored as
they are: CLOCK_MONOTONIC is shared by every process on the machine.

``generation`` (the interface's) counts every change: usage figures here
change only with a container's state, so it covers them.
"""
from __future__ import annotations

import hashlib
import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from emulator import runtime_state
from emulator.api.quantity import cpu_millis, memory_bytes
from emulator.profiles import Profile
from node.runtime.interface import (CREATED, EXITED, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
                                    LABEL_POD_NAMESPACE, LABEL_POD_UID, RUNNING,
                                    SANDBOX_NOTREADY, SANDBOX_READY, ContainerStatus, Mount,
                                    PodSandbox)

PREFIX = "kemu.io/"
KILLED_EXIT_CODE = 137
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("1m30s", "500ms") or a bare number of seconds."""
    s = str(text).strip()
    try:
        return max(0.0, float(s))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}")
    return total


def annotation(pod: dict, key: str, container: str | None = None) -> str | None:
    """``kemu.io/<key>.<container>`` if set, else ``kemu.io/<key>``."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    if container is not None:
        v = ann.get(f"{PREFIX}{key}.{container}")
        if v is not None:
            return str(v)
    v = ann.get(PREFIX + key)
    return None if v is None else str(v)


def is_job_pod(pod: dict) -> bool:
    return any(isinstance(r, dict) and r.get("kind") == "Job"
               for r in (pod.get("metadata") or {}).get("ownerReferences") or ())


@dataclass
class Behaviour:
    """What one container will do, read from its pod's annotations."""
    start_delay: float = 0.0
    run_duration: float | None = None
    exit_code: int = 0
    crash_on_start: bool = False
    ready_delay: float = 0.0
    never_ready: bool = False
    cpu_millis: int = 0
    memory_bytes: int = 0
    termination_delay: float = 0.0
    liveness_fail_after: float | None = None
    readiness_fail_after: float | None = None
    readiness_recover_after: float | None = None
    startup_succeed_after: float = 0.0
    probe_exec_exit_code: int = 0
    probe_exec_hang: bool = False


def behaviour_for(pod: dict, container: str, profile: Profile) -> Behaviour:
    """Parse the annotations; a malformed value falls back to the default."""
    b = Behaviour()

    def get(key: str, parse: Callable[[str], Any], default: Any) -> Any:
        raw = annotation(pod, key, container)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            return default

    truth = lambda s: s.strip().lower() == "true"  # noqa: E731
    b.start_delay = get("start-delay", parse_duration, 0.0)
    b.run_duration = get("run-duration", parse_duration, None)
    b.exit_code = get("exit-code", int, 0)
    b.crash_on_start = get("crash-on-start", truth, False)
    b.ready_delay = get("ready-delay", parse_duration, 0.0)
    b.never_ready = get("never-ready", truth, False)
    b.cpu_millis = get("cpu-usage", cpu_millis, 0)
    b.memory_bytes = get("memory-usage", memory_bytes, 0)
    b.termination_delay = get("termination-delay", parse_duration, 0.0)
    b.liveness_fail_after = get("liveness-fail-after", parse_duration, None)
    b.readiness_fail_after = get("readiness-fail-after", parse_duration, None)
    b.readiness_recover_after = get("readiness-recover-after", parse_duration, None)
    b.startup_succeed_after = get("startup-succeed-after", parse_duration, 0.0)
    b.probe_exec_exit_code = get("probe-exec-exit-code", int, 0)
    b.probe_exec_hang = get("probe-exec-hang", truth, False)
    if b.run_duration is None and is_job_pod(pod) and not b.crash_on_start:
        b.run_duration = profile.job_completion_delay
    return b


@dataclass
class _Container:
    status: ContainerStatus
    behaviour: Behaviour
    start_due: float | None = None   # monotonic: when it starts running
    started: float | None = None     # monotonic
    exit_due: float | None = None    # monotonic
    exit_code_due: int = 0
    ready_due: float | None = None   # monotonic


@dataclass
class _State:
    sandboxes: dict[str, PodSandbox] = field(default_factory=dict)
    containers: dict[str, _Container] = field(default_factory=dict)


class FakeRuntime:
    name = "fake"
    version = "fake://0.1"

    def __init__(self, profile: Profile, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, state_path: str | None = None,
                 buffered: bool = False) -> None:
        self.profile = profile
        self.clock = clock
        self.wall = wall
        self.state_path = state_path
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self.state = _State()
        self.generation = 0   # bumped by every change (see the contract)
        self._next: tuple[int, float | None] = (-1, None)   # (generation, next_event) last computed
        self.journal = runtime_state.Journal(state_path, self.name, self._snapshot,
                                             buffered) if state_path else None
        if state_path:
            self._load()

    # -- helpers ------------------------------------------------------------
    def _new_id(self) -> str:
        return hashlib.sha256(f"{self._prefix}-{next(self._ids)}".encode()).hexdigest()[:32]

    def _wall_of(self, mono: float) -> float:
        return self.wall() - (self.clock() - mono)

    @staticmethod
    def _pod_labels(pod: dict) -> dict[str, str]:
        md = pod.get("metadata") or {}
        return {LABEL_POD_UID: md.get("uid", ""), LABEL_POD_NAMESPACE: md.get("namespace", ""),
                LABEL_POD_NAME: md.get("name", "")}

    # -- sandboxes ----------------------------------------------------------
    def run_pod_sandbox(self, pod: dict, ip: str = "") -> str:
        labels = self._pod_labels(pod)
        sid = self._new_id()
        self.state.sandboxes[sid] = PodSandbox(
            id=sid, pod_uid=labels[LABEL_POD_UID], namespace=labels[LABEL_POD_NAMESPACE],
            name=labels[LABEL_POD_NAME], state=SANDBOX_READY, created_at=self.wall(), ip=ip,
            labels=labels)
        self._save(sandboxes=(sid,))
        return sid

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sb = self.state.sandboxes[sandbox_id]
        stopped = []
        for c in self.state.containers.values():
            if c.status.sandbox_id == sandbox_id and c.status.state != EXITED:
                self._exit(c, self.clock(), KILLED_EXIT_CODE if c.status.state == RUNNING else 0)
                stopped.append(c.status.id)
        sb.state = SANDBOX_NOTREADY
        self._save(sandboxes=(sandbox_id,), containers=stopped)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        if sandbox_id in self.state.sandboxes:
            self.stop_pod_sandbox(sandbox_id)
        gone = self.state.sandboxes.pop(sandbox_id, None) is not None
        cids = [k for k, c in self.state.containers.items() if c.status.sandbox_id == sandbox_id]
        for cid in cids:
            del self.state.containers[cid]
        self._save(gone_sandboxes=(sandbox_id,) if gone else (), gone_containers=cids)

    # -- containers ---------------------------------------------------------
    def create_container(self, sandbox_id: str, pod: dict, container: dict, attempt: int,
                         mounts: list[Mount] | None = None, env: dict[str, str] | None = None) -> str:
        # ``env`` (the kubelet's resolved environment) is accepted and ignored: nothing runs.
        sb = self.state.sandboxes[sandbox_id]
        name = container.get("name", "")
        image = container.get("image", "")
        cid = self._new_id()
        labels = dict(sb.labels, **{LABEL_CONTAINER_NAME: name})
        st = ContainerStatus(
            id=cid, sandbox_id=sandbox_id, pod_uid=sb.pod_uid, namespace=sb.namespace,
            pod_name=sb.name, name=name, attempt=attempt, image=image,
            image_id="sha256:" + hashlib.sha256(image.encode()).hexdigest(),
            state=CREATED, created_at=self.wall(), labels=labels,
            mounts=[Mount(**vars(m)) for m in mounts or ()])
        self.state.containers[cid] = _Container(st, behaviour_for(pod, name, self.profile))
        self._save(containers=(cid,))
        return cid

    def start_container(self, container_id: str) -> None:
        c = self.state.containers[container_id]
        if c.status.state != CREATED or c.start_due is not None:
            raise RuntimeError(f"container {container_id} is {c.status.state}, not created")
        c.start_due = self.clock() + c.behaviour.start_delay
        self._advance(c, self.clock())
        self._save(containers=(container_id,))

    def stop_container(self, container_id: str, grace_seconds: float) -> None:
        c = self.state.containers[container_id]
        now = self.clock()
        if c.status.state == EXITED:
            return
        if c.status.state == CREATED:
            self._exit(c, now, 0)
        else:
            delay = c.behaviour.termination_delay
            grace = max(0.0, float(grace_seconds))
            due = now + min(delay, grace)
            code = 0 if delay <= grace else KILLED_EXIT_CODE
            if c.exit_due is None or due < c.exit_due:
                c.exit_due, c.exit_code_due = due, code
            self._advance(c, now)
        self._save(containers=(container_id,))

    def remove_container(self, container_id: str) -> None:
        if self.state.containers.pop(container_id, None) is not None:
            self._save(gone_containers=(container_id,))

    def list_pod_sandboxes(self) -> list[PodSandbox]:
        return list(self.state.sandboxes.values())

    # -- probes -------------------------------------------------------------
    def simulate_probe(self, container_id: str, kind: str) -> bool:
        """Whether a ``kind`` (liveness|readiness|startup) probe passes now, from the annotations."""
        c = self.state.containers[container_id]
        b = c.behaviour
        if c.status.state != RUNNING or c.started is None:
            return False
        age = self.clock() - c.started
        if kind == "liveness":
            return b.liveness_fail_after is None or age < b.liveness_fail_after
        if kind == "startup":
            return age >= b.startup_succeed_after
        if not c.status.ready:
            return False
        failing = b.readiness_fail_after is not None and age >= b.readiness_fail_after
        if b.readiness_recover_after is not None and age >= b.readiness_recover_after:
            failing = False
        elif b.readiness_recover_after is not None and b.readiness_fail_after is None:
            failing = True
        return not failing

    def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        """Run ``cmd`` "in" the container: its exit code from ``kemu.io/probe-exec-exit-code``;
        ``kemu.io/probe-exec-hang`` raises TimeoutError at once (no time passes)."""
        c = self.state.containers[container_id]
        if c.status.state != RUNNING:
            raise RuntimeError(f"container {container_id} is {c.status.state}, not running")
        if c.behaviour.probe_exec_hang:
            raise TimeoutError(f"command {' '.join(cmd)!r} timed out after {timeout:g}s")
        return c.behaviour.probe_exec_exit_code, b""

    def list_containers(self) -> list[ContainerStatus]:
        return [c.status for c in self.state.containers.values()]

    # -- simulated time -----------------------------------------------------
    def tick(self, now: float) -> set[str]:
        due = self.next_event(now)
        if due is None or due > now:   # no stage is due: nothing can move (see _advance)
            return set()
        changed: set[str] = set()
        moved: list[str] = []
        for c in self.state.containers.values():
            if self._advance(c, now):
                changed.add(c.status.pod_uid)
                moved.append(c.status.id)
        if moved:
            self._save(containers=moved)
        return changed

    def next_event(self, now: float) -> float | None:
        """The earliest due stage (start, exit, ready); it can only move with a change, so it
        is computed once per ``generation``: the kubelet asks at every turn."""
        gen, due = self._next
        if gen == self.generation:
            return due
        best: float | None = None
        for c in self.state.containers.values():
            st = c.status.state
            for due in ((c.start_due if st == CREATED else None),
                        (c.exit_due if st == RUNNING else None),
                        (c.ready_due if st == RUNNING and not c.status.ready else None)):
                if due is not None and (best is None or due < best):
                    best = due
        self._next = (self.generation, best)
        return best

    def _exit(self, c: _Container, at: float, code: int) -> None:
        st = c.status
        st.state = EXITED
        st.exit_code = code
        st.reason = "Completed" if code == 0 else "Error"
        st.finished_at = self._wall_of(at)
        if st.started_at is None:
            st.started_at = st.finished_at
        st.ready = False
        st.cpu_millis = st.memory_bytes = 0

    def _advance(self, c: _Container, now: float) -> bool:
        """Move one container along its stages up to ``now``; True if it changed."""
        st, b = c.status, c.behaviour
        changed = False
        if st.state == CREATED and c.start_due is not None and now >= c.start_due:
            c.started = c.start_due
            st.state = RUNNING
            st.started_at = self._wall_of(c.started)
            st.cpu_millis, st.memory_bytes = b.cpu_millis, b.memory_bytes
            changed = True
            if b.crash_on_start:
                c.exit_due, c.exit_code_due = c.started, 1
            elif b.run_duration is not None and c.exit_due is None:
                c.exit_due, c.exit_code_due = c.started + b.run_duration, b.exit_code
            if not b.never_ready:
                c.ready_due = c.started + b.ready_delay
        if st.state == RUNNING and c.exit_due is not None and now >= c.exit_due:
            self._exit(c, c.exit_due, c.exit_code_due)
            return True
        if st.state == RUNNING and not st.ready and c.ready_due is not None and now >= c.ready_due:
            st.ready = True
            changed = True
        return changed

    # -- persistence --------------------------------------------------------
    @staticmethod
    def _container_record(c: _Container) -> dict:
        # The instances' own dicts, read as they are (``asdict`` deep-copies), encoded in C.
        return {"status": dict(vars(c.status), mounts=[vars(m) for m in c.status.mounts]),
                "behaviour": vars(c.behaviour), "start_due": c.start_due, "started": c.started,
                "exit_due": c.exit_due, "exit_code_due": c.exit_code_due, "ready_due": c.ready_due}

    def flush(self) -> None:
        """Write what changed since the last flush (a ``buffered`` runtime's journal)."""
        if self.journal is not None:
            self.journal.flush()

    def close(self) -> None:
        """Flush and close the state journal (a node host's stopped node); state is kept on disk."""
        if self.journal is not None:
            self.journal.close()

    def _snapshot(self) -> list[dict]:
        return ([{"sandbox": vars(s)} for s in self.state.sandboxes.values()]
                + [{"container": self._container_record(c)} for c in self.state.containers.values()])

    def _save(self, *, sandboxes: Iterable[str] = (), containers: Iterable[str] = (),
              gone_sandboxes: Iterable[str] = (), gone_containers: Iterable[str] = ()) -> None:
        """Append what changed: the named sandboxes and containers as they are now, and the removals."""
        self.generation += 1
        if self.journal is None:
            return
        st = self.state
        records = ([{"sandbox": vars(st.sandboxes[i])} for i in sandboxes]
                   + [{"container": self._container_record(st.containers[i])} for i in containers]
                   + [{"remove_sandbox": i} for i in gone_sandboxes]
                   + [{"remove_container": i} for i in gone_containers])
        if records:
            self.journal.append(records, len(st.sandboxes) + len(st.containers))

    def _load(self) -> None:
        assert self.state_path
        try:
            data = runtime_state.read_state(self.state_path)
            for s in data.get("sandboxes", ()):
                self.state.sandboxes[s["id"]] = PodSandbox(**s)
            for c in data.get("containers", ()):
                st = ContainerStatus(**c["status"])
                st.mounts = [Mount(**m) for m in st.mounts or ()]
                self.state.containers[c["status"]["id"]] = _Container(
                    st, Behaviour(**c["behaviour"]),
                    c.get("start_due"), c.get("started"), c.get("exit_due"),
                    c.get("exit_code_due", 0), c.get("ready_due"))
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, OSError):
            # A torn or foreign file: start empty rather than crash the node.
            self.state = _State()
