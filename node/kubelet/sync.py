"""The kubelet's per-pod decisions: pure functions from (pod, runtime state) to actions and status.

Contract (Kubernetes' ``computePodActions`` and ``generateAPIPodStatus``)
------------------------------------------------------------------------
* ``compute_pod_actions(pod, containers, sandbox, now, backoff)`` says what
  to do next for a pod that is admitted and not being deleted: create the
  sandbox, start which containers (with their attempt = restart count), and
  which ones wait in CrashLoopBackOff (reason and message) and until when.
  Restart policy: Always restarts any exited container, OnFailure only a
  non-zero exit, Never none. A pod already Succeeded or Failed is never
  restarted. It reads the back-off but never changes it: the kubelet calls
  ``backoff.next`` when it actually restarts a container. A container whose
  id is in ``restart_ids`` (killed by a failed liveness or startup probe) is
  restarted unless the policy is Never, whatever its exit code.
* ``compute_pod_status(pod, containers, sandbox, now, ...)`` is the status the
  kubelet reports: phase (``get_phase``), conditions PodReadyToStartContainers,
  Initialized, Ready, ContainersReady, PodScheduled (``lastTransitionTime``
  kept while a condition's status is unchanged), containerStatuses (state,
  lastState, ready, restartCount, image, imageID, containerID, started),
  podIP(s), hostIP(s), startTime and qosClass. A terminal phase never changes.
  A container the runtime has lists its ``volumeMounts`` (name, mountPath,
  readOnly; ``recursiveReadOnly: Disabled`` when read-only), as Kubernetes
  1.30+ does. ``waiting`` may also name a container that was never created
  (``CreateContainerConfigError``). ``probes`` (container id -> (started,
  ready), from the prober) overrides ``started`` and ``ready`` for containers
  with a startup or readiness probe (ready None: the runtime's hint).
  A terminated state carries the runtime's ``message`` when it has one
  (StartError, OOMKilled). ``evicted`` (a message) makes the status
  the eviction manager's: phase Failed, reason Evicted, the message, and the
  condition DisruptionTarget (TerminationByKubelet).
* ``containers`` are the runtime's ``ContainerStatus`` records of this pod
  (any attempts); times are wall-clock epoch seconds, as is ``now``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from emulator.api.kinds.pod import pod_qos_class
from emulator.events import rfc3339
from node.kubelet.backoff import Backoff, format_duration
from node.runtime.interface import CREATED, EXITED, RUNNING, ContainerStatus, PodSandbox

TERMINAL = ("Succeeded", "Failed")


@dataclass
class PodActions:
    create_sandbox: bool = False
    start: list[tuple[dict, int]] = field(default_factory=list)   # (container spec, attempt)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)   # name -> (reason, message)
    wake_at: float | None = None   # when a back-off ends (wall clock)


def pod_ref(pod: dict) -> str:
    """Kubernetes' format.Pod: ``name_namespace(uid)``."""
    md = pod.get("metadata") or {}
    return f"{md.get('name')}_{md.get('namespace')}({md.get('uid')})"


