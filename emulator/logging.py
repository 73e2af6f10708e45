"""Structured logging: one JSON object per line, the same fields in every process.

Contract: call ``configure`` once per process, after any fork. Every line has
``ts`` (UTC RFC 3339 with microseconds), ``level``, ``lab``, ``component``,
``node``, ``pid`` and ``event`` (in that order, ``ts`` first, so a reader can
take the merge key from the line's start without parsing it), plus the call's
own keys (object refs use ``kind``, ``namespace``, ``name``, ``uid``). Debug
calls below the configured level cost one method call (structlog's filtering
bound logger).

Rotation: a file log rotates by size. When ``<process>.jsonl`` would grow past
``max_file_size`` it becomes ``<process>.jsonl.1`` (the older ``.1``, ``.2``, ...
shift up; higher is older; at most ``keep`` are kept) and a new current file
starts. On each rotation the writer also enforces the lab's cap: if all the
files in the log directory add up to more than ``max_lab_size``, it deletes the
oldest rotated files (any process's, by mtime) until the total fits, and writes
a ``log_cap_reached`` record (``bytes``, ``cap``, ``files_removed``,
``bytes_after``) to its own log: the cap is never silent. Rotated files are the
only ones deleted, so the current files alone may exceed the cap (each is at
most ``max_file_size``). Renames and deletions hold ``flock`` on
``<logdir>/.rotate.lock``, so two processes never race on the same files.
The sizes come from the arguments, else ``$KEMU_LOG_MAX_FILE_SIZE`` /
``$KEMU_LOG_MAX_LAB_SIZE`` (the supervisor sets them from the lab's profile),
else the default profile's ``log_max_file_size`` / ``log_max_lab_size``;
``0`` turns rotation (or the cap) off.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_FIRST = ("ts", "level", "lab", "component", "node", "pid", "event")
ENV_MAX_FILE_SIZE = "KEMU_LOG_MAX_FILE_SIZE"
ENV_MAX_LAB_SIZE = "KEMU_LOG_MAX_LAB_SIZE"
KEEP_ROTATED = 5
_ROTATED = re.compile(r"\.jsonl\.(\d+)$")


def _now() -> str:
    """RFC 3339 in UTC with microseconds; the seconds are formatted once per second."""
    ns = time.time_ns()
    sec, us = divmod(ns // 1000, 1_000_000)
    return f"{_second(sec)}.{us:06d}Z"


@lru_cache(maxsize=64)
def _second(sec: int) -> str:
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(_logger: Any, _name: str, event: dict) -> dict:
    event["ts"] = _now()
    return event


def _order(_logger: Any, _name: str, event: dict) -> dict:
    """The common fields first, ``ts`` leading: readers slice the merge key off the line's start."""
    out = {k: event.pop(k) for k in _FIRST if k in event}
    out.update(event)
    return out


def _size(value: Any, what: str, default: str) -> int:
    from emulator.api.quantity import memory_bytes
    if value is None:
        value = os.environ.get(what) or default
    try:
        n = memory_bytes(str(value)) if not isinstance(value, int) else value
    except (ValueError, TypeError, ArithmeticError):
        raise ValueError(f"{what}: bad size {value!r}: use bytes or a quantity such as 64Mi") from None
    if n < 0:
        raise ValueError(f"{what}: size {value!r} must not be negative")
    return n


class RotatingFile:
    """A JSON-lines file that rotates by size and enforces the lab's cap (see the module docstring)."""

    def __init__(self, path: str, max_file_size: int, max_lab_size: int, keep: int = KEEP_ROTATED,
                 context: dict[str, Any] | None = None) -> None:
        self.path = os.path.abspath(path)
        self.dir = os.path.dirname(self.path)
        self.max_file_size = max_file_size
        self.max_lab_size = max_lab_size
        self.keep = max(1, keep)
        self.context = dict(context or {})
        self._lock = threading.Lock()
        os.makedirs(self.dir, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self._f = open(self.path, "a", buffering=1)
        self._size = os.fstat(self._f.fileno()).st_size

    def write(self, s: str) -> int:
        with self._lock:
            n = len(s.encode()) if not s.isascii() else len(s)
            if self.max_file_size and self._size and self._size + n > self.max_file_size:
                self._rotate()
            self._f.write(s)
            self._size += n
            return len(s)

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()

    def _rotate(self) -> None:
        lockfd = os.open(os.path.join(self.dir, ".rotate.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lockfd, fcntl.LOCK_EX)
            self._f.close()
            try:
                os.unlink(f"{self.path}.{self.keep}")
            except FileNotFoundError:
                pass
            for i in range(self.keep - 1, 0, -1):
                try:
                    os.rename(f"{self.path}.{i}", f"{self.path}.{i + 1}")
                except FileNotFoundError:
                    pass
            try:
                os.rename(self.path, f"{self.path}.1")
            except FileNotFoundError:
                pass   # someone removed the current file: start a new one
            self._open()
            if self.max_lab_size:
                self._enforce_cap()
        finally:
            os.close(lockfd)   # releases the lock

    def _enforce_cap(self) -> None:
        files: list[tuple[float, str, int, bool]] = []
        with os.scandir(self.dir) as it:
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        files.append((st.st_mtime, e.path, st.st_size, bool(_ROTATED.search(e.name))))
                except FileNotFoundError:
                    continue
        total = sum(size for _m, _p, size, _r in files)
        if total <= self.max_lab_size:
            return
        before, removed = total, []
        for _mtime, path, size, rotated in sorted(files):
            if total <= self.max_lab_size:
                break
            if not rotated:
                continue
            try:
                os.unlink(path)
                removed.append(os.path.basename(path))
            except FileNotFoundError:
                pass
            total -= size
        rec = {"ts": _now(), "level": "warning", **{k: self.context.get(k) for k in _FIRST[2:6]},
               "event": "log_cap_reached", "bytes": before, "cap": self.max_lab_size,
               "files_removed": removed, "bytes_after": total}
        line = json.dumps(rec) + "\n"
        self._f.write(line)
        self._size += len(line)


def configure(component: str, *, node: str | None = None, lab: str | None = None,
              level: str = "info", path: str | None = None, stream: TextIO | None = None,
              max_file_size: int | str | None = None, max_lab_size: int | str | None = None,
              keep: int = KEEP_ROTATED) -> None:
    """Send this process's logs as JSON lines to ``path`` (appended, rotated) or ``stream`` (stderr)."""
    pid = os.getpid()
    if path is not None:
        from emulator.profiles import DEFAULT
        out: Any = RotatingFile(path, _size(max_file_size, ENV_MAX_FILE_SIZE, DEFAULT.log_max_file_size),
                                _size(max_lab_size, ENV_MAX_LAB_SIZE, DEFAULT.log_max_lab_size), keep,
                                context={"lab": lab, "component": component, "node": node, "pid": pid})
    else:
        out = stream or sys.stderr
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(lab=lab, component=component, node=node, pid=pid)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            _order,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger(**bind)
