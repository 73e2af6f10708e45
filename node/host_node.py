"""One node inside a node host (``node.host``): its own client, kubelet, kube-proxy and clock.

Contract
--------
* ``HostedNode(spec, server, profile, lab)`` is one node of the host; ``spec`` holds
  the node's name, root directory and the kubelet's configuration (zone, cpu,
  memory, pods, ephemeral storage, node IP, pod CIDR, shared root). ``current`` is
  its running incarnation (a ``NodeRun``) or None (stopped); ``paused``: not stepped.
  ``clock`` is the node's own wall clock (``emulator.clock.WallClock``): the host's
  per-node ``clock`` op skews it, and only this node writes skewed times.
* ``open()`` makes a fresh ``NodeRun`` the current one: a ``Client`` (its own DEALER
  socket; its netem local name is the node's name, so a network fault on the node
  cuts only its traffic), a ``Kubelet`` on the fake runtime (which adopts what the
  node's directory holds, as a restarted kubelet does) and a ``KubeProxy``. It
  never calls the apiserver.
* ``NodeRun.step(wait=0)``: not yet started -> try ``Kubelet.start`` once (back-off
  on a lost apiserver, jittered, doubling to 1 s); started -> one kubelet turn
  (waiting up to ``wait`` for frames) and one proxy turn. Never raises for a lost
  apiserver. ``next_due()``: the monotonic time at which ``step`` has work that no
  frame on the socket announces: the kubelet's and the proxy's timers, a start
  retry, a frame held by netem (delay, rate), watch events its client already
  buffered, an informer's relist back-off. ``socket()``: the zmq socket to poll (it
  changes when the client reconnects), or None.
* ``NodeRun.close()``: as if the node's process died: the client's socket is closed,
  no goodbye is sent (its Lease stops being renewed), the probe pool is dropped,
  the runtime's journal is closed.
  Only the thread that steps a run closes it.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from emulator import logging as klog
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.clock import WallClock
from emulator.informer import Informer
from emulator.profiles import Profile

START_BACKOFF_MAX = 1.0


@dataclass
class NodeSpec:
    name: str
    root_dir: str
    zone: str = ""
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    ephemeral_storage: str = "100Gi"
    node_ip: str = "127.0.0.1"
    pod_cidr: str | None = None
    shared_root: str | None = None


def _informer_due(inf: Informer | None, now: float) -> float:
    """An informer whose watch ended relists on its next ``process`` once its back-off passed."""
    if inf is None or (inf.watch is not None and not inf.watch.closed):
        return math.inf
    return max(now, getattr(inf, "_retry_at", 0.0))


def node_next_due(kubelet: Any, proxy: Any, client: Any) -> float:
    """When a node's kubelet or kube-proxy next has work (monotonic time), for a loop
    that sleeps until then (a node host, and a node process's own loop)."""
    now = time.monotonic()
    due = min(kubelet.next_due(), _informer_due(kubelet.informer, now),
              _informer_due(proxy.services, now), _informer_due(proxy.slices, now),
              proxy.next_due() if proxy.started else getattr(proxy, "_retry_at", now))
    return min(due, client.next_due(now))


class NodeRun:
    """One incarnation of a node: what a node process holds between its start and its death."""

    def __init__(self, spec: NodeSpec, server: str, profile: Profile, lab: str | None,
                 wall: WallClock, host_stopping: Callable[[], bool] = lambda: False) -> None:
        from node.kubelet.kubelet import Kubelet
        from node.proxy.proxy import KubeProxy
        s = spec
        os.makedirs(s.root_dir, exist_ok=True)
        self.client = Client(server, component="kubelet", node=s.name, lab=lab)
        self.client.cancelled = lambda: self.closed or host_stopping()   # a stop never waits on the apiserver
        # No runtime given: the kubelet's own default, the fake runtime on the node's journal.
        self.kubelet = Kubelet(self.client, profile, s.name, wall=wall, root_dir=s.root_dir,
                               zone=s.zone, cpu=s.cpu, memory=s.memory, pods=s.pods,
                               ephemeral_storage=s.ephemeral_storage, node_ip=s.node_ip,
                               pod_cidr=s.pod_cidr, shared_root=s.shared_root)
        self.proxy = KubeProxy(self.client, profile, s.name, root_dir=s.root_dir, node_ip=s.node_ip,
                               forward=False)
        self.started = False
        self.closed = False
        self.threaded = False   # stepped by a thread of its own (node.host: a network fault)
        self._retry_at = 0.0
        self._delay = 0.1
        self.log = klog.get_logger()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.kubelet.prober.close()
            self.kubelet.runtime.close()
            self.client.close()

    def socket(self) -> Any:
        conn = getattr(self.client, "_conn", None)
        conn = getattr(conn, "inner", conn)   # under a NetemConnection
        return getattr(conn, "sock", None)

    def step(self, wait: float = 0.0) -> None:
        if not self.started:
            if time.monotonic() < self._retry_at:
                return
            try:
                self.kubelet.start()
                self.started = True
            except (APIError, ConnectionError) as e:
                self.log.warning("apiserver_unavailable", error=str(e), retry_in=round(self._delay, 3))
                self._retry_at = time.monotonic() + random.uniform(self._delay / 2, self._delay)
                self._delay = min(START_BACKOFF_MAX, self._delay * 2)
                return
        self.kubelet.step(wait)
        self.proxy.step(0)

    def next_due(self) -> float:
        if not self.started:
            return self._retry_at
        return node_next_due(self.kubelet, self.proxy, self.client)


class HostedNode:
    def __init__(self, spec: NodeSpec, server: str, profile: Profile, lab: str | None = None,
                 host_stopping: Callable[[], bool] = lambda: False) -> None:
        self.spec = spec
        self.host_stopping = host_stopping
        self.name = spec.name
        self.server = server
        self.profile = profile
        self.lab = lab
        self.clock = WallClock()
        self.current: NodeRun | None = None
        self.paused = False

    @property
    def running(self) -> bool:
        return self.current is not None

    def open(self) -> NodeRun:
        self.current = NodeRun(self.spec, self.server, self.profile, self.lab, self.clock,
                               self.host_stopping)
        self.paused = False
        return self.current
