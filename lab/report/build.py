"""Building a report: the source, every SLI, the plots, and the three files.

Contract: ``generate(path, out=None, *, reader=None) -> dict`` (see the
package docstring); ``reader`` replaces ``lab.metrics_store.read`` (tests).
``build_report(src) -> dict`` is the report without writing anything.
``compare(a, b, out=None) -> dict``: ``a`` and ``b`` are run or lab
directories (a report is generated for each, in its default place) or
directories holding a ``report.json`` (used as is); ``out`` defaults to
``<a>/report/compare-<name of b>/``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

from lab.report import availability, metrics_sli, plots, render, sli
from lab.report.source import ReportError, Source, load_source

__all__ = ["ReportError", "build_report", "compare", "generate"]


def _rfc(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_report(src: Source) -> dict[str, Any]:
    recs = src.records
    read = src.metrics()
    pod_start = sli.pod_startup(recs)
    pod_start["metric"] = metrics_sli.pod_startup_metric(read)
    res = src.result or {}
    return {
        "kemu_report": 1,
        "source": {"kind": src.kind, "dir": str(src.dir), "name": src.name, "start": src.start,
                   "end": src.end, "start_rfc3339": _rfc(src.start), "end_rfc3339": _rfc(src.end),
                   "duration_s": round(src.end - src.start, 6), "verdict": res.get("verdict"),
                   "log_records_used": len(recs), "metrics": read is not None},
        "faults": [{"id": f.id, "kind": f.kind, "target": f.target, "targets": f.targets,
                    "from_s": round(f.start - src.start, 6), "to_s": round(f.end - src.start, 6),
                    "healed": f.healed} for f in src.faults],
        "slis": {
            "pod_startup_latency": pod_start,
            "scheduling": {"logs": sli.scheduling_from_logs(recs), "metrics": metrics_sli.scheduling(read, src.start)},
            "api_call_latency": metrics_sli.api_latency(read),
            "node_failure_detection": sli.node_detection(recs, src.faults),
            "eviction_to_replacement": sli.eviction_replacement(recs),
            "endpoint_propagation": sli.endpoint_propagation(recs),
            "service_availability": availability.service_availability(src),
            "process_resources": metrics_sli.process_resources(read),
        },
    }


def _clean(o: Any) -> Any:
    """JSON has no Infinity/NaN: they become null."""
    if isinstance(o, float) and (math.isinf(o) or math.isnan(o)):
        return None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _plots(src: Source, rep: dict[str, Any], out: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    t0, t1 = src.start, src.end
    p = plots.timeline(out / "timeline.png", f"{src.name}: nodes, pods and service availability", t0, t1,
                       src.faults, sli.ready_nodes_series(src.records), sli.running_pods_series(src.records),
                       availability.availability_series(src.load))
    images["timeline"] = p
    samples = {"pod startup (logs)": [s["seconds"] for s in rep["slis"]["pod_startup_latency"]["samples"]]}
    metric_b: dict[str, list[tuple[float, float]]] = {}
    read = src.metrics()
    if read is not None:
        h = metrics_sli._histograms(read, "kubelet_pod_start_sli_duration_seconds", ())
        if h.get(()):
            metric_b["kubelet_pod_start_sli_duration_seconds"] = h[()]
    p2 = plots.cdf(out / "pod-startup-cdf.png", "Pod startup latency: CDF", samples, metric_b)
    if p2:
        images["pod startup latency CDF"] = p2
    if read is not None:
        api = {f"{v[0].upper()}": b for v, b in
               metrics_sli._histograms(read, "apiserver_request_duration_seconds", ("verb",)).items()
               if v[0].upper() != "WATCH"}
        p3 = plots.cdf(out / "api-latency-cdf.png", "API call latency by verb: CDF (SLO: p99 ≤ 1 s)", {}, api,
                        slo=1.0)
        if p3:
            images["API call latency CDF"] = p3
    pr = rep["slis"]["process_resources"]
    if pr.get("available"):
        series = pr.pop("series")
        p4 = plots.resources(out / "resources.png", f"{src.name}: per-process CPU and memory", t0, t1, src.faults,
                             series["cpu_cores"], series["rss_bytes"])
        if p4:
            images["process resources"] = p4
    return images


def generate(path: str | Path, out: str | Path | None = None, *, flag: str = "--run",
             reader: Callable[..., Iterator[tuple]] | None = None) -> dict[str, Any]:
    src = load_source(path, flag)
    src.reader = reader
    rep = build_report(src)
    out_dir = Path(out) if out else src.dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    images = _plots(src, rep, out_dir)
    rep["slis"]["process_resources"].pop("series", None)
    rep["images"] = {k: p.name for k, p in images.items()}
    rep = _clean(rep)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out_dir / "report.md").write_text(render.markdown(rep, images))
    (out_dir / "report.html").write_text(render.html(rep, images))
    rep["out"] = str(out_dir)
    return rep


def _report_for(path: str | Path, flag: str) -> dict[str, Any]:
    d = Path(path)
    for f in (d / "report.json", d):
        if f.is_file() and f.name == "report.json":
            try:
                return json.loads(f.read_text())
            except ValueError as e:
                raise ReportError(f"{flag}: {f} is not a report ({e})") from None
    return generate(d, flag=flag)


def compare(a: str | Path, b: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    ra, rb = _report_for(a, "--compare A"), _report_for(b, "--compare B")
    table = render.compare_rows(ra, rb)
    base = Path(a) if (Path(a) / "report.json").is_file() else Path(a) / "report"
    out_dir = Path(out) if out else base / f"compare-{Path(b).resolve().name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"kemu_compare": 1, "a": ra["source"], "b": rb["source"], "rows": table}
    (out_dir / "compare.json").write_text(json.dumps(_clean(res), indent=1) + "\n")
    (out_dir / "compare.md").write_text(render.compare_markdown(ra, rb, table))
    (out_dir / "compare.html").write_text(render.compare_html(ra, rb, table))
    res["out"] = str(out_dir)
    return res
