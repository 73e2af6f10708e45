"""The lab-based parts of ``kemu bench scale`` (issue 9): node processes, pod startup, node failure.

Contract: each function starts its own lab in a temporary ``KEMU_HOME``,
stops it before returning (``with Lab``), and returns a dict of figures plus
``checks`` (correctness at scale: all Ready, all pods Running, no lost pods,
no error-level log lines). Every wait is bounded; a figure that could not be
measured is ``None``, never an exception that loses the other figures.
"""
from __future__ import annotations

import inspect
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import psutil

from lab.bench.common import paced_creates, percentile

PROGRESS_EVERY = 10.0   # seconds between the pod phase's progress records


def hosts_supported() -> bool:
    """Whether node hosts (``Lab(..., nodes_per_process=K)``) are built."""
    from lab.lab import Lab
    return "nodes_per_process" in inspect.signature(Lab.__init__).parameters


def _lab(nodes: int, profile: str, nodes_per_process: int | None = None, **kw: Any) -> Any:
    from lab.lab import Lab
    if nodes_per_process:
        kw["nodes_per_process"] = nodes_per_process
    return Lab(nodes, name="scale", profile=profile, make_current=False,
               ready_timeout=kw.pop("ready_timeout", 60.0 + nodes * 0.2), **kw)


def lab_pids(lab: Any) -> list[psutil.Process]:
    """The supervisor and every process under it."""
    try:
        sup = psutil.Process(int(lab.layout.supervisor_pid.read_text().strip()))
        return [sup] + sup.children(recursive=True)
    except (OSError, ValueError, psutil.Error):
        return []


def cpu_snapshot(lab: Any) -> tuple[float, dict[int, float], list[psutil.Process]]:
    """The CPU time of every lab process now (for ``cpu_since``)."""
    procs = lab_pids(lab)
    t0: dict[int, float] = {}
    for p in procs:
        try:
            t0[p.pid] = sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return time.monotonic(), t0, procs


def cpu_since(lab: Any, snap: tuple[float, dict[int, float], list[psutil.Process]]) -> dict[str, Any]:
    """CPU of every lab process since ``snap``, as percent of one core, in all and by role."""
    w0, t0, procs = snap
    wall = time.monotonic() - w0
    by_role: dict[str, float] = {}
    roles = {p["pid"]: p["role"] for p in lab.processes()}
    total = 0.0
    for p in procs:
        if p.pid not in t0:
            continue
        try:
            d = sum(p.cpu_times()[:2]) - t0[p.pid]
        except psutil.Error:
            continue
        total += d
        role = roles.get(p.pid, "supervisor" if p is procs[0] else "other")
        by_role[role] = by_role.get(role, 0.0) + d
    return {"percent_of_one_core": round(100 * total / wall, 1), "seconds": round(wall, 1),
            "processes": len(t0),
            "by_role_percent": {k: round(100 * v / wall, 1) for k, v in sorted(by_role.items())}}


def idle_cpu_percent(lab: Any, seconds: float) -> dict[str, Any]:
    """CPU of every lab process over ``seconds``, as percent of one core, from CPU-time deltas."""
    snap = cpu_snapshot(lab)
    time.sleep(seconds)   # a measurement window, not synchronisation
    return cpu_since(lab, snap)


def node_uss_mib(lab: Any) -> dict[str, Any]:
    """USS of each process that runs nodes (a node host counted once), and per node."""
    pids = {p["pid"] for p in lab.processes() if p["role"] in ("node", "nodehost") and p.get("pid")}
    mib = []
    for pid in pids:
        try:
            mib.append(psutil.Process(pid).memory_full_info().uss / (1 << 20))
        except psutil.Error:
            pass
    if not mib:
        return {"mean": None, "max": None, "processes": 0}
    return {"mean": round(sum(mib) / len(mib), 2), "max": round(max(mib), 2), "processes": len(mib),
            "per_node": round(sum(mib) / lab.config.nodes, 3)}


def error_lines(logs: Path, limit: int = 5) -> dict[str, Any]:
    """Error-level (error, critical) lines in every log file of the lab."""
    count, sample = 0, []
    for f in sorted(logs.glob("*.jsonl*")):
        try:
            with open(f, errors="replace") as fh:
                for line in fh:
                    if '"level": "error"' not in line and '"level": "critical"' not in line:
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("level") in ("error", "critical"):
                        count += 1
                        if len(sample) < limit:
                            exc = str(rec.get("exception") or "").strip().splitlines()
                            sample.append(f"{f.name}: {rec.get('event')}" + (f" ({exc[-1]})" if exc else ""))
        except OSError:
            pass
    return {"count": count, "sample": sample}


