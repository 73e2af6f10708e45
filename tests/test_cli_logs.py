"""``kemu logs``: CRI log files under a lab's node root, the pod found through a real apiserver."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from emulator.cli.commands import logs
from emulator.cli.kubectl import build_parser, parse_args, run
from emulator.client import Client
from tests.conftest import poll_for

TS = "2026-11-26T10:00:0{}.5Z"


@pytest.fixture
def env(apiserver_addr: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KEMU_SERVER", apiserver_addr)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))
    api = Client(apiserver_addr, component="test")
    lab = tmp_path / "lab"
    (lab / "nodes" / "node-1").mkdir(parents=True)

    def kemu(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = run([*argv, "--lab-dir", str(lab)], out, err)
        return rc, out.getvalue(), err.getvalue()

    yield api, lab, kemu
    api.close()


def make_pod(api: Client, name: str, containers: list[str], statuses: dict[str, dict] | None = None,
             annotations: dict | None = None) -> dict:
    p = api.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
                    "spec": {"nodeName": "node-1", "containers": [{"name": c, "image": "x"} for c in containers]}})
    running = {"state": {"running": {"startedAt": "2026-11-26T10:00:00Z"}}, "lastState": {}, "restartCount": 0}
    css = [{"name": c, "image": "x", "ready": True, **((statuses or {}).get(c) or running)} for c in containers]
    api.update_status({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": "default", "uid": p["metadata"]["uid"]},
                       "status": {"phase": "Running", "containerStatuses": css}})
    return p


def log_dir(lab: Path, pod: dict, container: str) -> Path:
    md = pod["metadata"]
    d = lab / "nodes" / "node-1" / "var" / "log" / "pods" / f"default_{md['name']}_{md['uid']}" / container
    d.mkdir(parents=True, exist_ok=True)
    return d


def cri(*lines: tuple[int, str, str, str]) -> str:
    return "".join(f"{TS.format(i)} {stream} {tag} {text}\n" for i, stream, tag, text in lines)


RESTARTED = {"state": {"running": {"startedAt": "x"}}, "restartCount": 1,
             "lastState": {"terminated": {"exitCode": 1, "containerID": "process://a"}}}


def test_reads_joins_partials_tails_and_timestamps(env) -> None:
    api, lab, kemu = env
    p = make_pod(api, "web", ["app"])
    d = log_dir(lab, p, "app")
    (d / "0.log.2").write_text(cri((0, "stdout", "F", "oldest")))
    (d / "0.log.1").write_text(cri((1, "stdout", "F", "older")))
    (d / "0.log").write_text(cri((2, "stdout", "P", "hel"), (3, "stderr", "F", "an error"),
                                 (4, "stdout", "F", "lo world"), (5, "stdout", "F", "")) + "garbage line\n")
    rc, out, err = kemu("logs", "web")
    assert (rc, err) == (0, "")
    assert out == "oldest\nolder\nan error\nhello world\n\n"
    rc, out, _ = kemu("logs", "pod/web", "--tail", "2", "--timestamps")
    assert out == f"{TS.format(2)} hello world\n{TS.format(5)} \n"
    assert kemu("logs", "web", "--tail", "0")[1] == ""


def test_container_choice_and_not_found(env) -> None:
    api, lab, kemu = env
    make_pod(api, "two", ["a", "b"])
    rc, out, err = kemu("logs", "two")
    assert rc == 1 and err == "error: a container name must be specified for pod two, choose one of: [a b]\n"
    rc, _, err = kemu("logs", "two", "-c", "zz")
    assert rc == 1 and err == "error: container zz is not valid for pod two\n"
    assert kemu("logs", "two", "-c", "b")[0] == 0
    p = make_pod(api, "dflt", ["a", "b"], annotations={"kubectl.kubernetes.io/default-container": "b"})
    (log_dir(lab, p, "b") / "0.log").write_text(cri((1, "stdout", "F", "from b")))
    assert kemu("logs", "dflt")[1] == "from b\n"
    rc, out, err = kemu("logs", "nope")
    assert rc == 1 and err == 'Error from server (NotFound): pods "nope" not found\n'


def test_previous(env) -> None:
    api, lab, kemu = env
    p = make_pod(api, "web", ["app"], {"app": RESTARTED})
    d = log_dir(lab, p, "app")
    (d / "0.log").write_text(cri((0, "stdout", "F", "first run")))
    (d / "1.log").write_text(cri((1, "stdout", "F", "second run")))
    assert kemu("logs", "web")[1] == "second run\n"
    assert kemu("logs", "web", "--previous")[1] == "first run\n"
    # waiting to restart: the current and the previous container are both the last one that ran
    crash = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 1,
             "lastState": {"terminated": {"exitCode": 1, "containerID": "process://b"}}}
    p2 = make_pod(api, "crash", ["app"], {"app": crash})
    d2 = log_dir(lab, p2, "app")
    (d2 / "0.log").write_text(cri((0, "stdout", "F", "boom 0")))
    (d2 / "1.log").write_text(cri((1, "stdout", "F", "boom 1")))
    assert kemu("logs", "crash")[1] == kemu("logs", "crash", "-p")[1] == "boom 1\n"
    make_pod(api, "fresh", ["app"])
    rc, _, err = kemu("logs", "fresh", "--previous")
    assert rc == 1 and err == ('Error from server (BadRequest): previous terminated container "app" in pod '
                               '"fresh" not found\n')


def test_waiting_and_fake_runtime(env) -> None:
    api, lab, kemu = env
    make_pod(api, "pull", ["app"], {"app": {"state": {"waiting": {"reason": "ImagePullBackOff"}},
                                            "restartCount": 0, "lastState": {}}})
    rc, _, err = kemu("logs", "pull")
    assert rc == 1 and err == ('Error from server (BadRequest): container "app" in pod "pull" is waiting to '
                               'start: trying and failing to pull image\n')
    make_pod(api, "fake", ["app"])      # running, but the fake runtime writes no log files
    assert kemu("logs", "fake") == (0, "", "")
    api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "namespace": "default"},
                "spec": {"containers": [{"name": "app", "image": "x"}]}})
    rc, _, err = kemu("logs", "pending")
    assert rc == 1 and 'is waiting to start: ContainerCreating' in err


def test_follow_appends_rotation_and_restart(env) -> None:
    api, lab, kemu = env
    p = make_pod(api, "web", ["app"])
    d = log_dir(lab, p, "app")
    (d / "0.log").write_text(cri((0, "stdout", "F", "before")) + f"{TS.format(1)} stdout F unfinis")
    stop = threading.Event()
    out, err = io.StringIO(), io.StringIO()
    args = parse_args(build_parser(), ["logs", "web", "-f", "--lab-dir", str(lab)])
    args._stop = stop.is_set
    rcs: list[int] = []
    t = threading.Thread(target=lambda: rcs.append(logs.run(args, out, err)), daemon=True)
    t.start()
    try:
        poll_for(lambda: out.getvalue() == "before\n", 10, what="existing lines")
        with open(d / "0.log", "a") as f:
            f.write("hed line\n" + cri((2, "stdout", "P", "part"), (3, "stdout", "F", "ial")))
        poll_for(lambda: out.getvalue() == "before\nunfinished line\npartial\n", 10, what="appended")
        os.rename(d / "0.log", d / "0.log.1")       # rotation
        (d / "0.log").write_text(cri((4, "stdout", "F", "after rotation")))
        poll_for(lambda: out.getvalue().endswith("partial\nafter rotation\n"), 10, what="rotated file")
        (d / "1.log").write_text(cri((5, "stderr", "F", "restarted")))
        poll_for(lambda: out.getvalue().endswith("after rotation\nrestarted\n"), 10, what="new attempt")
    finally:
        stop.set()
        t.join(10)
    assert rcs == [0] and err.getvalue() == ""


def test_follow_ends_on_sigint(env, apiserver_addr: str) -> None:
    api, lab, _kemu = env
    p = make_pod(api, "web", ["app"])
    (log_dir(lab, p, "app") / "0.log").write_text(cri((0, "stdout", "F", "hello")))
    # SIGINT restored to its default in the child: a suite started as a background job
    # (``make test &``) runs with SIGINT ignored, and the child would inherit that.
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "logs", "web", "-f", "--lab-dir", str(lab)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KEMU_SERVER": apiserver_addr},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "hello\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
