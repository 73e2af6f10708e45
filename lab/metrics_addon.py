"""The metrics add-on: collects every lab process's metrics and serves them to Prometheus.

Contract
--------
* A lab process of its own (role ``metrics``, forked by the supervisor like
  ``dns``; ``LabConfig.metrics`` turns it off). Every ``interval`` seconds
  (the profile's ``metrics_interval``, with a little jitter) it scrapes each
  process that ``run/state.json`` lists as running, through its ctl
  ``metrics`` op (``{"format": "families"}``), all at once with one deadline,
  so a paused or dead process costs one timeout per round, not one each.
  Its own metrics are read in-process.
* Each scrape appends one JSON line to ``<metrics_dir>/<process>.jsonl``:
  ``{"ts": RFC3339 (µs, Z), "process": name, "samples": [[name, {labels},
  value], ...]}`` (histograms as their ``_bucket``/``_sum``/``_count``
  samples; a histogram with no observations is left out, and each one's
  buckets are trimmed to those from its last empty one to its first full
  one, plus ``+Inf``: the others add nothing to a quantile, and a node's
  line shrinks by half). Lines are written whole with one ``write``;
  ``lab.metrics_store`` reads them.
* HTTP on 127.0.0.1 (``port`` 0 picks a free one; the address
  ``http://127.0.0.1:PORT/metrics`` is written atomically to ``port_file``):
  ``GET /metrics`` serves the latest scrape of every process in the
  Prometheus text format, each sample labelled ``process`` (and ``node`` for
  a node), so a user's Prometheus can scrape the whole lab on one target.
* ``run`` returns on SIGTERM; it says it started (``component.notify_ready``)
  once the HTTP port is bound.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgpack
import zmq
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from emulator import component, ctl, metrics
from emulator.logging import configure, get_logger
from emulator.process import StopFlag, die_with_parent

PROCESS = "metrics"
SCRAPE_TIMEOUT = 2.0


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def targets(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Running processes from ``state.json``: name -> {"role", "pid"}. A packed node
    (one with a ``host``) is scraped through its host, once per host: the host's own
    ctl socket reports the process's metrics."""
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for p in state.get("processes") or ():
        if p.get("state") != "running" or p.get("name") == PROCESS:
            continue
        host = p.get("host")
        if host:
            out.setdefault(host, {"name": host, "role": "nodehost", "pid": p.get("pid")})
        else:
            out[p["name"]] = p
    return out


BATCH = 256   # sockets open at once: ZeroMQ's default context allows 1,023


def scrape(run_dir: Path, names: list[str], timeout: float = SCRAPE_TIMEOUT) -> dict[str, list]:
    """Ask the processes for their metric families, ``BATCH`` at a time; returns those
    that answered."""
    out: dict[str, list] = {}
    for i in range(0, len(names), BATCH):
        out.update(_scrape_batch(run_dir, names[i:i + BATCH], timeout))
    return out


def _scrape_batch(run_dir: Path, names: list[str], timeout: float) -> dict[str, list]:
    """Ask each process for its metric families at once."""
    zctx = zmq.Context.instance()
    socks: dict[zmq.Socket, str] = {}
    out: dict[str, list] = {}
    request = msgpack.packb({"op": "metrics", "args": {"format": "families"}}, use_bin_type=True)
    poller = zmq.Poller()
    try:
        for name in names:
            s = zctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IMMEDIATE, 1)
            s.setsockopt(zmq.SNDHWM, 1)
            s.connect(ctl.socket_path(run_dir, name))
            socks[s] = name
        deadline = time.monotonic() + timeout
        connect_by = time.monotonic() + min(0.5, timeout)
        unsent = set(socks)
        # IMMEDIATE queues nothing for a socket nobody serves: send as each one connects.
        while unsent:
            for s in list(unsent):
                try:
                    s.send(request, zmq.NOBLOCK)
                except zmq.Again:
                    continue
                unsent.discard(s)
                poller.register(s, zmq.POLLIN)
            if not unsent or time.monotonic() >= connect_by:
                break
            time.sleep(0.002)
        waiting = len(socks) - len(unsent)
        while waiting and time.monotonic() < deadline:
            for s, _ev in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                waiting -= 1
                poller.unregister(s)
                try:
                    reply = msgpack.unpackb(s.recv(zmq.NOBLOCK), raw=False)
                except (zmq.ZMQError, ValueError):
                    continue
                if isinstance(reply, dict) and reply.get("ok"):
                    out[socks[s]] = (reply.get("result") or {}).get("families") or []
    finally:
        for s in socks:
            s.close(0)
    return out


def trim_buckets(samples: list) -> list:
    """One histogram child's samples with only the buckets a quantile can use."""
    buckets = [s for s in samples if s[0].endswith("_bucket")]
    if not buckets:
        return samples
    total = buckets[-1][2]
    keep, last_empty = [], None
    for s in buckets:
        if s[2] == 0:
            last_empty = s
            continue
        if last_empty is not None:
            keep.append(last_empty)
            last_empty = None
        keep.append(s)
        if s[2] >= total:
            break
    if buckets[-1] not in keep:
        keep.append(buckets[-1])
    return keep + [s for s in samples if not s[0].endswith("_bucket")]


