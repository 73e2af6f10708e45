"""Setting up one pod volume on the node: one function per volume family.

Contract
--------
``setup_volume(ctx, pod, volume) -> Mounted`` makes the volume's data exist
on the node and says where it is; it raises ``VolumeError(reason, message)``
with the Event reason (``FailedMount`` or ``FailedAttachVolume``) and
Kubernetes' message, e.g. ``MountVolume.SetUp failed for volume "x" : secret
"y" not found``. It is idempotent: calling it again for a set-up volume
rewrites only what changed (configMap/secret/downwardAPI/projected go
through the AtomicWriter).

* emptyDir: ``<pod dir>/volumes/kubernetes.io~empty-dir/<name>`` (0777).
* hostPath: the path resolved inside the node root, after the ``type`` check
  (an unset type that does not exist becomes a directory, as the CRI creates a
  missing bind-mount source); no pod directory; the data outlives the pod.
* configMap, secret, downwardAPI, projected:
  ``<pod dir>/volumes/kubernetes.io~<plugin>/<name>``, objects fetched with
  ``ctx.get`` (only what this pod references).
* persistentVolumeClaim: GET the claim (it must exist, not be terminating,
  and be Bound), then its PV (its claimRef must name this claim). The PV's
  ``nodeAffinity`` must admit this node. hostPath PVs resolve inside this
  node's root; ``local`` paths too and must exist (a symlink at
  ``volumes/kubernetes.io~local-volume/<pv>`` points at it); csi
  ``kemu.io/shared-dir`` is ``<shared root>/<volumeHandle>`` (symlink at
  ``volumes/kubernetes.io~csi/<pv>/mount``); its directory missing is
  ``FailedAttachVolume``. The data outlives the pod.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from node.volumes import sources
from node.volumes.atomic_writer import AtomicWriter
from node.volumes.paths import (PLUGINS, HostPathTypeError, PathEscape, check_host_path_type,
                                resolve_in_root, volume_dir)

SHARED_DIR_DRIVER = "kemu.io/shared-dir"
FAILED_MOUNT = "FailedMount"
FAILED_ATTACH = "FailedAttachVolume"
PROJECTIONS = ("configMap", "secret", "downwardAPI", "projected")
KNOWN = ("emptyDir", "hostPath", "persistentVolumeClaim") + PROJECTIONS

Getter = Callable[[str, str, "str | None"], "dict | None"]   # (kind, name, namespace) -> obj or None


class VolumeError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Mounted:
    name: str
    kind: str                  # the volume source key (emptyDir, hostPath, persistentVolumeClaim ...)
    host_path: str             # the real directory (or file) holding the data
    read_only: bool = False
    persistent: bool = False   # the data outlives the pod (hostPath, PVs)
    refreshable: bool = False  # configMap/secret/downwardAPI/projected: rewritten at resync
    size_limit: str | None = None
    memory: bool = False
    pv_name: str = ""


@dataclass
class NodeContext:
    root: str
    node_name: str
    get: Getter
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: dict[str, str] = field(default_factory=dict)
    shared_root: str | None = None


def volume_kind(volume: dict) -> str:
    for k in KNOWN:
        if volume.get(k) is not None:
            return k
    other = [k for k in volume if k != "name"]
    return other[0] if other else ""


def _setup_failed(name: str, err: object) -> VolumeError:
    return VolumeError(FAILED_MOUNT, f'MountVolume.SetUp failed for volume "{name}" : {err}')


def setup_volume(ctx: NodeContext, pod: dict, volume: dict) -> Mounted:
    name = volume.get("name", "")
    kind = volume_kind(volume)
    if kind == "emptyDir":
        return _empty_dir(ctx, pod, name, volume["emptyDir"] or {})
    if kind == "hostPath":
        return _host_path(ctx, name, volume["hostPath"] or {})
    if kind in PROJECTIONS:
        return _projection(ctx, pod, name, kind, volume)
    if kind == "persistentVolumeClaim":
        return _claim(ctx, pod, name, volume["persistentVolumeClaim"] or {})
    raise VolumeError(FAILED_MOUNT, f'Unable to attach or mount volumes: unmounted volumes=[{name}], '
                                    f'failed to process volumes=[{name}]: failed to get Plugin from '
                                    f'volumeSpec for volume "{name}" err=no volume plugin matched')


def _uid(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("uid", "")


def _empty_dir(ctx: NodeContext, pod: dict, name: str, src: dict) -> Mounted:
    try:
        d = volume_dir(ctx.root, _uid(pod), PLUGINS["emptyDir"], name)
    except PathEscape as e:
        raise _setup_failed(name, e) from None
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
    limit = src.get("sizeLimit")
    return Mounted(name, "emptyDir", d, size_limit=str(limit) if limit not in (None, "") else None,
                   memory=src.get("medium") == "Memory")


def _host_path(ctx: NodeContext, name: str, src: dict) -> Mounted:
    path = src.get("path", "")
    try:
        real = resolve_in_root(ctx.root, path, "hostPath")
        check_host_path_type(real, path, src.get("type"))
        if not src.get("type") and not os.path.lexists(real):
            os.makedirs(real, mode=0o755, exist_ok=True)   # as the CRI creates a missing bind source
    except (PathEscape, HostPathTypeError) as e:
        raise _setup_failed(name, e) from None
    except OSError as e:
        raise _setup_failed(name, f"{e.strerror}: {path}") from None
    return Mounted(name, "hostPath", real, persistent=True)


def _fetch(ctx: NodeContext, pod: dict, refs: list[tuple[str, str]]) -> dict[tuple[str, str], dict | None]:
    ns = (pod.get("metadata") or {}).get("namespace")
    return {(kind, n): ctx.get(kind, n, ns) for kind, n in refs}


def _projection(ctx: NodeContext, pod: dict, name: str, kind: str, volume: dict) -> Mounted:
    src = volume[kind] or {}
    try:
        d = volume_dir(ctx.root, _uid(pod), PLUGINS[kind], name)
        objs = _fetch(ctx, pod, sources.referenced_objects(volume))
        if kind == "configMap":
            payload = sources.configmap_payload(src, objs[("ConfigMap", src.get("name", ""))])
        elif kind == "secret":
            payload = sources.secret_payload(src, objs[("Secret", src.get("secretName", ""))])
        elif kind == "downwardAPI":
            payload = sources.downward_api_payload(src, pod, ctx.allocatable)
        else:
            payload = sources.projected_payload(src, pod, objs, ctx.allocatable)
        AtomicWriter(d).write(payload)
    except (sources.SourceError, PathEscape, ValueError) as e:
        raise _setup_failed(name, e) from None
    return Mounted(name, kind, d, read_only=True, refreshable=True)


# -- persistent volumes --------------------------------------------------------
def _match_expression(e: dict, labels: dict[str, str]) -> bool:
    key, op, values = e.get("key", ""), e.get("operator", ""), list(e.get("values") or ())
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and len(values) == 1:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_affinity_admits(pv: dict, labels: dict[str, str], node_name: str) -> bool:
    """The PV's ``spec.nodeAffinity.required`` against this node (terms ORed, expressions ANDed)."""
    req = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    if not req:
        return True
    for term in req.get("nodeSelectorTerms") or ():
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue
        if all(_match_expression(e, labels) for e in exprs) and \
                all(_match_expression(f, {"metadata.name": node_name}) for f in fields):
            return True
    return False


