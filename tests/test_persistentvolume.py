"""The PersistentVolume binder against a real apiserver (in-process), driven by step()."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import poll_for, step_until

STORAGE_CONTROLLERS = ("persistentvolume-binder", "persistentvolume-provisioner", "pvc-protection", "pv-protection")


# The "Configure a Pod to Use a PersistentVolume for Storage" manifests, unchanged.
TASK_PV = {"apiVersion": "v1", "kind": "PersistentVolume",
           "metadata": {"name": "task-pv-volume", "labels": {"type": "local"}},
           "spec": {"storageClassName": "manual", "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/mnt/data"}}}
TASK_PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "task-pv-claim"},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "3Gi"}}}}


def claim(name: str, size: str = "1Gi", cls: str | None = None, modes: tuple = ("ReadWriteOnce",),
          anns: dict | None = None) -> dict:
    spec: dict = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    md: dict = {"name": name, "namespace": "default"}
    if anns:
        md["annotations"] = anns
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md, "spec": spec}


def storage_class(name: str, provisioner: str, mode: str = "Immediate", default: bool = False,
                  policy: str = "Delete") -> dict:
    md: dict = {"name": name}
    if default:
        md["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": md,
            "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": policy}


def node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}


def pvc_phase(admin: Client, name: str) -> str | None:
    return (admin.get("PersistentVolumeClaim", name, "default").get("status") or {}).get("phase")


def events(admin: Client, name: str, reason: str | None = None) -> list[dict]:
    return [e for e in admin.list("Event", "default")["items"]
            if e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)]


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "nodes", tmp_path / "shared"


@pytest.fixture
def cluster(mem_server, roots) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=STORAGE_CONTROLLERS, nodes_root=str(roots[0]),
                           shared_root=str(roots[1]))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def test_docs_static_pv_binds_claim(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PV)
    step_until(cm, lambda: admin.get("PersistentVolume", "task-pv-volume")["status"]["phase"] == "Available",
               "PV Available")
    pvc = admin.create(TASK_PVC, "default")
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "claim Bound")
    pv = admin.get("PersistentVolume", "task-pv-volume")
    got = admin.get("PersistentVolumeClaim", "task-pv-claim", "default")
    assert pv["status"]["phase"] == "Bound"
    ref = pv["spec"]["claimRef"]
    assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"], ref["apiVersion"]) == \
        ("PersistentVolumeClaim", "default", "task-pv-claim", pvc["metadata"]["uid"], "v1")
    assert ref["resourceVersion"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert got["spec"]["volumeName"] == "task-pv-volume"
    assert got["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert got["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert got["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}
    # Retain: deleting the claim leaves the volume Released, with its claimRef
    admin.delete("PersistentVolumeClaim", "task-pv-claim", "default")
    step_until(cm, lambda: admin.get("PersistentVolume", "task-pv-volume")["status"]["phase"] == "Released",
               "PV Released")
    for _ in range(10):
        cm.step(0.01)
    pv = admin.get("PersistentVolume", "task-pv-volume")
    assert pv["status"]["phase"] == "Released" and pv["spec"]["claimRef"]["name"] == "task-pv-claim"


def test_smallest_fit_and_selector(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    for name, size, labels in (("big", "100Gi", {}), ("mid", "5Gi", {}), ("labelled", "50Gi", {"tier": "gold"})):
        admin.create({**TASK_PV, "metadata": {"name": name, "labels": labels},
                      "spec": {**TASK_PV["spec"], "capacity": {"storage": size}}})
    admin.create(claim("a", "3Gi", "manual"))
    sel = claim("b", "3Gi", "manual")
    sel["spec"]["selector"] = {"matchLabels": {"tier": "gold"}}
    admin.create(sel)
    step_until(cm, lambda: pvc_phase(admin, "a") == "Bound" and pvc_phase(admin, "b") == "Bound", "both Bound")
    assert admin.get("PersistentVolumeClaim", "a", "default")["spec"]["volumeName"] == "mid"
    assert admin.get("PersistentVolumeClaim", "b", "default")["spec"]["volumeName"] == "labelled"
    assert admin.get("PersistentVolume", "big")["status"]["phase"] == "Available"


def test_oversize_claim_stays_pending_with_event(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create({**TASK_PV, "spec": {**TASK_PV["spec"], "storageClassName": ""}})
    admin.create(claim("huge", "1Ti", ""))
    ev = step_until(cm, lambda: events(admin, "huge", "FailedBinding"), "FailedBinding event")
    assert ev[0]["type"] == "Normal"   # type: ignore[index]
    assert ev[0]["message"] == "no persistent volumes available for this claim and no storage class is set"  # type: ignore[index]
    assert ev[0]["source"]["component"] == "persistentvolume-controller"   # type: ignore[index]
    assert pvc_phase(admin, "huge") == "Pending"
    assert admin.get("PersistentVolume", "task-pv-volume")["status"]["phase"] == "Available"


def test_unknown_class_fails_provisioning(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(claim("lost", "1Gi", "nope"))
    ev = step_until(cm, lambda: events(admin, "lost", "ProvisioningFailed"), "ProvisioningFailed event")
    assert ev[0]["type"] == "Warning"   # type: ignore[index]
    assert ev[0]["message"] == 'storageclass.storage.k8s.io "nope" not found'   # type: ignore[index]
    assert pvc_phase(admin, "lost") == "Pending"


def test_claim_naming_a_volume_binds_only_to_it(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create({**TASK_PV, "metadata": {"name": "small"},
                  "spec": {**TASK_PV["spec"], "capacity": {"storage": "4Gi"}}})
    admin.create({**TASK_PV, "metadata": {"name": "chosen"}})
    c = claim("named", "3Gi", "manual")
    c["spec"]["volumeName"] = "chosen"
    admin.create(c)
    step_until(cm, lambda: pvc_phase(admin, "named") == "Bound", "named claim Bound")
    assert admin.get("PersistentVolume", "chosen")["spec"]["claimRef"]["name"] == "named"
    assert "pv.kubernetes.io/bound-by-controller" not in \
        admin.get("PersistentVolumeClaim", "named", "default")["metadata"].get("annotations", {})
    assert admin.get("PersistentVolume", "small")["status"]["phase"] == "Available"


def test_deleted_volume_makes_claim_lost(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PV)
    admin.create(TASK_PVC, "default")
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "claim Bound")
    admin.patch("PersistentVolume", "task-pv-volume", {"metadata": {"finalizers": []}})
    admin.delete("PersistentVolume", "task-pv-volume")
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Lost", "claim Lost")
    ev = events(admin, "task-pv-claim", "ClaimLost")
    assert ev and ev[0]["message"] == "Bound claim has lost its PersistentVolume. Data on the volume is lost!"


def test_delete_policy_on_static_volume_fails(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create({**TASK_PV, "spec": {**TASK_PV["spec"], "persistentVolumeReclaimPolicy": "Delete"}})
    admin.create(TASK_PVC, "default")
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "claim Bound")
    admin.delete("PersistentVolumeClaim", "task-pv-claim", "default")
    pv = step_until(cm, lambda: (p := admin.get("PersistentVolume", "task-pv-volume"))["status"]["phase"] == "Failed"
                    and p, "PV Failed")
    msg = ('failed to create deleter for volume "task-pv-volume": host_path deleter only supports /tmp/.+ '
           "but received provided /mnt/data")
    assert pv["status"]["message"] == msg   # type: ignore[index]
    assert [e["message"] for e in events(admin, "task-pv-volume", "VolumeFailedDelete")] == [msg]


def test_many_claims_bind(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    n = 200
    admin.pipeline([("create", {"object": {**TASK_PV, "metadata": {"name": f"pv-{i:03}"}}}) for i in range(n)])
    admin.pipeline([("create", {"object": claim(f"c-{i:03}", "3Gi", "manual"), "namespace": "default"})
                    for i in range(n)])

    def bound() -> bool:
        items = admin.list_all("PersistentVolumeClaim", "default")["items"]
        return sum((c.get("status") or {}).get("phase") == "Bound" for c in items) == n
    step_until(cm, bound, f"{n} claims Bound", timeout=60)
    names = {c["spec"]["volumeName"] for c in admin.list_all("PersistentVolumeClaim", "default")["items"]}
    assert len(names) == n   # no volume given twice


class _DeadClient:
    """A client whose apiserver is gone: every send fails as Client.send does."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, op: str, **args: object) -> int:
        from emulator.api.errors import APIError
        self.sent += 1
        raise APIError("Unavailable", "cannot connect to the apiserver")


