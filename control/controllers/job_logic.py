"""Pure decisions of the Job controller (NonIndexed Jobs).

After Kubernetes' ``pkg/controller/job/job_controller.go`` (``syncJob``,
``manageJob``, ``pastBackoffLimitOnFailure``), v1.32 behaviour. No I/O.

Contract
--------
* ``job_pod(job)`` builds a pod from the template: ``generateName <job>-``;
  labels ``job-name``, ``batch.kubernetes.io/job-name``, ``controller-uid``,
  ``batch.kubernetes.io/controller-uid`` added to the template's; an
  ownerReference ``kind: Job`` (controller, blockOwnerDeletion).
* ``plan(job, pods, now_wall) -> JobPlan``: counts pods (``active``: not
  finished and not being deleted; ``terminating``: being deleted and not
  finished; ``ready``; ``succeeded``/``failed``: finished pods, never less
  than the counts already in ``status``), then decides:
  - success: ``succeeded >= completions`` (or, without completions, a pod
    succeeded and none is active) -> condition ``SuccessCriteriaMet`` then,
    once no pod is active or terminating, ``Complete`` (reason
    ``CompletionsReached``, message ``Reached expected number of succeeded
    pods``) and ``completionTime``;
  - failure: ``failed > backoffLimit`` (default 6), or with
    ``restartPolicy: OnFailure`` the active pods' container restarts reaching
    the limit (``pastBackoffLimitOnFailure``) -> active pods are deleted,
    condition ``FailureTarget`` then, once no pod remains active or
    terminating, ``Failed``, both with reason ``BackoffLimitExceeded`` and
    message ``Job has reached the specified backoff limit``; ``activeDeadlineSeconds``
    past ``startTime`` does the same with ``DeadlineExceeded`` / ``Job was
    active longer than specified deadline``;
  - otherwise ``wantActive = min(parallelism, completions - succeeded)``
    (``parallelism`` default 1); more pods are created or extra active ones
    deleted (newest first) to reach it.
  - ``spec.suspend``: active pods are deleted and none created; condition
    ``Suspended`` True (``JobSuspended``, ``Job suspended``), and on resume
    False (``JobResumed``, ``Job resumed``) with ``startTime`` reset; a Job
    created suspended has no ``startTime`` until it is resumed.
  - ``startTime`` is set on the first sync; ``event`` names the Event to record.
* A finished Job (``Complete`` or ``Failed`` True) is never acted on again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from emulator.events import rfc3339

DEFAULT_BACKOFF_LIMIT = 6
MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_COMPLETE = "Reached expected number of succeeded pods"


def parse_rfc3339(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def job_pod(job: dict) -> dict:
    md = job["metadata"]
    tpl = (job.get("spec") or {}).get("template") or {}
    tmd = tpl.get("metadata") or {}
    labels = dict(tmd.get("labels") or {})
    labels.update({"job-name": md["name"], "batch.kubernetes.io/job-name": md["name"],
                   "controller-uid": md.get("uid", ""), "batch.kubernetes.io/controller-uid": md.get("uid", "")})
    pod_md: dict[str, Any] = {"generateName": f"{md['name']}-", "namespace": md.get("namespace"),
                              "labels": labels,
                              "ownerReferences": [{"apiVersion": job.get("apiVersion", "batch/v1"), "kind": "Job",
                                                   "name": md["name"], "uid": md.get("uid"),
                                                   "controller": True, "blockOwnerDeletion": True}]}
    if tmd.get("annotations"):
        pod_md["annotations"] = dict(tmd["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": dict(tpl.get("spec") or {})}


def condition(job: dict, type_: str) -> dict | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def finished(job: dict) -> bool:
    return any((condition(job, t) or {}).get("status") == "True" for t in ("Complete", "Failed"))


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _restarts(pod: dict) -> int:
    st = pod.get("status") or {}
    return sum(int(c.get("restartCount") or 0)
               for c in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []))


def past_backoff_limit_on_failure(job: dict, active: list[dict]) -> bool:
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    limit = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    result = sum(_restarts(p) for p in active if _phase(p) in ("Running", "Pending"))
    return result > 0 if limit == 0 else result >= limit


@dataclass
class JobPlan:
    create: int = 0
    delete: list[dict] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    event: tuple[str, str, str] | None = None   # (type, reason, message)


def _cond(type_: str, reason: str, message: str, now: str) -> dict:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": now, "lastTransitionTime": now}


def plan(job: dict, pods: list[dict], now_wall: float) -> JobPlan:
    out = JobPlan()
    if finished(job):
        return out
    spec = job.get("spec") or {}
    old = job.get("status") or {}
    now = rfc3339(now_wall)
    live = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")]
    active = [p for p in live if not p["metadata"].get("deletionTimestamp")]
    terminating = len(live) - len(active)
    succeeded = max(int(old.get("succeeded") or 0), sum(_phase(p) == "Succeeded" for p in pods))
    failed = max(int(old.get("failed") or 0), sum(_phase(p) == "Failed" for p in pods))
    conditions = [dict(c) for c in old.get("conditions") or []]
    start = old.get("startTime") or now
    limit = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    completions = spec.get("completions")
    parallelism = spec.get("parallelism", 1)

    suspend = bool(spec.get("suspend"))
    was_suspended = (condition(job, "Suspended") or {}).get("status") == "True"
    if suspend != was_suspended and (suspend or was_suspended):
        conditions = [c for c in conditions if c.get("type") != "Suspended"]
        if suspend:
            conditions.append(_cond("Suspended", "JobSuspended", "Job suspended", now))
            out.event = ("Normal", "Suspended", "Job suspended")
        else:
            conditions.append({**_cond("Suspended", "JobResumed", "Job resumed", now), "status": "False"})
            out.event = ("Normal", "Resumed", "Job resumed")
            start = now   # the deadline counts from the resumption
    if suspend:
        start = old.get("startTime")   # kept when suspended while running; none if created suspended
    target = next((c for c in conditions if c.get("type") in ("FailureTarget", "SuccessCriteriaMet")
                   and c.get("status") == "True"), None)
    if target is None and not suspend:
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_rfc3339(start)
        if completions is not None and succeeded >= completions or \
                completions is None and succeeded > 0 and not active:
            target = _cond("SuccessCriteriaMet", "CompletionsReached", MSG_COMPLETE, now)
        elif failed > limit or past_backoff_limit_on_failure(job, active):
            target = _cond("FailureTarget", "BackoffLimitExceeded", MSG_BACKOFF, now)
        elif deadline is not None and started is not None and now_wall - started >= deadline:
            target = _cond("FailureTarget", "DeadlineExceeded", MSG_DEADLINE, now)
        if target is not None:
            conditions.append(target)
    if target is not None:
        out.delete = list(active)          # lingering pods go in both cases
        if not active and not terminating:
            if target["type"] == "SuccessCriteriaMet":
                conditions.append(_cond("Complete", target["reason"], target["message"], now))
                out.event = ("Normal", "Completed", "Job completed")
            else:
                conditions.append(_cond("Failed", target["reason"], target["message"], now))
                out.event = ("Warning", target["reason"], target["message"])
        active_count = len(out.delete)
    else:
        want = parallelism if completions is None else min(parallelism, max(0, completions - succeeded))
        if completions is None and succeeded > 0 or suspend:
            want = 0   # after one success no new pods start; a suspended Job runs none
        if len(active) < want:
            out.create = want - len(active)
        elif len(active) > want:
            newest = sorted(active, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                                   p["metadata"]["name"]), reverse=True)
            out.delete = newest[:len(active) - want]
        active_count = len(active)
    status: dict[str, Any] = {**old, "active": active_count - len(out.delete) + out.create,
                              "succeeded": succeeded, "failed": failed, "terminating": terminating,
                              "ready": sum(_ready(p) for p in active), "startTime": start,
                              "conditions": conditions}
    if any(c["type"] == "Complete" for c in conditions):
        status["completionTime"] = now
    for k in ("active", "succeeded", "failed", "terminating"):
        if not status[k]:
            status.pop(k)   # omitempty, as the API returns them
    if not status["conditions"]:
        status.pop("conditions")
    if status["startTime"] is None:
        status.pop("startTime")
    out.status = status
    return out


def status_changed(job: dict, status: dict) -> bool:
    old = job.get("status") or {}
    keys = set(old) | set(status)
    keys.discard("lastProbeTime")
    return any(old.get(k) != status.get(k) for k in keys)
