"""``kemu bench scheduler``: pods/s from creation to binding.

Method: a real apiserver process (WAL fsynced) holds ``nodes`` Ready Nodes
(32 cpu, 256Gi, enough pods each). The Scheduler runs in its own forked
process, as in a lab. A watcher process watches Pods and records, for each
pod, the first time ``spec.nodeName`` appears. A creator process creates
``pods`` pods (100m cpu, 128Mi each) as fast as pipelining allows, recording
each create's acknowledgement. The rate is pods over the time from the first
create sent to the last binding seen; latency is from a pod's create
acknowledgement to its binding being seen (CLOCK_MONOTONIC is system-wide on
Linux). Target: >= 500 pods/s.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from typing import Any

from lab.bench.common import ApiserverProcess, percentile, run_workers

TARGET_PODS_PER_SECOND = 500


def _node(i: int, pods_per_node: int) -> tuple[dict, dict]:
    meta = {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}",
                                             "topology.kubernetes.io/zone": f"zone-{i % 3}"}}
    status = {"capacity": {"cpu": "32", "memory": "256Gi", "pods": str(pods_per_node)},
              "allocatable": {"cpu": "32", "memory": "256Gi", "pods": str(pods_per_node)},
              "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}}, status


def _setup(_i: int, address: str, nodes: int, pods: int) -> int:
    from emulator.client import Client
    c = Client(address, component="bench-setup", timeout=30)
    per = max(110, -(-pods // nodes) + 10)
    made = c.pipeline([("create", {"object": _node(i, per)[0]}) for i in range(nodes)])
    bad = [r for r in made if not isinstance(r, dict)]
    if bad:
        raise RuntimeError(f"node create failed: {bad[0]}")
    ups = []
    for i, obj in enumerate(made):
        obj["status"] = _node(i, per)[1]
        ups.append(("update", {"object": obj, "subresource": "status"}))
    bad = [r for r in c.pipeline(ups) if not isinstance(r, dict)]
    c.close()
    if bad:
        raise RuntimeError(f"node status failed: {bad[0]}")
    return nodes


def _scheduler_proc(address: str, log_path: str, ready: Any, stop: Any, out: Any) -> None:
    from control.scheduler.scheduler import Scheduler
    from emulator.client import Client
    from emulator.logging import configure
    from emulator.process import die_with_parent
    from emulator.profiles import DEFAULT
    die_with_parent()
    configure("scheduler", path=log_path)
    client = Client(address, component="scheduler", timeout=30)
    s = Scheduler(client, DEFAULT)
    s.start()
    ready.set()
    cpu0 = time.process_time()
    while not stop.is_set():
        s.step(0.05)
    out.put({"scheduled": s.scheduled, "failed_attempts": s.failed_attempts,
             "cpu_seconds": round(time.process_time() - cpu0, 3)})
    client.close()


def _watcher_proc(address: str, pods: int, ready: Any, out: Any, timeout: float) -> None:
    from emulator.client import Client
    from emulator.process import die_with_parent
    die_with_parent()
    c = Client(address, component="bench-watcher", timeout=30)
    w = c.watch("Pod", "default")
    ready.set()
    bound: dict[str, float] = {}
    per_node: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while len(bound) < pods and time.monotonic() < deadline:
        ev = w.next(0.5)
        while ev is not None:
            obj = ev["object"]
            if ev["type"] in ("ADDED", "MODIFIED") and obj.get("spec", {}).get("nodeName"):
                name = obj["metadata"]["name"]
                if name not in bound:
                    bound[name] = time.monotonic()
                    node = obj["spec"]["nodeName"]
                    per_node[node] = per_node.get(node, 0) + 1
            ev = w.next(0)
    out.put((bound, per_node))
    c.close()


def _creator(_i: int, address: str, pods: int) -> dict:
    from emulator.client import Client
    c = Client(address, component="bench-creator", timeout=30)
    c.ping()
    acks: dict[str, float] = {}
    inflight: list[tuple[int, str]] = []
    errors = 0
    t0 = time.monotonic()
    window = 256

    def collect(rid: int, name: str) -> None:
        nonlocal errors
        try:
            c.wait(rid)
            acks[name] = time.monotonic()
        except Exception:
            errors += 1
    for k in range(pods):
        name = f"pod-{k}"
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
               "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                   "requests": {"cpu": "100m", "memory": "128Mi"}}}]}}
        inflight.append((c.send("create", object=obj, namespace="default"), name))
        if len(inflight) >= window:
            collect(*inflight.pop(0))
    for rid, name in inflight:
        collect(rid, name)
    c.close()
    return {"t0": t0, "acks": acks, "errors": errors, "seconds": time.monotonic() - t0}


def run(nodes: int = 100, pods: int = 5000) -> dict[str, Any]:
    api = ApiserverProcess()
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    try:
        api.start()
        run_workers(1, _setup, (api.address, nodes, pods), 120)
        stop = ctx.Event()
        s_ready, w_ready = ctx.Event(), ctx.Event()
        s_out, w_out = ctx.Queue(), ctx.Queue()
        timeout = 60 + pods / 50
        log_path = os.path.join(api.tmp.name, "scheduler.log")
        procs = [ctx.Process(target=_scheduler_proc, args=(api.address, log_path, s_ready, stop, s_out),
                             daemon=True),
                 ctx.Process(target=_watcher_proc, args=(api.address, pods, w_ready, w_out, timeout),
                             daemon=True)]
        for p in procs:
            p.start()
        if not (s_ready.wait(60) and w_ready.wait(60)):
            raise RuntimeError("scheduler or watcher did not start")
        created = run_workers(1, _creator, (api.address, pods), timeout)[0]
        bound, per_node = w_out.get(timeout=timeout + 30)
        stop.set()
        sched = s_out.get(timeout=30)
        t0 = created["t0"]
        acks = created["acks"]
        last = max(bound.values()) if bound else t0
        lat = [(bound[n] - t) * 1000 for n, t in acks.items() if n in bound]
        rate = len(bound) / (last - t0) if bound and last > t0 else 0.0
        return {"benchmark": "scheduler", "nodes": nodes, "pods": pods,
                "pods_bound": len(bound), "create_errors": created["errors"],
                "create_rate": round(len(acks) / created["seconds"], 1),
                "pods_per_second": round(rate, 1),
                "seconds_first_create_to_last_bind": round(last - t0, 3),
                "latency_ms": {"p50": round(percentile(lat, 50), 1), "p99": round(percentile(lat, 99), 1),
                               "max": round(max(lat or [0]), 1)},
                "pods_per_node": {"nodes_used": len(per_node), "min": min(per_node.values(), default=0),
                                  "max": max(per_node.values(), default=0)},
                "scheduler": sched,
                "target_pods_per_second": TARGET_PODS_PER_SECOND,
                "meets_target": len(bound) == pods and rate >= TARGET_PODS_PER_SECOND}
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        api.cleanup()


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes, args.pods), indent=2))
    return 0
