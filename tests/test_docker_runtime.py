"""The docker runtime against a real Docker engine (testcontainers and the docker SDK).

Skipped, with the reason, only where no engine can run (``make test`` starts one
first: ``make docker-engine``); with ``KEMU_REQUIRE_DOCKER=1`` (set by ``make test``
once its engine answered) a missing engine fails instead. Every container made here
carries a lab label unique to the test and is removed by that label at the end.
"""
from __future__ import annotations

import os
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from node.runtime.docker_logs import ts_nanos  # noqa: E402
from node.runtime.interface import CREATED, EXITED, RUNNING, Mount  # noqa: E402
from tests.conftest import poll_for  # noqa: E402

STATUS_FILE = Path(__file__).resolve().parent.parent / ".kemu" / "docker-engine.status"
IMAGE = "kemu/busybox:latest"


def _engine_or_skip() -> Any:
    from node.runtime.docker import EngineUnavailable, engine_client
    try:
        return engine_client(timeout=30)
    except EngineUnavailable as e:
        why = str(e)
        if STATUS_FILE.exists():
            why += f"; make docker-engine said: {STATUS_FILE.read_text().strip()}"
        if os.environ.get("KEMU_REQUIRE_DOCKER") == "1":
            pytest.fail(f"KEMU_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(f"docker runtime tests need a Docker engine: {why}")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = _engine_or_skip()
    from lab.images import ImageBuildError, build_test_images
    try:
        build_test_images(client)
    except ImageBuildError as e:
        if os.environ.get("KEMU_REQUIRE_DOCKER") == "1":
            pytest.fail(str(e))
        pytest.skip(f"cannot build the test images: {e}")
    yield client
    client.close()


@pytest.fixture
def lab(engine: Any) -> Iterator[str]:
    """A lab name of this test's own; every container of it is removed at the end."""
    from node.runtime.docker import LABEL_LAB, remove_all
    name = f"kemu-test-{uuid.uuid4().hex[:10]}"
    yield name
    remove_all(name, engine)
    left = engine.api.containers(all=True, filters={"label": f"{LABEL_LAB}={name}"})
    assert left == [], f"containers left behind: {[c['Names'] for c in left]}"


class Clock:
    def __init__(self) -> None:
        self.t = time.monotonic()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make(engine: Any, lab: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    from node.runtime.docker import DockerRuntime
    made: list[Any] = []

    def build(node: str = "node-1", **kw: Any) -> Any:
        rt = DockerRuntime(None, root_dir=str(tmp_path / node), node_name=node, lab=lab,
                           client=engine, **kw)
        made.append(rt)
        return rt

    yield build
    for rt in made:
        rt.close()


def pod(name: str = "web", uid: str | None = None, containers: list | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid or str(uuid.uuid4())},
            "spec": {"containers": containers or []}}


def run(rt: Any, container: dict, ip: str = "", mounts: list[Mount] | None = None,
        env: dict | None = None, p: dict | None = None) -> tuple[str, str]:
    p = p or pod(containers=[container])
    sid = rt.run_pod_sandbox(p, ip)
    cid = rt.create_container(sid, p, container, 0, mounts, env=env)
    rt.start_container(cid)
    return sid, cid


def status(rt: Any, cid: str) -> Any:
    return next((c for c in rt.list_containers() if c.id == cid), None)


def wait_state(rt: Any, cid: str, state: str, timeout: float = 20) -> Any:
    def ok() -> Any:
        rt.tick(time.monotonic())
        st = status(rt, cid)
        return st if st is not None and st.state == state else None
    return poll_for(ok, timeout, 0.05, f"container {cid[:12]} {state}")


def log_lines(path: str) -> list[tuple[str, str, str, bytes]]:
    from node.runtime.proclogs import read_lines
    return list(read_lines(path))


# -- the test image, under testcontainers ----------------------------------------

def test_busybox_image_runs_under_testcontainers(engine: Any, lab: str) -> None:
    from testcontainers.core.container import DockerContainer
    assert engine.images.get("busybox:latest").id == engine.images.get(IMAGE).id
    c = (DockerContainer(IMAGE).with_command(["sh", "-c", "echo ready; exec sleep 60"])
         .with_kwargs(network_mode="none", labels={"kemu.lab": lab}))
    with c:
        poll_for(lambda: b"ready" in c.get_logs()[0], 20, 0.05, "the container's first line")
        code, out = c.exec(["sh", "-c", "which httpd wget sleep"])
        assert code == 0 and b"/usr/sbin/httpd" in out
    assert engine.api.containers(all=True, filters={"label": f"kemu.lab={lab}"}) == []


# -- a pod's life ---------------------------------------------------------------

def test_httpd_pod_serves_bind_mount_on_pod_ip(make: Any, tmp_path: Path) -> None:
    rt = make()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from a volume\n")
    ip = "127.127.250.1"
    httpd = {"name": "httpd", "image": IMAGE,
             "command": ["sh", "-c", 'echo "serving $POD_IP"; exec httpd -f -v -p "$POD_IP:8080" -h /www']}
    sid, cid = run(rt, httpd, ip, [Mount("/www", str(www), True, "www")], env={"POD_IP": ip})
    st = wait_state(rt, cid, RUNNING)
    assert st.image == IMAGE and st.image_id.startswith("sha256:")
    assert [(m.container_path, m.host_path, m.read_only) for m in st.mounts] == [("/www", str(www), True)]
    assert rt.version.startswith("docker://")

    def fetch() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=2) as r:
                return r.read()
        except OSError:
            return None
    assert poll_for(fetch, 20, 0.05, "httpd answering on the pod IP") == b"hello from a volume\n"
    code, out = rt.exec_sync(cid, ["sh", "-c", "touch /www/x"], 10)
    assert code != 0 and b"Read-only file system" in out
    rt.stop_pod_sandbox(sid)
    wait_state(rt, cid, EXITED)
    rt.remove_pod_sandbox(sid)
    assert rt.list_containers() == [] and rt.list_pod_sandboxes() == []


