"""The node's heartbeat Lease in ``kube-node-lease``.

Contract (the kubelet's ``nodelease`` controller)
-------------------------------------------------
* ``build_lease(node_name, node_uid, duration, now)``: Lease ``<node>`` in
  ``kube-node-lease`` with ``holderIdentity`` = node name,
  ``leaseDurationSeconds``, ``renewTime`` (RFC 3339 with microseconds) and an
  ownerReference to the Node, so the Lease goes when the Node does.
* ``renew_interval(base, jitter, rng)``: the next renewal is ``base``
  stretched by up to ``jitter`` (client-go's ``wait.Jitter``).
"""
from __future__ import annotations

import random

from emulator.events import micro_time

LEASE_NAMESPACE = "kube-node-lease"


def lease_spec(node_name: str, duration: float, now: float) -> dict:
    return {"holderIdentity": node_name, "leaseDurationSeconds": max(1, int(round(duration))),
            "renewTime": micro_time(now)}


def build_lease(node_name: str, node_uid: str | None, duration: float, now: float) -> dict:
    md: dict = {"name": node_name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                  "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": lease_spec(node_name, duration, now)}


def renew_interval(base: float, jitter: float, rng: random.Random | None = None) -> float:
    r = (rng or random).random()
    return base * (1.0 + jitter * r)
