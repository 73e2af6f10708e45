"""JSON merge patches (RFC 7386) and the three-way merge of ``apply``.

Contract
--------
* ``apply_merge_patch(target, patch)`` returns a new document: ``null`` in the
  patch deletes, objects merge recursively, anything else (lists included)
  replaces. Inputs are not modified.
* ``create_merge_patch(a, b)`` returns the patch that turns ``a`` into ``b``.
* ``three_way_merge(original, modified, current)`` is what kubectl's
  client-side apply does to the live object: fields of ``modified`` (the new
  manifest) are set, fields that were in ``original`` (the last applied
  configuration) but are gone from ``modified`` are deleted, fields set by
  others (defaults, controllers: in ``current`` only) are kept. Lists that
  Kubernetes merges by key (containers by ``name``, ports by
  ``containerPort``... see ``MERGE_KEYS``) are merged item by item, as a
  strategic merge patch does, so server defaults inside them survive; other
  lists are replaced.
* ``last_applied(obj)`` is the annotation value kubectl's client-side apply
  stores: the object's compact JSON with sorted keys and a trailing newline,
  computed without the annotation itself (an empty ``annotations`` map stays,
  as in kubectl's ``{"metadata":{"annotations":{},"name":...}}``).
"""
from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["LAST_APPLIED", "MERGE_KEYS", "apply_merge_patch", "create_merge_patch",
           "three_way_merge", "last_applied", "with_last_applied"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def apply_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = apply_merge_patch(result.get(k), v)
    return result


def create_merge_patch(a: Any, b: Any) -> dict:
    """The merge patch from object ``a`` to object ``b`` (both dicts)."""
    patch: dict = {}
    for k in a:
        if k not in b:
            patch[k] = None
    for k, v in b.items():
        if k not in a:
            patch[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(a[k], dict):
            sub = create_merge_patch(a[k], v)
            if sub:
                patch[k] = sub
        elif v != a[k] or type(v) is not type(a[k]):
            patch[k] = copy.deepcopy(v)
    return patch


# Lists of objects that Kubernetes merges by a key (strategic merge patch's
# patchMergeKey) rather than replacing whole.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "ports": "containerPort", "imagePullSecrets": "name", "conditions": "type",
    "addresses": "type", "readinessGates": "conditionType", "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey", "ownerReferences": "uid",
}

_MISSING = object()


def _keyed(items: Any, key: str) -> dict | None:
    if not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
        return None
    by_key = {i[key]: i for i in items}
    return by_key if len(by_key) == len(items) else None


def _merge_value(field: str | None, original: Any, modified: Any, current: Any) -> Any:
    if isinstance(modified, dict):
        return three_way_merge(original if isinstance(original, dict) else None, modified,
                               current if isinstance(current, dict) else {})
    key = MERGE_KEYS.get(field or "")
    if key and isinstance(modified, list):
        mod = _keyed(modified, key)
        cur = _keyed(current if current is not _MISSING else [], key)
        orig = _keyed(original if isinstance(original, list) else [], key)
        if mod is not None and cur is not None and orig is not None:
            merged = [three_way_merge(orig.get(k), item, cur.get(k, {}))
                      for k, item in mod.items()]
            merged += [item for k, item in cur.items() if k not in mod and k not in orig]
            return merged
    return copy.deepcopy(modified)


def three_way_merge(original: dict | None, modified: dict, current: dict) -> dict:
    """The object ``apply`` makes of ``current``: see the module docstring."""
    original = original or {}
    result: dict = {}
    for k, v in current.items():
        if k in modified:
            continue
        if k in original:
            continue   # the user removed it from the manifest since the last apply
        result[k] = copy.deepcopy(v)
    for k, v in modified.items():
        result[k] = _merge_value(k, original.get(k), v, current.get(k, _MISSING))
    # Keep current's key order where it has the key (stable output, no spurious diffs).
    order = [k for k in current if k in result] + [k for k in result if k not in current]
    return {k: result[k] for k in order}


def last_applied(obj: dict) -> str:
    """The last-applied-configuration value for ``obj`` (annotation excluded)."""
    o = copy.deepcopy(obj)
    md = o.get("metadata")
    if isinstance(md, dict):
        # As kubectl: the annotations map stays, possibly empty ("annotations":{}).
        md["annotations"] = {k: v for k, v in (md.get("annotations") or {}).items()
                             if k != LAST_APPLIED}
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def with_last_applied(obj: dict) -> dict:
    """A copy of ``obj`` carrying its own last-applied-configuration annotation."""
    o = copy.deepcopy(obj)
    value = last_applied(o)
    md = o.setdefault("metadata", {})
    md["annotations"] = dict(md.get("annotations") or {}, **{LAST_APPLIED: value})
    return o
