"""Watch event batches: several events to one peer in one frame, for clients that ask.

The hub's contract (``control.apiserver.watch``), the frame's shape
(``emulator.protocol.pack_event_batch``) and both ends over the in-process
transport: a client that asks gets the same events, in the same order, in
fewer frames; one that does not ask gets one frame per event.
"""
from __future__ import annotations

import msgpack
import pytest

from control.apiserver.watch import Watcher, WatchHub
from control.storage.store import ADDED, MODIFIED, Event
from emulator import protocol
from emulator.client import Client
from tests.conftest import poll_for

pytestmark = pytest.mark.timeout(60)


def _pod(name: str, node: str = "") -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node}}


def _manifest(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _events(n: int, start: int = 1) -> list[Event]:
    return [Event(start + i, ADDED, "Pod", _pod(f"p{start + i}"), None) for i in range(n)]


def _hub(ok: bool = True) -> tuple[WatchHub, list[tuple[bytes, object]]]:
    frames: list[tuple[bytes, object]] = []

    def send(peer: bytes, frame: bytes) -> bool:
        frames.append((peer, msgpack.unpackb(frame)))
        return ok
    return WatchHub(send), frames


def test_a_batching_peer_gets_one_frame_a_plain_peer_one_per_event() -> None:
    hub, frames = _hub()
    hub.batching.add(b"batch")
    for wid, peer in ((1, b"batch"), (2, b"batch"), (3, b"plain")):
        hub.add(Watcher(wid, peer, "Pod", None, None, None, True))
    hub.dispatch(_events(5))
    batched = [f for p, f in frames if p == b"batch"]
    plain = [f for p, f in frames if p == b"plain"]
    assert len(batched) == 1 and isinstance(batched[0], list)
    # Both watches' events, each watch numbered from 1 and in revision order.
    for wid in (1, 2):
        mine = [m for m in batched[0] if m["watch"] == wid]
        assert [m["seq"] for m in mine] == [1, 2, 3, 4, 5]
        assert [m["object"]["metadata"]["name"] for m in mine] == ["p1", "p2", "p3", "p4", "p5"]
    assert [m["seq"] for m in plain] == [1, 2, 3, 4, 5] and all(isinstance(m, dict) for m in plain)
    assert hub.events_sent == 15 and hub.events_by_kind() == {"Pod": 15}


def test_replies_and_events_share_a_frame_replies_first() -> None:
    hub, frames = _hub()
    hub.batching.add(b"batch")
    hub.add(Watcher(1, b"batch", "Pod", None, None, None, True))
    hub.queue_reply(b"batch", protocol.ok_reply(7, {"x": 1}))
    hub.queue_reply(b"batch", protocol.ok_reply(8, {"x": 2}))
    hub.dispatch(_events(2))
    (_, batch), = frames
    assert [m.get("id", m.get("seq")) for m in batch] == [7, 8, 1, 2]
    assert hub.events_sent == 2


def test_a_queued_reply_goes_out_when_no_watcher_is_left() -> None:
    hub, frames = _hub()
    hub.batching.add(b"batch")
    hub.queue_reply(b"batch", protocol.ok_reply(7, {}))
    hub.dispatch(_events(3))   # nobody watches: the fan-out ends early, the reply must not wait
    assert [f["id"] for _, f in frames] == [7]


def test_a_refused_frame_of_replies_and_events_uncounts_only_the_events() -> None:
    hub, frames = _hub(ok=False)
    hub.batching.add(b"gone")
    hub.add(Watcher(1, b"gone", "Pod", None, None, None, True))
    hub.dispatch(_events(1))   # one event: a plain frame, refused
    assert hub.events_sent == 0 and not hub.watchers
    hub.add(Watcher(2, b"gone", "Pod", None, None, None, True))
    hub.queue_reply(b"gone", protocol.ok_reply(7, {}))
    hub.dispatch(_events(2))
    assert hub.events_sent == 0 and hub.watchers_dropped == 2 and hub.events_by_kind() == {"Pod": 0}


def test_one_queued_event_goes_as_a_plain_frame_and_bookmarks_are_batched() -> None:
    hub, frames = _hub()
    hub.batching.add(b"batch")
    hub.add(Watcher(1, b"batch", "Pod", None, None, None, True))
    hub.add(Watcher(2, b"batch", "Service", None, None, None, True))
    hub.dispatch(_events(1))
    assert isinstance(frames[-1][1], dict) and frames[-1][1]["seq"] == 1
    hub.bookmark(7, {"Pod": "v1", "Service": "v1"})
    assert len(frames) == 2
    assert sorted((m["watch"], m["type"]) for m in frames[-1][1]) == [(1, "BOOKMARK"), (2, "BOOKMARK")]


def test_a_refused_batch_removes_its_watchers_and_counts_nothing() -> None:
    hub, frames = _hub(ok=False)
    hub.batching.add(b"gone")
    hub.add(Watcher(1, b"gone", "Pod", None, None, None, True))
    hub.add(Watcher(2, b"gone", "Pod", None, None, None, True))
    hub.add(Watcher(3, b"other", "Service", None, None, None, True))
    hub.dispatch(_events(3))
    assert len(frames) == 1   # one attempt, not one per event
    assert set(hub.watchers) == {3} and hub.watchers_dropped == 2
    assert hub.events_sent == 0 and hub.events_by_kind() == {"Pod": 0, "Service": 0}


def test_a_large_batch_is_split_below_the_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import control.apiserver.watch as watch
    monkeypatch.setattr(watch, "BATCH_BYTES", 2000)
    hub, frames = _hub()
    hub.batching.add(b"batch")
    w = Watcher(1, b"batch", "Pod", None, None, None, True)
    hub.add(w)
    hub.dispatch(_events(200))
    assert len(frames) > 1
    seqs = [m["seq"] for _, f in frames for m in (f if isinstance(f, list) else [f])]
    assert seqs == list(range(1, 201))
    assert all(len(msgpack.packb(f)) < 2000 + 200 for _, f in frames)


def test_a_transition_event_keeps_its_shape_in_a_batch() -> None:
    from emulator.api.registry import REGISTRY
    from emulator.api.selectors import parse_field_selector
    hub, frames = _hub()
    hub.batching.add(b"n1")
    hub.add(Watcher(1, b"n1", "Pod", None, None,
                    parse_field_selector("spec.nodeName=n1", REGISTRY.by_kind("Pod")), True))
    a, b = _pod("x", "n1"), _pod("x", "n2")
    a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"] = "1", "2"
    hub.dispatch([Event(1, ADDED, "Pod", a, None), Event(2, MODIFIED, "Pod", b, a)])
    (_, batch), = frames
    assert [(m["type"], m["object"]["metadata"]["resourceVersion"]) for m in batch] == \
        [("ADDED", "1"), ("DELETED", "2")]


def test_a_client_asks_for_batches_and_sees_every_event_in_order(mem_server) -> None:
    c = Client(mem_server.address, component="test")
    writer = Client(mem_server.address, component="writer")
    frames: list[bytes] = []
    try:
        w = c.watch("Pod", "default")
        raw = c._conn.recv

        def recv(timeout: float) -> bytes | None:
            f = raw(timeout)
            if f is not None:
                frames.append(f)
            return f
        c._conn.recv = recv
        rids = [writer.send("create", object=_manifest(f"p{i}"), namespace="default") for i in range(60)]
        for rid in rids:   # pipelined: they land in few server batches
            writer.wait(rid)
        names: list[str] = []

        def got_all() -> bool:
            ev = w.next(0.01)
            while ev is not None:
                names.append(ev["object"]["metadata"]["name"])
                ev = w.next(0)
            return len(names) >= 60
        poll_for(got_all, timeout=20)
        assert names == [f"p{i}" for i in range(60)]
        batches = [f for f in frames if msgpack.unpackb(f).__class__ is list]
        assert batches, "the client asked for batches and got none"
        assert len(frames) < 60
    finally:
        c.close()
        writer.close()


def test_a_client_that_does_not_ask_gets_one_frame_per_event(mem_server) -> None:
    from emulator import transport
    conn = transport.connect(mem_server.address)
    writer = Client(mem_server.address, component="writer")
    msgs: list[object] = []

    def drain() -> None:
        f = conn.recv(0.01)
        while f is not None:
            msgs.append(msgpack.unpackb(f))
            f = conn.recv(0)
    try:
        conn.send(protocol.encode({"id": 1, "op": "hello", "protocol": protocol.PROTOCOL_VERSION,
                                   "component": "raw", "session": "raw"}))
        conn.send(protocol.encode({"id": 2, "op": "watch", "kind": "Pod", "namespace": "default"}))
        poll_for(lambda: drain() or any(isinstance(m, dict) and m.get("id") == 2 for m in msgs), timeout=10)
        rids = [writer.send("create", object=_manifest(f"p{i}"), namespace="default") for i in range(20)]
        for rid in rids:
            writer.wait(rid)
        poll_for(lambda: drain() or sum(1 for m in msgs if isinstance(m, dict) and m.get("type") == "ADDED") >= 20,
                 timeout=20)
        assert all(isinstance(m, dict) for m in msgs)
        seqs = [m["seq"] for m in msgs if "type" in m]   # the initial-events bookmark first
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        conn.close()
        writer.close()
