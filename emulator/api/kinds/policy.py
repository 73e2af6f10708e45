"""The PodDisruptionBudget kind (policy/v1, short name ``pdb``): validation, registration.

Contract (Kubernetes' ``ValidatePodDisruptionBudget`` rules and wording):
- ``spec.minAvailable`` / ``spec.maxUnavailable``: IntOrString, an int >= 0 or
  a percent string ("50%", at most 100%). Setting both is
  ``spec: Invalid value: ...: minAvailable and maxUnavailable cannot be both
  set``. kemu also requires one of them (Kubernetes accepts neither, which
  then allows no disruption at all): ``spec: Required value: ...``.
- ``spec.selector``: a LabelSelector (optional; in policy/v1 an empty
  selector selects every pod of the namespace, a missing one none).
- ``spec.unhealthyPodEvictionPolicy``: ``IfHealthyBudget`` or ``AlwaysAllow``.
- ``status`` counters (``disruptionsAllowed``, ``currentHealthy``,
  ``desiredHealthy``, ``expectedPods``, ``observedGeneration``) are ints >= 0
  when set; ``status.disruptedPods`` maps pod names to timestamps.
- No defaults (policy/v1 has none). The spec may change after create; the
  status subresource is written by the disruption controller and the
  eviction subresource. ``metadata.generation`` is bumped on spec changes.
"""
from __future__ import annotations

from typing import Any

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes, check_rfc3339, key_path
from emulator.api.kinds.apps_validation import check_int_or_percent, go_value
from emulator.api.meta import invalid, not_supported, required, validate_nonnegative_int
from emulator.api.registry import REGISTRY, ResourceType
from emulator.api.selectors import validate_label_selector

__all__ = [
    "ALWAYS_ALLOW",
    "IF_HEALTHY_BUDGET",
    "POD_DISRUPTION_BUDGET",
    "UNHEALTHY_POD_EVICTION_POLICIES",
    "conditions_up_to_date",
    "is_pod_ready",
    "update_disruption_allowed_condition",
    "validate_pod_disruption_budget",
]

IF_HEALTHY_BUDGET = "IfHealthyBudget"
ALWAYS_ALLOW = "AlwaysAllow"
UNHEALTHY_POD_EVICTION_POLICIES = (ALWAYS_ALLOW, IF_HEALTHY_BUDGET)
_STATUS_COUNTERS = ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods",
                    "observedGeneration")


def _go_spec(spec: dict[str, Any]) -> str:
    """The spec as the apiserver prints it in the "both set" error."""
    def ios(v: Any) -> str:
        return "(*intstr.IntOrString)(nil)" if v is None else f"&intstr.IntOrString{{{go_value(v)}}}"
    return (f"policy.PodDisruptionBudgetSpec{{MinAvailable:{ios(spec.get('minAvailable'))}, "
            f"MaxUnavailable:{ios(spec.get('maxUnavailable'))}}}")


def _validate_status(status: Any, out: Causes) -> None:
    if status is None:
        return
    if not isinstance(status, dict):
        out.append(invalid("status", status, "must be an object"))
        return
    for key in _STATUS_COUNTERS:
        if status.get(key) is not None:
            validate_nonnegative_int(f"status.{key}", status[key], out)
    dp = status.get("disruptedPods")
    if dp is not None:
        if not isinstance(dp, dict):
            out.append(invalid("status.disruptedPods", dp, "must be a map of pod names to timestamps"))
        else:
            for name, ts in dp.items():
                check_rfc3339(key_path("status.disruptedPods", str(name)), ts, out)
    conds = status.get("conditions")
    if conds is not None and not isinstance(conds, list):
        out.append(invalid("status.conditions", conds, "must be a list"))


def validate_pod_disruption_budget(obj: dict[str, Any],
                                   old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec", "set spec.minAvailable or spec.maxUnavailable") if spec is None
                else invalid("spec", spec, "must be an object")]
    min_a, max_u = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_a is not None and max_u is not None:
        out.append(cause("spec", "FieldValueInvalid",
                         f"Invalid value: {_go_spec(spec)}: minAvailable and maxUnavailable "
                         "cannot be both set"))
    elif min_a is None and max_u is None:
        out.append(required("spec", "one of spec.minAvailable or spec.maxUnavailable must be "
                                    "set (an integer such as 2 or a percentage such as '50%')"))
    if min_a is not None:
        check_int_or_percent("spec.minAvailable", min_a, out, max_100=True)
    if max_u is not None:
        check_int_or_percent("spec.maxUnavailable", max_u, out, max_100=True)
    out.extend(validate_label_selector(spec.get("selector"), "spec.selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        out.append(not_supported("spec.unhealthyPodEvictionPolicy", policy,
                                 UNHEALTHY_POD_EVICTION_POLICIES))
    _validate_status(obj.get("status"), out)
    return out


POD_DISRUPTION_BUDGET = ResourceType(
    kind="PodDisruptionBudget", group="policy", version="v1", plural="poddisruptionbudgets",
    singular="poddisruptionbudget", short_names=("pdb",), namespaced=True, has_status=True,
    has_generation=True, validate=validate_pod_disruption_budget,
)
REGISTRY.register(POD_DISRUPTION_BUDGET)


# -- helpers shared by the eviction subresource and the disruption controller --

def is_pod_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True (Kubernetes' ``IsPodReady``)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def update_disruption_allowed_condition(status: dict[str, Any], now: str) -> None:
    """Set the ``DisruptionAllowed`` condition from ``status.disruptionsAllowed``
    (``pdbhelper.UpdateDisruptionAllowedCondition``): True/SufficientPods when
    above 0, else False/InsufficientPods; lastTransitionTime moves only when the
    status flips."""
    allowed = (status.get("disruptionsAllowed") or 0) > 0
    want = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
            "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
            "observedGeneration": status.get("observedGeneration") or 0}
    conds = [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]
    for c in conds:
        if c.get("type") == "DisruptionAllowed":
            want["lastTransitionTime"] = (c.get("lastTransitionTime") or now
                                          if c.get("status") == want["status"] else now)
            c.clear()
            c.update(want)
            break
    else:
        want["lastTransitionTime"] = now
        conds.append(want)
    status["conditions"] = conds


def conditions_up_to_date(pdb: dict[str, Any]) -> bool:
    """``pdbhelper.ConditionsAreUpToDate``: the condition matches disruptionsAllowed
    and the status observed the current generation."""
    status = pdb.get("status") or {}
    if status.get("observedGeneration") != (pdb.get("metadata") or {}).get("generation"):
        return False
    for c in status.get("conditions") or []:
        if c.get("type") == "DisruptionAllowed":
            if (status.get("disruptionsAllowed") or 0) > 0:
                return c.get("status") == "True" and c.get("reason") == "SufficientPods"
            return c.get("status") == "False" and c.get("reason") == "InsufficientPods"
    return False
