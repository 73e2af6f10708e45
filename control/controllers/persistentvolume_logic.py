"""The PersistentVolume controller's decisions (after ``pkg/controller/volume/persistentvolume``), without I/O.

Contract (pure functions on Kubernetes-shaped dicts)
----------------------------------------------------
* Classes: ``claim_class`` / ``volume_class`` read the beta annotation
  ``volume.beta.kubernetes.io/storage-class`` first, then
  ``spec.storageClassName``; absent means ``""``.
* ``find_matching_volume(claim, volumes, node=None, delay_binding=False)`` is
  Kubernetes' ``FindMatchingVolume`` plus the binder's access-mode index: a
  volume pre-bound to the claim (``claimRef`` names it, uid empty or equal)
  wins whenever it is big enough and of the right volumeMode (and, with a
  node, its nodeAffinity admits the node; if not, nothing matches). Otherwise
  the volume must be Available, unclaimed, not being deleted, of the claim's
  class, labels matching ``spec.selector``, volumeMode equal, accessModes a
  superset of the claim's, capacity >= the request and, with a node, its
  nodeAffinity must admit the node. Among those: fewest access modes first
  (the index's order), then the smallest capacity, then the name. With
  ``delay_binding`` and no node, only pre-bound volumes match.
* ``check_volume_satisfies_claim(volume, claim)`` -> None or Kubernetes'
  reason ("requested PV is too small", ...), for a claim naming ``spec.volumeName``.
* ``sync_claim(claim, volume, ...)`` -> ``ClaimPlan`` (syncUnboundClaim /
  syncBoundClaim): bind to a volume, provision, wait, or mark Pending/Lost,
  with the Events Kubernetes records.
* ``sync_volume(volume, claim, ...)`` -> ``VolumePlan`` (syncVolume): the
  phase (Available, Bound, Released, Failed), unbinding, and the reclaim
  action (``reclaim_action``).
* Binding is four writes, each ``None`` when already done:
  ``bound_volume`` (claimRef + ``pv.kubernetes.io/bound-by-controller``),
  ``bound_volume_status`` (phase Bound), ``bound_claim`` (``spec.volumeName``,
  ``pv.kubernetes.io/bind-completed`` and ``bound-by-controller``) and
  ``bound_claim_status`` (phase Bound, capacity, accessModes).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable

from control.scheduler.filters import match_node_selector_terms
from emulator.api.quantity import parse_quantity
from emulator.api.selectors import label_selector_from_dict

ANN_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

Event = tuple[str, str, str]   # (type, reason, message)


# -- reading objects -----------------------------------------------------------
def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def annotations(obj: dict) -> dict[str, str]:
    return _md(obj).get("annotations") or {}


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def claim_key(claim: dict) -> tuple[str, str]:
    return (_md(claim).get("namespace") or "", _md(claim)["name"])


def claim_class(claim: dict) -> str:
    ann = annotations(claim)
    if ANN_STORAGE_CLASS in ann:
        return ann[ANN_STORAGE_CLASS] or ""
    return _spec(claim).get("storageClassName") or ""


volume_class = claim_class


@lru_cache(maxsize=4096)
def _qty(q: Any) -> Fraction:
    try:
        return parse_quantity(q)
    except ValueError:
        return Fraction(0)


def _storage(resources: dict | None) -> Fraction:
    q = (resources or {}).get("storage")
    return Fraction(0) if q is None else _qty(q)


def requested(claim: dict) -> Fraction:
    return _storage((_spec(claim).get("resources") or {}).get("requests"))


def capacity(volume: dict) -> Fraction:
    return _storage(_spec(volume).get("capacity"))


def volume_mode(obj: dict) -> str:
    return _spec(obj).get("volumeMode") or "Filesystem"


def access_modes(obj: dict) -> list[str]:
    return list(_spec(obj).get("accessModes") or [])


def phase(obj: dict) -> str:
    return (obj.get("status") or {}).get("phase") or "Pending"


def is_deleting(obj: dict) -> bool:
    return bool(_md(obj).get("deletionTimestamp"))


def is_delay_binding(storage_class: dict | None) -> bool:
    """WaitForFirstConsumer? A missing class binds immediately (IsDelayBindingMode)."""
    return storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER


def selected_node(claim: dict) -> str:
    return annotations(claim).get(ANN_SELECTED_NODE) or ""


def is_volume_bound_to_claim(volume: dict, claim: dict) -> bool:
    ref = _spec(volume).get("claimRef")
    if not ref:
        return False
    md = _md(claim)
    if ref.get("name") != md.get("name") or (ref.get("namespace") or "") != (md.get("namespace") or ""):
        return False
    return not ref.get("uid") or ref.get("uid") == md.get("uid")


def claim_ref(claim: dict) -> dict:
    """``reference.GetReference(claim)``."""
    md = _md(claim)
    return {"kind": "PersistentVolumeClaim", "namespace": md.get("namespace") or "default",
            "name": md["name"], "uid": md.get("uid", ""), "apiVersion": "v1",
            "resourceVersion": md.get("resourceVersion", "")}


def node_affinity_admits(volume: dict, node: dict | None, node_name: str) -> bool:
    """``CheckNodeAffinity``: a volume without required nodeAffinity fits every node."""
    terms = ((_spec(volume).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    if terms is None:
        return True
    labels = dict(_md(node).get("labels") or {}) if node is not None else {}
    return match_node_selector_terms(list(terms), labels, node_name)


def access_modes_contain(volume_modes: list[str], claim_modes: list[str]) -> bool:
    have = set(volume_modes)
    return all(m in have for m in claim_modes)


# -- matching ------------------------------------------------------------------
def find_matching_volume(claim: dict, volumes: list[dict], node: dict | None = None, node_name: str = "",
                         delay_binding: bool = False) -> dict | None:
    req = requested(claim)
    cls = claim_class(claim)
    mode = volume_mode(claim)
    modes = access_modes(claim)
    sel_spec = _spec(claim).get("selector")
    selector = label_selector_from_dict(sel_spec) if sel_spec is not None else None
    with_node = node is not None or bool(node_name)
    best: dict | None = None
    best_key: tuple | None = None
    for v in volumes:
        ref = _spec(v).get("claimRef")
        prebound = is_volume_bound_to_claim(v, claim)
        if ref and not prebound:
            continue
        cap = capacity(v)
        if cap < req or volume_mode(v) != mode or is_deleting(v):
            continue
        fits_node = not with_node or node_affinity_admits(v, node, node_name)
        if prebound:
            return v if fits_node else None
        if delay_binding and not with_node:
            continue
        if phase(v) != "Available" or volume_class(v) != cls or not fits_node:
            continue
        if selector is not None and not selector.matches(_md(v).get("labels") or {}):
            continue
        vmodes = access_modes(v)
        if not access_modes_contain(vmodes, modes):
            continue
        key = (len(set(vmodes)), cap, _md(v).get("name", ""))
        if best_key is None or key < best_key:
            best, best_key = v, key
    return best


def check_volume_satisfies_claim(volume: dict, claim: dict) -> str | None:
    if is_deleting(volume):
        return f'the volume is marked for deletion "{_md(volume).get("name")}"'
    if capacity(volume) < requested(claim):
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode(volume) != volume_mode(claim):
        return "incompatible volumeMode"
    if not access_modes_contain(access_modes(volume), access_modes(claim)):
        return "incompatible accessMode"
    return None


# -- binding writes ------------------------------------------------------------
def _with_annotation(obj: dict, key: str, value: str) -> None:
    md = obj.setdefault("metadata", {})
    md["annotations"] = {**(md.get("annotations") or {}), key: value}


def bound_volume(volume: dict, claim: dict) -> dict | None:
    """``GetBindVolumeToClaim``: the volume with its claimRef set, or None if unchanged."""
    set_by_controller = not is_volume_bound_to_claim(volume, claim)
    ref = _spec(volume).get("claimRef") or {}
    md = _md(claim)
    new: dict | None = None
    if ref.get("name") != md.get("name") or (ref.get("namespace") or "") != (md.get("namespace") or "") \
            or ref.get("uid") != md.get("uid"):
        new = copy.deepcopy(volume)
        new["spec"]["claimRef"] = claim_ref(claim)
    if set_by_controller and ANN_BOUND_BY_CONTROLLER not in annotations(volume):
        new = new or copy.deepcopy(volume)
        _with_annotation(new, ANN_BOUND_BY_CONTROLLER, "yes")
    return new


def bound_volume_status(volume: dict, now: str) -> dict | None:
    return volume_phase_status(volume, "Bound", "", now)


def volume_phase_status(volume: dict, new_phase: str, message: str, now: str) -> dict | None:
    """The volume's status with ``phase`` (and ``message``), or None if already so."""
    old = volume.get("status") or {}
    if old.get("phase") == new_phase and (old.get("message") or "") == message:
        return None
    st = {k: v for k, v in old.items() if k != "message"}
    st["phase"] = new_phase
    if message:
        st["message"] = message
    if old.get("phase") != new_phase:
        st["lastPhaseTransitionTime"] = now
    return st


