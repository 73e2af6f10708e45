"""Faults that live inside lab processes: netem rules, clock skew, DNS errors.

Such a fault changes no process from outside; it hands each process concerned
some state over the process's ctl socket (``emulator.ctl``). Several faults
may touch one process, so the state is rebuilt from every active fault at
each inject and heal, and a heal is simply a rebuild without the fault.

Contract
--------
* A ctl fault kind has ``ctl_items(lab, fault) -> {process: {op: [item, ...]}}``.
* ``sync(lab, adding=None, removing=None)``: under ``run/ctl/.lock``, gathers the
  items of every active ctl fault (the chaos record, plus ``adding``, minus the
  id ``removing``), builds each process's state (``{op: args}`` for every op of
  ``OPS``, with empty args where no fault contributes), writes
  ``run/ctl/<process>.json`` (atomically) for each process whose state
  changed, and asks it to ``reload`` (1 s, best effort: a paused process
  catches up from the file when it resumes, a restarted one when it starts).
  Returns ``{process: "applied" | "pending: <why>"}`` for the processes written.
* ``OPS``: ``netem`` -> ``{"rules": {process: items}}``; ``clock`` -> ``{"offset":
  sum of the items' offsets, "strobe": the last item's strobe}``; ``dns`` ->
  ``{"rules": items}``.
* ``clear(lab)``: removes every state file (``lab down``, after the processes
  are gone).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from emulator import ctl


def _netem(process: str, items: list) -> dict:
    return {"rules": {process: items} if items else {}}


def _clock(process: str, items: list) -> dict:
    if not items:
        return {}
    out: dict[str, Any] = {"offset": sum(float(i.get("offset", 0.0)) for i in items)}
    strobes = [i["strobe"] for i in items if i.get("strobe")]
    if strobes:
        out["strobe"] = strobes[-1]
    return out


def _dns(process: str, items: list) -> dict:
    return {"rules": items}


OPS: dict[str, Callable[[str, list], dict]] = {"netem": _netem, "clock": _clock, "dns": _dns}


def ctl_dir(lab: Any) -> Path:
    return lab.layout.run / "ctl"


@contextlib.contextmanager
def _locked(lab: Any) -> Iterator[None]:
    d = ctl_dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _items(lab: Any, faults: list[Any]) -> dict[str, dict[str, list]]:
    from lab.chaos.kinds import get_kind
    out: dict[str, dict[str, list]] = {}
    for f in faults:
        fn = getattr(get_kind(f.kind), "ctl_items", None)
        if fn is None:
            continue
        for process, ops in (fn(lab, f) or {}).items():
            for op, items in ops.items():
                out.setdefault(process, {}).setdefault(op, []).extend(items)
    return out


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sync(lab: Any, adding: Any = None, removing: str | None = None) -> dict[str, str]:
    from lab.chaos.model import Fault
    with _locked(lab):
        data = lab.chaos.store.read()
        faults = [Fault.from_dict(d) for fid, d in data["faults"].items() if fid != removing]
        if adding is not None:
            faults = [f for f in faults if f.id != adding.id] + [adding]
        items = _items(lab, faults)
        d = ctl_dir(lab)
        known = {p.stem for p in d.glob("*.json")}
        report: dict[str, str] = {}
        for process in sorted(known | set(items)):
            state = {op: build(process, items.get(process, {}).get(op, [])) for op, build in OPS.items()}
            path = d / f"{process}.json"
            if _read(path) == state:
                continue
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, sort_keys=True))
            os.replace(tmp, path)
            report[process] = _reload(lab, process)
        return report


def _reload(lab: Any, process: str) -> str:
    sock = ctl.socket_path(lab.layout.run, process)
    try:
        ctl.call(sock, "reload", timeout=1.0)
        return "applied"
    except ctl.CtlError as e:
        return f"pending: {e}"


def clear(lab: Any) -> None:
    d = ctl_dir(lab)
    for p in d.glob("*.json"):
        p.unlink(missing_ok=True)