def test_rw_bind_mount_and_env_reach_the_container(make: Any, tmp_path: Path) -> None:
    rt = make()
    data = tmp_path / "data"
    data.mkdir()
    c = {"name": "writer", "image": IMAGE, "workingDir": "/data",
         "command": ["sh", "-c"], "args": ['echo "$GREETING" > out.txt; pwd']}
    _sid, cid = run(rt, c, mounts=[Mount("/data", str(data), False, "data")], env={"GREETING": "hi there"})
    st = wait_state(rt, cid, EXITED)
    assert (st.exit_code, st.reason) == (0, "Completed")
    assert (data / "out.txt").read_text() == "hi there\n"


def test_adopted_after_runtime_is_recreated(make: Any, engine: Any) -> None:
    rt = make()
    sid, cid = run(rt, {"name": "sleeper", "image": IMAGE, "command": ["sleep", "300"]}, "127.127.250.2")
    wait_state(rt, cid, RUNNING)
    rt.close()
    again = make()            # a restarted kubelet: same lab, node and root
    st = status(again, cid)
    assert st is not None and st.state == RUNNING and st.name == "sleeper" and st.sandbox_id == sid
    sb = {s.id: s for s in again.list_pod_sandboxes()}[sid]
    assert (sb.ip, sb.name, sb.pod_uid) == ("127.127.250.2", st.pod_name, st.pod_uid)
    assert status(make("node-2"), cid) is None    # another node's runtime does not see it
    again.stop_container(cid, 0)
    st = wait_state(again, cid, EXITED)
    assert (st.exit_code, st.reason) == (137, "Error")


def test_sandbox_record_rebuilt_from_labels(make: Any, tmp_path: Path) -> None:
    rt = make()
    sid, cid = run(rt, {"name": "sleeper", "image": IMAGE, "command": ["sleep", "300"]}, "127.127.250.3")
    rt.close()
    os.unlink(rt.state_path)
    again = make()
    assert [(s.id, s.ip) for s in again.list_pod_sandboxes()] == [(sid, "127.127.250.3")]
    again.remove_pod_sandbox(sid)
    assert again.list_containers() == []


def test_stop_with_grace_period(make: Any) -> None:
    rt = make()
    polite = {"name": "polite", "image": IMAGE,
              "command": ["sh", "-c", 'trap "exit 0" TERM; echo up; while :; do sleep 0.1; done']}
    stubborn = {"name": "stubborn", "image": IMAGE,
                "command": ["sh", "-c", 'trap "" TERM; echo up; while :; do sleep 0.1; done']}
    _s1, c1 = run(rt, polite)
    _s2, c2 = run(rt, stubborn)
    for cid in (c1, c2):
        wait_state(rt, cid, RUNNING)
        poll_for(lambda: any(t == b"up" for *_x, t in log_lines(status(rt, cid).log_path)), 20, 0.05,
                 "the trap installed")
    rt.stop_container(c1, 60)     # exits on SIGTERM, long before its grace period
    rt.stop_container(c2, 1)      # ignores SIGTERM: SIGKILL after 1 s
    st1 = wait_state(rt, c1, EXITED)
    assert (st1.exit_code, st1.reason) == (0, "Completed")
    st2 = wait_state(rt, c2, EXITED)
    assert (st2.exit_code, st2.reason) == (137, "Error")
    assert not rt.stopping


