"""The prober's pure part: probe specs, one probe worker's state machine, port resolution.

Contract (Kubernetes' ``pkg/kubelet/prober``: ``worker.doProbe``, ``prober.probe``)
---------------------------------------------------------------------------------
* ``parse_probe(d)`` reads a container's ``livenessProbe``/``readinessProbe``/
  ``startupProbe`` with Kubernetes' defaults: ``initialDelaySeconds`` 0,
  ``periodSeconds`` 10, ``timeoutSeconds`` 1, ``successThreshold`` 1,
  ``failureThreshold`` 3 (values below 1 are raised to 1; liveness and startup
  always use a success threshold of 1). The handler is the first of ``exec``,
  ``httpGet``, ``tcpSocket`` and ``grpc`` that is set (``""`` when none is).
* ``Worker`` is one (pod, container, probe kind). Its published ``result``
  starts at the kind's initial value (liveness Success, readiness Failure,
  startup Unknown) for each new container id (``reset``). ``record(result)``
  counts consecutive equal results and publishes one only when it reaches its
  threshold (``failureThreshold`` failures, ``successThreshold`` successes);
  a published liveness or startup Failure puts the worker on hold (no more
  probes until the next container) and returns ``KILL``. A probe that
  *errored* (``ProbeError``: e.g. a named port that the container does not
  declare) is thrown away, as Kubernetes does: it neither counts nor changes
  the result.
* ``resolve_port(port, container)`` turns a probe's ``port`` (a number, a
  numeric string, or a name from the container's ``ports[].name``) into a port
  number, or raises ``ProbeError`` with Kubernetes' message plus a hint.
* ``container_probe_state(...)`` is the prober manager's ``UpdatePodStatus``
  for one container: (started, ready), where ready ``None`` means "no
  readiness probe: the runtime decides".
* Results are the strings ``SUCCESS``, ``FAILURE``, ``UNKNOWN``; kinds are
  ``LIVENESS``, ``READINESS``, ``STARTUP``; nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
KINDS = (STARTUP, LIVENESS, READINESS)
SPEC_FIELD = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}
TITLE = {LIVENESS: "Liveness", READINESS: "Readiness", STARTUP: "Startup"}
SUCCESS, FAILURE, UNKNOWN = "success", "failure", "unknown"
INITIAL = {LIVENESS: SUCCESS, READINESS: FAILURE, STARTUP: UNKNOWN}
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
KILL = "kill"


class ProbeError(Exception):
    """A probe that could not be run (Kubernetes: the prober errored, result unknown)."""


@dataclass(frozen=True)
class ProbeSpec:
    handler: str                 # exec | httpGet | tcpSocket | grpc | "" (none)
    action: dict                 # the handler's own fields
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None   # probe-level terminationGracePeriodSeconds


def _num(d: dict, key: str, default: float, minimum: float) -> float:
    v = d.get(key)
    try:
        v = float(v) if v is not None else default
    except (TypeError, ValueError):
        v = default
    return max(minimum, v)


def parse_probe(d: Any, kind: str) -> ProbeSpec | None:
    if not isinstance(d, dict):
        return None
    handler = next((h for h in HANDLERS if isinstance(d.get(h), dict)), "")
    success = int(_num(d, "successThreshold", 1, 1))
    if kind in (LIVENESS, STARTUP):
        success = 1
    grace = d.get("terminationGracePeriodSeconds")
    return ProbeSpec(
        handler=handler, action=dict(d.get(handler) or {}) if handler else {},
        initial_delay=_num(d, "initialDelaySeconds", 0, 0), period=_num(d, "periodSeconds", 10, 1),
        timeout=_num(d, "timeoutSeconds", 1, 1), success_threshold=success,
        failure_threshold=int(_num(d, "failureThreshold", 3, 1)),
        termination_grace=float(grace) if isinstance(grace, (int, float)) else None)


def container_probes(container: dict) -> dict[str, ProbeSpec]:
    out = {}
    for kind in KINDS:
        spec = parse_probe(container.get(SPEC_FIELD[kind]), kind)
        if spec is not None:
            out[kind] = spec
    return out


def resolve_port(port: Any, container: dict) -> int:
    """Kubernetes' ``probe.ResolveContainerPort``."""
    if isinstance(port, bool) or port is None or port == "":
        raise ProbeError(f"invalid port number: {port!r} (set the probe's port to a number or "
                         "a name from the container's ports)")
    if isinstance(port, int):
        n = port
    else:
        name = str(port)
        found = [p.get("containerPort") for p in container.get("ports") or ()
                 if isinstance(p, dict) and p.get("name") == name]
        if found:
            n = found[0]
        else:
            try:
                n = int(name)
            except ValueError:
                declared = [p.get("name") for p in container.get("ports") or ()
                            if isinstance(p, dict) and p.get("name")]
                raise ProbeError(
                    f'strconv.Atoi: parsing "{name}": invalid syntax (container '
                    f'"{container.get("name", "")}" declares no port named "{name}"'
                    f'{"; its named ports: " + ", ".join(declared) if declared else ""}: '
                    "add it to ports[].name or use the port number)") from None
    if not isinstance(n, int) or not 0 < n < 65536:
        raise ProbeError(f"invalid port number: {n}")
    return n


@dataclass
class Worker:
    uid: str
    container: str
    kind: str
    spec: ProbeSpec
    container_id: str = ""
    result: str = UNKNOWN
    last_result: str = ""
    result_run: int = 0
    on_hold: bool = False
    next_due: float | None = None   # monotonic; None: not scheduled (no running container)
    in_flight: Any = None           # a Future while a probe runs in the pool
    extra: dict = field(default_factory=dict)

    def reset(self, container_id: str) -> None:
        """A new container: the kind's initial result, probing resumes."""
        self.container_id = container_id
        self.result = INITIAL[self.kind]
        self.last_result = ""
        self.result_run = 0
        self.on_hold = False
        self.next_due = None
        self.in_flight = None

    def record(self, result: str) -> str | None:
        """Feed one probe result; returns "changed", KILL or None."""
        if result == self.last_result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = result, 1
        if ((result == FAILURE and self.result_run < self.spec.failure_threshold)
                or (result == SUCCESS and self.result_run < self.spec.success_threshold)):
            return None
        changed = result != self.result
        self.result = result
        if self.kind in (LIVENESS, STARTUP) and result == FAILURE:
            self.on_hold = True
            self.result_run = 0
            return KILL
        return "changed" if changed else None


def should_probe(w: Worker, started: bool, running_for: float) -> bool:
    """``doProbe``'s gates for a worker whose container is running."""
    if w.on_hold or running_for < w.spec.initial_delay:
        return False
    if w.kind == STARTUP:
        return not started          # stop probing for startup once the container has started
    return started                  # other probes wait for the startup probe


def container_probe_state(startup: Worker | None, readiness: Worker | None,
                          container_id: str, running: bool) -> tuple[bool, bool | None]:
    """(started, ready) as the prober manager reports them; ready None = the runtime's hint."""
    if not running:
        return False, False
    started = startup is None or (startup.container_id == container_id and startup.result == SUCCESS)
    if not started:
        return False, False
    if readiness is None:
        return True, None
    return True, readiness.container_id == container_id and readiness.result == SUCCESS
