"""Reading a lab's collected metrics: ``<labdir>/metrics/<process>.jsonl``.

Contract
--------
* A file holds one JSON line per scrape: ``{"ts": RFC3339 (µs, Z),
  "process": name, "samples": [[name, {labels}, value], ...]}`` (written by
  ``lab.metrics_addon``).
* ``read(metrics_dir, name=None, process=None, since=None, until=None)``
  yields ``(ts, process, name, labels, value)``, every process's scrapes
  merged in timestamp order, streaming (one line per file in memory). A
  malformed line, such as a partial last line still being written, is
  skipped. ``name`` matches a sample's name exactly, or a family's: a
  histogram's name matches its ``_bucket``, ``_sum`` and ``_count`` samples,
  a counter's its ``_total``. ``since``/``until`` (inclusive) are epoch
  seconds, datetimes or RFC3339 strings.
* ``latest(metrics_dir)`` is the last complete scrape of each process:
  ``{process: (ts, samples)}``, read from the end of each file.
* Histogram buckets are trimmed when written (``lab.metrics_addon``): only
  those from the last empty one to the first full one, plus ``+Inf``. Counts
  are cumulative, so a missing ``le`` holds the count of the next lower one
  present (0 below the first). ``histogram_quantile(q, buckets)`` is
  Prometheus' estimate from ``[(le, cumulative count), ...]``, exact on
  trimmed buckets.
* ``parse_time(text)``: a duration back from now (``30s``, ``5m``) or an
  RFC3339 time, as epoch seconds; ValueError names the flag and the forms.
"""
from __future__ import annotations

import heapq
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")

Sample = tuple[str, str, str, dict, float]


def to_ts(t: Any) -> str:
    """``t`` (epoch seconds, datetime or RFC3339 string) in the files' format, for comparing."""
    if isinstance(t, str):
        t = parse_rfc3339(t)
    if isinstance(t, datetime):
        t = t.timestamp()
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(s: str) -> float:
    try:
        d = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f'invalid time "{s}": use RFC 3339, e.g. 2026-01-02T15:04:05Z') from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def parse_time(text: str, flag: str = "--since") -> float:
    from lab.chaos.model import parse_duration
    try:
        return time.time() - parse_duration(text, flag)
    except ValueError:
        pass
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ValueError(f'{flag}: invalid value "{text}": give a duration (30s, 5m, 1h) or an '
                         "RFC 3339 time (2026-01-02T15:04:05Z)") from None


def histogram_quantile(q: float, buckets: list[tuple[float | str, float]]) -> float | None:
    """Prometheus' histogram_quantile over ``[(le, cumulative count), ...]``; None if empty."""
    bs = sorted((float(le), float(n)) for le, n in buckets)
    if not bs or bs[-1][1] <= 0:
        return None
    rank = q * bs[-1][1]
    lower_le, lower_n = 0.0, 0.0
    for le, n in bs:
        if n >= rank:
            if le == float("inf"):
                return lower_le
            if n == lower_n:
                return le
            return lower_le + (le - lower_le) * (rank - lower_n) / (n - lower_n)
        lower_le, lower_n = le, n
    return bs[-1][0]


def name_matches(want: str, sample: str) -> bool:
    return sample == want or (sample.startswith(want) and sample[len(want):] in SUFFIXES)


def _files(metrics_dir: Path, process: str | None) -> list[Path]:
    if process is not None:
        f = metrics_dir / f"{process}.jsonl"
        return [f] if f.exists() else []
    return sorted(metrics_dir.glob("*.jsonl"))


def _scrapes(path: Path, since: str | None, until: str | None) -> Iterator[tuple[str, str, list]]:
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return   # a line still being written
            try:
                rec = json.loads(raw)
                ts, proc, samples = rec["ts"], rec["process"], rec["samples"]
            except (ValueError, KeyError, TypeError):
                continue
            if since is not None and ts < since:
                continue
            if until is not None and ts > until:
                return   # a file is in time order
            yield ts, proc, samples


def read(metrics_dir: str | Path, name: str | None = None, process: str | None = None,
         since: Any = None, until: Any = None) -> Iterator[Sample]:
    lo = to_ts(since) if since is not None else None
    hi = to_ts(until) if until is not None else None
    streams = [_scrapes(p, lo, hi) for p in _files(Path(metrics_dir), process)]
    for ts, proc, samples in heapq.merge(*streams, key=lambda s: s[0]):
        for s in samples:
            try:
                sname, labels, value = s
            except (TypeError, ValueError):
                continue
            if name is None or name_matches(name, sname):
                yield ts, proc, sname, labels, float(value)


def _last_line(path: Path, block: int = 1 << 16) -> bytes | None:
    """The last complete line of ``path`` (ending in a newline)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            buf = b""
            pos = end
            while pos > 0:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue
                head = buf[:cut]
                start = head.rfind(b"\n")
                if start >= 0 or pos == 0:
                    return head[start + 1:]
            return None
    except OSError:
        return None


def latest(metrics_dir: str | Path) -> dict[str, tuple[str, list]]:
    out = {}
    for path in _files(Path(metrics_dir), None):
        raw = _last_line(path)
        if not raw:
            continue
        try:
            rec = json.loads(raw)
            out[rec["process"]] = (rec["ts"], rec["samples"])
        except (ValueError, KeyError, TypeError):
            continue
    return out
