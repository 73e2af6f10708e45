"""The kubelet's resource usage summary, as the Summary API (``/stats/summary``) gives it.

Contract: ``summary(node_name, containers)`` builds a dict in the shape of
Kubernetes' ``statsapi.Summary`` (trimmed to what ``kubectl top`` needs, with
one ``time`` for the whole summary instead of one per figure, so that two
summaries compare equal when their figures are): ``node`` with ``cpu.usageNanoCores`` and ``memory.workingSetBytes``
(the sum over the node's running containers), and one entry per pod with its
containers' usage, from the runtime's ``ContainerStatus.cpu_millis`` /
``memory_bytes`` (the fake runtime reports what its annotations say; real
runtimes measure). ``write_summary(root_dir, s, ts)`` writes
``<root>/var/lib/kemu/stats-summary.json``: metrics-server would scrape the
kubelet; ``kemu top`` reads the file instead, so a node's last figures can be
read without the apiserver. The housekeeping pass writes it, every 10 s per
node while pods come and go, so it is written in place (one ``write``, then
``ftruncate`` to the new length) rather than replaced by a rename: on ext4 a
rename over a file (or a truncation to zero) starts writeback of the new data
(``auto_da_alloc``), about 120 us a write against 7 us in place, and it was
9% of a node host's time while pods started. A reader that races a write may
see a torn document: it must treat a ``ValueError`` as "no figures now" (``kemu
top`` skips that node; the memory-pressure chaos reads 0).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

from node.runtime.interface import RUNNING, ContainerStatus

__all__ = ["SUMMARY_FILE", "summary", "write_summary"]

SUMMARY_FILE = os.path.join("var", "lib", "kemu", "stats-summary.json")


def _usage(cpu_millis: int, memory: int) -> dict[str, Any]:
    return {"cpu": {"usageNanoCores": int(cpu_millis) * 1_000_000},
            "memory": {"workingSetBytes": int(memory)}}


def summary(node_name: str, containers: Iterable[ContainerStatus]) -> dict[str, Any]:
    pods: dict[str, dict[str, Any]] = {}
    node_cpu = node_mem = 0
    for c in containers:
        if c.state != RUNNING:
            continue
        entry = pods.setdefault(c.pod_uid, {"podRef": {"name": c.pod_name, "namespace": c.namespace,
                                                       "uid": c.pod_uid},
                                            "containers": [], "_cpu": 0, "_mem": 0})
        entry["containers"].append({"name": c.name, **_usage(c.cpu_millis, c.memory_bytes)})
        entry["_cpu"] += c.cpu_millis
        entry["_mem"] += c.memory_bytes
        node_cpu += c.cpu_millis
        node_mem += c.memory_bytes
    out_pods = []
    for entry in pods.values():
        cpu, mem = entry.pop("_cpu"), entry.pop("_mem")
        out_pods.append({**entry, **_usage(cpu, mem)})
    return {"node": {"nodeName": node_name, **_usage(node_cpu, node_mem)}, "pods": out_pods}


def write_summary(root_dir: str, s: dict[str, Any], ts: str) -> None:
    path = os.path.join(root_dir, SUMMARY_FILE)
    data = json.dumps({**s, "time": ts}).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:   # in place, then cut to length: no rename, no truncation to zero (see the contract)
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
