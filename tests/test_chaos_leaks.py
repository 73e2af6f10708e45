"""Issue 7 reliability check: no leaks. After 50 random faults on a 10-node lab,
``lab down`` leaves no process, no container, no ctl socket and no fault state behind.

The lab: 10 fast nodes with DNS, the fake runtime on node-1..node-8 and the process
runtime on node-9 and node-10 (so real container processes and their monitors exist),
a Deployment for pod-kill/node-drain and one real pod per process node for
container-kill. A seeded ``random.Random`` draws 50 faults of every kind, on single
nodes, ``nodes:random:N`` groups and control-plane processes, mostly with short
durations; some are healed by hand, several are still active when ``down()`` runs.
A fault the lab legitimately refuses (its target is dead, no pod matches) is counted,
not failed; at least 40 must be injected.

Every pid the lab ever had (processes, healers, cpu-stress workers, containers and
their monitors) is recorded with its start time while the faults run, and the lab's
ctl sockets (abstract, ``@kemu-<digest>-<process>`` in ``/proc/net/unix``) before
``down()``; afterwards all must be gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from emulator import ctl
from lab.chaos.chaos import ChaosError
from lab.chaos.model import Fault
from lab.chaos.resource_faults import RESOURCE_KINDS, stop_workers
from lab.lab import Lab, LabError
from lab.paths import LabLayout
from node.runtime.shim import start_ticks
from tests.conftest import poll_for

SEED = 7
FAULTS = 50
CPU_STRESS_AT = 5
PROCESS_NODES = ("node-9", "node-10")
NODES = [f"node-{i}" for i in range(1, 11)]
CONTROL = ("scheduler", "controller-manager", "dns")

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"terminationGracePeriodSeconds": 1,
                                      "containers": [{"name": "web", "image": "busybox",
                                                      "command": ["sleep", "1000"]}]}}}}


def sleeper(node: str) -> dict:
    """A bare pod bound to a process-runtime node: a real container for container-kill."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"s-{node}", "namespace": "default", "labels": {"app": "s"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def stand_in_lab(root: Path) -> SimpleNamespace:
    layout = LabLayout(root)
    layout.node_root("node-1").mkdir(parents=True)
    return SimpleNamespace(name=root.name, nodes=["node-1"], layout=layout)


@pytest.mark.timeout(30)
def test_stop_workers_reaps_the_workers_a_healer_killed_and_kills_the_rest_of_its_lab(tmp_path: Path) -> None:
    """The leak this file found: a cpu-stress worker healed by the fault's healer (another
    process) stayed a zombie child of the process that started it, after ``lab down``."""
    kind = RESOURCE_KINDS["cpu-stress"]
    a, b = stand_in_lab(tmp_path / "a"), stand_in_lab(tmp_path / "b")
    fa = Fault(id="f-1", kind="cpu-stress", target="node-1", targets=["node-1"],
               params={"workers": "2", "load": "10"}, duration=60)
    fb = Fault(id="f-1", kind="cpu-stress", target="node-1", targets=["node-1"],
               params={"load": "10"}, duration=60)
    fa.state, fb.state = kind.inject(a, fa), kind.inject(b, fb)
    try:
        (healed, running), other = [w["pid"] for w in fa.state["workers"]], fb.state["workers"][0]["pid"]
        os.killpg(healed, signal.SIGKILL)   # as the healer does: not its parent, so no reaping
        poll_for(lambda: psutil.Process(healed).status() == psutil.STATUS_ZOMBIE, 5, what="a zombie worker")
        assert stop_workers(a.layout.root) == 1   # the running one: killed
        assert not psutil.pid_exists(healed) and not psutil.pid_exists(running)
        assert psutil.Process(other).status() != psutil.STATUS_ZOMBIE   # another lab's: left alone
    finally:
        kind.heal(b, fb)
        kind.heal(a, fa)
    assert not psutil.pid_exists(other)


