"""The docker runtime's engine side: client, labels, errors, lab clean-up and local images.

Contract
--------
* ``engine_client()`` is a ``docker.DockerClient`` for the environment's engine
  (``DOCKER_HOST`` or the default socket), or ``EngineUnavailable`` naming the fix.
* Every container of kemu carries ``kemu.lab`` and ``kemu.node`` (plus the CRI's
  pod labels): ``remove_all(lab)`` removes every container of a lab (``lab down``),
  or of one node of it.
* Errors carry ``reason`` (the container's waiting reason, as the kubelet shows
  it), ``message`` and ``events`` ((type, reason, message) for the kubelet to
  record); they are the interface's ``CreateContainerError`` /
  ``StartContainerError``, so a kubelet that knows only those still catches them.
* ``LocalImages`` is the kubelet's image manager without a registry: an image is
  used if the engine has it, whatever the pull policy (no registry can be
  reached, so nothing is ever pulled). A missing one is ``ErrImagePull`` (events
  ``Pulling``, ``Failed to pull image "x": ...``, ``Error: ErrImagePull``), and
  while the per-(pod uid, image) back-off runs (10 s, doubling to 300 s, as the
  kubelet's) ``ImagePullBackOff`` with ``Back-off pulling image "x"``; policy
  ``Never`` gives ``ErrImageNeverPull``; a malformed name ``InvalidImageName``.
  ``due()``/``tick(now)`` name the pods to sync again: shortly after a failure
  (to show the back-off) and when the back-off ends (to try again).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from node.runtime.docker_logs import ts_nanos
from node.runtime.interface import CreateContainerError, StartContainerError

LABEL_LAB = "kemu.lab"
LABEL_NODE = "kemu.node"
LABEL_SANDBOX = "kemu.sandbox"
LABEL_ATTEMPT = "kemu.attempt"
LABEL_IMAGE = "kemu.image"
LABEL_MOUNTS = "kemu.mounts"
LABEL_POD_IP = "kemu.pod-ip"
NO_LAB = "none"
IMAGE_BACKOFF_INITIAL, IMAGE_BACKOFF_MAX = 10.0, 300.0


class ContainerRuntimeError(RuntimeError):
    """A container could not be created or started: ``reason`` and ``message`` as the
    kubelet shows them in the container's waiting state; ``events`` to record."""

    def __init__(self, reason: str, message: str,
                 events: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message
        self.events = events if events is not None else [("Warning", "Failed", f"Error: {message}")]


class CreateError(ContainerRuntimeError, CreateContainerError):
    """``create_container`` failed (reason CreateContainerError)."""


class StartError(ContainerRuntimeError, StartContainerError):
    """``start_container`` failed (reason RunContainerError); the container is reported
    exited with exit code 128, reason ``StartError`` and the engine's message."""


class ImagePullError(ContainerRuntimeError, CreateContainerError):
    """ErrImagePull, ImagePullBackOff, ErrImageNeverPull or InvalidImageName (``reason``)."""


class EngineUnavailable(RuntimeError):
    pass


def engine_client(timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for the engine of the environment, or EngineUnavailable."""
    try:
        import docker
    except ImportError as e:   # pragma: no cover - docker is a dependency
        raise EngineUnavailable("the docker SDK is not installed: pip install docker") from e
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
        return client
    except Exception as e:
        raise EngineUnavailable(f"no Docker engine answers ({e}); start one with `make docker-engine` "
                                "(dockerd --bridge=none --iptables=false --ip-masq=false)") from e


def remove_all(lab: str, client: Any = None, node: str | None = None) -> int:
    """Remove every container of ``lab`` (or of one node of it); the number removed."""
    import docker
    client = client or engine_client()
    filters = [f"{LABEL_LAB}={lab or NO_LAB}"] + ([f"{LABEL_NODE}={node}"] if node else [])
    n = 0
    for row in client.api.containers(all=True, filters={"label": filters}):
        try:
            client.api.remove_container(row["Id"], force=True)
            n += 1
        except docker.errors.NotFound:
            pass
    return n


def epoch(ts: str | None) -> float | None:
    if not ts or ts.startswith("0001-"):
        return None
    return ts_nanos(ts) / 1e9


class LocalImages:
    def __init__(self, api: Any, errors: Any, clock: Callable[[], float]) -> None:
        self.api, self.errors, self.clock = api, errors, clock
        self.backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (uid, image) -> (until, delay)
        self.wakes: dict[str, float] = {}      # pod uid -> monotonic time to sync it again
        self._fired: set[tuple[str, float]] = set()   # back-offs whose end was reported

    def ensure(self, pod: dict, container: dict) -> str:
        """The local image's id, or ImagePullError as the kubelet's image manager words it."""
        image = str(container.get("image") or "")
        uid = (pod.get("metadata") or {}).get("uid", "")
        try:
            image_id = str(self.api.inspect_image(image)["Id"])
            self.backoff.pop((uid, image), None)
            return image_id
        except self.errors.ImageNotFound:
            pass
        except self.errors.APIError as e:
            if e.status_code != 400:
                raise
            msg = (f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                   f'"{image}": invalid reference format')
            raise ImagePullError("InvalidImageName", msg, [("Warning", "InspectFailed", msg)]) from e
        if container.get("imagePullPolicy") == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            raise ImagePullError("ErrImageNeverPull", msg, [("Warning", "ErrImageNeverPull", msg)])
        now = self.clock()
        until, delay = self.backoff.get((uid, image), (0.0, 0.0))
        if now < until:
            msg = f'Back-off pulling image "{image}"'
            raise ImagePullError("ImagePullBackOff", msg, [("Normal", "BackOff", msg),
                                                           ("Warning", "Failed", "Error: ImagePullBackOff")])
        delay = IMAGE_BACKOFF_INITIAL if not delay else min(2 * delay, IMAGE_BACKOFF_MAX)
        self.backoff[(uid, image)] = (now + delay, delay)
        self.wakes[uid] = now + min(1.0, delay / 2)   # the next sync shows ImagePullBackOff
        err = (f'failed to pull image "{image}": not present in the engine and no registry can be '
               f"reached (kemu never pulls): build it with `kemu image build-test-images` or `docker load` it")
        raise ImagePullError("ErrImagePull", err, [
            ("Normal", "Pulling", f'Pulling image "{image}"'),
            ("Warning", "Failed", f'Failed to pull image "{image}": {err}'),
            ("Warning", "Failed", "Error: ErrImagePull")])

    def tick(self, now: float) -> set[str]:
        """Pods to sync again now; each wake fires once."""
        out = {uid for uid, at in self.wakes.items() if now >= at}
        for uid in out:
            del self.wakes[uid]
        for (uid, _image), (until, _d) in self.backoff.items():
            if until <= now and uid not in self.wakes and (uid, until) not in self._fired:
                self._fired.add((uid, until))
                out.add(uid)
        return out

    def due(self, now: float) -> list[float]:
        return list(self.wakes.values()) + [until for (uid, _i), (until, _d) in self.backoff.items()
                                            if (uid, until) not in self._fired]

    def forget(self, uid: str) -> None:
        self.wakes.pop(uid, None)
        for key in [k for k in self.backoff if k[0] == uid]:
            self._fired.discard((uid, self.backoff.pop(key)[0]))


CGROUP = "/sys/fs/cgroup"


def sample_usage(containers: Iterable[Any], cpu_seen: dict[str, tuple[float, int]], wall: float) -> None:
    """Set ``cpu_millis`` (since the last sample, kept in ``cpu_seen``) and ``memory_bytes``
    of the running containers from their cgroups (v1 ``docker/<id>``, v2
    ``system.slice/docker-<id>.scope``)."""
    for st in containers:
        if st.state != "running":
            cpu_seen.pop(st.id, None)
            continue
        mem = _read_int(f"{CGROUP}/memory/docker/{st.id}/memory.usage_in_bytes",
                        f"{CGROUP}/system.slice/docker-{st.id}.scope/memory.current")
        cpu = _read_int(f"{CGROUP}/cpuacct/docker/{st.id}/cpuacct.usage")
        if cpu is None:
            usec = _read_stat(f"{CGROUP}/system.slice/docker-{st.id}.scope/cpu.stat", "usage_usec")
            cpu = None if usec is None else usec * 1000
        st.memory_bytes = mem or 0
        if cpu is not None:
            prev = cpu_seen.get(st.id)
            if prev is not None and wall > prev[0]:
                st.cpu_millis = max(0, int((cpu - prev[1]) / (wall - prev[0]) / 1e6))
            cpu_seen[st.id] = (wall, cpu)


def _read_int(*paths: str) -> int | None:
    for p in paths:
        try:
            with open(p) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def _read_stat(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return None
