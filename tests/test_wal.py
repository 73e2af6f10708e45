"""Tests of the apiserver store's durability layer (control/storage/wal.py, snapshot.py)."""
from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import pytest

from control.storage.snapshot import CorruptSnapshotError, read_snapshot, snapshot_name
from control.storage.wal import (FRAME_HEADER_SIZE, SEG_HEADER_SIZE, CorruptLogError, StorageError,
                                 WALFailedError, WriteAheadLog, segment_name)

REPO = Path(__file__).resolve().parents[1]


def key(i: int) -> tuple[str, str, str]:
    return ("Pod", "default", f"pod-{i}")


def obj(rev: int, i: int) -> dict:
    return {"kind": "Pod", "metadata": {"name": f"pod-{i}", "resourceVersion": str(rev)},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


class Writer:
    """Drives a WAL and keeps the expected state (a model) alongside."""

    def __init__(self, wal: WriteAheadLog, rev: int = 0, model: dict | None = None) -> None:
        self.wal, self.rev, self.model = wal, rev, dict(model or {})

    def put(self, i: int) -> None:
        self.rev += 1
        o = obj(self.rev, i)
        self.wal.append({"rev": self.rev, "op": "put", "key": list(key(i)), "obj": o})
        self.model[key(i)] = o

    def delete(self, i: int) -> None:
        self.rev += 1
        self.wal.append({"rev": self.rev, "op": "del", "key": key(i)})
        self.model.pop(key(i), None)

    def batch(self, ids: range | list[int]) -> int:
        for i in ids:
            self.put(i)
        return self.wal.commit()


def reopen(path: Path, **kw):
    wal = WriteAheadLog(path, **kw)
    return wal, wal.recover()


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.log"))


def frame_offsets(seg: Path) -> list[int]:
    data, off, offs = seg.read_bytes(), SEG_HEADER_SIZE, []
    while off < len(data):
        offs.append(off)
        off += FRAME_HEADER_SIZE + int.from_bytes(data[off:off + 4], "little")
    return offs


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_roundtrip_across_reopen(tmp_path: Path) -> None:
    wal, rec = reopen(tmp_path)
    assert (rec.rev, rec.objects, rec.snapshot_rev, rec.torn_bytes_dropped) == (0, {}, 0, 0)
    w = Writer(wal)
    assert w.batch(range(10)) == 10
    w.delete(3)
    w.put(42)
    assert wal.commit() == 2
    assert wal.commit() == 0            # nothing buffered: no-op
    assert wal.records_since_snapshot == 12 and wal.bytes_since_snapshot > 12 * FRAME_HEADER_SIZE
    wal.close()

    wal, rec = reopen(tmp_path)
    assert rec.rev == 12 and rec.records_replayed == 12 and rec.objects == w.model
    assert all(type(k) is tuple for k in rec.objects)
    assert wal.records_since_snapshot == 12
    w2 = Writer(wal, rec.rev, rec.objects)
    w2.batch([5, 6])
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.rev == 14 and rec.objects == w2.model
    wal.close()


def test_uncommitted_records_are_not_recovered(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path)
    w = Writer(wal)
    w.batch(range(3))
    committed = dict(w.model)
    w.put(100)
    w.put(101)
    assert wal.pending == 2
    wal.close()                         # close() does not commit
    wal, rec = reopen(tmp_path)
    assert rec.rev == 3 and rec.objects == committed
    # discard() drops a batch and lets the same revs be reused
    w = Writer(wal, rec.rev, rec.objects)
    w.put(7)
    assert wal.discard() == 1 and wal.rev == 3
    wal.append({"rev": 4, "op": "put", "key": key(8), "obj": obj(4, 8)})
    wal.commit()
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.rev == 4 and key(8) in rec.objects and key(7) not in rec.objects
    wal.close()


def test_append_validates_records(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path)
    wal.append({"rev": 5, "op": "put", "key": key(1), "obj": {}})
    with pytest.raises(ValueError):
        wal.append({"rev": 5, "op": "put", "key": key(1), "obj": {}})      # not increasing
    with pytest.raises(ValueError):
        wal.append({"rev": 6, "op": "patch", "key": key(1)})
    with pytest.raises(ValueError):
        wal.append({"rev": "7", "op": "del", "key": key(1)})
    assert wal.commit() == 1
    wal.close()


def test_append_packed_round_trip(tmp_path: Path) -> None:
    """The store may pack records itself; they replay like append()ed ones."""
    wal, _ = reopen(tmp_path)
    wal.append_packed(1, msgpack.packb({"rev": 1, "op": "put", "key": key(1), "obj": obj(1, 1)}))
    wal.append({"rev": 2, "op": "put", "key": key(2), "obj": obj(2, 2)})
    with pytest.raises(ValueError):
        wal.append_packed(2, b"\x80")
    wal.commit()
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.objects == {key(1): obj(1, 1), key(2): obj(2, 2)}
    wal.close()


def test_directory_lock(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path)
    with pytest.raises(StorageError, match="locked"):
        WriteAheadLog(tmp_path)
    wal.close()
    reopen(tmp_path)[0].close()


def test_snapshot_then_records_and_old_segments_deleted(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=2048)
    w = Writer(wal)
    for b in range(20):
        w.batch(range(b * 5, b * 5 + 5))
    old_segments = segments(tmp_path)
    assert len(old_segments) > 3
    wal.snapshot(w.rev, w.model.items())
    snap1 = w.rev
    assert [p.name for p in segments(tmp_path)] == [segment_name(snap1 + 1)]
    assert wal.records_since_snapshot == 0 and wal.bytes_since_snapshot == 0
    w.delete(0)
    w.batch([1000, 1001])
    wal.close()

    wal, rec = reopen(tmp_path, segment_bytes=2048)
    assert rec.snapshot_rev == snap1 and rec.records_replayed == 3
    assert rec.rev == w.rev and rec.objects == w.model
    assert wal.records_since_snapshot == 3
    # second snapshot: the previous one and the segments after it are kept (fallback),
    # a third snapshot retires the first one and its segment
    w.wal = wal
    wal.snapshot(w.rev, w.model.items())
    snap2 = w.rev
    w.batch([2000])
    wal.snapshot(w.rev, w.model.items())
    snap3 = w.rev
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["LOCK", snapshot_name(snap2), snapshot_name(snap3),
                     segment_name(snap2 + 1), segment_name(snap3 + 1)]
    w.batch([3000])
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.snapshot_rev == snap3 and rec.rev == w.rev and rec.objects == w.model
    wal.close()


def test_snapshot_of_older_rev_keeps_later_records(tmp_path: Path) -> None:
    """A snapshot taken of a slightly stale state must not drop records after it."""
    wal, _ = reopen(tmp_path)
    w = Writer(wal)
    w.batch(range(5))
    stale_rev, stale = w.rev, dict(w.model)
    w.batch(range(5, 8))
    wal.snapshot(stale_rev, stale.items())
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.snapshot_rev == stale_rev and rec.rev == w.rev and rec.objects == w.model
    wal.close()


def _committed(tmp_path: Path, n: int = 20) -> Writer:
    wal, _ = reopen(tmp_path)
    w = Writer(wal)
    for i in range(n):
        w.batch([i % 7])
    wal.close()
    return w


@pytest.mark.parametrize("damage", ["truncate", "truncate_in_header", "garbage", "flip_last",
                                    "flip_last_length", "zeros"])
def test_torn_tail_is_dropped(tmp_path: Path, damage: str) -> None:
    w = _committed(tmp_path, 20)
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    last = frame_offsets(seg)[-1]
    if damage == "truncate":
        os.truncate(seg, size - 3)
    elif damage == "truncate_in_header":
        os.truncate(seg, last + 3)
    elif damage == "garbage":
        with open(seg, "ab") as f:
            f.write(b"\xff\x13\x7f garbage \x00\x01")
    elif damage == "zeros":                    # file size extended, data never written
        with open(seg, "ab") as f:
            f.write(bytes(4096))
    elif damage == "flip_last":
        flip(seg, size - 2)
    elif damage == "flip_last_length":
        flip(seg, last)
    lost_last = damage not in ("garbage", "zeros")
    expect_rev = w.rev - 1 if lost_last else w.rev

    wal, rec = reopen(tmp_path)
    assert rec.torn_bytes_dropped > 0
    assert rec.rev == expect_rev
    # earlier records intact: compare with a model rebuilt up to expect_rev
    model = {}
    for rev in range(1, expect_rev + 1):
        model[key((rev - 1) % 7)] = obj(rev, (rev - 1) % 7)
    assert rec.objects == model
    expected_size = last if lost_last else size
    assert seg.stat().st_size == expected_size        # truncated at the last good record
    # appends after recovery are clean and survive another reopen
    w2 = Writer(wal, rec.rev, rec.objects)
    w2.batch([50, 51])
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.torn_bytes_dropped == 0 and rec.rev == expect_rev + 2 and rec.objects == w2.model
    wal.close()


def test_torn_segment_header_is_dropped(tmp_path: Path) -> None:
    w = _committed(tmp_path, 5)
    torn = tmp_path / segment_name(w.rev + 1)         # crash while creating a new segment
    torn.write_bytes(b"KEMU-W")
    wal, rec = reopen(tmp_path)
    assert rec.rev == w.rev and rec.torn_bytes_dropped == 6 and not torn.exists()
    Writer(wal, rec.rev, rec.objects).batch([1])
    wal.close()
    assert reopen(tmp_path)[1].rev == w.rev + 1


@pytest.mark.parametrize("where", ["payload", "length", "crc"])
def test_mid_file_corruption_raises(tmp_path: Path, where: str) -> None:
    _committed(tmp_path, 20)
    seg = segments(tmp_path)[-1]
    off = frame_offsets(seg)[10]
    flip(seg, {"payload": off + FRAME_HEADER_SIZE + 5, "length": off, "crc": off + 5}[where])
    before = seg.read_bytes()
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(CorruptLogError) as exc:
        wal.recover()
    wal.close()
    assert exc.value.path == str(seg) and exc.value.offset == off
    assert seg.name in str(exc.value) and str(off) in str(exc.value)
    assert seg.read_bytes() == before                 # nothing was truncated


def test_corruption_in_sealed_segment_raises(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=512)
    w = Writer(wal)
    for i in range(40):
        w.batch([i])
    wal.close()
    first = segments(tmp_path)[0]
    assert len(segments(tmp_path)) > 2
    flip(first, first.stat().st_size - 1)             # even at its tail: it was fsynced whole
    with pytest.raises(CorruptLogError, match=first.name):
        reopen(tmp_path)


def test_missing_segment_is_detected(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=512)
    w = Writer(wal)
    for i in range(40):
        w.batch([i])
    wal.close()
    segments(tmp_path)[1].unlink()
    with pytest.raises(CorruptLogError, match="previous records end"):
        reopen(tmp_path)


def _two_snapshots(tmp_path: Path, keep: int) -> Writer:
    wal, _ = reopen(tmp_path, keep_snapshots=keep)
    w = Writer(wal)
    w.batch(range(10))
    wal.snapshot(w.rev, w.model.items())
    w.batch(range(5, 15))
    w.delete(1)
    wal.snapshot(w.rev, w.model.items())
    w.batch(range(20, 23))
    wal.close()
    return w


def test_corrupt_newest_snapshot_falls_back_to_previous(tmp_path: Path) -> None:
    w = _two_snapshots(tmp_path, keep=2)
    newest = sorted(tmp_path.glob("snapshot-*.msgpack"))[-1]
    flip(newest, newest.stat().st_size // 2)
    with pytest.raises(CorruptSnapshotError):
        read_snapshot(newest)
    wal, rec = reopen(tmp_path)
    assert rec.snapshot_rev == 10 and rec.rev == w.rev and rec.objects == w.model
    assert rec.corrupt_snapshots == [str(newest) + ".corrupt"] and not newest.exists()
    wal.close()


def test_truncated_snapshot_falls_back(tmp_path: Path) -> None:
    w = _two_snapshots(tmp_path, keep=2)
    newest = sorted(tmp_path.glob("snapshot-*.msgpack"))[-1]
    os.truncate(newest, newest.stat().st_size - 10)
    wal, rec = reopen(tmp_path)
    assert rec.snapshot_rev == 10 and rec.objects == w.model
    wal.close()


def test_corrupt_only_snapshot_without_wal_fails_clearly(tmp_path: Path) -> None:
    _two_snapshots(tmp_path, keep=1)
    assert len(list(tmp_path.glob("snapshot-*.msgpack"))) == 1
    snap = next(tmp_path.glob("snapshot-*.msgpack"))
    flip(snap, 30)
    with pytest.raises(CorruptLogError, match="missing"):
        reopen(tmp_path)


def test_leftover_tmp_snapshot_is_ignored(tmp_path: Path) -> None:
    w = _committed(tmp_path, 5)
    tmp = tmp_path / (snapshot_name(99) + ".tmp")
    tmp.write_bytes(b"half a snapshot")
    wal, rec = reopen(tmp_path)
    assert rec.rev == w.rev and rec.snapshot_rev == 0 and not tmp.exists()
    wal.close()


def test_segment_rotation(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=1024)
    w = Writer(wal)
    for b in range(30):
        w.batch(range(b, b + 3))
    wal.close()
    segs = segments(tmp_path)
    assert len(segs) > 3
    for seg in segs:                  # each segment is named after its first record's rev
        assert seg.stat().st_size < 1024 + 3 * 400
        first = frame_offsets(seg)[0]
        data = seg.read_bytes()
        n = int.from_bytes(data[first:first + 4], "little")
        rec0 = msgpack.unpackb(data[first + 8:first + 8 + n])
        assert seg.name == segment_name(rec0["rev"])
    wal, rec = reopen(tmp_path, segment_bytes=1024)
    assert rec.rev == w.rev and rec.objects == w.model and rec.segments_replayed == len(segs)
    wal.close()


def test_failed_fsync_poisons_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = reopen(tmp_path)
    w = Writer(wal)
    w.batch([1])

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "fdatasync", eio)
    w.put(2)
    with pytest.raises(WALFailedError):
        wal.commit()
    monkeypatch.undo()
    with pytest.raises(WALFailedError):
        wal.commit()
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.rev == 1               # the failed batch was cut off again
    wal.close()


CHILD = textwrap.dedent("""
    import glob, os, resource, signal, sys
    from control.storage.wal import WriteAheadLog
    # argv: data_dir, N, cut.  N == 0: small segments, run until the parent's SIGKILL.
    # N > 0: die inside the write() of the N-th 3 MB commit, after `cut` bytes of it
    # reached the file: RLIMIT_FSIZE makes write() stop there and the next write()
    # raise SIGXFSZ, which kills us.  (Big segments then, so that commit does not rotate.)
    kill_at, cut = int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)      # Python ignores it by default
    wal = WriteAheadLog(sys.argv[1], segment_bytes=(1 << 30) if kill_at else (32 << 10))
    rec = wal.recover()
    rev, model, n, bigs = rec.rev, rec.objects, 0, 0
    while True:
        big = n % 5 == 4
        for _ in range(400 if big else 1 + n % 37):
            rev += 1
            k = ("Pod", "default", f"p{rev % 300}")
            o = {"rev": rev, "pad": "x" * (rev % 200 + (8000 if big else 0))}
            wal.append({"rev": rev, "op": "put", "key": k, "obj": o})
            model[k] = o
        bigs += big
        if big and bigs == kill_at:
            size = os.path.getsize(max(glob.glob(os.path.join(sys.argv[1], "wal-*.log"))))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + cut, resource.RLIM_INFINITY))
        wal.commit()
        sys.stdout.write(f"{rev}\\n")       # the ack: only after commit() returned
        sys.stdout.flush()
        n += 1
        if n % 60 == 0:
            wal.snapshot(rev, model.items())
""")


def expected_revs(rev: int) -> dict:
    """key -> rev of its last write, for a child that wrote revs 1..rev."""
    return {("Pod", "default", f"p{r % 300}"): r for r in range(max(1, rev - 300), rev + 1)}


def test_sigkill_mid_stream_loses_no_committed_write(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(7)
    reported = 0
    for round_ in range(6):
        # even rounds: the parent SIGKILLs the child right after reading a random ack;
        # odd rounds: the child dies in the middle of a 3 MB write() (torn tail)
        in_write = rng.randrange(3, 12) if round_ % 2 else 0
        cut = rng.randrange(1, 3_000_000)
        stop_after = rng.randrange(100, 400)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(in_write), str(cut)],
                                env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for acks, line in enumerate(proc.stdout, 1):
            if line.endswith("\n"):          # a complete ack line
                reported = max(reported, int(line))
            if not in_write and acks == stop_after:
                os.kill(proc.pid, signal.SIGKILL)
                break
        assert proc.wait() == (-signal.SIGXFSZ if in_write else -signal.SIGKILL)
        for line in proc.stdout:             # acks already in the pipe when the child died
            if line.endswith("\n"):
                reported = max(reported, int(line))
        proc.stdout.close()
        wal, rec = reopen(tmp_path)
        wal.close()
        assert rec.rev >= reported, f"acknowledged rev {reported} lost (recovered {rec.rev})"
        assert {k: o["rev"] for k, o in rec.objects.items()} == expected_revs(rec.rev)
        if in_write:
            assert 0 < rec.torn_bytes_dropped < cut and rec.rev < reported + 400
        print(f"round {round_}: acked {reported} recovered {rec.rev} "
              f"torn {rec.torn_bytes_dropped} snapshot {rec.snapshot_rev}")


def test_measure_recovery_of_100k_objects(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    n = 100_000
    wal, _ = reopen(tmp_path)
    w = Writer(wal)
    state = {key(i): obj(i + 1, i) for i in range(n)}
    w.rev, w.model = n, dict(state)
    t0 = time.perf_counter()
    wal.snapshot(n, state.items())                   # a snapshot may be ahead of the log
    t_snap = time.perf_counter() - t0

    batches, per_batch = 200, 100                    # group commit with fsync
    t0 = time.perf_counter()
    for b in range(batches):
        w.batch(range(b * per_batch, (b + 1) * per_batch))
    t_group = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(500):                             # one fsync per write
        w.batch([i])
    t_single = time.perf_counter() - t0
    wal.close()

    t0 = time.perf_counter()
    wal, rec = reopen(tmp_path)
    t_rec = time.perf_counter() - t0
    wal.close()
    assert len(rec.objects) == n and rec.objects == w.model
    assert rec.records_replayed == batches * per_batch + 500
    with capsys.disabled():
        print(f"\n[wal] snapshot write {n} objects: {t_snap:.2f}s; "
              f"recover {n} objects + {rec.records_replayed} WAL records: {t_rec:.2f}s; "
              f"group commit ({per_batch}/batch, fsync): {batches * per_batch / t_group:,.0f} writes/s; "
              f"1 write/commit: {500 / t_single:,.0f} writes/s")
