"""The disruption controller's pure decisions: expected pods, healthy pods,
disruptionsAllowed, disruptedPods pruning and the DisruptionAllowed condition."""
from __future__ import annotations

from typing import Any

from control.controllers import controller_utils as cu
from control.controllers import disruption_logic as logic

NOW = 1_700_000_000.0


def pdb(gen: int = 1, status: dict | None = None, **spec: Any) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "p", "namespace": "default", "generation": gen, "uid": "pdb-uid"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}, "status": status or {}}


def pod(name: str, ready: bool = True, owner: dict | None = None, deleting: bool = False,
        app: str = "web", ns: str = "default") -> dict:
    md: dict[str, Any] = {"name": name, "namespace": ns, "labels": {"app": app}}
    if owner is not None:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner["kind"], "name": owner["metadata"]["name"],
                                  "uid": owner["metadata"]["uid"], "controller": True}]
    if deleting:
        md["deletionTimestamp"] = cu.format_time(NOW)
    return {"metadata": md, "status": {"phase": "Running",
                                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def workload(kind: str, name: str, replicas: int, owner: dict | None = None) -> dict:
    md: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"{kind}-{name}"}
    if owner is not None:
        md["ownerReferences"] = [{"kind": owner["kind"], "name": owner["metadata"]["name"],
                                  "uid": owner["metadata"]["uid"], "controller": True}]
    return {"kind": kind, "metadata": md, "spec": {"replicas": replicas}}


def getter(*objs: dict):  # type: ignore[no-untyped-def]
    table = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}
    return lambda kind, ns, name: table.get((kind, ns, name))


def cond(status: dict) -> tuple[str, str]:
    c = next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")
    return c["status"], c["reason"]


def test_int_min_available_counts_the_matching_pods() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True), pod("x", app="db"),
            pod("y", ns="other")]
    plan = logic.compute_pdb_status(pdb(minAvailable=1), pods, getter(), NOW)
    assert plan.changed and plan.error is None and not plan.unmanaged
    st = plan.status
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (4, 2, 1, 1)
    assert st["observedGeneration"] == 1 and cond(st) == ("True", "SufficientPods")
    # the same status again: nothing to write
    again = logic.compute_pdb_status(pdb(minAvailable=1, status=st), pods, getter(), NOW + 5)
    assert not again.changed
    # not enough healthy pods
    plan = logic.compute_pdb_status(pdb(minAvailable=3, status=st), pods, getter(), NOW)
    assert plan.status["disruptionsAllowed"] == 0 and cond(plan.status) == ("False", "InsufficientPods")
    # no pods at all: nothing allowed
    plan = logic.compute_pdb_status(pdb(minAvailable=0), [], getter(), NOW)
    assert (plan.status["expectedPods"], plan.status["disruptionsAllowed"]) == (0, 0)


def test_percent_min_available_uses_the_controllers_scale_rounded_up() -> None:
    rs = workload("ReplicaSet", "web-1", 5)
    pods = [pod(f"p{i}", owner=rs) for i in range(4)]   # 4 of 5 replicas exist, all ready
    plan = logic.compute_pdb_status(pdb(minAvailable="50%"), pods, getter(rs), NOW)
    st = plan.status
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (5, 3, 4, 1)
    assert logic.scaled_value("50%", 5) == 3 and logic.scaled_value("10%", 1) == 1
    assert logic.scaled_value(2, 100) == 2


def test_max_unavailable_with_a_deployment_owner() -> None:
    dep = workload("Deployment", "web", 4)
    old_rs, new_rs = workload("ReplicaSet", "web-a", 1, owner=dep), workload("ReplicaSet", "web-b", 3, owner=dep)
    pods = [pod("a1", owner=old_rs), pod("b1", owner=new_rs), pod("b2", owner=new_rs),
            pod("b3", owner=new_rs, ready=False)]
    plan = logic.compute_pdb_status(pdb(maxUnavailable=1), pods, getter(dep, old_rs, new_rs), NOW)
    st = plan.status
    # the Deployment counts once (4), not each ReplicaSet
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (4, 3, 3, 0)
    plan = logic.compute_pdb_status(pdb(maxUnavailable="50%"), pods, getter(dep, old_rs, new_rs), NOW)
    assert (plan.status["desiredHealthy"], plan.status["disruptionsAllowed"]) == (2, 1)
    sts = workload("StatefulSet", "db", 3)
    plan = logic.compute_pdb_status(pdb(maxUnavailable=1), [pod(f"db-{i}", owner=sts) for i in range(3)],
                                    getter(sts), NOW)
    assert (plan.status["expectedPods"], plan.status["disruptionsAllowed"]) == (3, 1)


def test_unmanaged_pods_and_a_missing_controller() -> None:
    rs = workload("ReplicaSet", "web-1", 2)
    plan = logic.compute_pdb_status(pdb(maxUnavailable=1), [pod("a", owner=rs), pod("lone")], getter(rs), NOW)
    assert plan.unmanaged == ["lone"] and plan.status["expectedPods"] == 2
    gone = logic.compute_pdb_status(pdb(maxUnavailable=1, status={"disruptionsAllowed": 3}),
                                    [pod("a", owner=rs)], getter(), NOW)
    assert gone.error == 'found no controllers for pod "a"' and gone.changed
    assert gone.status["disruptionsAllowed"] == 0 and cond(gone.status) == ("False", "SyncFailed")


def test_disrupted_pods_are_not_healthy_and_expire_after_two_minutes() -> None:
    recent, old = cu.format_time(NOW - 30), cu.format_time(NOW - 200)
    status = {"disruptedPods": {"a": recent, "b": old, "gone": recent, "c": recent}}
    pods = [pod("a"), pod("b"), pod("c", deleting=True), pod("d")]
    plan = logic.compute_pdb_status(pdb(minAvailable=1, status=status), pods, getter(), NOW)
    st = plan.status
    # a: recently disrupted (not healthy, kept); b: expired (healthy again, dropped);
    # c: being deleted (dropped, not healthy); gone: no such pod (dropped)
    assert st["disruptedPods"] == {"a": recent}
    assert (st["currentHealthy"], st["disruptionsAllowed"]) == (2, 1)
    assert plan.recheck_at == NOW - 30 + logic.DELETION_TIMEOUT
    later = logic.compute_pdb_status(pdb(minAvailable=1, status=st), pods, getter(), NOW + 100)
    assert "disruptedPods" not in later.status and later.recheck_at is None
    assert later.status["currentHealthy"] == 3


def test_generation_change_is_observed() -> None:
    st = logic.compute_pdb_status(pdb(minAvailable=1), [pod("a"), pod("b")], getter(), NOW).status
    plan = logic.compute_pdb_status(pdb(gen=2, status=st, minAvailable=1), [pod("a"), pod("b")], getter(), NOW)
    assert plan.changed and plan.status["observedGeneration"] == 2
    c = next(c for c in plan.status["conditions"] if c["type"] == "DisruptionAllowed")
    assert c["observedGeneration"] == 2 and c["lastTransitionTime"] == cu.format_time(NOW)
