"""The kubelet's prober: liveness, readiness and startup probes for every runtime.

Contract (Kubernetes' prober manager and workers)
------------------------------------------------
* The kubelet calls ``update_pod(pod, containers, sandbox)`` whenever it syncs
  a pod, ``step(now)`` on every loop turn (returns the (namespace, name) of
  pods whose probe results changed, to be synced again), ``next_due(now)``
  for its sleep, ``remove_pod(uid)`` when a pod finishes, is deleted or is
  forgotten, and ``close()`` when it stops.
* One worker per (pod, container, probe kind), with the state machine of
  ``prober_logic``. A worker probes first ``initialDelaySeconds`` after its
  container started, then every ``periodSeconds``; the liveness and
  readiness probes wait until the startup probe has succeeded (their first
  probe is then due at once); the startup probe stops once it succeeded.
* Handlers: ``exec`` through ``runtime.exec_sync(container_id, cmd, timeout)``
  (a ``TimeoutError`` is a failure ``command "<cmd>" timed out``; a runtime
  without it makes the probe error); ``httpGet`` (host: ``httpGet.host`` or the
  pod IP; port by number or by the container's named port; ``path``,
  ``scheme`` HTTP or HTTPS without verification, ``httpHeaders``;
  ``User-Agent: kube-probe/1.32``; 200-399 is success, anything else
  ``HTTP probe failed with statuscode: N``); ``tcpSocket`` (a connect); ``grpc``
  (``grpc.health.v1`` when ``grpcio`` and ``grpcio-health-checking`` are
  installed, otherwise the probe errors saying so). Only loopback hosts
  (127.0.0.0/8) are ever contacted; any other host makes the probe error.
  Each probe is bounded by ``timeoutSeconds``.
* Real probes run in a small bounded thread pool (``MAX_WORKERS``) and their
  results are collected on a later ``step``: a probe never blocks the loop.
  A runtime with ``simulate_probe(container_id, kind) -> bool`` (the fake
  runtime) is asked instead of connecting: False is a failure in the
  handler's own words, True a success (``exec`` then still runs through its
  ``exec_sync``); these run inline, with no I/O.
* Events, in Kubernetes' words: each failed probe is a Warning ``Unhealthy``
  "<Kind> probe failed: <output>"; a probe that could not run (unknown port
  name, unsupported handler) is a Warning ``Unhealthy`` "<Kind> probe errored
  and resulted in unknown state: <error>" and its result is thrown away. A
  liveness (or startup) failure reaching ``failureThreshold`` kills the
  container (grace: the probe's ``terminationGracePeriodSeconds`` or the
  pod's) with a Normal ``Killing`` "Container <c> failed liveness probe, will
  be restarted" (", will be restarted" only when ``restartPolicy`` is not
  Never); its id goes into ``restart_ids`` so the kubelet restarts it whatever
  its exit code.
* A kubelet restarted next to running containers starts their readiness
  (startup) results at Success when the pod's status already reported them
  ready (started), so endpoints do not flap; the probes then go on as usual.
* ``status_for(uid, containers)`` gives, per container id with a startup or
  readiness probe, (started, ready) for the pod status (ready None: no
  readiness probe, the runtime decides).
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from node.kubelet import sync
from node.kubelet.prober_logic import (FAILURE, KILL, LIVENESS, READINESS, STARTUP, SUCCESS, TITLE,
                                       UNKNOWN, ProbeError, Worker, container_probe_state,
                                       container_probes, resolve_port, should_probe)
from node.runtime.interface import RUNNING, ContainerStatus, PodSandbox

MAX_WORKERS = 8            # probes running at once (the rest wait their turn in the pool)
IN_FLIGHT_POLL = 0.05      # how soon the loop looks again while probes are running
USER_AGENT = "kube-probe/1.32"
MAX_BODY = 10 * 1024
Outcome = tuple[str, str, str | None]   # (result, output, error)

try:   # gRPC health checking, only when the libraries are at hand
    import grpc  # type: ignore[import-not-found]
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-not-found]
except ImportError:   # pragma: no cover - depends on the environment
    grpc = None


def loopback_host(host: str) -> str:
    """The host as an address in 127.0.0.0/8, or ProbeError: kemu never leaves loopback."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8"):
            return host
    except ValueError:
        pass
    raise ProbeError(f'probe host "{host}" is not a loopback address: kemu connects only to '
                     "127.0.0.0/8 (leave host empty to probe the pod IP)")


