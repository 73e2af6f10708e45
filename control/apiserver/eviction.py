"""The ``pods/eviction`` subresource (after ``pkg/registry/core/pod/storage/eviction.go``).

Contract: ``evict(resources, name, eviction, namespace)`` handles a create of
an ``Eviction`` (policy/v1 or v1beta1; ``metadata.name`` = the pod, optional
``deleteOptions`` with ``gracePeriodSeconds`` and ``preconditions``) and
returns a ``Status`` with ``status: Success`` once the pod is deleted (or
marked for graceful deletion). Runs inside one apiserver request, so the
budget check, the PDB status write and the delete happen with nothing in
between.

* A pod that is Succeeded, Failed, Pending or already being deleted is deleted
  without looking at budgets (it disrupts nothing more).
* The budgets are the namespace's PodDisruptionBudgets whose selector matches
  the pod's labels; a missing or empty selector matches nothing here, as in
  Kubernetes' eviction handler. More than one:
  ``InternalError`` (HTTP 500) "This pod has more than one
  PodDisruptionBudget, which the eviction subresource does not support."
* A pod that is not Ready is deleted without spending the budget when the
  PDB's ``unhealthyPodEvictionPolicy`` is AlwaysAllow, or (IfHealthyBudget,
  the default) when ``currentHealthy >= desiredHealthy > 0``.
* Otherwise the budget is checked: ``status.observedGeneration`` behind
  ``metadata.generation`` or ``status.disruptionsAllowed == 0`` is
  ``TooManyRequests`` (HTTP 429) "Cannot evict pod as it would violate the
  pod's disruption budget." with a ``DisruptionBudget`` cause; a negative
  value or more than ``MAX_DISRUPTED_POD_SIZE`` pending disruptions is
  Forbidden. Allowed: ``disruptionsAllowed`` is decremented, the pod is
  recorded in ``status.disruptedPods`` (name -> now), the DisruptionAllowed
  condition is refreshed when the budget reaches 0, then the pod is deleted.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.kinds.policy import (
    ALWAYS_ALLOW,
    is_pod_ready,
    update_disruption_allowed_condition,
)
from emulator.api.selectors import label_selector_from_dict

if TYPE_CHECKING:
    from control.apiserver.resources import Resources

MAX_DISRUPTED_POD_SIZE = 2000
EVICTION_API_VERSIONS = ("policy/v1", "policy/v1beta1")
VIOLATES_BUDGET = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_BUDGETS = ("This pod has more than one PodDisruptionBudget, which the eviction "
                    "subresource does not support.")
SUCCESS = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}


def _too_many_requests(detail: str) -> APIError:
    return APIError(errors.TOO_MANY_REQUESTS, VIOLATES_BUDGET,
                    [errors.cause("", "DisruptionBudget", detail)])


def can_ignore_pdb(pod: dict) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def matching_pdbs(pdbs: Any, pod: dict) -> list[dict]:
    """The PDBs (of the pod's namespace) whose non-empty selector matches the pod."""
    labels = pod["metadata"].get("labels") or {}
    out = []
    for pdb in pdbs:
        sel = (pdb.get("spec") or {}).get("selector")
        try:
            selector = label_selector_from_dict(sel)
        except APIError:
            continue   # an invalid selector matches nothing
        if selector.empty or not selector.matches(labels):
            continue
        out.append(pdb)
    return out


def _check_eviction(name: str, eviction: Any) -> dict:
    if not isinstance(eviction, dict):
        raise APIError(errors.BAD_REQUEST, f"not a Eviction object: {type(eviction).__name__}")
    if eviction.get("kind") != "Eviction" or eviction.get("apiVersion") not in EVICTION_API_VERSIONS:
        raise APIError(errors.BAD_REQUEST, f'the eviction subresource takes kind "Eviction" of '
                       f'apiVersion policy/v1, not {eviction.get("kind")!r} of {eviction.get("apiVersion")!r}')
    md = eviction.get("metadata") or {}
    if md.get("name") not in (None, "", name):
        raise APIError(errors.BAD_REQUEST, "name in URL does not match name in Eviction object")
    opts = eviction.get("deleteOptions")
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise APIError(errors.BAD_REQUEST, "deleteOptions: expected a map")
    grace = opts.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise APIError(errors.BAD_REQUEST, f"deleteOptions.gracePeriodSeconds: Invalid value: "
                                           f"{grace!r}: must be a whole number of seconds")
    return opts


def _decrement(res: Resources, pdb: dict, pod_name: str) -> None:
    """Kubernetes' ``checkAndDecrement``: spend one disruption or refuse."""
    md, status = pdb["metadata"], pdb.get("status") or {}
    name = md["name"]
    if (status.get("observedGeneration") or 0) < (md.get("generation") or 0):
        raise _too_many_requests(f"The disruption budget {name} is still being processed by the server.")
    allowed = status.get("disruptionsAllowed") or 0
    if allowed < 0:
        raise APIError(errors.FORBIDDEN, f'poddisruptionbudgets.policy "{name}" is forbidden: '
                                         "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise APIError(errors.FORBIDDEN, f'poddisruptionbudgets.policy "{name}" is forbidden: '
                       "DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise _too_many_requests(f"The disruption budget {name} needs {status.get('desiredHealthy') or 0} "
                                 f"healthy pods and has {status.get('currentHealthy') or 0} currently")
    from control.apiserver.resources import rfc3339
    new = copy.deepcopy(pdb)
    st = new.setdefault("status", {})
    st["disruptionsAllowed"] = allowed - 1
    now = rfc3339(res.clock())
    if st["disruptionsAllowed"] == 0:
        update_disruption_allowed_condition(st, now)
    st["disruptedPods"] = dict(st.get("disruptedPods") or {}, **{pod_name: now})
    res.update(new, "status")


def evict(res: Resources, name: str, eviction: Any, namespace: str | None = None) -> dict:
    opts = _check_eviction(name, eviction)
    ns = namespace or (eviction.get("metadata") or {}).get("namespace") or "default"
    grace, pre = opts.get("gracePeriodSeconds"), opts.get("preconditions")
    pod = res.get("Pod", name, ns)
    if not can_ignore_pdb(pod):
        pdbs = matching_pdbs(res.store.iter_kind("PodDisruptionBudget", ns), pod)
        if len(pdbs) > 1:
            raise APIError(errors.INTERNAL_ERROR, MULTIPLE_BUDGETS)
        if pdbs:
            pdb = pdbs[0]
            spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
            unhealthy_ok = not is_pod_ready(pod) and (
                spec.get("unhealthyPodEvictionPolicy") == ALWAYS_ALLOW
                or (status.get("currentHealthy") or 0) >= (status.get("desiredHealthy") or 0) > 0)
            if not unhealthy_ok:
                _decrement(res, pdb, name)
    res.delete("Pod", name, ns, grace_period_seconds=grace, preconditions=pre)
    return copy.deepcopy(SUCCESS)