@pytest.mark.timeout(30)
def test_lab_pids_takes_only_the_processes_the_lab_recorded_not_a_reused_number(tmp_path: Path) -> None:
    """The flake this file had (CI, stop 19): a healer that had exited stayed in
    ``chaos.json``; its number was later a thread's, so the check took that thread for a
    healer and reported it "alive" after down. A number counts only while it is still
    a process with the start time the lab wrote down."""
    lab = stand_in_lab(tmp_path)
    held = threading.Event()
    thread = threading.Thread(target=held.wait, daemon=True)
    thread.start()
    tid = thread.native_id
    child = subprocess.Popen(["sleep", "30"])
    try:
        child_start = start_time(child.pid)
        assert child_start is not None and tid is not None and psutil.Process(tid).create_time() > 0
        lab.processes = lambda: [{"name": "node-1", "pid": child.pid, "state": "running",
                                  "started_at": child_start}]
        lab.layout.run.mkdir(parents=True, exist_ok=True)
        (lab.layout.run / "chaos.json").write_text(json.dumps({"next": 3, "faults": {}, "healers": {
            str(tid): psutil.Process(tid).create_time(),   # a thread's id: never a healer
            str(os.getpid()): psutil.Process().create_time() + 1000.0}}))   # live, but not the one recorded
        assert lab_pids(lab) == {child.pid: (child_start, "node-1")}
        lab.processes = lambda: [{"name": "node-1", "pid": child.pid, "state": "running",
                                  "started_at": child_start + 1000.0}]
        assert lab_pids(lab) == {}
    finally:
        held.set()
        child.kill()
        child.wait()


# -- drawing faults -----------------------------------------------------------
def dur(rng: random.Random) -> str:
    return f"{rng.randint(3, 20) * 100}ms"   # 0.3 s .. 2 s


def node_group(rng: random.Random, most: int = 3) -> str:
    return rng.choice([rng.choice(NODES), f"nodes:random:{rng.randint(2, most)}"])


def any_target(rng: random.Random) -> str:
    return rng.choice([rng.choice(NODES), rng.choice(NODES), f"nodes:random:{rng.randint(2, 3)}",
                       rng.choice(CONTROL)])


KINDS = ["kill", "kill-for", "restart", "pause", "crash-loop", "partition", "isolate", "delay", "loss",
         "duplicate", "reorder", "bandwidth", "clock-skew", "clock-strobe", "pod-kill", "container-kill",
         "node-taint", "node-drain", "disk-fill", "memory-pressure", "dns-error"]


def plan(rng: random.Random) -> list[str]:
    """50 kinds: every kind at least once, the rest at random, shuffled; the one cpu-stress
    fault early (``CPU_STRESS_AT``), so its healer heals it well before down."""
    kinds = KINDS + [rng.choice(KINDS) for _ in range(FAULTS - 1 - len(KINDS))]
    rng.shuffle(kinds)
    kinds.insert(CPU_STRESS_AT, "cpu-stress")
    return kinds


