"""The kubelet's status manager: pod status writes pipelined, one in flight per pod, in order."""
from __future__ import annotations

import pytest

from conftest import FakeClock, poll_for
from emulator.api import errors
from emulator.api.errors import APIError
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


class SilentClient:
    """A client whose requests are never answered (or, with ``down``, cannot be sent)."""

    def __init__(self, down: bool = False) -> None:
        self.down, self.sent, self.forgotten = down, [], []

    def send(self, op: str, **args: object) -> int:
        if self.down:
            raise APIError(errors.UNAVAILABLE, "cannot connect")
        self.sent.append((op, args))
        return len(self.sent)

    def take_reply(self, rid: int) -> tuple[bool, object]:
        return False, None

    def forget(self, rid: int) -> None:
        self.forgotten.append(rid)


POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "status": {"phase": "Pending"}}


def test_an_unanswered_write_is_abandoned_after_the_timeout_and_the_pod_resynced():
    clock, c = FakeClock(), SilentClient()
    sm = StatusManager(c, clock.mono, timeout=5)
    sm.set(POD, running(2))
    assert sm.next_due() == clock.mono() + 5
    clock.t += 4.9
    assert sm.collect(clock.mono()) == set()            # not yet given up
    clock.t += 0.2
    assert sm.collect(clock.mono()) == {("default", "web")}
    assert c.forgotten == [1] and sm.pending() == 0 and sm.next_due() is None
    sm.set(POD, running(2))                             # the resync's write goes out again
    assert len(c.sent) == 2 and c.sent[1][1]["subresource"] == "status"


def test_a_write_that_cannot_be_sent_resyncs_the_pod_on_the_next_turn():
    clock = FakeClock()
    sm = StatusManager(SilentClient(down=True), clock.mono, timeout=5)
    sm.set(POD, running(2))                             # never raises
    assert sm.collect(clock.mono()) == {("default", "web")} and sm.pending() == 0
