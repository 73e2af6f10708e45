"""The SLIs that come from the logs: pure functions over time-ordered log records.

Contract: every function takes records as ``lab.report.source`` gives them (dicts
with ``_t``, seconds since the epoch) and returns a dict whose figures carry a
``unit`` and the ``definition`` used (docs/reports.md has the same text).
Percentiles are nearest-rank: the p-th percentile of n sorted samples is the
sample at rank ceil(p/100 * n). Nothing here reads files.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from lab.report.source import Fault

POD_STARTUP = ("From the pod's creation, as the controller that created it logs it (pod_created of a ReplicaSet, "
               "daemon_pod_created, job_pod_created, statefulset_pod_created: on the create's reply, so a few ms "
               "after the apiserver stored it; in logs without pod_created, the owning ReplicaSet's pods_created "
               "batch, the latest at or before the pod started), to the kubelet's container_started (attempt 0) "
               "of the pod's last container, i.e. all containers running as the kubelet observed them. "
               "Kubernetes' pod startup SLI (kubelet_pod_start_sli_duration_seconds); kemu's fake and process "
               "runtimes pull no images, so no pull time is included. A pod logged as created after it started "
               "(the controller's log line lost the race) is left out and counted as unattributed.")
DETECTION = ("From the chaos log's fault_injected of a kill, isolate, partition or pause of a node to the node "
             "lifecycle controller's first node_status_unknown or node_not_ready for that node after it.")
REPLACEMENT = ("From the node lifecycle controller's pod_evicted of a pod to the first container_started "
               "(attempt 0) of a replacement: a pod of the same owner (the same name without its random "
               "suffix, or the same name for a StatefulSet pod) started after the eviction. Each start "
               "replaces one eviction, earliest first.")
PROPAGATION = ("From the EndpointSlice controller's write of a Service's slices (endpointslice_sync with "
               "created, updated or deleted > 0) to the first kube-proxy rules sync (proxy_sync) after it on "
               "each node whose process was up; per write the figure is the slowest node (every node "
               "programmed). Kubernetes' network programming latency, measured from the slice write: the logs "
               "do not record when a pod became Ready.")
SCHEDULING_LOGS = ("Pods bound (the scheduler's 'scheduled' count at scheduler_stopping, summed over its "
                   "restarts) divided by the scheduler's uptime (scheduler_started to scheduler_stopping).")
NODE_FAULTS = ("kill", "isolate", "partition", "pause")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the value at rank ceil(p/100 * n) of the sorted values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(values: list[float], unit: str = "s") -> dict[str, Any]:
    r = lambda v: None if v is None else round(v, 6)   # noqa: E731
    return {"unit": unit, "count": len(values), "p50": r(percentile(values, 50)),
            "p90": r(percentile(values, 90)), "p99": r(percentile(values, 99)),
            "max": r(max(values) if values else None)}


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return str(r.get("namespace") or ""), str(r.get("name") or "")


def owner_of(name: str) -> str:
    return name.rsplit("-", 1)[0] if "-" in name else name


def _starts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "container_started" and r.get("kind", "Pod") == "Pod"
            and int(r.get("attempt") or 0) == 0]


def pod_running_times(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(namespace, pod) → when its last container first started (attempt 0)."""
    first: dict[tuple[str, str, str], float] = {}
    for r in _starts(records):
        first.setdefault((*_key(r), str(r.get("container"))), r["_t"])
    out: dict[tuple[str, str], float] = {}
    for (ns, pod, _c), t in first.items():
        out[(ns, pod)] = max(out.get((ns, pod), t), t)
    return out


def pod_startup(records: list[dict[str, Any]]) -> dict[str, Any]:
    created: dict[tuple[str, str], float] = {}
    batches: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        ev = r.get("event")
        if ev in ("pod_created", "daemon_pod_created", "job_pod_created"):
            created.setdefault(_key(r), r["_t"])
        elif ev == "statefulset_pod_created":
            created.setdefault((str(r.get("namespace") or ""), str(r.get("pod"))), r["_t"])
        elif ev == "pods_created" and int(r.get("count") or 0) > 0:
            batches[_key(r)].append(r["_t"])
    samples: list[dict[str, Any]] = []
    unattributed = 0
    for (ns, pod), running in sorted(pod_running_times(records).items(), key=lambda kv: kv[1]):
        c = created.get((ns, pod))
        if c is None:
            times = batches.get((ns, owner_of(pod)), [])
            before = [t for t in times if t <= running]
            c = before[-1] if before else None
        if c is None or c > running:
            unattributed += 1
            continue
        samples.append({"pod": f"{ns}/{pod}", "created": c, "running": running,
                        "seconds": round(running - c, 6)})
    return {"definition": POD_STARTUP, **summary([s["seconds"] for s in samples]),
            "unattributed": unattributed, "samples": samples}


def node_detection(records: list[dict[str, Any]], faults: list[Fault]) -> dict[str, Any]:
    marks: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in records:
        if r.get("event") in ("node_status_unknown", "node_not_ready") and r.get("kind", "Node") == "Node":
            marks[str(r.get("name"))].append((r["_t"], str(r["event"])))
    events = []
    for f in faults:
        if f.kind not in NODE_FAULTS:
            continue
        for node in f.targets:
            if not node.startswith("node-"):
                continue
            hit = next(((t, ev) for t, ev in marks.get(node, []) if t >= f.start), None)
            events.append({"fault": f.id, "kind": f.kind, "node": node, "injected": f.start,
                           "detected": hit[0] if hit else None, "event": hit[1] if hit else None,
                           "seconds": round(hit[0] - f.start, 6) if hit else None})
    got = [e["seconds"] for e in events if e["seconds"] is not None]
    return {"definition": DETECTION, **summary(got), "undetected": sum(e["seconds"] is None for e in events),
            "events": events}


