"""``kemu bench endpoints``: endpoint propagation, from a pod Ready to every node's proxy rules.

Method: a ``fast``-profile lab of ``--nodes`` nodes. The benchmark creates a
ClusterIP Service (selector ``app=bench-ep``, port 80 -> targetPort 8080) and
waits until every node's kube-proxy table has it (its clusterIP appears in
``<lab>/nodes/<node>/var/lib/kemu/proxy-rules.txt``). It then creates
``--pods`` bare pods of that label, one at a time at ``--rate`` (5) pods/s,
and in one single-threaded loop:

* watches the pods and records, per pod, **when the watch first shows it
  Ready** (the Ready condition's ``lastTransitionTime`` has one-second
  precision, so it is not used) and its ``status.podIP``;
* every ``POLL_INTERVAL`` (10 ms) stats every node's rules file and reads
  those that changed (kube-proxy replaces the file atomically, so a changed
  inode or mtime means a new table), recording per node when a table first
  contains ``--to-destination <podIP>:``.

A pod's propagation latency is the time the *last* node's table was first
seen containing its IP, minus the time its Ready was seen. Reported as p50,
p90, p99 and max across pods. Target: p99 at most 500 ms.

Resolution: a file change is seen at most one poll pass late; the JSON gives
the configured interval and the measured gaps between passes (a pass also
waits for watch events, so gaps can exceed 10 ms under load). Latency cannot
be negative in practice (kube-proxy learns of the pod through the
EndpointSlice controller, after the bench's own watch); it is not clamped.
Every loop is bounded; the lab's context manager stops everything started.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from lab.bench.common import percentile

NAMESPACE = "default"
SERVICE = "bench-ep"
LABELS = {"app": "bench-ep"}
TARGET_PORT = 8080
POLL_INTERVAL = 0.010
TARGET_P99_MS = 500.0


# -- pure bookkeeping ---------------------------------------------------------------
def endpoint_marker(ip: str) -> str:
    """What kube-proxy's rendered table holds for an endpoint: the DNAT target (the colon ends the IP)."""
    return f"--to-destination {ip}:"


class PropagationTracker:
    """Per pod: when Ready was seen; per pod IP and node: when a table containing it was first seen.

    Feed it with ``pod_seen`` (watch events) and ``table_seen`` (a node's rules
    text, first observed at ``t``); read ``latencies()``. No I/O.
    """

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        self.ready_at: dict[str, float] = {}      # pod name -> when Ready was first seen
        self.ip_of: dict[str, str] = {}           # pod name -> pod IP
        self.seen: dict[str, dict[str, float]] = {}   # pod IP -> node -> first time in its table
        self.tables: dict[str, tuple[str, float]] = {}   # node -> (current text, first seen at)

    def pod_seen(self, name: str, ip: str | None, ready: bool, t: float) -> None:
        if ready and name not in self.ready_at:
            self.ready_at[name] = t
        if ip and name not in self.ip_of:
            self.ip_of[name] = ip
            seen = self.seen.setdefault(ip, {})
            marker = endpoint_marker(ip)
            for node, (text, at) in self.tables.items():   # the IP may be in a table already
                if node not in seen and marker in text:
                    seen[node] = at

    def table_seen(self, node: str, text: str, t: float) -> None:
        self.tables[node] = (text, t)
        for ip, seen in self.seen.items():
            if node not in seen and len(seen) < len(self.nodes) and endpoint_marker(ip) in text:
                seen[node] = t

    def everywhere_at(self, name: str) -> float | None:
        ip = self.ip_of.get(name)
        seen = self.seen.get(ip or "", {})
        if ip is None or any(n not in seen for n in self.nodes):
            return None
        return max(seen[n] for n in self.nodes)

    def latencies(self) -> dict[str, float]:
        """Pod name -> seconds from Ready seen to in every node's table (only pods with both)."""
        out = {}
        for name, t in self.ready_at.items():
            done = self.everywhere_at(name)
            if done is not None:
                out[name] = done - t
        return out

    def pending(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.ready_at or self.everywhere_at(n) is None]


def pod_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


# -- objects ------------------------------------------------------------------------
def service() -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"selector": dict(LABELS),
                     "ports": [{"name": "http", "port": 80, "targetPort": TARGET_PORT, "protocol": "TCP"}]}}


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"ep-{i}", "namespace": NAMESPACE, "labels": dict(LABELS)},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "ports": [{"name": "http", "containerPort": TARGET_PORT}],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


