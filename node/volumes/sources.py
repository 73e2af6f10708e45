"""What a configMap, secret, downwardAPI or projected volume contains: pure payload builders.

Contract (Kubernetes' ``MakePayload`` functions and downward API ``CollectData``)
-------------------------------------------------------------------------------
Each builder returns ``{relative path: FileProjection(bytes, mode)}`` or raises
``SourceError`` with Kubernetes' message. Nothing here touches the disk or
the apiserver: the objects are passed in (``None`` = not found).

* Modes: ``items[].mode`` wins, else the source's ``defaultMode``, else 0644.
* configMap: every ``data``/``binaryData`` key becomes a file, or only the
  ``items`` (key -> path). A missing object is ``configmap "<name>" not
  found`` unless ``optional`` (then the volume is empty); a missing item key
  is ``configmap references non-existent config key: <key>`` unless optional.
* secret: the same over base64-decoded ``data``: ``secret "<name>" not
  found``, ``references non-existent secret key: <key>``.
* downwardAPI: ``fieldRef`` metadata.name, namespace, uid, labels,
  annotations, ``metadata.labels['k']``/``metadata.annotations['k']``
  (maps as Kubernetes' ``FormatMap``: sorted ``k="v"`` lines);
  ``resourceFieldRef`` limits/requests of cpu, memory, ephemeral-storage of a
  container, divided by ``divisor`` and rounded up; an unset limit is the
  node's allocatable.
* projected: the union of its sources (secret, configMap, downwardAPI,
  serviceAccountToken written as a fake token); errors are aggregated as
  Kubernetes' ``NewAggregate`` prints them.
* Paths are not checked here; ``AtomicWriter`` checks every one before it
  writes anything.
"""
from __future__ import annotations

import base64
import json
import math
from fractions import Fraction
from typing import Any

from emulator.api.quantity import parse_quantity
from node.volumes.atomic_writer import FileProjection

DEFAULT_MODE = 0o644


class SourceError(Exception):
    pass


def _mode(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0o777 else default


def _default_mode(source: dict) -> int:
    return _mode(source.get("defaultMode"), DEFAULT_MODE)


def _key_payload(kind_msg: str, items: Any, data: dict[str, bytes], default_mode: int,
                 optional: bool) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    if not items:
        for k, v in data.items():
            out[k] = FileProjection(v, default_mode)
        return out
    for it in items:
        if not isinstance(it, dict):
            continue
        key = it.get("key", "")
        if key not in data:
            if optional:
                continue
            raise SourceError(f"{kind_msg}: {key}")
        out[str(it.get("path") or "")] = FileProjection(data[key], _mode(it.get("mode"), default_mode))
    return out


def configmap_data(cm: dict) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    return data


def secret_data(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}


def configmap_payload(source: dict, cm: dict | None, default_mode: int | None = None) -> dict[str, FileProjection]:
    optional = bool(source.get("optional"))
    mode = _default_mode(source) if default_mode is None else default_mode
    if cm is None:
        if optional:
            return {}
        raise SourceError(f'configmap "{source.get("name", "")}" not found')
    return _key_payload("configmap references non-existent config key", source.get("items"),
                        configmap_data(cm), mode, optional)


def secret_payload(source: dict, secret: dict | None, default_mode: int | None = None) -> dict[str, FileProjection]:
    optional = bool(source.get("optional"))
    mode = _default_mode(source) if default_mode is None else default_mode
    name = source.get("secretName") or source.get("name") or ""
    if secret is None:
        if optional:
            return {}
        raise SourceError(f'secret "{name}" not found')
    return _key_payload("references non-existent secret key", source.get("items"),
                        secret_data(secret), mode, optional)


# -- downward API ------------------------------------------------------------
def format_map(m: dict) -> str:
    """Kubernetes' fieldpath.FormatMap: sorted ``key="value"`` lines (Go %q quoting)."""
    return "\n".join(f"{k}={json.dumps(str(m[k]), ensure_ascii=False)}" for k in sorted(m))


def _subscript(path: str, prefix: str) -> str | None:
    if path.startswith(prefix + "['") and path.endswith("']"):
        return path[len(prefix) + 2:-2]
    return None


def field_value(pod: dict, field_path: str) -> str:
    """Kubernetes' ExtractFieldPathAsString, as the downward API volume allows it."""
    md = pod.get("metadata") or {}
    for prefix in ("metadata.annotations", "metadata.labels"):
        key = _subscript(field_path, prefix)
        if key is not None:
            return str((md.get(prefix.split(".")[1]) or {}).get(key, ""))
    simple = {"metadata.annotations": lambda: format_map(md.get("annotations") or {}),
              "metadata.labels": lambda: format_map(md.get("labels") or {}),
              "metadata.name": lambda: str(md.get("name", "")),
              "metadata.namespace": lambda: str(md.get("namespace", "")),
              "metadata.uid": lambda: str(md.get("uid", ""))}
    if field_path in simple:
        return simple[field_path]()
    raise SourceError(f"unsupported fieldPath: {field_path}")


def resource_value(pod: dict, ref: dict, allocatable: dict) -> str:
    """Kubernetes' ExtractResourceValueByContainerNameAndNodeAllocatable."""
    cname = ref.get("containerName") or ""
    res = ref.get("resource") or ""
    spec = pod.get("spec") or {}
    container = next((c for c in list(spec.get("containers") or ()) + list(spec.get("initContainers") or ())
                      if isinstance(c, dict) and c.get("name") == cname), None)
    if container is None:
        raise SourceError(f"container {cname} not found")
    kind, _, name = res.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise SourceError(f"unsupported container resource : {res}")
    values = (container.get("resources") or {}).get(kind) or {}
    raw = values.get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name)
    try:
        amount = parse_quantity(raw if raw is not None else 0)
        divisor = parse_quantity(ref.get("divisor") or 1)
    except ValueError as e:
        raise SourceError(str(e)) from None
    if divisor == 0:
        divisor = Fraction(1)
    if name == "cpu":   # in millicores, as Kubernetes divides MilliValue by MilliValue
        amount, divisor = Fraction(math.ceil(amount * 1000)), Fraction(math.ceil(divisor * 1000)) or Fraction(1)
    return str(math.ceil(amount / divisor))