def bound_claim(claim: dict, volume: dict) -> dict | None:
    """``GetBindClaimToVolume``: the claim naming the volume, or None if unchanged."""
    new: dict | None = None
    name = _md(volume)["name"]
    if _spec(claim).get("volumeName") != name:
        new = copy.deepcopy(claim)
        new["spec"]["volumeName"] = name
        if ANN_BOUND_BY_CONTROLLER not in annotations(claim):
            _with_annotation(new, ANN_BOUND_BY_CONTROLLER, "yes")
    if ANN_BIND_COMPLETED not in annotations(claim):
        new = new or copy.deepcopy(claim)
        _with_annotation(new, ANN_BIND_COMPLETED, "yes")
    return new


def claim_phase_status(claim: dict, new_phase: str, volume: dict | None) -> dict | None:
    """``updateClaimStatus``: phase, and with a volume its accessModes and capacity."""
    old = claim.get("status") or {}
    st = dict(old)
    st["phase"] = new_phase
    if volume is not None:
        st["accessModes"] = access_modes(volume)
        cap = (_spec(volume).get("capacity") or {}).get("storage")
        if cap is not None:
            st["capacity"] = {**(old.get("capacity") or {}), "storage": cap}
    return None if st == old else st


# -- claims ----------------------------------------------------------------------
@dataclass
class ClaimPlan:
    bind: str | None = None            # the volume to bind to (the four writes)
    provisioner: str | None = None     # annotate the claim for this provisioner
    phase: str | None = None           # status.phase to write (Pending, Lost)
    events: list[Event] = field(default_factory=list)


