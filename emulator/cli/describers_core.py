"""``kemu describe`` for pods and nodes, section by section as kubectl 1.32.

Contract: importing registers describers for Pod and Node with
``emulator.cli.describers.register_describer``. The node describer uses
``extra["lease"]`` (the node's Lease or None) and ``extra["pods"]`` (its
non-terminated pods, or None to omit that section).
"""
from __future__ import annotations

import time
from typing import Any

from emulator.api.quantity import cpu_millis, memory_bytes
from emulator.cli.describers import (Writer, annotations_block, events_block, labels_block,
                                     register_describer, rfc1123z)
from emulator.cli.printers import age
from emulator.cli.printers_core import node_roles

__all__ = ["describe_pod", "describe_node", "pod_qos", "format_cpu", "format_memory"]


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _bool(v: Any) -> str:
    return "True" if v else "False"


# -- pods --------------------------------------------------------------------

def pod_qos(pod: dict) -> str:
    """The QoS class (status.qosClass if the server set it)."""
    q = (pod.get("status") or {}).get("qosClass")
    if q:
        return q
    containers = (pod.get("spec") or {}).get("containers") or []
    any_set = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(req.get(r, lim[r])) != str(lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _state(w: Writer, title: str, state: dict) -> None:
    if state.get("running") is not None:
        w.line(2, f"{title}:\tRunning")
        w.line(3, f"Started:\t{rfc1123z(state['running'].get('startedAt'))}")
    elif state.get("waiting") is not None:
        w.line(2, f"{title}:\tWaiting")
        if state["waiting"].get("reason"):
            w.line(3, f"Reason:\t{state['waiting']['reason']}")
    elif state.get("terminated") is not None:
        t = state["terminated"]
        w.line(2, f"{title}:\tTerminated")
        if t.get("reason"):
            w.line(3, f"Reason:\t{t['reason']}")
        if t.get("message"):
            w.line(3, f"Message:\t{t['message']}")
        w.line(3, f"Exit Code:\t{t.get('exitCode', 0)}")
        if t.get("signal"):
            w.line(3, f"Signal:\t{t['signal']}")
        w.line(3, f"Started:\t{rfc1123z(t.get('startedAt'))}")
        w.line(3, f"Finished:\t{rfc1123z(t.get('finishedAt'))}")
    else:
        w.line(2, f"{title}:\tWaiting")


def _resources(w: Writer, res: dict | None, level: int) -> None:
    res = res or {}
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        values = res.get(key) or {}
        if values:
            w.line(level, f"{title}:")
            for name in sorted(values):
                w.line(level + 1, f"{name}:\t{values[name]}")


def _containers(w: Writer, title: str, containers: list[dict], statuses: list[dict]) -> None:
    by_name = {s.get("name"): s for s in statuses or []}
    w.line(0, f"{title}:" + ("" if containers else " <none>"))
    for c in containers:
        st = by_name.get(c.get("name"))
        w.line(1, f"{c.get('name', '')}:")
        if st is not None:
            w.line(2, f"Container ID:\t{st.get('containerID', '')}")
        w.line(2, f"Image:\t{c.get('image', '')}")
        if st is not None:
            w.line(2, f"Image ID:\t{st.get('imageID', '')}")
        ports = [f"{p.get('containerPort', 0)}/{p.get('protocol', 'TCP')}"
                 for p in c.get("ports") or []]
        host = [f"{p.get('hostPort', 0)}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or []]
        for title, values in (("Port", ports), ("Host Port", host)):
            if len(values) > 1:
                w.line(2, f"{title}s:\t{', '.join(values)}")
            else:
                w.line(2, f"{title}:\t{values[0] if values else '<none>'}")
        if c.get("restartPolicy"):
            w.line(2, f"Restart Policy:\t{c['restartPolicy']}")
        for key, label in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                w.line(2, f"{label}:")
                for part in c[key]:
                    for s in str(part).split("\n"):
                        w.line(3, s)
        if st is not None:
            _state(w, "State", st.get("state") or {})
            last = st.get("lastState") or {}
            if last.get("terminated") is not None:
                _state(w, "Last State", last)
            w.line(2, f"Ready:\t{_bool(st.get('ready'))}")
            w.line(2, f"Restart Count:\t{st.get('restartCount', 0)}")
        _resources(w, c.get("resources"), 2)
        env = c.get("env") or []
        if not env:
            w.line(2, "Environment:\t<none>")
        else:
            w.line(2, "Environment:")
            for e in env:
                if "value" in e or "valueFrom" not in e:
                    w.line(3, f"{e.get('name', '')}:\t{e.get('value', '')}")
                else:
                    w.line(3, f"{e.get('name', '')}:\t<set from {_value_from(e['valueFrom'])}>")
        mounts = c.get("volumeMounts") or []
        if not mounts:
            w.line(2, "Mounts:\t<none>")
        else:
            w.line(2, "Mounts:")
            for m in sorted(mounts, key=lambda m: m.get("mountPath", "")):
                mode = "ro" if m.get("readOnly") else "rw"
                w.line(3, f"{m.get('mountPath', '')} from {m.get('name', '')} ({mode})")


def _value_from(vf: dict) -> str:
    for key in ("configMapKeyRef", "secretKeyRef"):
        if key in vf:
            ref = vf[key] or {}
            return f"{key[:-6]} {ref.get('name', '')}/{ref.get('key', '')}"
    if "fieldRef" in vf:
        return f"field {(vf['fieldRef'] or {}).get('fieldPath', '')}"
    return "reference"


def _volumes(w: Writer, volumes: list[dict]) -> None:
    if not volumes:
        w.line(0, "Volumes:\t<none>")
        return
    w.line(0, "Volumes:")
    for v in volumes:
        w.line(1, f"{v.get('name', '')}:")
        if "emptyDir" in v:
            ed = v.get("emptyDir") or {}
            w.line(2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)")
            w.line(2, f"Medium:\t{ed.get('medium', '')}")
            w.line(2, f"SizeLimit:\t{ed.get('sizeLimit') or '<unset>'}")
        elif "configMap" in v:
            cm = v.get("configMap") or {}
            w.line(2, "Type:\tConfigMap (a volume populated by a ConfigMap)")
            w.line(2, f"Name:\t{cm.get('name', '')}")
            w.line(2, f"Optional:\t{str(bool(cm.get('optional'))).lower()}")
        elif "secret" in v:
            s = v.get("secret") or {}
            w.line(2, "Type:\tSecret (a volume populated by a Secret)")
            w.line(2, f"SecretName:\t{s.get('secretName', '')}")
            w.line(2, f"Optional:\t{str(bool(s.get('optional'))).lower()}")
        elif "hostPath" in v:
            hp = v.get("hostPath") or {}
            w.line(2, "Type:\tHostPath (bare host directory volume)")
            w.line(2, f"Path:\t{hp.get('path', '')}")
            w.line(2, f"HostPathType:\t{hp.get('type') or '<none>'}")
        else:
            w.line(1, "<unknown>")


def _tolerations(w: Writer, tolerations: list[dict]) -> None:
    w.write(0, "Tolerations:\t")
    if not tolerations:
        w.write(0, "<none>\n")
        return
    for i, t in enumerate(tolerations):
        if i:
            w.write(0, "\t")
        s = t.get("key", "")
        if t.get("value"):
            s += f"={t['value']}"
        if t.get("effect"):
            s += f":{t['effect']}"
        if t.get("operator") == "Exists" and not t.get("value"):
            s += " op=Exists" if (t.get("key") or t.get("effect")) else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            s += f" for {t['tolerationSeconds']}s"
        w.write(0, s + "\n")


def describe_pod(pod: dict, events: list[dict] | None, extra: dict) -> str:
    w = Writer()
    md, spec, status = _md(pod), pod.get("spec") or {}, pod.get("status") or {}
    w.line(0, f"Name:\t{md.get('name', '')}")
    w.line(0, f"Namespace:\t{md.get('namespace', '')}")
    if spec.get("priority") is not None:
        w.line(0, f"Priority:\t{spec['priority']}")
    if spec.get("priorityClassName"):
        w.line(0, f"Priority Class Name:\t{spec['priorityClassName']}")
    if spec.get("serviceAccountName"):
        w.line(0, f"Service Account:\t{spec['serviceAccountName']}")
    node = spec.get("nodeName")
    w.line(0, f"Node:\t{node}/{status.get('hostIP', '')}" if node else "Node:\t<none>")
    if status.get("startTime"):
        w.line(0, f"Start Time:\t{rfc1123z(status['startTime'])}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    phase = status.get("phase", "")
    if md.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        w.line(0, f"Status:\tTerminating (lasts {age(md['deletionTimestamp'])})")
        w.line(0, f"Termination Grace Period:\t{md.get('deletionGracePeriodSeconds', 0)}s")
    else:
        w.line(0, f"Status:\t{phase}")
    if status.get("reason"):
        w.line(0, f"Reason:\t{status['reason']}")
    if status.get("message"):
        w.line(0, f"Message:\t{status['message']}")
    w.line(0, f"IP:\t{status.get('podIP', '')}")
    ips = status.get("podIPs") or []
    if not ips:
        w.line(0, "IPs:\t<none>")
    else:
        w.line(0, "IPs:")
        for ip in ips:
            w.line(1, f"IP:\t{(ip or {}).get('ip', '')}")
    for ref in md.get("ownerReferences") or []:
        if ref.get("controller"):
            w.line(0, f"Controlled By:\t{ref.get('kind', '')}/{ref.get('name', '')}")
            break
    if status.get("nominatedNodeName"):
        w.line(0, f"NominatedNodeName:\t{status['nominatedNodeName']}")
    if spec.get("initContainers"):
        _containers(w, "Init Containers", spec["initContainers"],
                    status.get("initContainerStatuses") or [])
    _containers(w, "Containers", spec.get("containers") or [],
                status.get("containerStatuses") or [])
    conds = status.get("conditions") or []
    if conds:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in conds:
            w.line(1, f"{c.get('type', '')} \t{c.get('status', '')} ")
    _volumes(w, spec.get("volumes") or [])
    w.line(0, f"QoS Class:\t{pod_qos(pod)}")
    labels_block(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, spec.get("tolerations") or [])
    if events is not None:
        events_block(w, events)
    return w.text()


# -- nodes -------------------------------------------------------------------

def format_cpu(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(n: int) -> str:
    if n == 0:
        return "0"
    for suffix, size in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30),
                         ("Mi", 2**20), ("Ki", 2**10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _pod_totals(pod: dict) -> dict[str, int]:
    """cpu/memory requests and limits of a pod (millicores and bytes)."""
    tot = {"cpu_req": 0, "cpu_lim": 0, "mem_req": 0, "mem_lim": 0}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        try:
            tot["cpu_req"] += cpu_millis(req.get("cpu", lim.get("cpu", 0)))
            tot["cpu_lim"] += cpu_millis(lim.get("cpu", 0))
            tot["mem_req"] += memory_bytes(req.get("memory", lim.get("memory", 0)))
            tot["mem_lim"] += memory_bytes(lim.get("memory", 0))
        except ValueError:
            continue
    return tot


def _pct(v: int, total: int) -> int:
    return int(v / total * 100) if total else 0


def _node_resources(w: Writer, node: dict, pods: list[dict], now: float) -> None:
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    try:
        acpu, amem = cpu_millis(alloc.get("cpu", 0)), memory_bytes(alloc.get("memory", 0))
    except ValueError:
        acpu, amem = 0, 0
    w.line(0, f"Non-terminated Pods:\t({len(pods)} in total)")
    w.line(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
    w.line(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---")
    sums = {"cpu_req": 0, "cpu_lim": 0, "mem_req": 0, "mem_lim": 0}
    for p in pods:
        t = _pod_totals(p)
        for k in sums:
            sums[k] += t[k]
        md = _md(p)
        w.line(1, f"{md.get('namespace', '')}\t{md.get('name', '')}\t\t"
                  f"{format_cpu(t['cpu_req'])} ({_pct(t['cpu_req'], acpu)}%)\t"
                  f"{format_cpu(t['cpu_lim'])} ({_pct(t['cpu_lim'], acpu)}%)\t"
                  f"{format_memory(t['mem_req'])} ({_pct(t['mem_req'], amem)}%)\t"
                  f"{format_memory(t['mem_lim'])} ({_pct(t['mem_lim'], amem)}%)\t"
                  f"{age(md.get('creationTimestamp'), now)}")
    w.write(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., "
               "overcommitted.)\n")
    w.line(1, "Resource\tRequests\tLimits")
    w.line(1, "--------\t--------\t------")
    w.line(1, f"cpu\t{format_cpu(sums['cpu_req'])} ({_pct(sums['cpu_req'], acpu)}%)\t"
              f"{format_cpu(sums['cpu_lim'])} ({_pct(sums['cpu_lim'], acpu)}%)")
    w.line(1, f"memory\t{format_memory(sums['mem_req'])} ({_pct(sums['mem_req'], amem)}%)\t"
              f"{format_memory(sums['mem_lim'])} ({_pct(sums['mem_lim'], amem)}%)")


def describe_node(node: dict, events: list[dict] | None, extra: dict) -> str:
    now = time.time()
    w = Writer()
    md, spec, status = _md(node), node.get("spec") or {}, node.get("status") or {}
    w.line(0, f"Name:\t{md.get('name', '')}")
    w.line(0, f"Roles:\t{node_roles(node)}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    w.line(0, f"CreationTimestamp:\t{rfc1123z(md.get('creationTimestamp'))}")
    taints = spec.get("taints") or []
    w.write(0, "Taints:\t")
    if not taints:
        w.write(0, "<none>\n")
    for i, t in enumerate(taints):
        if i:
            w.write(0, "\t")
        value = f"={t['value']}" if t.get("value") else ""
        w.write(0, f"{t.get('key', '')}{value}:{t.get('effect', '')}\n")
    w.line(0, f"Unschedulable:\t{str(bool(spec.get('unschedulable'))).lower()}")
    if "lease" in extra:
        lease = extra["lease"]
        lspec = (lease or {}).get("spec") or {}
        w.line(0, "Lease:")
        w.line(1, f"HolderIdentity:\t{lspec.get('holderIdentity') or '<unset>'}")
        w.line(1, "AcquireTime:\t" + (rfc1123z(lspec['acquireTime'])
                                      if lspec.get("acquireTime") else "<unset>"))
        w.line(1, "RenewTime:\t" + (rfc1123z(lspec['renewTime'])
                                    if lspec.get("renewTime") else "<unset>"))
    conds = status.get("conditions") or []
    if conds:
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\t"
                   "Reason\tMessage\n")
        w.line(1, "----\t------\t-----------------\t------------------\t------\t-------")
        for c in conds:
            w.line(1, f"{c.get('type', '')} \t{c.get('status', '')} \t"
                      f"{rfc1123z(c.get('lastHeartbeatTime'))} \t"
                      f"{rfc1123z(c.get('lastTransitionTime'))} \t{c.get('reason', '')} \t"
                      f"{c.get('message', '')}")
    w.line(0, "Addresses:")
    for a in status.get("addresses") or []:
        w.line(1, f"{a.get('type', '')}:\t{a.get('address', '')}")
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        values = status.get(key) or {}
        if values:
            w.line(0, f"{title}:")
            for r in sorted(values):
                w.line(1, f"{r}:\t{values[r]}")
    info = status.get("nodeInfo") or {}
    w.line(0, "System Info:")
    for label, key in (("Machine ID", "machineID"), ("System UUID", "systemUUID"),
                       ("Boot ID", "bootID"), ("Kernel Version", "kernelVersion"),
                       ("OS Image", "osImage"), ("Operating System", "operatingSystem"),
                       ("Architecture", "architecture"),
                       ("Container Runtime Version", "containerRuntimeVersion"),
                       ("Kubelet Version", "kubeletVersion")):
        w.line(1, f"{label}:\t{info.get(key, '')}")
    if spec.get("podCIDR"):
        w.line(0, f"PodCIDR:\t{spec['podCIDR']}")
    if spec.get("podCIDRs"):
        w.line(0, f"PodCIDRs:\t{','.join(spec['podCIDRs'])}")
    if spec.get("providerID"):
        w.line(0, f"ProviderID:\t{spec['providerID']}")
    if extra.get("pods") is not None:
        _node_resources(w, node, extra["pods"], now)
    if events is not None:
        events_block(w, events, now)
    return w.text()


register_describer("Pod", describe_pod)
register_describer("Node", describe_node)
