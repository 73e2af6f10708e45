"""kube-proxy's rules table, computed purely from Services and EndpointSlices.

After Kubernetes' ``pkg/proxy/iptables/proxier.go`` (``syncProxyRules``) and
``pkg/proxy/topology.go`` (``CategorizeEndpoints``).

Contract
--------
* ``compute_table(services, slices, node_name, node_ip)`` returns a ``Table``:
  one ``ServicePort`` per (Service, port) with a ClusterIP (headless and
  ExternalName Services are skipped), sorted by ``ns/name:port/protocol``;
  each lists the endpoints traffic may go to, sorted by ``ip:port``, with
  the probability iptables mode gives each (the i-th of n gets
  ``1/(n-i)`` of what is left; the last one takes the rest and has no
  ``statistic`` match).
* Endpoints, as ``CategorizeEndpoints`` chooses them: the ready ones; when
  none is ready, the serving-and-terminating ones (graceful termination);
  with ``internalTrafficPolicy: Local``, only those on ``node_name``. A slice
  port is matched to a Service port by name and protocol.
* NodePort Services also get ``node_port`` on ``node_ip``.
* Chain names are Kubernetes': ``KUBE-SVC-`` + the first 16 characters of
  base32(sha256(``ns/name:portname`` + ``tcp``)), and ``KUBE-SEP-`` with the
  endpoint ``ip:port`` appended to the hashed string. They depend only on the
  objects, so tables from different nodes can be compared line by line.
* ``render_iptables(table)`` renders ``iptables-save``-style text of the nat
  table (and the filter table's REJECT rules for Services with no
  endpoints). Probabilities are printed as iptables-save prints them (the
  kernel keeps ``probability * 2^31`` as an integer, so 1/3 reads
  ``0.33333333349``).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Iterable

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node_name: str
    ready: bool
    serving: bool
    terminating: bool
    chain: str
    probability: float | None = None   # None: the last rule, taken unconditionally


@dataclass(frozen=True)
class ServicePort:
    name: str            # ns/name:portname, as kube-proxy's ServicePortName
    namespace: str
    service: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    node_port: int | None
    chain: str
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True)
class Table:
    node_name: str
    node_ip: str
    services: tuple[ServicePort, ...] = field(default_factory=tuple)

    @property
    def rules(self) -> int:
        return len(render_iptables(self).splitlines())

    def as_dict(self) -> dict:
        return asdict(self)


def _hash16(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    return f"{namespace}/{name}" + (f":{port_name}" if port_name else "")


def service_chain(spn: str, protocol: str) -> str:
    """servicePortChainName."""
    return "KUBE-SVC-" + _hash16(spn + protocol.lower())


def endpoint_chain(spn: str, protocol: str, endpoint: str) -> str:
    """servicePortEndpointChainName."""
    return "KUBE-SEP-" + _hash16(spn + protocol.lower() + endpoint)


def _slice_endpoints(slices: Iterable[dict], port_name: str, protocol: str) -> dict[str, dict]:
    """ip:port -> {ip, port, node, conditions} for one service port, deduplicated."""
    out: dict[str, dict] = {}
    for sl in slices:
        port = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                port = p.get("port")
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            for ip in (ep.get("addresses") or [])[:1]:
                cond = ep.get("conditions") or {}
                ready = cond.get("ready")
                ready = True if ready is None else bool(ready)
                serving = cond.get("serving")
                out[f"{ip}:{port}"] = {"ip": ip, "port": int(port), "node": ep.get("nodeName") or "",
                                       "ready": ready, "serving": ready if serving is None else bool(serving),
                                       "terminating": bool(cond.get("terminating"))}
    return out


def _sort_key(ep_key: str) -> tuple:
    ip, _, port = ep_key.rpartition(":")
    try:
        return (tuple(int(x) for x in ip.split(".")), int(port))
    except ValueError:
        return ((0,), ep_key)


def categorize(candidates: dict[str, dict], node_name: str, local_only: bool) -> list[str]:
    """CategorizeEndpoints (cluster traffic): ready, else serving+terminating; Local filters by node."""
    pool = {k: v for k, v in candidates.items() if not local_only or v["node"] == node_name}
    chosen = [k for k, v in pool.items() if v["ready"]]
    if not chosen:
        chosen = [k for k, v in pool.items() if v["serving"] and v["terminating"]]
    return sorted(chosen, key=_sort_key)


def compute_table(services: Iterable[dict], slices: Iterable[dict], node_name: str,
                  node_ip: str = "127.0.0.1") -> Table:
    by_service: dict[tuple[str, str], list[dict]] = {}
    for sl in slices:
        svc = (sl["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            by_service.setdefault((sl["metadata"].get("namespace") or "", svc), []).append(sl)
    out: list[ServicePort] = []
    for svc in services:
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP") or ""
        if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
            continue
        ns = svc["metadata"].get("namespace") or ""
        name = svc["metadata"]["name"]
        local = spec.get("internalTrafficPolicy") == "Local"
        for sp in spec.get("ports") or []:
            proto = sp.get("protocol") or "TCP"
            port_name = sp.get("name") or ""
            spn = service_port_name(ns, name, port_name)
            cands = _slice_endpoints(by_service.get((ns, name), []), port_name, proto)
            keys = categorize(cands, node_name, local)
            n = len(keys)
            eps = []
            for i, k in enumerate(keys):
                c = cands[k]
                eps.append(Endpoint(ip=c["ip"], port=c["port"], node_name=c["node"], ready=c["ready"],
                                    serving=c["serving"], terminating=c["terminating"],
                                    chain=endpoint_chain(spn, proto, k),
                                    probability=None if i == n - 1 else 1.0 / (n - i)))
            node_port = sp.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None
            out.append(ServicePort(name=spn, namespace=ns, service=name, port_name=port_name,
                                   protocol=proto, cluster_ip=cluster_ip, port=int(sp.get("port") or 0),
                                   node_port=int(node_port) if node_port else None,
                                   chain=service_chain(spn, proto), endpoints=tuple(eps)))
    out.sort(key=lambda s: (s.name, s.protocol))
    return Table(node_name=node_name, node_ip=node_ip, services=tuple(out))


def iptables_probability(p: float) -> str:
    """As iptables-save prints ``--probability``: the kernel keeps round(p * 2^31)."""
    return f"{round(p * 0x80000000) / 0x80000000:.11f}"


def render_iptables(table: Table) -> str:
    """iptables-save-like text of the table (deterministic)."""
    nat: list[str] = []
    filt: list[str] = []
    chains: list[str] = ["KUBE-SERVICES", "KUBE-NODEPORTS"]
    body: list[str] = []
    for sp in table.services:
        proto = sp.protocol.lower()
        if not sp.endpoints:
            filt.append(f'-A KUBE-SERVICES -d {sp.cluster_ip}/32 -p {proto} -m comment --comment '
                        f'"{sp.name} has no endpoints" -m {proto} --dport {sp.port} -j REJECT')
            if sp.node_port:
                filt.append(f'-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment '
                            f'"{sp.name} has no endpoints" -m {proto} --dport {sp.node_port} -j REJECT')
            continue
        chains.append(sp.chain)
        nat.append(f"-A KUBE-SERVICES -d {sp.cluster_ip}/32 -p {proto} -m {proto} "
                   f"--dport {sp.port} -j {sp.chain}")
        if sp.node_port:
            nat.append(f"-A KUBE-NODEPORTS -d {table.node_ip}/32 -p {proto} -m {proto} "
                       f"--dport {sp.node_port} -j {sp.chain}")
        for ep in sp.endpoints:
            chains.append(ep.chain)
            stat = "" if ep.probability is None else \
                f" -m statistic --mode random --probability {iptables_probability(ep.probability)}"
            body.append(f"-A {sp.chain}{stat} -j {ep.chain}")
        for ep in sp.endpoints:
            body.append(f"-A {ep.chain} -p {proto} -m {proto} -j DNAT --to-destination {ep.ip}:{ep.port}")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    lines = ["*filter", ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", *filt, "COMMIT",
             "*nat", *[f":{c} - [0:0]" for c in chains], *nat, *body, "COMMIT"]
    return "\n".join(lines) + "\n"
