"""Issue 5 in a real lab: the documentation's PersistentVolume example applied
unchanged, data that outlives its pod (same node for ``standard``, any node for
``shared``), a pod whose local volume sits on a dead node, a claim that waits on
its protection finalizer, and ``kemu crictl`` showing the mount table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "storage"


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))


def claim(name: str, cls: str | None, mode: str = "ReadWriteOnce") -> dict:
    spec: dict = {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def pod(name: str, claim_name: str, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "app", "image": "busybox",
                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                  "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
                  "terminationGracePeriodSeconds": 0}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def running(c, name: str) -> dict | None:
    p = c.get("Pod", name, "default")
    return p if (p.get("status") or {}).get("phase") == "Running" else None


def mount_of(node: str, pod_name: str, path: str = "/data") -> Path:
    """The host path of the pod's mount at ``path``, from the node's runtime (kemu crictl)."""
    r = kemu("crictl", node, "ps")
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines()[1:] if line.split()[-1] == pod_name)
    r = kemu("crictl", node, "inspect", row[0])
    assert r.returncode == 0, r.stderr
    mounts = json.loads(r.stdout)["status"]["mounts"]
    return Path(next(m["hostPath"] for m in mounts if m["containerPath"] == path))


def test_docs_persistent_volume_example(kemu_home: Path) -> None:
    with Lab(2, name="pv", profile="fast", dns=False) as lab:
        for f in ("pv-volume.yaml", "pv-claim.yaml", "pv-pod.yaml"):
            r = kemu("apply", "-f", str(EXAMPLES / f))
            assert r.returncode == 0, r.stderr
        c = lab.client
        p = lab.wait_for(lambda: running(c, "task-pv-pod"), 30, what="task-pv-pod Running")
        node = p["spec"]["nodeName"]
        assert c.get("PersistentVolumeClaim", "task-pv-claim", "default")["spec"]["volumeName"] == "task-pv-volume"
        pv = c.get("PersistentVolume", "task-pv-volume")
        assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == "task-pv-claim"
        host = mount_of(node, "task-pv-pod", "/usr/share/nginx/html")
        assert host == lab.layout.node_root(node) / "mnt" / "data"   # hostPath inside the node's root
        mounts = p["status"]["containerStatuses"][0]["volumeMounts"]
        assert {"name": "task-pv-storage", "mountPath": "/usr/share/nginx/html"}.items() <= mounts[0].items()
        r = kemu("get", "pv,pvc")
        assert "task-pv-volume" in r.stdout and "Bound" in r.stdout and "default/task-pv-claim" in r.stdout

        # "Distribute Credentials Securely Using Secrets", unchanged
        for f in ("secret.yaml", "secret-pod.yaml"):
            r = kemu("apply", "-f", str(EXAMPLES / f))
            assert r.returncode == 0, r.stderr
        p = lab.wait_for(lambda: running(c, "secret-test-pod"), 30, what="secret-test-pod Running")
        secret_dir = mount_of(p["spec"]["nodeName"], "secret-test-pod", "/etc/secret-volume")
        assert secret_dir.is_relative_to(lab.layout.node_root(p["spec"]["nodeName"]) / "var/lib/kubelet/pods")
        assert (secret_dir / "username").read_text() == "my-app"
        assert (secret_dir / "password").read_text() == "39528$vdg7Jb"
        assert (secret_dir / "password").stat().st_mode & 0o777 == 0o644
        assert p["status"]["containerStatuses"][0]["volumeMounts"][0]["readOnly"] is True


def test_data_outlives_pods_and_a_dead_node_keeps_its_volume(kemu_home: Path) -> None:
    with Lab(3, name="data", profile="fast", dns=False) as lab:
        c = lab.client
        # standard (the default class): a local directory on the node the pod went to
        c.create(claim("local", None), namespace="default")
        c.create(pod("writer", "local"), namespace="default")
        p = lab.wait_for(lambda: running(c, "writer"), 30, what="writer Running")
        node = p["spec"]["nodeName"]
        pvc = c.get("PersistentVolumeClaim", "local", "default")
        assert pvc["spec"]["storageClassName"] == "standard" and pvc["status"]["phase"] == "Bound"
        host = mount_of(node, "writer")
        assert host.is_relative_to(lab.layout.node_root(node))
        (host / "note.txt").write_text("written by writer")   # the container writes
        c.delete("Pod", "writer", "default", grace_period_seconds=0)
        lab.wait_for(lambda: not c.list("Pod", "default", field_selector="metadata.name=writer")["items"], 20,
                     what="writer gone")
        c.create(pod("reader", "local"), namespace="default")
        p = lab.wait_for(lambda: running(c, "reader"), 30, what="reader Running")
        assert p["spec"]["nodeName"] == node   # the volume's node affinity brought it back
        assert (mount_of(node, "reader") / "note.txt").read_text() == "written by writer"

        # shared: readable from another node
        c.create(claim("common", "shared", "ReadWriteMany"), namespace="default")
        other = next(n for n in lab.nodes if n != node)
        c.create(pod("s-writer", "common", node), namespace="default")
        lab.wait_for(lambda: running(c, "s-writer"), 30, what="s-writer Running")
        shared_host = mount_of(node, "s-writer")
        assert shared_host.is_relative_to(lab.layout.shared)
        (shared_host / "note.txt").write_text("shared")
        c.create(pod("s-reader", "common", other), namespace="default")
        lab.wait_for(lambda: running(c, "s-reader"), 30, what="s-reader Running on another node")
        assert (mount_of(other, "s-reader") / "note.txt").read_text() == "shared"

        # deleting a claim in use waits on kubernetes.io/pvc-protection
        c.delete("PersistentVolumeClaim", "common", "default")
        held = c.get("PersistentVolumeClaim", "common", "default")
        assert held["metadata"]["deletionTimestamp"] and "kubernetes.io/pvc-protection" in held["metadata"]["finalizers"]
        for name in ("s-writer", "s-reader"):
            c.delete("Pod", name, "default", grace_period_seconds=0)
        lab.wait_for(lambda: not c.list("PersistentVolumeClaim", "default",
                                        field_selector="metadata.name=common")["items"], 30,
                     what="the claim gone once no pod uses it")

        # the local volume's node dies: a new pod for that claim stays Pending, and says why
        lab.kill(node)
        lab.wait_for(lambda: any(t["key"] == "node.kubernetes.io/unreachable"
                                 for t in c.get("Node", node)["spec"].get("taints") or []), 20,
                     what=f"{node} tainted unreachable")
        c.delete("Pod", "reader", "default", grace_period_seconds=0)
        c.create(pod("again", "local"), namespace="default")

        def why() -> str:
            for cond in (c.get("Pod", "again", "default").get("status") or {}).get("conditions") or []:
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    return cond.get("message") or ""
            return ""
        msg = lab.wait_for(lambda: "untolerated taint" in why() and why(), 30, what="a FailedScheduling reason")
        assert "node(s) had volume node affinity conflict" in msg, msg
        assert c.get("Pod", "again", "default")["status"]["phase"] == "Pending"
