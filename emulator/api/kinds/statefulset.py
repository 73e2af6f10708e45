"""The apps/v1 kinds StatefulSet and ControllerRevision: defaulting, validation, registration.

Contract (Kubernetes' ``SetDefaults_StatefulSet``, ``ValidateStatefulSet``,
``ValidateStatefulSetUpdate`` and ``ValidateControllerRevision``, their paths
and wording):

- StatefulSet defaults: ``replicas: 1``, ``podManagementPolicy:
  OrderedReady``, ``updateStrategy: {type: RollingUpdate, rollingUpdate:
  {partition: 0, maxUnavailable: 1}}`` (a RollingUpdate strategy given without
  ``rollingUpdate`` keeps none, as Kubernetes), ``revisionHistoryLimit: 10``,
  ``minReadySeconds: 0``, ``persistentVolumeClaimRetentionPolicy:
  {whenDeleted: Retain, whenScaled: Retain}``, the Pod defaults on
  ``spec.template.spec``; each ``volumeClaimTemplates[]`` item gets
  ``apiVersion: v1``, ``kind: PersistentVolumeClaim``, ``spec.volumeMode:
  Filesystem`` and ``status.phase: Pending``.
- StatefulSet validation: the name is a DNS-1123 label (pods are
  ``<name>-<ordinal>``); podManagementPolicy ``must be 'OrderedReady' or
  'Parallel'``; updateStrategy type RollingUpdate or OnDelete (``rollingUpdate``
  only with RollingUpdate; ``partition`` >= 0; ``maxUnavailable`` positive and
  at most 100%); the retention policy types Retain or Delete; replicas,
  minReadySeconds, revisionHistoryLimit and ``ordinals.start`` >= 0; selector
  required, valid, non-empty and matching the template labels; restartPolicy
  Always; no activeDeadlineSeconds. Beyond Kubernetes (which defers these to
  pod and claim creation), the template's pod spec is checked as a Pod whose
  volumes include one per claim template, and each claim template needs a
  ``metadata.name`` that is a DNS-1123 label, unique among the templates, and
  a spec valid for a PersistentVolumeClaim (``storage.validate_pvc``, under
  ``spec.volumeClaimTemplates[i]``).
- StatefulSet update: only ``replicas``, ``ordinals``, ``template``,
  ``updateStrategy``, ``persistentVolumeClaimRetentionPolicy`` and
  ``minReadySeconds`` may change (``spec: Forbidden: updates to statefulset
  spec for fields other than ...``); selector, serviceName,
  volumeClaimTemplates and podManagementPolicy are therefore immutable.
- ControllerRevision: ``data`` required (``data is mandatory``) and
  immutable; ``revision`` a non-negative integer.
"""
from __future__ import annotations

from typing import Any

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes
from emulator.api.kinds.apps_validation import (
    check_int_or_percent,
    default_pod_template,
    parse_int_or_percent,
    validate_pod_template,
    validate_replicas,
    validate_selector_and_template,
)
from emulator.api.kinds.storage import validate_pvc
from emulator.api.meta import (
    forbidden,
    invalid,
    is_dns1123_label,
    not_supported,
    required,
    validate_nonnegative_int,
)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = [
    "CONTROLLER_REVISION",
    "POD_MANAGEMENT_POLICIES",
    "RETENTION_POLICIES",
    "STATEFULSET_STRATEGIES",
    "STATEFUL_SET",
    "default_stateful_set",
    "validate_controller_revision",
    "validate_stateful_set",
]

POD_MANAGEMENT_POLICIES = ("OrderedReady", "Parallel")
STATEFULSET_STRATEGIES = ("RollingUpdate", "OnDelete")
RETENTION_POLICIES = ("Retain", "Delete")
# spec fields an update may change (ValidateStatefulSetUpdate)
MUTABLE_SPEC = ("replicas", "ordinals", "template", "updateStrategy",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
UPDATE_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                    "are forbidden")


