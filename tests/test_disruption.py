"""The disruption controller against a real apiserver (in-process), with the
ReplicaSet controller, the eviction subresource and the chaos ``node-drain``
fault honouring a PodDisruptionBudget."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import FAST
from lab.chaos.k8s_faults import K8S_KINDS
from lab.chaos.model import Fault
from lab.paths import LabLayout
from tests.conftest import step_until


def rs_manifest(replicas: int = 3) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def pdb_manifest(**spec: Any) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def live_pods(admin: Client) -> list[dict]:
    return [p for p in admin.list("Pod", "default", label_selector="app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def run_pending(admin: Client, node: str) -> int:
    """What a scheduler and kubelet would do: bind the unscheduled pods to ``node``, make them Ready."""
    n = 0
    for p in live_pods(admin):
        if (p.get("status") or {}).get("phase") == "Running":
            continue
        if not p["spec"].get("nodeName"):
            admin.bind(p["metadata"]["name"], "default", node)
        p = admin.get("Pod", p["metadata"]["name"], "default")
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                           "lastTransitionTime": cu.format_time(time.time())}]}
        admin.update_status(p)
        n += 1
    return n


def pdb_status(admin: Client) -> dict:
    return admin.get("PodDisruptionBudget", "web-pdb", "default").get("status") or {}


@pytest.fixture
def cluster(mem_server: Any) -> Iterator[tuple[Client, ControllerManager]]:
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("replicaset", "disruption"))
    cm.start()
    for n in ("node-1", "node-2"):
        admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
    yield admin, cm
    cmc.close()
    admin.close()


def start_web(admin: Client, cm: ControllerManager, **budget: Any) -> None:
    admin.create(rs_manifest(3))
    step_until(cm, lambda: len(live_pods(admin)) == 3, "3 pods")
    run_pending(admin, "node-1")
    admin.create(pdb_manifest(**budget))


def test_controller_keeps_the_budget_and_evictions_spend_it(cluster: Any) -> None:
    admin, cm = cluster
    start_web(admin, cm, minAvailable=2)
    st = step_until(cm, lambda: (s := pdb_status(admin)).get("disruptionsAllowed") == 1 and s, "1 disruption allowed")
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"], st["observedGeneration"]) == (3, 3, 2, 1)
    cond = next(c for c in st["conditions"] if c["type"] == "DisruptionAllowed")
    assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")

    first, second = [p["metadata"]["name"] for p in live_pods(admin)][:2]
    admin.evict(first, "default", grace_period_seconds=0)
    with pytest.raises(APIError) as ei:
        admin.evict(second, "default", grace_period_seconds=0)
    assert ei.value.code == errors.TOO_MANY_REQUESTS
    # the ReplicaSet replaces the pod; once the replacement is Ready the budget allows one again
    step_until(cm, lambda: len(live_pods(admin)) == 3 and run_pending(admin, "node-2") == 0, "replacement")
    st = step_until(cm, lambda: (s := pdb_status(admin)).get("disruptionsAllowed") == 1 and s, "budget back")
    assert st["currentHealthy"] == 3 and "disruptedPods" not in st   # the evicted pod is gone
    admin.evict(second, "default", grace_period_seconds=0)

    # a percent maxUnavailable uses the ReplicaSet's scale: ceil(3 * 34%) = 2 may be unavailable
    obj = admin.get("PodDisruptionBudget", "web-pdb", "default")
    obj["spec"] = {"selector": obj["spec"]["selector"], "maxUnavailable": "34%"}
    admin.update(obj)
    step_until(cm, lambda: len(live_pods(admin)) == 3 and run_pending(admin, "node-2") == 0, "replacement 2")
    st = step_until(cm, lambda: (s := pdb_status(admin)).get("observedGeneration") == 2
                    and s.get("currentHealthy") == 3 and s, "generation 2 observed")
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 1, 2)


class FakeLab:
    """What ``node-drain`` uses of a Lab, over the in-process apiserver; its ``wait_for``
    drives the controllers and calls ``between`` (a scheduler and kubelet) between polls."""

    def __init__(self, client: Client, cm: ControllerManager, root: Path,
                 between: Callable[[], object] = lambda: None) -> None:
        self.client, self.cm, self.between = client, cm, between
        self.layout, self.name = LabLayout(root), "fake"
        self.polls = 0

    def wait_for(self, predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
                 what: str = "the condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            self.polls += 1
            for _ in range(5):
                self.cm.step(0.01)
            self.between()
            for _ in range(5):
                self.cm.step(0.01)


def drain(lab: FakeLab, **params: str) -> Fault:
    f = Fault(id="f-1", kind="node-drain", target="node-1", targets=["node-1"],
              params={"grace": "0", **params})
    K8S_KINDS["node-drain"].check(f.params)
    f.state = K8S_KINDS["node-drain"].inject(lab, f)
    return f


def test_node_drain_waits_for_the_budget(cluster: Any, tmp_path: Path) -> None:
    admin, cm = cluster
    start_web(admin, cm, minAvailable=2)
    step_until(cm, lambda: pdb_status(admin).get("disruptionsAllowed") == 1, "1 disruption allowed")
    lab = FakeLab(admin, cm, tmp_path, between=lambda: run_pending(admin, "node-2"))
    f = drain(lab, timeout="20s")
    assert f.state["cordoned"] == ["node-1"] and f.state["blocked"] == {}
    assert len(f.state["evicted"]) == 3 and lab.polls >= 2   # one at a time, as the budget allowed
    assert admin.get("Node", "node-1")["spec"]["unschedulable"] is True
    assert all(p["spec"].get("nodeName") != "node-1" for p in live_pods(admin))
    step_until(cm, lambda: len(live_pods(admin)) == 3, "the last evicted pod replaced")


def test_node_drain_reports_pods_still_blocked_at_the_timeout(cluster: Any, tmp_path: Path) -> None:
    admin, cm = cluster
    start_web(admin, cm, minAvailable=3)
    step_until(cm, lambda: pdb_status(admin).get("observedGeneration") == 1, "the budget observed")
    lab = FakeLab(admin, cm, tmp_path)
    f = drain(lab, timeout="300ms")
    assert f.state["evicted"] == [] and len(f.state["blocked"]) == 3
    msg = next(iter(f.state["blocked"].values()))
    assert msg.startswith("Cannot evict pod as it would violate the pod's disruption budget.")
    assert "needs 3 healthy pods and has 3 currently" in msg
    assert len(live_pods(admin)) == 3 and all(p["spec"]["nodeName"] == "node-1" for p in live_pods(admin))
    logged = [json.loads(ln) for ln in (tmp_path / "logs" / "chaos.jsonl").read_text().splitlines()]
    assert [(e["event"], e["level"], sorted(e["pods"])) for e in logged] == \
        [("drain_blocked", "warning", sorted(f.state["blocked"]))]


def test_node_drain_params_are_checked() -> None:
    with pytest.raises(ValueError, match="--param timeout: bad duration 'soon'"):
        K8S_KINDS["node-drain"].check({"timeout": "soon"})
    K8S_KINDS["node-drain"].check({"timeout": "90"})
