"""The lab as real processes: up, status, kill, down, and its bad inputs."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lab.lab import Lab, LabError, node_ready
from tests.conftest import poll_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "kemu-home"
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return home


def kemu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def condition(node: dict, typ: str) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c["type"] == typ:
            return c["status"]
    return None


def test_lab_up_status_kill_and_down(kemu_home: Path) -> None:
    with Lab(3, name="t1", profile="fast", zones="2") as lab:
        nodes = lab.client.list("Node")["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2", "node-3"]
        assert all(node_ready(n) for n in nodes)
        zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
        assert zones == {"zone-a", "zone-b"}
        # the plain CLI talks to the current lab
        r = kemu("get", "nodes")
        assert r.returncode == 0 and "node-3" in r.stdout and "Ready" in r.stdout, r.stderr
        r = kemu("get", "pv,pvc,sc")   # every lab has its two StorageClasses
        assert r.returncode == 0, r.stderr
        assert "standard (default)   kemu.io/local-dir    Delete          WaitForFirstConsumer" in r.stdout
        assert "shared" in r.stdout and "kemu.io/shared-dir" in r.stdout
        r = kemu("lab", "status")
        assert r.returncode == 0 and "3/3 nodes Ready" in r.stdout
        assert "controller-manager" in r.stdout and "scheduler" in r.stdout
        pids = [p["pid"] for p in lab.processes()]
        # a killed node goes Unknown within the grace period (fast: 2 s) plus slack
        lab.kill("node-2")
        lab.wait_for(lambda: condition(lab.client.get("Node", "node-2"), "Ready") == "Unknown", 10,
                     what="node-2 Ready=Unknown")
        # The controller writes the Unknown conditions, then the taint: two writes, as
        # Kubernetes' node lifecycle controller makes them.
        lab.wait_for(lambda: any(t["key"] == "node.kubernetes.io/unreachable"
                                 for t in lab.client.get("Node", "node-2")["spec"].get("taints") or []),
                     10, what="node-2 unreachable taint")
        # nodes were forked only once the control plane said it had started
        recs = [json.loads(line) for name in ("supervisor", "controller-manager", "scheduler")
                for line in lab.layout.log_for(name).read_text().splitlines()]
        at = {r["event"]: r["ts"] for r in recs if r["event"] in (
            "controller_manager_started", "scheduler_started", "control plane started")}
        first_node = min(r["ts"] for r in recs if r.get("role") == "node")
        assert at["controller_manager_started"] <= at["control plane started"] <= first_node
        assert at["scheduler_started"] <= at["control plane started"]
        assert [r["not_started"] for r in recs if r["event"] == "control plane started"] == [0]
        # a killed control-plane process is restarted by the supervisor
        lab.kill("scheduler")
        lab.wait_for(lambda: any(p["name"] == "scheduler" and p["restarts"] >= 1 and p["state"] == "running"
                                 for p in lab.processes()), 15, what="scheduler restarted")
    gone = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not gone, f"processes left after down: {gone}"
    assert not (kemu_home / "current").exists()


def test_add_and_remove_nodes_and_logs(kemu_home: Path) -> None:
    with Lab(1, name="t2", profile="fast") as lab:
        assert lab.add_nodes(2) == ["node-2", "node-3"]
        lab.remove_node("node-1")
        assert sorted(lab.nodes) == ["node-2", "node-3"]
        names = lambda: sorted(n["metadata"]["name"] for n in lab.client.list("Node")["items"])  # noqa: E731
        lab.wait_for(lambda: names() == ["node-2", "node-3"], 10, what="node-1 deleted")
        r = kemu("lab", "logs", "--json")
        assert r.returncode == 0
        import json
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        assert {"apiserver", "supervisor"} <= {x.get("component") for x in recs}
        ts = [x["ts"] for x in recs]
        assert ts == sorted(ts)
        for x in recs[:50]:
            assert {"ts", "level", "component", "pid", "event", "lab"} <= set(x)
        r = kemu("lab", "logs", "--node", "node-2")
        assert r.returncode == 0 and "node-2" in r.stdout
        r = kemu("lab", "logs", "--since", "bogus")
        assert r.returncode == 1 and "--since" in r.stderr


def test_name_in_use(kemu_home: Path) -> None:
    with Lab(1, name="dup", profile="fast"):
        with pytest.raises(LabError) as e:
            Lab(1, name="dup", profile="fast").up()
        assert 'lab "dup" is already running' in str(e.value)
        r = kemu("lab", "up", "--nodes", "1", "--name", "dup")
        assert r.returncode == 1 and "already running" in r.stderr


def test_port_in_use(kemu_home: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = kemu("lab", "up", "--nodes", "1", "--name", "p", "--port", str(port))
        assert r.returncode == 1 and f"--port: 127.0.0.1:{port} is already in use" in r.stderr
    finally:
        s.close()


def test_unwritable_lab_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = kemu("lab", "up", "--nodes", "1", "--name", "w", "--dir", str(blocker / "lab"))
    assert r.returncode == 1 and "cannot write the lab directory" in r.stderr


@pytest.mark.parametrize("value, text", [("0", "at least 1"), ("-1", "at least 1"),
                                         ("abc", "whole number")])
def test_bad_node_counts(value: str, text: str) -> None:
    r = kemu("lab", "up", "--nodes", value)
    assert r.returncode == 2 and "--nodes" in r.stderr and text in r.stderr


def test_bad_node_ephemeral_storage(kemu_home: Path) -> None:
    r = kemu("lab", "up", "--nodes", "1", "--node-ephemeral-storage", "lots")
    assert r.returncode != 0 and "--node-ephemeral-storage: invalid quantity 'lots'" in r.stderr
    assert not (kemu_home / "labs" / "default" / "run" / "supervisor.pid").exists()


def test_node_killed_during_startup_is_named(kemu_home: Path) -> None:
    r = kemu("lab", "up", "--nodes", "3", "--name", "k", "--profile", "fast",
             env={"KEMU_FAULT_NODE_START": "node-2"})
    try:
        assert r.returncode == 1
        assert "node(s) exited during start-up: node-2 (exit code 137)" in r.stderr
    finally:
        assert kemu("lab", "down", "--name", "k").returncode == 0


def test_down_after_everything_died(kemu_home: Path) -> None:
    lab = Lab(2, name="dead", profile="fast").up()
    sup = int(lab.layout.supervisor_pid.read_text())
    pids = [p["pid"] for p in lab.processes()]
    os.kill(sup, signal.SIGKILL)
    poll_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in pids), 10, what="children to die with their supervisor")
    r = kemu("lab", "down", "--name", "dead")
    assert r.returncode == 0, r.stderr
    r = kemu("lab", "list")
    assert "dead" in r.stdout and "down" in r.stdout


def test_unschedulable_pod_in_a_lab(kemu_home: Path) -> None:
    with Lab(2, name="big", profile="fast", node_cpu="2") as lab:
        lab.client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "huge"},
                           "spec": {"containers": [{"name": "c", "image": "x",
                                                    "resources": {"requests": {"cpu": "64"}}}]}})

        def unschedulable() -> dict | None:
            p = lab.client.get("Pod", "huge", "default")
            for c in p["status"].get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return c
            return None
        cond = lab.wait_for(unschedulable, 15, what="PodScheduled=False")
        assert cond["reason"] == "Unschedulable"
        assert cond["message"].startswith("0/2 nodes are available: 2 Insufficient cpu.")
        evs = lab.wait_for(lambda: [e for e in lab.client.list("Event", "default")["items"]
                                    if e["reason"] == "FailedScheduling"], 10, what="FailedScheduling")
        assert evs[0]["message"].startswith("0/2 nodes are available: 2 Insufficient cpu.")
        assert lab.client.get("Pod", "huge", "default")["status"]["phase"] == "Pending"
