"""Generic object defaulting and validation, and Kubernetes' field-error wording.

Contract:
- ``default_object(rt, obj)`` fills type-level defaults in place and is
  idempotent: a cluster-scoped kind loses any metadata.namespace (silently, as
  the apiserver does), the kind's own defaulter runs (``rt.default``), then a
  namespaced kind with no namespace gets "default". Server-stamped fields (uid,
  creationTimestamp, resourceVersion, generation) are not touched here.
- ``validate_object(rt, obj, old=None)`` checks metadata and then the kind's
  own rules (``rt.validate``); with ``old`` it also checks update rules. Any
  failure raises ``APIError(INVALID)`` worded as Kubernetes does:
  ``Pod "foo" is invalid: spec.containers[0].name: Required value`` for one
  cause, ``Pod "foo" is invalid: [cause1, cause2]`` for several. Each cause is
  ``{"field", "reason", "message"}`` and renders as ``field: message``.
- The helpers below (``required``, ``invalid``, ``not_supported``, ...) build
  those causes; the ``is_*`` checks return Kubernetes' messages (empty list when
  the value is fine). Nothing here copies the object: validation only reads.

This module must not import the registry at runtime (kinds import it).
"""
from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any, Iterable

from emulator.api.errors import INVALID, APIError, cause

if TYPE_CHECKING:  # pragma: no cover
    from emulator.api.registry import ResourceType

__all__ = [
    "default_object", "validate_object", "invalid_error", "render_cause",
    "required", "invalid", "not_supported", "duplicate", "forbidden", "too_long",
    "immutable", "not_found", "is_dns1123_label", "is_dns1123_subdomain", "is_qualified_name",
    "is_label_value", "is_config_key", "validate_labels", "validate_annotations",
    "validate_nonnegative_int", "is_int",
]

# --- format checks (Kubernetes' apimachinery/pkg/util/validation wording) ----

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + ")*"
_LABEL_RE = re.compile("^" + _LABEL_FMT + "$")
_SUBDOMAIN_RE = re.compile("^" + _SUBDOMAIN_FMT + "$")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
              "characters or '-', and must start and end with an alphanumeric character "
              "(e.g. 'my-name',  or '123-abc', regex used for validation is '"
              + _LABEL_FMT + "')")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric "
                  "character (e.g. 'example.com', regex used for validation is '"
                  + _SUBDOMAIN_FMT + "')")

_QNAME_CHAR_FMT = "[A-Za-z0-9]"
_QNAME_EXT_FMT = "[-A-Za-z0-9_.]"
_QNAME_FMT = "(" + _QNAME_CHAR_FMT + _QNAME_EXT_FMT + "*)?" + _QNAME_CHAR_FMT
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_QNAME_MAX = 63
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
              "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
              "'123-abc', regex used for validation is '" + _QNAME_FMT + "')")
_QNAME_WHOLE_MSG = ("a qualified name " + _QNAME_MSG + " with an optional DNS subdomain "
                    "prefix and '/' (e.g. 'example.com/MyName')")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + "$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                    "regex used for validation is '" + _LABEL_VALUE_FMT + "')")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile("^" + _CONFIG_KEY_FMT + "$")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' "
                   "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used "
                   "for validation is '" + _CONFIG_KEY_FMT + "')")
