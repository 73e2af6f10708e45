"""Volume plugins: VolumeRestrictions (ReadWriteOncePod), VolumeBinding and VolumeZone.

Contract (after kube-scheduler v1.32's plugins of those names), over a
``VolumeCache``:
* ``pre_filter(pod, cache, node_exists)`` returns ``(None, "")`` for a pod
  with no ``persistentVolumeClaim`` volumes (the plugins are skipped), ``(None,
  message)`` when PreFilter rejects the pod on every node
  (UnschedulableAndUnresolvable): ``persistentvolumeclaim "x" not found``,
  ``persistentvolumeclaim "x" is being deleted``, ``persistentvolumeclaim "x"
  bound to non-existent persistentvolume "y"`` or ``pod has unbound immediate
  PersistentVolumeClaims`` (an unbound claim with no class, a class that does
  not exist, or an Immediate class), else ``(PodVolumes, "")``.
* A claim is bound when ``spec.volumeName`` is set and it carries
  ``pv.kubernetes.io/bind-completed`` or is in phase Bound. An unbound claim
  whose class is WaitForFirstConsumer is *delayed*: the scheduler chooses the
  node, the PV controller binds or provisions.
* ``PodVolumes.filter(node)`` is the three Filters in the default order:
  - VolumeRestrictions: a ReadWriteOncePod claim already used by another
    assigned pod fails every node (Unschedulable): ``node has pod using
    PersistentVolumeClaim with the same name and ReadWriteOncePod access mode``;
  - VolumeBinding (UnschedulableAndUnresolvable): a bound claim's PV
    ``nodeAffinity`` must admit the node (``node(s) had volume node affinity
    conflict``; a missing PV is ``node(s) unavailable due to one or more pvc(s)
    bound to non-existent pv(s)``); every delayed claim needs an Available PV
    of its class matching it (access modes, capacity, selector, volumeMode),
    whose affinity admits the node and that no other claim of the pod takes,
    or a class whose provisioner can provision there (any provisioner but
    ``kubernetes.io/no-provisioner``, within ``allowedTopologies``); a claim
    whose selected node is another node fails at once. Else ``node(s) didn't
    find available persistent volumes to bind``;
  - VolumeZone: a bound PV's zone/region labels must hold the node's value
    (``node(s) had no available volume zone``).
* ``PodVolumes.plan(node)`` is what to do once the node is chosen: for each
  delayed claim the PV it would take (None: provision).
* Cost: PreFilter walks the Available PVs of each delayed claim's class once
  per pod; per node, PVs pinned to one ``kubernetes.io/hostname`` are looked
  up by the node's hostname label, so filtering a node is O(claims).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from emulator.api.errors import APIError
from emulator.api.quantity import parse_quantity
from emulator.api.selectors import LabelSelector, label_selector_from_dict

from control.scheduler.cache import NodeInfo
from control.scheduler.filters import Status, match_node_selector_terms
from control.scheduler.volumecache import (ANN_BIND_COMPLETED, ClaimKey, PodKey, VolumeCache,
                                           claim_class, pod_claim_names, pv_class)

ERR_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
ERR_RWOP_CONFLICT = ("node has pod using PersistentVolumeClaim with the same name and "
                     "ReadWriteOncePod access mode")
ERR_VOLUME_ZONE = "node(s) had no available volume zone"
NOT_SUPPORTED_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABELS = {"topology.kubernetes.io/zone": "topology.kubernetes.io/zone",
               "topology.kubernetes.io/region": "topology.kubernetes.io/region",
               "failure-domain.beta.kubernetes.io/zone": "topology.kubernetes.io/zone",
               "failure-domain.beta.kubernetes.io/region": "topology.kubernetes.io/region"}


def not_found_message(name: str) -> str:
    return f'persistentvolumeclaim "{name}" not found'


def being_deleted_message(name: str) -> str:
    return f'persistentvolumeclaim "{name}" is being deleted'


def lost_message(name: str, volume: str) -> str:
    return f'persistentvolumeclaim "{name}" bound to non-existent persistentvolume "{volume}"'


# -- small readers ------------------------------------------------------------
def storage_of(resources: dict | None) -> int:
    q = (resources or {}).get("storage")
    if q is None:
        return 0
    try:
        return int(parse_quantity(q))
    except (ValueError, TypeError):
        return 0


def claim_request(pvc: dict) -> int:
    return storage_of(((pvc.get("spec") or {}).get("resources") or {}).get("requests"))


def pv_capacity(pv: dict) -> int:
    return storage_of((pv.get("spec") or {}).get("capacity"))


def is_fully_bound(pvc: dict) -> bool:
    if not (pvc.get("spec") or {}).get("volumeName"):
        return False
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    return ANN_BIND_COMPLETED in ann or (pvc.get("status") or {}).get("phase") == "Bound"


def is_delay_binding(pvc: dict, cache: VolumeCache) -> bool:
    """``IsDelayBindingMode``: the claim's class exists and is WaitForFirstConsumer."""
    cls = claim_class(pvc)
    sc = cache.classes.get(cls) if cls else None
    return sc is not None and sc.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER


