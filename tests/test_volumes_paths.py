"""Node paths: manifest paths resolve inside the node root; hostPath type checks."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from node.volumes.paths import (PLUGINS, HostPathTypeError, PathEscape, check_host_path_type,
                                resolve_in_root, safe_join, volume_dir)


def test_absolute_path_maps_into_root(tmp_path: Path) -> None:
    assert resolve_in_root(str(tmp_path), "/mnt/data") == str(tmp_path.resolve() / "mnt" / "data")
    assert resolve_in_root(str(tmp_path), "/") == str(tmp_path.resolve())


def test_proc_is_the_nodes_own_proc(tmp_path: Path) -> None:
    real = resolve_in_root(str(tmp_path), "/proc/self/root")
    assert real == str(tmp_path.resolve() / "proc" / "self" / "root")
    assert not real.startswith("/proc")


@pytest.mark.parametrize("bad", ["/mnt/../../etc", "/..", "/a/b/../c"])
def test_dotdot_is_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PathEscape, match=r"must not contain '\.\.'"):
        resolve_in_root(str(tmp_path), bad)


def test_relative_hostpath_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PathEscape, match="must be an absolute path"):
        resolve_in_root(str(tmp_path), "mnt/data")


def test_absolute_symlink_out_of_root_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "mnt").mkdir(parents=True)
    os.symlink("/etc", root / "mnt" / "etc")
    with pytest.raises(PathEscape, match="resolves outside the node's root"):
        resolve_in_root(str(root), "/mnt/etc/passwd")


def test_relative_symlink_out_of_root_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "mnt").mkdir(parents=True)
    os.symlink("../../outside", root / "mnt" / "up")
    with pytest.raises(PathEscape, match="resolves outside"):
        resolve_in_root(str(root), "/mnt/up")


def test_symlink_inside_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "node"
    (root / "data").mkdir(parents=True)
    (root / "mnt").mkdir()
    os.symlink("../data", root / "mnt" / "d")
    assert resolve_in_root(str(root), "/mnt/d").startswith(str(root.resolve()))


@pytest.mark.parametrize("bad,msg", [("../../etc/passwd", "must not contain '..'"),
                                     ("/etc/passwd", "must not be absolute path"),
                                     ("..data", "must not start with '..'"),
                                     ("", "must not be empty")])
def test_safe_join_rejects_escapes(tmp_path: Path, bad: str, msg: str) -> None:
    with pytest.raises(PathEscape, match=msg.replace(".", r"\.")):
        safe_join(str(tmp_path), bad)


def test_safe_join_ok(tmp_path: Path) -> None:
    assert safe_join(str(tmp_path), "a/b.txt") == str(tmp_path.resolve() / "a" / "b.txt")


def test_volume_dir_layout(tmp_path: Path) -> None:
    d = volume_dir(str(tmp_path), "uid-1", PLUGINS["emptyDir"], "cache")
    assert d == str(tmp_path / "var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/cache")
    with pytest.raises(PathEscape):
        volume_dir(str(tmp_path), "..", PLUGINS["emptyDir"], "x")
    with pytest.raises(PathEscape):
        volume_dir(str(tmp_path), "u", PLUGINS["emptyDir"], "../x")


def test_directory_or_create(tmp_path: Path) -> None:
    p = tmp_path / "mnt" / "x"
    check_host_path_type(str(p), "/mnt/x", "DirectoryOrCreate")
    assert p.is_dir() and (p.stat().st_mode & 0o777) == 0o755 & ~_umask()
    (tmp_path / "f").write_text("x")
    with pytest.raises(HostPathTypeError, match="hostPath type check failed: /f is not a directory"):
        check_host_path_type(str(tmp_path / "f"), "/f", "DirectoryOrCreate")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HostPathTypeError, match="hostPath type check failed: /mnt/x is not a directory"):
        check_host_path_type(str(tmp_path / "mnt" / "x"), "/mnt/x", "Directory")


def test_file_or_create_and_file(tmp_path: Path) -> None:
    f = tmp_path / "a.log"
    check_host_path_type(str(f), "/a.log", "FileOrCreate")
    assert f.is_file()
    check_host_path_type(str(f), "/a.log", "File")
    with pytest.raises(HostPathTypeError, match="/d is not a file"):
        (tmp_path / "d").mkdir()
        check_host_path_type(str(tmp_path / "d"), "/d", "File")
    with pytest.raises(OSError):   # the parent of a FileOrCreate must exist, as in Kubernetes
        check_host_path_type(str(tmp_path / "no" / "f"), "/no/f", "FileOrCreate")


def test_socket_char_block(tmp_path: Path) -> None:
    sock_path = tmp_path / "s"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(sock_path))
        check_host_path_type(str(sock_path), "/s", "Socket")
    finally:
        s.close()
    with pytest.raises(HostPathTypeError, match="/s is not a character device"):
        check_host_path_type(str(sock_path), "/s", "CharDevice")
    with pytest.raises(HostPathTypeError, match="/s is not a block device"):
        check_host_path_type(str(sock_path), "/s", "BlockDevice")
    with pytest.raises(HostPathTypeError, match="/x is not a socket file"):
        check_host_path_type(str(tmp_path / "x"), "/x", "Socket")


def test_unset_type_checks_nothing_and_bad_type(tmp_path: Path) -> None:
    check_host_path_type(str(tmp_path / "nothing"), "/nothing", "")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(HostPathTypeError, match="Dir is an invalid volume type"):
        check_host_path_type(str(tmp_path), "/", "Dir")
