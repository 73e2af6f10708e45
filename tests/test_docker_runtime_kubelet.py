"""The kubelet with the docker runtime, against a real apiserver (in-process) and a real engine:
a busybox httpd pod runs, answers on its pod IP, is adopted by a restarted kubelet, and
leaves no container behind once deleted. Skipped as tests/test_docker_runtime.py is."""
from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from tests.conftest import step_until
from tests.test_docker_runtime import IMAGE, engine, lab  # noqa: F401 (fixtures)

NODE_INDEX = 16000     # pod IPs 127.126.128.0/24: far from the other tests' nodes


@pytest.fixture
def env(mem_server: Any, engine: Any, lab: str, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    from node.runtime.docker import DockerRuntime
    clients: list[Client] = []
    runtimes: list[Any] = []

    def kubelet() -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node="node-1")
        clients.append(c)
        rt = DockerRuntime(FAST, root_dir=str(tmp_path / "node-1"), node_name="node-1", lab=lab,
                           client=engine)
        runtimes.append(rt)
        k = Kubelet(c, FAST, "node-1", root_dir=str(tmp_path / "node-1"), runtime=rt,
                    node_index=NODE_INDEX)
        k.start()
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet
    for rt in runtimes:
        rt.close()
    for c in clients:
        c.close()


def httpd_pod(name: str) -> dict:
    script = ("mkdir -p /tmp/www && echo \"hello from $(POD_NAME)\" > /tmp/www/index.html && "
              "exec httpd -f -p $(POD_IP):8080 -h /tmp/www")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "httpd", "image": IMAGE, "command": ["sh", "-c", script],
                         "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                 {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                         "resources": {"limits": {"memory": "32Mi", "cpu": "200m"}}}]}}


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def test_busybox_httpd_pod_runs_is_adopted_and_leaves_nothing(env: Any, engine: Any, lab: str) -> None:  # noqa: F811
    user, kubelet = env
    k = kubelet()
    user.create(httpd_pod("web"))

    def running() -> dict | None:
        st = user.get("Pod", "web", "default").get("status") or {}
        return st if st.get("phase") == "Running" and st.get("podIP") else None
    status = step_until(k, running, "pod web Running", timeout=30)
    cs = status["containerStatuses"][0]
    assert cs["containerID"].startswith("docker://") and cs["state"].get("running")
    assert status["podIP"].startswith("127.126.128.")
    url = f"http://{status['podIP']}:8080/index.html"
    assert step_until(k, lambda: fetch(url), "httpd answering on the pod IP", timeout=20) == b"hello from web\n"
    node = user.get("Node", "node-1")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")

    k2 = kubelet()     # a restarted kubelet adopts the running container: no second one
    for _ in range(20):
        k2.step(0.02)
    rows = engine.api.containers(all=True, filters={"label": f"kemu.lab={lab}"})
    assert len(rows) == 1 and rows[0]["State"] == "running"

    user.delete("Pod", "web", "default")

    def gone() -> bool:
        try:
            user.get("Pod", "web", "default")
            return False
        except Exception:
            return not engine.api.containers(all=True, filters={"label": f"kemu.lab={lab}"})
    step_until(k2, gone, "pod deleted and its container removed", timeout=30)
    assert fetch(url) is None


def test_missing_image_is_err_image_pull_then_image_pull_back_off(env: Any) -> None:
    user, kubelet = env
    k = kubelet()
    pod = httpd_pod("ghost")
    pod["spec"]["containers"][0]["image"] = "kemu/does-not-exist:1.0"
    user.create(pod)

    def waiting() -> str:
        for cs in (user.get("Pod", "ghost", "default").get("status") or {}).get("containerStatuses") or []:
            return ((cs.get("state") or {}).get("waiting") or {}).get("reason") or ""
        return ""
    step_until(k, lambda: waiting() == "ErrImagePull", "ErrImagePull", timeout=30)
    step_until(k, lambda: waiting() == "ImagePullBackOff", "ImagePullBackOff", timeout=30)
    reasons = {e["reason"] for e in user.list("Event", "default")["items"]
               if e["involvedObject"].get("name") == "ghost"}
    assert {"Failed", "BackOff"} & reasons, reasons
    assert "Pulled" not in reasons   # never "already present on machine" for a missing image
