"""The kubelet against a real apiserver (in-process transport), driven by step() and a fake clock."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from tests.conftest import FakeClock, drive





@pytest.fixture
def env(mem_server: Any, tmp_path: Path):
    clients: list[Client] = []
    clock = FakeClock()

    def kubelet(name: str = "node-1", **kw: Any) -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node=name)
        clients.append(c)
        k = Kubelet(c, FAST, name, root_dir=str(tmp_path / name), zone="zone-a",
                    clock=clock.mono, wall=clock.wall, **kw)
        k.start()
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet, clock
    for c in clients:
        c.close()


def pod(name: str, node: str = "node-1", annotations: dict | None = None, **spec: Any) -> dict:
    containers = spec.pop("containers", None) or [{"name": "app", "image": "nginx:1.27"}]
    md: dict = {"name": name, "namespace": "default", "annotations": annotations or {}}
    if "owner" in spec:
        md["ownerReferences"] = [spec.pop("owner")]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": node, "containers": containers, **spec}}


def status_of(user: Client, name: str) -> dict:
    return user.get("Pod", name, "default").get("status") or {}


def test_register_and_lease_renewal(env):
    user, kubelet, clock = env
    k = kubelet()
    node = user.get("Node", "node-1")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-1"
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.32.0-kemu"
    first = user.get("Lease", "node-1", "kube-node-lease")
    assert first["spec"]["holderIdentity"] == "node-1"
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"
    drive([k], clock, lambda: user.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
          != first["spec"]["renewTime"], what="lease renewed")


def test_a_renewal_updates_the_lease_last_written(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    seen = user.get("Lease", "node-1", "kube-node-lease")
    assert hb.lease is not None and hb.lease["metadata"]["resourceVersion"] == seen["metadata"]["resourceVersion"]
    ops: list[str] = []
    real = k.client._call

    def spy(op: str, args: dict, **kw: Any) -> Any:
        ops.append(op)
        return real(op, args, **kw)
    k.client._call = spy  # type: ignore[method-assign]
    clock.t += 0.5
    hb.renew_lease(clock.mono())
    got = user.get("Lease", "node-1", "kube-node-lease")
    assert ops == ["update"]
    assert got["spec"]["renewTime"] != seen["spec"]["renewTime"]
    assert hb.lease["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]


def _delete_lease(user: Client) -> str:
    """Someone deletes node-1's Lease; the uid it had."""
    uid = user.get("Lease", "node-1", "kube-node-lease")["metadata"]["uid"]
    user.delete("Lease", "node-1", "kube-node-lease")
    return uid