def draw(rng: random.Random, kind: str, first: bool = False) -> tuple[str, str | None, dict[str, Any]]:
    """One fault of ``kind``: (kind, target, inject keyword arguments, duration included).
    ``first``: the kind's first draw in the run. A first pod-kill is cluster-wide, so that
    one is sure to find a web pod: on two random nodes it may find none (where the
    scheduler put the pods is not the seed's to decide) and be refused."""
    if kind == "cpu-stress":   # bounded: 2 workers in all, half load, 0.5 s
        return "cpu-stress", f"nodes:random:{rng.randint(1, 2)}", {
            "seed": rng.randrange(1000), "workers": 2, "load": 50, "duration": "500ms"}
    kw: dict[str, Any] = {"seed": rng.randrange(1000)}
    timed = rng.random() < 0.75
    if kind == "kill":   # held until healed (or lab down); sometimes nodes stay dead
        target = rng.choice([rng.choice(NODES), rng.choice(CONTROL)])
        if rng.random() < 0.3:
            kw["no_restart"] = True
        return "kill", target, kw
    if kind == "kill-for":
        return "kill", rng.choice([rng.choice(NODES), rng.choice(CONTROL)]), {**kw, "duration": dur(rng)}
    if kind == "restart":
        return "restart", rng.choice([rng.choice(NODES), rng.choice(CONTROL)]), kw
    if kind == "pause":
        return "pause", any_target(rng), {**kw, "duration": dur(rng)} if timed else kw
    if kind == "crash-loop":
        return "crash-loop", rng.choice(NODES), {**kw, "every": "300ms", "duration": dur(rng)}
    if kind in ("partition", "isolate"):
        if kind == "partition" and rng.random() < 0.5:
            kw["with"] = rng.choice(["apiserver", "rest", rng.choice(NODES)])
        target = rng.choice([node_group(rng), rng.choice(CONTROL + ("apiserver",))])
        if kw.get("with") == target:
            kw.pop("with")
    else:
        target = rng.choice([node_group(rng), rng.choice(CONTROL + ("apiserver",))])
    if kind == "delay":
        kw.update(latency=f"{rng.randint(5, 50)}ms", jitter="5ms", distribution=rng.choice(
            ["uniform", "normal", "exponential"]))
    elif kind in ("loss", "duplicate"):
        kw["percent"] = rng.randint(5, 30)
    elif kind == "reorder":
        kw.update(percent=rng.randint(5, 30), latency="10ms")
    elif kind == "bandwidth":
        kw["rate"] = rng.choice(["1mbit", "512kbit", "1MB/s"])
    elif kind == "clock-skew":
        kw["offset"] = rng.choice(["+30s", "-20s", "+2m"])
    elif kind == "clock-strobe":
        kw.update(delta="+1s", period="200ms")
    elif kind == "pod-kill":
        group = None if rng.random() < 0.7 else node_group(rng)
        target = None if first else group
        kw.update(selector="app=web", grace=0)
        return kind, target, kw
    elif kind == "container-kill":
        kw["selector"] = "app=s"
        return kind, rng.choice(PROCESS_NODES), kw
    elif kind == "node-taint":
        target = node_group(rng)
        kw["taint"] = rng.choice(["chaos=true:NoSchedule", "chaos=x:PreferNoSchedule", "leak:NoExecute"])
    elif kind == "node-drain":
        target = rng.choice(NODES)
        kw.update(grace=0, timeout="1s")
    elif kind == "disk-fill":
        target = node_group(rng)
        kw["percent"] = rng.choice([50, 95])
    elif kind == "memory-pressure":
        target = node_group(rng)
    elif kind == "dns-error":
        target = "dns"
        kw.update(rcode=rng.choice(["SERVFAIL", "NXDOMAIN"]), percent=rng.randint(10, 100))
    if timed:
        kw["duration"] = dur(rng)
    return kind, target, kw


# -- what the lab has ----------------------------------------------------------
def start_time(pid: int) -> float | None:
    """The start time of process ``pid``; None if there is none. A thread's id is not a
    process (``psutil.Process`` takes one, and ``/proc/<tid>`` exists, but it is not listed)."""
    try:
        return psutil.Process(pid).create_time() if psutil.pid_exists(pid) else None
    except psutil.Error:
        return None


def same_start(pid: int, recorded: Any, ticks: bool = False) -> bool:
    """``pid`` is still the process the lab recorded: its start time (``create_time``
    seconds, or ``/proc`` clock ticks) matches the one written when it started."""
    if recorded is None or not psutil.pid_exists(pid):
        return False
    if ticks:
        return start_ticks(pid) == recorded
    now = start_time(pid)
    return now is not None and abs(now - float(recorded)) < 2.0   # as Lab._kill_leftovers


