"""``lab.chaos``: inject, list and heal faults in a running lab (the Python API).

Contract
--------
* ``Chaos(lab).inject(kind, target=None, *, duration=None, seed=None, **params) ->
  Fault``: checks the kind, the params (``no_restart=True`` is ``no-restart=true``),
  the duration and the target (``ValueError``/``ChaosError`` naming what is wrong,
  before anything is done), injects, records the fault in ``run/chaos.json``, logs
  ``fault_injected`` and, when the fault has a duration or is driven (crash-loop),
  starts its healer (``python -m lab.chaos.healer LABDIR ID``, detached, its pid
  recorded). An instant kind without a duration (restart, pod-kill) is healed at once.
* The returned ``Fault`` is a context manager that heals on exit, exceptions included.
* ``heal(fault_id=None)``: heals one fault (``None``: every active one). A fault is
  claimed (removed from the record under the lock) before it is healed, so it is
  healed once, whoever asks; its healer is stopped (and waited for) before the kind's
  ``heal`` runs. An unknown id raises ``ChaosError`` naming the active ones.
  ``heal_all_for_down()`` heals what it can, stops every healer and waits for (reaps)
  each one this process started, reaps (or kills) the cpu-stress workers this
  process started, and never raises (``Lab.down``).
* ``active()`` lists the active faults; ``get(id)`` one of them.
* Convenience methods: ``kill``, ``restart``, ``pause``, ``resume``, ``crash_loop``,
  ``pod_kill``, ``container_kill``, ``node_taint``, ``node_drain``, ``disk_fill``,
  ``cpu_stress``, ``memory_pressure``, ``partition(a, b="rest")``, ``isolate``,
  ``delay``, ``loss``, ``duplicate``, ``reorder``, ``bandwidth``, ``clock_skew``,
  ``clock_strobe`` and ``dns_error``; a group is a name, a comma list or a list.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from lab.chaos.kinds import get_kind
from lab.chaos.model import Fault, parse_duration
from lab.chaos.record import ChaosStore, log_event
from lab.chaos.targets import TargetError, resolve

ROOT = Path(__file__).resolve().parent.parent.parent


class ChaosError(Exception):
    """A chaos operation failed; the message says what and how to fix it."""


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def healer_alive(pid: int | None, start: float | None) -> bool:
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return start is None or abs(p.create_time() - start) < 1.0
    except psutil.Error:
        return False


def _reap(popen: subprocess.Popen, timeout: float) -> None:
    """Wait for a healer this process started; SIGKILL it if it has not ended within
    ``timeout``. Not ``poll()``: a healer whose main thread has exited shows as a zombie
    (``healer_alive`` is False) while its other threads (ZeroMQ's) still run, and
    ``waitpid`` cannot reap it until they end; polled then, it was left a zombie after
    ``lab down``. Our own unreaped child: its pid cannot have been reused."""
    try:
        popen.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        popen.kill()
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


class Chaos:
    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.store = ChaosStore(lab.layout)
        self._healers: dict[str, subprocess.Popen] = {}

    # -- inject -------------------------------------------------------------
    def inject(self, kind: str, target: str | None = None, *, duration: Any = None,
               seed: int | None = None, **params: Any) -> Fault:
        k = get_kind(kind)
        norm = {key.replace("_", "-"): _param_value(v) for key, v in params.items() if v is not None}
        allowed = getattr(k, "params", {}) or {}
        unknown = [p for p in norm if p not in allowed]
        if unknown:
            hint = (", ".join(f"{n} ({h})" for n, h in allowed.items()) if allowed else "none")
            raise ValueError(f"{kind}: unknown parameter {unknown[0]!r}; its parameters: {hint}")
        missing = [p for p in getattr(k, "required", ()) if not norm.get(p)]
        if missing:
            raise ValueError(f"{kind}: parameter {missing[0]!r} is required ({allowed.get(missing[0], '')}): "
                             f"--param {missing[0]}=...")
        check = getattr(k, "check", None)
        if check is not None:
            check(norm)
        seconds = None if duration is None else parse_duration(duration)
        mode = getattr(k, "target_mode", "process")
        if not self.lab.running():
            raise ChaosError(f"lab {self.lab.name} is not running: start it with 'kemu lab up'")
        if target in (None, "") and mode != "pods":
            raise TargetError(f"{kind} needs a target: a lab process (node-1, apiserver) or a group "
                              "(nodes:all, nodes:zone=ZONE, nodes:random:N, nodes:minority)")
        targets = ([] if target in (None, "") else
                   resolve(self.lab, str(target), seed=seed, nodes_only=(mode in ("nodes", "pods"))))
        with self.store.locked() as data:
            fid = f"f-{data['next']}"
            data["next"] += 1
        fault = Fault(id=fid, kind=kind, target=str(target or ""), targets=targets, params=norm,
                      duration=seconds, injected_at=time.time(), chaos=self)
        try:
            fault.state = dict(k.inject(self.lab, fault) or {})
        except Exception as e:
            log_event(self.lab.layout, self.lab.name, "fault_inject_failed", fault, level="error",
                      error=str(e))
            if isinstance(e, (ValueError, ChaosError)):
                raise
            raise ChaosError(f"{kind} {fault.target}: {e}") from e
        fault.injected_at = time.time()
        log_event(self.lab.layout, self.lab.name, "fault_injected", fault, state=fault.state)
        if kind == "resume":
            self._heal_resumed(targets)
        instant = getattr(k, "instant", False) and seconds is None
        if instant:
            log_event(self.lab.layout, self.lab.name, "fault_healed", fault, reason="instant")
            return fault
        with self.store.locked() as data:
            data["faults"][fid] = fault.to_dict()
        if seconds is not None or getattr(k, "driven", False):
            self._start_healer(fault)
        return fault

    def _start_healer(self, fault: Fault) -> None:
        out = open(self.lab.layout.logs / "chaos-healer.out", "ab")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "lab.chaos.healer", str(self.lab.layout.root),
                                     fault.id], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True)
        finally:
            out.close()
        try:
            start = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            start = None
        self._healers[fault.id] = proc
        fault.healer_pid, fault.healer_start = proc.pid, start
        with self.store.locked() as data:
            data.setdefault("healers", {})[str(proc.pid)] = start   # for lab down, whatever happens
            if fault.id in data["faults"]:
                data["faults"][fault.id]["healer_pid"] = proc.pid
                data["faults"][fault.id]["healer_start"] = start

    def _heal_resumed(self, targets: list[str]) -> None:
        for f in self.active():
            if f.kind == "pause" and set(f.targets) <= set(targets):
                self.heal(f.id, missing_ok=True)

    # -- heal ---------------------------------------------------------------
    def active(self) -> list[Fault]:
        data = self.store.read()
        faults = [Fault.from_dict(d, chaos=self) for d in data["faults"].values()]
        return sorted(faults, key=lambda f: int(f.id.split("-")[-1]) if f.id.split("-")[-1].isdigit() else 0)

    def get(self, fault_id: str) -> Fault:
        for f in self.active():
            if f.id == fault_id:
                return f
        raise ChaosError(self._unknown(fault_id))

    def _unknown(self, fault_id: str) -> str:
        ids = [f.id for f in self.active()]
        return (f"no active fault {fault_id!r}: " +
                (f"the active ones are {', '.join(ids)}" if ids else "there is none") +
                " (see 'kemu chaos list')")

    def claim(self, fault_id: str | None) -> list[Fault]:
        """Take fault(s) out of the record (under the lock): the caller heals them."""
        with self.store.locked() as data:
            ids = list(data["faults"]) if fault_id is None else [fault_id]
            return [Fault.from_dict(data["faults"].pop(i), chaos=self) for i in ids if i in data["faults"]]

    def heal(self, fault_id: str | None = None, *, missing_ok: bool = False,
             reason: str = "requested") -> list[Fault]:
        """Heal one fault (or every active one when ``fault_id`` is None); the faults healed."""
        claimed = self.claim(fault_id)
        if fault_id is not None and not claimed and not missing_ok:
            raise ChaosError(self._unknown(fault_id))
        errors = []
        for f in claimed:
            self._stop_healer(f)
            try:
                self.heal_claimed(f, reason)
            except Exception as e:
                errors.append(f"{f.id} ({f.kind} {f.target}): {e}")
        if errors:
            raise ChaosError("healing failed for " + "; ".join(errors) + " (see logs/chaos.jsonl)")
        return claimed

    def heal_claimed(self, fault: Fault, reason: str) -> None:
        """Run the kind's heal for a fault already claimed, and log it."""
        try:
            get_kind(fault.kind).heal(self.lab, fault)
        except Exception as e:
            log_event(self.lab.layout, self.lab.name, "fault_heal_failed", fault, level="error",
                      error=str(e), reason=reason)
            raise
        log_event(self.lab.layout, self.lab.name, "fault_healed", fault, reason=reason,
                  held_s=round(time.time() - fault.injected_at, 3))

    def _stop_healer(self, fault: Fault, timeout: float = 5.0) -> None:
        if fault.healer_pid is None or fault.healer_pid == os.getpid():
            return
        popen = self._healers.pop(fault.id, None)
        if popen is None:   # known by pid only (the record's healers map): ours if we started it
            fid = next((i for i, p in self._healers.items() if p.pid == fault.healer_pid), None)
            popen = None if fid is None else self._healers.pop(fid)
        if healer_alive(fault.healer_pid, fault.healer_start):
            try:
                os.kill(fault.healer_pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + timeout
            while healer_alive(fault.healer_pid, fault.healer_start) and time.monotonic() < deadline:
                if popen is not None and popen.poll() is not None:
                    break
                time.sleep(0.02)
            if healer_alive(fault.healer_pid, fault.healer_start):
                try:
                    os.kill(fault.healer_pid, signal.SIGKILL)
                except OSError:
                    pass
        if popen is not None:
            _reap(popen, timeout)

    def heal_all_for_down(self) -> list[str]:
        """Heal every active fault, stop every healer; never raises. The problems, as text."""
        problems = []
        try:
            claimed = self.claim(None)
        except Exception as e:
            return [f"cannot read the chaos record: {e}"]
        running = self.lab.running()
        for f in claimed:
            self._stop_healer(f)
            if not running:
                log_event(self.lab.layout, self.lab.name, "fault_healed", f, reason="lab down",
                          note="the lab was not running")
                continue
            try:
                self.heal_claimed(f, "lab down")
            except Exception as e:
                problems.append(f"{f.id} ({f.kind} {f.target}): {e}")
        try:   # a healer that claimed its fault just before us may still be healing it: stop it too
            with self.store.locked() as data:
                healers, data["healers"] = data.get("healers") or {}, {}
            for pid, start in healers.items():
                self._stop_healer(Fault(id="", kind="", target="", targets=[], healer_pid=int(pid),
                                        healer_start=start))
        except Exception as e:
            problems.append(f"stopping the healers: {e}")
        deadline = time.monotonic() + 5.0   # the rest ended by themselves (expired): reap them
        for popen in self._healers.values():
            _reap(popen, max(0.1, deadline - time.monotonic()))
        self._healers.clear()
        try:   # cpu-stress workers this process started, killed by a healer: reap them
            from lab.chaos.resource_faults import stop_workers
            stop_workers(self.lab.layout.root)
        except ImportError:
            pass
        except Exception as e:
            problems.append(f"stopping the cpu-stress workers: {e}")
        return problems

    # -- convenience --------------------------------------------------------
    def kill(self, target: str, duration: Any = None, no_restart: bool = False, **kw: Any) -> Fault:
        return self.inject("kill", target, duration=duration,
                           **({"no_restart": True} if no_restart else {}), **kw)

    def restart(self, target: str, **kw: Any) -> Fault:
        return self.inject("restart", target, **kw)

    def pause(self, target: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("pause", target, duration=duration, **kw)

    def resume(self, target: str, **kw: Any) -> Fault:
        return self.inject("resume", target, **kw)

    def crash_loop(self, target: str, every: Any, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("crash-loop", target, duration=duration, every=every, **kw)

    def pod_kill(self, selector: str, namespace: str = "default", target: str | None = None,
                 grace: int | None = None, **kw: Any) -> Fault:
        return self.inject("pod-kill", target, selector=selector, namespace=namespace, grace=grace, **kw)

    def container_kill(self, selector: str, namespace: str = "default", container: str | None = None,
                       target: str | None = None, **kw: Any) -> Fault:
        return self.inject("container-kill", target, selector=selector, namespace=namespace,
                           container=container, **kw)

    def node_taint(self, target: str, taint: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("node-taint", target, duration=duration, taint=taint, **kw)

    def node_drain(self, target: str, duration: Any = None, grace: int | None = None, **kw: Any) -> Fault:
        return self.inject("node-drain", target, duration=duration, grace=grace, **kw)

    def disk_fill(self, target: str, percent: Any = None, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("disk-fill", target, duration=duration, percent=percent, **kw)

    def cpu_stress(self, target: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("cpu-stress", target, duration=duration, **kw)

    def memory_pressure(self, target: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("memory-pressure", target, duration=duration, **kw)

    def partition(self, a: Any, b: Any = "rest", duration: Any = None, **kw: Any) -> Fault:
        """Drop every message between group ``a`` and group ``b`` (``rest``: every other process)."""
        return self.inject("partition", _group(a), duration=duration, **{"with": _group(b)}, **kw)

    def isolate(self, target: Any, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("isolate", _group(target), duration=duration, **kw)

    def delay(self, target: Any, latency: str, jitter: str | None = None, distribution: str | None = None,
              duration: Any = None, **kw: Any) -> Fault:
        return self.inject("delay", _group(target), duration=duration, latency=latency, jitter=jitter,
                           distribution=distribution, **kw)

    def loss(self, target: Any, percent: Any, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("loss", _group(target), duration=duration, percent=percent, **kw)

    def duplicate(self, target: Any, percent: Any, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("duplicate", _group(target), duration=duration, percent=percent, **kw)

    def reorder(self, target: Any, percent: Any, latency: str | None = None, duration: Any = None,
                **kw: Any) -> Fault:
        return self.inject("reorder", _group(target), duration=duration, percent=percent, latency=latency, **kw)

    def bandwidth(self, target: Any, rate: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("bandwidth", _group(target), duration=duration, rate=rate, **kw)

    def clock_skew(self, target: Any, offset: str, duration: Any = None, **kw: Any) -> Fault:
        return self.inject("clock-skew", _group(target), duration=duration, offset=offset, **kw)

    def clock_strobe(self, target: Any, delta: str | None = None, period: str | None = None,
                     duration: Any = None, **kw: Any) -> Fault:
        return self.inject("clock-strobe", _group(target), duration=duration, delta=delta, period=period, **kw)

    def dns_error(self, rcode: str | None = None, patterns: Any = None, percent: Any = None,
                  duration: Any = None, target: str = "dns", **kw: Any) -> Fault:
        return self.inject("dns-error", target, duration=duration, rcode=rcode,
                           patterns=None if patterns is None else _group(patterns), percent=percent, **kw)


def _group(v: Any) -> str:
    """A target from a name, a comma list or a list of names/groups."""
    return ",".join(v) if isinstance(v, (list, tuple)) else str(v)