ANNOTATIONS_MAX_BYTES = 256 * 1024


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _LABEL_RE.match(value):
        errs.append(_LABEL_MSG)
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _SUBDOMAIN_RE.match(value):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label/annotation key: ``[prefix/]name`` with a DNS subdomain prefix."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [_QNAME_WHOLE_MSG]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > _QNAME_MAX:
        errs.append("name part " + _max_len(_QNAME_MAX))
    if name and not _QNAME_RE.match(name):
        errs.append("name part " + _QNAME_MSG)
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > _QNAME_MAX:
        errs.append(_max_len(_QNAME_MAX))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def is_config_key(value: str) -> list[str]:
    """A ConfigMap/Secret data key."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(_CONFIG_KEY_MSG)
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# Label keys and values, and data keys, repeat across objects (app=web on every
# replica): remember the verdicts. Cached results are tuples, so no caller can
# change them; the public functions keep returning fresh lists.
# Hot callers inside this package use the ``.verdict`` attribute (str only, the
# cached tuple itself, no copy): an empty tuple means the value is fine.
def _memo(fn):  # type: ignore[no-untyped-def]
    cached = functools.lru_cache(maxsize=65536)(lambda v: tuple(fn(v)))

    @functools.wraps(fn)
    def wrapper(value: str) -> list[str]:
        return list(cached(value)) if isinstance(value, str) else fn(value)
    wrapper.verdict = cached
    return wrapper


is_qualified_name = _memo(is_qualified_name)
is_label_value = _memo(is_label_value)
is_config_key = _memo(is_config_key)
_namespace_verdict = functools.lru_cache(maxsize=4096)(lambda v: tuple(is_dns1123_label(v)))


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- field errors (k8s.io/apimachinery/pkg/util/validation/field) -----------

def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _body(kind: str, detail: str) -> str:
    return f"{kind}: {detail}" if detail else kind


def required(field: str, detail: str = "") -> dict[str, str]:
    return cause(field, "FieldValueRequired", _body("Required value", detail))


def invalid(field: str, value: Any, detail: str = "") -> dict[str, str]:
    return cause(field, "FieldValueInvalid", _body("Invalid value: " + _fmt_value(value), detail))


def not_supported(field: str, value: Any, supported: Iterable[str]) -> dict[str, str]:
    values = ", ".join(json.dumps(str(v)) for v in sorted(supported))
    return cause(field, "FieldValueNotSupported",
                 f"Unsupported value: {_fmt_value(value)}: supported values: {values}")


def duplicate(field: str, value: Any) -> dict[str, str]:
    return cause(field, "FieldValueDuplicate", "Duplicate value: " + _fmt_value(value))


def forbidden(field: str, detail: str) -> dict[str, str]:
    return cause(field, "FieldValueForbidden", _body("Forbidden", detail))


def too_long(field: str, max_bytes: int) -> dict[str, str]:
    return cause(field, "FieldValueTooLong", f"Too long: must have at most {max_bytes} bytes")


def not_found(field: str, value: Any) -> dict[str, str]:
    return cause(field, "FieldValueNotFound", "Not found: " + _fmt_value(value))


def immutable(field: str, value: Any) -> dict[str, str]:
    return invalid(field, value, "field is immutable")


def render_cause(c: dict[str, str]) -> str:
    return f"{c['field']}: {c['message']}" if c.get("field") else c["message"]


def invalid_error(qualified_kind: str, name: str, causes: list[dict[str, str]]) -> APIError:
    """``Kind "name" is invalid: ...`` with Kubernetes' aggregate rendering."""
    seen: set[str] = set()
    parts = []
    for c in causes:
        text = render_cause(c)
        if text not in seen:
            seen.add(text)
            parts.append(text)
    agg = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return APIError(INVALID, f'{qualified_kind} "{name}" is invalid: {agg}', causes)


def validate_nonnegative_int(field: str, value: Any, out: list[dict[str, str]]) -> None:
    if not is_int(value):
        out.append(invalid(field, value, "must be an integer"))
    elif value < 0:
        out.append(invalid(field, value, "must be greater than or equal to 0"))


def validate_labels(labels: Any, field: str, out: list[dict[str, str]]) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        out.append(invalid(field, labels, "must be a map of string keys to string values"))
        return
    key_verdict, value_verdict = is_qualified_name.verdict, is_label_value.verdict
    for k, v in labels.items():
        if k.__class__ is str and v.__class__ is str and not key_verdict(k) and not value_verdict(v):
            continue   # the common case: a valid string pair, cached verdicts
        if not isinstance(k, str):
            out.append(invalid(field, k, "label keys must be strings"))
            continue
        for msg in is_qualified_name(k):
            out.append(invalid(field, k, msg))
        if not isinstance(v, str):
            out.append(invalid(f"{field}.{k}", v, "label values must be strings"))
            continue
        for msg in is_label_value(v):
            out.append(invalid(field, v, msg))


