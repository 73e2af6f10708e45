"""emulator.netem: rules, links, the wrapped connection, and the client's behaviour on
a lossy, duplicating, reordering bus (retransmission, watch seq gaps, resume)."""
from __future__ import annotations

import random
from typing import Any

import pytest

from emulator import netem
from emulator.client import Client
from emulator.netem import Link, LinkTable, NetemConnection, RuleError, check_rule, sample_delay
from tests.conftest import poll_for


class FakeConn:
    """A ClientTransport that records sends and returns queued frames."""

    def __init__(self) -> None:
        self.address = "mem://fake"
        self.sent: list[bytes] = []
        self.incoming: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def recv(self, timeout: float) -> bytes | None:
        return self.incoming.pop(0) if self.incoming else None

    def reconnect(self) -> None:
        pass

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# -- rules ------------------------------------------------------------------
@pytest.mark.parametrize("rule, field", [
    ({"peers": 3}, "peers"),
    ({"peers": "*", "drop": 1.5}, "drop"),
    ({"peers": "*", "dir": "sideways"}, "dir"),
    ({"peers": "*", "rate": 0}, "rate"),
    ({"peers": "*", "delay": {"dist": "pareto", "mean": 1}}, "delay.dist"),
    ({"peers": "*", "delay": {"mean": -1}}, "delay.mean"),
])
def test_bad_rules_name_the_field(rule: dict, field: str) -> None:
    with pytest.raises(RuleError, match=f"^{field}:"):
        check_rule(rule)


def test_delay_distributions_have_their_means() -> None:
    rng = random.Random(1)
    n = 20000
    for dist, mean, jitter in (("constant", 0.2, 0.0), ("uniform", 0.2, 0.05), ("normal", 0.2, 0.05),
                               ("exponential", 0.2, 0.0)):
        draws = [sample_delay({"dist": dist, "mean": mean, "jitter": jitter}, rng) for _ in range(n)]
        assert min(draws) >= 0
        assert abs(sum(draws) / n - mean) < 0.01, dist
    uni = [sample_delay({"dist": "uniform", "mean": 0.2, "jitter": 0.05}, rng) for _ in range(1000)]
    assert 0.15 <= min(uni) and max(uni) <= 0.25


def test_table_matches_peers_and_star_excludes_self() -> None:
    t = LinkTable()
    t.set_rules("node-1", [{"peers": "*", "drop": 1.0}])
    t.set_rules("node-2", [{"peers": ["apiserver"], "drop": 0.5}])
    assert t.link("node-1", "apiserver") is not None
    assert t.link("node-1", "node-1") is None
    assert t.link("node-2", "node-3") is None
    assert t.link("node-3", "apiserver") is None
    gen = t.generation
    t.set_rules("node-1", [])
    assert t.link("node-1", "apiserver") is None and t.generation > gen


def test_losses_compose_and_direction_is_kept() -> None:
    link = Link([{"peers": "*", "drop": 0.5, "dir": "out"}, {"peers": "*", "drop": 0.5, "dir": "both"}],
                random.Random(0))
    assert link.ways["out"].drop == pytest.approx(0.75)
    assert link.ways["in"].drop == pytest.approx(0.5)


def test_fifo_without_reorder_and_overtaking_with_it() -> None:
    rng = random.Random(3)
    fifo = Link([{"peers": "*", "delay": {"dist": "uniform", "mean": 0.2, "jitter": 0.15}}], rng)
    times = [fifo.depart(10, 100.0 + i * 0.001, "out")[0] for i in range(200)]
    assert times == sorted(times)
    reo = Link([{"peers": "*", "reorder": 0.5, "delay": {"mean": 0.1}}], rng)
    times = [reo.depart(10, 100.0 + i * 0.001, "out")[0] for i in range(200)]
    assert times != sorted(times)


def test_rate_serialises_messages() -> None:
    link = Link([{"peers": "*", "rate": 1000.0}], random.Random(0))
    t1 = link.depart(500, 0.0, "out")[0]
    t2 = link.depart(500, 0.0, "out")[0]
    assert t1 == pytest.approx(0.5) and t2 == pytest.approx(1.0)


def test_duplicate_gives_two_copies() -> None:
    link = Link([{"peers": "*", "duplicate": 1.0}], random.Random(0))
    assert len(link.depart(10, 0.0, "out")) == 2
    assert len(link.depart(10, 0.0, "in")) == 2


# -- the wrapped connection -------------------------------------------------
def test_connection_holds_delayed_frames_until_due() -> None:
    table, clock, inner = LinkTable(), Clock(), FakeConn()
    table.set_rules("node-1", [{"peers": ["apiserver"], "delay": {"mean": 0.2}, "dir": "out"}])
    conn = NetemConnection(inner, "node-1", table=table, clock=clock)
    assert conn.next_due() is None
    conn.send(b"a")
    assert inner.sent == [] and conn.next_due() == pytest.approx(100.2)
    clock.t += 0.1
    conn.recv(0)
    assert inner.sent == []
    clock.t += 0.11
    conn.recv(0)
    assert inner.sent == [b"a"]


