"""Reading a lab's log directory fast: each process's files in order, a block scanner, ``-f``.

Contract
--------
* ``process_files(dir)``: each process's files, oldest first: ``<p>.jsonl.N``
  ... ``<p>.jsonl.1`` (higher is older), then the current ``<p>.jsonl``.
* ``raw_timeline(dir, flt, positions)`` yields ``(ts, raw line, record or
  None)`` for every matching line, merged by ``ts`` with ``heapq.merge``: one
  generator per process (its files chained, so one open file per process), so
  within a process lines keep the order they were written in, and memory is
  bounded by the number of processes times one read block (the blocks share a
  8 MiB budget), never by the logs' size. The record is ``None`` when no
  filter needed it parsed. Each block is searched for the filter's anchor
  (``str.find`` or one regex search over the whole block), so lines that
  cannot match are never split out, parsed or searched one by one. Lines that
  are not JSON are skipped. A file wholly outside ``--since``/``--until``
  (by its first and last lines) is not read.
* With ``positions`` (a dict), the current files are snapshotted (inode, size)
  at the start and read only up to that size; ``positions[process]`` is then
  ``(inode, offset after the last whole line read)``, where ``Follower`` takes
  over: nothing is lost or repeated between the first read and ``-f`` (a
  rotation during the first read may repeat a few lines).
* ``Follower.poll()`` returns the new matching lines of every process since the
  last poll, merged by ``ts``: appended lines, the rest of a file that was
  rotated (found by its inode among the rotated files) and the files of
  processes that started later. Only whole lines are read.
"""
from __future__ import annotations

import heapq
import json
import os
import re
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator

from lab.logs_filter import Filter

Item = tuple[str, str, "dict[str, Any] | None"]
Positions = dict[str, "tuple[int, int] | None"]
_ROTATED = re.compile(r"^(.+)\.jsonl\.(\d+)$")
BLOCK_BUDGET = 8 << 20
_TS_LEN = 27   # 2026-11-26T14:10:18.077633Z


def process_files(logs_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[tuple[int, Path]]] = {}
    try:
        entries = list(os.scandir(logs_dir))
    except FileNotFoundError:
        return {}
    for e in entries:
        if e.name.endswith(".jsonl"):
            found.setdefault(e.name[:-6], []).append((0, Path(e.path)))
        else:
            m = _ROTATED.match(e.name)
            if m:
                found.setdefault(m.group(1), []).append((int(m.group(2)), Path(e.path)))
    return {name: [p for _n, p in sorted(files, key=lambda t: (t[0] == 0, -t[0]))]
            for name, files in sorted(found.items())}


def ts_of(line: str) -> str | None:
    """The line's ``ts`` without parsing it: first (our writers) or last of the top-level keys."""
    if line.startswith('{"ts": "'):
        ts = line[8:8 + _TS_LEN]
    else:
        j = line.rfind('"ts": "')
        if j < 0:
            return None
        ts = line[j + 7:j + 7 + _TS_LEN]
    return ts if len(ts) == _TS_LEN and ts[-1] == "Z" and ts[10] == "T" else None


def _check(line: str, flt: Filter) -> Item | None:
    rec: Any = None
    ts = ts_of(line) if line.endswith("}") else None
    if ts is None:
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict):
            return None
        ts = str(rec.get("ts", ""))
    if not flt.raw_ok(line, ts):
        return None
    if flt.needs_record:
        if rec is None:
            try:
                rec = json.loads(line)
            except ValueError:
                return None
            if not isinstance(rec, dict):
                return None
        if not flt.fields_ok(rec):
            return None
    return ts, line, rec


def _lines(buf: str, flt: Filter) -> Iterator[Item]:
    """The matching lines of a block of whole lines."""
    if flt.anchor is None:
        for line in buf.split("\n"):
            if line:
                it = _check(line, flt)
                if it is not None:
                    yield it
        return
    find = flt.anchor(buf)
    pos, end = 0, len(buf)
    while pos < end:
        j = find(pos)
        if j < 0:
            return
        s = buf.rfind("\n", 0, j) + 1
        e = buf.find("\n", j)
        if e < 0:
            e = end
        if e > s:
            it = _check(buf[s:e], flt)
            if it is not None:
                yield it
        pos = e + 1


