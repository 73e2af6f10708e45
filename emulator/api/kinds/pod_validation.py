"""Pod validation (core/v1), in Kubernetes' wording.

Contract: ``validate_pod(obj, old)`` returns field causes (empty when valid)
and never mutates or copies ``obj``. It checks containers and init containers
(name: required, RFC 1123 label, unique across both lists; image required;
ports; resources parse, are non-negative and requests <= limits), volumes
(unique names, mounts refer to them, sources as ``volume_validation``), restartPolicy, dnsPolicy,
terminationGracePeriodSeconds, activeDeadlineSeconds, tolerations and
nodeName. With ``old`` (an update) the spec is immutable except container and
init-container images, activeDeadlineSeconds (may only shrink),
tolerations (additions only), terminationGracePeriodSeconds, and nodeName
when it was empty (binding); anything else gives ``spec: Forbidden: pod
updates may not change fields other than ...``. Optional enum fields are
checked only when present: defaulting normally fills them first.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import (TAINT_EFFECTS, Causes, key_path,
                                        validate_resource_list)
from emulator.api.kinds.volume_validation import validate_volume_source
from emulator.api.meta import (duplicate, forbidden, invalid, is_dns1123_label,
                               is_dns1123_subdomain, is_int, is_label_value,
                               is_qualified_name, not_found, not_supported,
                               required, validate_labels, validate_nonnegative_int)

__all__ = ["validate_pod", "POD_UPDATE_FORBIDDEN"]

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
PROTOCOLS = ("TCP", "UDP", "SCTP")
TOLERATION_OPERATORS = ("Equal", "Exists")
MAX_INT32 = 2**31 - 1

POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def _port_in_range(field: str, port: Any, out: Causes) -> None:
    if not is_int(port) or not 1 <= port <= 65535:
        out.append(invalid(field, port, "must be between 1 and 65535, inclusive"))


def _validate_ports(ports: Any, base: str, out: Causes) -> None:
    if ports is None:
        return
    if not isinstance(ports, list):
        out.append(invalid(base, ports, "must be a list"))
        return
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = f"{base}[{i}]"
        if not isinstance(p, dict):
            out.append(invalid(path, p, "must be an object"))
            continue
        if p.get("containerPort") is None:
            out.append(required(path + ".containerPort"))
        else:
            _port_in_range(path + ".containerPort", p["containerPort"], out)
        host = p.get("hostPort")
        if host not in (None, 0):
            _port_in_range(path + ".hostPort", host, out)
        proto = p.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            out.append(not_supported(path + ".protocol", proto, PROTOCOLS))
        name = p.get("name")
        if name:
            if name in names:
                out.append(duplicate(path + ".name", name))
            names.add(name)


def _validate_resources(res: Any, base: str, out: Causes) -> None:
    if res is None:
        return
    if not isinstance(res, dict):
        out.append(invalid(base, res, "must be an object"))
        return
    req = validate_resource_list(res.get("requests"), base + ".requests", out, container=True)
    lim = validate_resource_list(res.get("limits"), base + ".limits", out, container=True)
    for name, value in req.items():
        if name in lim and value > lim[name]:
            out.append(invalid(key_path(base + ".requests", name), str(res["requests"][name]),
                               f"must be less than or equal to {name} limit of "
                               f"{res['limits'][name]}"))


def _validate_containers(cs: Any, base: str, names: set[str], volumes: set[str],
                         out: Causes, must_have: bool) -> None:
    if cs is None or cs == []:
        if must_have:
            out.append(required(base))
        return
    if not isinstance(cs, list):
        out.append(invalid(base, cs, "must be a list"))
        return
    for i, c in enumerate(cs):
        path = f"{base}[{i}]"
        if not isinstance(c, dict):
            out.append(invalid(path, c, "must be an object"))
            continue
        name = c.get("name")
        if not name:
            out.append(required(path + ".name"))
        elif not isinstance(name, str):
            out.append(invalid(path + ".name", name, "must be a string"))
        else:
            out.extend(invalid(path + ".name", name, m) for m in is_dns1123_label(name))
            if name in names:
                out.append(duplicate(path + ".name", name))
            names.add(name)
        image = c.get("image")
        if not image:
            out.append(required(path + ".image"))
        elif not isinstance(image, str):
            out.append(invalid(path + ".image", image, "must be a string"))
        elif image != image.strip():
            out.append(invalid(path + ".image", image,
                               "must not have leading or trailing whitespace"))
        for key, allowed in (("imagePullPolicy", PULL_POLICIES),
                             ("terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES)):
            v = c.get(key)
            if v is not None and v not in allowed:
                out.append(not_supported(f"{path}.{key}", v, allowed))
        _validate_ports(c.get("ports"), path + ".ports", out)
        _validate_resources(c.get("resources"), path + ".resources", out)
        mounts = c.get("volumeMounts")
        if isinstance(mounts, list):
            for j, m in enumerate(mounts):
                mp = f"{path}.volumeMounts[{j}]"
                if not isinstance(m, dict):
                    out.append(invalid(mp, m, "must be an object"))
                    continue
                if not m.get("name"):
                    out.append(required(mp + ".name"))
                elif m["name"] not in volumes:
                    out.append(not_found(mp + ".name", m["name"]))
                if not m.get("mountPath"):
                    out.append(required(mp + ".mountPath"))


def _validate_volumes(vols: Any, out: Causes) -> set[str]:
    names: set[str] = set()
    if vols is None:
        return names
    if not isinstance(vols, list):
        out.append(invalid("spec.volumes", vols, "must be a list"))
        return names
    for i, v in enumerate(vols):
        path = f"spec.volumes[{i}]"
        name = v.get("name") if isinstance(v, dict) else None
        if not name:
            out.append(required(path + ".name"))
            continue
        if not isinstance(name, str):
            out.append(invalid(path + ".name", name, "must be a string"))
            continue
        out.extend(invalid(path + ".name", name, m) for m in is_dns1123_label(name))
        if name in names:
            out.append(duplicate(path + ".name", name))
        names.add(name)
        validate_volume_source(v, path, out)
    return names


def _validate_tolerations(tols: Any, out: Causes) -> None:
    if tols is None:
        return
    if not isinstance(tols, list):
        out.append(invalid("spec.tolerations", tols, "must be a list"))
        return
    for i, t in enumerate(tols):
        path = f"spec.tolerations[{i}]"
        if not isinstance(t, dict):
            out.append(invalid(path, t, "must be an object"))
            continue
        key, op, value = t.get("key") or "", t.get("operator") or "Equal", t.get("value") or ""
        if key:
            out.extend(invalid(path + ".key", key, m) for m in is_qualified_name(str(key)))
        elif op != "Exists":
            out.append(invalid(path + ".operator", op, "operator must be Exists when `key` is "
                               "empty, which means \"match all values and all keys\""))
        if op == "Exists" and value:
            out.append(invalid(path + ".operator", op,
                               "value must be empty when `operator` is 'Exists'"))
        elif op == "Equal":
            out.extend(invalid(path + ".value", value, m) for m in is_label_value(str(value)))
        elif op not in TOLERATION_OPERATORS:
            out.append(not_supported(path + ".operator", op, TOLERATION_OPERATORS))
        effect = t.get("effect") or ""
        if effect and effect not in TAINT_EFFECTS:
            out.append(not_supported(path + ".effect", effect, TAINT_EFFECTS))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            out.append(invalid(path + ".effect", effect, "effect must be 'NoExecute' when "
                               "`tolerationSeconds` is set"))


def _same_toleration(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    keys = (a.keys() | b.keys()) - {"tolerationSeconds"}
    return all(a.get(k) == b.get(k) for k in keys)


def _copy_key(src: dict[str, Any], dst: dict[str, Any], key: str) -> None:
    if key in src:
        dst[key] = src[key]
    else:
        dst.pop(key, None)


def _validate_update(spec: dict[str, Any], old_spec: dict[str, Any], out: Causes) -> None:
    old_tols = old_spec.get("tolerations") or []
    new_tols = spec.get("tolerations") or []
    if isinstance(old_tols, list) and isinstance(new_tols, list):
        for t in old_tols:
            if not any(_same_toleration(t, n) for n in new_tols):
                out.append(forbidden("spec.tolerations", "existing toleration can not be "
                                     "modified except its tolerationSeconds"))
                break
    old_ads, new_ads = old_spec.get("activeDeadlineSeconds"), spec.get("activeDeadlineSeconds")
    if is_int(old_ads) and old_ads > 0:
        if new_ads is None:
            out.append(invalid("spec.activeDeadlineSeconds", None,
                               "must not update from a positive integer to nil value"))
        elif is_int(new_ads) and new_ads > old_ads:
            out.append(invalid("spec.activeDeadlineSeconds", new_ads,
                               "must be less than or equal to previous value"))
    masked = dict(spec)  # shallow: only replaced keys differ from the new spec
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        _copy_key(old_spec, masked, key)
    if not old_spec.get("nodeName"):
        _copy_key(old_spec, masked, "nodeName")
    for key in ("containers", "initContainers"):
        new_cs, old_cs = masked.get(key), old_spec.get(key)
        if isinstance(new_cs, list) and isinstance(old_cs, list) and len(new_cs) == len(old_cs):
            cs = []
            for n, o in zip(new_cs, old_cs):
                if isinstance(n, dict) and isinstance(o, dict):
                    n = dict(n)
                    _copy_key(o, n, "image")
                cs.append(n)
            masked[key] = cs
    if masked != old_spec:
        out.append(forbidden("spec", POD_UPDATE_FORBIDDEN))


def validate_pod(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if old is not None and spec is old.get("spec"):
        # A status write keeps the stored spec itself (``prepare_for_status_update``),
        # validated when it was written: as ValidatePodStatusUpdate, nothing in it is checked
        # again. Checking it was a third of the apiserver's cost of each pod status write.
        return out
    if not isinstance(spec, dict):
        out.append(required("spec.containers") if spec is None
                   else invalid("spec", spec, "must be an object"))
        return out
    volumes = _validate_volumes(spec.get("volumes"), out)
    names: set[str] = set()
    _validate_containers(spec.get("initContainers"), "spec.initContainers", names, volumes,
                         out, must_have=False)
    _validate_containers(spec.get("containers"), "spec.containers", names, volumes,
                         out, must_have=True)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        out.append(not_supported("spec.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if dp is not None and dp not in DNS_POLICIES:
        out.append(not_supported("spec.dnsPolicy", dp, DNS_POLICIES))
    tgps = spec.get("terminationGracePeriodSeconds")
    if tgps is not None:
        validate_nonnegative_int("spec.terminationGracePeriodSeconds", tgps, out)
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not is_int(ads) or not 1 <= ads <= MAX_INT32):
        out.append(invalid("spec.activeDeadlineSeconds", ads,
                           f"must be between 1 and {MAX_INT32}, inclusive"))
    for key in ("nodeName", "schedulerName"):
        v = spec.get(key)
        if v:
            msgs = is_dns1123_subdomain(v) if isinstance(v, str) else ["must be a string"]
            out.extend(invalid(f"spec.{key}", v, m) for m in msgs)
    validate_labels(spec.get("nodeSelector"), "spec.nodeSelector", out)
    _validate_tolerations(spec.get("tolerations"), out)
    if old is not None:
        old_spec = old.get("spec")
        if isinstance(old_spec, dict):
            _validate_update(spec, old_spec, out)
    return out
