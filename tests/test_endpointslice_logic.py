"""The EndpointSlice controller's pure decisions, on plain dicts."""
from __future__ import annotations

from control.controllers import endpointslice_logic as logic


def svc(name: str = "web", ports: list[dict] | None = None, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": name}, "clusterIP": "127.96.0.10",
                     "ports": ports if ports is not None else [{"name": "http", "port": 80,
                                                                "targetPort": 8080, "protocol": "TCP"}],
                     **spec}}


def pod(name: str, ip: str | None = "127.64.1.5", ready: bool = True, node: str = "n1",
        app: str = "web", deleting: bool = False, phase: str = "Running",
        ports: list[dict] | None = None) -> dict:
    md: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": app}}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": md, "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
            "status": status}


def node(name: str = "n1", ready: str = "True", zone: str = "zone-a") -> dict:
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


NODES = {"n1": node("n1"), "n2": node("n2", zone="zone-b")}


def test_endpoint_fields_and_conditions() -> None:
    ep = logic.pod_to_endpoint(svc(), pod("a"), NODES["n1"])
    assert ep == {"addresses": ["127.64.1.5"],
                  "conditions": {"ready": True, "serving": True, "terminating": False},
                  "nodeName": "n1", "zone": "zone-a",
                  "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}


def test_not_ready_pod() -> None:
    c = logic.pod_to_endpoint(svc(), pod("a", ready=False), NODES["n1"])["conditions"]
    assert c == {"ready": False, "serving": False, "terminating": False}


def test_terminating_pod_serving_but_not_ready() -> None:
    c = logic.pod_to_endpoint(svc(), pod("a", deleting=True), NODES["n1"])["conditions"]
    assert c == {"ready": False, "serving": True, "terminating": True}


def test_publish_not_ready_addresses() -> None:
    s = svc(publishNotReadyAddresses=True)
    assert logic.pod_to_endpoint(s, pod("a", ready=False), NODES["n1"])["conditions"]["ready"] is True


def test_node_not_ready_or_unknown() -> None:
    for status in ("False", "Unknown"):
        c = logic.pod_to_endpoint(svc(), pod("a"), node("n1", ready=status))["conditions"]
        assert c == {"ready": False, "serving": False, "terminating": False}


def test_pods_skipped_without_ip_terminal_or_unselected() -> None:
    pods = [pod("a", ip=None), pod("b", ip="127.64.1.6", phase="Succeeded"),
            pod("c", ip="127.64.1.7", app="other"), pod("d", ip="127.64.1.8")]
    got = logic.desired_endpoints(svc(), pods, NODES)
    assert [e["targetRef"]["name"] for e in got[(("http", 8080, "TCP"),)]] == ["d"]


def test_named_target_port_resolution_and_missing_name() -> None:
    s = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    a = pod("a", ip="127.64.1.5", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}])
    b = pod("b", ip="127.64.1.6", ports=[{"name": "web", "containerPort": 9090}])
    c = pod("c", ip="127.64.1.7", ports=[{"name": "metrics", "containerPort": 9100}])   # no "web"
    got = logic.desired_endpoints(s, [a, b, c], NODES)
    assert set(got) == {(("http", 8080, "TCP"),), (("http", 9090, "TCP"),)}
    assert all(e["targetRef"]["name"] != "c" for eps in got.values() for e in eps)
    plan = logic.reconcile(s, got, [])
    assert sorted(sl["ports"][0]["port"] for sl in plan.create) == [8080, 9090]


