"""``kemu logs POD [-c CONTAINER] [-f] [-p] [--tail N] [--timestamps]``: a container's logs, as kubectl prints them.

Contract
--------
* The pod comes from the apiserver (``Error from server (NotFound): pods "x"
  not found``); its node, uid and containers decide where to read. With
  several containers and no ``-c`` (and no ``kubectl.kubernetes.io/default-container``
  annotation): ``error: a container name must be specified for pod P, choose
  one of: [a b]``; an unknown ``-c``: ``error: container x is not valid for pod P``.
* The container's state is checked as the kubelet does (``validateContainerLogStatus``),
  errors printed as ``Error from server (BadRequest): ...``: ``--previous``
  without a terminated previous container is ``previous terminated container
  "c" in pod "p" not found``; a container that never ran is ``container "c" in
  pod "p" is waiting to start: <reason>``.
* The logs are the CRI log files the real runtimes write under the node's root
  (the lab of ``--lab-dir`` or the current one, read directly, no apiserver
  needed for that part): ``<lab>/nodes/<node>/var/log/pods/<ns>_<pod>_<uid>/<c>/<attempt>.log``
  with rotated files ``<attempt>.log.<n>`` (``.1`` the newest) read before it.
  The current container is the highest attempt on disk; ``--previous`` the one
  before it (or the latest, while the container waits to restart, as Kubernetes
  shows its last terminated container). No files (the fake runtime writes none)
  prints nothing: exit 0, as a container that printed nothing.
* Each line ``<ts> <stdout|stderr> <P|F> <text>`` is parsed; partial (``P``)
  pieces are joined to their line; ``--timestamps`` prefixes each line with
  its timestamp (the first piece's); ``--tail N`` prints the last N lines.
* ``-f`` prints, then follows the file: appended lines, a rotation (the file
  renamed, a new one started) and a restart (a higher attempt's file appears:
  the rest of the old file, then the new file from its start). It ends on
  SIGINT (exit 0), or when the container's log directory is removed (the pod
  is gone). ``args._stop`` (a callable) is the test seam that ends it.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from emulator.cli.commands._node_files import node_root
from emulator.cli.common import CLIError, Context, add_common_flags, run_command

POLL = 0.1   # how often -f looks at the file
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


class BadRequest(Exception):
    """Printed as ``Error from server (BadRequest): ...``, as the kubelet's log endpoint answers."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("logs", help="print the logs for a container in a pod",
                              description="Print the logs for a container in a pod, from the CRI log "
                                          "files of its node (real runtimes write them).")
    p.add_argument("pod", metavar="POD", help="the pod (NAME or pod/NAME)")
    p.add_argument("-c", "--container", help="the container (needed when the pod has several)")
    p.add_argument("-f", "--follow", action="store_true", help="follow the log (Ctrl-C ends)")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the previous terminated container's logs")
    p.add_argument("--tail", type=int, default=-1, metavar="N", help="the last N lines (default: all)")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its timestamp")
    p.add_argument("--lab-dir", help="the lab directory (default: the current lab)")
    add_common_flags(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    return run_command(args, out, err, _logs)


# -- choosing the container -----------------------------------------------------
def _container_name(pod: dict, wanted: str | None) -> str:
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [c.get("name", "") for c in spec.get("containers") or ()]
    inits = [c.get("name", "") for c in spec.get("initContainers") or ()]
    if wanted:
        if wanted not in names and wanted not in inits:
            raise CLIError(f"container {wanted} is not valid for pod {name}")
        return wanted
    default = ((pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER) or "")
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    if inits:
        msg += f" or one of the init containers: [{' '.join(inits)}]"
    raise CLIError(msg)


def _check_status(pod: dict, cname: str, previous: bool) -> bool:
    """The kubelet's ``validateContainerLogStatus``; True if the container waits to restart."""
    pname = pod["metadata"]["name"]
    st = pod.get("status") or {}
    cs = next((c for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])
               if c.get("name") == cname), None)
    if cs is None:
        raise BadRequest(f'container "{cname}" in pod "{pname}" is waiting to start: ContainerCreating')
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
    if previous:
        if not last:
            raise BadRequest(f'previous terminated container "{cname}" in pod "{pname}" not found')
    elif "running" in state or "terminated" in state or last:
        pass
    else:
        reason = (state.get("waiting") or {}).get("reason") or ""
        if reason == "ErrImagePull":
            reason = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            reason = "trying and failing to pull image"
        if reason:
            raise BadRequest(f'container "{cname}" in pod "{pname}" is waiting to start: {reason}')
        raise BadRequest(f'container "{cname}" in pod "{pname}" is waiting to start - no logs yet')
    return "waiting" in state


# -- files ------------------------------------------------------------------------
def attempts(cdir: Path) -> list[int]:
    try:
        names = os.listdir(cdir)
    except OSError:
        return []
    return sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())


