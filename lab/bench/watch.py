"""``kemu bench watch``: watch fan-out to many node-scoped watchers.

Method: a real apiserver process (WAL fsynced) holds one Pod per node, bound
to that node. ``--watchers`` watchers (raw DEALER sockets, split over
``--procs`` processes) each watch Pods with ``fieldSelector
spec.nodeName=node-i``. A writer patches pods round-robin at ``--rate``
writes/s for ``--seconds``. Latency is from the writer receiving the write's
acknowledgement to a watcher receiving the event (both read CLOCK_MONOTONIC,
which is system-wide on Linux). Correctness: every write reaches exactly one
watcher, the one for its node.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from typing import Any

import msgpack

from lab.bench.common import ApiserverProcess, percentile, run_workers


def _hello(sock: Any, component: str) -> None:
    sock.send(msgpack.packb({"id": 0, "op": "hello", "protocol": 1, "component": component}))


def _watcher_proc(p: int, address: str, first: int, count: int, ready: Any, stop: Any) -> dict:
    import zmq
    ctx = zmq.Context()
    poller = zmq.Poller()
    socks = []
    for i in range(first, first + count):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(address)
        _hello(s, "bench-watcher")
        s.send(msgpack.packb({"id": 1, "op": "watch", "kind": "Pod", "namespace": "default",
                              "fieldSelector": f"spec.nodeName=node-{i}", "resourceVersion": "0",
                              "allowWatchBookmarks": True}))
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    node_of = {s: f"node-{first + k}" for k, s in enumerate(socks)}
    pending = set(socks)
    records: list[tuple[int, float]] = []
    wrong = 0
    initial = 0
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline + 600:
        for s, _ in poller.poll(50):
            while True:
                try:
                    frame = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time.monotonic()
                m = msgpack.unpackb(frame)
                if "type" not in m:
                    if m.get("id") == 1:
                        pending.discard(s)
                        if not pending:
                            ready.set()
                    continue
                if m["type"] == "BOOKMARK":
                    continue
                obj = m["object"]
                if obj["spec"].get("nodeName") != node_of[s]:
                    wrong += 1
                if m["type"] == "ADDED":
                    initial += 1
                    continue
                records.append((int(obj["metadata"]["resourceVersion"]), t))
    for s in socks:
        s.close(0)
    ctx.term()
    return {"records": records, "wrong": wrong, "initial": initial}


def _writer(_i: int, address: str, nodes: int, rate: float, seconds: float) -> dict:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    _hello(s, "bench-writer")
    s.recv()
    acks: dict[int, float] = {}
    errors = 0
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    next_send = t0
    inflight = 0
    while True:
        now = time.monotonic()
        if now < end and now >= next_send:
            k = sent
            s.send(msgpack.packb({"id": k + 10, "op": "patch", "kind": "Pod", "namespace": "default",
                                  "name": f"p-{k % nodes}",
                                  "patch": {"metadata": {"annotations": {"seq": str(k)}}}}))
            sent += 1
            inflight += 1
            next_send += 1.0 / rate
            continue
        if now >= end and inflight == 0:
            break
        timeout = max(0.0, min(next_send, end) - now) if now < end else 1.0
        if s.poll(int(timeout * 1000) or 1):
            m = msgpack.unpackb(s.recv())
            t = time.monotonic()
            inflight -= 1
            if m.get("ok"):
                acks[int(m["result"]["metadata"]["resourceVersion"])] = t
            else:
                errors += 1
        elif now > end + 30:
            break
    s.close(0)
    ctx.term()
    return {"acks": acks, "errors": errors, "sent": sent, "seconds": time.monotonic() - t0}


def _setup(_i: int, address: str, nodes: int) -> int:
    from emulator.client import Client
    c = Client(address, component="bench-setup", timeout=30)
    reqs = [("create", {"object": {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": f"p-{i}", "namespace": "default"},
                                   "spec": {"nodeName": f"node-{i}",
                                            "containers": [{"name": "c", "image": "busybox"}]}}})
            for i in range(nodes)]
    res = c.pipeline(reqs)
    bad = [r for r in res if not isinstance(r, dict)]
    c.close()
    if bad:
        raise RuntimeError(f"setup failed: {bad[0]}")
    return len(res)


def run(watchers: int = 1000, rate: float = 1000, seconds: float = 5.0, procs: int = 2) -> dict[str, Any]:
    api = ApiserverProcess()
    ctx = mp.get_context("fork")
    try:
        api.start()
        run_workers(1, _setup, (api.address, watchers), 120)
        stop = ctx.Event()
        readies = [ctx.Event() for _ in range(procs)]
        q = ctx.Queue()
        per = (watchers + procs - 1) // procs
        ps = []
        for p in range(procs):
            first, count = p * per, min(per, watchers - p * per)
            ps.append(ctx.Process(target=lambda p=p, f=first, n=count: q.put(
                (p, _watcher_proc(p, api.address, f, n, readies[p], stop))), daemon=True))
        for pr in ps:
            pr.start()
        for r in readies:
            if not r.wait(120):
                raise RuntimeError("watchers did not start")
        w = run_workers(1, _writer, (api.address, watchers, rate, seconds), seconds + 120)[0]
        # drain: wait until every acked revision arrived, or 10 s
        stop_at = time.monotonic() + 10
        got: dict[int, float] = {}
        results = []
        time.sleep(0.5)
        stop.set()
        for _ in ps:
            results.append(q.get(timeout=max(1, stop_at - time.monotonic()) + 30)[1])
        for pr in ps:
            pr.join(10)
        dupes = 0
        for r in results:
            for rv, t in r["records"]:
                if rv in got:
                    dupes += 1
                got[rv] = t
        acks = w["acks"]
        lat = [(got[rv] - t) * 1000 for rv, t in acks.items() if rv in got]
        missing = sum(1 for rv in acks if rv not in got)
        return {"benchmark": "watch", "watchers": watchers, "target_rate": rate,
                "achieved_write_rate": round(w["sent"] / w["seconds"], 1), "writes_acked": len(acks),
                "write_errors": w["errors"], "events_received": len(got), "missing": missing,
                "duplicates": dupes, "delivered_to_wrong_watcher": sum(r["wrong"] for r in results),
                "latency_ms": {"p50": round(percentile(lat, 50), 3), "p90": round(percentile(lat, 90), 3),
                               "p99": round(percentile(lat, 99), 3), "max": round(max(lat or [0]), 3)},
                "target_p99_ms": 20,
                "meets_target": bool(lat) and percentile(lat, 99) <= 20 and missing == 0
                and sum(r["wrong"] for r in results) == 0}
    finally:
        api.cleanup()


def main(args: Any) -> int:
    print(json.dumps(run(args.watchers, args.rate, args.seconds, args.procs), indent=2))
    return 0
