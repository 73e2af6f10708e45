"""``kemu bench scale``: issue 9's scale suite, one JSON document and a Markdown table.

Parts (``--parts``, comma-separated; all by default):

* ``limits``: the bus echo rate (msgpack decode and re-encode over one ZeroMQ
  ROUTER, as ``kemu bench apiserver`` measures it) and the bare fork-and-import
  time of N node-like children (``kemu bench lab-start``'s fork limit), both
  measured in this run, so every figure sits beside its limit;
* ``nodes``: 1,000 node processes, ``default`` profile: ``lab up`` to all
  Ready, USS per node process, and the whole lab's CPU over 20 s idle (the sum
  over the supervisor and every process under it);
* ``pod-startup``: on that same lab, pods created at 20/s, each deleted 200
  creates later (the churn); create to Running through a watch, p99;
* ``scheduler``: ``kemu bench scheduler`` in the SchedulingBasic shape (1,000
  Node objects, no node processes; 10,000 pods);
* ``node-failure``: 1,000 node processes, ``fast`` profile (its heartbeats
  stretched for the lab's size: ``Profile.for_lab``), a Deployment of 2,000
  pods; SIGKILL one node: Ready=Unknown vs. the lab's grace period + 1 s, and
  its pods replaced and Running vs. the eviction timeout + 2 s after the taint;
* ``hosts``: 10,000 nodes packed 100 per process, 100,000 pods Running, the
  apiserver's RSS; "not built" when ``Lab`` has no ``nodes_per_process``.

``--quick``: 200 node processes with 1,000 pods, and 2,000 nodes in hosts with
4,000 pods when hosts exist; it checks correctness only (all Ready, all pods
Running, no lost pods, no error-level log lines), no timing targets.

Before each timed part (not in quick mode) the suite waits, up to 60 s, for
the machine to be quiet (under 20% of all cores busy), and records the wait in
``quiet``: the previous part's teardown is not the next part's cost.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import psutil

from lab.bench import scale_parts as sp
from lab.bench.common import run_workers

PARTS = ("limits", "nodes", "pod-startup", "scheduler", "node-failure", "hosts")
FULL = {"nodes": 1000, "idle_s": 20.0, "churn_pods": 600, "churn_rate": 20.0, "sched_nodes": 1000,
        "sched_pods": 10_000, "nf_nodes": 1000, "nf_replicas": 2000, "host_nodes": 10_000,
        "per_process": 100, "host_pods": 100_000}
QUICK = {"nodes": 200, "idle_s": 0.0, "node_pods": 1000, "host_nodes": 2000, "per_process": 100,
         "host_pods": 4000}


def limits(fork_n: int, echo_seconds: float = 2.0) -> dict[str, Any]:
    from lab.bench.apiserver import _echo_rate
    from lab.bench.lab_start import fork_limit
    return {"echo_msgs_per_s": _echo_rate(echo_seconds, 128, True),
            "fork_and_import_children": fork_n,
            "fork_and_import_s": round(run_workers(1, lambda i: fork_limit(fork_n), (), 300)[0], 3)}


QUIET_CPU_PERCENT = 20.0   # of the whole machine (all cores)
QUIET_MAX_WAIT_S = 60.0


def quiet(max_wait: float = QUIET_MAX_WAIT_S, below: float = QUIET_CPU_PERCENT) -> dict[str, Any]:
    """Wait until the machine is quiet before a timed part: the previous part's
    teardown (a thousand processes exiting, their directories removed) must not
    be measured as the next part's cost. Returns how long it waited and the
    machine's CPU use (% of all cores) over the last half second."""
    t0 = time.monotonic()
    pct = psutil.cpu_percent(interval=0.5)
    while pct >= below and time.monotonic() - t0 < max_wait:
        pct = psutil.cpu_percent(interval=0.5)
    return {"waited_s": round(time.monotonic() - t0, 1), "cpu_percent": pct}


def _checks(part: dict[str, Any]) -> dict[str, bool]:
    out = {"all_ready": bool(part.get("all_ready")) and bool(part.get("all_ready_at_end", True)),
           "no_error_logs": part.get("log_errors", {}).get("count", 1) == 0,
           "no_exception": "error" not in part}
    if "pods_check" in part:   # every pod created within the bound, Running, none lost
        out["all_pods_running_none_lost"] = (bool(part["pods_check"]["ok"])
                                             and part["pods_check"]["expected"] == part.get("pods"))
    return out


