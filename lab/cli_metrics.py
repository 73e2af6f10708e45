"""``kemu lab metrics [NAME] [--process P] [--since D] [-o json]``: query a lab's collected metrics.

Contract: reads ``<labdir>/metrics/`` through ``lab.metrics_store`` (no
apiserver needed, so a stopped lab's metrics can be read). ``NAME`` matches a
sample or a family (``apiserver_request_duration_seconds`` gives its
buckets, sum and count). Without ``--since``/``--until`` it prints the latest
scrape of each process; with them, every scrape in the window, in time
order. Text output: TIME PROCESS NAME LABELS VALUE; ``-o json`` prints one
JSON object per sample. Exit 1 with the reason when the lab or its metrics
are missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterator


def add_parser(lsub: Any, lab_name_type: Any) -> None:
    m = lsub.add_parser("metrics", help="the lab's collected metrics (latest, or over a window)")
    m.add_argument("metric", nargs="?", help="a metric name (a family's name gives all its samples)")
    m.add_argument("--name", type=lab_name_type, help="the lab (default: the current one)")
    m.add_argument("--process", help="one process (apiserver, scheduler, node-3, ...)")
    m.add_argument("--since", help="a duration (30s, 5m) or a time (RFC 3339)")
    m.add_argument("--until", help="a duration back from now or a time (RFC 3339)")
    m.add_argument("-o", "--output", choices=["json"])
    m.set_defaults(func=cmd_metrics)


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def _latest(metrics_dir: Any, metric: str | None, process: str | None) -> Iterator[tuple]:
    from lab.metrics_store import latest, name_matches
    for proc, (ts, samples) in sorted(latest(metrics_dir).items()):
        if process is not None and proc != process:
            continue
        for name, labels, value in samples:
            if metric is None or name_matches(metric, name):
                yield ts, proc, name, labels, float(value)


def cmd_metrics(args: argparse.Namespace) -> int:
    from lab.lab import Lab, LabError
    from lab.metrics_store import parse_time, read
    try:
        lab = Lab.attach(args.name)
        since = parse_time(args.since, "--since") if args.since else None
        until = parse_time(args.until, "--until") if args.until else None
    except (LabError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    metrics_dir = lab.layout.root / "metrics"
    if not metrics_dir.is_dir():
        print(f"error: no metrics in {metrics_dir}: the lab's metrics add-on has not collected any "
              "(is the lab up, with metrics on?)", file=sys.stderr)
        return 1
    rows = (read(metrics_dir, args.metric, args.process, since, until) if since or until
            else _latest(metrics_dir, args.metric, args.process))
    out = sys.stdout
    n = 0
    try:
        if args.output != "json":
            out.write("TIME\tPROCESS\tNAME\tVALUE\n")
        for ts, proc, name, labels, value in rows:
            n += 1
            if args.output == "json":
                out.write(json.dumps({"ts": ts, "process": proc, "name": name, "labels": labels,
                                      "value": value}) + "\n")
            else:
                out.write(f"{ts}\t{proc}\t{name}{_labels(labels)}\t{value:g}\n")
    except BrokenPipeError:
        return 0
    if n == 0:
        print("No samples found." + (f' (no metric "{args.metric}"?)' if args.metric else ""), file=sys.stderr)
    return 0
