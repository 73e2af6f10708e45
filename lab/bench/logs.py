"""``kemu bench logs``: filtering a large lab's log timeline, in time and memory.

Contract: generates ``--size`` bytes (default 1 GiB) of realistic JSON-lines
logs, as the lab's writers write them (``ts`` first), across ``--files``
process files (an apiserver, a scheduler, a controller-manager, DNS, the
supervisor and nodes) in a temporary directory (removed afterwards), then times
passes of ``kemu lab logs``' code (``lab.logs.raw_timeline`` and the output
formatting, to /dev/null), each in a fresh interpreter so that its peak RSS
(``VmHWM``, else ``getrusage``) is its own. Generation is not timed. Prints JSON: the data's
``bytes`` and ``lines``, and per pass ``seconds``, ``mb_per_s``,
``lines_per_s``, ``matches``, ``peak_rss_mb`` and ``baseline_rss_mb`` (after
imports, before reading). The files were just written, so reads are from the
page cache: this measures the filter, not the disk.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSES: list[dict[str, Any]] = [
    {"name": "node+level", "filter": {"node": "node-42", "level": "warning"}, "json": False},
    {"name": "grep", "filter": {"grep": "timed out|connection refused"}, "json": True},
    {"name": "pod", "filter": {"pod": "default/web-7f9c-123"}, "json": False},
    {"name": "all", "filter": {}, "json": True},
]

_KUBELET = [   # (weight, level, event, extra fields as a format string)
    (30, "info", "pod_sync", '"kind": "Pod", "namespace": "default", "name": "web-7f9c-{n}", "uid": "{uid}", '
                             '"phase": "Running", "duration_ms": {ms}'),
    (20, "debug", "probe_result", '"pod": "default/web-7f9c-{n}", "container": "web", "probe": "readiness", '
                                  '"result": "success"'),
    (15, "info", "lease_renewed", '"kind": "Lease", "namespace": "kube-node-lease", "name": "{node}"'),
    (12, "info", "proxy_sync", '"node_name": "{node}", "duration_ms": {ms}, "rules": 214, "services": 40, '
                               '"endpoints": 380, "changed": false'),
    (10, "info", "node_status_updated", '"kind": "Node", "name": "{node}", "conditions": {{"Ready": "True", '
                                        '"MemoryPressure": "False", "DiskPressure": "False"}}'),
    (5, "info", "pod_started", '"kind": "Pod", "namespace": "default", "name": "web-7f9c-{n}", "uid": "{uid}", '
                               '"startup_ms": {ms}'),
    (4, "warning", "container_exited", '"pod": "default/web-7f9c-{n}", "container": "web", "exit_code": 137, '
                                       '"reason": "OOMKilled"'),
    (3, "warning", "probe_failed", '"pod": "default/web-7f9c-{n}", "container": "web", "probe": "liveness", '
                                   '"error": "Get http://10.244.3.7:8080/healthz: timed out"'),
    (1, "error", "image_pull_failed", '"kind": "Pod", "namespace": "default", "name": "web-7f9c-{n}", '
                                      '"image": "nginx:1.27", "error": "dial tcp 127.0.0.1:5000: connection refused"'),
]
_CONTROL = [
    (60, "info", "request", '"verb": "update", "resource": "leases", "code": 200, "duration_ms": {ms}'),
    (20, "info", "watch_sent", '"kind": "Pod", "watchers": 97, "rev": {n}'),
    (10, "debug", "request", '"verb": "get", "resource": "nodes", "code": 200, "duration_ms": {ms}'),
    (7, "info", "pod_bound", '"kind": "Pod", "namespace": "default", "name": "web-7f9c-{n}", "nodeName": "{node}"'),
    (3, "warning", "request_slow", '"verb": "list", "resource": "pods", "code": 200, "duration_ms": {ms}0'),
]


def _processes(files: int) -> list[tuple[str, str, str | None]]:
    control = [("apiserver", "apiserver", None), ("scheduler", "scheduler", None),
               ("controller-manager", "controller-manager", None), ("dns", "dns", None),
               ("supervisor", "supervisor", None)][:max(1, files // 20)]
    nodes = [(f"node-{i}", "kubelet", f"node-{i}") for i in range(1, files - len(control) + 1)]
    return control + nodes


def generate(out: Path, size: int, files: int, seed: int = 1) -> tuple[int, int]:
    """Write about ``size`` bytes across ``files`` process logs; returns (bytes, lines)."""
    rnd = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    procs = _processes(files)
    per_file = size // len(procs)
    total_bytes = total_lines = 0
    for proc, component, node in procs:
        table = _KUBELET if component == "kubelet" else _CONTROL
        weights = [w for w, *_ in table]
        node_s = "null" if node is None else f'"{node}"'
        head = f'"lab": "bench", "component": "{component}", "node": {node_s}, "pid": {rnd.randint(1000, 99999)}'
        t_us = 10 * 3600 * 10**6 + rnd.randint(0, 10**6)
        written, buf, lines = 0, [], 0
        with open(out / f"{proc}.jsonl", "w") as f:
            while written < per_file:
                for _lv, level, event, extra in rnd.choices(table, weights, k=512):
                    t_us += rnd.randint(200, 60_000)
                    s, us = divmod(t_us, 10**6)
                    h, s = divmod(s, 3600)
                    m, s = divmod(s, 60)
                    n = rnd.randint(0, 999)
                    fields = extra.format(n=n, uid=f"{n:08x}-7f9c", ms=rnd.randint(1, 400),
                                          node=node or f"node-{n % 95 + 1}")
                    line = (f'{{"ts": "2026-11-26T{h:02d}:{m:02d}:{s:02d}.{us:06d}Z", "level": "{level}", '
                            f'{head}, "event": "{event}", {fields}}}\n')
                    buf.append(line)
                    written += len(line)
                    lines += 1
                f.write("".join(buf))
                buf.clear()
        total_bytes += written
        total_lines += lines
    return total_bytes, total_lines


def _rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` is per address space, so unlike ``ru_maxrss`` it does not
    carry over the parent's peak across fork and exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed pass, in this (fresh) process."""
    from lab.logs import Filter, format_record, raw_timeline
    baseline = _rss_mb()
    flt = Filter(**spec["filter"])
    n = 0
    t0 = time.perf_counter()
    with open(os.devnull, "w") as out:
        for _ts, raw, rec in raw_timeline(Path(spec["dir"]), flt):
            n += 1
            if spec["json"]:
                out.write(raw + "\n")
            else:
                out.write(format_record(rec if rec is not None else json.loads(raw)) + "\n")
    secs = time.perf_counter() - t0
    return {"seconds": round(secs, 3), "matches": n, "peak_rss_mb": round(_rss_mb(), 1),
            "baseline_rss_mb": round(baseline, 1)}


