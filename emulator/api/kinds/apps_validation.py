"""Checks shared by the workload kinds (apps/v1 and batch/v1), in Kubernetes' wording.

Contract: pure functions over plain dicts; the ``validate_*``/``check_*``
helpers append causes to ``out`` and never mutate their input, the
``default_*`` helpers change the object in place and are idempotent.

- ``default_pod_template(spec_owner)``: the Pod defaults (``pod.default_pod``)
  applied to ``spec_owner["template"]["spec"]``, without a status.
- ``validate_pod_template(template, out, restart_policies)``: template
  labels, then the Pod spec checks of ``validate_pod`` reported under
  ``spec.template.spec``; ``restart_policies`` restricts restartPolicy
  (Always for ReplicaSet/Deployment/DaemonSet, OnFailure/Never for Job).
- ``validate_selector_and_template(spec, out)``: the selector is required,
  non-empty and valid, and selects the template's labels.
- ``go_value(v)``: a value printed as Go's ``%#v`` prints it in field errors
  (``map[string]string{"app":"x"}``, ``[]string{"10.0.0.1"}``).
- ``check_int_or_percent``: IntOrString fields such as maxSurge.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from emulator.api.errors import cause
from emulator.api.kinds._common import Causes
from emulator.api.kinds.pod import default_pod
from emulator.api.kinds.pod_validation import validate_pod
from emulator.api.meta import (invalid, is_int, not_supported, required, validate_labels,
                               validate_nonnegative_int)
from emulator.api.selectors import label_selector_from_dict, validate_label_selector

__all__ = ["default_pod_template", "validate_pod_template", "validate_selector_and_template",
           "go_value", "go_selector", "go_invalid", "check_int_or_percent", "parse_int_or_percent", "validate_replicas",
           "selector_string"]

_PERCENT_RE = re.compile(r"^[0-9]+%$")
_TEMPLATE_SPEC = "spec.template.spec"


def go_value(v: Any) -> str:
    """``%#v`` of a decoded JSON value, as Kubernetes prints it in field errors."""
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        body = ", ".join(f'"{k}":"{v[k]}"' for k in sorted(v))
        return f"map[string]string{{{body}}}"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "[]string{" + ", ".join(f'"{x}"' for x in v) + "}"
    if isinstance(v, str):
        return f'"{v}"'
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def go_selector(sel: Any) -> str:
    """A LabelSelector as ``%#v`` prints it."""
    if not isinstance(sel, dict):
        return "(*v1.LabelSelector)(nil)" if sel is None else go_value(sel)
    ml = sel.get("matchLabels")
    labels = go_value(ml) if isinstance(ml, dict) and ml else "map[string]string(nil)"
    exprs = sel.get("matchExpressions")
    ex = "[]v1.LabelSelectorRequirement(nil)"
    if isinstance(exprs, list) and exprs:
        ex = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f'v1.LabelSelectorRequirement{{Key:"{e.get("key")}", Operator:"{e.get("operator")}", '
            f'Values:{go_value(e.get("values") or [])}}}' if isinstance(e, dict) else str(e)
            for e in exprs) + "}"
    return f"&v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{ex}}}"


def go_invalid(field: str, value: Any, detail: str) -> dict[str, str]:
    """``field: Invalid value: <Go %#v>: detail``."""
    return cause(field, "FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}")


def default_pod_template(spec: Any) -> None:
    """Pod defaults for ``spec.template.spec`` (and an empty template metadata)."""
    if not isinstance(spec, dict):
        return
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        return
    tspec = tpl.get("spec")
    if tspec is None:
        tspec = tpl["spec"] = {}
    if not isinstance(tspec, dict):
        return
    default_pod({"spec": tspec})   # the wrapper's status is dropped


def _reprefix(c: dict[str, str]) -> dict[str, str]:
    f = c.get("field", "")
    if f == "spec" or f.startswith("spec.") or f.startswith("spec["):
        c = dict(c, field="spec.template." + f)
    return c


