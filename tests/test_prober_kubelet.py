"""Probes in the kubelet on the fake runtime (annotations simulate them): real apiserver, fake clock."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from tests.conftest import FakeClock
from tests.conftest import drive as shared_drive




def drive(k: Kubelet, clock: FakeClock, until: Callable[[], Any], *, advance: float = 0.1,
          steps: int = 600, what: str = "condition") -> Any:
    return shared_drive(k, clock, until, advance=advance, steps=steps, what=what, step_timeout=0.002)

@pytest.fixture
def env(mem_server: Any, tmp_path: Path):
    clients: list[Client] = []
    kubelets: list[Kubelet] = []
    clock = FakeClock()

    def kubelet(name: str = "node-1") -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node=name)
        clients.append(c)
        k = Kubelet(c, FAST, name, root_dir=str(tmp_path / name), clock=clock.mono, wall=clock.wall,
                    pod_cidr="127.64.7.0/24")
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


def pod(name: str, annotations: dict | None = None, restart: str = "Always", **container: Any) -> dict:
    c = {"name": "app", "image": "nginx:1.27", **container}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"nodeName": "node-1", "restartPolicy": restart, "containers": [c]}}


def cstatus(user: Client, name: str) -> dict:
    st = user.get("Pod", name, "default").get("status") or {}
    return (st.get("containerStatuses") or [{}])[0]


def pod_ready(user: Client, name: str) -> str:
    st = user.get("Pod", name, "default").get("status") or {}
    return next((c["status"] for c in st.get("conditions") or () if c["type"] == "Ready"), "")


def events(user: Client, reason: str | None = None) -> list[str]:
    return [e["message"] for e in user.list("Event", "default")["items"]
            if reason is None or e["reason"] == reason]


HTTP = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}


def test_readiness_fails_then_recovers(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("web", {"kemu.io/readiness-fail-after": "3s", "kemu.io/readiness-recover-after": "6s"},
                    readinessProbe={**HTTP, "failureThreshold": 1}))
    drive(k, clock, lambda: cstatus(user, "web").get("ready"), what="ready")
    assert pod_ready(user, "web") == "True"
    drive(k, clock, lambda: not cstatus(user, "web").get("ready") and pod_ready(user, "web") == "False",
          what="unready after 3s")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 500" in events(user, "Unhealthy")
    assert cstatus(user, "web")["restartCount"] == 0 and "running" in cstatus(user, "web")["state"]
    drive(k, clock, lambda: cstatus(user, "web").get("ready"), what="ready again after 6s")


def test_initial_delay_holds_readiness(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("slow", readinessProbe={**HTTP, "initialDelaySeconds": 5}))
    drive(k, clock, lambda: "running" in (cstatus(user, "slow").get("state") or {}), what="running")
    t0 = clock.t
    drive(k, clock, lambda: cstatus(user, "slow").get("ready"), what="ready")
    assert clock.t - t0 >= 4.5      # logical time: not before initialDelaySeconds
    assert events(user, "Unhealthy") == []


def test_liveness_failure_kills_and_restarts(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("live", {"kemu.io/liveness-fail-after": "2s"},
                    livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2}))
    drive(k, clock, lambda: cstatus(user, "live").get("restartCount", 0) >= 1, what="restarted")
    fails = [m for m in events(user, "Unhealthy") if m.startswith("Liveness probe failed: ")]
    assert fails and fails[0] == "Liveness probe failed: dial tcp 127.64.7.2:8080: connect: connection refused"
    assert events(user, "Killing") == ["Container app failed liveness probe, will be restarted"]
    cs = cstatus(user, "live")
    assert "running" in cs["state"] and "terminated" in cs["lastState"]


def test_liveness_restart_with_on_failure_and_never(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}
    user.create(pod("onf", {"kemu.io/liveness-fail-after": "1s"}, restart="OnFailure", livenessProbe=probe))
    drive(k, clock, lambda: cstatus(user, "onf").get("restartCount", 0) >= 1, what="OnFailure restarts")
    user.create(pod("never", {"kemu.io/liveness-fail-after": "1s"}, restart="Never", livenessProbe=probe))
    drive(k, clock, lambda: "Container app failed liveness probe" in events(user, "Killing"), what="killed")
    for _ in range(30):
        k.step(0.002)
        clock.t += 0.1
    cs = cstatus(user, "never")
    assert cs["restartCount"] == 0 and "terminated" in cs["state"]


def test_startup_probe_gates_liveness_and_readiness(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("boot", {"kemu.io/startup-succeed-after": "3s"},
                    startupProbe={**HTTP, "failureThreshold": 10},
                    livenessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
                    readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1}))
    drive(k, clock, lambda: "running" in (cstatus(user, "boot").get("state") or {}), what="running")
    cs = cstatus(user, "boot")
    assert cs["started"] is False and cs["ready"] is False
    drive(k, clock, lambda: cstatus(user, "boot").get("started"), what="started")
    drive(k, clock, lambda: cstatus(user, "boot").get("ready"), what="ready")
    assert all(m.startswith("Startup probe failed") for m in events(user, "Unhealthy"))
    assert events(user, "Killing") == []


def test_startup_failure_kills(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("never-up", {"kemu.io/startup-succeed-after": "1h"},
                    startupProbe={"tcpSocket": {"port": 80}, "periodSeconds": 1, "failureThreshold": 2}))
    drive(k, clock, lambda: events(user, "Killing"), what="killed")
    assert events(user, "Killing") == ["Container app failed startup probe, will be restarted"]
    drive(k, clock, lambda: cstatus(user, "never-up").get("restartCount", 0) >= 1, what="restarted")


def test_exec_probe_exit_code_and_hang(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("exit1", {"kemu.io/probe-exec-exit-code": "1"},
                    readinessProbe={"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}))
    user.create(pod("hang", {"kemu.io/probe-exec-hang": "true"},
                    livenessProbe={"exec": {"command": ["sleep", "30"]}, "periodSeconds": 1,
                                   "timeoutSeconds": 1, "failureThreshold": 1}))
    drive(k, clock, lambda: "Readiness probe failed: " in events(user, "Unhealthy"), what="exec failure")
    assert cstatus(user, "exit1")["ready"] is False
    drive(k, clock, lambda: 'Liveness probe failed: command "sleep 30" timed out' in events(user, "Unhealthy"),
          what="exec timeout")
    drive(k, clock, lambda: cstatus(user, "hang").get("restartCount", 0) >= 1, what="restarted after timeout")


def test_named_port_that_does_not_exist(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("badport", ports=[{"name": "web", "containerPort": 8080}],
                    readinessProbe={"httpGet": {"port": "http"}, "periodSeconds": 1},
                    livenessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 1}))
    drive(k, clock, lambda: len(events(user, "Unhealthy")) >= 2, what="errored events")
    msgs = events(user, "Unhealthy")
    assert any(m.startswith('Readiness probe errored and resulted in unknown state: strconv.Atoi: '
                            'parsing "http": invalid syntax') for m in msgs)
    assert any(m.startswith("Liveness probe errored") and 'no port named "http"' in m for m in msgs)
    for _ in range(30):
        k.step(0.002)
        clock.t += 0.1
    cs = cstatus(user, "badport")     # an errored probe's result is thrown away
    assert cs["ready"] is False and cs["restartCount"] == 0 and events(user, "Killing") == []


def test_ready_hint_still_applies_without_readiness_probe(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("plain", {"kemu.io/never-ready": "true"}, livenessProbe=HTTP))
    drive(k, clock, lambda: "running" in (cstatus(user, "plain").get("state") or {}), what="running")
    for _ in range(20):
        k.step(0.002)
        clock.t += 0.1
    assert cstatus(user, "plain")["ready"] is False and cstatus(user, "plain")["started"] is True
    # with a readiness probe, never-ready makes the probe fail
    user.create(pod("probed", {"kemu.io/never-ready": "true"}, readinessProbe={**HTTP, "failureThreshold": 1}))
    drive(k, clock, lambda: "Readiness probe failed: HTTP probe failed with statuscode: 500"
          in events(user, "Unhealthy"), what="probe fails")
    assert cstatus(user, "probed")["ready"] is False


def test_deleted_pod_drops_its_workers(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("gone", readinessProbe=HTTP))
    drive(k, clock, lambda: cstatus(user, "gone").get("ready"), what="ready")
    assert k.prober.workers
    user.delete("Pod", "gone", "default")
    from emulator.api.errors import APIError

    def gone() -> bool:
        try:
            user.get("Pod", "gone", "default")
            return False
        except APIError:
            return True
    drive(k, clock, gone, what="deleted")
    assert not k.prober.workers


def test_restarted_kubelet_keeps_reported_readiness(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("steady", readinessProbe={**HTTP, "periodSeconds": 5}))
    drive(k, clock, lambda: cstatus(user, "steady").get("ready"), what="ready")
    k2 = kubelet()       # the same node root: it adopts the running container
    for _ in range(20):
        k2.step(0.002)
        assert cstatus(user, "steady")["ready"] is True and pod_ready(user, "steady") == "True"
        clock.t += 0.1
    assert k2.prober.workers and cstatus(user, "steady")["restartCount"] == 0
