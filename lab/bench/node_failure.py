"""``kemu bench node-failure``: from killing a node process to its Ready=Unknown.

Method: a ``fast``-profile lab of ``--nodes`` nodes; a watch on Nodes; SIGKILL
one node through the supervisor and time until the watch shows its Ready
condition Unknown, then until the unreachable NoExecute taint. Target: Unknown
within the profile's grace period plus 1 s.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any


def _cond(node: dict, typ: str) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c.get("status")
    return None


def run(nodes: int = 3, victim: str = "node-2") -> dict[str, Any]:
    from emulator.profiles import FAST
    from lab.lab import Lab
    with tempfile.TemporaryDirectory(prefix="kemu-bench-nf-") as tmp:
        os.environ["KEMU_HOME"] = tmp
        with Lab(nodes, name="bench", profile="fast", make_current=False) as lab:
            c = lab.client
            w = c.watch("Node", resource_version=c.list("Node")["metadata"]["resourceVersion"])
            t0 = time.monotonic()
            lab.kill(victim)
            unknown = tainted = None
            deadline = t0 + 30
            while (unknown is None or tainted is None) and time.monotonic() < deadline:
                ev = w.next(0.5)
                if ev is None or ev["object"]["metadata"]["name"] != victim:
                    continue
                now = time.monotonic()
                if unknown is None and _cond(ev["object"], "Ready") == "Unknown":
                    unknown = now - t0
                taints = ev["object"].get("spec", {}).get("taints") or []
                if tainted is None and any(t["key"] == "node.kubernetes.io/unreachable" and
                                           t["effect"] == "NoExecute" for t in taints):
                    tainted = now - t0
    grace = FAST.for_lab(nodes).node_monitor_grace_period   # a big lab's heartbeats stretch
    return {"benchmark": "node-failure", "profile": "fast", "nodes": nodes,
            "grace_period_s": grace, "kill_to_ready_unknown_s": None if unknown is None else round(unknown, 3),
            "kill_to_unreachable_taint_s": None if tainted is None else round(tainted, 3),
            "target_s": grace + 1.0, "meets_target": unknown is not None and unknown <= grace + 1.0}


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes), indent=2))
    return 0
