"""A Deployment rollout with the real scheduler and kubelets (fake runtime), all driven by step()."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from control.scheduler.scheduler import Scheduler
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet


class Stack:
    def __init__(self, address: str, root: Path) -> None:
        self.clients: list[Client] = []

        def client(component: str, node: str | None = None) -> Client:
            c = Client(address, component=component, node=node)
            self.clients.append(c)
            return c
        self.admin = client("test")
        self.kubelets = [Kubelet(client("kubelet", n), FAST, n, root_dir=str(root / n)) for n in ("node-1", "node-2")]
        for k in self.kubelets:
            k.start()
        self.scheduler = Scheduler(client("scheduler"), FAST)
        self.scheduler.start()
        self.cm = ControllerManager(client("controller-manager"), FAST, controllers=("replicaset", "deployment"))
        self.cm.start()

    def run_until(self, pred: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.cm.step(0.005)
            self.scheduler.step(0.005)
            for k in self.kubelets:
                k.step(0.005)
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture
def stack(mem_server: Any, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(mem_server.address, tmp_path)
    yield s
    s.close()


def rolled_out(s: Stack, image: str, n: int) -> bool:
    d = s.admin.get("Deployment", "web", "default")
    st = d.get("status") or {}
    pods = s.admin.list("Pod", "default")["items"]
    return (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == n
            and st.get("availableReplicas") == n and st.get("replicas") == n and len(pods) == n
            and all(p["spec"]["containers"][0]["image"] == image and cu.is_pod_ready(p) for p in pods))


def test_rollout_on_real_kubelets(stack: Stack) -> None:
    s = stack
    s.admin.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}})
    s.run_until(lambda: rolled_out(s, "nginx:1", 4), "first rollout")
    nodes = {p["spec"]["nodeName"] for p in s.admin.list("Pod", "default")["items"]}
    assert nodes == {"node-1", "node-2"}
    s.admin.patch("Deployment", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:2"}]}}}}, "default")
    s.run_until(lambda: rolled_out(s, "nginx:2", 4), "rolling update")   # old pods gone: kubelets confirmed
    s.admin.patch("Deployment", "web", {"spec": {"replicas": 1}}, "default")
    s.run_until(lambda: rolled_out(s, "nginx:2", 1), "scale down")
