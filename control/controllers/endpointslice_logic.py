"""The EndpointSlice controller's decisions, as pure functions on plain dicts.

After Kubernetes' ``pkg/controller/endpointslice`` (``reconciler.go``,
``utils.go``) and, for the legacy ``Endpoints`` object, ``pkg/controller/endpoint``.

Contract
--------
* ``pod_to_endpoint(service, pod, node)`` is ``podToEndpoint``: the pod IP,
  ``conditions`` {ready, serving, terminating}, ``nodeName``, ``zone`` and
  ``targetRef``. serving = the pod's Ready condition is True; terminating =
  ``deletionTimestamp`` is set; ready = serving and not terminating, or
  ``publishNotReadyAddresses``. *Departure:* a pod on a node whose Ready
  condition is not True counts as not serving (Kubernetes waits for the node
  lifecycle controller to mark the pod NotReady; kemu also checks the node,
  so the endpoint goes the moment the node is seen down).
* ``endpoint_ports(service, pod)`` resolves each Service port's
  ``targetPort``: a number is used as is, a name is looked up in the pod's
  container ports (``podutil.FindPort``). A port whose name no container
  has is left out for that pod; a pod with no port left (while the Service
  has ports) is left out altogether (Kubernetes would keep it in a slice
  with no ports).
* ``should_include(pod)`` is ``ShouldPodBeInEndpoints``: pods without an IP
  or in a terminal phase are skipped; terminating pods are kept (with
  ``terminating: true``).
* ``desired_endpoints(service, pods, nodes)`` groups the endpoints by their
  port list (sorted by IP), and ``reconcile(service, desired, existing)``
  plans the writes as the reconciler does: endpoints stay in the slice that
  holds them, changed slices are updated, new endpoints fill slices with
  room, then new slices (at most ``MAX_ENDPOINTS_PER_SLICE`` each) are
  created, and slices left empty or with a stale port list are deleted.
  A slice is written only when its content changes.
* ``desired_endpoints_object(service, pods, nodes, existing)`` is the v1
  ``Endpoints`` object (same name as the Service) or None when nothing
  changes; terminating pods are left out unless ``publishNotReadyAddresses``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"

PortList = tuple[tuple[str, int, str], ...]   # (name, port, protocol), sorted


# -- services and pods ---------------------------------------------------------
def selects(service: dict, pod: dict) -> bool:
    """The Service's selector (a plain map) matches the pod's labels, in the same namespace."""
    sel = (service.get("spec") or {}).get("selector") or {}
    if not sel:
        return False
    if (pod["metadata"].get("namespace") or "") != (service["metadata"].get("namespace") or ""):
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def manages(service: dict) -> bool:
    """Services with a selector get slices; ExternalName and selector-less ones do not."""
    spec = service.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def pod_is_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def node_is_ready(node: dict | None) -> bool:
    """True unless the node is known and its Ready condition is False or Unknown."""
    if node is None:
        return True
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return True


def should_include(pod: dict) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP"):
        return False
    return status.get("phase") not in ("Succeeded", "Failed")


def find_port(pod: dict, target: Any, protocol: str) -> int | None:
    """podutil.FindPort: a number as is; a name from the pod's container ports."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return int(p["containerPort"])
    return None


def endpoint_ports(service: dict, pod: dict) -> PortList:
    out = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        proto = sp.get("protocol") or "TCP"
        target = sp.get("targetPort", sp.get("port"))
        port = find_port(pod, target if target is not None else sp.get("port"), proto)
        if port is not None:
            out.append((sp.get("name") or "", port, proto))
    return tuple(sorted(out))


def pod_to_endpoint(service: dict, pod: dict, node: dict | None) -> dict:
    md = pod["metadata"]
    spec = pod.get("spec") or {}
    terminating = bool(md.get("deletionTimestamp"))
    serving = pod_is_ready(pod) and node_is_ready(node)
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: dict[str, Any] = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": publish or (serving and not terminating),
                       "serving": serving, "terminating": terminating},
    }
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        ep["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    ep["targetRef"] = {"kind": "Pod", "namespace": md.get("namespace") or "", "name": md["name"],
                       "uid": md.get("uid", "")}
    return ep


def desired_endpoints(service: dict, pods: Iterable[dict],
                      nodes: dict[str, dict]) -> dict[PortList, list[dict]]:
    """Endpoints by port list, each list sorted by IP (deterministic)."""
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[PortList, dict[str, dict]] = {}
    for pod in pods:
        if not selects(service, pod) or not should_include(pod):
            continue
        ports = endpoint_ports(service, pod)
        if has_ports and not ports:
            continue
        ep = pod_to_endpoint(service, pod, nodes.get((pod.get("spec") or {}).get("nodeName") or ""))
        groups.setdefault(ports, {})[ep["addresses"][0]] = ep
    return {k: [v[ip] for ip in sorted(v, key=_ip_key)] for k, v in groups.items()}


def _ip_key(ip: str) -> tuple:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (ip,)


# -- slices --------------------------------------------------------------------
def slice_ports(ports: PortList) -> list[dict]:
    return [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]


