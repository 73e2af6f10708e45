"""``kemu describe`` for PersistentVolumeClaim and PersistentVolume, in kubectl 1.32's layout.

Contract: importing this module registers both describers. A claim shows
StorageClass, Status, Volume, Finalizers, Capacity and Access Modes (when
bound), VolumeMode and ``Used By`` (the pods in ``extra["used_by"]``); a
volume shows its claim, reclaim policy, node affinity terms and its source
(HostPath, LocalVolume or CSI), as kubectl's describers do.
"""
from __future__ import annotations

from typing import Any

from emulator.cli.describers import Writer, annotations_block, events_block, labels_block, register_describer
from emulator.cli.printers_storage import access_modes

__all__ = ["describe_pvc", "describe_pv"]


def _finalizers(md: dict) -> str:
    return "[" + " ".join(md.get("finalizers") or []) + "]"


def describe_pvc(obj: dict, events: list[dict] | None, extra: dict) -> str:
    md, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    w = Writer()
    w.line(0, f"Name:\t{md.get('name', '')}")
    w.line(0, f"Namespace:\t{md.get('namespace', '')}")
    w.line(0, f"StorageClass:\t{spec.get('storageClassName') or ''}")
    w.line(0, "Status:\t" + ("Terminating (lasts <unknown>)" if md.get("deletionTimestamp")
                            else status.get("phase", "")))
    w.line(0, f"Volume:\t{spec.get('volumeName') or ''}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    w.line(0, f"Finalizers:\t{_finalizers(md)}")
    bound = bool(spec.get("volumeName"))
    w.line(0, "Capacity:\t" + (str((status.get("capacity") or {}).get("storage", "")) if bound else ""))
    w.line(0, "Access Modes:\t" + (access_modes(status.get("accessModes")) if bound else ""))
    w.line(0, f"VolumeMode:\t{spec.get('volumeMode') or 'Filesystem'}")
    used = extra.get("used_by") or []
    w.line(0, "Used By:\t" + ("\n\t".join(used) if used else "<none>"))
    if events is not None:
        events_block(w, events)
    return w.text()


def _affinity(w: Writer, aff: Any) -> None:
    terms = (((aff or {}).get("required") or {}).get("nodeSelectorTerms")) or []
    if not terms:
        w.line(0, "Node Affinity:\t<none>")
        return
    w.line(0, "Node Affinity:\t")
    w.line(1, "Required Terms:\t")
    for i, term in enumerate(terms):
        exprs = [f"{e.get('key')} {str(e.get('operator', '')).lower()} [{', '.join(e.get('values') or [])}]"
                 for e in (term.get("matchExpressions") or []) + (term.get("matchFields") or [])]
        w.line(2, f"Term {i}:\t" + ("\n\t".join(exprs) if exprs else "<none>"))


def _source(w: Writer, spec: dict) -> None:
    w.line(0, "Source:")
    if spec.get("hostPath") is not None:
        hp = spec["hostPath"]
        w.line(1, "Type:\tHostPath (bare host directory volume)")
        w.line(1, f"Path:\t{hp.get('path', '')}")
        w.line(1, f"HostPathType:\t{hp.get('type', '')}")
    elif spec.get("local") is not None:
        w.line(1, "Type:\tLocalVolume (a persistent volume backed by local storage on a node)")
        w.line(1, f"Path:\t{spec['local'].get('path', '')}")
    elif spec.get("csi") is not None:
        csi = spec["csi"]
        w.line(1, "Type:\tCSI (a Container Storage Interface (CSI) volume source)")
        w.line(1, f"Driver:\t{csi.get('driver', '')}")
        w.line(1, f"FSType:\t{csi.get('fsType', '')}")
        w.line(1, f"VolumeHandle:\t{csi.get('volumeHandle', '')}")
        w.line(1, f"ReadOnly:\t{'true' if csi.get('readOnly') else 'false'}")
    elif spec.get("nfs") is not None:
        nfs = spec["nfs"]
        w.line(1, "Type:\tNFS (an NFS mount that lasts the lifetime of a pod)")
        w.line(1, f"Server:\t{nfs.get('server', '')}")
        w.line(1, f"Path:\t{nfs.get('path', '')}")
        w.line(1, f"ReadOnly:\t{'true' if nfs.get('readOnly') else 'false'}")


def describe_pv(obj: dict, events: list[dict] | None, extra: dict) -> str:
    md, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    w = Writer()
    w.line(0, f"Name:\t{md.get('name', '')}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    w.line(0, f"Finalizers:\t{_finalizers(md)}")
    w.line(0, f"StorageClass:\t{spec.get('storageClassName') or ''}")
    w.line(0, "Status:\t" + ("Terminating (lasts <unknown>)" if md.get("deletionTimestamp")
                            else status.get("phase", "")))
    ref = spec.get("claimRef") or {}
    w.line(0, "Claim:\t" + (f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""))
    w.line(0, f"Reclaim Policy:\t{spec.get('persistentVolumeReclaimPolicy', '')}")
    w.line(0, f"Access Modes:\t{access_modes(spec.get('accessModes'))}")
    w.line(0, f"VolumeMode:\t{spec.get('volumeMode') or 'Filesystem'}")
    w.line(0, f"Capacity:\t{(spec.get('capacity') or {}).get('storage', '')}")
    _affinity(w, spec.get("nodeAffinity"))
    w.line(0, f"Message:\t{status.get('message', '')}")
    _source(w, spec)
    if events is not None:
        events_block(w, events)
    return w.text()


register_describer("PersistentVolumeClaim", describe_pvc)
register_describer("PersistentVolume", describe_pv)
