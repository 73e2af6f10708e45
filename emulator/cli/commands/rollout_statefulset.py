"""The StatefulSet side of ``kemu rollout`` (kubectl's StatefulSet status viewer, history viewer
and rollbacker), used by ``rollout.py``.

Contract
--------
* ``status_message(sts) -> (line, done, error)``: kubectl's
  ``StatefulSetStatusViewer``: an error for OnDelete (``rollout status is only
  available for RollingUpdate strategy type``); ``Waiting for statefulset spec
  update to be observed...``; ``Waiting for N pods to be ready...``; with a
  partition, ``Waiting for partitioned roll out to finish: U out of N new pods
  have been updated...`` then ``partitioned roll out complete: U new pods have
  been updated...``; otherwise ``waiting for statefulset rolling update to
  complete ...`` / ``statefulset rolling update complete N pods at revision R...``.
* ``history(ctx, rt, name, ns)``: the REVISION / CHANGE-CAUSE table of the
  set's ControllerRevisions (or, with ``--revision=N``, that revision's pod
  template).
* ``undo(ctx, rt, name, ns)``: puts the template of revision ``--to-revision``
  (default: the one before the latest) back into the set; ``rolled back``, or
  ``skipped rollback (current template already matches revision N)``; errors
  ``no last revision to roll back to`` and ``unable to find specified revision N
  in history``.
"""
from __future__ import annotations

from typing import Any

from emulator.cli.common import CLIError, Context, ref

CHANGE_CAUSE = "kubernetes.io/change-cause"


def status_message(sts: dict) -> tuple[str, bool, str | None]:
    spec, st = sts.get("spec") or {}, sts.get("status") or {}
    us = spec.get("updateStrategy") or {}
    if us.get("type", "RollingUpdate") != "RollingUpdate":
        return "", True, "rollout status is only available for RollingUpdate strategy type"
    observed = int(st.get("observedGeneration") or 0)
    if observed == 0 or sts["metadata"].get("generation", 0) > observed:
        return "Waiting for statefulset spec update to be observed...", False, None
    replicas = spec.get("replicas")
    ready, updated = int(st.get("readyReplicas") or 0), int(st.get("updatedReplicas") or 0)
    if replicas is not None and ready < replicas:
        return f"Waiting for {replicas - ready} pods to be ready...", False, None
    ru = us.get("rollingUpdate")
    if isinstance(ru, dict):
        partition = ru.get("partition")
        if replicas is not None and partition is not None and updated < replicas - partition:
            return (f"Waiting for partitioned roll out to finish: {updated} out of {replicas - partition} "
                    "new pods have been updated..."), False, None
        return f"partitioned roll out complete: {updated} new pods have been updated...", True, None
    if st.get("updateRevision") != st.get("currentRevision"):
        return (f"waiting for statefulset rolling update to complete {updated} pods at revision "
                f"{st.get('updateRevision')}..."), False, None
    return (f"statefulset rolling update complete {int(st.get('currentReplicas') or 0)} pods at revision "
            f"{st.get('currentRevision')}..."), True, None


def _history(ctx: Context, sts: dict) -> dict[int, dict]:
    uid = sts["metadata"].get("uid")
    items = ctx.client.list_all("ControllerRevision", sts["metadata"].get("namespace"))["items"]
    return {int(r.get("revision") or 0): r for r in items
            if any(o.get("uid") == uid and o.get("controller") for o in r["metadata"].get("ownerReferences") or [])}


def _template(cr: dict) -> dict:
    tpl = dict(((cr.get("data") or {}).get("spec") or {}).get("template") or {})
    tpl.pop("$patch", None)
    return tpl


def history(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    sts = ctx.client.get(rt.kind, name, ns)
    revs = _history(ctx, sts)
    want = ctx.args.revision
    if want:
        if want not in revs:
            raise CLIError("unable to find the specified revision")
        from emulator.cli.printers import dump_yaml
        ctx.out.write(f"{ref(rt, name)} with revision #{want}\nPod Template:\n")
        ctx.out.write(dump_yaml(_template(revs[want])))
        return
    ctx.out.write(f"{ref(rt, name)} \n")
    if not revs:
        ctx.out.write("No rollout history found.\n")
        return
    ctx.out.write("REVISION  CHANGE-CAUSE\n")
    for n in sorted(revs):
        cause = (revs[n]["metadata"].get("annotations") or {}).get(CHANGE_CAUSE) or "<none>"
        ctx.out.write(f"{n:<10}{cause}\n")
    ctx.out.write("\n")


def undo(ctx: Context, rt: Any, name: str, ns: str | None) -> None:
    sts = ctx.client.get(rt.kind, name, ns)
    revs = _history(ctx, sts)
    to = ctx.args.to_revision
    if to == 0:
        if len(revs) <= 1:
            raise CLIError("no last revision to roll back to")
        to = sorted(revs)[-2]
    if to not in revs:
        raise CLIError(f"unable to find specified revision {to} in history")
    template = _template(revs[to])
    if template == (sts.get("spec") or {}).get("template"):
        ctx.out.write(f"{ref(rt, name)} skipped rollback (current template already matches revision {to})\n")
        return
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": sts["metadata"]["resourceVersion"]},
           {"op": "replace", "path": "/spec/template", "value": template}]
    ctx.client.patch(rt.kind, name, ops, ns, patch_type="json")
    ctx.out.write(f"{ref(rt, name)} rolled back\n")
