"""``make demo`` / ``kemu demo``: the main job on the embedded default
(``make demo RUNTIME=process``: the same story with real processes, ``lab.demo_process``).

1. a 10-node lab with the ``fast`` profile;
2. manifests applied, a Deployment behind a Service, and the Kubernetes
   tutorial's StatefulSet whose pods each claim a local volume (the default
   StorageClass provisions a directory on the pod's node);
3. the node failure as a chaos scenario (``lab.chaos.scenario_run`` on this
   lab): the node process that runs the StatefulSet's web-0 killed, with
   probes for its detection (Ready=Unknown), the evictions in the log and the
   Deployment whole again on the other nodes; a verdict and a run directory;
4. the unreachable taint, the EndpointSlice and a proxy table without the
   dead node's pods, and DNS still answering; web-0 stuck Terminating (a
   StatefulSet never runs two of one ordinal), force-deleted, recreated, and
   Pending because its volume lives on the dead node, the scheduler saying so;
5. a short timeline built from the logs;
6. teardown.

Contract: self-contained (its own KEMU_HOME in a temporary directory), bounded
in time, tears everything down even on failure, exits non-zero if a step fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = 12


def resolve(port: int) -> str:
    from control.dns.server import query
    answer = query("127.0.0.1", port, "web.demo.svc.cluster.local")
    return ", ".join(str(r.rdata) for r in answer.rr) or "(no answer)"


def say(msg: str) -> None:
    print(f"\n=== {msg}", flush=True)


def kemu(*args: str) -> None:
    print(f"$ kemu {' '.join(args)}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "lab.cli", *args], cwd=ROOT)
    if rc != 0:
        raise RuntimeError(f"kemu {' '.join(args)} failed with exit code {rc}")


def node_failure_scenario(victim: str) -> dict:
    """The demo's story as a chaos scenario (``docs/chaos.md``): kill ``victim`` for good."""
    deployment = {"type": "k8s", "kind": "Deployment", "namespace": "demo", "resourceName": "web",
                  "condition": f"status.availableReplicas>={REPLICAS}"}
    return {
        "name": "demo-node-failure", "duration": "90s",
        "faults": [{"at": "0s", "kind": "kill", "target": victim, "params": {"no-restart": "true"}}],
        "probes": [
            {"name": "web-available", "mode": "sot", **deployment},
            {"name": "node-detected", "type": "k8s", "mode": "onchaos", "kind": "Node", "resourceName": victim,
             "condition": "status.conditions[type=Ready].status==Unknown", "retries": 60, "interval": "250ms"},
            {"name": "kemu-get-answers", "type": "cmd", "mode": "continuous", "command": ["kemu", "get", "nodes"],
             "expectOutput": victim, "timeout": "10s", "interval": "2s"},
            {"name": "pods-evicted", "type": "log", "mode": "eot", "component": "controller-manager",
             "event": "pod_evicted", "match": {"nodeName": victim}, "retries": 60, "interval": "500ms"},
            {"name": "replicas-replaced", "type": "k8s", "mode": "eot", "kind": "Pod", "namespace": "demo",
             "selector": "app=web", "condition": f"spec.nodeName!={victim}", "retries": 60, "interval": "500ms"},
            {"name": "web-whole-again", "mode": "eot", **deployment, "retries": 60, "interval": "500ms"},
        ]}


def run_node_failure(lab: object, victim: str) -> dict:
    from lab.chaos.scenario import parse_scenario
    from lab.chaos.scenario_run import run_scenario
    sc = parse_scenario(node_failure_scenario(victim), ROOT)
    out = Path(lab.layout.root) / "runs" / "node-failure"   # type: ignore[attr-defined]
    return run_scenario(sc, out, lab=lab, say=lambda m: print(m, flush=True))


