"""The scheduler's volume binding against a real apiserver on the in-process transport.

The PV controller is simulated by hand (update / update_status), so these
tests pin down the scheduler's half of WaitForFirstConsumer only.
"""
from __future__ import annotations

import random
from typing import Iterator

import pytest

from control.scheduler.scheduler import Scheduler
from control.scheduler.volumecache import ANN_SELECTED_NODE
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until
from tests.test_scheduler_logic import node as node_obj

HOST = "kubernetes.io/hostname"
UNREACHABLE = "node.kubernetes.io/unreachable"


def storage_class(name, mode="WaitForFirstConsumer", provisioner="kemu.io/local-dir"):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode}


def claim(name, cls="standard", modes=("ReadWriteOnce",)):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": cls, "accessModes": list(modes),
                     "resources": {"requests": {"storage": "1Gi"}}}}


def claim_pod(name, *claims):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "100m"}}}],
                     "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                                 for i, c in enumerate(claims)]}}


class Env:
    def __init__(self, address: str) -> None:
        self.user = Client(address)
        self.sc = Client(address, component="scheduler")
        self.sched = Scheduler(self.sc, FAST, rng=random.Random(0))

    def node(self, name, **kw):
        n = node_obj(name, labels={HOST: name}, **kw)
        created = self.user.create({k: v for k, v in n.items() if k != "status"})
        created["status"] = n["status"]
        return self.user.update_status(created)

    def until(self, pred, what, timeout=10.0):
        return step_until(self.sched, pred, what, timeout)

    def pvc(self, name):
        return self.user.get("PersistentVolumeClaim", name, "default")

    def node_of(self, name):
        return self.user.get("Pod", name, "default")["spec"].get("nodeName")

    def condition(self, name):
        for c in self.user.get("Pod", name, "default")["status"].get("conditions") or []:
            if c["type"] == "PodScheduled":
                return c
        return None

    def events(self, name, reason):
        return [e for e in self.user.list("Event", "default")["items"]
                if e["involvedObject"]["name"] == name and e["reason"] == reason]

    def bind_by_hand(self, claim_name, node, cls="standard"):
        """What the PV controller does: a local PV on ``node``, bound to the claim, and the claim bound."""
        pvc = self.pvc(claim_name)
        pv_name = f"pvc-{pvc['metadata']['uid']}"
        pv = self.user.create({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "kemu.io/local-dir"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": cls, "persistentVolumeReclaimPolicy": "Delete",
                     "local": {"path": f"/var/lib/kemu/storage/{pv_name}"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [
                         {"matchExpressions": [{"key": HOST, "operator": "In", "values": [node]}]}]}},
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": claim_name,
                                  "uid": pvc["metadata"]["uid"]}}})
        pv["status"] = {"phase": "Bound"}
        self.user.update_status(pv)
        pvc["spec"]["volumeName"] = pv_name
        pvc["metadata"].setdefault("annotations", {}).update(
            {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
        pvc = self.user.update(pvc)
        pvc["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
        self.user.update_status(pvc)
        return pv_name

    def close(self):
        self.sched.stop()
        self.user.close()
        self.sc.close()


@pytest.fixture
def env(mem_server) -> Iterator[Env]:
    e = Env(mem_server.address)
    yield e
    e.close()


def test_wffc_claim_gets_selected_node_and_pod_binds_only_once_the_claim_is_bound(env):
    env.node("node-1")
    env.node("node-2")
    env.user.create(storage_class("standard"))
    env.user.create(claim("data"))
    env.sched.start()
    env.user.create(claim_pod("web", "data"))
    pvc = env.until(lambda: (env.pvc("data")["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE)
                    and env.pvc("data"), "selected-node annotation")
    node = pvc["metadata"]["annotations"][ANN_SELECTED_NODE]
    assert node in ("node-1", "node-2")
    for _ in range(20):
        env.sched.step(0.01)
    assert env.node_of("web") is None, "bound before its claim was"
    assert ("default", "web") in env.sched.volumes.waiting
    assert env.sched.cache.pod_node.get(("default", "web")) == node    # reserved there meanwhile
    assert env.events("web", "FailedScheduling") == []
    env.bind_by_hand("data", node)
    env.until(lambda: env.node_of("web") == node, "pod bound to the selected node")
    ev = env.until(lambda: env.events("web", "Scheduled"), "Scheduled event")[0]
    assert ev["message"] == f"Successfully assigned default/web to {node}"
    assert env.sched.volumes.waiting == {} and env.sched.volumes.cache.assumed_nodes == {}


def test_a_second_pod_on_the_same_claim_follows_it(env):
    env.node("node-1")
    env.node("node-2")
    env.user.create(storage_class("standard"))
    env.user.create(claim("data"))
    env.sched.start()
    env.user.create(claim_pod("a", "data"))
    env.user.create(claim_pod("b", "data"))
    env.until(lambda: {("default", "a"), ("default", "b")} <= set(env.sched.volumes.waiting), "both waiting")
    node = env.pvc("data")["metadata"]["annotations"][ANN_SELECTED_NODE]
    env.bind_by_hand("data", node)
    env.until(lambda: env.node_of("a") == node and env.node_of("b") == node, "both pods on the claim's node")


def test_pod_with_local_pv_on_a_dead_node_stays_pending_and_says_why(env):
    env.node("node-1", ready="Unknown", taints=[{"key": UNREACHABLE, "effect": "NoSchedule"}])
    env.node("node-2")
    env.node("node-3")
    env.user.create(storage_class("standard"))
    env.user.create(claim("data"))
    env.bind_by_hand("data", "node-1")
    env.sched.start()
    env.user.create(claim_pod("db", "data"))
    msg = ("0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
           "2 node(s) had volume node affinity conflict. preemption: 0/3 nodes are available: "
           "3 Preemption is not helpful for scheduling.")
    cond = env.until(env_cond(env, "db"), "PodScheduled=False")
    assert cond["reason"] == "Unschedulable" and cond["message"] == msg
    ev = env.until(lambda: env.events("db", "FailedScheduling"), "FailedScheduling")[0]
    assert ev["type"] == "Warning" and ev["message"] == msg
    assert env.user.get("Pod", "db", "default")["status"]["phase"] == "Pending"
    # The node comes back: the pod goes where its data is.
    n = env.user.get("Node", "node-1")
    n["spec"].pop("taints", None)
    env.user.update(n)
    n = env.user.get("Node", "node-1")
    n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    env.user.update_status(n)
    env.until(lambda: env.node_of("db") == "node-1", "pod bound to node-1")


def env_cond(env, name):
    def pred():
        c = env.condition(name)
        return c if c and c["status"] == "False" else None
    return pred


def test_missing_then_immediate_unbound_claim_keep_the_pod_pending(env):
    env.node("node-1")
    env.user.create(storage_class("shared", mode="Immediate", provisioner="kemu.io/shared-dir"))
    env.sched.start()
    env.user.create(claim_pod("p", "data"))
    cond = env.until(env_cond(env, "p"), "PodScheduled=False")
    assert cond["message"] == ('0/1 nodes are available: persistentvolumeclaim "data" not found. preemption: '
                               '0/1 nodes are available: 1 Preemption is not helpful for scheduling.')
    env.user.create(claim("data", cls="shared", modes=("ReadWriteMany",)))
    env.until(lambda: (env.condition("p") or {}).get("message", "").startswith(
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."), "unbound immediate")
    assert env.node_of("p") is None
    env.bind_by_hand("data", "node-1", cls="shared")     # the claim event moves the pod back
    env.until(lambda: env.node_of("p") == "node-1", "pod bound once its claim is")


def test_removed_selected_node_annotation_reschedules_the_pod(env):
    env.node("node-1")
    env.user.create(storage_class("standard"))
    env.user.create(claim("data"))
    env.sched.start()
    env.user.create(claim_pod("web", "data"))
    env.until(lambda: (env.pvc("data")["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE),
              "selected-node annotation")
    env.until(lambda: ("default", "web") in env.sched.volumes.waiting, "waiting")
    pvc = env.pvc("data")
    del pvc["metadata"]["annotations"][ANN_SELECTED_NODE]     # the provisioner gave up
    env.user.update(pvc)
    ev = env.until(lambda: env.events("web", "FailedScheduling"), "FailedScheduling")[0]
    assert ev["message"] == 'running PreBind plugin "VolumeBinding": binding volumes: provisioning failed for PVC "data"'
    assert env.condition("web")["reason"] == "SchedulerError"
    # After its back-off the pod is scheduled again and the claim annotated again.
    env.until(lambda: (env.pvc("data")["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE) == "node-1",
              "annotated again")
    env.bind_by_hand("data", "node-1")
    env.until(lambda: env.node_of("web") == "node-1", "pod bound")


def test_deleting_a_waiting_pod_releases_its_reservation(env):
    env.node("node-1")
    env.user.create(storage_class("standard"))
    env.user.create(claim("data"))
    env.sched.start()
    env.user.create(claim_pod("web", "data"))
    env.until(lambda: ("default", "web") in env.sched.volumes.waiting, "waiting")
    env.user.delete("Pod", "web", "default", grace_period_seconds=0)
    env.until(lambda: not env.sched.volumes.waiting and ("default", "web") not in env.sched.cache.pod_node,
              "reservation released")
    assert env.sched.volumes.cache.assumed_nodes == {} and env.sched.volumes.cache.claim_users == {}


def test_two_pods_in_one_cycle_never_count_on_the_same_available_pv(env):
    env.node("node-1")
    env.node("node-2")
    env.user.create(storage_class("local-static", provisioner="kubernetes.io/no-provisioner"))
    pv = env.user.create({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "disk-1"},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "local-static", "local": {"path": "/mnt/disk-1"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [
                     {"matchExpressions": [{"key": HOST, "operator": "In", "values": ["node-2"]}]}]}}}})
    pv["status"] = {"phase": "Available"}
    env.user.update_status(pv)
    env.user.create(claim("a", cls="local-static"))
    env.user.create(claim("b", cls="local-static"))
    env.user.create(claim_pod("pa", "a"))
    env.user.create(claim_pod("pb", "b"))
    env.sched.start()
    env.sched.step(0)                     # both pods in one batch
    waiting = set(env.sched.volumes.waiting)
    assert len(waiting) == 1
    other = "pb" if ("default", "pa") in waiting else "pa"
    cond = env.until(env_cond(env, other), "the other pod is unschedulable")
    assert cond["message"] == (
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: "
        "0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert env.sched.volumes.cache.assumed_pvs == {"disk-1": (("default", "b" if other == "pa" else "a"),
                                                              next(iter(waiting)))}
