"""ReplicaSet decisions without a server."""
from __future__ import annotations

from control.controllers import controller_utils as cu
from control.controllers.replicaset_logic import pod_from_template, reconcile_replicaset

NOW = 1_700_000_000.0


def rs(replicas: int = 3, min_ready: int = 0, deleting: bool = False) -> dict:
    md: dict = {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 2}
    if deleting:
        md["deletionTimestamp"] = "2023-11-14T22:13:20Z"
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": md,
            "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def pod(name: str, owner: str | None = "rs-uid", labels: dict | None = None, phase: str = "Running",
        ready: bool = True, node: str | None = "n1", created: float = NOW - 100, ready_since: float = NOW - 50,
        deleting: bool = False) -> dict:
    md: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}",
                "labels": labels if labels is not None else {"app": "web", "tier": "fe"},
                "creationTimestamp": cu.format_time(created)}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": owner,
                                  "controller": True}]
    if deleting:
        md["deletionTimestamp"] = cu.format_time(NOW)
    spec = {"nodeName": node} if node else {}
    cond = [{"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": cu.format_time(ready_since)}]
    return {"metadata": md, "spec": spec, "status": {"phase": phase, "conditions": cond}}


def test_creates_missing_pods_and_counts_status() -> None:
    plan = reconcile_replicaset(rs(3), [pod("a"), pod("b", ready=False)], NOW)
    assert plan.create == 1 and not plan.delete
    assert plan.status == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                           "availableReplicas": 1, "observedGeneration": 2}


def test_ignores_terminal_and_deleting_pods() -> None:
    pods = [pod("a"), pod("b", phase="Succeeded"), pod("c", phase="Failed"), pod("d", deleting=True)]
    plan = reconcile_replicaset(rs(2), pods, NOW)
    assert plan.create == 1 and plan.status["replicas"] == 1


def test_deletes_surplus_in_kubernetes_order() -> None:
    pods = [pod("ready-old", created=NOW - 500), pod("ready-new", created=NOW - 10),
            pod("notready", ready=False), pod("pending", phase="Pending", ready=False),
            pod("unscheduled", phase="Pending", ready=False, node=None)]
    plan = reconcile_replicaset(rs(1), pods, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["unscheduled", "pending", "notready", "ready-new"]


def test_adopts_orphans_and_releases_mismatched() -> None:
    pods = [pod("orphan", owner=None), pod("other", owner="someone-else"),
            pod("mine-relabelled", labels={"app": "db"}), pod("foreign-labels", owner=None, labels={"app": "db"})]
    plan = reconcile_replicaset(rs(1), pods, NOW)
    assert [p["metadata"]["name"] for p in plan.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in plan.release] == ["mine-relabelled"]
    assert plan.create == 0 and plan.status["replicas"] == 1


def test_min_ready_seconds_and_requeue() -> None:
    plan = reconcile_replicaset(rs(2, min_ready=30), [pod("a", ready_since=NOW - 40),
                                                      pod("b", ready_since=NOW - 10)], NOW)
    assert plan.status["readyReplicas"] == 2 and plan.status["availableReplicas"] == 1
    assert plan.requeue_at == NOW + 20


def test_fully_labeled_and_deleting_rs() -> None:
    plan = reconcile_replicaset(rs(3, deleting=True), [pod("a", labels={"app": "web"})], NOW)
    assert plan.create == 0 and not plan.adopt
    assert plan.status["fullyLabeledReplicas"] == 0 and plan.status["replicas"] == 1


def test_pod_from_template() -> None:
    p = pod_from_template(rs())
    assert p["metadata"]["generateName"] == "web-"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                                 "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}]
    assert p["spec"]["containers"][0]["image"] == "nginx"


def test_slow_start_and_hash() -> None:
    assert list(cu.slow_start_batches(10)) == [1, 2, 4, 3]
    assert sum(cu.slow_start_batches(1000)) == 1000 and len(list(cu.slow_start_batches(1000))) == 10
    h = cu.compute_hash({"spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    assert h == cu.compute_hash({"spec": {"containers": [{"image": "nginx", "name": "c"}]}})
    assert h != cu.compute_hash({"spec": {"containers": [{"name": "c", "image": "nginx"}]}}, 1)
    assert set(h) <= set(cu.SAFE_ALPHANUMS) and 1 <= len(h) <= 10
    assert cu.fnv32a(b"hello") == 0x4F9F2CAB
