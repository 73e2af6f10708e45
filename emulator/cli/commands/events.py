"""``kemu events``: list (and watch) Events, as ``kubectl events`` prints them.

Contract
--------
* ``events [-n NS | -A] [--for TYPE/NAME] [--types Normal,Warning] [-w]
  [--no-headers]``.
* Columns: ``LAST SEEN  TYPE  REASON  OBJECT  MESSAGE`` (``NAMESPACE``
  first with ``-A``). LAST SEEN is kubectl's ``getInterval``: the age of the
  last occurrence, with ``(xN over AGE)`` when the Event happened N > 1
  times (AGE: since the first). OBJECT is ``Kind/name``. Rows are sorted by
  their last occurrence (``series.lastObservedTime``, else ``lastTimestamp``,
  else ``eventTime``), oldest first.
* ``--for TYPE/NAME`` keeps the Events whose involvedObject is that object
  (a field selector on ``involvedObject.kind`` and ``involvedObject.name``);
  anything not in ``resource/name`` form is ``error: --for must be in
  resource/name form``, an unknown type names the flag too. ``--types`` takes
  Normal and/or Warning (any case; comma-separated or repeated); anything else
  is ``error: valid --types are Normal or Warning``.
* No Events: ``No events found in NS namespace.`` (``No events found.`` with
  ``-A``) on stderr, exit 0.
* ``-w`` prints the sorted list, then one row per added or updated Event
  (deletions, e.g. by the TTL, are not printed, as kubectl does), with the
  column widths of the first block, until interrupted (exit 0) or the hidden
  ``--watch-timeout`` passes.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.commands.get import _events as watch_events
from emulator.cli.common import (CLIError, Context, add_common_flags, parse_duration,
                                 resolve_kind, run_command)
from emulator.cli.printers import age, column_widths, format_rows, parse_time
from emulator.cli.tabwriter import TABLE

VALID_TYPES = ("Normal", "Warning")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("events", help="list events",
                              description="Display events: the most important information about "
                                          "events in a namespace, all namespaces, or for one object.")
    p.add_argument("-w", "--watch", action="store_true",
                   help="after listing the requested events, watch for more events")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="list events across all namespaces")
    p.add_argument("--for", dest="for_object", metavar="TYPE/NAME",
                   help="only events pertaining to this object (e.g. pod/web)")
    p.add_argument("--types", action="append", default=[], metavar="TYPES",
                   help="only events of these types: Normal, Warning (comma-separated)")
    p.add_argument("--no-headers", action="store_true", help="don't print headers")
    p.add_argument("--watch-timeout", type=parse_duration, default=None, help=argparse.SUPPRESS)
    add_common_flags(p)
    p.set_defaults(func=run)
    return p


def filter_types(values: list[str]) -> list[str]:
    """``--types`` values (comma-separated, repeatable) -> canonical type names."""
    out: list[str] = []
    for v in values:
        for t in v.split(","):
            t = t.strip()
            if not t:
                continue
            match = next((c for c in VALID_TYPES if c.lower() == t.lower()), None)
            if match is None:
                raise CLIError("valid --types are Normal or Warning")
            if match not in out:
                out.append(match)
    return out


def last_seen(ev: dict) -> float:
    """kubectl's ``eventTime`` for sorting: when the Event last happened."""
    series = ev.get("series") or {}
    for ts in (series.get("lastObservedTime"), ev.get("lastTimestamp"), ev.get("eventTime")):
        t = parse_time(ts)
        if t is not None:
            return t
    return 0.0


def interval(ev: dict, now: float) -> str:
    """kubectl events' ``getInterval``: ``5s`` or ``5s (x3 over 2m)``."""
    first = age(ev.get("eventTime"), now) if ev.get("eventTime") else age(ev.get("firstTimestamp"), now)
    series = ev.get("series")
    if series:
        return f"{age(series.get('lastObservedTime'), now)} (x{int(series.get('count') or 0)} over {first})"
    count = int(ev.get("count") or 0)
    if count > 1:
        return f"{age(ev.get('lastTimestamp'), now)} (x{count} over {first})"
    return first


def row(ev: dict, now: float, all_namespaces: bool) -> list[str]:
    inv = ev.get("involvedObject") or ev.get("regarding") or {}
    cells = [interval(ev, now), ev.get("type") or "", ev.get("reason") or "",
             f"{inv.get('kind') or ''}/{inv.get('name') or ''}",
             (ev.get("message") or ev.get("note") or "").strip().replace("\n", " ").replace("\t", " ")]
    return ([(ev.get("metadata") or {}).get("namespace") or ""] if all_namespaces else []) + cells


def header(all_namespaces: bool) -> list[str]:
    return (["NAMESPACE"] if all_namespaces else []) + ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def for_selector(ctx: Context, value: str) -> str:
    """``--for TYPE/NAME`` -> a field selector on the involvedObject."""
    kind_arg, slash, name = value.partition("/")
    if not slash or not kind_arg or not name:
        raise CLIError("--for must be in resource/name form")
    if "/" in name:
        raise CLIError("--for: arguments in resource/name form may not have more than one slash")
    try:
        rt = resolve_kind(ctx, kind_arg)
    except CLIError as e:
        raise CLIError(f"--for: {e}") from None
    return f"involvedObject.kind={rt.kind},involvedObject.name={name}"


class _Printer:
    """Rows keep the widths of the first block printed (kubectl's tabwriter)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.widths: list[int] | None = None
        self.header_done = bool(ctx.args.no_headers)

    def print(self, events: list[dict]) -> None:
        a = self.ctx.args
        now = time.time()
        rows = [row(ev, now, a.all_namespaces) for ev in events]
        if not self.header_done:
            rows.insert(0, header(a.all_namespaces))
            self.header_done = True
        if not rows:
            return
        if self.widths is None:
            self.widths = column_widths(rows, *TABLE)
        self.ctx.out.write(format_rows(rows, self.widths, TABLE[1]))
        self.ctx.out.flush()


def _events(ctx: Context) -> int | None:
    a = ctx.args
    types = filter_types(a.types)
    fs = for_selector(ctx, a.for_object) if a.for_object else None
    ns = None if a.all_namespaces else ctx.namespace
    listed = ctx.client.list_all("Event", ns, field_selector=fs)
    rv = (listed.get("metadata") or {}).get("resourceVersion")
    items = [e for e in listed["items"] if not types or e.get("type") in types]
    items.sort(key=last_seen)
    if not a.watch:
        if not items:
            ctx.err.write("No events found.\n" if a.all_namespaces else f"No events found in {ns} namespace.\n")
            return None
        _Printer(ctx).print(items)
        return None
    printer = _Printer(ctx)
    printer.print(items)
    w = ctx.client.watch("Event", namespace=ns, field_selector=fs, resource_version=rv or None)
    deadline = None if not a.watch_timeout else time.monotonic() + a.watch_timeout
    try:
        for ev in watch_events(w, deadline):
            etype = ev.get("type")
            if etype in ("BOOKMARK", "DELETED"):
                continue
            if etype == "ERROR":
                obj = ev.get("object") or {}
                raise APIError(obj.get("reason") or errors.EXPIRED, obj.get("message") or "watch failed")
            obj = ev.get("object")
            if isinstance(obj, dict) and (not types or obj.get("type") in types):
                printer.print([obj])
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            w.stop()
        except Exception:
            pass
    return 0


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return run_command(args, out, err, _events)
