"""The prober's pure parts: probe defaults, thresholds, hold after a kill, ports, fake simulation."""
from __future__ import annotations

import pytest

from emulator.profiles import DEFAULT
from node.kubelet import sync
from node.kubelet.backoff import Backoff
from node.kubelet.prober_logic import (FAILURE, KILL, LIVENESS, READINESS, STARTUP, SUCCESS, UNKNOWN,
                                       ProbeError, Worker, container_probe_state, container_probes,
                                       parse_probe, resolve_port, should_probe)
from node.runtime.fake import FakeRuntime
from node.runtime.interface import EXITED, ContainerStatus


def test_defaults_are_kubernetes_ones() -> None:
    s = parse_probe({"tcpSocket": {"port": 80}}, READINESS)
    assert (s.handler, s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold) == \
        ("tcpSocket", 0, 10, 1, 1, 3)
    # liveness and startup always use successThreshold 1; values below 1 are raised to 1
    s = parse_probe({"exec": {"command": ["true"]}, "successThreshold": 3, "periodSeconds": 0}, LIVENESS)
    assert s.success_threshold == 1 and s.period == 1
    assert parse_probe({"periodSeconds": 5}, READINESS).handler == ""
    assert parse_probe(None, READINESS) is None
    probes = container_probes({"name": "c", "livenessProbe": {"httpGet": {"port": 80}},
                               "startupProbe": {"grpc": {"port": 9000}}})
    assert set(probes) == {LIVENESS, STARTUP} and probes[STARTUP].handler == "grpc"


def worker(kind: str, **spec: object) -> Worker:
    w = Worker("u", "c", kind, parse_probe({"exec": {"command": ["x"]}, **spec}, kind))
    w.reset("cid-1")
    return w


def test_initial_results_and_thresholds() -> None:
    assert (worker(LIVENESS).result, worker(READINESS).result, worker(STARTUP).result) == \
        (SUCCESS, FAILURE, UNKNOWN)
    w = worker(READINESS, successThreshold=2, failureThreshold=3)
    assert w.record(SUCCESS) is None and w.result == FAILURE      # 1 of 2 successes
    assert w.record(SUCCESS) == "changed" and w.result == SUCCESS
    assert w.record(FAILURE) is None and w.record(FAILURE) is None   # 2 of 3 failures
    assert w.record(SUCCESS) is None and w.result == SUCCESS         # the run is broken
    for _ in range(2):
        assert w.record(FAILURE) is None
    assert w.record(FAILURE) == "changed" and w.result == FAILURE


def test_liveness_failure_kills_and_holds_until_next_container() -> None:
    w = worker(LIVENESS, failureThreshold=2)
    assert w.record(FAILURE) is None
    assert w.record(FAILURE) == KILL and w.on_hold
    assert not should_probe(w, started=True, running_for=100)
    w.reset("cid-2")
    assert not w.on_hold and w.result == SUCCESS and should_probe(w, True, 0)


def test_gates_initial_delay_and_startup() -> None:
    live, start = worker(LIVENESS, initialDelaySeconds=5), worker(STARTUP)
    assert not should_probe(live, started=True, running_for=4.9)
    assert should_probe(live, started=True, running_for=5)
    assert not should_probe(live, started=False, running_for=50)    # waits for the startup probe
    assert should_probe(start, started=False, running_for=0)
    assert not should_probe(start, started=True, running_for=0)     # done once started
    assert container_probe_state(start, None, "cid-1", True) == (False, False)
    start.record(SUCCESS)
    assert container_probe_state(start, None, "cid-1", True) == (True, None)
    ready = worker(READINESS)
    assert container_probe_state(start, ready, "cid-1", True) == (True, False)
    ready.record(SUCCESS)
    assert container_probe_state(start, ready, "cid-1", True) == (True, True)
    assert container_probe_state(start, ready, "cid-1", False) == (False, False)
    assert container_probe_state(start, ready, "other", True) == (False, False)


def test_resolve_port() -> None:
    c = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}
    assert resolve_port(8080, c) == 8080
    assert resolve_port("http", c) == 8080
    assert resolve_port("9090", c) == 9090
    with pytest.raises(ProbeError) as e:
        resolve_port("metrics", c)
    msg = str(e.value)
    assert msg.startswith('strconv.Atoi: parsing "metrics": invalid syntax')
    assert 'declares no port named "metrics"' in msg and "its named ports: http" in msg
    for bad in (0, 70000, None, ""):
        with pytest.raises(ProbeError, match="invalid port number"):
            resolve_port(bad, c)


def test_liveness_killed_container_restarts_whatever_its_exit_code() -> None:
    c = ContainerStatus(id="c1", sandbox_id="s", pod_uid="u", namespace="d", pod_name="p", name="app",
                        attempt=0, image="i", image_id="", state=EXITED, created_at=1, started_at=1,
                        finished_at=2, exit_code=0)
    from node.runtime.interface import PodSandbox
    sb = PodSandbox(id="s", pod_uid="u", namespace="d", name="p", state="ready", created_at=1)
    pod = {"metadata": {"uid": "u"}, "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "app"}]}}
    bo = Backoff(10, 300, 600)
    assert sync.compute_pod_actions(pod, [c], sb, 3, bo).start == []
    assert [a for _s, a in sync.compute_pod_actions(pod, [c], sb, 3, bo, {"c1"}).start] == [1]
    pod["spec"]["restartPolicy"] = "Never"
    assert sync.compute_pod_actions(pod, [c], sb, 3, bo, {"c1"}).start == []


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def test_fake_runtime_simulates_probes_from_annotations() -> None:
    clock = Clock()
    rt = FakeRuntime(DEFAULT, clock=clock, wall=lambda: 1e9 + clock.t)
    ann = {"kemu.io/liveness-fail-after": "10s", "kemu.io/readiness-fail-after": "5s",
           "kemu.io/readiness-recover-after": "8s", "kemu.io/startup-succeed-after": "2s",
           "kemu.io/probe-exec-exit-code": "3", "kemu.io/probe-exec-hang.side": "true"}
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "annotations": ann},
           "spec": {"containers": [{"name": "app"}, {"name": "side"}]}}
    sid = rt.run_pod_sandbox(pod, "127.64.0.2")
    app = rt.create_container(sid, pod, {"name": "app", "image": "x"}, 0)
    side = rt.create_container(sid, pod, {"name": "side", "image": "x"}, 0)
    with pytest.raises(RuntimeError):
        rt.exec_sync(app, ["true"], 1)      # not running yet
    rt.start_container(app)
    rt.start_container(side)
    rt.tick(clock.t)
    seen = {}
    for age in (0, 1, 2, 5, 8, 10):
        clock.t = 100.0 + age
        rt.tick(clock.t)
        seen[age] = tuple(rt.simulate_probe(app, k) for k in (STARTUP, READINESS, LIVENESS))
    assert seen == {0: (False, True, True), 1: (False, True, True), 2: (True, True, True),
                    5: (True, False, True), 8: (True, True, True), 10: (True, True, False)}
    assert rt.exec_sync(app, ["cat", "/tmp/healthy"], 1) == (3, b"")
    with pytest.raises(TimeoutError):
        rt.exec_sync(side, ["sleep", "30"], 1)
    rt.stop_container(app, 0)
    assert rt.simulate_probe(app, LIVENESS) is False
