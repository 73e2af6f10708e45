"""Metrics in process: the ``metrics`` ctl op, the apiserver's request and watch metrics,
the scheduler's and kubelet's helpers, the store reader and the add-on's line format."""
from __future__ import annotations

import io
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from control.apiserver.metrics import RequestMetrics
from emulator import ctl, metrics
from emulator.client import Client
from lab import metrics_store
from lab.metrics_addon import Merged, samples_of, trim_buckets, write_scrape
from node.kubelet.metrics import KubeletMetrics
from tests.conftest import poll_for


def value(name: str, **labels: str) -> float:
    """The current value of one sample in this process's registry (0 when absent)."""
    for fam in text_string_to_metric_families(metrics.text()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_ctl_metrics_op_serves_the_process_registry(tmp_path: Path) -> None:
    c = metrics.counter("kemu_test_things", "Things counted by a test", ("kind",))
    c.labels("a").inc(3)
    server = ctl.CtlServer(ctl.socket_path(tmp_path, "t"), ctl.standard_handlers(["t"])).start()
    try:
        metrics.install(server)
        text = ctl.call(ctl.socket_path(tmp_path, "t"), "metrics")["text"]
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert any(s.labels == {"kind": "a"} and s.value >= 3 for s in fams["kemu_test_things"].samples)
        assert "process_resident_memory_bytes" in fams and "process_cpu_seconds" in fams
        got = ctl.call(ctl.socket_path(tmp_path, "t"), "metrics", {"format": "families"})["families"]
        names = {f[0]: f for f in got}
        assert names["kemu_test_things"][1] == "counter"
        assert ["kemu_test_things_total", {"kind": "a"}] in [s[:2] for s in names["kemu_test_things"][3]]
        try:
            ctl.call(ctl.socket_path(tmp_path, "t"), "metrics", {"format": "xml"})
            raise AssertionError("a bad format must fail")
        except ctl.CtlError as e:
            assert 'format: Unsupported value: "xml"' in str(e)
    finally:
        server.close()


def test_metric_helpers_are_get_or_create() -> None:
    a = metrics.histogram("kemu_test_seconds", "d", ("op",))
    assert metrics.histogram("kemu_test_seconds", "d", ("op",)) is a


def test_apiserver_request_and_watch_metrics(threaded_server) -> None:
    addr = threaded_server(bookmark_interval=60).address
    before = value("apiserver_request_duration_seconds_count", verb="POST", resource="configmaps")
    gets = value("apiserver_request_total", verb="GET", resource="configmaps", code="200")
    missing = value("apiserver_request_total", verb="GET", resource="configmaps", code="404")
    sent = value("apiserver_watch_events_total", kind="ConfigMap")
    c = Client(addr, component="test")
    try:
        w = c.watch("ConfigMap", namespace="default")
        for i in range(5):
            c.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"m{i}", "namespace": "default"}})
            c.get("ConfigMap", f"m{i}", "default")
        try:
            c.get("ConfigMap", "nope", "default")
        except Exception:
            pass
        poll_for(lambda: value("apiserver_request_duration_seconds_count", verb="POST",
                               resource="configmaps") >= before + 5, 5, what="5 creates observed")
        assert value("apiserver_request_total", verb="GET", resource="configmaps", code="200") >= gets + 5
        assert value("apiserver_request_total", verb="GET", resource="configmaps", code="404") >= missing + 1
        assert value("apiserver_request_total", verb="POST", resource="configmaps", code="201") >= 5
        inf = value("apiserver_request_duration_seconds_bucket", verb="POST", resource="configmaps", le="+Inf")
        assert inf == value("apiserver_request_duration_seconds_count", verb="POST", resource="configmaps")

        def events() -> bool:
            c.poll(0.05)
            return value("apiserver_watch_events_total", kind="ConfigMap") >= sent + 5
        poll_for(events, 5, what="watch events counted")
        assert "apiserver_watch_events_dropped_total" in metrics.text()
        w.stop() if hasattr(w, "stop") else None
    finally:
        c.close()


