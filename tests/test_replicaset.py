"""The ReplicaSet controller against a real apiserver (in-process), driven by step()."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until as run_until




def rs_manifest(name: str = "web", replicas: int = 3, min_ready: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def make_ready(admin: Client, pod: dict, when: float | None = None) -> None:
    stamp = cu.format_time(when if when is not None else time.time())
    pod = admin.get("Pod", pod["metadata"]["name"], "default")
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                         "lastTransitionTime": stamp}]}
    admin.update_status(pod)


def pods(admin: Client, app: str = "web") -> list[dict]:
    return [p for p in admin.list("Pod", "default", label_selector=f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture
def cluster(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("replicaset",))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def test_creates_pods_reports_status_and_scales_down(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    rs = admin.create(rs_manifest(replicas=3))
    got = run_until(cm, lambda: len(pods(admin)) == 3 and pods(admin), "3 pods")
    for p in got:   # type: ignore[union-attr]
        assert p["metadata"]["name"].startswith("web-")
        assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                                     "uid": rs["metadata"]["uid"], "controller": True,
                                                     "blockOwnerDeletion": True}]
    for _ in range(20):
        cm.step(0.01)
    assert len(pods(admin)) == 3    # expectations: no double creation
    run_until(cm, lambda: (admin.get("ReplicaSet", "web", "default").get("status") or {}).get("replicas") == 3,
              "status.replicas")
    make_ready(admin, got[0])   # type: ignore[index]
    st = run_until(cm, lambda: (s := admin.get("ReplicaSet", "web", "default")["status"])["readyReplicas"] == 1
                   and s, "readyReplicas")
    assert st["availableReplicas"] == 1 and st["fullyLabeledReplicas"] == 3   # type: ignore[index]
    assert st["observedGeneration"] == 1   # type: ignore[index]
    ev = [e for e in admin.list("Event", "default")["items"] if e["reason"] == "SuccessfulCreate"]
    assert len(ev) == 3 and ev[0]["message"].startswith("Created pod: web-")
    admin.patch("ReplicaSet", "web", {"spec": {"replicas": 1}}, "default")
    run_until(cm, lambda: len(pods(admin)) == 1, "scale down to 1")
    assert pods(admin)[0]["metadata"]["name"] == got[0]["metadata"]["name"]   # type: ignore[index]  # ready kept
    run_until(cm, lambda: [e for e in admin.list("Event", "default")["items"] if e["reason"] == "SuccessfulDelete"],
              "SuccessfulDelete events")
    st = run_until(cm, lambda: (s := admin.get("ReplicaSet", "web", "default")["status"])["replicas"] == 1 and s,
                   "status after scale down")
    assert st["observedGeneration"] == 2   # type: ignore[index]


def test_replaces_deleted_pod_adopts_orphans_and_releases(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": "default",
                                                                   "labels": {"app": "web"}},
                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    rs = admin.create(rs_manifest(replicas=2))
    run_until(cm, lambda: len(pods(admin)) == 2, "2 pods")
    orphan = admin.get("Pod", "orphan", "default")
    assert cu.controller_ref(orphan)["uid"] == rs["metadata"]["uid"]   # type: ignore[index]
    victim = [p for p in pods(admin) if p["metadata"]["name"] != "orphan"][0]
    admin.delete("Pod", victim["metadata"]["name"], "default")
    run_until(cm, lambda: len(pods(admin)) == 2 and victim["metadata"]["name"] not in
              {p["metadata"]["name"] for p in pods(admin)}, "replacement pod")
    admin.patch("Pod", "orphan", {"metadata": {"labels": {"app": "other"}}}, "default")
    run_until(cm, lambda: cu.controller_ref(admin.get("Pod", "orphan", "default")) is None, "released")
    run_until(cm, lambda: len(pods(admin)) == 2, "replacement for the released pod")


def test_min_ready_seconds_requeues(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    admin.create(rs_manifest(replicas=1, min_ready=1))
    got = run_until(cm, lambda: pods(admin), "pod")
    make_ready(admin, got[0])   # type: ignore[index]
    run_until(cm, lambda: (admin.get("ReplicaSet", "web", "default").get("status") or {}).get("readyReplicas") == 1,
              "ready")
    assert admin.get("ReplicaSet", "web", "default")["status"]["availableReplicas"] == 0
    run_until(cm, lambda: admin.get("ReplicaSet", "web", "default")["status"]["availableReplicas"] == 1,
              "available after minReadySeconds", timeout=5)


def test_thousand_replicas_pipelined(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm = cluster
    t0 = time.monotonic()
    admin.create(rs_manifest("big", replicas=1000))
    run_until(cm, lambda: (admin.get("ReplicaSet", "big", "default").get("status") or {}).get("replicas") == 1000,
              "1000 replicas", timeout=60)
    elapsed = time.monotonic() - t0
    assert len(admin.list_all("Pod", "default", label_selector="app=big")["items"]) == 1000
    print(f"1000 replicas in {elapsed:.2f}s")
    admin.patch("ReplicaSet", "big", {"spec": {"replicas": 0}}, "default")
    run_until(cm, lambda: not admin.list("Pod", "default", label_selector="app=big", limit=1)["items"],
              "scale to 0", timeout=60)


class FlakySends:
    """``client.send`` that fails (as a lost connection does) for the next ``n`` sends of ``op``."""

    def __init__(self, client: Client, op: str, n: int) -> None:
        self.client, self.op, self.n, self.real = client, op, n, client.send

    def __call__(self, op: str, **args: object) -> int:
        if op == self.op and self.n > 0:
            self.n -= 1
            from emulator.api import errors
            from emulator.api.errors import APIError
            raise APIError(errors.UNAVAILABLE, "cannot connect to the apiserver: no connection")
        return self.real(op, **args)


@pytest.mark.parametrize("op, start, want", [("delete", 4, 1), ("create", 1, 4)])
def test_a_send_that_fails_leaves_no_expectation_behind(cluster, op: str, start: int, want: int) -> None:  # type: ignore[no-untyped-def]
    """An apiserver lost as the controller sends its creates or deletes: the pods never
    sent are not waited for (expectations lowered), so the next sync finishes the job
    instead of waiting out the 5-minute ExpectationsTimeout (a rollout stalled so)."""
    admin, cm = cluster
    admin.create(rs_manifest(replicas=start))
    run_until(cm, lambda: len(pods(admin)) == start, f"{start} pods")
    cmc = cm.context.client
    cmc.send = FlakySends(cmc, op, 2)   # type: ignore[method-assign]
    admin.patch("ReplicaSet", "web", {"spec": {"replicas": want}}, "default")
    run_until(cm, lambda: len(pods(admin)) == want, f"{want} pods after the failed sends")
    key = ("default", "web")
    rsc = next(c for c in cm.controllers if c.name == "replicaset")
    run_until(cm, lambda: rsc.expectations.satisfied(key, rsc.clock()), "expectations met")
    assert cmc.send.n == 0   # type: ignore[attr-defined]  # both failures happened
