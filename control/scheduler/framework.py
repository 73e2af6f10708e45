"""One scheduling cycle: filter, score, select; and the FitError message.

Contract:
* ``Framework.schedule_one(pod, cache)`` returns a ``ScheduleResult``: the
  chosen node name, or None with ``message`` in kube-scheduler's FitError form.
  It reads the cache and never changes it (the caller assumes the pod).
* Like ``findNodesThatPassFilters``, filtering starts where the previous cycle
  stopped and ends once ``num_feasible_nodes_to_find`` nodes pass, so per-pod
  work is O(sampled nodes). Ties among the best scores are broken at random
  (``rng``, seedable), as ``selectHost`` does with reservoir sampling.
* For each pod shape (``shape_key``: requests, non-zero requests, weights)
  the cache keeps a score row (``Cache.shape_row``): per node slot, the
  least_allocated score of a plain node (schedulable, untainted) known to fit
  the shape, until the node next changes (every change marks its slot
  UNKNOWN). A pod of a known shape then costs a list entry per node instead
  of the filter and the score: the same answers, since on a plain node
  nothing else decides them. When the next ``want`` nodes all fit
  (``_window``), they are taken as slices of the row and the node list, with
  no per-node loop in Python.
* ``fit_error_message`` is ``FitError.Error()`` of v1.32 followed by the
  DefaultPreemption PostFilter message: ``0/3 nodes are available: 1
  node(s) had untolerated taint {k: v}, 2 Insufficient memory. preemption:
  0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No
  preemption victims found for incoming pod.`` kemu does not preempt; a node
  whose failure is resolvable is reported as having no victims. When a
  PreFilter plugin rejects the pod, its message replaces the histogram and
  every node counts as unresolvable (``pre_filter_fit_error``).
* ``extra`` (a per-pod filter, such as the volume plugins') runs on each node
  after the built-in filters, as the later plugins of the default profile do.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterable

from control.scheduler.cache import UNKNOWN, Cache, NodeInfo
from control.scheduler.filters import Status, pod_filter
from control.scheduler.podinfo import PodInfo, pod_info
from control.scheduler.scoring import ScoreWeights, least_allocated_scorer, score_nodes

ExtraFilter = Callable[[NodeInfo], "Status | None"]
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50
ERR_NO_NODES_AVAILABLE = "no nodes available to schedule pods"
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int | None = None) -> int:
    """How many feasible nodes to find before scoring (percentageOfNodesToScore).

    ``percentage`` None or 0 is adaptive (50% - nodes/125, at least 5%); 100
    scores every node. The result is never below 100 nodes (or all of them).
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage == 100:
        return num_all_nodes
    pct = percentage or 0
    if pct <= 0:
        pct = BASE_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes // 125
        pct = max(pct, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    n = num_all_nodes * pct // 100
    return max(n, MIN_FEASIBLE_NODES_TO_FIND)


def shape_key(pi: PodInfo, w: ScoreWeights) -> str | None:
    """What decides, on a plain node (schedulable, untainted), whether a pod fits and its
    least_allocated score: its requests, its non-zero requests and the weights. None for a
    pod with a node selector or required node affinity, whose fit also depends on labels."""
    if pi.node_selector or pi.required_terms is not None:
        return None
    return f"{pi.requests}{pi.non_zero[:2]}{w.cpu},{w.memory}"


def _histogram(lines: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for r in lines:
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))


def fit_error_message(num_all_nodes: int, statuses: dict[str, Status],
                      preemption_never: bool = False) -> str:
    if num_all_nodes == 0:
        return ERR_NO_NODES_AVAILABLE
    msg = f"0/{num_all_nodes} nodes are available: " + \
        _histogram(r for st in statuses.values() for r in st.reasons) + "."
    if preemption_never:
        post = "not eligible due to preemptionPolicy=Never."
    else:
        post = f"0/{len(statuses)} nodes are available: " + _histogram(
            NOT_HELPFUL if st.unresolvable else NO_VICTIMS for st in statuses.values()) + "."
    return f"{msg} preemption: {post}"


def pre_filter_fit_error(num_all_nodes: int, pre_filter_msg: str, preemption_never: bool = False) -> str:
    """The FitError of a pod that a PreFilter plugin rejected (UnschedulableAndUnresolvable)."""
    if num_all_nodes == 0:
        return ERR_NO_NODES_AVAILABLE
    if preemption_never:
        post = "not eligible due to preemptionPolicy=Never."
    else:
        post = f"0/{num_all_nodes} nodes are available: {num_all_nodes} {NOT_HELPFUL}."
    return f"0/{num_all_nodes} nodes are available: {pre_filter_msg}. preemption: {post}"


@dataclass
class ScheduleResult:
    node: str | None
    message: str = ""
    statuses: dict[str, Status] = field(default_factory=dict)
    evaluated: int = 0
    feasible: int = 0