def latest_by_name(containers: list[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Container records per name, newest attempt first."""
    out: dict[str, list[ContainerStatus]] = {}
    for c in containers:
        out.setdefault(c.name, []).append(c)
    for v in out.values():
        v.sort(key=lambda c: c.attempt, reverse=True)
    return out


def should_restart(restart_policy: str, exit_code: int | None) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def compute_pod_actions(pod: dict, containers: list[ContainerStatus], sandbox: PodSandbox | None,
                        now: float, backoff: Backoff,
                        restart_ids: set[str] | frozenset[str] = frozenset()) -> PodActions:
    actions = PodActions()
    if (pod.get("status") or {}).get("phase") in TERMINAL:
        return actions
    spec = pod.get("spec") or {}
    uid = (pod.get("metadata") or {}).get("uid", "")
    policy = spec.get("restartPolicy") or "Always"
    if sandbox is None:
        actions.create_sandbox = True
        actions.start = [(c, 0) for c in spec.get("containers") or ()]
        return actions
    by_name = latest_by_name(containers)
    for c in spec.get("containers") or ():
        name = c.get("name", "")
        history = by_name.get(name)
        if not history:
            actions.start.append((c, 0))
            continue
        latest = history[0]
        if latest.state != EXITED or not (should_restart(policy, latest.exit_code)
                                          or (latest.id in restart_ids and policy != "Never")):
            continue
        key = (uid, name)
        finished = latest.finished_at if latest.finished_at is not None else now
        if backoff.in_backoff(key, finished, now):
            delay = backoff.delay(key)
            actions.waiting[name] = (
                "CrashLoopBackOff",
                f"back-off {format_duration(delay)} restarting failed container={name} pod={pod_ref(pod)}")
            ready = backoff.ready_at(key, finished)
            actions.wake_at = ready if actions.wake_at is None else min(actions.wake_at, ready)
        else:
            actions.start.append((c, latest.attempt + 1))
    return actions


def get_phase(pod: dict, statuses: list[dict], terminating_done: bool = False) -> str:
    """Kubernetes' getPhase over the reported container statuses."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    waiting = running = stopped = succeeded = failed = 0
    for cs in statuses:
        state = cs.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
            else:
                failed += 1
        elif "terminated" in (cs.get("lastState") or {}):
            stopped += 1
        else:
            waiting += 1
    if not statuses:
        return "Pending"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        # Kubernetes' getPhase: only containers that are terminated now count as
        # succeeded; one waiting to restart after an exit is stopped, not succeeded.
        if terminating_done:
            return "Failed" if failed or stopped != succeeded else "Succeeded"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"   # OnFailure: restarting
    return "Pending"


def _terminated(c: ContainerStatus, runtime_name: str) -> dict:
    t = {"exitCode": c.exit_code if c.exit_code is not None else 0,
         "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
         "startedAt": rfc3339(c.started_at or c.created_at),
         "finishedAt": rfc3339(c.finished_at or c.created_at),
         "containerID": f"{runtime_name}://{c.id}"}
    if getattr(c, "message", ""):   # the runtime's reason in words (StartError, OOMKilled)
        t["message"] = c.message
    return {"terminated": t}


def container_status(spec_c: dict, history: list[ContainerStatus], waiting: tuple[str, str] | None,
                     runtime_name: str, probes: dict[str, tuple[bool, bool | None]] | None = None) -> dict:
    name, image = spec_c.get("name", ""), spec_c.get("image", "")
    if not history:
        state: dict = {"reason": "ContainerCreating"}
        if waiting is not None:
            state = {"reason": waiting[0], "message": waiting[1]}
        return {"name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0,
                "started": False, "state": {"waiting": state}, "lastState": {}}
    latest = history[0]
    out = {"name": name, "image": image, "imageID": latest.image_id,
           "containerID": f"{runtime_name}://{latest.id}", "restartCount": latest.attempt,
           "ready": latest.state == RUNNING and latest.ready,
           "started": latest.state == RUNNING and latest.started_at is not None}
    probe = (probes or {}).get(latest.id)
    if probe is not None:
        out["started"] = out["started"] and probe[0]
        out["ready"] = out["ready"] if probe[1] is None else latest.state == RUNNING and probe[1]
        out["ready"] = out["ready"] and out["started"]
    last: dict = {}
    if len(history) > 1 and history[1].state == EXITED:
        last = _terminated(history[1], runtime_name)
    if waiting is not None and latest.state == EXITED:
        out["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        last = _terminated(latest, runtime_name)
    elif latest.state == RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at or latest.created_at)}}
    elif latest.state == EXITED:
        out["state"] = _terminated(latest, runtime_name)
    elif latest.state == CREATED:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
    else:
        out["state"] = {"waiting": {"reason": "ContainerStatusUnknown"}}
    out["lastState"] = last
    mounts = volume_mount_statuses(spec_c)
    if mounts:
        out["volumeMounts"] = mounts
    return out


