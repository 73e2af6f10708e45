"""The dashboard in-process: its model, its fan-out, and its HTTP endpoints against a real
apiserver in a thread (the initial state, the SSE stream delivering a node change and a
fault, loopback only, bad ports). The browser test is tests/test_dashboard_browser.py."""
from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from emulator.client import Client
from lab.dashboard.hub import Hub, encode
from lab.dashboard.server import DashboardError, DashboardServer, check_address, check_port
from lab.dashboard.state import DashboardState, node_status
from tests.conftest import poll_for


def node(name: str, ready: str | None = "True", **pressure: str) -> dict:
    conds = [] if ready is None else [{"type": "Ready", "status": ready}]
    conds += [{"type": t, "status": s} for t, s in pressure.items()]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "resourceVersion": "1"},
            "status": {"conditions": conds}}


def pod(name: str, node_name: str | None, phase: str = "Running", ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}}


# -- the model --------------------------------------------------------------------------

def test_node_colour_follows_its_conditions() -> None:
    assert node_status(node("n", "True")) == "ready"
    assert node_status(node("n", "False")) == "notready"
    assert node_status(node("n", "Unknown")) == "notready"
    assert node_status(node("n", None)) == "notready"
    assert node_status(node("n", "True", DiskPressure="True")) == "pressure"
    assert node_status(node("n", "True", MemoryPressure="False", PIDPressure="True")) == "pressure"
    assert node_status(node("n", "Unknown", DiskPressure="True")) == "notready"   # red wins


def test_state_deltas_samples_and_fault_windows() -> None:
    t = [100.0]
    st = DashboardState("lab1", clock=lambda: t[0])
    assert st.take_delta() is None
    st.on_node("ADDED", node("node-1"))
    st.on_node("ADDED", node("node-2", "False"))
    st.on_pod("ADDED", pod("web-1", "node-1"))
    st.on_pod("ADDED", pod("web-2", None, "Pending"))
    t[0] = 101.0
    d = st.take_delta()
    assert d is not None
    assert d["nodes"]["node-1"]["status"] == "ready" and d["nodes"]["node-2"]["status"] == "notready"
    assert d["pods"]["default/web-1"]["node"] == "node-1" and d["pods"]["default/web-2"]["node"] is None
    assert d["samples"] == [[101.0, 1, 1]] and d["now"] == 101.0
    # the same state again is no change; a deletion is a None
    st.on_node("MODIFIED", node("node-1"))
    assert st.take_delta() is None
    st.on_pod("DELETED", pod("web-2", None))
    assert st.take_delta()["pods"] == {"default/web-2": None}
    # faults: a window opens at injected_at and closes when the fault leaves the record
    f = {"id": "f-1", "kind": "kill", "target": "node-2", "targets": ["node-2"], "params": {},
         "duration": 30.0, "injected_at": 99.5}
    t[0] = 102.0
    st.set_faults([f])
    d = st.take_delta()
    assert [x["id"] for x in d["faults"]] == ["f-1"] and d["faults"][0]["expires_at"] == 129.5
    assert d["windows"] == [{"id": "f-1", "kind": "kill", "target": "node-2", "start": 99.5, "end": None}]
    st.set_faults([f])
    assert st.take_delta() is None
    t[0] = 110.0
    st.set_faults([])
    d = st.take_delta()
    assert d["faults"] == [] and d["windows"][0]["end"] == 110.0
    snap = st.snapshot()
    assert snap["lab"] == "lab1" and snap["started"] == 100.0 and set(snap["nodes"]) == {"node-1", "node-2"}
    assert snap["samples"] == [[100.0, 0, 0], [101.0, 1, 1]]
    assert snap["windows"][0]["end"] == 110.0 and snap["faults"] == []
    st.set_status("apiserver unreachable: x")
    assert st.take_delta()["status"] == "apiserver unreachable: x"


def test_state_keeps_the_most_recent_events() -> None:
    from lab.dashboard import state as mod
    st = DashboardState()
    for i in range(mod.MAX_EVENTS + 5):
        st.on_event("ADDED", {"metadata": {"name": f"e{i:04d}", "namespace": "default"}, "reason": "R",
                              "involvedObject": {"kind": "Pod", "name": "p"},
                              "lastTimestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"})
    assert len(st.events) == mod.MAX_EVENTS and "default/e0000" not in st.events
    assert st.events[f"default/e{mod.MAX_EVENTS + 4:04d}"]["object"] == "pod/p"


