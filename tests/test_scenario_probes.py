"""The scenario probes, one by one: k8s against a real apiserver in a thread, http against a
local server, cmd with real commands, log over a logs directory."""
from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from emulator.client import Client
from lab.chaos.probes import ProbeContext, attempt, check, compare, field_value
from lab.chaos.scenario import Probe, parse_probe


def probe(**spec: Any) -> Probe:
    return parse_probe({"name": "p", "mode": "eot", **spec}, "probes[0]")


@pytest.fixture
def client(apiserver_addr: str) -> Iterator[Client]:
    c = Client(apiserver_addr)
    yield c
    c.close()


def test_field_paths_and_comparisons() -> None:
    obj = {"status": {"n": 3, "conditions": [{"type": "Ready", "status": "True"}]},
           "spec": {"containers": [{"image": "x"}]}}
    assert field_value(obj, "status.n") == 3
    assert field_value(obj, "status.conditions[type=Ready].status") == "True"
    assert field_value(obj, "spec.containers[0].image") == "x"
    assert field_value(obj, "spec.containers[5].image") is None
    assert field_value(obj, "status.missing.deeper") is None
    assert compare(3, ">=", "3") and not compare(2, ">=", "3") and compare(None, "<", "1")
    assert compare("True", "==", "True") and compare(True, "==", "true") and compare("a", "!=", "b")
    assert not compare("a", ">", "b")


def test_k8s_probe(client: Client) -> None:
    ctx = ProbeContext(client=client)
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "default",
                                                                         "labels": {"app": "a"}},
                   "data": {"n": "3"}})
    ok, detail = check(probe(type="k8s", kind="ConfigMap", namespace="default", resourceName="c1",
                             condition="data.n>=3"), ctx)
    assert ok and detail == "ConfigMap default/c1: data.n=3 (want >=3)"
    ok, detail = check(probe(type="k8s", kind="ConfigMap", namespace="default", resourceName="c1",
                             condition="data.n>3"), ctx)
    assert not ok
    ok, detail = check(probe(type="k8s", kind="ConfigMap", namespace="default", resourceName="nope",
                             condition="data.n>3"), ctx)
    assert not ok and "not found" in detail
    assert check(probe(type="k8s", kind="ConfigMap", namespace="default", resourceName="c1",
                       operation="present"), ctx)[0]
    assert check(probe(type="k8s", kind="ConfigMap", namespace="default", resourceName="nope",
                       operation="absent"), ctx)[0]
    assert check(probe(type="k8s", kind="ConfigMap", namespace="default", selector="app=a",
                       condition="count==1"), ctx)[0]
    assert not check(probe(type="k8s", kind="ConfigMap", namespace="default", selector="app=b",
                           condition="data.n==3"), ctx)[0]   # nothing matches: not a pass


@pytest.fixture
def web() -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:   # noqa: N802
            self.send_response(200 if self.path == "/" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: Any) -> None:
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_probe(web: str) -> None:
    ctx = ProbeContext(client=None)
    ok, detail = check(probe(type="http", url=web + "/"), ctx)
    assert ok and detail.endswith(": 200 (want 200)")
    ok, detail = check(probe(type="http", url=web + "/missing"), ctx)
    assert not ok and "404" in detail
    assert check(probe(type="http", url=web + "/missing", expect=404), ctx)[0]
    ok, detail = check(probe(type="http", url="http://127.0.0.1:1/", timeout="500ms"), ctx)
    assert not ok and "Error" in detail


def test_cmd_probe() -> None:
    ctx = ProbeContext(client=None)
    py = sys.executable
    assert check(probe(type="cmd", command=[py, "-c", "print('hello 42')"], expectOutput=r"hello \d+"), ctx)[0]
    ok, detail = check(probe(type="cmd", command=[py, "-c", "import sys; sys.exit(3)"]), ctx)
    assert not ok and detail.startswith("exit code 3 (want 0)")
    assert check(probe(type="cmd", command=[py, "-c", "import sys; sys.exit(3)"], expectExit=3), ctx)[0]
    ok, detail = check(probe(type="cmd", command=[py, "-c", "print('x')"], expectOutput="y"), ctx)
    assert not ok and "does not match /y/" in detail
    ok, detail = check(probe(type="cmd", command=[py, "-c", "import threading; threading.Event().wait()"], timeout="300ms"),
                       ctx)
    assert not ok and "timed out after 0.3s" in detail
    ok, detail = check(probe(type="cmd", command=["/nonexistent/cmd"]), ctx)
    assert not ok and "cannot run" in detail


def test_log_probe(tmp_path: Path) -> None:
    def line(ts: str, comp: str, event: str, **kw: Any) -> str:
        return json.dumps({"ts": ts, "component": comp, "event": event, **kw}) + "\n"
    (tmp_path / "kubelet.jsonl").write_text(line("2026-01-01T00:00:01.000000Z", "kubelet", "pod_evicted", namespace="demo")
                                            + "not json\n")
    (tmp_path / "chaos.jsonl").write_text(line("2026-01-01T00:00:02.000000Z", "chaos", "fault_injected", kind="kill"))
    ctx = ProbeContext(client=None, logs=tmp_path)
    assert check(probe(type="log", event="pod_*"), ctx)[0]
    assert check(probe(type="log", event="pod_evicted", component="kubelet", match={"namespace": "demo"}), ctx)[0]
    assert not check(probe(type="log", event="pod_evicted", match={"namespace": "other"}), ctx)[0]
    assert not check(probe(type="log", event="fault_*", component="kubelet"), ctx)[0]
    assert check(probe(type="log", event="fault_healed", present=False), ctx)[0]
    late = ProbeContext(client=None, logs=tmp_path, since="2026-01-01T00:00:01.500000Z")
    assert not check(probe(type="log", event="pod_evicted"), late)[0]


