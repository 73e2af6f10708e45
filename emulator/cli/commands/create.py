"""``kemu create``: create objects from manifests, or imperatively.

Contract
--------
* ``create -f FILE|DIR|- [-R]``: every object in the manifests is created in
  order; each success prints ``pod/web created``. A server error prints
  ``Error from server (Reason): error when creating "FILE": <message>`` and the
  remaining objects are still created; a file that does not parse contributes
  nothing. Exit 1 if anything failed.
* ``create namespace|ns NAME``, ``create configmap|cm NAME [--from-literal
  k=v]... [--from-file [key=]path]... [--from-env-file path]...`` and ``create
  secret generic NAME [...] [--type T]`` build the object as kubectl does.
* ``--dry-run=client`` prints ``kind/name created (dry run)`` without sending,
  or the object itself with ``-o yaml|json``; ``-o name`` prints ``kind/name``.
"""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from emulator.api.errors import APIError
from emulator.cli.commands import _manifest
from emulator.cli.commands.create_imperative import (build_configmap, build_namespace,
                                                     build_secret)
from emulator.cli.common import (CLIError, Context, add_common_flags, is_connection_error,
                                 ref, report, resolve_kind, run_command)
from emulator.cli.printers import dump_json, dump_yaml

OUTPUTS = ("json", "yaml", "name")


def _output_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    p.add_argument("-o", "--output", choices=OUTPUTS,
                   default=argparse.SUPPRESS if suppress else None,
                   help="print the created object(s) in this format")
    _manifest.add_dry_run_flag(p, suppress=suppress)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "create", help="create resources from files or stdin, or imperatively",
        description="Create a resource from a file or from stdin (-f), or one of the "
                    "imperative forms below, as kubectl create does.")
    _manifest.add_file_flags(p, "create")
    add_common_flags(p)
    _output_flags(p, suppress=False)
    sub = p.add_subparsers(dest="create_what", metavar="{namespace,configmap,secret}")

    ns = sub.add_parser("namespace", aliases=["ns"], help="create a namespace")
    ns.add_argument("name", nargs="*", metavar="NAME")
    add_common_flags(ns, suppress=True)
    _output_flags(ns, suppress=True)
    ns.set_defaults(create_what="namespace")

    cm = sub.add_parser("configmap", aliases=["cm"], help="create a config map")
    cm.add_argument("name", nargs="*", metavar="NAME")
    _data_flags(cm)
    add_common_flags(cm, suppress=True)
    _output_flags(cm, suppress=True)
    cm.set_defaults(create_what="configmap")

    secret = sub.add_parser("secret", help="create a secret")
    ssub = secret.add_subparsers(dest="secret_type_cmd", metavar="{generic}", required=True)
    gen = ssub.add_parser("generic", help="create a secret from files, directories or literals")
    gen.add_argument("name", nargs="*", metavar="NAME")
    _data_flags(gen)
    gen.add_argument("--type", dest="secret_type", default=None, help="the secret's type")
    add_common_flags(gen, suppress=True)
    _output_flags(gen, suppress=True)
    secret.set_defaults(create_what="secret")
    p.set_defaults(func=run, create_what=None)
    return p


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                   help="a key and literal value; repeatable")
    p.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                   help="a file (key defaults to its name) or a directory; repeatable")
    p.add_argument("--from-env-file", action="append", default=[], metavar="PATH",
                   help="a file of KEY=VALUE lines; repeatable")


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    return run_command(args, out, err, _create)


def emit(ctx: Context, rt: Any, obj: dict, verb: str, dry: bool, sort_keys: bool = True) -> None:
    """Print the outcome of a write the way kubectl does for ``-o``."""
    output = getattr(ctx.args, "output", None)
    name = (obj.get("metadata") or {}).get("name", "")
    if output == "name":
        ctx.out.write(ref(rt, name) + "\n")
    elif output == "json":
        ctx.out.write(dump_json(obj, sort_keys=sort_keys))
    elif output == "yaml":
        ctx.out.write(dump_yaml(obj))
    else:
        ctx.out.write(f"{ref(rt, name)} {verb}{' (dry run)' if dry else ''}\n")
    ctx.out.flush()


def _create(ctx: Context) -> int | None:
    a = ctx.args
    dry = _manifest.dry_run(ctx)
    if a.create_what:
        if a.filename:
            raise CLIError(f"-f cannot be used with 'create {a.create_what}'")
        return _create_imperative(ctx, dry)
    if not a.filename:
        raise CLIError("must specify one of -f or a resource to create "
                       "(namespace, configmap, secret generic)")
    for m in _manifest.load(ctx, "create"):
        try:
            rt, obj, ns = _manifest.target(ctx, m)
        except CLIError as e:
            ctx.error(str(e))
            continue
        if dry:
            emit(ctx, rt, obj, "created", True)
            continue
        try:
            created = ctx.client.create(obj, namespace=ns)
        except APIError as e:
            if is_connection_error(ctx, e):
                raise
            report(ctx, e, prefix=f'error when creating "{m.source}": ')
            continue
        emit(ctx, rt, created, "created", False)
    return None


def _create_imperative(ctx: Context, dry: bool) -> int | None:
    a = ctx.args
    what = a.create_what
    if len(a.name) != 1:
        raise CLIError(f"exactly one NAME is required, got {len(a.name)}")
    name = a.name[0]
    if what == "namespace":
        obj = build_namespace(name)
    elif what == "configmap":
        obj = build_configmap(name, a.namespace, a.from_literal, a.from_file, a.from_env_file)
    else:
        obj = build_secret(name, a.namespace, a.from_literal, a.from_file, a.from_env_file,
                           a.secret_type)
    rt = resolve_kind(ctx, obj["kind"])
    if dry:
        emit(ctx, rt, obj, "created", True, sort_keys=False)
        return None
    ns = ctx.namespace if rt.namespaced else None
    created = ctx.client.create(_manifest.sendable(obj), namespace=ns)
    emit(ctx, rt, created, "created", False)
    return None
