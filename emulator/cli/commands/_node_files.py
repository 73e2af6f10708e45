"""Commands that read a node's files directly (``proxy rules``, ``crictl``): find them.

Contract: ``node_root(lab_flag, node, err)`` returns ``<lab>/nodes/<node>`` of
the lab named by ``--lab-dir`` or else the current lab
(``$KEMU_HOME/current``); it needs no apiserver, so a partitioned or dead
node's last files can be read. When there is no current lab or no such node
it writes the reason to ``err`` and returns None (the command exits 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

from emulator.cli.server import kemu_home

__all__ = ["lab_dir", "node_root"]


def lab_dir(flag: str | None) -> Path | None:
    """The lab directory from ``--lab-dir`` or the current lab; None when there is none."""
    if flag:
        return Path(flag).expanduser()
    try:
        d = (kemu_home() / "current").read_text().strip()
    except OSError:
        d = ""
    return Path(d).expanduser() if d else None


def node_root(lab_flag: str | None, node: str, err: TextIO) -> Path | None:
    lab = lab_dir(lab_flag)
    if lab is None:
        print("error: no current lab: start one with 'kemu lab up', or pass --lab-dir", file=err)
        return None
    root = lab / "nodes" / node
    if not root.is_dir():
        print(f'error: node "{node}" not found in the lab {lab}', file=err)
        return None
    return root
