"""The scenario runner: with a fake chaos object in small real labs, then the shipped
scenarios (examples/scenarios) end to end with the real chaos, as CI runs them."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from lab.chaos.scenario import parse_scenario
from lab.chaos.scenario_run import run_scenario

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))


@pytest.fixture
def kemu_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="kh-"))   # short: the lab's Unix sockets live under it
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    yield home
    shutil.rmtree(home, ignore_errors=True)


class FakeFault:
    def __init__(self, chaos: "FakeChaos", n: int, kind: str, target: str, params: dict) -> None:
        self.chaos, self.id, self.kind, self.target, self.params = chaos, f"f-{n}", kind, target, params
        self.targets = [target]
        self.injected_at = time.time()

    def heal(self) -> None:
        self.chaos.heal(self.id, missing_ok=True)


class FakeChaos:
    """Records what the runner asks; ``fail`` kinds raise on inject."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple] = []
        self.active: dict[str, FakeFault] = {}
        self.fail = fail
        self.n = 0

    def inject(self, kind: str, target: str, **params: Any) -> FakeFault:
        self.calls.append(("inject", kind, target, params))
        if kind in self.fail:
            raise ValueError(f"cannot {kind} {target}")
        self.n += 1
        f = FakeFault(self, self.n, kind, target, params)
        self.active[f.id] = f
        return f

    def heal(self, fault_id: str | None = None, *, missing_ok: bool = False) -> None:
        self.calls.append(("heal", fault_id))
        if fault_id is None:
            self.active.clear()
        elif self.active.pop(fault_id, None) is None and not missing_ok:
            raise KeyError(fault_id)


@pytest.fixture
def web() -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:   # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


SETUP = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "demo"},
          "data": {"n": "3"}}]
CM = {"type": "k8s", "kind": "ConfigMap", "namespace": "demo", "resourceName": "c1"}


