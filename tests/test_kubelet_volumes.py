"""The kubelet's volumes against a real apiserver (in-process transport), driven by step() and a fake clock."""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from tests.conftest import FakeClock, drive





@pytest.fixture
def env(mem_server: Any, tmp_path: Path):
    clients: list[Client] = []
    clock = FakeClock()
    shared = tmp_path / "shared"
    shared.mkdir()

    def kubelet(name: str = "node-1", **kw: Any) -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node=name)
        clients.append(c)
        k = Kubelet(c, FAST, name, root_dir=str(tmp_path / "nodes" / name), clock=clock.mono,
                    wall=clock.wall, shared_root=str(shared), **kw)
        k.start()
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet, clock
    for c in clients:
        c.close()


def pod(name: str, volumes: list[dict], mounts: list[dict], **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "node-1", "volumes": volumes,
                     "containers": [{"name": "app", "image": "nginx:1.27", "volumeMounts": mounts}], **spec}}


def status(user: Client, name: str) -> dict:
    return user.get("Pod", name, "default").get("status") or {}


def running(user: Client, name: str) -> bool:
    return status(user, name).get("phase") == "Running"


def events(user: Client, name: str, reason: str) -> list[str]:
    return [e["message"] for e in user.list("Event", "default")["items"]
            if e["involvedObject"].get("name") == name and e["reason"] == reason]


def root_of(k: Kubelet) -> Path:
    return Path(k.root_dir).resolve()


def mounts_of(k: Kubelet, pod_name: str) -> list:
    return [m for c in k.runtime.list_containers() if c.pod_name == pod_name for m in c.mounts]


def secret(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def create_or_rejected(user: Client, obj: dict, needle: str) -> bool:
    """Create ``obj``; True if the apiserver accepted it, False if it rejected it naming ``needle``."""
    try:
        user.create(obj)
        return True
    except APIError as e:
        assert needle in e.message, e.message
        return False


# -- hostPath ------------------------------------------------------------------------------
def test_host_path_resolves_in_node_root_and_mounts_are_recorded(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("web", [{"name": "data", "hostPath": {"path": "/mnt/data", "type": "DirectoryOrCreate"}}],
                    [{"name": "data", "mountPath": "/usr/share/nginx/html"}]))
    drive(k, clock, lambda: running(user, "web"), what="running")
    assert (root_of(k) / "mnt" / "data").is_dir()
    [m] = mounts_of(k, "web")
    assert (m.host_path, m.container_path, m.read_only, m.name) == \
        (str(root_of(k) / "mnt" / "data"), "/usr/share/nginx/html", False, "data")
    cs = status(user, "web")["containerStatuses"][0]
    assert cs["volumeMounts"] == [{"name": "data", "mountPath": "/usr/share/nginx/html", "readOnly": False}]
    # the mount table survives a runtime reload (persisted with its state)
    from node.runtime.fake import FakeRuntime
    again = FakeRuntime(FAST, state_path=str(root_of(k) / "var/lib/kemu/runtime.json"))
    assert [c.mounts for c in again.list_containers()] == [[m]]


def test_host_path_escape_attempts_fail_to_mount(env, tmp_path: Path) -> None:
    user, kubelet, clock = env
    k = kubelet()
    (root_of(k) / "mnt").mkdir(parents=True)
    os.symlink("/etc", root_of(k) / "mnt" / "etc")
    user.create(pod("abs-link", [{"name": "h", "hostPath": {"path": "/mnt/etc"}}],
                    [{"name": "h", "mountPath": "/h"}]))
    user.create(pod("proc", [{"name": "h", "hostPath": {"path": "/proc", "type": "Directory"}}],
                    [{"name": "h", "mountPath": "/h"}]))
    dotdot = create_or_rejected(user, pod("dotdot", [{"name": "h", "hostPath": {"path": "/mnt/../../../etc"}}],
                                          [{"name": "h", "mountPath": "/h"}]), "..")
    want = {"abs-link": 'MountVolume.SetUp failed for volume "h" : hostPath "/mnt/etc" resolves outside',
            "proc": 'MountVolume.SetUp failed for volume "h" : hostPath type check failed: /proc is not a directory'}
    if dotdot:
        want["dotdot"] = "must not contain '..'"
    drive(k, clock, lambda: all(any(w in m for m in events(user, n, "FailedMount")) for n, w in want.items()),
          what="FailedMount events")
    for name in want:
        st = status(user, name)
        assert st["phase"] == "Pending"
        assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert not mounts_of(k, "abs-link") and not mounts_of(k, "proc")
    # /proc with DirectoryOrCreate is the node's own /proc, created inside its root
    user.create(pod("proc-ok", [{"name": "h", "hostPath": {"path": "/proc", "type": "DirectoryOrCreate"}}],
                    [{"name": "h", "mountPath": "/h"}]))
    drive(k, clock, lambda: running(user, "proc-ok"), what="proc-ok running")
    assert mounts_of(k, "proc-ok")[0].host_path == str(root_of(k) / "proc")


# -- secrets and configMaps ----------------------------------------------------------------
def test_secret_item_path_escape_is_never_written(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(secret("creds", passwd="root:x:0:0"))
    accepted = create_or_rejected(user, pod("evil", [{"name": "s", "secret": {
        "secretName": "creds", "items": [{"key": "passwd", "path": "../../etc/passwd"}]}}],
        [{"name": "s", "mountPath": "/s"}]), "..")
    if not accepted:
        return   # the apiserver already refuses it
    drive(k, clock, lambda: any("must not contain '..': ../../etc/passwd" in m
                                for m in events(user, "evil", "FailedMount")), what="FailedMount")
    assert status(user, "evil")["phase"] == "Pending"
    written = [p for p in root_of(k).parent.rglob("passwd")]
    assert written == []


def test_missing_secret_fails_mount_then_succeeds_once_created(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("app", [{"name": "creds", "secret": {"secretName": "creds"}}],
                    [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True}]))
    drive(k, clock, lambda: events(user, "app", "FailedMount"), what="FailedMount")
    assert events(user, "app", "FailedMount")[0] == \
        'MountVolume.SetUp failed for volume "creds" : secret "creds" not found'
    st = status(user, "app")
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    assert not k.runtime.list_containers()
    user.create(secret("creds", username="admin", password="s3cr3t"))
    drive(k, clock, lambda: running(user, "app"), what="running after the secret exists")
    vol = root_of(k) / "var/lib/kubelet/pods" / st_uid(user, "app") / "volumes/kubernetes.io~secret/creds"
    assert (vol / "password").read_text() == "s3cr3t"
    assert ((vol / "password").stat().st_mode & 0o777) == 0o644
    assert os.readlink(vol / "password") == "..data/password"
    [m] = mounts_of(k, "app")
    assert m.read_only and m.host_path == str(vol)
    assert status(user, "app")["containerStatuses"][0]["volumeMounts"] == [
        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True, "recursiveReadOnly": "Disabled"}]


