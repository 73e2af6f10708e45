"""The docker runtime in a real lab: a Deployment of busybox httpd behind a Service answers on
its ClusterIP from the host, and ``lab down`` leaves no container. Skipped as
tests/test_docker_runtime.py is (never on CI, where make test sets up the engine)."""
from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab.lab import Lab
from tests.test_docker_runtime import IMAGE, engine  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.read()
    except OSError:
        return None


def test_docker_lab_serves_a_cluster_ip_and_down_removes_every_container(engine: Any) -> None:  # noqa: F811
    from node.runtime.docker import LABEL_LAB
    script = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec httpd -f -p $(POD_IP):8080 -h /tmp/www"
    name = "dockerlab"
    lab = Lab(2, name=name, profile="fast", runtime="docker", dns=False)
    with lab:
        c = lab.client
        c.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                               "terminationGracePeriodSeconds": 1,
                               "containers": [{"name": "httpd", "image": IMAGE, "command": ["sh", "-c", script],
                                               "ports": [{"name": "http", "containerPort": 8080}],
                                               "env": [{"name": "POD_IP", "valueFrom": {
                                                   "fieldRef": {"fieldPath": "status.podIP"}}}]}]}}}})
        c.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})
        ip = c.get("Service", "web", "default")["spec"]["clusterIP"]
        assert lab.wait_for(lambda: fetch(f"http://{ip}/"), 60, what="an answer on the ClusterIP") == b"hello\n"
        assert engine.api.containers(filters={"label": f"{LABEL_LAB}={name}"})
    assert engine.api.containers(all=True, filters={"label": f"{LABEL_LAB}={name}"}) == []
