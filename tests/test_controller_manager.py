"""The controller-manager: shared informers, the controller registry, the process entry."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import structlog

from control.controllers import manager
from control.controllers.manager import ControllerContext, ControllerManager, SharedInformers
from emulator.client import Client
from emulator.process import StopFlag
from emulator.profiles import FAST
from tests.conftest import poll_for


class CountingController:
    """A stand-in for a later controller (replicaset, endpoints...)."""
    name = "counting"

    def __init__(self, ctx: ControllerContext) -> None:
        self.nodes = ctx.informers.informer("Node")
        self.seen: list[str] = []
        self.syncs = 0
        self.nodes.add_event_handler(lambda n: self.seen.append(n["metadata"]["name"]))

    def start(self) -> None:
        pass

    def next_due(self) -> float:
        return float("inf")

    def sync(self) -> None:
        self.syncs += 1


@pytest.fixture
def with_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(manager.CONTROLLERS, "counting", CountingController)


def test_shared_informers_give_one_informer_per_kind(mem_server) -> None:  # type: ignore[no-untyped-def]
    with Client(mem_server.address) as c:
        inf = SharedInformers(c)
        assert inf.informer("Node") is inf.informer("Node")
        assert inf.informer("Lease", "kube-node-lease") is not inf.informer("Lease")


def test_controllers_share_informers_and_all_sync(mem_server, with_counting) -> None:  # type: ignore[no-untyped-def]
    with Client(mem_server.address) as admin, Client(mem_server.address) as c:
        cm = ControllerManager(c, FAST, controllers=("nodelifecycle", "counting"))
        node_informers = [i for k, i in cm.informers._informers.items() if k[0] == "Node"]
        assert len(node_informers) == 1
        cm.start()
        admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        counting = cm.controllers[1]
        deadline = time.monotonic() + 5
        while "n1" not in counting.seen and time.monotonic() < deadline:   # type: ignore[attr-defined]
            cm.step(0.05)
        assert counting.seen == ["n1"]   # type: ignore[attr-defined]
        assert counting.syncs > 0   # type: ignore[attr-defined]
        assert cm.controllers[0].nodes is counting.nodes   # type: ignore[attr-defined]


def test_unknown_controller_is_refused(mem_server) -> None:  # type: ignore[no-untyped-def]
    with Client(mem_server.address) as c:
        with pytest.raises(ValueError, match="nodelifecycle"):
            ControllerManager(c, FAST, controllers=("replicaset-typo",))


def test_step_survives_a_lost_apiserver(threaded_server) -> None:  # type: ignore[no-untyped-def]
    srv = threaded_server(f"mem://cm-lost-{time.monotonic_ns()}", None)
    c = Client(srv.address, timeout=0.2, retries=0)
    try:
        clock = [0.0]
        cm = ControllerManager(c, FAST, clock=lambda: clock[0])
        cm.start()
        Client(srv.address).create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        srv.stop()
        for _ in range(5):
            clock[0] += 10    # past the grace period: the controller tries to write and fails
            cm.step(0.01)
    finally:
        c.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_run_entry_marks_a_silent_node_unknown(threaded_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               restore_logging: None) -> None:
    srv = threaded_server(f"mem://cm-run-{time.monotonic_ns()}", None)
    admin = Client(srv.address)
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    n = admin.get("Node", "n1")
    beat = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    n["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": beat,
                                   "lastTransitionTime": beat}]}
    admin.update_status(n)
    stop = StopFlag(install=False)
    log = tmp_path / "controller-manager.log"
    t = threading.Thread(target=manager.run, args=(srv.address, "fast"),
                         kwargs={"log_path": str(log), "lab": "t", "stop": stop}, daemon=True)
    t.start()
    try:
        poll_for(lambda: {x["key"] for x in admin.get("Node", "n1")["spec"].get("taints") or []}
                 == {"node.kubernetes.io/unreachable"}, timeout=5 + FAST.node_monitor_grace_period,
                 what="unreachable taints from the fast profile")
    finally:
        stop.set()
        t.join(5)
        admin.close()
    assert not t.is_alive()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    events = {ln["event"] for ln in lines}
    assert {"controller_manager_started", "node_not_ready", "taint_added"} <= events
    nn = next(ln for ln in lines if ln["event"] == "node_not_ready")
    assert (nn["kind"], nn["name"], nn["component"], nn["lab"]) == ("Node", "n1", "controller-manager", "t")