def exec_probe(runtime: Any, container_id: str, command: list[str], timeout: float) -> Outcome:
    fn = getattr(runtime, "exec_sync", None)
    joined = " ".join(str(c) for c in command)
    try:
        if fn is None:
            raise NotImplementedError
        code, output = fn(container_id, [str(c) for c in command], timeout)
    except NotImplementedError:
        return UNKNOWN, "", (f'the {getattr(runtime, "name", "")} runtime cannot run commands in '
                             "containers (no exec_sync): use an httpGet or tcpSocket probe")
    except TimeoutError:
        return FAILURE, f'command "{joined}" timed out', None
    except KeyError:
        return UNKNOWN, "", f"container {container_id} not found"
    except Exception as e:   # the runtime's own failure to exec
        return UNKNOWN, "", f"exec {joined!r}: {e}"
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")
    return (SUCCESS if code == 0 else FAILURE), text.rstrip("\n"), None


def http_probe(host: str, port: int, path: str, scheme: str, headers: list, timeout: float) -> Outcome:
    scheme = (scheme or "HTTP").upper()
    path = path if path.startswith("/") else "/" + path
    url = f"{scheme.lower()}://{host}:{port}{path}"
    hdrs = {str(h.get("name")): str(h.get("value", "")) for h in headers or ()
            if isinstance(h, dict) and h.get("name")}
    lower = {k.lower() for k in hdrs}
    if "user-agent" not in lower:
        hdrs["User-Agent"] = USER_AGENT
    if "accept" not in lower:
        hdrs["Accept"] = "*/*"
    if scheme == "HTTPS":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY).decode("utf-8", "replace")
    except ConnectionRefusedError:
        return FAILURE, f'Get "{url}": dial tcp {host}:{port}: connect: connection refused', None
    except (socket.timeout, TimeoutError):
        return FAILURE, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                         "awaiting headers)"), None
    except (OSError, http.client.HTTPException) as e:
        return FAILURE, f'Get "{url}": {getattr(e, "strerror", None) or e}', None
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return SUCCESS, body, None
    return FAILURE, f"HTTP probe failed with statuscode: {resp.status}", None


def tcp_probe(host: str, port: int, timeout: float) -> Outcome:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return FAILURE, f"dial tcp {host}:{port}: connect: connection refused", None
    except (socket.timeout, TimeoutError):
        return FAILURE, f"dial tcp {host}:{port}: i/o timeout", None
    except OSError as e:
        return FAILURE, f"dial tcp {host}:{port}: {e.strerror or e}", None
    return SUCCESS, "", None


def grpc_probe(host: str, port: int, service: str, timeout: float) -> Outcome:
    if grpc is None:
        return UNKNOWN, "", ("grpc probes need the grpcio and grpcio-health-checking packages, "
                             "which are not installed (pip install grpcio grpcio-health-checking), "
                             "or use an httpGet, tcpSocket or exec probe")
    with grpc.insecure_channel(f"{host}:{port}") as ch:   # pragma: no cover - needs grpcio
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service),
                                                        timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return FAILURE, f"timeout: health rpc did not complete within {timeout:g}s", None
            return FAILURE, f'timeout: failed to connect service "{host}:{port}" within {timeout:g}s', None
        if resp.status == health_pb2.HealthCheckResponse.SERVING:
            return SUCCESS, "", None
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return FAILURE, f'service unhealthy (responded with "{name}")', None


def simulated_failure(handler: str, target: dict) -> str:
    """What a failing probe of this handler says, for a simulated failure."""
    host, port = target.get("host", ""), target.get("port", 0)
    if handler == "httpGet":
        return "HTTP probe failed with statuscode: 500"
    if handler == "tcpSocket":
        return f"dial tcp {host}:{port}: connect: connection refused"
    if handler == "grpc":
        return 'service unhealthy (responded with "NOT_SERVING")'
    return ""


