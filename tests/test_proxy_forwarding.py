"""kube-proxy with ``forward=True`` against a real apiserver (in-process): listeners follow
Services and EndpointSlices, and real TCP reaches the endpoints."""
from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.proxy.proxy import KubeProxy
from tests.test_forwarder import Backend, free_port, ident, recv_all

NODE_IP = "127.32.250.7"


def _slice(svc: str, endpoints: list[tuple[str, bool]], port: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "nodeName": "n1",
                           "conditions": {"ready": ready, "serving": ready, "terminating": False}}
                          for ip, ready in endpoints]}


def _until(proxy: KubeProxy, predicate: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        proxy.step(0.02)
        v = predicate()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def _get(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=5) as c:
        c.shutdown(socket.SHUT_WR)
        return recv_all(c)


def test_listeners_follow_services_and_slices(mem_server: Any) -> None:
    user = Client(mem_server.address, component="test")
    pc = Client(mem_server.address, component="kube-proxy", node="n1")
    a = Backend("127.64.250.21", ident(b"a"))
    b = Backend("127.64.250.22", ident(b"b"))
    proxy = KubeProxy(pc, FAST, "n1", node_ip=NODE_IP, forward=True)
    try:
        proxy.start()
        assert proxy.forwarder is not None and proxy.forwarder.listening() == []
        port = free_port("127.0.0.1")
        svc = user.create({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"type": "NodePort", "selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
        cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        # no endpoints yet: no listener, so connections are refused
        _until(proxy, lambda: proxy.table().services, "the Service in the table")
        assert proxy.forwarder.listening() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((cip, port), timeout=5)

        # a slice gives one port for all its endpoints: b listens on a's port (another address)
        b.close()
        b = Backend("127.64.250.22", ident(b"b"), port=a.port)
        user.create(_slice("web", [("127.64.250.21", True), ("127.64.250.22", False)], a.port))
        _until(proxy, lambda: len(proxy.forwarder.listening()) == 2, "ClusterIP and NodePort listeners")
        assert proxy.forwarder.listening() == sorted([(cip, port), (NODE_IP, node_port)])
        # the not-ready endpoint gets nothing
        assert {_get((cip, port)) for _ in range(20)} == {b"a"}
        assert _get((NODE_IP, node_port)) == b"a"

        # b becomes ready and a goes away: new connections go to b only
        sl = user.get("EndpointSlice", "web-x1", "default")
        sl["endpoints"] = _slice("web", [("127.64.250.22", True)], a.port)["endpoints"]
        user.update(sl)
        _until(proxy, lambda: [e.ip for e in proxy.table().services[0].endpoints] == ["127.64.250.22"],
               "the table to have b only")
        proxy.forwarder.update(proxy.table()).result(5)   # wait until the loop has applied it
        assert {_get((cip, port)) for _ in range(20)} == {b"b"}

        # the Service deleted: its listeners close
        user.delete("Service", "web", "default")
        _until(proxy, lambda: proxy.forwarder.listening() == [], "the listeners to close")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((cip, port), timeout=5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((NODE_IP, node_port), timeout=5)
    finally:
        proxy.stop()
        user.close()
        pc.close()
        a.close()
        b.close()
    assert proxy.forwarder._thread is None


def test_a_listener_that_failed_is_retried(mem_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from node.proxy import proxy as proxy_mod
    monkeypatch.setattr(proxy_mod, "LISTEN_RETRY_PERIOD", 0.05)
    user = Client(mem_server.address, component="test")
    pc = Client(mem_server.address, component="kube-proxy", node="n1")
    a = Backend("127.64.250.23", ident(b"a"))
    proxy = KubeProxy(pc, FAST, "n1", node_ip=NODE_IP, forward=True)
    squatter = socket.socket()
    try:
        proxy.start()
        assert proxy.forwarder is not None
        port = free_port("127.0.0.1")
        svc = user.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "namespace": "default"},
                           "spec": {"type": "NodePort", "selector": {"app": "np"},
                                    "ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
        cip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        squatter.bind((NODE_IP, node_port))   # something else holds the NodePort for a while
        squatter.listen(1)
        user.create(_slice("np", [("127.64.250.23", True)], a.port))
        _until(proxy, lambda: proxy.forwarder.listening() == [(cip, port)] and proxy.forwarder.failed_listeners(),
               "the ClusterIP listening and the NodePort failed")
        squatter.close()
        _until(proxy, lambda: (NODE_IP, node_port) in proxy.forwarder.listening(), "the NodePort retried")
        assert _get((NODE_IP, node_port)) == b"a"
    finally:
        squatter.close()
        proxy.stop()
        user.close()
        pc.close()
        a.close()


def test_without_forward_the_proxy_keeps_tables_only(mem_server: Any) -> None:
    pc = Client(mem_server.address, component="kube-proxy", node="n1")
    try:
        proxy = KubeProxy(pc, FAST, "n1")
        proxy.start()
        assert proxy.forwarder is None
        proxy.stop()
    finally:
        pc.close()


SERVER = ("import http.server, os\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        b = os.environ['POD_NAME'].encode()\n"
          "        self.send_response(200)\n"
          "        self.send_header('Content-Length', str(len(b)))\n"
          "        self.end_headers()\n"
          "        self.wfile.write(b)\n"
          "    def log_message(self, *a):\n"
          "        pass\n"
          "http.server.HTTPServer((os.environ['POD_IP'], 8000), H).serve_forever()\n")


def test_process_pods_answer_on_their_cluster_ip(mem_server: Any, tmp_path: Any) -> None:
    """The kubelet with the process runtime, the EndpointSlice controller and a forwarding
    kube-proxy: HTTP to the ClusterIP reaches the pods; a deleted pod gets no more traffic."""
    import random
    import urllib.request

    from control.controllers.manager import ControllerManager
    from node.kubelet.kubelet import Kubelet
    from node.runtime.process import ProcessRuntime, kill_all

    root = str(tmp_path / "node-1")
    addr = mem_server.address
    user = Client(addr, component="test")
    kc = Client(addr, component="kubelet", node="node-1")
    cc = Client(addr, component="controller-manager")
    rt = ProcessRuntime(FAST, root_dir=root, state_path=f"{root}/var/lib/kemu/runtime.json")
    kubelet = Kubelet(kc, FAST, "node-1", root_dir=root, runtime=rt, node_index=random.randint(1000, 16000),
                      node_ip=NODE_IP)
    proxy = KubeProxy(kc, FAST, "node-1", node_ip=NODE_IP, forward=kubelet.runtime.name != "fake")
    cm = ControllerManager(cc, FAST, controllers=("endpointslice",))

    def turn() -> None:
        kubelet.step(0.01)
        proxy.step(0)
        cm.step(0.01)

    def get(url: str) -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    def turn_until(predicate: Any, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            turn()
            v = predicate()
            if v:
                return v
            assert time.monotonic() < deadline, f"timed out waiting for {what}"

    try:
        kubelet.start()
        cm.start()
        port = free_port("127.0.0.1")
        svc = user.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": port, "targetPort": 8000}]}})
        url = f"http://{svc['spec']['clusterIP']}:{port}/"
        for i in range(2):
            user.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"web-{i}", "namespace": "default", "labels": {"app": "web"}},
                         "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 2, "containers": [{
                             "name": "app", "image": "python:3", "command": ["python3", "-c", SERVER],
                             "ports": [{"containerPort": 8000}],
                             "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                             "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}})
        turn_until(lambda: proxy.table().services and len(proxy.table().services[0].endpoints) == 2,
                   "both pods ready in the proxy's table", 30)
        seen: set[str] = set()
        turn_until(lambda: seen.add(get(url) or "") or {"web-0", "web-1"} <= seen, "answers from both pods", 30)

        user.delete("Pod", "web-0", "default")
        turn_until(lambda: [e.ip for e in proxy.table().services[0].endpoints] and
                   len(proxy.table().services[0].endpoints) == 1, "web-0 out of the table", 30)
        assert proxy.forwarder is not None
        proxy.forwarder.update(proxy.table()).result(5)
        answers = [get(url) for _ in range(10)]
        assert answers == ["web-1"] * 10
    finally:
        proxy.stop()
        kill_all(root)
        for p in [c.popen for c in rt.containers.values() if c.popen is not None] + rt.reap:
            p.wait(5)
        for c in (user, kc, cc):
            c.close()
