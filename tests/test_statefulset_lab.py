"""Issue 5 in a real lab: the documentation's StatefulSet (headless Service nginx + StatefulSet web
with ``volumeClaimTemplates``) applied unchanged.

Pods come up in order, each with its own claim bound to a local volume on its
node; every pod has a DNS name through the headless service; a deleted pod
comes back with the same name, on the same node, with the same claim and data.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from control.dns.server import query
from lab.lab import Lab

# https://kubernetes.io/docs/tutorials/stateful-application/basic-stateful-set/ (web.yaml)
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
           "spec": {"ports": [{"port": 80, "name": "web"}], "clusterIP": "None", "selector": {"app": "nginx"}}}
WEB = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
       "spec": {"serviceName": "nginx", "replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                             "spec": {"containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.21",
                                                      "ports": [{"containerPort": 80, "name": "web"}],
                                                      "volumeMounts": [{"name": "www",
                                                                        "mountPath": "/usr/share/nginx/html"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                          "spec": {"accessModes": ["ReadWriteOnce"],
                                                   "resources": {"requests": {"storage": "1Gi"}}}}]}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def test_docs_statefulset_with_claims_in_a_lab(kemu_home: Path) -> None:
    with Lab(2, name="sts", profile="fast") as lab:
        c = lab.client
        c.create(SERVICE)
        c.create(WEB)

        def ready(n: int) -> bool:
            st = c.get("StatefulSet", "web", "default").get("status") or {}
            return st.get("readyReplicas") == n and st.get("currentReplicas") == n
        lab.wait_for(lambda: ready(2), 60, what="web-0 and web-1 ready")
        pods = {p["metadata"]["name"]: p for p in c.list("Pod", "default", label_selector="app=nginx")["items"]}
        assert set(pods) == {"web-0", "web-1"}
        claims = {cl["metadata"]["name"]: cl for cl in c.list("PersistentVolumeClaim", "default")["items"]}
        assert set(claims) == {"www-web-0", "www-web-1"}
        assert all(cl["status"]["phase"] == "Bound" for cl in claims.values())
        # OrderedReady: web-1 was created only once web-0 was Running and Ready
        started0 = pods["web-0"]["status"]["conditions"]
        ready0 = next(x["lastTransitionTime"] for x in started0 if x["type"] == "Ready")
        assert pods["web-1"]["metadata"]["creationTimestamp"] >= ready0

        port = int(lab.dns_address.split()[0].rsplit(":", 1)[1])
        ans = query("127.0.0.1", port, "web-0.nginx.default.svc.cluster.local")
        assert [str(r.rdata) for r in ans.rr] == [pods["web-0"]["status"]["podIP"]]

        # data written through web-0's claim outlives the pod
        pv = c.get("PersistentVolume", claims["www-web-0"]["spec"]["volumeName"])
        node = pods["web-0"]["spec"]["nodeName"]
        data = lab.layout.node_root(node) / pv["spec"]["local"]["path"].lstrip("/")
        (data / "index.html").write_text("web-0\n")
        c.delete("Pod", "web-0", "default")

        def back() -> dict | None:
            p = next((x for x in c.list("Pod", "default")["items"] if x["metadata"]["name"] == "web-0"), None)
            if p and p["metadata"]["uid"] != pods["web-0"]["metadata"]["uid"] and \
                    (p.get("status") or {}).get("phase") == "Running":
                return p
            return None
        again = lab.wait_for(back, 60, what="web-0 recreated")
        assert again["spec"]["nodeName"] == node   # the local volume pins it to its node
        assert c.get("PersistentVolumeClaim", "www-web-0", "default")["metadata"]["uid"] == \
            claims["www-web-0"]["metadata"]["uid"]
        assert (data / "index.html").read_text() == "web-0\n"