def test_request_metrics_resources_and_codes() -> None:
    m = RequestMetrics()
    m.observe([({"op": "create", "subresource": "binding", "object": {"kind": "Binding"}}, None),
               ({"op": "update", "subresource": "status", "object": {"kind": "Pod"}}, "Conflict"),
               ({"op": "hello"}, None), (None, "BadRequest")], 0.0)
    assert value("apiserver_request_total", verb="POST", resource="pods/binding", code="201") >= 1
    assert value("apiserver_request_total", verb="PUT", resource="pods/status", code="409") >= 1
    assert 'verb="HELLO"' not in metrics.text()


def test_kubelet_pod_start_sli_counts_tracked_pods_once() -> None:
    km = KubeletMetrics()
    count = value("kubelet_pod_start_sli_duration_seconds_count")
    pod = {"metadata": {"uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    running = {"containerStatuses": [{"state": {"running": {}}}, {"state": {"running": {}}}]}
    waiting = {"containerStatuses": [{"state": {"running": {}}}, {"state": {"waiting": {}}}]}
    t = metrics_store.parse_rfc3339("2026-01-01T00:00:02Z")
    km.observe_status(pod, running, t)   # not tracked (adopted): nothing
    assert value("kubelet_pod_start_sli_duration_seconds_count") == count
    km.track("u1")
    km.observe_status(pod, waiting, t)
    assert value("kubelet_pod_start_sli_duration_seconds_count") == count
    km.observe_status(pod, running, t)
    km.observe_status(pod, running, t + 5)
    assert value("kubelet_pod_start_sli_duration_seconds_count") == count + 1
    done = km.time_sync("create")
    done()
    assert value("kubelet_pod_worker_duration_seconds_count", operation="create") >= 1


def _line(ts: str, process: str, samples: list) -> str:
    return json.dumps({"ts": ts, "process": process, "samples": samples}) + "\n"


def test_store_reads_merged_filtered_and_tolerates_a_partial_line(tmp_path: Path) -> None:
    d = tmp_path / "metrics"
    d.mkdir()
    h = [["lat_seconds_bucket", {"le": "0.1"}, 1], ["lat_seconds_bucket", {"le": "+Inf"}, 2],
         ["lat_seconds_sum", {}, 0.3], ["lat_seconds_count", {}, 2]]
    (d / "apiserver.jsonl").write_text(
        _line("2026-01-01T00:00:00.000000Z", "apiserver", [["reqs_total", {"verb": "GET"}, 1]] + h)
        + _line("2026-01-01T00:00:10.000000Z", "apiserver", [["reqs_total", {"verb": "GET"}, 5]])
        + '{"ts": "2026-01-01T00:00:20.000000Z", "process": "apis')   # being written
    (d / "node-1.jsonl").write_text(
        _line("2026-01-01T00:00:05.000000Z", "node-1", [["reqs_total", {}, 7]]) + "not json\n"
        + _line("2026-01-01T00:00:15.000000Z", "node-1", [["reqs_total", {}, 9]]))
    rows = list(metrics_store.read(d, "reqs_total"))
    assert [(r[0][17:19], r[1], r[4]) for r in rows] == [("00", "apiserver", 1), ("05", "node-1", 7),
                                                         ("10", "apiserver", 5), ("15", "node-1", 9)]
    assert [r[2] for r in metrics_store.read(d, "lat_seconds")] == [s[0] for s in h]
    assert [r[4] for r in metrics_store.read(d, "reqs_total", process="node-1")] == [7, 9]
    assert [r[4] for r in metrics_store.read(d, "req", since="2026-01-01T00:00:05Z",
                                             until="2026-01-01T00:00:10Z")] == []
    assert [r[4] for r in metrics_store.read(d, "reqs_total", since="2026-01-01T00:00:05Z",
                                             until="2026-01-01T00:00:10Z")] == [7, 5]
    assert list(metrics_store.read(d, process="nope")) == []
    last = metrics_store.latest(d)
    assert last["apiserver"] == ("2026-01-01T00:00:10.000000Z", [["reqs_total", {"verb": "GET"}, 5]])
    assert last["node-1"][1] == [["reqs_total", {}, 9]]


def test_store_time_parsing_names_the_flag() -> None:
    assert metrics_store.parse_time("2026-01-01T00:00:00Z") == 1767225600.0
    try:
        metrics_store.parse_time("yesterday", "--since")
        raise AssertionError("must fail")
    except ValueError as e:
        assert "--since" in str(e) and "30s" in str(e)


def test_trimmed_buckets_keep_quantiles_exact() -> None:
    def b(le: str, n: float) -> list:
        return ["h_bucket", {"le": le}, n]
    full = [b("0.1", 0), b("0.2", 0), b("0.5", 2), b("1", 5), b("2", 5), b("5", 5), b("+Inf", 5)]
    trimmed = trim_buckets(full + [["h_sum", {}, 2.0], ["h_count", {}, 5]])
    assert [s[1]["le"] for s in trimmed if s[0] == "h_bucket"] == ["0.2", "0.5", "1", "+Inf"]
    pairs = lambda bs: [(s[1]["le"], s[2]) for s in bs if s[0] == "h_bucket"]   # noqa: E731
    for q in (0.1, 0.5, 0.9, 0.99):
        assert metrics_store.histogram_quantile(q, pairs(full)) == \
            metrics_store.histogram_quantile(q, pairs(trimmed))
    empty = ["histogram", "x", "d", [["e_bucket", {"le": "+Inf"}, 0], ["e_count", {}, 0], ["e_sum", {}, 0]]]
    assert samples_of([["e", "histogram", "d", empty[3]]]) == []


def test_scrape_line_format_and_merged_exposition(tmp_path: Path) -> None:
    fams = metrics.families()
    write_scrape(tmp_path, "node-1", "2026-01-01T00:00:00.000000Z", fams)
    rec = json.loads((tmp_path / "node-1.jsonl").read_text())
    assert rec["process"] == "node-1" and rec["ts"] == "2026-01-01T00:00:00.000000Z"
    assert all(len(s) == 3 and isinstance(s[1], dict) for s in rec["samples"])
    merged = Merged()
    merged.update("node-1", {"process": "node-1", "node": "node-1"}, fams)
    merged.update("scheduler", {"process": "scheduler"}, fams)
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    reg = CollectorRegistry(auto_describe=False)
    reg.register(merged)
    text = generate_latest(reg).decode()
    rss = [s for f in text_string_to_metric_families(text) for s in f.samples
           if s.name == "process_resident_memory_bytes"]
    assert {s.labels.get("process") for s in rss} == {"node-1", "scheduler"}
    assert [s.labels.get("node") for s in rss if s.labels["process"] == "node-1"] == ["node-1"]
    assert io.StringIO(text).read().count("# TYPE process_resident_memory_bytes") == 1


def test_top_processes_of_a_stopped_lab_says_so(tmp_path: Path) -> None:
    from emulator.cli.kubectl import run as kemu
    out, err = io.StringIO(), io.StringIO()
    assert kemu(["top", "processes", "--lab-dir", str(tmp_path)], out, err) == 1
    assert "the lab is not running" in err.getvalue()


def test_scheduler_metrics_expose_attempts_and_durations_by_result() -> None:
    from control.scheduler.metrics import SchedulerMetrics

    def value(text: str, line: str) -> float:
        got = [ln for ln in text.splitlines() if ln.startswith(line + " ")]
        return float(got[0].split()[-1]) if got else 0.0
    m = SchedulerMetrics()
    before = metrics.text()
    for r in ("scheduled", "unschedulable", "error"):   # every result has its series from the start
        assert f'scheduler_schedule_attempts_total{{result="{r}"}}' in before
    m.start(("default", "a"))
    m.done(("default", "a"), "scheduled")
    m.done(("default", "b"), "unschedulable")   # never started: counted, no duration
    after = metrics.text()
    for line, delta in (('scheduler_schedule_attempts_total{result="scheduled"}', 1),
                        ('scheduler_schedule_attempts_total{result="unschedulable"}', 1),
                        ('scheduler_scheduling_attempt_duration_seconds_count{result="scheduled"}', 1),
                        ('scheduler_scheduling_attempt_duration_seconds_count{result="unschedulable"}', 0)):
        assert value(after, line) - value(before, line) == delta, line
