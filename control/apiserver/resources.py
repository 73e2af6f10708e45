"""The REST semantics of every kind: create, get, list, update, patch, delete, binding, eviction.

Contract
--------
* Writes go through: type lookup, strategy, defaulting, validation, the store.
  Nothing is written when any step fails; the caller gets an ``APIError``.
* Optimistic concurrency: an update or patch whose ``metadata.resourceVersion``
  differs from the stored one gets Conflict. An update without one is
  unconditional. An update that changes nothing writes nothing and returns the
  stored object (no new revision), as the kube-apiserver does.
* ``metadata.generation`` starts at 1 and is bumped when ``spec`` changes
  (kinds with ``has_generation``).
* Deletion: pods are graceful (``deletionTimestamp`` = now + grace, the
  object stays until the kubelet deletes it again with grace 0, or until a
  forced delete). Objects with finalizers stay, marked, until their finalizers
  are removed. Deleting a Namespace marks it Terminating, deletes everything in
  it, and removes it once it is empty. The system namespaces cannot be deleted.
* Lists are in key order (namespace, name). ``limit``/``continue`` page through
  them; later pages are read from the current state after the last key (not a
  frozen snapshot): an object changed between pages shows its newer state.
"""
from __future__ import annotations

import base64
import os
import random
import time
from typing import Any, Callable

import msgpack

