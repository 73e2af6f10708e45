"""Probes that really connect and exec (loopback only): a runtime without probe simulation.

The runtime here is the fake one with its simulation switched off and an ``exec_sync``
that runs the command as a child process, so httpGet/tcpSocket probes go to the pod IP
(127.64.x.y) and exec probes really run, as under the process runtime.
"""
from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet import prober
from node.kubelet.kubelet import Kubelet
from node.runtime.fake import FakeRuntime

POD_IP = "127.64.9.2"     # the first address the kubelet hands out from 127.64.9.0/24


class ExecRuntime(FakeRuntime):
    simulate_probe = None   # type: ignore[assignment]  # probes connect for real

    def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes]:  # type: ignore[override]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{cmd} timed out") from None
        return p.returncode, p.stdout + p.stderr


class NoExecRuntime(FakeRuntime):
    simulate_probe = None   # type: ignore[assignment]
    exec_sync = None        # type: ignore[assignment]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


def drive(k: Kubelet, clock: Clock, until: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Step the kubelet (logical time +0.1 s a turn) until ``until`` holds; real probes take real time."""
    deadline = time.monotonic() + timeout
    while True:
        k.step(0.01)
        v = until()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        clock.t += 0.1


@pytest.fixture
def env(mem_server: Any, tmp_path: Path):
    clients: list[Client] = []
    kubelets: list[Kubelet] = []
    clock = Clock()

    def kubelet(runtime_cls: type = ExecRuntime) -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node="node-1")
        clients.append(c)
        rt = runtime_cls(FAST, clock=clock.mono, wall=clock.wall)
        k = Kubelet(c, FAST, "node-1", root_dir=str(tmp_path / "node-1"), runtime=rt, clock=clock.mono,
                    wall=clock.wall, pod_cidr="127.64.9.0/24")
        k.start()
        kubelets.append(k)
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet, clock
    for k in kubelets:
        k.prober.close()
    for c in clients:
        c.close()


def pod(name: str, restart: str = "Always", **container: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": restart,
                     "containers": [{"name": "app", "image": "python:3", **container}]}}


def cstatus(user: Client, name: str) -> dict:
    st = user.get("Pod", name, "default").get("status") or {}
    return (st.get("containerStatuses") or [{}])[0]


def events(user: Client, reason: str) -> list[str]:
    return [e["message"] for e in user.list("Event", "default")["items"] if e["reason"] == reason]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Health(http.server.BaseHTTPRequestHandler):
    code = 200
    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802
        Health.seen.append({"path": self.path, "ua": self.headers.get("User-Agent"),
                            "x": self.headers.get("X-Probe")})
        self.send_response(Health.code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture
def health_server():
    srv = http.server.ThreadingHTTPServer((POD_IP, 0), Health)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Health.code, Health.seen = 200, []
    yield srv
    srv.shutdown()
    srv.server_close()


def test_tcp_liveness_against_nothing_listening_restarts(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    port = free_port(POD_IP)
    user.create(pod("dead", livenessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1,
                                           "failureThreshold": 2}))
    drive(k, clock, lambda: cstatus(user, "dead").get("restartCount", 0) >= 1, what="restart")
    assert f"Liveness probe failed: dial tcp {POD_IP}:{port}: connect: connection refused" \
        in events(user, "Unhealthy")
    assert "Container app failed liveness probe, will be restarted" in events(user, "Killing")


def test_http_readiness_follows_the_server(env, health_server) -> None:
    user, kubelet, clock = env
    k = kubelet()
    port = health_server.server_address[1]
    user.create(pod("web", ports=[{"name": "http", "containerPort": port}],
                    readinessProbe={"httpGet": {"path": "/healthz", "port": "http",
                                                "httpHeaders": [{"name": "X-Probe", "value": "yes"}]},
                                    "periodSeconds": 1, "failureThreshold": 1}))
    drive(k, clock, lambda: cstatus(user, "web").get("ready"), what="ready")
    assert Health.seen[0] == {"path": "/healthz", "ua": "kube-probe/1.32", "x": "yes"}
    Health.code = 503
    drive(k, clock, lambda: cstatus(user, "web").get("ready") is False, what="unready")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in events(user, "Unhealthy")
    st = user.get("Pod", "web", "default")["status"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
    Health.code = 302     # 200-399 is success
    drive(k, clock, lambda: cstatus(user, "web").get("ready"), what="ready again")


def test_http_probe_against_nothing_listening(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    port = free_port(POD_IP)
    user.create(pod("nohttp", readinessProbe={"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}))
    want = f'Readiness probe failed: Get "http://{POD_IP}:{port}/": dial tcp {POD_IP}:{port}: connect: connection refused'
    drive(k, clock, lambda: want in events(user, "Unhealthy"), what="refused")
    assert cstatus(user, "nohttp")["ready"] is False


def test_exec_probe_that_hangs_times_out_without_blocking_the_loop(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("hang", livenessProbe={"exec": {"command": ["sleep", "30"]}, "periodSeconds": 1,
                                           "timeoutSeconds": 2, "failureThreshold": 1}))
    drive(k, clock, lambda: any(w.in_flight is not None for w in k.prober.workers.values()),
          what="the probe running")
    # while it hangs, the kubelet goes on: another pod starts
    user.create(pod("other"))
    drive(k, clock, lambda: "running" in (cstatus(user, "other").get("state") or {}), what="other running")
    drive(k, clock, lambda: 'Liveness probe failed: command "sleep 30" timed out' in events(user, "Unhealthy"),
          what="timeout")
    drive(k, clock, lambda: cstatus(user, "hang").get("restartCount", 0) >= 1, what="restart")


def test_exec_probe_output_and_runtime_without_exec(env) -> None:
    user, kubelet, clock = env
    k = kubelet(NoExecRuntime)
    user.create(pod("noexec", readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1}))
    drive(k, clock, lambda: any("cannot run commands in containers" in m for m in events(user, "Unhealthy")),
          what="errored")
    assert cstatus(user, "noexec")["ready"] is False


def test_non_loopback_host_is_refused(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("far", readinessProbe={"tcpSocket": {"host": "10.0.0.1", "port": 80}, "periodSeconds": 1}))
    drive(k, clock, lambda: any('"10.0.0.1" is not a loopback address' in m for m in events(user, "Unhealthy")),
          what="refused host")


def test_grpc_without_grpcio_is_reported(env) -> None:
    if prober.grpc is not None:
        pytest.skip("grpcio is installed here")
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("rpc", readinessProbe={"grpc": {"port": 9000}, "periodSeconds": 1}))
    drive(k, clock, lambda: any("grpc probes need the grpcio" in m for m in events(user, "Unhealthy")),
          what="unsupported")


def test_probe_functions_directly() -> None:
    port = free_port("127.0.0.1")
    assert prober.tcp_probe("127.0.0.1", port, 1)[:2] == (
        "failure", f"dial tcp 127.0.0.1:{port}: connect: connection refused")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert prober.tcp_probe("127.0.0.1", s.getsockname()[1], 1)[0] == "success"
        # accepted by the kernel but never answered: the HTTP probe times out
        r = prober.http_probe("127.0.0.1", s.getsockname()[1], "/", "HTTP", [], 1)
        assert r[0] == "failure" and "context deadline exceeded" in r[1]
    assert prober.loopback_host("localhost") == "127.0.0.1"
    r = prober.exec_probe(ExecRuntime(FAST), "x", ["sh", "-c", "echo not ok; exit 3"], 5)
    assert r == ("failure", "not ok", None)
