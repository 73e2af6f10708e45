"""``kemu scale``: set the replica count of a Deployment, ReplicaSet or StatefulSet, as ``kubectl scale``.

Contract: ``scale TYPE NAME --replicas=N`` (or ``TYPE/NAME``, several names,
``--current-replicas=M`` as a precondition). A missing or negative count is
refused before anything is sent, with kubectl's message (``The --replicas=COUNT
flag is required, and COUNT must be greater than or equal to 0``); only
Deployments, ReplicaSets and StatefulSets scale. The change goes through the ``scale``
subresource (``{"spec": {"replicas": N}}``); when the apiserver does not know
that subresource, a merge patch of ``spec.replicas`` on the object is sent
instead. Each object prints ``deployment.apps/web scaled``.
"""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.common import (CLIError, Context, add_common_flags, namespace_for, ref,
                                 run_command, split_type_name_args)

SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet")
REPLICAS_REQUIRED = "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scale", help="set a new size for a deployment or replica set",
        description="Set a new size for a Deployment or ReplicaSet, as kubectl scale does.")
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    add_common_flags(p)
    p.add_argument("--replicas", type=int, default=None, metavar="COUNT", help="the new number of replicas")
    p.add_argument("--current-replicas", type=int, default=-1, metavar="COUNT",
                   help="precondition: only scale if the current size is COUNT")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return run_command(args, out, err, _scale)


def scale_object(client: Any, kind: str, name: str, namespace: str | None, replicas: int) -> dict:
    """The scale subresource, or a merge patch of spec.replicas if the server lacks it."""
    body = {"spec": {"replicas": replicas}}
    try:
        return client.patch(kind, name, body, namespace, subresource="scale")
    except APIError as e:
        if e.code in (errors.NOT_FOUND, errors.BAD_REQUEST) and "subresource" in e.message:
            return client.patch(kind, name, body, namespace)
        raise


def _scale(ctx: Context) -> int | None:
    a = ctx.args
    if a.replicas is None or a.replicas < 0:
        raise CLIError(REPLICAS_REQUIRED)
    targets = [(rt, n) for rt, names in split_type_name_args(ctx, a.resources, "scale") for n in names]
    if not targets:
        raise CLIError("you must specify the object to scale: TYPE NAME or TYPE/NAME")
    for rt, _ in targets:
        if rt.kind not in SCALABLE:
            raise CLIError(f'cannot scale {rt.kind.lower()}: only deployments, replicasets and statefulsets can be scaled')
    for rt, name in targets:
        ns = namespace_for(ctx, rt)
        if a.current_replicas >= 0:
            cur = ((ctx.client.get(rt.kind, name, ns).get("spec") or {}).get("replicas"))
            if cur != a.current_replicas:
                ctx.error(f"Expected replicas to be {a.current_replicas}, was {cur}")
                continue
        scale_object(ctx.client, rt.kind, name, ns, a.replicas)
        ctx.out.write(f"{ref(rt, name)} scaled\n")
        ctx.out.flush()
    return None