def test_run_chains_never_raises_and_stops_sending_when_down() -> None:
    from control.controllers.persistentvolume import run_chains
    got: list[object] = []

    def chain() -> object:
        res = yield ("get", {"kind": "Node", "name": "x"})
        got.append(res)
        if not isinstance(res, Exception):
            yield ("get", {"kind": "Node", "name": "y"})

    client = _DeadClient()
    run_chains(client, [chain() for _ in range(5)])   # type: ignore[arg-type]
    assert len(got) == 5 and all(getattr(e, "code", None) == "Unavailable" for e in got)
    assert client.sent == 1    # once the apiserver is known down, nothing more is sent


def test_binding_survives_a_lost_apiserver(threaded_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = str(tmp_path / "store")
    srv = threaded_server(data_dir=data)
    addr = srv.address
    admin = Client(addr, component="test")
    cmc = Client(addr, component="controller-manager", timeout=0.3)
    try:
        cm = ControllerManager(cmc, FAST, controllers=STORAGE_CONTROLLERS)
        cm.start()
        admin.create(TASK_PV)
        admin.create(TASK_PVC, "default")
        poll_for(lambda: (cmc.poll(0.02), cm.informers.process()) and
                 cm.informers.informer("PersistentVolumeClaim").get("task-pv-claim", "default"),
                 5, what="the claim in the cache")
        srv.stop()
        cm.step(0.01)     # every write fails; nothing raises
        assert cm.controllers[0].dirty_claims or cm.controllers[0].dirty_volumes   # type: ignore[attr-defined]
        threaded_server(listen=addr, data_dir=data)
        step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "Bound after the apiserver returns",
                   timeout=30)
    finally:
        cmc.close()
        admin.close()


def test_claim_created_before_its_volume_binds_without_waiting_for_resync(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PVC, "default")
    for _ in range(5):
        cm.step(0.01)
    admin.create(TASK_PV)
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "claim Bound", timeout=5)