def run(parts: tuple[str, ...] = PARTS, quick: bool = False) -> dict[str, Any]:
    cfg = QUICK if quick else FULL
    doc: dict[str, Any] = {"benchmark": "scale", "quick": quick, "cpus": os.cpu_count(), "parts": list(parts),
                           "quiet": {}}
    t_start = time.monotonic()
    if "limits" in parts and not quick:
        doc["limits"] = limits(cfg["nodes"])
    if "nodes" in parts:
        if not quick:
            doc["quiet"]["nodes"] = quiet()
        then = None
        if "pod-startup" in parts and not quick:
            then = lambda lab: sp.pod_startup_churn(lab, cfg["churn_pods"], cfg["churn_rate"])  # noqa: E731
        doc["nodes"] = sp.lab_scale(cfg["nodes"], "default", cfg["idle_s"], pods=cfg.get("node_pods", 0),
                                    then=then)
        if then is not None and "pod_startup" in doc["nodes"]:
            doc["pod_startup"] = doc["nodes"].pop("pod_startup")
    elif "pod-startup" in parts and not quick:
        lab_part = sp.lab_scale(cfg["nodes"], "default", 0.0,
                                then=lambda lab: sp.pod_startup_churn(lab, cfg["churn_pods"], cfg["churn_rate"]))
        doc["pod_startup"] = lab_part.pop("pod_startup", {"error": lab_part.get("error")})
    if "scheduler" in parts and not quick:
        from lab.bench.scheduler import run as sched
        doc["quiet"]["scheduler"] = quiet()
        doc["scheduler"] = sched(cfg["sched_nodes"], cfg["sched_pods"])
    if "node-failure" in parts and not quick:
        doc["quiet"]["node-failure"] = quiet()
        nf = sp.lab_scale(cfg["nf_nodes"], "fast", 0.0, then=lambda lab: sp.node_failure(lab, cfg["nf_replicas"]))
        doc["node_failure"] = {**nf.pop("node_failure", {}), "nodes": cfg["nf_nodes"], "profile": "fast",
                               "lab": nf}
    if "hosts" in parts:
        if not sp.hosts_supported():
            doc["hosts"] = {"status": "not built", "why": "Lab has no nodes_per_process (node hosts)"}
        else:
            if not quick:
                doc["quiet"]["hosts"] = quiet()
            doc["hosts"] = sp.lab_scale(cfg["host_nodes"], "default", 0.0, pods=cfg["host_pods"],
                                        pods_timeout=180.0 if not quick else 240.0,
                                        nodes_per_process=cfg["per_process"],
                                        ready_timeout=120.0)
    doc["checks"] = {k: _checks(doc[k]) for k in ("nodes", "hosts") if k in doc and "status" not in doc[k]}
    doc["checks_ok"] = all(all(v.values()) for v in doc["checks"].values())
    if not quick:
        doc["targets"] = targets(doc)
    doc["suite_seconds"] = round(time.monotonic() - t_start, 1)
    return doc


def _row(figure: str, value: Any, target: str, met: bool | None, limit: str, anchor: str) -> dict[str, Any]:
    return {"figure": figure, "value": value, "target": target, "met": met, "limit": limit, "anchor": anchor}