def attempt_files(cdir: Path, attempt: int) -> list[Path]:
    """An attempt's files, oldest first: ``N.log.4`` ... ``N.log.1``, ``N.log``."""
    base = f"{attempt}.log"
    try:
        names = os.listdir(cdir)
    except OSError:
        return []
    rotated = sorted((int(n[len(base) + 1:]), n) for n in names
                     if n.startswith(base + ".") and n[len(base) + 1:].isdigit())
    out = [cdir / n for _, n in reversed(rotated)]
    if (cdir / base).exists():
        out.append(cdir / base)
    return out


def parse_line(raw: bytes) -> tuple[str, str, str, str] | None:
    """(timestamp, stream, tag, text) of a CRI log line, or None."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    text = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2].decode(), text.decode("utf-8", "replace")


class Joiner:
    """Joins partial pieces into lines; ``feed`` yields (timestamp of the first piece, line)."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, str]] = {}

    def feed(self, raw_lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
        for raw in raw_lines:
            rec = parse_line(raw)
            if rec is None:
                continue
            ts, stream, tag, text = rec
            first_ts, before = self.pending.pop(stream, (ts, ""))
            if tag == "P":
                self.pending[stream] = (first_ts, before + text)
                continue
            yield first_ts, before + text


def _emit(out: TextIO, lines: Iterable[tuple[str, str]], timestamps: bool) -> None:
    for ts, text in lines:
        out.write(f"{ts} {text}\n" if timestamps else text + "\n")
    out.flush()


def _read_all(files: list[Path]) -> Iterator[bytes]:
    for p in files:
        try:
            with open(p, "rb") as f:
                yield from f
        except OSError:
            continue


# -- the command ------------------------------------------------------------------
def _logs(ctx: Context) -> int:
    a = ctx.args
    name = a.pod.split("/", 1)[1] if a.pod.split("/", 1)[0] in ("pod", "pods", "po") and "/" in a.pod else a.pod
    pod = ctx.client.get("Pod", name, namespace=ctx.namespace)
    cname = _container_name(pod, a.container)
    try:
        waiting = _check_status(pod, cname, a.previous)
    except BadRequest as e:
        ctx.failed = True
        ctx.err.write(f"Error from server (BadRequest): {e}\n")
        return 1
    md, node = pod["metadata"], (pod.get("spec") or {}).get("nodeName") or ""
    root = node_root(a.lab_dir, node, ctx.err)
    if root is None:
        return 1
    cdir = root / "var" / "log" / "pods" / f"{md.get('namespace') or ctx.namespace}_{name}_{md.get('uid', '')}" / cname
    have = attempts(cdir)
    if not have:
        return 0   # no log files: the fake runtime, or a container that wrote nothing yet
    current = have[-1]
    if a.previous:
        older = [n for n in have if n < current]
        attempt = current if waiting else (older[-1] if older else None)
        if attempt is None:
            return 0
    else:
        attempt = current
    live = cdir / f"{attempt}.log"
    raw = list(_read_all([p for p in attempt_files(cdir, attempt) if p != live]))
    try:
        f = open(live, "rb")
    except OSError:
        f = None
    rest = b""
    if f is not None:
        *whole, rest = f.read().split(b"\n")
        raw += [w + b"\n" for w in whole]
    following = a.follow and not a.previous
    if rest and not following:
        raw.append(rest)   # a line still being written
    joiner = Joiner()
    lines: Iterable[tuple[str, str]] = joiner.feed(raw)
    if a.tail is not None and a.tail >= 0:
        lines = deque(lines, maxlen=a.tail) if a.tail > 0 else []
    try:
        _emit(ctx.out, lines, a.timestamps)
        if following:
            stop = getattr(a, "_stop", None) or (lambda: False)
            follow(cdir, attempt, joiner, ctx.out, a.timestamps, stop, f=f, buf=rest)
    except KeyboardInterrupt:
        if not following:
            raise
    finally:
        if f is not None:
            f.close()
    return 0


def follow(cdir: Path, attempt: int, joiner: Joiner, out: TextIO, timestamps: bool,
           stop: Callable[[], bool], *, f: Any = None, buf: bytes = b"", poll: float = POLL) -> None:
    """Follow ``<attempt>.log`` from ``f``'s position (the caller printed what came before;
    ``buf`` is an incomplete last line already read)."""
    path = cdir / f"{attempt}.log"
    try:
        while not stop():
            chunk = f.read() if f is not None else b""
            if chunk:
                buf += chunk
                *whole, buf = buf.split(b"\n")
                _emit(out, joiner.feed(w + b"\n" for w in whole), timestamps)
                continue
            newer = [n for n in attempts(cdir) if n > attempt]
            if f is not None and _rotated(f, path):
                f.close()      # the old file is fully read: start on the new one
                f = open(path, "rb") if path.exists() else None
                continue
            if newer:          # the container restarted: move on to its new attempt
                attempt, buf = newer[0], b""
                path = cdir / f"{attempt}.log"
                if f is not None:
                    f.close()
                f = open(path, "rb")
                continue
            if f is None and path.exists():
                f = open(path, "rb")
                continue
            if not cdir.exists():
                return         # the pod is gone
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _rotated(f: Any, path: Path) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except OSError:
        return False
