"""The container monitor of the process runtime (what containerd-shim and conmon are to runc).

Usage: ``python -S -E shim.py CONTAINER_DIR`` (started by ``ProcessRuntime.start_container``
in its own session). Standard library only: it starts in ~30 ms and outlives the kubelet.

Contract
--------
* Reads ``CONTAINER_DIR/config.json``: ``argv``, ``executable``, ``env``, ``cwd``,
  ``log_path``, ``log_max_bytes``, ``log_max_files``, ``memory_limit`` (bytes, 0 = none),
  ``anchor_pid``/``anchor_start`` (the process whose death ends the container: the lab's
  supervisor, or the kubelet's process outside a lab).
* Starts the container's main process in its own session and process group, with
  ``PR_SET_PDEATHSIG`` = SIGKILL (it dies with this monitor) and ``RLIMIT_AS`` = the
  memory limit; stdin is /dev/null; stdout and stderr go through pipes into the CRI log
  file (``proclogs.LogWriter``, rotated by size).
* Writes ``CONTAINER_DIR/state.json`` atomically: first ``{"state": "running", "pid",
  "pid_start", "shim_pid", "shim_start", "started_at"}``, last ``{"state": "exited",
  "exit_code", "reason", "message", "finished_at", ...}``. ``*_start`` are the processes'
  start times in clock ticks since boot (``/proc/<pid>/stat`` field 22), so a reader can
  tell a live process from a reused pid.
* A stop request is ``CONTAINER_DIR/stop.json`` ``{"grace": seconds}`` followed by
  SIGUSR1 to the monitor (only once ``state.json`` exists: the handlers are installed
  by then; the file is also read right after the start). The monitor sends SIGTERM to the
  process group and SIGKILL once the grace period has passed. SIGTERM/SIGINT/SIGHUP to
  the monitor kill the group at once.
* When the main process exits, whatever it left in its process group is SIGKILLed (no
  orphans), the pipes are drained (at most 1 s) and the exit is recorded: exit code (a
  signal N is 128+N), reason ``Completed`` (0), ``Error``, or ``OOMKilled`` by this
  heuristic: a memory limit was set, the exit was not clean, it was not a requested
  stop, and either the last output names an allocation failure (``MemoryError``,
  ``Cannot allocate memory``, ``failed to map segment``, ``out of memory``,
  ``bad_alloc``, ``memory exhausted``) or the process died of SIGSEGV/SIGBUS/SIGABRT
  (what a failed allocation under RLIMIT_AS usually ends in). An exec that fails with
  ENOMEM under a limit is OOMKilled too; any other exec failure is exit 128, reason
  ``StartError`` with runc's message (``exec: "x": executable file not found in $PATH``).
* When the anchor process dies (the lab is down), the group is SIGKILLed and the exit
  recorded as above.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

if __package__:
    from node.runtime import proclogs
else:   # run as a script: this directory is sys.path[0]
    import proclogs  # type: ignore[no-redef]

PR_SET_PDEATHSIG = 1
OOM_MARKERS = (b"MemoryError", b"Cannot allocate memory", b"failed to map segment", b"out of memory",
               b"bad_alloc", b"memory exhausted")
OOM_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT)
TAIL = 4096


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def alive(pid: int | None, ticks: int | None) -> bool:
    """True if ``pid`` runs and is the process that started at ``ticks`` (not a zombie)."""
    if not pid or ticks is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        return rest[0] not in (b"Z", b"X") and int(rest[19]) == ticks
    except (OSError, ValueError, IndexError):
        return False


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def exec_error(argv0: str, e: OSError) -> str:
    """runc's wording for a failed exec."""
    if e.errno == errno.ENOENT:
        if "/" not in argv0:
            return f'exec: "{argv0}": executable file not found in $PATH'
        return f'exec: "{argv0}": stat {argv0}: no such file or directory'
    if e.errno == errno.EACCES:
        return f'exec: "{argv0}": permission denied'
    return f'exec: "{argv0}": {os.strerror(e.errno or 0).lower()}'


