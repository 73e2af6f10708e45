"""The node lifecycle controller against a real apiserver (in-process), with a fake clock."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest

from control.controllers.manager import ControllerManager
from control.controllers.nodelifecycle_logic import TAINT_UNREACHABLE
from emulator.client import Client
from emulator.profiles import DEFAULT
from tests.conftest import poll_for
from tests.conftest import step_until as run_until

PROFILE = replace(DEFAULT, node_monitor_period=5.0, node_monitor_grace_period=40.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def micro(n: int) -> str:
    return f"2023-11-14T22:13:{n:02d}.000000Z"


def ready_conditions(status: str = "True", beat: str | None = None) -> list[dict]:
    beat = beat or stamp()
    out = [{"type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": beat, "lastTransitionTime": beat}]
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        out.append({"type": t, "status": "False", "reason": "KubeletHasNo" + t,
                    "lastHeartbeatTime": beat, "lastTransitionTime": beat})
    return out


@pytest.fixture
def cluster(threaded_server):  # type: ignore[no-untyped-def]
    srv = threaded_server(f"mem://nlc-{time.monotonic_ns()}", None, default_toleration_seconds=15)
    admin = Client(srv.address, component="test")
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-3"}})
    n = admin.get("Node", "node-3")
    n["status"] = {"conditions": ready_conditions()}
    admin.update_status(n)
    admin.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": "node-3", "namespace": "kube-node-lease"},
                  "spec": {"holderIdentity": "node-3", "leaseDurationSeconds": 40, "renewTime": micro(0)}})
    for name, tols in (("web-1", None), ("web-2", [{"key": TAINT_UNREACHABLE, "operator": "Exists",
                                                    "effect": "NoExecute"}])):
        spec: dict = {"nodeName": "node-3", "containers": [{"name": "c", "image": "busybox"}]}
        if tols:
            spec["tolerations"] = tols
        admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                      "spec": spec})
        p = admin.get("Pod", name, "default")
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        admin.update_status(p)
    clock = FakeClock()
    cmc = Client(srv.address, component="controller-manager")
    cm = ControllerManager(cmc, PROFILE, clock=clock)
    cm.start()
    yield admin, cm, clock
    cmc.close()
    admin.close()




def taint_keys(admin: Client) -> set:
    return {(t["key"], t["effect"]) for t in admin.get("Node", "node-3")["spec"].get("taints") or []}


def reasons(admin: Client, reason: str) -> list[dict]:
    return [e for e in admin.list("Event", "default")["items"] if e["reason"] == reason]


def test_node_goes_unknown_pods_are_evicted_and_node_comes_back(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm, clock = cluster
    for _ in range(10):
        cm.step(0.01)
    assert taint_keys(admin) == set()

    clock.advance(39)   # inside the grace period: nothing happens
    for _ in range(10):
        cm.step(0.01)
    assert admin.get("Node", "node-3")["status"]["conditions"][0]["status"] == "True"

    clock.advance(5)    # 44 s without a lease renewal, and a monitor pass is due
    run_until(cm, lambda: taint_keys(admin) == {(TAINT_UNREACHABLE, "NoExecute"),
                                                (TAINT_UNREACHABLE, "NoSchedule")}, "unreachable taints")
    node = admin.get("Node", "node-3")
    conds = {c["type"]: c for c in node["status"]["conditions"]}
    assert all(c["status"] == "Unknown" and c["reason"] == "NodeStatusUnknown" for c in conds.values())
    assert all(t.get("timeAdded") for t in node["spec"]["taints"])
    ev = run_until(cm, lambda: reasons(admin, "NodeNotReady"), "NodeNotReady event")
    assert ev[0]["message"] == "Node node-3 status is now: NodeNotReady"   # type: ignore[index]
    assert ev[0]["involvedObject"]["kind"] == "Node"   # type: ignore[index]

    def pod_ready(name: str) -> str:
        return [c for c in admin.get("Pod", name, "default")["status"]["conditions"]
                if c["type"] == "Ready"][0]["status"]
    run_until(cm, lambda: pod_ready("web-1") == pod_ready("web-2") == "False", "pods marked not ready")
    pods = {p["metadata"]["name"]: p for p in admin.list("Pod", "default")["items"]}
    assert not any(p["metadata"].get("deletionTimestamp") for p in pods.values())   # tolerated for 15 s

    clock.advance(16)
    run_until(cm, lambda: admin.get("Pod", "web-1", "default")["metadata"].get("deletionTimestamp"),
              "web-1 marked for deletion")
    ev = run_until(cm, lambda: reasons(admin, "TaintManagerEviction"), "TaintManagerEviction event")
    assert ev[0]["message"] == "Marking for deletion Pod default/web-1"   # type: ignore[index]
    assert not admin.get("Pod", "web-2", "default")["metadata"].get("deletionTimestamp")   # tolerates forever

    # The kubelet comes back: renews its lease and posts Ready=True.
    lease = admin.get("Lease", "node-3", "kube-node-lease")
    lease["spec"]["renewTime"] = micro(50)
    admin.update(lease)
    node = admin.get("Node", "node-3")
    node["status"]["conditions"] = ready_conditions()
    admin.update_status(node)
    clock.advance(5)
    run_until(cm, lambda: taint_keys(admin) == set(), "taints removed")
    ev = run_until(cm, lambda: reasons(admin, "NodeReady"), "NodeReady event")
    assert ev[0]["message"] == "Node node-3 status is now: NodeReady"   # type: ignore[index]


def test_kubelet_reported_not_ready_gets_not_ready_taints(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm, clock = cluster
    run_until(cm, lambda: cm.controllers[0].last_ready.get("node-3") == "True", "node seen Ready")
    node = admin.get("Node", "node-3")
    node["status"]["conditions"] = ready_conditions("False")
    admin.update_status(node)
    clock.advance(5)
    run_until(cm, lambda: taint_keys(admin) == {("node.kubernetes.io/not-ready", "NoExecute"),
                                                ("node.kubernetes.io/not-ready", "NoSchedule")},
              "not-ready taints")
    run_until(cm, lambda: reasons(admin, "NodeNotReady"), "NodeNotReady event")


def test_renewed_lease_keeps_the_node_healthy(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm, clock = cluster
    for i in range(1, 8):   # 70 s, renewed every 10 s
        clock.advance(10)
        lease = admin.get("Lease", "node-3", "kube-node-lease")
        lease["spec"]["renewTime"] = micro(i)
        admin.update(lease)
        run_until(cm, lambda: cm.informers.informer("Lease", "kube-node-lease").get(
            "node-3", "kube-node-lease")["spec"]["renewTime"] == micro(i), "lease seen")
        cm.step(0.01)
    assert taint_keys(admin) == set()
    assert admin.get("Node", "node-3")["status"]["conditions"][0]["status"] == "True"


def test_a_renewal_waiting_unread_is_not_silence(cluster) -> None:  # type: ignore[no-untyped-def]
    """A controller that lags behind its watch (1,000 nodes renewing every 0.5 s in the
    fast profile) must read what the apiserver already sent before it calls a node
    silent: judging from the stale cache wrote Unknown over live nodes, each write a
    blocking round trip answered Conflict, and the backlog only grew."""
    admin, cm, clock = cluster
    lc = cm.controllers[0]
    run_until(cm, lambda: lc.last_ready.get("node-3") == "True", "node seen Ready")
    clock.advance(41)   # past the grace period on the controller's clock ...
    lease = admin.get("Lease", "node-3", "kube-node-lease")
    lease["spec"]["renewTime"] = micro(41)
    admin.update(lease)   # ... but the kubelet renewed, and the event sits unread in the socket
    inbox = cm.client._conn.inner.inbox if hasattr(cm.client._conn, "inner") else cm.client._conn.inbox
    poll_for(lambda: not inbox.empty(), 5, what="the renewal's watch event to reach the controller")
    lc.monitor_node_health()   # no step(): nothing has read the socket
    assert admin.get("Node", "node-3")["status"]["conditions"][0]["status"] == "True"
    assert taint_keys(admin) == set()


def test_stale_nodes_are_marked_unknown_in_one_pipelined_pass(threaded_server) -> None:  # type: ignore[no-untyped-def]
    """Many silent nodes: one pass marks them all Unknown with pipelined writes; a node
    whose kubelet wrote just before the pass is left alone."""
    srv = threaded_server(f"mem://nlc-many-{time.monotonic_ns()}", None)
    admin = Client(srv.address, component="test")
    names = [f"node-{i}" for i in range(30)]
    for name in names:
        admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        n = admin.get("Node", name)
        n["status"] = {"conditions": ready_conditions()}
        admin.update_status(n)
    clock = FakeClock()
    cmc = Client(srv.address, component="controller-manager")
    try:
        cm = ControllerManager(cmc, PROFILE, clock=clock)
        cm.start()
        lc = cm.controllers[0]
        run_until(cm, lambda: len(lc.last_ready) == len(names), "nodes seen")
        clock.advance(45)
        n = admin.get("Node", "node-0")
        n["status"]["conditions"] = ready_conditions(beat=micro(45))
        admin.update_status(n)   # node-0's kubelet is alive
        calls = []
        real_call = cmc._call
        cmc._call = lambda op, args, retries=None: (calls.append(op), real_call(op, args, retries))[1]  # type: ignore[method-assign]
        lc.monitor_node_health()
        cmc._call = real_call   # type: ignore[method-assign]
        assert "update" not in calls   # the status writes went out pipelined, not one round trip each
        unknown = [n for n in admin.list("Node")["items"] if n["status"]["conditions"][0]["status"] == "Unknown"]
        assert sorted(n["metadata"]["name"] for n in unknown) == sorted(names[1:])
    finally:
        cmc.close()
        admin.close()


def test_untolerated_pod_is_evicted_at_once(cluster) -> None:  # type: ignore[no-untyped-def]
    admin, cm, clock = cluster
    node = admin.get("Node", "node-3")
    node["spec"]["taints"] = [{"key": "maintenance", "effect": "NoExecute"}]
    admin.update(node)
    run_until(cm, lambda: all(admin.get("Pod", n, "default")["metadata"].get("deletionTimestamp")
                              for n in ("web-1", "web-2")), "both pods marked for deletion")
