"""``kemu rollout``: manage a Deployment's rollout, as ``kubectl rollout``.

Contract (``TYPE NAME`` or ``TYPE/NAME``; Deployments, and StatefulSets for
status/restart/undo/history through ``rollout_statefulset``)
-----------------------------------------------------------
* ``status [--timeout D] [-w=false]``: prints kubectl's status lines
  (``Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas
  are available...``, ``deployment "web" successfully rolled out``) as the
  Deployment changes (a watch on it), without repeating a line; exit 0 when
  rolled out, 1 on ``--timeout`` (``error: timed out waiting for the
  condition``) or ProgressDeadlineExceeded (``error: deployment "web" exceeded
  its progress deadline``). ``-w=false`` prints the current line once.
* ``restart``: sets the template annotation ``kubectl.kubernetes.io/restartedAt``
  to now (RFC 3339); prints ``deployment.apps/web restarted``. A paused
  Deployment is refused.
* ``undo [--to-revision=N]``: copies the template of the ReplicaSet with that
  revision (default: the previous one) back into the Deployment, without
  ``pod-template-hash``; prints ``deployment.apps/web rolled back`` (or
  ``skipped rollback (current template already matches revision N)``).
* ``history [--revision=N]``: the REVISION / CHANGE-CAUSE table (or one
  revision's pod template).
* ``pause`` / ``resume``: set ``spec.paused``; print ``... paused`` / ``... resumed``.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.commands import rollout_statefulset
from emulator.cli.common import (CLIError, Context, add_common_flags, namespace_for, parse_bool,
                                 parse_duration, ref, run_command, split_type_name_args)

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_STATEFULSET_VERBS = ("status", "restart", "undo", "history")   # rollout_statefulset has these
# annotations kubectl does not copy back from a ReplicaSet on rollback
_SKIP_ON_UNDO = {REVISION, "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                 "deployment.kubernetes.io/max-replicas", "kubectl.kubernetes.io/last-applied-configuration"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("rollout", help="manage the rollout of a deployment",
                              description="Manage the rollout of a Deployment, as kubectl rollout does.")
    add_common_flags(p)
    sub = p.add_subparsers(dest="rollout_what", metavar="{status,restart,undo,history,pause,resume}",
                           required=True)

    def child(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
        add_common_flags(c, suppress=True)
        return c

    st = child("status", "show the status of the rollout")
    st.add_argument("--timeout", type=parse_duration, default=0.0, metavar="DURATION",
                    help="how long to wait before giving up (0: forever)")
    st.add_argument("-w", "--watch", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                    help="watch until the rollout finishes (default true)")
    child("restart", "restart the pods of a deployment")
    undo = child("undo", "roll back to a previous revision")
    undo.add_argument("--to-revision", type=int, default=0, metavar="N", help="the revision (default: previous)")
    hist = child("history", "show the rollout history")
    hist.add_argument("--revision", type=int, default=0, metavar="N", help="show this revision's pod template")
    child("pause", "pause the rollout")
    child("resume", "resume a paused rollout")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return run_command(args, out, err, _rollout)


def status_message(d: dict) -> tuple[str, bool, str | None]:
    """kubectl's DeploymentStatusViewer: (line, done, error)."""
    name = d["metadata"]["name"]
    spec, st = d.get("spec") or {}, d.get("status") or {}
    if d["metadata"].get("generation", 0) <= st.get("observedGeneration", 0):
        for c in st.get("conditions") or []:
            if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                return "", False, f'deployment "{name}" exceeded its progress deadline'
        updated, replicas = int(st.get("updatedReplicas") or 0), int(st.get("replicas") or 0)
        available = int(st.get("availableReplicas") or 0)
        want = spec.get("replicas")
        if want is not None and updated < want:
            return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {want} new replicas '
                    "have been updated..."), False, None
        if replicas > updated:
            return (f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas '
                    "are pending termination..."), False, None
        if available < updated:
            return (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated '
                    "replicas are available..."), False, None
        return f'deployment "{name}" successfully rolled out', True, None
    return "Waiting for deployment spec update to be observed...", False, None


def _targets(ctx: Context, verb: str) -> list[tuple[Any, str]]:
    groups = split_type_name_args(ctx, ctx.args.resources, f"rollout {verb}")
    targets = [(rt, n) for rt, names in groups for n in names]
    if not targets:
        raise CLIError("you must specify the object: TYPE NAME or TYPE/NAME")
    for rt, _ in targets:
        if rt.kind != "Deployment" and not (rt.kind == "StatefulSet" and verb in _STATEFULSET_VERBS):
            raise CLIError(f"no {verb} has been implemented for {rt.api_version}, Kind={rt.kind}")
    return targets


def _rollout(ctx: Context) -> int | None:
    what = ctx.args.rollout_what
    fn: Callable[[Context, Any, str, str | None], None] = {
        "status": _status, "restart": _restart, "undo": _undo, "history": _history,
        "pause": lambda c, rt, n, ns: _pause(c, rt, n, ns, True),
        "resume": lambda c, rt, n, ns: _pause(c, rt, n, ns, False)}[what]
    for rt, name in _targets(ctx, what):
        if rt.kind == "StatefulSet" and what in ("undo", "history"):
            getattr(rollout_statefulset, what)(ctx, rt, name, namespace_for(ctx, rt))
            continue
        fn(ctx, rt, name, namespace_for(ctx, rt))
    return None


