"""``kemu describe``: human-readable descriptions with related Events.

Contract
--------
* ``describe TYPE NAME...``, ``describe TYPE/NAME``, ``describe TYPE [-l SEL]``
  (every match in the namespace; ``-A`` all namespaces). A name that does not
  exist describes the objects whose names start with it (kubectl's prefix
  match), and is a NotFound error (exit 1) only when none do.
* Each object is printed by ``emulator.cli.describers.describe``; several are
  separated by two blank lines as kubectl does. The ``Events:`` section lists
  the Events whose ``involvedObject`` is the object (``<none>`` if there are
  none); ``--show-events=false`` omits it.
"""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.commands.get import list_all, non_negative_int
from emulator.cli.common import (CLIError, Context, add_common_flags, is_connection_error,
                                 namespace_for, parse_bool, report, run_command,
                                 split_type_name_args)
from emulator.cli.describers import describe

NO_EVENTS_KINDS = ("Secret", "Namespace", "Event")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "describe", help="show details of a resource or group of resources",
        description="Show details of a specific resource or group of resources, as "
                    "kubectl describe does.")
    p.add_argument("resources", nargs="+", metavar="TYPE[/NAME] [NAME...]")
    add_common_flags(p)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="label selector")
    p.add_argument("--show-events", type=parse_bool, nargs="?", const=True, default=True,
                   metavar="BOOL", help="show related events (default true)")
    p.add_argument("--chunk-size", type=non_negative_int, default=500, metavar="N")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _describe)


def _find(ctx: Context, rt: Any, names: list[str]) -> list[dict]:
    a = ctx.args
    ns = namespace_for(ctx, rt, a.all_namespaces)
    if not names:
        return list_all(ctx, rt, ns, a.selector, None, a.chunk_size)[0]
    objs: list[dict] = []
    for n in names:
        try:
            objs.append(ctx.client.get(rt.kind, n, namespace=ns))
            continue
        except APIError as e:
            if is_connection_error(ctx, e) or e.code != errors.NOT_FOUND:
                raise
            missing = e
        prefixed = [o for o in list_all(ctx, rt, ns, None, None, a.chunk_size)[0]
                    if str((o.get("metadata") or {}).get("name", "")).startswith(n)]
        if prefixed:
            objs.extend(prefixed)
        else:
            report(ctx, missing)
    return objs


def related_events(ctx: Context, rt: Any, obj: dict) -> list[dict]:
    """Events whose involvedObject is ``obj``."""
    md = obj.get("metadata") or {}
    name, uid = md.get("name", ""), md.get("uid")
    ns = md.get("namespace") if rt.namespaced else None
    try:
        ev_rt = ctx.registry.resolve("Event")
    except Exception:
        return []
    try:
        items, _ = list_all(ctx, ev_rt, ns, None, f"involvedObject.name={name}",
                            ctx.args.chunk_size)
    except APIError as e:
        if is_connection_error(ctx, e):
            raise
        try:   # the server does not index that field: filter here
            items, _ = list_all(ctx, ev_rt, ns, None, None, ctx.args.chunk_size)
        except APIError as e2:
            if is_connection_error(ctx, e2):
                raise
            return []
    out = []
    for ev in items:
        inv = ev.get("involvedObject") or ev.get("regarding") or {}
        if inv.get("name") != name:
            continue
        if inv.get("kind") and inv.get("kind") != rt.kind:
            continue
        if ns is not None and inv.get("namespace", ns) != ns:
            continue
        if uid and inv.get("uid") and inv.get("uid") not in (uid, name):
            continue
        out.append(ev)
    return out


def _node_extra(ctx: Context, node: dict) -> dict:
    name = (node.get("metadata") or {}).get("name", "")
    extra: dict = {}
    try:
        lease_rt = ctx.registry.resolve("Lease")
    except Exception:
        lease_rt = None
    if lease_rt is not None:
        try:
            extra["lease"] = ctx.client.get(lease_rt.kind, name, namespace="kube-node-lease")
        except APIError as e:
            if is_connection_error(ctx, e):
                raise
            extra["lease"] = None
    try:
        pod_rt = ctx.registry.resolve("Pod")
        pods, _ = list_all(ctx, pod_rt, None, None, f"spec.nodeName={name}", ctx.args.chunk_size)
        extra["pods"] = [p for p in pods
                         if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    except APIError as e:
        if is_connection_error(ctx, e):
            raise
    except Exception:
        pass
    return extra


def _pvc_extra(ctx: Context, claim: dict) -> dict:
    """``Used By``: the pods in the claim's namespace that name it in a volume."""
    md = claim.get("metadata") or {}
    try:
        pods, _ = list_all(ctx, ctx.registry.resolve("Pod"), md.get("namespace"), None, None, ctx.args.chunk_size)
    except APIError as e:
        if is_connection_error(ctx, e):
            raise
        return {}
    return {"used_by": sorted(p["metadata"]["name"] for p in pods
                              if any((v.get("persistentVolumeClaim") or {}).get("claimName") == md.get("name")
                                     for v in (p.get("spec") or {}).get("volumes") or []))}


def _describe(ctx: Context) -> int | None:
    a = ctx.args
    groups = split_type_name_args(ctx, a.resources, "describe")
    if any(names for _, names in groups) and a.selector:
        raise CLIError("selectors cannot be used when passing resource/name arguments")
    found: list[tuple[Any, dict]] = []
    for rt, names in groups:
        found.extend((rt, o) for o in _find(ctx, rt, names))
    if not found:
        if not ctx.failed:
            if not a.all_namespaces and all(rt.namespaced for rt, _ in groups):
                ctx.err.write(f"No resources found in {ctx.namespace} namespace.\n")
            else:
                ctx.err.write("No resources found\n")
        return None
    for i, (rt, obj) in enumerate(found):
        events = None
        if a.show_events and rt.kind not in NO_EVENTS_KINDS:
            events = related_events(ctx, rt, obj)
        extra = _node_extra(ctx, obj) if rt.kind == "Node" else \
            _pvc_extra(ctx, obj) if rt.kind == "PersistentVolumeClaim" else {}
        text = describe(obj, rt, events, extra)
        ctx.out.write(("\n\n" if i else "") + text)
        ctx.out.flush()
    return None
