"""The kubelet's MemoryPressure, in process: a chaos memory hog under the node root crosses
``memory.available<100Mi``; the condition, the Node events, admission and eviction ranking
(BestEffort before Burstable), then recovery after the transition period."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet import pressure
from node.kubelet.kubelet import Kubelet
from tests.conftest import FakeClock, drive

MI = 2**20


@pytest.fixture
def env(mem_server: Any, tmp_path: Path):
    clients: list[Client] = []
    clock = FakeClock()

    def kubelet(name: str = "node-1", **kw: Any) -> Kubelet:
        c = Client(mem_server.address, component="kubelet", node=name)
        clients.append(c)
        k = Kubelet(c, FAST, name, root_dir=str(tmp_path / "nodes" / name), clock=clock.mono,
                    wall=clock.wall, **kw)
        k.start()
        return k

    user = Client(mem_server.address, component="test")
    clients.append(user)
    yield user, kubelet, clock
    for c in clients:
        c.close()


def pod(name: str, requests: dict | None = None, usage: str | None = None) -> dict:
    c: dict = {"name": "app", "image": "nginx:1.27"}
    if requests:
        c["resources"] = {"requests": requests}
    md: dict = {"name": name, "namespace": "default"}
    if usage:
        md["annotations"] = {"kemu.io/memory-usage": usage}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": {"nodeName": "node-1", "containers": [c]}}


def status(user: Client, name: str) -> dict:
    return user.get("Pod", name, "default").get("status") or {}


def condition(user: Client, typ: str = "MemoryPressure") -> dict:
    return next(c for c in user.get("Node", "node-1")["status"]["conditions"] if c["type"] == typ)


def node_events(user: Client, reason: str) -> list[str]:
    return [e["message"] for e in user.list("Event", "default")["items"]
            if e["involvedObject"].get("kind") == "Node" and e["reason"] == reason]


def test_memory_pressure_on_eviction_order_and_off(env) -> None:
    user, kubelet, clock = env
    k = kubelet(memory="1Gi")
    user.create(pod("burstable", requests={"memory": "64Mi"}))
    user.create(pod("besteffort", usage="10Mi"))
    for n in ("burstable", "besteffort"):
        drive(k, clock, lambda n=n: status(user, n).get("phase") == "Running", what=f"{n} running")
    assert condition(user)["status"] == "False"
    hog = pressure.write_hog(k.root_dir, "f-1", 1024 * MI - 60 * MI)   # 1Gi - 10Mi used - hog: 50Mi left
    cond = drive(k, clock, lambda: (c := condition(user))["status"] == "True" and c, what="MemoryPressure")
    assert (cond["reason"], cond["message"]) == ("KubeletHasInsufficientMemory",
                                                 "kubelet has insufficient memory available")
    assert condition(user, "DiskPressure")["status"] == "False"
    st = drive(k, clock, lambda: (s := status(user, "besteffort")).get("phase") == "Failed" and s,
               what="the BestEffort pod evicted first")
    assert st["reason"] == "Evicted"
    assert st["message"] == ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
                             "Container app was using 10Mi, request is 0, has larger consumption of memory. ")
    assert status(user, "burstable").get("phase") == "Running"
    drive(k, clock, lambda: node_events(user, "NodeHasInsufficientMemory"), what="Node event")
    # under MemoryPressure a BestEffort pod is refused, a Burstable one admitted
    user.create(pod("late-be"))
    st = drive(k, clock, lambda: (s := status(user, "late-be")).get("phase") == "Failed" and s, what="rejected")
    assert (st["reason"], st["message"]) == ("Evicted", "Pod was rejected: The node had condition: [MemoryPressure]. ")
    # the hog still leaves too little: the Burstable pod goes next
    st = drive(k, clock, lambda: (s := status(user, "burstable")).get("phase") == "Failed" and s,
               what="the Burstable pod evicted next")
    assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: 100Mi, available: ")
    os.unlink(hog)
    steps = int((FAST.eviction_pressure_transition_period + 2) / 0.05) + 50
    cond = drive(k, clock, lambda: (c := condition(user))["status"] == "False" and c, steps=steps,
                 what="no MemoryPressure")
    assert (cond["reason"], cond["message"]) == ("KubeletHasSufficientMemory",
                                                 "kubelet has sufficient memory available")
    drive(k, clock, lambda: node_events(user, "NodeHasSufficientMemory"), what="Node event")