def exit_code_of(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def classify(code: int, signaled: int | None, memory_limit: int, stop_requested: bool,
             tail: bytes) -> str:
    if code == 0:
        return "Completed"
    if memory_limit and not stop_requested and (
            any(m in tail for m in OOM_MARKERS) or signaled in OOM_SIGNALS):
        return "OOMKilled"
    return "Error"


class Monitor:
    def __init__(self, cdir: str) -> None:
        self.cdir = cdir
        self.state_path = os.path.join(cdir, "state.json")
        with open(os.path.join(cdir, "config.json")) as f:
            self.cfg = json.load(f)
        self.sel = selectors.DefaultSelector()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        self.terminate = False
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_terminate)
        signal.signal(signal.SIGUSR1, lambda *_: None)   # the wakeup fd tells the loop
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.state: dict = {"shim_pid": os.getpid(), "shim_start": start_ticks(os.getpid())}
        self.kill_at: float | None = None
        self.stop_requested = False
        self.tail = b""

    def _on_terminate(self, *_: object) -> None:
        self.terminate = True

    def _save(self, **changes: object) -> None:
        self.state.update(changes)
        write_json(self.state_path, self.state)

    def _killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _check_stop(self) -> None:
        if self.terminate:
            self.stop_requested = True
            self._killpg(signal.SIGKILL)
            return
        try:
            with open(os.path.join(self.cdir, "stop.json")) as f:
                grace = float(json.load(f).get("grace", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return
        now = time.monotonic()
        if not self.stop_requested:
            self.stop_requested = True
            self._killpg(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        due = now + max(0.0, grace)
        if grace > 0 and (self.kill_at is None or due < self.kill_at):
            self.kill_at = due

    def spawn(self) -> bool:
        cfg = self.cfg
        limit = int(cfg.get("memory_limit") or 0)
        shim = os.getpid()
        libc = ctypes.CDLL(None, use_errno=True)

        def pre() -> None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != shim:
                os._exit(137)
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        started = time.time()
        try:
            self.proc = subprocess.Popen(
                cfg["argv"], executable=cfg.get("executable") or None, env=cfg.get("env") or {},
                cwd=cfg.get("cwd") or None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, preexec_fn=pre, close_fds=True)
        except OSError as e:
            oom = bool(limit) and e.errno == errno.ENOMEM
            msg = exec_error(cfg["argv"][0], e)
            if oom:
                msg = f"memory limit {limit} bytes (RLIMIT_AS) is too small to start: {msg}"
            self._save(state="exited", exit_code=137 if oom else 128,
                       reason="OOMKilled" if oom else "StartError",
                       message=msg if oom else f"unable to start container process: {msg}",
                       started_at=started, finished_at=time.time(), pid=None)
            return False
        except subprocess.SubprocessError as e:
            self._save(state="exited", exit_code=128, reason="StartError",
                       message=f"unable to start container process: {e}", started_at=started,
                       finished_at=time.time(), pid=None)
            return False
        self.pid = self.proc.pid
        self._save(state="running", pid=self.pid, pid_start=start_ticks(self.pid), started_at=started)
        return True

    def run(self) -> int:
        if not self.spawn():
            return 0
        log = proclogs.LogWriter(self.cfg["log_path"], self.cfg.get("log_max_bytes") or proclogs.DEFAULT_MAX_BYTES,
                                 self.cfg.get("log_max_files") or proclogs.DEFAULT_MAX_FILES)
        streams = {self.proc.stdout.fileno(): "stdout", self.proc.stderr.fileno(): "stderr"}
        for fd in streams:
            self.sel.register(fd, selectors.EVENT_READ, "out")
        pidfd = None
        try:
            pidfd = os.pidfd_open(self.pid)
            self.sel.register(pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            pass
        anchor = self.cfg.get("anchor_pid")
        anchor_fd = None
        if anchor and alive(anchor, self.cfg.get("anchor_start")):
            try:
                anchor_fd = os.pidfd_open(anchor)
                self.sel.register(anchor_fd, selectors.EVENT_READ, "anchor")
            except (AttributeError, OSError):
                anchor_fd = None
        elif anchor:
            self.terminate = True   # the lab is already gone
        self._check_stop()
        exited = False
        while not exited:
            timeout = 0.1 if pidfd is None or (anchor and anchor_fd is None) else None
            if self.kill_at is not None:
                left = max(0.0, self.kill_at - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            for key, _ in self.sel.select(timeout):
                what = key.data
                if what == "out":
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        self.sel.unregister(key.fd)
                        continue
                    log.feed(streams[key.fd], data)
                    self.tail = (self.tail + data)[-TAIL:]
                elif what == "signal":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self._check_stop()
                elif what == "anchor":
                    self.sel.unregister(key.fd)
                    self.terminate = True
                    self._check_stop()
                elif what == "exit":
                    exited = True
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.kill_at = None
                self._killpg(signal.SIGKILL)
            if not exited and (pidfd is None or (anchor and anchor_fd is None)):
                if pidfd is None:
                    exited = self.proc.poll() is not None
                if anchor and anchor_fd is None and not alive(anchor, self.cfg.get("anchor_start")):
                    self.terminate = True
                    self._check_stop()
        # the main process has exited (a zombie until reaped): nothing of its group stays
        self._killpg(signal.SIGKILL)
        status = os.waitpid(self.pid, 0)[1] if self.proc.returncode is None else None
        if status is not None:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        rc = self.proc.returncode
        code = 128 - rc if rc < 0 else rc
        deadline = time.monotonic() + 1.0
        while any(k.data == "out" for k in self.sel.get_map().values()) and time.monotonic() < deadline:
            for key, _ in self.sel.select(max(0.0, deadline - time.monotonic())):
                if key.data != "out":
                    continue
                data = os.read(key.fd, 65536)
                if not data:
                    self.sel.unregister(key.fd)
                    continue
                log.feed(streams[key.fd], data)
                self.tail = (self.tail + data)[-TAIL:]
        log.close()
        signaled = -rc if rc < 0 else None
        limit = int(self.cfg.get("memory_limit") or 0)
        reason = classify(code, signaled, limit, self.stop_requested, self.tail)
        message = ""
        if reason == "OOMKilled":
            last = [ln for ln in self.tail.splitlines() if any(m in ln for m in OOM_MARKERS)]
            message = (f"memory limit {limit} bytes (RLIMIT_AS) exceeded"
                       + (f": {last[-1].decode(errors='replace')[:200]}" if last else ""))
        self._save(state="exited", exit_code=code, signal=signaled, reason=reason, message=message,
                   finished_at=time.time())
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: shim.py CONTAINER_DIR", file=sys.stderr)
        return 2
    return Monitor(argv[1]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
