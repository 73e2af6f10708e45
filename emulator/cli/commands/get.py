"""``kemu get``: list or fetch objects and print them like ``kubectl get``.

Contract
--------
* ``get TYPE[,TYPE...] [NAME...]`` or ``get TYPE/NAME...``; ``-n NS`` or
  ``-A``; ``-l``/``--field-selector`` for lists; lists are fetched in chunks of
  ``--chunk-size`` (default 500, 0 = one request) following ``continue``.
* Output: a table per kind (``-o wide`` adds columns, ``-A`` a NAMESPACE
  column, several kinds prefix names with ``kind/``), or ``-o json|yaml``
  (a single named object as itself, anything else as a ``List``), or
  ``-o name``. Nothing to show: ``No resources found in NS namespace.`` on
  stderr, exit 0. A missing named object: ``Error from server (NotFound): ...``
  on stderr, the others are still printed, exit 1.
* ``-w`` prints the current state then one row (or JSON line with ``-o json``)
  per watch event until interrupted (exit 0) or ``--watch-timeout`` passes.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Iterator, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.common import (CLIError, Context, add_common_flags, is_connection_error,
                                 label, namespace_for, parse_duration, print_objects, ref, report,
                                 run_command, split_type_name_args, with_type_meta)
from emulator.cli.printers import (column_widths, dump_yaml, format_rows, render_rows,
                                   render_table)
from emulator.cli.tabwriter import TABLE

OUTPUTS = ("wide", "json", "yaml", "name")


def non_negative_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {v!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "get", help="display one or many resources",
        description="Display one or many resources, as kubectl get does.")
    p.add_argument("resources", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    add_common_flags(p)
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="list across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--field-selector", help="field selector, e.g. spec.nodeName=node-1")
    p.add_argument("-o", "--output", choices=OUTPUTS, help="output format")
    p.add_argument("-w", "--watch", action="store_true",
                   help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true", help="watch without listing first")
    p.add_argument("--output-watch-events", action="store_true",
                   help="show the event type (ADDED, MODIFIED, DELETED) when watching")
    p.add_argument("--chunk-size", type=non_negative_int, default=500, metavar="N",
                   help="fetch lists in chunks of N (0 disables chunking)")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="omit table headers")
    p.add_argument("--ignore-not-found", action="store_true",
                   help="do not fail when a named object does not exist")
    p.add_argument("--watch-timeout", type=parse_duration, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _get)


def list_all(ctx: Context, rt: Any, namespace: str | None, label_selector: str | None,
             field_selector: str | None, chunk_size: int) -> tuple[list[dict], str]:
    """Every matching object (following ``continue``) and the list's resourceVersion."""
    items: list[dict] = []
    cont: str | None = None
    rv = ""
    while True:
        res = ctx.client.list(rt.kind, namespace=namespace, label_selector=label_selector,
                              field_selector=field_selector, limit=chunk_size or None,
                              continue_=cont)
        items.extend(res.get("items") or [])
        md = res.get("metadata") or {}
        rv = rv or str(md.get("resourceVersion") or "")
        cont = md.get("continue") or None
        if not cont:
            return items, rv


def _check_args(ctx: Context, groups: list[tuple[Any, list[str]]]) -> bool:
    a = ctx.args
    has_names = any(names for _, names in groups)
    if has_names and (a.selector or a.field_selector):
        raise CLIError("selectors cannot be used when passing resource/name arguments")
    if has_names and a.all_namespaces:
        raise CLIError("a resource cannot be retrieved by name across all namespaces")
    return has_names


def _get(ctx: Context) -> int | None:
    a = ctx.args
    if not a.resources:
        known = ", ".join(sorted(rt.plural for rt in ctx.registry.all()))
        raise CLIError(f"you must specify the type of resource to get; known types: {known}")
    groups = split_type_name_args(ctx, a.resources, "get")
    has_names = _check_args(ctx, groups)
    if a.watch or a.watch_only:
        if len(groups) != 1:
            raise CLIError("you may only watch one resource type at a time")
        if len(groups[0][1]) > 1:
            raise CLIError("you may only watch a single named object")
        return _watch(ctx, *groups[0])

    found: list[tuple[Any, list[dict]]] = []
    for rt, names in groups:
        ns = namespace_for(ctx, rt, a.all_namespaces)
        if names:
            objs = []
            for n in names:
                try:
                    objs.append(ctx.client.get(rt.kind, n, namespace=ns))
                except APIError as e:
                    if is_connection_error(ctx, e):
                        raise
                    if not (e.code == errors.NOT_FOUND and a.ignore_not_found):
                        report(ctx, e)
        else:
            objs, _ = list_all(ctx, rt, ns, a.selector, a.field_selector, a.chunk_size)
        found.append((rt, [with_type_meta(o, rt) for o in objs]))

    total = sum(len(objs) for _, objs in found)
    if a.output in ("json", "yaml"):
        single = has_names and len(groups) == 1 and len(groups[0][1]) == 1
        if single and total == 0:
            return None
        kinds = {o["kind"]: rt for rt, objs in found for o in objs}
        print_objects(ctx, [o for _, objs in found for o in objs], a.output,
                      lambda o: kinds[o["kind"]], single=single)
        return None
    if total == 0:
        if not ctx.failed and not a.ignore_not_found:
            _no_resources(ctx, [rt for rt, _ in groups])
        return None
    if a.output == "name":
        for rt, objs in found:
            for o in objs:
                ctx.out.write(ref(rt, o["metadata"]["name"]) + "\n")
        ctx.out.flush()
        return None
    first = True
    for rt, objs in found:
        if not objs:
            continue
        if not first:
            ctx.out.write("\n")
        first = False
        ctx.out.write(_table(ctx, rt, objs, with_kind=len(groups) > 1))
    ctx.out.flush()
    return None


