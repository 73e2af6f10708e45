"""The Deployment and ReplicaSet controllers together against a real apiserver (in-process).

Pod readiness is simulated: a fake kubelet marks pods Running and Ready by
patching their status."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.deployment_logic import REVISION
from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST


class Cluster:
    def __init__(self, admin: Client, cm: ControllerManager) -> None:
        self.admin, self.cm = admin, cm
        self.ready = True
        self.max_total = 0
        self.min_available: int | None = None

    def fake_kubelet(self) -> None:
        if not self.ready:
            return
        stamp = cu.format_time(time.time() - 1)
        for p in self.admin.list("Pod", "default")["items"]:
            if p["metadata"].get("deletionTimestamp") or cu.is_pod_ready(p):
                continue
            p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                               "lastTransitionTime": stamp}]}
            self.admin.update_status(p)

    def run_until(self, pred: Callable[[], object], what: str, timeout: float = 10.0,
                  check: Callable[[], None] | None = None) -> object:
        deadline = time.monotonic() + timeout
        while True:
            self.cm.step(0.02)
            self.fake_kubelet()
            if check:
                check()
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")

    def deploy(self) -> dict:
        return self.admin.get("Deployment", "web", "default")

    def rss(self) -> list[dict]:
        return self.admin.list("ReplicaSet", "default")["items"]

    def pods(self) -> list[dict]:
        return [p for p in self.admin.list("Pod", "default")["items"] if not p["metadata"].get("deletionTimestamp")]

    def complete(self, image: str | None = None, replicas: int = 3) -> bool:
        d = self.deploy()
        s = d.get("status") or {}
        ok = (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == replicas
              and s.get("replicas") == replicas and s.get("availableReplicas") == replicas)
        if image is not None:
            ok = ok and all(p["spec"]["containers"][0]["image"] == image for p in self.pods())
        return ok and len(self.pods()) == replicas


def manifest(replicas: int = 3, image: str = "nginx:1", **spec: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


def set_image(admin: Client, image: str) -> None:
    admin.patch("Deployment", "web", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
                "default")


@pytest.fixture
def cluster(mem_server) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("replicaset", "deployment"))
    cm.start()
    yield Cluster(admin, cm)
    cmc.close()
    admin.close()


def conditions(d: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}


def test_create_then_rolling_update_within_bounds(cluster: Cluster) -> None:
    c = cluster
    c.admin.create(manifest(4, strategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}))
    c.run_until(lambda: c.complete(replicas=4), "first rollout")
    (rs1,) = c.rss()
    d = c.deploy()
    h = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"web-{h}"
    assert rs1["metadata"]["annotations"][REVISION] == "1" and d["metadata"]["annotations"][REVISION] == "1"
    assert all(p["metadata"]["labels"]["pod-template-hash"] == h for p in c.pods())
    cond = conditions(d)
    assert (cond["Available"]["status"], cond["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert cond["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert cond["Progressing"]["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    ev = [e["message"] for e in c.admin.list("Event", "default")["items"] if e["reason"] == "ScalingReplicaSet"]
    assert f"Scaled up replica set web-{h} to 4 from 0" in ev

    def bounds() -> None:   # the RSs' desired counts never break maxSurge
        total = sum(r["spec"]["replicas"] for r in c.rss())
        assert total <= 5, total
    set_image(c.admin, "nginx:2")
    c.run_until(lambda: c.complete("nginx:2", 4), "second rollout", check=bounds)
    rss = {r["metadata"]["annotations"][REVISION]: r for r in c.rss()}
    assert rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == 4
    assert c.deploy()["metadata"]["annotations"][REVISION] == "2"
    ev = [e["message"] for e in c.admin.list("Event", "default")["items"] if e["reason"] == "ScalingReplicaSet"]
    assert any(m.startswith(f"Scaled down replica set web-{h} to ") for m in ev)


def test_recreate(cluster: Cluster) -> None:
    c = cluster
    c.admin.create(manifest(2, strategy={"type": "Recreate"}))
    c.run_until(lambda: c.complete(replicas=2), "first rollout")
    seen_mixed = []

    def never_mixed() -> None:
        images = {p["spec"]["containers"][0]["image"] for p in c.admin.list("Pod", "default")["items"]}
        seen_mixed.append(len(images) > 1)
    set_image(c.admin, "nginx:2")
    c.run_until(lambda: c.complete("nginx:2", 2), "recreate rollout", check=never_mixed)
    assert not any(seen_mixed)


def test_pause_resume_and_scale(cluster: Cluster) -> None:
    c = cluster
    c.admin.create(manifest(2))
    c.run_until(lambda: c.complete(replicas=2), "first rollout")
    c.admin.patch("Deployment", "web", {"spec": {"paused": True}}, "default")
    set_image(c.admin, "nginx:2")
    c.run_until(lambda: conditions(c.deploy())["Progressing"]["reason"] == "DeploymentPaused", "paused")
    for _ in range(20):
        c.cm.step(0.01)
    assert len(c.rss()) == 1   # no new RS while paused
    c.admin.patch("Deployment", "web", {"spec": {"replicas": 3}}, "default")   # a paused Deployment still scales
    c.run_until(lambda: len(c.pods()) == 3 and c.rss()[0]["spec"]["replicas"] == 3, "scaled while paused")
    assert all(p["spec"]["containers"][0]["image"] == "nginx:1" for p in c.pods())
    c.admin.patch("Deployment", "web", {"spec": {"paused": False}}, "default")
    c.run_until(lambda: c.complete("nginx:2", 3), "resumed rollout")


def test_progress_deadline_exceeded(cluster: Cluster) -> None:
    c = cluster
    c.ready = False
    c.admin.create(manifest(2, progressDeadlineSeconds=1))
    p = c.run_until(lambda: (cond := conditions(c.deploy()).get("Progressing")) and
                    cond["reason"] == "ProgressDeadlineExceeded" and cond, "deadline", timeout=8)
    assert p["status"] == "False"   # type: ignore[index]
    assert conditions(c.deploy())["Available"]["reason"] == "MinimumReplicasUnavailable"
    assert c.deploy()["status"]["unavailableReplicas"] == 2


def test_revision_history_limit_and_undo_revision(cluster: Cluster) -> None:
    c = cluster
    c.admin.create(manifest(1, revisionHistoryLimit=1))
    c.run_until(lambda: c.complete(replicas=1), "rollout 1")
    for image in ("nginx:2", "nginx:3"):
        set_image(c.admin, image)
        c.run_until(lambda: c.complete(image, 1), f"rollout {image}")
    c.run_until(lambda: len(c.rss()) == 2, "old RSs cleaned up")
    revs = sorted(r["metadata"]["annotations"][REVISION] for r in c.rss())
    assert revs == ["2", "3"]
    set_image(c.admin, "nginx:2")   # back to an old template: that RS becomes the new one, revision 4
    c.run_until(lambda: c.complete("nginx:2", 1), "rollback")
    revs = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["metadata"]["annotations"][REVISION]
            for r in c.rss()}
    assert revs == {"nginx:2": "4", "nginx:3": "3"}
    assert c.deploy()["metadata"]["annotations"][REVISION] == "4"


def test_hash_collision_bumps_collision_count(cluster: Cluster) -> None:
    c = cluster
    m = manifest(1)
    h = cu.compute_hash(c.admin.create(m)["spec"]["template"])
    c.admin.delete("Deployment", "web", "default")
    c.admin.create({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": f"web-{h}", "namespace": "default"},
                    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "squatter"}},
                             "template": {"metadata": {"labels": {"app": "squatter"}},
                                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    c.admin.create(m)
    c.run_until(lambda: c.complete(replicas=1), "rollout despite the collision")
    assert c.deploy()["status"]["collisionCount"] == 1
    names = {r["metadata"]["name"] for r in c.rss()}
    assert len(names) == 2 and f"web-{h}" in names


def test_proportional_scaling_of_a_stuck_rollout(cluster: Cluster) -> None:
    """Kubernetes' documented example: 10 replicas (maxSurge 3, maxUnavailable 2), a rollout stuck at
    8 old + 5 new, then scaled to 15: 3 go to the old RS and 2 to the new one."""
    c = cluster
    c.admin.create(manifest(10, strategy={"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}))
    c.run_until(lambda: c.complete(replicas=10), "first rollout")
    c.ready = False
    set_image(c.admin, "nginx:bad")

    def sizes() -> dict[str, int]:
        return {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"] for r in c.rss()}
    c.run_until(lambda: sizes() == {"nginx:1": 8, "nginx:bad": 5}, "stuck rollout")
    for _ in range(20):
        c.cm.step(0.01)
    assert sizes() == {"nginx:1": 8, "nginx:bad": 5}
    c.admin.patch("Deployment", "web", {"spec": {"replicas": 15}}, "default")
    c.run_until(lambda: sizes() == {"nginx:1": 11, "nginx:bad": 7}, "proportional scale")
