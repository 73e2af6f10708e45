"""The kemu wire protocol: msgpack frames between clients and the apiserver.

Contract
--------
Every frame is one msgpack map. Three shapes cross the wire:

* request (client to server): ``{"id": int, "op": str, ...arguments}``. The first
  request on a connection is ``hello`` with ``protocol`` (this module's
  ``PROTOCOL_VERSION``), ``component``, ``node`` and ``session`` (a client's
  stable id across reconnects, used to deduplicate retried writes). A request
  with ``"noreply": true`` (fire and forget: Events, unwatch) gets no reply
  when it succeeds; an error is still answered.
* reply (server to client): ``{"id": int|None, "ok": True, "result": ...}`` or
  ``{"id": ..., "ok": False, "error": {"code", "message", "causes"}}``. The id
  echoes the request's; it is ``None`` only when the request could not be
  decoded far enough to read one.
* watch event (server to client, unsolicited): ``{"watch": int, "seq": int,
  "type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}``;
  ``seq`` numbers one watch's events from 1, so a client sees a lost, repeated
  or overtaken event. A watch without a resourceVersion lists the current
  objects as ADDED, then (with bookmarks allowed) sends a BOOKMARK annotated
  ``k8s.io/initial-events-end: "true"``, as Kubernetes' watch-list does.

A frame larger than the agreed maximum is refused with ``TooLarge`` without
being decoded. Decoding never raises anything but ``APIError(BAD_REQUEST)``.
"""
from __future__ import annotations

from typing import Any

import msgpack

from emulator.api.errors import BAD_REQUEST, TOO_LARGE, APIError

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 4 << 20

OPS = ("hello", "ping", "discovery", "get", "list", "create", "update", "patch",
       "delete", "watch", "unwatch")

_packer_opts = {"use_bin_type": True}


def encode(msg: Any) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def decode(frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> dict[str, Any]:
    """Decode one frame into a map, or raise APIError naming what is wrong."""
    if len(frame) > max_bytes:
        raise APIError(TOO_LARGE, f"frame of {len(frame)} bytes exceeds the maximum of "
                                  f"{max_bytes} bytes")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise APIError(BAD_REQUEST, f"malformed frame: not valid msgpack ({type(e).__name__}: {e})")
    if not isinstance(msg, dict):
        raise APIError(BAD_REQUEST, f"malformed frame: expected a map, got {type(msg).__name__}")
    return msg


_TYPE_NAMES = {int: "an integer", str: "a string", dict: "a map", list: "a list",
               bool: "a boolean"}


def field(msg: dict[str, Any], name: str, typ: type | tuple[type, ...], *,
          required: bool = False, default: Any = None) -> Any:
    """Read one envelope field, checking its type; errors name the field."""
    v = msg.get(name)
    if v.__class__ is typ:   # the common case, decided in one comparison
        return v
    if v is None:
        if required:
            raise APIError(BAD_REQUEST, f'envelope field "{name}": Required value')
        return default
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in
                           (typ if isinstance(typ, tuple) else (typ,)))
        raise APIError(BAD_REQUEST, f'envelope field "{name}": expected {want}, '
                                    f"got {type(v).__name__}")
    return v


def ok_reply(rid: Any, result: Any) -> bytes:
    return encode({"id": rid, "ok": True, "result": result})


_OK_HEAD = b"\x83" + encode("id")
_OK_MID = encode("ok") + encode(True) + encode("result")


def ok_reply_packed(rid: Any, result_bytes: bytes) -> bytes:
    """An ok reply around a result that is already msgpack bytes."""
    return b"".join((_OK_HEAD, encode(rid), _OK_MID, result_bytes))


def error_reply(rid: Any, err: APIError) -> bytes:
    return encode({"id": rid, "ok": False, "error": err.to_wire()})


# Watch events are packed by splicing: the object is packed once per event and
# the small per-watcher header is packed per recipient.
_EVENT_HEAD = b"\x84" + encode("watch")
_SEQ_KEY = encode("seq")
_TYPE_KEY = encode("type")
_OBJECT_KEY = encode("object")


def pack_event_body(event_type: str, obj_bytes: bytes) -> bytes:
    """The shared tail of a watch event frame: type and packed object."""
    return _TYPE_KEY + encode(event_type) + _OBJECT_KEY + obj_bytes


def pack_event(watch_id: int, seq: int, body: bytes) -> bytes:
    """A whole watch event frame: ``seq`` numbers the events of one watch from 1."""
    return _EVENT_HEAD + encode(watch_id) + _SEQ_KEY + encode(seq) + body