def ports_of_slice(sl: dict) -> PortList:
    return tuple(sorted((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP")
                        for p in sl.get("ports") or []))


def slice_labels(service: dict) -> dict[str, str]:
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def owner_reference(service: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "name": service["metadata"]["name"],
            "uid": service["metadata"].get("uid", ""), "controller": True,
            "blockOwnerDeletion": True}


def new_slice(service: dict, ports: PortList, endpoints: list[dict]) -> dict:
    md = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{md['name']}-", "namespace": md.get("namespace") or "default",
                         "labels": slice_labels(service), "ownerReferences": [owner_reference(service)]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": slice_ports(ports)}


def _ep_key(ep: dict) -> str:
    return (ep.get("addresses") or [""])[0]


@dataclass
class SlicePlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _with(sl: dict, service: dict, endpoints: list[dict]) -> dict:
    md = {**sl["metadata"], "labels": slice_labels(service), "ownerReferences": [owner_reference(service)]}
    return {**sl, "metadata": md, "addressType": "IPv4", "endpoints": endpoints}


def _unchanged(old: dict, new: dict) -> bool:
    return (old.get("endpoints") or []) == new["endpoints"] and \
        old["metadata"].get("labels") == new["metadata"]["labels"] and \
        old["metadata"].get("ownerReferences") == new["metadata"]["ownerReferences"]


def reconcile(service: dict, desired: dict[PortList, list[dict]], existing: list[dict],
              max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """Plan creates, updates and deletes that make ``existing`` slices hold ``desired``."""
    plan = SlicePlan()
    by_ports: dict[PortList, list[dict]] = {}
    for sl in sorted(existing, key=lambda s: s["metadata"]["name"]):
        by_ports.setdefault(ports_of_slice(sl), []).append(sl)
    for ports, slices in by_ports.items():
        if ports not in desired:
            plan.delete.extend(slices)
    for ports in sorted(desired):
        want = {_ep_key(ep): ep for ep in desired[ports]}
        placed: set[str] = set()
        kept: list[tuple[dict, list[dict]]] = []   # (slice, its endpoints after the change)
        for sl in by_ports.get(ports, []):
            eps = []
            for ep in sl.get("endpoints") or []:
                k = _ep_key(ep)
                if k in want and k not in placed and len(eps) < max_per_slice:
                    eps.append(want[k])
                    placed.add(k)
            kept.append((sl, eps))
        fresh = [want[k] for k in want if k not in placed]
        for i, (sl, eps) in enumerate(kept):   # fill slices that have room
            while fresh and len(eps) < max_per_slice:
                eps.append(fresh.pop(0))
            kept[i] = (sl, eps)
        for sl, eps in kept:
            if not eps:
                plan.delete.append(sl)
                continue
            new = _with(sl, service, sorted(eps, key=lambda e: _ip_key(_ep_key(e))))
            if not _unchanged(sl, new):
                plan.update.append(new)
        while fresh:
            chunk, fresh = fresh[:max_per_slice], fresh[max_per_slice:]
            plan.create.append(new_slice(service, ports, chunk))
    # A service with no endpoints at all still gets one empty slice, as Kubernetes keeps
    # a placeholder so that consumers can tell "no endpoints" from "not reconciled".
    if not desired:
        keep = [s for s in existing if not (s.get("endpoints") or [])]
        if keep:
            plan.delete = [s for s in plan.delete if s is not keep[0]]
            new = {**_with(keep[0], service, []), "ports": []}
            if not _unchanged(keep[0], new) or keep[0].get("ports"):
                plan.update.append(new)
        else:
            plan.create.append(new_slice(service, (), []))
    return plan


# -- the legacy Endpoints object ----------------------------------------------
def desired_endpoints_object(service: dict, pods: Iterable[dict], nodes: dict[str, dict],
                             existing: dict | None) -> dict | None:
    """The v1 Endpoints for ``service``, or None when ``existing`` already says it."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    has_ports = bool((service.get("spec") or {}).get("ports"))
    subsets: dict[PortList, dict[str, list[dict]]] = {}
    for pod in pods:
        if not selects(service, pod) or not should_include(pod):
            continue
        if pod["metadata"].get("deletionTimestamp") and not publish:
            continue
        ports = endpoint_ports(service, pod)
        if has_ports and not ports:
            continue
        ep = pod_to_endpoint(service, pod, nodes.get((pod.get("spec") or {}).get("nodeName") or ""))
        addr: dict[str, Any] = {"ip": ep["addresses"][0]}
        for k in ("hostname", "nodeName", "targetRef"):
            if k in ep:
                addr[k] = ep[k]
        which = "addresses" if (publish or ep["conditions"]["serving"]) else "notReadyAddresses"
        subsets.setdefault(ports, {"addresses": [], "notReadyAddresses": []})[which].append(addr)
    out = []
    for ports in sorted(subsets):
        s: dict[str, Any] = {}
        for which in ("addresses", "notReadyAddresses"):
            if subsets[ports][which]:
                s[which] = sorted(subsets[ports][which], key=lambda a: _ip_key(a["ip"]))
        s["ports"] = slice_ports(ports)
        out.append(s)
    md = service["metadata"]
    labels = dict(md.get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    if existing is not None and (existing.get("subsets") or []) == out and \
            (existing["metadata"].get("labels") or {}) == labels:
        return None
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints",
                           "metadata": {"name": md["name"], "namespace": md.get("namespace") or "default",
                                        "labels": labels},
                           "subsets": out}
    if existing is not None:
        obj["metadata"] = {**existing["metadata"], "labels": labels}
    return obj