def test_exit_code_oom_and_missing_command(make: Any) -> None:
    from node.runtime.interface import StartContainerError
    rt = make()
    _s, failed = run(rt, {"name": "fails", "image": IMAGE, "command": ["sh", "-c", "exit 3"]})
    assert (wait_state(rt, failed, EXITED).exit_code, status(rt, failed).reason) == (3, "Error")
    hog = {"name": "hog", "image": IMAGE, "resources": {"limits": {"memory": "8Mi", "cpu": "500m"}},
           "command": ["sh", "-c", 'a=$(head -c 64000000 /dev/zero | tr "\\0" a); echo survived']}
    _s, oom = run(rt, hog)
    st = wait_state(rt, oom, EXITED)
    assert (st.reason, st.exit_code) == ("OOMKilled", 137)
    info = rt.api.inspect_container(oom)["HostConfig"]
    assert (info["Memory"], info["MemorySwap"], info["NanoCpus"]) == (8 << 20, 8 << 20, 500_000_000)
    p = pod(containers=[{"name": "nope", "image": IMAGE, "command": ["no-such-command"]}])
    sid = rt.run_pod_sandbox(p)
    cid = rt.create_container(sid, p, p["spec"]["containers"][0], 0)
    with pytest.raises(StartContainerError) as err:
        rt.start_container(cid)
    assert err.value.reason == "RunContainerError"
    assert 'exec: "no-such-command": executable file not found in $PATH' in err.value.message
    st = status(rt, cid)
    assert (st.state, st.reason, st.exit_code) == (EXITED, "StartError", 128)
    assert 'executable file not found' in st.message


def test_memory_limit_too_small_to_start(make: Any) -> None:
    from node.runtime.interface import CreateContainerError
    rt = make()
    c = {"name": "tiny", "image": IMAGE, "command": ["sleep", "300"],
         "resources": {"limits": {"memory": "1Mi"}}}
    p = pod(containers=[c])
    sid = rt.run_pod_sandbox(p)
    with pytest.raises(CreateContainerError) as err:
        rt.create_container(sid, p, c, 0)
    assert err.value.reason == "CreateContainerError"
    assert "Minimum memory limit allowed is 6MB" in err.value.message
    assert rt.list_containers() == []


def test_missing_image_err_image_pull_then_backoff(make: Any) -> None:
    from node.runtime.docker import ImagePullError
    clock = Clock()
    rt = make(clock=clock)
    c = {"name": "app", "image": "kemu/does-not-exist:1.0"}
    p = pod(containers=[c])
    sid = rt.run_pod_sandbox(p)
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, c, 0)
    assert err.value.reason == "ErrImagePull"
    assert 'kemu image build-test-images' in err.value.message
    assert ("Warning", "Failed", "Error: ErrImagePull") in err.value.events
    assert any(e[2].startswith('Failed to pull image "kemu/does-not-exist:1.0": ') for e in err.value.events)
    clock.t += 1
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, c, 0)
    assert (err.value.reason, err.value.message) == (
        "ImagePullBackOff", 'Back-off pulling image "kemu/does-not-exist:1.0"')
    assert p["metadata"]["uid"] in rt.tick(clock.t + 9.5)    # the back-off ends: sync the pod again
    clock.t += 9.5
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, c, 0)
    assert err.value.reason == "ErrImagePull"
    clock.t += 15     # the back-off doubled to 20 s
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, c, 0)
    assert err.value.reason == "ImagePullBackOff"
    never = dict(c, imagePullPolicy="Never")
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, never, 0)
    assert (err.value.reason, err.value.message) == (
        "ErrImageNeverPull", 'Container image "kemu/does-not-exist:1.0" is not present with pull policy of Never')
    assert rt.list_containers() == []
    assert not rt.has_image("kemu/does-not-exist:1.0") and rt.has_image(IMAGE)
    with pytest.raises(ImagePullError) as err:
        rt.create_container(sid, p, {"name": "bad", "image": "Bad Image!"}, 0)
    assert err.value.reason == "InvalidImageName"


