"""Events expire ``event_ttl`` after their last update, in the apiserver (``--event-ttl``)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from control.controllers.manager import CONTROLLERS
from emulator.client import Client
from emulator.profiles import DEFAULT, FAST
from tests.conftest import FakeClock, poll_for


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(name: str, last: float | None = None, **extra: object) -> dict:
    e: dict = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
               "type": "Normal", "reason": "Pulled", "message": "m", **extra}
    if last is not None:
        e["firstTimestamp"] = e["lastTimestamp"] = stamp(last)
    return e


def test_profiles_event_ttl_and_no_controller_for_it() -> None:
    assert DEFAULT.event_ttl == 3600 and FAST.event_ttl == 180
    assert "event-ttl" not in CONTROLLERS   # the apiserver expires Events, as etcd's leases do


def names(c: Client) -> set[str]:
    return {e["metadata"]["name"] for e in c.list("Event", "default")["items"]}


def test_the_apiserver_deletes_an_event_ttl_after_its_last_write(threaded_server, tmp_path: Path) -> None:
    """As etcd's lease does: the TTL runs from the last write, whatever the Event's own
    timestamps say (a node whose clock is skewed back writes old-looking Events)."""
    clock = FakeClock()
    ttl = FAST.event_ttl
    srv = threaded_server(f"mem://event-ttl-{id(clock)}", str(tmp_path / "store"), clock=clock.wall,
                          event_ttl=ttl)
    with Client(srv.address) as c:
        now = clock.wall()
        w = c.watch("Event", "default", resource_version=c.list("Event", "default")["metadata"]["resourceVersion"])
        c.create(ev("skewed", now - 10 * ttl))   # looks old: still kept a whole TTL
        c.create(ev("early", now))
        clock.t += 100
        c.create(ev("later", now))
        c.get("Event", "later", "default")      # a round trip: the loop turned after the clock moved
        assert names(c) == {"skewed", "early", "later"}
        c.patch("Event", "early", {"count": 2, "lastTimestamp": stamp(now)}, "default")   # written again
        clock.t += ttl - 100 + 1                  # past the first writes' TTL
        poll_for(lambda: names(c) == {"early", "later"}, 5, what="skewed deleted")
        seen: list = []
        poll_for(lambda: (seen.extend(iter(lambda: w.next(0), None)) or
                          any(e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "skewed"
                              for e in seen)), 5, what="a watcher sees DELETED")
        clock.t += 100
        poll_for(lambda: not names(c), 5, what="all expired")
        w.stop()


def test_expiry_is_rebuilt_from_the_store_after_a_restart(threaded_server, tmp_path: Path) -> None:
    clock = FakeClock()
    ttl = DEFAULT.event_ttl
    store = str(tmp_path / "store")
    first = threaded_server(f"mem://event-ttl-a-{id(clock)}", store, clock=clock.wall, event_ttl=ttl)
    with Client(first.address) as c:
        c.create(ev("kept", clock.wall()))
    first.stop()
    clock.t += ttl / 2
    again = threaded_server(f"mem://event-ttl-b-{id(clock)}", store, clock=clock.wall, event_ttl=ttl)
    with Client(again.address) as c:
        assert names(c) == {"kept"}             # the restart gives it a whole TTL from now
    again.stop()
    clock.t += ttl
    third = threaded_server(f"mem://event-ttl-c-{id(clock)}", store, clock=clock.wall, event_ttl=ttl)
    with Client(third.address) as c:
        assert names(c) == {"kept"}
        clock.t += ttl
        poll_for(lambda: not names(c), 5, what="the recovered Event expires")


def test_parse_time_reads_rfc3339_with_and_without_fractions_and_rejects_the_rest() -> None:
    import calendar
    import time as _time

    from control.controllers.controller_utils import parse_time
    base = calendar.timegm(_time.strptime("2026-11-27T08:00:01", "%Y-%m-%dT%H:%M:%S"))
    assert parse_time("2026-11-27T08:00:01Z") == base
    assert parse_time("2026-11-27T08:00:01.250000Z") == base + 0.25
    assert parse_time("2026-11-27T08:00:01Z") == base        # again: from the memo, the same
    for bad in ("", None, "yesterday", "2026-13-01T00:00:00Z", "2026-11-27 08:00:01Z"):
        assert parse_time(bad) is None
