"""The kubelet's volume manager: volumes set up before containers start, and torn down after.

Contract (Kubernetes' ``volumemanager`` as the pod workers use it)
-----------------------------------------------------------------
* ``wait_for_attach_and_mount(pod, now) -> MountResult``: sets up every
  volume of ``pod.spec.volumes`` not yet set up (``plugins.setup_volume``).
  ``ready`` is True when all are; ``failures`` are (reason, message) pairs
  to report as Warning Events; a failed volume is retried with exponential
  back-off (``backoff_initial`` doubling up to ``backoff_max``), and
  ``retry_at`` says when the next retry is due. configMap, secret,
  downwardAPI and projected volumes are rewritten once every
  ``refresh_period`` (the kubelet's sync period), so updates reach the files;
  a failed refresh keeps the old contents and the volume stays mounted.
* ``mounts_for(pod, container) -> list[Mount]``: the runtime's mount table
  for one container (host path, container path, readOnly), ``subPath``
  resolved safely inside the volume. An undefined volume name raises
  ``MountConfigError`` (``cannot find volume "x" to mount into container "y"``).
* ``teardown(uid)`` removes the pod's directory
  ``var/lib/kubelet/pods/<uid>`` without following symlinks, so data of
  hostPath, local and shared volumes (outside that directory) stays.
  ``cleanup_orphans(known_uids)`` does it for every pod directory whose pod is
  gone.
* ``volume_usage(pod)`` is the apparent bytes of each emptyDir volume (for
  eviction); ``pod_ephemeral_usage(pod)`` sums the disk-backed ones (plus the
  fake container writable layer, 0).
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from node.runtime.interface import Mount
from node.volumes.paths import PathEscape, pod_dir, pods_dir, safe_join
from node.volumes.plugins import FAILED_MOUNT, Mounted, NodeContext, VolumeError, setup_volume
from node.volumes.usage import DEFAULT_MAX_ENTRIES, dir_usage


class MountConfigError(Exception):
    pass


@dataclass
class MountResult:
    ready: bool
    failures: list[tuple[str, str]] = field(default_factory=list)
    retry_at: float | None = None
    unmounted: list[str] = field(default_factory=list)


class VolumeManager:
    def __init__(self, ctx: NodeContext, *, refresh_period: float, backoff_initial: float,
                 backoff_max: float, clock: Callable[[], float] | None = None,
                 log: object = None) -> None:
        self.ctx = ctx
        self.refresh_period = refresh_period
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.log = log
        self.mounted: dict[str, dict[str, Mounted]] = {}
        self.refreshed: dict[str, float] = {}
        self.retry: dict[tuple[str, str], tuple[float, float]] = {}   # (uid, volume) -> (at, delay)

    def wait_for_attach_and_mount(self, pod: dict, now: float) -> MountResult:
        uid = (pod.get("metadata") or {}).get("uid", "")
        volumes = [v for v in (pod.get("spec") or {}).get("volumes") or () if isinstance(v, dict)]
        mounted = self.mounted.setdefault(uid, {})
        refresh = now >= self.refreshed.get(uid, -math.inf) + self.refresh_period
        res = MountResult(ready=True)
        for v in volumes:
            name = v.get("name", "")
            have = mounted.get(name)
            if have is not None and not (have.refreshable and refresh):
                continue
            key = (uid, name)
            pending = self.retry.get(key)
            if pending is not None and now < pending[0]:
                res.retry_at = pending[0] if res.retry_at is None else min(res.retry_at, pending[0])
                continue
            try:
                mounted[name] = setup_volume(self.ctx, pod, v)
                self.retry.pop(key, None)
            except (VolumeError, OSError) as e:
                if isinstance(e, VolumeError):
                    res.failures.append((e.reason, e.message))
                else:
                    res.failures.append((FAILED_MOUNT, f'MountVolume.SetUp failed for volume "{name}" : {e}'))
                delay = self.backoff_initial if pending is None else min(self.backoff_max, pending[1] * 2)
                self.retry[key] = (now + delay, delay)
                res.retry_at = now + delay if res.retry_at is None else min(res.retry_at, now + delay)
        if refresh:
            self.refreshed[uid] = now
        res.unmounted = [v.get("name", "") for v in volumes if v.get("name", "") not in mounted]
        res.ready = not res.unmounted
        return res

    def mounts_for(self, pod: dict, container: dict) -> list[Mount]:
        uid = (pod.get("metadata") or {}).get("uid", "")
        mounted = self.mounted.get(uid, {})
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or ():
            name = vm.get("name", "")
            m = mounted.get(name)
            if m is None:
                raise MountConfigError(f'cannot find volume "{name}" to mount into container '
                                       f'"{container.get("name", "")}"')
            host = m.host_path
            sub = vm.get("subPath") or ""
            if sub:
                try:
                    host = safe_join(m.host_path, sub, "subPath")
                except PathEscape as e:
                    raise MountConfigError(f"failed to prepare subPath for volumeMount \"{name}\" of "
                                           f"container \"{container.get('name', '')}\": {e}") from None
                if os.path.isdir(m.host_path) and not os.path.exists(host):
                    os.makedirs(host, mode=0o755, exist_ok=True)
            out.append(Mount(name=name, container_path=vm.get("mountPath", ""), host_path=host,
                             read_only=bool(vm.get("readOnly")) or m.read_only))
        return out

    def is_mounted(self, uid: str) -> bool:
        return uid in self.mounted

    def teardown(self, uid: str) -> None:
        self.mounted.pop(uid, None)
        self.refreshed.pop(uid, None)
        for k in [k for k in self.retry if k[0] == uid]:
            del self.retry[k]
        try:
            d = pod_dir(self.ctx.root, uid)
        except PathEscape:
            return
        shutil.rmtree(d, ignore_errors=True)   # rmtree unlinks symlinks, never follows them

    def cleanup_orphans(self, known_uids: set[str]) -> list[str]:
        removed = []
        try:
            names = os.listdir(pods_dir(self.ctx.root))
        except OSError:
            names = []
        for uid in names:
            if uid not in known_uids:
                self.teardown(uid)
                removed.append(uid)
        for uid in [u for u in self.mounted if u not in known_uids]:
            self.teardown(uid)
        return removed

    def volume_usage(self, pod: dict, max_entries: int = DEFAULT_MAX_ENTRIES) -> dict[str, int]:
        uid = (pod.get("metadata") or {}).get("uid", "")
        return {name: dir_usage(m.host_path, max_entries)
                for name, m in self.mounted.get(uid, {}).items() if m.kind == "emptyDir"}

    def pod_ephemeral_usage(self, pod: dict, usage: dict[str, int] | None = None) -> int:
        uid = (pod.get("metadata") or {}).get("uid", "")
        usage = self.volume_usage(pod) if usage is None else usage
        mounted = self.mounted.get(uid, {})
        return sum(b for name, b in usage.items() if name in mounted and not mounted[name].memory)
