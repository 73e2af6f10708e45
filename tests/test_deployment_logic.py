"""Deployment decisions without a server."""
from __future__ import annotations

import pytest

from control.controllers import controller_utils as cu
from control.controllers import deployment_logic as logic

NOW = 1_700_000_000.0
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}


def deploy(replicas: int = 3, surge: object = "25%", unavailable: object = "25%", image: str = "nginx:1",
           **spec: object) -> dict:
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": t,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}, **spec}}


def rs_of(d: dict, rev: int, replicas: int, available: int | None = None, created: float = NOW) -> dict:
    rs = logic.new_replicaset(d, rev, replicas)
    rs["metadata"]["creationTimestamp"] = cu.format_time(created)
    avail = replicas if available is None else available
    rs["status"] = {"replicas": replicas, "readyReplicas": avail, "availableReplicas": avail}
    return rs


@pytest.mark.parametrize("replicas,surge,unav,want", [
    (10, "25%", "25%", (3, 2)), (3, "25%", "25%", (1, 0)), (3, 1, 0, (1, 0)),
    (3, 0, 0, (0, 1)), (4, "50%", "50%", (2, 2)), (1, "25%", "25%", (1, 0))])
def test_resolve_fenceposts(replicas: int, surge: object, unav: object, want: tuple) -> None:
    assert logic.resolve_fenceposts(deploy(replicas, surge, unav)) == want


