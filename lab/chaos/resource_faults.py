"""Resource faults: ``disk-fill``, ``memory-pressure`` and ``cpu-stress`` on lab nodes.

Contract
--------
Each kind follows the ``FaultKind`` protocol (``name``, ``params`` name -> help,
``inject(lab, fault) -> state``, ``heal(lab, fault)``); ``RESOURCE_KINDS`` maps
their names to them. ``fault.targets`` must be node names of the lab
(``ValueError`` naming the target otherwise); ``fault.params`` are strings.
Healing is idempotent: what is already gone is not an error.

* ``disk-fill`` (``percent``, default 95, ``95`` or ``95%``, in (0, 100]): in
  each node's root, a sparse file ``var/lib/kemu/chaos-fill-<fault id>`` sized
  so that the apparent bytes under the root (what the kubelet measures) reach
  ``percent`` of the node's ephemeral-storage capacity (the Node's
  ``status.capacity``, else the lab config). No real disk is used (truncate),
  and the file is never larger than the capacity. The kubelet's eviction
  manager then reports DiskPressure and evicts. Heal deletes the file.
* ``memory-pressure`` (``bytes``, a quantity, e.g. ``15Gi``; default: enough
  to leave half the ``memory.available`` threshold): an emulated hog, the file
  ``var/lib/kemu/chaos-memory-<fault id>`` holding a byte count that the
  kubelet counts as used memory (``node.kubelet.pressure``); nothing is
  allocated. The kubelet reports MemoryPressure and evicts (BestEffort first).
  Heal deletes the file.
* ``cpu-stress`` (``workers``, default 1; ``load`` percent, default 100): a real,
  bounded CPU load: per node, ``workers`` Python busy loops with a duty cycle of
  ``load`` % of each 100 ms, each in its own process group, with
  ``KEMU_NODE_ROOT``, ``KEMU_NODE`` and ``KEMU_CHAOS_FAULT`` in its environment.
  They exit by themselves when the fault's duration ends, or after
  ``CPU_STRESS_CAP_SECONDS`` (300 s) at most; heal kills them by pid (checked
  against the recorded start time, so a reused pid is never hit). At most
  ``MAX_CPU_WORKERS`` (2) workers per fault: more are clamped, with a message on
  stderr and in the state (``clamped``); more target nodes than that is an error.
* ``stop_workers(lab_root)`` (``lab down``): the workers this process started are its
  children until it reaps them, even when another process (the fault's healer) killed
  them or they ended by themselves: reap those, and kill (process group) and reap any
  still running for the lab under ``lab_root``. Returns how many it killed.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from emulator.api.quantity import memory_bytes
from emulator.profiles import get_profile
from node.kubelet import eviction, pressure
from node.kubelet.stats import SUMMARY_FILE
from node.volumes.usage import dir_usage

__all__ = ["RESOURCE_KINDS", "DiskFill", "MemoryPressure", "CpuStress", "fill_size", "hog_size",
           "MAX_CPU_WORKERS", "CPU_STRESS_CAP_SECONDS", "stop_workers"]

FILL_DIR = Path("var", "lib", "kemu")
FILL_PREFIX = "chaos-fill-"
MAX_CPU_WORKERS = 2
CPU_STRESS_CAP_SECONDS = 300.0

_WORKER = r"""
import sys, time
end = time.monotonic() + float(sys.argv[1])
load = float(sys.argv[2]) / 100.0
period = 0.1
while True:
    now = time.monotonic()
    if now >= end:
        break
    busy = now + period * load
    while time.monotonic() < busy:
        pass
    if load < 1.0:
        time.sleep(min(period * (1.0 - load), max(0.0, end - time.monotonic())))
