"""Helpers shared by the workload controllers (after ``pkg/controller/controller_utils.go``).

Contract (pure functions on Kubernetes-shaped dicts, no I/O, but for ``write_status``):
* ``compute_hash(template, collision_count)`` -> the ``pod-template-hash``: fnv32a
  of the template's JSON (sorted keys) plus the collision count, rendered as
  Kubernetes' ``rand.SafeEncodeString`` of the decimal value.
* owner references: ``controller_ref(obj)``, ``owner_ref(owner, kind)``,
  ``is_owned_by(obj, owner)``.
* pod state: ``is_pod_active`` (not terminal, not being deleted),
  ``is_pod_ready``, ``pod_ready_since`` and ``is_pod_available(pod, min_ready, now)``
  (Ready for at least ``minReadySeconds`` by the Ready condition's
  lastTransitionTime), ``pod_deletion_rank`` (ActivePods ordering, simplified:
  unscheduled < pending < unknown < running, not ready < ready, more restarts
  first, newer first).
* ``slow_start_batches(n, initial=1)`` -> Kubernetes' slowStartBatch sizes 1, 2, 4, ...
* ``parse_time`` / ``format_time``: RFC 3339 timestamps <-> epoch seconds.
* ``write_status(client, obj, status, dirty, key)`` (the one helper with I/O):
  writes ``obj`` with ``status`` through the status subresource; a Conflict
  marks ``key`` dirty (synced again from a newer copy), NotFound (the object
  went away) is ignored; returns whether it was written.
"""
from __future__ import annotations

import calendar
import json
import time
from functools import lru_cache
from typing import Any, Iterator

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.events import rfc3339

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv32a(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: no vowels, no look-alike characters."""
    return "".join(SAFE_ALPHANUMS[ord(c) % len(SAFE_ALPHANUMS)] for c in s)


def compute_hash(template: dict | None, collision_count: int | None = None) -> str:
    data = json.dumps(template or {}, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode_string(str(fnv32a(data)))


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    base, _, frac = s.rstrip("Z").partition(".")
    t = _whole_seconds(base)
    if t is None:
        return None
    return t + (float("0." + frac) if frac.isdigit() else 0.0)


@lru_cache(maxsize=4096)
def _whole_seconds(base: str) -> int | None:
    """``strptime`` is slow, and the timestamps a controller reads share their seconds
    (every Event a second's pods produce): an event-ttl controller (since replaced by the
    apiserver's own expiry) spent 15% of the controller-manager here at 10,000 nodes."""
    try:
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


format_time = rfc3339   # the name the controllers use


# -- owner references ----------------------------------------------------------
def controller_ref(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(owner: dict, kind: str, api_version: str = "apps/v1") -> dict:
    md = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def is_owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def refs_without(obj: dict, uid: str) -> list[dict]:
    return [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid") != uid]


def labels_of(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


# -- pods ----------------------------------------------------------------------
def _condition(pod: dict, typ: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c
    return None


def is_pod_active(pod: dict) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_pod_ready(pod: dict) -> bool:
    c = _condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_ready_since(pod: dict) -> float | None:
    c = _condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def is_pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = pod_ready_since(pod)
    return since is not None and since + min_ready_seconds < now


def available_at(pod: dict, min_ready_seconds: int) -> float | None:
    """When a ready pod becomes available (None if it is not ready)."""
    since = pod_ready_since(pod)
    if since is None:
        return None
    return since + min_ready_seconds


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_deletion_rank(pod: dict) -> tuple:
    """Sort key: the pods to delete first come first (ActivePods, simplified)."""
    status = pod.get("status") or {}
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    return (bool((pod.get("spec") or {}).get("nodeName")), _PHASE_RANK.get(status.get("phase") or "Pending", 0),
            is_pod_ready(pod), -restarts, -created, pod["metadata"].get("name", ""))


def write_status(client: Any, obj: dict, status: dict, dirty: set, key: Any) -> bool:
    try:
        client.update_status({**obj, "status": status})
        return True
    except APIError as e:
        if e.code == errors.CONFLICT:
            dirty.add(key)
        elif e.code != errors.NOT_FOUND:
            raise
        return False


def slow_start_batches(n: int, initial: int = 1) -> Iterator[int]:
    remaining, size = n, max(1, initial)
    while remaining > 0:
        b = min(size, remaining)
        yield b
        remaining -= b
        size *= 2


def merge_labels(*maps: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in maps:
        out.update(m or {})
    return out


class KeyedSync:
    """The loop of a controller that reconciles objects by (namespace, name).

    A subclass keeps ``dirty`` (keys to sync now) and ``timers`` (key -> wall
    time to sync at), and provides ``kind`` and ``sync_one(key)``. ``sync``
    runs every dirty or due key: a Conflict puts the key back (a newer object
    is on its way through the informer); other API errors are logged for that
    key; a lost apiserver keeps the rest for the next turn.
    """
    name: str
    kind: str
    dirty: set
    timers: dict
    log: Any
    clock: Any
    wall: Any

    def sync_one(self, key: tuple[str, str]) -> None:
        raise NotImplementedError

    def next_due(self) -> float:
        now = self.clock()
        if self.dirty:
            return now
        if self.timers:
            return now + max(0.0, min(self.timers.values()) - self.wall())
        return now + 3600.0

    def sync(self) -> None:
        wall = self.wall()
        for key, at in list(self.timers.items()):
            if at <= wall:
                del self.timers[key]
                self.dirty.add(key)
        todo, self.dirty = sorted(self.dirty), set()
        for i, key in enumerate(todo):
            try:
                self.sync_one(key)
            except (APIError, ConnectionError) as e:
                if isinstance(e, APIError) and e.code == errors.CONFLICT:
                    self.dirty.add(key)
                    continue
                if isinstance(e, APIError) and e.code not in (errors.UNAVAILABLE, errors.TIMEOUT):
                    self.log.error(f"{self.name}_sync_failed", kind=self.kind, namespace=key[0],
                                   name=key[1], code=e.code, error=str(e))
                    continue
                self.dirty.update(todo[i:])
                self.log.warning("apiserver_unavailable", controller=self.name, error=str(e))
                return
