"""Node hosts in a real lab (``--nodes-per-process``): 2 hosts x 4 fast nodes. Every
node is still a target of its own: kill, restart, pause, resume and isolate act on
one node, and its host's other nodes stay Ready."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from emulator import ctl
from lab.config import NODE_HOST_NICE
from lab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ), check=False)


def ready(lab: Lab, node: str) -> str | None:
    for c in (lab.client.get("Node", node).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"]
    return None


def readiness(lab: Lab) -> dict[str, str | None]:
    return {n: ready(lab, n) for n in lab.nodes}


def proc(lab: Lab, name: str) -> dict:
    return next(p for p in lab.processes() if p["name"] == name)


def only_not_ready(lab: Lab, node: str) -> bool:
    r = readiness(lab)
    return r[node] == "Unknown" and all(v == "True" for n, v in r.items() if n != node)


@pytest.mark.timeout(240)
def test_two_hosts_of_four_nodes_each_node_a_target_of_its_own() -> None:
    lab = Lab(8, name="nh", profile="fast", dns=False, nodes_per_process=4)
    with lab:
        procs = {p["name"]: p for p in lab.processes()}
        hosts = {n: p for n, p in procs.items() if p["role"] == "nodehost"}
        assert sorted(hosts) == ["nodehost-1", "nodehost-2"]
        for i in range(1, 9):
            p = procs[f"node-{i}"]
            host = "nodehost-1" if i <= 4 else "nodehost-2"
            assert p["role"] == "node" and p["host"] == host and p["pid"] == hosts[host]["pid"]
        assert lab.ready_nodes() == 8
        # the hosts yield the cores to the control plane; their ctl threads do not
        api = next(p for p in procs.values() if p["role"] == "apiserver")
        base = os.getpriority(os.PRIO_PROCESS, api["pid"])
        for h in hosts.values():
            nices = {t.id: os.getpriority(os.PRIO_PROCESS, t.id) for t in psutil.Process(h["pid"]).threads()}
            assert nices[h["pid"]] == min(19, base + NODE_HOST_NICE), nices
            assert base in nices.values(), nices   # the ctl server, started at the fork
        got = kemu("get", "nodes")
        assert got.returncode == 0, got.stderr
        assert sorted(ln.split()[0] for ln in got.stdout.splitlines()[1:]) == sorted(lab.nodes)
        assert "nodehost-2" in kemu("lab", "status").stdout
        # each packed node answers on a ctl socket of its own, served by its host
        assert ctl.call(ctl.socket_path(lab.layout.run, "node-6"), "ping")["node"] == "node-6"

        # kill one packed node: only its loops stop; its host and host-mate go on
        lab.kill("node-3")
        assert proc(lab, "node-3")["state"] == "exited" and proc(lab, "node-3")["exit_code"] == -9
        assert proc(lab, "nodehost-1")["state"] == "running"
        lab.wait_for(lambda: only_not_ready(lab, "node-3"), 30, what="node-3 alone NotReady (Unknown)")
        assert ready(lab, "node-4") == "True"
        lab.restart("node-3")
        assert proc(lab, "node-3")["state"] == "running" and proc(lab, "node-3")["restarts"] == 1
        lab.wait_nodes_ready(["node-3"], 30)

        # a network fault on one packed node cuts only that node's traffic
        with lab.chaos.isolate("node-6") as f:
            assert f.state["processes"]["node-6"] == "applied"
            lab.wait_for(lambda: only_not_ready(lab, "node-6"), 30, what="node-6 alone NotReady")
        lab.wait_nodes_ready(lab.nodes, 30)

        # pause and resume through chaos, as for a node process
        p = lab.chaos.pause("node-2")
        assert proc(lab, "node-2")["state"] == "paused"
        lab.wait_for(lambda: only_not_ready(lab, "node-2"), 30, what="node-2 alone NotReady")
        lab.chaos.resume("node-2")
        assert proc(lab, "node-2")["state"] == "running" and not lab.chaos.active()
        assert p.id
        lab.wait_nodes_ready(lab.nodes, 30)

        # a kill fault heals by starting the node again in its host
        with lab.chaos.kill("node-7"):
            assert proc(lab, "node-7")["state"] == "exited"
        assert proc(lab, "node-7")["state"] == "running"
        lab.wait_nodes_ready(lab.nodes, 30)

        # crash-loop: the node is stopped and started again in its host until healed
        cl = lab.chaos.crash_loop("node-8", every="300ms")
        lab.wait_for(lambda: proc(lab, "node-8")["restarts"] >= 2, 20, what="node-8 restarted twice")
        lab.chaos.heal(cl.id)
        assert proc(lab, "node-8")["state"] == "running" and proc(lab, "nodehost-2")["restarts"] == 0
        lab.wait_nodes_ready(lab.nodes, 30)

        # killing a host takes its nodes; restarting one of them brings back only that one
        lab.kill("nodehost-2")
        lab.wait_for(lambda: all(proc(lab, f"node-{i}")["state"] == "exited" for i in range(5, 9)), 10,
                     what="nodehost-2's nodes exited with it")
        lab.restart("node-5")
        assert proc(lab, "node-5")["pid"] == proc(lab, "nodehost-2")["pid"]
        assert proc(lab, "node-6")["state"] == "exited"
        lab.wait_nodes_ready(["node-5"], 30)
        pids = [p["pid"] for p in lab.processes() if p["pid"]]
    gone = [pid for pid in set(pids) if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert gone == [], "lab down left processes behind"


def test_node_hosts_refuse_a_real_runtime_and_bad_counts() -> None:
    from lab.config import LabConfig
    with pytest.raises(ValueError, match=r"--nodes-per-process: node hosts run the fake runtime only.*node-2"):
        LabConfig(nodes=4, nodes_per_process=2, runtime_for={"node-2": "process"}).validate()
    with pytest.raises(ValueError, match="--nodes-per-process: must be a whole number of at least 1"):
        LabConfig(nodes=4, nodes_per_process=0).validate()
    for bad in (20, -1, "5", True):
        with pytest.raises(ValueError, match=r"--node-host-nice: must be a whole number from 0 .* to 19"):
            LabConfig(nodes=4, nodes_per_process=2, node_host_nice=bad).validate()
    r = kemu("lab", "up", "--nodes", "2", "--nodes-per-process", "2", "--node-host-nice", "25",
             "--name", "nh-bad")
    assert r.returncode == 1 and "--node-host-nice: must be a whole number" in r.stderr
    r = kemu("lab", "up", "--nodes", "2", "--node-host-nice", "low", "--name", "nh-bad")
    assert r.returncode == 2 and "--node-host-nice" in r.stderr
    cfg = LabConfig(nodes=5, nodes_per_process=2).validate()
    assert cfg.host_groups() == [("nodehost-1", [("node-1", 1), ("node-2", 2)]),
                                 ("nodehost-2", [("node-3", 3), ("node-4", 4)]),
                                 ("nodehost-3", [("node-5", 5)])]
    r = kemu("lab", "up", "--nodes", "2", "--nodes-per-process", "2", "--runtime", "process",
             "--name", "nh-bad")
    assert r.returncode != 0 and "fake runtime only" in r.stderr