# -- I/O ----------------------------------------------------------------------------
class RulesFiles:
    """Stats every node's rules file; returns the text of those that changed since the last pass."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.last: dict[str, tuple[int, int, int]] = {}

    def changed(self) -> dict[str, str]:
        out = {}
        for node, path in self.paths.items():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self.last.get(node) == key:
                continue
            try:
                with open(path) as f:
                    out[node] = f.read()
            except FileNotFoundError:
                continue
            self.last[node] = key
        return out


def run(nodes: int = 100, pods: int = 50, rate: float = 5.0, timeout: float = 60.0) -> dict[str, Any]:
    import psutil

    from lab.lab import Lab
    from node.proxy.proxy import rules_path
    old_home = os.environ.get("KEMU_HOME")
    load_before = [round(x, 2) for x in os.getloadavg()]
    gaps: list[float] = []
    errors: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kemu-bench-ep-") as tmp:
            os.environ["KEMU_HOME"] = tmp
            with Lab(nodes, name="bench", profile="fast", make_current=False) as lab:
                c = lab.client
                names = list(lab.nodes)
                files = RulesFiles({n: rules_path(str(lab.layout.node_root(n))) for n in names})
                tracker = PropagationTracker(names)
                svc = c.create(service(), namespace=NAMESPACE)
                cluster_ip = svc["spec"]["clusterIP"]
                # every proxy has the Service (with no endpoints) before the first pod
                has_svc: set[str] = set()
                deadline = time.monotonic() + timeout
                while len(has_svc) < len(names) and time.monotonic() < deadline:
                    for node, text in files.changed().items():
                        if f"-d {cluster_ip}/32" in text:
                            has_svc.add(node)
                    time.sleep(POLL_INTERVAL)
                service_everywhere = len(has_svc) == len(names)
                rv = c.list("Pod", NAMESPACE, label_selector="app=bench-ep")["metadata"]["resourceVersion"]
                w = c.watch("Pod", NAMESPACE, label_selector="app=bench-ep", resource_version=rv)
                created: list[str] = []
                rids = []
                psutil.cpu_percent(None)
                t0 = time.monotonic()
                last_pass = t0
                end = None
                while True:
                    now = time.monotonic()
                    if len(created) < pods and now >= t0 + len(created) / rate:
                        rids.append(c.send("create", object=pod(len(created)), namespace=NAMESPACE))
                        created.append(f"ep-{len(created)}")
                        if len(created) == pods:
                            end = now + timeout
                    if end is not None and (not tracker.pending(created) or now > end):
                        break
                    # the watch, until the next file pass is due
                    ev = w.next(max(0.0, last_pass + POLL_INTERVAL - time.monotonic()))
                    while ev is not None:
                        o = ev["object"]
                        if ev.get("type") in ("ADDED", "MODIFIED"):
                            tracker.pod_seen(o["metadata"]["name"], (o.get("status") or {}).get("podIP"),
                                             pod_ready(o), time.monotonic())
                        ev = w.next(0)
                    now = time.monotonic()
                    if now >= last_pass + POLL_INTERVAL:
                        gaps.append(now - last_pass)
                        last_pass = now
                        for node, text in files.changed().items():
                            tracker.table_seen(node, text, now)
                cpu = psutil.cpu_percent(None)
                for rid in rids:
                    try:
                        c.wait(rid, timeout=10)
                    except Exception as e:   # reported, never fatal
                        errors.append(str(e))
                w.stop()
    finally:
        if old_home is None:
            os.environ.pop("KEMU_HOME", None)
        else:
            os.environ["KEMU_HOME"] = old_home
    by_pod = tracker.latencies()
    lat_ms = [v * 1000 for v in by_pod.values()]
    slowest = sorted(by_pod.items(), key=lambda kv: -kv[1])[:3]

    def pct(p: float) -> float | None:
        return round(percentile(lat_ms, p), 1) if lat_ms else None

    gaps_ms = [g * 1000 for g in gaps]
    return {"benchmark": "endpoints", "profile": "fast", "nodes": nodes, "pods": pods, "create_rate": rate,
            "service_in_every_table_before_pods": service_everywhere,
            "pods_ready_seen": len(tracker.ready_at), "pods_propagated": len(lat_ms),
            "create_errors": len(errors),
            "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                           "max": round(max(lat_ms), 1) if lat_ms else None},
            "slowest_pods_ms": {n: round(v * 1000, 1) for n, v in slowest},
            "measured_from": "the bench's watch first shows the pod Ready",
            "measured_to": "the last node's proxy-rules.txt first seen containing the pod IP",
            "resolution_ms": {"poll_interval": POLL_INTERVAL * 1000,
                              "poll_gap_p50": round(percentile(gaps_ms, 50), 1) if gaps else None,
                              "poll_gap_p99": round(percentile(gaps_ms, 99), 1) if gaps else None,
                              "poll_gap_max": round(max(gaps_ms), 1) if gaps else None},
            "machine_cpu_percent": cpu,
            "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": len(lat_ms) == pods and (percentile(lat_ms, 99) <= TARGET_P99_MS)}


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes, args.pods, args.rate), indent=2))
    return 0
