"""``kemu label``: add, change or remove labels, as ``kubectl label``.

Contract: ``label TYPE NAME... KEY=VALUE... KEY-... [--overwrite]`` (or
``TYPE/NAME``, ``-l SEL``, ``--all``). Label changes follow the objects.
Changing a key that has a value needs ``--overwrite`` (kubectl's ``'k' already
has a value (v), and --overwrite is false``, exit 1, nothing sent); removing
a missing key prints ``label "k" not found.``. The change is sent as a merge
patch of ``metadata.labels``; each object prints ``pod/web labeled``
(``unlabeled`` / ``not labeled`` as kubectl decides).
"""
from __future__ import annotations

import argparse
import json
import re
from typing import Any, TextIO

from emulator.cli.commands.get import list_all
from emulator.cli.common import (CLIError, Context, add_common_flags, namespace_for, ref,
                                 run_command, split_type_name_args)

_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
               "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "label", help="update the labels on a resource",
        description="Update the labels on a resource, as kubectl label does. KEY=VALUE sets a "
                    "label, KEY- removes one.")
    p.add_argument("args", nargs="+", metavar="TYPE NAME KEY=VALUE|KEY-")
    add_common_flags(p)
    p.add_argument("--overwrite", action="store_true", help="allow changing existing labels")
    p.add_argument("-l", "--selector", help="label the objects matching this selector")
    p.add_argument("--all", action="store_true", help="label every object of the type")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _label)


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """kubectl's GetResourcesAndPairs: resource arguments, then label changes."""
    resources: list[str] = []
    pairs: list[str] = []
    for a in args:
        if "=" in a or a.endswith("-"):
            pairs.append(a)
        elif pairs:
            raise CLIError(f"all resources must be specified before label changes: {a}")
        else:
            resources.append(a)
    return resources, pairs


def parse_labels(specs: list[str]) -> tuple[dict[str, str], list[str]]:
    labels: dict[str, str] = {}
    remove: list[str] = []
    for s in specs:
        if "=" in s:
            parts = s.split("=")
            if len(parts) != 2:
                raise CLIError(f"invalid label spec: {s}")
            if not _VALUE.match(parts[1]) or len(parts[1]) > 63:
                raise CLIError(f'invalid label value: "{s}": {_VALUE_RULE}')
            labels[parts[0]] = parts[1]
        else:
            remove.append(s[:-1])
    for k in remove:
        if k in labels:
            raise CLIError("can not both modify and remove a label in the same command")
    return labels, remove


def _label(ctx: Context) -> int | None:
    a = ctx.args
    resource_args, pair_args = split_args(a.args)
    if not pair_args:
        raise CLIError("at least one label update is required")
    if not resource_args:
        raise CLIError("you must specify the object to label: TYPE NAME or TYPE/NAME")
    labels, remove = parse_labels(pair_args)
    targets: list[tuple[Any, dict]] = []
    for rt, names in split_type_name_args(ctx, resource_args, "label"):
        ns = namespace_for(ctx, rt, a.all_namespaces)
        if names:
            if a.selector or a.all:
                raise CLIError("names cannot be given together with --all or a selector")
            targets.extend((rt, ctx.client.get(rt.kind, n, namespace=ns)) for n in names)
        elif a.selector or a.all:
            targets.extend((rt, o) for o in list_all(ctx, rt, ns, a.selector, None, 500)[0])
        else:
            raise CLIError("resource(s) were provided, but no name was specified")
    for rt, obj in targets:
        md = obj.get("metadata") or {}
        old = dict(md.get("labels") or {})
        for k in remove:
            if k not in old:
                ctx.out.write(f'label "{k}" not found.\n')
        if not a.overwrite:
            clashes = [f"'{k}' already has a value ({old[k]}), and --overwrite is false"
                       for k in sorted(labels) if k in old]
            if clashes:
                for c in clashes:
                    ctx.error(c)
                continue
        new = dict(old)
        new.update(labels)
        for k in remove:
            new.pop(k, None)
        msg = "not labeled"
        if new != old:
            msg = "labeled"
            if not a.overwrite and len(json.dumps(new)) < len(json.dumps(old)):
                msg = "unlabeled"
            patch = {"metadata": {"labels": {**{k: v for k, v in new.items() if old.get(k) != v},
                                             **{k: None for k in old if k not in new}}}}
            ns = md.get("namespace") if rt.namespaced else None
            ctx.client.patch(rt.kind, md.get("name", ""), patch, namespace=ns,
                             patch_type="merge")
        ctx.out.write(f"{ref(rt, md.get('name', ''))} {msg}\n")
        ctx.out.flush()
    return None