def samples_of(families: list) -> list:
    """The flat ``[[name, labels, value], ...]`` of ``families``, without empty histograms
    and with trimmed buckets (see the module docstring)."""
    out = []
    for _name, typ, _help, samples in families:
        if typ != "histogram":
            out.extend(samples)
            continue
        children: dict[tuple, list] = {}
        for s in samples:
            key = tuple(sorted((k, v) for k, v in s[1].items() if k != "le"))
            children.setdefault(key, []).append(s)
        for child in children.values():
            if any(s[0].endswith("_count") and s[2] for s in child):
                out.extend(trim_buckets(child))
    return out


def write_scrape(metrics_dir: Path, process: str, ts: str, families: list) -> None:
    line = json.dumps({"ts": ts, "process": process, "samples": samples_of(families)},
                      separators=(",", ":")) + "\n"
    fd = os.open(metrics_dir / f"{process}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Merged:
    """The latest families of every process, as one collector with process/node labels."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[dict[str, str], list]] = {}   # process -> (extra labels, families)
        self.lock = threading.Lock()

    def update(self, process: str, extra: dict[str, str], families: list) -> None:
        with self.lock:
            self.latest[process] = (extra, families)

    def keep_only(self, processes: set[str]) -> None:
        with self.lock:
            for p in set(self.latest) - processes:
                del self.latest[p]

    def collect(self) -> list[Metric]:
        out: dict[str, Metric] = {}
        with self.lock:
            items = sorted(self.latest.items())
        for _process, (extra, families) in items:
            for name, typ, doc, samples in families:
                m = out.get(name)
                if m is None:
                    m = out[name] = Metric(name, doc, typ)
                for sname, labels, value in samples:
                    m.add_sample(sname, {**labels, **extra}, value)
        return list(out.values())


def _handler(merged_registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:   # noqa: N802 (http.server's name)
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "not found: try /metrics")
                return
            body = generate_latest(merged_registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass   # the lab's logs are JSON lines; requests are not worth a line each
    return Handler


def write_port_file(path: str, address: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(address + "\n")
    os.replace(tmp, path)


class Collector:
    def __init__(self, run_dir: Path, metrics_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_dir = Path(metrics_dir)
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.merged = Merged()
        self.rounds = metrics.counter("kemu_metrics_scrapes", "Scrapes of lab processes by result",
                                      ("result",))
        self.duration = metrics.histogram("kemu_metrics_collect_duration_seconds",
                                          "Time to scrape and store every process of the lab once")

    def collect_once(self) -> dict[str, int]:
        t0 = time.perf_counter()
        procs = targets(self.run_dir)
        got = scrape(self.run_dir, sorted(procs))
        ts = now_rfc3339()
        for name, families in got.items():
            extra = {"process": name}
            if procs[name].get("role") == "node":
                extra["node"] = name
            self.merged.update(name, extra, families)
            write_scrape(self.metrics_dir, name, ts, families)
        self.merged.keep_only(set(got) | {PROCESS})
        self.rounds.labels("ok").inc(len(got))
        self.rounds.labels("failed").inc(len(procs) - len(got))
        self.duration.observe(time.perf_counter() - t0)
        own = metrics.families()
        self.merged.update(PROCESS, {"process": PROCESS}, own)
        write_scrape(self.metrics_dir, PROCESS, ts, own)
        return {"scraped": len(got), "failed": len(procs) - len(got)}


def run(run_dir: str, metrics_dir: str, interval: float, *, lab: str | None = None,
        log_path: str | None = None, host: str = "127.0.0.1", port: int = 0,
        port_file: str | None = None, stop: Any = None) -> int:
    """The metrics add-on process; see the module docstring."""
    die_with_parent()
    configure("metrics", lab=lab, path=log_path)
    log = get_logger()
    stop = stop if stop is not None else StopFlag()
    collector = Collector(Path(run_dir), Path(metrics_dir))
    merged_registry = CollectorRegistry(auto_describe=False)
    merged_registry.register(collector.merged)
    httpd = ThreadingHTTPServer((host, port), _handler(merged_registry))
    httpd.daemon_threads = True
    address = f"http://{host}:{httpd.server_address[1]}/metrics"
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    if port_file:
        write_port_file(port_file, address)
    log.info("metrics_listening", address=address, interval_s=interval)
    component.notify_ready()
    try:
        next_at = time.monotonic()
        while not stop:
            if time.monotonic() >= next_at:
                try:
                    collector.collect_once()
                except Exception:   # one bad round must not stop the collection
                    log.exception("metrics_collect_failed")
                next_at = time.monotonic() + interval * random.uniform(0.95, 1.05)
            time.sleep(min(0.1, max(0.0, next_at - time.monotonic())))
    finally:
        httpd.shutdown()
        httpd.server_close()
        log.info("metrics_stopped")
    return 0
