"""The kubelet's pure decisions: sync actions, pod status, admission, back-off, node status, lease."""
from __future__ import annotations

import random

from node.kubelet import admission, lease, node_status, sync
from node.kubelet.backoff import Backoff, format_duration
from node.runtime.interface import CREATED, EXITED, RUNNING, ContainerStatus, PodSandbox

NOW = 1_700_000_000.0


def pod(policy: str = "Always", phase: str = "Pending", names=("app",), requests: dict | None = None) -> dict:
    cs = [{"name": n, "image": "nginx:1.27",
           **({"resources": {"requests": requests}} if requests else {})} for n in names]
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": cs}, "status": {"phase": phase}}


SANDBOX = PodSandbox("s1", "u1", "default", "web", "ready", NOW - 10, "127.64.0.2")


def ctr(name="app", attempt=0, state=RUNNING, exit_code=None, finished=None, ready=True) -> ContainerStatus:
    return ContainerStatus(id=f"c{name}{attempt}", sandbox_id="s1", pod_uid="u1", namespace="default",
                           pod_name="web", name=name, attempt=attempt, image="nginx:1.27",
                           image_id="sha256:x", state=state, created_at=NOW - 9,
                           started_at=NOW - 8, finished_at=finished, exit_code=exit_code,
                           reason=("" if exit_code is None else "Completed" if exit_code == 0 else "Error"),
                           ready=ready and state == RUNNING)


def backoff() -> Backoff:
    return Backoff(10, 300, 600)


# -- compute_pod_actions --------------------------------------------------
def test_new_pod_creates_sandbox_and_starts_every_container():
    a = sync.compute_pod_actions(pod(names=("a", "b")), [], None, NOW, backoff())
    assert a.create_sandbox and [(c["name"], n) for c, n in a.start] == [("a", 0), ("b", 0)]


def test_running_container_needs_nothing():
    a = sync.compute_pod_actions(pod(), [ctr()], SANDBOX, NOW, backoff())
    assert not a.create_sandbox and not a.start and not a.waiting


def test_restart_policies():
    exited0 = [ctr(state=EXITED, exit_code=0, finished=NOW - 1)]
    exited1 = [ctr(state=EXITED, exit_code=1, finished=NOW - 1)]
    assert sync.compute_pod_actions(pod("Always"), exited0, SANDBOX, NOW, backoff()).start[0][1] == 1
    assert not sync.compute_pod_actions(pod("OnFailure"), exited0, SANDBOX, NOW, backoff()).start
    assert sync.compute_pod_actions(pod("OnFailure"), exited1, SANDBOX, NOW, backoff()).start
    assert not sync.compute_pod_actions(pod("Never"), exited1, SANDBOX, NOW, backoff()).start
    assert not sync.compute_pod_actions(pod("Always", phase="Failed"), exited1, SANDBOX, NOW, backoff()).start


def test_crash_loop_waits_with_kubernetes_message():
    b = backoff()
    b.next(("u1", "app"), NOW - 30, NOW - 30)          # first restart: 10s
    b.next(("u1", "app"), NOW - 5, NOW - 5)            # second: 20s
    a = sync.compute_pod_actions(pod(), [ctr(attempt=2, state=EXITED, exit_code=1, finished=NOW - 1)],
                                 SANDBOX, NOW, b)
    assert not a.start
    assert a.waiting["app"] == ("CrashLoopBackOff",
                                "back-off 20s restarting failed container=app pod=web_default(u1)")
    assert a.wake_at == NOW - 1 + 20


# -- back-off -------------------------------------------------------------
def test_backoff_doubles_to_max_and_resets_after_a_long_run():
    b, key = backoff(), ("u1", "app")
    t = NOW
    delays = []
    for _ in range(7):
        delays.append(b.next(key, t, t))
        t += 1
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert b.in_backoff(key, t, t + 299) and not b.in_backoff(key, t, t + 300)
    assert b.next(key, t + 700, t + 700) == 10   # it ran longer than the reset period


def test_format_duration_like_go():
    assert [format_duration(s) for s in (10, 20, 160, 300, 0.5, 3661)] == \
        ["10s", "20s", "2m40s", "5m0s", "500ms", "1h1m1s"]


# -- status ---------------------------------------------------------------
def test_running_status():
    st = sync.compute_pod_status(pod(), [ctr()], SANDBOX, NOW, host_ip="127.0.0.1")
    assert st["phase"] == "Running" and st["podIP"] == "127.64.0.2"
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": "2023-11-14T22:13:12Z"}}
    assert cs["ready"] and cs["started"] and cs["containerID"] == "fake://capp0"
    assert [c["type"] for c in st["conditions"]] == ["PodReadyToStartContainers", "Initialized",
                                                     "Ready", "ContainersReady", "PodScheduled"]
    assert all(c["status"] == "True" for c in st["conditions"])


