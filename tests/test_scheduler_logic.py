"""Pure tests of the scheduler's filters, scoring, cache and failure message (no server)."""
from __future__ import annotations

import random

import pytest

from control.scheduler.cache import UNKNOWN, Cache, NodeInfo
from control.scheduler.filters import (match_expression, match_node_selector_terms, run_filters,
                                       tolerates, untolerated_taint)
from control.scheduler.framework import Framework, fit_error_message, num_feasible_nodes_to_find, schedule_one
from control.scheduler.filters import Status
from control.scheduler.podinfo import non_zero_requests, pod_info, pod_requests

GI = 1024 ** 3


def node(name, cpu="4", memory="8Gi", pods=110, labels=None, taints=None, ready="True",
         unschedulable=False, eph=None):
    alloc = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    if eph:
        alloc["ephemeral-storage"] = eph
    n = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
         "spec": {}, "status": {"allocatable": alloc,
                                "conditions": [{"type": "Ready", "status": ready}] if ready else []}}
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def pod(name, cpu=None, memory=None, ns="default", node_name=None, owner=None, **spec):
    req = {}
    if cpu:
        req["cpu"] = cpu
    if memory:
        req["memory"] = memory
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
         "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": req}}], **spec},
         "status": {"phase": "Pending"}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    if owner:
        p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "name": owner, "uid": owner, "controller": True}]
    return p


def cache_of(*nodes, pods=()):
    c = Cache()
    for n in nodes:
        c.add_node(n)
    for p in pods:
        c.add_pod(p)
    return c


def reasons(p, n, pods=()):
    c = cache_of(n, pods=pods)
    st = run_filters(pod_info(p), c.nodes[n["metadata"]["name"]])
    return None if st is None else st.reasons


# -- requests ---------------------------------------------------------------
def test_pod_requests_sum_containers_max_init_and_limits_fallback():
    p = {"spec": {"containers": [
        {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
        {"resources": {"limits": {"cpu": "200m", "memory": "1Gi"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "10Mi"}}}]}}
    assert pod_requests(p) == (1000, 64 * 1024 ** 2 + GI, 0)


def test_pod_requests_sidecar_init_containers_add_and_overhead():
    p = {"spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}}}],
                  "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                                     {"resources": {"requests": {"cpu": "120m"}}}],
                  "overhead": {"cpu": "10m"}}}
    # sidecar adds to the sum (150m); the later init runs beside it (170m) and wins; plus overhead
    assert pod_requests(p)[0] == 180


def test_non_zero_requests_defaults():
    assert non_zero_requests(pod("a")) == (100, 200 * 1024 ** 2, 0)
    assert non_zero_requests(pod("a", cpu="1")) == (1000, 200 * 1024 ** 2, 0)


# -- filters ----------------------------------------------------------------
def test_fit_insufficient_cpu_memory_and_too_many_pods():
    assert reasons(pod("p", cpu="5"), node("n")) == ("Insufficient cpu",)
    assert reasons(pod("p", cpu="5", memory="9Gi"), node("n")) == ("Insufficient cpu", "Insufficient memory")
    assert reasons(pod("p", cpu="3"), node("n"), pods=[pod("q", cpu="2", node_name="n")]) == ("Insufficient cpu",)
    assert reasons(pod("p"), node("n", pods=1), pods=[pod("q", node_name="n")]) == ("Too many pods",)
    assert reasons(pod("p", cpu="1"), node("n")) is None