def st_uid(user: Client, name: str) -> str:
    return user.get("Pod", name, "default")["metadata"]["uid"]


def test_config_map_update_reaches_the_file(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                 "data": {"mode": "blue"}})
    user.create(pod("app", [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600}}],
                    [{"name": "cfg", "mountPath": "/etc/cfg"}]))
    drive(k, clock, lambda: running(user, "app"), what="running")
    f = root_of(k) / "var/lib/kubelet/pods" / st_uid(user, "app") / "volumes/kubernetes.io~configmap/cfg/mode"
    assert f.read_text() == "blue" and (f.stat().st_mode & 0o777) == 0o600
    cm = user.get("ConfigMap", "cfg", "default")
    cm["data"] = {"mode": "green"}
    user.update(cm)
    drive(k, clock, lambda: f.read_text() == "green", steps=2 * int(FAST.kubelet_sync_frequency / 0.05) + 20,
          what="the update reaching the file within the sync period")


def test_downward_api_volume(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    p = pod("dapi", [{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory",
                                             "divisor": "1Mi"}}]}}],
        [{"name": "info", "mountPath": "/etc/podinfo"}])
    p["metadata"]["labels"] = {"zone": "us", "app": "x"}
    user.create(p)
    drive(k, clock, lambda: running(user, "dapi"), what="running")
    vol = Path(mounts_of(k, "dapi")[0].host_path)
    assert (vol / "labels").read_text() == 'app="x"\nzone="us"'
    assert (vol / "name").read_text() == "dapi"
    assert (vol / "mem").read_text() == str(16 * 1024)   # no limit: the node's allocatable (16Gi)


# -- emptyDir, teardown, eviction --------------------------------------------------------------
def test_empty_dir_torn_down_host_path_kept_on_delete(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("app", [{"name": "scratch", "emptyDir": {}},
                            {"name": "data", "hostPath": {"path": "/srv", "type": "DirectoryOrCreate"}}],
                    [{"name": "scratch", "mountPath": "/tmp"}, {"name": "data", "mountPath": "/srv"}]))
    drive(k, clock, lambda: running(user, "app"), what="running")
    uid = st_uid(user, "app")
    scratch = root_of(k) / "var/lib/kubelet/pods" / uid / "volumes/kubernetes.io~empty-dir/scratch"
    assert scratch.is_dir()
    (root_of(k) / "srv" / "keep.txt").write_text("data")
    user.delete("Pod", "app", "default")
    drive(k, clock, lambda: not (root_of(k) / "var/lib/kubelet/pods" / uid).exists(), what="teardown")
    assert (root_of(k) / "srv" / "keep.txt").read_text() == "data"


