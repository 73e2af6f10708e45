"""kube-proxy against a real apiserver (in-process), and ``kemu proxy rules``."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from emulator.cli import kubectl
from emulator.client import Client
from emulator.profiles import FAST
from node.proxy.proxy import KubeProxy, rules_path


def _slice(svc: str, ips: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True,
                                                              "terminating": False}} for ip in ips]}


def _until(proxy: KubeProxy, predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        proxy.step(0.02)
        v = predicate()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"


def test_proxy_table_follows_services_and_slices(mem_server: Any, tmp_path: Path) -> None:
    user = Client(mem_server.address, component="test")
    pc = Client(mem_server.address, component="kube-proxy", node="n1")
    root = tmp_path / "lab" / "nodes" / "n1"
    try:
        proxy = KubeProxy(pc, FAST, "n1", root_dir=str(root))
        proxy.start()
        assert proxy.table().services == ()
        svc = user.create({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        cip = svc["spec"]["clusterIP"]
        assert cip and cip != "None"
        user.create(_slice("web", ["127.64.1.5", "127.64.2.5"]))
        _until(proxy, lambda: proxy.table().services and len(proxy.table().services[0].endpoints) == 2)
        sp = proxy.table().services[0]
        assert sp.cluster_ip == cip and [e.probability for e in sp.endpoints] == [0.5, None]
        text = Path(rules_path(str(root))).read_text()
        assert text == proxy.rendered()
        assert f"-A KUBE-SERVICES -d {cip}/32 -p tcp -m tcp --dport 80 -j {sp.chain}" in text

        # the CLI prints the same file from the lab directory
        out, err = io.StringIO(), io.StringIO()
        assert kubectl.run(["proxy", "rules", "n1", "--lab-dir", str(tmp_path / "lab")], out, err) == 0
        assert out.getvalue() == text
        assert kubectl.run(["proxy", "rules", "n9", "--lab-dir", str(tmp_path / "lab")], out, err) == 1
        assert 'node "n9" not found' in err.getvalue()

        # a second proxy on another node computes the same table
        pc2 = Client(mem_server.address, component="kube-proxy", node="n2")
        try:
            p2 = KubeProxy(pc2, FAST, "n2")
            p2.start()
            assert p2.rendered() == proxy.rendered()
        finally:
            pc2.close()

        user.delete("EndpointSlice", "web-x1", "default")
        _until(proxy, lambda: proxy.table().services[0].endpoints == ())
        assert "has no endpoints" in Path(rules_path(str(root))).read_text()
    finally:
        user.close()
        pc.close()


def test_proxy_rules_cli_without_table(tmp_path: Path) -> None:
    (tmp_path / "nodes" / "n1").mkdir(parents=True)
    out, err = io.StringIO(), io.StringIO()
    assert kubectl.run(["proxy", "rules", "n1", "--lab-dir", str(tmp_path)], out, err) == 1
    assert "has no proxy rules yet" in err.getvalue()


def test_relist_replaces_the_table(mem_server: Any) -> None:
    """Cut off (watches dead), the table stays stale; the relist brings the whole new state at once."""
    user = Client(mem_server.address, component="test")
    pc = Client(mem_server.address, component="kube-proxy", node="n1")
    try:
        user.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
        user.create(_slice("web", ["127.64.1.5"]))
        proxy = KubeProxy(pc, FAST, "n1")
        proxy.start()
        before = proxy.rendered()
        assert "127.64.1.5:8080" in before
        for inf in (proxy.services, proxy.slices):   # as if partitioned: the watches are gone
            assert inf.watch is not None
            inf.watch.stop()
            inf.watch = None
        user.delete("EndpointSlice", "web-x1", "default")
        user.create(_slice("web", ["127.64.3.9"]) | {"metadata": {"name": "web-x2", "namespace": "default",
                                                                   "labels": {"kubernetes.io/service-name": "web"}}})
        assert proxy.rendered() == before   # stale until it hears from the apiserver
        _until(proxy, lambda: "127.64.3.9:8080" in proxy.rendered())
        assert "127.64.1.5" not in proxy.rendered()
    finally:
        user.close()
        pc.close()


def test_driven_from_another_components_loop(mem_server: Any) -> None:
    """As inside the kubelet: the owner of the client polls, then calls ``step(0)``."""
    user = Client(mem_server.address, component="test")
    shared = Client(mem_server.address, component="kubelet", node="n1")
    try:
        proxy = KubeProxy(shared, FAST, "n1")
        proxy.start()
        user.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
        deadline = time.monotonic() + 10
        while not proxy.table().services:
            shared.poll(0.02)     # the kubelet's step
            proxy.step(0)
            assert time.monotonic() < deadline, "timed out"
    finally:
        user.close()
        shared.close()
