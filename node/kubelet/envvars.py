"""A container's environment, as the kubelet computes it (``makeEnvironmentVariables``),
and ``$(VAR)`` expansion (Kubernetes' ``third_party/forked/golang/expansion``).

Contract
--------
* ``expand(text, mapping)``: ``$(NAME)`` becomes ``mapping(NAME)``; a name the mapping
  does not know stays ``$(NAME)`` as written; ``$$`` is an escaped ``$``; a ``$`` before
  anything else, or an unclosed ``$(``, is kept as it is.
* ``make_environment_variables(pod, container, *, pod_ip, host_ip, get_object,
  allocatable, extra)`` -> ``EnvResult(env, warnings)``, in Kubernetes' order:
  ``envFrom`` first (configMapRef / secretRef, each key prefixed with ``prefix``; keys
  that are not valid env names are skipped with a warning, Kubernetes' Event
  ``InvalidEnvironmentVariableNames``), then ``env`` in order: ``value`` expanded
  against the variables defined so far; ``valueFrom`` ``fieldRef`` (metadata.name,
  namespace, uid, labels, annotations and ``['key']`` of those, spec.nodeName,
  spec.serviceAccountName, status.podIP/podIPs, status.hostIP/hostIPs),
  ``resourceFieldRef`` (limits/requests of cpu, memory, ephemeral-storage with
  ``divisor``, an unset limit being the node's allocatable), ``configMapKeyRef`` and
  ``secretKeyRef`` (``optional`` skips a missing object or key). ``extra`` (the
  kubelet's ``POD_IP`` and ``KEMU_NODE_ROOT``) is added where the spec does not
  define the name. ``get_object(kind, name, namespace)`` returns the object or None.
* Errors raise ``EnvError`` with Kubernetes' message (the kubelet reports
  CreateContainerConfigError): ``secret "x" not found``, ``configmap "x" not found``,
  ``couldn't find key k in Secret default/x``, ``couldn't find key k in ConfigMap
  default/x``, ``unsupported fieldPath: ...``.
* ``expand_command(container, env)`` returns the container with ``command`` and
  ``args`` expanded against ``env`` (``ExpandContainerCommandAndArgs``).
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Callable

from node.volumes.sources import SourceError, field_value, resource_value

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")   # Kubernetes' IsEnvVarName


class EnvError(Exception):
    pass


@dataclass
class EnvResult:
    env: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def _read_name(s: str) -> tuple[str, bool, int]:
    """Kubernetes' tryReadVariableName: (text read, is a variable name, bytes consumed)."""
    if s[0] == "$":
        return "$", False, 1
    if s[0] == "(":
        close = s.find(")", 1)
        if close >= 0:
            return s[1:close], True, close + 1
        return "$(", False, 1
    return "$" + s[0], False, 1


def expand(text: str, mapping: Callable[[str], str]) -> str:
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_name(text[cursor + 1:])
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def mapping_for(*contexts: dict[str, str]) -> Callable[[str], str]:
    def mapping(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"
    return mapping


def field_ref_value(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    spec = pod.get("spec") or {}
    simple = {"spec.nodeName": spec.get("nodeName") or "",
              "spec.serviceAccountName": spec.get("serviceAccountName") or "",
              "status.podIP": pod_ip, "status.podIPs": pod_ip,
              "status.hostIP": host_ip, "status.hostIPs": host_ip}
    if path in simple:
        return str(simple[path])
    try:
        return field_value(pod, path)
    except SourceError as e:
        raise EnvError(str(e)) from None


def _data(kind: str, obj: dict) -> dict[str, str]:
    if kind == "Secret":
        out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return out
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


def make_environment_variables(pod: dict, container: dict, *, pod_ip: str = "", host_ip: str = "",
                               get_object: Callable[[str, str, str | None], dict | None],
                               allocatable: dict | None = None,
                               extra: dict[str, str] | None = None) -> EnvResult:
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    cache: dict[tuple[str, str], dict | None] = {}
    res = EnvResult({})
    env = res.env

    def fetch(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = get_object(kind, name, ns)
        obj = cache[(kind, name)]
        if obj is None:
            if optional:
                return None
            raise EnvError(f'{kind.lower()} "{name}" not found')
        return _data(kind, obj)

    for ef in container.get("envFrom") or ():
        if not isinstance(ef, dict):
            continue
        for key, kind, what in (("configMapRef", "ConfigMap", "configMap"), ("secretRef", "Secret", "secret")):
            ref = ef.get(key)
            if not isinstance(ref, dict):
                continue
            name = ref.get("name") or ""
            data = fetch(kind, name, bool(ref.get("optional")))
            if data is None:
                continue
            invalid = []
            for k, v in data.items():
                k = (ef.get("prefix") or "") + k
                if not ENV_NAME.match(k):
                    invalid.append(k)
                    continue
                env[k] = v
            if invalid:
                res.warnings.append(f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {what} "
                                    f"{ns}/{name} were skipped since they are considered invalid "
                                    "environment variable names.")
    for ev in container.get("env") or ():
        if not isinstance(ev, dict):
            continue
        name = ev.get("name") or ""
        value = ev.get("value") or ""
        src = ev.get("valueFrom")
        if value:
            value = expand(str(value), mapping_for(env))
        elif isinstance(src, dict):
            if isinstance(src.get("fieldRef"), dict):
                value = field_ref_value(pod, src["fieldRef"].get("fieldPath") or "", pod_ip, host_ip)
            elif isinstance(src.get("resourceFieldRef"), dict):
                ref = dict(src["resourceFieldRef"])
                ref["containerName"] = ref.get("containerName") or container.get("name", "")
                try:
                    value = resource_value(pod, ref, allocatable or {})
                except SourceError as e:
                    raise EnvError(str(e)) from None
            else:
                hit = False
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    ref = src.get(key)
                    if not isinstance(ref, dict):
                        continue
                    hit = True
                    optional = bool(ref.get("optional"))
                    obj_name, k = ref.get("name") or "", ref.get("key") or ""
                    data = fetch(kind, obj_name, optional)
                    if data is None:
                        break
                    if k not in data:
                        if optional:
                            break
                        raise EnvError(f"couldn't find key {k} in {kind} {ns}/{obj_name}")
                    value = data[k]
                    env[name] = value
                    break
                if hit:
                    continue
        env[name] = str(value)
    for k, v in (extra or {}).items():
        env.setdefault(k, v)
    return res


def expand_command(container: dict, env: dict[str, str]) -> dict:
    mapping = mapping_for(env)
    out = dict(container)
    for key in ("command", "args"):
        if container.get(key):
            out[key] = [expand(str(a), mapping) for a in container[key]]
    return out


def container_env(pod: dict, container: dict, *, pod_ip: str, host_ip: str, node_root: str,
                  get_object: Callable[[str, str, str | None], dict | None],
                  allocatable: dict) -> tuple[dict[str, str], dict, list[str]]:
    """What the kubelet hands the runtime: (env, the container with command/args expanded,
    warnings). Adds ``POD_IP`` and ``KEMU_NODE_ROOT`` unless the spec defines them."""
    res = make_environment_variables(pod, container, pod_ip=pod_ip, host_ip=host_ip, get_object=get_object,
                                     allocatable=allocatable,
                                     extra={"POD_IP": pod_ip, "KEMU_NODE_ROOT": node_root})
    return res.env, expand_command(container, res.env), res.warnings