def test_connection_partition_drops_both_ways_and_heals() -> None:
    table, clock, inner = LinkTable(), Clock(), FakeConn()
    conn = NetemConnection(inner, "node-1", table=table, clock=clock)
    table.set_rules("node-1", [{"peers": ["apiserver"], "drop": 1.0}])
    assert conn.lossy
    conn.send(b"req")
    inner.incoming.append(b"reply")
    assert conn.recv(0) is None
    assert inner.sent == [] and conn.dropped == 2
    table.set_rules("node-1", [])
    assert not conn.lossy
    conn.send(b"req2")
    inner.incoming.append(b"reply2")
    assert inner.sent == [b"req2"] and conn.recv(0) == b"reply2"


def test_stream_hold_turns_loss_into_retransmission_and_cut_into_none() -> None:
    table = LinkTable()
    table.set_rules("node-1", [{"peers": ["node-2"], "drop": 1.0}])
    assert netem.stream_hold("node-1", "node-2", 100, "out", table=table) is None
    assert netem.stream_hold("node-1", "node-3", 100, "out", table=table) == 0.0
    table.set_rules("node-1", [{"peers": ["node-2"], "drop": 0.5, "delay": {"mean": 0.05}}])
    holds = [netem.stream_hold("node-1", "node-2", 100, "out", random.Random(i), table=table)
             for i in range(200)]
    assert min(holds) == pytest.approx(0.05)
    assert any(h >= 0.05 + netem.RTO for h in holds)


# -- the client on a faulty bus (a real apiserver in a thread) ---------------
@pytest.fixture
def faulty_table(monkeypatch: pytest.MonkeyPatch) -> LinkTable:
    table = LinkTable()
    table.enabled = True
    monkeypatch.setattr(netem, "TABLE", table)
    return table


def _faulty_client(address: str, table: LinkTable, seed: int) -> Client:
    c = Client(address, component="kubelet", node="node-1", timeout=10.0)
    assert isinstance(c._conn, NetemConnection)
    c._conn.table = table
    c._conn.rng = random.Random(seed)
    return c


def _cm(name: str, i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"i": str(i)}}


@pytest.mark.timeout(120)
def test_client_writes_through_loss_and_duplication_exactly_once(apiserver_addr: str,
                                                                  faulty_table: LinkTable) -> None:
    faulty_table.set_rules("node-1", [{"peers": ["apiserver"], "drop": 0.2, "duplicate": 0.2}])
    c = _faulty_client(apiserver_addr, faulty_table, 7)
    try:
        for i in range(30):
            c.create(_cm(f"cm-{i}", i))
        assert c.retransmits > 0
    finally:
        c.close()
    with Client(apiserver_addr) as clean:
        names = sorted(o["metadata"]["name"] for o in clean.list("ConfigMap", "default")["items"])
    assert names == sorted(f"cm-{i}" for i in range(30))


@pytest.mark.timeout(120)
def test_watch_ends_with_the_stores_state_through_loss_duplication_and_reorder(
        apiserver_addr: str, faulty_table: LinkTable) -> None:
    """Every watch event is delivered once and in order, or the watch resumes: the
    watcher's view equals the store after a storm of writes on a faulty link."""
    c = _faulty_client(apiserver_addr, faulty_table, 11)
    writer = Client(apiserver_addr)
    try:
        w = c.watch("ConfigMap", "default")
        seen: dict[str, dict] = {}

        def drain_events(timeout: float = 0.0) -> None:
            c.poll(max(timeout, 0.001))
            ev = w.next(0)
            while ev is not None:
                obj = ev["object"]
                if ev["type"] in ("ADDED", "MODIFIED"):
                    seen[obj["metadata"]["name"]] = obj
                elif ev["type"] == "DELETED":
                    seen.pop(obj["metadata"]["name"], None)
                ev = w.next(0)

        faulty_table.set_rules("node-1", [{"peers": ["apiserver"], "drop": 0.2, "duplicate": 0.2,
                                           "reorder": 0.3, "delay": {"mean": 0.005}}])
        for i in range(100):
            name = f"cm-{i % 40}"
            try:
                writer.create(_cm(name, i))
            except Exception:
                writer.patch("ConfigMap", name, {"data": {"i": str(i)}}, "default")
            if i % 7 == 0:
                try:
                    writer.delete("ConfigMap", f"cm-{(i * 3) % 40}", "default")
                except Exception:
                    pass   # not there (yet)
            drain_events()

        def drain() -> bool:
            drain_events(0.2)
            store = {o["metadata"]["name"]: o for o in writer.list("ConfigMap", "default")["items"]}
            return ({k: v["metadata"]["resourceVersion"] for k, v in seen.items()}
                    == {k: v["metadata"]["resourceVersion"] for k, v in store.items()})

        faulty_table.set_rules("node-1", [])   # healed: the last gap is found by the next event or bookmark
        poll_for(drain, 30, interval=0)
        assert c._conn.dropped > 0
    finally:
        c.close()
        writer.close()
