"""A function of a pod, kept per pod uid while it is asked about the very same dict.

Contract: ``PodMemo(fn)(pod)`` is ``fn(pod)``, computed once for each pod
dict: the kubelet keeps the dicts it admitted and hands the same one back
until the informer delivers a new version (a new dict: computed again). So
``fn`` must read only the pod. ``retain(uids)`` forgets the other uids once
they outnumber the kept ones, so the memo stays about the size of the
node's pods. Used for what the kubelet asks of every admitted pod again and
again: admission's requests (``admission.pod_requests``) at every admission,
whether a pod has a local-storage limit (``eviction.has_local_storage_limit``)
at every housekeeping.
"""
from __future__ import annotations

from typing import Callable, Container, Generic, TypeVar

T = TypeVar("T")


class PodMemo(Generic[T]):
    def __init__(self, fn: Callable[[dict], T]) -> None:
        self.fn = fn
        self._memo: dict[str, tuple[dict, T]] = {}

    def __call__(self, pod: dict) -> T:
        uid = (pod.get("metadata") or {}).get("uid") or ""
        hit = self._memo.get(uid)
        if hit is not None and hit[0] is pod:
            return hit[1]
        value = self.fn(pod)
        self._memo[uid] = (pod, value)
        return value

    def retain(self, uids: Container[str]) -> None:
        if len(self._memo) > 2 * len(uids) + 16:   # type: ignore[arg-type]
            self._memo = {u: v for u, v in self._memo.items() if u in uids}
