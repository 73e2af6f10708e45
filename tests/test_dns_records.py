"""Cluster DNS records (pure) and the reply builder, without sockets."""
from __future__ import annotations

from dnslib import QTYPE, RCODE, DNSRecord

from control.dns import records as rec
from control.dns.server import build_reply, formerr


def service(name: str, ns: str = "default", cluster_ip: str = "127.96.0.10", **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip,
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                               {"port": 9000, "protocol": "TCP"}], **spec}}


def eps(svc: str, endpoints: list[tuple[str, bool, str | None]], ns: str = "default") -> dict:
    return {"metadata": {"name": f"{svc}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
                           **({"hostname": h} if h else {})} for ip, ready, h in endpoints]}


SNAP = rec.build_records(
    [service("web"), service("db", cluster_ip="None"),
     {"metadata": {"name": "ext", "namespace": "default"},
      "spec": {"type": "ExternalName", "externalName": "example.org"}}],
    [eps("db", [("127.64.1.6", True, None), ("127.64.1.5", True, "db-0"), ("127.64.1.7", False, None)])])


def test_cluster_ip_a_record() -> None:
    assert rec.answer(SNAP, "web.default.svc.cluster.local.", "A") == \
        (rec.NOERROR, [rec.Record("web.default.svc.cluster.local", "A", ("127.96.0.10",))])
    assert rec.answer(SNAP, "WEB.Default.svc.cluster.local", "A")[1][0].data == ("127.96.0.10",)


def test_headless_one_a_per_ready_endpoint() -> None:
    rcode, rrs = rec.answer(SNAP, "db.default.svc.cluster.local", "A")
    assert rcode == rec.NOERROR and [r.data[0] for r in rrs] == ["127.64.1.5", "127.64.1.6"]
    assert rec.answer(SNAP, "db-0.db.default.svc.cluster.local", "A")[1][0].data == ("127.64.1.5",)
    assert rec.answer(SNAP, "127-64-1-6.db.default.svc.cluster.local", "A")[1][0].data == ("127.64.1.6",)


def test_srv_for_named_ports_only() -> None:
    rcode, rrs = rec.answer(SNAP, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rcode == rec.NOERROR and rrs[0].data == (0, 100, 80, "web.default.svc.cluster.local")
    _, rrs = rec.answer(SNAP, "_http._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(r.data[2:] for r in rrs) == [(8080, "127-64-1-6.db.default.svc.cluster.local"),
                                               (8080, "db-0.db.default.svc.cluster.local")]
    assert rec.answer(SNAP, "_9000._tcp.web.default.svc.cluster.local", "SRV")[0] == rec.NXDOMAIN


def test_nxdomain_nodata_refused_cname() -> None:
    assert rec.answer(SNAP, "nope.default.svc.cluster.local", "A") == (rec.NXDOMAIN, [])
    assert rec.answer(SNAP, "default.svc.cluster.local", "A") == (rec.NOERROR, [])   # empty non-terminal
    assert rec.answer(SNAP, "web.default.svc.cluster.local", "AAAA") == (rec.NOERROR, [])
    assert rec.answer(SNAP, "example.com", "A") == (rec.REFUSED, [])
    assert rec.answer(SNAP, "ext.default.svc.cluster.local", "A")[1][0].rtype == "CNAME"


def _ask(name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.parse(build_reply(DNSRecord.question(name, qtype), SNAP).pack())


def test_reply_flags_soa_and_additionals() -> None:
    r = _ask("web.default.svc.cluster.local")
    assert r.header.aa == 1 and r.header.ra == 0 and r.header.rcode == RCODE.NOERROR
    assert str(r.rr[0].rdata) == "127.96.0.10"
    r = _ask("nope.default.svc.cluster.local")
    assert r.header.rcode == RCODE.NXDOMAIN and QTYPE[r.auth[0].rtype] == "SOA"
    r = _ask("_http._tcp.db.default.svc.cluster.local", "SRV")
    assert len(r.rr) == 2 and {str(a.rdata) for a in r.ar} == {"127.64.1.5", "127.64.1.6"}


def test_reply_errors() -> None:
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.q.qtype = 65400   # unknown type: NODATA
    r = DNSRecord.parse(build_reply(q, SNAP).pack())
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    q = DNSRecord.question("web.default.svc.cluster.local", "AXFR")
    assert build_reply(q, SNAP).header.rcode == RCODE.NOTIMP
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.header.opcode = 2   # STATUS
    assert build_reply(q, SNAP).header.rcode == RCODE.NOTIMP
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.add_question(q.q)
    assert build_reply(q, SNAP).header.rcode == RCODE.FORMERR
    out = formerr(b"\x12\x34\x01garbage")
    assert out is not None
    r = DNSRecord.parse(out)
    assert r.header.id == 0x1234 and r.header.rcode == RCODE.FORMERR and r.header.qr == 1
    assert formerr(b"\x01") is None
