"""Kubernetes-level faults: pod-kill, container-kill, node-taint and node-drain.

Contract
--------
* ``pod-kill`` (``selector=app=web`` required, ``namespace`` default "default",
  ``grace`` seconds optional): deletes the matching pods (an action: their
  controllers replace them). A node target narrows it to pods on those nodes.
  No matching pod is an error naming the selector and namespace.
* ``container-kill`` (``selector`` required, ``namespace``, ``container`` optional):
  SIGKILL to the containers of the matching pods through the node's runtime: the
  process runtime's container process group (its ``state.json`` under the node
  root), docker's ``kill``. The kubelet sees the exit and restarts per the pod's
  restartPolicy. A pod on a fake-runtime node is an error: the fake runtime has no
  process to kill ("container-kill needs a real runtime").
* ``node-taint`` (``taint=key=value:Effect`` or ``key:Effect``, Effect one of
  NoSchedule, PreferNoSchedule, NoExecute): adds the taint to each target node
  (where it was not already); heal removes what was added.
* ``node-drain`` (``grace``, ``timeout`` optional): cordons each target node
  (``spec.unschedulable=true``) and evicts every pod on it that no DaemonSet owns
  through the ``pods/eviction`` subresource, as ``kubectl drain`` does, so
  PodDisruptionBudgets are honoured: an eviction refused with TooManyRequests
  (429) is retried about every second until it is allowed or ``timeout``
  (default 60s) passes. Pods still blocked then are left running, listed in the
  fault's state (``blocked``: "ns/name" -> the refusal) and logged
  (``drain_blocked``), not deleted. Heal: uncordon the nodes this fault cordoned.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _grace(params: dict[str, str]) -> int | None:
    g = params.get("grace")
    if g in (None, ""):
        return None
    try:
        v = int(g)
    except ValueError:
        raise ValueError(f"--param grace={g!r}: use a whole number of seconds, e.g. grace=0") from None
    if v < 0:
        raise ValueError(f"--param grace={g!r}: must be 0 or more")
    return v


def _check_selector(params: dict[str, str]) -> None:
    from emulator.api.selectors import parse_label_selector
    sel = params.get("selector", "")
    try:
        parse_label_selector(sel)
    except Exception as e:
        raise ValueError(f"--param selector={sel!r}: {e}") from None


def _pods(lab: Any, fault: Any) -> list[dict]:
    ns = fault.params.get("namespace") or "default"
    sel = fault.params["selector"]
    pods = lab.client.list_all("Pod", namespace=ns, label_selector=sel)["items"]
    if fault.targets:
        pods = [p for p in pods if (p.get("spec") or {}).get("nodeName") in fault.targets]
    pods = [p for p in pods if not (p["metadata"].get("deletionTimestamp"))]
    if not pods:
        where = f" on {', '.join(fault.targets)}" if fault.targets else ""
        raise ValueError(f"{fault.kind}: no pod matches selector {sel!r} in namespace {ns!r}{where}")
    return pods


class PodKill:
    name = "pod-kill"
    help = "delete the pods matching a label selector (their controllers replace them)"
    params = {"selector": "label selector, e.g. app=web (required)",
              "namespace": "the pods' namespace (default: default)",
              "grace": "deletion grace period in seconds (default: the pod's)"}
    required = ("selector",)
    target_mode = "pods"
    instant = True

    def check(self, params: dict[str, str]) -> None:
        _check_selector(params)
        _grace(params)

    def inject(self, lab: Any, fault: Any) -> dict:
        from emulator.api.errors import NOT_FOUND, APIError
        grace = _grace(fault.params)
        killed = []
        for p in _pods(lab, fault):
            md = p["metadata"]
            try:
                lab.client.delete("Pod", md["name"], md["namespace"], grace_period_seconds=grace)
                killed.append(f"{md['namespace']}/{md['name']}")
            except APIError as e:
                if e.code != NOT_FOUND:
                    raise
        return {"pods": killed}

    def heal(self, lab: Any, fault: Any) -> None:
        pass


def _kill_process_containers(root: str, ns: str, pod: str, container: str | None) -> list[str]:
    from node.runtime.process import containers_dir
    from node.runtime.shim import alive
    from emulator.runtime_state import read_state, state_path
    try:
        data = read_state(state_path(root))
    except (OSError, ValueError):
        return []
    killed = []
    for c in data.get("containers") or []:
        st = c.get("status") or {}
        if st.get("namespace") != ns or st.get("pod_name") != pod or st.get("state") != "running":
            continue
        if container and st.get("name") != container:
            continue
        mon: dict = {}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:   # a container just started: its monitor writes the pid
            try:
                with open(os.path.join(containers_dir(root), st["id"], "state.json")) as f:
                    mon = json.load(f)
            except (OSError, ValueError, KeyError):
                mon = {}
            if mon.get("pid") or mon.get("exit_code") is not None:
                break
            time.sleep(0.02)
        pid = mon.get("pid")
        if pid and alive(pid, mon.get("pid_start")):
            try:
                os.killpg(pid, signal.SIGKILL)
                killed.append(st.get("name", ""))
            except OSError:
                pass
    return killed


def _kill_docker_containers(lab_name: str, ns: str, pod: str, container: str | None) -> list[str]:
    from node.runtime.docker_engine import LABEL_LAB, engine_client
    from node.runtime.interface import (
        LABEL_CONTAINER_NAME,
        LABEL_POD_NAME,
        LABEL_POD_NAMESPACE,
    )
    client = engine_client()
    filters = [f"{LABEL_LAB}={lab_name}", f"{LABEL_POD_NAMESPACE}={ns}", f"{LABEL_POD_NAME}={pod}"]
    if container:
        filters.append(f"{LABEL_CONTAINER_NAME}={container}")
    killed = []
    for row in client.api.containers(filters={"label": filters}):   # running ones only
        labels = row.get("Labels") or {}
        if LABEL_CONTAINER_NAME not in labels:
            continue   # the sandbox's pause container, if any
        client.api.kill(row["Id"])
        killed.append(labels[LABEL_CONTAINER_NAME])
    return killed


class ContainerKill:
    name = "container-kill"
    help = "SIGKILL the containers of matching pods through the node's runtime (process, docker)"
    params = {"selector": "label selector, e.g. app=web (required)",
              "namespace": "the pods' namespace (default: default)",
              "container": "only this container (default: all of the pod's)"}
    required = ("selector",)
    target_mode = "pods"
    instant = True

    def check(self, params: dict[str, str]) -> None:
        _check_selector(params)

    def inject(self, lab: Any, fault: Any) -> dict:
        pods = [p for p in _pods(lab, fault) if (p.get("spec") or {}).get("nodeName")]
        if not pods:
            raise ValueError(f"container-kill: the pods matching {fault.params['selector']!r} are not "
                             "scheduled yet: no container to kill")
        fake = [f"{p['metadata']['name']} (on {p['spec']['nodeName']})" for p in pods
                if lab.config.runtime_for_node(p["spec"]["nodeName"]) == "fake"]
        if fake:
            raise ValueError("container-kill needs a real runtime (process or docker): the fake runtime "
                             f"has no process to kill, and these pods run on it: {', '.join(fake)}; "
                             "start the lab with --runtime process, or use pod-kill")
        container = fault.params.get("container") or None
        done: dict[str, list[str]] = {}
        for p in pods:
            md, node = p["metadata"], p["spec"]["nodeName"]
            if lab.config.runtime_for_node(node) == "docker":
                killed = _kill_docker_containers(lab.config.name, md["namespace"], md["name"], container)
            else:
                killed = _kill_process_containers(str(lab.layout.node_root(node)), md["namespace"],
                                                  md["name"], container)
            done[f"{md['namespace']}/{md['name']}"] = killed
        if not any(done.values()):
            raise ValueError(f"container-kill: no running container{' ' + container if container else ''} "
                             f"in the pods matching {fault.params['selector']!r}")
        return {"killed": done}

    def heal(self, lab: Any, fault: Any) -> None:
        pass


def parse_taint(spec: str) -> dict[str, str]:
    """``key=value:Effect`` or ``key:Effect`` -> a Node taint."""
    body, sep, effect = (spec or "").rpartition(":")
    if not sep or not body or effect not in EFFECTS:
        raise ValueError(f"--param taint={spec!r}: use KEY=VALUE:EFFECT or KEY:EFFECT with EFFECT one of "
                         f"{', '.join(EFFECTS)}, e.g. taint=chaos=true:NoSchedule")
    key, _, value = body.partition("=")
    if not key:
        raise ValueError(f"--param taint={spec!r}: the key is empty")
    t = {"key": key, "effect": effect}
    if value:
        t["value"] = value
    return t


def _update_node(lab: Any, name: str, change: Any, attempts: int = 10) -> bool:
    """Get, change (returns False for no change), update; retried on Conflict."""
    from emulator.api.errors import CONFLICT, APIError
    for _ in range(attempts):
        node = lab.client.get("Node", name)
        if not change(node):
            return False
        try:
            lab.client.update(node)
            return True
        except APIError as e:
            if e.code != CONFLICT:
                raise
    raise ValueError(f"could not update Node {name}: it kept changing (Conflict {attempts} times)")


def _same(a: dict, b: dict) -> bool:
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


class NodeTaint:
    name = "node-taint"
    help = "add a taint to nodes; heal removes it"
    params = {"taint": "KEY=VALUE:EFFECT or KEY:EFFECT, e.g. chaos=true:NoSchedule (required)"}
    required = ("taint",)
    target_mode = "nodes"

    def check(self, params: dict[str, str]) -> None:
        parse_taint(params.get("taint", ""))

    def inject(self, lab: Any, fault: Any) -> dict:
        taint = parse_taint(fault.params["taint"])

        def add(node: dict) -> bool:
            taints = node.setdefault("spec", {}).setdefault("taints", []) or []
            if any(_same(t, taint) for t in taints):
                return False
            node["spec"]["taints"] = taints + [dict(taint)]
            return True
        return {"taint": taint, "added": [n for n in fault.targets if _update_node(lab, n, add)]}

    def heal(self, lab: Any, fault: Any) -> None:
        from emulator.api.errors import NOT_FOUND, APIError
        taint = fault.state.get("taint") or parse_taint(fault.params["taint"])

        def remove(node: dict) -> bool:
            taints = (node.get("spec") or {}).get("taints") or []
            keep = [t for t in taints if not _same(t, taint)]
            if len(keep) == len(taints):
                return False
            node["spec"]["taints"] = keep
            return True
        for n in fault.state.get("added", []):
            try:
                _update_node(lab, n, remove)
            except APIError as e:
                if e.code != NOT_FOUND:
                    raise


def _daemonset_pod(pod: dict) -> bool:
    return any(r.get("kind") == "DaemonSet" for r in pod["metadata"].get("ownerReferences") or [])


DRAIN_TIMEOUT = 60.0
DRAIN_RETRY_INTERVAL = 1.0   # kubectl drain retries a refused eviction every 5 s; the lab is faster


def _drain_timeout(params: dict[str, str]) -> float:
    from lab.chaos.model import parse_duration
    t = params.get("timeout")
    if t in (None, ""):
        return DRAIN_TIMEOUT
    try:
        return parse_duration(float(t) if str(t).replace(".", "", 1).isdigit() else t,
                              "--param timeout")
    except ValueError as e:
        raise ValueError(f"{e}, e.g. timeout=60s") from None


def _refusal(e: Any) -> str:
    """An eviction's 429 message with its DisruptionBudget cause, as kubectl drain shows it."""
    detail = "; ".join(c.get("message", "") for c in e.causes if c.get("reason") == "DisruptionBudget")
    return f"{e.message} {detail}".strip()


