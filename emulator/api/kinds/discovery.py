"""The EndpointSlice kind (discovery.k8s.io/v1): defaulting, validation, registration.

Contract (Kubernetes' ``ValidateEndpointSlice`` wording):
- ``default_endpoint_slice``: each port's ``protocol: TCP``.
- ``validate_endpoint_slice``: ``addressType`` required, one of IPv4/IPv6/FQDN
  and immutable on update; at most 1000 endpoints, each with 1-100 addresses
  valid for the address type, boolean conditions, a valid nodeName; at most
  100 ports with unique RFC 1123 label names, port 1-65535 when set, a
  supported protocol. The Service an EndpointSlice belongs to is named by its
  ``kubernetes.io/service-name`` label (a label, so no field selector).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes
from emulator.api.meta import (duplicate, immutable, invalid, is_dns1123_label,
                               is_dns1123_subdomain, is_int, not_supported, required)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["ENDPOINT_SLICE", "default_endpoint_slice", "validate_endpoint_slice",
           "SERVICE_NAME_LABEL", "MANAGED_BY_LABEL"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
PROTOCOLS = ("TCP", "UDP", "SCTP")
MAX_ENDPOINTS = 1000
MAX_PORTS = 100
MAX_ADDRESSES = 100


def default_endpoint_slice(obj: dict[str, Any]) -> None:
    for p in obj.get("ports") or ():
        if isinstance(p, dict) and not p.get("protocol"):
            p["protocol"] = "TCP"


def _address_errors(addr: Any, address_type: str) -> list[str]:
    if not isinstance(addr, str):
        return ["must be a string"]
    if address_type == "FQDN":
        return is_dns1123_subdomain(addr)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        ip = None
    want = 4 if address_type == "IPv4" else 6
    if ip is None or ip.version != want:
        return [f"must be a valid {address_type} address"]
    return []


def _validate_endpoints(eps: Any, address_type: Any, out: Causes) -> None:
    if eps is None:
        return
    if not isinstance(eps, list):
        out.append(invalid("endpoints", eps, "must be a list"))
        return
    if len(eps) > MAX_ENDPOINTS:
        out.append(cause_too_many("endpoints", len(eps), MAX_ENDPOINTS))
    for i, ep in enumerate(eps):
        base = f"endpoints[{i}]"
        if not isinstance(ep, dict):
            out.append(invalid(base, ep, "must be an object"))
            continue
        addrs = ep.get("addresses")
        if not addrs:
            out.append(required(base + ".addresses", "must contain at least 1 address"))
        elif not isinstance(addrs, list):
            out.append(invalid(base + ".addresses", addrs, "must be a list"))
        else:
            if len(addrs) > MAX_ADDRESSES:
                out.append(cause_too_many(base + ".addresses", len(addrs), MAX_ADDRESSES))
            if address_type in ADDRESS_TYPES:
                for j, a in enumerate(addrs):
                    out.extend(invalid(f"{base}.addresses[{j}]", a, m)
                               for m in _address_errors(a, address_type))
        conds = ep.get("conditions")
        if isinstance(conds, dict):
            for key in ("ready", "serving", "terminating"):
                v = conds.get(key)
                if v is not None and not isinstance(v, bool):
                    out.append(invalid(f"{base}.conditions.{key}", v, "must be a boolean"))
        elif conds is not None:
            out.append(invalid(base + ".conditions", conds, "must be an object"))
        node = ep.get("nodeName")
        if node:
            msgs = is_dns1123_subdomain(node) if isinstance(node, str) else ["must be a string"]
            out.extend(invalid(base + ".nodeName", node, m) for m in msgs)
        host = ep.get("hostname")
        if host:
            msgs = is_dns1123_label(host) if isinstance(host, str) else ["must be a string"]
            out.extend(invalid(base + ".hostname", host, m) for m in msgs)


def cause_too_many(field: str, n: int, limit: int) -> dict[str, str]:
    return cause(field, "FieldValueTooMany", f"Too many: {n}: must have at most {limit} items")


def _validate_ports(ports: Any, out: Causes) -> None:
    if ports is None:
        return
    if not isinstance(ports, list):
        out.append(invalid("ports", ports, "must be a list"))
        return
    if len(ports) > MAX_PORTS:
        out.append(cause_too_many("ports", len(ports), MAX_PORTS))
    names: set[str] = set()
    for i, p in enumerate(ports):
        base = f"ports[{i}]"
        if not isinstance(p, dict):
            out.append(invalid(base, p, "must be an object"))
            continue
        name = p.get("name") or ""
        if not isinstance(name, str):
            out.append(invalid(base + ".name", name, "must be a string"))
        else:
            if name:
                out.extend(invalid(base + ".name", name, m) for m in is_dns1123_label(name))
            if name in names:
                out.append(duplicate(base + ".name", name))
            names.add(name)
        port = p.get("port")
        if port is not None and (not is_int(port) or not 1 <= port <= 65535):
            out.append(invalid(base + ".port", port, "must be between 1 and 65535, inclusive"))
        proto = p.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            out.append(not_supported(base + ".protocol", proto, PROTOCOLS))


def validate_endpoint_slice(obj: dict[str, Any],
                            old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    at = obj.get("addressType")
    if not at:
        out.append(required("addressType"))
    elif at not in ADDRESS_TYPES:
        out.append(not_supported("addressType", at, ADDRESS_TYPES))
    _validate_endpoints(obj.get("endpoints"), at, out)
    _validate_ports(obj.get("ports"), out)
    if old is not None and old.get("addressType") != at:
        out.append(immutable("addressType", at))
    return out


ENDPOINT_SLICE = ResourceType(
    kind="EndpointSlice", group="discovery.k8s.io", version="v1", plural="endpointslices",
    singular="endpointslice", short_names=(), namespaced=True, has_status=False,
    has_generation=False, default=default_endpoint_slice, validate=validate_endpoint_slice,
)
REGISTRY.register(ENDPOINT_SLICE)
