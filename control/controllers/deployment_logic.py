"""The Deployment controller's decisions (after ``pkg/controller/deployment``), without I/O.

Contract (plain dicts in, plain values out; ``now`` is wall-clock epoch seconds)
-------------------------------------------------------------------------------
* ``resolve_fenceposts(deploy) -> (max_surge, max_unavailable)``: int or
  percent of ``spec.replicas``; surge rounds up, unavailable rounds down; both
  0 makes unavailable 1 (``ResolveFenceposts``).
* ``find_new_and_old(deploy, rss) -> (new_rs | None, old_rss)``: the new RS is
  the oldest whose template equals the Deployment's, ignoring
  ``pod-template-hash`` (``FindNewReplicaSet``).
* ``new_replicaset(deploy, revision, replicas)``: the RS to create, named
  ``<deploy>-<hash>`` with the hash label in selector, template and labels,
  annotations ``deployment.kubernetes.io/revision`` (and desired/max replicas).
* ``rolling_update_plan(deploy, new_rs, old_rss) -> {rs_name: replicas}``:
  ``reconcileNewReplicaSet`` (scale the new RS up within ``replicas +
  maxSurge`` total) and, if that changes nothing, ``reconcileOldReplicaSets``
  (first old RSs' unhealthy pods, then available ones, oldest RS first, while
  keeping ``replicas - maxUnavailable`` available).
* ``is_scaling_event`` / ``scale_plan(deploy, new_rs, old_rss)``: resizing without a rollout
  step (a changed ``spec.replicas``, or a paused Deployment), proportional across active RSs.
* ``recreate_plan(deploy, new_rs, old_rss, old_pods_running) -> (scales, create_new)``.
* ``calculate_status(deploy, all_rss, new_rs, now, paused_or_created_reason)``:
  replicas/updated/ready/available/unavailable counts, observedGeneration and
  the ``Available`` and ``Progressing`` conditions with Kubernetes' reasons
  and messages; ``progress_deadline_at`` says when to look again.
* ``rss_to_cleanup(deploy, old_rss)``: old RSs with 0 replicas (spec and
  status) beyond ``revisionHistoryLimit`` (default 10), oldest revision first.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from control.controllers import controller_utils as cu

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH = cu.POD_TEMPLATE_HASH_LABEL
DEFAULT_PROGRESS_DEADLINE = 600
DEFAULT_HISTORY_LIMIT = 10


def replicas(obj: dict) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def status_int(obj: dict, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def revision(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def scaled_value(v: Any, total: int, round_up: bool) -> int:
    if v is None:
        v = "25%"
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        x = int(s[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(s)


def strategy(deploy: dict) -> dict:
    return (deploy.get("spec") or {}).get("strategy") or {}


def resolve_fenceposts(deploy: dict) -> tuple[int, int]:
    ru = strategy(deploy).get("rollingUpdate") or {}
    desired = replicas(deploy)
    surge = scaled_value(ru.get("maxSurge"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def template_without_hash(template: dict | None) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH in labels:
        del labels[HASH]
        if not labels:
            del t["metadata"]["labels"]
    if "metadata" in t and not t["metadata"]:
        del t["metadata"]
    return t


def _created(rs: dict) -> tuple[float, str]:
    return (cu.parse_time(rs["metadata"].get("creationTimestamp")) or 0.0, rs["metadata"]["name"])


def find_new_and_old(deploy: dict, rss: list[dict]) -> tuple[dict | None, list[dict]]:
    want = template_without_hash((deploy.get("spec") or {}).get("template"))
    new = None
    for rs in sorted(rss, key=_created):
        if template_without_hash((rs.get("spec") or {}).get("template")) == want:
            new = rs
            break
    return new, [rs for rs in rss if rs is not new]


def new_replicaset(deploy: dict, rev: int, count: int) -> dict:
    md, spec = deploy["metadata"], deploy.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    h = cu.compute_hash(template, (deploy.get("status") or {}).get("collisionCount"))
    template.setdefault("metadata", {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), HASH: h}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH: h}
    surge, _ = resolve_fenceposts(deploy)
    annotations = {k: v for k, v in (md.get("annotations") or {}).items()
                   if k not in (REVISION, "kubectl.kubernetes.io/last-applied-configuration")}
    annotations.update({REVISION: str(rev), DESIRED_REPLICAS: str(replicas(deploy)),
                        MAX_REPLICAS: str(replicas(deploy) + (surge if is_rolling(deploy) else 0))})
    rs_spec: dict = {"replicas": count, "selector": selector, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{md['name']}-{h}", "namespace": md.get("namespace") or "default",
                         "labels": dict(template["metadata"]["labels"]), "annotations": annotations,
                         "ownerReferences": [cu.owner_ref(deploy, "Deployment")]},
            "spec": rs_spec}


def is_rolling(deploy: dict) -> bool:
    return strategy(deploy).get("type", "RollingUpdate") != "Recreate"


def rolling_update_plan(deploy: dict, new_rs: dict | None, old_rss: list[dict]) -> dict[str, int]:
    desired = replicas(deploy)
    surge, max_unavailable = resolve_fenceposts(deploy)
    all_rss = old_rss + ([new_rs] if new_rs else [])
    plan: dict[str, int] = {}
    if new_rs is not None:
        cur = replicas(new_rs)
        if cur > desired:
            plan[new_rs["metadata"]["name"]] = desired
        elif cur < desired:
            total = sum(replicas(r) for r in all_rss)
            room = desired + surge - total
            if room > 0:
                plan[new_rs["metadata"]["name"]] = cur + min(room, desired - cur)
        if plan:
            return plan
    old_count = sum(replicas(r) for r in old_rss)
    if old_count == 0:
        return plan
    all_count = sum(replicas(r) for r in all_rss)
    min_available = desired - max_unavailable
    new_unavailable = (replicas(new_rs) - status_int(new_rs, "availableReplicas")) if new_rs else 0
    max_scale_down = all_count - min_available - new_unavailable
    if max_scale_down <= 0:
        return plan
    olds = sorted([r for r in old_rss if replicas(r) > 0], key=_created)
    current = {r["metadata"]["name"]: replicas(r) for r in olds}
    cleaned = 0
    for r in olds:   # cleanupUnhealthyReplicas
        if cleaned >= max_scale_down:
            break
        name = r["metadata"]["name"]
        unhealthy = current[name] - status_int(r, "availableReplicas")
        if unhealthy <= 0:
            continue
        down = min(unhealthy, max_scale_down - cleaned)
        current[name] -= down
        plan[name] = current[name]
        cleaned += down
    available = sum(status_int(r, "availableReplicas") for r in all_rss)
    if available > min_available:   # scaleDownOldReplicaSetsForRollingUpdate
        remaining = min(available - min_available, max_scale_down - cleaned)
        for r in olds:
            if remaining <= 0:
                break
            name = r["metadata"]["name"]
            down = min(current[name], remaining)
            if down > 0:
                current[name] -= down
                plan[name] = current[name]
                remaining -= down
    return plan


def recreate_plan(deploy: dict, new_rs: dict | None, old_rss: list[dict],
                  old_pods_running: bool) -> tuple[dict[str, int], bool]:
    """(scale changes, whether to create the new RS now)."""
    downs = {r["metadata"]["name"]: 0 for r in old_rss if replicas(r) > 0}
    if downs:
        return downs, False
    if old_pods_running:
        return {}, False
    if new_rs is None:
        return {}, True
    if replicas(new_rs) != replicas(deploy):
        return {new_rs["metadata"]["name"]: replicas(deploy)}, False
    return {}, False


def _annotation_int(rs: dict, key: str) -> int | None:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {})[key])
    except (KeyError, ValueError, TypeError):
        return None


def is_scaling_event(deploy: dict, new_rs: dict | None, old_rss: list[dict]) -> bool:
    """An active RS was sized for another ``spec.replicas`` (its desired-replicas annotation)."""
    for rs in old_rss + ([new_rs] if new_rs else []):
        if replicas(rs) > 0:
            desired = _annotation_int(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas(deploy):
                return True
    return False


def scale_plan(deploy: dict, new_rs: dict | None, old_rss: list[dict]) -> dict[str, int]:
    """Kubernetes' ``scale()``: a scaling event (or a paused Deployment) resizes RSs without a rollout
    step. One active RS (or else the newest) gets ``spec.replicas``; with several active RSs of a
    rolling update, the change is spread in proportion to their sizes (``GetProportion``). Every
    active RS is listed, so its desired-replicas annotation gets refreshed."""
    all_rss = old_rss + ([new_rs] if new_rs else [])
    active = [r for r in all_rss if replicas(r) > 0]
    desired = replicas(deploy)
    if len(active) <= 1:
        target = active[0] if active else (new_rs or (max(all_rss, key=_created) if all_rss else None))
        return {} if target is None else {target["metadata"]["name"]: desired}
    if new_rs is not None and replicas(new_rs) == desired and \
            status_int(new_rs, "availableReplicas") == desired:   # IsSaturated
        return {r["metadata"]["name"]: 0 for r in old_rss if replicas(r) > 0}
    if not is_rolling(deploy):
        return {}
    surge, _ = resolve_fenceposts(deploy)
    allowed = desired + surge if desired > 0 else 0
    to_add = allowed - sum(replicas(r) for r in active)
    if to_add > 0:
        order = sorted(active, key=lambda r: (-replicas(r), -_created(r)[0], r["metadata"]["name"]))
    else:
        order = sorted(active, key=lambda r: (replicas(r), _created(r)[0], r["metadata"]["name"]))
    sizes = {r["metadata"]["name"]: replicas(r) for r in active}
    added = 0
    if to_add != 0:
        for r in order:
            name = r["metadata"]["name"]
            if desired == 0:
                fraction = -replicas(r)
            else:
                annotated = _annotation_int(r, MAX_REPLICAS) or int((deploy.get("status") or {}).get("replicas") or 0)
                fraction = (round(replicas(r) * (desired + surge) / annotated) - replicas(r)) if annotated else 0
            left = to_add - added
            step = min(fraction, left) if to_add > 0 else max(fraction, left)
            sizes[name] += step
            added += step
        first = order[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)   # the leftover goes to the largest (or smallest)
    return {n: max(0, v) for n, v in sizes.items()}


def _condition(status: dict, typ: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def set_condition(status: dict, typ: str, value: str, reason: str, message: str, now: float) -> None:
    stamp = cu.format_time(now)
    conds = [c for c in status.get("conditions") or [] if c.get("type") != typ]
    cur = _condition(status, typ)
    if cur is not None and cur.get("status") == value and cur.get("reason") == reason:
        new = {**cur, "message": message}
        if typ == "Progressing" and reason != "NewReplicaSetAvailable":
            new["lastUpdateTime"] = stamp
    else:
        new = {"type": typ, "status": value, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
               "reason": reason, "message": message}
        if cur is not None and cur.get("status") == value:
            new["lastTransitionTime"] = cur.get("lastTransitionTime", stamp)
    conds.append(new)
    conds.sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(c.get("type"), 2))
    status["conditions"] = conds


def progress_deadline(deploy: dict) -> int | None:
    v = (deploy.get("spec") or {}).get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    return None if v is None else int(v)


def calculate_status(deploy: dict, all_rss: list[dict], new_rs: dict | None, now: float,
                     reason: str | None = None) -> tuple[dict, float | None]:
    """The new status, and the wall time to look again for the progress deadline (or None).

    ``reason``: ``NewReplicaSetCreated`` or ``FoundNewReplicaSet`` when this sync
    created or first found the new RS."""
    old = deploy.get("status") or {}
    desired = replicas(deploy)
    _, max_unavailable = resolve_fenceposts(deploy)
    s: dict = {k: v for k, v in old.items() if k == "collisionCount"}
    s["observedGeneration"] = deploy["metadata"].get("generation", 1)
    s["replicas"] = sum(status_int(r, "replicas") for r in all_rss)
    s["updatedReplicas"] = status_int(new_rs, "replicas") if new_rs else 0
    s["readyReplicas"] = sum(status_int(r, "readyReplicas") for r in all_rss)
    s["availableReplicas"] = sum(status_int(r, "availableReplicas") for r in all_rss)
    s["unavailableReplicas"] = max(0, sum(replicas(r) for r in all_rss) - s["availableReplicas"])
    s["conditions"] = copy.deepcopy(old.get("conditions") or [])
    if s["availableReplicas"] >= desired - max_unavailable:
        set_condition(s, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
    else:
        set_condition(s, "Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.", now)
    rs_name = new_rs["metadata"]["name"] if new_rs else ""
    deadline = progress_deadline(deploy)
    if (deploy.get("spec") or {}).get("paused"):
        set_condition(s, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now)
        return s, None
    cur = _condition(s, "Progressing")
    if cur is not None and cur.get("reason") == "DeploymentPaused":
        set_condition(s, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", now)
        cur = _condition(s, "Progressing")
    complete = (s["updatedReplicas"] == desired and s["replicas"] == desired
                and s["availableReplicas"] == desired)
    if deadline is None:
        return s, None
    if complete and new_rs is not None:
        set_condition(s, "Progressing", "True", "NewReplicaSetAvailable",
                      f'ReplicaSet "{rs_name}" has successfully progressed.', now)
        return s, None
    if reason == "NewReplicaSetCreated":
        set_condition(s, "Progressing", "True", reason, f'Created new replica set "{rs_name}"', now)
    elif reason == "FoundNewReplicaSet":
        set_condition(s, "Progressing", "True", reason, f'Found new replica set "{rs_name}"', now)
    elif _progressing(old, s):
        set_condition(s, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', now)
    cur = _condition(s, "Progressing")
    if cur is None:
        return s, None
    if cur.get("reason") in ("ProgressDeadlineExceeded", "NewReplicaSetAvailable"):
        return s, None
    last = cu.parse_time(cur.get("lastUpdateTime")) or now
    if last + deadline < now:
        set_condition(s, "Progressing", "False", "ProgressDeadlineExceeded",
                      f'ReplicaSet "{rs_name}" has timed out progressing.', now)
        return s, None
    return s, last + deadline + 1.0


def _progressing(old: dict, new: dict) -> bool:
    """DeploymentProgressing: more updated/ready/available pods, or fewer old ones."""
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = new["replicas"] - new["updatedReplicas"]
    return (new["updatedReplicas"] > int(old.get("updatedReplicas") or 0) or new_old < old_old
            or new["readyReplicas"] > int(old.get("readyReplicas") or 0)
            or new["availableReplicas"] > int(old.get("availableReplicas") or 0))


def is_complete(deploy: dict, status: dict) -> bool:
    desired = replicas(deploy)
    return (status.get("updatedReplicas") == desired and status.get("replicas") == desired
            and status.get("availableReplicas") == desired
            and status.get("observedGeneration", 0) >= deploy["metadata"].get("generation", 1))


def rss_to_cleanup(deploy: dict, old_rss: list[dict]) -> list[dict]:
    limit = (deploy.get("spec") or {}).get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT)
    if limit is None:
        return []
    idle = [r for r in old_rss if replicas(r) == 0 and status_int(r, "replicas") == 0
            and not r["metadata"].get("deletionTimestamp")]
    extra = len(old_rss) - int(limit)
    if extra <= 0:
        return []
    idle.sort(key=lambda r: (revision(r), _created(r)))
    return idle[:extra]


def status_differs(old: dict, new: dict) -> bool:
    def strip(s: dict) -> dict:
        return {**s, "conditions": [{k: v for k, v in c.items() if k != "lastUpdateTime"}
                                    for c in s.get("conditions") or []]}
    return strip(old or {}) != strip(new)
