"""kemu's dynamic provisioners and Delete reclaim, with the binder, against an in-process apiserver."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until
from tests.test_persistentvolume import STORAGE_CONTROLLERS, claim, events, node, pvc_phase, storage_class

SELECTED = "volume.kubernetes.io/selected-node"


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "nodes", tmp_path / "shared"


def start(mem_server, roots: tuple[Path, Path] | None) -> tuple[Client, Client, ControllerManager]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=STORAGE_CONTROLLERS,
                           nodes_root=str(roots[0]) if roots else None, shared_root=str(roots[1]) if roots else None)
    admin.create(storage_class("standard", "kemu.io/local-dir", "WaitForFirstConsumer", default=True))
    admin.create(storage_class("shared", "kemu.io/shared-dir"))
    admin.create(storage_class("keep", "kemu.io/shared-dir", policy="Retain"))
    cm.start()
    return admin, cmc, cm


@pytest.fixture
def cluster(mem_server, roots) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin, cmc, cm = start(mem_server, roots)
    yield admin, cm
    cmc.close()
    admin.close()


def bound_pv(admin: Client, cm: ControllerManager, name: str) -> dict:
    step_until(cm, lambda: pvc_phase(admin, name) == "Bound", f"{name} Bound")
    c = admin.get("PersistentVolumeClaim", name, "default")
    return admin.get("PersistentVolume", c["spec"]["volumeName"])


def test_immediate_shared_provisioning(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    c = admin.create(claim("data", "2Gi", "shared", modes=("ReadWriteMany",)))
    pv = bound_pv(admin, cm, "data")
    name = f"pvc-{c['metadata']['uid']}"
    assert pv["metadata"]["name"] == name
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kemu.io/shared-dir"
    assert pv["spec"]["csi"] == {"driver": "kemu.io/shared-dir", "volumeHandle": name}
    assert "nodeAffinity" not in pv["spec"]
    assert pv["spec"]["capacity"] == {"storage": "2Gi"} and pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" and pv["spec"]["storageClassName"] == "shared"
    assert pv["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    assert pv["status"]["phase"] == "Bound"
    assert (roots[1] / name).is_dir()
    got = admin.get("PersistentVolumeClaim", "data", "default")
    assert got["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "kemu.io/shared-dir"
    assert got["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-provisioner"] == "kemu.io/shared-dir"
    reasons = [(e["reason"], e["message"]) for e in events(admin, "data")]
    assert ("Provisioning", 'External provisioner is provisioning volume for claim "default/data"') in reasons
    assert ("ProvisioningSucceeded", f"Successfully provisioned volume {name}") in reasons
    assert any(r == "ExternalProvisioning" for r, _ in reasons)


def test_wait_for_first_consumer_then_local_provisioning(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(node("node-2"))
    c = admin.create(claim("local", "1Gi"))   # the default class: standard
    assert c["spec"]["storageClassName"] == "standard"
    ev = step_until(cm, lambda: events(admin, "local", "WaitForFirstConsumer"), "WaitForFirstConsumer")
    assert ev[0]["message"] == "waiting for first consumer to be created before binding"   # type: ignore[index]
    for _ in range(10):
        cm.step(0.01)
    assert pvc_phase(admin, "local") == "Pending" and not admin.list("PersistentVolume")["items"]
    admin.patch("PersistentVolumeClaim", "local", {"metadata": {"annotations": {SELECTED: "node-2"}}}, "default")
    pv = bound_pv(admin, cm, "local")
    name = f"pvc-{c['metadata']['uid']}"
    assert pv["spec"]["local"] == {"path": f"/var/lib/kemu/storage/{name}"}
    assert pv["spec"]["nodeAffinity"] == {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-2"]}]}]}}
    assert (roots[0] / "node-2" / "var/lib/kemu/storage" / name).is_dir()


def test_wffc_binds_existing_volume_on_the_selected_node(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    for n in ("node-1", "node-2"):
        admin.create(node(n))
        admin.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"local-{n}"},
                      "spec": {"storageClassName": "standard", "capacity": {"storage": "5Gi"},
                               "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
                               "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                   {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]}]}}}})
    admin.create(claim("pick", "1Gi", "standard", anns={SELECTED: "node-2"}))
    assert bound_pv(admin, cm, "pick")["metadata"]["name"] == "local-node-2"


def test_bad_selected_node_fails_provisioning(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(claim("ghost", "1Gi", anns={SELECTED: "node-9"}))
    ev = step_until(cm, lambda: events(admin, "ghost", "ProvisioningFailed"), "ProvisioningFailed")
    assert ev[0]["message"] == ('failed to provision volume with StorageClass "standard": '   # type: ignore[index]
                                'failed to get target node: node "node-9" not found')
    assert not roots[0].exists() or not any(roots[0].iterdir())


def test_delete_reclaim_removes_directory_and_volume(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(claim("tmp", "1Gi", "shared"))
    pv = bound_pv(admin, cm, "tmp")
    d = roots[1] / pv["metadata"]["name"]
    (d / "file").write_text("data")
    admin.delete("PersistentVolumeClaim", "tmp", "default")
    step_until(cm, lambda: not admin.list("PersistentVolume")["items"], "PV deleted")
    assert not d.exists()
    assert not admin.list("PersistentVolumeClaim", "default")["items"]


def test_retain_keeps_released_volume_and_data(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(claim("kept", "1Gi", "keep"))
    pv = bound_pv(admin, cm, "kept")
    d = roots[1] / pv["metadata"]["name"]
    (d / "file").write_text("data")
    admin.delete("PersistentVolumeClaim", "kept", "default")
    step_until(cm, lambda: admin.get("PersistentVolume", pv["metadata"]["name"])["status"]["phase"] == "Released",
               "Released")
    for _ in range(10):
        cm.step(0.01)
    assert admin.get("PersistentVolume", pv["metadata"]["name"])["status"]["phase"] == "Released"
    assert (d / "file").read_text() == "data"


def test_reclaim_never_leaves_the_root(cluster, roots, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(claim("evil", "1Gi", "shared"))
    pv = bound_pv(admin, cm, "evil")
    d = roots[1] / pv["metadata"]["name"]
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.rmdir(d)
    d.symlink_to(outside)   # someone swapped the directory for a symlink out of the root
    admin.delete("PersistentVolumeClaim", "evil", "default")
    step_until(cm, lambda: not admin.list("PersistentVolume")["items"], "PV deleted")
    assert (outside / "keep").read_text() == "x" and not d.exists() and not d.is_symlink()


def test_provisioning_disabled_without_roots(mem_server) -> None:  # type: ignore[no-untyped-def]
    admin, cmc, cm = start(mem_server, None)
    try:
        admin.create(claim("nowhere", "1Gi", "shared"))
        step_until(cm, lambda: events(admin, "nowhere", "ExternalProvisioning"), "ExternalProvisioning")
        for _ in range(10):
            cm.step(0.01)
        assert not admin.list("PersistentVolume")["items"] and pvc_phase(admin, "nowhere") == "Pending"
    finally:
        cmc.close()
        admin.close()


def test_thousand_claims_provisioned_and_bound(cluster, roots) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    n = 1000
    admin.pipeline([("create", {"object": claim(f"c-{i:04}", "1Gi", "shared"), "namespace": "default"})
                    for i in range(n)])

    def bound() -> bool:
        items = admin.list_all("PersistentVolumeClaim", "default")["items"]
        return sum((c.get("status") or {}).get("phase") == "Bound" for c in items) == n
    step_until(cm, bound, f"{n} claims Bound", timeout=120)
    assert len(list(roots[1].iterdir())) == n