def test_pending_status_and_unready_message():
    st = sync.compute_pod_status(pod(names=("a", "b")), [ctr("a", ready=False)], SANDBOX, NOW)
    assert st["phase"] == "Pending"
    b = st["containerStatuses"][1]
    assert b["state"] == {"waiting": {"reason": "ContainerCreating"}}
    ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    assert (ready["reason"], ready["message"]) == ("ContainersNotReady",
                                                   "containers with unready status: [a b]")


def test_transition_time_is_kept_while_status_is_unchanged():
    p = pod()
    first = sync.compute_pod_status(p, [ctr()], SANDBOX, NOW)
    p["status"] = first
    second = sync.compute_pod_status(p, [ctr()], SANDBOX, NOW + 100)
    assert second == first


def test_phases():
    assert sync.compute_pod_status(pod("Never"), [ctr(state=EXITED, exit_code=1, finished=NOW)],
                                   SANDBOX, NOW)["phase"] == "Failed"
    assert sync.compute_pod_status(pod("OnFailure"), [ctr(state=EXITED, exit_code=0, finished=NOW)],
                                   SANDBOX, NOW)["phase"] == "Succeeded"
    assert sync.compute_pod_status(pod("Always"), [ctr(state=EXITED, exit_code=0, finished=NOW)],
                                   SANDBOX, NOW)["phase"] == "Running"
    assert sync.compute_pod_status(pod("Always"), [ctr(state=EXITED, exit_code=0, finished=NOW)],
                                   SANDBOX, NOW, terminating_done=True)["phase"] == "Succeeded"
    assert sync.compute_pod_status(pod(phase="Failed"), [ctr()], SANDBOX, NOW)["phase"] == "Failed"


