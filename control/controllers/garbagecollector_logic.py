"""Pure decisions of the garbage collector (ownerReferences, cascading deletion).

After Kubernetes' ``pkg/controller/garbagecollector`` (``attemptToDeleteItem``,
``processDeletingDependentsItem``, ``orphanDependents``). No I/O.

Contract
--------
* An object is a *dependent* of each ``metadata.ownerReferences`` entry. An
  owner reference is *dangling* when no object of that kind and name exists in
  the dependent's namespace (or cluster-wide, for cluster-scoped owner kinds)
  with that uid; *waiting* when the owner exists, is being deleted and carries
  the ``foregroundDeletion`` finalizer; *solid* otherwise.
* ``dependent_action(dependent, lookup)`` returns, as ``attemptToDeleteItem`` does:
  - ``None`` when the dependent has no owner references, is already being
    deleted, or has a solid owner and nothing dangling or waiting;
  - ``("patch", remaining_refs)`` when a solid owner remains and some refs
    are dangling or waiting (those refs are removed);
  - ``("delete", "Foreground")`` when no owner is solid and some owner is
    waiting on it (a ref with ``blockOwnerDeletion``);
  - ``("delete", "Background")`` when every owner is dangling (or waiting
    without blocking).
  - An owner whose kind the collector does not know (``lookup`` returns
    ``UNKNOWN``) counts as solid: the collector never deletes on a guess.
* ``foreground_action(owner, dependents)``: for an owner being deleted with
  ``foregroundDeletion``: the dependents to delete (those not already being
  deleted), and whether the finalizer can go (no dependent left that has a
  ``blockOwnerDeletion`` reference to the owner).
* ``orphan_patch(dependent, owner_uid)``: the dependent's ownerReferences
  without the ones pointing at ``owner_uid`` (``None`` if there are none).
* ``without_finalizer(obj, name)``: the finalizer list minus ``name``.
"""
from __future__ import annotations

from typing import Any, Callable

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
UNKNOWN = object()

# lookup(kind, namespace, name) -> the owner object, None if absent, or UNKNOWN
Lookup = Callable[[str, str, str], Any]


def owner_refs(obj: dict) -> list[dict]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def finalizers(obj: dict) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def is_deleting(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def classify(ref: dict, namespace: str, lookup: Lookup) -> str:
    """``dangling``, ``waiting`` or ``solid`` for one owner reference."""
    owner = lookup(ref.get("kind") or "", namespace, ref.get("name") or "")
    if owner is UNKNOWN:
        return "solid"
    if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
        return "dangling"
    if is_deleting(owner) and FOREGROUND in finalizers(owner):
        return "waiting"
    return "solid"


def dependent_action(dependent: dict, lookup: Lookup) -> tuple[str, Any] | None:
    refs = owner_refs(dependent)
    if not refs or is_deleting(dependent):
        return None
    ns = dependent["metadata"].get("namespace") or ""
    kinds = [(r, classify(r, ns, lookup)) for r in refs]
    solid = [r for r, k in kinds if k == "solid"]
    dangling = [r for r, k in kinds if k == "dangling"]
    waiting = [r for r, k in kinds if k == "waiting"]
    if solid:
        if not dangling and not waiting:
            return None
        return ("patch", solid)
    if any(r.get("blockOwnerDeletion") for r in waiting):
        return ("delete", "Foreground")
    return ("delete", "Background")


def foreground_action(owner: dict, dependents: list[dict]) -> tuple[list[dict], bool]:
    uid = owner["metadata"].get("uid")
    to_delete = [d for d in dependents if not is_deleting(d)]
    blocking = [d for d in dependents
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in owner_refs(d))]
    return to_delete, not blocking


def orphan_patch(dependent: dict, owner_uid: str) -> list[dict] | None:
    refs = owner_refs(dependent)
    kept = [r for r in refs if r.get("uid") != owner_uid]
    return None if len(kept) == len(refs) else kept


def without_finalizer(obj: dict, name: str) -> list[str]:
    return [f for f in finalizers(obj) if f != name]
