"""Table columns for the workload kinds, as kubectl 1.32 prints them.

Contract: importing this module registers printers for Deployment,
ReplicaSet, DaemonSet, StatefulSet, ControllerRevision and Job (headers and cells as kubectl's
``printers.go``). ``-o wide`` adds CONTAINERS, IMAGES and SELECTOR (not
SELECTOR for StatefulSet).
"""
from __future__ import annotations

from emulator.api.kinds.apps_validation import selector_string
from emulator.cli.printers import Column, age, human_duration, parse_time, register_printer

__all__ = ["job_status", "job_completions"]


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


NAME = Column("NAME", lambda o, now: _md(o).get("name", ""))
AGE = Column("AGE", lambda o, now: age(_md(o).get("creationTimestamp"), now))


def _containers(o: dict) -> list[dict]:
    return ((_spec(o).get("template") or {}).get("spec") or {}).get("containers") or []


WIDE = [
    Column("CONTAINERS", lambda o, now: ",".join(c.get("name", "") for c in _containers(o)) or "<none>"),
    Column("IMAGES", lambda o, now: ",".join(c.get("image", "") for c in _containers(o)) or "<none>"),
    Column("SELECTOR", lambda o, now: selector_string(_spec(o).get("selector")) or "<none>"),
]


def _int(obj: dict, key: str) -> int:
    v = obj.get(key)
    return v if isinstance(v, int) else 0


def _replicas(o: dict) -> int:
    r = _spec(o).get("replicas")
    return r if isinstance(r, int) else 1


register_printer("Deployment", [
    NAME,
    Column("READY", lambda o, now: f"{_int(_status(o), 'readyReplicas')}/{_replicas(o)}"),
    Column("UP-TO-DATE", lambda o, now: str(_int(_status(o), "updatedReplicas"))),
    Column("AVAILABLE", lambda o, now: str(_int(_status(o), "availableReplicas"))),
    AGE,
], WIDE)

register_printer("ReplicaSet", [
    NAME,
    Column("DESIRED", lambda o, now: str(_replicas(o))),
    Column("CURRENT", lambda o, now: str(_int(_status(o), "replicas"))),
    Column("READY", lambda o, now: str(_int(_status(o), "readyReplicas"))),
    AGE,
], WIDE)


def _node_selector(o: dict) -> str:
    sel = ((_spec(o).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


register_printer("DaemonSet", [
    NAME,
    Column("DESIRED", lambda o, now: str(_int(_status(o), "desiredNumberScheduled"))),
    Column("CURRENT", lambda o, now: str(_int(_status(o), "currentNumberScheduled"))),
    Column("READY", lambda o, now: str(_int(_status(o), "numberReady"))),
    Column("UP-TO-DATE", lambda o, now: str(_int(_status(o), "updatedNumberScheduled"))),
    Column("AVAILABLE", lambda o, now: str(_int(_status(o), "numberAvailable"))),
    Column("NODE SELECTOR", lambda o, now: _node_selector(o)),
    AGE,
], WIDE)

register_printer("StatefulSet", [
    NAME,
    Column("READY", lambda o, now: f"{_int(_status(o), 'readyReplicas')}/{_replicas(o)}"),
    AGE,
], WIDE[:2])


# -- jobs ------------------------------------------------------------------------
def _condition(o: dict, typ: str) -> bool:
    return any(c.get("type") == typ and c.get("status") == "True"
               for c in _status(o).get("conditions") or [])


def job_status(job: dict) -> str:
    """The STATUS column of ``kubectl get jobs`` (kubectl 1.28+)."""
    for typ in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if _condition(job, typ):
            return "Failed" if typ == "FailureTarget" else ("Complete" if typ == "SuccessCriteriaMet" else typ)
    return "Running"


def job_completions(job: dict) -> str:
    succeeded = _int(_status(job), "succeeded")
    completions = _spec(job).get("completions")
    if isinstance(completions, int):
        return f"{succeeded}/{completions}"
    parallelism = _spec(job).get("parallelism")
    parallelism = parallelism if isinstance(parallelism, int) else 1
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: dict, now: float) -> str:
    start = parse_time(_status(job).get("startTime"))
    if start is None:
        return ""
    end = parse_time(_status(job).get("completionTime"))
    return human_duration((end if end is not None else now) - start)


register_printer("Job", [
    NAME,
    Column("STATUS", lambda o, now: job_status(o)),
    Column("COMPLETIONS", lambda o, now: job_completions(o)),
    Column("DURATION", _job_duration),
    AGE,
], WIDE)


def _revision_controller(o: dict) -> str:
    for ref in _md(o).get("ownerReferences") or []:
        if ref.get("controller"):
            group = (ref.get("apiVersion") or "").split("/")[0] if "/" in (ref.get("apiVersion") or "") else ""
            kind = (ref.get("kind") or "").lower()
            return f"{kind}.{group}/{ref.get('name', '')}" if group else f"{kind}/{ref.get('name', '')}"
    return "<none>"


register_printer("ControllerRevision", [
    NAME,
    Column("CONTROLLER", lambda o, now: _revision_controller(o)),
    Column("REVISION", lambda o, now: str(o.get("revision", 0))),
    AGE,
])
