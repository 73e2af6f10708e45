"""``kemu bench proxy``: kube-proxy's forwarding throughput and added latency.

Method, in one run and on loopback only:

* a backend: a small asyncio HTTP/1.1 server in its own process, bound on a
  pod-like address (``BACKEND_IP``, a port the kernel picks), answering every
  request with ``--body-bytes`` of body (keep-alive unless the request says
  ``Connection: close``);
* a ``node.proxy.forwarder.Forwarder`` in its own process (as it runs in a
  node process: its loop in a background thread), given a one-Service table
  whose ClusterIP (``CLUSTER_IP``, a free port) has that backend as its only
  endpoint;
* the load, from this process: ``--clients`` concurrent clients, each
  sending one request and reading the whole response before the next (a
  closed loop), for a bounded time. Two modes: ``close`` (a new connection per
  request, ``Connection: close``) and ``keepalive`` (one connection per
  client). Each mode runs ``ROUNDS`` alternating rounds straight to the
  backend and through the ClusterIP, ``--seconds`` per mode in all, so
  machine noise hits both paths alike.

Reported per mode and path: requests, errors, requests/s and p50/p90/p99
latency (ms, from just before connect/send to the last byte read); per mode the
throughput ratio proxied/direct (target at least 0.5) and the added latency
(proxied minus direct, at p50 and p99; target p99 at most 2 ms). The machine
has 2 cores: proxied, three Python processes (client, forwarder, backend)
share them, direct only two, so the ratio also carries that CPU contention;
the JSON gives the CPU time each process used. Every process started is stopped
(SIGTERM, then SIGKILL) before ``run`` returns.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import time
from typing import Any

from lab.bench.common import percentile

BACKEND_IP = "127.64.255.201"
CLUSTER_IP = "127.111.255.201"
ROUNDS = 8
TARGET_RATIO = 0.5
TARGET_ADDED_P99_MS = 2.0
MODES = ("close", "keepalive")


# -- the backend (a pod) ---------------------------------------------------------------
def _response(body: bytes, close: bool) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
    return head.encode() + body


class _HTTPServer(asyncio.Protocol):
    def __init__(self, keep: bytes, close: bytes) -> None:
        self.keep, self.close = keep, close
        self.buf = b""
        self.t: Any = None

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head, self.buf = self.buf[:i], self.buf[i + 4:]
            if b"connection: close" in head.lower():
                self.t.write(self.close)
                self.t.close()
                return
            self.t.write(self.keep)


def _backend_main(ip: str, body_bytes: int, port_q: Any, stop_r: Any) -> None:
    body = b"x" * body_bytes
    keep, close = _response(body, False), _response(body, True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _HTTPServer(keep, close), ip, 0, backlog=1024)
        port_q.put(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, stop_r.recv)
        server.close()
    asyncio.run(main())


def _forwarder_main(table: Any, ready_q: Any, stop_r: Any) -> None:
    from emulator.logging import configure
    from node.proxy.forwarder import Forwarder
    configure("kube-proxy", node="bench", path=os.devnull)
    f = Forwarder("bench", table.node_ip, log_interval=3600).start()
    ready_q.put(f.update(table).result(10))
    stop_r.recv()
    f.stop()


# -- the load ----------------------------------------------------------------------------
class _Client(asyncio.Protocol):
    """One HTTP exchange at a time; ``done`` resolves with the response length."""

    def __init__(self) -> None:
        self.t: Any = None
        self.buf = bytearray()
        self.need = -1
        self.done: asyncio.Future | None = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def request(self, data: bytes) -> asyncio.Future:
        self.buf.clear()
        self.need = -1
        self.done = asyncio.get_running_loop().create_future()
        self.t.write(data)
        return self.done

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.buf[:i]).lower()
            j = head.find(b"content-length:")
            length = int(head[j + 15:].split(b"\r\n", 1)[0]) if j >= 0 else 0
            self.need = i + 4 + length
        if len(self.buf) >= self.need and self.done is not None and not self.done.done():
            self.done.set_result(len(self.buf))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed before the whole response"))
        if not self.lost.done():
            self.lost.set_result(None)


async def _user(addr: tuple[str, int], keepalive: bool, deadline: float, lat: list[float],
                errors: list[str]) -> None:
    loop = asyncio.get_running_loop()
    host = f"{addr[0]}:{addr[1]}"
    req_close = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    req_keep = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conn: _Client | None = None
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                if conn is None or conn.t.is_closing():
                    _, conn = await asyncio.wait_for(loop.create_connection(_Client, *addr), 5)
                await asyncio.wait_for(conn.request(req_keep if keepalive else req_close), 5)
                if not keepalive:
                    conn.t.close()
                    await conn.lost
                    conn = None
            except (OSError, asyncio.TimeoutError) as e:
                errors.append(type(e).__name__)
                if conn is not None:
                    conn.t.abort()
                conn = None
                continue
            lat.append(time.perf_counter() - t0)
    finally:
        if conn is not None:
            conn.t.close()


async def _load(addr: tuple[str, int], clients: int, keepalive: bool, seconds: float,
                lat: list[float], errors: list[str]) -> None:
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_user(addr, keepalive, deadline, lat, errors) for _ in range(clients)))


def _summary(lat: list[float], errors: list[str], seconds: float) -> dict[str, Any]:
    ms = [v * 1000 for v in lat]
    return {"requests": len(lat), "errors": len(errors), "requests_per_s": round(len(lat) / seconds, 1),
            "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3)}


def _free_port(ip: str) -> int:
    s = socket.socket()
    try:
        s.bind((ip, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _cpu_seconds(pid: int) -> float | None:
    try:
        import psutil
        t = psutil.Process(pid).cpu_times()
        return round(t.user + t.system, 2)
    except Exception:
        return None


def run(seconds: float = 8.0, clients: int = 4, body_bytes: int = 1024) -> dict[str, Any]:
    from node.proxy import rules
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    stops: list[Any] = []
    try:
        port_q = ctx.Queue()
        stop_r, stop_w = ctx.Pipe(duplex=False)
        stops.append(stop_w)
        backend = ctx.Process(target=_backend_main, args=(BACKEND_IP, body_bytes, port_q, stop_r), daemon=True)
        backend.start()
        procs.append(backend)
        port = port_q.get(timeout=10)
        cport = _free_port(CLUSTER_IP)
        ep = rules.Endpoint(BACKEND_IP, port, "bench", True, True, False, "KUBE-SEP-BENCH")
        sp = rules.ServicePort("default/bench:http", "default", "bench", "http", "TCP", CLUSTER_IP, cport,
                               None, "KUBE-SVC-BENCH", (ep,))
        table = rules.Table("bench", "127.32.0.1", (sp,))
        ready_q = ctx.Queue()
        stop_r2, stop_w2 = ctx.Pipe(duplex=False)
        stops.append(stop_w2)
        fwd = ctx.Process(target=_forwarder_main, args=(table, ready_q, stop_r2), daemon=True)
        fwd.start()
        procs.append(fwd)
        listening = ready_q.get(timeout=10)
        if (CLUSTER_IP, cport) not in [tuple(x) for x in listening]:
            raise RuntimeError(f"the forwarder did not listen on {CLUSTER_IP}:{cport}: {listening}")
        paths = {"direct": (BACKEND_IP, port), "proxied": (CLUSTER_IP, cport)}
        per_round = seconds / len(MODES) / 2 / ROUNDS
        out: dict[str, Any] = {}
        cpu0 = {"backend": _cpu_seconds(backend.pid), "forwarder": _cpu_seconds(fwd.pid)}
        self_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        for mode in MODES:
            lat: dict[str, list[float]] = {p: [] for p in paths}
            errs: dict[str, list[str]] = {p: [] for p in paths}
            for _ in range(ROUNDS):
                for name, addr in paths.items():
                    asyncio.run(_load(addr, clients, mode == "keepalive", per_round, lat[name], errs[name]))
            d = {name: _summary(lat[name], errs[name], per_round * ROUNDS) for name in paths}
            ratio = d["proxied"]["requests_per_s"] / d["direct"]["requests_per_s"] \
                if d["direct"]["requests_per_s"] else None
            d["throughput_ratio"] = round(ratio, 3) if ratio is not None else None
            d["added_p50_ms"] = round(d["proxied"]["p50_ms"] - d["direct"]["p50_ms"], 3)
            d["added_p99_ms"] = round(d["proxied"]["p99_ms"] - d["direct"]["p99_ms"], 3)
            d["meets_target"] = bool(ratio is not None and ratio >= TARGET_RATIO
                                     and d["added_p99_ms"] <= TARGET_ADDED_P99_MS
                                     and not errs["direct"] and not errs["proxied"])
            out[mode] = d
        self_cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = {"backend": _cpu_seconds(backend.pid), "forwarder": _cpu_seconds(fwd.pid)}
        cpu = {k: (round(cpu1[k] - cpu0[k], 2) if cpu1[k] is not None and cpu0[k] is not None else None)
               for k in cpu0}
        cpu["clients"] = round(self_cpu1.ru_utime + self_cpu1.ru_stime - self_cpu0.ru_utime
                               - self_cpu0.ru_stime, 2)
    finally:
        for w in stops:
            try:
                w.send(None)
            except OSError:
                pass
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    return {"benchmark": "proxy", "clients": clients, "seconds": seconds, "rounds": ROUNDS,
            "body_bytes": body_bytes, "backend": f"{BACKEND_IP}:{port}", "cluster_ip": f"{CLUSTER_IP}:{cport}",
            **out, "cpu_seconds": cpu, "cores": os.cpu_count(),
            "target": {"throughput_ratio_min": TARGET_RATIO, "added_p99_ms_max": TARGET_ADDED_P99_MS},
            "meets_target": all(out[m]["meets_target"] for m in MODES)}


def main(args: Any) -> int:
    print(json.dumps(run(args.seconds, args.clients, args.body_bytes), indent=2))
    return 0
