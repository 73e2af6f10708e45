"""DNS add-on benchmark: queries per second from one client, and p99 latency.

Contract: ``run(seconds=3, services=1000) -> dict`` starts, in this process,
the add-on's UDP server (``control.dns.server.serve``) over a snapshot of
``services`` ClusterIP Services (the informers are not involved: this
measures serving, not syncing), and next to it a baseline — a plain dnslib
server (its own handler) answering one constant A record. One client asks
sequentially over UDP for half of ``seconds`` each (in
interleaved rounds), cycling through the
service names. Both servers are stopped before it returns. Reports qps, p50
and p99 latency (ms) of each, and their ratio.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any

from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler

from control.dns import records as rec
from control.dns.server import serve
from lab.bench.common import percentile


ROUNDS = 6
_A = A("127.96.0.10")


class _Constant(BaseResolver):
    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=_A, ttl=5))
        return reply


def _snapshot(n: int) -> rec.Records:
    svcs = [{"metadata": {"name": f"svc-{i}", "namespace": "default"},
             "spec": {"clusterIP": f"127.96.{i // 250}.{i % 250 + 1}",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}} for i in range(n)]
    return rec.build_records(svcs, [])


def _drive(port: int, names: list[bytes], seconds: float, lat: list[float]) -> int:
    """Ask sequentially for ``seconds``; append latencies to ``lat``; return the error count."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    errors = 0
    deadline = time.perf_counter() + seconds
    i = 0
    try:
        while time.perf_counter() < deadline:
            pkt = names[i % len(names)]
            i += 1
            t0 = time.perf_counter()
            s.sendto(pkt, ("127.0.0.1", port))
            try:
                data = s.recv(4096)
            except socket.timeout:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)
            if data[:2] != pkt[:2] or (data[3] & 0xF) != 0:
                errors += 1
    finally:
        s.close()
    return errors


def _summary(lat: list[float], errors: int, seconds: float) -> dict[str, float]:
    return {"queries": len(lat), "qps": round(len(lat) / seconds, 1), "errors": errors,
            "p50_ms": round(percentile(lat, 50) * 1000, 3), "p99_ms": round(percentile(lat, 99) * 1000, 3)}


def run(seconds: float = 3.0, services: int = 1000) -> dict[str, Any]:
    snap = _snapshot(services)
    names = []
    for i in range(min(services, 256)):
        q = DNSRecord.question(f"svc-{i}.default.svc.cluster.local", "A")
        q.header.id = i + 1
        names.append(bytes(q.pack()))
    ours = serve(lambda: snap, "127.0.0.1", 0)
    base = serve(lambda: snap, "127.0.0.1", 0, resolver=_Constant(), handler=DNSHandler)
    lat: dict[int, list[float]] = {ours.port: [], base.port: []}
    errs = {ours.port: 0, base.port: 0}
    try:   # interleaved rounds, so machine noise hits both alike
        for _ in range(ROUNDS):
            for port in (ours.port, base.port):
                errs[port] += _drive(port, names, seconds / 2 / ROUNDS, lat[port])
        dns = _summary(lat[ours.port], errs[ours.port], seconds / 2)
        baseline = _summary(lat[base.port], errs[base.port], seconds / 2)
    finally:
        ours.stop()
        base.stop()
    return {"bench": "dns", "services": services, "seconds": seconds, "dns": dns,
            "baseline_constant_dnslib": baseline,
            "qps_ratio": round(dns["qps"] / baseline["qps"], 3) if baseline["qps"] else None}


def main(args: Any = None) -> int:
    print(json.dumps(run(getattr(args, "seconds", 3.0), getattr(args, "services", 1000)), indent=1))
    return 0


if __name__ == "__main__":
    main()
