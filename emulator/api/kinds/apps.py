"""The apps/v1 kinds ReplicaSet, Deployment and DaemonSet: defaulting, validation, registration.

Contract (Kubernetes' ``apps/v1`` defaults and ``ValidateXxx`` rules and wording):
- Defaults: ReplicaSet ``replicas: 1``; Deployment ``replicas: 1``,
  ``strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%,
  maxUnavailable: 25%}}``, ``revisionHistoryLimit: 10``,
  ``progressDeadlineSeconds: 600``; DaemonSet ``updateStrategy: {type:
  RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 0}}``,
  ``revisionHistoryLimit: 10``; all: ``minReadySeconds: 0`` and the Pod
  defaults on ``spec.template.spec``.
- Validation: selector required, valid, non-empty and matching the template
  labels; the template is a valid Pod template with restartPolicy Always and no
  activeDeadlineSeconds; replicas, minReadySeconds, revisionHistoryLimit >= 0;
  strategy types and rollingUpdate numbers; on update ``spec.selector`` is
  immutable (``field is immutable``).
"""
from __future__ import annotations

from typing import Any

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes
from emulator.api.kinds.apps_validation import (check_int_or_percent, default_pod_template,
                                                go_selector, is_zero, validate_pod_template,
                                                validate_replicas,
                                                validate_selector_and_template)
from emulator.api.meta import (forbidden, invalid, is_int, not_supported, required,
                               validate_nonnegative_int)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["REPLICA_SET", "DEPLOYMENT", "DAEMON_SET", "default_replica_set", "default_deployment",
           "default_daemon_set", "validate_replica_set", "validate_deployment",
           "validate_daemon_set", "SCALABLE_KINDS"]

SCALABLE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")
DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")
DAEMONSET_STRATEGIES = ("OnDelete", "RollingUpdate")


def _spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    return spec if isinstance(spec, dict) else None


def _common_defaults(spec: dict[str, Any], replicas: bool) -> None:
    if replicas and spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("minReadySeconds") is None:
        spec["minReadySeconds"] = 0
    default_pod_template(spec)


def default_replica_set(obj: dict[str, Any]) -> None:
    spec = _spec(obj)
    if spec is not None:
        _common_defaults(spec, replicas=True)


def default_deployment(obj: dict[str, Any]) -> None:
    spec = _spec(obj)
    if spec is None:
        return
    _common_defaults(spec, replicas=True)
    strategy = spec.get("strategy")
    if strategy is None:
        strategy = spec["strategy"] = {}
    if isinstance(strategy, dict):
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            ru = strategy.get("rollingUpdate")
            if ru is None:
                ru = strategy["rollingUpdate"] = {}
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600


def default_daemon_set(obj: dict[str, Any]) -> None:
    spec = _spec(obj)
    if spec is None:
        return
    _common_defaults(spec, replicas=False)
    us = spec.get("updateStrategy")
    if us is None:
        us = spec["updateStrategy"] = {}
    if isinstance(us, dict):
        if not us.get("type"):
            us["type"] = "RollingUpdate"
        if us["type"] == "RollingUpdate":
            ru = us.get("rollingUpdate")
            if ru is None:
                ru = us["rollingUpdate"] = {}
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", 1)
                ru.setdefault("maxSurge", 0)
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10


def _validate_template(spec: dict[str, Any], out: Causes, kind_word: str) -> None:
    validate_selector_and_template(spec, out, kind_word)
    validate_pod_template(spec, out, ("Always",))
    tpl = spec.get("template")
    tspec = tpl.get("spec") if isinstance(tpl, dict) else None
    if isinstance(tspec, dict) and tspec.get("activeDeadlineSeconds") is not None:
        out.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                             f"activeDeadlineSeconds in {kind_word} is not Supported"))