def validate_pod_template(spec: dict[str, Any], out: Causes,
                          restart_policies: Iterable[str] | None = ("Always",)) -> None:
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        out.append(required("spec.template") if tpl is None
                   else invalid("spec.template", tpl, "must be an object"))
        return
    tmeta = tpl.get("metadata")
    if tmeta is not None and not isinstance(tmeta, dict):
        out.append(invalid("spec.template.metadata", tmeta, "must be an object"))
    elif isinstance(tmeta, dict):
        validate_labels(tmeta.get("labels"), "spec.template.metadata.labels", out)
    tspec = tpl.get("spec")
    if not isinstance(tspec, dict):
        out.append(required(_TEMPLATE_SPEC + ".containers") if tspec is None
                   else invalid(_TEMPLATE_SPEC, tspec, "must be an object"))
        return
    out.extend(_reprefix(c) for c in validate_pod({"spec": tspec}, None))
    if restart_policies is not None:
        allowed = tuple(restart_policies)
        rp = tspec.get("restartPolicy")
        if not rp:
            out.append(required(_TEMPLATE_SPEC + ".restartPolicy"))
        elif rp not in allowed and rp in ("Always", "OnFailure", "Never"):
            out.append(not_supported(_TEMPLATE_SPEC + ".restartPolicy", rp, allowed))


def template_labels(spec: dict[str, Any]) -> dict[str, Any]:
    tpl = spec.get("template")
    meta = tpl.get("metadata") if isinstance(tpl, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def validate_selector_and_template(spec: dict[str, Any], out: Causes, kind_word: str) -> None:
    """``spec.selector`` required, non-empty, valid, and matching the template labels."""
    sel = spec.get("selector")
    if sel is None:
        out.append(required("spec.selector"))
        return
    causes = validate_label_selector(sel, "spec.selector")
    if causes:
        out.extend(causes)
        return
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        out.append(invalid("spec.selector", sel, f"empty selector is invalid for {kind_word}"))
        return
    labels = template_labels(spec)
    try:
        matches = label_selector_from_dict(sel).matches(labels)
    except Exception:   # validate_label_selector already reported what is wrong
        return
    if not matches:
        out.append(go_invalid("spec.template.metadata.labels", labels,
                              "`selector` does not match template `labels`"))


def selector_string(sel: Any) -> str:
    """The selector as a label-selector string (``app=nginx``), as Scale.status.selector."""
    try:
        return str(label_selector_from_dict(sel)) if isinstance(sel, dict) else ""
    except Exception:
        return ""


def validate_replicas(field: str, value: Any, out: Causes) -> None:
    if value is not None:
        validate_nonnegative_int(field, value, out)


def parse_int_or_percent(v: Any) -> tuple[int, bool] | None:
    """``(n, is_percent)`` for an IntOrString value, or None if malformed."""
    if is_int(v):
        return v, False
    if isinstance(v, str) and _PERCENT_RE.match(v):
        return int(v[:-1]), True
    return None


def check_int_or_percent(field: str, v: Any, out: Causes, max_100: bool = False) -> None:
    parsed = parse_int_or_percent(v)
    if parsed is None:
        if isinstance(v, str):
            out.append(invalid(field, v, "a valid percent string must be a numeric string "
                                         "followed by an ending '%' (e.g. '1%',  or '93%', "
                                         "regex used for validation is '[0-9]+%')"))
        else:
            out.append(invalid(field, v, "must be an integer or percentage (e.g '5%')"))
        return
    n, pct = parsed
    if n < 0:
        out.append(invalid(field, v, "must be greater than or equal to 0"))
    elif pct and max_100 and n > 100:
        out.append(invalid(field, v, "must not be greater than 100%"))


def is_zero(v: Any) -> bool:
    p = parse_int_or_percent(v)
    return p is not None and p[0] == 0
