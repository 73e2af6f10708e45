"""The Scheduler component against a real apiserver on the in-process transport."""
from __future__ import annotations

import random
import time
from typing import Iterator

import pytest

from control.scheduler.scheduler import Scheduler, run
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import poll_for
from tests.test_scheduler_logic import node as node_obj


def pod(name, cpu="100m", **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu}}}], **spec}}


class Env:
    def __init__(self, address: str) -> None:
        self.user = Client(address)
        self.sc = Client(address, component="scheduler")
        self.sched = Scheduler(self.sc, FAST, rng=random.Random(0))

    def node(self, name, **kw):
        n = node_obj(name, **kw)
        created = self.user.create({k: v for k, v in n.items() if k != "status"})
        created["status"] = n["status"]
        return self.user.update_status(created)

    def until(self, pred, timeout=5.0, what="condition"):
        def turn():
            self.sched.step(0.02)
            return pred()
        return poll_for(turn, timeout, interval=0, what=what)

    def node_of(self, name):
        return self.user.get("Pod", name, "default")["spec"].get("nodeName")

    def events(self, name, reason):
        return [e for e in self.user.list("Event", "default")["items"]
                if e["involvedObject"]["name"] == name and e["reason"] == reason]

    def close(self):
        self.sched.stop()
        self.user.close()
        self.sc.close()


@pytest.fixture
def env(mem_server) -> Iterator[Env]:
    e = Env(mem_server.address)
    yield e
    e.close()


def test_pods_get_bound_and_get_the_scheduled_event(env):
    env.node("node-1")
    env.node("node-2")
    env.sched.start()
    for i in range(20):
        env.user.create(pod(f"web-{i}"))
    env.until(lambda: all(env.node_of(f"web-{i}") for i in range(20)), what="20 pods bound")
    placed = {env.node_of(f"web-{i}") for i in range(20)}
    assert placed == {"node-1", "node-2"}
    p = env.user.get("Pod", "web-3", "default")
    cond = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"][0]
    assert cond["status"] == "True"
    ev = env.until(lambda: env.events("web-3", "Scheduled"), what="Scheduled event")[0]
    assert ev["type"] == "Normal" and ev["source"]["component"] == "default-scheduler"
    assert ev["message"] == f"Successfully assigned default/web-3 to {p['spec']['nodeName']}"
    assert env.sched.cache.nodes["node-1"].requested[0] + env.sched.cache.nodes["node-2"].requested[0] == 2000


def test_oversized_pod_is_unschedulable_until_a_big_node_joins(env):
    env.node("node-1")
    env.node("node-2")
    env.sched.start()
    env.user.create(pod("big", cpu="16"))
    msg = ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
           "2 Preemption is not helpful for scheduling.")

    def condition():
        for c in env.user.get("Pod", "big", "default")["status"].get("conditions") or []:
            if c["type"] == "PodScheduled":
                return c
        return None
    cond = env.until(condition, what="PodScheduled condition")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable" and cond["message"] == msg
    ev = env.until(lambda: env.events("big", "FailedScheduling"), what="FailedScheduling")[0]
    assert ev["type"] == "Warning" and ev["message"] == msg
    assert env.user.get("Pod", "big", "default")["status"]["phase"] == "Pending"
    assert ("default", "big") in env.sched.queue.unschedulable
    env.node("node-big", cpu="32")
    env.until(lambda: env.node_of("big") == "node-big", what="big pod bound to node-big")


def test_pod_for_another_scheduler_is_ignored(env):
    env.node("node-1")
    env.sched.start()
    env.user.create(pod("other", schedulerName="my-scheduler"))
    env.user.create(pod("mine"))
    env.until(lambda: env.node_of("mine"), what="mine bound")
    for _ in range(10):
        env.sched.step(0.01)
    assert env.node_of("other") is None
    assert ("default", "other") not in env.sched.queue


def test_node_selector_is_respected(env):
    env.node("node-hdd", labels={"disk": "hdd"})
    env.node("node-ssd", labels={"disk": "ssd"})
    env.sched.start()
    for i in range(6):
        env.user.create(pod(f"db-{i}", nodeSelector={"disk": "ssd"}))
    env.until(lambda: all(env.node_of(f"db-{i}") for i in range(6)), what="db pods bound")
    assert {env.node_of(f"db-{i}") for i in range(6)} == {"node-ssd"}


