"""The EndpointSlice controller against a real apiserver on the in-process transport."""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST

SVC_LABEL = "kubernetes.io/service-name"


class Driver:
    def __init__(self, address: str) -> None:
        self.client = Client(address, component="controller-manager")
        self.user = Client(address, component="test")
        self.cm = ControllerManager(self.client, FAST, controllers=("endpointslice",))
        self.cm.start()

    def until(self, predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.cm.step(0.02)
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")

    def slices(self, svc: str, ns: str = "default") -> list[dict]:
        return self.user.list("EndpointSlice", ns, label_selector=f"{SVC_LABEL}={svc}")["items"]

    def close(self) -> None:
        self.client.close()
        self.user.close()


@pytest.fixture
def drv(mem_server: Any) -> Iterator[Driver]:
    d = Driver(mem_server.address)
    yield d
    d.close()


def make_pod(c: Client, name: str, ip: str, node: str = "n1", ready: bool = True,
             ports: list[dict] | None = None) -> dict:
    pod = c.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
                    "spec": {"nodeName": node,
                             "containers": [{"name": "c", "image": "nginx", "ports": ports or []}]}})
    return set_ready(c, pod, ip, ready)


def set_ready(c: Client, pod: dict, ip: str, ready: bool) -> dict:
    pod = c.get("Pod", pod["metadata"]["name"], "default")
    pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return c.update_status(pod)


def make_node(c: Client, name: str) -> dict:
    node = c.create({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}}})
    node["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    return c.update_status(node)


def make_service(c: Client, target: Any = 8080) -> dict:
    return c.create({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "web", "namespace": "default"},
                     "spec": {"selector": {"app": "web"},
                              "ports": [{"name": "http", "port": 80, "targetPort": target}]}})


def ready_ips(slices: list[dict]) -> list[str]:
    return sorted(e["addresses"][0] for s in slices for e in s.get("endpoints") or []
                  if e["conditions"]["ready"])


def test_slices_and_endpoints_follow_pods(drv: Driver) -> None:
    u = drv.user
    make_node(u, "n1")
    svc = make_service(u)
    a = make_pod(u, "a", "127.64.1.5")
    make_pod(u, "b", "127.64.1.6", ready=False)
    make_pod(u, "nip", "", ready=True)   # no IP yet: skipped
    drv.until(lambda: ready_ips(drv.slices("web")) == ["127.64.1.5"], what="slice with a")
    (sl,) = drv.slices("web")
    assert sl["metadata"]["name"].startswith("web-")
    assert sl["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_ip = {e["addresses"][0]: e for e in sl["endpoints"]}
    assert set(by_ip) == {"127.64.1.5", "127.64.1.6"}
    assert by_ip["127.64.1.5"]["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a",
                                                "uid": a["metadata"]["uid"]}
    assert by_ip["127.64.1.5"]["zone"] == "zone-a" and by_ip["127.64.1.5"]["nodeName"] == "n1"
    ep = drv.until(lambda: _endpoints(u), what="Endpoints")
    assert [x["ip"] for x in ep["subsets"][0]["addresses"]] == ["127.64.1.5"]
    assert [x["ip"] for x in ep["subsets"][0]["notReadyAddresses"]] == ["127.64.1.6"]

    # b turns ready; then a is deleted gracefully (terminating, serving, not ready)
    set_ready(u, u.get("Pod", "b", "default"), "127.64.1.6", True)
    drv.until(lambda: ready_ips(drv.slices("web")) == ["127.64.1.5", "127.64.1.6"], what="b ready")
    rv = drv.slices("web")[0]["metadata"]["resourceVersion"]
    for _ in range(20):   # no change, no write
        drv.cm.step(0.01)
    assert drv.slices("web")[0]["metadata"]["resourceVersion"] == rv
    u.delete("Pod", "a", "default", grace_period_seconds=30)
    def a_terminating() -> bool:
        eps = {e["addresses"][0]: e for s in drv.slices("web") for e in s["endpoints"]}
        c = eps.get("127.64.1.5", {}).get("conditions")
        return c == {"ready": False, "serving": True, "terminating": True}
    drv.until(a_terminating, what="a terminating")
    assert len(drv.slices("web")) == 1

    # the Service goes: its slices and Endpoints go too
    u.delete("Service", "web", "default")
    drv.until(lambda: not drv.slices("web") and _endpoints(u) is None, what="slices deleted")


def _endpoints(c: Client) -> dict | None:
    from emulator.api.errors import APIError
    try:
        return c.get("Endpoints", "web", "default")
    except APIError:
        return None


def test_named_target_port_and_node_not_ready(drv: Driver) -> None:
    u = drv.user
    make_node(u, "n1")
    make_service(u, target="web")
    make_pod(u, "a", "127.64.1.5", ports=[{"name": "web", "containerPort": 8081}])
    make_pod(u, "b", "127.64.1.6", ports=[{"name": "other", "containerPort": 9000}])   # no "web"
    drv.until(lambda: ready_ips(drv.slices("web")) == ["127.64.1.5"], what="slice")
    (sl,) = drv.slices("web")
    assert sl["ports"][0]["port"] == 8081 and len(sl["endpoints"]) == 1
    node = u.get("Node", "n1")
    node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    u.update_status(node)
    drv.until(lambda: drv.slices("web") and ready_ips(drv.slices("web")) == [], what="not ready")
    (sl,) = drv.slices("web")
    assert sl["endpoints"][0]["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_no_duplicate_slices_under_quick_changes(drv: Driver) -> None:
    u = drv.user
    make_node(u, "n1")
    make_service(u)
    for i in range(12):
        make_pod(u, f"p{i}", f"127.64.1.{i + 10}")
        drv.cm.step(0)
    drv.until(lambda: len(ready_ips(drv.slices("web"))) == 12, what="12 endpoints")
    assert len(drv.slices("web")) == 1