def last_ready_s(lab: Any, since_wall: float) -> float | None:
    """Seconds from ``since_wall`` to the latest Ready=True transition among Ready nodes."""
    from datetime import datetime
    last = None
    for n in lab.client.list_all("Node")["items"]:
        for c in (n.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime"):
                t = datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
                last = t if last is None else max(last, t)
    return None if last is None else round(last - since_wall, 3)


def _pod(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "scale"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"}}}], "terminationGracePeriodSeconds": 0}}


def _running(o: dict) -> bool:
    return (o.get("status") or {}).get("phase") == "Running"


def pods_check(client: Any, expected: set[str], nodes: set[str]) -> dict[str, Any]:
    """No lost pods: every expected pod exists, is Running and is bound to a node of the lab."""
    items = client.list_all("Pod", "default")["items"]
    by_name = {p["metadata"]["name"]: p for p in items}
    lost = sorted(expected - set(by_name))
    not_running = sorted(n for n in expected & set(by_name) if not _running(by_name[n]))
    bound = {n: by_name[n].get("spec", {}).get("nodeName") for n in expected & set(by_name)}
    unbound = [n for n, node in bound.items() if not node]
    bad_node = [n for n, node in bound.items() if node and node not in nodes]
    return {"expected": len(expected), "present": len(expected) - len(lost), "lost": lost[:10],
            "lost_count": len(lost), "not_running": len(not_running), "unbound": len(unbound),
            "on_unknown_node": len(bad_node), "ok": not lost and not not_running and not bad_node}


def create_and_wait_running(client: Any, names: list[str], timeout: float, window: int = 256,
                            progress: list[list[float]] | None = None
                            ) -> tuple[float | None, dict[str, int], list[str]]:
    """Pipelined creates of ``names`` (``window`` in flight) for at most ``timeout`` seconds
    from the first, while a watch sees pods Running. Returns the seconds from the first
    create to all Running (None if not within ``timeout``); what stood at the bound (or at
    the end, if sooner): ``created`` (creates answered) and ``running``; and every name
    whose create was answered, the ones in flight at the bound included (each is waited
    for: nothing is left unanswered). Creates not yet sent at the bound are not sent: the
    figure is what the cluster did within the bound, not after it. ``progress``, when
    given, gets ``[seconds, created, running]`` every ``PROGRESS_EVERY`` seconds and at
    the end: the shape of the phase (the creates' ramp, the Running rate, the tail)."""
    # Only Running pods are sent (as kubectl get pods --field-selector=status.phase=Running -w):
    # the bench's own share of the two cores was 6-8% when it decoded every pod event.
    w = client.watch("Pod", "default", field_selector="status.phase=Running",
                     resource_version=client.list("Pod", "default", limit=1)["metadata"]["resourceVersion"])
    want, running, created = set(names), set(), []
    inflight: deque[tuple[str, int]] = deque()
    todo = iter(names)
    more = True

    def drain(wait: float) -> None:
        ev = w.next(wait)
        while ev is not None:
            o = ev["object"]
            if ev["type"] != "DELETED" and _running(o):
                running.add(o["metadata"]["name"])
            ev = w.next(0)

    def answered(name: str, result: Any) -> None:
        if not isinstance(result, dict):
            raise RuntimeError(f"pod create failed: {name}: {result}")
        created.append(name)

    try:
        t0 = time.monotonic()
        deadline, mark = t0 + timeout, t0 + PROGRESS_EVERY
        while time.monotonic() < deadline and not want <= running:
            if progress is not None and time.monotonic() >= mark:
                progress.append([round(time.monotonic() - t0, 1), len(created), len(running)])
                mark += PROGRESS_EVERY
            while more and len(inflight) < window:
                name = next(todo, None)
                if name is None:
                    more = False
                    break
                inflight.append((name, client.send("create", object=_pod(name), namespace="default")))
            while inflight:
                done, result = client.take_reply(inflight[0][1])
                if not done:
                    break
                answered(inflight.popleft()[0], result)
            drain(0.01 if inflight else 0.2)
        seconds = round(time.monotonic() - t0, 3) if want <= running else None
        at_bound = {"created": len(created), "running": len(running & want)}
        if progress is not None:
            progress.append([round(time.monotonic() - t0, 1), at_bound["created"], at_bound["running"]])
        while inflight:
            name, rid = inflight.popleft()
            try:
                answered(name, client.wait(rid))
            except Exception as e:   # noqa: BLE001 - reported as a failed create
                answered(name, e)
        return seconds, at_bound, created
    finally:
        w.stop()


# -- part 1 (and 5): a lab up, Ready time, USS, idle CPU ---------------------------
def lab_scale(nodes: int, profile: str = "default", idle_seconds: float = 20.0, pods: int = 0,
              pods_timeout: float = 180.0, nodes_per_process: int | None = None,
              then: Callable[[Any], dict] | None = None, ready_timeout: float | None = None) -> dict[str, Any]:
    """``lab up`` of ``nodes`` nodes to all Ready; node USS; idle CPU; optionally ``pods``
    pods created and timed to Running; ``then(lab)`` adds figures measured on the same lab."""
    import tempfile

    from lab.lab import LabError
    out: dict[str, Any] = {"nodes": nodes, "profile": profile, "nodes_per_process": nodes_per_process or 1}
    home = os.environ.get("KEMU_HOME")
    with tempfile.TemporaryDirectory(prefix="kemu-bench-scale-") as tmp:
        os.environ["KEMU_HOME"] = tmp
        lab = _lab(nodes, profile, nodes_per_process,
                   **({"ready_timeout": ready_timeout} if ready_timeout else {}))
        if lab.config.packed:
            out["node_host_nice"] = lab.config.node_host_nice
        t0, wall0 = time.monotonic(), time.time()
        try:
            try:
                lab.up()
                out["up_to_all_ready_s"] = round(time.monotonic() - t0, 3)
            except LabError as e:   # not all Ready in time: say so, and measure the rest on what is up
                if not lab.running():
                    raise
                out["up_to_all_ready_s"] = None
                out["up_error"] = str(e)[:500]
                out["up_to_last_ready_node_s"] = last_ready_s(lab, wall0)
            out["ready_nodes"] = lab.ready_nodes()
            out["all_ready"] = out["ready_nodes"] == nodes
            out["node_uss_mib"] = node_uss_mib(lab)
            out["lab_processes"] = len(lab_pids(lab))
            if idle_seconds:
                out["idle_cpu"] = idle_cpu_percent(lab, idle_seconds)
            if pods:
                names = [f"scale-{i}" for i in range(pods)]
                out["pods"] = pods
                snap, bench0 = cpu_snapshot(lab), time.process_time()
                progress: list[list[float]] = []
                secs, at_bound, created = create_and_wait_running(lab.client, names, pods_timeout,
                                                                  progress=progress)
                # Where the cores went while the pods started: every role, and this process's
                # creates and watch (``bench``), over the whole pod phase.
                out["pods_phase_cpu"] = cpu_since(lab, snap)
                out["pods_phase_cpu"]["by_role_percent"]["bench"] = round(
                    100 * (time.process_time() - bench0) / max(out["pods_phase_cpu"]["seconds"], 1e-9), 1)
                out["pods_created_to_running_s"] = secs
                out["pods_at_bound"] = {"bound_s": pods_timeout, **at_bound}
                out["pods_progress"] = progress
                out["pods_check"] = pods_check(lab.client, set(created), set(lab.config.node_names))
                api = [p for p in lab.processes() if p["role"] == "apiserver"]
                if api:
                    out["apiserver_rss_mib"] = round(psutil.Process(api[0]["pid"]).memory_info().rss / (1 << 20), 1)
            if then is not None:
                out.update(then(lab))
            out["all_ready_at_end"] = lab.ready_nodes() == nodes
        except Exception as e:   # report what was measured, and why the rest was not
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            lab.down()
            out["log_errors"] = error_lines(lab.layout.logs)
            if home is None:
                os.environ.pop("KEMU_HOME", None)
            else:
                os.environ["KEMU_HOME"] = home
    return out


# -- part 3: pod startup with churn, on a lab that is up -----------------------------
def pod_startup_churn(lab: Any, pods: int = 600, rate: float = 20.0, keep: int = 200) -> dict[str, Any]:
    """Create ``pods`` pods at ``rate``/s and delete each one ``keep`` creates later (the churn),
    timing each create to Running through a watch, as ``kemu bench pod-startup`` does."""
    c = lab.client
    w = c.watch("Pod", "default", resource_version=c.list("Pod", "default")["metadata"]["resourceVersion"])
    deletes: list[int] = []

    def request(i: int) -> tuple[str, list[dict]]:
        if i >= keep:
            deletes.append(c.send("delete", kind="Pod", name=f"churn-{i - keep}", namespace="default",
                                  gracePeriodSeconds=0))
        return f"churn-{i}", [_pod(f"churn-{i}", {"app": "churn"})]
    try:
        created, running, errors = paced_creates(c, w, pods, rate, request, _running, 60)
    finally:
        w.stop()
    delete_errors = 0
    for rid in deletes:
        try:
            c.wait(rid, timeout=10)
        except Exception:
            delete_errors += 1
    lat = [(running[n] - t) * 1000 for n, t in created.items() if n in running]
    return {"pod_startup": {"pods": pods, "create_rate": rate, "deleted": len(deletes), "running": len(running),
                            "create_errors": errors, "delete_errors": delete_errors,
                            "latency_ms": {"p50": round(percentile(lat, 50), 1),
                                           "p99": round(percentile(lat, 99), 1),
                                           "max": round(max(lat or [0]), 1)}}}


# -- part 4: node failure at scale (fast profile) -------------------------------------
def _cond(node: dict, typ: str) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return c.get("status")
    return None


def node_failure(lab: Any, replicas: int, victim: str = "node-2", timeout: float = 90.0) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods Running; SIGKILL ``victim``; time to Ready=Unknown,
    to the unreachable NoExecute taint, and to ``replicas`` pods Running, none on the victim."""
    from emulator.profiles import get_profile
    from lab.bench.rollout import deployment
    prof = get_profile(lab.config.process_profile)
    c = lab.client
    d = deployment(replicas)
    c.create(d, namespace=d["metadata"]["namespace"])
    ns, sel = d["metadata"]["namespace"], ",".join(f"{k}={v}" for k, v in d["spec"]["selector"]["matchLabels"].items())

    def running_pods() -> list[dict]:
        return [p for p in c.list_all("Pod", ns, label_selector=sel)["items"]
                if _running(p) and not p["metadata"].get("deletionTimestamp")]
    t_create, deadline = time.monotonic(), time.monotonic() + 180
    while len(rp := running_pods()) < replicas and time.monotonic() < deadline:
        time.sleep(1.0)   # a poll interval, bounded by the deadline
    pods_error: dict[str, Any] = {}
    if len(rp) < replicas:   # still time the detection; replacement cannot be timed
        pods = c.list_all("Pod", ns, label_selector=sel)["items"]
        pods_error = {"error": f"{len(rp)} of {replicas} pods Running after 180 s", "pods_created": len(pods),
                      "pods_bound": sum(1 for p in pods if p["spec"].get("nodeName")),
                      "ready_nodes_before_kill": lab.ready_nodes()}
        timeout = 30.0
    created_to_running = None if pods_error else round(time.monotonic() - t_create, 3)
    on_victim = sum(1 for p in running_pods() if p["spec"].get("nodeName") == victim)
    nw = c.watch("Node", resource_version=c.list("Node")["metadata"]["resourceVersion"])
    t0 = time.monotonic()
    lab.kill(victim)
    unknown = tainted = replaced = None
    deadline = t0 + timeout
    next_pods = 0.0
    try:
        while replaced is None and time.monotonic() < deadline and not (pods_error and tainted is not None):
            ev = nw.next(0.2)
            while ev is not None:
                o, now = ev["object"], time.monotonic()
                if o["metadata"]["name"] == victim:
                    if unknown is None and _cond(o, "Ready") == "Unknown":
                        unknown = now - t0
                    if tainted is None and any(t["key"] == "node.kubernetes.io/unreachable" and
                                               t["effect"] == "NoExecute" for t in o["spec"].get("taints") or []):
                        tainted = now - t0
                ev = nw.next(0)
            if tainted is not None and not pods_error and time.monotonic() >= next_pods:
                next_pods = time.monotonic() + 0.25
                rp = running_pods()
                if len(rp) >= replicas and not any(p["spec"].get("nodeName") == victim for p in rp):
                    replaced = time.monotonic() - t0
    finally:
        nw.stop()
    grace, evict = prof.node_monitor_grace_period, float(prof.default_toleration_seconds)
    r = lambda v: None if v is None else round(v, 3)   # noqa: E731
    return {"node_failure": {"replicas": replicas, "created_to_running_s": created_to_running,
                             "pods_on_victim": on_victim, "grace_period_s": grace,
                             "eviction_timeout_s": evict, "kill_to_ready_unknown_s": r(unknown),
                             "kill_to_unreachable_taint_s": r(tainted), "kill_to_replaced_s": r(replaced),
                             "taint_to_replaced_s": r(None if replaced is None or tainted is None
                                                      else replaced - tainted), **pods_error}}
