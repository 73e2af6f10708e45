"""Network and time faults in real labs (3 fast nodes): applied through each process's
ctl socket, seen in the cluster's behaviour, healed, and refused with clear errors."""
from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator import ctl
from emulator.api.errors import APIError
from lab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def ready(lab: Lab, node: str) -> str | None:
    for c in (lab.client.get("Node", node).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"]
    return None


def renew_skew(lab: Lab, node: str) -> float:
    """How far ahead of this machine's clock the node's last Lease renewTime is."""
    try:
        lease = lab.client.get("Lease", node, "kube-node-lease")
    except APIError:
        return float("inf")   # not created yet
    t = lease["spec"]["renewTime"]
    whole, _, frac = t.rstrip("Z").partition(".")
    ts = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))
    return ts - time.time()


def kemu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.timeout(180)
def test_isolate_partition_and_heal_through_the_ctl_sockets() -> None:
    with Lab(3, name="net-iso", profile="fast", dns=False) as lab:
        for p in ("node-1", "scheduler", "controller-manager"):
            assert ctl.call(ctl.socket_path(lab.layout.run, p), "ping")["pid"] > 0
        # isolate node-3: its kubelet can no longer reach the apiserver -> NotReady (Unknown)
        f = lab.chaos.isolate("node-3")
        assert f.state["processes"]["node-3"] == "applied"
        lab.wait_for(lambda: ready(lab, "node-3") == "Unknown", 30, what="node-3 NotReady (Unknown)")
        assert ready(lab, "node-1") == "True"
        state = json.loads((lab.layout.run / "ctl" / "node-3.json").read_text())
        assert state["netem"]["rules"]["node-3"][0]["drop"] == 1.0
        f.heal()
        lab.wait_for(lambda: ready(lab, "node-3") == "True", 30, what="node-3 Ready after the heal")
        assert json.loads((lab.layout.run / "ctl" / "node-3.json").read_text())["netem"] == {"rules": {}}

        # a partition between two nodes cuts no bus link: both stay Ready
        with lab.chaos.partition(["node-1"], ["node-2"]) as p:
            assert p.state["other"] == ["node-2"]
            before = lab.client.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
            lab.wait_for(lambda: lab.client.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
                         != before, 10, what="node-1 renews its lease through the partition")
            assert ready(lab, "node-1") == "True" and ready(lab, "node-2") == "True"

        # a restarted process gets its faults back from its state file
        with lab.chaos.isolate("node-2"):
            lab.chaos.restart("node-2")
            lab.wait_for(lambda: ready(lab, "node-2") == "Unknown", 30, what="node-2 stays cut off")
        lab.wait_for(lambda: ready(lab, "node-2") == "True", 30, what="node-2 Ready after the heal")
        kinds = [json.loads(x)["kind"] for x in (lab.layout.logs / "chaos.jsonl").read_text().splitlines()]
        assert {"isolate", "partition"} <= set(kinds)


@pytest.mark.timeout(180)
def test_clock_skew_moves_the_kubelets_lease_times_and_the_node_stays_ready() -> None:
    with Lab(2, name="net-clock", profile="fast", dns=False) as lab:
        lab.wait_for(lambda: abs(renew_skew(lab, "node-2")) < 5, 20, what="a fresh lease")
        with lab.chaos.clock_skew("node-2", "+60s"):
            lab.wait_for(lambda: 50 < renew_skew(lab, "node-2") < 70, 20, what="renewTime 60s ahead")
            # the node lifecycle controller watches renewTime change, not its value
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert ready(lab, "node-2") == "True"
                lab.client.get("Node", "node-2")
            assert abs(renew_skew(lab, "node-1")) < 5
        lab.wait_for(lambda: abs(renew_skew(lab, "node-2")) < 5, 20, what="renewTime back to now")


@pytest.mark.timeout(180)
def test_delay_and_loss_from_the_cli_heal_by_themselves_and_bad_params_are_refused(kemu_home: Path) -> None:
    with Lab(2, name="net-cli", profile="fast", dns=False) as lab:
        env = {"KEMU_HOME": str(kemu_home)}
        r = kemu("chaos", "delay", "node-1", "--param", "latency=100ms±20ms", "--param",
                 "distribution=normal", "--for", "8s", "--name", "net-cli", env=env)
        assert r.returncode == 0, r.stderr
        fid = r.stdout.strip().split()[0]
        r = kemu("chaos", "loss", "apiserver", "--param", "percent=10%", "--name", "net-cli", env=env)
        assert r.returncode == 0, r.stderr
        loss_id = r.stdout.strip().split()[0]
        listed = kemu("chaos", "list", "-o", "json", "--name", "net-cli", env=env)
        kinds = {f["kind"] for f in json.loads(listed.stdout)}
        assert {"delay", "loss"} <= kinds
        state = json.loads((lab.layout.run / "ctl" / "node-2.json").read_text())
        # loss on the apiserver: node-2 drops a share of what arrives from it
        assert state["netem"]["rules"]["node-2"] == [
            {"fault": fid, "delay": {"dist": "normal", "mean": 0.1, "jitter": 0.02},
             "peers": ["node-1"], "dir": "in"},
            {"fault": loss_id, "drop": 0.1, "peers": ["apiserver"], "dir": "in"}]
        lab.wait_for(lambda: fid not in {f.id for f in lab.chaos.active()}, 30, what="the delay expires")
        assert kemu("chaos", "heal", loss_id, "--name", "net-cli", env=env).returncode == 0
        lab.wait_nodes_ready(["node-1", "node-2"], 20)

        for args, word in ((("loss", "node-1", "--param", "percent=0"), "percent"),
                           (("delay", "node-1", "--param", "latency=fast"), "latency"),
                           (("delay", "node-1", "--param", "latency=1s", "--param", "distribution=pareto"),
                            "distribution"),
                           (("bandwidth", "node-1", "--param", "rate=lots"), "rate"),
                           (("clock-skew", "node-1", "--param", "offset=soon"), "offset"),
                           (("partition", "node-1", "--param", "with=node-1"), "with")):
            r = kemu("chaos", *args, "--name", "net-cli", env=env)
            assert r.returncode == 1 and word in r.stderr, (args, r.stderr)
        assert not lab.chaos.active()