def main(runtime: str = "fake") -> int:
    from lab.lab import Lab, LabError
    if runtime not in ("fake", "process"):
        print(f'demo: unsupported runtime "{runtime}"; use fake or process', file=sys.stderr)
        return 2
    if runtime != "fake":
        return main_real(runtime)
    with tempfile.TemporaryDirectory(prefix="kemu-demo-") as home:
        os.environ["KEMU_HOME"] = home
        os.environ.pop("KEMU_SERVER", None)
        say("1. a 10-node lab, fast profile")
        t0 = time.monotonic()
        lab = Lab(10, name="demo", profile="fast", zones="3")
        try:
            lab.up()
            print(f"10 nodes Ready in {time.monotonic() - t0:.1f}s; lab directory {lab.layout.root}")
            kemu("get", "nodes")

            say("2. manifests, and a Deployment of 12 behind a Service")
            kemu("apply", "-f", str(ROOT / "examples"))
            kemu("create", "-f", str(ROOT / "examples" / "workloads" / "web.yaml"))
            c = lab.client

            def web_pods() -> list[dict]:
                return [p for p in c.list("Pod", "demo", label_selector="app=web")["items"]
                        if not p["metadata"].get("deletionTimestamp")]

            def available() -> int:
                d = c.get("Deployment", "web", "demo")
                return (d.get("status") or {}).get("availableReplicas") or 0
            kemu("apply", "-f", str(ROOT / "examples" / "storage" / "web.yaml"))

            def sts_ready() -> int:
                return (c.get("StatefulSet", "web", "default").get("status") or {}).get("readyReplicas") or 0
            lab.wait_for(lambda: available() == REPLICAS, 30, what="the Deployment available")
            lab.wait_for(lambda: sts_ready() == 2, 30, what="the StatefulSet web ready")
            kemu("get", "deployments", "-n", "demo")
            kemu("get", "statefulsets,pods", "-l", "app=nginx", "-o", "wide")
            kemu("get", "pv,pvc,sc")
            kemu("get", "services", "-n", "demo")
            kemu("get", "pods", "-n", "demo", "-l", "app=web", "-o", "wide")
            svc_ip = c.get("Service", "web", "demo")["spec"]["clusterIP"]
            dns_port = int(lab.dns_address.split()[0].rsplit(":", 1)[1])
            print(f"\nDNS: web.demo.svc.cluster.local -> {resolve(dns_port)}  (ClusterIP {svc_ip})")

            by_node: dict[str, list[str]] = {}
            for p in web_pods():
                by_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
            victim = c.get("Pod", "web-0", "default")["spec"]["nodeName"]
            by_node.setdefault(victim, [])
            witness = next(n for n in lab.nodes if n != victim)
            lost_ips = {p["status"]["podIP"] for p in web_pods() if p["spec"]["nodeName"] == victim}
            say(f"3. the node-failure scenario: {victim} killed (it runs the StatefulSet's web-0, whose "
                f"volume is a directory on it, and {len(by_node[victim])} of the Deployment's pods)")
            killed_at = time.monotonic()
            result = run_node_failure(lab, victim)
            if result["verdict"] != "pass":
                raise RuntimeError(f"the node-failure scenario failed: see {result['run_dir']}/result.json")

            say("4. the taint, the endpoints, the proxy, DNS and the StatefulSet")
            kemu("get", "nodes")
            taints = lab.wait_for(lambda: c.get("Node", victim)["spec"].get("taints"), 10, what="taints")
            print("taints: " + ", ".join(f"{t['key']}:{t['effect']}" for t in taints))
            kemu("get", "pods", "-n", "demo", "-l", "app=web", "-o", "wide")

            def endpoints() -> set[str]:
                out = set()
                for sl in c.list("EndpointSlice", "demo", label_selector="kubernetes.io/service-name=web")["items"]:
                    for ep in sl.get("endpoints") or []:
                        if (ep.get("conditions") or {}).get("ready"):
                            out.update(ep["addresses"])
                return out
            lab.wait_for(lambda: len(endpoints()) == REPLICAS and not endpoints() & lost_ips, 10,
                         what="the EndpointSlice to drop the dead node's pods")
            print(f"EndpointSlice: {REPLICAS} ready endpoints, none on {victim}")
            rules = lab.layout.node_root(witness) / "var" / "lib" / "kemu" / "proxy-rules.txt"
            lab.wait_for(lambda: not any(f"{ip}:" in rules.read_text() for ip in lost_ips), 10,
                         what=f"{witness}'s proxy table to drop them")
            print(f"\n{witness}'s proxy table (kemu proxy rules {witness}):")
            kemu("proxy", "rules", witness)
            print(f"DNS still answers: web.demo.svc.cluster.local -> {resolve(dns_port)}")

            lab.wait_for(lambda: c.get("Pod", "web-0", "default")["metadata"].get("deletionTimestamp"), 30,
                         what="web-0 evicted")
            print("\nweb-0 was evicted with its node but stays Terminating: its kubelet is gone, and a "
                  "StatefulSet\nnever runs two web-0 at once. As Kubernetes' docs advise, force-delete it:")
            kemu("delete", "pod", "web-0", "--grace-period=0", "--force")

            def web0_why() -> str:
                p = c.get("Pod", "web-0", "default")
                if p["spec"].get("nodeName"):
                    return ""
                return next((x.get("message") or "" for x in (p.get("status") or {}).get("conditions") or []
                             if x["type"] == "PodScheduled" and x["status"] == "False"), "")
            why = lab.wait_for(lambda: "volume node affinity conflict" in web0_why() and web0_why(), 30,
                               what="web-0 recreated and Pending for its volume")
            print(f"\nThe StatefulSet recreated web-0, but its claim www-web-0 is bound to a local volume "
                  f"on {victim},\nso it stays Pending and the scheduler says why:\n  {why}")
            kemu("get", "pods", "-l", "app=nginx", "-o", "wide")

            say("5. the timeline (supervisor and controller-manager, since the kill)")
            from lab.logs import Filter, format_record, timeline
            shown = 0
            since = time.time() - (time.monotonic() - killed_at) - 0.5
            from datetime import datetime, timezone
            since_s = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for rec, _raw in timeline(lab.layout.logs, Filter(since=since_s)):
                if rec.get("component") in ("supervisor", "controller-manager") and shown < 40:
                    print(format_record(rec))
                    shown += 1
            print("\nEvents about the node:")
            for e in c.list("Event", "default")["items"]:
                if e["involvedObject"].get("name") == victim:
                    print(f"  {e['type']:<8} {e['reason']:<22} {e['message']}")
        except (LabError, RuntimeError, TimeoutError) as e:
            print(f"demo failed: {e}", file=sys.stderr)
            return 1
        finally:
            say("6. teardown")
            lab.down()
            print("lab down")
    return 0


def main_real(runtime: str) -> int:
    """``make demo RUNTIME=process``: see ``lab.demo_process``."""
    from lab import demo_process
    from lab.lab import Lab, LabError
    with tempfile.TemporaryDirectory(prefix="kemu-demo-") as home:
        os.environ["KEMU_HOME"] = home
        os.environ.pop("KEMU_SERVER", None)
        say(f"1. a 5-node lab, fast profile, runtime {runtime}")
        t0 = time.monotonic()
        lab = Lab(5, name="demo", profile="fast", runtime=runtime)
        try:
            lab.up()
            print(f"5 nodes Ready in {time.monotonic() - t0:.1f}s; lab directory {lab.layout.root}")
            kemu("get", "nodes", "-o", "wide")
            demo_process.run(lab, kemu, say)
        except (LabError, RuntimeError, TimeoutError, OSError) as e:
            print(f"demo failed: {e}", file=sys.stderr)
            return 1
        finally:
            say("5. teardown")
            lab.down()
            print("lab down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else "fake"))
