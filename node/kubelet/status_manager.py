"""The kubelet's status manager: pod statuses are written without holding up the pod's sync.

After Kubernetes' ``pkg/kubelet/status`` (``status_manager.go``): a pod worker
computes a status and hands it to the manager (``SetPodStatus``); the manager
writes it to the apiserver on its own schedule, so a slow apiserver delays the
status, never the next pod's sync or the node's Lease. Here the "own schedule"
is pipelining on the kubelet's client: the write is sent at once and its reply
collected on a later loop turn. In a node host, where a hundred nodes share one
thread, a blocking write per pod made each node's turn as long as its pods'
round trips, and the Leases of the other nodes waited behind them.

Contract
--------
* ``set(pod, status)``: the pod's status is to become ``status``. Nothing is
  sent when it is already the pod's status (with no write of ours in flight)
  or the status last written or wanted. At most one write per pod is in flight
  (the status subresource, ``update`` of the whole status); a newer status
  waits for it and is sent when it is answered, so writes of one pod never
  overtake each other.
* ``collect(now)`` (each loop turn, after ``client.poll``): takes the replies
  that arrived. A success records the status as written; NotFound forgets the
  pod (it is gone); any other error, or no reply within ``timeout`` seconds
  (the request is then abandoned), forgets what was written and returns the
  pod's ``(namespace, name)`` so that the kubelet syncs it again and computes
  a fresh status, as the status manager's periodic ``syncBatch`` retries.
* ``forget(uid)`` drops a pod's state (its in-flight write, if any, is
  abandoned and its reply ignored).
* ``next_due()``: when an in-flight write times out (the loop must look then).
* Sending never raises for a lost apiserver: the write is retried through
  ``collect``'s resync.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.client import Client


@dataclass
class _Write:
    rid: int | None       # None: sending failed; retried via a resync
    key: tuple[str, str]  # (namespace, name)
    status: dict
    sent_at: float


class StatusManager:
    def __init__(self, client: Client, clock: Callable[[], float], timeout: float) -> None:
        self.client = client
        self.clock = clock
        self.timeout = timeout
        self.written: dict[str, dict] = {}                        # uid -> status acknowledged
        self.inflight: dict[str, _Write] = {}                     # uid -> the write in flight
        self.wanted: dict[str, tuple[dict, dict]] = {}            # uid -> (pod, status) to send next

    def latest(self, uid: str) -> dict | None:
        """The newest status the kubelet set for ``uid`` (wanted, in flight or written)."""
        if uid in self.wanted:
            return self.wanted[uid][1]
        if uid in self.inflight:
            return self.inflight[uid].status
        return self.written.get(uid)

    def set(self, pod: dict, status: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        busy = uid in self.inflight or uid in self.wanted
        if status == self.latest(uid) or (not busy and status == pod.get("status")):
            return
        if uid in self.inflight:
            self.wanted[uid] = (pod, status)
            return
        self._send(uid, pod, status)

    def _send(self, uid: str, pod: dict, status: dict) -> None:
        md = pod["metadata"]
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": uid},
               "status": status}
        try:
            rid: int | None = self.client.send("update", object=obj, subresource="status")
        except APIError:
            rid = None
        self.inflight[uid] = _Write(rid, (md["namespace"], md["name"]), status, self.clock())

    def collect(self, now: float) -> set[tuple[str, str]]:
        """Take the answered (and the timed-out) writes; returns the pods to sync again."""
        resync: set[tuple[str, str]] = set()
        for uid, w in list(self.inflight.items()):
            if w.rid is None:
                done, result = True, None
            else:
                done, result = self.client.take_reply(w.rid)
                if not done and now - w.sent_at > self.timeout:
                    self.client.forget(w.rid)
                    done, result = True, None
            if not done:
                continue
            del self.inflight[uid]
            if isinstance(result, dict):
                self.written[uid] = w.status
            elif isinstance(result, APIError) and result.code == errors.NOT_FOUND:
                self.forget(uid)
                continue
            else:   # failed or unanswered: what the apiserver holds is unknown
                self.written.pop(uid, None)
                self.wanted.pop(uid, None)
                resync.add(w.key)
                continue
            nxt = self.wanted.pop(uid, None)
            if nxt is not None:
                self._send(uid, *nxt)
        return resync

    def next_due(self) -> float | None:
        if not self.inflight:
            return None
        return min(w.sent_at for w in self.inflight.values()) + self.timeout

    def forget(self, uid: str) -> None:
        w = self.inflight.pop(uid, None)
        if w is not None and w.rid is not None:
            self.client.forget(w.rid)
        self.wanted.pop(uid, None)
        self.written.pop(uid, None)

    def pending(self) -> int:
        """Writes in flight or waiting (for tests and metrics)."""
        return len(self.inflight) + len(self.wanted)
