"""Score plugins: NodeResourcesFit (LeastAllocated) and owner spreading.

Contract: every plugin returns, for a list of feasible nodes, integer scores
in 0..100 (``MAX_NODE_SCORE``); ``score_nodes`` sums them with plugin weights.
* ``least_allocated``: per resource, ``(allocatable - requested) * 100 //
  allocatable`` where requested is the node's non-zero requests plus the
  pod's; cpu and memory weigh 1 each, averaged (integer division, as Go does).
* ``selector_spread``: SelectorSpread's scoring over pods with the same
  controller (ownerReferences uid): fewer such pods on the node, and in its
  ``topology.kubernetes.io/zone``, score higher; the zone part weighs 2/3
  when the node has a zone. Pods without a controller score 0 everywhere.
  It stands in for the default PodTopologySpread constraints, so it carries
  PodTopologySpread's default weight of 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from control.scheduler.cache import Cache, NodeInfo
from control.scheduler.podinfo import PodInfo

MAX_NODE_SCORE = 100
ZONE_WEIGHTING = 2.0 / 3.0


@dataclass(frozen=True)
class ScoreWeights:
    node_resources_fit: int = 1
    spread: int = 2
    cpu: int = 1
    memory: int = 1


def least_allocated_scorer(pi: PodInfo, w: ScoreWeights = ScoreWeights()) -> Callable[[NodeInfo], int]:
    """``least_allocated`` of this pod on one node."""
    pc, pm = pi.non_zero[0], pi.non_zero[1]
    wc, wm = w.cpu, w.memory
    total = wc + wm

    def score(ni: NodeInfo) -> int:
        fc, fm, ac, am = ni.fit   # allocatable minus the non-zero requests; allocatable
        sc = (fc - pc) * MAX_NODE_SCORE // ac if ac and pc <= fc else 0
        sm = (fm - pm) * MAX_NODE_SCORE // am if am and pm <= fm else 0
        return (sc * wc + sm * wm) // total
    return score


def least_allocated(pi: PodInfo, nodes: list[NodeInfo], w: ScoreWeights = ScoreWeights()) -> list[int]:
    return list(map(least_allocated_scorer(pi, w), nodes))


def selector_spread(pi: PodInfo, nodes: list[NodeInfo], cache: Cache) -> list[int]:
    owner = pi.owner
    if owner is None:
        return [0] * len(nodes)
    counts = [ni.owner_counts.get(owner, 0) for ni in nodes]
    max_node = max(counts, default=0)
    zones = {ni.zone for ni in nodes if ni.zone}
    zone_counts = {z: cache.owner_count_in_zone(z, owner) for z in zones}
    max_zone = max(zone_counts.values(), default=0)
    out = []
    for ni, c in zip(nodes, counts):
        f = float(MAX_NODE_SCORE)
        if max_node > 0:
            f = MAX_NODE_SCORE * (max_node - c) / max_node
        if zones and ni.zone:
            z = float(MAX_NODE_SCORE)
            if max_zone > 0:
                z = MAX_NODE_SCORE * (max_zone - zone_counts[ni.zone]) / max_zone
            f = f * (1.0 - ZONE_WEIGHTING) + ZONE_WEIGHTING * z
        out.append(int(f))
    return out


def score_nodes(pi: PodInfo, nodes: list[NodeInfo], cache: Cache,
                w: ScoreWeights = ScoreWeights(), fit: list[int] | None = None) -> list[int]:
    """The weighted sum of the plugins' scores; ``fit``: least_allocated's, if known already."""
    if fit is None:
        fit = least_allocated(pi, nodes, w)
    if pi.owner is None:
        return [s * w.node_resources_fit for s in fit]
    spread = selector_spread(pi, nodes, cache)
    return [a * w.node_resources_fit + b * w.spread for a, b in zip(fit, spread)]
