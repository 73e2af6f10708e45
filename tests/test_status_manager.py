"""The kubelet's status manager: pod status writes pipelined, one in flight per pod, in order."""
from __future__ import annotations

import pytest

from conftest import FakeClock, poll_for
from emulator.client import Client
from node.kubelet.status_manager import StatusManager

pytestmark = pytest.mark.timeout(60)


def running(n: int) -> dict:
    return {"phase": "Running", "podIP": f"127.64.0.{n}"}


@pytest.fixture
def client(mem_server):
    c = Client(mem_server.address, component="test", timeout=5)
    yield c
    c.close()


@pytest.fixture
def pod(client):
    return client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                          "spec": {"containers": [{"name": "app", "image": "busybox"}]}})


def settle(client: Client, sm: StatusManager, clock: FakeClock) -> set:
    resync: set = set()

    def done() -> bool:
        client.poll(0.01)
        resync.update(sm.collect(clock.mono()))
        return sm.pending() == 0
    poll_for(done, 10)
    return resync


def test_a_status_is_sent_without_waiting_and_recorded_when_answered(client, pod):
    clock = FakeClock()
    sm = StatusManager(client, clock.mono, timeout=5)
    sm.set(pod, running(2))
    assert sm.pending() == 1 and sm.written == {}          # sent, not waited for
    assert settle(client, sm, clock) == set()
    assert sm.written[pod["metadata"]["uid"]] == running(2)
    assert client.get("Pod", "web", "default")["status"]["podIP"] == "127.64.0.2"


def test_one_write_in_flight_per_pod_and_the_newest_status_wins(client, pod):
    clock = FakeClock()
    sm = StatusManager(client, clock.mono, timeout=5)
    sm.set(pod, running(2))
    sm.set(pod, running(3))
    sm.set(pod, running(4))
    uid = pod["metadata"]["uid"]
    assert len(sm.inflight) == 1 and sm.inflight[uid].status == running(2)
    assert sm.wanted[uid][1] == running(4)                  # 3 was superseded before it was sent
    settle(client, sm, clock)
    assert client.get("Pod", "web", "default")["status"]["podIP"] == "127.64.0.4"
    sm.set(pod, running(4))                                 # already written: nothing sent
    assert sm.pending() == 0


def test_the_pods_own_status_is_not_written_again(client, pod):
    sm = StatusManager(client, FakeClock().mono, timeout=5)
    sm.set(pod, pod["status"])
    assert sm.pending() == 0


def test_a_deleted_pod_is_forgotten_not_resynced(client, pod):
    clock = FakeClock()
    client.delete("Pod", "web", "default", grace_period_seconds=0)
    sm = StatusManager(client, clock.mono, timeout=5)
    sm.set(pod, running(2))
    assert settle(client, sm, clock) == set()
    assert sm.written == {} and sm.latest(pod["metadata"]["uid"]) is None


def test_an_unanswered_write_is_abandoned_after_the_timeout_and_the_pod_resynced(threaded_server):
    srv = threaded_server()
    c = Client(srv.address, component="test", timeout=5, retries=0)
    try:
        pod = c.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"containers": [{"name": "app", "image": "busybox"}]}})
        srv.stop()                                          # nobody will answer
        clock = FakeClock()
        sm = StatusManager(c, clock.mono, timeout=5)
        sm.set(pod, running(2))
        assert sm.next_due() == clock.mono() + 5
        assert sm.collect(clock.mono()) == set()            # not yet given up
        clock.t += 5.1
        assert sm.collect(clock.mono()) == {("default", "web")}
        assert sm.pending() == 0 and sm.next_due() is None and not c._outstanding
        sm.set(pod, running(2))                             # the resync's write goes out again
        assert sm.pending() == 1
    finally:
        c.close()
