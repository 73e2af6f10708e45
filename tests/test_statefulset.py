"""The StatefulSet controller against a real apiserver (in-process), driven by step().

No kubelet: pod readiness is simulated with ``update_status``.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until as run_until

NS = "default"


def sts_manifest(name: str = "web", replicas: int = 3, policy: str = "OrderedReady", claims: bool = True,
                 **spec: object) -> dict:
    m: dict = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": NS},
               "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                        "selector": {"matchLabels": {"app": "nginx"}},
                        "template": {"metadata": {"labels": {"app": "nginx"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                                                              "volumeMounts": [{"name": "www",
                                                                                "mountPath": "/usr/share/nginx/html"}]
                                                              if claims else []}]}},
                        **spec}}
    if claims:
        m["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "www"},
                                              "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "1Gi"}}}}]
    return m


def live_pods(admin: Client) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in admin.list("Pod", NS)["items"]
            if not p["metadata"].get("deletionTimestamp")}


def set_phase(admin: Client, name: str, phase: str = "Running", ready: bool = True) -> None:
    pod = admin.get("Pod", name, NS)
    stamp = cu.format_time(time.time())
    pod["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                     "lastTransitionTime": stamp}]}
    admin.update_status(pod)


def sts_status(admin: Client, name: str = "web") -> dict:
    return admin.get("StatefulSet", name, NS).get("status") or {}


def events(admin: Client, reason: str) -> list[str]:
    return [e["message"] for e in admin.list("Event", NS)["items"] if e["reason"] == reason]


@pytest.fixture
def cluster(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("statefulset",))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def settle(cm: ControllerManager, turns: int = 20) -> None:
    for _ in range(turns):
        cm.step(0.01)


def test_ordered_ready_creates_pods_and_claims_one_at_a_time(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest())
    run_until(cm, lambda: "web-0" in live_pods(admin), "web-0 created")
    settle(cm)
    assert set(live_pods(admin)) == {"web-0"}   # web-1 waits for web-0 to be Running and Ready
    pod = live_pods(admin)["web-0"]
    md, spec = pod["metadata"], pod["spec"]
    assert md["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert md["labels"]["apps.kubernetes.io/pod-index"] == "0"
    assert md["labels"]["controller-revision-hash"].startswith("web-")
    assert md["ownerReferences"][0]["kind"] == "StatefulSet" and md["ownerReferences"][0]["controller"] is True
    assert spec["hostname"] == "web-0" and spec["subdomain"] == "nginx"
    assert {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}} in spec["volumes"]
    claim = admin.get("PersistentVolumeClaim", "www-web-0", NS)
    assert claim["metadata"]["labels"] == {"app": "nginx"}
    assert not claim["metadata"].get("ownerReferences")   # Retain/Retain: no owner
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    set_phase(admin, "web-0", "Running", ready=False)
    settle(cm)
    assert set(live_pods(admin)) == {"web-0"}   # Running but not Ready: still waits
    set_phase(admin, "web-0")
    run_until(cm, lambda: "web-1" in live_pods(admin), "web-1 created")
    set_phase(admin, "web-1")
    run_until(cm, lambda: "web-2" in live_pods(admin), "web-2 created")
    set_phase(admin, "web-2")
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 3, "3 ready")
    st = sts_status(admin)
    assert st["replicas"] == 3 and st["currentReplicas"] == 3 and st["updatedReplicas"] == 3
    assert st["availableReplicas"] == 3 and st["observedGeneration"] == 1
    assert st["currentRevision"] == st["updateRevision"] == pod["metadata"]["labels"]["controller-revision-hash"]
    revs = admin.list("ControllerRevision", NS)["items"]
    assert [r["metadata"]["name"] for r in revs] == [st["updateRevision"]] and revs[0]["revision"] == 1
    assert "create Pod web-0 in StatefulSet web successful" in events(admin, "SuccessfulCreate")
    assert "create Claim www-web-0 Pod web-0 in StatefulSet web success" in events(admin, "SuccessfulCreate")
    assert all(c.next_due() > cm.clock() for c in cm.controllers)   # idle: no busy loop


def test_scale_down_from_highest_ordinal_keeps_claims(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=3, policy="Parallel"))
    run_until(cm, lambda: len(live_pods(admin)) == 3, "3 pods at once (Parallel)")
    for n in ("web-0", "web-1", "web-2"):
        set_phase(admin, n)
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 3, "3 ready")
    admin.patch("StatefulSet", "web", {"spec": {"replicas": 1}}, NS, subresource="scale")
    run_until(cm, lambda: set(live_pods(admin)) == {"web-0"}, "scaled to 1")
    assert {c["metadata"]["name"] for c in admin.list("PersistentVolumeClaim", NS)["items"]} == \
        {"www-web-0", "www-web-1", "www-web-2"}   # whenScaled: Retain
    assert "delete Pod web-2 in StatefulSet web successful" in events(admin, "SuccessfulDelete")


def test_ordered_scale_down_one_at_a_time(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=3, claims=False))
    for n in ("web-0", "web-1", "web-2"):
        run_until(cm, lambda n=n: n in live_pods(admin), f"{n} created")
        set_phase(admin, n)
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 3, "3 ready")
    admin.patch("StatefulSet", "web", {"spec": {"replicas": 1}}, NS)
    # pods have no node: the apiserver deletes them at once; the controller still goes one at a time
    run_until(cm, lambda: set(live_pods(admin)) == {"web-0"}, "scaled to 1")
    deletes = events(admin, "SuccessfulDelete")
    assert deletes == ["delete Pod web-2 in StatefulSet web successful",
                       "delete Pod web-1 in StatefulSet web successful"]


def test_failed_pod_is_recreated_with_the_same_name(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=1))
    run_until(cm, lambda: "web-0" in live_pods(admin), "web-0 created")
    uid = live_pods(admin)["web-0"]["metadata"]["uid"]
    set_phase(admin, "web-0", "Failed", ready=False)
    def recreated() -> bool:
        p = live_pods(admin).get("web-0")
        return p is not None and p["metadata"]["uid"] != uid
    run_until(cm, recreated, "web-0 recreated")
    pod = live_pods(admin)["web-0"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "www-web-0"
    assert len(admin.list("PersistentVolumeClaim", NS)["items"]) == 1


def test_rolling_update_from_highest_ordinal_honours_partition(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=3, claims=False))
    for n in ("web-0", "web-1", "web-2"):
        run_until(cm, lambda n=n: n in live_pods(admin), f"{n} created")
        set_phase(admin, n)
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 3, "3 ready")
    rev1 = sts_status(admin)["currentRevision"]
    admin.patch("StatefulSet", "web", {"spec": {
        "updateStrategy": {"rollingUpdate": {"partition": 1}},
        "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}}, NS)
    run_until(cm, lambda: sts_status(admin).get("updateRevision") not in (None, rev1), "update revision")
    rev2 = sts_status(admin)["updateRevision"]

    def image(n: str) -> str | None:
        p = live_pods(admin).get(n)
        return p["spec"]["containers"][0]["image"] if p else None
    run_until(cm, lambda: image("web-2") == "nginx:1.26", "web-2 updated")
    settle(cm)
    assert image("web-1") == "nginx:1.25"   # web-2 is not Ready yet: web-1 waits
    set_phase(admin, "web-2")
    run_until(cm, lambda: image("web-1") == "nginx:1.26", "web-1 updated")
    set_phase(admin, "web-1")
    run_until(cm, lambda: sts_status(admin).get("updatedReplicas") == 2 and sts_status(admin).get("readyReplicas") == 3,
              "2 updated")
    settle(cm)
    assert image("web-0") == "nginx:1.25"   # below the partition
    st = sts_status(admin)
    assert st["currentRevision"] == rev1 and st["updateRevision"] == rev2 and st["currentReplicas"] == 1
    assert live_pods(admin)["web-0"]["metadata"]["labels"]["controller-revision-hash"] == rev1
    admin.patch("StatefulSet", "web", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}, NS)
    run_until(cm, lambda: image("web-0") == "nginx:1.26", "web-0 updated")
    set_phase(admin, "web-0")
    run_until(cm, lambda: sts_status(admin).get("currentRevision") == rev2, "rollout complete")
    assert sts_status(admin)["currentReplicas"] == 3
    assert len(admin.list("ControllerRevision", NS)["items"]) == 2


def test_on_delete_replaces_only_deleted_pods(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=2, claims=False, updateStrategy={"type": "OnDelete"}))
    for n in ("web-0", "web-1"):
        run_until(cm, lambda n=n: n in live_pods(admin), f"{n} created")
        set_phase(admin, n)
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 2, "2 ready")
    admin.patch("StatefulSet", "web", {"spec": {
        "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}}, NS)
    run_until(cm, lambda: sts_status(admin).get("updateRevision") != sts_status(admin).get("currentRevision"),
              "new revision")
    settle(cm)
    assert {p["spec"]["containers"][0]["image"] for p in live_pods(admin).values()} == {"nginx:1.25"}
    admin.delete("Pod", "web-1", NS)
    def replaced() -> bool:
        p = live_pods(admin).get("web-1")
        return p is not None and p["spec"]["containers"][0]["image"] == "nginx:1.26"
    run_until(cm, replaced, "web-1 replaced at the new revision")
    assert live_pods(admin)["web-0"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_retention_delete_sets_owner_references(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(sts_manifest(replicas=2, policy="Parallel", persistentVolumeClaimRetentionPolicy={
        "whenDeleted": "Delete", "whenScaled": "Delete"}))
    run_until(cm, lambda: len(live_pods(admin)) == 2, "2 pods")
    sts = admin.get("StatefulSet", "web", NS)
    claim = admin.get("PersistentVolumeClaim", "www-web-1", NS)
    assert claim["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": sts["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    for n in ("web-0", "web-1"):
        set_phase(admin, n)
    run_until(cm, lambda: sts_status(admin).get("readyReplicas") == 2, "2 ready")
    pod1 = live_pods(admin)["web-1"]
    admin.patch("StatefulSet", "web", {"spec": {"replicas": 1}}, NS)
    run_until(cm, lambda: "web-1" not in live_pods(admin), "web-1 gone")
    # the claim of a scaled-down pod is handed to the pod (the garbage collector then deletes it)
    refs = [r for r in admin.get("PersistentVolumeClaim", "www-web-1", NS)["metadata"]["ownerReferences"]]
    assert refs == [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": pod1["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}]


def claim_states(admin: Client) -> dict[str, str]:
    """claim name -> "live" or "terminating" (being deleted, e.g. held by pvc-protection)."""
    return {c["metadata"]["name"]: "terminating" if c["metadata"].get("deletionTimestamp") else "live"
            for c in admin.list("PersistentVolumeClaim", NS)["items"]}


def test_deleting_the_set_deletes_claims_only_with_when_deleted_delete(mem_server) -> None:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("statefulset", "garbagecollector"))
    cm.start()
    try:
        admin.create(sts_manifest(name="keep", replicas=1, claims=True))
        deleted = sts_manifest(name="drop", replicas=1, claims=True,
                               persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
        deleted["spec"]["selector"] = {"matchLabels": {"app": "drop"}}
        deleted["spec"]["template"]["metadata"]["labels"] = {"app": "drop"}
        admin.create(deleted)
        run_until(cm, lambda: {"keep-0", "drop-0"} <= set(live_pods(admin)), "both pods")
        claim_uid = admin.get("PersistentVolumeClaim", "www-keep-0", NS)["metadata"]["uid"]
        for name in ("keep", "drop"):
            admin.delete("StatefulSet", name, NS)
        run_until(cm, lambda: not live_pods(admin), "pods collected")
        run_until(cm, lambda: claim_states(admin).get("www-drop-0", "gone") != "live", "drop's claim collected")
        assert claim_states(admin)["www-keep-0"] == "live"
        # a new set of the same name adopts the retained claim: the data stays with web-0's identity
        admin.create(sts_manifest(name="keep", replicas=1, claims=True))
        run_until(cm, lambda: "keep-0" in live_pods(admin), "keep-0 again")
        assert admin.get("PersistentVolumeClaim", "www-keep-0", NS)["metadata"]["uid"] == claim_uid
    finally:
        cmc.close()
        admin.close()