class Framework:
    def __init__(self, rng: random.Random | None = None, percentage_of_nodes_to_score: int | None = None,
                 weights: ScoreWeights = ScoreWeights()) -> None:
        self.rng = rng or random.Random()
        self.percentage = percentage_of_nodes_to_score
        self.weights = weights
        self.next_start_node_index = 0

    def find_feasible(self, pi: PodInfo, cache: Cache, extra: ExtraFilter | None = None,
                      fit_scores: list[int] | None = None) -> tuple[list[NodeInfo], dict[str, Status], int]:
        """Filter ``cache.node_infos()`` from ``next_start_node_index`` until enough nodes pass.

        Returns the feasible nodes, the failing nodes' statuses, and how many
        nodes were processed; ``fit_scores`` (if given) gets each feasible
        node's least_allocated score, in the same order. A plain node that a
        pod of the same shape (``shape_key``) fitted since the node last
        changed is not filtered or scored again: the shape's score row
        (``Cache.shape_row``) has its score."""
        nodes = cache.node_infos()
        n = len(nodes)
        want = num_feasible_nodes_to_find(n, self.percentage)
        feasible: list[NodeInfo] = []
        scores = fit_scores if fit_scores is not None else []
        statuses: dict[str, Status] = {}
        start = self.next_start_node_index % n if n else 0
        processed = 0
        check = pod_filter(pi)
        score = least_allocated_scorer(pi, self.weights)
        key = shape_key(pi, self.weights) if extra is None else None
        row = cache.shape_row(key) if key is not None and n else None

        def fit(i: int) -> tuple[int, Status | None]:
            """Filter and score node ``i``, not known to fit; a plain node's score is kept."""
            ni = nodes[i]
            st = check(ni)
            if st is None and extra is not None:
                st = extra(ni)
            if st is not None:
                return UNKNOWN, st
            s = score(ni)
            if row is not None and ni.plain:
                row[i] = s
            return s, None

        if row is not None:
            window = self._window(nodes, row, start, want, fit)
            if window is not None:   # the next ``want`` nodes all fit
                feasible, known = window
                scores.extend(known)
                self.next_start_node_index = (start + want) % n
                return feasible, statuses, want
        # Indices, not ``nodes[start:] + nodes[:start]``: that copy touched every NodeInfo (a
        # reference count each) for the ~500 this loop reads; at 10,000 nodes, half its time.
        for i in chain(range(start, n), range(start)):
            processed += 1
            s = row[i] if row is not None else UNKNOWN
            if s == UNKNOWN:
                s, st = fit(i)
                if st is not None:
                    statuses[nodes[i].name] = st
                    continue
            feasible.append(nodes[i])
            scores.append(s)
            if len(feasible) >= want:
                break
        if n:
            self.next_start_node_index = (start + processed) % n
        return feasible, statuses, processed

    @staticmethod
    def _window(nodes: list[NodeInfo], row: list[int], start: int, want: int,
                fit: Callable[[int], tuple[int, Status | None]]
                ) -> tuple[list[NodeInfo], list[int]] | None:
        """The common case in one pass: the ``want`` nodes from ``start`` all fit, and
        most are known to (their scores in ``row``). Their scores, or None as soon as
        one does not fit. Slices of the row and the node list, with no per-node loop
        in Python: reading 500 NodeInfos' memos one by one was 42% of the scheduler's
        time in a 10,000-node lab."""
        n = len(nodes)
        end = start + want
        if end <= n:
            window, scores = nodes[start:end], row[start:end]
        else:
            window, scores = nodes[start:] + nodes[:end - n], row[start:] + row[:end - n]
        j = -1
        while UNKNOWN in scores:   # filter and score the nodes that changed since a pod of this shape
            j = scores.index(UNKNOWN, j + 1)
            s, st = fit((start + j) % n)
            if st is not None:
                return None
            scores[j] = s
        return window, scores

    def select_host(self, nodes: list[NodeInfo], scores: list[int]) -> str:
        """The best-scoring node; a uniformly random one among equal bests."""
        best = max(scores)
        ties = scores.count(best)
        if ties == 1:
            return nodes[scores.index(best)].name
        if ties == len(scores):
            return nodes[self.rng.randrange(ties)].name
        i = -1
        for _ in range(self.rng.randrange(ties) + 1):   # the k-th of the ties, k uniform
            i = scores.index(best, i + 1)
        return nodes[i].name

    def schedule_one(self, pod: dict | PodInfo, cache: Cache, extra: ExtraFilter | None = None) -> ScheduleResult:
        pi = pod if isinstance(pod, PodInfo) else pod_info(pod)
        n = len(cache.node_infos())
        if not n:
            return ScheduleResult(None, ERR_NO_NODES_AVAILABLE)
        fit: list[int] = []
        feasible, statuses, processed = self.find_feasible(pi, cache, extra, fit)
        if not feasible:
            return ScheduleResult(None, fit_error_message(n, statuses, pi.preemption_never),
                                  statuses, processed, 0)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, "", statuses, processed, 1)
        scores = score_nodes(pi, feasible, cache, self.weights, fit)
        return ScheduleResult(self.select_host(feasible, scores), "", statuses, processed, len(feasible))


def schedule_one(pod: dict, cache: Cache, rng: random.Random | None = None,
                 percentage_of_nodes_to_score: int | None = None) -> ScheduleResult:
    """A one-off cycle with a fresh Framework (tests, tools)."""
    return Framework(rng, percentage_of_nodes_to_score).schedule_one(pod, cache)