def test_not_ready_and_cordoned_nodes_are_skipped(env):
    env.node("node-down", ready="False")
    env.node("node-cordoned", unschedulable=True)
    env.node("node-ok")
    env.sched.start()
    for i in range(4):
        env.user.create(pod(f"p-{i}"))
    env.until(lambda: all(env.node_of(f"p-{i}") for i in range(4)), what="pods bound")
    assert {env.node_of(f"p-{i}") for i in range(4)} == {"node-ok"}


def test_deleting_a_pod_frees_room_for_an_unschedulable_one(env):
    env.node("node-1", cpu="2")
    env.sched.start()
    env.user.create(pod("first", cpu="1500m"))
    env.until(lambda: env.node_of("first"), what="first bound")
    env.user.create(pod("second", cpu="1500m"))
    env.until(lambda: ("default", "second") in env.sched.queue.unschedulable, what="second unschedulable")
    env.user.delete("Pod", "first", "default", grace_period_seconds=0)
    env.until(lambda: env.node_of("second") == "node-1", what="second bound after delete")


def test_run_entry_stops_on_flag(mem_server):
    class Stop:
        def __init__(self) -> None:
            self.n = 0

        def __bool__(self) -> bool:
            self.n += 1
            return self.n > 5
    assert run(mem_server.address, "fast", stop=Stop()) == 0


def test_step_survives_a_lost_apiserver(threaded_server):
    srv = threaded_server(f"mem://sched-lost-{id(object())}", None)
    user = Client(srv.address)
    sc = Client(srv.address, component="scheduler", timeout=0.3, retries=0)
    sched = Scheduler(sc, FAST, rng=random.Random(0))
    try:
        n = node_obj("node-1")
        created = user.create({k: v for k, v in n.items() if k != "status"})
        created["status"] = n["status"]
        user.update_status(created)
        for i in range(5):
            user.create(pod(f"p-{i}"))
        sched.start()
        assert sched.queue.has_active()
        srv.stop()
        t0 = time.monotonic()
        for _ in range(3):
            sched.step(0.01)      # must not raise, and must not wait a timeout per pod
        assert time.monotonic() - t0 < 5
        assert sched.scheduled == 0 and len(sched.cache.assumed) == 0 and sched.binds_in_flight() == 0
    finally:
        sched.stop()
        user.close()
        sc.close()


def test_unanswered_bindings_fail_after_the_client_timeout_without_blocking(env, monkeypatch):
    env.node("node-1", cpu="64", memory="256Gi")
    for i in range(5):
        env.user.create(pod(f"u-{i}"))
    env.sched.start()
    monkeypatch.setattr(env.sched.client, "timeout", 0.3)
    monkeypatch.setattr(env.sched.client, "take_reply", lambda rid: (False, None))   # replies lost
    t0 = time.monotonic()
    env.sched.step(0)          # sends the five bindings, waits for none of them
    assert time.monotonic() - t0 < 0.3
    assert env.sched.binds_in_flight() == 5 and len(env.sched.cache.assumed) == 5
    env.until(lambda: not env.sched.binds_in_flight(), what="the unanswered bindings to fail")
    assert time.monotonic() - t0 < 3   # one timeout for all of them, not one per pod
    assert env.sched.scheduled == 0 and len(env.sched.cache.assumed) == 0
    # The apiserver did bind them (only the replies were lost): the informer takes them off the queue.
    env.until(lambda: len(env.sched.queue) == 0, what="the bound pods to leave the queue")
    assert all(env.node_of(f"u-{i}") == "node-1" for i in range(5))


def test_one_step_sends_a_whole_batch_and_later_steps_take_the_replies(env):
    env.node("node-1", cpu="64", memory="256Gi")
    for i in range(50):
        env.user.create(pod(f"b-{i}"))
    env.sched.start()
    assert len(env.sched.queue) == 50
    env.sched.step(0)
    assert env.sched.binds_in_flight() + env.sched.scheduled == 50 and not env.sched.queue.has_active()
    env.until(lambda: env.sched.scheduled == 50, what="50 bindings answered")
    assert env.sched.binds_in_flight() == 0
    env.until(lambda: sum(1 for p in env.user.list("Pod", "default")["items"]
                          if p["spec"].get("nodeName")) == 50, what="50 bound")
