"""How the process runtime turns a container spec into a process: argv, executable, env, cwd, rootfs.

Contract (pure helpers, plus the directory they build)
------------------------------------------------------
* ``container_argv(container)`` is ``command + args`` (the kubelet has already expanded
  ``$(VAR)``); the image is only a label, so there is no ENTRYPOINT/CMD to fall back on:
  a container with neither raises ``CreateContainerError`` (``failed to generate
  container "<id>" spec: no command specified``), as containerd does for an image
  without one: set ``command`` or ``args``.
* ``resolve_executable(argv0, path, cwd)`` finds the program as runc does (``$PATH`` of the
  container's env when it has no ``/``) or raises ``StartContainerError`` with runc's
  message: ``exec: "x": executable file not found in $PATH``.
* ``build_rootfs(rootfs, mounts)`` makes the container's root directory
  ``<node root>/var/lib/kemu/containers/<id>/rootfs``: each mount whose ``mountPath`` is a
  clean absolute path (no ``..``, not ``/``, not inside another mount) becomes a symlink
  ``rootfs/<mountPath>`` -> its host path. Nothing is bind-mounted (rootless).
* ``mount_env(mounts)``: ``KEMU_MOUNT_<VOLUME>`` = the host path of the volume's first
  mount (the name upper-cased, every character outside ``[A-Z0-9]`` as ``_``).
* ``resolve_working_dir(working_dir, mounts, rootfs)``: ``workingDir`` is a path in the
  container, so it maps into the mount whose ``mountPath`` is its longest prefix, else
  into ``rootfs``; it is created when missing (runc creates the cwd too). No
  ``workingDir``: the rootfs itself (the container's ``/``).
* ``process_env(env, ...)``: the kubelet's resolved env, over a base of ``PATH`` (the
  node's), ``HOME`` (the rootfs) and ``HOSTNAME`` (the pod's name, as Docker sets it),
  plus ``KEMU_ROOTFS`` and the ``KEMU_MOUNT_*`` variables. Nothing else of the kubelet's
  own environment leaks in.
* ``memory_limit(container)``: ``resources.limits.memory`` in bytes (0 = none).
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil

from emulator.api.quantity import memory_bytes
from node.runtime.interface import CreateContainerError, Mount, StartContainerError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_argv(container: dict, container_id: str = "") -> list[str]:
    argv = [str(a) for a in (container.get("command") or ())] + [str(a) for a in (container.get("args") or ())]
    if not argv:   # containerd's words (and the kubelet's CreateContainerError)
        raise CreateContainerError(f'failed to generate container "{container_id}" spec: no command specified')
    return argv


def resolve_executable(argv0: str, path: str | None, cwd: str) -> str:
    if "/" in argv0:
        full = argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
        if not os.path.exists(full):
            raise StartContainerError(f'exec: "{argv0}": stat {argv0}: no such file or directory')
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise StartContainerError(f'exec: "{argv0}": permission denied')
        return full
    found = shutil.which(argv0, path=path if path is not None else DEFAULT_PATH)
    if found is None:
        raise StartContainerError(f'exec: "{argv0}": executable file not found in $PATH')
    return found


def clean_container_path(p: str) -> str | None:
    """The normalized absolute path, or None when it is not relative-safe (``..``, ``/``)."""
    if not p or not p.startswith("/") or ".." in p.split("/"):
        return None
    norm = posixpath.normpath(p)
    return None if norm in ("/", "//") else norm


def build_rootfs(rootfs: str, mounts: list[Mount]) -> None:
    os.makedirs(rootfs, exist_ok=True)
    paths = [clean_container_path(m.container_path) for m in mounts]
    for m, cp in zip(mounts, paths):
        if cp is None:
            continue
        if any(o is not None and o != cp and cp.startswith(o + "/") for o in paths):
            continue   # nested inside another mount: the link would land in that volume
        link = os.path.join(rootfs, cp.lstrip("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            continue
        os.symlink(m.host_path, link)


def mount_env_name(volume: str) -> str:
    return "KEMU_MOUNT_" + re.sub(r"[^A-Z0-9]", "_", volume.upper())


def mount_env(mounts: list[Mount]) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in mounts:
        out.setdefault(mount_env_name(m.name or posixpath.basename(m.container_path)), m.host_path)
    return out


def resolve_working_dir(working_dir: str, mounts: list[Mount], rootfs: str) -> str:
    if not working_dir:
        return rootfs
    wd = posixpath.normpath("/" + working_dir.lstrip("/"))
    best: tuple[int, str] | None = None
    for m in mounts:
        cp = clean_container_path(m.container_path)
        if cp is not None and (wd == cp or wd.startswith(cp + "/")) and (best is None or len(cp) > best[0]):
            best = (len(cp), m.host_path + wd[len(cp):])
    target = best[1] if best else os.path.join(rootfs, wd.lstrip("/").replace("..", "_"))
    os.makedirs(target, exist_ok=True)
    return target


def process_env(env: dict[str, str] | None, *, pod_name: str, rootfs: str, mounts: list[Mount]) -> dict[str, str]:
    base = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": rootfs, "HOSTNAME": pod_name}
    out = dict(base)
    out.update({str(k): str(v) for k, v in (env or {}).items()})
    out["KEMU_ROOTFS"] = rootfs
    for k, v in mount_env(mounts).items():
        out.setdefault(k, v)
    return out


def memory_limit(container: dict) -> int:
    raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if raw in (None, ""):
        return 0
    try:
        return max(0, memory_bytes(raw))
    except ValueError:
        return 0
