"""Table columns for the built-in kinds, computed as kubectl's printers do.

Contract: importing this module registers printers (``register_printer``) for
Pod, Node, Namespace, ConfigMap, Secret, Lease and Event, with the headers and
cell values of kubectl 1.32. ``pod_status`` / ``pod_ready`` / ``pod_restarts``
and ``node_status`` / ``node_roles`` are the cell computations, exported for
tests and for ``describe``.
"""
from __future__ import annotations

from typing import Any

from emulator.cli.printers import Column, age, human_duration, parse_time, register_printer

__all__ = ["pod_status", "pod_ready", "pod_restarts", "node_status", "node_roles",
           "node_address"]

NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
NODE_ROLE_LABEL = "kubernetes.io/role"


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict, now: float) -> str:
    return _md(obj).get("name", "")


def _age(obj: dict, now: float) -> str:
    return age(_md(obj).get("creationTimestamp"), now)


# -- pods --------------------------------------------------------------------

def _restartable_init(c: dict | None) -> bool:
    return bool(c) and c.get("restartPolicy") == "Always"


def _pod_analysis(pod: dict) -> tuple[str, int, int, int, float | None]:
    """(reason, ready, total, restarts, last restart time) as kubectl's printPod."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    md = _md(pod)
    containers = spec.get("containers") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(containers) + sum(1 for c in init_specs.values() if _restartable_init(c))
    ready = 0
    restarts = 0
    last_restart: float | None = None
    sidecar_restarts = 0
    sidecar_last: float | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def later(a: float | None, b: Any) -> float | None:
        t = parse_time(b)
        if t is None:
            return a
        return t if a is None or t > a else a

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    n_init = len(init_specs)
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        last_term = ((cs.get("lastState") or {}).get("terminated") or {})
        if last_term:
            last_restart = later(last_restart, last_term.get("finishedAt"))
        sidecar = _restartable_init(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            if last_term:
                sidecar_last = later(sidecar_last, last_term.get("finishedAt"))
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") \
                and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = sidecar_last
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_term = ((cs.get("lastState") or {}).get("terminated") or {})
            if last_term:
                last_restart = later(last_restart, last_term.get("finishedAt"))
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"

    if md.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif md.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def pod_status(pod: dict) -> str:
    """The STATUS column of ``kubectl get pods``."""
    return _pod_analysis(pod)[0]


def pod_ready(pod: dict) -> str:
    """The READY column: ready/total containers."""
    _, ready, total, _, _ = _pod_analysis(pod)
    return f"{ready}/{total}"


def pod_restarts(pod: dict, now: float) -> str:
    """The RESTARTS column: ``3`` or ``3 (5m ago)``."""
    _, _, _, restarts, last = _pod_analysis(pod)
    if restarts and last is not None:
        return f"{restarts} ({human_duration(now - last)} ago)"
    return str(restarts)


def _pod_ip(pod: dict, now: float) -> str:
    status = pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0] or {}).get("ip") if ips else status.get("podIP")
    return ip or "<none>"


def _readiness_gates(pod: dict, now: float) -> str:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conds = {c.get("type"): c.get("status")
             for c in (pod.get("status") or {}).get("conditions") or []}
    true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
    return f"{true}/{len(gates)}"


register_printer("Pod", [
    Column("NAME", _name),
    Column("READY", lambda o, now: pod_ready(o)),
    Column("STATUS", lambda o, now: pod_status(o)),
    Column("RESTARTS", pod_restarts),
    Column("AGE", _age),
], [
    Column("IP", _pod_ip),
    Column("NODE", lambda o, now: (o.get("spec") or {}).get("nodeName") or "<none>"),
    Column("NOMINATED NODE",
           lambda o, now: (o.get("status") or {}).get("nominatedNodeName") or "<none>"),
    Column("READINESS GATES", _readiness_gates),
])


# -- nodes -------------------------------------------------------------------

def node_status(node: dict) -> str:
    """The STATUS column of ``kubectl get nodes``."""
    status = []
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            status = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: dict) -> str:
    """The ROLES column: from ``node-role.kubernetes.io/*`` labels, or ``<none>``."""
    roles = set()
    for k, v in (_md(node).get("labels") or {}).items():
        if k.startswith(NODE_ROLE_PREFIX) and k[len(NODE_ROLE_PREFIX):]:
            roles.add(k[len(NODE_ROLE_PREFIX):])
        elif k == NODE_ROLE_LABEL and v:
            roles.add(v)
    return ",".join(sorted(roles)) or "<none>"


def node_address(node: dict, kind: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return a.get("address") or "<none>"
    return "<none>"


def _node_info(key: str) -> Any:
    return lambda o, now: ((o.get("status") or {}).get("nodeInfo") or {}).get(key) or "<unknown>"


register_printer("Node", [
    Column("NAME", _name),
    Column("STATUS", lambda o, now: node_status(o)),
    Column("ROLES", lambda o, now: node_roles(o)),
    Column("AGE", _age),
    Column("VERSION", lambda o, now: ((o.get("status") or {}).get("nodeInfo") or {})
           .get("kubeletVersion", "")),
], [
    Column("INTERNAL-IP", lambda o, now: node_address(o, "InternalIP")),
    Column("EXTERNAL-IP", lambda o, now: node_address(o, "ExternalIP")),
    Column("OS-IMAGE", _node_info("osImage")),
    Column("KERNEL-VERSION", _node_info("kernelVersion")),
    Column("CONTAINER-RUNTIME", _node_info("containerRuntimeVersion")),
])


# -- simple kinds ------------------------------------------------------------

register_printer("Namespace", [
    Column("NAME", _name),
    Column("STATUS", lambda o, now: (o.get("status") or {}).get("phase", "")),
    Column("AGE", _age),
])

register_printer("ConfigMap", [
    Column("NAME", _name),
    Column("DATA", lambda o, now: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
    Column("AGE", _age),
])

register_printer("Secret", [
    Column("NAME", _name),
    Column("TYPE", lambda o, now: o.get("type", "")),
    Column("DATA", lambda o, now: len(o.get("data") or {})),
    Column("AGE", _age),
])

register_printer("Lease", [
    Column("NAME", _name),
    Column("HOLDER", lambda o, now: (o.get("spec") or {}).get("holderIdentity") or ""),
    Column("AGE", _age),
])


# -- events ------------------------------------------------------------------

def _event_times(ev: dict, now: float) -> tuple[str, str, int]:
    """(last seen, first seen, count) as kubectl's printEvent computes them."""
    first = age(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") \
        else age(ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = int(ev.get("count") or 0)
    series = ev.get("series")
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    return last, first, count


def event_object(ev: dict) -> str:
    inv = ev.get("involvedObject") or ev.get("regarding") or {}
    kind = (inv.get("kind") or "").lower()
    return f"{kind}/{inv['name']}" if inv.get("name") else kind


def _event_source(ev: dict, now: float) -> str:
    src = ev.get("source") or {}
    # core/v1 serialises ReportingController as "reportingComponent"; events.k8s.io as "reportingController"
    component = src.get("component") or ev.get("reportingComponent") or ev.get("reportingController") or ""
    host = src.get("host") or ev.get("reportingInstance") or ""
    if host:
        return f"{component}, {host}"
    return component


register_printer("Event", [
    Column("LAST SEEN", lambda o, now: _event_times(o, now)[0]),
    Column("TYPE", lambda o, now: o.get("type", "")),
    Column("REASON", lambda o, now: o.get("reason", "")),
    Column("OBJECT", lambda o, now: event_object(o)),
    Column("MESSAGE", lambda o, now: (o.get("message") or o.get("note") or "").strip()),
], [
    Column("SUBOBJECT", lambda o, now: (o.get("involvedObject") or {}).get("fieldPath", "")),
    Column("SOURCE", _event_source),
    Column("FIRST SEEN", lambda o, now: _event_times(o, now)[1]),
    Column("COUNT", lambda o, now: _event_times(o, now)[2]),
    Column("NAME", _name),
], wide_order=["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
               "FIRST SEEN", "COUNT", "NAME"])
