"""``make demo`` / ``kemu demo``: the main job on the embedded default.

1. a 10-node lab with the ``fast`` profile;
2. manifests applied and a batch of pods, scheduled and Running;
3. one node process killed;
4. detection (NotReady), the unreachable taint, and the eviction of that
   node's pods, each shown as it happens;
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
PODS = 30


def say(msg: str) -> None:
    print(f"\n=== {msg}", flush=True)


def kemu(*args: str) -> None:
    print(f"$ kemu {' '.join(args)}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "lab.cli", *args], cwd=ROOT)
    if rc != 0:
        raise RuntimeError(f"kemu {' '.join(args)} failed with exit code {rc}")


def batch(n: int) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"batch-{i}", "namespace": "demo", "labels": {"app": "batch"}},
         "spec": {"containers": [{"name": "work", "image": "busybox:1.36",
                                  "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}
        for i in range(n)]}


def main() -> int:
    from lab.lab import Lab, LabError
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

            say(f"2. manifests and a batch of {PODS} pods")
            kemu("apply", "-f", str(ROOT / "examples"))
            import json
            manifest = Path(home) / "batch.json"
            manifest.write_text(json.dumps(batch(PODS)))
            kemu("create", "-f", str(manifest))
            c = lab.client

            def pods() -> list[dict]:
                return c.list("Pod", "demo")["items"]
            lab.wait_for(lambda: all((p.get("status") or {}).get("phase") == "Running" for p in pods())
                         and len(pods()) == PODS + 1, 30, what="every pod Running")
            kemu("get", "pods", "-n", "demo", "-o", "wide")

            by_node: dict[str, list[str]] = {}
            for p in pods():
                by_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
            victim = max(by_node, key=lambda n: len(by_node[n]))
            say(f"3. killing {victim} (it runs {len(by_node[victim])} pods)")
            killed_at = time.monotonic()
            lab.kill(victim)

            say("4. detection, taint, eviction")

            def ready(node: str) -> str:
                for cond in c.get("Node", node)["status"].get("conditions") or []:
                    if cond["type"] == "Ready":
                        return cond["status"]
                return "?"
            lab.wait_for(lambda: ready(victim) == "Unknown", 15, what=f"{victim} Ready=Unknown")
            print(f"{victim} is NotReady (Ready=Unknown) {time.monotonic() - killed_at:.1f}s after the kill")
            kemu("get", "nodes")
            taints = lab.wait_for(lambda: c.get("Node", victim)["spec"].get("taints"), 10, what="taints")
            print("taints: " + ", ".join(f"{t['key']}:{t['effect']}" for t in taints))
            gone = set(by_node[victim])
            lab.wait_for(lambda: all((p["metadata"].get("deletionTimestamp") or
                                      p["metadata"]["name"] not in gone)
                                     for p in pods()), 60, what="eviction of the node's pods")
            print(f"{len(gone)} pods on {victim} marked for deletion "
                  f"{time.monotonic() - killed_at:.1f}s after the kill (toleration: 15s in fast)")
            kemu("get", "pods", "-n", "demo", "--field-selector", f"spec.nodeName={victim}")

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


if __name__ == "__main__":
    sys.exit(main())
