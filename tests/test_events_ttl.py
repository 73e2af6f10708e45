"""Events expire ``event_ttl`` after their last update (the event-ttl controller)."""
from __future__ import annotations

from datetime import datetime, timezone

from control.controllers import eventttl_logic as logic
from control.controllers.manager import CONTROLLERS, ControllerManager
from emulator.client import Client
from emulator.profiles import DEFAULT, FAST
from tests.conftest import FakeClock, step_until


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(name: str, last: float | None = None, **extra: object) -> dict:
    e: dict = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
               "type": "Normal", "reason": "Pulled", "message": "m", **extra}
    if last is not None:
        e["firstTimestamp"] = e["lastTimestamp"] = stamp(last)
    return e


def test_profiles_event_ttl() -> None:
    assert DEFAULT.event_ttl == 3600 and FAST.event_ttl == 180
    assert "event-ttl" in CONTROLLERS


def test_expiry_uses_last_timestamp_then_event_time_then_creation() -> None:
    clock = FakeClock()
    now = clock.wall()
    assert logic.last_update(ev("a", now - 10)) == int(now - 10)
    assert logic.last_update(ev("b", eventTime="2024-01-02T03:04:05.123456Z")) == \
        datetime(2024, 1, 2, 3, 4, 5, 123456, timezone.utc).timestamp()
    created = ev("c")
    created["metadata"]["creationTimestamp"] = stamp(now - 50)
    assert logic.last_update(created) == int(now - 50)
    assert logic.last_update(ev("d")) is None and not logic.expired(ev("d"), now, 1)
    assert not logic.expired(ev("a", now - 10), now, 180)
    clock.t += 171
    assert logic.expired(ev("a", now - 10), clock.wall(), 180)
    assert logic.due([ev("x", now - 100), ev("y", now - 500), ev("z", now)], now, 60) == \
        [("default", "y", None), ("default", "x", None)]


def test_controller_deletes_expired_events_and_keeps_fresh_ones(mem_server) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    ttl = FAST.event_ttl
    with Client(mem_server.address) as admin, Client(mem_server.address) as c:
        now = clock.wall()
        admin.create(ev("old", now - ttl - 5))
        admin.create(ev("fresh", now - 10))
        admin.create(ev("bumped", now - ttl + 20))
        cm = ControllerManager(c, FAST, clock=clock.mono, wall_clock=clock.wall, controllers=("event-ttl",))
        cm.start()

        def names() -> set[str]:
            return {e["metadata"]["name"] for e in admin.list("Event", "default")["items"]}
        step_until(cm, lambda: names() == {"fresh", "bumped"}, "old event deleted")
        ctl = cm.controllers[0]
        assert ctl.next_due() <= clock.mono() + 20   # wakes for the next expiry
        admin.patch("Event", "bumped", {"count": 2, "lastTimestamp": stamp(now)}, "default")
        step_until(cm, lambda: (ctl.events.get("bumped", "default") or {}).get("count") == 2, "update seen")
        clock.t += 30   # "bumped"'s first expiry passes, but it was updated
        for _ in range(20):
            cm.step(0.01)
        assert names() == {"fresh", "bumped"}
        clock.t += ttl
        step_until(cm, lambda: not names(), "all expired")


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
