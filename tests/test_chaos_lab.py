"""Chaos in real labs (3 fast nodes, no DNS): process faults, Kubernetes faults, the record.

Each test checks an effect the cluster shows (a node NotReady then Ready, a
Deployment replacing its pods, acknowledged writes surviving an apiserver kill),
the fault's heal, and the chaos.jsonl record.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lab.chaos.chaos import ChaosError, healer_alive
from lab.lab import Lab, LabError

ROOT = Path(__file__).resolve().parent.parent

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def lab3(name: str) -> Lab:
    return Lab(3, name=name, profile="fast", dns=False)


def ready(lab: Lab, node: str) -> str | None:
    for c in (lab.client.get("Node", node).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"]
    return None


def state(lab: Lab, name: str) -> str:
    return next(p["state"] for p in lab.processes() if p["name"] == name)


def events(lab: Lab) -> list[dict]:
    path = lab.layout.logs / "chaos.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_for_a_duration_pause_resume_and_the_context_manager() -> None:
    with lab3("c-proc") as lab:
        # kill with a duration: the node stays dead, then its healer restarts it
        pid = next(p["pid"] for p in lab.processes() if p["name"] == "node-3")
        f = lab.chaos.kill("node-3", duration="1s")
        assert f.id == "f-1" and f.targets == ["node-3"]
        assert f.state["pids"] == {"node-3": pid}
        assert [a.id for a in lab.chaos.active()] == ["f-1"]
        lab.wait_for(lambda: not lab.chaos.active(), 20, what="the healer heals f-1")
        lab.wait_for(lambda: state(lab, "node-3") == "running", 10, what="node-3 restarted")
        assert next(p for p in lab.processes() if p["name"] == "node-3")["restarts"] == 1
        exits = [json.loads(ln) for ln in lab.layout.log_for("supervisor").read_text().splitlines()
                 if '"process exited"' in ln and '"node-3"' in ln]
        assert [e["exit_code"] for e in exits] == [-9]
        lab.wait_nodes_ready(["node-3"], 20)
        lab.wait_for(lambda: not healer_alive(f.healer_pid, f.healer_start), 10, what="the healer exits")
        evs = [(e["event"], e["id"]) for e in events(lab)]
        assert evs == [("fault_injected", "f-1"), ("fault_healed", "f-1")]
        assert events(lab)[-1]["reason"] == "expired"

        # a kill healed right away (the state file lags the signal) still restarts the node
        with lab.chaos.kill("node-3"):
            pass
        lab.wait_for(lambda: next(p for p in lab.processes() if p["name"] == "node-3")["restarts"] == 2
                     and state(lab, "node-3") == "running", 10, what="node-3 restarted again")

        # pause: the node stops renewing its lease and goes NotReady; heal: Ready again
        p = lab.chaos.pause("node-2")
        assert state(lab, "node-2") == "paused"
        lab.wait_for(lambda: ready(lab, "node-2") == "Unknown", 20, what="node-2 Ready=Unknown")
        lab.chaos.heal(p.id)
        assert state(lab, "node-2") == "running"
        lab.wait_for(lambda: ready(lab, "node-2") == "True", 20, what="node-2 Ready again")
        with pytest.raises(ChaosError, match="no active fault 'f-3'"):
            lab.chaos.heal(p.id)

        # resume heals the pause faults of its targets
        lab.chaos.pause("node-1")
        lab.chaos.resume("node-1")
        assert state(lab, "node-1") == "running" and not lab.chaos.active()

        # a fault as a context manager heals on an exception
        with pytest.raises(RuntimeError, match="boom"):
            with lab.chaos.pause("node-1,scheduler"):
                assert state(lab, "node-1") == "paused" and state(lab, "scheduler") == "paused"
                raise RuntimeError("boom")
        assert state(lab, "node-1") == "running" and state(lab, "scheduler") == "running"
        assert not lab.chaos.active()

        # crash-loop: killed and started again until healed
        before = next(p["restarts"] for p in lab.processes() if p["name"] == "node-3")
        cl = lab.chaos.crash_loop("node-3", every="300ms")
        lab.wait_for(lambda: next(p["restarts"] for p in lab.processes() if p["name"] == "node-3")
                     >= before + 2, 20, what="node-3 restarted twice by the crash loop")
        lab.chaos.heal(cl.id)
        assert not healer_alive(cl.healer_pid, cl.healer_start)
        lab.wait_for(lambda: state(lab, "node-3") == "running", 10, what="node-3 running after heal")
        lab.wait_nodes_ready(lab.nodes, 20)
        assert any(e["event"] == "fault_action" and e["id"] == cl.id for e in events(lab))


def test_pod_kill_node_taint_and_node_drain() -> None:
    with lab3("c-k8s") as lab:
        c = lab.client
        # lab.apply is kemu apply -f: kubectl's lines back, a LabError naming the problem
        assert lab.apply(WEB, namespace="default") == ["deployment.apps/web created"]
        assert lab.apply(WEB, namespace="default") == ["deployment.apps/web unchanged"]
        with pytest.raises(LabError, match="no matches for kind \"Deploymnt\""):
            lab.apply({**WEB, "kind": "Deploymnt"})
        with pytest.raises(LabError, match="pass at least one manifest"):
            lab.apply()

        def running_pods() -> list[dict]:
            return [p for p in c.list("Pod", "default", label_selector="app=web")["items"]
                    if (p.get("status") or {}).get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")]
        lab.wait_for(lambda: len(running_pods()) == 3, 30, what="3 web pods running")
        first = {p["metadata"]["name"] for p in running_pods()}

        f = lab.chaos.pod_kill("app=web", "default", grace=0)
        assert sorted(f.state["pods"]) == sorted(f"default/{n}" for n in first)
        assert not lab.chaos.active()   # an action: healed at once
        lab.wait_for(lambda: len(running_pods()) == 3 and not first & {p["metadata"]["name"]
                                                                         for p in running_pods()},
                     30, what="the Deployment replaces the killed pods")
        with pytest.raises(ValueError, match="no pod matches selector 'app=nothing'"):
            lab.chaos.pod_kill("app=nothing")
        with pytest.raises(ValueError, match="container-kill needs a real runtime"):
            lab.chaos.container_kill("app=web")

        # node-taint, healed by hand
        t = lab.chaos.node_taint("node-1", "chaos=true:NoSchedule")
        taints = lab.client.get("Node", "node-1")["spec"].get("taints") or []
        assert {"key": "chaos", "value": "true", "effect": "NoSchedule"} in taints
        lab.chaos.heal(t.id)
        taints = lab.client.get("Node", "node-1")["spec"].get("taints") or []
        assert not any(x["key"] == "chaos" for x in taints)

        # node-drain: cordoned, its pods evicted and replaced elsewhere; heal: uncordoned
        victim = running_pods()[0]["spec"]["nodeName"]
        d = lab.chaos.node_drain(victim, grace=0)
        assert d.state["cordoned"] == [victim] and d.state["evicted"]
        assert lab.client.get("Node", victim)["spec"]["unschedulable"] is True
        lab.wait_for(lambda: len(running_pods()) == 3 and all(
            p["spec"]["nodeName"] != victim for p in running_pods()), 30,
            what=f"the pods replaced away from {victim}")
        lab.chaos.heal(d.id)
        assert not lab.client.get("Node", victim)["spec"].get("unschedulable")
        kinds = [(e["event"], e["kind"]) for e in events(lab)]
        assert ("fault_injected", "node-drain") in kinds and ("fault_healed", "node-drain") in kinds


def test_apiserver_kill_keeps_acknowledged_writes() -> None:
    with lab3("c-api") as lab:
        c = lab.client
        acked = []
        for i in range(100):
            c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
                      "data": {"i": str(i)}}, "default")
            acked.append(f"cm-{i}")
        old_pid = next(p["pid"] for p in lab.processes() if p["name"] == "apiserver")
        f = lab.chaos.kill("apiserver")
        # the supervisor restarts the apiserver itself; the client reconnects
        lab.wait_for(lambda: any(p["name"] == "apiserver" and p["state"] == "running" and p["pid"] != old_pid
                                 for p in lab.processes()), 20, what="the apiserver restarted")

        def names() -> set[str] | None:
            try:
                return {o["metadata"]["name"] for o in c.list_all("ConfigMap", "default")["items"]}
            except Exception:
                return None
        have = lab.wait_for(names, 20, what="the apiserver answers again")
        assert set(acked) <= have
        c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}, "default")
        lab.chaos.heal(f.id)   # nothing left to restart: the supervisor did it
        lab.wait_nodes_ready(lab.nodes, 30)


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def test_cli_round_trip_and_lab_down_heals_everything() -> None:
    lab = lab3("c-cli")
    try:
        lab.up()
        r = kemu("chaos", "pause", "node-1")
        assert r.returncode == 0 and r.stdout.strip() == "f-1", r.stderr
        r = kemu("chaos", "node-taint", "nodes:zone=zone-a", "--param", "taint=chaos=x:NoSchedule",
                 "--for", "5m")
        assert r.returncode == 0 and r.stdout.strip() == "f-2", r.stderr
        r = kemu("chaos", "kill", "node-3", "--no-restart")
        assert r.returncode == 0 and r.stdout.strip() == "f-3", r.stderr
        r = kemu("chaos", "list")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["ID", "KIND", "TARGET", "PARAMS", "AGE", "REMAINING"]
        rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
        assert rows["f-1"][1:4] == ["pause", "node-1", "-"] and rows["f-1"][5] == "-"
        assert rows["f-2"][1:4] == ["node-taint", "nodes:zone=zone-a", "taint=chaos=x:NoSchedule"]
        assert rows["f-2"][5].startswith("4m") or rows["f-2"][5].startswith("5m")
        assert rows["f-3"][3] == "no-restart=true"
        healer = lab.chaos.get("f-2")
        assert healer_alive(healer.healer_pid, healer.healer_start)

        r = kemu("chaos", "heal", "f-1")
        assert r.returncode == 0 and "healed f-1 (pause node-1)" in r.stdout, r.stderr
        assert state(lab, "node-1") == "running"
        r = kemu("chaos", "heal", "f-9")
        assert r.returncode == 1 and "no active fault 'f-9': the active ones are f-2, f-3" in r.stderr
        r = kemu("chaos", "pause", "node-9")
        assert r.returncode == 1 and "unknown target 'node-9'" in r.stderr
        r = kemu("chaos", "node-taint", "node-1")
        assert r.returncode == 1 and "parameter 'taint' is required" in r.stderr
        r = kemu("chaos", "pause", "node-1", "--param", "colour=red")
        assert r.returncode == 1 and "unknown parameter 'colour'" in r.stderr
        r = kemu("chaos", "list", "-o", "json")
        assert [f["id"] for f in json.loads(r.stdout)] == ["f-2", "f-3"]
        r = kemu("lab", "logs", "--component", "chaos")
        assert r.returncode == 0 and "fault_injected" in r.stdout and "fault_healed" in r.stdout

        r = kemu("lab", "down")
        assert r.returncode == 0, r.stderr
        assert not healer_alive(healer.healer_pid, healer.healer_start)
        healed = {e["id"]: e.get("reason") for e in events(lab) if e["event"] == "fault_healed"}
        assert healed == {"f-1": "requested", "f-2": "lab down", "f-3": "lab down"}
        assert not lab.chaos.active()
    finally:
        lab.down()
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if "lab.chaos.healer" in " ".join(p.info["cmdline"] or []) and str(lab.layout.root)
                 in " ".join(p.info["cmdline"] or [])]
    assert not leftovers


def test_container_kill_with_the_process_runtime() -> None:
    """The container's process is killed; the kubelet restarts it (restartPolicy Always)."""
    with Lab(1, name="c-ctr", profile="fast", runtime="process", dns=False) as lab:
        lab.client.create({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "s", "namespace": "default", "labels": {"app": "s"}},
                           "spec": {"terminationGracePeriodSeconds": 1,
                                    "containers": [{"name": "c", "image": "busybox",
                                                    "command": ["sleep", "1000"]}]}}, "default")

        def status() -> dict:
            cs = (lab.client.get("Pod", "s", "default").get("status") or {}).get("containerStatuses") or []
            return cs[0] if cs else {}
        lab.wait_for(lambda: "running" in (status().get("state") or {}), 30, what="the container running")
        f = lab.chaos.container_kill("app=s")
        assert f.state["killed"] == {"default/s": ["c"]}
        lab.wait_for(lambda: status().get("restartCount", 0) >= 1 and "running" in (status().get("state") or {}),
                     30, what="the kubelet restarts the killed container")
        with pytest.raises(ValueError, match="no running container nope"):
            lab.chaos.container_kill("app=s", container="nope")
