"""The DaemonSet controller against a real apiserver (in-process); no kubelet, so pod status is patched."""
from __future__ import annotations

from typing import Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until as run_until

NS = "default"




def add_node(admin: Client, name: str, labels: dict | None = None) -> None:
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}})


def live_pods(admin: Client) -> dict[str, dict]:
    """node name -> the DaemonSet's pod there (pods being deleted left out)."""
    out = {}
    for p in admin.list("Pod", NS, label_selector="app=agent")["items"]:
        if not p["metadata"].get("deletionTimestamp"):
            out[p["spec"]["nodeName"]] = p
    return out


@pytest.fixture
def cluster(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    for n in ("node-1", "node-2"):
        add_node(admin, n, {"role": "worker"})
    add_node(admin, "node-db", {"role": "db"})
    admin.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": NS},
                  "spec": {"selector": {"matchLabels": {"app": "agent"}},
                           "template": {"metadata": {"labels": {"app": "agent"}},
                                        "spec": {"nodeSelector": {"role": "worker"},
                                                 "containers": [{"name": "agent", "image": "busybox"}]}}}})
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("daemonset",))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def test_one_pod_per_matching_node_status_and_events(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    pods = run_until(cm, lambda: (lambda p: p if set(p) == {"node-1", "node-2"} else None)(live_pods(admin)),
                     "a pod on each worker")
    p = pods["node-1"]  # type: ignore[index]
    assert p["metadata"]["name"].startswith("agent-")
    ref = p["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "DaemonSet" and ref["controller"] is True
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == ["node-1"]
    assert {t["key"] for t in p["spec"]["tolerations"]} >= {"node.kubernetes.io/not-ready",
                                                             "node.kubernetes.io/unreachable"}
    for pod in pods.values():  # type: ignore[union-attr]
        pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        admin.update_status(pod)

    def status() -> dict:
        return admin.get("DaemonSet", "agent", NS).get("status") or {}
    run_until(cm, lambda: status().get("numberReady") == 2, "numberReady 2")
    st = status()
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2
    assert st["numberMisscheduled"] == 0 and st["updatedNumberScheduled"] == 2 and st["numberAvailable"] == 2
    assert st["observedGeneration"] == 1
    run_until(cm, lambda: len([e for e in admin.list("Event", NS)["items"] if e["reason"] == "SuccessfulCreate"])
              == 2, "SuccessfulCreate events")
    for _ in range(20):   # settled: no more pods are made
        cm.step(0.01)
    assert len(admin.list("Pod", NS)["items"]) == 2
    assert all(c.next_due() > cm.clock() for c in cm.controllers)   # idle: no busy loop


def test_nodes_come_and_go(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    run_until(cm, lambda: len(live_pods(admin)) == 2, "two pods")
    add_node(admin, "node-3", {"role": "worker"})
    run_until(cm, lambda: "node-3" in live_pods(admin), "a pod on the new node")
    admin.delete("Node", "node-2")
    run_until(cm, lambda: set(live_pods(admin)) == {"node-1", "node-3"}, "the pod of the removed node deleted")
    run_until(cm, lambda: [e for e in admin.list("Event", NS)["items"] if e["reason"] == "SuccessfulDelete"],
              "SuccessfulDelete event")
    # an untolerated NoExecute taint evicts; the controller's own tolerations keep it through unreachable
    admin.patch("Node", "node-3", {"spec": {"taints": [{"key": "node.kubernetes.io/unreachable",
                                                        "effect": "NoExecute"}]}})
    for _ in range(10):
        cm.step(0.01)
    assert "node-3" in live_pods(admin)
    admin.patch("Node", "node-3", {"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}})
    run_until(cm, lambda: set(live_pods(admin)) == {"node-1"}, "the pod of the tainted node deleted")
    # relabelling a node out of the selector removes its pod too
    admin.patch("Node", "node-1", {"metadata": {"labels": {"role": "db"}}})
    run_until(cm, lambda: live_pods(admin) == {}, "no pods left")
    run_until(cm, lambda: (admin.get("DaemonSet", "agent", NS).get("status") or {})
              .get("desiredNumberScheduled") == 0, "desired 0")


def test_template_change_rolls_pods(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    first = run_until(cm, lambda: (lambda p: p if len(p) == 2 else None)(live_pods(admin)), "two pods")
    old_names = {p["metadata"]["name"] for p in first.values()}  # type: ignore[union-attr]
    ds = admin.get("DaemonSet", "agent", NS)
    ds["spec"]["template"]["metadata"]["labels"]["version"] = "2"
    admin.update(ds)

    def rolled() -> bool:
        pods = live_pods(admin)
        return len(pods) == 2 and not old_names & {p["metadata"]["name"] for p in pods.values()}
    run_until(cm, rolled, "every pod replaced")
    run_until(cm, lambda: (admin.get("DaemonSet", "agent", NS).get("status") or {})
              .get("updatedNumberScheduled") == 2, "updatedNumberScheduled 2")


def test_failed_pod_is_replaced_after_a_back_off(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    pods = run_until(cm, lambda: (lambda p: p if len(p) == 2 else None)(live_pods(admin)), "two pods")
    victim = pods["node-1"]  # type: ignore[index]
    victim["status"] = {"phase": "Failed", "reason": "OutOfcpu"}
    admin.update_status(victim)

    def replaced() -> dict | None:
        p = live_pods(admin).get("node-1")
        return p if p is not None and p["metadata"]["name"] != victim["metadata"]["name"] else None
    run_until(cm, replaced, "a new pod on node-1")