def _provision(claim: dict, storage_class: dict | None) -> ClaimPlan:
    """``provisionClaim``: find the class's provisioner, or say why not."""
    cls = claim_class(claim)
    if storage_class is None:
        return ClaimPlan(events=[("Warning", "ProvisioningFailed",
                                  f'storageclass.storage.k8s.io "{cls}" not found')])
    prov = storage_class.get("provisioner") or ""
    if prov.startswith("kubernetes.io/"):
        return ClaimPlan(events=[("Warning", "ProvisioningFailed", f"no volume plugin matched name: {prov}")])
    msg = (f"Waiting for a volume to be created either by the external provisioner '{prov}' or manually by "
           "the system administrator. If volume creation is delayed, please verify that the provisioner is "
           "running and correctly registered.")
    return ClaimPlan(provisioner=prov, events=[("Normal", "ExternalProvisioning", msg)])


def sync_claim(claim: dict, *, volume: dict | None, candidates: Callable[[], list[dict]],
               storage_class: dict | None, node: dict | None) -> ClaimPlan:
    """One pass of ``syncClaim``.

    ``volume`` is the volume the claim names (``spec.volumeName``), if any and
    if it exists; ``candidates()`` the volumes worth matching (unclaimed ones of
    its class, and any pre-bound to it); ``storage_class`` its class object
    (None if absent); ``node`` the Node named by ``volume.kubernetes.io/selected-node``.
    """
    if ANN_BIND_COMPLETED in annotations(claim):
        return _sync_bound_claim(claim, volume)
    vname = _spec(claim).get("volumeName") or ""
    if not vname:
        delay = is_delay_binding(storage_class)
        node_name = selected_node(claim) if delay else ""
        match = find_matching_volume(claim, candidates(), node=node if node_name else None,
                                     node_name=node_name, delay_binding=delay)
        if match is not None:
            return ClaimPlan(bind=_md(match)["name"])
        if delay and not node_name:
            return ClaimPlan(phase=_pending(claim), events=[
                ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")])
        if claim_class(claim):
            return _provision(claim, storage_class)
        return ClaimPlan(phase=_pending(claim), events=[
            ("Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set")])
    if volume is None:
        return ClaimPlan(phase=_pending(claim))
    if not _spec(volume).get("claimRef"):
        why = check_volume_satisfies_claim(volume, claim)
        if why is not None:
            return ClaimPlan(phase=_pending(claim), events=[
                ("Warning", "VolumeMismatch", f'Cannot bind to requested volume "{vname}": {why}')])
        return ClaimPlan(bind=vname)
    if is_volume_bound_to_claim(volume, claim):
        return ClaimPlan(bind=vname)
    return ClaimPlan(phase=_pending(claim), events=[
        ("Warning", "FailedBinding", f'volume "{vname}" already bound to a different claim.')])


def _pending(claim: dict) -> str | None:
    return None if phase(claim) == "Pending" else "Pending"


def _sync_bound_claim(claim: dict, volume: dict | None) -> ClaimPlan:
    vname = _spec(claim).get("volumeName") or ""
    lost = None if phase(claim) == "Lost" else "Lost"
    if not vname:
        msg = "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
        return ClaimPlan(phase=lost, events=[] if lost is None else [("Warning", "ClaimLost", msg)])
    if volume is None:
        return ClaimPlan(phase=lost, events=[] if lost is None else [
            ("Warning", "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")])
    ref = _spec(volume).get("claimRef")
    if not ref or ref.get("uid") == _md(claim).get("uid"):
        return ClaimPlan(bind=vname)
    return ClaimPlan(phase=lost, events=[] if lost is None else [
        ("Warning", "ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly")])


# -- volumes ---------------------------------------------------------------------
@dataclass
class VolumePlan:
    phase: str | None = None           # the status.phase it should have (None: leave it)
    message: str = ""
    events: list[Event] = field(default_factory=list)
    unbind: bool = False               # clear the claimRef (or only its uid)
    reclaim: str | None = None         # "delete-object": delete the PV object here
    enqueue_claim: tuple[str, str] | None = None
    check_claim: bool = False          # the claim is missing from the cache: ask the apiserver first


_TMP = re.compile(r"^/tmp/.+")


def reclaim_action(volume: dict, external: Callable[[str], bool]) -> tuple[str, str, str] | None:
    """``reclaimVolume`` for a Released volume: None (Retain, or another
    component deletes it), ``("delete-object", "", "")`` or
    ``("fail", reason, message)``. ``external(provisioner)`` tells whether a
    provisioner outside this controller deletes what it provisioned."""
    policy = _spec(volume).get("persistentVolumeReclaimPolicy") or "Retain"
    name = _md(volume).get("name", "")
    if policy == "Retain":
        return None
    if policy == "Recycle":
        return ("fail", "VolumeFailedRecycle", "No recycler plugin found for the volume!")
    if policy != "Delete":
        return None
    prov = annotations(volume).get(ANN_PROVISIONED_BY) or ""
    if prov and external(prov):
        return None   # an external deleter (our provisioner) does it
    host_path = _spec(volume).get("hostPath")
    if host_path is not None:
        path = str(host_path.get("path") or "")
        if _TMP.match(path):
            return ("delete-object", "", "")
        return ("fail", "VolumeFailedDelete", f'failed to create deleter for volume "{name}": '
                f"host_path deleter only supports /tmp/.+ but received provided {path}")
    return ("fail", "VolumeFailedDelete",
            f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched')


def sync_volume(volume: dict, claim: dict | None, *, claim_checked: bool,
                external: Callable[[str], bool]) -> VolumePlan:
    """One pass of ``syncVolume``. ``claim`` is the claim its claimRef names
    (None if absent); ``claim_checked`` says the apiserver confirmed the absence."""
    ref = _spec(volume).get("claimRef")
    cur = phase(volume)
    if not ref or not ref.get("uid"):
        return VolumePlan(phase="Available")
    if claim is not None and _md(claim).get("uid") != ref.get("uid"):
        claim = None   # deleted and created again: not our claim
    if claim is None:
        if cur in ("Released", "Failed"):
            plan = VolumePlan()
        elif not claim_checked:
            return VolumePlan(check_claim=True)
        else:
            plan = VolumePlan(phase="Released")
        if cur != "Failed":
            _reclaim(volume, plan, external)
        return plan
    if not _spec(claim).get("volumeName"):
        return VolumePlan(enqueue_claim=claim_key(claim))
    if _spec(claim)["volumeName"] == _md(volume)["name"]:
        return VolumePlan(phase="Bound")
    # the claim is bound to another volume
    if ANN_PROVISIONED_BY in annotations(volume) and \
            _spec(volume).get("persistentVolumeReclaimPolicy") == "Delete":
        plan = VolumePlan(phase=None if cur in ("Released", "Failed") else "Released")
        if cur != "Failed":
            _reclaim(volume, plan, external)
        return plan
    return VolumePlan(unbind=True, phase="Available")


def _reclaim(volume: dict, plan: VolumePlan, external: Callable[[str], bool]) -> None:
    act = reclaim_action(volume, external)
    if act is None:
        return
    if act[0] == "delete-object":
        plan.reclaim = "delete-object"
        return
    plan.phase, plan.message = "Failed", act[2]
    plan.events.append(("Warning", act[1], act[2]))


def unbound_volume(volume: dict) -> dict:
    """``unbindVolume``: a controller binding is undone; a user's pre-binding keeps the name."""
    new = copy.deepcopy(volume)
    if ANN_BOUND_BY_CONTROLLER in annotations(volume):
        new["spec"].pop("claimRef", None)
        anns = dict(annotations(volume))
        anns.pop(ANN_BOUND_BY_CONTROLLER, None)
        new["metadata"]["annotations"] = anns
    else:
        new["spec"]["claimRef"] = {k: v for k, v in new["spec"]["claimRef"].items() if k != "uid"}
    return new


def with_provisioner(claim: dict, provisioner: str) -> dict | None:
    """``setClaimProvisioner``: both provisioner annotations, or None if set."""
    ann = annotations(claim)
    if ann.get(ANN_STORAGE_PROVISIONER) == provisioner and ann.get(ANN_BETA_STORAGE_PROVISIONER) == provisioner:
        return None
    new = copy.deepcopy(claim)
    _with_annotation(new, ANN_STORAGE_PROVISIONER, provisioner)
    _with_annotation(new, ANN_BETA_STORAGE_PROVISIONER, provisioner)
    return new
