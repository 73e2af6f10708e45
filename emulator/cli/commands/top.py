"""``kemu top nodes|pods|processes``: resource usage, as ``kubectl top`` prints it.

Contract: the figures come from each node's usage summary (the kubelet's
Summary API figures, ``<lab>/nodes/<node>/var/lib/kemu/stats-summary.json``,
rewritten by its housekeeping), read from the lab named by ``--lab-dir`` or
the current lab; the Nodes and their allocatable come from the apiserver.
``top nodes``: NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%) (percent of
allocatable; ``<unknown>`` for a node without figures). ``top pods`` (``-n``,
``-A``, ``-l``, ``--containers``): NAME CPU(cores) MEMORY(bytes). CPU prints
as millicores (``250m``), memory as ``Mi``, as kubectl does. No figures at all
gives kubectl's ``error: metrics not available yet`` and exit 1.
``top processes`` needs no apiserver: every process of the lab
(``run/state.json``, plus the supervisor) with NAME ROLE PID CPU(cores)
CPU(%) MEMORY(bytes) (RSS), measured with psutil over one short window;
a stopped lab gives ``error: the lab is not running``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from emulator.api.quantity import cpu_millis, memory_bytes
from emulator.api.selectors import parse_label_selector
from emulator.cli.commands._node_files import lab_dir
from emulator.cli.common import CLIError, Context, add_common_flags, run_command
from emulator.cli.tabwriter import TABLE, align

SUMMARY_FILE = Path("var") / "lib" / "kemu" / "stats-summary.json"   # node/kubelet/stats.py


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("top", help="show CPU and memory usage of nodes or pods",
                              description="Display resource (CPU/memory) usage of nodes or pods.")
    p.add_argument("what", choices=["nodes", "node", "no", "pods", "pod", "po", "processes", "process", "proc"],
                   help="nodes, pods or processes (the lab's own)")
    p.add_argument("name", nargs="?", help="one node or pod")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="label selector (pods)")
    p.add_argument("--containers", action="store_true", help="pods: one line per container")
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--lab-dir", help="the lab directory (default: the current lab)")
    add_common_flags(p)
    p.set_defaults(func=run)
    return p


def _cores(nano: int) -> str:
    return f"{nano // 1_000_000}m"


def _mib(b: int) -> str:
    return f"{b // (1024 * 1024)}Mi"


def _summaries(lab: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((lab / "nodes").glob(f"*/{SUMMARY_FILE}")):
        try:
            s = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out[s.get("node", {}).get("nodeName") or f.parents[3].name] = s
    return out


def _table(ctx: Context, rows: list[list[str]]) -> None:
    if ctx.args.no_headers:
        rows = rows[1:]
    ctx.out.write(align("".join("\t".join(r) + "\n" for r in rows), *TABLE))


def _top(ctx: Context) -> int | None:
    a = ctx.args
    lab = lab_dir(a.lab_dir)
    if lab is None:
        raise CLIError("no current lab: start one with 'kemu lab up', or pass --lab-dir")
    if a.what in ("processes", "process", "proc"):
        _top_processes(ctx, lab)
        return None
    summaries = _summaries(lab)
    if not summaries:
        raise CLIError("metrics not available yet")
    if a.what in ("nodes", "node", "no"):
        nodes = [ctx.client.get("Node", a.name)] if a.name else ctx.client.list("Node")["items"]
        rows = [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]]
        for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = n["metadata"]["name"]
            s = summaries.get(name)
            if s is None:
                rows.append([name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"])
                continue
            alloc = (n.get("status") or {}).get("allocatable") or {}
            cpu = s["node"]["cpu"]["usageNanoCores"]
            mem = s["node"]["memory"]["workingSetBytes"]
            cap_cpu = cpu_millis(alloc.get("cpu", "0")) * 1_000_000 or 1
            cap_mem = memory_bytes(alloc.get("memory", "0")) or 1
            rows.append([name, _cores(cpu), f"{cpu * 100 // cap_cpu}%", _mib(mem), f"{mem * 100 // cap_mem}%"])
        _table(ctx, rows)
        return None
    ns = None if a.all_namespaces else ctx.namespace
    sel = parse_label_selector(a.selector) if a.selector else None
    labels: set[tuple[str, str]] = set()
    if sel is not None:
        pods = ctx.client.list("Pod", ns, label_selector=a.selector)["items"]
        labels = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
    entries = []
    for s in summaries.values():
        for p in s.get("pods") or []:
            ref = p["podRef"]
            if ns is not None and ref["namespace"] != ns:
                continue
            if a.name and ref["name"] != a.name:
                continue
            if sel is not None and (ref["namespace"], ref["name"]) not in labels:
                continue
            entries.append(p)
    if not entries:
        if a.name:
            raise CLIError(f'pod "{a.name}" not found, or its metrics are not available yet')
        ctx.err.write(f"No resources found in {ns} namespace.\n" if ns else "No resources found\n")
        return None
    head = (["NAMESPACE"] if a.all_namespaces else []) + (["POD"] if a.containers else []) + \
        ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = [head]
    for p in sorted(entries, key=lambda p: (p["podRef"]["namespace"], p["podRef"]["name"])):
        prefix = [p["podRef"]["namespace"]] if a.all_namespaces else []
        if a.containers:
            for c in sorted(p["containers"], key=lambda c: c["name"]):
                rows.append(prefix + [p["podRef"]["name"], c["name"], _cores(c["cpu"]["usageNanoCores"]),
                                      _mib(c["memory"]["workingSetBytes"])])
        else:
            rows.append(prefix + [p["podRef"]["name"], _cores(p["cpu"]["usageNanoCores"]),
                                  _mib(p["memory"]["workingSetBytes"])])
    _table(ctx, rows)
    return None


def _lab_processes(lab: Path) -> list[dict]:
    try:
        state = json.loads((lab / "run" / "state.json").read_text())
        sup = int((lab / "run" / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return []
    procs = [{"name": "supervisor", "role": "supervisor", "pid": sup}]
    return procs + [p for p in state.get("processes") or () if p.get("state") in ("running", "paused") and p.get("pid")]


def _top_processes(ctx: Context, lab: Path) -> None:
    import psutil
    a = ctx.args
    procs = [p for p in _lab_processes(lab) if not a.name or p["name"] == a.name]
    if not procs:
        raise CLIError(f'no process "{a.name}" in the lab' if a.name else "the lab is not running")
    handles = {}
    for p in procs:
        try:
            handles[p["name"]] = h = psutil.Process(p["pid"])
            h.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.25)   # one sampling window for every process's CPU%
    rows = [["NAME", "ROLE", "PID", "CPU(cores)", "CPU(%)", "MEMORY(bytes)"]]
    for p in procs:
        h = handles.get(p["name"])
        try:
            cpu, rss = h.cpu_percent(None), h.memory_info().rss
        except (psutil.Error, AttributeError):
            rows.append([p["name"], p["role"], str(p["pid"]), "<unknown>", "<unknown>", "<unknown>"])
            continue
        rows.append([p["name"], p["role"], str(p["pid"]), f"{int(cpu * 10)}m", f"{cpu:.0f}%", _mib(rss)])
    _table(ctx, rows)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return run_command(args, out, err, _top)
