"""The eviction manager's pure decisions for ephemeral storage."""
from __future__ import annotations

import pytest

from node.kubelet.eviction import (PressureState, format_binary, has_local_storage_limit, local_storage_violation,
                                   node_pressure_message, rank_for_disk_pressure, threshold_bytes)


def pod(name: str, *, req: str | None = None, lim: str | None = None, prio: int | None = None,
        cpu: str | None = None, volumes: list | None = None) -> dict:
    res: dict = {}
    if req:
        res.setdefault("requests", {})["ephemeral-storage"] = req
    if lim:
        res.setdefault("limits", {})["ephemeral-storage"] = lim
    if cpu:
        res.setdefault("requests", {})["cpu"] = cpu
    spec: dict = {"containers": [{"name": "app", "image": "x", "resources": res}],
                  "volumes": volumes or []}
    if prio is not None:
        spec["priority"] = prio
    return {"metadata": {"name": name, "uid": name}, "spec": spec}


def test_threshold_percent_and_quantity() -> None:
    assert threshold_bytes("10%", 1000) == 100
    assert threshold_bytes("1Mi", 10) == 2**20
    with pytest.raises(ValueError, match="between 0% and 100%"):
        threshold_bytes("120%", 10)


def test_format_binary() -> None:
    assert [format_binary(n) for n in (0, 1500, 1024, 10 * 2**20, 3 * 2**30)] == \
        ["0", "1500", "1Ki", "10Mi", "3Gi"]


def test_empty_dir_size_limit_violation() -> None:
    p = pod("a", volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}])
    assert local_storage_violation(p, {"cache": 2**20}, 2**20) is None
    assert local_storage_violation(p, {"cache": 2**20 + 1}, 2**20 + 1) == \
        'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '


def test_pod_limit_violation() -> None:
    p = pod("a", lim="2Mi")
    assert local_storage_violation(p, {}, 2 * 2**20) is None
    assert local_storage_violation(p, {}, 3 * 2**20) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. "


def test_a_pod_without_a_storage_limit_is_never_in_violation() -> None:
    """The housekeeping pass measures only the pods ``has_local_storage_limit`` names."""
    limited = [pod("a", lim="2Mi"), pod("b", volumes=[{"name": "c", "emptyDir": {"sizeLimit": "1Mi"}}])]
    unlimited = [pod("c"), pod("d", req="1Mi", cpu="1"), pod("e", volumes=[{"name": "c", "emptyDir": {}}]),
                 pod("f", volumes=[{"name": "c", "emptyDir": {"sizeLimit": ""}}, {"name": "h", "hostPath": {}}])]
    assert all(has_local_storage_limit(p) for p in limited)
    assert not any(has_local_storage_limit(p) for p in unlimited)
    for p in unlimited:
        assert local_storage_violation(p, {"c": 2**40}, 2**40) is None


def test_ranking_usage_above_request_then_priority() -> None:
    be_small = pod("be-small")
    be_big = pod("be-big")
    within = pod("within", req="10Mi", cpu="1")
    low_prio = pod("low-prio", prio=-10)
    critical = pod("critical", prio=2_000_000_000)
    ranked = rank_for_disk_pressure([(within, 2**20), (be_small, 100), (be_big, 5 * 2**20),
                                     (low_prio, 50), (critical, 10**9)])
    assert [p["metadata"]["name"] for p, _ in ranked] == ["low-prio", "be-big", "be-small", "within"]


def test_ranking_ties_prefer_best_effort() -> None:
    burstable = pod("burstable", cpu="100m")
    best_effort = pod("best-effort")
    ranked = rank_for_disk_pressure([(burstable, 0), (best_effort, 0)])
    assert [p["metadata"]["name"] for p, _ in ranked] == ["best-effort", "burstable"]


def test_node_pressure_message() -> None:
    assert node_pressure_message(10 * 2**20, 512 * 1024) == (
        "The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, available: 512Ki. ")


def test_pressure_transition_period() -> None:
    st = PressureState(transition_period=15)
    assert not st.observe(0, False)
    assert st.observe(1, True)
    assert st.observe(10, False)       # still within the transition period
    assert not st.observe(16.5, False)
