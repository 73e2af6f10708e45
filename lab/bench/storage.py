"""``kemu bench storage``: provisioning and binding claims, claims per second and
p99 time from claim to Bound.

Method: a ``fast``-profile lab of ``--nodes`` nodes. Two phases, each with
``--claims`` PersistentVolumeClaims created at ``--rate`` per second
(pipelined) while one watch records when each claim first shows
``status.phase: Bound``:

1. ``standard`` (the default class: ``kemu.io/local-dir``,
   WaitForFirstConsumer). Each claim comes with a pod that uses it, so the
   path is Kubernetes' own: the scheduler picks a node and annotates the
   claim, the provisioner makes a directory on that node and a PV with node
   affinity to it, the binder binds, then the scheduler binds the pod.
2. ``shared`` (``kemu.io/shared-dir``, Immediate): claims alone.

A claim's time runs from just before its create is sent to the watch event
that shows it Bound; throughput is claims / (last Bound - first create).
The issue names no figure to meet; the run prints the numbers and the
machine's CPU while it ran.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from lab.bench.common import paced_creates, percentile


def _claim(name: str, cls: str, mode: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": cls, "accessModes": [mode],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def _pod(name: str, claim: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def _phase(c: Any, prefix: str, claims: int, rate: float, cls: str, mode: str, with_pods: bool,
           timeout: float) -> dict[str, Any]:
    import psutil
    w = c.watch("PersistentVolumeClaim", "default",
                resource_version=c.list("PersistentVolumeClaim", "default", limit=1)["metadata"]["resourceVersion"])

    def requests(i: int) -> tuple[str, list[dict]]:
        name = f"{prefix}-{i}"
        return name, [_claim(name, cls, mode)] + ([_pod(name, name)] if with_pods else [])

    psutil.cpu_percent(None)
    created, bound, errors = paced_creates(c, w, claims, rate, requests,
                                           lambda o: (o.get("status") or {}).get("phase") == "Bound", timeout)
    cpu = psutil.cpu_percent(None)   # the whole machine, over the phase
    w.stop()
    lat = [(bound[n] - t) * 1000 for n, t in created.items() if n in bound]
    span = (max(bound.values()) - min(created.values())) if bound else 0.0
    return {"storage_class": cls, "with_pods": with_pods, "claims": claims, "bound": len(bound),
            "create_errors": errors, "claims_per_s": round(len(bound) / span, 1) if span else 0.0,
            "claim_to_bound_ms": {"p50": round(percentile(lat, 50), 1), "p90": round(percentile(lat, 90), 1),
                                  "p99": round(percentile(lat, 99), 1), "max": round(max(lat or [0]), 1)},
            "machine_cpu_percent": cpu}


def run(nodes: int = 100, claims: int = 1000, rate: float = 100.0, timeout: float = 120.0) -> dict[str, Any]:
    from lab.lab import Lab
    with tempfile.TemporaryDirectory(prefix="kemu-bench-storage-") as tmp:
        os.environ["KEMU_HOME"] = tmp
        with Lab(nodes, name="bench", profile="fast", make_current=False) as lab:
            local = _phase(lab.client, "local", claims, rate, "standard", "ReadWriteOnce", True, timeout)
            shared = _phase(lab.client, "shared", claims, rate, "shared", "ReadWriteMany", False, timeout)
            dirs = sum(1 for _ in lab.layout.nodes.glob("*/var/lib/kemu/storage/*"))
    return {"benchmark": "storage", "profile": "fast", "nodes": nodes, "rate": rate,
            "standard_wffc_with_pods": local, "shared_immediate": shared,
            "local_directories_provisioned": dirs,
            "all_bound": local["bound"] == claims and shared["bound"] == claims}


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes, args.claims, args.rate), indent=2))
    return 0
