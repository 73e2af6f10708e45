"""Issue 4 in a real lab: a Deployment behind a Service survives a node's death.

The nginx Deployment and a Service as the Kubernetes documentation writes
them; then one node killed: its pods are evicted, replacements scheduled on
other nodes, the EndpointSlice and every node's proxy table follow, and DNS
keeps answering.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from control.dns.server import query
from lab.lab import Lab

NGINX = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                  "template": {"metadata": {"labels": {"app": "nginx"}},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                                        "ports": [{"containerPort": 80}]}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-nginx"},
           "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "nginx"}}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def dns_port(lab: Lab) -> int:
    udp = lab.dns_address.split()[0]          # udp://127.0.0.1:P
    return int(udp.rsplit(":", 1)[1])


def ready_ips(lab: Lab) -> set[str]:
    out = set()
    for s in lab.client.list("EndpointSlice", "default",
                             label_selector="kubernetes.io/service-name=my-nginx")["items"]:
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready"):
                out.update(ep["addresses"])
    return out


def proxy_table(lab: Lab, node: str) -> str:
    f = lab.layout.node_root(node) / "var" / "lib" / "kemu" / "proxy-rules.txt"
    return f.read_text() if f.exists() else ""


def test_deployment_behind_a_service_survives_a_node(kemu_home: Path) -> None:
    with Lab(3, name="w", profile="fast", zones="3") as lab:
        c = lab.client
        c.create(NGINX)
        svc = c.create(SERVICE)
        ip = svc["spec"]["clusterIP"]
        assert ip.startswith("127.")

        def available() -> bool:
            d = c.get("Deployment", "nginx-deployment", "default")
            return (d.get("status") or {}).get("availableReplicas") == 3
        lab.wait_for(available, 20, what="3 available replicas")
        pods = c.list("Pod", "default", label_selector="app=nginx")["items"]
        ips = {p["status"]["podIP"] for p in pods}
        lab.wait_for(lambda: ready_ips(lab) == ips, 10, what="3 ready endpoints")
        try:
            lab.wait_for(lambda: all(all(f"--to-destination {p}:80" in proxy_table(lab, n) for p in ips)
                                     for n in lab.nodes), 10, what="every proxy table")
        except TimeoutError:
            for n in lab.nodes:
                print(n, proxy_table(lab, n).count("DNAT"))
                for line in lab.layout.log_for(n).read_text().splitlines():
                    if "proxy" in line or "warn" in line:
                        print("   ", line[:300])
            print(ips)
            raise
        ans = query("127.0.0.1", dns_port(lab), "my-nginx.default.svc.cluster.local")
        assert [str(r.rdata) for r in ans.rr] == [ip]

        victim = pods[0]["spec"]["nodeName"]
        lost = {p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == victim}
        lab.kill(victim)
        live = [n for n in lab.nodes if n != victim]

        def replaced() -> set[str] | None:
            now = {p["status"].get("podIP") for p in c.list("Pod", "default", label_selector="app=nginx")["items"]
                   if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName") in live
                   and p["status"].get("phase") == "Running"}
            return now if len(now) == 3 else None
        fresh = lab.wait_for(replaced, 45, what="replacements on the other nodes")
        lab.wait_for(lambda: ready_ips(lab) == fresh, 10, what="endpoints without the dead node's pods")
        assert not (lost & ready_ips(lab))
        lab.wait_for(lambda: all(all(f"--to-destination {p}:80" in proxy_table(lab, n) for p in fresh)
                                 and not any(f"--to-destination {p}:80" in proxy_table(lab, n) for p in lost)
                                 for n in live), 10, what="live proxy tables updated")
        ans = query("127.0.0.1", dns_port(lab), "my-nginx.default.svc.cluster.local", tcp=True)
        assert [str(r.rdata) for r in ans.rr] == [ip]


def test_lab_without_dns(kemu_home: Path) -> None:
    with Lab(1, name="nodns", profile="fast", dns=False) as lab:
        assert lab.dns_address is None
        assert "dns" not in {p["role"] for p in lab.processes()}
