"""``kemu bench restart``: how long an apiserver takes to come back with N objects.

Method: fill a real apiserver (WAL fsynced) with ``--objects`` small ConfigMaps
through pipelined creates, SIGKILL it, start it again on the same data
directory and time until it answers a request. Also checks that every
acknowledged object is there after the restart.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from lab.bench.common import ApiserverProcess, run_workers


def _fill(worker: int, address: str, first: int, count: int) -> int:
    from emulator.client import Client
    c = Client(address, component="bench-fill", timeout=60)
    done = 0
    for start in range(first, first + count, 5000):
        reqs = [("create", {"object": {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": f"cm-{i}", "namespace": "default",
                                                    "labels": {"app": f"a{i % 100}"}},
                                       "data": {"k": f"v{i}"}}})
                for i in range(start, min(first + count, start + 5000))]
        done += sum(1 for r in c.pipeline(reqs, window=256) if isinstance(r, dict))
    c.close()
    return done


def _ready(address: str) -> int:
    from emulator.client import Client
    c = Client(address, component="bench", timeout=60, retries=0)
    n = len(c.list_all("ConfigMap", "default", chunk=10_000)["items"])
    c.close()
    return n


def run(objects: int = 100_000, clients: int = 2, snapshot_every: int = 200_000) -> dict[str, Any]:
    api = ApiserverProcess(None, "--snapshot-every", str(snapshot_every))
    try:
        api.start()
        per = objects // clients
        t0 = time.monotonic()
        acked = sum(run_workers(clients, lambda i, a: _fill(i, a, i * per, per),
                                (api.address,), 600))
        fill_s = time.monotonic() - t0
        api.kill()
        t1 = time.monotonic()
        api.start(timeout=120)
        serving_s = time.monotonic() - t1
        t2 = time.monotonic()
        found = run_workers(1, lambda i, a: _ready(a), (api.address,), 120)[0]
        list_s = time.monotonic() - t2
        recovery = None
        for line in api.log.read_text().splitlines():
            if '"apiserver started"' in line:
                m = re.search(r'"seconds": ([0-9.]+)', line)
                recovery = float(m.group(1)) if m else None
        return {"benchmark": "restart", "objects": objects, "acked": acked,
                "fill_seconds": round(fill_s, 2), "fill_rate_per_s": round(acked / fill_s),
                "restart_to_serving_s": round(serving_s, 3), "store_recovery_s": recovery,
                "first_full_list_s": round(list_s, 3), "objects_after_restart": found,
                "lost": acked - found, "target_s": 5.0,
                "meets_target": serving_s <= 5.0 and found == acked}
    finally:
        api.cleanup()


def main(args: Any) -> int:
    print(json.dumps(run(args.objects, args.clients, args.snapshot_every), indent=2))
    return 0
