"""Container logs of the docker runtime, copied from the Engine API into CRI log files.

Contract
--------
* The file and its format are ``proclogs``' (shared by every real runtime):
  ``<root>/var/log/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log``.
* ``CriLogWriter`` appends lines in the CRI log format
  ``<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>`` (``P``: a partial line, one
  that did not end in a newline) and rotates by size: past ``max_bytes`` the
  file becomes ``<attempt>.log.1`` (older ones shift up to ``.log.<keep-1>``;
  ``keep`` files in all, the live one included). Thread-safe.
* ``LogPump`` follows one container's stdout and stderr through the Engine
  API (``logs(stream=True, follow=True, timestamps=True)``, one thread per
  stream) and writes each message with the engine's own timestamp. It ends by
  itself when the container stops. Started again for the same file (a
  restarted kubelet adopting its containers) it resumes after the last line
  already written for each stream, so no line is written twice or lost.
"""
from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

from node.runtime.proclogs import DEFAULT_MAX_BYTES as MAX_BYTES
from node.runtime.proclogs import DEFAULT_MAX_FILES as KEEP
from node.runtime.proclogs import container_log_path as cri_log_path  # noqa: F401 (re-exported)
from node.runtime.proclogs import rfc3339nano

STREAMS = ("stdout", "stderr")


def ts_nanos(ts: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with up to 9 fractional digits."""
    ts = ts.strip()
    if ts.endswith("Z"):
        ts, tz = ts[:-1], "+00:00"
    else:
        ts, tz = ts[:-6], ts[-6:]
    frac = ""
    if "." in ts:
        ts, frac = ts.split(".", 1)
    base = datetime.fromisoformat(ts + tz)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


class CriLogWriter:
    def __init__(self, path: str, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(self, nanos: int, stream: str, text: bytes, partial: bool = False) -> None:
        line = b"%s %s %s %s\n" % (rfc3339nano(nanos).encode(), stream.encode(),
                                   b"P" if partial else b"F", text)
        with self.lock:
            with open(self.path, "ab") as f:
                f.write(line)
                size = f.tell()
            if size >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        oldest = f"{self.path}.{self.keep - 1}"
        if self.keep == 1:
            os.truncate(self.path, 0)
            return
        if os.path.exists(oldest):
            os.unlink(oldest)
        for n in range(self.keep - 2, 0, -1):
            if os.path.exists(f"{self.path}.{n}"):
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")

    def last_written(self) -> dict[str, int]:
        """The timestamp (ns) of the last line of each stream already in the file."""
        out: dict[str, int] = {}
        for path in (self.path, f"{self.path}.1"):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 256 * 1024))
                    tail = f.read().splitlines()
            except OSError:
                continue
            for raw in reversed(tail):
                parts = raw.split(b" ", 3)
                if len(parts) >= 3 and parts[1].decode(errors="replace") in STREAMS:
                    stream = parts[1].decode()
                    if stream not in out:
                        try:
                            out[stream] = ts_nanos(parts[0].decode())
                        except ValueError:
                            continue
                if len(out) == len(STREAMS):
                    return out
            if out:
                return out
        return out

    def remove(self) -> None:
        with self.lock:
            for n in range(self.keep):
                p = self.path if n == 0 else f"{self.path}.{n}"
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass


class LogPump:
    """Follows a container's output into its CRI log file (two daemon threads)."""

    def __init__(self, api: Any, container_id: str, writer: CriLogWriter) -> None:
        self.api = api
        self.container_id = container_id
        self.writer = writer
        self._streams: list[Any] = []
        self._stopped = False
        self._lock = threading.Lock()
        last = writer.last_written()
        self.threads = [threading.Thread(target=self._run, args=(s, last.get(s, 0)), daemon=True,
                                         name=f"logs-{container_id[:12]}-{s}") for s in STREAMS]

    def start(self) -> "LogPump":
        for t in self.threads:
            t.start()
        return self

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            streams, self._streams = self._streams, []
        for s in streams:
            try:
                s.close()
            except Exception:
                pass

    def _run(self, stream: str, after: int) -> None:
        kw: dict[str, Any] = {"stdout": stream == "stdout", "stderr": stream == "stderr",
                              "stream": True, "follow": True, "timestamps": True}
        if after:
            kw["since"] = max(0.0, after / 1e9 - 1e-6)
        try:
            gen = self.api.logs(self.container_id, **kw)
            with self._lock:
                if self._stopped:
                    _close(gen)
                    return
                self._streams.append(gen)
            for frame in gen:
                ts, _, text = bytes(frame).partition(b" ")
                try:
                    nanos = ts_nanos(ts.decode())
                except ValueError:
                    continue
                if nanos <= after:
                    continue
                partial = not text.endswith(b"\n")
                self.writer.write(nanos, stream, text[:-1] if not partial else text, partial)
        except Exception:
            # The container went away, or the pump was stopped: the file keeps what was copied.
            return


def _close(gen: Any) -> None:
    try:
        gen.close()
    except Exception:
        pass