"""
_CHILDREN: dict[int, subprocess.Popen] = {}   # workers this process started, to reap on heal


# -- pure computations ---------------------------------------------------------------
def parse_percent(value: Any, what: str = "--param percent") -> float:
    s = str(value).strip()
    s = s[:-1] if s.endswith("%") else s
    try:
        p = float(s)
    except ValueError:
        raise ValueError(f"{what}: bad percentage {value!r}: use a number in (0, 100], e.g. 95 or 95%") from None
    if not 0 < p <= 100 or math.isnan(p):
        raise ValueError(f"{what}: percentage {value!r} must be more than 0 and at most 100")
    return p


def fill_size(capacity: int, used: int, percent: float) -> int:
    """Bytes to add so that ``used`` reaches ``percent`` of ``capacity`` (0 if it already does)."""
    target = math.ceil(capacity * percent / 100)
    return max(0, min(capacity, target - used))


def hog_size(allocatable: int, used: int, threshold: int) -> int:
    """Default hog: leave half the threshold available, so ``memory.available < threshold``."""
    return max(1, allocatable - used - threshold // 2)


def _positive_int(value: Any, what: str, low: int, high: int | None = None) -> int:
    try:
        n = int(str(value).strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"{what}: bad value {value!r}: use a whole number") from None
    if n < low or (high is not None and n > high):
        rng = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{what}: {value!r} is out of range: use a whole number {rng}")
    return n


# -- lab helpers ------------------------------------------------------------------------
def _check(kind: str, lab: Any, fault: Any, allowed: dict[str, str]) -> None:
    unknown = sorted(set(fault.params or {}) - set(allowed))
    if unknown:
        raise ValueError(f"{kind}: unknown parameter {unknown[0]!r}: use "
                         + (", ".join(f"--param {k}=..." for k in allowed) or "no parameters"))
    nodes = set(lab.nodes)
    if not fault.targets:
        raise ValueError(f"{kind}: no target: name a node, e.g. node-1")
    for t in fault.targets:
        if t not in nodes:
            raise ValueError(f"{kind}: target {t!r} is not a node of lab {lab.name}: "
                             f"use one of {', '.join(sorted(nodes))}")


def _node_quantity(lab: Any, node: str, resource: str, fallback: str, field: str = "capacity") -> int:
    try:
        return memory_bytes(str(lab.client.get("Node", node)["status"][field][resource]))
    except Exception:   # no apiserver, no status yet: the lab's configuration says the same
        return memory_bytes(str(fallback))


def _node_memory_used(root: Path) -> int:
    try:
        data = json.loads((root / SUMMARY_FILE).read_text())
        return int(data["node"]["memory"]["workingSetBytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the kinds --------------------------------------------------------------------------
class DiskFill:
    name = "disk-fill"
    help = "fill a node's root (sparse file) to a percentage of its ephemeral-storage: DiskPressure"
    positional = "percent"   # `kemu chaos disk-fill node-1 95%`, should the CLI take a positional value
    target_mode = "nodes"
    params = {"percent": "disk usage to reach, as a percentage of the node's ephemeral-storage (default 95)"}

    def check(self, params: dict) -> None:
        parse_percent(params.get("percent", "95"))

    def inject(self, lab: Any, fault: Any) -> dict:
        _check(self.name, lab, fault, self.params)
        percent = parse_percent((fault.params or {}).get("percent", "95"))
        state: dict[str, Any] = {"files": {}, "sizes": {}}
        for node in fault.targets:
            root = lab.layout.node_root(node)
            capacity = _node_quantity(lab, node, "ephemeral-storage", lab.config.node_ephemeral_storage)
            size = fill_size(capacity, dir_usage(str(root)), percent)
            path = root / FILL_DIR / f"{FILL_PREFIX}{fault.id}"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(size)   # sparse: apparent bytes only
            state["files"][node] = str(path)
            state["sizes"][node] = size
        return state

    def heal(self, lab: Any, fault: Any) -> None:
        for path in ((fault.state or {}).get("files") or {}).values():
            _unlink(path)


class MemoryPressure:
    name = "memory-pressure"
    help = "register an emulated memory hog on a node: MemoryPressure and eviction"
    target_mode = "nodes"
    params = {"bytes": "memory the emulated hog uses, a quantity such as 15Gi "
                       "(default: enough to cross the kubelet's memory.available threshold)"}

    def check(self, params: dict) -> None:
        _hog_bytes_param(params.get("bytes"))

    def inject(self, lab: Any, fault: Any) -> dict:
        _check(self.name, lab, fault, self.params)
        nbytes_given = _hog_bytes_param((fault.params or {}).get("bytes"))
        state: dict[str, Any] = {"files": {}, "bytes": {}}
        spec = get_profile(lab.config.process_profile).eviction_hard_memory_available
        for node in fault.targets:
            root = lab.layout.node_root(node)
            nbytes = nbytes_given
            if nbytes is None:
                allocatable = _node_quantity(lab, node, "memory", lab.config.node_memory, "allocatable")
                nbytes = hog_size(allocatable, _node_memory_used(root),
                                  eviction.threshold_bytes(spec, allocatable))
            state["files"][node] = pressure.write_hog(str(root), fault.id, nbytes)
            state["bytes"][node] = nbytes
        return state

    def heal(self, lab: Any, fault: Any) -> None:
        for path in ((fault.state or {}).get("files") or {}).values():
            _unlink(path)


def _hog_bytes_param(given: Any) -> int | None:
    if given is None:
        return None
    try:
        n = memory_bytes(str(given))
    except ValueError:
        raise ValueError(f"--param bytes: bad quantity {given!r}: use e.g. 512Mi or 15Gi") from None
    if n <= 0:
        raise ValueError(f"--param bytes: {given!r} must be more than zero")
    return n


def _reap() -> None:
    """Forget (and reap) the workers of this process that ended by themselves."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)