class ProbeManager:
    def __init__(self, runtime: Any, recorder: Any, *, clock: Callable[[], float],
                 wall: Callable[[], float], log: Any, max_workers: int = MAX_WORKERS) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.clock = clock
        self.wall = wall
        self.log = log
        self.max_workers = max_workers
        self.workers: dict[tuple[str, str, str], Worker] = {}
        self.pods: dict[str, dict] = {}
        self.pod_ips: dict[str, str] = {}
        self.restart_ids: set[str] = set()
        self._restart_owner: dict[str, str] = {}
        self._pool: ThreadPoolExecutor | None = None

    # -- the kubelet's calls -----------------------------------------------
    def update_pod(self, pod: dict, containers: list[ContainerStatus], sandbox: PodSandbox | None) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        self.pods[uid] = pod
        if sandbox is not None and sandbox.ip:
            self.pod_ips[uid] = sandbox.ip
        by_name = sync.latest_by_name(containers)
        reported = {cs.get("containerID", "").partition("://")[2]: cs
                    for cs in (pod.get("status") or {}).get("containerStatuses") or () if isinstance(cs, dict)}
        now = self.clock()
        for spec_c in (pod.get("spec") or {}).get("containers") or ():
            name = spec_c.get("name", "")
            hist = by_name.get(name) or []
            for old in hist[1:]:
                self._drop_restart(old.id)
            for kind, spec in container_probes(spec_c).items():
                w = self.workers.get((uid, name, kind))
                if w is None:
                    w = self.workers[(uid, name, kind)] = Worker(uid, name, kind, spec)
                if not hist:
                    continue
                cur = hist[0]
                if cur.id != w.container_id:
                    w.reset(cur.id)
                    was = reported.get(cur.id) or {}
                    if (kind == READINESS and was.get("ready")) or (kind == STARTUP and was.get("started")):
                        w.result = SUCCESS   # a restarted kubelet keeps what it reported
                if cur.state == RUNNING and w.next_due is None and not w.on_hold:
                    started = now - max(0.0, self.wall() - (cur.started_at or self.wall()))
                    w.next_due = max(now, started + spec.initial_delay)
                elif cur.state != RUNNING:
                    w.next_due = None

    def remove_pod(self, uid: str) -> None:
        for key in [k for k in self.workers if k[0] == uid]:
            del self.workers[key]
        self.pods.pop(uid, None)
        self.pod_ips.pop(uid, None)
        for cid in [c for c, u in self._restart_owner.items() if u == uid]:
            self._drop_restart(cid)

    def status_for(self, uid: str, containers: list[ContainerStatus]) -> dict[str, tuple[bool, bool | None]]:
        out = {}
        for name, hist in sync.latest_by_name(containers).items():
            st = self.workers.get((uid, name, STARTUP))
            rd = self.workers.get((uid, name, READINESS))
            if st is None and rd is None:
                continue
            cur = hist[0]
            out[cur.id] = container_probe_state(st, rd, cur.id, cur.state == RUNNING)
        return out

    def next_due(self, now: float) -> float | None:
        best: float | None = None
        for w in self.workers.values():
            if w.in_flight is not None:
                t = now + IN_FLIGHT_POLL
            elif w.next_due is not None and not w.on_hold:
                t = w.next_due
            else:
                continue
            best = t if best is None else min(best, t)
        return best

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def step(self, now: float) -> set[tuple[str, str]]:
        dirty: set[tuple[str, str]] = set()
        for w in list(self.workers.values()):
            fut = w.in_flight
            if fut is not None and fut.done():
                w.in_flight = None
                if w.extra.get("probing") == w.container_id and not w.on_hold:
                    try:
                        outcome = fut.result()
                    except Exception as e:   # a bug in a handler must not stop the kubelet
                        outcome = (UNKNOWN, "", str(e))
                    self._outcome(w, outcome, dirty)
        due = [w for w in self.workers.values()
               if w.next_due is not None and w.next_due <= now and not w.on_hold]
        if not due:
            return dirty
        running = {c.id: c for c in self.runtime.list_containers() if c.state == RUNNING}
        for w in sorted(due, key=lambda w: (w.next_due, w.uid, w.container, w.kind)):
            if self.workers.get((w.uid, w.container, w.kind)) is not w or w.on_hold:
                continue
            w.next_due = now + w.spec.period
            c = running.get(w.container_id)
            if c is None:
                w.next_due = None    # resumes when the kubelet sees the container again
                continue
            if w.in_flight is not None:
                continue             # the last probe is still running: skip this tick
            started = self._started(w.uid, w.container, w.container_id)
            if not should_probe(w, started, self.wall() - (c.started_at or self.wall())):
                continue
            self._launch(w, dirty)
        return dirty

    # -- running probes ------------------------------------------------------
    def _started(self, uid: str, name: str, cid: str) -> bool:
        st = self.workers.get((uid, name, STARTUP))
        return st is None or (st.container_id == cid and st.result == SUCCESS)

    def _target(self, w: Worker, pod: dict, spec_c: dict) -> dict:
        a, handler = w.spec.action, w.spec.handler
        if handler == "exec":
            cmd = a.get("command")
            if not isinstance(cmd, list) or not cmd:
                raise ProbeError("exec probe has no command (set exec.command to a non-empty list)")
            return {"command": cmd}
        if handler not in ("httpGet", "tcpSocket", "grpc"):
            md = pod.get("metadata") or {}
            raise ProbeError(f"missing probe handler for {md.get('namespace')}/{md.get('name')}:"
                             f"{w.container} (set one of exec, httpGet, tcpSocket, grpc)")
        port = resolve_port(a.get("port"), spec_c)
        host = (a.get("host") if handler != "grpc" else "") or self.pod_ips.get(w.uid, "")
        if not host:
            raise ProbeError("the pod has no IP yet")
        return {"host": loopback_host(str(host)), "port": port, "path": str(a.get("path") or "/"),
                "scheme": str(a.get("scheme") or "HTTP"), "headers": a.get("httpHeaders") or [],
                "service": str(a.get("service") or "")}

    def _launch(self, w: Worker, dirty: set[tuple[str, str]]) -> None:
        pod = self.pods.get(w.uid) or {}
        spec_c = next((c for c in (pod.get("spec") or {}).get("containers") or ()
                       if c.get("name") == w.container), {})
        try:
            target = self._target(w, pod, spec_c)
        except ProbeError as e:
            self._outcome(w, (UNKNOWN, "", str(e)), dirty)
            return
        simulate = getattr(self.runtime, "simulate_probe", None)
        if simulate is not None:
            if not simulate(w.container_id, w.kind):
                outcome: Outcome = (FAILURE, simulated_failure(w.spec.handler, target), None)
            elif w.spec.handler == "exec":
                outcome = exec_probe(self.runtime, w.container_id, target["command"], w.spec.timeout)
            else:
                outcome = (SUCCESS, "", None)
            self._outcome(w, outcome, dirty)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="prober")
        w.extra["probing"] = w.container_id
        w.in_flight = self._pool.submit(self._run, w.spec.handler, w.container_id, target, w.spec.timeout)

    def _run(self, handler: str, cid: str, t: dict, timeout: float) -> Outcome:
        if handler == "exec":
            return exec_probe(self.runtime, cid, t["command"], timeout)
        if handler == "httpGet":
            return http_probe(t["host"], t["port"], t["path"], t["scheme"], t["headers"], timeout)
        if handler == "tcpSocket":
            return tcp_probe(t["host"], t["port"], timeout)
        return grpc_probe(t["host"], t["port"], t["service"], timeout)

    def _outcome(self, w: Worker, outcome: Outcome, dirty: set[tuple[str, str]]) -> None:
        result, output, error = outcome
        pod = self.pods.get(w.uid) or {}
        md = pod.get("metadata") or {}
        key = (md.get("namespace") or "", md.get("name", ""))
        if error is not None:
            self.recorder.event(pod, "Warning", "Unhealthy",
                                f"{TITLE[w.kind]} probe errored and resulted in unknown state: {error}")
            self.log.info("probe_errored", kind="Pod", namespace=key[0], name=key[1],
                          container=w.container, probe=w.kind, error=error)
            return   # Kubernetes throws an errored probe's result away
        if result == FAILURE:
            self.recorder.event(pod, "Warning", "Unhealthy", f"{TITLE[w.kind]} probe failed: {output}")
        verdict = w.record(result)
        if verdict == KILL:
            self._kill(w, pod)
            dirty.add(key)
        elif verdict is not None:
            dirty.add(key)
            if w.kind == STARTUP and w.result == SUCCESS:
                for kind in (LIVENESS, READINESS):   # their first probe is due at once
                    other = self.workers.get((w.uid, w.container, kind))
                    if other is not None and other.next_due is not None:
                        other.next_due = min(other.next_due, self.clock())

    def _kill(self, w: Worker, pod: dict) -> None:
        spec = pod.get("spec") or {}
        restart = (spec.get("restartPolicy") or "Always") != "Never"
        grace = w.spec.termination_grace
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        msg = f"Container {w.container} failed {w.kind} probe" + (", will be restarted" if restart else "")
        self.recorder.event(pod, "Normal", "Killing", msg)
        md = pod.get("metadata") or {}
        self.log.info("container_killed_by_probe", kind="Pod", namespace=md.get("namespace"),
                      name=md.get("name"), container=w.container, probe=w.kind)
        if restart:
            self.restart_ids.add(w.container_id)
            self._restart_owner[w.container_id] = w.uid
        try:
            self.runtime.stop_container(w.container_id, float(grace or 0))
        except KeyError:
            pass

    def _drop_restart(self, cid: str) -> None:
        self.restart_ids.discard(cid)
        self._restart_owner.pop(cid, None)
