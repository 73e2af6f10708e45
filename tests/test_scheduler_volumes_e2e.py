"""The scheduler with the real PV binder and provisioners (controller-manager), in process.

Checks the WaitForFirstConsumer hand-off both ways: the scheduler picks the
node and annotates the claim, the provisioner makes a local PV there, the
binder binds, and only then does the scheduler bind the pod.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.controllers.manager import ControllerManager
from control.scheduler.scheduler import Scheduler
from emulator.client import Client
from emulator.profiles import FAST
from tests.test_persistentvolume import STORAGE_CONTROLLERS, claim, storage_class
from tests.test_scheduler_volumes_integration import claim_pod
from tests.test_scheduler_logic import node as node_obj

SELECTED = "volume.kubernetes.io/selected-node"


class Both:
    """Steps the scheduler and the controller-manager together."""

    def __init__(self, sched: Scheduler, cm: ControllerManager) -> None:
        self.sched, self.cm = sched, cm

    def step(self, timeout: float) -> None:
        self.sched.step(timeout / 2)
        self.cm.step(timeout / 2)


@pytest.fixture
def cluster(mem_server, tmp_path: Path) -> Iterator[tuple[Client, Both]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    sc = Client(mem_server.address, component="scheduler")
    for name in ("node-1", "node-2"):
        n = node_obj(name, labels={"kubernetes.io/hostname": name})
        created = admin.create({k: v for k, v in n.items() if k != "status"})
        created["status"] = n["status"]
        admin.update_status(created)
    admin.create(storage_class("standard", "kemu.io/local-dir", "WaitForFirstConsumer", default=True))
    cm = ControllerManager(cmc, FAST, controllers=STORAGE_CONTROLLERS, nodes_root=str(tmp_path / "nodes"),
                           shared_root=str(tmp_path / "shared"))
    sched = Scheduler(sc, FAST, rng=random.Random(0))
    cm.start()
    sched.start()
    yield admin, Both(sched, cm)
    sched.stop()
    for c in (sc, cmc, admin):
        c.close()


def test_wffc_claim_is_provisioned_on_the_scheduled_node_then_the_pod_binds(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import step_until
    admin, both = cluster
    admin.create(claim("data"))
    admin.create(claim_pod("web", "data"))
    pod = step_until(both, lambda: admin.get("Pod", "web", "default")["spec"].get("nodeName")
                     and admin.get("Pod", "web", "default"), "pod bound", timeout=20)
    node = pod["spec"]["nodeName"]
    pvc = admin.get("PersistentVolumeClaim", "data", "default")
    assert pvc["metadata"]["annotations"][SELECTED] == node
    assert pvc["status"]["phase"] == "Bound"
    pv = admin.get("PersistentVolume", pvc["spec"]["volumeName"])
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node]
    assert (tmp_path / "nodes" / node / "var/lib/kemu/storage" / pv["metadata"]["name"]).is_dir()
