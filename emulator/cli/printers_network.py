"""Table columns for Service and EndpointSlice, as kubectl 1.32 prints them.

Contract: importing this module registers printers for Service (NAME TYPE
CLUSTER-IP EXTERNAL-IP PORT(S) AGE; wide adds SELECTOR) and EndpointSlice
(NAME ADDRESSTYPE PORTS ENDPOINTS AGE), with kubectl's cell rules: ``<none>``
for no external IP, ``<pending>`` for a LoadBalancer without ingress,
``80:30080/TCP`` for node ports, and at most three endpoints then ``+ N more...``.
"""
from __future__ import annotations

from emulator.cli.printers import Column, age, register_printer

__all__ = ["service_ports", "service_external_ip", "slice_endpoints"]


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


NAME = Column("NAME", lambda o, now: _md(o).get("name", ""))
AGE = Column("AGE", lambda o, now: age(_md(o).get("creationTimestamp"), now))


def service_ports(svc: dict) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol") or "TCP"
        port = f"{p.get('port')}:{p['nodePort']}" if p.get("nodePort") else str(p.get("port"))
        out.append(f"{port}/{proto}")
    return ",".join(out) or "<none>"


def service_external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    typ = spec.get("type") or "ClusterIP"
    if typ == "ExternalName":
        return spec.get("externalName") or "<none>"
    ips = list(spec.get("externalIPs") or [])
    if typ == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")] + ips
        return ",".join(ips) or "<pending>"
    return ",".join(ips) or "<none>"


def _selector(svc: dict) -> str:
    sel = (svc.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


register_printer("Service", [
    NAME,
    Column("TYPE", lambda o, now: (o.get("spec") or {}).get("type") or "ClusterIP"),
    Column("CLUSTER-IP", lambda o, now: (o.get("spec") or {}).get("clusterIP") or "<none>"),
    Column("EXTERNAL-IP", lambda o, now: service_external_ip(o)),
    Column("PORT(S)", lambda o, now: service_ports(o)),
    AGE,
], [Column("SELECTOR", lambda o, now: _selector(o))])


def slice_endpoints(es: dict) -> str:
    addrs = [a for ep in es.get("endpoints") or [] for a in ep.get("addresses") or []]
    if not addrs:
        return "<none>"
    shown = ",".join(addrs[:3])
    return shown + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


def _slice_ports(es: dict) -> str:
    ports = es.get("ports")
    if ports is None:
        return "<unset>"
    return ",".join(str(p.get("port")) for p in ports if p.get("port") is not None) or "<unset>"


register_printer("EndpointSlice", [
    NAME,
    Column("ADDRESSTYPE", lambda o, now: o.get("addressType") or ""),
    Column("PORTS", lambda o, now: _slice_ports(o)),
    Column("ENDPOINTS", lambda o, now: slice_endpoints(o)),
    AGE,
])