def stop_workers(lab_root: Any, timeout: float = 5.0) -> int:
    """Reap this process's ended workers; kill and reap the ones of ``lab_root``'s lab still running."""
    _reap()
    root = os.path.join(os.path.abspath(str(lab_root)), "")
    killed = []
    for pid, proc in list(_CHILDREN.items()):
        try:
            node_root = psutil.Process(pid).environ().get("KEMU_NODE_ROOT", "")
        except psutil.Error:
            node_root = ""
        if node_root and os.path.join(os.path.abspath(node_root), "").startswith(root) and proc.poll() is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            killed.append(pid)
    deadline = time.monotonic() + timeout
    for pid in killed:
        try:
            _CHILDREN[pid].wait(timeout=max(0.1, deadline - time.monotonic()))
            _CHILDREN.pop(pid, None)
        except subprocess.TimeoutExpired:
            pass
    return len(killed)


def _same_process(pid: int, start: float) -> psutil.Process | None:
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - start) > 0.05 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class CpuStress:
    name = "cpu-stress"
    help = f"a real, bounded CPU load: busy worker processes tagged with the node (at most {MAX_CPU_WORKERS})"
    target_mode = "nodes"
    params = {"workers": f"busy worker processes per node (default 1; at most {MAX_CPU_WORKERS} per fault)",
              "load": "percentage of each 100 ms a worker spins, 1..100 (default 100)"}

    def check(self, params: dict) -> None:
        _positive_int(params.get("workers", "1"), "--param workers", 1)
        _positive_int(params.get("load", "100"), "--param load", 1, 100)

    def inject(self, lab: Any, fault: Any) -> dict:
        _check(self.name, lab, fault, self.params)
        _reap()
        p = fault.params or {}
        workers = _positive_int(p.get("workers", "1"), "--param workers", 1)
        load = _positive_int(p.get("load", "100"), "--param load", 1, 100)
        if len(fault.targets) > MAX_CPU_WORKERS:
            raise ValueError(f"cpu-stress: {len(fault.targets)} target nodes, but at most {MAX_CPU_WORKERS} "
                             "workers per fault on this machine: target at most "
                             f"{MAX_CPU_WORKERS} nodes (e.g. nodes:random:{MAX_CPU_WORKERS})")
        state: dict[str, Any] = {"workers": [], "load": load}
        per_node = min(workers, MAX_CPU_WORKERS // len(fault.targets))
        if per_node < workers:
            state["clamped"] = (f"cpu-stress: workers={workers} clamped to {per_node} per node: at most "
                                f"{MAX_CPU_WORKERS} workers per fault on this machine")
            print(state["clamped"], file=sys.stderr)
        duration = getattr(fault, "duration", None)
        lifetime = min(float(duration), CPU_STRESS_CAP_SECONDS) if duration else CPU_STRESS_CAP_SECONDS
        state["lifetime"] = lifetime
        try:
            for node in fault.targets:
                env = {**os.environ, "KEMU_NODE_ROOT": str(lab.layout.node_root(node)), "KEMU_NODE": node,
                       "KEMU_CHAOS_FAULT": str(fault.id)}
                for _ in range(per_node):
                    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(lifetime), str(load)],
                                            env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    _CHILDREN[proc.pid] = proc
                    try:
                        start = psutil.Process(proc.pid).create_time()
                    except psutil.NoSuchProcess:
                        start = 0.0
                    state["workers"].append({"pid": proc.pid, "node": node, "start": start})
        except BaseException:
            self.heal(lab, _Healing(state))
            raise
        return state

    def heal(self, lab: Any, fault: Any) -> None:
        _reap()
        workers = (fault.state or {}).get("workers") or []
        for w in workers:
            pid = int(w["pid"])
            if _same_process(pid, float(w.get("start") or 0)) is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)   # its own group: it and anything it started
                except ProcessLookupError:
                    pass
                except PermissionError:
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        for w in workers:
            pid = int(w["pid"])
            proc = _CHILDREN.pop(pid, None)
            if proc is not None:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                continue
            while _same_process(pid, float(w.get("start") or 0)) is not None and time.monotonic() < deadline:
                time.sleep(0.02)   # not our child: wait for it to be gone (or a zombie of its parent)


class _Healing:
    """A stand-in fault to heal a half-done injection."""

    def __init__(self, state: dict) -> None:
        self.state = state


RESOURCE_KINDS: dict[str, Any] = {k.name: k for k in (DiskFill(), MemoryPressure(), CpuStress())}
