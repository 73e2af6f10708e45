"""Mutating admission the apiserver runs on create, after defaulting and before validation.

Contract
--------
``DefaultTolerationSeconds`` (Kubernetes' ``plugin/pkg/admission/
defaulttolerationseconds``): on Pod create, a pod that does not already
tolerate ``node.kubernetes.io/not-ready:NoExecute`` gets
``{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute,
tolerationSeconds: N}`` appended, and likewise for
``node.kubernetes.io/unreachable``. A toleration counts as tolerating the
taint when its key is the taint's key or empty *and* its effect is NoExecute
or empty (Kubernetes' exact rule; the operator and value are not looked at).
A user's own tolerations are kept as written. N is the apiserver's
``--default-toleration-seconds`` (300, Kubernetes' default; the lab passes the
profile's value). Kubernetes runs the plugin on update too; kemu only on
create, since tolerations are otherwise immutable except for additions.

``DefaultStorageClass``: a PersistentVolumeClaim created without
``spec.storageClassName`` (absent or null; "" means "no class" and is kept)
gets the default StorageClass's name, the newest one annotated
``storageclass.kubernetes.io/is-default-class: "true"``; with no default it is
left unset.

``StorageObjectInUseProtection``: a new PersistentVolumeClaim gets the
finalizer ``kubernetes.io/pvc-protection`` and a new PersistentVolume
``kubernetes.io/pv-protection``; the protection controllers remove them when
the object is no longer in use.
"""
from __future__ import annotations

from typing import Any, Callable

from control.apiserver.strategy import KindHooks
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.kinds.storage import (PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER,
                                        default_class_name, storage_bytes)

TAINT_NODE_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_NODE_UNREACHABLE = "node.kubernetes.io/unreachable"

__all__ = ["TAINT_NODE_NOT_READY", "TAINT_NODE_UNREACHABLE", "admit_create",
           "default_toleration_seconds", "default_storage_class", "PersistentVolumeClaimResize"]


def _tolerates_no_execute(tolerations: list[Any], key: str) -> bool:
    for t in tolerations:
        if not isinstance(t, dict):
            continue
        if t.get("key") in (key, "", None) and t.get("effect") in ("NoExecute", "", None):
            return True
    return False


def default_toleration_seconds(pod: dict[str, Any], seconds: int) -> bool:
    """Add the default not-ready/unreachable tolerations to ``pod`` in place.

    Returns True when the pod was changed. A pod whose ``spec.tolerations`` is
    not a list is left for validation to report.
    """
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return False
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return False
    changed = False
    for key in (TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE):
        if not _tolerates_no_execute(tolerations, key):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})
            changed = True
    if changed:
        spec["tolerations"] = tolerations
    return changed


def _add_finalizer(obj: dict[str, Any], finalizer: str) -> None:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        return
    fins = md.get("finalizers")
    if fins is None:
        md["finalizers"] = fins = []
    if isinstance(fins, list) and finalizer not in fins:
        fins.append(finalizer)


def default_storage_class(pvc: dict[str, Any], classes: Callable[[], list[dict[str, Any]]]) -> None:
    spec = pvc.get("spec")
    if isinstance(spec, dict) and spec.get("storageClassName") is None:
        name = default_class_name(classes())
        if name is not None:
            spec["storageClassName"] = name


def admit_create(kind: str, obj: dict[str, Any], *, default_toleration_secs: int = 300,
                 storage_classes: Callable[[], list[dict[str, Any]]] = list) -> None:
    """Run every create-time mutating admission plugin on ``obj`` (in place).
    ``storage_classes`` lists the stored StorageClasses (only called for claims)."""
    if kind == "Pod":
        default_toleration_seconds(obj, default_toleration_secs)
    elif kind == "PersistentVolumeClaim":
        default_storage_class(obj, storage_classes)
        _add_finalizer(obj, PVC_PROTECTION_FINALIZER)
    elif kind == "PersistentVolume":
        _add_finalizer(obj, PV_PROTECTION_FINALIZER)


class PersistentVolumeClaimResize(KindHooks):
    def __init__(self, get: Callable[[str, str, str], dict | None]) -> None:
        self.get = get   # store.get(kind, namespace, name)

    def before_update(self, new: dict, old: dict) -> None:
        def request(o: dict) -> int | None:
            return storage_bytes(((o.get("spec") or {}).get("resources") or {}).get("requests"))
        grown, was = request(new), request(old)
        if grown is None or was is None or grown <= was:
            return
        spec = new.get("spec") or {}
        sc = self.get("StorageClass", "", spec.get("storageClassName") or "")
        if not spec.get("volumeName") or sc is None or sc.get("allowVolumeExpansion") is not True:
            raise APIError(errors.FORBIDDEN, f'persistentvolumeclaims "{new["metadata"]["name"]}" is '
                           "forbidden: only dynamically provisioned pvc can be resized and the storageclass "
                           "that provisions the pvc must support resize")
