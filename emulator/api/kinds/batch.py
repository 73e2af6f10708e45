"""The Job kind (batch/v1): defaulting, selector generation, validation, registration.

Contract (Kubernetes' ``batch/v1`` defaults and ``ValidateJob`` rules and wording):
- ``default_job``: when both are unset, ``completions`` and ``parallelism``
  become 1 (else parallelism alone defaults to 1); ``backoffLimit: 6``,
  ``completionMode: NonIndexed``, ``suspend: false``,
  ``podReplacementPolicy: TerminatingOrFailed`` (without a podFailurePolicy),
  and the Pod defaults on the template (so a missing restartPolicy becomes
  Always and is then rejected, exactly as in Kubernetes).
- ``generate_job_selector(obj)`` (the apiserver calls it on create, once the
  uid is known): unless ``spec.manualSelector`` is true, labels the template
  with ``batch.kubernetes.io/controller-uid``/``job-name`` (and the legacy
  ``controller-uid``/``job-name``) and sets ``spec.selector`` to select the uid.
- ``validate_job``: non-negative parallelism/completions/backoffLimit/
  activeDeadlineSeconds/ttlSecondsAfterFinished; the selector matches the
  template; the template restartPolicy is OnFailure or Never
  (``spec.template.spec.restartPolicy: Unsupported value: "Always": ...``);
  completionMode NonIndexed/Indexed (Indexed needs completions); on update
  the selector, template, completions and completionMode are immutable.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes
from emulator.api.kinds.apps_validation import (default_pod_template, go_invalid,
                                                go_selector, validate_pod_template,
                                                validate_selector_and_template)
from emulator.api.errors import cause
from emulator.api.meta import (invalid, is_int, not_supported, required,
                               validate_nonnegative_int)
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["JOB", "default_job", "validate_job", "generate_job_selector",
           "CONTROLLER_UID_LABEL", "JOB_NAME_LABEL"]

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_LEGACY_UID_LABEL = "controller-uid"
_LEGACY_NAME_LABEL = "job-name"
COMPLETION_MODES = ("Indexed", "NonIndexed")
JOB_RESTART_POLICIES = ("OnFailure", "Never")


def default_job(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 6
    if not spec.get("completionMode"):
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if not spec.get("podReplacementPolicy") and spec.get("podFailurePolicy") is None:
        spec["podReplacementPolicy"] = "TerminatingOrFailed"
    default_pod_template(spec)


def generate_job_selector(obj: dict[str, Any]) -> None:
    """Label the template with the Job's uid and select it (no-op with manualSelector)."""
    spec, md = obj.get("spec"), obj.get("metadata")
    if not isinstance(spec, dict) or not isinstance(md, dict) or spec.get("manualSelector") is True:
        return
    uid, name = md.get("uid") or "", md.get("name") or ""
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        return
    tmeta = tpl.get("metadata")
    if tmeta is None:
        tmeta = tpl["metadata"] = {}
    if not isinstance(tmeta, dict):
        return
    labels = tmeta.get("labels")
    if labels is None:
        labels = tmeta["labels"] = {}
    if not isinstance(labels, dict):
        return
    labels.setdefault(_LEGACY_UID_LABEL, uid)
    labels.setdefault(_LEGACY_NAME_LABEL, name)
    labels.setdefault(CONTROLLER_UID_LABEL, uid)
    labels.setdefault(JOB_NAME_LABEL, name)
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABEL: uid}}


def validate_job(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec") if spec is None else invalid("spec", spec, "must be an object")]
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds",
                "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(key) is not None:
            validate_nonnegative_int(f"spec.{key}", spec[key], out)
    ads = spec.get("activeDeadlineSeconds")
    if is_int(ads) and ads == 0:
        out.append(invalid("spec.activeDeadlineSeconds", ads, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode is not None and mode not in COMPLETION_MODES:
        out.append(not_supported("spec.completionMode", mode, COMPLETION_MODES))
    elif mode == "Indexed" and spec.get("completions") is None:
        out.append(required("spec.completions", "when completion mode is Indexed"))
    ms = spec.get("manualSelector")
    if ms is not None and not isinstance(ms, bool):
        out.append(invalid("spec.manualSelector", ms, "must be a boolean"))
    suspend = spec.get("suspend")
    if suspend is not None and not isinstance(suspend, bool):
        out.append(invalid("spec.suspend", suspend, "must be a boolean"))
    if spec.get("selector") is not None or ms is True:
        validate_selector_and_template(spec, out, "job")
    validate_pod_template(spec, out, JOB_RESTART_POLICIES)
    if old is not None:
        old_spec = old.get("spec") or {}
        if spec.get("selector") != old_spec.get("selector"):
            out.append(cause("spec.selector", "FieldValueInvalid",
                             f"Invalid value: {go_selector(spec.get('selector'))}: "
                             "field is immutable"))
        if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
            out.append(cause("spec.template", "FieldValueInvalid",
                             "Invalid value: core.PodTemplateSpec{...}: field is immutable"))
        for key in ("completions", "completionMode"):
            if spec.get(key) != old_spec.get(key):
                out.append(go_invalid(f"spec.{key}", spec.get(key), "field is immutable"))
    return out


JOB = ResourceType(
    kind="Job", group="batch", version="v1", plural="jobs", singular="job",
    short_names=(), namespaced=True, has_status=True, has_generation=True,
    default=default_job, validate=validate_job,
)
REGISTRY.register(JOB)
