"""The Pod kind (core/v1): defaulting, QoS class and registration.

Contract: ``default_pod(obj)`` applies Kubernetes' type-level Pod defaults in
place and is idempotent: spec.restartPolicy Always, terminationGracePeriodSeconds
30, dnsPolicy ClusterFirst, schedulerName default-scheduler, enableServiceLinks
true, securityContext {}; per container (and init container) imagePullPolicy
(Always for ``:latest`` or untagged images, else IfNotPresent),
terminationMessagePath/Policy, port protocol TCP, and limits copied into
missing requests; status.phase Pending and status.qosClass when absent.
``pod_qos_class(pod)`` computes BestEffort/Burstable/Guaranteed as the kubelet
does. Validation lives in ``pod_validation``.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from emulator.api.kinds.pod_validation import validate_pod
from emulator.api.quantity import parse_quantity
from emulator.api.registry import REGISTRY, ResourceType

__all__ = ["POD", "default_pod", "default_container", "pod_qos_class", "image_pull_policy"]

_SPEC_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("restartPolicy", "Always"),
    ("dnsPolicy", "ClusterFirst"),
    ("schedulerName", "default-scheduler"),
)
_QOS_RESOURCES = ("cpu", "memory")


def image_pull_policy(image: str) -> str:
    """Always when the image's tag is ``latest`` or absent (and no digest)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        tag = last.rsplit(":", 1)[1]
    else:
        tag = "" if digest else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def default_container(c: dict[str, Any]) -> None:
    image = c.get("image")
    if not c.get("imagePullPolicy") and isinstance(image, str):
        c["imagePullPolicy"] = image_pull_policy(image)
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    ports = c.get("ports")
    if isinstance(ports, list):
        for p in ports:
            if isinstance(p, dict) and not p.get("protocol"):
                p["protocol"] = "TCP"
    res = c.get("resources")
    if isinstance(res, dict):
        limits = res.get("limits")
        if isinstance(limits, dict) and limits:
            requests = res.get("requests")
            if requests is None:
                requests = res["requests"] = {}
            if isinstance(requests, dict):
                for k, v in limits.items():
                    if k not in requests:
                        requests[k] = v


def _positive(q: Any) -> Fraction | None:
    try:
        v = parse_quantity(q)
    except ValueError:
        return None
    return v if v > 0 else None


def pod_qos_class(pod: dict[str, Any]) -> str:
    """Kubernetes' GetPodQOS over cpu and memory of all (init) containers."""
    spec = pod.get("spec") or {}
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or ():
            res = c.get("resources") if isinstance(c, dict) else None
            res = res if isinstance(res, dict) else {}
            for name, q in (res.get("requests") or {}).items():
                v = _positive(q) if name in _QOS_RESOURCES else None
                if v is not None:
                    requests[name] = requests.get(name, 0) + v
            found = set()
            for name, q in (res.get("limits") or {}).items():
                v = _positive(q) if name in _QOS_RESOURCES else None
                if v is not None:
                    found.add(name)
                    limits[name] = limits.get(name, 0) + v
            if len(found) != len(_QOS_RESOURCES):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(
            limits[k] == v for k, v in requests.items()):
        return "Guaranteed"
    return "Burstable"


def default_volume(v: dict[str, Any]) -> None:
    """Kubernetes' volume defaults: no source means emptyDir; secret, configMap,
    downwardAPI and projected files default to mode 0644 (420); hostPath type ""."""
    if not any(isinstance(k, str) and k != "name" and val is not None for k, val in v.items()):
        v["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(key)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = 0o644
    hp = v.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""


def default_pod(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if isinstance(spec, dict):
        for key, value in _SPEC_DEFAULTS:
            if not spec.get(key):
                spec[key] = value
        if spec.get("terminationGracePeriodSeconds") is None:
            spec["terminationGracePeriodSeconds"] = 30
        if spec.get("enableServiceLinks") is None:
            spec["enableServiceLinks"] = True
        if spec.get("securityContext") is None:
            spec["securityContext"] = {}
        for key in ("initContainers", "containers"):
            cs = spec.get(key)
            if isinstance(cs, list):
                for c in cs:
                    if isinstance(c, dict):
                        default_container(c)
        vols = spec.get("volumes")
        if isinstance(vols, list):
            for v in vols:
                if isinstance(v, dict):
                    default_volume(v)
    status = obj.get("status")
    if status is None:
        status = obj["status"] = {}
    if isinstance(status, dict):
        if not status.get("phase"):
            status["phase"] = "Pending"
        if not status.get("qosClass") and isinstance(spec, dict):
            status["qosClass"] = pod_qos_class(obj)


POD = ResourceType(
    kind="Pod", group="", version="v1", plural="pods", singular="pod",
    short_names=("po",), namespaced=True, has_status=True, has_generation=True,
    default=default_pod, validate=validate_pod,
    selectable_fields=("spec.nodeName", "spec.schedulerName", "spec.restartPolicy",
                       "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.nominatedNodeName"),
    field_defaults=(("spec.hostNetwork", "false"),),
)
REGISTRY.register(POD)
