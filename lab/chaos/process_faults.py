"""Process faults: kill, restart, pause, resume and crash-loop, on any lab process.

Contract
--------
Everything goes through the supervisor (``Lab.kill`` with a signal, ``Lab.restart``).
A node packed in a node host (``--nodes-per-process``) is a target of its own: the
supervisor turns the signal into that node's ``node-stop`` / ``node-pause`` /
``node-resume`` in its host, and ``restart`` into ``node-stop`` + ``node-start``; the
host's other nodes go on (``lab.supervisor_hosts``).

* ``kill``: SIGKILL. The supervisor does not restart a killed node (its real
  containers die with it); it restarts a control-plane process itself (back-off
  1 s, 2 s, ...). Heal: restart every target that is not running (``no-restart=true``
  leaves killed nodes dead).
* ``restart``: an action (kill and start again); nothing to heal.
* ``pause``: SIGSTOP; the process holds its sockets but answers nothing (a node stops
  renewing its Lease, so it goes NotReady). Heal: SIGCONT.
* ``resume``: an action: SIGCONT, which also heals the active pause faults of those
  targets.
* ``crash-loop`` (``every=2s``, required): the fault's healer process ticks every
  ``every`` seconds: a running target is killed, a dead node is started again (a
  control-plane process is restarted by the supervisor). Heal: the healer is stopped
  first, then every target that is not running is restarted.
"""
from __future__ import annotations

import time
from typing import Any

from lab.chaos.model import parse_duration

CONTROL_PLANE = ("apiserver", "scheduler", "controller-manager", "dns")


def process_states(lab: Any) -> dict[str, str]:
    return {p["name"]: p["state"] for p in lab.processes()}


def process_pids(lab: Any) -> dict[str, int]:
    return {p["name"]: p["pid"] for p in lab.processes()}


def wait_reaped(lab: Any, killed: dict[str, int], timeout: float = 5.0) -> None:
    """Wait until the supervisor has seen each killed pid exit (its state file lags the
    signal by up to one loop), so that a heal right after a kill sees the process dead.
    A packed node (``host`` set) has no lag, and its pid is its host's: not waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = {p["name"]: p for p in lab.processes()}
        if all(n not in procs or procs[n].get("host") or procs[n]["pid"] != pid
               or procs[n]["state"] not in ("running", "paused") for n, pid in killed.items()):
            return
        time.sleep(0.02)


def restart_dead(lab: Any, targets: list[str], nodes_too: bool = True,
                 killed: dict[str, int] | None = None) -> list[str]:
    """Restart every target that is not running (a paused one is resumed); the names restarted."""
    from lab.lab import LabError
    if killed:
        wait_reaped(lab, killed)
    states = process_states(lab)
    done = []
    for t in targets:
        st = states.get(t)
        if st == "paused":
            lab.kill(t, "CONT")
        elif st not in ("running", None):
            if t not in CONTROL_PLANE and not nodes_too:
                continue
            try:
                lab.restart(t)
                done.append(t)
            except LabError:
                if t in process_states(lab):   # gone (removed) is not a failure
                    raise
    return done


def _signal_all(lab: Any, fault: Any, sig: str) -> list[str]:
    """Send ``sig`` to every target; the ones that took it. Raise if none did."""
    from lab.lab import LabError
    ok, errors = [], []
    for t in fault.targets:
        try:
            lab.kill(t, sig)
            ok.append(t)
        except LabError as e:
            errors.append(f"{t}: {e}")
    if not ok:
        raise ValueError(f"{fault.kind} {fault.target}: no target took SIG{sig}: " + "; ".join(errors))
    return ok


def _truthy(v: Any) -> bool:
    return str(v).lower() in ("1", "true", "yes", "on")


class Kill:
    name = "kill"
    help = "SIGKILL; a killed node stays dead until healed (control-plane processes are restarted)"
    params = {"no-restart": "true: healing leaves killed nodes dead (default false)"}
    target_mode = "process"

    def check(self, params: dict[str, str]) -> None:
        v = params.get("no-restart")
        if v is not None and str(v).lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"--param no-restart={v!r}: use true or false")

    def inject(self, lab: Any, fault: Any) -> dict:
        pids = process_pids(lab)
        killed = _signal_all(lab, fault, "KILL")
        return {"killed": killed, "pids": {t: pids.get(t) for t in killed}}

    def heal(self, lab: Any, fault: Any) -> None:
        restart_dead(lab, fault.state.get("killed", fault.targets),
                     nodes_too=not _truthy(fault.params.get("no-restart", "false")),
                     killed=fault.state.get("pids"))


class Restart:
    name = "restart"
    help = "kill and start again (an action: nothing to heal)"
    params: dict[str, str] = {}
    target_mode = "process"
    instant = True

    def inject(self, lab: Any, fault: Any) -> dict:
        for t in fault.targets:
            lab.restart(t)
        return {}

    def heal(self, lab: Any, fault: Any) -> None:
        pass


class Pause:
    name = "pause"
    help = "SIGSTOP: frozen, sockets open, nothing answered; heal: SIGCONT"
    params: dict[str, str] = {}
    target_mode = "process"

    def inject(self, lab: Any, fault: Any) -> dict:
        return {"paused": _signal_all(lab, fault, "STOP")}

    def heal(self, lab: Any, fault: Any) -> None:
        states = process_states(lab)
        for t in fault.state.get("paused", fault.targets):
            if states.get(t) == "paused":
                lab.kill(t, "CONT")


class Resume:
    name = "resume"
    help = "SIGCONT (an action); heals the active pause faults of those targets"
    params: dict[str, str] = {}
    target_mode = "process"
    instant = True

    def inject(self, lab: Any, fault: Any) -> dict:
        states = process_states(lab)
        for t in fault.targets:
            if states.get(t) == "paused":
                lab.kill(t, "CONT")
        return {}

    def heal(self, lab: Any, fault: Any) -> None:
        pass


class CrashLoop:
    name = "crash-loop"
    help = "kill every N seconds (a dead node is started again in between)"
    params = {"every": "the period, e.g. 2s (required)"}
    required = ("every",)
    target_mode = "process"
    driven = True

    def check(self, params: dict[str, str]) -> None:
        parse_duration(params.get("every"), "--param every")

    def inject(self, lab: Any, fault: Any) -> dict:
        pids = process_pids(lab)
        killed = _signal_all(lab, fault, "KILL")
        return {"every": parse_duration(fault.params["every"], "--param every"),
                "killed": killed, "pids": {t: pids.get(t) for t in killed}}

    def tick(self, lab: Any, fault: Any) -> float:
        from lab.lab import LabError
        states = process_states(lab)
        pids = process_pids(lab)
        actions = {}
        for t in fault.targets:
            st = states.get(t)
            try:
                if st in ("running", "paused"):
                    lab.kill(t, "KILL")
                    fault.state.setdefault("pids", {})[t] = pids.get(t)
                    actions[t] = "killed"
                elif st is not None and t not in CONTROL_PLANE:
                    lab.restart(t)
                    actions[t] = "restarted"
            except LabError as e:
                actions[t] = f"failed: {e}"
        fault.state["last_actions"] = actions
        return float(fault.state.get("every") or parse_duration(fault.params["every"]))

    def heal(self, lab: Any, fault: Any) -> None:
        restart_dead(lab, fault.targets, killed=fault.state.get("pids"))


PROCESS_KINDS: dict[str, Any] = {k.name: k for k in (Kill(), Restart(), Pause(), Resume(), CrashLoop())}
