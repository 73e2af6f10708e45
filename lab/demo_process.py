"""``make demo RUNTIME=process``: the main job with real processes and real traffic.

1. a 5-node lab, ``fast`` profile, every node on the ``process`` runtime;
2. a Deployment of six ``python3 -m http.server`` bound to their pod IPs, with
   an HTTP readiness probe, behind a Service;
3. ``curl`` (urllib) on the ClusterIP from the host, the pods' own logs
   (``kemu logs``) and their usage (``kemu top``);
4. the node running one replica killed while a client keeps requesting the
   ClusterIP: how many requests failed and when traffic had moved to the
   others, against the profile's detection time;
5. teardown: no process left behind.

Contract: as ``lab.demo``: self-contained, bounded in time, tears down on
failure, exits non-zero if a step fails.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = 6


def get(url: str, timeout: float = 0.5) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
        return r.status


def run(lab: Any, kemu: Callable[..., None], say: Callable[[str], None]) -> None:
    c = lab.client
    say("2. a Deployment of six python3 http.servers behind a Service")
    kemu("create", "namespace", "demo")
    kemu("create", "-f", str(ROOT / "examples" / "workloads" / "web-process.yaml"))

    def available() -> int:
        return (c.get("Deployment", "web", "demo").get("status") or {}).get("availableReplicas") or 0
    lab.wait_for(lambda: available() == REPLICAS, 60, what="the Deployment available")
    kemu("get", "pods", "-n", "demo", "-o", "wide")
    kemu("get", "services", "-n", "demo")

    say("3. real traffic: curl on the ClusterIP, the pods' logs, their usage")
    ip = c.get("Service", "web", "demo")["spec"]["clusterIP"]
    url = f"http://{ip}/"
    codes = [get(url, 2.0) for _ in range(12)]
    print(f"$ curl {url}  (x12) -> HTTP {sorted(set(codes))}")
    pods = [p for p in c.list("Pod", "demo", label_selector="app=web")["items"]]
    kemu("logs", "-n", "demo", pods[0]["metadata"]["name"], "--tail", "3")
    lab.wait_for(lambda: any(lab.layout.nodes.glob("*/var/lib/kemu/stats-summary.json")), 10,
                 what="usage figures")
    kemu("top", "pods", "-n", "demo")

    by_node: dict[str, list[str]] = {}
    for p in pods:
        by_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
    victim = min(by_node, key=lambda n: len(by_node[n]))
    say(f"4. killing {victim} (it runs {', '.join(by_node[victim])}) while a client keeps requesting {url}")
    killed = time.monotonic()
    lab.kill(victim)
    failures: list[float] = []
    sent = 0
    deadline = killed + 30
    while time.monotonic() < deadline:
        sent += 1
        try:
            get(url, 0.5)
        except (urllib.error.URLError, OSError):
            failures.append(time.monotonic() - killed)
        if time.monotonic() - killed > 3 and (not failures or time.monotonic() - killed - failures[-1] > 3):
            break
        time.sleep(0.02)   # the client's request pacing, not synchronisation
    from emulator.profiles import get_profile
    grace = get_profile(lab.config.process_profile).node_monitor_grace_period
    last = f"{failures[-1]:.2f}s" if failures else "never"
    print(f"{sent} requests, {len(failures)} failed; the last failure {last} after the kill "
          f"(the profile's detection time, node-monitor-grace-period: {grace:.1f}s)")
    ok = sum(1 for _ in range(20) if get(url, 2.0) == 200)
    print(f"afterwards: {ok}/20 requests answered by the remaining replicas")
    kemu("get", "pods", "-n", "demo", "-o", "wide")
