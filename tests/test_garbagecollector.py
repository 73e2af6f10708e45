"""The garbage collector against a real apiserver (in-process).

The apiserver does not yet turn ``propagationPolicy`` into finalizers, so the
foreground and orphan tests create owners that already carry the finalizer;
deleting them makes the apiserver set ``deletionTimestamp`` and keep them.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until as run_until

NS = "default"




def settle(cm: ControllerManager, n: int = 15) -> None:
    for _ in range(n):
        cm.step(0.01)


def exists(admin: Client, kind: str, name: str) -> dict | None:
    try:
        return admin.get(kind, name, NS)
    except APIError:
        return None


def ref(owner: dict, block: bool = False) -> dict:
    r = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
         "uid": owner["metadata"]["uid"]}
    if block:
        r["blockOwnerDeletion"] = True
    return r


def configmap(admin: Client, name: str, refs: list[dict] | None = None, finalizers: list[str] | None = None) -> dict:
    md: dict = {"name": name, "namespace": NS}
    if refs:
        md["ownerReferences"] = refs
    if finalizers:
        md["finalizers"] = finalizers
    return admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}})


def pod(admin: Client, name: str, refs: list[dict], node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return admin.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": name, "namespace": NS, "ownerReferences": refs}, "spec": spec})


@pytest.fixture
def env(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, FAST, controllers=("garbagecollector",))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def test_background_cascade_from_a_replicaset(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    rs = admin.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": NS},
                       "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                                "template": {"metadata": {"labels": {"app": "web"}},
                                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    pod(admin, "web-1", [ref(rs)])
    cm_owned = configmap(admin, "web-cfg", [ref(rs)])
    configmap(admin, "grandchild", [ref(cm_owned)])
    keep = configmap(admin, "unrelated")
    settle(cm)
    assert exists(admin, "Pod", "web-1") and exists(admin, "ConfigMap", "web-cfg")
    admin.delete("ReplicaSet", "web", NS, propagation_policy="Background")
    run_until(cm, lambda: not exists(admin, "Pod", "web-1") and not exists(admin, "ConfigMap", "web-cfg"),
              "dependents collected")
    run_until(cm, lambda: not exists(admin, "ConfigMap", "grandchild"), "the grandchild collected")
    assert exists(admin, "ConfigMap", "unrelated")["metadata"]["uid"] == keep["metadata"]["uid"]  # type: ignore[index]


def test_dangling_at_start_and_partial_owners(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    owner = configmap(admin, "owner")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": "no-such-uid"}}
    configmap(admin, "orphaned", [ref(ghost)])
    configmap(admin, "two-owners", [ref(owner), ref(ghost)])
    run_until(cm, lambda: not exists(admin, "ConfigMap", "orphaned"), "dependent of a missing owner deleted")
    run_until(cm, lambda: (exists(admin, "ConfigMap", "two-owners") or {})["metadata"].get("ownerReferences")
              == [ref(owner)], "dangling reference removed")
    # a same-name owner with another uid is not the owner
    admin.delete("ConfigMap", "owner", NS)
    configmap(admin, "owner")
    run_until(cm, lambda: not exists(admin, "ConfigMap", "two-owners"), "dependent of a recreated owner deleted")


def test_foreground_deletes_blocking_dependents_first(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    owner = configmap(admin, "fg-owner", finalizers=["foregroundDeletion"])
    pod(admin, "blocker", [ref(owner, block=True)], node="node-1")   # bound: stays Terminating
    configmap(admin, "loose", [ref(owner)])
    settle(cm)
    admin.delete("ConfigMap", "fg-owner", NS, propagation_policy="Foreground")
    assert exists(admin, "ConfigMap", "fg-owner")["metadata"]["deletionTimestamp"]  # type: ignore[index]
    run_until(cm, lambda: (exists(admin, "Pod", "blocker") or {}).get("metadata", {}).get("deletionTimestamp"),
              "the blocking pod marked for deletion")
    run_until(cm, lambda: not exists(admin, "ConfigMap", "loose"), "the loose dependent deleted")
    settle(cm)
    owner_now = exists(admin, "ConfigMap", "fg-owner")
    assert owner_now and owner_now["metadata"]["finalizers"] == ["foregroundDeletion"]   # still blocked
    admin.delete("Pod", "blocker", NS, grace_period_seconds=0)   # the kubelet's confirmation
    run_until(cm, lambda: not exists(admin, "ConfigMap", "fg-owner"), "owner gone once its blocker is gone")


def test_orphan_keeps_dependents_and_drops_their_refs(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    other = configmap(admin, "other-owner")
    owner = configmap(admin, "orphan-owner", finalizers=["orphan"])
    configmap(admin, "child-a", [ref(owner)])
    configmap(admin, "child-b", [ref(owner), ref(other)])
    settle(cm)
    admin.delete("ConfigMap", "orphan-owner", NS, propagation_policy="Orphan")
    run_until(cm, lambda: not exists(admin, "ConfigMap", "orphan-owner"), "owner gone")
    a = exists(admin, "ConfigMap", "child-a")
    b = exists(admin, "ConfigMap", "child-b")
    assert a is not None and not a["metadata"].get("ownerReferences")
    assert b is not None and b["metadata"]["ownerReferences"] == [ref(other)]
    settle(cm)
    assert exists(admin, "ConfigMap", "child-a") and exists(admin, "ConfigMap", "child-b")
    assert all(c.next_due() > cm.clock() for c in cm.controllers)   # idle: no busy loop
