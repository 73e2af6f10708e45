"""emulator.ctl: a lab process's control socket refuses bad requests with a clear error."""
from __future__ import annotations

import msgpack
import pytest

from emulator import ctl


def test_bad_requests_get_errors_that_say_what_is_wrong(tmp_path) -> None:
    srv = ctl.CtlServer("ipc://@kemu-test-ctl-unused", {"ping": lambda args: {"pong": True}})
    assert srv.handle(b"\xc1")["error"].startswith("malformed frame")
    assert srv.handle(msgpack.packb([1, 2]))["error"] == 'a request is {"op": str, "args": dict}'
    unknown = srv.handle(msgpack.packb({"op": "explode"}))
    assert unknown["ok"] is False and "unknown op 'explode'" in unknown["error"] and "ping" in unknown["error"]
    assert srv.handle(msgpack.packb({"op": "ping", "args": [1]}))["error"] == "args: must be a mapping"
    assert srv.handle(msgpack.packb({"op": "ping"})) == {"ok": True, "result": {"pong": True}}


def test_a_handler_error_and_a_missing_server_are_reported(tmp_path) -> None:
    handlers = ctl.standard_handlers(["node-1"])
    srv = ctl.CtlServer(ctl.socket_path(tmp_path, "node-1"), handlers).start()
    try:
        with pytest.raises(ctl.CtlError, match="netem: RuleError: drop: Invalid value"):
            ctl.call(srv.path, "netem", {"rules": {"node-1": [{"peers": "*", "drop": 2}]}})
        with pytest.raises(ctl.CtlError, match="offset: Invalid value"):
            ctl.call(srv.path, "clock", {"offset": "soon"})
        assert ctl.call(srv.path, "ping")["pid"] > 0
    finally:
        srv.close()
    with pytest.raises(ctl.CtlError, match="nobody serves this control socket"):
        ctl.call(ctl.socket_path(tmp_path, "node-9"), "ping", timeout=0.3)