def lab_pids(lab: Lab) -> dict[int, tuple[float | None, str]]:
    """Every live pid the lab has now: supervisor, processes, containers, monitors and healers.

    Only processes that exist now and are still the ones the lab recorded (the same
    start time) are taken, with their start time: a pid in a record outlives its
    process (a healer that exited stays in ``chaos.json`` until down; a killed node in
    the supervisor's state until its next write), and whatever process or thread
    later reuses the number (pid_max is 32768 here) is not the lab's."""
    out: dict[int, tuple[float | None, str]] = {}

    def add(pid: int, what: str, recorded: Any, ticks: bool = False) -> None:
        if same_start(pid, recorded, ticks):
            out[pid] = (start_time(pid), what)
    try:   # the supervisor's pid file is its own, removed when it exits: nothing to match
        pid = int(lab.layout.supervisor_pid.read_text().strip())
        add(pid, "supervisor", start_time(pid))
    except (OSError, ValueError):
        pass
    for p in lab.processes():
        if p.get("pid") and p.get("state") in ("running", "paused"):
            add(p["pid"], p["name"], p.get("started_at"))
    for node in PROCESS_NODES:
        for st in (lab.layout.node_root(node) / "var" / "lib" / "kemu" / "containers").glob("*/state.json"):
            try:
                data = json.loads(st.read_text())
            except (OSError, ValueError):
                continue
            for key, start in (("pid", "pid_start"), ("shim_pid", "shim_start")):
                if data.get(key):
                    add(data[key], f"{node} container {key}", data.get(start), ticks=True)
    try:
        for pid, start in (json.loads((lab.layout.run / "chaos.json").read_text()).get("healers") or {}).items():
            add(int(pid), "healer", start)
    except (OSError, ValueError):
        pass
    return out


def fault_pids(f: Any) -> dict[int, tuple[float | None, str]]:
    """The fault's healer and workers, by pid and start time (none without one: see lab_pids)."""
    out: dict[int, tuple[float | None, str]] = {}
    if f.healer_pid and f.healer_start is not None:
        out[f.healer_pid] = (f.healer_start, f"healer of {f.id}")
    for w in (f.state or {}).get("workers") or []:
        if w.get("start") is not None:
            out[int(w["pid"])] = (w["start"], f"cpu-stress worker of {f.id}")
    return out


def still_alive(pid: int, start: float | None) -> bool:
    """The same process (same start time) still exists, zombie or not."""
    try:
        p = psutil.Process(pid)
        return start is None or abs(p.create_time() - start) < 1.0
    except psutil.Error:
        return False


def abstract_sockets(digest: str) -> set[str]:
    out = set()
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7].startswith("@") and digest in parts[7]:
                out.add(parts[7])
    return out


def describe(p: psutil.Process) -> str | None:
    """``pid name (status) cmdline`` of a process still there, else None."""
    try:
        with p.oneshot():
            return f"{p.pid} {p.name()} ({p.status()}) {' '.join(p.cmdline())[:200]}"
    except psutil.Error:
        return None