def test_attempt_retries_until_a_pass(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    code = f"import pathlib,sys; p=pathlib.Path({str(marker)!r}); n=int(p.read_text()) if p.exists() else 0; " \
           "p.write_text(str(n+1)); sys.exit(0 if n >= 2 else 1)"
    p = probe(type="cmd", command=[sys.executable, "-c", code], retries=5, interval="10ms")
    ok, _detail, n = attempt(p, ProbeContext(client=None))
    assert ok and n == 3
    p = probe(type="cmd", command=[sys.executable, "-c", "import sys; sys.exit(1)"], retries=2, interval="10ms")
    ok, detail, n = attempt(p, ProbeContext(client=None))
    assert not ok and n == 3 and "exit code 1" in detail
    stop = threading.Event()
    stop.set()
    assert attempt(p, ProbeContext(client=None), stop)[2] == 1   # a stopped run does not retry


def test_metric_probe(tmp_path: Path) -> None:
    """last, max, increase and a histogram quantile over the collected samples, per the
    documented metrics file format; buckets trimmed differently per process still add up."""
    logs, mdir = tmp_path / "logs", tmp_path / "metrics"
    logs.mkdir()
    mdir.mkdir()

    def scrape(proc: str, ts: str, samples: list) -> str:
        return json.dumps({"ts": ts, "process": proc, "samples": samples}) + "\n"
    h = "apiserver_request_duration_seconds_bucket"
    (mdir / "node-1.jsonl").write_text(
        scrape("node-1", "2026-01-01T00:00:01.000000Z", [["process_resident_memory_bytes", {}, 100.0],
                                                         ["process_cpu_seconds_total", {}, 1.0]])
        + scrape("node-1", "2026-01-01T00:00:02.000000Z", [["process_resident_memory_bytes", {}, 300.0],
                                                           ["process_cpu_seconds_total", {}, 1.5]]))
    (mdir / "apiserver.jsonl").write_text(
        scrape("apiserver", "2026-01-01T00:00:02.000000Z", [
            ["process_resident_memory_bytes", {}, 1000.0],
            [h, {"verb": "GET", "resource": "pods", "le": "0.01"}, 90.0],
            [h, {"verb": "GET", "resource": "pods", "le": "0.1"}, 100.0],
            [h, {"verb": "GET", "resource": "pods", "le": "+Inf"}, 100.0],
            [h, {"verb": "POST", "resource": "pods", "le": "1.0"}, 0.0],
            [h, {"verb": "POST", "resource": "pods", "le": "2.5"}, 100.0],
            [h, {"verb": "POST", "resource": "pods", "le": "+Inf"}, 100.0]]))
    ctx = ProbeContext(client=None, logs=logs)
    ok, detail = check(probe(type="metric", metric="process_resident_memory_bytes", condition="value==1300"), ctx)
    assert ok, detail
    assert check(probe(type="metric", metric="process_resident_memory_bytes", process="node-1",
                       aggregate="max", condition="value==300"), ctx)[0]
    assert check(probe(type="metric", metric="process_cpu_seconds_total", aggregate="increase",
                       condition="value==0.5"), ctx)[0]
    ok, detail = check(probe(type="metric", metric="apiserver_request_duration_seconds", quantile=0.5,
                             labels={"verb": "GET"}, condition="value<=0.01"), ctx)
    assert ok and "quantile" in detail, detail
    # over both verbs: half the requests took over 1 s, so the p99 breaks the 1 s SLO
    assert not check(probe(type="metric", metric="apiserver_request_duration_seconds", quantile=0.99,
                           condition="value<=1"), ctx)[0]
    ok, detail = check(probe(type="metric", metric="nothing_here", condition="value>0"), ctx)
    assert not ok and "no samples" in detail
    late = ProbeContext(client=None, logs=logs, since="2026-01-01T00:00:01.500000Z")
    assert check(probe(type="metric", metric="process_cpu_seconds_total", aggregate="increase",
                       condition="value==0"), late)[0]


@pytest.mark.parametrize("spec, words", [
    ({"condition": "value>1"}, "probes[0].metric: required"),
    ({"metric": "x"}, "probes[0].condition: required"),
    ({"metric": "x", "condition": "status.x>1"}, "condition is on value"),
    ({"metric": "x", "aggregate": "avg", "condition": "value>1"}, "probes[0].aggregate: unknown aggregate"),
    ({"metric": "x", "quantile": 2, "condition": "value>1"}, "probes[0].quantile: expected a number"),
])
def test_metric_probe_bad_fields(spec: dict, words: str) -> None:
    from lab.chaos.scenario import ScenarioError
    with pytest.raises(ScenarioError, match=words.replace("[", r"\[").replace("]", r"\]")):
        probe(type="metric", **spec)
