"""Pure decisions of the DaemonSet controller.

After Kubernetes' ``pkg/controller/daemon`` (``daemon_controller.go``:
``nodeShouldRunDaemonPod``, ``podsShouldBeOnNode``, ``manage``,
``updateDaemonSetStatus``; ``util/daemonset_util.go``: ``AddOrUpdateDaemonPodTolerations``,
``ReplaceDaemonSetPodNodeNameNodeAffinity``). No I/O: plain dicts in, plans out.

Contract
--------
* ``daemon_pod_template(ds)`` is the DaemonSet's pod template with the
  tolerations the controller adds to every daemon pod (``not-ready`` and
  ``unreachable`` NoExecute without tolerationSeconds; ``disk-pressure``,
  ``memory-pressure``, ``pid-pressure``, ``unschedulable`` NoSchedule; and
  ``network-unavailable`` NoSchedule for hostNetwork pods), plus the labels
  ``controller-revision-hash`` (a hash of the template) and
  ``pod-template-generation``.
* ``node_should_run(ds, node) -> (should_run, should_continue_running)``: the
  node must match ``spec.template.spec.nodeSelector`` and the template's
  required node affinity; a NoSchedule/NoExecute taint the daemon pod does
  not tolerate means "don't run" and an untolerated NoExecute taint also
  means "don't keep running".
* ``new_daemon_pod(ds, node_name)`` builds the pod: ``generateName
  <ds>-``, ownerReferences to the DaemonSet (controller, blockOwnerDeletion),
  node affinity ``matchFields metadata.name In [node]`` (Kubernetes' way since
  1.12) and, so that no scheduler is needed, ``spec.nodeName`` too.
* ``plan(ds, nodes, pods) -> Plan``: which nodes get a pod, which pods are
  deleted (duplicates beyond the oldest, failed pods, pods on nodes that should
  not run them or that no longer exist, and outdated pods under RollingUpdate
  within ``maxUnavailable``), and the status the DaemonSet should report.
  Pods being deleted are ignored (they neither count nor block).
  ``numberAvailable`` counts pods Ready for ``minReadySeconds`` (by the
  Ready condition's ``lastTransitionTime``); the rolling update's budget uses
  readiness alone.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any

from control.scheduler.filters import match_node_selector_terms, tolerated

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

DAEMON_TOLERATIONS: tuple[dict, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


def template_hash(ds: dict) -> str:
    tpl = (ds.get("spec") or {}).get("template") or {}
    digest = hashlib.sha256(json.dumps(tpl, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:10]


def _add_tolerations(existing: list[dict], extra: list[dict]) -> list[dict]:
    out = list(existing)
    for t in extra:
        if not any(e.get("key") == t["key"] and e.get("effect") == t["effect"]
                   and (e.get("operator") or "Equal") == "Exists" and "tolerationSeconds" not in e for e in out):
            out.append(dict(t))
    return out


def daemon_pod_template(ds: dict) -> dict:
    tpl = (ds.get("spec") or {}).get("template") or {}
    spec = dict(tpl.get("spec") or {})
    extra = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    spec["tolerations"] = _add_tolerations(spec.get("tolerations") or [], extra)
    md = dict(tpl.get("metadata") or {})
    labels = dict(md.get("labels") or {})
    labels[REVISION_LABEL] = template_hash(ds)
    labels[GENERATION_LABEL] = str((ds.get("metadata") or {}).get("generation", 1))
    md["labels"] = labels
    return {"metadata": md, "spec": spec}


def _node_matches(spec: dict, node: dict) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    name = node["metadata"]["name"]
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms is not None and not match_node_selector_terms(terms, labels, name):
        return False
    return True


def node_should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(shouldRun, shouldContinueRunning), as ``NodeShouldRunDaemonPod`` decides them."""
    spec = daemon_pod_template(ds)["spec"]
    if not _node_matches(spec, node):
        return False, False
    tolerations = spec.get("tolerations") or []
    run = keep = True
    for taint in (node.get("spec") or {}).get("taints") or []:
        effect = taint.get("effect")
        if effect not in ("NoSchedule", "NoExecute") or tolerated(tolerations, taint):
            continue
        run = False
        if effect == "NoExecute":
            keep = False
    return run, keep


