"""Rendering a report dict (see ``lab.report.build``) as Markdown and self-contained HTML.

Contract: ``rows(report)`` flattens the headline figures into
``(key, label, value, unit)``; ``markdown``/``html`` render one report with its
plots (Markdown links the PNG files next to it; HTML embeds them as base64
``data:`` URIs, loads nothing from elsewhere and has no script);
``compare_rows``/``compare_markdown``/``compare_html`` put two reports side by
side with the difference B - A.
"""
from __future__ import annotations

import base64
import html as _html
from pathlib import Path
from typing import Any

Row = tuple[str, str, Any, str]


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "ratio" and isinstance(v, (int, float)):
        return f"{v * 100:.2f}%"
    if unit == "bytes" and isinstance(v, (int, float)):
        return f"{v / 2**20:.1f} MiB"
    if isinstance(v, float):
        return f"{v:.4g} {unit}".strip() if abs(v) < 1e5 else f"{v:.0f} {unit}".strip()
    return f"{v} {unit}".strip()


def rows(rep: dict[str, Any]) -> list[Row]:
    s = rep["slis"]
    out: list[Row] = []
    ps = s["pod_startup_latency"]
    for q in ("p50", "p90", "p99"):
        out.append((f"pod_startup_latency.{q}", f"Pod startup latency {q} (logs)", ps[q], "s"))
    if ps.get("metric"):
        out.append(("pod_startup_latency.metric.p99", "Pod startup latency p99 (kubelet metric)",
                    ps["metric"]["p99"], "s"))
    sch = s["scheduling"]
    out.append(("scheduling.throughput_logs", "Scheduling throughput, mean (logs)", sch["logs"]["value"], "pods/s"))
    if (sch.get("metrics") or {}).get("throughput"):
        out.append(("scheduling.throughput.peak", "Scheduling throughput, peak (metric)",
                    sch["metrics"]["throughput"]["peak"], "pods/s"))
    if (sch.get("metrics") or {}).get("latency"):
        for q in ("p50", "p99"):
            out.append((f"scheduling.latency.{q}", f"Scheduling latency {q} (metric)",
                        sch["metrics"]["latency"][q], "s"))
    api = s["api_call_latency"]
    if not api.get("available"):
        out.append(("api_call_latency", "API call latency p99", None, "s"))
    for verb, q in (api.get("by_verb") or {}).items():
        out.append((f"api_call_latency.{verb}.p99", f"API {verb} p99 (SLO {q['slo_s']:g} s)", q["p99"], "s"))
    for key, label in (("node_failure_detection", "Node failure detection"),
                       ("eviction_to_replacement", "Eviction to replacement"),
                       ("endpoint_propagation", "Endpoint propagation")):
        for q in ("p50", "max"):
            out.append((f"{key}.{q}", f"{label} {q}", s[key][q], "s"))
    if not s["service_availability"].get("available"):
        out.append(("service_availability", "Service availability", None, "ratio"))
    for name, a in (s["service_availability"].get("services") or {}).items():
        out.append((f"service_availability.{name}", f"Availability of {name}", a["availability"], "ratio"))
        if a.get("during_faults", {}).get("availability") is not None:
            out.append((f"service_availability.{name}.during_faults", f"Availability of {name} during faults",
                        a["during_faults"]["availability"], "ratio"))
    if not s["process_resources"].get("available"):
        out.append(("process_resources", "Process CPU and memory", None, ""))
    for p, r in (s["process_resources"].get("processes") or {}).items():
        out.append((f"process_resources.{p}.cpu_max_cores", f"{p} CPU max", r["cpu_max_cores"], "cores"))
        out.append((f"process_resources.{p}.rss_max_bytes", f"{p} RSS max", r["rss_max_bytes"], "bytes"))
    return out


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


def _sections(rep: dict[str, Any]) -> list[tuple[str, str, list[list[str]]]]:
    """(title, definition, detail rows) for each SLI with per-event detail."""
    s = rep["slis"]
    t0 = rep["source"]["start"]
    out = []
    det = s["node_failure_detection"]
    out.append(("Node failure detection", det["definition"],
                [[e["fault"], e["kind"], e["node"], _fmt(round(e["injected"] - t0, 3), "s"),
                  e["event"] or "not detected", _fmt(e["seconds"], "s")] for e in det["events"]]))
    ev = s["eviction_to_replacement"]
    out.append(("Eviction to replacement", ev["definition"],
                [[e["pod"], str(e["node"]), _fmt(round(e["evicted"] - t0, 3), "s"), e["replacement"] or "none",
                  _fmt(e["seconds"], "s")] for e in ev["events"]]))
    return out


HEADERS = {"Node failure detection": ["fault", "kind", "node", "injected at", "detected by", "time"],
           "Eviction to replacement": ["evicted pod", "node", "evicted at", "replacement", "time"]}


def _definitions(rep: dict[str, Any]) -> list[tuple[str, str]]:
    s = rep["slis"]
    out = [("Pod startup latency", s["pod_startup_latency"]["definition"])]
    if s["pod_startup_latency"].get("metric"):
        out.append(("Pod startup latency (metric)", s["pod_startup_latency"]["metric"]["definition"]))
    out.append(("Scheduling throughput (logs)", s["scheduling"]["logs"]["definition"]))
    for k, v in (s["scheduling"].get("metrics") or {}).items():
        out.append((f"Scheduling {k} (metric)", v["definition"]))
    for key, title in (("api_call_latency", "API call latency"), ("node_failure_detection", "Node failure detection"),
                       ("eviction_to_replacement", "Eviction to replacement"),
                       ("endpoint_propagation", "Endpoint propagation"),
                       ("service_availability", "Service availability"), ("process_resources", "Process resources")):
        d = s[key]["definition"]
        if s[key].get("available") is False:
            d += f" — {s[key]['reason']}"
        out.append((title, d))
    return out


