"""Cluster DNS records from Services and EndpointSlices, and the answer to a question.

After the Kubernetes DNS specification (``dns/specification.md`` of
``kubernetes/dns``) as CoreDNS's ``kubernetes`` plugin serves it.

Contract
--------
* ``build_records(services, slices, domain="cluster.local")`` returns a
  ``Records`` snapshot (an immutable mapping name -> list of ``Record``):
  - ``<svc>.<ns>.svc.<domain>`` A -> the ClusterIP;
  - headless Services (``clusterIP: None``): one A per ready endpoint
    (``publishNotReadyAddresses`` makes every endpoint count, as the
    EndpointSlice's ``ready`` already says), plus
    ``<hostname>.<svc>.<ns>.svc.<domain>`` for endpoints with a hostname and
    ``<a-b-c-d>.<svc>.<ns>.svc.<domain>`` for the others;
  - ExternalName Services: a CNAME to ``externalName``;
  - ``_<port>._<proto>.<svc>.<ns>.svc.<domain>`` SRV for each named port:
    ``0 100 <port> <svc>.<ns>.svc.<domain>.`` for a ClusterIP Service, one
    per ready endpoint (target its endpoint name) for a headless one;
  - ``<domain>`` SOA.
* ``answer(records, qname, qtype)`` -> ``(rcode, [Record])``, lower-cased and
  without the trailing dot: names under the cluster domain that exist give
  NOERROR (records of that type, or none: NODATA, also for empty
  non-terminals such as ``<ns>.svc.<domain>``); unknown names there give
  NXDOMAIN; names outside the domain give REFUSED (the add-on never
  forwards anywhere).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TTL = 5   # CoreDNS kubernetes plugin's default ttl
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Record:
    name: str
    rtype: str            # "A", "SRV", "CNAME", "SOA"
    data: tuple           # A: (ip,); SRV: (priority, weight, port, target); CNAME: (target,); SOA: (...)
    ttl: int = TTL


@dataclass(frozen=True)
class Records:
    domain: str
    names: Mapping[str, tuple[Record, ...]]
    parents: frozenset[str]   # empty non-terminals: exist, with no records

    def __len__(self) -> int:
        return sum(len(v) for v in self.names.values())


def _ready_endpoints(slices: Iterable[dict]) -> list[tuple[str, str | None, dict[tuple[str, str], int]]]:
    """(ip, hostname, {(portname, proto): port}) of each ready endpoint, sorted, deduplicated."""
    seen: dict[str, tuple[str, str | None, dict[tuple[str, str], int]]] = {}
    for sl in slices:
        ports = {((p.get("name") or ""), (p.get("protocol") or "TCP")): int(p.get("port") or 0)
                 for p in sl.get("ports") or []}
        for ep in sl.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            if ready is False:
                continue
            for ip in (ep.get("addresses") or [])[:1]:
                prev = seen.get(ip)
                merged = {**(prev[2] if prev else {}), **ports}
                seen[ip] = (ip, ep.get("hostname") or (prev[1] if prev else None), merged)
    return [seen[ip] for ip in sorted(seen, key=_ip_key)]


def _ip_key(ip: str) -> tuple:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (0, ip)


def build_records(services: Iterable[dict], slices: Iterable[dict], domain: str = "cluster.local") -> Records:
    domain = domain.strip(".").lower()
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        svc = (sl["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            by_service.setdefault((sl["metadata"].get("namespace") or "", svc), []).append(sl)
    names: dict[str, list[Record]] = {}

    def add(rec: Record) -> None:
        names.setdefault(rec.name, []).append(rec)

    add(Record(domain, "SOA", (f"ns.dns.{domain}", f"hostmaster.{domain}", 1, 7200, 1800, 86400, TTL)))
    for svc in services:
        md, spec = svc["metadata"], svc.get("spec") or {}
        ns = (md.get("namespace") or "default").lower()
        base = f"{md['name'].lower()}.{ns}.svc.{domain}"
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                add(Record(base, "CNAME", (spec["externalName"].strip(".").lower(),)))
            continue
        cluster_ip = spec.get("clusterIP") or ""
        ports = [p for p in spec.get("ports") or [] if p.get("name")]
        if cluster_ip and cluster_ip != "None":
            add(Record(base, "A", (cluster_ip,)))
            for p in ports:
                proto = (p.get("protocol") or "TCP").lower()
                add(Record(f"_{p['name'].lower()}._{proto}.{base}", "SRV", (0, 100, int(p["port"]), base)))
            continue
        if cluster_ip != "None":
            continue   # no address allocated yet
        for ip, hostname, ep_ports in _ready_endpoints(by_service.get((md.get("namespace") or "", md["name"]), [])):
            add(Record(base, "A", (ip,)))
            target = f"{(hostname or ip.replace('.', '-')).lower()}.{base}"
            add(Record(target, "A", (ip,)))
            for p in ports:
                proto = p.get("protocol") or "TCP"
                port = ep_ports.get((p["name"], proto))
                if port:
                    add(Record(f"_{p['name'].lower()}._{proto.lower()}.{base}", "SRV", (0, 100, port, target)))
    parents: set[str] = set()
    for name in names:
        labels = name.split(".")
        for i in range(1, len(labels)):
            parent = ".".join(labels[i:])
            if parent.endswith(domain) and len(parent) >= len(domain):
                parents.add(parent)
    frozen = {k: tuple(dict.fromkeys(v)) for k, v in names.items()}
    return Records(domain, MappingProxyType(frozen), frozenset(parents - set(frozen)))


def answer(records: Records, qname: str, qtype: str) -> tuple[int, list[Record]]:
    """The rcode and the records answering ``qtype`` (or "ANY") for ``qname``."""
    name = qname.strip(".").lower()
    if name != records.domain and not name.endswith("." + records.domain):
        return REFUSED, []
    found = records.names.get(name)
    if found is None:
        return (NOERROR, []) if name in records.parents else (NXDOMAIN, [])
    if qtype == "ANY":
        return NOERROR, list(found)
    direct = [r for r in found if r.rtype == qtype]
    if direct:
        return NOERROR, direct
    cname = [r for r in found if r.rtype == "CNAME"]
    return NOERROR, cname   # a CNAME answers any type (the client follows it)


def soa(records: Records) -> Record:
    return records.names[records.domain][0]
