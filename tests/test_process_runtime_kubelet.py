"""The kubelet with the process runtime, against a real apiserver (in-process transport), in real time:
env and $(VAR), the bad inputs of issue 6 as the pod's status reports them, a reachable server."""
from __future__ import annotations

import base64
import random
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from node.runtime import proclogs
from node.runtime.process import ProcessRuntime, kill_all
from tests.conftest import step_until


@pytest.fixture
def env(mem_server: Any, tmp_path: Path) -> Iterator[Any]:
    clients: list[Client] = []
    runtimes: list[ProcessRuntime] = []
    root = str(tmp_path / "node-1")
    index = random.randint(1000, 16000)   # a /24 of its own: other test runs may share the machine

    def kubelet() -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node="node-1")
        clients.append(c)
        rt = ProcessRuntime(FAST, root_dir=root, state_path=f"{root}/var/lib/kemu/runtime.json",
                            usage_interval=0.2)
        runtimes.append(rt)
        k = Kubelet(c, FAST, "node-1", root_dir=root, runtime=rt, node_index=index)
        k.start()
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet
    kill_all(root)
    for rt in runtimes:
        for p in [c.popen for c in rt.containers.values() if c.popen is not None] + rt.reap:
            p.wait(5)
    for c in clients:
        c.close()


def pod(name: str, command: list[str], **spec: Any) -> dict:
    container = {"name": "app", "image": "python:3", "command": command}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-1", "containers": [container], **spec}}


def cstatus(user: Client, name: str) -> dict:
    st = user.get("Pod", name, "default").get("status") or {}
    return (st.get("containerStatuses") or [{}])[0]


def test_missing_command_is_run_container_error(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("nocmd", ["kemu-no-such-command"]))
    cs = step_until(k, lambda: (cstatus(user, "nocmd").get("state") or {}).get("waiting", {}).get("reason")
                    == "RunContainerError" and cstatus(user, "nocmd"), "RunContainerError")
    msg = ('unable to start container process: exec: "kemu-no-such-command": '
           "executable file not found in $PATH")
    assert cs["state"]["waiting"]["message"] == msg
    assert cs["lastState"]["terminated"]["reason"] == "StartError"
    assert cs["lastState"]["terminated"]["exitCode"] == 128
    events = user.list("Event", "default")["items"]
    assert any(e["reason"] == "Failed" and e["message"] == f"Error: {msg}" for e in events)