def eviction_replacement(records: list[dict[str, Any]]) -> dict[str, Any]:
    evictions = [r for r in records if r.get("event") == "pod_evicted"]
    starts = sorted(((r["_t"], *_key(r)) for r in _starts(records)), key=lambda s: s[0])
    evicted_at: dict[tuple[str, str], float] = {}
    for r in evictions:
        evicted_at.setdefault(_key(r), r["_t"])
    first_seen: dict[tuple[str, str], float] = {}
    for t, ns, pod in starts:
        first_seen.setdefault((ns, pod), t)
    # one start per pod incarnation: a pod's first, and a same-name pod's first after its eviction
    first_starts = [(t, *k) for k, t in first_seen.items()]
    for k, te in evicted_at.items():
        again = next((t for t, ns, pod in starts if (ns, pod) == k and t > te), None)
        if again is not None and again != first_seen[k]:
            first_starts.append((again, *k))
    first_starts.sort()
    used: set[int] = set()
    events = []
    for r in evictions:
        ns, pod = _key(r)
        te = r["_t"]
        cands = [i for i, (t, sns, _p) in enumerate(first_starts) if i not in used and t > te and sns == ns]
        pick = next((i for i in cands if first_starts[i][2] == pod),
                    next((i for i in cands if owner_of(first_starts[i][2]) == owner_of(pod)), None))
        rep = first_starts[pick] if pick is not None else None
        if pick is not None:
            used.add(pick)
        events.append({"pod": f"{ns}/{pod}", "node": r.get("nodeName"), "evicted": te,
                       "replacement": f"{rep[1]}/{rep[2]}" if rep else None,
                       "running": rep[0] if rep else None,
                       "seconds": round(rep[0] - te, 6) if rep else None})
    got = [e["seconds"] for e in events if e["seconds"] is not None]
    return {"definition": REPLACEMENT, **summary(got), "unreplaced": sum(e["seconds"] is None for e in events),
            "events": events}


def node_up_windows(records: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """node → [[up, down], ...] from the supervisor's process started / process exited."""
    wins: dict[str, list[list[float]]] = defaultdict(list)
    for r in records:
        if r.get("component") != "supervisor":
            continue
        proc = str(r.get("process") or "")
        if not proc.startswith("node-"):
            continue
        if r.get("event") == "process started":
            wins[proc].append([r["_t"], math.inf])
        elif r.get("event") == "process exited" and wins[proc] and wins[proc][-1][1] == math.inf:
            wins[proc][-1][1] = r["_t"]
    return wins


def _up(wins: list[list[float]] | None, t: float) -> list[float] | None:
    if wins is None:
        return [-math.inf, math.inf]   # no supervisor record: take it as always up
    return next((w for w in wins if w[0] <= t < w[1]), None)


def endpoint_propagation(records: list[dict[str, Any]]) -> dict[str, Any]:
    syncs: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.get("event") == "proxy_sync":
            syncs[str(r.get("node") or r.get("node_name"))].append(r["_t"])
    wins = node_up_windows(records)
    events = []
    for r in records:
        if r.get("event") != "endpointslice_sync":
            continue
        if not any(int(r.get(k) or 0) for k in ("created", "updated", "deleted")):
            continue
        per_node = {}
        for node, ts in syncs.items():
            w = _up(wins.get(node) if wins else None, r["_t"])
            if w is None:
                continue
            nxt = next((t for t in ts if t >= r["_t"]), None)
            if nxt is not None and nxt < w[1]:
                per_node[node] = round(nxt - r["_t"], 6)
        if per_node:
            events.append({"service": "/".join(_key(r)), "written": r["_t"], "nodes": per_node,
                           "seconds": max(per_node.values())})
    return {"definition": PROPAGATION, **summary([e["seconds"] for e in events]), "events": events}


def scheduling_from_logs(records: list[dict[str, Any]]) -> dict[str, Any]:
    started: float | None = None
    uptime, bound = 0.0, 0
    for r in records:
        if r.get("component") != "scheduler":
            continue
        if r.get("event") == "scheduler_started":
            started = r["_t"]
        elif r.get("event") == "scheduler_stopping" and started is not None:
            uptime += r["_t"] - started
            bound += int(r.get("scheduled") or 0)
            started = None
    rate = round(bound / uptime, 6) if uptime > 0 else None
    return {"definition": SCHEDULING_LOGS, "unit": "pods/s", "value": rate, "pods_bound": bound,
            "uptime_s": round(uptime, 6)}


# -- series for the timeline plot -------------------------------------------------
def ready_nodes_series(records: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """A node is Ready from node_registered (or node_ready) until node_not_ready/node_status_unknown."""
    ready: set[str] = set()
    out: list[tuple[float, int]] = []
    for r in records:
        ev, name = r.get("event"), str(r.get("name") or r.get("node") or "")
        if ev in ("node_registered", "node_adopted", "node_ready"):
            ready.add(name)
        elif ev in ("node_not_ready", "node_status_unknown"):
            ready.discard(name)
        else:
            continue
        out.append((r["_t"], len(ready)))
    return out


def running_pods_series(records: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """A pod counts from its first container_started until pod_evicted or pod_deletion_confirmed."""
    running: set[tuple[str, str]] = set()
    gone: set[tuple[str, str]] = set()
    out: list[tuple[float, int]] = []
    for r in records:
        ev, k = r.get("event"), _key(r)
        if ev == "container_started" and k not in running and k not in gone:
            running.add(k)
        elif ev in ("pod_evicted", "pod_deletion_confirmed") and k in running:
            running.discard(k)
            gone.add(k)
        else:
            continue
        out.append((r["_t"], len(running)))
    return out
