"""The ConfigMap and Secret kinds (core/v1, namespaced).

Contract:
- ``default_secret`` merges ``stringData`` into ``data`` (base64-encoded,
  stringData wins), removes ``stringData`` and defaults ``type`` to Opaque.
- ``validate_secret``: data keys are valid config keys, values valid base64,
  total decoded size <= 1 MiB, the keys a typed secret needs are present, and
  on update ``type`` is immutable.
- ``validate_config_map``: data/binaryData keys are valid config keys, data
  values strings, binaryData values base64, no key in both, total <= 1 MiB.
- Both honour ``immutable: true``: data may then not change and the flag may
  not be cleared.
"""
from __future__ import annotations

import base64
from typing import Any

from emulator.api.kinds._common import Causes, base64_decoded_len
from emulator.api.meta import (forbidden, immutable, invalid, is_config_key,
                               required, too_long)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["CONFIG_MAP", "SECRET", "MAX_SIZE", "default_secret", "validate_secret",
           "validate_config_map"]

MAX_SIZE = 1024 * 1024
_IMMUTABLE_MSG = "field is immutable when `immutable` is set"
_TYPED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def default_secret(obj: dict[str, Any]) -> None:
    sd = obj.get("stringData")
    if isinstance(sd, dict) and all(isinstance(v, str) for v in sd.values()):
        data = obj.get("data")
        if data is None:
            data = obj["data"] = {}
        if isinstance(data, dict):
            for k, v in sd.items():
                data[k] = base64.b64encode(v.encode()).decode("ascii")
            del obj["stringData"]
    elif sd is None and "stringData" in obj:
        del obj["stringData"]
    if not obj.get("type"):
        obj["type"] = "Opaque"


def _check_keys(bag: Any, name: str, out: Causes, b64: bool) -> int:
    """Validate one data map; return its (decoded) size in bytes."""
    if bag is None:
        return 0
    if not isinstance(bag, dict):
        out.append(invalid(name, bag, "must be a map of keys to strings"))
        return 0
    size = 0
    key_verdict = is_config_key.verdict
    for k, v in bag.items():
        if not b64 and k.__class__ is str and v.__class__ is str and not key_verdict(k):
            size += len(v) if v.isascii() else len(v.encode())   # the common case: a valid text entry
            continue
        path = f"{name}[{k}]"
        if not isinstance(k, str):
            out.append(invalid(path, k, "must be a string"))
            continue
        out.extend(invalid(path, k, m) for m in is_config_key(k))
        if not isinstance(v, str):
            out.append(invalid(path, v, "must be a string"))
            continue
        if b64:
            n = base64_decoded_len(v)
            if n is None:
                out.append(invalid(path, "<secret contents redacted>", "must be valid base64 data"))
                continue
            size += n
        else:
            size += len(v.encode())
    return size


def _check_immutable(obj: dict[str, Any], old: dict[str, Any] | None,
                     keys: tuple[str, ...], out: Causes) -> None:
    if old is None or old.get("immutable") is not True:
        return
    if obj.get("immutable") is not True:
        out.append(forbidden("immutable", _IMMUTABLE_MSG))
    for key in keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            out.append(forbidden(key, _IMMUTABLE_MSG))


def _check_flag(obj: dict[str, Any], out: Causes) -> None:
    flag = obj.get("immutable")
    if flag is not None and not isinstance(flag, bool):
        out.append(invalid("immutable", flag, "must be a boolean"))


def validate_secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    data = obj.get("data")
    size = _check_keys(data, "data", out, b64=True)
    sd = obj.get("stringData")
    if sd is not None:  # only when validating an undefaulted object
        size += _check_keys(sd, "stringData", out, b64=False)
    if size > MAX_SIZE:
        out.append(too_long("data", MAX_SIZE))
    stype = obj.get("type")
    if stype is not None and not isinstance(stype, str):
        out.append(invalid("type", stype, "must be a string"))
    present = set(data) if isinstance(data, dict) else set()
    if isinstance(sd, dict):
        present.update(sd)
    for key in _TYPED_KEYS.get(stype, ()) if isinstance(stype, str) else ():
        if key not in present:
            out.append(required(f"data[{key}]"))
    _check_flag(obj, out)
    if old is not None:
        if (old.get("type") or "Opaque") != (stype or "Opaque"):
            out.append(immutable("type", stype))
        _check_immutable(obj, old, ("data",), out)
    return out


def validate_config_map(obj: dict[str, Any],
                        old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    data, binary = obj.get("data"), obj.get("binaryData")
    size = _check_keys(data, "data", out, b64=False)
    if binary is not None:
        size += _check_keys(binary, "binaryData", out, b64=True)
    if isinstance(data, dict) and isinstance(binary, dict):
        for k in data:
            if k in binary:
                out.append(invalid(f"data[{k}]", k, "duplicate of key present in binaryData"))
    if size > MAX_SIZE:
        out.append(too_long("data", MAX_SIZE))
    _check_flag(obj, out)
    _check_immutable(obj, old, ("data", "binaryData"), out)
    return out


CONFIG_MAP = ResourceType(
    kind="ConfigMap", group="", version="v1", plural="configmaps", singular="configmap",
    short_names=("cm",), namespaced=True, has_status=False, has_generation=False,
    validate=validate_config_map,
)
SECRET = ResourceType(
    kind="Secret", group="", version="v1", plural="secrets", singular="secret",
    short_names=(), namespaced=True, has_status=False, has_generation=False,
    default=default_secret, validate=validate_secret,
    selectable_fields=("type",),
)
REGISTRY.register(CONFIG_MAP)
REGISTRY.register(SECRET)