def test_logs_written_in_cri_format_and_not_duplicated_on_adoption(make: Any) -> None:
    rt = make()
    c = {"name": "talker", "image": IMAGE,
         "command": ["sh", "-c", "echo out1; echo err1 >&2; echo out2; sleep 300"]}
    _sid, cid = run(rt, c)
    st = wait_state(rt, cid, RUNNING)
    assert st.log_path.endswith(f"/var/log/pods/default_web_{st.pod_uid}/talker/0.log")
    expect = [("stdout", "F", b"out1"), ("stderr", "F", b"err1"), ("stdout", "F", b"out2")]

    def lines() -> list:
        return sorted(((s, t, x) for _ts, s, t, x in log_lines(st.log_path)), key=expect.index)
    poll_for(lambda: len(log_lines(st.log_path)) >= 3, 20, 0.05, "three log lines")
    assert lines() == sorted(expect, key=expect.index)
    for ts, *_rest in log_lines(st.log_path):
        assert ts.endswith("Z") and ts_nanos(ts) > 0
    rt.close()
    again = make()
    code, _ = again.exec_sync(cid, ["sh", "-c", "echo late > /proc/1/fd/1"], 10)
    assert code == 0
    poll_for(lambda: len(log_lines(st.log_path)) >= 4, 20, 0.05, "the line written after adoption")
    assert [x for *_a, x in log_lines(st.log_path)].count(b"out1") == 1
    again.stop_container(cid, 0)
    wait_state(again, cid, EXITED)
    again.remove_container(cid)
    assert not os.path.exists(st.log_path)


def test_exec_sync_exit_code_output_and_timeout(make: Any) -> None:
    rt = make()
    _sid, cid = run(rt, {"name": "box", "image": IMAGE, "command": ["sleep", "300"]})
    wait_state(rt, cid, RUNNING)
    assert rt.exec_sync(cid, ["echo", "hi"], 10) == (0, b"hi\n")
    rt.tick(time.monotonic())
    assert status(rt, cid).memory_bytes > 0      # sampled from the container's cgroup
    assert rt.exec_sync(cid, ["sh", "-c", "exit 4"], 10)[0] == 4
    with pytest.raises(TimeoutError):
        rt.exec_sync(cid, ["sh", "-c", "sleep 123; echo never"], 0.5)

    def no_leftover() -> bool:
        _code, out = rt.exec_sync(cid, ["ps"], 10)
        return b"sleep 123" not in out
    poll_for(no_leftover, 10, 0.1, "the timed-out command killed")


def test_labels_let_lab_down_remove_everything(make: Any, engine: Any, lab: str) -> None:
    from node.runtime.docker import LABEL_LAB, LABEL_NODE, remove_all
    from node.runtime.interface import LABEL_CONTAINER_NAME, LABEL_POD_UID
    a, b = make("node-1"), make("node-2")
    _s, c1 = run(a, {"name": "one", "image": IMAGE, "command": ["sleep", "300"]})
    _s, c2 = run(b, {"name": "two", "image": IMAGE, "command": ["sleep", "300"]})
    labels = engine.api.inspect_container(c1)["Config"]["Labels"]
    assert labels[LABEL_LAB] == lab and labels[LABEL_NODE] == "node-1"
    assert labels[LABEL_CONTAINER_NAME] == "one" and labels[LABEL_POD_UID]
    assert remove_all(lab, engine, node="node-2") == 1
    assert {r["Id"] for r in engine.api.containers(all=True, filters={"label": f"{LABEL_LAB}={lab}"})} == {c1}
    assert remove_all(lab, engine) == 1
    assert engine.api.containers(all=True, filters={"label": f"{LABEL_LAB}={lab}"}) == []
    assert b.tick(time.monotonic() + 1) and status(b, c2) is None


def test_created_container_stopped_before_start(make: Any) -> None:
    rt = make()
    c = {"name": "idle", "image": IMAGE, "command": ["sleep", "300"]}
    p = pod(containers=[c])
    sid = rt.run_pod_sandbox(p)
    cid = rt.create_container(sid, p, c, 0)
    assert status(rt, cid).state == CREATED
    rt.stop_container(cid, 30)
    assert status(rt, cid) is None
    with pytest.raises(KeyError):
        rt.stop_pod_sandbox("no-such-sandbox")