def _validate_common(obj: dict[str, Any], old: dict[str, Any] | None, kind_word: str,
                     out: Causes) -> dict[str, Any] | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        out.append(required("spec") if spec is None else invalid("spec", spec, "must be an object"))
        return None
    validate_replicas("spec.replicas", spec.get("replicas"), out)
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        if spec.get(key) is not None:
            validate_nonnegative_int(f"spec.{key}", spec[key], out)
    _validate_template(spec, out, kind_word)
    if old is not None:
        old_sel = (old.get("spec") or {}).get("selector")
        if spec.get("selector") != old_sel:
            out.append(cause("spec.selector", "FieldValueInvalid",
                             f"Invalid value: {go_selector(spec.get('selector'))}: field is immutable"))
    return spec


def validate_replica_set(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    _validate_common(obj, old, "ReplicaSet", out)
    return out


def _validate_rolling(ru: Any, base: str, out: Causes, surge_key: str = "maxSurge") -> None:
    if ru is None:
        return
    if not isinstance(ru, dict):
        out.append(invalid(base, ru, "must be an object"))
        return
    mu, ms = ru.get("maxUnavailable"), ru.get(surge_key)
    if mu is not None:
        check_int_or_percent(base + ".maxUnavailable", mu, out, max_100=True)
    if ms is not None:
        check_int_or_percent(f"{base}.{surge_key}", ms, out)
    if mu is not None and ms is not None and is_zero(mu) and is_zero(ms):
        out.append(invalid(base + ".maxUnavailable", mu,
                           "may not be 0 when `maxSurge` is 0"))


def validate_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = _validate_common(obj, old, "deployment", out)
    if spec is None:
        return out
    strategy = spec.get("strategy")
    if isinstance(strategy, dict):
        st = strategy.get("type")
        if st not in DEPLOYMENT_STRATEGIES:
            out.append(not_supported("spec.strategy.type", st, DEPLOYMENT_STRATEGIES))
        elif st == "Recreate" and strategy.get("rollingUpdate") is not None:
            out.append(forbidden("spec.strategy.rollingUpdate",
                                 "may not be specified when strategy `type` is 'Recreate'"))
        else:
            _validate_rolling(strategy.get("rollingUpdate"), "spec.strategy.rollingUpdate", out)
    elif strategy is not None:
        out.append(invalid("spec.strategy", strategy, "must be an object"))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if pds is not None:
        if not is_int(pds) or pds < 0:
            validate_nonnegative_int("spec.progressDeadlineSeconds", pds, out)
        elif is_int(mrs) and pds <= mrs:
            out.append(invalid("spec.progressDeadlineSeconds", pds,
                               "must be greater than minReadySeconds"))
    paused = spec.get("paused")
    if paused is not None and not isinstance(paused, bool):
        out.append(invalid("spec.paused", paused, "must be a boolean"))
    return out


def validate_daemon_set(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = _validate_common(obj, old, "DaemonSet", out)
    if spec is None:
        return out
    us = spec.get("updateStrategy")
    if isinstance(us, dict):
        ut = us.get("type")
        if ut not in DAEMONSET_STRATEGIES:
            out.append(not_supported("spec.updateStrategy.type", ut, DAEMONSET_STRATEGIES))
        elif ut == "RollingUpdate":
            _validate_rolling(us.get("rollingUpdate"), "spec.updateStrategy.rollingUpdate", out)
    elif us is not None:
        out.append(invalid("spec.updateStrategy", us, "must be an object"))
    return out


REPLICA_SET = ResourceType(
    kind="ReplicaSet", group="apps", version="v1", plural="replicasets", singular="replicaset",
    short_names=("rs",), namespaced=True, has_status=True, has_generation=True,
    default=default_replica_set, validate=validate_replica_set,
)
DEPLOYMENT = ResourceType(
    kind="Deployment", group="apps", version="v1", plural="deployments", singular="deployment",
    short_names=("deploy",), namespaced=True, has_status=True, has_generation=True,
    default=default_deployment, validate=validate_deployment,
)
DAEMON_SET = ResourceType(
    kind="DaemonSet", group="apps", version="v1", plural="daemonsets", singular="daemonset",
    short_names=("ds",), namespaced=True, has_status=True, has_generation=True,
    default=default_daemon_set, validate=validate_daemon_set,
)
REGISTRY.register(REPLICA_SET)
REGISTRY.register(DEPLOYMENT)
REGISTRY.register(DAEMON_SET)