def volume_mount_statuses(spec_c: dict) -> list[dict]:
    out = []
    for vm in spec_c.get("volumeMounts") or ():
        if not isinstance(vm, dict):
            continue
        st = {"name": vm.get("name", ""), "mountPath": vm.get("mountPath", ""),
              "readOnly": bool(vm.get("readOnly"))}
        if st["readOnly"]:
            st["recursiveReadOnly"] = "Disabled"
        out.append(st)
    return out


def _condition(typ: str, ok: bool, now: float, previous: dict[str, dict],
               reason: str = "", message: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(typ)
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond = {"type": typ, "status": status, "lastProbeTime": None,
            "lastTransitionTime": transition or rfc3339(now)}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def compute_pod_status(pod: dict, containers: list[ContainerStatus], sandbox: PodSandbox | None,
                       now: float, *, waiting: dict[str, tuple[str, str]] | None = None,
                       host_ip: str = "", runtime_name: str = "fake",
                       terminating_done: bool = False, evicted: str | None = None,
                       probes: dict[str, tuple[bool, bool | None]] | None = None) -> dict:
    old = pod.get("status") or {}
    spec = pod.get("spec") or {}
    by_name = latest_by_name(containers)
    waiting = waiting or {}
    statuses = [container_status(c, by_name.get(c.get("name", ""), []), waiting.get(c.get("name", "")),
                                 runtime_name, probes) for c in spec.get("containers") or ()]
    phase = old.get("phase") if old.get("phase") in TERMINAL else get_phase(pod, statuses, terminating_done)
    if evicted is not None:
        phase = "Failed"
    prev_conds = {c.get("type"): c for c in old.get("conditions") or () if isinstance(c, dict)}
    unready = [cs["name"] for cs in statuses if not cs["ready"]]
    if not unready:
        cr = _condition("ContainersReady", True, now, prev_conds)
    elif phase == "Succeeded":
        cr = _condition("ContainersReady", False, now, prev_conds, "PodCompleted")
    else:
        cr = _condition("ContainersReady", False, now, prev_conds, "ContainersNotReady",
                        f"containers with unready status: [{' '.join(unready)}]")
    ready = dict(cr, type="Ready")
    if prev_conds.get("Ready", {}).get("status") == cr["status"]:
        ready["lastTransitionTime"] = prev_conds["Ready"].get("lastTransitionTime", cr["lastTransitionTime"])
    else:
        ready["lastTransitionTime"] = rfc3339(now)
    sandbox_ok = sandbox is not None and phase not in TERMINAL
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ok, now, prev_conds),
        _condition("Initialized", True, now, prev_conds),
        ready, cr,
        _condition("PodScheduled", True, now, prev_conds),
    ]
    if evicted is not None or "DisruptionTarget" in prev_conds:
        conditions.insert(0, _condition("DisruptionTarget", True, now, prev_conds,
                                        "TerminationByKubelet", evicted) if evicted is not None
                          else prev_conds["DisruptionTarget"])
    status: dict = {"phase": phase, "conditions": conditions}
    if evicted is not None:
        status["reason"], status["message"] = "Evicted", evicted
    elif old.get("reason") and phase in TERMINAL:
        status["reason"] = old["reason"]
        if old.get("message"):
            status["message"] = old["message"]
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    pod_ip = sandbox.ip if sandbox is not None and sandbox.ip else old.get("podIP", "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status["startTime"] = old.get("startTime") or rfc3339(now)
    status["containerStatuses"] = statuses
    status["qosClass"] = old.get("qosClass") or pod_qos_class(pod)
    return status


def rejected_status(pod: dict, reason: str, message: str) -> dict:
    """The status of a pod the kubelet refused to admit (``rejectPod``)."""
    return {"phase": "Failed", "reason": reason, "message": f"Pod was rejected: {message}",
            "qosClass": (pod.get("status") or {}).get("qosClass") or pod_qos_class(pod)}