def test_fit_ephemeral_storage():
    p = pod("p")
    p["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] = "2Gi"
    assert reasons(p, node("n", eph="1Gi")) == ("Insufficient ephemeral-storage",)
    assert reasons(p, node("n", eph="4Gi")) is None


def test_fit_unresolvable_only_when_larger_than_allocatable():
    c = cache_of(node("n"), pods=[pod("q", cpu="3", node_name="n")])
    assert run_filters(pod_info(pod("p", cpu="2")), c.nodes["n"]) == Status(("Insufficient cpu",), False)
    assert run_filters(pod_info(pod("p", cpu="5")), c.nodes["n"]) == Status(("Insufficient cpu",), True)


def test_terminal_pods_free_their_requests():
    done = pod("q", cpu="3", node_name="n")
    c = cache_of(node("n"), pods=[done])
    done = {**done, "status": {"phase": "Succeeded"}}
    c.update_pod(done)
    assert c.nodes["n"].requested == (0, 0, 0)


def test_unschedulable_node():
    assert reasons(pod("p"), node("n", unschedulable=True)) == ("node(s) were unschedulable",)
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert reasons(pod("p", tolerations=tol), node("n", unschedulable=True)) is None


def test_not_ready_and_unknown_nodes_are_tainted():
    assert reasons(pod("p"), node("n", ready="False")) == \
        ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)
    assert reasons(pod("p"), node("n", ready="Unknown")) == \
        ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)
    assert reasons(pod("p"), node("n", ready=None)) == \
        ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)
    # the default not-ready NoExecute toleration (300 s) does not tolerate NoSchedule
    tol = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300}]
    assert reasons(pod("p", tolerations=tol), node("n", ready="False")) is not None


def test_taints_noschedule_noexecute_but_not_prefer():
    t = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    assert reasons(pod("p"), node("n", taints=t)) == ("node(s) had untolerated taint {dedicated: gpu}",)
    t = [{"key": "k", "effect": "NoExecute"}]
    assert reasons(pod("p"), node("n", taints=t)) == ("node(s) had untolerated taint {k: }",)
    t = [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]
    assert reasons(pod("p"), node("n", taints=t)) is None
    tol = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    t = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    assert reasons(pod("p", tolerations=tol), node("n", taints=t)) is None


@pytest.mark.parametrize("tol,taint,ok", [
    ({"operator": "Exists"}, {"key": "a", "value": "b", "effect": "NoSchedule"}, True),   # empty key + Exists: all
    ({"key": "a", "operator": "Exists"}, {"key": "a", "value": "b", "effect": "NoExecute"}, True),
    ({"key": "a", "operator": "Exists"}, {"key": "x", "effect": "NoSchedule"}, False),
    ({"key": "a", "value": "b"}, {"key": "a", "value": "b", "effect": "NoSchedule"}, True),  # empty op = Equal
    ({"key": "a", "operator": "Equal", "value": "b"}, {"key": "a", "value": "c", "effect": "NoSchedule"}, False),
    ({"key": "a", "operator": "Equal", "value": "b", "effect": "NoExecute"},
     {"key": "a", "value": "b", "effect": "NoSchedule"}, False),
    ({"key": "a", "operator": "Equal", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, True),
    ({"key": "a", "operator": "Bogus"}, {"key": "a", "effect": "NoSchedule"}, False),
])
def test_toleration_matching(tol, taint, ok):
    assert tolerates(tol, taint) is ok


def test_untolerated_taint_is_first_unmatched():
    taints = [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoExecute"}]
    assert untolerated_taint([{"key": "a", "operator": "Exists"}], taints) == taints[1]
    assert untolerated_taint([{"operator": "Exists"}], taints) is None


@pytest.mark.parametrize("expr,labels,ok", [
    ({"key": "z", "operator": "In", "values": ["a", "b"]}, {"z": "b"}, True),
    ({"key": "z", "operator": "In", "values": ["a"]}, {}, False),
    ({"key": "z", "operator": "NotIn", "values": ["a"]}, {"z": "b"}, True),
    ({"key": "z", "operator": "NotIn", "values": ["a"]}, {}, True),
    ({"key": "z", "operator": "NotIn", "values": ["a"]}, {"z": "a"}, False),
    ({"key": "z", "operator": "Exists"}, {"z": ""}, True),
    ({"key": "z", "operator": "Exists"}, {}, False),
    ({"key": "z", "operator": "DoesNotExist"}, {}, True),
    ({"key": "z", "operator": "DoesNotExist"}, {"z": "1"}, False),
    ({"key": "n", "operator": "Gt", "values": ["3"]}, {"n": "4"}, True),
    ({"key": "n", "operator": "Gt", "values": ["3"]}, {"n": "3"}, False),
    ({"key": "n", "operator": "Gt", "values": ["3"]}, {"n": "x"}, False),
    ({"key": "n", "operator": "Gt", "values": ["3"]}, {}, False),
    ({"key": "n", "operator": "Lt", "values": ["3"]}, {"n": "-1"}, True),
    ({"key": "n", "operator": "Lt", "values": ["3"]}, {"n": "3"}, False),
])
def test_affinity_operators(expr, labels, ok):
    assert match_expression(expr, labels) is ok


def test_node_selector_terms_are_ored_and_expressions_anded():
    terms = [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]},
                                   {"key": "b", "operator": "Exists"}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]
    assert match_node_selector_terms(terms, {"a": "1", "b": ""}, "n1")
    assert not match_node_selector_terms(terms, {"a": "1"}, "n1")
    assert match_node_selector_terms(terms, {}, "n9")
    assert not match_node_selector_terms([{}], {"a": "1"}, "n1")   # empty term selects nothing
    assert not match_node_selector_terms([], {"a": "1"}, "n1")