def _no_resources(ctx: Context, rts: list[Any]) -> None:
    if not ctx.args.all_namespaces and all(rt.namespaced for rt in rts):
        ctx.err.write(f"No resources found in {ctx.namespace} namespace.\n")
    else:
        ctx.err.write("No resources found\n")
    ctx.err.flush()


def _table(ctx: Context, rt: Any, objs: list[dict], with_kind: bool = False) -> str:
    a = ctx.args
    return render_table(rt.kind, objs, wide=a.output == "wide",
                        with_namespace=bool(a.all_namespaces and rt.namespaced),
                        with_kind=label(rt) if with_kind else None,
                        show_labels=a.show_labels, headers=not a.no_headers)


class _WatchPrinter:
    """Prints watched objects; table rows keep the widths of the first block
    printed, as kubectl's tabwriter (``RememberWidths``) does."""

    def __init__(self, ctx: Context, rt: Any) -> None:
        self.ctx, self.rt = ctx, rt
        self.widths: list[int] | None = None
        self.header_done = ctx.args.no_headers

    def print(self, objs: list[dict], event: str) -> None:
        a, out = self.ctx.args, self.ctx.out
        for obj in objs:
            obj = with_type_meta(obj, self.rt)
            doc = {"type": event, "object": obj} if a.output_watch_events else obj
            if a.output == "json":
                out.write(json.dumps(doc, sort_keys=True) + "\n")
            elif a.output == "yaml":
                out.write("---\n" + dump_yaml(doc))
            elif a.output == "name":
                out.write(ref(self.rt, obj["metadata"]["name"]) + "\n")
        if a.output in (None, "wide") and objs:
            rows = render_rows(self.rt.kind, objs, wide=a.output == "wide",
                               with_namespace=bool(a.all_namespaces and self.rt.namespaced),
                               show_labels=a.show_labels, headers=not self.header_done)
            if a.output_watch_events:
                rows = [(["EVENT"] if i == 0 and not self.header_done else [event]) + r
                        for i, r in enumerate(rows)]
            self.header_done = True
            if self.widths is None:
                self.widths = column_widths(rows, *TABLE)
            out.write(format_rows(rows, self.widths, TABLE[1]))
        out.flush()


def _events(w: Any, deadline: float | None) -> Iterator[dict]:
    """Events from a Watch until it closes or ``deadline`` (monotonic) passes."""
    if not hasattr(w, "next"):
        yield from w
        return
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        ev = w.next(remaining)
        if ev is None:
            if getattr(w, "closed", False):
                return
            continue
        yield ev


def _watch(ctx: Context, rt: Any, names: list[str]) -> int:
    a = ctx.args
    ns = namespace_for(ctx, rt, a.all_namespaces)
    fs = a.field_selector
    if names:
        fs = f"metadata.name={names[0]}" + (f",{fs}" if fs else "")
    printer = _WatchPrinter(ctx, rt)
    rv: str | None = None
    if not a.watch_only:
        if names:
            try:
                obj = ctx.client.get(rt.kind, names[0], namespace=ns)
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
                report(ctx, e)
                return 1
            objs, rv = [obj], str((obj.get("metadata") or {}).get("resourceVersion") or "")
        else:
            objs, rv = list_all(ctx, rt, ns, a.selector, fs, a.chunk_size)
        printer.print(objs, "ADDED")
    w = ctx.client.watch(rt.kind, namespace=ns, label_selector=a.selector, field_selector=fs,
                         resource_version=rv or None)
    deadline = None if not a.watch_timeout else time.monotonic() + a.watch_timeout
    try:
        for ev in _events(w, deadline):
            etype = ev.get("type")
            if etype == "BOOKMARK":
                continue
            if etype == "ERROR":
                obj = ev.get("object") or {}
                raise APIError(obj.get("reason") or errors.EXPIRED,
                               obj.get("message") or "watch failed")
            obj = ev.get("object")
            if not isinstance(obj, dict):
                continue
            printer.print([obj], etype or "")
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            w.stop()
        except Exception:
            pass
    return 0
