"""The storage-object-in-use protection decisions (after ``pkg/controller/volume/pvcprotection``
and ``pvprotection``), without I/O.

Contract
--------
* ``claims_of_pod(pod)``: the claim names a pod's ``persistentVolumeClaim``
  volumes refer to.
* ``pod_uses_claim(pod, claim_name)``: Kubernetes' ``podUsesPVC``: the pod is
  scheduled (``spec.nodeName`` set, since the kubelet refuses to start a pod
  whose claim is being deleted), not terminated (phase neither Succeeded nor
  Failed) and one of its volumes names the claim.
* ``pvc_finalizers(pvc, in_use)`` / ``pv_finalizers(pv)`` -> the new
  ``metadata.finalizers`` list, or None when nothing changes: the protection
  finalizer is added to an object not being deleted that lacks it, and
  removed from one being deleted once it is no longer in use (a claim: no pod
  uses it; a volume: its phase is not Bound).
"""
from __future__ import annotations

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def claims_of_pod(pod: dict) -> list[str]:
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        name = ((v or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if name:
            out.append(str(name))
    return out


def pod_uses_claim(pod: dict, claim_name: str) -> bool:
    if not (pod.get("spec") or {}).get("nodeName"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return claim_name in claims_of_pod(pod)


def _finalizers(obj: dict) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _decide(obj: dict, finalizer: str, in_use: bool) -> list[str] | None:
    fins = _finalizers(obj)
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        if finalizer in fins and not in_use:
            return [f for f in fins if f != finalizer]
        return None
    if finalizer not in fins:
        return fins + [finalizer]
    return None


def pvc_finalizers(pvc: dict, in_use: bool) -> list[str] | None:
    return _decide(pvc, PVC_PROTECTION, in_use)


def pv_finalizers(pv: dict) -> list[str] | None:
    return _decide(pv, PV_PROTECTION, (pv.get("status") or {}).get("phase") == "Bound")


def needs_work(obj: dict, finalizer: str) -> bool:
    """Cheap pre-check for handlers: being deleted with the finalizer, or lacking it."""
    fins = _finalizers(obj)
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return finalizer in fins
    return finalizer not in fins