from control.apiserver import strategy
from control.apiserver.admission import PersistentVolumeClaimResize, admit_create
from control.storage.store import Store
from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.meta import default_object, validate_object
from emulator.api.patch import json_merge_patch, json_patch
from emulator.api.registry import REGISTRY, ResourceType
from emulator.api.selectors import parse_field_selector, parse_label_selector
from emulator.events import rfc3339

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"
def new_uid() -> str:
    """A random (version 4) UUID string; 2.5x cheaper than str(uuid.uuid4())."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"


# Metadata an update carries over from the stored object, whatever the client sent.
_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


def _ns_for(rt: ResourceType, namespace: str | None) -> str:
    return (namespace or "default") if rt.namespaced else ""


class Resources:
    """The API's operations on a Store. Write methods take ownership of the
    object passed in (the server hands over freshly decoded frames)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time,
                 default_toleration_seconds: int = 300,
                 service_cluster_ip_range: str | None = None,
                 service_node_port_range: tuple[int, int] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.default_toleration_seconds = default_toleration_seconds
        self.hooks: dict[str, strategy.KindHooks] = strategy.kind_hooks(
            service_cluster_ip_range, service_node_port_range)
        self.hooks["PersistentVolumeClaim"] = PersistentVolumeClaimResize(store.get)

    def rebuild_hooks(self) -> None:
        """Replay the stored objects into the kind hooks (after recovery)."""
        for kind, hook in self.hooks.items():
            hook.rebuild(self.store.iter_kind(kind))

    # -- setup --------------------------------------------------------------
    def ensure_system_namespaces(self) -> None:
        for ns in SYSTEM_NAMESPACES:
            if self.store.get("Namespace", "", ns) is None:
                self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # -- reads --------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        rt = REGISTRY.by_kind(kind)
        obj = self.store.get(rt.kind, _ns_for(rt, namespace), name)
        if obj is None:
            raise errors.not_found(rt.resource, name)
        return obj

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None,
             continue_: str | None = None) -> dict:
        rt = REGISTRY.by_kind(kind)
        labels = parse_label_selector(label_selector) if label_selector else None
        fields = parse_field_selector(field_selector, rt) if field_selector else None
        if labels is not None and labels.empty:
            labels = None
        ns = namespace if rt.namespaced and namespace else None
        list_rev = self.store.rev
        after = None
        if continue_:
            list_rev, after = self._decode_continue(continue_)
        if limit is not None and limit < 0:
            raise APIError(errors.BAD_REQUEST, f"limit: Invalid value: {limit}: must be >= 0")
        node = fields.equality_value("spec.nodeName") if fields is not None and rt.kind == "Pod" else None
        if node:   # the kubelet's list: served from the nodeName index
            source = (o for o in self.store.pods_on_node(node)
                      if after is None or (o["metadata"]["namespace"], o["metadata"]["name"]) > after)
        else:
            source = self.store.iter_kind(rt.kind, ns, after)
        items: list[dict] = []
        more = None
        for obj in source:
            md = obj["metadata"]
            if ns is not None and md.get("namespace") != ns:
                continue
            if labels is not None and not labels.matches(md.get("labels") or {}):
                continue
            if fields is not None and not fields.matches(obj):
                continue
            if limit and len(items) >= limit:
                more = True
                break
            items.append(obj)
        meta: dict[str, Any] = {"resourceVersion": str(list_rev)}
        if more:
            last = items[-1]["metadata"]
            meta["continue"] = self._encode_continue(list_rev, (last.get("namespace", ""), last["name"]))
        return {"apiVersion": rt.api_version, "kind": rt.list_kind, "metadata": meta, "items": items}

    @staticmethod
    def _encode_continue(rev: int, key: tuple[str, str]) -> str:
        return base64.urlsafe_b64encode(msgpack.packb([1, rev, list(key)])).decode()

    def _decode_continue(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            v, rev, key = msgpack.unpackb(base64.urlsafe_b64decode(token.encode()))
            if v != 1:
                raise ValueError(v)
            return int(rev), (str(key[0]), str(key[1]))
        except Exception:
            raise APIError(errors.BAD_REQUEST, "continue: Invalid value: the continue token is "
                                               "malformed: pass the value from the previous "
                                               "list's metadata.continue unchanged")

    # -- create -------------------------------------------------------------
    def create(self, obj: Any, namespace: str | None = None) -> dict:
        if not isinstance(obj, dict):
            raise APIError(errors.BAD_REQUEST, f"object: expected a map, got {type(obj).__name__}")
        rt = REGISTRY.for_object(obj)
        md = obj.get("metadata")
        if md is None:
            md = obj["metadata"] = {}
        elif not isinstance(md, dict):
            raise APIError(errors.BAD_REQUEST, "metadata: expected a map")
        if rt.namespaced:
            if namespace and md.get("namespace") and md["namespace"] != namespace:
                raise APIError(errors.BAD_REQUEST, f'the namespace of the provided object '
                               f'({md["namespace"]}) does not match the namespace sent on the '
                               f'request ({namespace})')
            if namespace and not md.get("namespace"):
                md["namespace"] = namespace
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choices(_GEN_CHARS, k=5))
        for k in ("resourceVersion", "uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = new_uid()
        strategy.prepare_for_create(rt, obj)
        default_object(rt, obj)
        admit_create(rt.kind, obj, default_toleration_secs=self.default_toleration_seconds,
                     storage_classes=lambda: list(self.store.iter_kind("StorageClass")))
        validate_object(rt, obj)
        ns = md.get("namespace", "") if rt.namespaced else ""
        if rt.namespaced:
            nso = self.store.get("Namespace", "", ns)
            if nso is None:
                raise errors.not_found("namespaces", ns)
            if nso["metadata"].get("deletionTimestamp"):
                raise APIError(errors.FORBIDDEN, f'{rt.resource} "{md["name"]}" is forbidden: unable '
                               f"to create new content in namespace {ns} because it is being terminated")
        if self.store.get(rt.kind, ns, md["name"]) is not None:
            raise errors.already_exists(rt.resource, md["name"])
        md["creationTimestamp"] = rfc3339(self.clock())
        if rt.has_generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        hook = self.hooks.get(rt.kind)
        if hook is None:
            return self.store.put(rt.kind, ns, md["name"], obj).obj
        hook.before_create(obj)
        try:
            return self.store.put(rt.kind, ns, md["name"], obj).obj
        except BaseException:
            hook.after_remove(obj)
            raise

    # -- update and patch ---------------------------------------------------
    def update(self, obj: Any, subresource: str | None = None, namespace: str | None = None) -> dict:
        if not isinstance(obj, dict):
            raise APIError(errors.BAD_REQUEST, f"object: expected a map, got {type(obj).__name__}")
        rt = REGISTRY.for_object(obj)
        md = obj.get("metadata")
        if not isinstance(md, dict) or not md.get("name"):
            raise APIError(errors.INVALID, f"{rt.kind} \"\" is invalid: metadata.name: Required value",
                           [errors.cause("metadata.name", "FieldValueRequired", "Required value")])
        ns = _ns_for(rt, md.get("namespace") or namespace)
        old = self.store.get(rt.kind, ns, md["name"])
        if old is None:
            raise errors.not_found(rt.resource, md["name"])
        return self._update(rt, old, obj, subresource)

    def patch(self, kind: str, name: str, patch: Any, namespace: str | None = None,
              patch_type: str = "merge", subresource: str | None = None) -> dict:
        rt = REGISTRY.by_kind(kind)
        old = self.store.get(rt.kind, _ns_for(rt, namespace), name)
        if old is None:
            raise errors.not_found(rt.resource, name)
        target = strategy.scale_of(rt, old) if subresource == "scale" else old
        if patch_type == "merge":
            if not isinstance(patch, dict):
                raise APIError(errors.BAD_REQUEST, "patch: a merge patch must be a JSON object")
            new = json_merge_patch(target, patch)
        elif patch_type == "json":
            if not isinstance(patch, list):
                raise APIError(errors.BAD_REQUEST, "patch: a JSON patch must be a list of operations")
            new = json_patch(target, patch)
        else:
            raise APIError(errors.BAD_REQUEST, f'patch_type: Unsupported value: "{patch_type}": '
                                               'supported values: "json", "merge"')
        if not isinstance(new.get("metadata"), dict):
            raise APIError(errors.INVALID, "metadata: Required value: a patch may not remove metadata")
        if subresource == "scale":
            return strategy.scale_of(rt, self._update(rt, old, strategy.apply_scale(rt, old, new), None))
        return self._update(rt, old, new, subresource)   # both patch functions return a fresh value

    def _update(self, rt: ResourceType, old: dict, new: dict, subresource: str | None) -> dict:
        md = new.setdefault("metadata", {})
        omd = old["metadata"]
        rv = md.get("resourceVersion")
        if rv not in (None, "") and str(rv) != omd["resourceVersion"]:
            raise errors.conflict(rt.resource, omd["name"])
        if new.get("kind", rt.kind) != rt.kind or new.get("apiVersion", rt.api_version) != rt.api_version:
            raise APIError(errors.BAD_REQUEST, "kind and apiVersion may not change on update")
        if subresource == "status":
            if not rt.has_status:
                raise APIError(errors.NOT_FOUND, f"{rt.resource} has no status subresource")
            new = strategy.prepare_for_status_update(rt, new, old)
            md = new["metadata"]
        elif subresource not in (None, ""):
            raise APIError(errors.NOT_FOUND, f'{rt.resource} has no subresource "{subresource}"; '
                                             'supported: "status" (update), "scale" (patch), "binding" and '
                                             '"eviction" (pods, create)')
        else:
            strategy.prepare_for_update(rt, new, old)
            hook = self.hooks.get(rt.kind)
            if hook is not None:
                hook.prepare_update(new, old)
        for k in _SERVER_OWNED:   # always the stored value (or absent)
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        for k in ("namespace", "name"):
            if k in omd:
                if md.get(k) not in (None, "", omd[k]):
                    continue   # validation reports the immutable field
                md[k] = omd[k]
            else:
                md.pop(k, None)
        if rt.has_generation:
            md["generation"] = omd.get("generation", 1) + (new.get("spec") != old.get("spec"))
        md["resourceVersion"] = omd["resourceVersion"]
        default_object(rt, new)
        validate_object(rt, new, old)
        if new == old:
            return old
        hook = self.hooks.get(rt.kind)
        if hook is not None:
            hook.before_update(new, old)
        if md.get("deletionTimestamp") and not md.get("finalizers") and \
                not (rt.kind == "Pod" and strategy.graceful_period(rt, new, None) > 0):
            return self._remove(rt, new)
        ns = omd.get("namespace", "") if rt.namespaced else ""
        return self.store.put(rt.kind, ns, omd["name"], new).obj

    # -- binding ------------------------------------------------------------
    def bind(self, name: str, binding: Any, namespace: str | None = None) -> dict:
        """The pods/binding subresource: set spec.nodeName once, as the scheduler does; the
        reply is a Success Status."""
        if not isinstance(binding, dict) or not isinstance(binding.get("target"), dict) \
                or not binding["target"].get("name"):
            raise APIError(errors.INVALID, "Binding is invalid: target.name: Required value",
                           [errors.cause("target.name", "FieldValueRequired", "Required value")])
        rt = REGISTRY.by_kind("Pod")
        old = self.get("Pod", name, namespace)
        node = str(binding["target"]["name"])
        if old["metadata"].get("deletionTimestamp"):
            raise APIError(errors.CONFLICT, f'pod {name} is being deleted, cannot be assigned to a host')
        if (old.get("spec") or {}).get("nodeName"):
            raise APIError(errors.CONFLICT, f'pod {name} is already assigned to node '
                                            f'"{old["spec"]["nodeName"]}"')
        new = dict(old)
        new["metadata"] = dict(old["metadata"])
        new["spec"] = dict(old.get("spec") or {}, nodeName=node)
        status = dict(old.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True",
                      "lastTransitionTime": rfc3339(self.clock()), "lastProbeTime": None})
        status["conditions"] = conds
        new["status"] = status
        ns = old["metadata"]["namespace"]
        self.store.put(rt.kind, ns, name, new)
        # As kube-apiserver's BindingREST.Create: a Status, not the pod (the scheduler reads the
        # pod from its watch; encoding and decoding the pod in every reply cost both sides).
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # -- eviction -----------------------------------------------------------
    def evict(self, name: str, eviction: Any, namespace: str | None = None) -> dict:
        """The pods/eviction subresource: delete a pod unless its PodDisruptionBudget
        forbids it (``control.apiserver.eviction``)."""
        from control.apiserver.eviction import evict
        return evict(self, name, eviction, namespace)

    # -- delete -------------------------------------------------------------
    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_period_seconds: int | None = None, propagation_policy: str | None = None,
               preconditions: dict | None = None) -> dict:
        rt = REGISTRY.by_kind(kind)
        if propagation_policy not in (None, "Orphan", "Background", "Foreground"):
            raise APIError(errors.BAD_REQUEST, f'propagationPolicy: Unsupported value: '
                           f'"{propagation_policy}": supported values: "Background", '
                           '"Foreground", "Orphan"')
        if grace_period_seconds is not None and grace_period_seconds < 0:
            raise APIError(errors.BAD_REQUEST, f"gracePeriodSeconds: Invalid value: "
                                               f"{grace_period_seconds}: must be >= 0")
        obj = self.get(kind, name, namespace)
        if preconditions:
            md = obj["metadata"]
            for k in ("uid", "resourceVersion"):
                if preconditions.get(k) not in (None, md.get(k)):
                    raise APIError(errors.CONFLICT, f"Precondition failed: {k}: "
                                   f"{preconditions[k]} != {md.get(k)}")
        if rt.kind == "Namespace":
            return self._delete_namespace(obj)
        obj = self._apply_propagation(rt, obj, propagation_policy)
        return self._delete(rt, obj, grace_period_seconds)

    def _apply_propagation(self, rt: ResourceType, obj: dict, policy: str | None) -> dict:
        """Kubernetes' deletion propagation, as the generic registry store does it:
        Foreground adds the ``foregroundDeletion`` finalizer, Orphan the ``orphan``
        finalizer (the garbage collector then handles the dependents and removes
        it), Background removes both. Without a policy the kind's default applies:
        Orphan for batch/v1 Jobs, Background for the rest (kubectl sends Background)."""
        md = obj["metadata"]
        fins = list(md.get("finalizers") or [])
        if policy is None:
            policy = "Orphan" if ORPHAN in fins or rt.kind == "Job" else "Background"
        want = {"Foreground": FOREGROUND, "Orphan": ORPHAN}.get(policy)
        new_fins = [f for f in fins if f not in (FOREGROUND, ORPHAN)] + ([want] if want else [])
        if new_fins == fins:
            return obj
        new = dict(obj)
        new["metadata"] = dict(md, finalizers=new_fins)
        if not new_fins:
            del new["metadata"]["finalizers"]
        if md.get("deletionTimestamp"):   # already terminating: store the finalizer change
            ns = md.get("namespace", "") if rt.namespaced else ""
            return self.store.put(rt.kind, ns, md["name"], new).obj
        return new

    def _delete(self, rt: ResourceType, obj: dict, grace: int | None) -> dict:
        md = obj["metadata"]
        period = strategy.graceful_period(rt, obj, grace)
        now = self.clock()
        if md.get("deletionTimestamp"):
            # Already terminating: a grace-0 delete (kubelet confirmation, --force)
            # finishes it; a shorter grace period shortens it.
            if period == 0 and not md.get("finalizers"):
                return self._remove(rt, obj)
            if rt.kind == "Pod" and period < (md.get("deletionGracePeriodSeconds") or 0):
                return self._mark(rt, obj, now + period, period)
            return obj
        if period == 0 and not md.get("finalizers"):
            return self._remove(rt, obj)
        return self._mark(rt, obj, now + period, period)

    def _mark(self, rt: ResourceType, obj: dict, when: float, period: int) -> dict:
        new = dict(obj)
        new["metadata"] = dict(obj["metadata"], deletionTimestamp=rfc3339(when),
                               deletionGracePeriodSeconds=period)
        ns = new["metadata"].get("namespace", "") if rt.namespaced else ""
        return self.store.put(rt.kind, ns, new["metadata"]["name"], new).obj

    def _remove(self, rt: ResourceType, obj: dict) -> dict:
        md = obj["metadata"]
        ns = md.get("namespace", "") if rt.namespaced else ""
        ev = self.store.delete(rt.kind, ns, md["name"])
        hook = self.hooks.get(rt.kind)
        if hook is not None:
            hook.after_remove(ev.obj)
        if rt.namespaced:
            self._maybe_finish_namespace(ns)
        return ev.obj

    def _delete_namespace(self, ns_obj: dict) -> dict:
        name = ns_obj["metadata"]["name"]
        if name in SYSTEM_NAMESPACES:
            raise APIError(errors.FORBIDDEN, f'namespaces "{name}" is forbidden: this namespace '
                                             "may not be deleted")
        if not ns_obj["metadata"].get("deletionTimestamp"):
            new = dict(ns_obj)
            new["metadata"] = dict(ns_obj["metadata"], deletionTimestamp=rfc3339(self.clock()),
                                   deletionGracePeriodSeconds=0)
            new["status"] = dict(ns_obj.get("status") or {}, phase="Terminating")
            ns_obj = self.store.put("Namespace", "", name, new).obj
        for kind in list(self.store.kinds):
            rt = REGISTRY.by_kind(kind)
            if not rt.namespaced:
                continue
            for obj in list(self.store.iter_kind(kind, name)):
                self._delete(rt, obj, None)
        return self._maybe_finish_namespace(name) or ns_obj

    def _maybe_finish_namespace(self, name: str) -> dict | None:
        ns_obj = self.store.get("Namespace", "", name)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return None
        if ns_obj["metadata"].get("finalizers") or not self.store.namespace_is_empty(name):
            return None
        return self.store.delete("Namespace", "", name).obj