def test_empty_dir_size_limit_evicts_the_pod(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("hog", [{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}],
                    [{"name": "cache", "mountPath": "/cache"}]))
    drive(k, clock, lambda: running(user, "hog"), what="running")
    vol = Path(mounts_of(k, "hog")[0].host_path)
    with open(vol / "big", "wb") as f:
        f.truncate(2 * 2**20)   # sparse: 2 MiB apparent
    st = drive(k, clock, lambda: (s := status(user, "hog")).get("phase") == "Failed" and s, what="evicted")
    assert st["reason"] == "Evicted"
    assert st["message"] == 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '
    assert any(c["type"] == "DisruptionTarget" and c["reason"] == "TerminationByKubelet" for c in st["conditions"])
    drive(k, clock, lambda: events(user, "hog", "Evicted"), what="Evicted event")
    assert not vol.exists()


def _disk_pressure(user: Client) -> dict:
    return next(c for c in user.get("Node", "node-1")["status"]["conditions"] if c["type"] == "DiskPressure")


def test_disk_pressure_on_and_off(env) -> None:
    user, kubelet, clock = env
    k = kubelet(ephemeral_storage="100Mi")
    user.create(pod("victim", [], []))
    drive(k, clock, lambda: running(user, "victim"), what="running")
    assert _disk_pressure(user)["status"] == "False"
    big = root_of(k) / "var" / "log" / "huge.log"
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as f:
        f.truncate(95 * 2**20)   # sparse, 95 MiB apparent: 5 MiB available < 10%
    cond = drive(k, clock, lambda: (c := _disk_pressure(user))["status"] == "True" and c, what="DiskPressure")
    assert (cond["reason"], cond["message"]) == ("KubeletHasDiskPressure", "kubelet has disk pressure")
    st = drive(k, clock, lambda: (s := status(user, "victim")).get("phase") == "Failed" and s, what="evicted")
    assert st["reason"] == "Evicted"
    assert st["message"].startswith("The node was low on resource: ephemeral-storage. Threshold quantity: 10Mi, "
                                    "available: ")
    # a new pod is refused while the node is under pressure
    user.create(pod("late", [], []))
    st = drive(k, clock, lambda: (s := status(user, "late")).get("phase") == "Failed" and s, what="rejected")
    assert (st["reason"], st["message"]) == ("Evicted", "Pod was rejected: The node had condition: [DiskPressure]. ")
    big.unlink()
    steps = int((FAST.eviction_pressure_transition_period + 2) / 0.05) + 50
    cond = drive(k, clock, lambda: (c := _disk_pressure(user))["status"] == "False" and c, steps=steps,
                 what="no DiskPressure")
    assert cond["reason"] == "KubeletHasNoDiskPressure"


# -- persistentVolumeClaim -------------------------------------------------------------------
def _bind(user: Client, pv: dict, pvc: dict) -> None:
    user.create(pv)
    user.create(pvc)
    claim = user.get("PersistentVolumeClaim", pvc["metadata"]["name"], "default")
    claim["spec"]["volumeName"] = pv["metadata"]["name"]
    claim = user.update(claim)
    claim["status"] = {"phase": "Bound", "accessModes": pvc["spec"]["accessModes"],
                       "capacity": pv["spec"]["capacity"]}
    user.update_status(claim)
    vol = user.get("PersistentVolume", pv["metadata"]["name"])
    vol["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "default",
                               "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"]}
    vol = user.update(vol)
    vol["status"] = {"phase": "Bound"}
    user.update_status(vol)


