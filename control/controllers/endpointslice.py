"""The EndpointSlice controller, keeping the legacy Endpoints in step.

After Kubernetes' ``pkg/controller/endpointslice`` (and ``pkg/controller/endpoint``
for ``Endpoints``). Decisions live in ``endpointslice_logic``; this module
moves objects.

Contract
--------
* Informers (shared): Services, Pods, Nodes, EndpointSlices, Endpoints.
* A Service is queued when it changes, when a pod it selects (before or after
  the change) changes, when the Ready condition or zone of a node running one
  of its pods changes, and when one of its slices changes (someone else's
  edit is undone). ``sync()`` reconciles every queued Service: its slices
  (labels ``kubernetes.io/service-name`` and
  ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``)
  and its ``Endpoints``. Writes happen only when something changes.
* Services without a selector (and ExternalName ones) are left alone: their
  slices belong to someone else. Slices and Endpoints of a deleted Service
  are deleted (the garbage collector would also, through ownerReferences).
* The informer cache lags our own writes; slices we wrote are remembered
  (name -> our newest copy, and names we deleted) until the informer shows a
  state at least as new, so a quick second sync never creates duplicates
  (Kubernetes' ``endpointSliceTracker``).
* A failed sync is retried after a back-off (``pod_initial_backoff`` doubling
  to ``pod_max_backoff``). Each sync logs ``endpointslice_sync`` with the
  service ref, ``duration_ms`` and the counts of slices created, updated and
  deleted.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from control.controllers import endpointslice_logic as logic
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.logging import get_logger

if TYPE_CHECKING:
    from control.controllers.manager import ControllerContext

ServiceKey = tuple[str, str]


def _rv(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _key(obj: dict) -> ServiceKey:
    return (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])


class EndpointSliceController:
    name = "endpointslice"

    def __init__(self, ctx: "ControllerContext") -> None:
        self.client = ctx.client
        self.profile = ctx.profile
        self.clock = ctx.clock
        self.log = get_logger()
        self.services = ctx.informers.informer("Service")
        self.pods = ctx.informers.informer("Pod")
        self.nodes = ctx.informers.informer("Node")
        self.slices = ctx.informers.informer("EndpointSlice")
        self.endpoints = ctx.informers.informer("Endpoints")
        self.dirty: set[ServiceKey] = set()
        self.retry: dict[ServiceKey, tuple[float, float]] = {}   # key -> (when, backoff)
        self.written: dict[tuple[str, str], dict] = {}          # slice key -> our newest copy
        self.deleted: dict[tuple[str, str], int] = {}           # slice key -> rv when we deleted
        self.written_endpoints: dict[ServiceKey, dict] = {}     # Endpoints we wrote, until cached
        self.pods_by_node: dict[str, set[ServiceKey]] = {}      # node -> pod keys
        self.pods_by_ns: dict[str, set[str]] = {}               # namespace -> pod names
        self.services.add_event_handler(self._svc, lambda _o, n: self._svc(n), self._svc)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_event_handler(None, self._node_updated, None)
        self.slices.add_event_handler(self._slice, lambda _o, n: self._slice(n), self._slice_deleted)

    # -- handlers: note which services to reconcile ----------------------------
    def _svc(self, svc: dict) -> None:
        self.dirty.add(_key(svc))

    def _services_for(self, pod: dict) -> None:
        ns = pod["metadata"].get("namespace") or ""
        for svc in self.services.list():
            if (svc["metadata"].get("namespace") or "") == ns and logic.selects(svc, pod):
                self.dirty.add(_key(svc))

    def _pod_added(self, pod: dict) -> None:
        self.pods_by_ns.setdefault(pod["metadata"].get("namespace") or "", set()).add(pod["metadata"]["name"])
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.pods_by_node.setdefault(node, set()).add(_key(pod))
        self._services_for(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}).get("nodeName") != (new.get("spec") or {}).get("nodeName"):
            self._pod_deleted(old)
        self._pod_added(new)
        if (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}):
            self._services_for(old)

    def _pod_deleted(self, pod: dict) -> None:
        if self.pods.get(pod["metadata"]["name"], pod["metadata"].get("namespace")) is None:
            self.pods_by_ns.get(pod["metadata"].get("namespace") or "", set()).discard(pod["metadata"]["name"])
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node in self.pods_by_node:
            self.pods_by_node[node].discard(_key(pod))
        self._services_for(pod)

    def _node_updated(self, old: dict, new: dict) -> None:
        zone = logic.ZONE_LABEL
        if logic.node_is_ready(old) == logic.node_is_ready(new) and \
                (old["metadata"].get("labels") or {}).get(zone) == (new["metadata"].get("labels") or {}).get(zone):
            return
        for ns, name in self.pods_by_node.get(new["metadata"]["name"], set()):
            pod = self.pods.get(name, ns)
            if pod is not None:
                self._services_for(pod)

    def _slice(self, sl: dict) -> None:
        key = _key(sl)
        mine = self.written.get(key)
        if mine is not None and _rv(sl) >= _rv(mine):
            del self.written[key]
        svc = (sl["metadata"].get("labels") or {}).get(logic.SERVICE_NAME_LABEL)
        if svc:
            self.dirty.add((key[0], svc))

    def _slice_deleted(self, sl: dict) -> None:
        key = _key(sl)
        self.written.pop(key, None)
        self.deleted.pop(key, None)
        svc = (sl["metadata"].get("labels") or {}).get(logic.SERVICE_NAME_LABEL)
        if svc:
            self.dirty.add((key[0], svc))

    # -- the loop --------------------------------------------------------------
    def start(self) -> None:
        for svc in self.services.list():
            self.dirty.add(_key(svc))

    def next_due(self) -> float:
        if self.dirty:
            return self.clock()
        return min((when for when, _b in self.retry.values()), default=self.clock() + 3600.0)

    def _synced(self) -> bool:
        return all(i.has_synced for i in (self.services, self.pods, self.nodes, self.slices, self.endpoints))

    def sync(self) -> None:
        if not self._synced():
            return
        now = self.clock()
        due = {k for k, (when, _b) in self.retry.items() if when <= now}
        todo, self.dirty = self.dirty | due, set()
        for key in sorted(todo):
            try:
                self.sync_service(key)
                self.retry.pop(key, None)
            except (APIError, ConnectionError) as e:
                _when, backoff = self.retry.get(key, (0.0, self.profile.pod_initial_backoff / 2))
                backoff = min(self.profile.pod_max_backoff, backoff * 2)
                self.retry[key] = (self.clock() + backoff, backoff)
                code = e.code if isinstance(e, APIError) else errors.UNAVAILABLE
                self.log.warning("endpointslice_sync_failed", kind="Service", namespace=key[0],
                                 name=key[1], code=code, error=str(e), retry_in=backoff)
                if code in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.dirty |= {k for k in todo if k not in self.retry}
                    return

    # -- one service -----------------------------------------------------------
    def _owned_slices(self, ns: str, name: str) -> list[dict]:
        seen: dict[tuple[str, str], dict] = {}
        for sl in self.slices.list():
            labels = sl["metadata"].get("labels") or {}
            if (sl["metadata"].get("namespace") or "") == ns and \
                    labels.get(logic.SERVICE_NAME_LABEL) == name and \
                    labels.get(logic.MANAGED_BY_LABEL) == logic.CONTROLLER_NAME:
                seen[_key(sl)] = sl
        for key, mine in self.written.items():
            labels = mine["metadata"].get("labels") or {}
            if key[0] == ns and labels.get(logic.SERVICE_NAME_LABEL) == name:
                cached = seen.get(key)
                if cached is None or _rv(cached) < _rv(mine):
                    seen[key] = mine
        for key in self.deleted:
            seen.pop(key, None)
        return list(seen.values())

    def sync_service(self, key: ServiceKey) -> None:
        t0 = time.perf_counter()
        ns, name = key
        svc = self.services.get(name, ns)
        existing = self._owned_slices(ns, name)
        created = updated = deleted = 0
        if svc is None or not logic.manages(svc):
            plan = logic.SlicePlan(delete=existing)
        else:
            pods = [p for p in (self.pods.get(n, ns) for n in sorted(self.pods_by_ns.get(ns, ()))) if p]
            nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
            plan = logic.reconcile(svc, logic.desired_endpoints(svc, pods, nodes), existing)
            self._sync_endpoints(svc, pods, nodes)
        for sl in plan.delete:
            try:
                self.client.delete("EndpointSlice", sl["metadata"]["name"], ns)
            except APIError as e:
                if e.code != errors.NOT_FOUND:
                    raise
            self.written.pop(_key(sl), None)
            self.deleted[_key(sl)] = _rv(sl)
            deleted += 1
        for sl in plan.update:
            out = self.client.update(sl)   # Conflict: retried after a back-off, from a fresher cache
            self.written[_key(out)] = out
            updated += 1
        for sl in plan.create:
            out = self.client.create(sl)
            self.written[_key(out)] = out
            created += 1
        if svc is None:
            self._delete_endpoints(ns, name)
        if not plan.empty or svc is None:
            self.log.info("endpointslice_sync", kind="Service", namespace=ns, name=name,
                          created=created, updated=updated, deleted=deleted,
                          duration_ms=round((time.perf_counter() - t0) * 1000, 3))

    def _sync_endpoints(self, svc: dict, pods: list[dict], nodes: dict[str, dict]) -> None:
        ns, name = _key(svc)
        existing = self.endpoints.get(name, ns)
        mine = self.written_endpoints.get((ns, name))
        if mine is not None and (existing is None or _rv(existing) < _rv(mine)):
            existing = mine   # the cache has not caught up with our own write yet
        obj = logic.desired_endpoints_object(svc, pods, nodes, existing)
        if obj is None:
            return
        out = self.client.create(obj) if existing is None else self.client.update(obj)
        self.written_endpoints[(ns, name)] = out

    def _delete_endpoints(self, ns: str, name: str) -> None:
        self.written_endpoints.pop((ns, name), None)
        if self.endpoints.get(name, ns) is None:
            return
        try:
            self.client.delete("Endpoints", name, ns)
        except APIError as e:
            if e.code != errors.NOT_FOUND:
                raise
