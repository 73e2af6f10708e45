"""PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass
(storage.k8s.io/v1): the storage kinds.

Contract (after Kubernetes' ``pkg/apis/core/validation`` and
``pkg/apis/storage/validation``)
-----------------------------------------------------------------------
* Defaults: PV ``persistentVolumeReclaimPolicy`` Retain, ``volumeMode``
  Filesystem, ``status.phase`` Pending; PVC ``volumeMode`` Filesystem,
  ``status.phase`` Pending; StorageClass ``reclaimPolicy`` Delete and
  ``volumeBindingMode`` Immediate.
* PV: ``spec.capacity`` must hold ``storage`` (and only it); ``accessModes``
  are required and supported (ReadWriteOncePod alone); exactly one volume
  source among those kemu knows (hostPath, local, csi, nfs); ``local`` needs
  ``nodeAffinity``; ``storageClassName`` is a DNS subdomain when set. On update
  the volume source is immutable, and so is ``nodeAffinity`` once set.
* PVC: ``accessModes`` and ``resources.requests.storage`` (> 0) are required;
  ``selector`` is a label selector. On update the spec is immutable except
  ``resources.requests`` (which may not shrink below ``status.capacity``) and a
  ``volumeName`` set for the first time (the binder's move).
* StorageClass: ``provisioner`` is required; ``reclaimPolicy`` is Delete or
  Retain; ``volumeBindingMode`` Immediate or WaitForFirstConsumer;
  ``provisioner``, ``parameters``, ``reclaimPolicy`` and
  ``volumeBindingMode`` cannot be updated.
* ``is_default_class(sc)`` reads the ``storageclass.kubernetes.io/is-default-class``
  annotation; ``default_class_name(classes)`` picks the newest default, as
  Kubernetes 1.28+ does when several are marked.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes
from emulator.api.meta import forbidden, invalid, is_dns1123_subdomain, not_supported, required
from emulator.api.quantity import QUANTITY_ERROR, parse_quantity
from emulator.api.registry import REGISTRY, ResourceType
from emulator.api.selectors import validate_label_selector

__all__ = ["PERSISTENT_VOLUME", "PERSISTENT_VOLUME_CLAIM", "STORAGE_CLASS", "ACCESS_MODES",
           "DEFAULT_CLASS_ANNOTATION", "PVC_PROTECTION_FINALIZER", "PV_PROTECTION_FINALIZER",
           "is_default_class", "default_class_name", "storage_bytes"]

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
PV_SOURCES = ("csi", "hostPath", "local", "nfs")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"
NODE_SELECTOR_OPERATORS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")


def storage_bytes(resources: Any) -> int | None:
    """The ``storage`` quantity of a capacity or requests map, in bytes (None if absent/bad)."""
    if not isinstance(resources, dict) or resources.get("storage") is None:
        return None
    try:
        return int(parse_quantity(resources["storage"]))
    except (ValueError, TypeError):
        return None


def is_default_class(sc: dict[str, Any]) -> bool:
    ann = (sc.get("metadata") or {}).get("annotations") or {}
    return ann.get(DEFAULT_CLASS_ANNOTATION) == "true" or \
        ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true"


def default_class_name(classes: list[dict[str, Any]]) -> str | None:
    defaults = [sc for sc in classes if is_default_class(sc)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda sc: (sc["metadata"].get("creationTimestamp") or "",
                                           sc["metadata"]["name"]))
    return newest["metadata"]["name"]


# -- defaulting -------------------------------------------------------------------
def _default_status(obj: dict[str, Any]) -> None:
    status = obj.get("status")
    if status is None:
        obj["status"] = status = {}
    if isinstance(status, dict) and not status.get("phase"):
        status["phase"] = "Pending"


def default_pv(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
    _default_status(obj)


def default_pvc(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    _default_status(obj)


def default_storage_class(obj: dict[str, Any]) -> None:
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


# -- shared checks ----------------------------------------------------------------
def _check_access_modes(modes: Any, path: str, out: Causes) -> None:
    if not modes:
        out.append(required(path))
        return
    if not isinstance(modes, list):
        out.append(invalid(path, modes, "must be a list"))
        return
    for m in modes:
        if m not in ACCESS_MODES:
            out.append(not_supported(path, m, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        out.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))


def _check_storage(rl: Any, path: str, out: Causes, *, only_storage: bool) -> None:
    if not isinstance(rl, dict) or "storage" not in rl:
        out.append(required(f"{path}[storage]"))
        return
    for key, value in rl.items():
        if only_storage and key != "storage":
            out.append(not_supported(path, key, ("storage",)))
            continue
        try:
            q = parse_quantity(value)
        except (ValueError, TypeError):
            out.append(invalid(f"{path}[{key}]", value, QUANTITY_ERROR))
            continue
        if key == "storage" and q <= 0:
            out.append(invalid(f"{path}[{key}]", value, "must be greater than zero"))


def _check_enum(value: Any, path: str, allowed: tuple[str, ...], out: Causes) -> None:
    if value is not None and value not in allowed:
        out.append(not_supported(path, value, allowed))


def _check_class_name(name: Any, path: str, out: Causes) -> None:
    if name is None or name == "":
        return
    if not isinstance(name, str):
        out.append(invalid(path, name, "must be a string"))
        return
    out.extend(invalid(path, name, m) for m in is_dns1123_subdomain(name))


def _check_node_affinity(aff: Any, path: str, out: Causes) -> None:
    if aff is None:
        return
    req = aff.get("required") if isinstance(aff, dict) else None
    if not isinstance(req, dict):
        out.append(required(path + ".required"))
        return
    terms = req.get("nodeSelectorTerms")
    tpath = path + ".required.nodeSelectorTerms"
    if not isinstance(terms, list) or not terms:
        out.append(required(tpath, "must have at least one node selector term"))
        return
    for i, term in enumerate(terms):
        for key in ("matchExpressions", "matchFields"):
            for j, expr in enumerate((term or {}).get(key) or [] if isinstance(term, dict) else []):
                epath = f"{tpath}[{i}].{key}[{j}]"
                if not isinstance(expr, dict) or not expr.get("key"):
                    out.append(required(epath + ".key"))
                    continue
                op = expr.get("operator")
                if op not in NODE_SELECTOR_OPERATORS:
                    out.append(not_supported(epath + ".operator", op, NODE_SELECTOR_OPERATORS))
                elif op in ("In", "NotIn") and not expr.get("values"):
                    out.append(required(epath + ".values",
                                        "must be specified when `operator` is 'In' or 'NotIn'"))


def _volume_source(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in PV_SOURCES if spec.get(k) is not None}


# -- PersistentVolume -------------------------------------------------------------
def validate_pv(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    if spec.get("capacity") is None:
        out.append(required("spec.capacity"))
    else:
        _check_storage(spec["capacity"], "spec.capacity", out, only_storage=True)
    _check_access_modes(spec.get("accessModes"), "spec.accessModes", out)
    _check_enum(spec.get("persistentVolumeReclaimPolicy"), "spec.persistentVolumeReclaimPolicy",
                RECLAIM_POLICIES, out)
    _check_enum(spec.get("volumeMode"), "spec.volumeMode", VOLUME_MODES, out)
    _check_class_name(spec.get("storageClassName"), "spec.storageClassName", out)
    sources = _volume_source(spec)
    if not sources:
        out.append(required("spec", "must specify a volume type"))
    for extra in sorted(sources)[1:]:
        out.append(forbidden(f"spec.{extra}", "may not specify more than 1 volume type"))
    for key in ("hostPath", "local"):
        src = sources.get(key)
        if src is not None and (not isinstance(src, dict) or not src.get("path")):
            out.append(required(f"spec.{key}.path"))
    csi = sources.get("csi")
    if csi is not None:
        for f in ("driver", "volumeHandle"):
            if not isinstance(csi, dict) or not csi.get(f):
                out.append(required(f"spec.csi.{f}"))
    if "local" in sources and spec.get("nodeAffinity") is None:
        out.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    _check_node_affinity(spec.get("nodeAffinity"), "spec.nodeAffinity", out)
    claim_ref = spec.get("claimRef")
    if claim_ref is not None and (not isinstance(claim_ref, dict) or not claim_ref.get("name")):
        out.append(required("spec.claimRef.name"))
    if old is not None:
        ospec = old.get("spec") or {}
        if _volume_source(ospec) != sources:
            out.append(forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable "
                                 "after creation"))
        if ospec.get("nodeAffinity") is not None and ospec.get("nodeAffinity") != spec.get("nodeAffinity"):
            out.append(forbidden("spec.nodeAffinity", "field is immutable once set"))
    return out


# -- PersistentVolumeClaim --------------------------------------------------------
_PVC_MUTABLE = ("resources", "volumeName", "volumeAttributesClassName")


def validate_pvc(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    _check_access_modes(spec.get("accessModes"), "spec.accessModes", out)
    res = spec.get("resources")
    requests = res.get("requests") if isinstance(res, dict) else None
    _check_storage(requests, "spec.resources", out, only_storage=False)
    out.extend(validate_label_selector(spec.get("selector"), "spec.selector"))
    _check_enum(spec.get("volumeMode"), "spec.volumeMode", VOLUME_MODES, out)
    _check_class_name(spec.get("storageClassName"), "spec.storageClassName", out)
    vn = spec.get("volumeName")
    if vn is not None and vn != "" and not isinstance(vn, str):
        out.append(invalid("spec.volumeName", vn, "must be a string"))
    if old is not None:
        ospec = old.get("spec") or {}
        fixed = {k: v for k, v in spec.items() if k not in _PVC_MUTABLE}
        ofixed = {k: v for k, v in ospec.items() if k not in _PVC_MUTABLE}
        if fixed != ofixed:
            out.append(forbidden("spec", "spec is immutable after creation except resources.requests "
                                         "and volumeAttributesClassName for bound claims"))
        if ospec.get("volumeName") and ospec.get("volumeName") != spec.get("volumeName"):
            out.append(forbidden("spec.volumeName", "field is immutable once set"))
        cap = storage_bytes((old.get("status") or {}).get("capacity"))
        want = storage_bytes(requests)
        if cap is not None and want is not None and want < cap and \
                storage_bytes((ospec.get("resources") or {}).get("requests")) != want:
            out.append(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"))
    return out


# -- StorageClass -----------------------------------------------------------------
def validate_storage_class(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    out: Causes = []
    prov = obj.get("provisioner")
    if not prov:
        out.append(required("provisioner"))
    elif not isinstance(prov, str):
        out.append(invalid("provisioner", prov, "must be a string"))
    _check_enum(obj.get("reclaimPolicy"), "reclaimPolicy", ("Delete", "Retain"), out)
    _check_enum(obj.get("volumeBindingMode"), "volumeBindingMode", BINDING_MODES, out)
    params = obj.get("parameters")
    if params is not None and (not isinstance(params, dict) or
                               not all(isinstance(v, str) for v in params.values())):
        out.append(invalid("parameters", params, "must be a map of strings to strings"))
    ave = obj.get("allowVolumeExpansion")
    if ave is not None and not isinstance(ave, bool):
        out.append(invalid("allowVolumeExpansion", ave, "must be a boolean"))
    if old is not None:
        for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
            if old.get(f) != obj.get(f):
                out.append(forbidden(f, f"updates to {f} are forbidden."))
    return out


PERSISTENT_VOLUME = ResourceType(
    kind="PersistentVolume", group="", version="v1", plural="persistentvolumes",
    singular="persistentvolume", short_names=("pv",), namespaced=False, has_status=True,
    has_generation=False, default=default_pv, validate=validate_pv,
)
PERSISTENT_VOLUME_CLAIM = ResourceType(
    kind="PersistentVolumeClaim", group="", version="v1", plural="persistentvolumeclaims",
    singular="persistentvolumeclaim", short_names=("pvc",), namespaced=True, has_status=True,
    has_generation=False, default=default_pvc, validate=validate_pvc,
)
STORAGE_CLASS = ResourceType(
    kind="StorageClass", group="storage.k8s.io", version="v1", plural="storageclasses",
    singular="storageclass", short_names=("sc",), namespaced=False, has_status=False,
    has_generation=False, default=default_storage_class, validate=validate_storage_class,
)
for _rt in (PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS):
    REGISTRY.register(_rt)
