"""A real scenario run (a small lab, a node killed) writes a report whose numbers agree with its raw log."""
from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from lab.chaos.scenario import parse_scenario
from lab.chaos.scenario_run import run_scenario

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kemu_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="kh-"))   # short: the lab's Unix sockets live under it
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _t(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(180)
def test_scenario_run_writes_a_report_that_agrees_with_the_log(kemu_home: Path, tmp_path: Path) -> None:
    sc = parse_scenario({
        "name": "report-kill", "duration": "60s", "lab": {"nodes": 2, "profile": "fast"},
        "setup": ["manifests/web-fake.yaml"],
        "faults": [{"at": "500ms", "kind": "kill", "target": "node-2"}],
        "probes": [{"name": "web-available", "type": "k8s", "mode": "sot", "kind": "Deployment",
                    "namespace": "demo", "resourceName": "web", "condition": "status.availableReplicas>=6",
                    "retries": 60, "interval": "500ms"},
                   {"name": "node-2-detected", "type": "log", "mode": "eot", "component": "controller-manager",
                    "event": "node_not_ready", "match": {"name": "node-2"}, "retries": 60, "interval": "500ms"}]},
        ROOT / "examples" / "scenarios")
    out = tmp_path / "run"
    lines: list[str] = []
    res = run_scenario(sc, out, say=lines.append)
    assert res["verdict"] == "pass", "\n".join(lines)
    rep = json.loads((out / "report" / "report.json").read_text())
    for f in ("report.md", "report.html", "timeline.png", "pod-startup-cdf.png"):
        assert (out / "report" / f).is_file(), f
    assert any(x.startswith("report: ") for x in lines)

    # the detection time, straight from the raw merged log
    recs = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    injected = next(r for r in recs if r.get("event") == "fault_injected")
    detected = next(r for r in recs if r.get("event") in ("node_status_unknown", "node_not_ready")
                    and r.get("name") == "node-2" and r["ts"] >= injected["ts"])
    want = _t(detected["ts"]) - _t(injected["ts"])
    (event,) = rep["slis"]["node_failure_detection"]["events"]
    assert event["node"] == "node-2" and event["event"] == detected["event"]
    assert event["seconds"] == pytest.approx(want, abs=1e-6)
    # pod startup: each pod from the ReplicaSet's pod_created to its container_started, as the raw log has them
    created = {r["name"]: _t(r["ts"]) for r in recs if r.get("event") == "pod_created"}
    started = {r["name"]: _t(r["ts"]) for r in recs if r.get("event") == "container_started" and r.get("attempt") == 0}
    assert len(started) >= 6 and set(started) <= set(created)
    want_s = sorted(started[p] - created[p] for p in started if created[p] <= started[p])
    ps = rep["slis"]["pod_startup_latency"]
    assert sorted(s["seconds"] for s in ps["samples"]) == pytest.approx(want_s, abs=1e-6)
    assert ps["count"] + ps["unattributed"] == len(started)
    assert rep["source"]["verdict"] == "pass" and [f["id"] for f in rep["faults"]] == [injected["id"]]
