"""``kemu bench apiserver``: echo limit vs. real apiserver creates, updates and gets.

Method: one run measures, side by side on the same machine,
1. the raw limit: a ZeroMQ ROUTER process that echoes msgpack frames back to
   one pipelined DEALER client (frames are create requests of the same size).
   ``echo_ops_per_s`` decodes and re-encodes each message (the issue's
   reference echo, the baseline for the ratios), measured before and after
   the apiserver phases and averaged; ``echo_raw_ops_per_s`` sends the bytes
   straight back (shown for scale);
2. a real ``kemu apiserver`` process with its WAL fsynced (group commit),
   driven by ``--clients`` pipelined client processes (window ``--window``):
   small ConfigMap creates, then updates of them, then gets.
Rates are operations per second summed over clients; ratios are rate / echo.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import msgpack

from lab.bench.common import ApiserverProcess, run_workers


def _echo_server(address_file: str, seconds: float, decode: bool) -> None:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    with open(address_file + ".tmp", "w") as f:
        f.write(f"tcp://127.0.0.1:{port}")
    os.replace(address_file + ".tmp", address_file)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if s.poll(100):
            while True:
                try:
                    peer, frame = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if decode:   # echo the msgpack message: decode it and encode it again
                    frame = msgpack.packb(msgpack.unpackb(frame))
                s.send_multipart((peer, frame))
    s.close(0)
    ctx.term()


def _echo_client(address: str, seconds: float, window: int) -> dict[str, Any]:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    frame = msgpack.packb({"id": 1, "op": "create", "object": _configmap(0, 0)})
    inflight = 0
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        now = time.monotonic()
        while inflight < window and now < end:
            s.send(frame)
            inflight += 1
        if inflight == 0:
            break
        msgpack.unpackb(s.recv())
        inflight -= 1
        n += 1
    elapsed = time.monotonic() - t0
    s.close(0)
    ctx.term()
    return {"ops": n, "seconds": elapsed}


def _echo_rate(seconds: float, window: int, decode: bool) -> int:
    import multiprocessing as mp
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        addr_file = os.path.join(tmp, "echo")
        srv = mp.get_context("fork").Process(target=_echo_server, args=(addr_file, seconds + 10, decode),
                                             daemon=True)
        srv.start()
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(addr_file) and time.monotonic() < deadline:
                time.sleep(0.005)
            address = open(addr_file).read()
            r = run_workers(1, lambda i, a: _echo_client(a, seconds, window), (address,), seconds + 30)[0]
            return round(r["ops"] / r["seconds"])
        finally:
            srv.kill()
            srv.join(5)


def _configmap(worker: int, i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{worker}-{i}", "namespace": "default", "labels": {"bench": "x"}},
            "data": {"key": "value"}}


def _api_client(worker: int, address: str, phase: str, seconds: float, window: int,
                count: int) -> dict[str, Any]:
    from emulator.client import Client
    c = Client(address, component="bench", timeout=30)
    c.ping()
    n = errors = 0
    t0 = time.monotonic()
    end = t0 + seconds
    i = 0
    import collections
    q: collections.deque[int] = collections.deque()
    while True:
        now = time.monotonic()
        while len(q) < window and now < end and (phase == "create" or count):
            if phase == "create":
                rid = c.send("create", object=_configmap(worker, i), namespace="default")
            elif phase == "update":
                cm = _configmap(worker, i % count)
                cm["data"]["key"] = f"v{i}"
                rid = c.send("update", object=cm)
            else:
                rid = c.send("get", kind="ConfigMap", name=f"cm-{worker}-{i % count}", namespace="default")
            q.append(rid)
            i += 1
        if not q:
            break
        try:
            c.wait(q.popleft())
            n += 1
        except Exception:
            errors += 1
    elapsed = time.monotonic() - t0
    c.close()
    return {"ops": n, "errors": errors, "seconds": elapsed, "created": i if phase == "create" else count}


def run(seconds: float = 3.0, clients: int = 2, window: int = 128, fsync: bool = True,
        commit_mode: str = "auto") -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "apiserver", "seconds_per_phase": seconds, "clients": clients,
                           "window": window, "fsync": fsync, "commit_mode": commit_mode,
                           "cpus": os.cpu_count()}
    out["echo_raw_ops_per_s"] = _echo_rate(seconds, window, False)
    echo_before = _echo_rate(seconds, window, True)
    api = ApiserverProcess(None, "--commit-mode", commit_mode, *([] if fsync else ["--no-fsync"]))
    try:
        api.start()
        per_phase: dict[str, Any] = {}
        created = 0
        import psutil
        server = psutil.Process(api.proc.pid)
        for phase in ("create", "update", "get"):
            cpu0, t0 = sum(server.cpu_times()[:2]), time.monotonic()
            res = run_workers(clients, _api_client, (api.address, phase, seconds, window, created),
                              seconds + 60)
            cpu, wall = sum(server.cpu_times()[:2]) - cpu0, time.monotonic() - t0
            rate = sum(r["ops"] / r["seconds"] for r in res)
            ops = sum(r["ops"] for r in res)
            per_phase[phase] = {"ops_per_s": round(rate), "errors": sum(r["errors"] for r in res),
                                "server_cpu_us_per_op": round(cpu / max(ops, 1) * 1e6, 1),
                                "server_cpu_busy": round(cpu / wall, 2)}
            if phase == "create":
                created = min(r["created"] for r in res)
        out["phases"] = per_phase
    finally:
        api.cleanup()
    # The baseline is measured before and after the apiserver phases and
    # averaged, so that load drifting on a shared machine biases no ratio.
    echo_after = _echo_rate(seconds, window, True)
    out["echo_runs_ops_per_s"] = [echo_before, echo_after]
    echo = out["echo_ops_per_s"] = round((echo_before + echo_after) / 2)
    out["ratios"] = {k: round(v["ops_per_s"] / echo, 3) for k, v in out["phases"].items()}
    out["ratios_vs_raw_echo"] = {k: round(v["ops_per_s"] / out["echo_raw_ops_per_s"], 3)
                                 for k, v in out["phases"].items()}
    out["targets"] = {"create": 0.5, "update": 0.5, "get": 0.7}
    out["meets_targets"] = all(out["ratios"][k] >= t for k, t in out["targets"].items())
    return out


def main(args: Any) -> int:
    print(json.dumps(run(args.seconds, args.clients, args.window, not args.no_fsync, args.commit_mode),
                     indent=2))
    return 0
