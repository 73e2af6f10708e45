"""Paths on an emulated node: everything a manifest names resolves inside the node's root.

Contract
--------
* A node's root directory (``<labdir>/nodes/<node>``) stands for the node's
  ``/``. ``resolve_in_root(root, path)`` maps a manifest's absolute path
  (a hostPath, a local PV path) to the real path inside the root:
  ``/mnt/data`` -> ``<root>/mnt/data``; ``/proc`` -> ``<root>/proc`` (never
  the machine's ``/proc``). It raises ``PathEscape`` for a relative path, a
  path with a ``..`` element, or one whose existing part resolves (through
  symlinks, absolute or relative) outside the root.
* ``safe_join(base, rel)`` does the same for a relative path inside a volume
  directory (secret/configMap ``items[].path``, a key, ``subPath``): it must
  be relative, must not contain ``..`` and must stay inside ``base``.
* ``pod_dir(root, uid)`` and ``volume_dir(root, uid, plugin, name)`` give
  Kubernetes' layout ``var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>``;
  ``PLUGINS`` maps a volume source key to its escaped plugin name
  (``kubernetes.io~empty-dir`` ...). hostPath has no pod directory.
* ``check_host_path_type(real, shown, type)`` is Kubernetes' hostPath type
  check: DirectoryOrCreate creates a 0755 directory, FileOrCreate an empty
  0644 file (its parent must exist); otherwise it raises ``HostPathTypeError``
  with Kubernetes' message, e.g. ``hostPath type check failed: /mnt/x is not a
  directory``. ``shown`` is the path as the manifest wrote it.
"""
from __future__ import annotations

import os
import stat

# volume source key -> Kubernetes' escaped plugin name (the directory under volumes/)
PLUGINS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
    "local": "kubernetes.io~local-volume",
    "csi": "kubernetes.io~csi",
    "hostPath": "kubernetes.io~host-path",
}

HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice")


class PathEscape(ValueError):
    """A manifest path that would leave the node's root (or the volume's directory)."""


class HostPathTypeError(ValueError):
    """A hostPath whose type check failed (Kubernetes' message)."""


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _resolved(candidate: str, base_real: str, shown: str, what: str) -> str:
    real = os.path.realpath(candidate)
    if not _inside(real, base_real):
        raise PathEscape(f'{what} "{shown}" resolves outside the node\'s root '
                         "(a symlink on the way points out of it)")
    return candidate


def resolve_in_root(root: str, path: str, what: str = "path") -> str:
    """The real path of the node path ``path`` (absolute, as a manifest writes it)."""
    if not isinstance(path, str) or not path:
        raise PathEscape(f"{what}: Required value")
    if not path.startswith("/"):
        raise PathEscape(f'{what} "{path}" must be an absolute path')
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathEscape(f"{what} \"{path}\" must not contain '..'")
    if "\x00" in path:
        raise PathEscape(f'{what} "{path}" must not contain a NUL byte')
    root_real = os.path.realpath(root)
    return _resolved(os.path.join(root_real, *parts), root_real, path, what)


def check_relative(rel: str, what: str = "path") -> list[str]:
    """Kubernetes' AtomicWriter ``validatePath``: the parts of a safe relative path."""
    if not isinstance(rel, str) or not rel:
        raise PathEscape(f"invalid {what}: must not be empty")
    if len(rel) > 4096:
        raise PathEscape(f"invalid {what}: must be less than or equal to 4096 characters")
    if rel.startswith("/") or os.path.isabs(rel):
        raise PathEscape(f"invalid {what}: must not be absolute path: {rel}")
    parts = rel.split("/")
    if ".." in parts:
        raise PathEscape(f"invalid {what}: must not contain '..': {rel}")
    if rel.startswith(".."):
        raise PathEscape(f"invalid {what}: must not start with '..': {rel}")
    if "\x00" in rel:
        raise PathEscape(f"invalid {what}: must not contain a NUL byte: {rel}")
    return [p for p in parts if p not in ("", ".")]


def safe_join(base: str, rel: str, what: str = "path") -> str:
    """``base/rel`` for a relative ``rel`` that stays inside ``base`` (symlinks included)."""
    parts = check_relative(rel, what)
    base_real = os.path.realpath(base)
    return _resolved(os.path.join(base_real, *parts), base_real, rel, what)


def pods_dir(root: str) -> str:
    return os.path.join(root, "var", "lib", "kubelet", "pods")


def pod_dir(root: str, uid: str) -> str:
    if not uid or "/" in uid or uid in (".", ".."):
        raise PathEscape(f'invalid pod uid "{uid}"')
    return os.path.join(pods_dir(root), uid)


def volume_dir(root: str, uid: str, plugin: str, name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise PathEscape(f'invalid volume name "{name}"')
    return os.path.join(pod_dir(root, uid), "volumes", plugin, name)


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def check_host_path_type(real: str, shown: str, typ: str | None) -> None:
    """Kubernetes' ``checkTypeInternal`` on the resolved ``real`` path."""
    typ = typ or ""
    if typ not in HOST_PATH_TYPES:
        raise HostPathTypeError(f"{typ} is an invalid volume type")
    mode = _mode(real)
    if typ == "":
        return
    if typ == "DirectoryOrCreate":
        if mode is None:
            os.makedirs(real, mode=0o755, exist_ok=True)
            return
        typ = "Directory"
    if typ == "FileOrCreate":
        if mode is None:
            fd = os.open(real, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644)   # the parent must exist
            os.close(fd)
            return
        typ = "File"
    checks = {
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    test, msg = checks[typ]
    if mode is None or not test(mode):
        raise HostPathTypeError(f"hostPath type check failed: {shown} {msg}")
