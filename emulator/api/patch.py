"""JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902) over plain JSON values.

Contract: both functions return a new value and never mutate their inputs; the
result shares no mutable structure with them.
- ``json_merge_patch(target, patch)``: objects merge recursively, ``null``
  deletes a key, anything else (lists included) replaces.
- ``json_patch(target, ops)``: applies ``add``, ``remove``, ``replace``,
  ``move``, ``copy`` and ``test`` in order, atomically (any failure leaves
  nothing half-applied, since the input is never touched). A malformed patch
  (not a list of operations, unknown op, missing or malformed ``path``/``from``/
  ``value``) raises ``APIError(BAD_REQUEST)``; an operation that does not apply
  to the document (missing path, index out of range, failed ``test``) raises
  ``APIError(INVALID)``. Messages name the operation and the path.
"""
from __future__ import annotations

import re
from typing import Any

from emulator.api.errors import BAD_REQUEST, INVALID, APIError

__all__ = ["json_merge_patch", "json_patch", "json_copy", "json_equal"]

_INDEX_RE = re.compile(r"^(0|[1-9][0-9]*)$")
_MISSING = object()


def json_copy(v: Any) -> Any:
    """A deep copy of a JSON value (much cheaper than copy.deepcopy)."""
    t = type(v)
    if t is dict:
        return {k: json_copy(x) for k, x in v.items()}
    if t is list:
        return [json_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: json_copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_copy(x) for x in v]
    return v


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 and objects/arrays compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


# --- RFC 7386 ----------------------------------------------------------------

def _merge_into(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            cur = result.get(k)
            if not isinstance(cur, dict):
                cur = result[k] = {}
            _merge_into(cur, v)
        else:
            result[k] = json_copy(v)


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; returns a new value."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    result = json_copy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


# --- RFC 6902 ----------------------------------------------------------------

def _bad(msg: str) -> APIError:
    return APIError(BAD_REQUEST, f"json patch: {msg}")


def _pointer(op: dict[str, Any], key: str, opname: str) -> list[str]:
    p = op.get(key, _MISSING)
    if p is _MISSING:
        raise _bad(f'missing "{key}" in {opname} operation')
    if not isinstance(p, str) or (p and not p.startswith("/")):
        raise _bad(f'invalid {key} {p!r} in {opname} operation: a JSON pointer must be '
                   f'empty or start with "/"')
    if not p:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in p[1:].split("/")]


class _Doc:
    """The document being patched (owned: a private copy of the target)."""

    def __init__(self, root: Any):
        self.root = root

    @staticmethod
    def _fail(opname: str, path: str, why: str) -> APIError:
        return APIError(INVALID, f'json patch {opname} operation does not apply: {why}: "{path}"')

    def _index(self, lst: list[Any], tok: str, opname: str, path: str, insert: bool) -> int:
        if insert and tok == "-":
            return len(lst)
        if not _INDEX_RE.match(tok):
            raise self._fail(opname, path, "invalid array index")
        i = int(tok)
        if i > len(lst) or (i == len(lst) and not insert):
            raise self._fail(opname, path, "array index out of range")
        return i

    def _parent(self, toks: list[str], opname: str, path: str) -> Any:
        cur = self.root
        for tok in toks[:-1]:
            if isinstance(cur, dict) and tok in cur:
                cur = cur[tok]
            elif isinstance(cur, list) and _INDEX_RE.match(tok) and int(tok) < len(cur):
                cur = cur[int(tok)]
            else:
                raise self._fail(opname, path, "doc is missing path")
        if not isinstance(cur, (dict, list)):
            raise self._fail(opname, path, "doc is missing path")
        return cur

    def get(self, toks: list[str], opname: str, path: str) -> Any:
        if not toks:
            return self.root
        parent = self._parent(toks, opname, path)
        tok = toks[-1]
        if isinstance(parent, dict):
            if tok not in parent:
                raise self._fail(opname, path, "doc is missing path")
            return parent[tok]
        return parent[self._index(parent, tok, opname, path, insert=False)]

    def add(self, toks: list[str], value: Any, opname: str, path: str) -> None:
        if not toks:
            self.root = value
            return
        parent = self._parent(toks, opname, path)
        if isinstance(parent, dict):
            parent[toks[-1]] = value
        else:
            parent.insert(self._index(parent, toks[-1], opname, path, insert=True), value)

    def remove(self, toks: list[str], opname: str, path: str) -> Any:
        if not toks:
            raise _bad(f"cannot {opname} the whole document")
        parent = self._parent(toks, opname, path)
        tok = toks[-1]
        if isinstance(parent, dict):
            if tok not in parent:
                raise self._fail(opname, path, "doc is missing path")
            return parent.pop(tok)
        return parent.pop(self._index(parent, tok, opname, path, insert=False))

    def replace(self, toks: list[str], value: Any, opname: str, path: str) -> None:
        if not toks:
            self.root = value
            return
        parent = self._parent(toks, opname, path)
        tok = toks[-1]
        if isinstance(parent, dict):
            if tok not in parent:
                raise self._fail(opname, path, "doc is missing path")
            parent[tok] = value
        else:
            parent[self._index(parent, tok, opname, path, insert=False)] = value


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch; returns a new value."""
    if not isinstance(ops, list):
        raise _bad("a JSON patch must be a list of operations")
    doc = _Doc(json_copy(target))
    for n, op in enumerate(ops):
        if not isinstance(op, dict):
            raise _bad(f"operation {n} is not an object")
        opname = op.get("op")
        if opname not in ("add", "remove", "replace", "move", "copy", "test"):
            raise _bad(f"unknown operation {opname!r} at index {n}")
        toks = _pointer(op, "path", opname)
        path = op["path"]
        if opname in ("add", "replace", "test") and "value" not in op:
            raise _bad(f'missing "value" in {opname} operation for path "{path}"')
        if opname == "add":
            doc.add(toks, json_copy(op["value"]), opname, path)
        elif opname == "remove":
            doc.remove(toks, opname, path)
        elif opname == "replace":
            doc.replace(toks, json_copy(op["value"]), opname, path)
        elif opname == "test":
            if not json_equal(doc.get(toks, opname, path), op["value"]):
                raise APIError(INVALID, f'json patch test operation failed: value at "{path}" '
                                        f"does not match")
        else:
            src = _pointer(op, "from", opname)
            frm = op["from"]
            if opname == "move":
                if src == toks:
                    doc.get(src, opname, frm)  # must exist; otherwise a no-op
                    continue
                if toks[:len(src)] == src:
                    raise APIError(INVALID, f'json patch move operation does not apply: '
                                            f'"{frm}" cannot be moved into its own child "{path}"')
                doc.add(toks, doc.remove(src, opname, frm), opname, path)
            else:
                doc.add(toks, json_copy(doc.get(src, opname, frm)), opname, path)
    return doc.root
