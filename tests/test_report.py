"""kemu report on a recorded run with known answers: every SLI figure computed by hand.

The run is synthetic (timeline.jsonl, result.json, load.jsonl, scenario.yaml and a
metrics/ directory in the documented format), so each expected number below is
worked out from the records written here; see the comments next to them.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from lab.report import ReportError, compare, generate
from lab.report.cli import main as report_main
from lab.report.metrics_sli import histogram_quantile
from lab.report.sli import percentile

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ts(s: float) -> str:
    return (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rec(t: float, component: str, event: str, node: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"ts": ts(t), "level": "info", "lab": "known", "component": component, "node": node,
            "pid": 1, "event": event, **kw}


def pod(name: str) -> dict[str, str]:
    return {"kind": "Pod", "namespace": "demo", "name": name}


def started(t: float, name: str, node: str, container: str = "web", attempt: int = 0) -> dict[str, Any]:
    return rec(t, "kubelet", "container_started", node, **pod(name), container=container, attempt=attempt)


def timeline(detect_node3: float = 2.5) -> list[dict[str, Any]]:
    r: list[dict[str, Any]] = []
    for n in ("node-1", "node-2", "node-3"):
        r.append(rec(0.0, "supervisor", "process started", process=n, role="node"))
        r.append(rec(0.1, "kubelet", "node_registered", n, kind="Node", name=n))
    r.append(rec(0.0, "scheduler", "scheduler_started", nodes=0, queued=0))
    # pod startup: created by the ReplicaSet's batch at 1.0 -> 0.2, 0.5, 1.0, 2.0
    r.append(rec(1.0, "controller-manager", "pods_created", kind="ReplicaSet", namespace="demo",
                 name="web-abc", count=4))
    r += [started(1.2, "web-abc-p1", "node-1"), started(1.5, "web-abc-p2", "node-2"),
          started(2.0, "web-abc-p3", "node-3"), started(3.0, "web-abc-p4", "node-3"),
          started(3.5, "web-abc-p4", "node-3", attempt=1)]           # a restart: not a start
    # a Job's pod with two containers: created 4.0, last container 4.4 -> 0.4
    r.append(rec(4.0, "controller-manager", "job_pod_created", **pod("job-x"), job="job"))
    r += [started(4.1, "job-x", "node-1", "c1"), started(4.4, "job-x", "node-1", "c2")]
    # endpoint propagation: a write at 5.0, proxies at +0.1, +0.25, +0.05 -> 0.25
    r.append(rec(5.0, "controller-manager", "endpointslice_sync", kind="Service", namespace="demo", name="web",
                 created=0, updated=1, deleted=0))
    r += [rec(5.05, "kubelet", "proxy_sync", "node-3", node_name="node-3", changed=True),
          rec(5.1, "kubelet", "proxy_sync", "node-1", node_name="node-1", changed=True),
          rec(5.25, "kubelet", "proxy_sync", "node-2", node_name="node-2", changed=False)]
    r.append(rec(6.0, "controller-manager", "endpointslice_sync", kind="Service", namespace="demo", name="web",
                 created=0, updated=0, deleted=0))                     # no write: not counted
    # fault f-1: node-3 killed at 10.0, detected at 10.0 + detect_node3
    r.append(rec(9.99, "supervisor", "process exited", process="node-3", role="node", exit_code=-9))
    r.append(rec(10.0, "chaos", "fault_injected", id="f-1", kind="kill", target="nodes:minority",
                 targets=["node-3"], params={}))
    r.append(rec(10.0 + detect_node3, "controller-manager", "node_status_unknown", kind="Node", name="node-3"))
    r.append(rec(10.0 + detect_node3, "controller-manager", "node_not_ready", kind="Node", name="node-3",
                 ready="Unknown"))
    # eviction at 20.0, replacements created 20.1 (each logged), running 20.3 and 20.7 -> 0.3 and 0.7 (startups 0.2, 0.6)
    r += [rec(20.0, "controller-manager", "pod_evicted", **pod("web-abc-p3"), nodeName="node-3"),
          rec(20.0, "controller-manager", "pod_evicted", **pod("web-abc-p4"), nodeName="node-3"),
          rec(20.1, "controller-manager", "pod_created", **pod("web-abc-r1"), replicaset="web-abc"),
          rec(20.1, "controller-manager", "pod_created", **pod("web-abc-r2"), replicaset="web-abc"),
          rec(20.1, "controller-manager", "pods_created", kind="ReplicaSet", namespace="demo", name="web-abc",
              count=2),
          started(20.3, "web-abc-r1", "node-1"), started(20.7, "web-abc-r2", "node-2")]
    # a write while node-3 is down: node-1 +0.1, node-2 +0.4 -> 0.4
    r.append(rec(21.0, "controller-manager", "endpointslice_sync", kind="Service", namespace="demo", name="web",
                 created=0, updated=1, deleted=0))
    r += [rec(21.1, "kubelet", "proxy_sync", "node-1", node_name="node-1", changed=True),
          rec(21.4, "kubelet", "proxy_sync", "node-2", node_name="node-2", changed=True)]
    # fault f-2: node-2 isolated 30.0 to 40.0, NotReady at 33.0 -> 3.0
    r.append(rec(30.0, "chaos", "fault_injected", id="f-2", kind="isolate", target="node-2", targets=["node-2"]))
    r.append(rec(33.0, "controller-manager", "node_not_ready", kind="Node", name="node-2", ready="False"))
    r.append(rec(40.0, "chaos", "fault_healed", id="f-2", kind="isolate", target="node-2", targets=["node-2"]))
    r.append(rec(41.0, "controller-manager", "node_ready", kind="Node", name="node-2"))
    r.append(rec(50.0, "chaos", "fault_healed", id="f-1", kind="kill", target="nodes:minority", targets=["node-3"]))
    r.append(rec(60.0, "scheduler", "scheduler_stopping", scheduled=6))   # 6 pods in 60 s -> 0.1/s
    return sorted(r, key=lambda x: x["ts"])


def load_records() -> list[dict[str, Any]]:
    # every 0.5 s from 0 to 59.5 (120); failures at 30.0, 30.5, 31.0, 31.5; success again at 32.0
    return [{"ts": ts(i / 2), "at": i / 2, "ok": not (30.0 <= i / 2 < 32.0), "detail": "200"} for i in range(120)]


def scrape(t: float, process: str, samples: list[list[Any]]) -> dict[str, Any]:
    return {"ts": ts(t), "process": process, "samples": samples}


def bucket(name: str, labels: dict[str, str], buckets: dict[str, float]) -> list[list[Any]]:
    return [[name + "_bucket", {**labels, "le": le}, v] for le, v in buckets.items()]


def metrics_files() -> dict[str, list[dict[str, Any]]]:
    get = {"verb": "GET", "resource": "pods"}
    api = [scrape(10, "apiserver", bucket("apiserver_request_duration_seconds", get,
                                          {"0.1": 40, "0.5": 45, "1.0": 45, "+Inf": 45})
                  + [["process_cpu_seconds_total", {}, 1.0], ["process_resident_memory_bytes", {}, 100 * 2**20]]),
           scrape(30, "apiserver", bucket("apiserver_request_duration_seconds", get,
                                          {"0.1": 60, "0.5": 66, "1.0": 66, "+Inf": 66})
                  + [["process_cpu_seconds_total", {}, 3.0], ["process_resident_memory_bytes", {}, 150 * 2**20]]),
           # the apiserver restarted: counters start again from 0
           scrape(50, "apiserver", bucket("apiserver_request_duration_seconds", get,
                                          {"0.1": 30, "0.5": 33, "1.0": 34, "+Inf": 34})
                  + bucket("apiserver_request_duration_seconds", {"verb": "CREATE", "resource": "pods"},
                           {"0.1": 0, "0.5": 0, "1.0": 0, "2.0": 10, "+Inf": 10})
                  + bucket("apiserver_request_duration_seconds", {"verb": "WATCH", "resource": "pods"},
                           {"+Inf": 5})
                  + [["process_cpu_seconds_total", {}, 0.5], ["process_resident_memory_bytes", {}, 80 * 2**20]])]
    node = [scrape(10, "node-1", [["process_cpu_seconds_total", {}, 0.2],
                                  ["process_resident_memory_bytes", {}, 50 * 2**20]]),
            scrape(30, "node-1", [["process_cpu_seconds_total", {}, 0.6],
                                  ["process_resident_memory_bytes", {}, 50 * 2**20]]
                   + bucket("kubelet_pod_start_sli_duration_seconds", {}, {"0.5": 3, "1.0": 4, "2.0": 5, "+Inf": 5}))]
    sched = [scrape(10, "scheduler", [["scheduler_schedule_attempts_total", {"result": "scheduled"}, 2],
                                      ["scheduler_schedule_attempts_total", {"result": "unschedulable"}, 7]]),
             scrape(30, "scheduler", [["scheduler_schedule_attempts_total", {"result": "scheduled"}, 6]]),
             scrape(50, "scheduler", [["scheduler_schedule_attempts_total", {"result": "scheduled"}, 6]]
                    + bucket("scheduler_scheduling_attempt_duration_seconds", {"result": "scheduled"},
                             {"0.01": 5, "0.1": 6, "+Inf": 6}))]
    return {"apiserver": api, "node-1": node, "scheduler": sched}


def fixture_read(metrics_dir: Path, name: str | None = None, process: str | None = None,
                 since: str | None = None, until: str | None = None) -> Iterator[tuple]:
    """The documented interface of lab.metrics_store.read, over the documented format."""
    for f in sorted(Path(metrics_dir).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            s = json.loads(line)
            if (process and s["process"] != process) or (since and s["ts"] < since) or (until and s["ts"] > until):
                continue
            for n, labels, v in s["samples"]:
                if name is None or n == name or n.startswith(name + "_"):
                    yield s["ts"], s["process"], n, labels, float(v)


def write_run(d: Path, detect_node3: float = 2.5, metrics: bool = True) -> Path:
    d.mkdir(parents=True)
    (d / "timeline.jsonl").write_text("".join(json.dumps(r) + "\n" for r in timeline(detect_node3)))
    (d / "load.jsonl").write_text("".join(json.dumps(r) + "\n" for r in load_records()))
    (d / "scenario.yaml").write_text(yaml.safe_dump({
        "name": "known", "load": {"http": {"service": "demo/web", "rate": 2}},
        "probes": [{"name": "web-http", "type": "http", "mode": "continuous", "service": "demo/web"}]}))
    (d / "result.json").write_text(json.dumps({
        "name": "known", "started": ts(0), "ended": ts(60), "verdict": "pass", "lab": {"dir": "/nonexistent"},
        "load": {"type": "http", "sent": 120, "ok": 116, "url": "http://10.96.0.10:80/"},
        "probes": [{"name": "web-http", "type": "http", "mode": "continuous", "ok": True, "checks": 10,
                    "passes": 9}], "faults": [], "errors": []}))
    if metrics:
        (d / "metrics").mkdir()
        for proc, lines in metrics_files().items():
            (d / "metrics" / f"{proc}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d


def test_percentile_and_histogram_quantile() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0 and percentile([1.0], 99) == 1.0
    assert percentile([], 50) is None
    b = [(0.1, 90.0), (0.5, 99.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.99, b) == pytest.approx(0.5)
    assert histogram_quantile(0.5, b) == pytest.approx(0.1 * 50 / 90)
    assert histogram_quantile(0.999, [(1.0, 1.0), (float("inf"), 2.0)]) == 1.0   # in +Inf: the last bound


def test_trimmed_buckets_are_filled_before_summing() -> None:
    from lab.report.metrics_sli import _histograms
    samples = [(ts(10), "a", "x_bucket", {"le": "0.1"}, 0.0), (ts(10), "a", "x_bucket", {"le": "0.5"}, 10.0),
               (ts(10), "a", "x_bucket", {"le": "+Inf"}, 10.0),
               (ts(10), "b", "x_bucket", {"le": "0.5"}, 0.0), (ts(10), "b", "x_bucket", {"le": "1.0"}, 5.0),
               (ts(10), "b", "x_bucket", {"le": "+Inf"}, 5.0)]
    b = _histograms(lambda name=None, process=None: iter(samples), "x", ())[()]
    assert b == [(0.1, 0.0), (0.5, 10.0), (1.0, 15.0), (float("inf"), 15.0)]   # a's 1.0 holds its 0.5
    assert histogram_quantile(0.99, b) == pytest.approx(0.5 + 0.5 * 4.85 / 5)


def test_known_answers(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    rep = generate(run, reader=fixture_read)
    s = rep["slis"]
    ps = s["pod_startup_latency"]   # [0.2, 0.2, 0.4, 0.5, 0.6, 1.0, 2.0]
    assert ps["count"] == 7 and ps["unattributed"] == 0
    assert (ps["p50"], ps["p90"], ps["p99"]) == pytest.approx((0.5, 2.0, 2.0))
    assert ps["metric"]["p50"] == pytest.approx(0.5 * 2.5 / 3) and ps["metric"]["p99"] == pytest.approx(1.95)
    det = s["node_failure_detection"]   # [2.5, 3.0]
    assert [(e["fault"], e["node"], e["seconds"]) for e in det["events"]] == \
        [("f-1", "node-3", pytest.approx(2.5)), ("f-2", "node-2", pytest.approx(3.0))]
    assert det["p50"] == pytest.approx(2.5) and det["max"] == pytest.approx(3.0)
    ev = s["eviction_to_replacement"]
    assert [(e["pod"], e["replacement"], e["seconds"]) for e in ev["events"]] == [
        ("demo/web-abc-p3", "demo/web-abc-r1", pytest.approx(0.3)),
        ("demo/web-abc-p4", "demo/web-abc-r2", pytest.approx(0.7))]
    ep = s["endpoint_propagation"]
    assert [e["seconds"] for e in ep["events"]] == [pytest.approx(0.25), pytest.approx(0.4)]
    assert set(ep["events"][1]["nodes"]) == {"node-1", "node-2"}   # node-3 was down
    assert s["scheduling"]["logs"]["value"] == pytest.approx(0.1)
    sm = s["scheduling"]["metrics"]
    assert sm["throughput"]["pods_bound"] == 6 and sm["throughput"]["mean"] == pytest.approx(6 / 50)
    assert sm["throughput"]["peak"] == pytest.approx(0.2)
    assert sm["latency"]["p50"] == pytest.approx(0.006) and sm["latency"]["p99"] == pytest.approx(0.0946)
    api = s["api_call_latency"]
    assert api["available"] and set(api["by_verb"]) == {"GET", "CREATE"}   # WATCH excluded
    assert api["by_verb"]["GET"]["count"] == 100 and api["by_verb"]["GET"]["p99"] == pytest.approx(0.5)
    assert api["by_verb"]["GET"]["slo_met"] is True
    assert api["by_verb"]["CREATE"]["p99"] == pytest.approx(1.99) and api["by_verb"]["CREATE"]["slo_met"] is False
    web = s["service_availability"]["services"]["Service demo/web"]
    assert (web["sent"], web["ok"]) == (120, 116) and web["availability"] == pytest.approx(116 / 120, abs=1e-6)
    assert web["during_faults"]["sent"] == 81 and web["during_faults"]["ok"] == 77   # 10.0..50.0
    assert web["longest_outage_s"] == pytest.approx(2.0)
    probe = s["service_availability"]["services"]["Service demo/web (probe web-http)"]
    assert probe["availability"] == pytest.approx(0.9)
    pr = s["process_resources"]["processes"]
    assert pr["apiserver"]["cpu_max_cores"] == pytest.approx(0.1)      # (3-1)/20; after the reset 0.5/20
    assert pr["apiserver"]["cpu_mean_cores"] == pytest.approx(0.0625)
    assert pr["apiserver"]["rss_max_bytes"] == 150 * 2**20 and pr["apiserver"]["rss_last_bytes"] == 80 * 2**20
    assert pr["node-1"]["cpu_max_cores"] == pytest.approx(0.02)
    assert [(f["id"], f["from_s"], f["to_s"]) for f in rep["faults"]] == [("f-1", 10.0, 50.0), ("f-2", 30.0, 40.0)]

    out = run / "report"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["slis"]["node_failure_detection"]["max"] == pytest.approx(3.0)
    for figure in ("pod_startup_latency", "node_failure_detection", "eviction_to_replacement",
                   "endpoint_propagation", "api_call_latency"):
        assert on_disk["slis"][figure]["definition"] and on_disk["slis"][figure].get("unit") == "s"
    for png in ("timeline.png", "pod-startup-cdf.png", "api-latency-cdf.png", "resources.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page) and "<script" not in page
    md = (out / "report.md").read_text()
    assert "| Node failure detection max | 3 s |" in md and "![timeline](timeline.png)" in md


def test_without_metrics_the_sections_say_so(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", metrics=False)
    rep = generate(run, tmp_path / "out")
    assert rep["slis"]["api_call_latency"]["available"] is False
    assert "not available" in rep["slis"]["api_call_latency"]["reason"]
    assert rep["slis"]["process_resources"]["available"] is False
    assert rep["slis"]["node_failure_detection"]["max"] == pytest.approx(3.0)   # logs are enough
    assert (tmp_path / "out" / "report.html").is_file() and not (tmp_path / "out" / "resources.png").exists()


def test_real_metrics_store_reads_the_documented_format(tmp_path: Path) -> None:
    pytest.importorskip("lab.metrics_store")
    run = write_run(tmp_path / "run")
    rep = generate(run, tmp_path / "out")   # through lab.metrics_store.read
    assert rep["slis"]["api_call_latency"]["by_verb"]["GET"]["p99"] == pytest.approx(0.5)
    assert rep["slis"]["process_resources"]["processes"]["apiserver"]["rss_max_bytes"] == 150 * 2**20


def test_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", metrics=False)
    b = write_run(tmp_path / "b", detect_node3=4.0, metrics=False)
    res = compare(a, b, tmp_path / "cmp")
    rows = {r["key"]: r for r in res["rows"]}
    assert rows["node_failure_detection.max"]["a"] == pytest.approx(3.0)
    assert rows["node_failure_detection.max"]["b"] == pytest.approx(4.0)
    assert rows["node_failure_detection.max"]["diff"] == pytest.approx(1.0)
    assert rows["pod_startup_latency.p50"]["diff"] == pytest.approx(0.0)
    for f in ("compare.json", "compare.md", "compare.html"):
        assert (tmp_path / "cmp" / f).is_file()
    assert "| Node failure detection max | 3 s | 4 s | +1 s |" in (tmp_path / "cmp" / "compare.md").read_text()
    # the CLI, reusing the reports just written (a directory holding report.json)
    assert report_main(["--compare", str(a / "report"), str(b / "report"), "--out", str(tmp_path / "c2")]) == 0
    assert json.loads((tmp_path / "c2" / "compare.json").read_text())["rows"]
    assert "comparison written to" in capsys.readouterr().out


def test_bad_input_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    assert report_main(["--run", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "--run:" in err and "neither a lab directory" in err
    assert report_main(["--run", str(tmp_path / "empty"), "--lab", "x"]) == 1
    assert "--lab and --run" in capsys.readouterr().err
    assert report_main(["--lab", "nope"]) == 1
    assert "--lab: no lab named 'nope'" in capsys.readouterr().err
    assert report_main([]) == 1
    assert "--lab: there is no current lab" in capsys.readouterr().err
    with pytest.raises(ReportError, match="--run: .* is not a directory"):
        generate(tmp_path / "missing")


def test_a_lab_directory(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    (lab / "logs").mkdir(parents=True)
    by_proc: dict[str, list[str]] = {}
    for r in timeline():
        by_proc.setdefault(r.get("node") or r["component"], []).append(json.dumps(r))
    for p, lines in by_proc.items():
        (lab / "logs" / f"{p}.jsonl").write_text("\n".join(lines) + "\n")
    assert report_main(["--lab", str(lab)]) == 0
    rep = json.loads((lab / "report" / "report.json").read_text())
    assert rep["source"]["kind"] == "lab"
    assert rep["slis"]["node_failure_detection"]["max"] == pytest.approx(3.0)
    assert rep["slis"]["service_availability"]["available"] is False
