"""Probes and ``kemu logs`` with the process runtime, in real time: a real http.server behind a
readiness probe, an exec probe that hangs, a liveness probe on a port where nothing listens, and
the container's CRI log file read back by ``kemu logs``."""
from __future__ import annotations

import io
import random
import sys
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from emulator.cli.kubectl import run as kemu_run
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from node.runtime.process import ProcessRuntime, kill_all
from tests.conftest import poll_for, step_until


@pytest.fixture
def env(mem_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    lab = tmp_path / "lab"
    root = str(lab / "nodes" / "node-1")
    monkeypatch.setenv("KEMU_SERVER", mem_server.address)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    c = Client(mem_server.address, component="kubelet", node="node-1")
    rt = ProcessRuntime(FAST, root_dir=root, state_path=f"{root}/var/lib/kemu/runtime.json")
    k = Kubelet(c, FAST, "node-1", root_dir=root, runtime=rt, node_index=random.randint(1000, 16000))
    k.start()
    user = Client(mem_server.address, component="test")
    yield user, k, lab
    k.prober.close()

    def settled() -> bool:
        # a monitor started just before kill_all may not have recorded its pids yet: again
        kill_all(root)
        return not [p for p in psutil.Process().children(recursive=True)
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    poll_for(settled, 15, what="every container gone")
    for p in [x.popen for x in rt.containers.values() if x.popen is not None] + rt.reap:
        p.wait(5)
    user.close()
    c.close()


def pod(name: str, command: list[str], restart: str = "Always", **container: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1, "restartPolicy": restart,
                     "containers": [{"name": "app", "image": "python:3", "command": command, **container}]}}


def cstatus(user: Client, name: str) -> dict:
    st = user.get("Pod", name, "default").get("status") or {}
    return (st.get("containerStatuses") or [{}])[0]


def events(user: Client, reason: str) -> list[str]:
    return [e["message"] for e in user.list("Event", "default")["items"] if e["reason"] == reason]


def test_http_readiness_on_a_real_server(env) -> None:
    user, k, _lab = env
    port = random.randint(20000, 60000)
    user.create(pod("web", [sys.executable, "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
                    env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                    ports=[{"name": "http", "containerPort": port}],
                    readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}))
    step_until(k, lambda: cstatus(user, "web").get("ready"), "ready", timeout=30)
    st = user.get("Pod", "web", "default")["status"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"


def test_exec_probe_that_hangs_and_port_with_no_listener(env) -> None:
    user, k, _lab = env
    user.create(pod("hang", ["sleep", "600"],
                    livenessProbe={"exec": {"command": ["sleep", "30"]}, "periodSeconds": 1,
                                   "timeoutSeconds": 1, "failureThreshold": 1}))
    user.create(pod("deaf", ["sleep", "600"],
                    livenessProbe={"tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 2}))
    step_until(k, lambda: cstatus(user, "hang").get("restartCount", 0) >= 1
               and cstatus(user, "deaf").get("restartCount", 0) >= 1, "both restarted", timeout=40)
    unhealthy = events(user, "Unhealthy")
    assert 'Liveness probe failed: command "sleep 30" timed out' in unhealthy
    assert any(m.startswith("Liveness probe failed: dial tcp ") and m.endswith(":1: connect: connection refused")
               for m in unhealthy)
    assert "Container app failed liveness probe, will be restarted" in events(user, "Killing")


def test_kemu_logs_reads_a_process_container(env) -> None:
    user, k, lab = env
    user.create(pod("hello", [sys.executable, "-c",
                              "import sys; print('hello', flush=True); print('oops', file=sys.stderr); print('x' * 5)"],
                    restart="Never"))
    step_until(k, lambda: "terminated" in (cstatus(user, "hello").get("state") or {}), "terminated", timeout=30)
    out, err = io.StringIO(), io.StringIO()
    assert kemu_run(["logs", "hello", "--lab-dir", str(lab)], out, err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()   # stdout and stderr are separate pipes: no order between them
    assert sorted(lines) == ["hello", "oops", "xxxxx"] and lines.index("hello") < lines.index("xxxxx")
    out = io.StringIO()
    assert kemu_run(["logs", "hello", "--tail", "1", "--timestamps", "--lab-dir", str(lab)], out, err) == 0
    ts, text = out.getvalue().rstrip("\n").split(" ", 1)
    assert text == lines[-1] and ts.endswith("Z")
