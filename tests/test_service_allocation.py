"""Cluster IP and NodePort allocation: the pure ranges, the Service hooks, and the
apiserver allocating on create, releasing on delete and rebuilding after a restart."""
from __future__ import annotations

import ipaddress
import random
from typing import Iterator

import pytest

from control.apiserver.allocator import (AlreadyAllocated, IPRange, NotInRange, PortRange,
                                         RangeFull, ServiceAllocations, parse_port_range)
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client

CIDR = "127.96.0.0/12"


def svc(name: str = "web", ns: str = "default", **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


# --- pure ranges ---------------------------------------------------------------

def test_ip_range_excludes_network_and_broadcast() -> None:
    r = IPRange("10.0.0.0/29", random.Random(1))
    got = {r.allocate_next() for _ in range(6)}
    assert got == {f"10.0.0.{i}" for i in range(1, 7)}
    with pytest.raises(RangeFull):
        r.allocate_next()
    for bad in ("10.0.0.0", "10.0.0.7", "10.0.1.1", "::1", "nope"):
        with pytest.raises(NotInRange):
            r.allocate(bad)
    r.release("10.0.0.3")
    assert r.allocate_next() == "10.0.0.3"


def test_ip_range_requested_and_dynamic_band() -> None:
    r = IPRange(CIDR, random.Random(7))
    assert r.first == "127.96.0.1"
    r.allocate("127.96.0.1")
    with pytest.raises(AlreadyAllocated):
        r.allocate("127.96.0.1")
    net = ipaddress.ip_network(CIDR)
    for _ in range(50):
        ip = ipaddress.ip_address(r.allocate_next())
        assert ip in net and int(ip) - int(net.network_address) > 256   # upper band first


def test_port_range() -> None:
    r = PortRange(30000, 30003, random.Random(3))
    assert sorted(r.allocate_next() for _ in range(4)) == [30000, 30001, 30002, 30003]
    with pytest.raises(RangeFull):
        r.allocate_next()
    with pytest.raises(NotInRange):
        r.allocate(80)
    with pytest.raises(AlreadyAllocated):
        r.allocate(30001)
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range("30000+10") == (30000, 30010)


def test_service_allocations_are_all_or_nothing() -> None:
    a = ServiceAllocations("10.0.0.0/24", (30000, 30010), random.Random(5))
    s = svc(type="NodePort", ports=[{"name": "a", "port": 80, "nodePort": 30001},
                                    {"name": "b", "port": 81, "nodePort": 30099}])
    with pytest.raises(APIError) as ei:
        a.before_create(s)
    assert ei.value.message == (
        'Service "web" is invalid: spec.ports[1].nodePort: Invalid value: 30099: provided port '
        "is not in the valid range. The range of valid ports is 30000-30010")
    assert len(a.ips) == 0 and not a.ports.is_allocated(30001)
    assert "clusterIP" not in s["spec"] and s["spec"]["ports"][0]["nodePort"] == 30001


# --- through the apiserver --------------------------------------------------------

@pytest.fixture
def c(mem_server) -> Iterator[Client]:
    client = Client(mem_server.address, component="test", timeout=5)
    yield client
    client.close()


def test_cluster_ip_allocated_in_range(c: Client) -> None:
    spec = c.create(svc())["spec"]
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network(CIDR)
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    other = c.create(svc("other"))["spec"]["clusterIP"]
    assert other != spec["clusterIP"]
    headless = c.create(svc("headless", clusterIP="None"))["spec"]
    assert headless["clusterIP"] == "None" and headless["clusterIPs"] == ["None"]
    ext = c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                    "spec": {"type": "ExternalName", "externalName": "example.com"}})["spec"]
    assert "clusterIP" not in ext


def test_requested_cluster_ip(c: Client) -> None:
    assert c.create(svc("a", clusterIP="127.96.0.10"))["spec"]["clusterIPs"] == ["127.96.0.10"]
    with pytest.raises(APIError) as ei:
        c.create(svc("b", clusterIP="127.96.0.10"))
    assert ei.value.code == errors.INVALID
    assert ei.value.message == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"127.96.0.10"}: '
        "failed to allocate IP 127.96.0.10: provided IP is already allocated")
    with pytest.raises(APIError) as ei:
        c.create(svc("c", clusterIP="10.0.0.1"))
    assert ei.value.message == (
        'Service "c" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: '
        "failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. "
        "The range of valid IPs is 127.96.0.0/12")
    assert [s["metadata"]["name"] for s in c.list("Service", "default")["items"]] == ["a"]


