"""Shared plumbing for the commands that read ``-f`` manifests (create, apply, delete).

Contract
--------
* ``add_file_flags(parser, verb)`` adds repeatable ``-f/--filename`` and
  ``-R/--recursive``.
* ``load(ctx, verb)`` loads every manifest, printing each unusable file as
  ``error: ...`` (and marking the command failed); it raises ``CLIError("no
  objects passed to VERB")`` when nothing at all could be read.
* ``target(ctx, manifest)`` resolves a manifest to ``(ResourceType, object,
  namespace)``: the kind must be served (kubectl's ``no matches for kind``
  error otherwise); a namespaced object gets ``metadata.namespace`` from the
  manifest or ``-n``/``default`` (a manifest namespace that contradicts an
  explicit ``-n`` is an error, as in kubectl); cluster objects lose any namespace.
* ``add_dry_run_flag`` / ``dry_run(ctx)``: ``--dry-run=none|client``
  (``server`` is refused with an explanation).
"""
from __future__ import annotations

import argparse
import copy
from typing import Any

from emulator.cli.common import CLIError, Context, find_gvk
from emulator.cli.manifests import Manifest, load_manifests

__all__ = ["add_file_flags", "add_dry_run_flag", "dry_run", "load", "target", "sendable"]


def add_file_flags(p: argparse.ArgumentParser, verb: str, required: bool = False) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   required=required,
                   help=f"file, directory or - (stdin) with the objects to {verb}; repeatable")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="process directories given with -f recursively")


def add_dry_run_flag(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    p.add_argument("--dry-run", choices=("none", "client", "server"),
                   default=argparse.SUPPRESS if suppress else "none",
                   help="client: only print what would be sent")


def dry_run(ctx: Context) -> bool:
    mode = getattr(ctx.args, "dry_run", "none") or "none"
    if mode == "server":
        raise CLIError("--dry-run=server is not supported by kemu's apiserver; "
                       "use --dry-run=client")
    return mode == "client"


def load(ctx: Context, verb: str) -> list[Manifest]:
    manifests, errs = load_manifests(ctx.args.filename, ctx.args.recursive, ctx.stdin)
    for e in errs:
        ctx.error(str(e))
    if not manifests and not errs:
        raise CLIError(f"no objects passed to {verb}")
    return manifests


def target(ctx: Context, m: Manifest) -> tuple[Any, dict, str | None]:
    obj = copy.deepcopy(m.obj)
    md = obj.setdefault("metadata", {})
    rt = find_gvk(ctx, str(obj["apiVersion"]), str(obj["kind"]))
    if rt is None:
        raise CLIError(f'resource mapping not found for name: "{md.get("name", "")}" '
                       f'namespace: "{md.get("namespace", "")}" from "{m.source}": no matches '
                       f'for kind "{obj["kind"]}" in version "{obj["apiVersion"]}"\n'
                       "ensure CRDs are installed first")
    ns: str | None = None
    if rt.namespaced:
        ns = md.get("namespace") or None
        if ns and ctx.explicit_namespace and ns != ctx.namespace:
            raise CLIError(f'the namespace from the provided object "{ns}" does not match the '
                           f'namespace "{ctx.namespace}". You must pass \'--namespace={ns}\' '
                           "to perform this operation.")
        ns = ns or ctx.namespace
        md["namespace"] = ns
    else:
        md.pop("namespace", None)
    return rt, obj, ns


def sendable(obj: dict) -> dict:
    """``obj`` without the client-side placeholders kubectl prints in dry runs."""
    o = dict(obj)
    md = dict(o.get("metadata") or {})
    if md.get("creationTimestamp") is None:
        md.pop("creationTimestamp", None)
    o["metadata"] = md
    for k in ("spec", "status"):
        if o.get(k) == {}:
            o.pop(k)
    return o
