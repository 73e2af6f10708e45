"""kemu's dynamic provisioners' decisions and paths (after the CSI external-provisioner), without API I/O.

Contract
--------
* Two provisioners: ``kemu.io/local-dir`` (a directory on one node, the PV
  pinned there by nodeAffinity ``kubernetes.io/hostname In [node]`` and
  ``spec.local.path: /var/lib/kemu/storage/<pv>``) and ``kemu.io/shared-dir``
  (a directory under the lab's shared root, outside every node; the PV has
  ``spec.csi: {driver: kemu.io/shared-dir, volumeHandle: <pv>}`` and no affinity).
* ``provision_decision(claim, storage_class, node_known, volume_exists)`` ->
  ``None`` (not ours / nothing to do), ``("provision", node)`` or
  ``("fail", message)``: a claim is provisioned when it is unbound, not being
  deleted, annotated for one of our provisioners
  (``volume.kubernetes.io/storage-provisioner``, set by the binder), its PV
  ``pvc-<uid>`` does not exist yet, and, for WaitForFirstConsumer classes,
  once ``volume.kubernetes.io/selected-node`` names a node. local-dir needs a
  node (Immediate classes fail: "configuration error, no node was specified")
  and cannot give ReadWriteMany.
* ``volume_for(claim, storage_class, node)`` -> the PV, as the external
  provisioner writes it: name ``pvc-<claim uid>``, annotation
  ``pv.kubernetes.io/provisioned-by``, capacity = the request, the claim's
  accessModes and volumeMode, the class's reclaimPolicy (default Delete) and
  mountOptions, ``storageClassName`` and ``claimRef`` pre-set to the claim.
* ``volume_dir(pv, nodes_root, shared_root)`` -> where its data lives, or
  ValueError naming what is wrong. Every name that becomes a path (node, PV)
  must be one safe path segment (``safe_segment``); ``inside(path, root)``
  checks a resolved path (symlinks followed) stays under the root.
* ``should_delete(pv)``: Released, reclaim policy Delete, provisioned by one of
  ours, not already being deleted.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from control.controllers import persistentvolume_logic as pvl

LOCAL_DIR = "kemu.io/local-dir"
SHARED_DIR = "kemu.io/shared-dir"
PROVISIONERS = (LOCAL_DIR, SHARED_DIR)
STORAGE_DIR = "/var/lib/kemu/storage"
HOSTNAME_LABEL = "kubernetes.io/hostname"
_SEGMENT = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def safe_segment(name: str, what: str) -> str:
    """``name`` if it is one path segment that cannot escape (no '/', '..', NUL); else ValueError."""
    if not isinstance(name, str) or not name or len(name) > 253 or not _SEGMENT.match(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a safe directory name: use letters, digits, '-', '_' and '.', "
                         "starting and ending with a letter or digit, without '..'")
    return name


def inside(path: Path | str, root: Path | str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real != base and real.startswith(base.rstrip(os.sep) + os.sep)


def volume_name(claim: dict) -> str:
    return f"pvc-{claim['metadata'].get('uid', '')}"


def claim_provisioner(claim: dict) -> str:
    ann = pvl.annotations(claim)
    return ann.get(pvl.ANN_STORAGE_PROVISIONER) or ann.get(pvl.ANN_BETA_STORAGE_PROVISIONER) or ""


def provision_decision(claim: dict, storage_class: dict | None, node_known: bool,
                       volume_exists: bool) -> tuple[str, str] | None:
    prov = claim_provisioner(claim)
    if prov not in PROVISIONERS or (claim.get("spec") or {}).get("volumeName") or pvl.is_deleting(claim) \
            or volume_exists or pvl.ANN_BIND_COMPLETED in pvl.annotations(claim):
        return None
    if storage_class is None or storage_class.get("provisioner") != prov:
        return None   # the binder reports a missing class
    node = pvl.selected_node(claim)
    if pvl.is_delay_binding(storage_class) and not node:
        return None   # waits for the scheduler to pick a node
    cls = storage_class["metadata"]["name"]

    def fail(msg: str) -> tuple[str, str]:
        return ("fail", f'failed to provision volume with StorageClass "{cls}": {msg}')

    if prov == LOCAL_DIR:
        if not node:
            return fail("configuration error, no node was specified")
        if "ReadWriteMany" in pvl.access_modes(claim):
            return fail(f"{LOCAL_DIR} does not support access mode ReadWriteMany: use the shared class")
    if node:
        try:
            safe_segment(node, "node")
        except ValueError as e:
            return fail(str(e))
        if not node_known and prov == LOCAL_DIR:
            return fail(f'failed to get target node: node "{node}" not found')
    return ("provision", node if prov == LOCAL_DIR else "")


def volume_for(claim: dict, storage_class: dict, node: str) -> dict:
    name = volume_name(claim)
    prov = storage_class.get("provisioner") or ""
    spec = claim.get("spec") or {}
    pv_spec: dict = {
        "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage")},
        "accessModes": list(spec.get("accessModes") or []),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": storage_class["metadata"]["name"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "claimRef": pvl.claim_ref(claim),
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = copy.deepcopy(storage_class["mountOptions"])
    if prov == LOCAL_DIR:
        pv_spec["local"] = {"path": f"{STORAGE_DIR}/{name}"}
        pv_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}
    else:
        pv_spec["csi"] = {"driver": SHARED_DIR, "volumeHandle": name}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {pvl.ANN_PROVISIONED_BY: prov}},
            "spec": pv_spec}


def volume_node(pv: dict) -> str:
    """The single node a local-dir PV's nodeAffinity names ('' if none)."""
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
             .get("nodeSelectorTerms") or [])
    for t in terms:
        for e in t.get("matchExpressions") or []:
            if e.get("key") == HOSTNAME_LABEL and e.get("operator") == "In" and len(e.get("values") or []) == 1:
                return str(e["values"][0])
    return ""


def volume_dir(pv: dict, nodes_root: str | None, shared_root: str | None) -> tuple[Path, Path]:
    """(directory, the root it must stay in) for a PV one of ours provisioned; ValueError if it cannot be."""
    name = safe_segment(pv["metadata"]["name"], "volume")
    prov = pvl.annotations(pv).get(pvl.ANN_PROVISIONED_BY)
    spec = pv.get("spec") or {}
    if prov == LOCAL_DIR:
        if nodes_root is None:
            raise ValueError("provisioning is disabled: the controller-manager has no nodes root")
        path = (spec.get("local") or {}).get("path")
        if path != f"{STORAGE_DIR}/{name}":
            raise ValueError(f"spec.local.path {path!r} is not {STORAGE_DIR}/{name}")
        node = safe_segment(volume_node(pv), "node")
        root = Path(nodes_root) / node
        return root / STORAGE_DIR.lstrip("/") / name, root
    if prov == SHARED_DIR:
        if shared_root is None:
            raise ValueError("provisioning is disabled: the controller-manager has no shared root")
        handle = (spec.get("csi") or {}).get("volumeHandle")
        if handle != name:
            raise ValueError(f"spec.csi.volumeHandle {handle!r} is not {name}")
        return Path(shared_root) / name, Path(shared_root)
    raise ValueError(f"volume {name} was not provisioned by {' or '.join(PROVISIONERS)}")


def should_delete(pv: dict) -> bool:
    return (pvl.phase(pv) == "Released" and not pvl.is_deleting(pv)
            and (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"
            and pvl.annotations(pv).get(pvl.ANN_PROVISIONED_BY) in PROVISIONERS)
