"""kube-proxy: keeps a node's rules table in step with Services and EndpointSlices.

Contract
--------
* ``KubeProxy(client, profile, node_name, root_dir=None, node_ip="127.0.0.1",
  clock=time.monotonic)`` with ``start()`` (list and watch Services and
  EndpointSlices in every namespace; raises APIError if the apiserver is
  unreachable) and ``step(timeout)`` (one loop turn; never raises for a lost
  apiserver). The kubelet may drive it on its own client, in its own loop:
  call ``step(0)`` after each of its steps (``client.poll`` already buffered
  the events; ``step(0)`` only handles them). ``step`` starts the proxy
  itself if ``start()`` was not called or failed, retrying with jittered
  back-off, so the host loop never has to handle a start failure.
* After any event, the table is recomputed from the informer caches as a
  whole (``rules.compute_table``) and swapped in at once: a relist replaces it
  atomically, and a node cut off from the apiserver keeps its last (stale)
  table until it hears from the apiserver again, as a real kube-proxy does.
  Syncs are rate-limited to one per ``profile.proxy_min_sync_period``
  (kube-proxy's ``--iptables-min-sync-period``: 1 s by default, 50 ms in ``fast``).
* ``table()`` returns the current ``rules.Table``; ``rendered()`` its
  iptables-save text. When ``root_dir`` is given, each sync that changes the
  text writes it atomically to ``<root_dir>/var/lib/kemu/proxy-rules.txt``
  (what ``kemu proxy rules NODE`` prints).
* Each sync logs ``proxy_sync`` with ``duration_ms``, ``rules`` (lines of
  rendered rules), ``services`` and ``endpoints``, and observes its duration
  in ``kubeproxy_sync_proxy_rules_duration_seconds`` (kube-proxy's metric).
* ``forward=True`` (the kubelet sets it when its runtime is real) also moves
  real TCP: a ``forwarder.Forwarder`` (its own loop thread, started with the
  proxy) listens on every ClusterIP:port and on ``node_ip``:nodePort and
  relays to the table's endpoints. Each sync that changes the table hands it
  to the forwarder; listeners that failed to bind are retried every
  ``LISTEN_RETRY_PERIOD`` seconds. ``stop()`` stops it. Without ``forward``
  the proxy keeps tables only (the fake runtime: no process listens anywhere).
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable

from emulator import metrics
from emulator.api.errors import APIError
from emulator.component import start_with_backoff
from emulator.client import Client
from emulator.informer import Informer, start_informers
from emulator.logging import configure, get_logger
from emulator.process import StopFlag, die_with_parent
from emulator.profiles import Profile, get_profile
from node.proxy import rules
from node.proxy.forwarder import Forwarder

RULES_FILE = os.path.join("var", "lib", "kemu", "proxy-rules.txt")
LISTEN_RETRY_PERIOD = 5.0


def rules_path(root_dir: str) -> str:
    return os.path.join(root_dir, RULES_FILE)


class KubeProxy:
    def __init__(self, client: Client, profile: Profile, node_name: str, *, root_dir: str | None = None,
                 node_ip: str = "127.0.0.1", clock: Callable[[], float] = time.monotonic,
                 forward: bool = False) -> None:
        self.client = client
        self.profile = profile
        self.node_name = node_name
        self.root_dir = root_dir
        self.node_ip = node_ip
        self.clock = clock
        self.log = get_logger()
        self.services = Informer(client, "Service", clock=clock)
        self.slices = Informer(client, "EndpointSlice", clock=clock)
        for inf in (self.services, self.slices):
            inf.add_event_handler(self._changed, lambda _o, _n: self._changed(), lambda _o: self._changed())
        self.min_sync_period = profile.proxy_min_sync_period
        self._table = rules.Table(node_name, node_ip)
        self._rendered = rules.render_iptables(self._table)
        self.dirty = False
        self.next_sync = 0.0
        self.syncs = 0
        self.started = False
        self._failures = 0
        self._retry_at = 0.0
        self.forwarder: Forwarder | None = Forwarder(node_name, node_ip) if forward else None
        self._listen_retry_at = 0.0
        self.sync_duration = metrics.loop_histogram(   # the node's loop is one thread
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", (),
            metrics.exponential_buckets(0.001, 2, 15))

    def _changed(self, *_: Any) -> None:
        self.dirty = True

    # -- reads ------------------------------------------------------------------
    def table(self) -> rules.Table:
        return self._table

    def rendered(self) -> str:
        return self._rendered

    # -- the loop -----------------------------------------------------------------
    def start(self) -> None:
        if self.forwarder is not None:
            self.forwarder.start()
        start_informers([self.services, self.slices])
        self.started = True
        self.sync()
        self.log.info("proxy_started", node_name=self.node_name, services=len(self._table.services))

    def next_due(self) -> float:
        return max(self.next_sync, self.clock()) if self.dirty else float("inf")

    def step(self, timeout: float) -> None:
        now = self.clock()
        if not self.started:   # not started yet, or start() failed: retry with back-off
            if now >= self._retry_at:
                try:
                    self.start()
                except (APIError, ConnectionError) as e:
                    self._failures += 1
                    delay = min(30.0, 0.1 * 2 ** min(self._failures, 8))
                    self._retry_at = now + random.uniform(delay / 2, delay)
                    self.log.warning("proxy_start_failed", error=str(e), retry_in=round(delay, 3))
            return
        wait = max(0.0, min(timeout, self.next_due() - now))
        try:
            if wait > 0:
                self.client.poll(wait)
            self.services.process()
            self.slices.process()
        except (APIError, ConnectionError) as e:
            self.log.warning("apiserver_unavailable", component="kube-proxy", error=str(e))
            return
        if self.dirty and self.clock() >= self.next_sync:
            self.sync()
        elif self.forwarder is not None and self.forwarder.failed_listeners() and now >= self._listen_retry_at:
            self._listen_retry_at = now + LISTEN_RETRY_PERIOD
            self.forwarder.update(self._table)

    def sync(self) -> None:
        """Recompute the whole table from the caches and swap it in."""
        if not (self.services.has_synced and self.slices.has_synced):
            return
        t0 = time.perf_counter()
        self.dirty = False
        self.next_sync = self.clock() + self.min_sync_period
        table = rules.compute_table(self.services.list(), self.slices.list(), self.node_name, self.node_ip)
        text = rules.render_iptables(table)
        changed = text != self._rendered or self.syncs == 0
        self._table, self._rendered = table, text
        self.syncs += 1
        if changed and self.root_dir:
            self._write(text)
        if changed and self.forwarder is not None:
            self._listen_retry_at = self.clock() + LISTEN_RETRY_PERIOD
            self.forwarder.update(table)
        elapsed = time.perf_counter() - t0
        self.sync_duration.observe((), elapsed)
        self.log.info("proxy_sync", node_name=self.node_name,
                      duration_ms=round(elapsed * 1000, 3),
                      rules=text.count("\n-A "), services=len(table.services),
                      endpoints=sum(len(s.endpoints) for s in table.services), changed=changed)

    def _write(self, text: str) -> None:
        assert self.root_dir is not None
        path = rules_path(self.root_dir)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as e:   # a full disk must not stop the proxy
            self.log.warning("proxy_rules_write_failed", path=path, error=str(e))

    def stop(self) -> None:
        self.services.stop()
        self.slices.stop()
        if self.forwarder is not None:
            self.forwarder.stop()


def run(server: str, node_name: str, profile_name: str = "default", root_dir: str | None = None,
        log_path: str | None = None, lab: str | None = None, stop: Any = None,
        node_ip: str = "127.0.0.1", forward: bool = False) -> int:
    """kube-proxy as its own process (the lab normally runs it inside the node process)."""
    die_with_parent()
    configure("kube-proxy", node=node_name, lab=lab, path=log_path)
    log = get_logger()
    stop = stop if stop is not None else StopFlag()
    profile = get_profile(profile_name)
    client = Client(server, component="kube-proxy", node=node_name, lab=lab)
    proxy = KubeProxy(client, profile, node_name, root_dir=root_dir, node_ip=node_ip, forward=forward)
    try:
        start_with_backoff(proxy.start, stop, log)
        while not stop:
            proxy.step(0.1)
    finally:
        log.info("proxy_stopped")
        proxy.stop()
        client.close()
    return 0