def scan_file(path: Path, flt: Filter, block: int = 1 << 20, start: int = 0, stop: int | None = None,
              expect_ino: int | None = None, state: dict[str, int] | None = None) -> Iterator[Item]:
    """Matching whole lines of one file from ``start`` (to ``stop``); ``state`` gets ino and the end offset."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        ino = os.fstat(f.fileno()).st_ino
        if expect_ino is not None and ino != expect_ino:
            return   # rotated since it was looked at; the caller will see that next time
        f.seek(start)
        offset, rest = start, b""
        while True:
            n = block if stop is None else min(block, stop - offset)
            data = f.read(n) if n > 0 else b""
            if not data:
                break
            offset += len(data)
            cut = data.rfind(b"\n")
            if cut < 0:
                rest += data
                continue
            buf = (rest + data[:cut + 1]).decode("utf-8", "replace") if rest else \
                data[:cut + 1].decode("utf-8", "replace")
            rest = data[cut + 1:]
            yield from _lines(buf, flt)
        if state is not None:
            state["ino"], state["pos"] = ino, offset - len(rest)


def _edge_ts(path: Path, last: bool) -> str | None:
    """The ts of a file's first or last whole line (for skipping files outside the time range)."""
    try:
        with open(path, "rb") as f:
            if last:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 8192))
                lines = f.read().split(b"\n")
                line = lines[-2] if len(lines) >= 2 else b""
            else:
                line = f.readline(65536).rstrip(b"\n")
    except OSError:
        return None
    return ts_of(line.decode("utf-8", "replace"))


def _outside(path: Path, flt: Filter) -> bool:
    if flt.since:
        t = _edge_ts(path, last=True)
        if t is not None and t < flt.since:
            return True
    if flt.until:
        t = _edge_ts(path, last=False)
        if t is not None and t > flt.until:
            return True
    return False


def _process(name: str, files: list[Path], flt: Filter, block: int, snap: tuple[int, int] | None,
             positions: Positions | None) -> Iterator[Item]:
    for path in files:
        current = path.name == f"{name}.jsonl"
        if not current:
            if not _outside(path, flt):
                yield from scan_file(path, flt, block)
            continue
        if positions is None:
            if not _outside(path, flt):
                yield from scan_file(path, flt, block)
            continue
        if snap is None:
            continue
        state: dict[str, int] = {}
        if not _outside(path, flt):
            yield from scan_file(path, flt, block, stop=snap[1], expect_ino=snap[0], state=state)
        positions[name] = (state["ino"], state["pos"]) if state else snap


def _snapshot(logs_dir: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    snap = {}
    for name in names:
        try:
            st = os.stat(Path(logs_dir) / f"{name}.jsonl")
        except FileNotFoundError:
            continue
        snap[name] = (st.st_ino, st.st_size)
    return snap


def raw_timeline(logs_dir: Path, flt: Filter | None = None,
                 positions: Positions | None = None) -> Iterator[Item]:
    flt = flt or Filter()
    procs = process_files(Path(logs_dir))
    snap = _snapshot(logs_dir, list(procs)) if positions is not None else {}
    if positions is not None:
        for name in procs:
            positions[name] = snap.get(name)
    block = max(16 << 10, min(1 << 20, BLOCK_BUDGET // max(1, len(procs))))
    gens = [_process(name, files, flt, block, snap.get(name), positions) for name, files in procs.items()]
    return heapq.merge(*gens, key=itemgetter(0))


class Follower:
    """New matching lines since the last poll (see the module docstring)."""

    def __init__(self, logs_dir: Path, flt: Filter, positions: Positions | None = None) -> None:
        self.dir = Path(logs_dir)
        self.flt = flt
        if positions is None:   # start at the end of everything there is now
            procs = process_files(self.dir)
            snap = _snapshot(self.dir, list(procs))
            positions = {name: snap.get(name) for name in procs}
        self.pos: Positions = dict(positions)

    def poll(self) -> list[Item]:
        per_process = []
        for name, files in process_files(self.dir).items():
            items = list(self._new(name, files))
            if items:
                per_process.append(items)
        return list(heapq.merge(*per_process, key=itemgetter(0)))

    def _read_current(self, name: str, path: Path, start: int, ino: int | None) -> Iterator[Item]:
        state: dict[str, int] = {}
        yield from scan_file(path, self.flt, start=start, expect_ino=ino, state=state)
        if state:
            self.pos[name] = (state["ino"], state["pos"])

    def _new(self, name: str, files: list[Path]) -> Iterator[Item]:
        cur = self.dir / f"{name}.jsonl"
        rotated = [p for p in files if p != cur]
        if name not in self.pos:   # a process that started after we began
            self.pos[name] = None
            for p in rotated:
                yield from scan_file(p, self.flt)
            if cur in files:
                yield from self._read_current(name, cur, 0, None)
            return
        try:
            st = os.stat(cur)
        except FileNotFoundError:
            return
        tracked = self.pos[name]
        if tracked is None:
            yield from self._read_current(name, cur, 0, st.st_ino)
            return
        ino, off = tracked
        if ino == st.st_ino:
            if st.st_size < off:
                off = 0   # truncated
            if st.st_size > off:
                yield from self._read_current(name, cur, off, ino)
            return
        inodes = []
        for p in rotated:
            try:
                inodes.append(os.stat(p).st_ino)
            except FileNotFoundError:
                inodes.append(-1)
        if ino in inodes:   # the file we were reading was rotated: finish it, then the newer ones
            k = inodes.index(ino)
            yield from scan_file(rotated[k], self.flt, start=off)
            for p in rotated[k + 1:]:
                yield from scan_file(p, self.flt)
        self.pos[name] = (st.st_ino, 0)
        yield from self._read_current(name, cur, 0, st.st_ino)
