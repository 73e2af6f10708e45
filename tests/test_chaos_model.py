"""Chaos units: durations, params, targets, the fault record, kinds and the CLI's bad input."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab.chaos.chaos import Chaos
from lab.chaos.k8s_faults import parse_taint
from lab.chaos.kinds import KINDS, get_kind
from lab.chaos.model import Fault, format_age, parse_duration, parse_params
from lab.chaos.record import ChaosStore, log_event
from lab.chaos.targets import TargetError, resolve
from lab.config import LabConfig
from lab.paths import LabLayout
from tests.conftest import poll_for

ROOT = Path(__file__).resolve().parent.parent


class FakeClient:
    def __init__(self, zones: dict[str, str]) -> None:
        self.zones = zones

    def list_all(self, kind: str, **_: Any) -> dict:
        assert kind == "Node"
        return {"items": [{"metadata": {"name": n, "labels": {"topology.kubernetes.io/zone": z}}}
                          for n, z in self.zones.items()]}


class FakeLab:
    """What target resolution reads: processes, nodes, config, client."""

    def __init__(self, n: int, zones: dict[str, str] | None = None, running: bool = True,
                 layout: LabLayout | None = None) -> None:
        self.config = LabConfig(name="t", nodes=n).validate()
        self.nodes = [f"node-{i}" for i in range(1, n + 1)]
        self.client = FakeClient(zones or {})
        self._running = running
        self.layout = layout
        self.name = "t"

    def processes(self) -> list[dict]:
        return [{"name": p, "state": "running"} for p in
                ["apiserver", "scheduler", "controller-manager", "dns"] + self.nodes]

    def running(self) -> bool:
        return self._running


@pytest.mark.parametrize("spec,seconds", [("30s", 30), ("500ms", 0.5), ("2m", 120), ("1h", 3600),
                                          ("1.5s", 1.5), (5, 5.0), (0.25, 0.25)])
def test_parse_duration(spec: Any, seconds: float) -> None:
    assert parse_duration(spec) == seconds


@pytest.mark.parametrize("spec", ["30", "abc", "-1s", "0s", "3 days", "", True, 0])
def test_parse_duration_rejects(spec: Any) -> None:
    with pytest.raises(ValueError, match="--for"):
        parse_duration(spec)


def test_parse_params() -> None:
    assert parse_params(["selector=app=web", "namespace=demo", "empty="]) == {
        "selector": "app=web", "namespace": "demo", "empty": ""}
    with pytest.raises(ValueError, match="--param: bad parameter 'selector'.*NAME=VALUE"):
        parse_params(["selector"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["=x"])


def test_format_age() -> None:
    assert format_age(5) == "5s" and format_age(150) == "2m30s" and format_age(7300) == "2h1m"


def test_targets_names_lists_and_groups() -> None:
    lab = FakeLab(7, zones={f"node-{i}": ("zone-a" if i % 2 else "zone-b") for i in range(1, 8)})
    assert resolve(lab, "node-3") == ["node-3"]
    assert resolve(lab, "apiserver") == ["apiserver"]
    assert resolve(lab, "node-2, apiserver,node-2") == ["node-2", "apiserver"]
    assert resolve(lab, "nodes:all") == [f"node-{i}" for i in range(1, 8)]
    assert resolve(lab, "nodes:zone=zone-b") == ["node-2", "node-4", "node-6"]
    assert resolve(lab, "nodes:minority") == ["node-5", "node-6", "node-7"]
    a = resolve(lab, "nodes:random:3", seed=42)
    assert a == resolve(lab, "nodes:random:3", seed=42) and len(set(a)) == 3
    assert set(a) <= set(lab.nodes)
    m = resolve(lab, "nodes:minority", seed=1)
    assert len(m) == 3 and m == resolve(lab, "nodes:minority", seed=1)
    assert resolve(FakeLab(10), "nodes:minority") == ["node-7", "node-8", "node-9", "node-10"]


def test_zone_falls_back_to_the_configuration() -> None:
    class Down(FakeClient):
        def list_all(self, kind: str, **_: Any) -> dict:
            raise ConnectionError("down")
    lab = FakeLab(3)
    lab.client = Down({})
    assert resolve(lab, "nodes:zone=zone-a") == ["node-1", "node-2", "node-3"]


@pytest.mark.parametrize("target,text", [
    ("node-9", "unknown target 'node-9': the lab has node-1, node-2, node-3, apiserver"),
    ("etcd", "unknown target 'etcd'"),
    ("nodes:zone=mars", "no node is in zone 'mars'; the zones are: zone-a"),
    ("nodes:random:x", "N must be a whole number"),
    ("nodes:random:4", "N must be between 1 and 3"),
    ("nodes:random:0", "N must be between 1 and 3"),
    ("nodes:some", "unknown group 'nodes:some'"),
    ("node-1,,node-2", "empty item"),
    ("", "empty target"),
])
def test_bad_targets(target: str, text: str) -> None:
    lab = FakeLab(3, zones={"node-1": "zone-a", "node-2": "zone-a", "node-3": "zone-a"})
    with pytest.raises(TargetError, match=text.replace("(", r"\(").replace(".", r"\.")):
        resolve(lab, target)


def test_minority_of_two_nodes_is_empty_and_nodes_only() -> None:
    with pytest.raises(TargetError, match="nodes:minority is empty with 2 node"):
        resolve(FakeLab(2), "nodes:minority")
    with pytest.raises(TargetError, match="apiserver is not a node"):
        resolve(FakeLab(3), "node-1,apiserver", nodes_only=True)


def test_fault_round_trip_and_remaining() -> None:
    f = Fault(id="f-1", kind="kill", target="nodes:minority", targets=["node-3"], params={"a": "b"},
              duration=30.0, injected_at=1000.0, state={"killed": ["node-3"]})
    g = Fault.from_dict(f.to_dict())
    assert g.to_dict() == f.to_dict()
    assert g.remaining(1010.0) == 20.0 and g.remaining(2000.0) == 0.0
    assert Fault(id="f-2", kind="pause", target="x", targets=["x"]).remaining() is None
    with pytest.raises(RuntimeError, match="not attached"):
        g.heal()


def test_kinds_registry() -> None:
    for name in ("kill", "restart", "pause", "resume", "crash-loop", "pod-kill", "container-kill",
                 "node-taint", "node-drain"):
        k = KINDS[name]
        assert k.name == name and isinstance(k.params, dict)
        assert callable(k.inject) and callable(k.heal)
    with pytest.raises(ValueError, match="unknown fault kind 'explode': one of .*kill"):
        get_kind("explode")


def test_parse_taint() -> None:
    assert parse_taint("chaos=true:NoSchedule") == {"key": "chaos", "value": "true", "effect": "NoSchedule"}
    assert parse_taint("dedicated:NoExecute") == {"key": "dedicated", "effect": "NoExecute"}
    for bad in ("chaos=true", "chaos=true:Sometimes", ":NoSchedule", "=x:NoSchedule"):
        with pytest.raises(ValueError, match="taint"):
            parse_taint(bad)


def test_store_allocates_ids_and_log_lines(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path / "lab")
    layout.make()
    store = ChaosStore(layout)
    ids = []
    for _ in range(3):
        with store.locked() as data:
            ids.append(f"f-{data['next']}")
            data["next"] += 1
    assert ids == ["f-1", "f-2", "f-3"]
    f = Fault(id="f-1", kind="kill", target="node-1", targets=["node-1"])
    log_event(layout, "t", "fault_injected", f)
    import json
    rec = json.loads((layout.logs / "chaos.jsonl").read_text())
    assert rec["component"] == "chaos" and rec["event"] == "fault_injected" and rec["id"] == "f-1"
    assert rec["targets"] == ["node-1"] and rec["lab"] == "t" and "ts" in rec and rec["pid"] == os.getpid()


def test_inject_bad_input_before_anything_is_done(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path / "lab")
    layout.make()
    chaos = Chaos(FakeLab(3, layout=layout))
    with pytest.raises(ValueError, match="unknown fault kind"):
        chaos.inject("explode", "node-1")
    with pytest.raises(ValueError, match="kill: unknown parameter 'color'; its parameters: no-restart"):
        chaos.inject("kill", "node-1", color="red")
    with pytest.raises(ValueError, match="node-taint: parameter 'taint' is required"):
        chaos.inject("node-taint", "node-1")
    with pytest.raises(ValueError, match="taint"):
        chaos.inject("node-taint", "node-1", taint="oops")
    with pytest.raises(ValueError, match="--param every"):
        chaos.inject("crash-loop", "node-1", every="often")
    with pytest.raises(ValueError, match="--for"):
        chaos.inject("pause", "node-1", duration="soon")
    with pytest.raises(ValueError, match="grace"):
        chaos.inject("pod-kill", None, selector="app=web", grace="-1")
    with pytest.raises(TargetError, match="unknown target 'node-7'"):
        chaos.inject("pause", "node-7")
    with pytest.raises(TargetError, match="pause needs a target"):
        chaos.inject("pause", None)
    with pytest.raises(TargetError, match="apiserver is not a node"):
        chaos.inject("node-drain", "apiserver")
    assert not (layout.logs / "chaos.jsonl").exists()   # nothing was injected
    down = Chaos(FakeLab(3, layout=layout, running=False))
    with pytest.raises(Exception, match="not running"):
        down.inject("pause", "node-1")


# A healer caught as it ends: its main thread has exited, another thread still runs.
# The kernel shows the process as a zombie, but waitpid cannot reap it yet.
EXITING_HEALER = """
import ctypes, os, platform, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0))).start()
ctypes.CDLL(None, use_errno=True).syscall({"x86_64": 60, "aarch64": 93}[platform.machine()], 0)
"""


@pytest.mark.timeout(30)
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"),
                    reason="the test ends one thread with the exit syscall, whose number it knows "
                           "only for x86_64 (60) and aarch64 (93); CI runs on x86_64")
def test_down_reaps_a_healer_that_was_ending_when_down_looked(tmp_path: Path) -> None:
    """CI's leak (stop 19): after ``lab down`` a healer was left a zombie child of
    the process that started it. It had shown as a zombie (so it was not signalled) while
    its ZeroMQ threads still ran, and down only polled it. Down must wait for it."""
    layout = LabLayout(tmp_path / "lab")
    layout.make()
    chaos = Chaos(FakeLab(3, layout=layout))
    healer = subprocess.Popen([sys.executable, "-c", EXITING_HEALER], stdin=subprocess.PIPE,
                              start_new_session=True)
    try:
        start = psutil.Process(healer.pid).create_time()
        chaos._healers["f-1"] = healer
        with chaos.store.locked() as data:
            data["healers"] = {str(healer.pid): start}
        poll_for(lambda: psutil.Process(healer.pid).status() == psutil.STATUS_ZOMBIE, 10,
                 what="the healer's main thread gone")
        assert healer.poll() is None   # not reapable yet: its other thread runs
        assert chaos.heal_all_for_down() == []
        assert healer.returncode is not None, "the healer was left unreaped"
        assert not psutil.pid_exists(healer.pid) and chaos._healers == {}
    finally:
        if healer.returncode is None:
            healer.kill()
            healer.wait()


def kemu(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEMU_HOME": str(home)}
    env.pop("KEMU_SERVER", None)
    return subprocess.run([sys.executable, "-m", "lab.cli", "chaos", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_bad_usage(tmp_path: Path) -> None:
    r = kemu(tmp_path, "explode", "node-1")
    assert r.returncode == 2 and "invalid choice: 'explode'" in r.stderr
    r = kemu(tmp_path, "pause", "node-1", "--for", "soon")
    assert r.returncode == 2 and "bad duration 'soon'" in r.stderr
    r = kemu(tmp_path, "pause", "node-1", "--param", "oops")
    assert r.returncode == 1 and "--param: bad parameter 'oops'" in r.stderr
    r = kemu(tmp_path, "pause", "node-1")
    assert r.returncode == 1 and "no current lab" in r.stderr
    r = kemu(tmp_path, "heal")
    assert r.returncode == 2 and "a fault ID or --all" in r.stderr
    r = kemu(tmp_path, "list")
    assert r.returncode == 1 and "no current lab" in r.stderr