class NodeDrain:
    name = "node-drain"
    help = ("cordon nodes and evict their pods through the eviction API, honouring "
            "PodDisruptionBudgets (DaemonSet pods stay); heal: uncordon")
    params = {"grace": "deletion grace period in seconds (default: the pod's)",
              "timeout": "how long to retry evictions a PodDisruptionBudget refuses (default 60s)"}
    target_mode = "nodes"

    def check(self, params: dict[str, str]) -> None:
        _grace(params)
        _drain_timeout(params)

    def inject(self, lab: Any, fault: Any) -> dict:
        from emulator.api.errors import NOT_FOUND, TOO_MANY_REQUESTS, APIError
        grace = _grace(fault.params)
        timeout = _drain_timeout(fault.params)

        def cordon(node: dict) -> bool:
            if (node.get("spec") or {}).get("unschedulable"):
                return False
            node.setdefault("spec", {})["unschedulable"] = True
            return True
        cordoned = [n for n in fault.targets if _update_node(lab, n, cordon)]
        pending: list[tuple[str, str]] = []
        for n in fault.targets:
            for p in lab.client.list_all("Pod", field_selector=f"spec.nodeName={n}")["items"]:
                md = p["metadata"]
                if not _daemonset_pod(p) and not md.get("deletionTimestamp"):
                    pending.append((md["namespace"], md["name"]))
        evicted: list[str] = []
        blocked: dict[str, str] = {}

        def evict_pending() -> bool:
            for ns, name in list(pending):
                key = f"{ns}/{name}"
                try:
                    lab.client.evict(name, ns, grace_period_seconds=grace)
                    evicted.append(key)
                except APIError as e:
                    if e.code == TOO_MANY_REQUESTS:
                        blocked[key] = _refusal(e)
                        continue
                    if e.code != NOT_FOUND:
                        raise
                pending.remove((ns, name))
                blocked.pop(key, None)
            return not pending
        if not evict_pending():
            try:
                lab.wait_for(evict_pending, timeout, interval=DRAIN_RETRY_INTERVAL,
                             what="the evictions PodDisruptionBudgets refuse")
            except TimeoutError:
                pass
        still = {k: v for k, v in blocked.items() if tuple(k.split("/", 1)) in pending}
        if still:
            from lab.chaos.record import log_event
            log_event(lab.layout, lab.name, "drain_blocked", fault, level="warning",
                      timeout=timeout, pods=still)
        return {"cordoned": cordoned, "evicted": evicted, "blocked": still}

    def heal(self, lab: Any, fault: Any) -> None:
        from emulator.api.errors import NOT_FOUND, APIError

        def uncordon(node: dict) -> bool:
            if not (node.get("spec") or {}).get("unschedulable"):
                return False
            node["spec"]["unschedulable"] = False
            return True
        for n in fault.state.get("cordoned", []):
            try:
                _update_node(lab, n, uncordon)
            except APIError as e:
                if e.code != NOT_FOUND:
                    raise


K8S_KINDS: dict[str, Any] = {k.name: k for k in (PodKill(), ContainerKill(), NodeTaint(), NodeDrain())}