def new_daemon_pod(ds: dict, node_name: str) -> dict:
    md = ds["metadata"]
    tpl = daemon_pod_template(ds)
    spec = dict(tpl["spec"])
    affinity = dict(spec.get("affinity") or {})
    affinity["nodeAffinity"] = {**(affinity.get("nodeAffinity") or {}),
                                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                    {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                      "values": [node_name]}]}]}}
    spec["affinity"] = affinity
    spec["nodeName"] = node_name
    pod_md: dict[str, Any] = {"generateName": f"{md['name']}-", "namespace": md.get("namespace"),
                              "labels": tpl["metadata"]["labels"],
                              "ownerReferences": [{"apiVersion": ds.get("apiVersion", "apps/v1"),
                                                   "kind": "DaemonSet", "name": md["name"], "uid": md.get("uid"),
                                                   "controller": True, "blockOwnerDeletion": True}]}
    if tpl["metadata"].get("annotations"):
        pod_md["annotations"] = dict(tpl["metadata"]["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": spec}


def is_owned_by(pod: dict, uid: str | None) -> bool:
    return any(r.get("controller") and r.get("uid") == uid
               for r in (pod.get("metadata") or {}).get("ownerReferences") or [])


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_available(pod: dict, min_ready_seconds: int, now_wall: float | None) -> bool:
    """Ready for at least ``minReadySeconds`` (by the Ready condition's lastTransitionTime)."""
    if not pod_ready(pod):
        return False
    if not min_ready_seconds or now_wall is None:
        return True
    cond = next(c for c in pod["status"]["conditions"] if c.get("type") == "Ready")
    since = _parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now_wall


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def _creation_key(pod: dict) -> tuple[str, str]:
    md = pod["metadata"]
    return (md.get("creationTimestamp") or "", md["name"])


def _max_unavailable(ds: dict, desired: int) -> int:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    value: Any = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        try:
            return max(1, math.ceil(desired * int(value[:-1]) / 100)) if desired else 0
        except ValueError:
            return 1
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 1


@dataclass
class Plan:
    create_on: list[str] = field(default_factory=list)        # node names
    delete: list[dict] = field(default_factory=list)          # pods
    status: dict[str, Any] = field(default_factory=dict)


def plan(ds: dict, nodes: list[dict], pods: list[dict], now_wall: float | None = None) -> Plan:
    """Kubernetes' ``manage`` + ``rollingUpdate`` + ``updateDaemonSetStatus`` for one DaemonSet.

    ``now_wall`` (epoch seconds) is needed only for ``minReadySeconds``; without it a
    Ready pod counts as available at once."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    uid = ds["metadata"].get("uid")
    current_hash = template_hash(ds)
    by_node: dict[str, list[dict]] = {}
    for p in pods:
        if not is_owned_by(p, uid) or p["metadata"].get("deletionTimestamp"):
            continue
        by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
    out = Plan()
    desired = current = misscheduled = ready = available = updated = 0
    outdated: list[dict] = []
    unavailable = 0
    node_names = set()
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        node_names.add(name)
        run, keep = node_should_run(ds, node)
        have = sorted(by_node.get(name, []), key=_creation_key)
        alive = [p for p in have if (p.get("status") or {}).get("phase") != "Failed"]
        failed = [p for p in have if (p.get("status") or {}).get("phase") == "Failed"]
        if run:
            desired += 1
        if have and not run:
            misscheduled += 1
        if run and not alive:
            out.create_on.append(name)
            out.delete.extend(failed)
            unavailable += 1
            continue
        if (run or keep) and alive:
            out.delete.extend(failed + alive[1:])
            pod = alive[0]
            if run:
                current += 1
                is_ready = pod_ready(pod)
                ready += is_ready
                available += pod_available(pod, min_ready, now_wall)
                unavailable += not is_ready
                if pod["metadata"].get("labels", {}).get(REVISION_LABEL) == current_hash:
                    updated += 1
                else:
                    outdated.append(pod)
            continue
        out.delete.extend(have)   # should not keep running here
    for node_name, have in sorted(by_node.items()):
        if node_name not in node_names:
            out.delete.extend(have)   # the node is gone (or the pod was never bound)
    strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if strategy == "RollingUpdate":
        budget = _max_unavailable(ds, desired) - unavailable
        for pod in sorted(outdated, key=lambda p: (pod_ready(p), _creation_key(p))):
            if budget <= 0 and pod_ready(pod):
                break
            out.delete.append(pod)
            if pod_ready(pod):
                budget -= 1
    out.status = {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
                  "numberMisscheduled": misscheduled, "numberReady": ready, "numberAvailable": available,
                  "numberUnavailable": max(0, desired - available), "updatedNumberScheduled": updated,
                  "observedGeneration": ds["metadata"].get("generation", 1)}
    return out


def status_changed(ds: dict, status: dict) -> bool:
    old = ds.get("status") or {}
    return any(old.get(k, 0) != v for k, v in status.items())
