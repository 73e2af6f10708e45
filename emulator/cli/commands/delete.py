"""``kemu delete``: delete objects by file, name, selector or ``--all``.

Contract
--------
* Targets: ``-f FILE|DIR|-``, ``TYPE NAME...``, ``TYPE/NAME...``, ``TYPE -l SEL``
  or ``TYPE --all`` (``-A`` for every namespace).
* Each deletion prints ``pod "web" deleted`` (``force deleted`` with a zero
  grace period). A missing object prints ``Error from server (NotFound): ...``
  and exits 1 unless ``--ignore-not-found``; a selector or ``--all`` matching
  nothing prints ``No resources found``.
* ``--grace-period N`` (``0`` means 1 unless ``--force``, as in kubectl),
  ``--force`` (grace 0, with kubectl's warning), ``--now`` (grace 1),
  ``--cascade=background|foreground|orphan`` (the propagation policy).
* ``--wait`` (default true, like kubectl) waits until the objects are gone
  (pods stay while their containers stop), bounded by ``--timeout`` (default:
  no bound); ``--wait=false`` returns at once. Timing out is an error (exit 1).
"""
from __future__ import annotations

import argparse
import threading
import time
from typing import Any, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.commands import _manifest
from emulator.cli.commands.get import list_all
from emulator.cli.common import (CLIError, Context, add_common_flags, is_connection_error,
                                 label, namespace_for, parse_bool, parse_duration, ref, report,
                                 run_command, split_type_name_args)

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           "true": "Background", "false": "Orphan"}
FORCE_WARNING = ("Immediate deletion does not wait for confirmation that the running resource "
                 "has been terminated. The resource may continue to run on the cluster "
                 "indefinitely.")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "delete", help="delete resources by file names, stdin, names or label selector",
        description="Delete resources, as kubectl delete does.")
    p.add_argument("resources", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    _manifest.add_file_flags(p, "delete")
    add_common_flags(p)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="delete the objects matching this label selector")
    p.add_argument("--field-selector", help="delete the objects matching this field selector")
    p.add_argument("--all", action="store_true", help="delete every object of the type")
    p.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                   help="seconds the object has to terminate gracefully (-1: its default)")
    p.add_argument("--force", action="store_true",
                   help="remove immediately, without waiting for graceful termination")
    p.add_argument("--now", action="store_true", help="signal to terminate now (grace 1)")
    p.add_argument("--cascade", nargs="?", const="background", default="background",
                   choices=sorted(CASCADE), metavar="background|foreground|orphan",
                   help="how dependents are deleted (default background)")
    p.add_argument("--wait", type=parse_bool, nargs="?", const=True, default=True,
                   metavar="BOOL", help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", type=parse_duration, default=None, metavar="DURATION",
                   help="how long to wait for the deletion (default: no limit)")
    p.add_argument("--ignore-not-found", action="store_true",
                   help="treat a missing object as deleted")
    p.add_argument("-o", "--output", choices=("name",), help="name: print kind/name only")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _delete)


def _targets(ctx: Context) -> list[tuple[Any, str, str | None]] | None:
    a = ctx.args
    if a.filename:
        if a.resources:
            raise CLIError("when -f is given, resource arguments may not be given as well")
        out = []
        for m in _manifest.load(ctx, "delete"):
            try:
                rt, obj, ns = _manifest.target(ctx, m)
            except CLIError as e:
                ctx.error(str(e))
                continue
            out.append((rt, obj["metadata"].get("name", ""), ns))
        return out
    if not a.resources:
        raise CLIError("you must provide one or more resources by argument or filename "
                       "(e.g. 'kemu delete pod web', 'kemu delete -f web.yaml')")
    groups = split_type_name_args(ctx, a.resources, "delete")
    selecting = bool(a.selector or a.field_selector or a.all)
    targets: list[tuple[Any, str, str | None]] = []
    for rt, names in groups:
        if names and selecting:
            raise CLIError("names cannot be given together with --all or a selector")
        if names and a.all_namespaces:
            raise CLIError("a resource cannot be deleted by name across all namespaces")
        ns = namespace_for(ctx, rt, a.all_namespaces)
        if names:
            targets.extend((rt, n, ns) for n in names)
        elif selecting:
            items, _ = list_all(ctx, rt, ns, a.selector, a.field_selector, 500)
            targets.extend((rt, o["metadata"]["name"],
                            o["metadata"].get("namespace") if rt.namespaced else None)
                           for o in items)
        else:
            raise CLIError("resource(s) were provided, but no name was specified; give names, "
                           "-l SELECTOR or --all")
    if not targets and selecting:
        ctx.out.write("No resources found\n")
        return None
    return targets


def _delete(ctx: Context) -> int | None:
    a = ctx.args
    grace: int | None = a.grace_period if a.grace_period >= 0 else None
    if a.now:
        if grace is not None:
            raise CLIError("--now and --grace-period cannot be specified together")
        grace = 1
    if grace == 0 and not a.force:
        grace = 1   # kubectl: --grace-period=0 without --force means 1
    if a.force and grace is None:
        grace = 0
    policy = CASCADE[a.cascade] if a.cascade else None
    targets = _targets(ctx)
    if not targets:
        return None
    if a.force and grace == 0:
        ctx.warn(FORCE_WARNING)
    deleted = []
    for rt, name, ns in targets:
        try:
            res = ctx.client.delete(rt.kind, name, namespace=ns, grace_period_seconds=grace,
                                    propagation_policy=policy)
        except APIError as e:
            if is_connection_error(ctx, e):
                raise
            if not (e.code == errors.NOT_FOUND and a.ignore_not_found):
                report(ctx, e)
            continue
        uid = ((res if isinstance(res, dict) else {}).get("metadata") or {}).get("uid")
        deleted.append((rt, name, ns, uid))
        if a.output == "name":
            ctx.out.write(ref(rt, name) + "\n")
        else:
            verb = "force deleted" if grace == 0 else "deleted"
            ctx.out.write(f'{label(rt)} "{name}" {verb}\n')
        ctx.out.flush()
    if a.wait and deleted:
        _wait_gone(ctx, deleted, a.timeout)
    return None


def _wait_gone(ctx: Context, targets: list[tuple[Any, str, str | None, str | None]],
               timeout: float | None) -> None:
    """Poll until every target is gone (or replaced by a new object: another uid)."""
    deadline = None if not timeout else time.monotonic() + timeout
    pause = threading.Event()
    interval = 0.02
    pending = list(targets)
    while pending:
        still = []
        for rt, name, ns, uid in pending:
            try:
                live = ctx.client.get(rt.kind, name, namespace=ns)
                if uid is None or (live.get("metadata") or {}).get("uid") in (None, uid):
                    still.append((rt, name, ns, uid))
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
        pending = still
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            for rt, name, _, _ in pending:
                ctx.error(f"timed out waiting for the condition on {ref(rt, name)}")
            return
        wait = interval if deadline is None else \
            min(interval, max(0.0, deadline - time.monotonic()))
        pause.wait(wait)
        interval = min(interval * 2, 0.5)
