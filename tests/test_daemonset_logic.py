"""DaemonSet decisions, without a server."""
from __future__ import annotations

from control.controllers import daemonset_logic as logic


def ds(**spec_extra: object) -> dict:
    tpl_spec = {"containers": [{"name": "agent", "image": "busybox"}]}
    tpl_spec.update(spec_extra.pop("pod", {}))  # type: ignore[arg-type]
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": tpl_spec}, **spec_extra}}


def node(name: str, labels: dict | None = None, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def pod(name: str, node_name: str, d: dict, phase: str = "Running", ready: bool = True,
        created: str = "2024-01-01T00:00:00Z", current: bool = True, deleting: bool = False) -> dict:
    labels = {"app": "agent", logic.REVISION_LABEL: logic.template_hash(d) if current else "old"}
    md: dict = {"name": name, "namespace": "kube-system", "uid": f"uid-{name}", "labels": labels,
                "creationTimestamp": created,
                "ownerReferences": [{"kind": "DaemonSet", "name": "agent", "uid": "ds-uid", "controller": True}]}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:01:00Z"
    return {"metadata": md, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_default_tolerations_are_added() -> None:
    tols = logic.daemon_pod_template(ds())["spec"]["tolerations"]
    got = {(t["key"], t["effect"]) for t in tols}
    assert got == {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                   ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                   ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                   ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                   ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert all(t["operator"] == "Exists" and "tolerationSeconds" not in t for t in tols)
    host = logic.daemon_pod_template(ds(pod={"hostNetwork": True}))["spec"]["tolerations"]
    assert any(t["key"] == "node.kubernetes.io/network-unavailable" for t in host)


def test_node_should_run_selector_affinity_and_taints() -> None:
    d = ds(pod={"nodeSelector": {"disk": "ssd"}})
    assert logic.node_should_run(d, node("a", {"disk": "ssd"})) == (True, True)
    assert logic.node_should_run(d, node("b", {"disk": "hdd"})) == (False, False)
    aff = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}
    d = ds(pod=aff)
    assert logic.node_should_run(d, node("a", {"zone": "z1"}))[0]
    assert not logic.node_should_run(d, node("a", {"zone": "z2"}))[0]
    d = ds()
    # taints the controller tolerates by default
    for key, eff in (("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unschedulable",
                                                                      "NoSchedule")):
        assert logic.node_should_run(d, node("a", taints=[{"key": key, "effect": eff}])) == (True, True)
    # a foreign NoSchedule taint: don't start, but keep a running one
    assert logic.node_should_run(d, node("a", taints=[{"key": "dedicated", "effect": "NoSchedule"}])) == \
        (False, True)
    # a foreign NoExecute taint: don't start, don't keep
    assert logic.node_should_run(d, node("a", taints=[{"key": "dedicated", "effect": "NoExecute"}])) == \
        (False, False)
    tolerant = ds(pod={"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    assert logic.node_should_run(tolerant, node("a", taints=[{"key": "dedicated", "effect": "NoExecute"}]))[0]


def test_new_daemon_pod_shape() -> None:
    p = logic.new_daemon_pod(ds(), "node-7")
    md = p["metadata"]
    assert md["generateName"] == "agent-" and md["namespace"] == "kube-system"
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                      "uid": "ds-uid", "controller": True, "blockOwnerDeletion": True}]
    assert md["labels"]["app"] == "agent" and md["labels"][logic.GENERATION_LABEL] == "2"
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}]
    assert p["spec"]["nodeName"] == "node-7"


def test_plan_creates_missing_and_reports_status() -> None:
    d = ds()
    nodes = [node("a"), node("b"), node("c", taints=[{"key": "x", "effect": "NoSchedule"}])]
    p = logic.plan(d, nodes, [pod("agent-1", "a", d)])
    assert p.create_on == ["b"] and p.delete == []
    assert p.status == {"desiredNumberScheduled": 2, "currentNumberScheduled": 1, "numberMisscheduled": 0,
                        "numberReady": 1, "numberAvailable": 1, "numberUnavailable": 1,
                        "updatedNumberScheduled": 1, "observedGeneration": 2}


def test_plan_deletes_duplicates_failed_misplaced_and_orphaned() -> None:
    d = ds(pod={"nodeSelector": {"role": "worker"}})
    nodes = [node("a", {"role": "worker"}), node("b", {"role": "db"})]
    pods = [pod("old", "a", d, created="2024-01-01T00:00:00Z"), pod("dup", "a", d, created="2024-01-02T00:00:00Z"),
            pod("wrong", "b", d), pod("gone", "deleted-node", d), pod("dying", "a", d, deleting=True),
            pod("other", "a", {**d, "metadata": {**d["metadata"]}})]
    pods[-1]["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "uid": "someone-else", "controller": True}]
    p = logic.plan(d, nodes, pods)
    assert sorted(x["metadata"]["name"] for x in p.delete) == ["dup", "gone", "wrong"]
    assert p.create_on == []
    assert p.status["numberMisscheduled"] == 1 and p.status["currentNumberScheduled"] == 1
    failed = logic.plan(d, nodes[:1], [pod("f", "a", d, phase="Failed")])
    assert failed.create_on == ["a"] and [x["metadata"]["name"] for x in failed.delete] == ["f"]


def test_rolling_update_respects_max_unavailable_and_on_delete() -> None:
    d = ds()
    nodes = [node(n) for n in "abc"]
    pods = [pod(f"p-{n}", n, d, current=False) for n in "abc"]
    p = logic.plan(d, nodes, pods)
    assert len(p.delete) == 1 and p.status["updatedNumberScheduled"] == 0
    d2 = ds(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}})
    pods2 = [pod(f"p-{n}", n, d2, current=False) for n in "abc"]
    assert len(logic.plan(d2, nodes, pods2).delete) == 2
    pods2[0]["status"]["conditions"][0]["status"] = "False"   # one already unavailable: it goes first, free
    assert [x["metadata"]["name"] for x in logic.plan(d2, nodes, pods2).delete][0] == "p-a"
    d3 = ds(updateStrategy={"type": "OnDelete"})
    pods3 = [pod(f"p-{n}", n, d3, current=False) for n in "abc"]
    assert logic.plan(d3, nodes, pods3).delete == []


def test_status_changed() -> None:
    d = ds()
    st = logic.plan(d, [node("a")], [pod("x", "a", d)]).status
    assert logic.status_changed(d, st)
    assert not logic.status_changed({**d, "status": dict(st)}, st)


def test_number_available_waits_for_min_ready_seconds() -> None:
    d = ds(minReadySeconds=30)
    p = pod("x", "a", d)
    p["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:00:00Z"
    t0 = 1704067200.0   # 2024-01-01T00:00:00Z
    assert logic.plan(d, [node("a")], [p], t0 + 10).status["numberAvailable"] == 0
    st = logic.plan(d, [node("a")], [p], t0 + 31).status
    assert st["numberAvailable"] == 1 and st["numberReady"] == 1 and st["numberUnavailable"] == 0