def test_node_selector_and_required_affinity_filter():
    msg = ("node(s) didn't match Pod's node affinity/selector",)
    assert reasons(pod("p", nodeSelector={"disk": "ssd"}), node("n", labels={"disk": "hdd"})) == msg
    assert reasons(pod("p", nodeSelector={"disk": "ssd"}), node("n", labels={"disk": "ssd"})) is None
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}
    assert reasons(pod("p", affinity=aff), node("n", labels={"zone": "a"})) == msg
    assert reasons(pod("p", affinity=aff), node("n", labels={"zone": "b"})) is None


def test_filter_order_stops_at_first_failing_plugin():
    # unschedulable and too small: only the first plugin's reason counts, as in Kubernetes
    assert reasons(pod("p", cpu="99"), node("n", unschedulable=True)) == ("node(s) were unschedulable",)


# -- scoring ----------------------------------------------------------------
def test_least_allocated_prefers_emptier_node():
    c = cache_of(node("busy"), node("idle"), pods=[pod("q", cpu="3", memory="6Gi", node_name="busy")])
    for seed in range(10):
        assert schedule_one(pod("p", cpu="500m"), c, random.Random(seed)).node == "idle"


def test_assumed_pods_count_and_forget_undoes():
    c = cache_of(node("a"), node("b"))
    c.assume_pod(pod("q", cpu="3", memory="6Gi"), "a")
    assert c.nodes["a"].requested[0] == 3000
    assert schedule_one(pod("p", cpu="500m"), c).node == "b"
    c.forget_pod(("default", "q"))
    assert c.nodes["a"].requested == (0, 0, 0)
    # confirming an assumed pod does not count it twice
    c.assume_pod(pod("q", cpu="1"), "a")
    c.add_pod(pod("q", cpu="1", node_name="a"))
    assert c.nodes["a"].requested[0] == 1000 and ("default", "q") not in c.assumed


def test_spreading_spreads_replicas_across_zones():
    nodes = [node(f"n{z}{i}", cpu="64", memory="256Gi", labels={"topology.kubernetes.io/zone": z})
             for z in "abc" for i in range(2)]
    c = cache_of(*nodes)
    fw = Framework(random.Random(1))
    placed = []
    for i in range(6):
        p = pod(f"web-{i}", cpu="100m", owner="rs1")
        node_name = fw.schedule_one(p, c).node
        c.assume_pod(p, node_name)
        placed.append(node_name)
    zones = sorted(n[1] for n in placed)
    assert zones == ["a", "a", "b", "b", "c", "c"]
    assert len(set(placed)) == 6