def test_runner_with_a_fake_chaos(kemu_home: Path, tmp_path: Path, web: str) -> None:
    chaos = FakeChaos()
    sc = parse_scenario({
        "name": "fake-run", "duration": "40s", "lab": {"nodes": 1, "profile": "fast"},
        "setup": SETUP, "load": {"http": {"url": web, "rate": 20, "timeout": "1s"}},
        "faults": [{"at": "100ms", "kind": "kill", "target": "node-1", "for": "300ms"},
                   {"after": {"probe": "cm-present", "delay": "50ms"}, "kind": "crash-loop",
                    "target": "apiserver", "params": {"every": "2s"}}],
        "probes": [{"name": "cm-present", "mode": "sot", **CM, "operation": "present"},
                   {"name": "cm-n", "mode": "eot", **CM, "condition": "data.n>=3"},
                   {"name": "always", "type": "cmd", "mode": "continuous", "interval": "100ms",
                    "command": [sys.executable, "-c", "print('ok')"], "expectOutput": "ok"},
                   {"name": "during", "mode": "onchaos", "interval": "50ms", **CM, "operation": "present"},
                   {"name": "apiserver-logged", "type": "log", "mode": "eot", "component": "apiserver",
                    "event": "*"}]}, ROOT, text="name: fake-run\n")
    out = tmp_path / "run"
    lines: list[str] = []
    res = run_scenario(sc, out, chaos_for=lambda lab: chaos, say=lines.append)
    assert res["verdict"] == "pass", json.dumps(res, indent=1)
    injects = [c for c in chaos.calls if c[0] == "inject"]
    assert sorted(injects) == [("inject", "crash-loop", "apiserver", {"every": "2s"}), ("inject", "kill", "node-1", {})]
    assert chaos.calls[-1] == ("heal", None) and not chaos.active
    f1, f2 = res["faults"]
    assert f1["state"] == f2["state"] == "healed" and f1["kind"] == "kill" and f1["targets"] == ["node-1"]
    assert ("heal", f1["id"]) in chaos.calls
    assert f1["healed_s"] >= f1["injected_s"] + 0.3
    probes = {p["name"]: p for p in res["probes"]}
    assert set(probes) == {"cm-present", "cm-n", "always", "during", "apiserver-logged"}
    assert probes["always"]["checks"] >= 1 and probes["always"]["passes"] == probes["always"]["checks"]
    assert res["load"]["sent"] >= 1 and res["load"]["ok"] == res["load"]["sent"]
    # the run directory: scenario, result, merged log, final objects, load records
    assert (out / "scenario.yaml").read_text() == "name: fake-run\n"
    assert json.loads((out / "result.json").read_text())["verdict"] == "pass"
    recs = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert recs and [r["ts"] for r in recs] == sorted(r["ts"] for r in recs)
    objs = list(yaml.safe_load_all((out / "objects.yaml").read_text()))
    assert {("ConfigMap", "c1"), ("Node", "node-1")} <= {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert (out / "load.jsonl").read_text().count("\n") == res["load"]["sent"]
    assert any(x.startswith("verdict: PASS") for x in lines)
    assert not (kemu_home / "labs" / "fake-run" / "run" / "supervisor.pid").exists()   # the lab is down


def test_runner_failures_still_heal(kemu_home: Path) -> None:
    chaos = FakeChaos(fail=("pause",))
    sc = parse_scenario({
        "name": "fake-fail", "duration": "3s", "lab": {"nodes": 1, "profile": "fast"}, "setup": SETUP,
        "faults": [{"at": "0s", "kind": "kill", "target": "node-1"},
                   {"at": "0s", "kind": "pause", "target": "node-1"},
                   {"after": {"probe": {"type": "k8s", "kind": "ConfigMap", "namespace": "demo",
                                        "resourceName": "nope", "operation": "present"}},
                    "kind": "restart", "target": "scheduler"}],
        "probes": [{"name": "wrong", "mode": "eot", **CM, "condition": "data.n==4"}]}, ROOT)
    res = run_scenario(sc, chaos_for=lambda lab: chaos, say=lambda s: None)
    assert res["verdict"] == "fail"
    kill, pause, restart = res["faults"]
    assert kill["state"] == "healed"
    assert pause["state"] == "error" and "cannot pause node-1" in pause["error"]
    assert restart["state"] == "skipped" and "duration ran out" in restart["error"]
    assert not res["probes"][0]["ok"] and "data.n=3 (want ==4)" in res["probes"][0]["detail"]
    assert chaos.calls[-1] == ("heal", None) and not chaos.active
    run_dir = Path(res["run_dir"])   # default: <labdir>/../runs/<name>-<time>
    assert run_dir.parent == kemu_home / "labs" / "runs" and run_dir.name.startswith("fake-fail-")
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "fail"


def test_runner_setup_error_fails_and_cleans_up(kemu_home: Path, tmp_path: Path) -> None:
    chaos = FakeChaos()
    sc = parse_scenario({
        "name": "fake-setup", "duration": "10s", "lab": {"nodes": 1, "profile": "fast"},
        "setup": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ghost"}}],
        "faults": [{"at": "0s", "kind": "kill", "target": "node-1"}], "probes": []}, ROOT)
    res = run_scenario(sc, tmp_path / "r", chaos_for=lambda lab: chaos, say=lambda s: None)
    assert res["verdict"] == "fail" and "setup: inline setup[0]: ConfigMap c" in res["errors"][0]
    assert chaos.calls == [("heal", None)]   # nothing injected, yet everything healed
    assert (tmp_path / "r" / "result.json").exists()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_scenario_passes(path: Path, kemu_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "lab.cli", "chaos", "run", str(path), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=170, env={**os.environ})
    res = json.loads((out / "result.json").read_text())
    assert r.returncode == 0, r.stdout + r.stderr
    assert res["verdict"] == "pass" and res["duration_s"] < 90
    assert "verdict: PASS" in r.stdout
    assert all(f["state"] == "healed" for f in res["faults"])
    events = [json.loads(x).get("event") for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert "fault_injected" in events and "fault_healed" in events


@pytest.mark.timeout(180)
def test_a_scenario_on_a_running_lab_leaves_it_running(kemu_home: Path, tmp_path: Path) -> None:
    """``make demo``'s way: the demo's node-failure scenario on a lab it started itself."""
    from lab.demo import node_failure_scenario
    from lab.lab import Lab
    sc_dict = node_failure_scenario("node-2")
    sc_dict["setup"] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
                        {"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web", "namespace": "demo"},
                         "spec": {"replicas": 12, "selector": {"matchLabels": {"app": "web"}},
                                  "template": {"metadata": {"labels": {"app": "web"}},
                                               "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}]
    sc_dict["probes"][0]["retries"], sc_dict["probes"][0]["interval"] = 60, "500ms"
    sc = parse_scenario(sc_dict, ROOT)
    with Lab(3, name="on-running", profile="fast", dns=False) as lab:
        res = run_scenario(sc, tmp_path / "run", lab=lab, say=lambda m: None)
        assert res["verdict"] == "pass", json.dumps(res, indent=1, default=str)
        assert lab.running() and (tmp_path / "run" / "result.json").exists()
        assert next(p for p in lab.processes() if p["name"] == "node-2")["state"] != "running"
        assert lab.client.get("Deployment", "web", "demo")["status"]["availableReplicas"] == 12
