"""The lab's log timeline: every process's JSON lines merged by timestamp.

Contract: each process writes its own ``logs/<process>.jsonl`` in time order,
so the timeline is a k-way merge (``heapq.merge``) that streams: memory stays
bounded by the number of files, not their size. Within one process, events
keep the order they were written in (the merge is stable per file). Lines that
are not JSON are skipped and counted. ``follow`` keeps reading, picking up
files of processes that start later.
"""
from __future__ import annotations

import heapq
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, TextIO

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(spec: str, now: datetime | None = None) -> str:
    """``30s``/``5m``/``2h`` ago, or an RFC 3339 time → an RFC 3339 UTC string to compare with ``ts``."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(spec.strip())
    if m:
        t = now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    else:
        try:
            t = datetime.fromisoformat(spec.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since: {spec!r} is neither a duration (30s, 5m, 2h) nor a time "
                             "(2026-11-26T10:00:00Z)") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Filter:
    component: str | None = None
    node: str | None = None
    since: str | None = None

    def accepts(self, rec: dict[str, Any]) -> bool:
        if self.component and rec.get("component") != self.component:
            return False
        if self.node and rec.get("node") != self.node and rec.get("nodeName") != self.node:
            return False
        if self.since and str(rec.get("ts", "")) < self.since:
            return False
        return True


def _records(path: Path, flt: Filter) -> Iterator[tuple[str, int, dict[str, Any], str]]:
    with open(path, errors="replace") as f:
        for n, line in enumerate(f):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and flt.accepts(rec):
                yield str(rec.get("ts", "")), n, rec, line.rstrip("\n")


def timeline(logs_dir: Path, flt: Filter | None = None) -> Iterator[tuple[dict[str, Any], str]]:
    """Every record, merged by ``ts``; yields (record, raw line)."""
    flt = flt or Filter()
    files = sorted(logs_dir.glob("*.jsonl"))
    merged = heapq.merge(*[((ts, i, n, rec, raw) for ts, n, rec, raw in _records(f, flt))
                           for i, f in enumerate(files)], key=lambda t: (t[0], t[1], t[2]))
    for _ts, _i, _n, rec, raw in merged:
        yield rec, raw


_FIXED = ("ts", "level", "lab", "component", "node", "pid", "event")


def format_record(rec: dict[str, Any], color: bool = False) -> str:
    ts = str(rec.get("ts", ""))[11:26]
    who = rec.get("node") or rec.get("component") or "?"   # the process that wrote it
    level = str(rec.get("level", "")).upper()[:4]
    rest = " ".join(f"{k}={v}" for k, v in rec.items() if k not in _FIXED and v is not None)
    line = f"{ts}  {who:<20} {level:<4} {rec.get('event', '')}"
    if rest:
        line += "  " + rest
    if color and level in ("WARN", "ERRO"):
        line = f"\x1b[{'33' if level == 'WARN' else '31'}m{line}\x1b[0m"
    return line


def follow(logs_dir: Path, flt: Filter, out: TextIO, as_json: bool, stop_after: float | None = None) -> None:
    """Print new lines from every file as they are written (``-f``), including new files."""
    offsets: dict[Path, int] = {}
    for f in logs_dir.glob("*.jsonl"):
        offsets[f] = f.stat().st_size
    end = None if stop_after is None else time.monotonic() + stop_after
    while end is None or time.monotonic() < end:
        batch: list[tuple[str, dict[str, Any], str]] = []
        for f in sorted(logs_dir.glob("*.jsonl")):
            pos = offsets.get(f, 0)
            size = f.stat().st_size
            if size <= pos:
                continue
            with open(f, errors="replace") as fh:
                fh.seek(pos)
                chunk = fh.read(size - pos)
            keep = chunk.rfind("\n") + 1
            offsets[f] = pos + keep
            for line in chunk[:keep].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and flt.accepts(rec):
                    batch.append((str(rec.get("ts", "")), rec, line))
        for _ts, rec, line in sorted(batch, key=lambda t: t[0]):
            out.write((line if as_json else format_record(rec, out.isatty())) + "\n")
        out.flush()
        time.sleep(0.2)