def _claim(ctx: NodeContext, pod: dict, name: str, src: dict) -> Mounted:
    ns = (pod.get("metadata") or {}).get("namespace", "")
    claim = src.get("claimName", "")

    def unprocessed(why: str) -> VolumeError:
        return VolumeError(FAILED_MOUNT, f"Unable to attach or mount volumes: unmounted volumes=[{name}], "
                                         f"failed to process volumes=[{name}]: error processing PVC "
                                         f"{ns}/{claim}: {why}")
    pvc = ctx.get("PersistentVolumeClaim", claim, ns)
    if pvc is None:
        raise unprocessed(f'failed to fetch PVC from API server: persistentvolumeclaims "{claim}" not found')
    if (pvc.get("metadata") or {}).get("deletionTimestamp"):
        raise unprocessed(f"can't start pod because PVC {ns}/{claim} is being deleted")
    pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
    if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
        raise unprocessed("PVC is not bound")
    pv = ctx.get("PersistentVolume", pv_name, None)
    if pv is None:
        raise unprocessed(f'failed to fetch PV {pv_name} from API server: persistentvolumes "{pv_name}" '
                          "not found")
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    pvc_uid = (pvc.get("metadata") or {}).get("uid")
    if ref and ref.get("uid") and pvc_uid and ref.get("uid") != pvc_uid:
        raise unprocessed(f'found PV object "{pv_name}" but it has a ClaimRef that is bound to a '
                          f"different PVC")
    if not node_affinity_admits(pv, ctx.labels, ctx.node_name):
        raise VolumeError(FAILED_MOUNT, f'MountVolume.NodeAffinity check failed for volume "{pv_name}" : '
                                        "no matching NodeSelectorTerms")
    spec = pv.get("spec") or {}
    read_only = bool(src.get("readOnly"))
    if spec.get("hostPath") is not None:
        m = _host_path(ctx, pv_name, spec["hostPath"] or {})
        return Mounted(name, "persistentVolumeClaim", m.host_path, read_only, True, pv_name=pv_name)
    if spec.get("local") is not None:
        path = (spec["local"] or {}).get("path", "")
        try:
            real = resolve_in_root(ctx.root, path, "local path")
        except PathEscape as e:
            raise VolumeError(FAILED_MOUNT, f'MountVolume.NewMounter initialization failed for volume '
                                            f'"{pv_name}" : {e}') from None
        if not os.path.exists(real):
            raise VolumeError(FAILED_MOUNT, f'MountVolume.NewMounter initialization failed for volume '
                                            f'"{pv_name}" : path "{path}" does not exist')
        _link(volume_dir(ctx.root, _uid(pod), PLUGINS["local"], pv_name), real)
        return Mounted(name, "persistentVolumeClaim", real, read_only, True, pv_name=pv_name)
    if spec.get("csi") is not None:
        return _csi(ctx, pod, name, pv_name, spec["csi"] or {}, read_only)
    other = next((k for k in spec if k not in ("capacity", "accessModes", "claimRef", "nodeAffinity",
                                               "persistentVolumeReclaimPolicy", "storageClassName",
                                               "volumeMode", "mountOptions")), "unknown")
    raise VolumeError(FAILED_MOUNT, f'MountVolume.SetUp failed for volume "{pv_name}" : kemu nodes '
                                    f"cannot mount {other} volumes")