def test_spreading_beats_a_slightly_emptier_node():
    c = cache_of(node("a", cpu="64", memory="256Gi"), node("b", cpu="64", memory="256Gi"),
                 pods=[pod("x", cpu="1", node_name="b"), pod("r0", cpu="100m", node_name="a", owner="rs")])
    assert schedule_one(pod("r1", cpu="100m", owner="rs"), c, random.Random(0)).node == "b"


def test_ties_are_broken_at_random_but_seedably():
    c = cache_of(*[node(f"n{i}") for i in range(5)])
    picks = {schedule_one(pod("p"), c, random.Random(s)).node for s in range(40)}
    assert len(picks) > 1
    assert schedule_one(pod("p"), c, random.Random(7)).node == schedule_one(pod("p"), c, random.Random(7)).node


# -- sampling ---------------------------------------------------------------
def test_num_feasible_nodes_to_find():
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(100) == 100
    assert num_feasible_nodes_to_find(1000) == 1000 * 42 // 100
    assert num_feasible_nodes_to_find(5000) == 5000 * 10 // 100
    assert num_feasible_nodes_to_find(10000) == 500           # floor at 5%
    assert num_feasible_nodes_to_find(300, 10) == 100         # at least 100 nodes
    assert num_feasible_nodes_to_find(5000, 100) == 5000      # sampling disabled


def test_sampling_stops_early_and_rotates_start():
    c = cache_of(*[node(f"n{i:04}") for i in range(1000)])
    fw = Framework(random.Random(0))
    r = fw.schedule_one(pod("p"), c)
    assert r.evaluated == 420 and r.feasible == 420
    assert fw.next_start_node_index == 420
    fw2 = Framework(random.Random(0), percentage_of_nodes_to_score=100)
    assert fw2.schedule_one(pod("p"), c).evaluated == 1000


# -- the failure message ----------------------------------------------------
def test_fit_error_message_all_insufficient_cpu():
    c = cache_of(*[node(f"n{i}", cpu="1") for i in range(10)],
                 pods=[pod(f"q{i}", cpu="900m", node_name=f"n{i}") for i in range(10)])
    r = schedule_one(pod("p", cpu="500m"), c)
    assert r.node is None
    assert r.message == ("0/10 nodes are available: 10 Insufficient cpu. preemption: 0/10 nodes are "
                         "available: 10 No preemption victims found for incoming pod.")