def test_hub_drops_a_subscriber_that_stopped_reading() -> None:
    hub = Hub(maxsize=3)
    slow, fast = hub.subscribe(b"s"), hub.subscribe(b"s")
    assert fast.get(0) == b"s"   # the snapshot comes first
    for i in range(5):
        hub.publish(encode("delta", {"i": i}))
        assert fast.get(0) == f'event: delta\ndata: {{"i":{i}}}\n\n'.encode()
    assert slow.dropped and slow.get(0) is None and hub.subscribers == [fast]
    assert fast.get(0) == b""   # nothing new: the caller sends a keep-alive
    hub.close()
    assert fast.get(1) is None


# -- the server ---------------------------------------------------------------------------

@pytest.fixture
def api(apiserver_addr: str) -> Iterator[Client]:
    c = Client(apiserver_addr)
    yield c
    c.close()


@pytest.fixture
def dashboard(apiserver_addr: str, tmp_path: Path) -> Iterator[Callable[..., DashboardServer]]:
    made: list[DashboardServer] = []

    def make(**kw: Any) -> DashboardServer:
        d = DashboardServer(apiserver_addr, tmp_path / "run" / "chaos.json", lab="t", tick=0.05, **kw)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()


def get(d: DashboardServer, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    try:
        c.request("GET", path, headers={"Host": host} if host else {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


class SSE:
    """A Server-Sent Events reader over http.client, with a timeout on every read."""

    def __init__(self, d: DashboardServer) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        self.conn.request("GET", "/api/stream")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200 and self.resp.getheader("Content-Type") == "text/event-stream"

    def next(self) -> tuple[str, dict]:
        event, data = "", ""
        while True:
            line = self.resp.fp.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                return event, json.loads(data)

    def until(self, pred: Callable[[dict], bool], what: str, limit: int = 200) -> dict:
        for _ in range(limit):
            ev, data = self.next()
            if ev == "delta" and pred(data):
                return data
        raise AssertionError(f"no delta with {what} in {limit} messages")

    def close(self) -> None:
        self.resp.close()   # the response holds the socket open too
        self.conn.close()


def test_state_json_page_and_stream(api: Client, dashboard: Callable[..., DashboardServer],
                                    tmp_path: Path) -> None:
    api.create(node("node-1", None))
    api.create(node("node-2"))
    d = dashboard(keepalive=0.1)   # a closed stream is noticed at the next write
    state = poll_for(lambda: (s := json.loads(get(d, "/api/state")[2]))["status"] == "watching"
                     and len(s["nodes"]) == 2 and s, 10, what="the dashboard's first list")
    assert state["lab"] == "t" and state["nodes"]["node-2"]["status"] == "ready"
    assert state["nodes"]["node-1"]["status"] == "notready"   # no conditions yet
    assert state["faults"] == [] and state["samples"][-1][1:] == [1, 0]

    status, headers, body = get(d, "/")
    assert status == 200 and b'<script src="/static/dashboard.js"' in body
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for path in ("/", "/static/dashboard.js", "/static/dashboard.css", "/static/favicon.svg"):
        status, _, body = get(d, path)
        text = body.decode()   # self-contained: no URL but the SVG namespace
        assert status == 200 and "https://" not in text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path
    assert get(d, "/static/../server.py")[0] == 404 and get(d, "/nope")[0] == 404
    assert get(d, "/", host="evil.example:80")[0] == 403   # DNS rebinding
    assert get(d, "/healthz", host=f"localhost:{d.port}")[0] == 200

    sse = SSE(d)
    try:
        ev, snap = sse.next()
        assert ev == "snapshot" and set(snap["nodes"]) == {"node-1", "node-2"}
        # a node goes NotReady: the stream says so, from the watch
        n2 = api.get("Node", "node-2")
        n2["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
        api.update(n2, subresource="status")
        delta = sse.until(lambda x: "node-2" in x.get("nodes", {}), "node-2")
        assert delta["nodes"]["node-2"]["status"] == "notready" and delta["samples"][-1][1:] == [0, 0]
        # a pod lands on node-1
        api.create(pod("web-1", "node-1"), namespace="default")
        delta = sse.until(lambda x: "default/web-1" in x.get("pods", {}), "the pod")
        assert delta["pods"]["default/web-1"]["node"] == "node-1"
        # a fault appears in the chaos record, then leaves it
        run = tmp_path / "run"
        run.mkdir()
        fault = {"id": "f-1", "kind": "kill", "target": "node-2", "targets": ["node-2"], "params": {},
                 "duration": None, "injected_at": 1.0}
        (run / "chaos.json").write_text(json.dumps({"next": 2, "faults": {"f-1": fault}}))
        delta = sse.until(lambda x: "faults" in x, "the fault")
        assert [f["id"] for f in delta["faults"]] == ["f-1"] and delta["windows"][0]["end"] is None
        (run / "chaos.json.tmp").write_text(json.dumps({"next": 2, "faults": {}}))
        (run / "chaos.json.tmp").replace(run / "chaos.json")
        delta = sse.until(lambda x: "faults" in x, "the heal")
        assert delta["faults"] == [] and delta["windows"][0]["end"] is not None
    finally:
        sse.close()
    poll_for(lambda: not d.hub.subscribers, 10, what="the closed stream to unsubscribe")


def test_stream_keeps_alive_and_ends_on_stop(api: Client, dashboard: Callable[..., DashboardServer]) -> None:
    d = dashboard(keepalive=0.05)
    sse = SSE(d)
    try:
        assert sse.next()[0] == "snapshot"
        assert poll_for(lambda: sse.resp.fp.readline() == b": keep-alive\n", 10, what="a keep-alive")
        d.stop()
        poll_for(lambda: sse.resp.fp.readline() == b"", 10, what="the stream to end")
    finally:
        sse.close()


def test_read_only_and_loopback_only(dashboard: Callable[..., DashboardServer]) -> None:
    d = dashboard()
    assert d.url == f"http://127.0.0.1:{d.port}/"
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    c.request("POST", "/api/state", body=b"{}")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    c.close()
    assert d.httpd.socket.getsockname()[0] == "127.0.0.1"
    for address in ("0.0.0.0", "::", "192.168.1.5", "localhost", ""):
        with pytest.raises(DashboardError, match="loopback only"):
            check_address(address)
        with pytest.raises(DashboardError, match=r"^--address"):
            DashboardServer("tcp://127.0.0.1:1", None, address=address)


def test_bad_and_busy_ports(dashboard: Callable[..., DashboardServer]) -> None:
    for bad in (-1, 65536, "http", None):
        with pytest.raises(DashboardError, match=r"^--port .*(out of range|not a number)"):
            check_port(bad)
    d = dashboard()
    with pytest.raises(DashboardError, match=rf"^--port {d.port}: 127.0.0.1:{d.port} is already in use"):
        DashboardServer("tcp://127.0.0.1:1", None, port=d.port)


def test_cli_refuses_bad_flags(kemu_home: Path, capsys: pytest.CaptureFixture) -> None:
    from lab.cli import main

    def run(*args: str) -> tuple[int, str]:
        try:
            rc = main(["dashboard", *args])
        except SystemExit as e:   # argparse: bad usage
            rc = int(e.code or 0)
        return rc, capsys.readouterr().err

    rc, err = run("--port", "http")
    assert rc == 2 and "--port takes a number from 0 to 65535, got 'http'" in err
    rc, err = run("--port", "70000")
    assert rc == 2 and "--port must be from 0 to 65535 (0: any free port), got 70000" in err
    rc, err = run("--address", "0.0.0.0")
    assert rc == 1 and err.startswith("error: --address 0.0.0.0: the dashboard serves on loopback only")
    rc, err = run("--name", "nolab")
    assert rc == 1 and "no lab at" in err
    rc, err = run()
    assert rc == 1 and "no current lab" in err


@pytest.fixture
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def test_a_lost_apiserver_shows_on_the_page(threaded_server: Callable[..., Any], tmp_path: Path) -> None:
    srv = threaded_server()
    d = DashboardServer(srv.address, None, tick=0.05).start()
    try:
        poll_for(lambda: d.snapshot()["status"] == "watching", 10, what="watching")
        srv.stop()
        status = poll_for(lambda: (s := d.snapshot()["status"]) != "watching" and s, 30,
                          what="the dashboard to notice the apiserver is gone")
        assert status.startswith(("apiserver not answering", "apiserver unreachable")), status
    finally:
        d.stop()