def status(pid: int) -> str:
    """What a pid still there is, a zombie too: its status, parent and command line."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            st, ppid, name = p.status(), p.ppid(), p.name()
        try:
            cmd = " ".join(p.cmdline())[:200]
        except psutil.Error:
            cmd = "?"
        return f"{name} ({st}), parent {ppid}, {cmd}"
    except psutil.Error as e:
        return f"gone ({type(e).__name__})"


def mentions(p: psutil.Process, root: str) -> bool:
    try:
        if p.pid == os.getpid() or p.uids().real != os.getuid():
            return False
        return root in " ".join(p.cmdline()) or any(root in v for v in p.environ().values())
    except psutil.Error:
        return False


def leftovers(lab: Lab, pids: dict[int, tuple[float | None, str]], digest: str) -> list[str]:
    root = str(lab.layout.root)
    out = [f"pid {pid} ({what}) alive: {status(pid)}" for pid, (start, what) in sorted(pids.items())
           if still_alive(pid, start)]
    children = psutil.Process().children(recursive=True)   # reaped or not: none may be left
    out += [f"child {d}" for d in map(describe, children) if d]
    out += [f"process mentioning the lab: {d}" for d in map(describe, filter(
        lambda p: mentions(p, root), psutil.process_iter())) if d]
    out += [f"abstract socket {s}" for s in sorted(abstract_sockets(digest))]
    for path in lab.layout.root.rglob("*"):
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                out.append(f"socket file {path}")
        except OSError:
            pass
    out += [f"ctl state {p}" for p in sorted((lab.layout.run / "ctl").glob("*.json"))]
    out += [f"fault still active: {f.id} {f.kind} {f.target}" for f in lab.chaos.active()]
    return out


@pytest.mark.timeout(300)
def test_lab_down_after_50_random_faults_leaves_nothing_behind() -> None:
    rng = random.Random(SEED)
    lab = Lab(10, name="leaks", profile="fast", dns=True,
              runtime_for={n: "process" for n in PROCESS_NODES})
    pids: dict[int, tuple[float | None, str]] = {}
    injected, refused, healed_by_hand = [], [], 0
    try:
        lab.up()
        digest = hashlib.sha1(str(lab.layout.run.resolve()).encode()).hexdigest()[:16]
        assert ctl.socket_path(lab.layout.run, "node-1") == f"ipc://@kemu-{digest}-node-1"
        c = lab.client
        c.create(WEB, "default")
        for node in PROCESS_NODES:
            c.create(sleeper(node), "default")

        def settled() -> bool:
            pods = c.list("Pod", "default")["items"]
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            return len(running) == 6
        lab.wait_for(settled, 60, what="4 web pods and 2 real sleepers running")
        want = {"supervisor", "apiserver", "dns", "node-9", "node-9 container pid", "node-9 container shim_pid",
                "node-10 container pid", "node-10 container shim_pid"}
        lab.wait_for(lambda: want <= {what for _, what in lab_pids(lab).values()}, 20,
                     what="the containers' pids recorded by their monitors")
        pids.update(lab_pids(lab))

        held: list[Any] = []
        drawn_before: set[str] = set()
        for drawn in plan(rng):
            kind, target, kw = draw(rng, drawn, first=drawn not in drawn_before)
            drawn_before.add(drawn)
            try:
                f = lab.chaos.inject(kind, target, **kw)
            except (ChaosError, ValueError, LabError) as e:
                refused.append(f"{kind} {target}: {e}")
            else:
                injected.append(f)
                pids.update(fault_pids(f))
                if f.duration is None and f.id in {a.id for a in lab.chaos.active()}:
                    held.append(f)
            pids.update(lab_pids(lab))
            if held and rng.random() < 0.3:   # heal one held fault by hand
                f = held.pop(rng.randrange(len(held)))
                try:
                    healed_by_hand += len(lab.chaos.heal(f.id, missing_ok=True))
                except ChaosError as e:   # e.g. restarting a node that was removed meanwhile
                    refused.append(f"heal {f.id}: {e}")
        print(f"{len(injected)} injected ({sorted({f.kind for f in injected})}), "
              f"{len(refused)} refused: {refused}")
        assert {"cpu-stress", "container-kill", "pod-kill", "crash-loop"} <= {f.kind for f in injected}
        assert len(injected) >= 40, f"only {len(injected)} of {FAULTS} injected; refused: {refused}"
        assert healed_by_hand >= 1
        active = lab.chaos.active()
        print(f"{healed_by_hand} healed by hand; active at down: {[(a.id, a.kind) for a in active]}")
        assert len(active) >= 3, f"want several faults active at down, have {[a.id for a in active]}"
        for f in active:
            pids.update(fault_pids(f))
        pids.update(lab_pids(lab))
        sockets = abstract_sockets(digest)
        assert {f"@kemu-{digest}-{p}" for p in ("apiserver", "scheduler", "dns")} & sockets
    finally:
        lab.down()
    try:
        poll_for(lambda: not leftovers(lab, pids, digest), 15, interval=0.05, what="nothing left behind")
    except AssertionError:
        raise AssertionError("lab down left behind:\n" + "\n".join(leftovers(lab, pids, digest))) from None