def test_fit_error_message_mixed_reasons_sorted():
    c = cache_of(node("a", ready="Unknown"), node("b", memory="1Gi"), node("c", memory="1Gi"))
    r = schedule_one(pod("p", memory="2Gi"), c)
    assert r.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "2 Insufficient memory. preemption: 0/3 nodes are available: 3 Preemption is not helpful "
        "for scheduling.")   # 2Gi > 1Gi allocatable: unresolvable too
    c = cache_of(node("a", ready="Unknown"), node("b", memory="4Gi"), node("c", memory="4Gi"),
                 pods=[pod("q1", memory="3Gi", node_name="b"), pod("q2", memory="3Gi", node_name="c")])
    assert schedule_one(pod("p", memory="2Gi"), c).message.endswith(
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")


def test_fit_error_message_counts_each_reason_of_a_node():
    st = {"a": Status(("Insufficient cpu", "Insufficient memory")), "b": Status(("Insufficient cpu",))}
    assert fit_error_message(2, st) == (
        "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod.")
    assert fit_error_message(2, st, preemption_never=True).endswith(
        "preemption: not eligible due to preemptionPolicy=Never.")


def test_no_nodes():
    assert schedule_one(pod("p"), Cache()).message == "no nodes available to schedule pods"


# -- cache bookkeeping --------------------------------------------------------
def test_pod_on_unknown_node_is_counted_when_the_node_arrives():
    c = Cache()
    c.add_pod(pod("q", cpu="1", node_name="late"))
    assert c.node_infos() == []
    c.add_node(node("late"))
    assert [ni.name for ni in c.node_infos()] == ["late"] and c.nodes["late"].requested[0] == 1000
    c.remove_node("late")
    assert c.node_infos() == [] and c.nodes["late"].requested[0] == 1000   # still counted
    assert c.remove_pod(pod("q", node_name="late")) and "late" not in c.nodes


def test_node_update_reports_only_scheduling_relevant_changes():
    c = cache_of(node("n"))
    beat = node("n")
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:00Z"
    assert c.update_node(beat) is False
    assert c.update_node(node("n", taints=[{"key": "k", "effect": "NoSchedule"}])) is True
    assert c.update_node(node("n", cpu="8")) is True
    assert c.update_node(node("n", cpu="8", ready="False")) is True


def test_zone_counts_follow_pods_and_zone_relabels():
    c = cache_of(node("n", labels={"topology.kubernetes.io/zone": "a"}))
    c.add_pod(pod("r0", node_name="n", owner="rs"))
    assert c.owner_count_in_zone("a", "rs") == 1
    c.update_node(node("n", labels={"topology.kubernetes.io/zone": "b"}))
    assert c.owner_count_in_zone("a", "rs") == 0 and c.owner_count_in_zone("b", "rs") == 1
    c.remove_pod(pod("r0", node_name="n", owner="rs"))
    assert c.owner_count_in_zone("b", "rs") == 0 and c.nodes["n"].owner_counts == {}


def test_unschedulable_condition_is_patched_only_when_it_changes():
    from control.scheduler.scheduler import unschedulable_conditions
    p = pod("p")
    conds = unschedulable_conditions(p, "0/1 nodes are available: x.", 0.0)
    assert conds == [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/1 nodes are available: x.", "lastProbeTime": None,
                      "lastTransitionTime": "1970-01-01T00:00:00Z"}]
    p["status"]["conditions"] = conds
    assert unschedulable_conditions(p, "0/1 nodes are available: x.", 5.0) is None
    changed = unschedulable_conditions(p, "0/2 nodes are available: y.", 5.0)
    assert changed[0]["message"] == "0/2 nodes are available: y."
    assert changed[0]["lastTransitionTime"] == "1970-01-01T00:00:00Z"   # status did not flip


