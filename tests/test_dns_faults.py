"""dns-error in-process: the add-on's rules (DNSFaults), its answers under a rule, the
lab-side kind's params, and the chain kind -> ctl state file -> ctl socket -> add-on."""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from control.dns import records as rec
from control.dns import server as dns
from control.dns.faults import DNSFaults
from emulator import ctl
from lab.chaos.dns_faults import DNS_KINDS, rule
from lab.chaos.model import Fault
from tests.conftest import poll_for

WEB = "web.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


def records() -> rec.Records:
    svcs = [{"metadata": {"name": n, "namespace": "default"},
             "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}
            for n, ip in (("web", "10.96.0.10"), ("db", "10.96.0.11"))]
    return rec.build_records(svcs, [])


def ask(name: str, faults: DNSFaults | None, qtype: str = "A") -> DNSRecord:
    return dns.build_reply(DNSRecord.question(name, qtype), records(), faults)


# -- DNSFaults: validation ------------------------------------------------------
@pytest.mark.parametrize("args, field", [
    ({"rules": "x"}, "rules: must be a list"),
    ({"rules": ["x"]}, "rules[0]: must be a mapping"),
    ({"rules": [{"rcode": "FOO"}]}, "rules[0].rcode: 'FOO' is not supported: use SERVFAIL or NXDOMAIN"),
    ({"rules": [{}, {"percent": 101}]}, "rules[1].percent: 101 must be a number from 0 to 100"),
    ({"rules": [{"percent": True}]}, "rules[0].percent"),
    ({"rules": [{"percent": "50"}]}, "rules[0].percent"),
    ({"rules": [{"patterns": []}]}, "rules[0].patterns: must be a non-empty list"),
    ({"rules": [{"patterns": "web"}]}, "rules[0].patterns: must be a non-empty list"),
    ({"rules": [{"patterns": ["web", ""]}]}, "rules[0].patterns[1]: must be a non-empty name glob"),
    ({"rules": [{"patterns": ["web default"]}]}, "rules[0].patterns[0]: 'web default' is not a name glob"),
    ({"rules": [{"fault": 3}]}, "rules[0].fault: must be a string"),
    ({"rules": [{"colour": "red"}]}, "rules[0].colour: unknown field"),
])
def test_bad_rules_name_the_field_and_change_nothing(args: dict, field: str) -> None:
    f = DNSFaults()
    f.set({"rules": [{"fault": "f-1", "patterns": ["*"]}]})
    before = f.rules
    with pytest.raises(ValueError) as e:
        f.set(args)
    assert str(e.value).startswith(field), str(e.value)
    assert f.rules is before


def test_rules_defaults_and_clearing() -> None:
    f = DNSFaults()
    assert f.set({}) == {"rules": 0} and f.match(WEB) is None
    assert f.set({"rules": [{"fault": "f-1"}]}) == {"rules": 1}
    (r,) = f.rules
    assert (r.patterns, r.rcode, r.percent) == (("*",), rec.SERVFAIL, 100.0)
    assert f.match(WEB) == rec.SERVFAIL and f.match("example.com.") == rec.SERVFAIL
    assert f.set({"rules": []}) == {"rules": 0} and f.rules == () and f.match(WEB) is None


def test_matching_globs_case_and_trailing_dot() -> None:
    f = DNSFaults()
    f.set({"rules": [{"fault": "f-1", "patterns": ["WEB.default.svc.cluster.local."], "rcode": "nxdomain"},
                     {"fault": "f-2", "patterns": ["*.kube-system.svc.cluster.local", "db-?.default.*"]}]})
    assert f.match("Web.Default.Svc.Cluster.Local.") == rec.NXDOMAIN
    assert f.match(WEB) == rec.NXDOMAIN
    assert f.match("_http._tcp." + WEB) is None   # a glob matches the whole name
    assert f.match("kube-dns.kube-system.svc.cluster.local") == rec.SERVFAIL
    assert f.match("db-1.default.svc.cluster.local") == rec.SERVFAIL
    assert f.match("db-12.default.svc.cluster.local") is None
    assert f.match(DB) is None


def test_percent_is_a_probability_per_query() -> None:
    f = DNSFaults(rng=random.Random(7))
    f.set({"rules": [{"patterns": ["*"], "percent": 0}]})
    assert all(f.match(WEB) is None for _ in range(200))
    f.set({"rules": [{"patterns": ["*"], "percent": 30}]})
    hits = sum(f.match(WEB) is not None for _ in range(2000))
    assert 400 < hits < 800   # seeded: deterministic, about 30%
    # two faults act independently: a miss of the first still lets the second fire
    f.set({"rules": [{"fault": "f-1", "percent": 0}, {"fault": "f-2", "rcode": "NXDOMAIN"}]})
    assert f.match(WEB) == rec.NXDOMAIN


# -- the resolver's answers under a rule -----------------------------------------
def test_answers_under_rules() -> None:
    f = DNSFaults()
    f.set({"rules": [{"fault": "f-1", "patterns": [WEB], "rcode": "SERVFAIL"},
                     {"fault": "f-2", "patterns": [DB, "nope.default.svc.cluster.local"], "rcode": "NXDOMAIN"}]})
    r = ask(WEB, f)
    assert r.header.rcode == RCODE.SERVFAIL and r.header.aa == 0 and not r.rr and not r.auth
    assert r.header.qr == 1 and str(r.q.qname) == WEB + "."
    assert ask(WEB, f, "SRV").header.rcode == RCODE.SERVFAIL
    r = ask(DB, f)
    assert r.header.rcode == RCODE.NXDOMAIN and r.header.aa == 1 and not r.rr
    assert [QTYPE[a.rtype] for a in r.auth] == ["SOA"] and str(r.auth[0].rname) == "cluster.local."
    assert ask("nope.default.svc.cluster.local", f).header.rcode == RCODE.NXDOMAIN
    r = ask("_http._tcp." + WEB, f, "SRV")   # not matched: the normal answer
    assert r.header.rcode == RCODE.NOERROR and r.rr[0].rdata.port == 80
    assert ask("example.com", f).header.rcode == RCODE.REFUSED
    assert [str(x.rdata) for x in ask(WEB, None).rr] == ["10.96.0.10"]   # no faults: nothing fails


def test_served_answers_follow_the_rules_over_udp_and_tcp() -> None:
    f = DNSFaults()
    snap = records()
    listener = dns.serve(lambda: snap, "127.0.0.1", 0, faults=f)
    try:
        port = listener.port
        assert dns.query("127.0.0.1", port, WEB).header.rcode == RCODE.NOERROR
        f.set({"rules": [{"fault": "f-1", "patterns": [WEB]}]})
        for tcp in (False, True):
            assert dns.query("127.0.0.1", port, WEB, tcp=tcp).header.rcode == RCODE.SERVFAIL
            assert [str(x.rdata) for x in dns.query("127.0.0.1", port, DB, tcp=tcp).rr] == ["10.96.0.11"]
        f.set({"rules": []})
        assert dns.query("127.0.0.1", port, WEB).header.rcode == RCODE.NOERROR
    finally:
        listener.stop()


# -- the lab side: params ------------------------------------------------------------
def test_kind_params() -> None:
    assert rule({}, "f-1") == {"fault": "f-1", "patterns": ["*"], "rcode": "SERVFAIL", "percent": 100}
    assert rule({"rcode": "nxdomain", "patterns": f" {WEB}., *.kube-system.svc.cluster.local ",
                 "percent": "25"}) == {"fault": "", "rcode": "NXDOMAIN", "percent": 25,
                                       "patterns": [WEB, "*.kube-system.svc.cluster.local"]}
    kind = DNS_KINDS["dns-error"]
    for params, msg in [({"rcode": "FOO"}, "--param rcode='FOO': use SERVFAIL or NXDOMAIN"),
                        ({"percent": "0"}, "--param percent='0': must be from 1 to 100"),
                        ({"percent": "101"}, "--param percent='101': must be from 1 to 100"),
                        ({"percent": "half"}, "--param percent='half': use a whole number"),
                        ({"patterns": "web,,db"}, "--param patterns='web,,db': has an empty item"),
                        ({"patterns": "web db"}, "--param patterns='web db': 'web db' is not a name glob")]:
        with pytest.raises(ValueError) as e:
            kind.check(params)
        assert str(e.value).startswith(msg), str(e.value)
    # every rule the lab side builds is one the add-on accepts
    assert DNSFaults().set({"rules": [rule({"patterns": "a.b,*", "percent": "1"}, "f-2")]}) == {"rules": 1}


# -- the chain: kind -> state file -> ctl socket -> DNSFaults ------------------------------
class FakeLab:
    """What ctl_state needs of a lab: layout.run and a chaos record (here: always empty)."""

    def __init__(self, run: Path) -> None:
        self.layout = SimpleNamespace(run=run)
        self.chaos = SimpleNamespace(store=SimpleNamespace(read=lambda: {"next": 1, "faults": {}}))


def fault(fid: str, target: str = "dns", **params: str) -> Fault:
    return Fault(id=fid, kind="dns-error", target=target, targets=[target], params=params,
                 duration=None, injected_at=0.0)


def test_inject_and_heal_reach_the_add_on_over_its_ctl_socket(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path)
    server = ctl.CtlServer(ctl.socket_path(tmp_path, "dns"), {}, ctl.state_path(tmp_path, "dns")).start()
    try:
        f = DNSFaults()
        server.add_handler("dns", f.set)
        kind = DNS_KINDS["dns-error"]
        with pytest.raises(ValueError, match="'node-1' is not the DNS add-on.*kemu chaos dns-error dns"):
            kind.inject(lab, fault("f-1", "node-1"))
        assert not ctl.state_path(tmp_path, "dns").exists()
        state = kind.inject(lab, fault("f-1", patterns=WEB, rcode="NXDOMAIN"))
        assert state == {"report": {"dns": "applied"},
                         "rule": {"fault": "f-1", "patterns": [WEB], "rcode": "NXDOMAIN", "percent": 100}}
        assert f.match(WEB) == rec.NXDOMAIN and f.match(DB) is None
        saved = json.loads(ctl.state_path(tmp_path, "dns").read_text())
        assert saved["dns"] == {"rules": [state["rule"]]}
        kind.heal(lab, fault("f-1"))
        assert f.rules == () and f.match(WEB) is None
        assert json.loads(ctl.state_path(tmp_path, "dns").read_text())["dns"] == {"rules": []}
    finally:
        server.close()


class Flag:
    def __init__(self) -> None:
        self.stop = False

    def __bool__(self) -> bool:
        return self.stop


def test_run_registers_the_dns_op_and_applies_saved_rules_first(mem_server: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted add-on gets its faults back from the state file before its first answer."""
    ctl.state_path(tmp_path, "dns").parent.mkdir()
    ctl.state_path(tmp_path, "dns").write_text(json.dumps(
        {"dns": {"rules": [{"fault": "f-1", "patterns": ["kubernetes.default.svc.cluster.local"]}]}}))
    server = ctl.CtlServer(ctl.socket_path(tmp_path, "dns"), {}, ctl.state_path(tmp_path, "dns")).start()
    monkeypatch.setattr(ctl, "current", server)
    port_file, log = tmp_path / "dns.endpoint", tmp_path / "dns.jsonl"
    stop = Flag()
    t = threading.Thread(target=dns.run, kwargs=dict(server=mem_server.address, profile_name="fast",
                                                     log_path=str(log), stop=stop,
                                                     port_file=str(port_file)), daemon=True)
    t.start()
    try:
        poll_for(port_file.exists, 10, what="the DNS port file")
        port = int(port_file.read_text().split()[0].rsplit(":", 1)[1])
        r = dns.query("127.0.0.1", port, "kubernetes.default.svc.cluster.local")
        assert r.header.rcode == RCODE.SERVFAIL
        assert ctl.call(server.path, "dns", {"rules": []}) == {"rules": 0}
        assert dns.query("127.0.0.1", port, "kubernetes.default.svc.cluster.local").header.rcode != RCODE.SERVFAIL
        with pytest.raises(ctl.CtlError, match=r"rules\[0\]\.rcode"):
            ctl.call(server.path, "dns", {"rules": [{"rcode": "FOO"}]})
    finally:
        stop.stop = True
        t.join(10)
        server.close()
    assert not t.is_alive()
    sets = [json.loads(ln) for ln in log.read_text().splitlines() if '"dns_faults_set"' in ln]
    assert [(e["rules"], e["faults"]) for e in sets] == [(1, ["f-1"]), (0, [])]
