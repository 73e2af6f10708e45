"""Event correlation as client-go's EventCorrelator: dedupe, aggregation, spam filter."""
from __future__ import annotations

from emulator.client import Client
from emulator.events import COMBINED_PREFIX, EventCorrelator, EventRecorder
from tests.conftest import FakeClock, poll_for

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web", "namespace": "default", "uid": "u1"}}


def _rec(clock: FakeClock) -> EventRecorder:
    class NoClient:   # correlation only: make_event needs no client
        pass
    return EventRecorder(NoClient(), "kubelet", "node-1", clock=clock.wall)  # type: ignore[arg-type]


def test_identical_events_are_deduped_by_count_and_last_timestamp() -> None:
    clock = FakeClock()
    rec = _rec(clock)
    c = EventCorrelator(clock.wall)
    first = c.correlate(rec.make_event(POD, "Warning", "BackOff", "Back-off"))
    assert first.patch is None and first.event["count"] == 1 and first.event["metadata"]["name"]
    clock.t += 30
    again = c.correlate(rec.make_event(POD, "Warning", "BackOff", "Back-off"))
    assert again.event["metadata"]["name"] == first.event["metadata"]["name"]
    assert again.patch == {"count": 2, "lastTimestamp": again.event["lastTimestamp"], "message": "Back-off"}
    assert again.event["firstTimestamp"] == first.event["firstTimestamp"]
    assert again.event["lastTimestamp"] != first.event["lastTimestamp"]
    other = c.correlate(rec.make_event(POD, "Warning", "BackOff", "something else"))
    assert other.patch is None and other.event["metadata"]["name"] != first.event["metadata"]["name"]


def test_eleven_similar_events_fold_into_a_combined_event() -> None:
    clock = FakeClock()
    rec = _rec(clock)
    c = EventCorrelator(clock.wall)
    results = []
    for i in range(11):
        clock.t += 1
        results.append(c.correlate(rec.make_event(POD, "Warning", "FailedMount", f"try {i}")))
    singles = results[:9]
    assert [r.event["message"] for r in singles] == [f"try {i}" for i in range(9)]
    assert all(r.patch is None for r in singles)
    tenth, eleventh = results[9], results[10]
    assert tenth.patch is None and tenth.event["message"] == COMBINED_PREFIX + "try 9"
    assert eleventh.event["metadata"]["name"] == tenth.event["metadata"]["name"]
    assert eleventh.patch is not None and eleventh.patch["count"] == 2
    assert eleventh.patch["message"] == COMBINED_PREFIX + "try 10"
    # another reason or object is another group
    assert c.correlate(rec.make_event(POD, "Warning", "Other", "try 0")).event["message"] == "try 0"


def test_similar_events_more_than_ten_minutes_apart_start_a_new_group() -> None:
    clock = FakeClock()
    rec = _rec(clock)
    c = EventCorrelator(clock.wall)
    for i in range(9):
        c.correlate(rec.make_event(POD, "Normal", "Pulled", f"m{i}"))
    clock.t += 601
    assert c.correlate(rec.make_event(POD, "Normal", "Pulled", "m9")).event["message"] == "m9"


def test_spam_filter_is_optional_and_refills() -> None:
    clock = FakeClock()
    rec = _rec(clock)
    off = EventCorrelator(clock.wall)
    assert not any(off.correlate(rec.make_event(POD, "Normal", "R", "m")).skip for _ in range(40))
    on = EventCorrelator(clock.wall, spam_filter=True, spam_burst=3, spam_qps=1 / 300)
    assert [on.correlate(rec.make_event(POD, "Normal", "R", f"m{i}")).skip for i in range(4)] == \
        [False, False, False, True]
    clock.t += 300
    assert not on.correlate(rec.make_event(POD, "Normal", "R", "m")).skip


def _events(c: Client) -> list[dict]:
    return c.list("Event", "default")["items"]


def test_recorder_patches_count_and_recreates_an_expired_event(mem_server) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    with Client(mem_server.address) as admin, Client(mem_server.address) as c:
        rec = EventRecorder(c, "kubelet", "node-1", clock=clock.wall)
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")
        clock.t += 10
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")
        evs = poll_for(lambda: [e for e in _events(admin) if e.get("count") == 2], 5, what="count 2")
        assert len(_events(admin)) == 1
        ev = evs[0]
        assert ev["source"] == {"component": "kubelet", "host": "node-1"}
        assert ev["firstTimestamp"] != ev["lastTimestamp"]
        admin.delete("Event", ev["metadata"]["name"], "default")   # as the TTL would
        clock.t += 10
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")   # NotFound
        poll_for(lambda: (c.ping(), rec._pending and all(r in c._replies for r in rec._pending))[1]
                 or not rec._pending, 5, what="patch reply")
        clock.t += 10
        rec.event(POD, "Warning", "BackOff", "Back-off restarting failed container")
        back = poll_for(lambda: [e for e in _events(admin) if e.get("count") == 4], 5, what="re-created")
        assert back[0]["metadata"]["name"] == ev["metadata"]["name"]
        assert back[0]["firstTimestamp"] == ev["firstTimestamp"]


def test_rfc3339_is_the_second_precision_stamp_and_its_cache_agrees():
    import random
    import time as _time
    from emulator.events import rfc3339
    rng = random.Random(3)
    for ts in [0.0, 0.999, 1795775753.9999, *(rng.uniform(0, 4e9) for _ in range(2000))]:
        assert rfc3339(ts) == _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(int(ts)))


def test_micro_time_is_strftime_with_microseconds_rounded_as_fromtimestamp_rounds():
    import random
    from datetime import datetime, timezone
    from emulator.events import micro_time
    rng = random.Random(5)
    for ts in [0.0, 0.9999995, 1795775753.9999996, 1795775753.0000004, 1795775753.5,
               *(rng.uniform(0, 4e9) for _ in range(5000))]:
        want = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert micro_time(ts) == want, ts
