"""dns-error in a real lab: the DNS add-on fails the chosen names until the fault is healed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE

from control.dns import server as dns
from lab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
WEB = "web.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}}


def test_dns_error_fails_one_name_until_healed_python_and_cli() -> None:
    with Lab(1, name="c-dns", profile="fast") as lab:
        for n in ("web", "db"):
            lab.client.create(service(n), "default")
        port = int(lab.wait_for(lambda: lab.dns_address, 20, what="the DNS add-on").split()[0].rsplit(":", 1)[1])

        def rcode(name: str) -> int:
            return dns.query("127.0.0.1", port, name).header.rcode

        lab.wait_for(lambda: rcode(WEB) == rcode(DB) == RCODE.NOERROR, 20, what="web and db in DNS")

        # Python: SERVFAIL for web only; heal: web answers again
        f = lab.chaos.inject("dns-error", "dns", patterns=WEB)
        assert f.state["report"] == {"dns": "applied"}
        assert f.state["rule"] == {"fault": f.id, "patterns": [WEB], "rcode": "SERVFAIL", "percent": 100}
        lab.wait_for(lambda: rcode(WEB) == RCODE.SERVFAIL, 10, what="web SERVFAIL")
        assert rcode(DB) == RCODE.NOERROR
        assert dns.query("127.0.0.1", port, WEB, tcp=True).header.rcode == RCODE.SERVFAIL
        lab.chaos.heal(f.id)
        lab.wait_for(lambda: rcode(WEB) == RCODE.NOERROR, 10, what="web answers again")

        # the CLI: NXDOMAIN (with the zone's SOA) for db; bad params and targets are refused
        r = kemu("chaos", "dns-error", "dns", "--param", "rcode=NXDOMAIN", "--param", f"patterns={DB}")
        assert r.returncode == 0, r.stderr
        fid = r.stdout.strip()
        lab.wait_for(lambda: rcode(DB) == RCODE.NXDOMAIN, 10, what="db NXDOMAIN")
        ans = dns.query("127.0.0.1", port, DB)
        assert not ans.rr and [QTYPE[a.rtype] for a in ans.auth] == ["SOA"]
        assert rcode(WEB) == RCODE.NOERROR
        for args, msg in [(["--param", "rcode=FOO"], "--param rcode='FOO': use SERVFAIL or NXDOMAIN"),
                          (["--param", "percent=0"], "--param percent='0': must be from 1 to 100")]:
            r = kemu("chaos", "dns-error", "dns", *args)
            assert r.returncode == 1 and msg in r.stderr, r.stderr
        r = kemu("chaos", "dns-error", "node-1")
        assert r.returncode == 1 and "target 'node-1' is not the DNS add-on" in r.stderr, r.stderr
        assert [a.id for a in lab.chaos.active()] == [fid]
        r = kemu("chaos", "heal", fid)
        assert r.returncode == 0, r.stderr
        lab.wait_for(lambda: rcode(DB) == RCODE.NOERROR, 10, what="db answers again")
        state = json.loads((lab.layout.run / "ctl" / "dns.json").read_text())
        assert state["dns"] == {"rules": []}
        log = lab.layout.log_for("dns").read_text().splitlines()
        sets = [json.loads(ln)["rules"] for ln in log if '"dns_faults_set"' in ln]
        assert sets == [1, 0, 1, 0]
