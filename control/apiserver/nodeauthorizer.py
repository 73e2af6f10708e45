"""The node authorizer, for reads: a kubelet reads only what its own pods use.

Contract (after Kubernetes' ``plugin/pkg/auth/authorizer/node``): a request
from a peer that said hello as component ``kubelet`` with a node name may
``get`` a Secret, ConfigMap or PersistentVolumeClaim only when a pod bound to
that node (``spec.nodeName``) references it — through a volume (secret,
configMap, projected sources, persistentVolumeClaim), ``env[].valueFrom``,
``envFrom`` or ``imagePullSecrets`` — and a PersistentVolume only when such a
claim is bound to it (``spec.volumeName``). Anything else is Forbidden, worded
as Kubernetes words it. Every other component, and every other kind, is
allowed: kemu identifies peers by their hello, it does not authenticate them.
The check costs O(pods on the node), through the store's node index.
"""
from __future__ import annotations

from typing import Any, Iterator

from emulator.api import errors
from emulator.api.errors import APIError

__all__ = ["GUARDED_KINDS", "authorize_get", "references"]

GUARDED_KINDS = {"Secret": "secrets", "ConfigMap": "configmaps",
                 "PersistentVolumeClaim": "persistentvolumeclaims", "PersistentVolume": "persistentvolumes"}


def references(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap and PersistentVolumeClaim the pod uses."""
    spec = pod.get("spec") or {}
    for ref in spec.get("imagePullSecrets") or []:
        if isinstance(ref, dict) and ref.get("name"):
            yield "Secret", ref["name"]
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        if (v.get("secret") or {}).get("secretName"):
            yield "Secret", v["secret"]["secretName"]
        if (v.get("configMap") or {}).get("name"):
            yield "ConfigMap", v["configMap"]["name"]
        if (v.get("persistentVolumeClaim") or {}).get("claimName"):
            yield "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]
        for src in (v.get("projected") or {}).get("sources") or []:
            if (src.get("secret") or {}).get("name"):
                yield "Secret", src["secret"]["name"]
            if (src.get("configMap") or {}).get("name"):
                yield "ConfigMap", src["configMap"]["name"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            for env in c.get("env") or []:
                vf = env.get("valueFrom") or {}
                if (vf.get("secretKeyRef") or {}).get("name"):
                    yield "Secret", vf["secretKeyRef"]["name"]
                if (vf.get("configMapKeyRef") or {}).get("name"):
                    yield "ConfigMap", vf["configMapKeyRef"]["name"]
            for ef in c.get("envFrom") or []:
                if (ef.get("secretRef") or {}).get("name"):
                    yield "Secret", ef["secretRef"]["name"]
                if (ef.get("configMapRef") or {}).get("name"):
                    yield "ConfigMap", ef["configMapRef"]["name"]


def _related(store: Any, node: str, kind: str, namespace: str, name: str) -> bool:
    for pod in store.pods_on_node(node):
        pns = pod["metadata"].get("namespace", "")
        for rkind, rname in references(pod):
            if kind == "PersistentVolume":
                if rkind == "PersistentVolumeClaim":
                    claim = store.get("PersistentVolumeClaim", pns, rname)
                    if claim is not None and (claim.get("spec") or {}).get("volumeName") == name:
                        return True
            elif rkind == kind and rname == name and pns == namespace:
                return True
    return False


def authorize_get(store: Any, component: str, node: str | None, kind: str, namespace: str | None,
                  name: str) -> None:
    """Raise Forbidden when a kubelet reads an object its node has no relationship with."""
    if component != "kubelet" or not node or kind not in GUARDED_KINDS:
        return
    if _related(store, node, kind, namespace or "", name):
        return
    where = f' in the namespace "{namespace}"' if kind != "PersistentVolume" else ""
    raise APIError(errors.FORBIDDEN,
                   f'{GUARDED_KINDS[kind]} "{name}" is forbidden: User "system:node:{node}" cannot get '
                   f'resource "{GUARDED_KINDS[kind]}" in API group ""{where}: no relationship found '
                   f"between node '{node}' and this object")