def validate_annotations(annotations: Any, field: str, out: list[dict[str, str]]) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        out.append(invalid(field, annotations, "must be a map of string keys to string values"))
        return
    total = 0
    for k, v in annotations.items():
        if not isinstance(k, str):
            out.append(invalid(field, k, "annotation keys must be strings"))
            continue
        for msg in is_qualified_name(k.lower()):
            out.append(invalid(field, k, msg))
        if not isinstance(v, str):
            out.append(invalid(f"{field}.{k}", v, "annotation values must be strings"))
            continue
        total += len(k) + len(v.encode())
    if total > ANNOTATIONS_MAX_BYTES:
        out.append(too_long(field, ANNOTATIONS_MAX_BYTES))


# --- the generic layer --------------------------------------------------------

def default_object(rt: "ResourceType", obj: dict[str, Any]) -> None:
    """Apply generic then per-kind defaults to ``obj`` in place (idempotent)."""
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        return  # validation reports it
    if not rt.namespaced and "namespace" in meta:
        del meta["namespace"]
    rt.default(obj)
    if rt.namespaced and not meta.get("namespace"):
        meta["namespace"] = "default"


def _validate_metadata(rt: "ResourceType", meta: dict[str, Any], out: list[dict[str, str]],
                       old_meta: dict[str, Any] | None = None) -> None:
    """``old_meta`` (an update's stored metadata) passed validation when it was
    written: a name, labels, annotations and finalizers equal to it are not checked again."""
    if not isinstance(old_meta, dict):
        old_meta = {}
    name = meta.get("name")
    gen = meta.get("generateName")
    if name is None or name == "":
        if not gen:
            out.append(required("metadata.name", "name or generateName is required"))
        elif not isinstance(gen, str):
            out.append(invalid("metadata.generateName", gen, "must be a string"))
        else:
            # Kubernetes masks the trailing dash, as a suffix will follow it.
            probe = gen[:-1] + "a" if gen.endswith("-") else gen
            for msg in rt.validate_name(probe):
                out.append(invalid("metadata.generateName", gen, msg))
    elif not isinstance(name, str):
        out.append(invalid("metadata.name", name, "must be a string"))
    elif name != old_meta.get("name"):
        for msg in rt.validate_name(name):
            out.append(invalid("metadata.name", name, msg))
    ns = meta.get("namespace")
    if rt.namespaced:
        if not ns:
            out.append(required("metadata.namespace"))
        elif not isinstance(ns, str):
            out.append(invalid("metadata.namespace", ns, "must be a string"))
        else:
            for msg in _namespace_verdict(ns):
                out.append(invalid("metadata.namespace", ns, msg))
    elif ns:
        out.append(forbidden("metadata.namespace", "not allowed on this type"))
    labels = meta.get("labels")
    if labels is not None and labels != old_meta.get("labels"):
        validate_labels(labels, "metadata.labels", out)
    annotations = meta.get("annotations")
    if annotations is not None and annotations != old_meta.get("annotations"):
        validate_annotations(annotations, "metadata.annotations", out)
    fin = meta.get("finalizers")
    if fin is not None and fin != old_meta.get("finalizers"):
        if not isinstance(fin, list):
            out.append(invalid("metadata.finalizers", fin, "must be a list of strings"))
        else:
            for i, f in enumerate(fin):
                if not isinstance(f, str):
                    out.append(invalid(f"metadata.finalizers[{i}]", f, "must be a string"))
                    continue
                for msg in is_qualified_name(f):
                    out.append(invalid(f"metadata.finalizers[{i}]", f, msg))


def validate_object(rt: "ResourceType", obj: dict[str, Any],
                    old: dict[str, Any] | None = None) -> None:
    """Validate ``obj`` (an update if ``old`` is given); raise APIError(INVALID)."""
    causes: list[dict[str, str]] = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        causes.append(required("metadata") if meta is None
                      else invalid("metadata", meta, "must be an object"))
        meta = {}
    else:
        _validate_metadata(rt, meta, causes, None if old is None else old.get("metadata"))
    if old is not None:
        old_meta = old.get("metadata") or {}
        for key in ("name", "namespace", "uid"):
            new_v, old_v = meta.get(key) or "", old_meta.get(key) or ""
            # uid: an update may omit it (the server fills it in), not change it.
            if new_v != old_v and not (key == "uid" and not new_v):
                causes.append(immutable(f"metadata.{key}", new_v))
    causes.extend(rt.validate(obj, old))
    if causes:
        name = meta.get("name") or meta.get("generateName") or ""
        raise invalid_error(rt.qualified_kind, str(name), causes)