def _status(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    a = ctx.args
    deadline = time.monotonic() + a.timeout if a.timeout else None
    d = ctx.client.get(rt.kind, name, ns)
    watch = None
    last = None
    try:
        while True:
            line, done, err = rollout_statefulset.status_message(d) if rt.kind == "StatefulSet" \
                else status_message(d)
            if err:
                raise CLIError(err)
            if line != last:
                ctx.out.write(line + "\n")
                ctx.out.flush()
                last = line
            if done or not a.watch:
                return
            if watch is None:
                watch = ctx.client.watch(rt.kind, ns, field_selector=f"metadata.name={name}",
                                         resource_version=d["metadata"].get("resourceVersion"))
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                raise CLIError("timed out waiting for the condition")
            try:
                ev = watch.next(min(wait, 1.0))
            except APIError as e:   # the watch ended (Expired, server restart): read again
                if e.code not in (errors.EXPIRED, errors.UNAVAILABLE, errors.TIMEOUT):
                    raise
                watch = None
                d = ctx.client.get(rt.kind, name, ns)
                continue
            if ev is None:
                continue
            if ev.get("type") == "DELETED":
                raise CLIError('object has been deleted')
            if ev.get("type") in ("ADDED", "MODIFIED"):
                d = ev["object"]
    finally:
        if watch is not None:
            try:
                watch.stop()
            except Exception:
                pass


def _restart(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    d = ctx.client.get(rt.kind, name, ns)
    if (d.get("spec") or {}).get("paused"):
        raise CLIError(f'{rt.plural}.{rt.group} "{name}" can\'t restart paused deployment (run rollout resume first)')
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ctx.client.patch(rt.kind, name, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}, ns)
    ctx.out.write(f"{ref(rt, name)} restarted\n")


def owned_replicasets(ctx: Context, d: dict) -> list[dict]:
    uid = d["metadata"].get("uid")
    items = ctx.client.list_all("ReplicaSet", d["metadata"].get("namespace"))["items"]
    return [r for r in items if any(o.get("uid") == uid and o.get("controller")
                                    for o in r["metadata"].get("ownerReferences") or [])]


def _revision(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def strip_hash(template: dict) -> dict:
    t = {**template, "metadata": {**(template.get("metadata") or {})}}
    labels = {k: v for k, v in (t["metadata"].get("labels") or {}).items() if k != HASH}
    t["metadata"]["labels"] = labels
    return t


def _undo(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    d = ctx.client.get(rt.kind, name, ns)
    if (d.get("spec") or {}).get("paused"):
        raise CLIError(f"you cannot rollback a paused deployment; resume it first with 'kemu rollout resume "
                       f"deployment/{name}' and try again")
    history = {_revision(r): r for r in owned_replicasets(ctx, d) if _revision(r) > 0}
    to = ctx.args.to_revision
    if to == 0:
        if len(history) <= 1:
            raise CLIError(f'no rollout history found for deployment "{name}"')
        to = sorted(history)[-2]
    if to not in history:
        raise CLIError(f"unable to find specified revision {to} in history")
    template = strip_hash(history[to]["spec"]["template"])
    if _same(template, d["spec"].get("template") or {}):
        ctx.out.write(f"{ref(rt, name)} skipped rollback (current template already matches revision {to})\n")
        return
    annotations = {k: v for k, v in (history[to]["metadata"].get("annotations") or {}).items()
                   if k not in _SKIP_ON_UNDO}
    ops: list[dict] = [{"op": "replace", "path": "/spec/template", "value": template}]
    if annotations:
        cur = dict(d["metadata"].get("annotations") or {})
        cur.update(annotations)
        ops.append({"op": "add", "path": "/metadata/annotations", "value": cur})
    ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": d["metadata"]["resourceVersion"]})
    ctx.client.patch(rt.kind, name, ops, ns, patch_type="json")
    ctx.out.write(f"{ref(rt, name)} rolled back\n")


def _same(a: dict, b: dict) -> bool:
    def norm(t: dict) -> dict:
        t = strip_hash(t)
        if not t["metadata"].get("labels"):
            t["metadata"].pop("labels", None)
        return t
    return norm(a) == norm(b)


def _history(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    d = ctx.client.get(rt.kind, name, ns)
    history = {_revision(r): r for r in owned_replicasets(ctx, d) if _revision(r) > 0}
    want = ctx.args.revision
    if want:
        if want not in history:
            raise CLIError("unable to find the specified revision")
        from emulator.cli.printers import dump_yaml
        ctx.out.write(f"{ref(rt, name)} with revision #{want}\nPod Template:\n")
        ctx.out.write(dump_yaml(history[want]["spec"]["template"]))
        return
    ctx.out.write(f"{ref(rt, name)} \n")
    if not history:
        ctx.out.write("No rollout history found.\n")
        return
    ctx.out.write("REVISION  CHANGE-CAUSE\n")
    for rev in sorted(history):
        cause = (history[rev]["metadata"].get("annotations") or {}).get(CHANGE_CAUSE) or "<none>"
        ctx.out.write(f"{rev:<10}{cause}\n")
    ctx.out.write("\n")


def _pause(ctx: Context, rt: Any, name: str, ns: str | None, pause: bool) -> None:
    d = ctx.client.get(rt.kind, name, ns)
    if bool((d.get("spec") or {}).get("paused")) == pause:
        raise CLIError(f'{rt.plural}.{rt.group} "{name}" is {"already paused" if pause else "not paused"}')
    ctx.client.patch(rt.kind, name, {"spec": {"paused": pause}}, ns)
    ctx.out.write(f"{ref(rt, name)} {'paused' if pause else 'resumed'}\n")
