"""kemu's provisioners' decisions and paths, without a server."""
from __future__ import annotations

from pathlib import Path

import pytest

from control.controllers import persistentvolume_logic as pvl
from control.controllers import provisioner_logic as logic
from control.controllers.provisioner import make_volume_dir, remove_volume_dir

STANDARD = {"metadata": {"name": "standard"}, "provisioner": logic.LOCAL_DIR,
            "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}
SHARED = {"metadata": {"name": "shared"}, "provisioner": logic.SHARED_DIR, "volumeBindingMode": "Immediate",
          "reclaimPolicy": "Retain", "mountOptions": ["noatime"]}
IMMEDIATE_LOCAL = {"metadata": {"name": "fast"}, "provisioner": logic.LOCAL_DIR, "volumeBindingMode": "Immediate"}


def claim(cls: str = "standard", prov: str | None = logic.LOCAL_DIR, node: str | None = None,
          modes: tuple = ("ReadWriteOnce",), volume: str = "") -> dict:
    anns = {}
    if prov:
        anns[pvl.ANN_STORAGE_PROVISIONER] = prov
    if node:
        anns[pvl.ANN_SELECTED_NODE] = node
    spec: dict = {"storageClassName": cls, "accessModes": list(modes), "resources": {"requests": {"storage": "2Gi"}}}
    if volume:
        spec["volumeName"] = volume
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default", "uid": "1234", "resourceVersion": "9",
                         "annotations": anns}, "spec": spec}


def decide(c: dict, sc: dict | None = STANDARD, known: bool = True, exists: bool = False) -> tuple | None:
    return logic.provision_decision(c, sc, node_known=known, volume_exists=exists)


def test_safe_segments() -> None:
    for good in ("node-1", "pvc-0b1c", "a.b", "n_1"):
        assert logic.safe_segment(good, "node") == good
    for bad in ("", "..", ".", "a/b", "../x", "/abs", "a\x00b", "-x", "a..b", "x" * 300):
        with pytest.raises(ValueError, match="not a safe directory name"):
            logic.safe_segment(bad, "node")


def test_provision_decisions() -> None:
    assert decide(claim(prov=None)) is None                       # not annotated (yet)
    assert decide(claim(prov="other.io/x")) is None               # someone else's
    assert decide(claim()) is None                                # WFFC: no node yet
    assert decide(claim(node="node-1")) == ("provision", "node-1")
    assert decide(claim(node="node-1"), exists=True) is None
    assert decide(claim(node="node-1", volume="v")) is None
    assert decide(claim(node="node-1"), sc=None) is None          # the binder reports a missing class
    assert decide(claim(node="node-9"), known=False) == (
        "fail", 'failed to provision volume with StorageClass "standard": failed to get target node: '
        'node "node-9" not found')
    assert decide(claim(node="../etc"))[0] == "fail"              # type: ignore[index]
    assert decide(claim("fast"), IMMEDIATE_LOCAL) == (
        "fail", 'failed to provision volume with StorageClass "fast": configuration error, no node was specified')
    rwx = decide(claim(node="node-1", modes=("ReadWriteMany",)))
    assert rwx is not None and rwx[0] == "fail" and "ReadWriteMany" in rwx[1]
    assert decide(claim("shared", logic.SHARED_DIR, modes=("ReadWriteMany",)), SHARED) == ("provision", "")
    deleting = claim(node="node-1")
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert decide(deleting) is None


def test_local_volume_shape() -> None:
    pv = logic.volume_for(claim(node="node-1"), STANDARD, "node-1")
    assert pv["metadata"] == {"name": "pvc-1234", "annotations": {pvl.ANN_PROVISIONED_BY: logic.LOCAL_DIR}}
    assert pv["spec"] == {
        "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": "standard", "volumeMode": "Filesystem",
        "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data", "uid": "1234",
                     "apiVersion": "v1", "resourceVersion": "9"},
        "local": {"path": "/var/lib/kemu/storage/pvc-1234"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}}
    assert logic.volume_node(pv) == "node-1"
    path, root = logic.volume_dir(pv, "/lab/nodes", "/lab/shared")
    assert (path, root) == (Path("/lab/nodes/node-1/var/lib/kemu/storage/pvc-1234"), Path("/lab/nodes/node-1"))


def test_shared_volume_shape() -> None:
    pv = logic.volume_for(claim("shared", logic.SHARED_DIR), SHARED, "")
    assert pv["spec"]["csi"] == {"driver": logic.SHARED_DIR, "volumeHandle": "pvc-1234"}
    assert "nodeAffinity" not in pv["spec"] and pv["spec"]["mountOptions"] == ["noatime"]
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert logic.volume_dir(pv, None, "/lab/shared") == (Path("/lab/shared/pvc-1234"), Path("/lab/shared"))
    with pytest.raises(ValueError, match="no shared root"):
        logic.volume_dir(pv, "/lab/nodes", None)


def test_volume_dir_refuses_tampered_volumes() -> None:
    pv = logic.volume_for(claim(node="node-1"), STANDARD, "node-1")
    pv["spec"]["local"]["path"] = "/etc"
    with pytest.raises(ValueError, match="is not /var/lib/kemu/storage/pvc-1234"):
        logic.volume_dir(pv, "/lab/nodes", "/lab/shared")
    pv = logic.volume_for(claim(node="node-1"), STANDARD, "..")
    with pytest.raises(ValueError, match="not a safe directory name"):
        logic.volume_dir(pv, "/lab/nodes", "/lab/shared")
    static = {"metadata": {"name": "task-pv-volume"}, "spec": {"hostPath": {"path": "/mnt/data"}}}
    with pytest.raises(ValueError, match="was not provisioned by"):
        logic.volume_dir(static, "/lab/nodes", "/lab/shared")


def test_should_delete() -> None:
    pv = logic.volume_for(claim(node="node-1"), STANDARD, "node-1")
    assert not logic.should_delete({**pv, "status": {"phase": "Bound"}})
    assert logic.should_delete({**pv, "status": {"phase": "Released"}})
    kept = logic.volume_for(claim("shared", logic.SHARED_DIR), SHARED, "")
    assert not logic.should_delete({**kept, "status": {"phase": "Released"}})


def test_directories_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "nodes" / "node-1"
    path = root / "var/lib/kemu/storage/pvc-1"
    make_volume_dir(path, root)
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o777
    remove_volume_dir(path, root)
    assert not path.exists()
    remove_volume_dir(path, root)   # already gone: fine
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = root / "var/lib/kemu/storage"
    storage.rmdir()
    storage.symlink_to(outside)     # a symlinked parent pointing out of the node root
    with pytest.raises(ValueError, match="outside"):
        make_volume_dir(storage / "pvc-2", root)
    assert not (outside / "pvc-2").exists()
