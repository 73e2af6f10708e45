"""pvc-protection and pv-protection: decisions, and against an in-process apiserver."""
from __future__ import annotations

from typing import Iterator

import pytest

from control.controllers import volumeprotection_logic as logic
from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until
from tests.test_persistentvolume import STORAGE_CONTROLLERS, TASK_PV, TASK_PVC, pvc_phase

DELETED = "2024-01-01T00:00:00Z"


def pod(claim: str = "c", node: str | None = "node-1", phase: str = "Running") -> dict:
    spec: dict = {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}},
                              {"name": "e", "emptyDir": {}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec, "status": {"phase": phase}}


def obj(fins: list[str], deleting: bool = False, phase: str = "Pending") -> dict:
    md: dict = {"name": "x", "finalizers": fins}
    if deleting:
        md["deletionTimestamp"] = DELETED
    return {"metadata": md, "status": {"phase": phase}}


def test_pod_uses_claim_only_when_scheduled_and_not_terminated() -> None:
    assert logic.claims_of_pod(pod()) == ["c"]
    assert logic.pod_uses_claim(pod(), "c")
    assert not logic.pod_uses_claim(pod(), "other")
    assert not logic.pod_uses_claim(pod(node=None), "c")
    assert not logic.pod_uses_claim(pod(phase="Succeeded"), "c")
    assert not logic.pod_uses_claim(pod(phase="Failed"), "c")
    assert logic.pod_uses_claim(pod(phase="Pending"), "c")


def test_pvc_finalizer_decisions() -> None:
    fin = logic.PVC_PROTECTION
    assert logic.pvc_finalizers(obj([]), False) == [fin]
    assert logic.pvc_finalizers(obj(["other", fin]), True) is None
    assert logic.pvc_finalizers(obj(["other", fin], deleting=True), True) is None       # in use: waits
    assert logic.pvc_finalizers(obj(["other", fin], deleting=True), False) == ["other"]
    assert logic.pvc_finalizers(obj([], deleting=True), False) is None


def test_pv_finalizer_decisions() -> None:
    fin = logic.PV_PROTECTION
    assert logic.pv_finalizers(obj([])) == [fin]
    assert logic.pv_finalizers(obj([fin], deleting=True, phase="Bound")) is None
    assert logic.pv_finalizers(obj([fin], deleting=True, phase="Released")) == []
    assert logic.pv_finalizers(obj([fin], deleting=True, phase="Available")) == []


@pytest.fixture
def cluster(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=STORAGE_CONTROLLERS)
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def gone(admin: Client, kind: str, name: str, ns: str | None = None) -> bool:
    return not [o for o in admin.list(kind, ns)["items"] if o["metadata"]["name"] == name]


def test_claim_deletion_waits_for_running_pod(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PV)
    admin.create(TASK_PVC, "default")
    step_until(cm, lambda: pvc_phase(admin, "task-pv-claim") == "Bound", "claim Bound")
    p = admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "task-pv-pod", "namespace": "default"},
                      "spec": {"nodeName": "node-1",
                               "volumes": [{"name": "task-pv-storage",
                                            "persistentVolumeClaim": {"claimName": "task-pv-claim"}}],
                               "containers": [{"name": "task-pv-container", "image": "nginx",
                                               "volumeMounts": [{"mountPath": "/usr/share/nginx/html",
                                                                 "name": "task-pv-storage"}]}]}})
    admin.update_status({**p, "status": {"phase": "Running"}})
    admin.delete("PersistentVolumeClaim", "task-pv-claim", "default")
    for _ in range(20):
        cm.step(0.01)
    c = admin.get("PersistentVolumeClaim", "task-pv-claim", "default")
    assert c["metadata"]["deletionTimestamp"] and c["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert c["status"]["phase"] == "Bound"   # Terminating, still bound
    # the PV may not go either while it is Bound
    admin.delete("PersistentVolume", "task-pv-volume")
    for _ in range(10):
        cm.step(0.01)
    assert admin.get("PersistentVolume", "task-pv-volume")["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    admin.delete("Pod", "task-pv-pod", "default", grace_period_seconds=0)
    step_until(cm, lambda: gone(admin, "PersistentVolumeClaim", "task-pv-claim", "default"), "claim gone")
    step_until(cm, lambda: gone(admin, "PersistentVolume", "task-pv-volume"), "volume gone once Released")


def test_finished_pod_does_not_hold_the_claim(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PVC, "default")
    p = admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done", "namespace": "default"},
                      "spec": {"nodeName": "node-1", "restartPolicy": "Never",
                               "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "task-pv-claim"}}],
                               "containers": [{"name": "c", "image": "busybox"}]}})
    admin.update_status({**p, "status": {"phase": "Succeeded"}})
    admin.delete("PersistentVolumeClaim", "task-pv-claim", "default")
    step_until(cm, lambda: gone(admin, "PersistentVolumeClaim", "task-pv-claim", "default"), "claim gone")


def test_missing_finalizers_are_added(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(TASK_PV)
    admin.patch("PersistentVolume", "task-pv-volume", {"metadata": {"finalizers": []}})
    step_until(cm, lambda: admin.get("PersistentVolume", "task-pv-volume")["metadata"].get("finalizers")
               == ["kubernetes.io/pv-protection"], "pv-protection added back")