def markdown(rep: dict[str, Any], images: dict[str, Path]) -> str:
    src = rep["source"]
    parts = [f"# kemu report: {src['name']}", "",
             f"{src['kind']} `{src['dir']}`, {src['start_rfc3339']} to {src['end_rfc3339']} "
             f"({src['duration_s']:.1f} s)" + (f", verdict **{src['verdict']}**" if src.get("verdict") else ""), ""]
    if rep["faults"]:
        parts += ["## Faults", "", _md_table(["id", "kind", "targets", "from", "to"], [
            [f["id"], f["kind"], ", ".join(f["targets"]), _fmt(f["from_s"], "s"),
             _fmt(f["to_s"], "s") + ("" if f["healed"] else " (not healed)")] for f in rep["faults"]]), ""]
    parts += ["## SLIs", "", _md_table(["SLI", "value"], [[label, _fmt(v, u)] for _k, label, v, u in rows(rep)]), ""]
    for title, _d, body in _sections(rep):
        if body:
            parts += [f"### {title}", "", _md_table(HEADERS[title], body), ""]
    for name, p in images.items():
        parts += [f"![{name}]({p.name})", ""]
    parts += ["## Definitions", ""] + [f"- **{t}**: {d}" for t, d in _definitions(rep)] + [""]
    return "\n".join(parts)


def _h(s: Any) -> str:
    return _html.escape(str(s))


def _html_table(header: list[str], body: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{_h(c)}</th>" for c in header) + "</tr>" +
            "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
       "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}"
       ".def{font-size:0.9em;color:#444}.pos{color:#b00}.neg{color:#070}")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_h(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _img(p: Path, alt: str) -> str:
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<img alt="{_h(alt)}" src="data:image/png;base64,{data}">'


def html(rep: dict[str, Any], images: dict[str, Path]) -> str:
    src = rep["source"]
    body = [f"<h1>kemu report: {_h(src['name'])}</h1>",
            f"<p>{_h(src['kind'])} <code>{_h(src['dir'])}</code>, {_h(src['start_rfc3339'])} to "
            f"{_h(src['end_rfc3339'])} ({src['duration_s']:.1f} s)"
            + (f", verdict <b>{_h(src['verdict'])}</b>" if src.get("verdict") else "") + "</p>"]
    if rep["faults"]:
        body += ["<h2>Faults</h2>", _html_table(["id", "kind", "targets", "from", "to"], [
            [f["id"], f["kind"], ", ".join(f["targets"]), _fmt(f["from_s"], "s"),
             _fmt(f["to_s"], "s") + ("" if f["healed"] else " (not healed)")] for f in rep["faults"]])]
    body += ["<h2>SLIs</h2>", _html_table(["SLI", "value"], [[label, _fmt(v, u)] for _k, label, v, u in rows(rep)])]
    for name, p in images.items():
        body.append(_img(p, name))
    for title, _d, rws in _sections(rep):
        if rws:
            body += [f"<h3>{_h(title)}</h3>", _html_table(HEADERS[title], rws)]
    body.append("<h2>Definitions</h2><ul class=\"def\">" +
                "".join(f"<li><b>{_h(t)}</b>: {_h(d)}</li>" for t, d in _definitions(rep)) + "</ul>")
    return _page(f"kemu report: {src['name']}", "".join(body))


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    ra = {k: (label, v, u) for k, label, v, u in rows(a)}
    rb = {k: (label, v, u) for k, label, v, u in rows(b)}
    keys = list(ra)
    prev = -1
    for k in rb:   # B's own rows go after the row that precedes them in B
        if k in keys:
            prev = keys.index(k)
        else:
            prev += 1
            keys.insert(prev, k)
    # a "not available" placeholder is noise where the other side has that section's figures
    keys = [k for k in keys if "." in k or not any(o.startswith(k + ".") for o in keys)]
    out = []
    for k in keys:
        label, va, unit = ra.get(k) or (rb[k][0], None, rb[k][2])
        vb = rb[k][1] if k in rb else None
        diff = round(vb - va, 6) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        out.append({"key": k, "label": label, "unit": unit, "a": va, "b": vb, "diff": diff})
    return out


def _diff(d: Any, unit: str) -> str:
    if d is None:
        return "n/a"
    return ("+" if d > 0 else "") + _fmt(d, unit)


def compare_markdown(a: dict[str, Any], b: dict[str, Any], table: list[dict[str, Any]]) -> str:
    na, nb = a["source"]["name"], b["source"]["name"]
    return "\n".join([f"# kemu report: {na} (A) vs {nb} (B)", "",
                      f"A: `{a['source']['dir']}`  ", f"B: `{b['source']['dir']}`", "",
                      _md_table(["SLI", "A", "B", "B - A"], [[r["label"], _fmt(r["a"], r["unit"]),
                                                             _fmt(r["b"], r["unit"]), _diff(r["diff"], r["unit"])]
                                                            for r in table]), ""])


def compare_html(a: dict[str, Any], b: dict[str, Any], table: list[dict[str, Any]]) -> str:
    na, nb = a["source"]["name"], b["source"]["name"]
    body = [f"<h1>kemu report: {_h(na)} (A) vs {_h(nb)} (B)</h1>",
            f"<p>A: <code>{_h(a['source']['dir'])}</code><br>B: <code>{_h(b['source']['dir'])}</code></p>",
            _html_table(["SLI", "A", "B", "B - A"], [[r["label"], _fmt(r["a"], r["unit"]), _fmt(r["b"], r["unit"]),
                                                      _diff(r["diff"], r["unit"])] for r in table])]
    return _page(f"kemu report: {na} vs {nb}", "".join(body))