def run(size: int, files: int, dir: str | None = None) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="kemu-bench-logs-", dir=dir)
    try:
        logs = Path(tmp) / "logs"
        t0 = time.perf_counter()
        nbytes, nlines = generate(logs, size, files)
        gen_s = time.perf_counter() - t0
        passes = []
        for p in PASSES:
            spec = {"dir": str(logs), "filter": p["filter"], "json": p["json"]}
            r = subprocess.run([sys.executable, "-m", "lab.bench.logs", "--child", json.dumps(spec)],
                               capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise RuntimeError(f"pass {p['name']} failed: {r.stderr.strip()[-500:]}")
            res = json.loads(r.stdout)
            secs = max(res["seconds"], 1e-9)
            passes.append({"name": p["name"], "filter": p["filter"], "output": "json" if p["json"] else "text",
                           **res, "mb_per_s": round(nbytes / secs / 1e6, 1),
                           "lines_per_s": round(nlines / secs)})
        return {"benchmark": "logs", "bytes": nbytes, "lines": nlines, "files": len(_processes(files)),
                "generate_seconds": round(gen_s, 1), "passes": passes}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    from emulator.api.quantity import memory_bytes
    try:
        size = memory_bytes(args.size)
    except (ValueError, TypeError, ArithmeticError):
        print(f"error: --size: bad size {args.size!r}: use a quantity such as 1Gi or 50Mi", file=sys.stderr)
        return 2
    if size <= 0:
        print(f"error: --size: must be more than zero, got {args.size!r}", file=sys.stderr)
        return 2
    print(json.dumps(run(size, args.files, args.dir), indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit("usage: python -m lab.bench.logs --child SPEC (use 'kemu bench logs')")