def _pv(name: str, source: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", **source}}


def _pvc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def test_pvc_host_path_pv_data_lands_in_node_root(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    _bind(user, _pv("task-pv-volume", {"hostPath": {"path": "/mnt/data"}}), _pvc("task-pv-claim"))
    user.create(pod("task-pv-pod", [{"name": "task-pv-storage", "persistentVolumeClaim": {"claimName": "task-pv-claim"}}],
                    [{"name": "task-pv-storage", "mountPath": "/usr/share/nginx/html"}]))
    drive(k, clock, lambda: running(user, "task-pv-pod"), what="running")
    [m] = mounts_of(k, "task-pv-pod")
    assert m.host_path == str(root_of(k) / "mnt" / "data")
    Path(m.host_path, "index.html").write_text("Hello from Kubernetes storage")
    user.delete("Pod", "task-pv-pod", "default")
    drive(k, clock, lambda: not k.runtime.list_containers(), what="pod gone")
    assert (root_of(k) / "mnt/data/index.html").read_text() == "Hello from Kubernetes storage"


def test_pvc_unbound_then_missing_fail_mount(env) -> None:
    user, kubelet, clock = env
    k = kubelet()
    user.create(_pvc("waiting"))
    user.create(pod("a", [{"name": "d", "persistentVolumeClaim": {"claimName": "waiting"}}],
                    [{"name": "d", "mountPath": "/d"}]))
    user.create(pod("b", [{"name": "d", "persistentVolumeClaim": {"claimName": "nope"}}],
                    [{"name": "d", "mountPath": "/d"}]))
    drive(k, clock, lambda: events(user, "a", "FailedMount") and events(user, "b", "FailedMount"),
          what="FailedMount")
    assert events(user, "a", "FailedMount")[0].endswith("error processing PVC default/waiting: PVC is not bound")
    assert 'persistentvolumeclaims "nope" not found' in events(user, "b", "FailedMount")[0]
    assert status(user, "a")["phase"] == "Pending"


def test_pvc_shared_dir_csi_and_local(env, tmp_path: Path) -> None:
    user, kubelet, clock = env
    k = kubelet()
    _bind(user, _pv("pv-shared", {"csi": {"driver": "kemu.io/shared-dir", "volumeHandle": "pv-shared"}}),
          _pvc("shared-claim"))
    user.create(pod("s", [{"name": "d", "persistentVolumeClaim": {"claimName": "shared-claim"}}],
                    [{"name": "d", "mountPath": "/d"}]))
    drive(k, clock, lambda: events(user, "s", "FailedAttachVolume"), what="FailedAttachVolume (no dir yet)")
    (tmp_path / "shared" / "pv-shared").mkdir()
    drive(k, clock, lambda: running(user, "s"), steps=800, what="running")
    assert mounts_of(k, "s")[0].host_path == str(tmp_path / "shared" / "pv-shared")
    # local PV with node affinity to this node
    (root_of(k) / "var/lib/kemu/storage/pv-local").mkdir(parents=True)
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}
    _bind(user, _pv("pv-local", {"local": {"path": "/var/lib/kemu/storage/pv-local"}, "nodeAffinity": affinity}),
          _pvc("local-claim"))
    user.create(pod("l", [{"name": "d", "persistentVolumeClaim": {"claimName": "local-claim"}}],
                    [{"name": "d", "mountPath": "/d"}]))
    drive(k, clock, lambda: running(user, "l"), what="running")
    assert mounts_of(k, "l")[0].host_path == str(root_of(k) / "var/lib/kemu/storage/pv-local")
    link = root_of(k) / "var/lib/kubelet/pods" / st_uid(user, "l") / "volumes/kubernetes.io~local-volume/pv-local"
    assert os.readlink(link) == str(root_of(k) / "var/lib/kemu/storage/pv-local")


# -- housekeeping does no work that cannot change its outcome ----------------------------------
def test_housekeeping_skips_the_summary_while_the_runtime_is_unchanged_and_unlimited_pods_volumes(
        env, monkeypatch) -> None:
    from node.kubelet import stats
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("plain", [{"name": "scratch", "emptyDir": {}}], [{"name": "scratch", "mountPath": "/s"}]))
    drive(k, clock, lambda: running(user, "plain"), what="running")
    summaries, measured = [], []
    real_summary, real_usage = stats.summary, k.volumes.volume_usage
    monkeypatch.setattr(stats, "summary", lambda *a: summaries.append(1) or real_summary(*a))
    monkeypatch.setattr(k.volumes, "volume_usage", lambda p, *a: measured.append(p["metadata"]["name"])
                        or real_usage(p, *a))
    k._housekeeping(clock.mono())                   # up to date with the runtime
    summaries.clear()
    k._housekeeping(clock.mono())
    k._housekeeping(clock.mono())
    assert summaries == [] and measured == []
    user.create(pod("limited", [{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}],
                    [{"name": "cache", "mountPath": "/c"}]))
    drive(k, clock, lambda: running(user, "limited"), what="running")
    summaries.clear()
    measured.clear()
    k.runtime.tick(clock.mono())
    k.runtime.start_container(k.runtime.create_container(          # a change: the summary is redone once
        k.runtime.list_pod_sandboxes()[0].id, {"metadata": {}}, {"name": "x", "image": "x"}, 0))
    k._housekeeping(clock.mono())
    k._housekeeping(clock.mono())
    assert summaries == [1] and measured == ["limited", "limited"]
