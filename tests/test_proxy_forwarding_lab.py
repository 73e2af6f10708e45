"""Real service traffic in a real lab (process runtime, separate node processes): pods answer on
their ClusterIP and on every node's NodePort, and killing a node moves traffic to the other."""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from lab.config import LabConfig
from lab.lab import Lab
from tests.test_forwarder import free_port
from tests.test_proxy_forwarding import SERVER


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "kemu-home"
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return home


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "app", "image": "python:3", "command": ["python3", "-c", SERVER],
                "ports": [{"containerPort": 8000}],
                "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}}


def test_cluster_ip_and_node_ports_then_a_node_dies() -> None:
    assert LabConfig.node_ip(1) == "127.32.0.1" and LabConfig.node_ip(256) == "127.32.1.0"
    with Lab(2, name="svc", profile="fast", runtime="process") as lab:
        c = lab.client
        ips = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in c.list("Node")["items"]}
        assert ips == {"node-1": "127.32.0.1", "node-2": "127.32.0.2"}
        port = free_port("127.0.0.1")
        svc = c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"type": "NodePort", "selector": {"app": "web"},
                                 "ports": [{"name": "http", "port": port, "targetPort": 8000}]}})
        cluster_url = f"http://{svc['spec']['clusterIP']}:{port}/"
        node_port = svc["spec"]["ports"][0]["nodePort"]
        for i in (1, 2):
            c.create(pod(f"web-{i}", f"node-{i}"))

        seen: set[str] = set()
        lab.wait_for(lambda: seen.add(get(cluster_url) or "") or {"web-1", "web-2"} <= seen, 60,
                     what="answers from both pods on the ClusterIP")
        for node, ip in ips.items():   # each node's NodePort, on that node's IP
            lab.wait_for(lambda: get(f"http://{ip}:{node_port}/") in ("web-1", "web-2"), 20,
                         what=f"an answer on {node}'s NodePort")

        # node-1 dies: its proxy's listener goes with it; once the control plane sees the node
        # NotReady, its pod leaves the endpoints and node-2's proxy sends everything to web-2.
        t0 = time.monotonic()
        lab.kill("node-1")

        def only_web2() -> bool:
            return all(get(cluster_url) == "web-2" for _ in range(10))
        lab.wait_for(only_web2, 60, what="all traffic on web-2")
        moved_after = time.monotonic() - t0
        assert get(f"http://{ips['node-2']}:{node_port}/") == "web-2"
        assert get(f"http://{ips['node-1']}:{node_port}/") is None   # nobody listens on a dead node's IP
    print(f"traffic moved {moved_after:.2f}s after the kill")
