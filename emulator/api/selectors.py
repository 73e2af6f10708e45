"""Kubernetes label selectors and field selectors.

Contract:
- ``parse_label_selector(s)`` parses kubectl's syntax (``a=b``, ``a==b``,
  ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``,
  comma-joined) into an immutable ``LabelSelector``; ``""`` selects everything.
  Bad syntax or bad keys/values raise ``APIError(BAD_REQUEST)`` starting with
  ``unable to parse requirement:``.
- ``label_selector_from_dict(sel)`` converts a ``matchLabels`` /
  ``matchExpressions`` object; ``{}`` selects everything and ``None`` nothing
  (as Kubernetes' LabelSelectorAsSelector). ``validate_label_selector`` gives
  the field causes for such an object (for kinds that embed one).
- ``parse_field_selector(s, rt)`` parses ``f=v``, ``f==v``, ``f!=v`` (comma
  joined, ``\\``-escapes for ``,``, ``=`` and ``\\``) over the fields ``rt``
  supports (always metadata.name and metadata.namespace); other fields raise
  ``APIError(BAD_REQUEST, "field label not supported: <field>")``. A missing
  field compares as "" (or the kind's declared default, e.g. "false").
- Selectors are immutable and parsing is cached; ``matches`` never mutates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping

from emulator.api.errors import BAD_REQUEST, APIError
from emulator.api.meta import (forbidden, invalid, is_label_value, is_qualified_name,
                               required, validate_labels)

if TYPE_CHECKING:  # pragma: no cover
    from emulator.api.registry import ResourceType

__all__ = ["Requirement", "LabelSelector", "FieldRequirement", "FieldSelector",
           "EVERYTHING", "NOTHING", "parse_label_selector", "label_selector_from_dict",
           "validate_label_selector", "parse_field_selector"]

# Requirement operators (Kubernetes' selection.Operator spellings).
EQUALS, NOT_EQUALS, IN, NOT_IN = "=", "!=", "in", "notin"
EXISTS, DOES_NOT_EXIST, GT, LT = "exists", "!", "gt", "lt"
_EXPR_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def _fail(detail: str) -> APIError:
    return APIError(BAD_REQUEST, f"unable to parse requirement: {detail}")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        v = labels.get(self.key)
        if op in (EQUALS, IN):
            return v is not None and v in self.values
        if op in (NOT_EQUALS, NOT_IN):
            return v is None or v not in self.values
        if v is None:
            return False
        try:
            have, want = int(v), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        sym = {GT: ">", LT: "<"}.get(op, op)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        if not self.requirements:
            return True
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def equality_value(self, key: str) -> str | None:
        """The one value ``key`` must equal (``key=v`` or ``key in (v)``), if any."""
        for r in self.requirements:
            if r.key == key and r.operator in (EQUALS, IN) and len(r.values) == 1:
                return r.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _make(key: str, op: str, values: list[str]) -> Requirement:
    msgs = is_qualified_name(key)
    if msgs:
        raise _fail(f'key: Invalid value: "{key}": {"; ".join(msgs)}')
    if op in (IN, NOT_IN) and not values:
        raise _fail("for 'in', 'notin' operators, values set can't be empty")
    if op in (EQUALS, NOT_EQUALS) and len(values) != 1:
        raise _fail("exact-match compatibility requires one single value")
    if op in (EXISTS, DOES_NOT_EXIST) and values:
        raise _fail("values set must be empty for exists and does not exist")
    if op in (GT, LT):
        if len(values) != 1 or not re.fullmatch(r"[-+]?[0-9]+", values[0]):
            raise _fail("for 'Gt', 'Lt' operators, the value must be an integer")
    else:
        for v in values:
            msgs = is_label_value(v)
            if msgs:
                raise _fail(f'values: Invalid value: "{v}": {"; ".join(msgs)}')
    return Requirement(key, op, tuple(sorted(set(values))))


# --- label selector string parsing ------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,|>|<)|([^\s=!(),<>]+))")
_EOS = ("eos", "end of string")


def _tokens(s: str) -> list[tuple[str, str]]:
    """[(kind, text)]: kind is 'id' for identifiers/keywords, else the operator."""
    out: list[tuple[str, str]] = []
    pos, n = 0, len(s)
    while pos < n:
        m = _TOKEN_RE.match(s, pos)
        if m is None or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise _fail(f"found '{s[pos]}', unexpected character")
        pos = m.end()
        if m.group(1):
            out.append((m.group(1), m.group(1)))
        elif m.group(2):
            out.append(("id", m.group(2)))
    out.append(_EOS)
    return out


@lru_cache(maxsize=1024)
def parse_label_selector(s: str) -> LabelSelector:
    """Parse a label selector string; raise APIError(BAD_REQUEST) when malformed."""
    toks = _tokens(s)
    i = 0
    reqs: list[Requirement] = []

    def expect_id(what: str = "identifier") -> str:
        nonlocal i
        kind, text = toks[i]
        if kind != "id":
            raise _fail(f"found '{text}', expected: {what}")
        i += 1
        return text

    while toks[i] != _EOS:
        kind, text = toks[i]
        if kind == "!":
            i += 1
            key = expect_id()
            reqs.append(_make(key, DOES_NOT_EXIST, []))
        elif kind == "id":
            key = expect_id()
            op_kind, op_text = toks[i]
            if op_kind in ("eos", ","):
                reqs.append(_make(key, EXISTS, []))
            elif op_kind in ("=", "==", "!=", ">", "<"):
                i += 1
                op = {"=": EQUALS, "==": EQUALS, "!=": NOT_EQUALS, ">": GT, "<": LT}[op_kind]
                value = ""
                if toks[i][0] not in ("eos", ","):
                    value = expect_id()
                reqs.append(_make(key, op, [value]))
            elif op_kind == "id" and op_text in (IN, NOT_IN):
                i += 1
                if toks[i][0] != "(":
                    raise _fail(f"found '{toks[i][1]}', expected: '('")
                i += 1
                values: list[str] = []
                while toks[i][0] != ")":
                    if toks[i][0] == ",":
                        values.append("")  # an empty element, as "(a,)" has
                        i += 1
                        continue
                    values.append(expect_id("identifier or ')'"))
                    if toks[i][0] == ",":
                        i += 1
                        if toks[i][0] == ")":
                            values.append("")
                    elif toks[i][0] != ")":
                        raise _fail(f"found '{toks[i][1]}', expected: ',' or ')'")
                i += 1
                reqs.append(_make(key, op_text, values))
            else:
                raise _fail(f"found '{op_text}', expected: =, !=, ==, in, notin, >, <")
        else:
            raise _fail(f"found '{text}', expected: !, identifier, or 'end of string'")
        kind, text = toks[i]
        if kind == ",":
            i += 1
            if toks[i][0] not in ("id", "!"):
                raise _fail(f"found '{toks[i][1]}', expected: identifier after ','")
        elif kind != "eos":
            raise _fail(f"found '{text}', expected: ',' or 'end of string'")
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs)) if reqs else EVERYTHING


# --- metav1.LabelSelector objects -------------------------------------------

def validate_label_selector(sel: Any, path: str) -> list[dict[str, str]]:
    """Field causes for a ``{matchLabels, matchExpressions}`` object at ``path``."""
    out: list[dict[str, str]] = []
    if sel is None:
        return out
    if not isinstance(sel, dict):
        return [invalid(path, sel, "must be an object")]
    validate_labels(sel.get("matchLabels"), path + ".matchLabels", out)
    exprs = sel.get("matchExpressions") or []
    if not isinstance(exprs, list):
        return out + [invalid(path + ".matchExpressions", exprs, "must be a list")]
    for i, e in enumerate(exprs):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            out.append(invalid(p, e, "must be an object"))
            continue
        op, values = e.get("operator"), e.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                out.append(required(p + ".values",
                                    "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                out.append(forbidden(p + ".values", "may not be specified when `operator` "
                                     "is 'Exists' or 'DoesNotExist'"))
        else:
            out.append(invalid(p + ".operator", op, "not a valid selector operator"))
        key = e.get("key")
        if not key or not isinstance(key, str):
            out.append(required(p + ".key"))
        else:
            out.extend(invalid(p + ".key", key, m) for m in is_qualified_name(key))
        for j, v in enumerate(values if isinstance(values, list) else []):
            msgs = is_label_value(v) if isinstance(v, str) else ["must be a string"]
            out.extend(invalid(f"{p}.values[{j}]", v, m) for m in msgs)
    return out


def label_selector_from_dict(sel: dict[str, Any] | None) -> LabelSelector:
    """A LabelSelector from ``matchLabels``/``matchExpressions``; None selects nothing."""
    if sel is None:
        return NOTHING
    if not isinstance(sel, dict):
        raise APIError(BAD_REQUEST, f"invalid label selector: {sel!r}")
    reqs: list[Requirement] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(_make(str(k), EQUALS, [v if isinstance(v, str) else str(v)]))
    for e in sel.get("matchExpressions") or []:
        e = e if isinstance(e, dict) else {}
        op = _EXPR_OPS.get(e.get("operator"))  # type: ignore[arg-type]
        if op is None:
            raise APIError(BAD_REQUEST,
                           f'"{e.get("operator")}" is not a valid label selector operator')
        reqs.append(_make(str(e.get("key") or ""), op, [str(v) for v in e.get("values") or []]))
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs)) if reqs else EVERYTHING


# --- field selectors -----------------------------------------------------------

@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str
    default: str = field(default="", compare=False, repr=False)
    path: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def get(self, obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for part in self.path:
            if not isinstance(cur, dict):
                return self.default
            cur = cur.get(part)
            if cur is None:
                return self.default
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return cur if isinstance(cur, str) else str(cur)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (self.get(obj) == self.value) == (self.operator == EQUALS)

    def __str__(self) -> str:
        v = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{self.operator}{v}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def equality_value(self, field_name: str) -> str | None:
        for r in self.requirements:
            if r.field == field_name and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


_UNESCAPE = {"\\": "\\", ",": ",", "=": "="}


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, start, i = [], 0, 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == sep:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return parts


def _unescape(v: str, selector: str) -> str:
    if "\\" not in v:
        return v
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\":
            nxt = v[i + 1] if i + 1 < len(v) else ""
            if nxt not in _UNESCAPE:
                raise APIError(BAD_REQUEST, f"invalid field selector: '{selector}': "
                                            f"invalid escape sequence: \\{nxt}")
            out.append(_UNESCAPE[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@lru_cache(maxsize=64)
def _field_table(rt: "ResourceType") -> dict[str, str]:
    table = {"metadata.name": "", "metadata.namespace": ""}
    table.update((f, "") for f in rt.selectable_fields)
    table.update(rt.field_defaults)
    return table


@lru_cache(maxsize=1024)
def parse_field_selector(s: str, rt: "ResourceType") -> FieldSelector:
    """Parse a field selector for kind ``rt``; raise APIError(BAD_REQUEST) if bad."""
    table = _field_table(rt)
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(s, ","):
        if not term.strip():
            continue
        i, op = 0, ""
        while i < len(term):
            if term[i] == "\\":
                i += 2
                continue
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), "")
            if op:
                break
            i += 1
        if not op:
            raise APIError(BAD_REQUEST, f"invalid selector: '{s}'; can't understand '{term}'")
        name = term[:i].strip()
        if name not in table:
            raise APIError(BAD_REQUEST, f"field label not supported: {name}")
        value = _unescape(term[i + len(op):], s)
        reqs.append(FieldRequirement(name, NOT_EQUALS if op == "!=" else EQUALS, value,
                                     table[name], tuple(name.split("."))))
    return FieldSelector(tuple(reqs))