def test_crash_loop_status_has_last_state():
    history = [ctr(attempt=3, state=EXITED, exit_code=1, finished=NOW - 1)]
    st = sync.compute_pod_status(pod(), history, SANDBOX, NOW,
                                 waiting={"app": ("CrashLoopBackOff", "back-off 40s ...")})
    cs = st["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["restartCount"] == 3


def test_created_container_is_waiting():
    st = sync.compute_pod_status(pod(), [ctr(state=CREATED)], SANDBOX, NOW)
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


# -- admission ------------------------------------------------------------
ALLOC = {"cpu": "4", "memory": "16Gi", "pods": "2", "ephemeral-storage": "100Gi"}


def test_admission_fits_and_rejects_in_kubernetes_words():
    assert admission.admit(pod(requests={"cpu": "1"}), [], ALLOC).admit
    r = admission.admit(pod(requests={"cpu": "3"}), [pod(requests={"cpu": "2"})], ALLOC)
    assert (r.admit, r.reason) == (False, "OutOfcpu")
    assert r.message == "Node didn't have enough resource: cpu, requested: 3000, used: 2000, capacity: 4000"
    r = admission.admit(pod(requests={"memory": "17Gi"}), [], ALLOC)
    assert r.reason == "OutOfmemory"
    r = admission.admit(pod(), [pod(), pod()], ALLOC)
    assert (r.reason, r.message) == ("OutOfpods", "Node didn't have enough resource: pods, "
                                                  "requested: 1, used: 2, capacity: 2")


def test_requests_memo_answers_for_the_same_pod_dict_and_recomputes_for_a_new_one():
    from node.kubelet.podmemo import PodMemo
    memo = PodMemo(admission.pod_requests)
    a = pod(requests={"cpu": "1"})
    assert memo(a) == admission.pod_requests(a)
    a["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "3"   # never done to an admitted pod:
    assert memo(a)["cpu"] == 1000                                      # the memo is for the same dict
    b = pod(requests={"cpu": "3"})                                     # same uid, a new dict: recomputed
    assert memo(b)["cpu"] == 3000
    r = admission.admit(pod(requests={"cpu": "2"}), [b], ALLOC, memo)
    assert (r.admit, r.message) == (False, "Node didn't have enough resource: cpu, requested: 2000, "
                                           "used: 3000, capacity: 4000")
    for i in range(40):
        p = pod()
        p["metadata"]["uid"] = f"x{i}"
        memo(p)
    memo.retain({"u1"})
    assert set(memo._memo) == {"u1"}


def test_pod_requests_take_init_containers_and_overhead():
    p = pod(requests={"cpu": "100m"})
    p["spec"]["initContainers"] = [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]
    p["spec"]["overhead"] = {"cpu": "10m"}
    assert admission.pod_requests(p)["cpu"] == 510


def test_rejected_status():
    st = sync.rejected_status(pod(), "OutOfcpu", "Node didn't have enough resource: cpu")
    assert st["phase"] == "Failed" and st["message"].startswith("Pod was rejected: ")


# -- node status and lease -----------------------------------------------
def test_node_object():
    cfg = node_status.NodeConfig("n1", zone="z1", pod_cidr="127.64.1.0/24")
    n = node_status.build_node(cfg, NOW)
    labels = n["metadata"]["labels"]
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"
    assert labels["topology.kubernetes.io/zone"] == "z1" and labels["kubernetes.io/hostname"] == "n1"
    st = n["status"]
    assert st["capacity"] == st["allocatable"] == {"cpu": "4", "ephemeral-storage": "100Gi",
                                                   "memory": "16Gi", "pods": "110"}
    assert st["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"},
                               {"type": "Hostname", "address": "n1"}]
    assert st["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1"
    reasons = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert reasons == {"MemoryPressure": ("False", "KubeletHasSufficientMemory"),
                       "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
                       "PIDPressure": ("False", "KubeletHasSufficientPID"),
                       "Ready": ("True", "KubeletReady")}
    assert n["spec"]["podCIDR"] == "127.64.1.0/24"


def test_node_status_change_ignores_heartbeats():
    cfg = node_status.NodeConfig("n1")
    a = node_status.node_status(cfg, NOW)
    b = node_status.node_status(cfg, NOW + 60, a)
    assert b["conditions"][0]["lastHeartbeatTime"] != a["conditions"][0]["lastHeartbeatTime"]
    assert b["conditions"][0]["lastTransitionTime"] == a["conditions"][0]["lastTransitionTime"]
    assert not node_status.status_changed(a, b)
    cfg.cpu = "8"
    assert node_status.status_changed(a, node_status.node_status(cfg, NOW, a))
    flipped = {**a, "conditions": [{**c, "status": "True"} if c["type"] == "DiskPressure" else c
                                   for c in a["conditions"]]}
    assert node_status.status_changed(a, flipped) and node_status.status_changed(flipped, a)
    assert node_status.status_changed(a, {k: v for k, v in a.items() if k != "capacity"})
    assert node_status.status_changed(None, a) and not node_status.status_changed(None, {})
    assert a["conditions"][0]["lastHeartbeatTime"]   # the comparison left its inputs alone


def test_lease():
    l = lease.build_lease("n1", "uid-1", 40.0, NOW + 0.123456)
    assert l["metadata"]["namespace"] == "kube-node-lease" and l["spec"]["holderIdentity"] == "n1"
    assert l["spec"]["leaseDurationSeconds"] == 40
    assert l["spec"]["renewTime"] == "2023-11-14T22:13:20.123456Z"
    rng = random.Random(1)
    assert all(10.0 <= lease.renew_interval(10.0, 0.1, rng) <= 11.0 for _ in range(50))


# -- ipam -----------------------------------------------------------------
def test_ipam():
    from node.kubelet import ipam
    assert ipam.pod_cidr_for_index(0) == "127.64.0.0/24"
    assert ipam.pod_cidr_for_index(3) == "127.64.3.0/24"
    assert ipam.pod_cidr_for_index(256) == "127.65.0.0/24"
    assert ipam.allocate("127.64.3.0/24", []) == "127.64.3.2"
    assert ipam.allocate("127.64.3.0/24", ["127.64.3.2"]) == "127.64.3.3"
    assert ipam.allocate("127.64.3.0/30", ["127.64.3.2"]) == ""
    assert ipam.allocate("", []) == ""
    full = [f"127.64.3.{i}" for i in range(2, 255)]
    assert ipam.allocate("127.64.3.0/24", full) == ""                     # .255 is broadcast
    assert ipam.allocate("127.64.3.0/24", full[:100] + full[101:]) == "127.64.3.102"
    assert ipam.allocate("127.64.4.0/23", full) == "127.64.4.2"


def test_phase_follows_kubernetes_get_phase_for_restarting_containers() -> None:
    """A container waiting to restart after a failure is stopped, not succeeded."""
    def pod(policy: str) -> dict:
        return {"spec": {"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]}}
    crashed = {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1}}}
    done = {"name": "b", "state": {"terminated": {"exitCode": 0}}}
    failed = {"name": "a", "state": {"terminated": {"exitCode": 2}}}
    assert sync.get_phase(pod("OnFailure"), [crashed, done]) == "Running"
    assert sync.get_phase(pod("OnFailure"), [done, dict(done, name="a")]) == "Succeeded"
    assert sync.get_phase(pod("Never"), [failed, done]) == "Failed"
    assert sync.get_phase(pod("Never"), [dict(done, name="a"), done]) == "Succeeded"
    assert sync.get_phase(pod("Always"), [failed, done]) == "Running"
