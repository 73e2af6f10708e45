"""The per-process control socket of a lab process.

Admin and chaos commands reach a lab process here, never over the data bus,
so a fault on the bus cannot cut the lab's own control channel off. The
socket is a Linux abstract-namespace one, ``ipc://@kemu-<hash of the lab's
run dir>-<process>``, rather than a file ``<labdir>/run/<process>.ctl``: a
Unix socket's path is limited to 107 bytes, which a lab under a deep home or
test directory exceeds, and an abstract socket leaves no file behind when its
process is SIGKILLed.

Contract
--------
* ``socket_path(run_dir, process)``: the process's ctl address.
* ``CtlServer(address, handlers, state_path=None)``: ``start()`` binds a ZeroMQ
  ROUTER on ``address``, applies the state file (``state_path``: a JSON object ``{op: args}``
  the lab keeps for this process, so a restarted process gets its faults
  back), and serves in a daemon thread. The state file is the truth: the
  ``reload`` op applies it at once, and the thread also re-applies it within
  ``STATE_RECHECK`` (5 s) of it changing (a paused process that missed the
  ``reload`` catches up when it resumes; a shorter period cost every idle
  node process a wake-up a second). A request is msgpack ``{"op":
  str, "args": dict}``; the reply is ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": str}``. A handler that raises answers with the
  error; nothing a caller sends stops the thread. ``close()`` stops the thread.
* ``standard_handlers(local_names)``: ``ping``; ``netem`` (``{"rules":
  {local: [rule, ...]}}``, replacing every local's rules in
  ``emulator.netem.TABLE``); ``clock`` (``emulator.clock.WALL.set(**args)``).
* ``serve(process, run_dir, local_names, extra=None)``: the usual start for a
  lab process: marks it a lab process (``netem.enable()``) and serves
  ``socket_path(run_dir, process)`` with state ``<run_dir>/ctl/<process>.json``;
  the server is also ``ctl.current``. A component that starts later in the
  process (the DNS add-on) adds its own op with ``add_handler(op, fn)``, which
  applies that op's saved state at once.
* ``call(address, op, args, timeout=2.0)``: one request; raises ``CtlError``
  naming the socket when nobody serves it, when there is no answer within
  ``timeout`` (the process is paused) or when the handler failed.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

import msgpack
import zmq

from emulator import clock, netem

Handler = Callable[[dict], Any]
STATE_RECHECK = 5.0   # seconds between the thread's checks of the state file


class CtlError(Exception):
    """A ctl request failed; the message names the socket and why."""


def socket_path(run_dir: str | Path, process: str) -> str:
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    return f"ipc://@kemu-{digest}-{process}"


def state_path(run_dir: str | Path, process: str) -> Path:
    return Path(run_dir) / "ctl" / f"{process}.json"


class CtlServer:
    def __init__(self, path: str | Path, handlers: dict[str, Handler], state_path: str | Path | None = None) -> None:
        self.path = str(path)
        self.handlers = dict(handlers)
        self.state_path = state_path
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()   # close() ends the thread's long poll at once
        self._thread: threading.Thread | None = None
        self._sock: zmq.Socket | None = None
        self.applied: list[str] = []
        self._mtime: float | None = None
        self.handlers.setdefault("reload", self.reload)

    def start(self) -> "CtlServer":
        self._apply_saved()
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.path)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="ctl", daemon=True)
        self._thread.start()
        return self

    def add_handler(self, op: str, handler: Handler) -> None:
        self.handlers[op] = handler
        self._apply_saved(only=op)

    def _state_mtime(self) -> float | None:
        try:
            return os.stat(self.state_path).st_mtime_ns if self.state_path else None
        except OSError:
            return None

    def reload(self, _args: dict | None = None) -> dict:
        self._apply_saved()
        return {"applied": sorted(set(self.applied))}

    def _apply_saved(self, only: str | None = None) -> None:
        if not self.state_path:
            return
        if only is None:
            self._mtime = self._state_mtime()
        try:
            saved = json.loads(Path(self.state_path).read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            for op, args in saved.items():
                if op in self.handlers and isinstance(args, dict) and only in (None, op):
                    try:
                        self.handlers[op](args)
                        self.applied.append(op)
                    except Exception:
                        pass   # a bad saved entry must not stop the process from starting

    def handle(self, frame: bytes) -> dict:
        try:
            msg = msgpack.unpackb(frame, raw=False)
        except Exception as e:
            return {"ok": False, "error": f"malformed frame: {e}"}
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            return {"ok": False, "error": 'a request is {"op": str, "args": dict}'}
        op = msg["op"]
        handler = self.handlers.get(op)
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r}; supported: {', '.join(sorted(self.handlers))}"}
        args = msg.get("args") or {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args: must be a mapping"}
        try:
            return {"ok": True, "result": handler(args)}
        except Exception as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def answer(self, sock: zmq.Socket, parts: list[bytes]) -> None:
        """Handle one request (a ROUTER's frames) and send its reply back on ``sock``."""
        if len(parts) < 2:
            return
        reply = self.handle(parts[-1])
        try:
            sock.send_multipart([*parts[:-1], msgpack.packb(reply, use_bin_type=True)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass   # the caller left

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(int(STATE_RECHECK * 1000)))
                if sock not in ready:
                    if not ready and self._state_mtime() != self._mtime:
                        self._apply_saved()
                    continue
                self.answer(sock, sock.recv_multipart())
        except zmq.ZMQError:
            pass   # the context is going away with the process
        finally:
            sock.close(0)

    def close(self) -> None:
        if self._stop.is_set():
            return   # closed already: its descriptors may belong to someone else now
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(2.0)
        if self._thread is None or not self._thread.is_alive():
            os.close(self._wake_r)
        os.close(self._wake_w)


def standard_handlers(local_names: list[str]) -> dict[str, Handler]:
    def netem_rules(args: dict) -> dict:
        rules = args.get("rules") or {}
        if not isinstance(rules, dict):
            raise ValueError("rules: must be a mapping of local name to a list of rules")
        for name in local_names:
            netem.TABLE.set_rules(name, list(rules.get(name) or []))
        return {"locals": {n: len(netem.TABLE.rules.get(n, ())) for n in local_names}}

    def set_clock(args: dict) -> dict:
        clock.check(args)
        clock.WALL.set(float(args.get("offset", 0.0)), args.get("strobe"))
        return {"skew": clock.WALL.skew()}

    return {"ping": lambda args: {"pid": os.getpid()}, "netem": netem_rules, "clock": set_clock}


current: CtlServer | None = None


def serve(process: str, run_dir: str | Path, local_names: list[str],
          extra: dict[str, Handler] | None = None) -> CtlServer:
    global current
    netem.enable()
    handlers = standard_handlers(local_names)
    handlers.update(extra or {})
    current = CtlServer(socket_path(run_dir, process), handlers, state_path(run_dir, process)).start()
    return current


def call(path: str, op: str, args: dict | None = None, timeout: float = 2.0) -> Any:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)   # queue nothing for a socket nobody serves
    try:
        sock.connect(path)
        if not sock.poll(int(min(timeout, 0.5) * 1000), zmq.POLLOUT):
            raise CtlError(f"{path}: nobody serves this control socket (is the process running?)")
        sock.send(msgpack.packb({"op": op, "args": args or {}}, use_bin_type=True))
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise CtlError(f"{path}: no answer within {timeout:g}s (is the process paused or gone?)")
        reply = msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close(0)
    if not reply.get("ok"):
        raise CtlError(f"{path}: {op}: {reply.get('error')}")
    return reply.get("result")