def _csi(ctx: NodeContext, pod: dict, name: str, pv_name: str, csi: dict, read_only: bool) -> Mounted:
    driver = csi.get("driver", "")
    if driver != SHARED_DIR_DRIVER:
        raise VolumeError(FAILED_MOUNT, f'MountVolume.MountDevice failed for volume "{pv_name}" : '
                                        "kubernetes.io/csi: attacher.MountDevice failed to create "
                                        f"newCsiDriverClient: driver name {driver} not found in the list "
                                        "of registered CSI drivers")
    handle = csi.get("volumeHandle", "")
    if not ctx.shared_root:
        raise VolumeError(FAILED_ATTACH, f'AttachVolume.Attach failed for volume "{pv_name}" : '
                                         "this node has no shared storage root")
    if not handle or "/" in handle or handle in (".", "..") or "\x00" in handle:
        raise VolumeError(FAILED_ATTACH, f'AttachVolume.Attach failed for volume "{pv_name}" : '
                                         f'invalid volumeHandle "{handle}"')
    real = os.path.join(ctx.shared_root, handle)
    if not os.path.isdir(real):
        raise VolumeError(FAILED_ATTACH, f'AttachVolume.Attach failed for volume "{pv_name}" : '
                                         f'volume "{handle}" does not exist on driver {driver}')
    _link(os.path.join(volume_dir(ctx.root, _uid(pod), PLUGINS["csi"], pv_name), "mount"), real)
    return Mounted(name, "persistentVolumeClaim", real, read_only, True, pv_name=pv_name)


def _link(at: str, target: str) -> None:
    """A symlink in the pod directory standing for the bind mount of ``target``."""
    os.makedirs(os.path.dirname(at), exist_ok=True)
    try:
        if os.readlink(at) == target:
            return
        os.unlink(at)
    except OSError:
        pass
    os.symlink(target, at)