def default_stateful_set(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        return
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    us = spec.get("updateStrategy")
    if us is None:
        us = spec["updateStrategy"] = {}
    if isinstance(us, dict):
        if not us.get("type"):
            us["type"] = "RollingUpdate"
            if us.get("rollingUpdate") is None:
                us["rollingUpdate"] = {}
        ru = us.get("rollingUpdate")
        if us["type"] == "RollingUpdate" and isinstance(ru, dict):
            if ru.get("partition") is None:
                ru["partition"] = 0
            if ru.get("maxUnavailable") is None:   # MaxUnavailableStatefulSet (beta, on, since 1.35)
                ru["maxUnavailable"] = 1
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if policy is None:
        policy = spec["persistentVolumeClaimRetentionPolicy"] = {}
    if isinstance(policy, dict):
        for key in ("whenDeleted", "whenScaled"):
            if not policy.get(key):
                policy[key] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("minReadySeconds") is None:
        spec["minReadySeconds"] = 0
    default_pod_template(spec)
    for tpl in spec.get("volumeClaimTemplates") or []:
        if not isinstance(tpl, dict):
            continue
        tpl.setdefault("apiVersion", "v1")
        tpl.setdefault("kind", "PersistentVolumeClaim")
        cspec = tpl.get("spec")
        if isinstance(cspec, dict) and not cspec.get("volumeMode"):
            cspec["volumeMode"] = "Filesystem"
        if tpl.get("status") is None:
            tpl["status"] = {"phase": "Pending"}


def _claim_template_names(spec: dict[str, Any], out: Causes) -> list[str]:
    vcts = spec.get("volumeClaimTemplates")
    if vcts is None:
        return []
    if not isinstance(vcts, list):
        out.append(invalid("spec.volumeClaimTemplates", vcts, "must be a list"))
        return []
    names: list[str] = []
    for i, tpl in enumerate(vcts):
        base = f"spec.volumeClaimTemplates[{i}]"
        if not isinstance(tpl, dict):
            out.append(invalid(base, tpl, "must be an object"))
            continue
        md = tpl.get("metadata")
        name = md.get("name") if isinstance(md, dict) else None
        if not name:
            out.append(required(base + ".metadata.name", "name or generateName is required"))
            continue
        if not isinstance(name, str):
            out.append(invalid(base + ".metadata.name", name, "must be a string"))
            continue
        out.extend(invalid(base + ".metadata.name", name, m) for m in is_dns1123_label(name))
        if name in names:
            out.append(cause(base + ".metadata.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        names.append(name)
        for c in validate_pvc(tpl, None):   # the claim the controller will create from it
            f = c.get("field", "")
            out.append(dict(c, field=f"{base}.{f}" if f else base))
    return names


def _validate_template(spec: dict[str, Any], claims: list[str], out: Causes) -> None:
    validate_selector_and_template(spec, out, "statefulset")
    tpl = spec.get("template")
    tspec = tpl.get("spec") if isinstance(tpl, dict) else None
    view = spec
    if claims and isinstance(tspec, dict):
        # the controller replaces same-named volumes with the claims (updateStorage)
        vols = [v for v in tspec.get("volumes") or [] if not (isinstance(v, dict) and v.get("name") in claims)]
        vols += [{"name": n, "emptyDir": {}} for n in claims]
        view = {**spec, "template": {**tpl, "spec": {**tspec, "volumes": vols}}}
    validate_pod_template(view, out, ("Always",))
    if isinstance(tspec, dict) and tspec.get("activeDeadlineSeconds") is not None:
        out.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                             "activeDeadlineSeconds in StatefulSet is not Supported"))


def _validate_strategy(spec: dict[str, Any], out: Causes) -> None:
    us = spec.get("updateStrategy")
    if not isinstance(us, dict):
        if us is not None:
            out.append(invalid("spec.updateStrategy", us, "must be an object"))
        return
    typ = us.get("type")
    ru = us.get("rollingUpdate")
    base = "spec.updateStrategy.rollingUpdate"
    if not typ:
        out.append(required("spec.updateStrategy"))
    elif typ == "OnDelete":
        if ru is not None:
            out.append(invalid(base, ru, "only allowed for updateStrategy 'RollingUpdate'"))
    elif typ == "RollingUpdate":
        if ru is None:
            return
        if not isinstance(ru, dict):
            out.append(invalid(base, ru, "must be an object"))
            return
        if ru.get("partition") is not None:
            validate_nonnegative_int(base + ".partition", ru["partition"], out)
        mu = ru.get("maxUnavailable")
        if mu is not None:
            n = len(out)
            check_int_or_percent(base + ".maxUnavailable", mu, out, max_100=True)
            parsed = parse_int_or_percent(mu)
            if len(out) == n and parsed is not None and parsed[0] == 0:
                out.append(invalid(base + ".maxUnavailable", mu, "cannot be 0"))
    else:
        out.append(invalid("spec.updateStrategy", us, "must be 'RollingUpdate' or 'OnDelete'"))


def validate_stateful_set(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        out.append(required("spec") if spec is None else invalid("spec", spec, "must be an object"))
        return out
    pmp = spec.get("podManagementPolicy")
    if not pmp:
        out.append(required("spec.podManagementPolicy"))
    elif pmp not in POD_MANAGEMENT_POLICIES:
        out.append(invalid("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'"))
    _validate_strategy(spec, out)
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(policy, dict):
        for key in ("whenDeleted", "whenScaled"):
            if policy.get(key) not in RETENTION_POLICIES:
                out.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                                         policy.get(key) or "", RETENTION_POLICIES))
    elif policy is not None:
        out.append(invalid("spec.persistentVolumeClaimRetentionPolicy", policy, "must be an object"))
    validate_replicas("spec.replicas", spec.get("replicas"), out)
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        if spec.get(key) is not None:
            validate_nonnegative_int(f"spec.{key}", spec[key], out)
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, dict):
        if ordinals.get("start") is not None:
            validate_nonnegative_int("spec.ordinals.start", ordinals["start"], out)
    elif ordinals is not None:
        out.append(invalid("spec.ordinals", ordinals, "must be an object"))
    sn = spec.get("serviceName")
    if sn is not None and not isinstance(sn, str):
        out.append(invalid("spec.serviceName", sn, "must be a string"))
    claims = _claim_template_names(spec, out)
    _validate_template(spec, claims, out)
    if old is not None:
        old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
        frozen_new = {k: v for k, v in spec.items() if k not in MUTABLE_SPEC}
        frozen_old = {k: v for k, v in old_spec.items() if k not in MUTABLE_SPEC}
        if frozen_new != frozen_old:
            out.append(forbidden("spec", UPDATE_FORBIDDEN))
    return out


def validate_controller_revision(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    if obj.get("data") is None:
        out.append(required("data", "data is mandatory"))
    rev = obj.get("revision", 0)
    validate_nonnegative_int("revision", rev, out)
    if old is not None and obj.get("data") != old.get("data"):
        out.append(invalid("data", "", "field is immutable"))
    return out


def _default_controller_revision(obj: dict[str, Any]) -> None:
    if obj.get("revision") is None:
        obj["revision"] = 0


STATEFUL_SET = ResourceType(
    kind="StatefulSet", group="apps", version="v1", plural="statefulsets", singular="statefulset",
    short_names=("sts",), namespaced=True, has_status=True, has_generation=True,
    default=default_stateful_set, validate=validate_stateful_set, validate_name=is_dns1123_label,
)
CONTROLLER_REVISION = ResourceType(
    kind="ControllerRevision", group="apps", version="v1", plural="controllerrevisions",
    singular="controllerrevision", namespaced=True,
    default=_default_controller_revision, validate=validate_controller_revision,
)
REGISTRY.register(STATEFUL_SET)
REGISTRY.register(CONTROLLER_REVISION)
