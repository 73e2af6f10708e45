"""Write-ahead log (WAL) with group commit: the apiserver store's durability layer.

Contract
--------
* ``append(record)`` only buffers (no syscall).  ``commit()`` writes all
  buffered records with one ``write()`` + one ``os.fdatasync``.  A record is
  durable once ``commit()`` has returned (acknowledge writes only then).
  ``close()`` and ``discard()`` drop buffered records; so does a crash.
* Records are dicts ``{"rev": int, "op": "put"|"del", "key": k, "obj": dict}``
  (``obj`` only for puts).  ``rev`` must strictly increase from record to
  record (one record per revision); ``append`` raises ``ValueError`` otherwise.
* A failed write/fsync poisons the WAL (``WALFailedError`` from then on): the
  page cache state is unknowable, so the process must restart and recover.
* ``snapshot(rev, objects)`` commits, writes the snapshot crash-safely (see
  ``snapshot.py``), starts a new segment, then deletes obsolete files.
  ``begin_snapshot()`` / ``finish_snapshot(rev)`` split it for a snapshot
  written elsewhere (the apiserver writes it in a forked child, so the loop
  does not stall): begin commits and starts the segment, finish deletes.  The
  newest ``keep_snapshots`` (default 2) snapshots stay, with every segment
  needed to replay from the oldest of them, so a corrupt newest snapshot can
  fall back to the previous one.  With ``keep_snapshots=1`` a
  corrupt snapshot makes ``recover()`` raise ``CorruptLogError`` (the WAL
  before it is gone) rather than return a state with missing revisions.
* ``fsync=False`` keeps the format and ordering but only survives process
  crashes (data sits in the page cache), not OS crashes or power loss.
* Not thread-safe; one instance per directory (``flock`` on ``<data_dir>/LOCK``).

Files (integers little-endian)
------------------------------
``wal-<R, 16 digits>.log``: a 24-byte header ``struct "<8sHHQI"`` (magic
``b"KEMU-WAL"``, version 1, flags 0, R, CRC32 of the preceding 20 bytes), then
frames ``[u32 payload length][u32 zlib.crc32(payload)][msgpack payload]``.
R is the durable revision + 1 when the segment was created: the segment holds
only revs >= R and every earlier segment (or snapshot) ends exactly at R - 1.
A commit whose segment has reached ``segment_bytes`` first starts a new one.
``snapshot-<rev>.msgpack``: see :mod:`control.storage.snapshot`.

Recovery rules
--------------
1. ``*.tmp`` files are deleted.  The newest snapshot that validates is loaded;
   corrupt ones are renamed ``*.corrupt`` (see ``Recovery.corrupt_snapshots``).
2. Replay starts at the last segment whose R <= snapshot rev + 1 and goes
   through all later segments; records with rev <= snapshot rev are skipped.
   A missing revision range (a segment whose R is not the previous rev + 1,
   or no segment reaching back to the snapshot) raises ``CorruptLogError``.
3. A bad frame (short header, length past EOF, length 0, CRC mismatch) in the
   *last* segment is a torn tail if no valid frame starts anywhere after it:
   the segment is truncated there and ``torn_bytes_dropped`` reports the loss.
   (A last segment with a torn header is deleted.)  A bad frame followed by a
   valid one, a bad frame in an earlier (sealed) segment, an undecodable
   record or non-increasing revs are corruption: ``CorruptLogError`` names the
   file and offset, and nothing is dropped.
4. The cyclic GC is paused while recovering (about 3x faster for 100k objects).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .snapshot import (StorageError, delete_old_snapshots, write_all,
                       freeze_key, fsync_dir, gc_paused, list_numbered,
                       load_newest_snapshot, write_snapshot)

WAL_MAGIC = b"KEMU-WAL"
WAL_VERSION = 1
_SEG_HEADER = struct.Struct("<8sHHQ")  # followed by CRC32 of these 20 bytes
SEG_HEADER_SIZE = _SEG_HEADER.size + 4
_FRAME = struct.Struct("<II")
FRAME_HEADER_SIZE = _FRAME.size
MAX_RECORD_BYTES = 1 << 28
SEG_RE = re.compile(r"^wal-(\d{16})\.log$")
_OPS = frozenset(("put", "del"))


class CorruptLogError(StorageError):
    """The WAL is damaged in a way that cannot be a torn tail (or revs are missing)."""

    def __init__(self, path: str | os.PathLike, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path, self.offset, self.reason = str(path), offset, reason


class WALFailedError(StorageError):
    """A write/fsync failed earlier or the log is closed/not recovered; restart and recover."""


@dataclass
class Recovery:
    rev: int                          # highest revision recovered (0 for a new store)
    objects: dict[Any, dict]          # snapshot state with the WAL records applied
    records_replayed: int             # records with rev > snapshot_rev applied
    torn_bytes_dropped: int           # >0 when a torn tail was truncated
    snapshot_rev: int                 # rev of the snapshot loaded (0: none)
    corrupt_snapshots: list[str] = field(default_factory=list)  # renamed *.corrupt
    segments_replayed: int = 0


def segment_name(first_rev: int) -> str:
    return f"wal-{first_rev:016d}.log"


def _segment_header(first_rev: int) -> bytes:
    head = _SEG_HEADER.pack(WAL_MAGIC, WAL_VERSION, 0, first_rev)
    return head + zlib.crc32(head).to_bytes(4, "little")


def _scan(view: memoryview, off: int) -> tuple[list[tuple[int, memoryview]], int]:
    """Return the valid frames from ``off`` on and the offset where they stop."""
    end = len(view)
    unpack, crc32 = _FRAME.unpack_from, zlib.crc32
    frames = []
    while end - off >= FRAME_HEADER_SIZE:
        n, crc = unpack(view, off)
        start = off + FRAME_HEADER_SIZE
        if n == 0 or n > end - start:
            break
        payload = view[start:start + n]
        if crc32(payload) != crc:
            break
        frames.append((off, payload))
        off = start + n
    return frames, off


def _find_valid_frame(view: memoryview, start: int) -> int | None:
    """Offset of the first position >= start holding a CRC-valid frame (slow; error path)."""
    end = len(view)
    unpack, crc32 = _FRAME.unpack_from, zlib.crc32
    for off in range(start, end - FRAME_HEADER_SIZE):
        n, crc = unpack(view, off)
        if 0 < n <= end - off - FRAME_HEADER_SIZE and n <= MAX_RECORD_BYTES:
            if crc32(view[off + FRAME_HEADER_SIZE:off + FRAME_HEADER_SIZE + n]) == crc:
                return off
    return None


class WriteAheadLog:
    """Segmented, CRC-framed, group-committed log plus snapshots (see module doc)."""

    def __init__(self, data_dir: str | os.PathLike, *, fsync: bool = True,
                 segment_bytes: int = 64 << 20, keep_snapshots: int = 2) -> None:
        if keep_snapshots < 1:
            raise ValueError("keep_snapshots must be >= 1")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._keep_snapshots = keep_snapshots
        self._lock_fd: int | None = os.open(self.data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StorageError(f"{self.data_dir} is locked by another WriteAheadLog") from None
        self._pack = msgpack.Packer().pack
        self._buf: list[bytes] = []
        self._pending = 0
        self._last_rev = 0        # rev of the last appended record (or snapshot)
        self._durable_rev = 0     # last committed rev (or snapshot rev, if higher)
        self._snapshot_rev = 0
        self._fd: int | None = None
        self._seg_first = 0
        self._seg_size = 0
        self._synced_size = 0   # bytes of the current segment known to be on disk
        self._recovered = False
        self._failed: BaseException | None = None
        self.records_since_snapshot = 0
        self.bytes_since_snapshot = 0
        self.last_sync_s = 0.0   # how long the last fdatasync took

    @property
    def rev(self) -> int:
        """Rev of the last appended record (committed or not)."""
        return self._last_rev

    @property
    def committed_rev(self) -> int:
        """Rev of the last committed record (or of the last snapshot, if higher)."""
        return self._durable_rev

    @property
    def pending(self) -> int:
        """Number of buffered, uncommitted records."""
        return self._pending

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise WALFailedError(f"WAL unusable after an I/O error: {self._failed!r}")
        if self._fd is None:
            raise WALFailedError("WAL is closed or recover() was not called")

    def recover(self) -> Recovery:
        """Load the newest valid snapshot and replay the WAL after it (call once, first)."""
        if self._recovered or self._lock_fd is None:
            raise StorageError("recover() must be called exactly once, on an open WAL")
        if self._pending:
            raise StorageError("recover() must be called before append()")
        for tmp in self.data_dir.glob("*.tmp"):
            tmp.unlink()
        with gc_paused():
            rec = self._recover()
        self._recovered = True
        return rec

    def _recover(self) -> Recovery:
        snap_rev, objects, corrupt = load_newest_snapshot(self.data_dir)
        segs = list_numbered(self.data_dir, SEG_RE)
        start = max((i for i, (first, _) in enumerate(segs) if first <= snap_rev + 1), default=None)
        if segs and start is None:
            raise CorruptLogError(segs[0][1], 0, f"revs {snap_rev + 1}..{segs[0][0] - 1} missing "
                                  f"after snapshot rev {snap_rev} (corrupt snapshots: {corrupt})")
        needed = segs[start:] if segs else []
        torn = replayed = replayed_bytes = 0
        seen = snap_rev
        last_good_end = 0
        unpackb = msgpack.unpackb
        for i, (first, path) in enumerate(needed):
            is_last = i == len(needed) - 1
            if i > 0 and seen != first - 1:
                raise CorruptLogError(path, 0, f"starts at rev {first}, previous records end at {seen}")
            view = memoryview(path.read_bytes())
            if view[:SEG_HEADER_SIZE] != _segment_header(first):
                if not is_last or _find_valid_frame(view, 0) is not None:
                    raise CorruptLogError(path, 0, "bad segment header")
                torn += len(view)          # crash while creating the segment
                path.unlink()
                needed.pop()
                break
            frames, good_end = _scan(view, SEG_HEADER_SIZE)
            if good_end < len(view):
                if not is_last:
                    raise CorruptLogError(path, good_end, "bad record in a sealed segment")
                later = _find_valid_frame(view, good_end + 1)
                if later is not None:
                    raise CorruptLogError(path, good_end, f"bad record, yet a valid one follows at {later}")
                torn += len(view) - good_end
            last_good_end = good_end
            prev = first - 1
            for off, payload in frames:
                try:
                    rec = unpackb(payload, raw=False, strict_map_key=False)
                    rev, op, key = rec["rev"], rec["op"], freeze_key(rec["key"])
                    obj = rec["obj"] if op == "put" else None
                except Exception as exc:  # CRC-valid but undecodable: writer bug or corruption
                    raise CorruptLogError(path, off, f"undecodable record: {exc!r}") from exc
                if type(rev) is not int or rev <= prev or op not in _OPS:
                    raise CorruptLogError(path, off, f"bad record (rev {rev!r} after {prev}, op {op!r})")
                prev = rev
                if rev <= snap_rev:
                    continue
                if op == "put":
                    objects[key] = obj
                else:
                    objects.pop(key, None)
                replayed += 1
                replayed_bytes += FRAME_HEADER_SIZE + len(payload)
            seen = max(seen, prev)
        self._last_rev = self._durable_rev = seen
        self._snapshot_rev = snap_rev
        self.records_since_snapshot = replayed
        self.bytes_since_snapshot = replayed_bytes
        if needed:  # append to the last segment, minus any torn tail
            self._seg_first, path = needed[-1]
            self._fd, self._seg_size = os.open(path, os.O_WRONLY | os.O_APPEND), last_good_end
            self._synced_size = last_good_end
            if os.fstat(self._fd).st_size > last_good_end:
                os.ftruncate(self._fd, last_good_end)
                if self._fsync:
                    os.fsync(self._fd)
        else:
            self._open_segment(seen + 1)
        return Recovery(rev=seen, objects=objects, records_replayed=replayed,
                        torn_bytes_dropped=torn, snapshot_rev=snap_rev,
                        corrupt_snapshots=corrupt, segments_replayed=len(needed))

    def append(self, record: dict) -> None:
        """Buffer one record; O(1), no syscall.  Durable only after commit()."""
        if record["op"] not in _OPS or "key" not in record:
            raise ValueError(f"bad record op/key: {record.get('op')!r}")
        self.append_packed(record["rev"], self._pack(record))

    def append_packed(self, rev: int, payload: bytes) -> None:
        """Buffer one record that the caller already packed (a msgpack map of the
        record's fields, ``rev`` equal to the argument; not validated here: a bad
        payload makes recovery raise CorruptLogError). Lets the store pack each
        object once per write."""
        if type(rev) is not int or rev <= self._last_rev:
            raise ValueError(f"record rev {rev!r} must be an int > {self._last_rev}")
        n = len(payload)
        if n > MAX_RECORD_BYTES:
            raise ValueError(f"record of {n} bytes exceeds {MAX_RECORD_BYTES}")
        self._buf.append(_FRAME.pack(n, zlib.crc32(payload)))
        self._buf.append(payload)
        self._last_rev = rev
        self._pending += 1

    def commit(self) -> int:
        """Write all buffered records with one write() (+ fdatasync); return how many."""
        self._check_usable()
        n = self._pending
        rev = self.write()
        if rev:
            self.sync()
            self.mark_durable(rev)
        return n

    @property
    def needs_rotation(self) -> bool:
        """The next write starts a new segment: everything written must be synced first."""
        return self._seg_size >= self._segment_bytes

    def write(self) -> int:
        """The first half of commit: write buffered records, without syncing them.

        Returns the last rev written (0 when nothing was buffered). The records
        are durable only after ``sync()``; ``mark_durable(rev)`` records that.
        A write that starts a new segment must come when all earlier writes
        are synced (``needs_rotation`` tells the caller).
        """
        n = self._pending
        if not n:
            return 0
        self._check_usable()
        data = b"".join(self._buf)
        try:
            if self._seg_size >= self._segment_bytes:
                self._open_segment(self._durable_rev + 1)
            write_all(self._fd, data)  # type: ignore[arg-type]
        except BaseException as exc:
            self._poison(exc)
        self._buf.clear()
        self._pending = 0
        self._seg_size += len(data)
        self.records_since_snapshot += n
        self.bytes_since_snapshot += len(data)
        return self._last_rev

    def sync(self) -> None:
        """fdatasync what was written (skipped when fsync=False). May run on another
        thread than ``write``, but never together with a segment change."""
        size = self._seg_size
        if self._fsync:
            t0 = time.perf_counter()
            try:
                os.fdatasync(self._fd)  # type: ignore[arg-type]
            except BaseException as exc:
                self._poison(exc)
            self.last_sync_s = time.perf_counter() - t0
        self._synced_size = max(self._synced_size, size)

    def mark_durable(self, rev: int) -> None:
        self._durable_rev = max(self._durable_rev, rev)

    def _poison(self, exc: BaseException) -> None:
        self._failed = exc  # best effort: cut unsynced records off; recovery copes anyway
        try:
            os.ftruncate(self._fd, self._synced_size)  # type: ignore[arg-type]
        except OSError:
            pass
        raise WALFailedError(f"commit failed, WAL is now unusable: {exc!r}") from exc

    def discard(self) -> int:
        """Drop buffered records (e.g. a failed batch); return how many."""
        n = self._pending
        self._buf.clear()
        self._pending = 0
        self._last_rev = self._durable_rev
        return n

    def _open_segment(self, first: int) -> None:
        """Start segment wal-<first>.log (no-op if it is already the current one)."""
        if self._fd is not None and first == self._seg_first:
            return
        path = self.data_dir / segment_name(first)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        old, self._fd, self._seg_first, self._seg_size = self._fd, fd, first, 0
        if old is not None:
            os.close(old)
        write_all(fd, _segment_header(first))  # a torn header is handled by recovery
        self._seg_size = self._synced_size = SEG_HEADER_SIZE
        if self._fsync:
            os.fdatasync(fd)
            fsync_dir(self.data_dir)

    def snapshot(self, rev: int, objects: Iterable[tuple[Any, dict]]) -> None:
        """Persist the full state as of ``rev``, start a new segment, drop obsolete files.

        Pending records are committed first.  Records after ``rev`` already in
        the log are kept (their segment stays), so a slightly stale state is fine.
        """
        self._check_usable()
        self.commit()
        if rev < self._snapshot_rev:
            raise ValueError(f"snapshot rev {rev} is older than the last snapshot {self._snapshot_rev}")
        write_snapshot(self.data_dir, rev, objects, fsync=self._fsync)
        self._last_rev = max(self._last_rev, rev)
        self._durable_rev = max(self._durable_rev, rev)
        self._new_segment()
        self.finish_snapshot(rev)

    def begin_snapshot(self) -> int:
        """Start a snapshot that someone else writes (``write_snapshot``; the apiserver's
        forked child): commits, starts a new segment and returns the rev the snapshot
        must hold, the state as of now.  Call ``finish_snapshot(rev)`` once it is on
        disk; until then, and for ever if it never lands, nothing is deleted."""
        self._check_usable()
        self.commit()
        self._new_segment()
        return self._durable_rev

    def finish_snapshot(self, rev: int) -> None:
        """The snapshot of ``rev`` is durable: delete what it made obsolete."""
        self._snapshot_rev = max(self._snapshot_rev, rev)
        self._delete_obsolete()

    def _new_segment(self) -> None:
        try:
            self._open_segment(self._durable_rev + 1)
        except BaseException as exc:
            self._failed = exc
            raise WALFailedError(f"could not start a new segment: {exc!r}") from exc
        self.records_since_snapshot = 0
        self.bytes_since_snapshot = 0

    def _delete_obsolete(self) -> None:
        oldest_needed = delete_old_snapshots(self.data_dir, self._keep_snapshots)
        segs = list_numbered(self.data_dir, SEG_RE)
        for (first, path), (nxt, _) in zip(segs, segs[1:]):
            if nxt <= oldest_needed + 1 and first != self._seg_first:
                path.unlink()
        if self._fsync:
            fsync_dir(self.data_dir)

    def close_lock_copy(self) -> None:
        """In a forked child: close the child's copy of the lock file, so the lock lives as
        long as the parent's (a flock belongs to the open file, shared across a fork)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Close files and release the directory lock.  Uncommitted records are discarded."""
        self._buf.clear()
        self._pending = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
