"""The node's heartbeats: registration, the Lease and NodeStatus.

Contract (the kubelet's ``registerWithAPIServer``, ``nodelease`` controller
and ``updateNodeStatus``)
----------------------------------------------------------------------------
* ``register()`` creates the Node, or adopts an existing one by posting its
  status; raises APIError if the apiserver cannot be reached.
* ``run_due(now, soon)`` does what is due at monotonic time ``soon`` (default
  ``now``; a caller coalescing its timers passes ``now`` plus its slack, and
  the next times are counted from ``now``): register if
  not yet registered (or if the Node vanished), renew the Lease every
  ``node_lease_renew_interval`` stretched by up to ``jitter``, compute the
  status every ``node_status_update_frequency`` and post it when it changed
  (ignoring heartbeat times) or when ``node_status_report_frequency`` has
  passed. A failure is logged and retried after a quarter of the renew
  interval; it never raises.
* A renewal is an update of the Lease last written (its resourceVersion, a
  new ``renewTime``), as the kubelet's lease controller does; a Conflict
  (someone else wrote it) falls back to a merge patch, NotFound creates it.
* ``run_due`` pipelines the update, as the lease controller runs beside the
  pod workers: it is sent and its reply taken on a later turn
  (``Client.take_reply``), one renewal in flight at a time. A host's hundred
  nodes then do not renew one round trip after another: with the apiserver's
  round trip at 0.4 s, a blocking host could not renew each node within the
  40 s grace period (``docs/architecture.md``). A reply not come within the
  client's timeout is given up and the renewal sent again at once; a
  Conflict is answered at once by a patch, pipelined too; NotFound by a
  create. The first Lease, the create, ``renew_lease()`` called directly and
  any renewal on a lossy link (netem loss: only a request waited for is
  retransmitted) wait for their reply.
* ``next_due()`` is the monotonic time of the next due work.
"""
from __future__ import annotations

import random
from typing import Any, Callable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.events import EventRecorder
from emulator.profiles import Profile
from node.kubelet import lease, node_status