def downward_api_payload(source: dict, pod: dict, allocatable: dict,
                         default_mode: int | None = None) -> dict[str, FileProjection]:
    mode = _default_mode(source) if default_mode is None else default_mode
    out: dict[str, FileProjection] = {}
    errs: list[str] = []
    for it in source.get("items") or ():
        if not isinstance(it, dict):
            continue
        try:
            if it.get("fieldRef"):
                value = field_value(pod, (it["fieldRef"] or {}).get("fieldPath", ""))
            elif it.get("resourceFieldRef"):
                value = resource_value(pod, it["resourceFieldRef"], allocatable)
            else:
                continue
        except SourceError as e:
            errs.append(str(e))
            continue
        out[str(it.get("path") or "")] = FileProjection(value.encode(), _mode(it.get("mode"), mode))
    if errs:
        raise SourceError(aggregate(errs))
    return out


def aggregate(errs: list[str]) -> str:
    """apimachinery's utilerrors.NewAggregate(...).Error()."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


def fake_token(pod: dict, audience: str = "") -> bytes:
    md = pod.get("metadata") or {}
    claims = {"aud": [audience] if audience else ["kemu"], "sub":
              f"system:serviceaccount:{md.get('namespace', '')}:"
              f"{(pod.get('spec') or {}).get('serviceAccountName') or 'default'}",
              "kubernetes.io": {"namespace": md.get("namespace", ""),
                                "pod": {"name": md.get("name", ""), "uid": md.get("uid", "")}}}
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d, sort_keys=True).encode()).rstrip(b"=")
    return enc({"alg": "none", "typ": "JWT"}) + b"." + enc(claims) + b".kemu-fake-signature"


def projected_payload(source: dict, pod: dict, objects: dict[tuple[str, str], dict | None],
                      allocatable: dict) -> dict[str, FileProjection]:
    """``objects`` maps ("ConfigMap"|"Secret", name) to the fetched object or None."""
    mode = _default_mode(source)
    out: dict[str, FileProjection] = {}
    errs: list[str] = []
    for src in source.get("sources") or ():
        if not isinstance(src, dict):
            continue
        try:
            if src.get("secret") is not None:
                s = src["secret"] or {}
                out.update(secret_payload(s, objects.get(("Secret", s.get("name", ""))), mode))
            elif src.get("configMap") is not None:
                c = src["configMap"] or {}
                out.update(configmap_payload(c, objects.get(("ConfigMap", c.get("name", ""))), mode))
            elif src.get("downwardAPI") is not None:
                out.update(downward_api_payload(src["downwardAPI"] or {}, pod, allocatable, mode))
            elif src.get("serviceAccountToken") is not None:
                t = src["serviceAccountToken"] or {}
                out[str(t.get("path") or "")] = FileProjection(fake_token(pod, t.get("audience") or ""), mode)
        except SourceError as e:
            errs.append(str(e))
    if errs:
        raise SourceError(aggregate(errs))
    return out


def referenced_objects(volume: dict) -> list[tuple[str, str]]:
    """The ("ConfigMap"|"Secret", name) pairs a volume needs from the apiserver."""
    if volume.get("configMap") is not None:
        return [("ConfigMap", (volume["configMap"] or {}).get("name", ""))]
    if volume.get("secret") is not None:
        return [("Secret", (volume["secret"] or {}).get("secretName", ""))]
    out = []
    for src in ((volume.get("projected") or {}).get("sources") or ()):
        if isinstance(src, dict) and src.get("secret") is not None:
            out.append(("Secret", (src["secret"] or {}).get("name", "")))
        elif isinstance(src, dict) and src.get("configMap") is not None:
            out.append(("ConfigMap", (src["configMap"] or {}).get("name", "")))
    return out
