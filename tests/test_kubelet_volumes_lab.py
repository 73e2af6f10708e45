"""Volumes and DiskPressure in a real lab: a node process mounts a secret and a hostPath
inside its own root, then reports DiskPressure and evicts when that root fills up."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lab.lab import Lab

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "test-secret"},
          "data": {"username": base64.b64encode(b"my-app").decode(),
                   "password": base64.b64encode(b"39528$vdg7Jb").decode()}}
# "Distribute Credentials Securely Using Secrets", plus a hostPath volume
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "secret-test-pod"},
       "spec": {"containers": [{"name": "test-container", "image": "nginx",
                                "volumeMounts": [{"name": "secret-volume", "mountPath": "/etc/secret-volume",
                                                  "readOnly": True},
                                                 {"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "secret-volume", "secret": {"secretName": "test-secret"}},
                            {"name": "data", "hostPath": {"path": "/mnt/data", "type": "DirectoryOrCreate"}}]}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def test_secret_and_host_path_then_disk_pressure(kemu_home: Path) -> None:
    lab = Lab(1, name="vol", profile="fast", dns=False)
    lab.config.node_ephemeral_storage = "64Mi"
    with lab:
        c = lab.client
        c.create(SECRET, namespace="default")
        c.create(POD, namespace="default")
        pod = lab.wait_for(lambda: (p := c.get("Pod", "secret-test-pod", "default"))
                           .get("status", {}).get("phase") == "Running" and p, timeout=30)
        root = lab.layout.node_root(pod["spec"]["nodeName"])
        vol = root / "var/lib/kubelet/pods" / pod["metadata"]["uid"] / "volumes/kubernetes.io~secret/secret-volume"
        assert (vol / "password").read_text() == "39528$vdg7Jb"
        assert (root / "mnt" / "data").is_dir()
        assert pod["status"]["containerStatuses"][0]["volumeMounts"][0] == {
            "name": "secret-volume", "mountPath": "/etc/secret-volume", "readOnly": True,
            "recursiveReadOnly": "Disabled"}
        with open(root / "mnt" / "data" / "fill", "wb") as f:
            f.truncate(62 * 2**20)   # sparse: 2 MiB left of 64 MiB, below 10%
        node = pod["spec"]["nodeName"]
        lab.wait_for(lambda: any(x["type"] == "DiskPressure" and x["status"] == "True"
                                 for x in c.get("Node", node)["status"]["conditions"]), timeout=30)
        st = lab.wait_for(lambda: (s := c.get("Pod", "secret-test-pod", "default")["status"])
                          .get("phase") == "Failed" and s, timeout=30)
        assert st["reason"] == "Evicted"
        assert st["message"].startswith("The node was low on resource: ephemeral-storage.")
        assert (root / "mnt" / "data" / "fill").exists()   # hostPath data is never removed by eviction
        assert not vol.exists()                            # the evicted pod's secret volume is gone
