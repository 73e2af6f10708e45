"""A lab with real runtimes: --runtime, --runtime-for (and their bad values), a restarted node
adopting its container processes, and `lab down` leaving no container process behind."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from lab.config import LabConfig, parse_runtime_for
from lab.lab import Lab
from tests.conftest import poll_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "kemu-home"
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return home


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_runtime_flags_validate_with_clear_errors() -> None:
    assert parse_runtime_for(["node-3=process", "node-1 = docker"]) == {"node-3": "process", "node-1": "docker"}
    cfg = LabConfig(nodes=3, runtime="fake", runtime_for={"node-3": "process"}).validate()
    assert [cfg.runtime_for_node(n) for n in cfg.node_names] == ["fake", "fake", "process"]
    with pytest.raises(ValueError, match=r'^--runtime-for: expected NODE=RUNTIME \(e.g. node-3=process\), got "node-3"$'):
        parse_runtime_for(["node-3"])
    with pytest.raises(ValueError, match="node-3 is given twice"):
        parse_runtime_for(["node-3=process", "node-3=fake"])
    with pytest.raises(ValueError, match='^--runtime-for: node "node-9" does not exist; this lab has node-1 .. node-3'):
        LabConfig(nodes=3, runtime_for={"node-9": "process"}).validate()
    with pytest.raises(ValueError, match='^--runtime-for: unsupported runtime "rkt" for node-2; supported: '
                                         'fake, process, docker$'):
        LabConfig(nodes=3, runtime_for={"node-2": "rkt"}).validate()
    with pytest.raises(ValueError, match='^--runtime: unsupported runtime "rkt"'):
        LabConfig(runtime="rkt").validate()


def test_cli_rejects_bad_runtime_values() -> None:
    r = kemu("lab", "up", "--nodes", "2", "--name", "bad", "--runtime-for", "node-7=process")
    assert r.returncode == 1 and 'error: --runtime-for: node "node-7" does not exist' in r.stderr
    r = kemu("lab", "up", "--nodes", "2", "--name", "bad", "--runtime-for", "node-2")
    assert r.returncode == 1 and "expected NODE=RUNTIME (e.g. node-3=process)" in r.stderr
    r = kemu("lab", "up", "--nodes", "2", "--name", "bad", "--runtime", "rkt")
    assert r.returncode == 2 and "invalid choice: 'rkt'" in r.stderr


def lab_processes(lab_root: Path, marker: str) -> list[psutil.Process]:
    """Live processes that belong to this lab's containers: the marker in their command line,
    or a KEMU_NODE_ROOT (the kubelet sets it) under this lab's directory."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(p.info["cmdline"] or []):
                out.append(p)
                continue
            if p.environ().get("KEMU_NODE_ROOT", "").startswith(str(lab_root)):
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_process_runtime_lab_adopts_across_node_restart_and_down_leaves_nothing(kemu_home: Path) -> None:
    marker = f"kemu-lab-marker-{uuid.uuid4().hex[:12]}"
    lab = Lab(2, name="rt", profile="fast", runtime="process", runtime_for=["node-2=fake"])
    with lab:
        nodes = {n["metadata"]["name"]: n for n in lab.client.list("Node")["items"]}
        assert nodes["node-1"]["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("process://")
        assert nodes["node-2"]["status"]["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1"
        lab.client.create({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sleepers", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "sleepers"}},
                     "template": {"metadata": {"labels": {"app": "sleepers"}},
                                  "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"},
                                           "terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "sleep", "image": "busybox",
                                                           "command": ["sh", "-c", f"sleep 1000; : {marker}"]}]}}}})

        def running() -> list[dict]:
            pods = lab.client.list("Pod", "default", label_selector="app=sleepers")["items"]
            ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            return ok if len(ok) == 2 else []
        lab.wait_for(running, 30, what="2 pods Running")
        def marked() -> list[psutil.Process]:
            return [p for p in lab_processes(lab.layout.root, marker) if marker in " ".join(p.cmdline())]
        procs = poll_for(lambda: len(marked()) == 2 and marked(), 10, what="the containers' processes")
        before = sorted(p.pid for p in procs)
        assert len(before) == 2
        ids = sorted(cs["containerID"] for p in running() for cs in p["status"]["containerStatuses"])

        # The node process is killed and comes back (restart: the kubelet, not the machine):
        # its kubelet adopts the same processes.
        lab.restart("node-1")
        log = lab.layout.log_for("node-1")
        lab.wait_for(lambda: log.read_text().count('"kubelet_started"') == 2, 30, what="the new kubelet")
        # a pod created now runs only once the new kubelet syncs: by then it has adopted (or not)
        lab.client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
                           "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox",
                                                                          "command": ["sleep", "1000"]}]}})
        lab.wait_for(lambda: (lab.client.get("Pod", "probe", "default").get("status") or {}).get("phase")
                     == "Running", 30, what="a pod started by the new kubelet")

        def same() -> bool:
            pods = running()
            return bool(pods) and sorted(cs["containerID"] for p in pods
                                         for cs in p["status"]["containerStatuses"]) == ids
        lab.wait_for(same, 10, what="the same containers after the restart")
        assert all(cs["restartCount"] == 0 for p in running() for cs in p["status"]["containerStatuses"])
        assert sorted(p.pid for p in marked()) == before
        root = lab.layout.root
    # `lab down` (the with block's end) has returned: nothing of the containers is left.
    left = lab_processes(root, marker)
    assert left == [], [(p.pid, p.cmdline()) for p in left]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in before)
    assert os.path.isdir(root / "nodes" / "node-1" / "var" / "log" / "pods")


def test_a_killed_node_takes_its_containers_with_it(kemu_home: Path) -> None:
    """kill is the node's death (the machine fails): unlike restart, its containers die too."""
    marker = f"kemu-kill-{os.getpid()}"
    with Lab(1, name="kill", profile="fast", runtime="process", dns=False) as lab:
        lab.client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s", "namespace": "default"},
                           "spec": {"containers": [{"name": "c", "image": "busybox",
                                                    "command": ["sh", "-c", f"sleep 1000; : {marker}"]}]}})
        lab.wait_for(lambda: (lab.client.get("Pod", "s", "default").get("status") or {}).get("phase")
                     == "Running", 30, what="the pod Running")

        def marked() -> list[psutil.Process]:
            return [p for p in lab_processes(lab.layout.root, marker) if marker in " ".join(p.cmdline())]
        poll_for(lambda: len(marked()) == 1, 10, what="the container's process")
        lab.kill("node-1")
        assert marked() == []
