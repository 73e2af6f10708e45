"""The DNS add-on answering real UDP and TCP queries on loopback, fed by informers."""
from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from control.dns import server as dns
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import poll_for


class Flag:
    def __init__(self) -> None:
        self.stop = False

    def __bool__(self) -> bool:
        return self.stop


def _udp_raw(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(4096)
    except socket.timeout:
        return None
    finally:
        s.close()


def test_dns_serves_services_over_udp_and_tcp(mem_server: Any) -> None:
    user = Client(mem_server.address, component="test")
    dc = Client(mem_server.address, component="dns")
    cdns = dns.ClusterDNS(dc, FAST)
    listener = dns.serve(cdns.records, "127.0.0.1", 0)
    try:
        cdns.start()
        svc = user.create({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": "web", "namespace": "default"},
                           "spec": {"selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        user.create({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "db", "namespace": "default"},
                     "spec": {"clusterIP": "None", "selector": {"app": "db"},
                              "ports": [{"name": "pg", "port": 5432}]}})
        user.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "db-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": "db"}},
                     "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                     "endpoints": [{"addresses": ["127.64.1.5"], "conditions": {"ready": True}},
                                   {"addresses": ["127.64.1.6"], "conditions": {"ready": False}}]})
        deadline = time.monotonic() + 10
        while not cdns.records().names.get("db.default.svc.cluster.local"):
            cdns.step(0.02)
            assert time.monotonic() < deadline, "records never synced"
        port = listener.port
        for tcp in (False, True):
            r = dns.query("127.0.0.1", port, "web.default.svc.cluster.local", "A", tcp=tcp)
            assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
            assert [str(x.rdata) for x in r.rr] == [svc["spec"]["clusterIP"]]
        r = dns.query("127.0.0.1", port, "db.default.svc.cluster.local", "A")
        assert [str(x.rdata) for x in r.rr] == ["127.64.1.5"]
        r = dns.query("127.0.0.1", port, "_pg._tcp.db.default.svc.cluster.local", "SRV", tcp=True)
        assert r.rr[0].rdata.port == 5432 and str(r.ar[0].rdata) == "127.64.1.5"
        r = dns.query("127.0.0.1", port, "_http._tcp.web.default.svc.cluster.local", "SRV")
        assert r.rr[0].rdata.port == 80

        # NXDOMAIN in the zone, REFUSED outside it (never forwarded)
        r = dns.query("127.0.0.1", port, "nope.default.svc.cluster.local", "A")
        assert r.header.rcode == RCODE.NXDOMAIN and QTYPE[r.auth[0].rtype] == "SOA"
        assert dns.query("127.0.0.1", port, "example.com", "A").header.rcode == RCODE.REFUSED

        # unknown type: NODATA; malformed packets: FORMERR; the server keeps serving
        q = DNSRecord.question("web.default.svc.cluster.local", "A")
        q.q.qtype = 65400
        r = DNSRecord.parse(_udp_raw(port, bytes(q.pack())))
        assert r.header.rcode == RCODE.NOERROR and not r.rr
        r = DNSRecord.parse(_udp_raw(port, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07trunc"))
        assert r.header.id == 0xABCD and r.header.rcode == RCODE.FORMERR
        assert _udp_raw(port, b"\x01", timeout=0.3) is None   # too short to answer: dropped
        garbage = b"\x00\x07\x01\x00" + b"\xff" * 40   # a query header, then junk
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(struct.pack("!H", len(garbage)) + garbage)
            n = struct.unpack("!H", s.recv(2))[0]
            assert DNSRecord.parse(s.recv(n)).header.rcode == RCODE.FORMERR
        assert dns.query("127.0.0.1", port, "web.default.svc.cluster.local", "A").rr

        # a change reaches DNS: the service goes, its name goes
        user.delete("Service", "web", "default")
        deadline = time.monotonic() + 10
        while dns.query("127.0.0.1", port, "web.default.svc.cluster.local").header.rcode != RCODE.NXDOMAIN:
            cdns.step(0.02)
            assert time.monotonic() < deadline, "deletion never reached DNS"
    finally:
        listener.stop()
        cdns.stop()
        dc.close()
        user.close()


def test_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="only loopback"):
        dns.serve(lambda: None, "0.0.0.0", 0)   # type: ignore[arg-type,return-value]


def test_run_entry_writes_port_file(mem_server: Any, tmp_path: Path) -> None:
    port_file = tmp_path / "dns.endpoint"
    stop = Flag()
    t = threading.Thread(target=dns.run, kwargs=dict(server=mem_server.address, profile_name="fast",
                                                     log_path=str(tmp_path / "dns.jsonl"), stop=stop,
                                                     port_file=str(port_file)), daemon=True)
    t.start()
    try:
        poll_for(port_file.exists, 10, what="the DNS port file")
        udp, tcp = port_file.read_text().split()
        assert udp.startswith("udp://127.0.0.1:") and tcp == "tcp://" + udp[len("udp://"):]
        port = int(udp.rsplit(":", 1)[1])
        r = dns.query("127.0.0.1", port, "kubernetes.default.svc.cluster.local", "A")
        assert r.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN)
    finally:
        stop.stop = True
        t.join(10)
    assert not t.is_alive()


def test_dns_bench_smoke() -> None:
    from lab.bench import dns as bench
    out = bench.run(seconds=0.6, services=20)
    assert out["dns"]["queries"] > 0 and out["dns"]["errors"] == 0
    assert out["baseline_constant_dnslib"]["queries"] > 0
