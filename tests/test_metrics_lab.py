"""Metrics in a real lab (2 fast nodes, no DNS): the collector's files, the Prometheus
endpoint, ``kemu lab metrics`` and ``kemu top processes``."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from emulator.cli.kubectl import run as kemu
from lab import metrics_store
from lab.lab import Lab
from tests.conftest import poll_for

ROOT = Path(__file__).resolve().parent.parent
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def names(samples: list) -> set[str]:
    return {s[0] for s in samples}


@pytest.mark.timeout(120)
def test_lab_collects_every_process_metrics_and_serves_them() -> None:
    with Lab(2, name="metrics", profile="fast", dns=False) as lab:
        lab.client.create(POD)
        mdir = lab.layout.root / "metrics"

        def collected() -> dict | None:
            last = metrics_store.latest(mdir)
            nodes = [p for p in ("node-1", "node-2") if p in last]
            if not nodes or "apiserver" not in last or "scheduler" not in last:
                return None
            started = any("kubelet_pod_start_sli_duration_seconds_count" in names(last[n][1]) for n in nodes)
            scheduled = "scheduler_schedule_attempts_total" in names(last["scheduler"][1])
            return last if started and scheduled else None
        last = poll_for(collected, 60, interval=0.2, what="metrics of the apiserver, a node and the scheduler")
        assert "apiserver_request_duration_seconds_bucket" in names(last["apiserver"][1])
        assert "process_resident_memory_bytes" in names(last["scheduler"][1])
        assert {"apiserver", "scheduler", "controller-manager", "node-1", "node-2", "metrics"} <= \
            {p.stem for p in mdir.glob("*.jsonl")}
        rows = [r for r in metrics_store.read(mdir, "scheduler_schedule_attempts_total", process="scheduler")
                if r[3] == {"result": "scheduled"}]
        assert rows and rows[-1][4] >= 1

        address = (lab.layout.run / "metrics.endpoint").read_text().strip()
        assert address.startswith("http://127.0.0.1:")
        text = urllib.request.urlopen(address, timeout=5).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        rss = {s.labels["process"]: s.labels.get("node") for s in fams["process_resident_memory_bytes"].samples}
        assert {"apiserver", "scheduler", "node-1", "node-2", "metrics"} <= set(rss)
        assert rss["node-1"] == "node-1" and rss["apiserver"] is None
        assert any(s.labels.get("verb") == "POST" and s.labels.get("resource") == "pods"
                   for s in fams["apiserver_request_duration_seconds"].samples)

        out = subprocess.run([sys.executable, "-m", "lab.cli", "lab", "metrics",
                              "scheduler_schedule_attempts_total", "--name", "metrics", "-o", "json"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        got = [json.loads(line) for line in out.stdout.splitlines()]
        assert {"process": "scheduler", "labels": {"result": "scheduled"}} in \
            [{"process": g["process"], "labels": g["labels"]} for g in got if g["value"] >= 1]

        out = subprocess.run([sys.executable, "-m", "lab.cli", "lab", "metrics", "process_resident_memory_bytes",
                              "--name", "metrics", "--process", "node-1", "--since", "5m"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split("\t") == ["TIME", "PROCESS", "NAME", "VALUE"]
        assert lines[1].split("\t")[1:3] == ["node-1", "process_resident_memory_bytes"]

        import io
        buf, err = io.StringIO(), io.StringIO()
        assert kemu(["top", "processes", "--lab-dir", str(lab.layout.root)], buf, err) == 0, err.getvalue()
        table = [line.split() for line in buf.getvalue().splitlines()]
        assert table[0] == ["NAME", "ROLE", "PID", "CPU(cores)", "CPU(%)", "MEMORY(bytes)"]
        assert {"supervisor", "apiserver", "scheduler", "controller-manager", "metrics", "node-1", "node-2"} \
            <= {r[0] for r in table[1:]}
        assert all(r[5].endswith("Mi") for r in table[1:])


@pytest.mark.timeout(120)
def test_lab_up_without_the_metrics_add_on(kemu_home: Path) -> None:
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KEMU_HOME": str(kemu_home)}

    def kemu(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=90)
    r = kemu("lab", "up", "--nodes", "1", "--name", "nometrics", "--profile", "fast", "--no-dns",
             "--no-metrics")
    try:
        assert r.returncode == 0, r.stderr
        assert "metrics:" not in r.stdout
        status = kemu("lab", "status", "--name", "nometrics", "-o", "json")
        data = __import__("json").loads(status.stdout)
        assert data["metrics"] is None and "metrics" not in {p["name"] for p in data["processes"]}
        bad = kemu("lab", "up", "--nodes", "1", "--name", "badport", "--metrics-port", "70000")
        assert bad.returncode != 0 and "--metrics-port" in bad.stderr
    finally:
        kemu("lab", "down", "--name", "nometrics")
