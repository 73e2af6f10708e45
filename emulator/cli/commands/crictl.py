"""``kemu crictl NODE ps|inspect ID``: what a node's runtime is running, as crictl shows it.

Contract: reads the fake runtime's state file
``<lab>/nodes/<NODE>/var/lib/kemu/runtime.json`` (the lab from ``--lab-dir`` or
the current one), so, like ``kemu proxy rules``, it needs no apiserver and
shows a partitioned or dead node's last state. ``ps`` prints crictl's columns
(CONTAINER IMAGE CREATED STATE NAME ATTEMPT POD ID POD; ``-a`` includes exited
containers); ``inspect ID`` (any unique prefix) prints the container's status
as JSON, with its mount table (``containerPath``, ``hostPath``, ``readonly``),
as ``crictl inspect`` does. Exit 1 with a message naming the file or the id
when there is no such node, state or container.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from emulator.cli.commands._node_files import node_root
from emulator.cli.printers import human_duration
from emulator.cli.tabwriter import align
from emulator.runtime_state import read_state

# The fake runtime's file under a node's root (node/kubelet passes it; emulator/ cannot import node/).
STATE_FILE = Path("var") / "lib" / "kemu" / "runtime.json"
_STATE = {"created": "Created", "running": "Running", "exited": "Exited", "unknown": "Unknown"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("crictl", help="inspect a node's container runtime",
                              description="Show what a node's runtime runs: 'ps' lists containers, "
                                          "'inspect ID' prints one with its mounts.")
    p.add_argument("node", metavar="NODE", help="the node's name")
    p.add_argument("what", choices=["ps", "inspect"], help="what to show")
    p.add_argument("id", nargs="?", metavar="ID", help="container id (or a unique prefix), for inspect")
    p.add_argument("-a", "--all", action="store_true", help="ps: include exited containers")
    p.add_argument("--lab-dir", help="the lab directory (default: the current lab)")
    p.set_defaults(func=run)
    return p


def _inspect(c: dict[str, Any]) -> dict[str, Any]:
    return {"status": {
        "id": c["id"], "metadata": {"name": c["name"], "attempt": c["attempt"]},
        "state": "CONTAINER_" + c["state"].upper(), "createdAt": c["created_at"],
        "startedAt": c["started_at"], "finishedAt": c["finished_at"], "exitCode": c["exit_code"],
        "image": {"image": c["image"]}, "reason": c["reason"], "labels": c["labels"],
        "mounts": [{"containerPath": m["container_path"], "hostPath": m["host_path"],
                    "readonly": m["read_only"], "name": m["name"]} for m in c.get("mounts") or []]}}


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    root = node_root(args.lab_dir, args.node, err)
    if root is None:
        return 1
    path = root / STATE_FILE
    try:
        state = read_state(path)
    except (OSError, ValueError) as e:
        print(f'error: node "{args.node}" has no runtime state yet ({path} is missing or unreadable: {e})',
              file=err)
        return 1
    containers = [c["status"] for c in state.get("containers") or []]
    if args.what == "inspect":
        if not args.id:
            print("error: inspect needs a container ID (see 'kemu crictl NODE ps -a')", file=err)
            return 1
        hits = [c for c in containers if c["id"].startswith(args.id)]
        if len(hits) != 1:
            print(f'error: {"no" if not hits else "more than one"} container matches "{args.id}" on {args.node}',
                  file=err)
            return 1
        out.write(json.dumps(_inspect(hits[0]), indent=2) + "\n")
        return 0
    pods = {s["id"]: s for s in state.get("sandboxes") or []}
    now = time.time()
    rows = ["CONTAINER\tIMAGE\tCREATED\tSTATE\tNAME\tATTEMPT\tPOD ID\tPOD"]
    for c in sorted(containers, key=lambda c: c["created_at"], reverse=True):
        if c["state"] == "exited" and not args.all:
            continue
        pod = pods.get(c["sandbox_id"], {})
        rows.append("\t".join([c["id"][:13], c["image"] or "", human_duration(now - c["created_at"]) + " ago",
                               _STATE.get(c["state"], c["state"]), c["name"], str(c["attempt"]),
                               c["sandbox_id"][:13], pod.get("name", c.get("pod_name", ""))]))
    out.write(align("\n".join(rows) + "\n", 0, 3))
    return 0
