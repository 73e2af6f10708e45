"""Garbage collector decisions, without a server."""
from __future__ import annotations

from typing import Any

from control.controllers import garbagecollector_logic as logic


def obj(kind: str, name: str, uid: str, refs: list[dict] | None = None, deleting: bool = False,
        finalizers: list[str] | None = None) -> dict:
    md: dict = {"name": name, "namespace": "default", "uid": uid}
    if refs:
        md["ownerReferences"] = refs
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    if finalizers:
        md["finalizers"] = finalizers
    return {"kind": kind, "metadata": md}


def ref(kind: str, name: str, uid: str, block: bool = False) -> dict:
    r = {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": True}
    if block:
        r["blockOwnerDeletion"] = True
    return r


def lookup_from(*objs: dict, unknown: tuple[str, ...] = ()) -> Any:
    index = {(o["kind"], o["metadata"]["name"]): o for o in objs}

    def lookup(kind: str, _ns: str, name: str) -> Any:
        if kind in unknown:
            return logic.UNKNOWN
        return index.get((kind, name))
    return lookup


def test_no_refs_or_live_owner_means_nothing() -> None:
    rs = obj("ReplicaSet", "web", "rs-1")
    assert logic.dependent_action(obj("Pod", "p", "p1"), lookup_from(rs)) is None
    assert logic.dependent_action(obj("Pod", "p", "p1", [ref("ReplicaSet", "web", "rs-1")]), lookup_from(rs)) is None


def test_gone_owner_or_recreated_owner_deletes_in_background() -> None:
    pod = obj("Pod", "p", "p1", [ref("ReplicaSet", "web", "rs-1")])
    assert logic.dependent_action(pod, lookup_from()) == ("delete", "Background")
    newer = obj("ReplicaSet", "web", "rs-2")   # same name, another uid: not the owner
    assert logic.dependent_action(pod, lookup_from(newer)) == ("delete", "Background")
    deleting = obj("Pod", "p", "p1", [ref("ReplicaSet", "web", "rs-1")], deleting=True)
    assert logic.dependent_action(deleting, lookup_from()) is None


def test_unknown_owner_kind_is_never_collected() -> None:
    pod = obj("Pod", "p", "p1", [ref("Widget", "w", "w-1")])
    assert logic.dependent_action(pod, lookup_from(unknown=("Widget",))) is None


def test_partial_owners_remove_only_dangling_refs() -> None:
    live = obj("ReplicaSet", "a", "a-1")
    pod = obj("Pod", "p", "p1", [ref("ReplicaSet", "a", "a-1"), ref("ReplicaSet", "b", "b-1")])
    assert logic.dependent_action(pod, lookup_from(live)) == ("patch", [ref("ReplicaSet", "a", "a-1")])


def test_foreground_owner_waits_for_blocking_dependents() -> None:
    owner = obj("ReplicaSet", "web", "rs-1", deleting=True, finalizers=[logic.FOREGROUND])
    blocking = obj("Pod", "a", "a1", [ref("ReplicaSet", "web", "rs-1", block=True)])
    loose = obj("Pod", "b", "b1", [ref("ReplicaSet", "web", "rs-1")])
    assert logic.dependent_action(blocking, lookup_from(owner)) == ("delete", "Foreground")
    assert logic.dependent_action(loose, lookup_from(owner)) == ("delete", "Background")
    to_delete, removable = logic.foreground_action(owner, [blocking, loose])
    assert to_delete == [blocking, loose] and not removable
    dying = obj("Pod", "a", "a1", [ref("ReplicaSet", "web", "rs-1", block=True)], deleting=True)
    to_delete, removable = logic.foreground_action(owner, [dying])
    assert to_delete == [] and not removable      # a terminating blocker still blocks
    assert logic.foreground_action(owner, [loose]) == ([loose], True)
    assert logic.foreground_action(owner, []) == ([], True)


def test_orphan_patch_and_finalizer_removal() -> None:
    pod = obj("Pod", "p", "p1", [ref("ReplicaSet", "a", "a-1"), ref("Deployment", "d", "d-1")])
    assert logic.orphan_patch(pod, "a-1") == [ref("Deployment", "d", "d-1")]
    assert logic.orphan_patch(pod, "zzz") is None
    owner = obj("ReplicaSet", "a", "a-1", deleting=True, finalizers=["orphan", "example.com/x"])
    assert logic.without_finalizer(owner, logic.ORPHAN) == ["example.com/x"]
