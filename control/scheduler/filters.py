"""Filter plugins, with Kubernetes' plugin names, order and failure reasons.

Contract: each filter takes ``(PodInfo, NodeInfo)`` and returns None when the
node passes, or a ``Status`` with the reasons and whether they are
unresolvable (``UnschedulableAndUnresolvable``: preemption cannot help).
``run_filters`` runs them in the default profile's order and stops at the
first failing plugin, as ``RunFilterPlugins`` does. Reasons are worded as
kube-scheduler v1.32 words them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from control.scheduler.cache import TAINT_UNSCHEDULABLE, NodeInfo
from control.scheduler.podinfo import PodInfo

ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_TOO_MANY_PODS = "Too many pods"


@dataclass(frozen=True)
class Status:
    reasons: tuple[str, ...]
    unresolvable: bool = False


# -- toleration matching (k8s.io/api/core/v1 Toleration.ToleratesTaint) ------
def tolerates(toleration: dict, taint: dict) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return op == "Exists"


def tolerated(tolerations: list[dict], taint: dict) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated_taint(tolerations: list[dict], taints: list[dict]) -> dict | None:
    """The first NoSchedule/NoExecute taint no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(tolerations, taint):
            return taint
    return None


def taint_reason(taint: dict) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"


# -- node affinity (component-helpers nodeaffinity) -------------------------
def _int(s: str) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def match_expression(expr: dict, labels: dict[str, str]) -> bool:
    key = expr.get("key") or ""
    op = expr.get("operator")
    values = expr.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        have, want = _int(labels[key]), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def match_field(expr: dict, node_name: str) -> bool:
    if expr.get("key") != "metadata.name":
        return False
    values = expr.get("values") or []
    if expr.get("operator") == "In":
        return node_name in values
    if expr.get("operator") == "NotIn":
        return node_name not in values
    return False


def match_term(term: dict, labels: dict[str, str], node_name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False   # an empty term selects no objects
    return all(match_expression(e, labels) for e in exprs) and \
        all(match_field(f, node_name) for f in fields)


def match_node_selector_terms(terms: list[dict], labels: dict[str, str], node_name: str) -> bool:
    return any(match_term(t, labels, node_name) for t in terms)


# -- the plugins -------------------------------------------------------------
_UNSCHEDULABLE_TAINT = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}


def node_unschedulable(pi: PodInfo, ni: NodeInfo) -> Status | None:
    if ni.unschedulable and not tolerated(pi.tolerations, _UNSCHEDULABLE_TAINT):
        return Status((ERR_UNSCHEDULABLE,), True)
    return None


def taint_toleration(pi: PodInfo, ni: NodeInfo) -> Status | None:
    if not ni.taints:
        return None
    taint = untolerated_taint(pi.tolerations, ni.taints)
    if taint is None:
        return None
    return Status((taint_reason(taint),), True)


def node_affinity(pi: PodInfo, ni: NodeInfo) -> Status | None:
    labels = ni.labels
    for k, v in pi.node_selector.items():
        if labels.get(k) != v:
            return Status((ERR_NODE_AFFINITY,), True)
    if pi.required_terms is not None and \
            not match_node_selector_terms(pi.required_terms, labels, ni.name):
        return Status((ERR_NODE_AFFINITY,), True)
    return None


def node_resources_fit(pi: PodInfo, ni: NodeInfo) -> Status | None:
    reasons: list[str] = []
    unresolvable = False
    if len(ni.pods) + 1 > ni.allowed_pods:
        reasons.append(ERR_TOO_MANY_PODS)
    req = pi.requests
    if req[0] or req[1] or req[2]:
        alloc, used = ni.allocatable, ni.requested
        for i, name in ((0, "cpu"), (1, "memory"), (2, "ephemeral-storage")):
            if req[i] > 0 and req[i] > alloc[i] - used[i]:
                reasons.append(f"Insufficient {name}")
                unresolvable = unresolvable or req[i] > alloc[i]
    if reasons:
        return Status(tuple(reasons), unresolvable)
    return None


Filter = Callable[[PodInfo, NodeInfo], "Status | None"]

# The default profile's order (NodeName is moot: unscheduled pods have no nodeName).
FILTERS: tuple[tuple[str, Filter], ...] = (
    ("NodeUnschedulable", node_unschedulable),
    ("TaintToleration", taint_toleration),
    ("NodeAffinity", node_affinity),
    ("NodeResourcesFit", node_resources_fit),
)


def run_filters(pi: PodInfo, ni: NodeInfo) -> Status | None:
    for _name, f in FILTERS:
        st = f(pi, ni)
        if st is not None:
            return st
    return None


_NODE_UNSCHEDULABLE = Status((ERR_UNSCHEDULABLE,), True)


def pod_filter(pi: PodInfo) -> Callable[[NodeInfo], "Status | None"]:
    """``run_filters`` specialised to one pod: the same answers, with a fast path for fitting nodes.

    The scheduling cycle calls it once per candidate node, so it skips the
    plugins this pod cannot fail (no selector: no NodeAffinity) and checks
    resources inline before building a Status.
    """
    tolerates_unschedulable = tolerated(pi.tolerations, _UNSCHEDULABLE_TAINT)
    has_affinity = bool(pi.node_selector) or pi.required_terms is not None
    cpu, mem, eph = pi.requests
    # A request of 0 fits even an overcommitted node: compare it as -inf.
    low = -(1 << 62)
    c_, m_, e_ = cpu or low, mem or low, eph or low

    def check(ni: NodeInfo) -> Status | None:
        if ni.plain and not has_affinity:   # the common case, from the node's derived fields
            f = ni.free
            if f[3] > 0 and c_ <= f[0] and m_ <= f[1] and e_ <= f[2]:
                return None
        if ni.unschedulable and not tolerates_unschedulable:
            return _NODE_UNSCHEDULABLE
        if ni.taints:
            st = taint_toleration(pi, ni)
            if st is not None:
                return st
        if has_affinity:
            st = node_affinity(pi, ni)
            if st is not None:
                return st
        a, u = ni.allocatable, ni.requested
        if len(ni.pods) < ni.allowed_pods and (not cpu or cpu <= a[0] - u[0]) \
                and (not mem or mem <= a[1] - u[1]) and (not eph or eph <= a[2] - u[2]):
            return None
        return node_resources_fit(pi, ni)
    return check
