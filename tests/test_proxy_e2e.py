"""Service networking end to end, in one process: kubelet (+ kube-proxy on its client),
the EndpointSlice controller and the DNS add-on against one in-process apiserver."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from control.controllers.manager import ControllerManager
from control.dns import server as dns
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from node.proxy.proxy import KubeProxy


def test_pod_to_slice_to_rules_and_dns(mem_server: Any, tmp_path: Path) -> None:
    addr = mem_server.address
    user = Client(addr, component="test")
    kc = Client(addr, component="kubelet", node="node-1")
    cc = Client(addr, component="controller-manager")
    dc = Client(addr, component="dns")
    root = tmp_path / "nodes" / "node-1"
    kubelet = Kubelet(kc, FAST, "node-1", root_dir=str(root), node_index=1)
    proxy = KubeProxy(kc, FAST, "node-1", root_dir=str(root))
    cm = ControllerManager(cc, FAST, controllers=("endpointslice",))
    cdns = dns.ClusterDNS(dc, FAST)
    listener = dns.serve(cdns.records, "127.0.0.1", 0)
    try:
        kubelet.start()   # the proxy starts itself on its first step
        cm.start()
        cdns.start()

        def turn() -> None:
            kubelet.step(0.01)
            proxy.step(0)          # the hook: same client, after the kubelet's step
            cm.step(0.01)
            cdns.step(0.0)

        svc = user.create({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        for i in range(3):
            user.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"web-{i}", "namespace": "default", "labels": {"app": "web"}},
                         "spec": {"nodeName": "node-1", "containers": [
                             {"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]}})
        deadline = time.monotonic() + 20
        while not (proxy.table().services and len(proxy.table().services[0].endpoints) == 3):
            turn()
            assert time.monotonic() < deadline, f"rules never got 3 endpoints: {proxy.rendered()}"
        sp = proxy.table().services[0]
        assert sp.cluster_ip == svc["spec"]["clusterIP"]
        assert all(e.port == 8080 and e.ip.startswith("127.64.") for e in sp.endpoints)
        assert "--probability 0.33333333349" in (root / "var/lib/kemu/proxy-rules.txt").read_text()
        while not cdns.records().names.get("web.default.svc.cluster.local"):
            turn()
            assert time.monotonic() < deadline, "DNS never learnt the service"
        r = dns.query("127.0.0.1", listener.port, "web.default.svc.cluster.local")
        assert [str(x.rdata) for x in r.rr] == [sp.cluster_ip]
    finally:
        listener.stop()
        for c in (user, kc, cc, dc):
            c.close()