def _not_all(h: dict[str, Any]) -> str:
    at = h.get("pods_at_bound")
    if not at:
        return "not measured"
    pc = h.get("pods_check") or {}
    return (f"{at['running']:,} of {h.get('pods', 0):,} Running at {at['bound_s']:g} s "
            f"({at['created']:,} created by then)"
            + (f"; after it, {pc['unbound']:,} of the created not yet scheduled" if pc.get("unbound") else ""))


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure beside its target, its limit measured in the same run, and its anchor."""
    rows = []
    lim = doc.get("limits") or {}
    fork = f"fork+import of {lim['fork_and_import_children']}: {lim['fork_and_import_s']} s" if lim else "-"
    echo = f"bus echo: {lim['echo_msgs_per_s']:,} msg/s" if lim else "-"
    n = doc.get("nodes")
    if n:
        up = n.get("up_to_all_ready_s")
        rows.append(_row(f"{n['nodes']:,} node processes: lab up to all Ready (s)", up, "<= 30",
                         up is not None and up <= 30, fork, "KWOK: 5,000 nodes Ready in 60 s (4 cores, Go)"))
        uss = n.get("node_uss_mib") or {}
        rows.append(_row("USS per node process, mean / max (MiB)", f"{uss.get('mean')} / {uss.get('max')}", "<= 8",
                         uss.get("max") is not None and uss["max"] <= 8, "-",
                         "kubemark: 220 MB per hollow node"))
        idle = (n.get("idle_cpu") or {}).get("percent_of_one_core")
        rows.append(_row("whole lab idle CPU, default profile (% of one core)", idle, "< 50",
                         idle is not None and idle < 50, "-", "kubemark: 0.09 CPU per hollow node"))
    ps = doc.get("pod_startup")
    if ps and "latency_ms" in ps:
        p99 = ps["latency_ms"]["p99"]
        rows.append(_row(f"pod startup p99 at {doc.get('nodes', {}).get('nodes', 1000):,} nodes, "
                         f"{ps['create_rate']:g} pods/s churn (ms)", p99, "<= 1000",
                         ps["running"] == ps["pods"] and p99 <= 1000, echo, "Kubernetes SLO: p99 <= 5 s"))
    s = doc.get("scheduler")
    if s:
        rows.append(_row(f"scheduler, {s['nodes']:,} nodes / {s['pods']:,} pods (pods/s)", s["pods_per_second"],
                         ">= 1,000", s["pods_bound"] == s["pods"] and s["pods_per_second"] >= 1000, echo,
                         "scheduler_perf SchedulingBasic: >= 680 pods/s at 5,000 nodes"))
    nf = doc.get("node_failure")
    if nf and "grace_period_s" not in nf:
        why = nf.get("error") or (nf.get("lab") or {}).get("error") or "not measured"
        rows.append(_row(f"node failure at {nf['nodes']:,} nodes (fast)", f"not measured: {why}",
                         "grace + 1; eviction + 2", False, "-", "node-lifecycle controller"))
    if nf and "grace_period_s" in nf:
        u, g = nf["kill_to_ready_unknown_s"], nf["grace_period_s"]
        rows.append(_row(f"node failure at {nf['nodes']:,} nodes (fast): kill to Ready=Unknown (s)",
                         u if u is not None else f"not seen within {30 if nf.get('error') else 90} s",
                         f"<= {g + 1:g} (grace + 1)", u is not None and u <= g + 1, "-",
                         "node-lifecycle controller: grace period"))
        rp, e = nf["taint_to_replaced_s"], nf["eviction_timeout_s"]
        rows.append(_row("  taint to replacement pods Running (s)",
                         rp if rp is not None else (nf.get("error") or "not seen"), f"<= {e + 2:g} (eviction + 2)",
                         rp is not None and rp <= e + 2, "-", "taint-based eviction: tolerationSeconds"))
    h = doc.get("hosts")
    if h and h.get("status") == "not built":
        for f, t in (("10,000 nodes in node hosts: Ready (s)", "<= 60"),
                     ("100,000 pods Running (s)", "<= 180"), ("apiserver RSS (MiB)", "reported")):
            rows.append(_row(f, "not built", t, None, "-", "KWOK: 5,000 nodes / 10,000 pods in 60 s"))
    elif h:
        up, pr = h.get("up_to_all_ready_s"), h.get("pods_created_to_running_s")
        if up is None and h.get("ready_nodes") is None:
            up = f"not measured: {h.get('error', '')[:120]}"
        elif up is None:
            up = (f"{h['ready_nodes']:,} of {h['nodes']:,} Ready; the last of them "
                  f"{h.get('up_to_last_ready_node_s')} s after up")
        rows.append(_row(f"{h['nodes']:,} nodes in node hosts ({h['nodes_per_process']} per process): Ready (s)",
                         up, "<= 60", isinstance(up, float) and up <= 60, "-", "KWOK: 5,000 nodes Ready in 60 s"))
        uss = h.get("node_uss_mib") or {}
        rows.append(_row("  USS per node host / per node (MiB)", f"{uss.get('mean')} / {uss.get('per_node')}",
                         "reported", None, "-", "KWOK: about 1,000 nodes per controller process"))
        rows.append(_row(f"{h.get('pods', FULL['host_pods']):,} pods Running (s)", pr if pr is not None else _not_all(h),
                         "<= 180", pr is not None and pr <= 180,
                         echo, "KWOK: 10,000 pods Running in 60 s"))
        rows.append(_row("apiserver RSS (MiB)", h.get("apiserver_rss_mib"), "reported", None, "-",
                         "Kubernetes: 5,000 nodes, 150,000 pods"))
    return rows


def table(doc: dict[str, Any]) -> str:
    lines = ["| figure | measured | target | met | limit, same run | anchor |", "|---|---|---|---|---|---|"]
    for r in doc.get("targets") or targets(doc):
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['figure']} | {r['value']} | {r['target']} | {met} | {r['limit']} | {r['anchor']} |")
    return "\n".join(lines) + "\n"


def main(args: Any) -> int:
    parts = tuple(p.strip() for p in args.parts.split(",")) if args.parts else PARTS
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    doc = run(parts, args.quick)
    print(json.dumps(doc, indent=2))
    if args.table:
        with open(args.table, "w") as f:
            f.write(table(doc))
    return 0 if (not args.quick or doc["checks_ok"]) else 1
