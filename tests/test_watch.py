"""Watch semantics: start revisions, event types, selector transitions, bookmarks, Expired."""
from __future__ import annotations

from typing import Iterator

import pytest

from emulator.api.errors import EXPIRED, APIError
from emulator.client import Client
from tests.test_apiserver import cm, pod


@pytest.fixture
def c(mem_server) -> Iterator[Client]:
    client = Client(mem_server.address, component="test", timeout=5)
    yield client
    client.close()


def drain(w, n: int, timeout: float = 5.0) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        ev = w.next(timeout)
        assert ev is not None, f"expected {n} events, got {out}"
        out.append((ev["type"], ev["object"]["metadata"]["name"]))
    return out


def test_watch_without_revision_starts_with_current_state(c: Client) -> None:
    c.create(cm("a"))
    w = c.watch("ConfigMap", "default")
    assert drain(w, 1) == [("ADDED", "a")]
    c.create(cm("b"))
    c.patch("ConfigMap", "b", {"data": {"x": "1"}}, "default")
    c.delete("ConfigMap", "a", "default")
    assert drain(w, 3) == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    assert w.next(0.05) is None


def test_watch_from_revision_replays_exactly_what_came_after(c: Client) -> None:
    c.create(cm("before"))
    rv = c.list("ConfigMap", "default")["metadata"]["resourceVersion"]
    c.create(cm("after"))
    c.delete("ConfigMap", "before", "default")
    w = c.watch("ConfigMap", "default", resource_version=rv)
    assert drain(w, 2) == [("ADDED", "after"), ("DELETED", "before")]
    assert w.next(0.05) is None


def test_revisions_increase_and_deleted_carries_its_revision(c: Client) -> None:
    w = c.watch("ConfigMap", "default", resource_version=c.ping()["resourceVersion"])
    created = c.create(cm("a"))
    c.delete("ConfigMap", "a", "default")
    e1, e2 = w.next(5), w.next(5)
    assert e1["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert int(e2["object"]["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_selector_transitions_become_added_and_deleted(c: Client) -> None:
    c.create(pod("p", app="web"))
    w = c.watch("Pod", "default", label_selector="app=web", resource_version=c.ping()["resourceVersion"])
    c.patch("Pod", "p", {"metadata": {"labels": {"app": "db"}}}, "default")
    ev = w.next(5)
    assert ev["type"] == "DELETED" and ev["object"]["metadata"]["labels"] == {"app": "web"}
    c.patch("Pod", "p", {"metadata": {"labels": {"app": "web"}}}, "default")
    assert drain(w, 1) == [("ADDED", "p")]
    c.patch("Pod", "p", {"metadata": {"labels": {"extra": "1"}}}, "default")
    assert drain(w, 1) == [("MODIFIED", "p")]


def test_field_selector_watch_sees_binding_as_added(c: Client) -> None:
    c.create(pod("p"))
    w = c.watch("Pod", field_selector="spec.nodeName=node-1", resource_version=c.ping()["resourceVersion"])
    other = c.watch("Pod", field_selector="spec.nodeName=node-2", resource_version=c.ping()["resourceVersion"])
    c.bind("p", "default", "node-1")
    ev = w.next(5)
    assert ev["type"] == "ADDED" and ev["object"]["spec"]["nodeName"] == "node-1"
    assert other.next(0.1) is None   # an event reaches only its own watcher


def test_bookmarks_arrive_when_asked_for(c: Client) -> None:
    w = c.watch("ConfigMap", "default", resource_version=c.ping()["resourceVersion"], bookmarks=True)
    c.create(cm("a"))
    seen = [w.next(5) for _ in range(2)]
    assert [e["type"] for e in seen] == ["ADDED", "BOOKMARK"]
    assert int(seen[1]["object"]["metadata"]["resourceVersion"]) >= \
        int(seen[0]["object"]["metadata"]["resourceVersion"])


def test_compacted_revision_gets_expired(threaded_server) -> None:
    srv = threaded_server("mem://compact", None, history_size=5)
    c = Client(srv.address)
    try:
        rv = c.ping()["resourceVersion"]
        for i in range(10):
            c.create(cm(f"x{i}"))
        with pytest.raises(APIError) as e:
            c.watch("ConfigMap", "default", resource_version=rv)
        assert e.value.code == EXPIRED
    finally:
        c.close()


def test_unwatch_stops_events(c: Client, mem_server) -> None:
    w = c.watch("ConfigMap", "default")
    assert len(mem_server.server.hub.watchers) == 1

    def no_waiting(*_a: object) -> None:
        raise AssertionError("stopping a watch waited for a reply")
    real, c._wait_reply = c._wait_reply, no_waiting   # type: ignore[method-assign]
    w.stop()                            # fire and forget: a process that stops with its
    c._wait_reply = real                # apiserver must not wait on the dead server
    c.create(cm("a"))                   # requests are handled in order: the unwatch came first
    assert w.next(0.1) is None
    assert mem_server.server.hub.watchers == {}


def test_resuming_replays_only_the_watched_kind(c: Client) -> None:
    """History holds every kind's events; a resumed watch must get only its own."""
    rv = c.ping()["resourceVersion"]
    c.create(cm("a"))
    c.create(pod("p"))
    c.delete("ConfigMap", "a", "default")
    w = c.watch("Pod", resource_version=rv)
    assert drain(w, 1) == [("ADDED", "p")]
    assert w.next(0.1) is None
