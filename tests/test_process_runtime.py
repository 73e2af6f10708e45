"""The process runtime on its own: real processes, their logs, exits, limits, stops and adoption."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from node.runtime import make_runtime, proclogs
from node.runtime.interface import (CREATED, EXITED, RUNNING, CreateContainerError, Mount,
                                    StartContainerError)
from node.runtime.process import ProcessRuntime, kill_all
from node.runtime.shim import alive, start_ticks
from tests.conftest import poll_for

POD = {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}}


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[ProcessRuntime]:
    made: list[ProcessRuntime] = []

    def make(**kw) -> ProcessRuntime:
        r = ProcessRuntime(root_dir=str(tmp_path / "node"), usage_interval=0.1,
                           state_path=str(tmp_path / "node/var/lib/kemu/runtime.json"), **kw)
        made.append(r)
        return r
    r = make()
    r.make = make   # type: ignore[attr-defined]
    yield r
    kill_all(str(tmp_path / "node"))
    for r in made:
        for c in r.containers.values():
            if c.popen is not None:
                c.popen.wait(5)
        for p in r.reap:
            p.wait(5)


def run(rt: ProcessRuntime, command: list[str], name: str = "app", attempt: int = 0, **spec) -> str:
    sid = next(iter(rt.sandboxes), None) or rt.run_pod_sandbox(POD, "127.64.0.2")
    mounts, env = spec.pop("mounts", None), spec.pop("env", None)
    cid = rt.create_container(sid, POD, {"name": name, "image": "busybox", "command": command, **spec},
                              attempt, mounts=mounts, env=env)
    rt.start_container(cid)
    return cid


def wait_exit(rt: ProcessRuntime, cid: str, timeout: float = 10.0):
    def done():
        rt.tick(time.monotonic())
        return rt.containers[cid].status.state == EXITED
    poll_for(done, timeout, what=f"container {cid} to exit")
    return rt.containers[cid].status


def test_output_goes_to_the_cri_log_and_exit_codes_are_reported(rt: ProcessRuntime) -> None:
    cid = run(rt, ["sh", "-c", "echo hello $POD_IP; echo oops >&2; printf tail; exit 3"], env={"POD_IP": "127.64.0.2"})
    st = wait_exit(rt, cid)
    assert (st.exit_code, st.reason) == (3, "Error")
    assert st.log_path.endswith("var/log/pods/default_web_uid-1/app/0.log")
    lines = list(proclogs.read_lines(st.log_path))
    assert [(s, t, x) for _, s, t, x in lines] == [("stdout", "F", b"hello 127.64.0.2"),
                                                   ("stderr", "F", b"oops"), ("stdout", "F", b"tail")]
    assert lines[0][0].endswith("Z") and "T" in lines[0][0]
    ok = wait_exit(rt, run(rt, ["true"], name="ok"))
    assert (ok.exit_code, ok.reason, ok.state) == (0, "Completed", EXITED)
    assert rt.version.startswith("process://3.")


def test_missing_command_is_a_start_error_with_runc_message(rt: ProcessRuntime) -> None:
    with pytest.raises(StartContainerError) as e:
        run(rt, ["no-such-command-kemu"])
    assert str(e.value) == ('unable to start container process: exec: "no-such-command-kemu": '
                            "executable file not found in $PATH")
    st = rt.list_containers()[0]
    assert (st.state, st.exit_code, st.reason) == (EXITED, 128, "StartError")
    assert "executable file not found" in st.message
    sid = next(iter(rt.sandboxes))
    with pytest.raises(CreateContainerError, match="no command specified"):
        rt.create_container(sid, POD, {"name": "empty", "image": "busybox"}, 0)


def test_container_ignoring_sigterm_is_killed_after_the_grace_period(rt: ProcessRuntime) -> None:
    cid = run(rt, ["sh", "-c", "trap '' TERM; echo trapped; sleep 100"])
    poll_for(lambda: b"trapped" in Path(rt.containers[cid].status.log_path).read_bytes()
             if Path(rt.containers[cid].status.log_path).exists() else False, 10, what="the trap set")
    rt.stop_container(cid, 0.5)
    rt.tick(time.monotonic())
    assert rt.containers[cid].status.state == RUNNING      # still in its grace period
    st = wait_exit(rt, cid)
    assert (st.exit_code, st.reason) == (137, "Error")     # SIGKILL


def test_container_stopped_politely_exits_with_sigterm(rt: ProcessRuntime) -> None:
    cid = run(rt, ["sleep", "100"])
    poll_for(lambda: (rt.tick(time.monotonic()), rt.containers[cid].pid)[1], 10, what="pid")
    rt.stop_container(cid, 30)
    st = wait_exit(rt, cid)
    assert (st.exit_code, st.reason) == (143, "Error")


def test_container_that_forks_and_exits_leaves_no_orphans(rt: ProcessRuntime, tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    cid = run(rt, ["sh", "-c", f"sleep 100 & echo $! > {marker}; exit 0"])
    st = wait_exit(rt, cid)
    assert (st.exit_code, st.reason) == (0, "Completed")
    child = int(marker.read_text())
    poll_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE,
             5, what="the forked child to be killed")


def test_memory_limit_too_small_to_start_is_oomkilled(rt: ProcessRuntime) -> None:
    # RLIMIT_AS of 1Mi: the dynamic loader cannot map python's libraries ("failed to map
    # segment from shared object", exit 127): the heuristic reports OOMKilled.
    cid = run(rt, ["python3", "-c", "print('never')"], resources={"limits": {"memory": "1Mi"}})
    st = wait_exit(rt, cid)
    assert st.reason == "OOMKilled"
    assert st.exit_code != 0
    assert "memory limit 1048576 bytes (RLIMIT_AS)" in st.message
    big = wait_exit(rt, run(rt, ["python3", "-c", "x = bytearray(512 << 20)"], name="big",
                            resources={"limits": {"memory": "64Mi"}}))
    assert (big.reason, big.exit_code) == ("OOMKilled", 1)
    assert "MemoryError" in big.message
    plain = wait_exit(rt, run(rt, ["sh", "-c", "exit 1"], name="plain", resources={"limits": {"memory": "64Mi"}}))
    assert plain.reason == "Error"      # a failure that is not about memory stays Error


def test_exec_sync_runs_in_the_container_and_times_out(rt: ProcessRuntime, tmp_path: Path) -> None:
    data = tmp_path / "vol"
    data.mkdir()
    (data / "f.txt").write_text("volume data\n")
    cid = run(rt, ["sleep", "100"], env={"GREETING": "hi"}, workingDir="/data/sub",
              mounts=[Mount(container_path="/data", host_path=str(data), name="my-vol")])
    code, out = rt.exec_sync(cid, ["sh", "-c", 'echo $GREETING; pwd; cat $KEMU_MOUNT_MY_VOL/f.txt; '
                                   'cat $KEMU_ROOTFS/data/f.txt; echo err >&2; exit 4'], 10)
    assert code == 4
    assert out.decode().split("\n")[:5] == ["hi", str(data / "sub"), "volume data", "volume data", "err"]
    assert rt.exec_sync(cid, ["no-such-probe-cmd"], 5)[0] == 127
    with pytest.raises(TimeoutError):
        rt.exec_sync(cid, ["sleep", "100"], 0.2)


def test_log_rotation_keeps_at_most_max_files(rt: ProcessRuntime) -> None:
    r = rt.make(log_max_bytes=2000, log_max_files=3)   # type: ignore[attr-defined]
    cid = run(r, ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"])
    st = wait_exit(r, cid)
    files = proclogs.log_files(st.log_path)
    assert [os.path.basename(f) for f in files] == ["0.log.2", "0.log.1", "0.log"]
    assert all(os.path.getsize(f) < 2100 for f in files)
    texts = [x for _, _, _, x in proclogs.read_lines(st.log_path)]
    assert texts[-1] == b"line-299" and texts == sorted(texts, key=lambda b: int(b.split(b"-")[1]))


def test_long_lines_are_split_into_partial_records(tmp_path: Path) -> None:
    w = proclogs.LogWriter(str(tmp_path / "0.log"))
    w.feed("stdout", b"a" * (proclogs.MAX_LINE + 10) + b"\nnext")
    w.close()
    recs = [(s, t, len(x)) for _, s, t, x in proclogs.read_lines(str(tmp_path / "0.log"))]
    assert recs == [("stdout", "P", proclogs.MAX_LINE), ("stdout", "F", 10), ("stdout", "F", 4)]


def test_restarted_runtime_adopts_running_containers(rt: ProcessRuntime) -> None:
    cid = run(rt, ["sleep", "100"])
    poll_for(lambda: (rt.tick(time.monotonic()), rt.containers[cid].pid)[1], 10, what="pid")
    pid = rt.containers[cid].pid
    again = rt.make()   # type: ignore[attr-defined]
    st = {c.id: c for c in again.list_containers()}[cid]
    assert st.state == RUNNING and again.containers[cid].pid == pid
    assert again.tick(time.monotonic()) == set()
    again.stop_container(cid, 5)
    assert wait_exit(again, cid).exit_code == 143
    assert not alive(pid, again.containers[cid].pid_start)


def test_containers_die_with_their_anchor(rt: ProcessRuntime) -> None:
    anchor = subprocess.Popen(["sleep", "100"])
    try:
        r = rt.make(anchor_pid=anchor.pid)   # type: ignore[attr-defined]
        cid = run(r, ["sleep", "100"])
        poll_for(lambda: (r.tick(time.monotonic()), r.containers[cid].pid)[1], 10, what="pid")
        pid, ticks = r.containers[cid].pid, r.containers[cid].pid_start
        anchor.kill()
        anchor.wait()
        st = wait_exit(r, cid)
        assert st.exit_code == 137
        assert not alive(pid, ticks)
    finally:
        if anchor.poll() is None:
            anchor.kill()
            anchor.wait()


def test_usage_is_measured(rt: ProcessRuntime) -> None:
    cid = run(rt, ["python3", "-c", "x = bytearray(30 << 20)\nwhile True: pass"])

    def busy():
        rt.tick(time.monotonic())
        st = rt.containers[cid].status
        return st.cpu_millis > 100 and st.memory_bytes > 30 << 20
    poll_for(busy, 10, interval=0.05, what="CPU and memory usage to show")
    rt.stop_container(cid, 0)
    assert wait_exit(rt, cid).cpu_millis == 0


def test_kill_all_and_remove(rt: ProcessRuntime) -> None:
    tag = uuid.uuid4().hex
    cid = run(rt, ["sh", "-c", f"sleep 100 & sleep 101 # {tag}"])
    poll_for(lambda: (rt.tick(time.monotonic()), rt.containers[cid].pid)[1], 10, what="pid")
    poll_for(lambda: len([p for p in psutil.process_iter(["cmdline"]) if tag in " ".join(p.info["cmdline"] or [])]) >= 1,
             5, what="the container")
    assert kill_all(rt.root_dir) >= 1
    left = [p for p in psutil.process_iter(["cmdline"]) if tag in " ".join(p.info["cmdline"] or [])
            and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []
    wait_exit(rt, cid)
    log = rt.containers[cid].status.log_path
    sid = rt.containers[cid].status.sandbox_id
    rt.remove_pod_sandbox(sid)
    assert rt.list_containers() == [] and not os.path.exists(os.path.dirname(os.path.dirname(log)))


def test_make_runtime_by_name(tmp_path: Path) -> None:
    assert make_runtime("fake", profile=None, root_dir=str(tmp_path)).name == "fake"
    with pytest.raises(ValueError, match='unsupported runtime "rkt"; supported: fake, process, docker'):
        make_runtime("rkt", profile=None, root_dir=str(tmp_path))
    assert start_ticks(os.getpid()) is not None and start_ticks(2 ** 22 + 7) is None
    assert signal.SIGKILL   # (imported for readers: the runtime kills with it)
    assert CREATED == "created"
