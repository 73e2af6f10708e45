"""Table columns for PersistentVolume, PersistentVolumeClaim and StorageClass,
as kubectl 1.32 prints them.

Contract: importing this module registers the three printers. Access modes
print in kubectl's short form (RWO, ROX, RWX, RWOP); CLAIM is
``namespace/name``; a default class prints as ``standard (default)``;
VOLUMEATTRIBUTESCLASS is ``<unset>`` (kemu has no VolumeAttributesClass);
``-o wide`` adds VOLUMEMODE to PVs and PVCs.
"""
from __future__ import annotations

from emulator.api.kinds.storage import is_default_class
from emulator.cli.printers import Column, age, register_printer

__all__ = ["access_modes"]

_SHORT = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


NAME = Column("NAME", lambda o, now: _md(o).get("name", ""))
AGE = Column("AGE", lambda o, now: age(_md(o).get("creationTimestamp"), now))
VAC = Column("VOLUMEATTRIBUTESCLASS", lambda o, now: (o.get("spec") or {}).get("volumeAttributesClassName")
             or "<unset>")
VOLUME_MODE = Column("VOLUMEMODE", lambda o, now: (o.get("spec") or {}).get("volumeMode") or "Filesystem")


def access_modes(modes: list[str] | None) -> str:
    # kubectl prints them in a fixed order, whatever order they were written in
    order = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
    return ",".join(_SHORT[m] for m in order if m in (modes or []))


def _pv_claim(pv: dict) -> str:
    ref = (pv.get("spec") or {}).get("claimRef")
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""


register_printer("PersistentVolume", [
    NAME,
    Column("CAPACITY", lambda o, now: str(((o.get("spec") or {}).get("capacity") or {}).get("storage", ""))),
    Column("ACCESS MODES", lambda o, now: access_modes((o.get("spec") or {}).get("accessModes"))),
    Column("RECLAIM POLICY", lambda o, now: (o.get("spec") or {}).get("persistentVolumeReclaimPolicy") or ""),
    Column("STATUS", lambda o, now: "Terminating" if _md(o).get("deletionTimestamp")
           else (o.get("status") or {}).get("phase") or ""),
    Column("CLAIM", lambda o, now: _pv_claim(o)),
    Column("STORAGECLASS", lambda o, now: (o.get("spec") or {}).get("storageClassName") or ""),
    VAC,
    Column("REASON", lambda o, now: (o.get("status") or {}).get("reason") or ""),
    AGE,
], [VOLUME_MODE])


def _pvc_bound(o: dict) -> bool:
    return bool((o.get("spec") or {}).get("volumeName")) and (o.get("status") or {}).get("phase") == "Bound"


register_printer("PersistentVolumeClaim", [
    NAME,
    Column("STATUS", lambda o, now: "Terminating" if _md(o).get("deletionTimestamp")
           else (o.get("status") or {}).get("phase") or ""),
    Column("VOLUME", lambda o, now: (o.get("spec") or {}).get("volumeName") or ""),
    Column("CAPACITY", lambda o, now: str(((o.get("status") or {}).get("capacity") or {}).get("storage", ""))
           if _pvc_bound(o) else ""),
    Column("ACCESS MODES", lambda o, now: access_modes((o.get("status") or {}).get("accessModes"))
           if _pvc_bound(o) else ""),
    Column("STORAGECLASS", lambda o, now: (o.get("spec") or {}).get("storageClassName") or ""),
    VAC,
    AGE,
], [VOLUME_MODE])


register_printer("StorageClass", [
    Column("NAME", lambda o, now: _md(o).get("name", "") + (" (default)" if is_default_class(o) else "")),
    Column("PROVISIONER", lambda o, now: o.get("provisioner") or ""),
    Column("RECLAIMPOLICY", lambda o, now: o.get("reclaimPolicy") or "Delete"),
    Column("VOLUMEBINDINGMODE", lambda o, now: o.get("volumeBindingMode") or "Immediate"),
    Column("ALLOWVOLUMEEXPANSION", lambda o, now: "true" if o.get("allowVolumeExpansion") else "false"),
    AGE,
])
