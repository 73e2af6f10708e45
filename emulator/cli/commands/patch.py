"""``kemu patch``: apply a JSON merge patch or a JSON patch to one object.

Contract: ``patch TYPE NAME -p PATCH [--type merge|json] [--subresource
status]`` (or ``TYPE/NAME``). ``-p`` is JSON (YAML accepted, as kubectl does);
a merge patch must be an object and a JSON patch a list, anything else is an
error naming ``-p`` (exit 1, nothing sent). Prints ``pod/web patched``, or
``pod/web patched (no change)`` when the object is unchanged; ``-o`` prints
the patched object instead.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

import yaml

from emulator.cli.commands.create import OUTPUTS, emit
from emulator.cli.common import (CLIError, Context, add_common_flags, namespace_for,
                                 run_command, split_type_name_args)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "patch", help="update fields of a resource",
        description="Update fields of a resource using a JSON merge patch or a JSON patch, "
                    "as kubectl patch does.")
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    add_common_flags(p)
    p.add_argument("-p", "--patch", required=True, metavar="PATCH",
                   help="the patch, as JSON (or YAML)")
    p.add_argument("--type", dest="patch_type", choices=("merge", "json"), default="merge",
                   help="merge (RFC 7386, default) or json (RFC 6902)")
    p.add_argument("--subresource", choices=("status",), default=None,
                   help="patch this subresource instead of the object")
    p.add_argument("-o", "--output", choices=OUTPUTS, help="print the patched object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _patch)


def parse_patch(text: str, patch_type: str) -> Any:
    """The patch document from ``-p``; CLIError naming ``-p`` when unusable."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            doc = None
        if not isinstance(doc, (dict, list)):
            raise CLIError(f"unable to parse -p {text!r}: not valid JSON: {e}") from None
    if patch_type == "merge" and not isinstance(doc, dict):
        raise CLIError(f"unable to parse -p {text!r}: a merge patch must be a JSON object, "
                       f"got {type(doc).__name__}")
    if patch_type == "json":
        if not isinstance(doc, list) or not all(isinstance(op, dict) for op in doc):
            raise CLIError(f"unable to parse -p {text!r}: a JSON patch must be a list of "
                           'operations like [{"op": "replace", "path": "/a", "value": 1}]')
    return doc


def _patch(ctx: Context) -> int | None:
    a = ctx.args
    doc = parse_patch(a.patch, a.patch_type)
    groups = split_type_name_args(ctx, a.resources, "patch")
    targets = [(rt, n) for rt, names in groups for n in names]
    if not targets:
        raise CLIError("you must specify the object to patch: TYPE NAME or TYPE/NAME")
    for rt, name in targets:
        ns = namespace_for(ctx, rt)
        before = ctx.client.get(rt.kind, name, namespace=ns)
        after = ctx.client.patch(rt.kind, name, doc, namespace=ns, patch_type=a.patch_type,
                                 subresource=a.subresource)
        verb = "patched" if after != before else "patched (no change)"
        emit(ctx, rt, after, verb, False)
    return None
