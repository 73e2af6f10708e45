"""The dashboard's model: what the page shows, kept from watch events and the chaos record.

Contract
--------
* ``node_summary(node)``, ``pod_summary(pod)``, ``event_summary(event)`` and
  ``fault_summary(fault dict)`` turn API objects (and ``run/chaos.json`` entries) into
  the small JSON dicts the page draws. ``node_status(node)``: "notready" when the Ready
  condition is missing, False or Unknown; otherwise "pressure" when MemoryPressure,
  DiskPressure, PIDPressure or NetworkUnavailable is True; otherwise "ready".
* ``DashboardState(clock)`` has no I/O and no threads: the watch loop feeds it informer
  callbacks (``on_node``/``on_pod``/``on_event`` with a watch event type ADDED, MODIFIED
  or DELETED) and the chaos record (``set_faults``), then calls ``take_delta()``, which
  returns the changes since the last call as one JSON-able dict (or None when nothing
  changed) for the Server-Sent Events stream. ``snapshot()`` is the whole state, sent
  first to every new subscriber. Deltas are applied in order on top of a snapshot taken
  between two ``take_delta`` calls; the caller serialises those calls (one lock).
* Delta keys, each present only when it changed: ``nodes`` and ``pods`` ({key: summary,
  or None when deleted}; a pod's key is "namespace/name"), ``events`` ({key: summary or
  None}), ``faults`` (the whole active list), ``windows`` (fault windows that opened or
  closed: {id, kind, target, start, end}), ``samples`` ([t, ready nodes, running pods]
  appended to the timeline), ``status`` (the watch's health: "watching" or why not,
  from ``set_status``), and ``now`` (the server's epoch seconds) always. A snapshot has
  every key plus ``lab`` and ``started``.
* The timeline gets a sample whenever the count of Ready nodes or of Running pods
  changes. Fault windows open at the fault's ``injected_at`` and close when it leaves
  the record. History is bounded: ``MAX_SAMPLES`` samples, ``MAX_WINDOWS`` windows,
  ``MAX_EVENTS`` events (the most recent by lastTimestamp), oldest dropped first.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

MAX_SAMPLES = 20000
MAX_WINDOWS = 500
MAX_EVENTS = 200
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def _conditions(obj: dict) -> dict[str, str]:
    return {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
            if isinstance(c, dict)}


def node_status(node: dict) -> str:
    conds = _conditions(node)
    if conds.get("Ready") != "True":
        return "notready"
    if any(conds.get(p) == "True" for p in PRESSURE):
        return "pressure"
    return "ready"


def node_summary(node: dict) -> dict[str, Any]:
    md = node.get("metadata") or {}
    conds = _conditions(node)
    labels = md.get("labels") or {}
    return {"name": md.get("name"), "status": node_status(node), "ready": conds.get("Ready", "Unknown"),
            "pressure": [p for p in PRESSURE if conds.get(p) == "True"],
            "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
            "zone": labels.get("topology.kubernetes.io/zone")}


def pod_key(pod: dict) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def pod_summary(pod: dict) -> dict[str, Any]:
    md = pod.get("metadata") or {}
    st = pod.get("status") or {}
    ready = _conditions(pod).get("Ready") == "True"
    return {"namespace": md.get("namespace") or "default", "name": md.get("name"),
            "node": (pod.get("spec") or {}).get("nodeName") or None, "phase": st.get("phase") or "Pending",
            "ready": ready, "deleting": bool(md.get("deletionTimestamp")), "reason": st.get("reason")}


def event_key(ev: dict) -> str:
    md = ev.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def event_summary(ev: dict) -> dict[str, Any]:
    inv = ev.get("involvedObject") or {}
    src = ev.get("source") or {}
    md = ev.get("metadata") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") \
        or md.get("creationTimestamp") or ""
    return {"key": event_key(ev), "namespace": md.get("namespace") or "default",
            "type": ev.get("type") or "Normal", "reason": ev.get("reason") or "",
            "object": f"{(inv.get('kind') or '').lower()}/{inv.get('name') or ''}",
            "message": ev.get("message") or "", "count": ev.get("count") or 1,
            "lastTimestamp": last, "source": src.get("component") or ""}


def fault_summary(fault: dict) -> dict[str, Any]:
    start = float(fault.get("injected_at") or 0.0)
    duration = fault.get("duration")
    return {"id": fault.get("id"), "kind": fault.get("kind"), "target": fault.get("target") or "",
            "targets": list(fault.get("targets") or []), "params": dict(fault.get("params") or {}),
            "injected_at": start, "duration": duration,
            "expires_at": (start + float(duration)) if duration else None}


class DashboardState:
    def __init__(self, lab: str = "", clock: Callable[[], float] = time.time) -> None:
        self.lab = lab
        self.clock = clock
        self.status = "connecting"
        self._status_changed = False
        self.nodes: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self.faults: dict[str, dict] = {}
        self.windows: dict[str, dict] = {}
        self.samples: deque[list] = deque(maxlen=MAX_SAMPLES)
        self.started = clock()
        self._changed: dict[str, dict[str, Any]] = {"nodes": {}, "pods": {}, "events": {}}
        self._faults_changed = False
        self._windows_changed: dict[str, dict] = {}
        self._new_samples: list[list] = []
        self._sample()
        self._new_samples = []   # the first sample is in every snapshot, never in a delta

    # -- inputs -------------------------------------------------------------
    def on_node(self, typ: str, node: dict) -> None:
        self._put("nodes", self.nodes, (node.get("metadata") or {}).get("name"), typ,
                  None if typ == "DELETED" else node_summary(node))

    def on_pod(self, typ: str, pod: dict) -> None:
        self._put("pods", self.pods, pod_key(pod), typ, None if typ == "DELETED" else pod_summary(pod))

    def on_event(self, typ: str, ev: dict) -> None:
        key = event_key(ev)
        self._put("events", self.events, key, typ, None if typ == "DELETED" else event_summary(ev))
        if len(self.events) > MAX_EVENTS:
            for old in sorted(self.events.values(), key=lambda e: e["lastTimestamp"])[:len(self.events) - MAX_EVENTS]:
                self.events.pop(old["key"], None)
                self._changed["events"][old["key"]] = None

    def _put(self, what: str, table: dict, key: Any, typ: str, summary: dict | None) -> None:
        if key is None:
            return
        if summary is None:
            if table.pop(key, None) is None:
                return
        elif table.get(key) == summary:
            return
        else:
            table[key] = summary
        self._changed[what][key] = summary

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._status_changed = True

    def set_faults(self, faults: list[dict]) -> None:
        """The active faults, as ``run/chaos.json`` lists them (its ``faults`` values)."""
        now = self.clock()
        fresh = {f["id"]: f for f in (fault_summary(x) for x in faults) if f["id"]}
        if fresh != self.faults:
            self._faults_changed = True
        for fid, f in fresh.items():
            w = self.windows.get(fid)
            if w is None or w["end"] is not None:
                w = {"id": fid, "kind": f["kind"], "target": f["target"],
                     "start": f["injected_at"] or now, "end": None}
                self.windows[fid] = w
                self._windows_changed[fid] = w
        for fid, w in self.windows.items():
            if w["end"] is None and fid not in fresh:
                w["end"] = now
                self._windows_changed[fid] = w
        while len(self.windows) > MAX_WINDOWS:
            self.windows.pop(next(iter(self.windows)))
        self.faults = fresh

    # -- outputs ------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        ready = sum(1 for n in self.nodes.values() if n["ready"] == "True")
        running = sum(1 for p in self.pods.values() if p["phase"] == "Running")
        return ready, running

    def _sample(self) -> None:
        ready, running = self.counts()
        if self.samples and self.samples[-1][1:] == [ready, running]:
            return
        s = [self.clock(), ready, running]
        self.samples.append(s)
        self._new_samples.append(s)

    def take_delta(self) -> dict[str, Any] | None:
        self._sample()
        delta: dict[str, Any] = {k: v for k, v in self._changed.items() if v}
        if self._faults_changed:
            delta["faults"] = list(self.faults.values())
        if self._windows_changed:
            delta["windows"] = [dict(w) for w in self._windows_changed.values()]
        if self._new_samples:
            delta["samples"] = list(self._new_samples)
        if self._status_changed:
            delta["status"] = self.status
        self._changed = {"nodes": {}, "pods": {}, "events": {}}
        self._faults_changed = False
        self._windows_changed = {}
        self._new_samples = []
        self._status_changed = False
        if not delta:
            return None
        delta["now"] = self.clock()
        return delta

    def snapshot(self) -> dict[str, Any]:
        return {"lab": self.lab, "now": self.clock(), "started": self.started, "status": self.status,
                "nodes": dict(self.nodes), "pods": dict(self.pods), "events": dict(self.events),
                "faults": list(self.faults.values()), "windows": [dict(w) for w in self.windows.values()],
                "samples": [list(s) for s in self.samples]}
