"""The fake runtime's annotation-driven behaviour, with an injected clock (no waiting)."""
from __future__ import annotations

from pathlib import Path

import pytest

from emulator.profiles import DEFAULT
from node.runtime.fake import FakeRuntime, parse_duration
from node.runtime.interface import CREATED, EXITED, RUNNING


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(annotations: dict | None = None, owner_kind: str | None = None, state_path: str | None = None):
    clock = Clock()
    rt = FakeRuntime(DEFAULT, clock=clock, wall=lambda: 1e9 + clock.t, state_path=state_path)
    md: dict = {"name": "p", "namespace": "default", "uid": "u1", "annotations": annotations or {}}
    if owner_kind:
        md["ownerReferences"] = [{"kind": owner_kind, "name": "o", "uid": "x", "apiVersion": "batch/v1"}]
    pod = {"metadata": md, "spec": {"containers": [{"name": "app", "image": "busybox:1.36"},
                                                   {"name": "side", "image": "busybox:1.36"}]}}
    return rt, clock, pod


def start(rt: FakeRuntime, pod: dict, name: str = "app", attempt: int = 0) -> str:
    sid = rt.list_pod_sandboxes()[0].id if rt.list_pod_sandboxes() else rt.run_pod_sandbox(pod, "127.64.0.2")
    cid = rt.create_container(sid, pod, {"name": name, "image": "busybox:1.36"}, attempt)
    rt.start_container(cid)
    return cid


def state(rt: FakeRuntime, cid: str):
    return next(c for c in rt.list_containers() if c.id == cid)


