"""Where labs live, and the layout of a lab directory.

Contract: a lab is a directory, by default ``$KEMU_HOME/labs/<name>``
(``KEMU_HOME`` defaults to ``~/.kemu``), holding:

* ``lab.json``: the configuration it was started with;
* ``run/``: ``supervisor.pid``, ``supervisor.sock`` (the supervisor's control
  socket), ``apiserver.endpoint`` (the address clients use) and ``state.json``
  (every process the supervisor runs, rewritten on each change);
* ``logs/``: one JSON-lines file per process (``<process>.jsonl``);
* ``nodes/<node>/``: each node's root directory;
* ``shared/``: volumes of the ``shared`` StorageClass, outside every node;
* ``store/``: the apiserver's write-ahead log and snapshots;
* ``reports/``.

``$KEMU_HOME/current`` names the current lab's directory, as kubeconfig's
current-context does: later commands use it without flags.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from emulator.cli.server import kemu_home

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_lab_name(name: str) -> str:
    if len(name) > 63 or not _NAME.match(name):
        raise ValueError(f'--name: invalid lab name "{name}": use lower case letters, digits and '
                         "'-', starting and ending with a letter or digit (at most 63)")
    return name


def labs_root() -> Path:
    return kemu_home() / "labs"


def lab_dir_for(name: str) -> Path:
    return labs_root() / name


def current_file() -> Path:
    return kemu_home() / "current"


def set_current(lab_dir: Path) -> None:
    f = current_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(str(lab_dir) + "\n")
    os.replace(tmp, f)


def get_current() -> Path | None:
    try:
        s = current_file().read_text().strip()
    except OSError:
        return None
    return Path(s) if s else None


def clear_current_if(lab_dir: Path) -> None:
    cur = get_current()
    if cur is not None and cur.resolve() == lab_dir.resolve():
        try:
            current_file().unlink()
        except OSError:
            pass


class LabLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.config = self.root / "lab.json"
        self.run = self.root / "run"
        self.logs = self.root / "logs"
        self.nodes = self.root / "nodes"
        self.shared = self.root / "shared"   # the shared-dir provisioner's volumes
        self.store = self.root / "store"
        self.reports = self.root / "reports"
        self.supervisor_pid = self.run / "supervisor.pid"
        self.supervisor_sock = self.run / "supervisor.sock"
        self.endpoint = self.run / "apiserver.endpoint"
        self.state = self.run / "state.json"

    def make(self) -> None:
        for d in (self.run, self.logs, self.nodes, self.shared, self.store, self.reports):
            d.mkdir(parents=True, exist_ok=True)

    def log_for(self, process: str) -> Path:
        return self.logs / f"{process}.jsonl"

    def node_root(self, node: str) -> Path:
        return self.nodes / node

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
