"""Small helpers shared by kemu's DaemonSet and Job controllers (no I/O).

Contract
--------
* ``OwnedPods`` indexes pods by their controller owner's uid, fed from Pod
  informer handlers (``add``/``update``/``delete``), and remembers pods the
  controller just created or deleted until the informer shows them
  (a simplified form of Kubernetes' ``ControllerExpectations``), so a sync that
  runs before the watch event arrives neither creates twice nor counts a
  deleted pod as alive.
"""
from __future__ import annotations

from typing import Callable


def controller_uid(obj: dict) -> str | None:
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller"):
            return r.get("uid")
    return None


def key_of(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return (md.get("namespace") or "", md["name"])


class OwnedPods:
    def __init__(self, get: Callable[[str, str], dict | None], ttl: float = 30.0) -> None:
        self._get = get            # (name, namespace) -> pod from the informer cache
        self.ttl = ttl
        self.by_owner: dict[str, set[tuple[str, str]]] = {}
        self.created: dict[str, dict[tuple[str, str], tuple[dict, float]]] = {}
        self.deleted: dict[str, float] = {}   # pod uid -> when we deleted it

    def add(self, pod: dict) -> str | None:
        uid = controller_uid(pod)
        if uid:
            self.by_owner.setdefault(uid, set()).add(key_of(pod))
            self.created.get(uid, {}).pop(key_of(pod), None)
        return uid

    def delete(self, pod: dict) -> str | None:
        uid = controller_uid(pod)
        if uid and uid in self.by_owner:
            self.by_owner[uid].discard(key_of(pod))
            if not self.by_owner[uid]:
                del self.by_owner[uid]
        self.deleted.pop(pod["metadata"].get("uid", ""), None)
        return uid

    def expect_created(self, owner_uid: str, pod: dict, now: float) -> None:
        self.created.setdefault(owner_uid, {})[key_of(pod)] = (pod, now)

    def expect_deleted(self, pod: dict, now: float) -> None:
        self.deleted[pod["metadata"].get("uid", "")] = now

    def forget(self, owner_uid: str) -> None:
        self.created.pop(owner_uid, None)

    def pods(self, owner_uid: str, now: float) -> list[dict]:
        out = []
        for ns, name in sorted(self.by_owner.get(owner_uid, ())):
            pod = self._get(name, ns)
            if pod is None:
                continue
            when = self.deleted.get(pod["metadata"].get("uid", ""))
            if when is not None and now - when < self.ttl and not pod["metadata"].get("deletionTimestamp"):
                continue   # we deleted it; the informer has not caught up
            out.append(pod)
        pending = self.created.get(owner_uid, {})
        for k, (pod, when) in list(pending.items()):
            if now - when >= self.ttl:
                del pending[k]
            elif self._get(k[1], k[0]) is None:
                out.append(pod)
        return out


class OwnedPodHandlers:
    """Pod informer handlers shared by controllers that own pods directly
    (DaemonSet, Job): a pod event marks its owner's key dirty.

    The controller provides ``owned`` (an ``OwnedPods``), ``by_uid`` (owner uid
    -> key) and ``dirty`` (keys to sync).
    """
    owned: OwnedPods
    by_uid: dict
    dirty: set

    def _mark_owner(self, uid: str | None) -> None:
        if uid and uid in self.by_uid:
            self.dirty.add(self.by_uid[uid])

    def _pod_changed(self, pod: dict) -> None:
        self._mark_owner(self.owned.add(pod))

    def _pod_updated(self, old: dict, new: dict) -> None:
        self.owned.delete(old)
        self._mark_owner(self.owned.add(new))

    def _pod_deleted(self, pod: dict) -> None:
        self._mark_owner(self.owned.delete(pod))