def test_specialised_pod_filter_agrees_with_the_plugin_chain():
    from control.scheduler.filters import pod_filter
    rng = random.Random(3)
    taint_pool = [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoExecute"},
                  {"key": "c", "effect": "PreferNoSchedule"}]
    tol_pool = [{"key": "a", "operator": "Exists"}, {"key": "b", "value": "1"},
                {"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]
    nodes = []
    for i in range(40):
        nodes.append(node(f"n{i}", cpu=rng.choice(["1", "2", "4"]), memory=rng.choice(["1Gi", "4Gi"]),
                          pods=rng.choice([1, 2, 110]), labels={"disk": rng.choice(["ssd", "hdd"])},
                          taints=rng.sample(taint_pool, rng.randrange(3)),
                          ready=rng.choice(["True", "True", "False"]), unschedulable=rng.random() < 0.2))
    c = cache_of(*nodes, pods=[pod(f"q{i}", cpu="500m", memory="512Mi", node_name=f"n{i % 40}")
                               for i in range(60)])
    for j in range(200):
        spec = {"tolerations": rng.sample(tol_pool, rng.randrange(4))}
        if rng.random() < 0.3:
            spec["nodeSelector"] = {"disk": "ssd"}
        p = pod(f"p{j}", cpu=rng.choice([None, "100m", "1", "3"]), memory=rng.choice([None, "1Gi", "3Gi"]),
                **spec)
        pi = pod_info(p)
        check = pod_filter(pi)
        for ni in c.node_infos():
            assert check(ni) == run_filters(pi, ni)


def test_derived_node_fields_follow_every_change_and_scores_match_their_definition():
    """``NodeInfo.free`` / ``fit`` / ``plain`` after adds, removes and node updates, and
    least_allocated against its definition on allocatable and the non-zero requests."""
    from control.scheduler.scoring import MAX_NODE_SCORE, least_allocated
    rng = random.Random(5)
    nodes = [node(f"n{i}", cpu=rng.choice(["1", "2", "4"]), memory=rng.choice(["1Gi", "4Gi"]),
                  pods=rng.choice([1, 3, 110])) for i in range(12)]
    pods = [pod(f"q{i}", cpu=rng.choice([None, "300m", "1"]), memory=rng.choice([None, "256Mi", "2Gi"]),
                node_name=f"n{i % 12}") for i in range(40)]
    c = cache_of(*nodes, pods=pods)
    for p in rng.sample(pods, 15):
        c.remove_pod(p)
    c.add_node(node("n0", cpu="8", memory="8Gi", pods=2, unschedulable=True))
    c.add_node(node("n1", taints=[{"key": "a", "effect": "NoSchedule"}]))
    for ni in c.node_infos():
        a, r = ni.allocatable, ni.requested
        assert ni.free == (a[0] - r[0], a[1] - r[1], a[2] - r[2], ni.allowed_pods - len(ni.pods))
        assert ni.plain == (not ni.unschedulable and not ni.taints)
    for p in (pod("x"), pod("y", cpu="500m", memory="1Gi"), pod("z", cpu="3", memory="3Gi")):
        pi = pod_info(p)
        want = []
        for ni in c.node_infos():
            (ac, am), nz = ni.allocatable[:2], ni.non_zero_requested
            rc, rm = nz[0] + pi.non_zero[0], nz[1] + pi.non_zero[1]
            sc = (ac - rc) * MAX_NODE_SCORE // ac if ac and rc <= ac else 0
            sm = (am - rm) * MAX_NODE_SCORE // am if am and rm <= am else 0
            want.append((sc + sm) // 2)
        assert least_allocated(pi, c.node_infos()) == want


def test_find_feasible_agrees_with_the_plugin_chain():
    """find_feasible's rotation over the sampled nodes gives run_filters' answers, extra filter
    included, and least_allocated's scores (pods of a shape repeat: the fits memo is used)."""
    from control.scheduler.scoring import least_allocated
    rng = random.Random(5)
    taint_pool = [{"key": "a", "effect": "NoSchedule"}, {"key": "c", "effect": "PreferNoSchedule"}]
    nodes = [node(f"n{i}", cpu=rng.choice(["1", "2", "4"]), memory=rng.choice(["1Gi", "4Gi"]),
                  pods=rng.choice([1, 3, 110]), labels={"disk": rng.choice(["ssd", "hdd"])},
                  taints=rng.sample(taint_pool, rng.randrange(2)), ready=rng.choice(["True", "True", "False"]),
                  unschedulable=rng.random() < 0.1) for i in range(150)]
    c = cache_of(*nodes, pods=[pod(f"q{i}", cpu="300m", memory="256Mi", node_name=f"n{i % 150}")
                               for i in range(200)])
    fw = Framework(random.Random(1), percentage_of_nodes_to_score=None)
    odd = lambda ni: Status(("odd",)) if ni.name.endswith("7") else None   # noqa: E731
    for j in range(300):
        spec = {"tolerations": [{"key": "a", "operator": "Exists"}]} if rng.random() < 0.5 else {}
        if rng.random() < 0.3:
            spec["nodeSelector"] = {"disk": "ssd"}
        pi = pod_info(pod(f"p{j}", cpu=rng.choice([None, "100m", "1", "3"]),
                          memory=rng.choice([None, "512Mi", "3Gi"]), **spec))
        extra = odd if j % 4 == 0 else None
        all_nodes = c.node_infos()
        start = fw.next_start_node_index
        fit: list[int] = []
        feasible, statuses, processed = fw.find_feasible(pi, c, extra, fit)
        assert fit == least_allocated(pi, feasible)   # remembered scores are never stale
        want_feasible, want_statuses = [], {}
        for k in range(processed):
            ni = all_nodes[(start + k) % len(all_nodes)]
            st = run_filters(pi, ni) or (extra(ni) if extra else None)
            if st is None:
                want_feasible.append(ni)
            else:
                want_statuses[ni.name] = st
        assert [n.name for n in feasible] == [n.name for n in want_feasible]
        assert statuses == want_statuses
        assert processed == len(all_nodes) or len(feasible) == num_feasible_nodes_to_find(len(all_nodes))
        if feasible and j % 3 == 0:
            c.assume_pod(pi.pod, feasible[0].name, pi)
        if j % 37 == 5:   # nodes join and change: slots move, and a changed node is filtered again
            c.add_node(node(f"late{j}", cpu="2", memory="4Gi", pods=110))
        elif j % 37 == 20:
            c.add_node(node(f"n{j % 150}", cpu="1", memory="1Gi", pods=3,
                            taints=[{"key": "a", "effect": "NoSchedule"}] if j % 2 else []))


def test_fits_memo_is_dropped_at_every_node_change():
    """A node a pod shape fitted is offered again only while nothing changed: a taint, a
    full node or a node update each drop what was remembered."""
    from control.scheduler.framework import shape_key
    from control.scheduler.scoring import ScoreWeights
    c = cache_of(node("n1", cpu="1", memory="1Gi", pods=2))
    fw = Framework(random.Random(1))
    p1 = pod("p1", cpu="400m", memory="100Mi")
    assert fw.schedule_one(p1, c).node == "n1"
    key = shape_key(pod_info(p1), ScoreWeights())
    slot = c.nodes["n1"].slot
    assert c.shape_row(key)[slot] != UNKNOWN
    c.assume_pod(p1, "n1")
    assert c.shape_row(key)[slot] == UNKNOWN
    assert fw.schedule_one(pod("p2", cpu="400m", memory="100Mi"), c).node == "n1"
    c.add_node(node("n1", cpu="1", memory="1Gi", pods=2, taints=[{"key": "a", "effect": "NoSchedule"}]))
    res = fw.schedule_one(pod("p3", cpu="400m", memory="100Mi"), c)
    assert res.node is None and "untolerated taint {a: }" in res.message
    c.add_node(node("n1", cpu="1", memory="1Gi", pods=2))
    c.assume_pod(pod("p4", cpu="400m", memory="100Mi"), "n1")   # two pods: no slot left
    assert fw.schedule_one(pod("p5", cpu="400m", memory="100Mi"), c).node is None
    assert shape_key(pod_info(pod("s", nodeSelector={"disk": "ssd"})), ScoreWeights()) is None


def test_select_host_breaks_ties_uniformly_with_the_same_draws_as_choice():
    fw, ref = Framework(random.Random(7)), random.Random(7)
    nodes = [NodeInfo(f"n{i}") for i in range(5)]
    scores = [5, 7, 7, 3, 7]
    seen = {}
    for _ in range(3000):
        got = fw.select_host(nodes, scores)
        assert got == nodes[ref.choice([1, 2, 4])].name
        seen[got] = seen.get(got, 0) + 1
    assert set(seen) == {"n1", "n2", "n4"} and min(seen.values()) > 800
    assert fw.select_host(nodes, [1, 9, 2, 3, 4]) == "n1"


def test_score_rows_are_bounded_and_stay_right_when_shapes_outnumber_them():
    from control.scheduler.cache import MAX_SHAPES
    from control.scheduler.scoring import least_allocated
    c = cache_of(*[node(f"n{i}", cpu="64", memory="256Gi", pods=500) for i in range(120)])
    fw = Framework(random.Random(3), percentage_of_nodes_to_score=None)
    for j in range(3 * MAX_SHAPES):
        pi = pod_info(pod(f"p{j}", cpu=f"{10 + j % (MAX_SHAPES + 5)}m", memory="64Mi"))
        fit: list[int] = []
        feasible, _, _ = fw.find_feasible(pi, c, None, fit)
        assert fit == least_allocated(pi, feasible)
        assert len(c.score_rows) <= MAX_SHAPES
        c.assume_pod(pi.pod, feasible[j % len(feasible)].name, pi)