def pv_affinity_terms(pv: dict) -> list[dict] | None:
    """The PV's required node selector terms; None when it admits every node."""
    req = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    if req is None:
        return None
    return list(req.get("nodeSelectorTerms") or [])


def pv_admits(pv: dict, ni: NodeInfo) -> bool:
    terms = pv_affinity_terms(pv)
    return terms is None or match_node_selector_terms(terms, ni.labels, ni.name)


def pinned_hosts(pv: dict) -> list[str] | None:
    """The hostnames of a PV pinned by exactly ``kubernetes.io/hostname In [...]``; else None."""
    terms = pv_affinity_terms(pv)
    if not terms or len(terms) != 1 or terms[0].get("matchFields"):
        return None
    exprs = terms[0].get("matchExpressions") or []
    if len(exprs) != 1 or exprs[0].get("key") != HOSTNAME_LABEL or exprs[0].get("operator") != "In":
        return None
    return list(exprs[0].get("values") or [])


def match_topology(terms: list[dict] | None, labels: dict[str, str]) -> bool:
    """``MatchTopologySelectorTerms`` for StorageClass ``allowedTopologies`` (empty: anywhere)."""
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchLabelExpressions") or []
        if all(labels.get(e.get("key") or "") in (e.get("values") or []) for e in exprs):
            return True
    return False


def can_provision(sc: dict | None, ni: NodeInfo) -> bool:
    if sc is None:
        return False
    prov = sc.get("provisioner") or ""
    if not prov or prov == NOT_SUPPORTED_PROVISIONER:
        return False
    return match_topology(sc.get("allowedTopologies"), ni.labels)


def _selector(pvc: dict) -> LabelSelector | None:
    sel = (pvc.get("spec") or {}).get("selector")
    if sel is None:
        return None
    try:
        return label_selector_from_dict(sel)
    except APIError:
        return label_selector_from_dict(None)     # a bad selector selects nothing


def volume_matches_claim(pv: dict, pvc: dict, request: int | None = None,
                         selector: LabelSelector | None | bool = False) -> bool:
    """Everything ``FindMatchingVolume`` checks but the phase, claimRef and node affinity."""
    if (pv.get("metadata") or {}).get("deletionTimestamp"):
        return False
    spec, pspec = pv.get("spec") or {}, pvc.get("spec") or {}
    if pv_capacity(pv) < (claim_request(pvc) if request is None else request):
        return False
    if (spec.get("volumeMode") or "Filesystem") != (pspec.get("volumeMode") or "Filesystem"):
        return False
    if pv_class(pv) != claim_class(pvc):
        return False
    sel = _selector(pvc) if selector is False else selector
    if sel is not None and not sel.matches((pv.get("metadata") or {}).get("labels") or {}):  # type: ignore[union-attr]
        return False
    modes = set(spec.get("accessModes") or ())
    return all(m in modes for m in pspec.get("accessModes") or ())