def test_missing_secret_is_create_container_config_error(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("nosecret", ["true"], container={
        "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}))
    cs = step_until(k, lambda: (cstatus(user, "nosecret").get("state") or {}).get("waiting", {}).get("reason")
                    == "CreateContainerConfigError" and cstatus(user, "nosecret"), "CreateContainerConfigError")
    assert cs["state"]["waiting"]["message"] == 'secret "db" not found'


def test_env_sources_and_expansion_reach_the_process(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                 "data": {"GREETING": "hello"}})
    user.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
                 "data": {"password": base64.b64encode(b"s3cret").decode()}})
    user.create(pod("envs", ["sh", "-c"], restartPolicy="Never", container={
        "args": ['echo "$(GREETING) $MY_NAME $PW $POD_IP $(MY_NAME)"; pwd'],
        "workingDir": "/work",
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [{"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}))
    step_until(k, lambda: user.get("Pod", "envs", "default").get("status", {}).get("phase") == "Succeeded",
               "pod Succeeded")
    st = user.get("Pod", "envs", "default")["status"]
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    c = [c for c in k.runtime.list_containers() if c.pod_name == "envs"][0]
    out = [x.decode() for _, s, _, x in proclogs.read_lines(c.log_path) if s == "stdout"]
    assert out[0] == f"hello envs s3cret {st['podIP']} envs"
    assert out[1].endswith("/rootfs/work")


def test_container_ignoring_sigterm_is_killed_after_grace_period(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("stubborn", ["sh", "-c", "trap '' TERM; echo trapped; while true; do sleep 1; done"],
                    terminationGracePeriodSeconds=1))
    step_until(k, lambda: cstatus(user, "stubborn").get("state", {}).get("running"), "running")
    log = k.runtime.list_containers()[0].log_path
    step_until(k, lambda: any(x == b"trapped" for _, _, _, x in proclogs.read_lines(log)), "the trap set")
    exits: list[tuple[int | None, str]] = []
    remove = k.runtime.remove_pod_sandbox

    def spy(sid: str) -> None:
        exits.extend((c.exit_code, c.reason) for c in k.runtime.list_containers() if c.sandbox_id == sid)
        remove(sid)
    k.runtime.remove_pod_sandbox = spy   # type: ignore[method-assign]
    user.delete("Pod", "stubborn", "default")
    k.step(0.02)
    assert [c.state for c in k.runtime.list_containers()] == ["running"]   # within its grace period
    step_until(k, lambda: not user.list("Pod", "default")["items"], "the pod deleted", timeout=15)
    assert exits == [(137, "Error")]   # SIGKILLed after the 1 s grace period


def test_container_forking_children_leaves_no_orphans(env, tmp_path: Path) -> None:
    user, kubelet = env
    k = kubelet()
    marker = tmp_path / "orphan.pid"
    user.create(pod("forker", ["sh", "-c", f"sleep 100 & echo $! > {marker}; exit 0"], restartPolicy="Never"))
    step_until(k, lambda: user.get("Pod", "forker", "default").get("status", {}).get("phase") == "Succeeded",
               "pod Succeeded")
    child = int(marker.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_memory_limit_too_small_to_start(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("tiny", ["python3", "-c", "print('hi')"], restartPolicy="Never",
                    container={"resources": {"limits": {"memory": "1Mi"}}}))
    step_until(k, lambda: user.get("Pod", "tiny", "default").get("status", {}).get("phase") == "Failed",
               "pod Failed")
    t = cstatus(user, "tiny")["state"]["terminated"]
    assert t["reason"] == "OOMKilled"
    assert "memory limit 1048576 bytes (RLIMIT_AS) exceeded" in t["message"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_http_server_bound_to_pod_ip_is_reachable(env) -> None:
    user, kubelet = env
    k = kubelet()
    port = free_port()
    user.create(pod("web", ["python3", "-m", "http.server", str(port), "--bind", "$(POD_IP)"], container={
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}))
    st = step_until(k, lambda: (s := user.get("Pod", "web", "default").get("status", {})).get("phase") == "Running"
                    and s, "pod Running")
    ip = st["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1"
    step_until(k, lambda: cstatus(user, "web").get("ready"), "the container ready (no readiness probe)")

    def answers() -> bool:
        k.step(0.01)
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    deadline = time.monotonic() + 15
    while not answers():
        assert time.monotonic() < deadline, f"nothing answered at {ip}:{port}"
    c = [c for c in k.runtime.list_containers() if c.pod_name == "web"][0]
    step_until(k, lambda: any(b'"GET / HTTP/1.1" 200' in x for _, _, _, x in proclogs.read_lines(c.log_path)),
               "the request in the container's log")
    step_until(k, lambda: c.memory_bytes > 0, "memory usage measured")


def test_restarted_kubelet_adopts_running_processes(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("sleeper", ["sleep", "1000"]))
    cs = step_until(k, lambda: (c := cstatus(user, "sleeper")).get("state", {}).get("running") and c, "running")
    k2 = kubelet()    # a new kubelet (and runtime) on the same node root
    for _ in range(20):
        k2.step(0.02)
    after = cstatus(user, "sleeper")
    assert after["containerID"] == cs["containerID"] and after["restartCount"] == 0
    running = [c for c in k2.runtime.list_containers() if c.state == "running"]
    assert len(running) == 1


def test_container_without_command_is_create_container_error(env) -> None:
    user, kubelet = env
    k = kubelet()
    user.create(pod("nocommand", []))
    cs = step_until(k, lambda: (cstatus(user, "nocommand").get("state") or {}).get("waiting", {}).get("reason")
                    == "CreateContainerError" and cstatus(user, "nocommand"), "CreateContainerError")
    assert cs["state"]["waiting"]["message"].endswith("spec: no command specified")
    assert k.runtime.list_containers() == []
