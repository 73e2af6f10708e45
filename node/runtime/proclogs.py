"""CRI container log files: the writer (with size rotation) and a parser. Standard library only.

Contract (the CRI's log format, as containerd writes it and the kubelet reads it)
-------------------------------------------------------------------------------
* One file per container attempt: ``<node root>/var/log/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log``
  (``pod_log_dir`` and ``container_log_path`` build the names).
* Each output line becomes one log line ``<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\\n``:
  ``F`` a full line (its newline removed), ``P`` a partial one: a line longer than
  ``MAX_LINE`` bytes is cut into ``P`` pieces and ends with an ``F`` piece, as
  containerd does. Output still unterminated when the stream ends is written as ``F``.
  Timestamps are Go's ``time.RFC3339Nano`` (trailing zeros of the fraction dropped).
* Rotation by size: once the current file reaches ``max_bytes`` it is renamed
  ``<attempt>.log.1`` (older ones shift to ``.2``, ...) and a new file is started;
  at most ``max_files`` files are kept in all (the current one included), as the
  kubelet's ``containerLogMaxSize``/``containerLogMaxFiles`` (10Mi, 5) do.
* ``log_files(path)`` lists a container's files oldest first; ``parse_line`` splits a
  line into (timestamp, stream, tag, text); ``read_lines`` yields every parsed line of
  a container in order, across rotations.

The container monitor (``shim.py``) runs this module as a plain script import, so it
must not import anything outside the standard library.
"""
from __future__ import annotations

import os
import time
from typing import Iterator

MAX_LINE = 16 * 1024          # containerd's maximum line size before a partial (P) line
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5


def pod_log_dir(root: str, namespace: str, name: str, uid: str) -> str:
    return os.path.join(root, "var", "log", "pods", f"{namespace}_{name}_{uid}")


def container_log_path(root: str, namespace: str, name: str, uid: str, container: str, attempt: int) -> str:
    return os.path.join(pod_log_dir(root, namespace, name, uid), container, f"{attempt}.log")


def rfc3339nano(ns: int | None = None) -> str:
    """Go's RFC3339Nano in UTC: ``2016-10-06T00:17:09.669794202Z`` (no trailing zeros)."""
    ns = time.time_ns() if ns is None else ns
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


class LogWriter:
    """Writes CRI log lines for one container attempt and rotates the file by size."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path = path
        self.max_bytes = max(1, int(max_bytes))
        self.max_files = max(1, int(max_files))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = open(path, "ab")
        self.size = self.f.tell()
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _emit(self, stream: str, tag: str, text: bytes) -> None:
        line = f"{rfc3339nano()} {stream} {tag} ".encode() + text + b"\n"
        self.f.write(line)
        self.size += len(line)
        if self.size >= self.max_bytes:
            self.rotate()

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.pending.get(stream, b"") + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl > MAX_LINE:
                if len(buf) >= MAX_LINE:   # too long for one line: a partial piece
                    self._emit(stream, "P", buf[:MAX_LINE])
                    buf = buf[MAX_LINE:]
                    continue
                break
            self._emit(stream, "F", buf[:nl])
            buf = buf[nl + 1:]
        self.pending[stream] = buf
        self.f.flush()

    def rotate(self) -> None:
        self.f.close()
        keep = self.max_files - 1
        if keep <= 0:
            os.unlink(self.path)
        else:
            for n in range(keep, 0, -1):
                src = self.path if n == 1 else f"{self.path}.{n - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{n}")
        self.f = open(self.path, "ab")
        self.size = 0

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._emit(stream, "F", rest)
        self.pending = {"stdout": b"", "stderr": b""}
        self.f.close()


def log_files(path: str) -> list[str]:
    """A container's log files, oldest first (``<n>.log.4`` ... ``<n>.log.1``, ``<n>.log``)."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    rotated = []
    for n in names:
        if n.startswith(base + ".") and n[len(base) + 1:].isdigit():
            rotated.append((int(n[len(base) + 1:]), os.path.join(d, n)))
    out = [p for _, p in sorted(rotated, reverse=True)]
    if os.path.exists(path):
        out.append(path)
    return out


def parse_line(line: bytes) -> tuple[str, str, str, bytes] | None:
    """(timestamp, stream, tag, text) of one CRI log line, or None if it is not one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    text = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2].decode(), text


def read_lines(path: str) -> Iterator[tuple[str, str, str, bytes]]:
    for p in log_files(path):
        try:
            with open(p, "rb") as f:
                for raw in f:
                    rec = parse_line(raw)
                    if rec is not None:
                        yield rec
        except OSError:
            continue
