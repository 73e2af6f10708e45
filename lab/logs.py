"""The lab's log timeline: every process's JSON lines merged by timestamp.

Contract: each process writes its own ``logs/<process>.jsonl`` in time order
(rotated into ``<process>.jsonl.1``, ``.2``, ...; higher is older), so the
timeline is a k-way merge (``heapq.merge``) that streams: memory stays bounded
by the number of processes, not the logs' size. Within one process, records
keep the order they were written in; a process's rotated files are read
oldest first, then its current file. Lines that are not JSON are skipped.
``timeline(logs_dir, Filter(...))`` yields ``(record, raw line)``;
``raw_timeline`` (``lab.logs_scan``) yields ``(ts, raw line, record or
None)`` and parses a line only when a filter needs its fields. ``follow``
keeps printing, across all files: appended lines, rotated files and the files
of processes that start later. The filter and its flags are in
``lab.logs_filter``; the scanner in ``lab.logs_scan``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from lab.logs_filter import LEVELS, Filter, fault_window, level_of, parse_since
from lab.logs_scan import Follower, Positions, process_files, raw_timeline

__all__ = ["Filter", "Follower", "LEVELS", "fault_window", "follow", "format_record", "parse_since",
           "process_files", "raw_timeline", "timeline", "use_color"]


def timeline(logs_dir: Path, flt: Filter | None = None,
             positions: Positions | None = None) -> Iterator[tuple[dict[str, Any], str]]:
    """Every matching record, merged by ``ts``; yields (record, raw line)."""
    for _ts, raw, rec in raw_timeline(Path(logs_dir), flt, positions):
        if rec is None:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
        yield rec, raw


_FIXED = ("ts", "level", "lab", "component", "node", "pid", "event")
_LEVEL_TAG = {10: "DEBUG", 20: "INFO", 30: "WARN", 40: "ERROR", 50: "CRIT"}
_LEVEL_SGR = {10: "90", 20: "32", 30: "33", 40: "31", 50: "1;31"}


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v if v and not any(c in v for c in ' ="\n\t') else json.dumps(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR")


def format_record(rec: dict[str, Any], color: bool = False) -> str:
    """``HH:MM:SS.ffffff  WHO  LEVEL  EVENT  key=value ...``, aligned; coloured by level if asked."""
    ts = str(rec.get("ts", ""))[11:26]
    who = str(rec.get("node") or rec.get("component") or "?")   # the process that wrote it
    lv = level_of(rec)
    tag = _LEVEL_TAG.get(lv, str(rec.get("level", "")).upper()[:5])
    event = str(rec.get("event", ""))
    rest = " ".join(f"{k}={_value(v)}" for k, v in rec.items() if k not in _FIXED and v is not None)
    if color:
        sgr = _LEVEL_SGR.get(lv, "0")
        tag_s = f"\x1b[{sgr}m{tag:<5}\x1b[0m"
        event_s = f"\x1b[1m{event:<28}\x1b[0m" if lv >= LEVELS["warning"] else f"{event:<28}"
    else:
        tag_s, event_s = f"{tag:<5}", f"{event:<28}"
    line = f"{ts:<15}  {who:<20} {tag_s} {event_s}"
    if rest:
        line += " " + rest
    else:
        line = line.rstrip()
    if color and lv == LEVELS["debug"]:
        line = f"\x1b[2m{line}\x1b[0m"
    return line


def _emit(out: TextIO, raw: str, rec: dict[str, Any] | None, as_json: bool, color: bool) -> None:
    if as_json:
        out.write(raw + "\n")
        return
    if rec is None:
        try:
            rec = json.loads(raw)
        except ValueError:
            return
    out.write(format_record(rec, color) + "\n")


def print_timeline(logs_dir: Path, flt: Filter, out: TextIO, as_json: bool, color: bool,
                   positions: Positions | None = None) -> int:
    """Print the timeline; returns the number of lines printed."""
    n = 0
    for _ts, raw, rec in raw_timeline(Path(logs_dir), flt, positions):
        _emit(out, raw, rec, as_json, color)
        n += 1
    out.flush()
    return n


def follow(logs_dir: Path, flt: Filter, out: TextIO, as_json: bool, stop_after: float | None = None,
           positions: Positions | None = None, color: bool | None = None, interval: float = 0.2,
           stop: Callable[[], bool] | None = None) -> None:
    """Print new lines from every file as they are written (``-f``), including new and rotated files.

    Runs until interrupted, ``stop_after`` seconds, or ``stop()`` is true."""
    color = use_color(out) if color is None else color
    f = Follower(Path(logs_dir), flt, positions)
    end = None if stop_after is None else time.monotonic() + stop_after
    while True:
        for _ts, raw, rec in f.poll():
            _emit(out, raw, rec, as_json, color)
        out.flush()
        if (end is not None and time.monotonic() >= end) or (stop is not None and stop()):
            return
        time.sleep(interval)   # the poll period of -f, as tail -f has one
