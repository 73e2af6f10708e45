"""Resource faults in a real lab: disk-fill makes the node process report DiskPressure and
evict a BestEffort pod, then recover after heal; memory-pressure does the same for
MemoryPressure, and the node lifecycle controller taints the node while it lasts."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.chaos.model import Fault
from lab.chaos.resource_faults import RESOURCE_KINDS
from lab.lab import Lab

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "besteffort"},
       "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def _condition(lab: Lab, node: str, typ: str) -> str:
    return next(c["status"] for c in lab.client.get("Node", node)["status"]["conditions"] if c["type"] == typ)


def _tainted(lab: Lab, node: str, key: str) -> bool:
    return any(t.get("key") == key for t in lab.client.get("Node", node).get("spec", {}).get("taints") or ())


def test_disk_fill_then_memory_pressure_and_heal(kemu_home: Path) -> None:
    with Lab(1, name="rf", profile="fast", dns=False, node_ephemeral_storage="1Gi", node_memory="1Gi") as lab:
        c = lab.client
        node = lab.nodes[0]
        c.create(POD, namespace="default")
        lab.wait_for(lambda: c.get("Pod", "besteffort", "default").get("status", {}).get("phase") == "Running",
                     timeout=30)
        disk = RESOURCE_KINDS["disk-fill"]
        f = Fault(id="f-1", kind="disk-fill", target=node, targets=[node], params={"percent": "95"},
                  injected_at=time.time())
        f.state = disk.inject(lab, f)
        try:
            assert f.state["sizes"][node] > 0
            lab.wait_for(lambda: _condition(lab, node, "DiskPressure") == "True", timeout=30)
            st = lab.wait_for(lambda: (s := c.get("Pod", "besteffort", "default")["status"])
                              .get("phase") == "Failed" and s, timeout=30)
            assert st["reason"] == "Evicted"
            assert st["message"].startswith("The node was low on resource: ephemeral-storage.")
            lab.wait_for(lambda: _tainted(lab, node, "node.kubernetes.io/disk-pressure"), timeout=30)
        finally:
            disk.heal(lab, f)
        assert not Path(f.state["files"][node]).exists()
        lab.wait_for(lambda: _condition(lab, node, "DiskPressure") == "False", timeout=45)

        mem = RESOURCE_KINDS["memory-pressure"]
        g = Fault(id="f-2", kind="memory-pressure", target=node, targets=[node], injected_at=time.time())
        g.state = mem.inject(lab, g)
        try:
            lab.wait_for(lambda: _condition(lab, node, "MemoryPressure") == "True", timeout=30)
            lab.wait_for(lambda: _tainted(lab, node, "node.kubernetes.io/memory-pressure"), timeout=30)
        finally:
            mem.heal(lab, g)
        lab.wait_for(lambda: _condition(lab, node, "MemoryPressure") == "False", timeout=45)
        lab.wait_for(lambda: not _tainted(lab, node, "node.kubernetes.io/memory-pressure"), timeout=30)
