"""StatefulSet revisions: ControllerRevisions, as Kubernetes' ``pkg/controller/history``
and ``stateful_set_utils.go`` (``getPatch``, ``newRevision``, ``ApplyRevision``) make them. No I/O.

Contract
--------
* ``revision_data(set)`` is ``{"spec": {"template": {..., "$patch": "replace"}}}``
  (the strategic-merge patch that restores the set's template).
* ``new_revision(set, number, collision_count)``: the ControllerRevision named
  ``<set>-<hash>``, the hash being FNV-1 32 (Go's ``fnv.New32``) of the data's
  JSON (sorted keys) plus the collision count, rendered by ``SafeEncodeString``;
  labels = template labels + ``controller.kubernetes.io/hash``; annotations
  copied from the set; a controller ownerRef to the set.
* ``revision_template(cr)`` (``ApplyRevision``): the template a revision restores.
* ``choose_revisions(set, revisions)`` (``getStatefulSetRevisions``): reuse the
  latest revision if it equals the set's template, bring an older equal one
  forward (renumber it to the next number: a rollback), or create one; and the
  current revision named by ``status.currentRevision`` if it still exists.
* ``history_to_delete(set, pods, revisions, live)`` (``truncateHistory``):
  revisions neither live (current, update, used by a pod) nor within
  ``revisionHistoryLimit`` (default 10), oldest first.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from control.controllers import controller_utils as cu

REVISION_LABEL = "controller-revision-hash"
CR_HASH_LABEL = "controller.kubernetes.io/hash"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193

@dataclass
class Revision:
    name: str
    template: dict
    obj: dict | None = None   # the ControllerRevision, when it exists


def fnv32(data: bytes) -> int:
    """FNV-1 32-bit (Go's ``hash/fnv.New32``, which ``HashControllerRevision`` uses)."""
    h = _FNV_OFFSET
    for b in data:
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
        h ^= b
    return h


def _raw(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def revision_data(sts: dict) -> dict:
    tpl = copy.deepcopy((sts.get("spec") or {}).get("template") or {})
    tpl["$patch"] = "replace"
    return {"spec": {"template": tpl}}


def hash_revision(data: Any, collision_count: int | None) -> str:
    raw = _raw(data)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return cu.safe_encode_string(str(fnv32(raw)))


def revision_name(set_name: str, h: str) -> str:
    return f"{set_name[:223]}-{h}"


def new_revision(sts: dict, number: int, collision_count: int) -> dict:
    md = sts["metadata"]
    data = revision_data(sts)
    h = hash_revision(data, collision_count)
    tlabels = (((sts.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    meta: dict[str, Any] = {"name": revision_name(md["name"], h), "namespace": md.get("namespace") or "default",
                            "labels": {**tlabels, CR_HASH_LABEL: h},
                            "ownerReferences": [cu.owner_ref(sts, "StatefulSet")]}
    if md.get("annotations"):
        meta["annotations"] = dict(md["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
            "data": data, "revision": number}


def revision_template(cr: dict) -> dict:
    tpl = dict(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
    tpl.pop("$patch", None)
    return tpl


def revision_number(cr: dict) -> int:
    return int(cr.get("revision") or 0)


def sort_revisions(revisions: list[dict]) -> list[dict]:
    return sorted(revisions, key=lambda r: (revision_number(r), r["metadata"].get("creationTimestamp") or "",
                                            r["metadata"]["name"]))


@dataclass
class RevisionChoice:
    create: dict | None = None              # a new ControllerRevision to create
    renumber: tuple[dict, int] | None = None  # an older equal revision to bring forward
    update: dict | None = None              # the existing update revision
    current_name: str | None = None         # status.currentRevision, if it still exists


def choose_revisions(sts: dict, revisions: list[dict]) -> RevisionChoice:
    revs = sort_revisions(revisions)
    collision = int((sts.get("status") or {}).get("collisionCount") or 0)
    nxt = revision_number(revs[-1]) + 1 if revs else 1
    candidate = new_revision(sts, nxt, collision)
    equal = [r for r in revs if r.get("data") == candidate["data"]]
    out = RevisionChoice()
    if equal and equal[-1] is revs[-1]:
        out.update = revs[-1]
    elif equal:
        out.renumber = (equal[-1], nxt)
    else:
        out.create = candidate
    cur = (sts.get("status") or {}).get("currentRevision")
    if cur and any(r["metadata"]["name"] == cur for r in revs):
        out.current_name = cur
    return out


def history_to_delete(sts: dict, pods: list[dict], revisions: list[dict], live: set[str]) -> list[dict]:
    """``truncateHistory``: non-live revisions beyond ``revisionHistoryLimit``, oldest first."""
    live = set(live) | {((p.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, "") for p in pods}
    history = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
    limit = (sts.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    return history[:max(0, len(history) - limit)]
