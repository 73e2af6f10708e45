"""The Service and Endpoints kinds (core/v1): defaulting, validation, registration.

Contract (Kubernetes' ``SetDefaults_Service`` and ``ValidateService`` wording):
- ``default_service``: ``type: ClusterIP``, ``sessionAffinity: None``, each
  port's ``protocol: TCP`` and ``targetPort`` = ``port``; unless ExternalName:
  ``internalTrafficPolicy: Cluster``, ``ipFamilies: [IPv4]``,
  ``ipFamilyPolicy: SingleStack``, and ``clusterIP``/``clusterIPs`` mirrored
  into each other; NodePort/LoadBalancer: ``externalTrafficPolicy: Cluster``;
  LoadBalancer: ``allocateLoadBalancerNodePorts: true``; ClientIP affinity:
  ``sessionAffinityConfig.clientIP.timeoutSeconds: 10800``.
  IP and node-port allocation is the apiserver's (``control/apiserver/allocator``).
- ``validate_service``: supported type/sessionAffinity/traffic policies;
  ports required unless headless or ExternalName; per port: name required when
  more than one, an RFC 1123 label, unique; port 1-65535; protocol; targetPort
  a port number or an IANA_SVC_NAME; nodePort only for NodePort/LoadBalancer,
  1-65535, unique; clusterIP a valid IP or None (not None for
  NodePort/LoadBalancer, absent for ExternalName); externalName required for
  ExternalName. On update the primary cluster IP may not change
  (``spec.clusterIPs[0]: Invalid value: ...: may not change once set``) unless
  the type changes to or from ExternalName.
- ``validate_endpoints``: subsets' addresses are IPs, ports 1-65535 with names
  when there are several.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes
from emulator.api.kinds.apps_validation import go_value
from emulator.api.meta import (duplicate, forbidden, invalid, is_dns1123_label,
                               is_dns1123_subdomain, is_int, not_supported, required,
                               validate_labels)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["SERVICE", "ENDPOINTS", "default_service", "validate_service", "validate_endpoints",
           "is_valid_port_name", "is_headless", "needs_cluster_ip", "needs_node_ports",
           "SERVICE_TYPES", "PROTOCOLS"]

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
SESSION_AFFINITIES = ("None", "ClientIP")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
IP_FAMILIES = ("IPv4", "IPv6")
PROTOCOLS = ("TCP", "UDP", "SCTP")
PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
_PORT_NAME_RE = re.compile(r"^[-a-z0-9]+$")
_LETTER_RE = re.compile(r"[a-z]")


def is_valid_port_name(name: str) -> list[str]:
    """Kubernetes' IsValidPortName (an IANA_SVC_NAME)."""
    errs = []
    if len(name) < 1 or len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_RE.match(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    if not _LETTER_RE.search(name):
        errs.append("must contain at least one letter (a-z)")
    return errs


def _port_ok(v: Any) -> bool:
    return is_int(v) and 1 <= v <= 65535


def is_headless(svc: dict[str, Any]) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def needs_cluster_ip(svc: dict[str, Any]) -> bool:
    """Whether the Service gets a cluster IP (not ExternalName, not headless)."""
    spec = svc.get("spec") or {}
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec") or {}
    t = spec.get("type")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def default_service(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        return
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "ClientIP":
        sac = spec.setdefault("sessionAffinityConfig", {})
        if isinstance(sac, dict):
            cip = sac.setdefault("clientIP", {})
            if isinstance(cip, dict) and cip.get("timeoutSeconds") is None:
                cip["timeoutSeconds"] = 10800
    ports = spec.get("ports")
    if isinstance(ports, list):
        for p in ports:
            if not isinstance(p, dict):
                continue
            if not p.get("protocol"):
                p["protocol"] = "TCP"
            if p.get("targetPort") in (None, 0, "") and p.get("port") is not None:
                p["targetPort"] = p["port"]
    stype = spec["type"]
    if stype in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if stype == "ExternalName":
        return
    if not spec.get("internalTrafficPolicy"):
        spec["internalTrafficPolicy"] = "Cluster"
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if ip and not ips:
        spec["clusterIPs"] = [ip]
    elif not ip and isinstance(ips, list) and ips and isinstance(ips[0], str):
        spec["clusterIP"] = ips[0]
    if not spec.get("ipFamilies"):
        spec["ipFamilies"] = ["IPv4"]
    if not spec.get("ipFamilyPolicy"):
        spec["ipFamilyPolicy"] = "SingleStack"


def _validate_service_ports(spec: dict[str, Any], out: Causes) -> None:
    ports = spec.get("ports")
    stype = spec.get("type")
    if ports is None or ports == []:
        if spec.get("clusterIP") != "None" and stype != "ExternalName":
            out.append(required("spec.ports"))
        return
    if not isinstance(ports, list):
        out.append(invalid("spec.ports", ports, "must be a list"))
        return
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            out.append(invalid(path, p, "must be an object"))
            continue
        name = p.get("name")
        if not name:
            if len(ports) > 1:
                out.append(required(path + ".name"))
        elif not isinstance(name, str):
            out.append(invalid(path + ".name", name, "must be a string"))
        else:
            out.extend(invalid(path + ".name", name, m) for m in is_dns1123_label(name))
            if name in names:
                out.append(duplicate(path + ".name", name))
            names.add(name)
        port = p.get("port")
        if port is None:
            out.append(required(path + ".port"))
        elif not _port_ok(port):
            out.append(invalid(path + ".port", port, PORT_RANGE_MSG))
        proto = p.get("protocol")
        if not proto:
            out.append(required(path + ".protocol"))
        elif proto not in PROTOCOLS:
            out.append(not_supported(path + ".protocol", proto, PROTOCOLS))
        tp = p.get("targetPort")
        if isinstance(tp, str):
            out.extend(invalid(path + ".targetPort", tp, m) for m in is_valid_port_name(tp))
        elif tp is not None and not _port_ok(tp):
            out.append(invalid(path + ".targetPort", tp, PORT_RANGE_MSG))
        np = p.get("nodePort")
        if np not in (None, 0):
            if stype not in ("NodePort", "LoadBalancer"):
                out.append(forbidden(path + ".nodePort",
                                     f"may not be used when `type` is '{stype}'"))
            elif not _port_ok(np):
                out.append(invalid(path + ".nodePort", np, PORT_RANGE_MSG))
            elif (np, proto) in node_ports:
                out.append(duplicate(path + ".nodePort", np))
            node_ports.add((np, proto))
        key = (port, proto)
        if port is not None and key in seen:
            out.append(cause(path, "FieldValueDuplicate",
                             f'Duplicate value: core.ServicePort{{Name:"{name or ""}", '
                             f'Protocol:"{proto}", Port:{port}}}'))
        seen.add(key)


def _validate_cluster_ips(spec: dict[str, Any], out: Causes) -> None:
    stype = spec.get("type")
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if stype == "ExternalName":
        if ip or ips:
            out.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        return
    if ips is not None and not (isinstance(ips, list) and all(isinstance(x, str) for x in ips)):
        out.append(invalid("spec.clusterIPs", ips, "must be a list of strings"))
        return
    ips = ips or []
    if ip and ips and ips[0] != ip:
        out.append(cause("spec.clusterIPs", "FieldValueInvalid",
                         f"Invalid value: {go_value(ips)}: element [0] must match clusterIP"))
    if len(ips) > 2:
        out.append(cause("spec.clusterIPs", "FieldValueInvalid",
                         f"Invalid value: {go_value(ips)}: may only hold up to 2 values"))
    for i, v in enumerate(ips):
        path = f"spec.clusterIPs[{i}]"
        if v == "None":
            if i == 0 and stype in ("NodePort", "LoadBalancer"):
                out.append(invalid(path, v, f"may not be set to 'None' for {stype} services"))
            elif i > 0:
                out.append(invalid(path, v, "must be a valid IP address"))
            continue
        try:
            ipaddress.ip_address(v)
        except ValueError:
            out.append(invalid(path, v, "must be a valid IP address, (e.g. 10.9.8.7 or "
                                        "2001:db8::ffff)"))


def validate_service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec") if spec is None else invalid("spec", spec, "must be an object")]
    stype = spec.get("type")
    if stype not in SERVICE_TYPES:
        out.append(not_supported("spec.type", stype, SERVICE_TYPES))
    sa = spec.get("sessionAffinity")
    if sa is not None and sa not in SESSION_AFFINITIES:
        out.append(not_supported("spec.sessionAffinity", sa, SESSION_AFFINITIES))
    for key, allowed in (("internalTrafficPolicy", TRAFFIC_POLICIES),
                         ("ipFamilyPolicy", IP_FAMILY_POLICIES)):
        v = spec.get(key)
        if v is not None and v not in allowed:
            out.append(not_supported(f"spec.{key}", v, allowed))
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer"):
            out.append(invalid("spec.externalTrafficPolicy", etp,
                               "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
        elif etp not in TRAFFIC_POLICIES:
            out.append(not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES))
    fams = spec.get("ipFamilies")
    if isinstance(fams, list):
        for i, f in enumerate(fams):
            if f not in IP_FAMILIES:
                out.append(not_supported(f"spec.ipFamilies[{i}]", f, IP_FAMILIES))
    elif fams is not None:
        out.append(invalid("spec.ipFamilies", fams, "must be a list"))
    if stype == "ExternalName":
        en = spec.get("externalName")
        if not en:
            out.append(required("spec.externalName"))
        elif not isinstance(en, str):
            out.append(invalid("spec.externalName", en, "must be a string"))
        else:
            out.extend(invalid("spec.externalName", en, m)
                       for m in is_dns1123_subdomain(en.rstrip(".")))
    sel = spec.get("selector")
    if sel is not None:
        if isinstance(sel, dict):
            validate_labels(sel, "spec.selector", out)
        else:
            out.append(invalid("spec.selector", sel, "must be a map of labels"))
    _validate_service_ports(spec, out)
    _validate_cluster_ips(spec, out)
    if old is not None:
        old_spec = old.get("spec") or {}
        if "ExternalName" not in (stype, old_spec.get("type")):
            new_ips, old_ips = spec.get("clusterIPs") or [], old_spec.get("clusterIPs") or []
            if new_ips and old_ips and new_ips[0] != old_ips[0]:
                out.append(cause("spec.clusterIPs[0]", "FieldValueInvalid",
                                 f"Invalid value: {go_value(new_ips)}: may not change once set"))
    return out


def validate_endpoints(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    subsets = obj.get("subsets")
    if subsets is None:
        return out
    if not isinstance(subsets, list):
        return [invalid("subsets", subsets, "must be a list")]
    for i, ss in enumerate(subsets):
        base = f"subsets[{i}]"
        if not isinstance(ss, dict):
            out.append(invalid(base, ss, "must be an object"))
            continue
        for key in ("addresses", "notReadyAddresses"):
            addrs = ss.get(key) or []
            for j, a in enumerate(addrs if isinstance(addrs, list) else []):
                ap = f"{base}.{key}[{j}]"
                ip = a.get("ip") if isinstance(a, dict) else None
                if not ip:
                    out.append(required(ap + ".ip"))
                    continue
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    out.append(invalid(ap + ".ip", ip, "must be a valid IP address, (e.g. "
                                                       "10.9.8.7 or 2001:db8::ffff)"))
        ports = ss.get("ports") or []
        names: set[str] = set()
        for j, p in enumerate(ports if isinstance(ports, list) else []):
            pp = f"{base}.ports[{j}]"
            if not isinstance(p, dict):
                out.append(invalid(pp, p, "must be an object"))
                continue
            name = p.get("name")
            if not name:
                if len(ports) > 1:
                    out.append(required(pp + ".name"))
            elif isinstance(name, str):
                out.extend(invalid(pp + ".name", name, m) for m in is_dns1123_label(name))
                if name in names:
                    out.append(duplicate(pp + ".name", name))
                names.add(name)
            if not _port_ok(p.get("port")):
                out.append(invalid(pp + ".port", p.get("port"), PORT_RANGE_MSG))
            proto = p.get("protocol")
            if proto is not None and proto not in PROTOCOLS:
                out.append(not_supported(pp + ".protocol", proto, PROTOCOLS))
    return out


def _default_endpoints(obj: dict[str, Any]) -> None:
    for ss in obj.get("subsets") or ():
        if isinstance(ss, dict):
            for p in ss.get("ports") or ():
                if isinstance(p, dict) and not p.get("protocol"):
                    p["protocol"] = "TCP"


SERVICE = ResourceType(
    kind="Service", group="", version="v1", plural="services", singular="service",
    short_names=("svc",), namespaced=True, has_status=True, has_generation=True,
    default=default_service, validate=validate_service,
    selectable_fields=("spec.clusterIP", "spec.type"),
)
ENDPOINTS = ResourceType(
    kind="Endpoints", group="", version="v1", plural="endpoints", singular="endpoints",
    short_names=("ep",), namespaced=True, has_status=False, has_generation=False,
    default=_default_endpoints, validate=validate_endpoints,
)
REGISTRY.register(SERVICE)
REGISTRY.register(ENDPOINTS)
