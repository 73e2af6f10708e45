"""DirUsage: dir_usage's answer, listing only the directories that changed."""
from __future__ import annotations

import os
import random

from node.volumes import usage
from node.volumes.usage import dir_usage
from node.volumes.usage import DirUsage


def _walked(root) -> int:
    """The oracle: every regular file under root, by os.walk (symlinks not followed)."""
    total = 0
    for d, _dirs, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(d, f))
            if not os.path.islink(os.path.join(d, f)):
                total += st.st_size
    return total


def _old(path: str) -> None:
    """Date a directory back past the racy window, as a quiet one is."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10 * usage.RACY_NS))


def test_it_agrees_with_dir_usage_while_the_tree_changes(tmp_path) -> None:
    rng = random.Random(4)
    root = tmp_path / "node"
    (root / "var" / "lib").mkdir(parents=True)
    (tmp_path / "outside").write_bytes(b"x" * 999)
    du = DirUsage(str(root))
    dirs = [root, root / "var", root / "var" / "lib"]
    for step in range(120):
        d = rng.choice(dirs)
        what = rng.randrange(6)
        if what == 0:
            sub = d / f"d{step}"
            sub.mkdir()
            dirs.append(sub)
        elif what == 1:
            (d / f"f{step}").write_bytes(b"y" * rng.randrange(5000))
        elif what == 2:   # a file grows: its directory's mtime does not change
            files = [f for f in d.iterdir() if f.is_file() and not f.is_symlink()]
            if files:
                with open(rng.choice(files), "ab") as f:
                    f.write(b"z" * rng.randrange(1, 3000))
        elif what == 3:
            files = [f for f in d.iterdir() if f.is_file() and not f.is_symlink()]
            if files:
                rng.choice(files).unlink()
        elif what == 4 and not (d / "link").exists():
            os.symlink(tmp_path / "outside", d / "link")   # not followed, not counted
        if rng.random() < 0.5:
            for x in dirs:
                _old(str(x))   # most listings are then reused
        assert du.measure() == dir_usage(str(root)) == _walked(root), step


def test_a_listing_is_reused_only_when_the_directory_is_quiet(tmp_path, monkeypatch) -> None:
    root = tmp_path / "node"
    root.mkdir()
    (root / "a").write_bytes(b"1" * 10)
    listed: list[str] = []
    real = DirUsage._list
    monkeypatch.setattr(DirUsage, "_list", staticmethod(lambda d, m: listed.append(d) or real(d, m)))
    du = DirUsage(str(root))
    assert du.measure() == 10 and du.measure() == 10
    assert listed == [str(root)] * 2   # changed within RACY_NS: listed again each time
    _old(str(root))
    listed.clear()
    assert du.measure() == 10 and du.measure() == 10
    assert listed == [str(root)]       # quiet: listed once, then its files only are stat-ed
    (root / "a").write_bytes(b"1" * 30)   # rewritten in place: no directory change
    assert du.measure() == 30 and listed == [str(root)]
    (root / "b").write_bytes(b"2" * 5)    # a new entry changes the directory's mtime
    assert du.measure() == 35 and len(listed) == 2


def test_the_entry_limit_stops_where_dir_usage_stops(tmp_path) -> None:
    root = tmp_path / "node"
    for i in range(5):
        (root / f"d{i}").mkdir(parents=True)
        for j in range(4):
            (root / f"d{i}" / f"f{j}").write_bytes(b"q" * (i + 1))
    for limit in (1, 5, 9, 14, 100):
        du = DirUsage(str(root), max_entries=limit)
        assert du.measure() == du.measure() == dir_usage(str(root), max_entries=limit), limit
