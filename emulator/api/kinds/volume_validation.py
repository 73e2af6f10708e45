"""Validation of a pod's volume sources (core/v1 ``Volume``), in Kubernetes' wording.

Contract: ``validate_volume_source(v, path, out)`` appends causes for one
entry of ``spec.volumes`` (its name is checked by the caller). It accepts the
sources kemu's kubelet mounts — emptyDir, hostPath, configMap, secret,
downwardAPI, persistentVolumeClaim, projected — and requires exactly one
(``must specify a volume type`` / ``may not specify more than 1 volume
type``); another Kubernetes source is refused as ``Unsupported value``.
Paths a volume writes into (``items[].path``) must be relative, without
``..`` (Kubernetes' ``validateLocalDescendingPath``); file modes lie in
0..0777; hostPath ``type`` is one of Kubernetes' values.
"""
from __future__ import annotations

from typing import Any

from emulator.api.kinds._common import Causes
from emulator.api.meta import forbidden, invalid, is_int, not_supported, required
from emulator.api.quantity import QUANTITY_ERROR, parse_quantity

__all__ = ["validate_volume_source", "VOLUME_SOURCES", "HOST_PATH_TYPES"]

VOLUME_SOURCES = ("configMap", "downwardAPI", "emptyDir", "hostPath", "persistentVolumeClaim",
                  "projected", "secret")
# Sources Kubernetes has and kemu does not mount: named so the error can say so.
_OTHER_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
                  "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo",
                  "glusterfs", "image", "iscsi", "nfs", "photonPersistentDisk", "portworxVolume",
                  "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File",
                   "FileOrCreate", "Socket")
_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                "metadata.uid")


def _check_mode(value: Any, path: str, out: Causes) -> None:
    if value is not None and (not is_int(value) or not 0 <= value <= 0o777):
        out.append(invalid(path, value, _MODE_MSG))


def _check_local_path(value: Any, path: str, out: Causes) -> None:
    if not value:
        out.append(required(path))
        return
    if not isinstance(value, str):
        out.append(invalid(path, value, "must be a string"))
        return
    if value.startswith("/"):
        out.append(invalid(path, value, "must be a relative path"))
    if ".." in value.split("/"):
        out.append(invalid(path, value, "must not contain '..'"))
    elif value.startswith(".."):
        out.append(invalid(path, value, "must not start with '..'"))


def _check_items(items: Any, path: str, out: Causes, *, keyed: bool) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        out.append(invalid(path, items, "must be a list"))
        return
    for i, it in enumerate(items):
        ip = f"{path}[{i}]"
        if not isinstance(it, dict):
            out.append(invalid(ip, it, "must be an object"))
            continue
        if keyed and not it.get("key"):
            out.append(required(ip + ".key"))
        _check_local_path(it.get("path"), ip + ".path", out)
        _check_mode(it.get("mode"), ip + ".mode", out)
        if not keyed:
            _check_downward_item(it, ip, out)


def _check_downward_item(it: dict[str, Any], path: str, out: Causes) -> None:
    fref, rref = it.get("fieldRef"), it.get("resourceFieldRef")
    if fref is None and rref is None:
        out.append(required(path, "must specify one of: `fieldRef` or `resourceFieldRef`"))
    elif fref is not None and rref is not None:
        out.append(invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    if isinstance(fref, dict):
        fp = fref.get("fieldPath")
        base = fp.split("[", 1)[0] if isinstance(fp, str) else fp
        if not fp:
            out.append(required(path + ".fieldRef.fieldPath"))
        elif base not in _FIELD_PATHS:
            out.append(not_supported(path + ".fieldRef.fieldPath", fp, _FIELD_PATHS))
    if isinstance(rref, dict) and not rref.get("resource"):
        out.append(required(path + ".resourceFieldRef.resource"))


def _check_named(src: Any, path: str, key: str, out: Causes) -> None:
    if not isinstance(src, dict):
        out.append(invalid(path, src, "must be an object"))
        return
    if not src.get(key):
        out.append(required(f"{path}.{key}"))
    _check_items(src.get("items"), path + ".items", out, keyed=True)
    _check_mode(src.get("defaultMode"), path + ".defaultMode", out)


def validate_volume_source(v: dict[str, Any], path: str, out: Causes) -> None:
    present = [k for k in VOLUME_SOURCES if v.get(k) is not None]
    others = [k for k in _OTHER_SOURCES if v.get(k) is not None]
    for k in others:
        out.append(not_supported(f"{path}.{k}", k, VOLUME_SOURCES))
    if not present and not others:
        out.append(required(path, "must specify a volume type"))
        return
    for k in present[1:] + (others if present else others[1:]):
        out.append(forbidden(f"{path}.{k}", "may not specify more than 1 volume type"))
    if not present:
        return
    kind = present[0]
    src = v[kind]
    sp = f"{path}.{kind}"
    if kind == "emptyDir":
        if not isinstance(src, dict):
            out.append(invalid(sp, src, "must be an object"))
            return
        medium = src.get("medium")
        if medium not in (None, "", "Memory"):
            out.append(not_supported(sp + ".medium", medium, ("", "Memory")))
        if src.get("sizeLimit") is not None:
            try:
                if parse_quantity(src["sizeLimit"]) < 0:
                    out.append(invalid(sp + ".sizeLimit", src["sizeLimit"], "must be greater than or equal to 0"))
            except (ValueError, TypeError):
                out.append(invalid(sp + ".sizeLimit", src["sizeLimit"], QUANTITY_ERROR))
    elif kind == "hostPath":
        if not isinstance(src, dict) or not src.get("path"):
            out.append(required(sp + ".path"))
            return
        typ = src.get("type")
        if typ is not None and typ not in HOST_PATH_TYPES:
            out.append(not_supported(sp + ".type", typ, HOST_PATH_TYPES))
    elif kind == "secret":
        _check_named(src, sp, "secretName", out)
    elif kind == "configMap":
        _check_named(src, sp, "name", out)
    elif kind == "persistentVolumeClaim":
        if not isinstance(src, dict) or not src.get("claimName"):
            out.append(required(sp + ".claimName"))
    elif kind == "downwardAPI":
        if isinstance(src, dict):
            _check_items(src.get("items"), sp + ".items", out, keyed=False)
            _check_mode(src.get("defaultMode"), sp + ".defaultMode", out)
    elif kind == "projected":
        _validate_projected(src, sp, out)


def _validate_projected(src: Any, path: str, out: Causes) -> None:
    if not isinstance(src, dict):
        out.append(invalid(path, src, "must be an object"))
        return
    _check_mode(src.get("defaultMode"), path + ".defaultMode", out)
    for i, s in enumerate(src.get("sources") or []):
        sp = f"{path}.sources[{i}]"
        kinds = [k for k in ("configMap", "downwardAPI", "secret", "serviceAccountToken", "clusterTrustBundle")
                 if isinstance(s, dict) and s.get(k) is not None]
        if len(kinds) != 1:
            out.append(forbidden(sp, "may not specify more than 1 volume type") if kinds
                       else required(sp, "must specify one source"))
            continue
        k = kinds[0]
        if k in ("configMap", "secret"):
            if not s[k].get("name"):
                out.append(required(f"{sp}.{k}.name"))
            _check_items(s[k].get("items"), f"{sp}.{k}.items", out, keyed=True)
        elif k == "downwardAPI":
            _check_items(s[k].get("items"), f"{sp}.{k}.items", out, keyed=False)
        elif k == "serviceAccountToken":
            _check_local_path(s[k].get("path"), f"{sp}.{k}.path", out)