def test_new_replicaset_shape() -> None:
    d = deploy()
    rs = logic.new_replicaset(d, 1, 3)
    h = cu.compute_hash(d["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h
    assert rs["metadata"]["annotations"][logic.REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}   # not mutated
    new, olds = logic.find_new_and_old(d, [rs, rs_of(deploy(image="nginx:0"), 1, 0)])
    assert new is rs and len(olds) == 1


def test_rolling_update_steps_to_completion() -> None:
    """Simulate a 4-replica rollout with maxSurge=1, maxUnavailable=1 (pods become available at once)."""
    d = deploy(4, 1, 1, image="nginx:2")
    old = rs_of(deploy(image="nginx:1"), 1, 4, created=NOW - 100)
    new = rs_of(d, 2, 0)
    steps = []
    for _ in range(20):
        plan = logic.rolling_update_plan(d, new, [old])
        if not plan:
            break
        for name, n in plan.items():
            target = new if name == new["metadata"]["name"] else old
            target["spec"]["replicas"] = n
            target["status"] = {"replicas": n, "readyReplicas": n, "availableReplicas": n}
        total = logic.replicas(new) + logic.replicas(old)
        avail = logic.status_int(new, "availableReplicas") + logic.status_int(old, "availableReplicas")
        assert total <= 5 and avail >= 3
        steps.append((logic.replicas(old), logic.replicas(new)))
    assert steps[0] == (4, 1)          # surge first
    assert steps[-1] == (0, 4)


def test_rolling_update_waits_for_availability() -> None:
    d = deploy(4, 1, 0, image="nginx:2")
    old = rs_of(deploy(image="nginx:1"), 1, 4, created=NOW - 100)
    new = rs_of(d, 2, 1, available=0)
    assert logic.rolling_update_plan(d, new, [old]) == {}      # surge used, nothing available to spare
    new["status"]["availableReplicas"] = 1
    assert logic.rolling_update_plan(d, new, [old]) == {old["metadata"]["name"]: 3}


def test_unhealthy_old_pods_are_scaled_down_first() -> None:
    d = deploy(4, 0, 1, image="nginx:2")
    old1 = rs_of(deploy(image="nginx:0"), 1, 2, available=0, created=NOW - 200)
    old2 = rs_of(deploy(image="nginx:1"), 2, 2, available=2, created=NOW - 100)
    new = rs_of(d, 3, 0)
    assert logic.rolling_update_plan(d, new, [old1, old2]) == {old1["metadata"]["name"]: 1}   # maxScaledDown 1
    d = deploy(4, 0, 2, image="nginx:2")
    old1 = rs_of(deploy(image="nginx:0"), 1, 2, available=0, created=NOW - 200)
    old2 = rs_of(deploy(image="nginx:1"), 2, 2, available=2, created=NOW - 100)
    new = rs_of(d, 3, 0)
    plan = logic.rolling_update_plan(d, new, [old1, old2])
    assert plan == {old1["metadata"]["name"]: 0}


def test_scale_down_new_rs_when_deployment_shrinks() -> None:
    d = deploy(2)
    new = rs_of(d, 1, 5)
    assert logic.rolling_update_plan(d, new, []) == {new["metadata"]["name"]: 2}


def test_recreate_plan() -> None:
    d = deploy(3, strategy={"type": "Recreate"})
    old = rs_of(deploy(image="nginx:0"), 1, 3)
    assert logic.recreate_plan(d, None, [old], True) == ({old["metadata"]["name"]: 0}, False)
    old["spec"]["replicas"] = 0
    assert logic.recreate_plan(d, None, [old], True) == ({}, False)   # pods still running
    assert logic.recreate_plan(d, None, [old], False) == ({}, True)
    new = rs_of(d, 2, 0)
    assert logic.recreate_plan(d, new, [old], False) == ({new["metadata"]["name"]: 3}, False)


def test_status_and_conditions() -> None:
    d = deploy(3, image="nginx:2")
    old = rs_of(deploy(image="nginx:1"), 1, 2, created=NOW - 100)
    new = rs_of(d, 2, 1, available=0)
    s, recheck = logic.calculate_status(d, [old, new], new, NOW, "NewReplicaSetCreated")
    assert (s["replicas"], s["updatedReplicas"], s["availableReplicas"], s["unavailableReplicas"]) == (3, 1, 2, 1)
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"   # 2 < 3 - floor(25% of 3)
    assert conds["Progressing"]["reason"] == "NewReplicaSetCreated"
    assert conds["Progressing"]["message"] == f'Created new replica set "{new["metadata"]["name"]}"'
    assert recheck == NOW + 600 + 1
    d["status"] = s
    s2, _ = logic.calculate_status(d, [old, new], new, NOW + 601)
    p = {c["type"]: c for c in s2["conditions"]}["Progressing"]
    assert (p["status"], p["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert p["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'
    done = rs_of(d, 2, 3)
    d["status"] = s
    s3, recheck = logic.calculate_status(d, [done], done, NOW + 5)
    p = {c["type"]: c for c in s3["conditions"]}["Progressing"]
    assert p["reason"] == "NewReplicaSetAvailable" and recheck is None
    assert logic.is_complete(d, s3)


def test_paused_and_unavailable() -> None:
    d = deploy(3, paused=True)
    rs = rs_of(d, 1, 3, available=0)
    s, _ = logic.calculate_status(d, [rs], rs, NOW)
    conds = {c["type"]: c for c in s["conditions"]}
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("Unknown", "DeploymentPaused")
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"
    d = deploy(3)
    d["status"] = s
    s, _ = logic.calculate_status(d, [rs], rs, NOW)
    assert {c["type"]: c for c in s["conditions"]}["Progressing"]["reason"] == "DeploymentResumed"


def test_revision_history_cleanup() -> None:
    d = deploy(revisionHistoryLimit=2)
    olds = [rs_of(deploy(image=f"nginx:{i}"), i, 0) for i in range(1, 6)]
    for r in olds:
        r["status"]["replicas"] = 0
    olds[0]["spec"]["replicas"] = 1   # still scaling down: kept
    names = [r["metadata"]["annotations"][logic.REVISION] for r in logic.rss_to_cleanup(d, olds)]
    assert names == ["2", "3", "4"]


def test_scale_plan() -> None:
    d = deploy(5, image="nginx:2")
    old = rs_of(deploy(image="nginx:1"), 1, 3)
    assert logic.scale_plan(d, None, [old]) == {old["metadata"]["name"]: 5}
    old["spec"]["replicas"] = 0
    new = rs_of(d, 2, 1)
    assert logic.scale_plan(d, new, [old]) == {new["metadata"]["name"]: 5}


def test_proportional_scaling_mid_rollout() -> None:
    """Kubernetes' documented example: 10 replicas, maxSurge 3, mid-rollout 8 old + 5 new, scaled to 15."""
    d10 = deploy(10, 3, 2, image="nginx:2")
    old = rs_of(deploy(10, 3, 2, image="nginx:1"), 1, 8, created=NOW - 100)
    new = rs_of(d10, 2, 5, available=0)
    for r in (old, new):
        r["metadata"]["annotations"][logic.MAX_REPLICAS] = "13"
        r["metadata"]["annotations"][logic.DESIRED_REPLICAS] = "10"
    d15 = deploy(15, 3, 2, image="nginx:2")
    assert logic.is_scaling_event(d15, new, [old]) and not logic.is_scaling_event(d10, new, [old])
    plan = logic.scale_plan(d15, new, [old])
    assert sum(plan.values()) == 18
    assert plan == {old["metadata"]["name"]: 11, new["metadata"]["name"]: 7}
