"""The chaos record: active faults in ``run/chaos.json``, events in ``logs/chaos.jsonl``.

Contract
--------
* ``ChaosStore(layout)``: ``with store.locked() as data:`` gives the file's content
  (``{"next": N, "faults": {id: fault dict}}``) under an exclusive ``flock`` on
  ``run/chaos.lock`` and writes it back atomically on exit; every process (the CLI,
  the Python API, healers) that changes the record does so under that lock, so an
  id is allocated once and a fault is claimed for healing once. ``read()`` reads
  without the lock (the file is replaced atomically).
* ``log_event(layout, lab, event, fault, **extra)`` appends one JSON line to
  ``logs/chaos.jsonl`` with the fields every lab log line has (``ts``, ``level``,
  ``lab``, ``component`` = "chaos", ``node`` = None, ``pid``, ``event``) plus ``id``,
  ``kind``, ``target``, ``targets``, ``params``, ``duration``: ``kemu lab logs``
  merges it into the timeline. Events: ``fault_injected``, ``fault_healed``,
  ``fault_heal_failed``, ``fault_action`` (a crash-loop's kill or restart).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import datetime, timezone
from typing import Any, Iterator

from lab.paths import LabLayout


class ChaosStore:
    def __init__(self, layout: LabLayout) -> None:
        self.layout = layout
        self.path = layout.run / "chaos.json"
        self.lock_path = layout.run / "chaos.lock"

    def read(self) -> dict[str, Any]:
        data = self.layout.read_json(self.path)
        if not isinstance(data, dict):
            data = {}
        data.setdefault("next", 1)
        data.setdefault("faults", {})
        return data

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        self.layout.run.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            self.layout.write_json(self.path, data)
        finally:
            os.close(fd)   # closing releases the lock


def log_event(layout: LabLayout, lab: str, event: str, fault: Any, level: str = "info",
              **extra: Any) -> None:
    rec: dict[str, Any] = {
        "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "level": level,
        "lab": lab, "component": "chaos", "node": None, "pid": os.getpid(), "event": event,
        "id": fault.id, "kind": fault.kind, "target": fault.target, "targets": list(fault.targets),
        "params": dict(fault.params), "duration": fault.duration}
    rec.update(extra)
    line = json.dumps(rec, default=str) + "\n"
    layout.logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.logs / "chaos.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())   # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)
