"""The AtomicWriter: ..data symlink swaps, user-visible links, modes, no partial writes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.volumes.atomic_writer import AtomicWriter, FileProjection
from node.volumes.paths import PathEscape


def test_write_creates_data_dir_and_links(tmp_path: Path) -> None:
    w = AtomicWriter(str(tmp_path / "vol"))
    assert w.write({"user": FileProjection(b"admin"), "conf/app.ini": FileProjection(b"x=1", 0o600)})
    vol = tmp_path / "vol"
    assert os.readlink(vol / "..data").startswith("..")
    assert os.readlink(vol / "user") == "..data/user"
    assert os.readlink(vol / "conf") == "..data/conf"
    assert (vol / "user").read_bytes() == b"admin"
    assert ((vol / "conf" / "app.ini").stat().st_mode & 0o777) == 0o600
    assert ((vol / "user").stat().st_mode & 0o777) == 0o644


def test_rewrite_swaps_and_removes_old(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    w = AtomicWriter(str(vol))
    w.write({"a": FileProjection(b"1"), "b": FileProjection(b"2")})
    first = os.readlink(vol / "..data")
    assert not w.write({"a": FileProjection(b"1"), "b": FileProjection(b"2")})   # unchanged: no-op
    assert os.readlink(vol / "..data") == first
    assert w.write({"a": FileProjection(b"one")})
    assert (vol / "a").read_bytes() == b"one"
    assert not os.path.lexists(vol / "b")
    assert not (vol / first).exists()
    assert {p for p in os.listdir(vol) if p.startswith("..")} == {"..data", os.readlink(vol / "..data")}


def test_mode_change_alone_rewrites(tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    w = AtomicWriter(str(vol))
    w.write({"a": FileProjection(b"1", 0o644)})
    assert w.write({"a": FileProjection(b"1", 0o400)})
    assert ((vol / "a").stat().st_mode & 0o777) == 0o400


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "..data/x", "a/../../b"])
def test_bad_path_writes_nothing(tmp_path: Path, bad: str) -> None:
    vol = tmp_path / "vol"
    with pytest.raises(PathEscape):
        AtomicWriter(str(vol)).write({"ok": FileProjection(b"1"), bad: FileProjection(b"evil")})
    assert not vol.exists() or os.listdir(vol) == []
    assert not (tmp_path / "etc").exists()
