"""Bad input on the wire: each gets a clear error, nothing is lost, and the
apiserver (a real process) keeps serving its other clients throughout."""
from __future__ import annotations

import msgpack
import pytest
import zmq

from emulator.api.errors import BAD_REQUEST, TOO_LARGE, UNAVAILABLE, APIError
from emulator.client import Client
from tests.test_apiserver import cm


@pytest.fixture
def live(server_process):
    sp = server_process("--max-frame-bytes", "65536")
    addr = sp.start()
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(addr)
    good = Client(addr, component="bystander")
    good.create(cm("keep", k="v"))
    yield sp, raw, good
    good.close()
    raw.close(0)
    ctx.term()


def ask(raw: zmq.Socket, frame: bytes) -> dict:
    raw.send(frame)
    assert raw.poll(5000), "no reply"
    return msgpack.unpackb(raw.recv())


def still_serving(good: Client) -> None:
    assert good.get("ConfigMap", "keep", "default")["data"] == {"k": "v"}
    good.create(cm(f"after-{len(good.list('ConfigMap', 'default')['items'])}"))


HELLO = msgpack.packb({"id": 1, "op": "hello", "protocol": 1, "component": "raw"})


@pytest.mark.parametrize("frame, expect", [
    (b"\xc1\xc1\xc1 garbage", "malformed frame"),
    (msgpack.packb({"id": 5, "op": "get", "kind": "Pod", "name": "x"})[:-3], "malformed frame"),
    (msgpack.packb([1, 2, 3]), "expected a map"),
    (msgpack.packb({"id": "five", "op": "get"}), 'envelope field "id": expected an integer'),
    (msgpack.packb({"id": 5, "op": 17}), 'envelope field "op": expected a string'),
    (msgpack.packb({"id": 5, "op": "get", "kind": 3, "name": "x"}), 'envelope field "kind"'),
    (msgpack.packb({"id": 5, "op": "frobnicate"}), 'unknown op "frobnicate"; supported ops: hello'),
    (msgpack.packb({"id": 5, "op": "create", "object": {"apiVersion": "v1", "kind": "Gadget",
                                                        "metadata": {"name": "x"}}}), 'kind "Gadget"'),
])
def test_bad_frames_get_clear_errors(live, frame: bytes, expect: str) -> None:
    _sp, raw, good = live
    assert ask(raw, HELLO)["ok"]
    reply = ask(raw, frame)
    assert reply["ok"] is False and reply["error"]["code"] == BAD_REQUEST
    assert expect in reply["error"]["message"]
    still_serving(good)


def test_oversized_frame_is_refused(live) -> None:
    _sp, raw, good = live
    assert ask(raw, HELLO)["ok"]
    reply = ask(raw, msgpack.packb({"id": 9, "op": "create", "object": {"data": "x" * 100_000}}))
    assert reply["error"]["code"] == TOO_LARGE and "exceeds the maximum of 65536" in reply["error"]["message"]
    with pytest.raises(APIError) as e:   # the client refuses before sending
        good.create(cm("huge", k="x" * 100_000))
    assert e.value.code == TOO_LARGE
    still_serving(good)


def test_request_before_hello_is_refused(live) -> None:
    _sp, raw, good = live
    reply = ask(raw, msgpack.packb({"id": 3, "op": "get", "kind": "Pod", "name": "x"}))
    assert reply["id"] == 3 and reply["error"]["code"] == BAD_REQUEST
    assert "send hello" in reply["error"]["message"]
    reply = ask(raw, msgpack.packb({"id": 4, "op": "hello", "protocol": 99}))
    assert "protocol version 99 is not supported" in reply["error"]["message"]
    still_serving(good)


def test_stale_resource_version_loses_nothing(live) -> None:
    _sp, _raw, good = live
    first = good.get("ConfigMap", "keep", "default")
    good.update(dict(first, data={"k": "v2"}))
    with pytest.raises(APIError) as e:
        good.update(dict(first, data={"k": "lost?"}))
    assert e.value.code == "Conflict"
    assert good.get("ConfigMap", "keep", "default")["data"] == {"k": "v2"}


def test_dead_server_times_out_naming_the_address(server_process) -> None:
    sp = server_process()
    addr = sp.start()
    sp.kill()
    c = Client(addr, timeout=0.3, retries=1)
    try:
        with pytest.raises(APIError) as e:
            c.get("Pod", "x", "default")
        assert e.value.code == UNAVAILABLE and addr in e.value.message
    finally:
        c.close()


def test_a_client_of_another_lab_is_refused(threaded_server) -> None:
    """A process left over from an old lab must not join a new one on a reused port."""
    from emulator.api.errors import FORBIDDEN
    srv = threaded_server("mem://lab-guard", None, lab="new")
    stray = Client(srv.address, lab="old", retries=0)
    ours = Client(srv.address, lab="new")
    try:
        with pytest.raises(APIError) as e:
            stray.create(cm("intruder"))
        assert e.value.code == FORBIDDEN and 'serves lab "new", not "old"' in e.value.message
        ours.create(cm("member"))
        assert [o["metadata"]["name"] for o in ours.list("ConfigMap", "default")["items"]] == ["member"]
    finally:
        stray.close(), ours.close()