def test_release_on_delete(c: Client) -> None:
    c.create(svc("a", clusterIP="127.96.0.20", type="NodePort",
                 ports=[{"port": 80, "nodePort": 30080}]))
    c.delete("Service", "a", "default")
    again = c.create(svc("b", clusterIP="127.96.0.20", type="NodePort",
                         ports=[{"port": 80, "nodePort": 30080}]))
    assert again["spec"]["ports"][0]["nodePort"] == 30080


def test_node_ports(c: Client) -> None:
    s = c.create(svc(type="NodePort", ports=[{"name": "http", "port": 80},
                                             {"name": "https", "port": 443}]))
    ports = [p["nodePort"] for p in s["spec"]["ports"]]
    assert len(set(ports)) == 2 and all(30000 <= p <= 32767 for p in ports)
    with pytest.raises(APIError) as ei:
        c.create(svc("taken", type="NodePort", ports=[{"port": 80, "nodePort": ports[0]}]))
    assert ei.value.message == (f'Service "taken" is invalid: spec.ports[0].nodePort: Invalid '
                                f"value: {ports[0]}: provided port is already allocated")
    with pytest.raises(APIError) as ei:
        c.create(svc("low", type="NodePort", ports=[{"port": 80, "nodePort": 8080}]))
    assert "provided port is not in the valid range. The range of valid ports is " \
           "30000-32767" in ei.value.message
    # the failed creates reserved nothing: their cluster IPs and ports are free
    assert len(c.list("Service", "default")["items"]) == 1


def test_update_keeps_allocations_and_rejects_ip_change(c: Client) -> None:
    s = c.create(svc(type="NodePort", ports=[{"name": "http", "port": 80}]))
    ip, np = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]
    # a client that leaves the allocated values out (kubectl replace of the manifest)
    s2 = c.update(svc(type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": 8080}]))
    assert s2["spec"]["clusterIP"] == ip and s2["spec"]["ports"][0]["nodePort"] == np
    with pytest.raises(APIError) as ei:
        c.patch("Service", "web", {"spec": {"clusterIP": "127.96.0.99"}}, "default")
    assert ei.value.message.endswith(
        'spec.clusterIPs[0]: Invalid value: []string{"127.96.0.99"}: may not change once set')
    # back to ClusterIP: the node port is released
    s3 = c.patch("Service", "web", {"spec": {"type": "ClusterIP", "externalTrafficPolicy": None}},
                 "default")
    assert "nodePort" not in s3["spec"]["ports"][0]
    c.create(svc("reuse", type="NodePort", ports=[{"port": 80, "nodePort": np}]))


def test_allocations_survive_restart(threaded_server, tmp_path) -> None:
    data = str(tmp_path / "restart")
    srv = threaded_server(data_dir=data)
    with Client(srv.address, component="test", timeout=5) as c:
        ip = c.create(svc(type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))["spec"]["clusterIP"]
    srv.stop()
    srv2 = threaded_server(data_dir=data)
    with Client(srv2.address, component="test", timeout=5) as c:
        with pytest.raises(APIError) as ei:
            c.create(svc("dup-ip", clusterIP=ip))
        assert "provided IP is already allocated" in ei.value.message
        with pytest.raises(APIError) as ei:
            c.create(svc("dup-port", type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))
        assert "provided port is already allocated" in ei.value.message
        c.delete("Service", "web", "default")
        assert c.create(svc("dup-ip", clusterIP=ip))["spec"]["clusterIP"] == ip


def test_service_cidr_option(threaded_server) -> None:
    srv = threaded_server("mem://cidr-option", None, service_cluster_ip_range="10.10.0.0/24",
                          service_node_port_range=(31000, 31001))
    with Client(srv.address, component="test", timeout=5) as c:
        s = c.create(svc(type="NodePort"))["spec"]
        assert s["clusterIP"].startswith("10.10.0.") and s["ports"][0]["nodePort"] in (31000, 31001)