@pytest.mark.parametrize("text,seconds", [("2s", 2.0), ("500ms", 0.5), ("1m30s", 90.0), ("3", 3.0),
                                          ("1h", 3600.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_default_runs_until_stopped_and_is_ready():
    rt, clock, pod = make()
    cid = start(rt, pod)
    c = state(rt, cid)
    assert c.state == RUNNING and c.ready and c.started_at == 1e9 + 100.0
    assert c.labels["io.kubernetes.pod.uid"] == "u1" and c.labels["io.kubernetes.container.name"] == "app"
    clock.t += 1e6
    assert not rt.tick(clock.t)
    assert state(rt, cid).state == RUNNING
    rt.stop_container(cid, 30)
    c = state(rt, cid)
    assert (c.state, c.exit_code, c.reason) == (EXITED, 0, "Completed")


def test_start_delay_and_ready_delay():
    rt, clock, pod = make({"kemu.io/start-delay": "2s", "kemu.io/ready-delay": "1s"})
    cid = start(rt, pod)
    assert state(rt, cid).state == CREATED
    assert rt.next_event(clock.t) == 102.0
    clock.t = 102.5
    assert rt.tick(clock.t) == {"u1"}
    c = state(rt, cid)
    assert c.state == RUNNING and not c.ready and c.started_at == 1e9 + 102.0
    clock.t = 103.0
    rt.tick(clock.t)
    assert state(rt, cid).ready


def test_run_duration_and_exit_code_with_per_container_override():
    rt, clock, pod = make({"kemu.io/run-duration": "5s", "kemu.io/exit-code": "3",
                           "kemu.io/exit-code.side": "0"})
    app, side = start(rt, pod, "app"), start(rt, pod, "side")
    clock.t += 4.9
    assert not rt.tick(clock.t)
    clock.t += 0.2
    assert rt.tick(clock.t) == {"u1"}
    a, s = state(rt, app), state(rt, side)
    assert (a.state, a.exit_code, a.reason, a.finished_at) == (EXITED, 3, "Error", 1e9 + 105.0)
    assert (s.exit_code, s.reason) == (0, "Completed")


def test_crash_on_start():
    rt, clock, pod = make({"kemu.io/crash-on-start": "true"})
    cid = start(rt, pod)
    c = state(rt, cid)
    assert (c.state, c.exit_code, c.reason) == (EXITED, 1, "Error")


def test_never_ready_and_usage():
    rt, clock, pod = make({"kemu.io/never-ready": "true", "kemu.io/cpu-usage": "250m",
                           "kemu.io/memory-usage": "64Mi"})
    cid = start(rt, pod)
    clock.t += 1000
    rt.tick(clock.t)
    c = state(rt, cid)
    assert c.state == RUNNING and not c.ready
    assert (c.cpu_millis, c.memory_bytes) == (250, 64 * 2**20)


def test_job_pod_completes_after_profile_delay():
    rt, clock, pod = make(owner_kind="Job")
    cid = start(rt, pod)
    clock.t += DEFAULT.job_completion_delay
    rt.tick(clock.t)
    c = state(rt, cid)
    assert (c.state, c.exit_code) == (EXITED, 0)


def test_termination_delay_capped_by_grace_period():
    rt, clock, pod = make({"kemu.io/termination-delay": "10s"})
    slow, other = start(rt, pod, "app"), start(rt, pod, "side")
    rt.stop_container(slow, 3)
    assert state(rt, slow).state == RUNNING
    clock.t += 3
    rt.tick(clock.t)
    c = state(rt, slow)
    assert (c.state, c.exit_code) == (EXITED, 137)
    rt.stop_container(other, 30)
    clock.t += 10
    rt.tick(clock.t)
    assert state(rt, other).exit_code == 0


def test_state_file_survives_a_restart(tmp_path: Path):
    path = str(tmp_path / "var/lib/kemu/runtime.json")
    rt, clock, pod = make({"kemu.io/run-duration": "5s"}, state_path=path)
    cid = start(rt, pod)
    again = FakeRuntime(DEFAULT, clock=clock, wall=lambda: 1e9 + clock.t, state_path=path)
    assert [c.id for c in again.list_containers()] == [cid]
    assert again.list_pod_sandboxes()[0].ip == "127.64.0.2"
    clock.t += 5
    assert again.tick(clock.t) == {"u1"}
    assert state(again, cid).state == EXITED
    new = start(again, pod, "side")
    assert new != cid


def test_state_file_is_every_field_of_every_sandbox_and_container(tmp_path: Path):
    """The file holds what ``dataclasses.asdict`` would give (mounts included), so
    ``kemu crictl`` and a restarted runtime read every field back."""
    from dataclasses import asdict

    from node.runtime.interface import Mount
    from emulator.runtime_state import read_state
    path = str(tmp_path / "var/lib/kemu/runtime.json")
    rt, clock, pod = make({"kemu.io/run-duration": "5s"}, state_path=path)
    cid = start(rt, pod)
    rt.state.containers[cid].status.mounts = [Mount("/data", str(tmp_path / "v"), True, "data")]
    rt._save(containers=(cid,))
    saved = read_state(path)
    assert saved["sandboxes"] == [asdict(s) for s in rt.state.sandboxes.values()]
    (c,) = rt.state.containers.values()
    assert saved["containers"] == [{"status": asdict(c.status), "behaviour": asdict(c.behaviour),
                                    "start_due": c.start_due, "started": c.started, "exit_due": c.exit_due,
                                    "exit_code_due": c.exit_code_due, "ready_due": c.ready_due}]
    again = FakeRuntime(DEFAULT, clock=clock, wall=lambda: 1e9 + clock.t, state_path=path)
    assert again.state.containers[cid].status.mounts == [Mount("/data", str(tmp_path / "v"), True, "data")]


def test_remove_sandbox_removes_its_containers():
    rt, clock, pod = make()
    cid = start(rt, pod)
    sid = rt.list_pod_sandboxes()[0].id
    rt.stop_pod_sandbox(sid)
    assert state(rt, cid).state == EXITED
    rt.remove_pod_sandbox(sid)
    assert not rt.list_containers() and not rt.list_pod_sandboxes()


def test_next_event_is_remembered_per_generation_and_tick_skips_when_nothing_is_due():
    """Random starts, stops and time steps: the remembered next_event always equals a fresh
    computation, and a tick before it changes nothing."""
    import random
    rng = random.Random(11)
    rt, clock, pod = make({"kemu.io/start-delay": "2s", "kemu.io/ready-delay": "1s",
                           "kemu.io/run-duration": "7s"})
    cids: list[str] = []
    for _ in range(300):
        op = rng.random()
        if op < 0.3:
            cids.append(start(rt, pod, name=f"c{len(cids)}"))
        elif op < 0.45 and cids:
            rt.stop_container(rng.choice(cids), rng.choice([0, 1, 30]))
        else:
            clock.t += rng.choice([0.1, 0.5, 1.0, 3.0])
        remembered = rt.next_event(clock.t)
        rt._next = (-1, None)
        assert rt.next_event(clock.t) == remembered
        before = [vars(c).copy() for c in rt.list_containers()]
        gen = rt.generation
        changed = rt.tick(clock.t)
        if remembered is None or remembered > clock.t:
            assert not changed and rt.generation == gen and [vars(c) for c in rt.list_containers()] == before
