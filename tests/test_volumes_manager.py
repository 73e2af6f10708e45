"""The volume manager without an apiserver: back-off, refresh, mount tables, tear-down."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from node.volumes.manager import MountConfigError, VolumeManager
from node.volumes.usage import dir_usage
from node.volumes.plugins import NodeContext


class Objects:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict] = {}
        self.gets: list[tuple[str, str]] = []

    def get(self, kind: str, name: str, namespace: str | None) -> dict | None:
        self.gets.append((kind, name))
        return self.objs.get((kind, name))


def manager(tmp_path: Path, objs: Objects) -> VolumeManager:
    ctx = NodeContext(str(tmp_path / "node"), "node-1", objs.get, labels={"kubernetes.io/hostname": "node-1"},
                      allocatable={"cpu": "4", "memory": "16Gi"}, shared_root=str(tmp_path / "shared"))
    return VolumeManager(ctx, refresh_period=10.0, backoff_initial=0.5, backoff_max=2.0)


POD = {"metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
       "spec": {"volumes": [{"name": "s", "secret": {"secretName": "creds"}},
                            {"name": "scratch", "emptyDir": {}},
                            {"name": "data", "hostPath": {"path": "/data", "type": "DirectoryOrCreate"}}],
                "containers": [{"name": "app", "image": "x", "volumeMounts": [
                    {"name": "s", "mountPath": "/s"}, {"name": "scratch", "mountPath": "/w", "subPath": "sub"},
                    {"name": "data", "mountPath": "/d", "readOnly": True}]}]}}


def test_back_off_then_mount(tmp_path: Path) -> None:
    objs = Objects()
    vm = manager(tmp_path, objs)
    r = vm.wait_for_attach_and_mount(POD, 0.0)
    assert not r.ready and r.unmounted == ["s"] and r.retry_at == 0.5
    assert r.failures == [("FailedMount", 'MountVolume.SetUp failed for volume "s" : secret "creds" not found')]
    r = vm.wait_for_attach_and_mount(POD, 0.2)   # still backing off: not tried, not reported
    assert not r.ready and r.failures == [] and objs.gets.count(("Secret", "creds")) == 1
    r = vm.wait_for_attach_and_mount(POD, 0.6)
    assert r.retry_at == 0.6 + 1.0   # doubled
    objs.objs[("Secret", "creds")] = {"data": {"k": base64.b64encode(b"v").decode()}}
    assert vm.wait_for_attach_and_mount(POD, 1.7).ready


def test_refresh_only_each_period_and_mount_table(tmp_path: Path) -> None:
    objs = Objects()
    objs.objs[("Secret", "creds")] = {"data": {"k": base64.b64encode(b"v1").decode()}}
    vm = manager(tmp_path, objs)
    assert vm.wait_for_attach_and_mount(POD, 0.0).ready
    vm.wait_for_attach_and_mount(POD, 5.0)
    assert objs.gets.count(("Secret", "creds")) == 1
    objs.objs[("Secret", "creds")] = {"data": {"k": base64.b64encode(b"v2").decode()}}
    vm.wait_for_attach_and_mount(POD, 10.0)
    mounts = {m.container_path: m for m in vm.mounts_for(POD, POD["spec"]["containers"][0])}
    assert Path(mounts["/s"].host_path, "k").read_text() == "v2"
    assert mounts["/s"].read_only and mounts["/d"].read_only and not mounts["/w"].read_only
    assert mounts["/w"].host_path.endswith("kubernetes.io~empty-dir/scratch/sub") and os.path.isdir(mounts["/w"].host_path)
    assert mounts["/d"].host_path == str((tmp_path / "node" / "data").resolve())


def test_bad_sub_path_and_unknown_volume(tmp_path: Path) -> None:
    vm = manager(tmp_path, Objects())
    pod = {"metadata": {"uid": "u"}, "spec": {"volumes": [{"name": "e", "emptyDir": {}}]}}
    assert vm.wait_for_attach_and_mount(pod, 0).ready
    with pytest.raises(MountConfigError, match="must not contain '..'"):
        vm.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "../../.."}]})
    with pytest.raises(MountConfigError, match='cannot find volume "nope" to mount into container "c"'):
        vm.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]})


def test_teardown_keeps_persistent_data_and_usage(tmp_path: Path) -> None:
    objs = Objects()
    (tmp_path / "shared" / "pv-1").mkdir(parents=True)
    (tmp_path / "shared" / "pv-1" / "keep").write_text("x")
    objs.objs[("PersistentVolumeClaim", "c")] = {"metadata": {"uid": "cu"}, "spec": {"volumeName": "pv-1"},
                                                 "status": {"phase": "Bound"}}
    objs.objs[("PersistentVolume", "pv-1")] = {"spec": {"csi": {"driver": "kemu.io/shared-dir",
                                                                "volumeHandle": "pv-1"},
                                                        "claimRef": {"uid": "cu"}}}
    pod = {"metadata": {"uid": "u", "namespace": "default"},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}},
                                {"name": "e", "emptyDir": {}}]}}
    assert vm_ready(vm := manager(tmp_path, objs), pod)
    link = tmp_path / "node/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv-1/mount"
    assert os.readlink(link) == str(tmp_path / "shared" / "pv-1")
    e = Path(vm.mounted["u"]["e"].host_path)
    with open(e / "f", "wb") as f:
        f.truncate(4096)
    assert vm.volume_usage(pod) == {"e": 4096} and vm.pod_ephemeral_usage(pod) == 4096
    assert dir_usage(str(tmp_path / "node")) == 4096   # the symlink to shared data is not followed
    vm.teardown("u")
    assert not (tmp_path / "node/var/lib/kubelet/pods/u").exists()
    assert (tmp_path / "shared" / "pv-1" / "keep").read_text() == "x"


def test_pv_node_affinity_elsewhere_fails(tmp_path: Path) -> None:
    objs = Objects()
    objs.objs[("PersistentVolumeClaim", "c")] = {"spec": {"volumeName": "pv-2"}, "status": {"phase": "Bound"}}
    objs.objs[("PersistentVolume", "pv-2")] = {"spec": {"local": {"path": "/x"}, "nodeAffinity": {"required": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                                     "values": ["node-2"]}]}]}}}}
    pod = {"metadata": {"uid": "u", "namespace": "default"},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}
    r = manager(tmp_path, objs).wait_for_attach_and_mount(pod, 0)
    assert r.failures == [("FailedMount", 'MountVolume.NodeAffinity check failed for volume "pv-2" : '
                                          "no matching NodeSelectorTerms")]


def vm_ready(vm: VolumeManager, pod: dict) -> bool:
    return vm.wait_for_attach_and_mount(pod, 0).ready
