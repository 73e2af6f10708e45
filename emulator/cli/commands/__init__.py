"""kubectl-style commands, one module each.

Contract: every command module has ``add_parser(subparsers)`` (adds its
argparse parser, with ``func`` set to its ``run``) and ``run(args, out, err)
-> int`` (the exit code: 0 success, 1 error; argparse itself exits 2 on bad
flags). ``COMMANDS`` lists them in help order.
"""
from __future__ import annotations

from emulator.cli.commands import apply, create, delete, describe, get, label, patch, proxy
from emulator.cli.commands import crictl, logs, rollout, scale, top
from emulator.cli.commands import events

COMMANDS = (get, describe, create, apply, delete, patch, label, logs, events, top, proxy, crictl, scale, rollout)

__all__ = ["COMMANDS"]
