"""``kemu bench rollout``: a Deployment's creation and rolling update, end to end.

Method: a ``fast``-profile lab of ``--nodes`` nodes and one client in the
benchmark process, which follows Deployments and Pods through two informers
sharing that client (times are when the benchmark handles the watch event).

1. **Per-pod floor.** ``FLOOR_SAMPLES`` bare pods with the Deployment's
   template are created one after another; each one's create -> Ready (as the
   watch shows it) is timed and the median kept. This is one "wave": the least
   time any pod the controllers create can take to become available.
2. **Create.** A Deployment of ``--replicas`` fake-runtime pods (requests cpu
   10m / memory 16Mi, ``minReadySeconds: 0``, RollingUpdate 25%/25%) is
   created. Timed from just before the create is sent until the Deployment's
   status shows ``observedGeneration >= generation`` and ``updatedReplicas ==
   availableReplicas == replicas``.
3. **Rolling update.** The template annotation
   ``kubectl.kubernetes.io/restartedAt`` is set, as ``kemu rollout restart``
   does. Timed until the rollout is complete, which is ``kubectl rollout
   status``'s test (``observedGeneration >= generation``; ``updatedReplicas ==
   availableReplicas == status.replicas == replicas``) **and** no pod of the
   old template (the ``pod-template-hash`` every pod had after step 2) is
   left Running without a ``deletionTimestamp``. Old pods that are
   Terminating (deletionTimestamp set) do not count: the JSON reports how many
   old pods were still present then, and the time until the last one is gone
   from the apiserver.

Lower bound: the create needs one wave; a rolling update with maxSurge /
maxUnavailable resolved to ``s`` / ``u`` pods needs at least
``ceil(replicas / (s + u))`` waves (``rolling_waves``). The bound is waves x
the per-pod floor; it ignores throughput (all pods share the machine's two
cores), so ``ratio`` (measured / bound) shows what queueing costs. The fast
profile gives the fake runtime no start or ready delay, so the floor is a few
milliseconds and throughput sets the pace: ``create_pods_per_s`` is the
create's replicas / duration, and ``update_vs_create`` compares the update
(which starts as many pods and also stops as many) with the create.

Every loop has a deadline (``--timeout``, 180 s per phase by default);
everything started is stopped by the lab's context manager.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from typing import Any

NAMESPACE = "default"
NAME = "bench-rollout"
LABELS = {"app": "bench-rollout"}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"
FLOOR_SAMPLES = 3


# -- pure decisions -----------------------------------------------------------------
def resolve_percent(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: ``"25%"`` of ``total``, or an integer as is."""
    if isinstance(value, str) and value.endswith("%"):
        x = int(value[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value)


def rolling_waves(replicas: int, max_surge: int | str = "25%", max_unavailable: int | str = "25%") -> int:
    """The least number of create -> Ready waves a RollingUpdate needs to replace ``replicas`` pods.

    Surge rounds up and unavailable rounds down, as the Deployment controller
    resolves them (if both come to 0, unavailable is 1).
    """
    if replicas <= 0:
        return 0
    surge = resolve_percent(max_surge, replicas, True)
    unavailable = resolve_percent(max_unavailable, replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return math.ceil(replicas / (surge + unavailable))


def pod_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def deployment_available(deploy: dict, replicas: int) -> bool:
    """The create is done: every replica updated and available, and the status is current."""
    md, st = deploy.get("metadata") or {}, deploy.get("status") or {}
    return (int(st.get("observedGeneration") or 0) >= int(md.get("generation") or 0)
            and int(st.get("updatedReplicas") or 0) == replicas
            and int(st.get("availableReplicas") or 0) == replicas)


def rollout_status_complete(deploy: dict, replicas: int) -> bool:
    """``kubectl rollout status``'s test: also no old replicas left in ``status.replicas``."""
    return (deployment_available(deploy, replicas)
            and int((deploy.get("status") or {}).get("replicas") or 0) == replicas)


def count_old_pods(pods: list[dict], old_hash: str) -> dict[str, int]:
    """Pods of the old template: ``running`` (Running, no deletionTimestamp), ``terminating``, ``present``."""
    old = [p for p in pods if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == old_hash]
    terminating = sum(1 for p in old if p["metadata"].get("deletionTimestamp"))
    running = sum(1 for p in old if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") == "Running")
    return {"running": running, "terminating": terminating, "present": len(old)}


def template_hashes(pods: list[dict]) -> set[str]:
    return {(p["metadata"].get("labels") or {}).get(HASH_LABEL, "") for p in pods}


# -- objects ------------------------------------------------------------------------
def _template(labels: dict) -> dict:
    return {"metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "minReadySeconds": 0,
                     "selector": {"matchLabels": dict(LABELS)},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": _template(LABELS)}}


def _floor_pod(i: int) -> dict:
    t = _template({"app": "bench-floor"})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"floor-{i}", "namespace": NAMESPACE, **t["metadata"]}, "spec": t["spec"]}


# -- the run ------------------------------------------------------------------------
def _measure_floor(c: Any, samples: int, timeout: float) -> list[float]:
    out = []
    for i in range(samples):
        rv = c.list("Pod", NAMESPACE, label_selector="app=bench-floor")["metadata"]["resourceVersion"]
        w = c.watch("Pod", NAMESPACE, label_selector="app=bench-floor", resource_version=rv)
        t0 = time.monotonic()
        c.create(_floor_pod(i), namespace=NAMESPACE)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            ev = w.next(max(0.0, deadline - time.monotonic()))
            if ev is not None and ev["object"]["metadata"]["name"] == f"floor-{i}" and pod_ready(ev["object"]):
                out.append(time.monotonic() - t0)
                break
        w.stop()
        c.delete("Pod", f"floor-{i}", NAMESPACE, grace_period_seconds=0)
    return out


def run(nodes: int = 100, replicas: int = 1000, timeout: float = 180.0) -> dict[str, Any]:
    import psutil

    from emulator.informer import Informer
    from lab.lab import Lab
    old_home = os.environ.get("KEMU_HOME")
    result: dict[str, Any] = {"benchmark": "rollout", "profile": "fast", "nodes": nodes,
                              "replicas": replicas, "strategy": {"maxSurge": "25%", "maxUnavailable": "25%"},
                              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        with tempfile.TemporaryDirectory(prefix="kemu-bench-ro-") as tmp:
            os.environ["KEMU_HOME"] = tmp
            with Lab(nodes, name="bench", profile="fast", make_current=False) as lab:
                c = lab.client
                floor = _measure_floor(c, FLOOR_SAMPLES, min(timeout, 30.0))
                per_wave = statistics.median(floor) if floor else float("nan")
                deps = Informer(c, "Deployment", namespace=NAMESPACE)
                pods = Informer(c, "Pod", namespace=NAMESPACE, label_selector="app=bench-rollout")
                deps.start()
                pods.start()

                def turn(t: float) -> float:
                    c.poll(t)
                    deps.process()
                    pods.process()
                    return time.monotonic()

                def current() -> dict:
                    return deps.get(NAME, NAMESPACE) or {}

                # 2. create
                psutil.cpu_percent(None)
                t0 = time.monotonic()
                c.create(deployment(replicas), namespace=NAMESPACE)
                done_create = None
                now = t0
                while now < t0 + timeout:
                    now = turn(0.05)
                    if deployment_available(current(), replicas):
                        done_create = now - t0
                        break
                cpu_create = psutil.cpu_percent(None)
                old = template_hashes(pods.list())
                old_hash = next(iter(old)) if len(old) == 1 else ""

                # 3. rolling update
                done_update = all_old_gone = None
                old_at_done: dict[str, int] = {}
                status_done = None
                if done_create is not None:
                    psutil.cpu_percent(None)
                    t1 = time.monotonic()
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    c.patch("Deployment", NAME, {"spec": {"template": {"metadata": {
                        "annotations": {RESTARTED_AT: stamp}}}}}, namespace=NAMESPACE)
                    now = t1
                    while now < t1 + timeout:
                        now = turn(0.05)
                        d = current()
                        if status_done is None and rollout_status_complete(d, replicas) and \
                                int(d["metadata"].get("generation") or 0) >= 2:
                            status_done = now - t1
                        if status_done is not None:
                            counts = count_old_pods(pods.list(), old_hash)
                            if counts["running"] == 0:
                                done_update, old_at_done = now - t1, counts
                                break
                    cpu_update = psutil.cpu_percent(None)
                    while done_update is not None and now < t1 + done_update + 30:
                        if count_old_pods(pods.list(), old_hash)["present"] == 0:
                            all_old_gone = now - t1
                            break
                        now = turn(0.05)
                    result["machine_cpu_percent_during_update"] = cpu_update
                d = current()
                result["final_status"] = {k: (d.get("status") or {}).get(k) for k in (
                    "observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
                deps.stop()
                pods.stop()
    finally:
        if old_home is None:
            os.environ.pop("KEMU_HOME", None)
        else:
            os.environ["KEMU_HOME"] = old_home
    waves = rolling_waves(replicas, "25%", "25%")
    bound_create, bound_update = per_wave, waves * per_wave

    def r(x: float | None, n: int = 3) -> float | None:
        return None if x is None or x != x else round(x, n)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if not a or not b or b != b else round(a / b, 1)

    result.update({
        "per_pod_create_to_ready_s": {"samples": [r(x) for x in floor], "median": r(per_wave)},
        "machine_cpu_percent_during_create": cpu_create,
        "create": {"duration_s": r(done_create), "waves": 1, "lower_bound_s": r(bound_create),
                   "ratio": ratio(done_create, bound_create)},
        "rolling_update": {"duration_s": r(done_update), "rollout_status_complete_s": r(status_done),
                           "waves": waves, "lower_bound_s": r(bound_update),
                           "ratio": ratio(done_update, bound_update),
                           "old_pods_at_completion": old_at_done, "all_old_pods_gone_s": r(all_old_gone),
                           "old_pod_template_hash": old_hash},
        "create_pods_per_s": r(replicas / done_create, 1) if done_create else None,
        "update_vs_create": ratio(done_update, done_create),
        "counting": "complete = rollout-status test and 0 old-template pods Running without "
                    "deletionTimestamp; Terminating old pods are reported, not waited for",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "timeout_s": timeout,
    })
    return result


def main(args: Any) -> int:
    print(json.dumps(run(args.nodes, args.replicas, getattr(args, "timeout", 180.0)), indent=2))
    return 0