class NodeHeartbeat:
    def __init__(self, client: Client, profile: Profile, cfg: node_status.NodeConfig, *,
                 boot_id: str, clock: Callable[[], float], wall: Callable[[], float],
                 rng: random.Random, recorder: EventRecorder, log: Any) -> None:
        self.client = client
        self.profile = profile
        self.cfg = cfg
        self.boot_id = boot_id
        self.clock = clock
        self.wall = wall
        self.rng = rng
        self.recorder = recorder
        self.log = log
        self.node: dict | None = None
        self.posted: dict | None = None   # the status last posted
        self.unchanged_for: tuple | None = None   # (inputs, id(posted)) last found unchanged
        self.registered = False
        self.lease_exists: bool | None = None   # None: unknown, so patch first
        self.next_lease = 0.0
        self.next_status = 0.0
        self.last_post = -1e18
        self.retry = profile.node_lease_renew_interval / 4
        self.lease: dict | None = None      # the Lease as last written
        self.lease_rid: int | None = None   # a pipelined renewal in flight
        self.lease_sent_at = 0.0

    def node_ref(self) -> dict:
        return {"kind": "Node", "apiVersion": "v1",
                "metadata": {"name": self.cfg.name, "uid": self.cfg.name}}

    def register(self) -> None:
        wall = self.wall()
        try:
            self.node = self.client.create(node_status.build_node(self.cfg, wall, self.boot_id))
            self.lease_exists = False   # a new Node almost never has a Lease: create it directly
            self.log.info("node_registered", kind="Node", name=self.cfg.name)
        except APIError as e:
            if e.code != errors.ALREADY_EXISTS:
                raise
            existing = self.client.get("Node", self.cfg.name)
            status = node_status.node_status(self.cfg, wall, existing.get("status"), self.boot_id)
            self.node = self.client.patch("Node", self.cfg.name, {"status": status},
                                          subresource="status")
            self.log.info("node_adopted", kind="Node", name=self.cfg.name)
        self.posted = self.node.get("status")
        self.unchanged_for = None
        now = self.clock()
        self.last_post = now
        self.registered = True
        self.next_status = now + self.profile.node_status_update_frequency
        self.recorder.event(self.node_ref(), "Normal", "NodeReady",
                            f"Node {self.cfg.name} status is now: NodeReady")

    def next_due(self) -> float:
        due = min(self.next_lease, self.next_status)
        if self.lease_rid is not None:   # look back when the renewal in flight times out
            due = min(due, self.lease_sent_at + self.client.timeout)
        return due

    def run_due(self, now: float, soon: float | None = None) -> None:
        soon = now if soon is None else soon
        if soon >= self.next_status or not self.registered:
            try:
                if not self.registered:
                    self.register()
                else:
                    self._update_status(now)
            except APIError as e:
                if e.code == errors.NOT_FOUND:
                    self.registered = False   # the Node was deleted: register again
                self.next_status = now + self.retry
                self.log.warning("node_status_update_failed", kind="Node", name=self.cfg.name,
                                 code=e.code, error=e.message)
        if self.lease_rid is not None:
            self._collect_renewal(now)
        if soon >= self.next_lease and self.lease_rid is None:
            try:
                if self.lease_exists and not self.client.lossy:
                    self._send_renewal(now)
                else:
                    self.renew_lease(now)
            except APIError as e:
                self.next_lease = now + self.retry
                self.log.warning("lease_renew_failed", kind="Lease", namespace=lease.LEASE_NAMESPACE,
                                 name=self.cfg.name, code=e.code, error=e.message)

    def _update_status(self, now: float) -> None:
        self.next_status = now + self.profile.node_status_update_frequency
        report = now - self.last_post >= self.profile.node_status_report_frequency
        # The same inputs against the same posted status give the same answer: do not
        # build a NodeStatus to learn again that it is unchanged (10,000 nodes, every 10 s).
        key = (node_status.status_inputs(self.cfg, self.boot_id), id(self.posted))
        if key == self.unchanged_for and not report:
            return
        status = node_status.node_status(self.cfg, self.wall(), self.posted, self.boot_id)
        if node_status.status_changed(status, self.posted) or report:
            self.node = self.client.patch("Node", self.cfg.name, {"status": status},
                                          subresource="status")
            self.posted = self.node.get("status")
            self.last_post = now
            self.unchanged_for = None
        else:
            self.unchanged_for = key

    def _renewed(self, spec: dict) -> dict:
        """The Lease last written with ``spec`` (a new renewTime): the lease controller's
        update, with its resourceVersion (the apiserver has no patch to merge)."""
        assert self.lease is not None
        return dict(self.lease, spec=dict(self.lease.get("spec") or {}, **spec))

    def _send_renewal(self, now: float) -> None:
        """Send the update of the Lease last written, or a patch when that is unknown
        (after a Conflict), without waiting."""
        spec = lease.lease_spec(self.cfg.name, self.profile.node_lease_duration, self.wall())
        if self.lease is not None:
            self.lease_rid = self.client.send("update", object=self._renewed(spec))
        else:
            self.lease_rid = self.client.send("patch", kind="Lease", name=self.cfg.name,
                                              patch={"spec": spec}, namespace=lease.LEASE_NAMESPACE)
        self.lease_sent_at = now
        self._next_renewal(now)

    def _collect_renewal(self, now: float) -> None:
        """Take the pipelined renewal's reply, or give it up after the client's timeout."""
        assert self.lease_rid is not None
        done, result = self.client.take_reply(self.lease_rid)
        if not done:
            if now - self.lease_sent_at <= self.client.timeout:
                return
            self.client.forget(self.lease_rid)
            result = APIError(errors.TIMEOUT, f"no reply within {self.client.timeout:g}s")
        self.lease_rid = None
        if not isinstance(result, APIError):
            self.lease = result
            return
        if result.code in (errors.CONFLICT, errors.NOT_FOUND, errors.TIMEOUT):
            # Someone else wrote it (a patch next), it is gone (a create, waited for), or
            # the reply was lost (the same again; a Conflict if it was applied after all):
            # renew at once.
            if result.code != errors.TIMEOUT:
                self.lease = None
            if result.code == errors.NOT_FOUND:
                self.lease_exists = False
            self.next_lease = now
        else:
            self.next_lease = now + self.retry
        if result.code != errors.CONFLICT:
            self.log.warning("lease_renew_failed", kind="Lease", namespace=lease.LEASE_NAMESPACE,
                             name=self.cfg.name, code=result.code, error=result.message)

    def renew_lease(self, now: float) -> None:
        """Renew the Lease now and wait for the reply (the first Lease, a create, a lossy link)."""
        spec = lease.lease_spec(self.cfg.name, self.profile.node_lease_duration, self.wall())
        if self.lease_exists and self.lease is not None:
            # A Conflict (someone else wrote it) falls back to a patch, which needs no
            # resourceVersion.
            try:
                self.lease = self.client.update(self._renewed(spec))
                self._next_renewal(now)
                return
            except APIError as e:
                if e.code not in (errors.CONFLICT, errors.NOT_FOUND):
                    raise
                self.lease = None
                if e.code == errors.NOT_FOUND:
                    self.lease_exists = False
        if self.lease_exists is False:
            try:
                self.lease = self._create_lease()
            except APIError as e:
                if e.code != errors.ALREADY_EXISTS:
                    raise
                self.lease = self._patch_lease(spec)
        else:
            try:
                self.lease = self._patch_lease(spec)
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
                self.lease = self._create_lease()
        self.lease_exists = True
        self._next_renewal(now)

    def _create_lease(self) -> dict:
        uid = ((self.node or {}).get("metadata") or {}).get("uid")
        return self.client.create(lease.build_lease(self.cfg.name, uid, self.profile.node_lease_duration,
                                                    self.wall()))

    def _patch_lease(self, spec: dict) -> dict:
        return self.client.patch("Lease", self.cfg.name, {"spec": spec}, namespace=lease.LEASE_NAMESPACE)

    def _next_renewal(self, now: float) -> None:
        self.next_lease = now + lease.renew_interval(self.profile.node_lease_renew_interval,
                                                     self.profile.jitter, self.rng)