def _assert_patched_over(user: Client, hb: Any) -> None:
    """The renewal kept what someone else wrote (a patch, not an update), and the
    heartbeat holds the Lease as written."""
    got = user.get("Lease", "node-1", "kube-node-lease")
    assert got["metadata"]["labels"] == {"touched": "yes"}
    assert got["spec"]["renewTime"] == hb.lease["spec"]["renewTime"]
    assert hb.lease["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]


def test_a_renewal_that_conflicts_falls_back_to_a_patch(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    user.patch("Lease", "node-1", {"metadata": {"labels": {"touched": "yes"}}}, namespace="kube-node-lease")
    clock.t += 0.5
    hb.renew_lease(clock.mono())   # its update carries an old resourceVersion: Conflict, then a patch
    _assert_patched_over(user, hb)


def test_a_deleted_lease_is_created_again(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    old_uid = _delete_lease(user)
    hb.renew_lease(clock.mono())   # the update is answered NotFound: created again, at once
    got = user.get("Lease", "node-1", "kube-node-lease")
    assert got["metadata"]["uid"] != old_uid and hb.lease_exists
    assert got["metadata"]["ownerReferences"][0]["kind"] == "Node"


def _renewal_due(k: Kubelet, clock: FakeClock) -> None:
    clock.t += 0.5
    k.heartbeat.next_lease = clock.mono()


def test_a_renewal_is_pipelined_and_its_reply_taken_on_a_later_turn(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    before = user.get("Lease", "node-1", "kube-node-lease")
    _renewal_due(k, clock)
    hb.run_due(clock.mono())
    assert hb.lease_rid is not None                     # sent, not waited for
    assert hb.next_lease > clock.mono()                 # the next renewal is already planned
    assert hb.next_due() <= hb.lease_sent_at + k.client.timeout
    hb.run_due(clock.mono())
    assert hb.lease_rid is not None or hb.lease is not None   # nothing sent twice meanwhile
    drive([k], clock, lambda: hb.lease_rid is None, what="the renewal's reply taken", advance=0.0)
    got = user.get("Lease", "node-1", "kube-node-lease")
    assert got["spec"]["renewTime"] != before["spec"]["renewTime"]
    assert hb.lease["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]


def test_an_unanswered_renewal_is_given_up_and_renewed_again_at_once(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    sent: list[int] = []
    real_send = k.client.send

    def lost(op: str, **args: Any) -> int:   # the request goes nowhere: no reply will come
        rid = next(k.client._ids)
        k.client._outstanding.add(rid)
        sent.append(rid)
        return rid
    k.client.send = lost  # type: ignore[method-assign]
    _renewal_due(k, clock)
    hb.run_due(clock.mono())
    assert hb.lease_rid == sent[0]
    clock.t += k.client.timeout / 2
    hb.run_due(clock.mono())
    assert hb.lease_rid == sent[0] and len(sent) == 1   # still waiting, nothing sent twice
    k.client.send = real_send  # type: ignore[method-assign]
    before = user.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
    clock.t += k.client.timeout
    hb.run_due(clock.mono())    # given up, and renewed again in the same turn
    assert sent[0] not in k.client._outstanding
    assert hb.lease_rid is not None and hb.lease_rid != sent[0]
    drive([k], clock, lambda: hb.lease_rid is None, what="the second renewal answered", advance=0.0)
    got = user.get("Lease", "node-1", "kube-node-lease")
    assert got["spec"]["renewTime"] != before
    assert hb.lease["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]


def test_a_pipelined_renewal_that_conflicts_is_patched_at_once(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    user.patch("Lease", "node-1", {"metadata": {"labels": {"touched": "yes"}}}, namespace="kube-node-lease")
    sent: list[str] = []
    waited: list[str] = []
    real_send, real_call = k.client.send, k.client._call

    def send(op: str, **args: Any) -> int:
        sent.append(op)
        return real_send(op, **args)

    def call(op: str, args: dict, **kw: Any) -> Any:
        waited.append(op)
        return real_call(op, args, **kw)
    k.client.send = send  # type: ignore[method-assign]
    k.client._call = call  # type: ignore[method-assign]
    _renewal_due(k, clock)
    hb.run_due(clock.mono())
    assert sent == ["update"] and hb.lease_rid is not None
    # the Conflict is taken and, in the same turn, a patch sent: neither waited for
    drive([k], clock, lambda: sent == ["update", "patch"] and hb.lease_rid is None,
          what="the Conflict answered by a patch", advance=0.0)
    assert "patch" not in waited and "update" not in waited
    _assert_patched_over(user, hb)


def test_a_pipelined_renewal_of_a_deleted_lease_creates_it_at_once(env):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    old_uid = _delete_lease(user)
    _renewal_due(k, clock)
    hb.run_due(clock.mono())
    assert hb.lease_rid is not None

    def recreated() -> bool:
        try:
            return user.get("Lease", "node-1", "kube-node-lease")["metadata"]["uid"] != old_uid
        except APIError:
            return False
    # NotFound is answered, and the turn that takes it creates the Lease, with no renewal
    # interval in between (the clock does not move).
    drive([k], clock, recreated, what="the Lease created again", advance=0.0)
    assert hb.lease_exists and hb.lease_rid is None


def test_a_renewal_on_a_lossy_link_waits_for_its_reply(env, monkeypatch):
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    monkeypatch.setattr(type(k.client), "lossy", property(lambda self: True))
    before = user.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
    _renewal_due(k, clock)
    hb.run_due(clock.mono())
    assert hb.lease_rid is None   # waited: only a request waited for is retransmitted
    assert user.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"] != before


def test_timers_due_within_the_slack_run_in_one_turn(env):
    """Lease, status and housekeeping coalesce: an idle node wakes once for them all."""
    user, kubelet, clock = env
    k = kubelet()
    k.step(0)
    assert k.slack == pytest.approx(FAST.jitter * FAST.node_lease_renew_interval)
    base = clock.mono()
    k.heartbeat.next_lease = base + 1.0
    k.heartbeat.next_status = base + 1.0 + k.slack / 2
    k.next_housekeeping = base + 1.0 + k.slack * 0.9
    assert k.next_due() == base + 1.0
    clock.t = base + 1.0
    k.step(0)
    assert k.heartbeat.next_lease > base + 1.0 + k.slack      # renewed
    assert k.heartbeat.next_status > base + 1.0 + k.slack     # status computed early, in this turn
    assert k.next_housekeeping > base + 1.0 + k.slack         # housekeeping too
    k.next_housekeeping = clock.mono() + k.slack * 2          # beyond the slack: not yet
    k.step(0)
    assert k.next_housekeeping == clock.mono() + k.slack * 2


def test_existing_node_is_adopted(env):
    user, kubelet, clock = env
    user.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    kubelet()
    node = user.get("Node", "node-1")
    assert node["status"]["capacity"]["cpu"] == "4"


def test_pod_goes_running_with_status(env):
    user, kubelet, clock = env
    k = kubelet(pod_cidr="127.64.3.0/24")
    user.create(pod("web", resources=None))
    st = drive([k], clock, lambda: (s := status_of(user, "web")).get("phase") == "Running" and s,
               what="Running")
    cs = st["containerStatuses"][0]
    assert "running" in cs["state"] and cs["ready"] and cs["started"]
    assert cs["containerID"].startswith("fake://") and cs["restartCount"] == 0
    assert st["podIP"] == "127.64.3.2" and st["podIPs"] == [{"ip": "127.64.3.2"}]
    assert st["hostIP"] == "127.0.0.1" and st["qosClass"] == "BestEffort" and st["startTime"]
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == conds["ContainersReady"] == conds["PodScheduled"] == "True"
    events = user.list("Event", "default")["items"]
    assert {"Pulled", "Created", "Started"} <= {e["reason"] for e in events}


def test_crash_loop_back_off(env):
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("crash", annotations={"kemu.io/crash-on-start": "true"}))
    st = drive([k], clock, lambda: (s := status_of(user, "crash")).get("containerStatuses") and
               (s["containerStatuses"][0]["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff"
               and s, what="CrashLoopBackOff")
    cs = st["containerStatuses"][0]
    assert cs["restartCount"] >= 1
    assert "restarting failed container=app pod=crash_default(" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert st["phase"] == "Running"


def test_job_pod_succeeds(env):
    user, kubelet, clock = env
    k = kubelet(pod_cidr="127.64.3.0/24")
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "1234"}
    user.create(pod("job-x", owner=owner, restartPolicy="Never"))
    st = drive([k], clock, lambda: (s := status_of(user, "job-x")).get("phase") == "Succeeded" and s,
               what="Succeeded")
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert st["podIP"] == "127.64.3.2"
    # the finished pod's sandbox is stopped and its address goes back to the pool
    assert [s.state for s in k.runtime.list_pod_sandboxes()] == ["notready"]
    user.create(pod("next"))
    st = drive([k], clock, lambda: (s := status_of(user, "next")).get("phase") == "Running" and s,
               what="Running")
    assert st["podIP"] == "127.64.3.2"
    for _ in range(20):
        k.step(0.005)
        clock.t += 0.1
    assert status_of(user, "job-x")["phase"] == "Succeeded"
    assert len([c for c in k.runtime.list_containers() if c.pod_name == "job-x"]) == 1


def test_never_with_exit_1_fails(env):
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("bad", restartPolicy="Never",
                    annotations={"kemu.io/run-duration": "100ms", "kemu.io/exit-code": "1"}))
    st = drive([k], clock, lambda: (s := status_of(user, "bad")).get("phase") == "Failed" and s,
               what="Failed")
    assert st["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert st["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_graceful_deletion_is_confirmed(env):
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("gone", annotations={"kemu.io/termination-delay": "1s"}))
    drive([k], clock, lambda: status_of(user, "gone").get("phase") == "Running", what="Running")
    user.delete("Pod", "gone", "default")
    assert user.get("Pod", "gone", "default")["metadata"]["deletionTimestamp"]

    def gone() -> bool:
        try:
            user.get("Pod", "gone", "default")
            return False
        except APIError as e:
            return e.code == "NotFound"
    drive([k], clock, gone, what="pod deleted")
    assert not k.runtime.list_pod_sandboxes()
    assert "Killing" in {e["reason"] for e in user.list("Event", "default")["items"]}


def test_admission_rejects_out_of_cpu(env):
    user, kubelet, clock = env
    k = kubelet()
    big = pod("big", containers=[{"name": "app", "image": "nginx:1.27",
                                  "resources": {"requests": {"cpu": "5"}}}])
    user.create(big)
    st = drive([k], clock, lambda: (s := status_of(user, "big")).get("phase") == "Failed" and s,
               what="rejected")
    assert st["reason"] == "OutOfcpu"
    assert st["message"] == ("Pod was rejected: Node didn't have enough resource: cpu, "
                             "requested: 5000, used: 0, capacity: 4000")
    assert not k.runtime.list_containers()


def test_restarted_kubelet_adopts_without_duplicates(env):
    user, kubelet, clock = env
    k1 = kubelet(pod_cidr="127.64.3.0/24")
    user.create(pod("keep"))
    drive([k1], clock, lambda: status_of(user, "keep").get("phase") == "Running", what="Running")
    k1.step(0.005)
    ids = [c.id for c in k1.runtime.list_containers()]
    rv = user.get("Pod", "keep", "default")["metadata"]["resourceVersion"]
    k2 = kubelet(pod_cidr="127.64.3.0/24")    # a new process on the same node root
    for _ in range(20):
        k2.step(0.005)
        clock.t += 0.1
    assert [c.id for c in k2.runtime.list_containers()] == ids
    assert user.get("Pod", "keep", "default")["metadata"]["resourceVersion"] == rv
    user.create(pod("another"))
    st = drive([k2], clock, lambda: (s := status_of(user, "another")).get("phase") == "Running" and s,
               what="Running")
    assert st["podIP"] == "127.64.3.3"   # the adopted pod keeps .2


def test_unchanged_status_is_not_posted_again(env):
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("quiet"))
    drive([k], clock, lambda: status_of(user, "quiet").get("phase") == "Running", what="Running")
    k.step(0.01)
    rv = user.get("Pod", "quiet", "default")["metadata"]["resourceVersion"]
    for _ in range(40):     # past several resyncs (fast: 3 s)
        k.step(0.005)
        clock.t += 0.1
    assert user.get("Pod", "quiet", "default")["metadata"]["resourceVersion"] == rv


def test_an_unchanged_node_status_is_not_rebuilt_and_a_change_is_posted(env, monkeypatch):
    from node.kubelet import node_status
    user, kubelet, clock = env
    k = kubelet()
    hb = k.heartbeat
    built = []
    real = node_status.node_status
    monkeypatch.setattr(node_status, "node_status", lambda *a, **kw: built.append(1) or real(*a, **kw))
    rv = user.get("Node", "node-1")["metadata"]["resourceVersion"]
    for _ in range(3):
        hb._update_status(clock.mono())
    assert built == [1]                          # found unchanged once, then not built again
    assert user.get("Node", "node-1")["metadata"]["resourceVersion"] == rv
    k.cfg.disk_pressure = True                   # an input changed: built and posted
    hb._update_status(clock.mono())
    assert built == [1, 1]
    conds = {c["type"]: c["status"] for c in user.get("Node", "node-1")["status"]["conditions"]}
    assert conds["DiskPressure"] == "True"
    hb._update_status(clock.mono())              # against the new posted status: built once more
    hb._update_status(clock.mono())
    assert built == [1, 1, 1]
    clock.t += FAST.node_status_report_frequency  # the report frequency posts it regardless
    hb._update_status(clock.mono())
    assert built == [1, 1, 1, 1]
    assert user.get("Node", "node-1")["metadata"]["resourceVersion"] != rv


def test_force_deleted_pod_containers_are_removed(env):
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("forced"))
    drive([k], clock, lambda: status_of(user, "forced").get("phase") == "Running", what="Running")
    user.delete("Pod", "forced", "default", grace_period_seconds=0)
    drive([k], clock, lambda: not k.runtime.list_pod_sandboxes(), what="sandbox removed")
    assert not k.runtime.list_containers()


def test_deleted_node_is_registered_again(env):
    user, kubelet, clock = env
    k = kubelet()
    user.delete("Node", "node-1")

    def back() -> bool:
        try:
            return bool(user.get("Node", "node-1"))
        except APIError:
            return False
    drive([k], clock, back, what="node registered again")


def test_step_survives_a_lost_apiserver(mem_server, tmp_path):
    clock = FakeClock()
    c = Client(mem_server.address, component="kubelet", node="n", timeout=0.2, retries=0)
    k = Kubelet(c, FAST, "n", root_dir=str(tmp_path / "n"), clock=clock.mono, wall=clock.wall)
    k.start()
    mem_server.stop()
    for _ in range(10):
        k.step(0.005)
        clock.t += 0.5
    c.close()


def test_admission_counts_admitted_pods(env):
    user, kubelet, clock = env
    k = kubelet(pods=1)
    user.create(pod("first"))
    drive([k], clock, lambda: status_of(user, "first").get("phase") == "Running", what="Running")
    user.create(pod("second"))
    st = drive([k], clock, lambda: (s := status_of(user, "second")).get("phase") == "Failed" and s,
               what="rejected")
    assert st["reason"] == "OutOfpods"
    events = [e for e in user.list("Event", "default")["items"] if e["reason"] == "OutOfpods"]
    assert events and events[0]["type"] == "Warning"


def test_the_echo_of_its_own_status_write_does_not_sync_a_pod(env, monkeypatch):
    """The kubelet syncs a pod for a change of its spec, labels, annotations or deletion, and
    for a status it did not write; not for the watch's echo of its own status write."""
    user, kubelet, clock = env
    k = kubelet()
    user.create(pod("echo"))
    drive([k], clock, lambda: status_of(user, "echo").get("phase") == "Running", what="Running")
    synced: list[str] = []
    real = k._sync_pod
    monkeypatch.setattr(k, "_sync_pod", lambda ns, name: synced.append(name) or real(ns, name))
    cur = user.get("Pod", "echo", "default")
    old = {**cur, "status": {**cur["status"], "phase": "Pending"}}
    k.dirty.clear()
    k._on_pod_update(old, cur)                     # the status is the one this kubelet wrote
    assert not k.dirty
    other = {**cur, "status": {**cur["status"], "reason": "SomeoneElse"}}
    k._on_pod_update(cur, other)                   # a status it did not write
    assert k.dirty == {("default", "echo")}
    k.dirty.clear()
    relabelled = {**cur, "metadata": {**cur["metadata"], "labels": {"a": "b"}}}
    k._on_pod_update(cur, relabelled)
    assert k.dirty == {("default", "echo")}
    k.dirty.clear()
    user.patch("Pod", "echo", {"metadata": {"labels": {"tier": "web"}}}, namespace="default")
    drive([k], clock, lambda: "echo" in synced, what="a sync for the label change")