def test_reconcile_creates_slices_in_kubernetes_shape() -> None:
    s = svc()
    plan = logic.reconcile(s, logic.desired_endpoints(s, [pod("a")], NODES), [])
    assert not plan.update and not plan.delete and len(plan.create) == 1
    sl = plan.create[0]
    assert sl["apiVersion"] == "discovery.k8s.io/v1" and sl["kind"] == "EndpointSlice"
    assert sl["addressType"] == "IPv4"
    assert sl["metadata"]["generateName"] == "web-"
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    assert sl["metadata"]["labels"]["team"] == "a"
    assert sl["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Service", "name": "web",
                                                    "uid": "svc-uid", "controller": True,
                                                    "blockOwnerDeletion": True}
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def _as_existing(plan: logic.SlicePlan) -> list[dict]:
    out = []
    for i, sl in enumerate(plan.create):
        out.append({**sl, "metadata": {**sl["metadata"], "name": f"web-{i:05d}", "resourceVersion": "1"}})
    return out


def test_reconcile_no_change_is_empty_and_changes_update_in_place() -> None:
    s = svc()
    pods = [pod("a", ip="127.64.1.5"), pod("b", ip="127.64.1.6")]
    existing = _as_existing(logic.reconcile(s, logic.desired_endpoints(s, pods, NODES), []))
    assert logic.reconcile(s, logic.desired_endpoints(s, pods, NODES), existing).empty
    pods[1] = pod("b", ip="127.64.1.6", ready=False)
    plan = logic.reconcile(s, logic.desired_endpoints(s, pods, NODES), existing)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert plan.update[0]["metadata"]["name"] == "web-00000"
    assert [e["conditions"]["ready"] for e in plan.update[0]["endpoints"]] == [True, False]


def test_at_most_100_endpoints_per_slice_and_stable_placement() -> None:
    s = svc()
    pods = [pod(f"p{i}", ip=f"127.64.{i // 200}.{i % 200 + 1}") for i in range(250)]
    plan = logic.reconcile(s, logic.desired_endpoints(s, pods, NODES), [])
    assert sorted(len(sl["endpoints"]) for sl in plan.create) == [50, 100, 100]
    existing = _as_existing(plan)
    # one pod gone: only the slice holding it changes
    gone = existing[1]["endpoints"][0]["targetRef"]["name"]
    left = [p for p in pods if p["metadata"]["name"] != gone]
    plan2 = logic.reconcile(s, logic.desired_endpoints(s, left, NODES), existing)
    assert not plan2.create and not plan2.delete
    assert [sl["metadata"]["name"] for sl in plan2.update] == [existing[1]["metadata"]["name"]]


def test_no_endpoints_keeps_one_placeholder_slice() -> None:
    s = svc()
    plan = logic.reconcile(s, {}, [])
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == []
    assert logic.reconcile(s, {}, _as_existing(plan)).empty   # the placeholder is kept as is
    # the last endpoint goes: as Kubernetes' reconciler, delete the slice, create a placeholder
    existing = _as_existing(logic.reconcile(s, logic.desired_endpoints(s, [pod("a")], NODES), []))
    plan = logic.reconcile(s, {}, existing)
    assert [sl["metadata"]["name"] for sl in plan.delete] == ["web-00000"]
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []


def test_endpoints_object_subsets_and_no_change() -> None:
    s = svc()
    pods = [pod("a", ip="127.64.1.5"), pod("b", ip="127.64.1.6", ready=False),
            pod("c", ip="127.64.1.7", deleting=True)]
    obj = logic.desired_endpoints_object(s, pods, NODES, None)
    assert obj is not None and obj["kind"] == "Endpoints" and obj["metadata"]["name"] == "web"
    (subset,) = obj["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["127.64.1.5"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["127.64.1.6"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert subset["addresses"][0]["targetRef"]["name"] == "a"
    existing = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "3"}}
    assert logic.desired_endpoints_object(s, pods, NODES, existing) is None


def test_services_without_selector_are_not_managed() -> None:
    assert not logic.manages({"metadata": {"name": "x"}, "spec": {"ports": []}})
    assert not logic.manages({"metadata": {"name": "x"}, "spec": {"type": "ExternalName",
                                                                   "selector": {"a": "b"}}})
    assert logic.manages(svc())
