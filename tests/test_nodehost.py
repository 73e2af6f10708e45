"""The node host in-process (``node.host``): three nodes in one loop against a real
apiserver in a thread; node operations; a node under netem rules gets a thread of
its own and comes back to the loop when they are gone."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from emulator import clock, ctl, netem
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import get_profile
from node.host import NodeHost
from node.host_ctl import NodeCtl
from node.host_node import NodeSpec


def ready(client: Client, node: str) -> str | None:
    try:
        obj = client.get("Node", node)
    except APIError:
        return None
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"]
    return None


def drive(host: NodeHost, predicate, what: str, timeout: float = 20.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        host.run_once(0.05)


@pytest.fixture
def host(apiserver_addr: str, tmp_path: Path):
    specs = [NodeSpec(f"node-{i}", str(tmp_path / f"node-{i}"), node_ip=f"127.32.0.{i}",
                      pod_cidr=f"127.64.{i}.0/24") for i in (1, 2, 3)]
    h = NodeHost(apiserver_addr, specs, get_profile("fast"))
    h.start()
    yield h
    h.close()


@pytest.mark.timeout(60)
def test_three_nodes_in_one_loop_and_node_operations(host: NodeHost, apiserver_addr: str) -> None:
    with Client(apiserver_addr) as c:
        drive(host, lambda: all(ready(c, f"node-{i}") == "True" for i in (1, 2, 3)), "3 nodes Ready")
        for i in (1, 2, 3):   # each node has its own directory, Lease and proxy table
            assert c.get("Lease", f"node-{i}", "kube-node-lease")["spec"]["holderIdentity"] == f"node-{i}"
            assert (Path(host.nodes[f"node-{i}"].spec.root_dir)).is_dir()
        assert len({id(n.current.client) for n in host.nodes.values()}) == 3

        with pytest.raises(ValueError, match='node: Not found: "node-9"'):
            host.command("node-stop", {"node": "node-9"})
        with pytest.raises(ValueError, match="node-1 is already running"):
            host.command("node-start", {"node": "node-1"})
        with pytest.raises(ValueError, match="unknown op 'node-explode'"):
            host.command("node-explode", {"node": "node-1"})

        assert host.command("node-stop", {"node": "node-2"}) == {"node": "node-2", "state": "stopped"}
        assert "node-2" not in host._polled
        lease = c.get("Lease", "node-2", "kube-node-lease")["spec"]["renewTime"]
        renewed = c.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"]
        drive(host, lambda: c.get("Lease", "node-1", "kube-node-lease")["spec"]["renewTime"] != renewed,
              "node-1 renews its Lease")
        assert c.get("Lease", "node-2", "kube-node-lease")["spec"]["renewTime"] == lease
        host.command("node-start", {"node": "node-2"})
        drive(host, lambda: c.get("Lease", "node-2", "kube-node-lease")["spec"]["renewTime"] != lease,
              "node-2's fresh kubelet renews its Lease")

        host.command("node-pause", {"node": "node-3"})
        assert host.command("status", {}) == {"node-1": "running", "node-2": "running", "node-3": "paused"}
        assert "node-3" not in host._polled
        host.command("node-resume", {"node": "node-3"})
        assert host.command("status", {})["node-3"] == "running"


@pytest.mark.timeout(60)
def test_a_node_under_netem_rules_runs_on_a_thread_until_they_go(host: NodeHost, apiserver_addr: str) -> None:
    with Client(apiserver_addr) as c:
        drive(host, lambda: all(ready(c, f"node-{i}") == "True" for i in (1, 2, 3)), "3 nodes Ready")
        run = host.nodes["node-3"].current
        try:
            netem.TABLE.set_rules("node-3", [{"peers": ["node-1"], "delay": {"mean": 0.01}}])
            drive(host, lambda: run.threaded, "node-3 detached onto its own thread")
            assert "node-3" not in host._polled
            lease = c.get("Lease", "node-3", "kube-node-lease")["spec"]["renewTime"]
            drive(host, lambda: c.get("Lease", "node-3", "kube-node-lease")["spec"]["renewTime"] != lease,
                  "node-3 renews its Lease from its thread")
        finally:
            netem.TABLE.set_rules("node-3", [])
        drive(host, lambda: not run.threaded and "node-3" in host._polled, "node-3 back in the loop")


@pytest.mark.timeout(60)
def test_a_frame_left_after_a_turn_gets_a_turn_of_its_own(host: NodeHost, apiserver_addr: str) -> None:
    """A ZeroMQ FD signals once: a frame that came during a node's turn, and was not read
    in it, must still wake the node (the host reads EVENTS after every turn)."""
    import math
    import time

    from node.host import _readable
    with Client(apiserver_addr) as c:
        drive(host, lambda: all(ready(c, f"node-{i}") == "True" for i in (1, 2, 3)), "3 nodes Ready")
    node = host.nodes["node-1"]
    run = node.current
    real_step = run.step
    turns: list[bool] = []

    def step_that_leaves_a_reply(wait: float = 0.0) -> None:
        turns.append(_readable(run.socket()))
        if len(turns) == 1:   # ask, and let the reply arrive without reading it
            run.client.post("ping")
            sock = run.socket()
            deadline = time.monotonic() + 10
            while not sock.poll(10) and time.monotonic() < deadline:
                pass
            return
        real_step(wait)
    run.step = step_that_leaves_a_reply  # type: ignore[method-assign]
    for other in ("node-2", "node-3"):   # only node-1 has anything to do
        host._due[other] = math.inf
    host._schedule(node, time.monotonic())
    host.run_once(0.5)   # node-1's timer: the turn that leaves the reply unread
    assert turns == [False] and node in host._again
    for name in host._due:
        host._due[name] = math.inf   # no timer is due: only the frame can bring a turn
    host.run_once(5.0)
    assert turns == [False, True]


class StandInNode:
    """What a packed node's ctl handlers touch: its clock and whether it runs."""

    def __init__(self) -> None:
        self.clock = clock.WallClock()
        self.running = True


@pytest.mark.timeout(30)
def test_a_changed_state_file_is_applied_at_the_next_check_every_state_recheck_seconds(tmp_path: Path) -> None:
    """The host applies a node's saved faults at start and, for a reload it missed
    (paused), re-applies a changed state file at its next check: every
    ``ctl.STATE_RECHECK`` seconds, as a node process's ctl thread, not every second
    (a ``stat`` per node each time)."""
    run_dir = tmp_path / "run"
    (run_dir / "ctl").mkdir(parents=True)
    state = ctl.state_path(run_dir, "node-1")
    state.write_text(json.dumps({"clock": {"offset": 30.0}}))
    node = StandInNode()
    nctl = NodeCtl(str(run_dir), {"node-1": node})
    try:
        assert node.clock.skew() == pytest.approx(30.0)   # applied at start
        nctl.check_state(100.0)   # the first check: nothing changed
        state.write_text(json.dumps({"clock": {"offset": 60.0}}))
        os.utime(state, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))   # a new mtime
        nctl.check_state(100.0 + ctl.STATE_RECHECK - 0.5)
        assert node.clock.skew() == pytest.approx(30.0), "checked before STATE_RECHECK had passed"
        nctl.check_state(100.0 + ctl.STATE_RECHECK)
        assert node.clock.skew() == pytest.approx(60.0)
    finally:
        nctl.close()
