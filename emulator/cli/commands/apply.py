"""``kemu apply -f``: kubectl's client-side apply.

Contract
--------
* For each object in the manifests: the object is annotated with
  ``kubectl.kubernetes.io/last-applied-configuration`` (its own JSON). If the
  live object does not exist it is created (``pod/web created``). Otherwise
  the three-way merge of the last applied configuration, the new manifest and
  the live object is computed (fields removed from the manifest since the last
  apply are deleted, fields others set are kept); if it changes nothing the
  object is ``unchanged``, else the merged object is sent as an update carrying
  the live ``resourceVersion`` (``configured``), retried on Conflict.
* Errors are per object, as in ``create``; a file that does not parse
  contributes nothing; exit 1 if anything failed.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.commands import _manifest
from emulator.cli.commands.create import OUTPUTS, emit
from emulator.cli.common import (CLIError, Context, add_common_flags, is_connection_error,
                                 report, run_command)
from emulator.cli.manifests import Manifest
from emulator.cli.merge import LAST_APPLIED, three_way_merge, with_last_applied

CONFLICT_RETRIES = 5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "apply", help="apply a configuration to resources from files or stdin",
        description="Create or update resources from manifests, as kubectl apply "
                    "(client-side) does.")
    _manifest.add_file_flags(p, "apply")
    add_common_flags(p)
    p.add_argument("-o", "--output", choices=OUTPUTS, help="print the applied objects")
    _manifest.add_dry_run_flag(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _apply)


def apply_one(ctx: Context, rt: Any, obj: dict, ns: str | None, dry: bool) -> tuple[dict, str]:
    """Apply one object; returns (resulting object, created|configured|unchanged)."""
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise CLIError("resource name may not be empty")
    modified = with_last_applied(obj)
    for attempt in range(CONFLICT_RETRIES):
        try:
            live = ctx.client.get(rt.kind, name, namespace=ns)
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
            if dry:
                return modified, "created"
            return ctx.client.create(modified, namespace=ns), "created"
        original_text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        original = None
        if original_text:
            try:
                original = json.loads(original_text)
            except ValueError:
                original = None
        merged = three_way_merge(original, modified, live)
        if merged == live:
            return live, "unchanged"
        if dry:
            return merged, "configured"
        merged.setdefault("metadata", {})["resourceVersion"] = \
            (live.get("metadata") or {}).get("resourceVersion")
        try:
            return ctx.client.update(merged), "configured"
        except APIError as e:
            if e.code != errors.CONFLICT or attempt == CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _apply(ctx: Context) -> int | None:
    if not ctx.args.filename:
        raise CLIError("must specify -f: the manifests to apply")
    dry = _manifest.dry_run(ctx)
    for m in _manifest.load(ctx, "apply"):
        _apply_manifest(ctx, m, dry)
    return None


def _apply_manifest(ctx: Context, m: Manifest, dry: bool) -> None:
    try:
        rt, obj, ns = _manifest.target(ctx, m)
    except CLIError as e:
        ctx.error(str(e))
        return
    try:
        result, verb = apply_one(ctx, rt, obj, ns, dry)
    except CLIError as e:
        ctx.error(f'error when applying "{m.source}": {e}')
        return
    except APIError as e:
        if is_connection_error(ctx, e):
            raise
        report(ctx, e, prefix=f'error when applying "{m.source}": ')
        return
    emit(ctx, rt, result, verb, dry)
