"""``kemu bench pod-startup``: pod startup latency, as Kubernetes measures it.

Method: a ``fast``-profile lab of ``--nodes`` nodes. One client creates
``--pods`` pods at ``--rate`` pods/s (pipelined) while watching them. The
default rate, 100/s, is below this 2-core machine's saturation point; past it
(about 150/s with 100 nodes, all on one machine) latency is queueing, which
``machine_cpu_percent_while_creating`` shows. A pod's
startup latency runs from just before its create is sent to the watch event
that first shows it Running. Reported as p50, p90 and p99. Target: p99 at
most 250 ms (Kubernetes' own SLO is 5 s).

``--runtime process``: every node runs real processes; each pod runs
``sleep 3600``. The same run measures the bare cost beside it: the same
command spawned ``--pods`` times with ``subprocess.Popen`` from one process
(and killed), p50/p99 in ``bare_spawn_ms``. Use fewer nodes and pods
(e.g. ``--nodes 10 --pods 200 --rate 20``): they are real processes.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from lab.bench.common import paced_creates, percentile


COMMAND = ["sleep", "3600"]


def _pod(i: int, runtime: str = "fake") -> dict:
    c: dict = {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    if runtime != "fake":
        c["command"] = COMMAND
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i}", "namespace": "default",
                                                            "labels": {"app": "bench"}},
            "spec": {"containers": [c], "terminationGracePeriodSeconds": 0}}


def bare_spawn_ms(n: int) -> dict[str, float]:
    """The same command spawned with subprocess.Popen, n times: the floor a runtime adds to."""
    import subprocess
    import time
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen(COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        lat.append((time.perf_counter() - t0) * 1000)
        p.kill()
        p.wait()
    return {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2)}


def run(nodes: int = 100, pods: int = 1000, rate: float = 100.0, runtime: str = "fake") -> dict[str, Any]:
    from lab.lab import Lab
    bare = bare_spawn_ms(pods) if runtime != "fake" else None
    with tempfile.TemporaryDirectory(prefix="kemu-bench-ps-") as tmp:
        os.environ["KEMU_HOME"] = tmp
        with Lab(nodes, name="bench", profile="fast", make_current=False, runtime=runtime) as lab:
            c = lab.client
            w = c.watch("Pod", "default", resource_version=c.list("Pod", "default")["metadata"]["resourceVersion"])
            import psutil
            psutil.cpu_percent(None)
            cpu: list[float] = []   # the whole machine, over the creation window
            created, running, errors = paced_creates(
                c, w, pods, rate, lambda i: (f"p-{i}", [_pod(i, runtime)]),
                lambda o: (o.get("status") or {}).get("phase") == "Running", 60,
                after_creates=lambda: cpu.append(psutil.cpu_percent(None)))
    lat = [(running[n] - t) * 1000 for n, t in created.items() if n in running]
    out = {"benchmark": "pod-startup", "profile": "fast", "runtime": runtime, "nodes": nodes, "pods": pods,
           "create_rate": rate, "running": len(running), "create_errors": errors,
           "machine_cpu_percent_while_creating": cpu[0],
           "latency_ms": {"p50": round(percentile(lat, 50), 1), "p90": round(percentile(lat, 90), 1),
                          "p99": round(percentile(lat, 99), 1), "max": round(max(lat or [0]), 1)},
           "target_p99_ms": 250, "meets_target": len(running) == pods and percentile(lat, 99) <= 250}
    if bare is not None:
        out["bare_spawn_ms"] = bare   # the floor beside it, measured in this run
    return out


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes, args.pods, args.rate, args.runtime), indent=2))
    return 0
