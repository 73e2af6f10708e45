"""The runtime interface every kemu runtime implements (fake, process, docker).

Contract (after the CRI's RuntimeService)
-----------------------------------------
* A pod runs in a sandbox: ``run_pod_sandbox(pod, ip="") -> sandbox_id``;
  ``stop_pod_sandbox(id)`` stops every container in it at once;
  ``remove_pod_sandbox(id)`` forgets the sandbox and its containers.
* ``create_container(sandbox_id, pod, container, attempt) -> container_id``
  then ``start_container(container_id)``. ``attempt`` is the restart count
  (the CRI's ``ContainerMetadata.attempt``); the kubelet never creates two
  containers with the same (pod uid, name, attempt). ``mounts`` is the
  container's mount table (the CRI's ``ContainerConfig.mounts``): each
  ``Mount`` binds a host path (inside the node's root, or the lab's shared
  storage) at a container path, read-only or not. The runtime keeps it with
  the container (``ContainerStatus.mounts``) and reports it unchanged.
  ``env`` is the container's fully resolved environment (the kubelet's
  makeEnvironmentVariables, ``$(VAR)`` already expanded in it and in
  ``command``/``args`` of the ``container`` passed in); runtimes that run
  nothing ignore it. A runtime that cannot create the container raises
  ``CreateContainerError`` (the kubelet reports waiting reason
  ``CreateContainerError``); one that cannot start it raises
  ``StartContainerError`` after recording the container as exited (exit code
  128, reason ``StartError``, the message): the kubelet reports waiting
  reason ``RunContainerError`` with that message.
* ``stop_container(id, grace_seconds)`` asks the container to stop; it may
  keep running up to ``grace_seconds`` and is then killed.
  ``remove_container(id)`` forgets an exited container.
* ``list_pod_sandboxes()`` and ``list_containers()`` are the source of truth.
  Every sandbox and container carries labels (``LABEL_POD_UID``,
  ``LABEL_POD_NAMESPACE``, ``LABEL_POD_NAME``, ``LABEL_CONTAINER_NAME``, the
  CRI's own label keys), so a restarted kubelet adopts what is already running
  and never starts duplicates.
* ``tick(now) -> set of pod uids`` advances a runtime that simulates time (a
  no-op for real ones) and returns the pods whose containers changed;
  ``next_event(now)`` is the monotonic time of its next scheduled change, or
  None, so the kubelet can sleep exactly until then.
* ``generation`` counts the changes to sandboxes and containers (usage
  figures included), or is None when the runtime cannot say: a caller that
  derives figures from ``list_containers()`` (the kubelet's usage summary)
  may skip the work while it is unchanged. Only the fake runtime counts; a
  real runtime's usage changes by itself.
* ``flush()`` makes the changes made since the last flush durable; the
  kubelet calls it at the end of each turn. The fake runtime buffers its
  journal until then (``runtime_state.Journal``); the real runtimes' state
  is durable at each call, and their flush does nothing.
* ``exec_sync(id, cmd, timeout) -> (exit code, output)`` runs ``cmd`` "in"
  a running container (its env, working dir and mounts) and returns its exit
  code and its stdout+stderr; on timeout the command is killed and
  ``TimeoutError`` raised.
* ``ContainerStatus.log_path`` is the container's CRI log file (absolute;
  ``""`` when the runtime writes none): ``<node root>/var/log/pods/
  <ns>_<pod>_<uid>/<container>/<attempt>.log``, one ``<RFC3339Nano> <stdout|
  stderr> <F|P> <text>`` line per output line, rotated by size
  (``node.runtime.proclogs``). ``message`` says why a container exited
  (``StartError``, ``OOMKilled``), as the CRI's ``ContainerStatus.message``.
* Times in ``ContainerStatus`` (``created_at``, ``started_at``,
  ``finished_at``) are wall-clock epoch seconds, ready for RFC 3339.
* Methods raise ``KeyError`` for an unknown id and ``RuntimeError`` for an
  impossible request (starting a container twice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"

# ContainerStatus.state values (CRI ContainerState without the CONTAINER_ prefix)
CREATED, RUNNING, EXITED, UNKNOWN = "created", "running", "exited", "unknown"
# PodSandbox.state values
SANDBOX_READY, SANDBOX_NOTREADY = "ready", "notready"


@dataclass
class PodSandbox:
    id: str
    pod_uid: str
    namespace: str
    name: str
    state: str                 # ready | notready
    created_at: float          # wall clock
    ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Mount:
    container_path: str
    host_path: str
    read_only: bool = False
    name: str = ""             # the pod volume it comes from


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    pod_uid: str
    namespace: str
    pod_name: str
    name: str
    attempt: int
    image: str
    image_id: str
    state: str                 # created | running | exited | unknown
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""           # Completed | Error | OOMKilled when exited
    ready: bool = False        # the runtime's readiness hint (the fake runtime simulates probes)
    cpu_millis: int = 0
    memory_bytes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    log_path: str = ""         # the CRI log file ("" when none is written)
    message: str = ""          # why it exited, when the runtime knows (StartError, OOMKilled)


class CreateContainerError(RuntimeError):
    """``create_container`` failed: the kubelet reports waiting reason CreateContainerError."""


class StartContainerError(RuntimeError):
    """``start_container`` failed: the kubelet reports waiting reason RunContainerError."""


class Runtime(Protocol):
    name: str       # "fake", "process", "docker"
    version: str    # containerRuntimeVersion, e.g. "fake://0.1"
    generation: int | None   # see the contract

    def run_pod_sandbox(self, pod: dict, ip: str = "") -> str: ...
    def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    def create_container(self, sandbox_id: str, pod: dict, container: dict, attempt: int,
                         mounts: list[Mount] | None = None,
                         env: dict[str, str] | None = None) -> str: ...
    def start_container(self, container_id: str) -> None: ...
    def stop_container(self, container_id: str, grace_seconds: float) -> None: ...
    def remove_container(self, container_id: str) -> None: ...
    def list_pod_sandboxes(self) -> list[PodSandbox]: ...
    def list_containers(self) -> list[ContainerStatus]: ...
    def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]: ...
    def tick(self, now: float) -> set[str]: ...
    def next_event(self, now: float) -> float | None: ...
    def flush(self) -> None: ...
