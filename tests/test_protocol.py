"""The wire protocol: framing, envelope checks, errors, splicing of watch events."""
import msgpack
import pytest

from emulator import protocol
from emulator.api.errors import BAD_REQUEST, TOO_LARGE, APIError


def test_round_trip() -> None:
    msg = {"id": 7, "op": "get", "kind": "Pod", "name": "a"}
    assert protocol.decode(protocol.encode(msg)) == msg


@pytest.mark.parametrize("frame", [b"\xc1\xc1garbage", b"\x85\xa2id", b"", b"\x93\x01\x02"])
def test_garbage_truncated_and_non_map_frames_are_bad_requests(frame: bytes) -> None:
    with pytest.raises(APIError) as e:
        protocol.decode(frame)
    assert e.value.code == BAD_REQUEST
    assert "malformed frame" in e.value.message


def test_oversized_frame_is_refused_without_decoding() -> None:
    with pytest.raises(APIError) as e:
        protocol.decode(b"\x00" * 2000, max_bytes=1000)
    assert e.value.code == TOO_LARGE
    assert "2000 bytes exceeds the maximum of 1000" in e.value.message


def test_field_names_the_field_and_the_type() -> None:
    with pytest.raises(APIError) as e:
        protocol.field({"id": "x"}, "id", int, required=True)
    assert 'envelope field "id": expected an integer, got str' == e.value.message
    with pytest.raises(APIError) as e:
        protocol.field({}, "op", str, required=True)
    assert 'envelope field "op": Required value' == e.value.message
    with pytest.raises(APIError):
        protocol.field({"id": True}, "id", int)   # a bool is not an id


def test_spliced_watch_event_decodes_as_a_map() -> None:
    obj = {"metadata": {"name": "a", "resourceVersion": "5"}}
    body = protocol.pack_event_body("MODIFIED", msgpack.packb(obj))
    assert msgpack.unpackb(protocol.pack_event(300, 7, body)) == {
        "watch": 300, "seq": 7, "type": "MODIFIED", "object": obj}


def test_error_reply_carries_code_message_and_causes() -> None:
    err = APIError("Invalid", "bad", [{"field": "spec", "reason": "x", "message": "y"}])
    m = msgpack.unpackb(protocol.error_reply(3, err))
    assert m == {"id": 3, "ok": False, "error": err.to_wire()}
    back = APIError.from_wire(m["error"])
    assert (back.code, back.message, back.causes) == (err.code, err.message, err.causes)
