"""The scheduling queue with a fake clock: FIFO, back-off, unschedulable pods and flushing."""
from __future__ import annotations

from control.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def pod(name, priority=None, labels=None):
    p = {"metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "spec": {}}
    if priority is not None:
        p["spec"]["priority"] = priority
    return p


def key(name):
    return ("default", name)


def make(clock=None):
    clock = clock or Clock()
    return SchedulingQueue(1.0, 10.0, 300.0, clock), clock


def add(q, *names):
    for n in names:
        q.add(pod(n), key(n))


def test_fifo_and_priority():
    q, _ = make()
    add(q, "a", "b")
    q.add(pod("hi", priority=10), key("hi"))
    add(q, "c")
    assert [q.pop().key[1] for _ in range(4)] == ["hi", "a", "b", "c"]
    assert q.pop() is None


def test_backoff_doubles_up_to_max():
    q, clock = make()
    add(q, "a")
    expected = [1, 2, 4, 8, 10, 10]
    for want in expected:
        qp = q.pop()
        assert qp is not None
        q.add_backoff(qp)
        assert q.pop() is None
        assert q.next_due() == clock.t + want
        clock.t += want - 0.01
        q.flush()
        assert q.pop() is None
        clock.t += 0.01
        q.flush()
        assert q.has_active()


def test_unschedulable_moves_to_active_on_cluster_event_after_backoff():
    q, clock = make()
    add(q, "a")
    qp = q.pop()
    q.add_unschedulable(qp)
    assert not q.has_active() and key("a") in q.unschedulable
    clock.t += 5   # back-off (1 s) is over
    assert q.move_all_to_active_or_backoff() == 1
    assert q.pop().key == key("a")


def test_unschedulable_moved_during_backoff_waits_in_backoffq():
    q, clock = make()
    add(q, "a")
    q.add_unschedulable(q.pop())
    q.move_all_to_active_or_backoff()
    assert not q.has_active() and key("a") in q.in_backoff
    clock.t += 1
    q.flush()
    assert q.pop().key == key("a")


def test_event_during_attempt_sends_pod_to_backoff_not_unschedulable():
    q, clock = make()
    add(q, "a")
    qp = q.pop()
    q.move_all_to_active_or_backoff()     # e.g. a node added while "a" was being scheduled
    q.add_unschedulable(qp)
    assert key("a") not in q.unschedulable and key("a") in q.in_backoff


def test_unschedulable_flushed_after_interval():
    q, clock = make()
    add(q, "a")
    q.add_unschedulable(q.pop())
    assert q.next_due() == clock.t + 300
    clock.t += 299
    q.flush()
    assert not q.has_active()
    clock.t += 1
    q.flush()
    assert q.pop().key == key("a")


def test_update_with_new_spec_moves_unschedulable_pod():
    q, clock = make()
    add(q, "a")
    q.add_unschedulable(q.pop())
    q.update(pod("a"), key("a"))                      # nothing relevant changed
    assert key("a") in q.unschedulable
    clock.t += 2
    q.update(pod("a", labels={"x": "y"}), key("a"))
    assert q.pop().key == key("a")


def test_delete_removes_everywhere_and_late_failure_is_dropped():
    q, _ = make()
    add(q, "a", "b")
    qp = q.pop()
    q.delete(key("a"))
    q.add_unschedulable(qp)
    assert key("a") not in q and key("a") not in q.unschedulable
    q.delete(key("b"))
    assert q.pop() is None and len(q) == 0


def test_re_add_of_known_pod_does_not_duplicate():
    q, _ = make()
    add(q, "a", "a")
    assert q.pop().key == key("a")
    assert q.pop() is None
