"""Helpers shared by the kind modules: resource lists, timestamps, base64.

Contract: pure checks that append Kubernetes-worded causes to ``out`` and never
mutate their input.
"""
from __future__ import annotations

import re
from datetime import datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any

from emulator.api.meta import invalid, is_qualified_name
from emulator.api.quantity import QUANTITY_ERROR, parse_quantity

Causes = list[dict[str, str]]

_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
# Standard (padded) base64, as Go's encoding/json decodes []byte fields.
_BASE64_RE = re.compile(
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def is_rfc3339(value: Any) -> bool:
    """An RFC 3339 date-time, optionally with a fraction ("...T10:00:00.123456Z")."""
    return isinstance(value, str) and _is_rfc3339(value)


@lru_cache(maxsize=4096)   # an Event's, a condition's stamps repeat within their second
def _is_rfc3339(value: str) -> bool:
    if not _RFC3339_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_rfc3339(field: str, value: Any, out: Causes) -> None:
    if value is not None and not is_rfc3339(value):
        out.append(invalid(field, value, "must be an RFC 3339 date-time "
                                         "(e.g. '2006-01-02T15:04:05.000000Z')"))


def base64_decoded_len(value: str) -> int | None:
    """Decoded size of standard base64 text, or None if it is not valid base64."""
    if "\n" in value or "\r" in value:
        value = value.replace("\n", "").replace("\r", "")
    if not _BASE64_RE.match(value):
        return None
    return len(value) // 4 * 3 - value.count("=", -2)


def key_path(base: str, key: str) -> str:
    """``base.key`` for plain keys, ``base[key]`` for keys with '.' or '/'."""
    if "." in key or "/" in key or not key:
        return f"{base}[{key}]"
    return f"{base}.{key}"


def validate_resource_list(rl: Any, base: str, out: Causes,
                           container: bool = False) -> dict[str, Fraction]:
    """Check a ``{name: quantity}`` map; return the quantities that parsed."""
    parsed: dict[str, Fraction] = {}
    if rl is None:
        return parsed
    if not isinstance(rl, dict):
        out.append(invalid(base, rl, "must be a map of resource names to quantities"))
        return parsed
    for name, q in rl.items():
        path = key_path(base, str(name))
        if not isinstance(name, str):
            out.append(invalid(path, name, "must be a string"))
            continue
        if "/" not in name:
            if container and name not in _STANDARD_CONTAINER_RESOURCES \
                    and not name.startswith("hugepages-"):
                out.append(invalid(path, name, "must be a standard resource for containers"))
                continue
        else:
            msgs = is_qualified_name(name)
            if msgs:
                out.extend(invalid(path, name, m) for m in msgs)
                continue
        try:
            value = parse_quantity(q)
        except ValueError:
            out.append(invalid(path, str(q), QUANTITY_ERROR))
            continue
        if value < 0:
            out.append(invalid(path, str(q), "must be greater than or equal to 0"))
            continue
        parsed[name] = value
    return parsed


def get_dict(obj: Any, key: str) -> dict[str, Any]:
    """``obj[key]`` if it is a dict, else an empty dict (never stored)."""
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else {}
