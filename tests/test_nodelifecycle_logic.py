"""Pure decisions of the node lifecycle and taint eviction controllers (no server)."""
from __future__ import annotations

from control.controllers import nodelifecycle_logic as L

T0 = 1_700_000_000.0   # a wall time on a whole second


def node(ready: str | None = "True", taints: list | None = None, unschedulable: bool = False,
         **conds: str) -> dict:
    conditions = []
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "reason": "KubeletReady",
                           "lastHeartbeatTime": "2023-11-14T22:13:20Z",
                           "lastTransitionTime": "2023-11-14T22:13:20Z"})
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            conditions.append({"type": t, "status": conds.get(t, "False"), "reason": "KubeletHasNo" + t,
                               "lastHeartbeatTime": "2023-11-14T22:13:20Z"})
    return {"kind": "Node", "metadata": {"name": "node-3", "creationTimestamp": "2023-11-14T22:00:00Z"},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": conditions}}


def lease(renew: str) -> dict:
    return {"kind": "Lease", "metadata": {"name": "node-3", "namespace": "kube-node-lease"},
            "spec": {"renewTime": renew}}


def pod(name: str, tolerations: list | None = None, deleting: bool = False) -> dict:
    md: dict = {"name": name, "namespace": "default"}
    if deleting:
        md["deletionTimestamp"] = "2023-11-14T22:13:20Z"
    return {"kind": "Pod", "metadata": md, "spec": {"nodeName": "node-3", "tolerations": tolerations or []}}


def tol(key: str, secs: int | None = None, effect: str = "NoExecute") -> dict:
    t = {"key": key, "operator": "Exists", "effect": effect}
    if secs is not None:
        t["tolerationSeconds"] = secs
    return t


# -- health ---------------------------------------------------------------------
def test_probe_timestamp_moves_only_when_the_lease_changes() -> None:
    n = node()
    h = L.observe(None, n, lease("2023-11-14T22:13:20.000000Z"), now=100.0)
    assert h.probe_timestamp == 100.0
    h = L.observe(h, n, lease("2023-11-14T22:13:20.000000Z"), now=130.0)
    assert h.probe_timestamp == 100.0
    assert L.node_health(h, 140.0, grace=40) == "Healthy"
    assert L.node_health(h, 140.5, grace=40) == "Stale"
    h = L.observe(h, n, lease("2023-11-14T22:13:30.000000Z"), now=141.0)
    assert h.probe_timestamp == 141.0 and L.node_health(h, 141.0, 40) == "Healthy"


def test_remote_clock_skew_is_harmless() -> None:
    # A lease renewed with a timestamp far in the past (a skewed node) still counts: only change matters.
    h = L.observe(None, node(), lease("1999-01-01T00:00:00.000000Z"), now=0.0)
    h = L.observe(h, node(), lease("1999-01-01T00:00:10.000000Z"), now=39.0)
    assert L.node_health(h, 60.0, 40) == "Healthy"


def test_without_a_lease_the_ready_heartbeat_counts() -> None:
    n = node()
    h = L.observe(None, n, None, now=0.0)
    n2 = node()
    n2["status"]["conditions"][0]["lastHeartbeatTime"] = "2023-11-14T22:13:30Z"
    h = L.observe(h, n2, None, now=30.0)
    assert h.probe_timestamp == 30.0


def test_stale_node_conditions_become_unknown() -> None:
    conds = L.unknown_conditions(node(), T0)
    assert conds is not None
    by = {c["type"]: c for c in conds}
    assert set(by) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    for c in by.values():
        assert c["status"] == "Unknown"
        assert c["reason"] == "NodeStatusUnknown"
        assert c["message"] == "Kubelet stopped posting node status."
        assert c["lastHeartbeatTime"] == "2023-11-14T22:13:20Z"   # kept
    assert by["Ready"]["lastTransitionTime"] == L.rfc3339(T0)
    n = node()
    n["status"]["conditions"] = conds
    assert L.unknown_conditions(n, T0 + 5) is None   # already Unknown: nothing to write


def test_missing_conditions_are_never_updated() -> None:
    conds = L.unknown_conditions(node(ready=None), T0)
    assert conds and {c["reason"] for c in conds} == {"NodeStatusNeverUpdated"}
    assert conds[0]["message"] == "Kubelet never posted node status."


# -- taints ---------------------------------------------------------------------
def keys(taints: list | None) -> set:
    return {(t["key"], t["effect"]) for t in taints or []}


def test_unknown_node_gets_unreachable_taints() -> None:
    taints = L.desired_taints(node(ready="Unknown"), T0)
    assert keys(taints) == {(L.TAINT_UNREACHABLE, "NoExecute"), (L.TAINT_UNREACHABLE, "NoSchedule")}
    assert all(t["timeAdded"] == L.rfc3339(T0) for t in taints or [])


def test_not_ready_node_gets_not_ready_taints_and_swaps_unreachable() -> None:
    current = L.desired_taints(node(ready="Unknown"), T0)
    taints = L.desired_taints(node(ready="False", taints=current), T0 + 10)
    assert keys(taints) == {(L.TAINT_NOT_READY, "NoExecute"), (L.TAINT_NOT_READY, "NoSchedule")}


def test_ready_node_loses_managed_taints_but_keeps_user_taints() -> None:
    user = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    current = [user, {"key": L.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2023-11-14T22:13:20Z"}]
    assert L.desired_taints(node(ready="True", taints=current), T0) == [user]
    assert L.desired_taints(node(ready="True", taints=[user]), T0) is None   # nothing to do


def test_kept_taints_keep_their_time_added() -> None:
    current = L.desired_taints(node(ready="Unknown"), T0)
    assert L.desired_taints(node(ready="Unknown", taints=current), T0 + 30) is None


def test_conditions_and_unschedulable_add_no_schedule_taints() -> None:
    taints = L.desired_taints(node(unschedulable=True, MemoryPressure="True"), T0)
    assert keys(taints) == {(L.TAINT_UNSCHEDULABLE, "NoSchedule"), (L.TAINT_MEMORY_PRESSURE, "NoSchedule")}


# -- eviction -------------------------------------------------------------------
UNREACHABLE = [{"key": L.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": L.rfc3339(T0)},
               {"key": L.TAINT_UNREACHABLE, "effect": "NoSchedule", "timeAdded": L.rfc3339(T0)}]


def decisions(pods: list, now: float, times: dict | None = None) -> dict:
    return {p["metadata"]["name"]: when for p, when in L.pods_to_evict(UNREACHABLE, pods, now, times)}


def test_untolerated_pods_are_evicted_at_once() -> None:
    d = decisions([pod("web-1"), pod("web-2", [tol(L.TAINT_NOT_READY, 300)])], T0 + 1)
    assert d == {"web-1": T0 + 1, "web-2": T0 + 1}


def test_toleration_seconds_count_from_time_added() -> None:
    d = decisions([pod("web-1", [tol(L.TAINT_UNREACHABLE, 300)])], T0 + 1)
    assert d == {"web-1": T0 + 300}


def test_absent_toleration_seconds_tolerates_forever_and_zero_evicts_at_once() -> None:
    d = decisions([pod("forever", [tol(L.TAINT_UNREACHABLE)]), pod("zero", [tol(L.TAINT_UNREACHABLE, 0)]),
                   pod("negative", [tol(L.TAINT_UNREACHABLE, -5)])], T0 + 2)
    assert d == {"zero": T0, "negative": T0}


def test_the_shortest_matching_toleration_wins() -> None:
    d = decisions([pod("web-1", [tol(L.TAINT_UNREACHABLE, 300), tol("", 20, effect="")])], T0)
    assert d == {"web-1": T0 + 20}


def test_equal_operator_matches_value() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoExecute"}
    assert L.tolerates({"key": "k", "operator": "Equal", "value": "v"}, taint)
    assert not L.tolerates({"key": "k", "value": "w"}, taint)
    assert not L.tolerates({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint)


def test_precise_taint_times_override_time_added_and_deleting_pods_are_skipped() -> None:
    times = {(L.TAINT_UNREACHABLE, "NoExecute"): T0 + 0.7}
    d = decisions([pod("web-1", [tol(L.TAINT_UNREACHABLE, 15)]), pod("gone", deleting=True)], T0 + 1, times)
    assert d == {"web-1": T0 + 15.7}


def test_no_no_execute_taint_no_eviction() -> None:
    only_no_schedule = [t for t in UNREACHABLE if t["effect"] == "NoSchedule"]
    assert L.pods_to_evict(only_no_schedule, [pod("web-1")], T0) == []


def test_pod_ready_condition_is_flipped_to_false() -> None:
    p = pod("web-1")
    p["status"] = {"conditions": [{"type": "PodScheduled", "status": "True"},
                                  {"type": "Ready", "status": "True", "lastTransitionTime": "x"}]}
    conds = L.pod_not_ready_conditions(p, T0)
    assert conds == [{"type": "PodScheduled", "status": "True"},
                     {"type": "Ready", "status": "False", "lastTransitionTime": L.rfc3339(T0)}]
    p["status"]["conditions"] = conds
    assert L.pod_not_ready_conditions(p, T0) is None
    assert L.pod_not_ready_conditions(pod("no-status"), T0) is None