def _bound_to_claim(pv: dict, pvc: dict) -> bool:
    """``IsVolumeBoundToClaim``: claimRef names the claim, with its uid or none."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    md = pvc.get("metadata") or {}
    return ref.get("name") == md.get("name") and (ref.get("namespace") or "") == (md.get("namespace") or "") \
        and (not ref.get("uid") or ref.get("uid") == md.get("uid"))


# -- PreFilter state ----------------------------------------------------------
@dataclass
class DelayedClaim:
    key: ClaimKey
    pvc: dict
    request: int
    sc: dict | None
    selected_node: str                       # "" when unset (or naming a node that is gone)
    prebound: list[dict] = field(default_factory=list)
    by_host: dict[str, list[dict]] = field(default_factory=dict)   # smallest first
    other: list[dict] = field(default_factory=list)                # smallest first


@dataclass
class PodVolumes:
    pod: PodKey
    bound: list[tuple[ClaimKey, dict | None]] = field(default_factory=list)
    delayed: list[DelayedClaim] = field(default_factory=list)
    rwop_conflict: bool = False
    zones: list[tuple[str, set[str]]] = field(default_factory=list)

    @property
    def needs_binding(self) -> bool:
        return bool(self.delayed)

    def filter(self, ni: NodeInfo) -> Status | None:
        if self.rwop_conflict:
            return Status((ERR_RWOP_CONFLICT,), False)
        reasons = self._binding_reasons(ni)
        if reasons:
            return Status(reasons, True)
        for key, values in self.zones:
            v = ni.labels.get(key)
            if v is None:
                v = ni.labels.get(ZONE_LABELS[key])
            if v is None or v not in values:
                return Status((ERR_VOLUME_ZONE,), True)
        return None

    def _binding_reasons(self, ni: NodeInfo) -> tuple[str, ...]:
        node_conflict = False
        pv_missing = False
        for _key, pv in self.bound:
            if pv is None:
                pv_missing = True
                break
            if not pv_admits(pv, ni):
                node_conflict = True
                break
        bind_conflict = bool(self.delayed) and self.plan(ni) is None
        out = []
        if node_conflict:
            out.append(ERR_NODE_CONFLICT)
        if bind_conflict:
            out.append(ERR_BIND_CONFLICT)
        if pv_missing:
            out.append(ERR_PV_NOT_EXIST)
        return tuple(out)

    def plan(self, ni: NodeInfo) -> list[tuple[DelayedClaim, dict | None]] | None:
        """For each delayed claim, the PV it takes on ``ni`` (None: provisioned); None if some cannot."""
        for dc in self.delayed:
            if dc.selected_node and dc.selected_node != ni.name:
                return None
        host = ni.labels.get(HOSTNAME_LABEL)
        chosen: set[str] = set()
        out: list[tuple[DelayedClaim, dict | None]] = []
        for dc in self.delayed:           # already sorted by request, smallest first
            pv = _pick(dc, ni, host, chosen)
            if pv is False:
                return None
            if pv is None and not can_provision(dc.sc, ni):
                return None
            if pv is not None:
                chosen.add(pv["metadata"]["name"])
            out.append((dc, pv))
        return out


def _pick(dc: DelayedClaim, ni: NodeInfo, host: str | None, chosen: set[str]) -> dict | None | bool:
    """The smallest fitting PV for ``dc`` on ``ni``; None if none; False if a prebound PV rules ``ni`` out."""
    for pv in dc.prebound:
        if pv["metadata"]["name"] in chosen:
            continue
        return pv if pv_admits(pv, ni) else False
    best = None
    if host is not None:
        for pv in dc.by_host.get(host) or ():
            if pv["metadata"]["name"] not in chosen and pv_admits(pv, ni):
                best = pv
                break
    for pv in dc.other:
        if best is not None and pv_capacity(pv) >= pv_capacity(best):
            break
        if pv["metadata"]["name"] not in chosen and pv_admits(pv, ni):
            best = pv
            break
    return best


def _delayed_claim(key: ClaimKey, pvc: dict, cache: VolumeCache, node_exists: Callable[[str], bool]) -> DelayedClaim:
    cls = claim_class(pvc)
    request = claim_request(pvc)
    sel_node = cache.selected_node(pvc)
    if sel_node and not node_exists(sel_node):
        sel_node = ""
    dc = DelayedClaim(key, pvc, request, cache.classes.get(cls), sel_node)
    dc.prebound = [pv for pv in cache.prebound_to(key)
                   if _bound_to_claim(pv, pvc) and volume_matches_claim(pv, pvc, request, None)]
    selector = _selector(pvc)
    fits = sorted((pv for pv in cache.available_in_class(cls)
                   if volume_matches_claim(pv, pvc, request, selector)),
                  key=lambda pv: (pv_capacity(pv), pv["metadata"]["name"]))
    for pv in fits:
        hosts = pinned_hosts(pv)
        if hosts is None:
            dc.other.append(pv)
        else:
            for h in hosts:
                dc.by_host.setdefault(h, []).append(pv)
    return dc


def _zone_terms(pv: dict) -> list[tuple[str, set[str]]]:
    labels = (pv.get("metadata") or {}).get("labels") or {}
    return [(k, set(v.split("__"))) for k, v in labels.items() if k in ZONE_LABELS and v]


def pre_filter(pod: dict, cache: VolumeCache,
               node_exists: Callable[[str], bool] = lambda _n: True) -> tuple[PodVolumes | None, str]:
    names = pod_claim_names(pod)
    if not names:
        return None, ""
    md = pod.get("metadata") or {}
    ns = md.get("namespace") or ""
    pkey: PodKey = (ns, md.get("name") or "")
    pvs = PodVolumes(pkey)
    claims: list[tuple[ClaimKey, dict]] = []
    for name in names:
        pvc = cache.pvc(ns, name)
        if pvc is None:
            return None, not_found_message(name)
        if (pvc.get("status") or {}).get("phase") == "Lost":
            return None, lost_message(name, (pvc.get("spec") or {}).get("volumeName") or "")
        if (pvc.get("metadata") or {}).get("deletionTimestamp"):
            return None, being_deleted_message(name)
        claims.append(((ns, name), pvc))
    delayed: list[DelayedClaim] = []
    for key, pvc in claims:
        if "ReadWriteOncePod" in ((pvc.get("spec") or {}).get("accessModes") or ()) \
                and cache.other_users(key, pkey) > 0:
            pvs.rwop_conflict = True
        if is_fully_bound(pvc):
            pv = cache.pvs.get(pvc["spec"]["volumeName"])
            pvs.bound.append((key, pv))
            if pv is not None:
                pvs.zones.extend(_zone_terms(pv))
        elif is_delay_binding(pvc, cache) and not (pvc.get("spec") or {}).get("volumeName"):
            delayed.append(_delayed_claim(key, pvc, cache, node_exists))
        else:
            return None, ERR_UNBOUND_IMMEDIATE
    delayed.sort(key=lambda dc: dc.request)
    pvs.delayed = delayed
    return pvs, ""
