"""``kemu proxy rules NODE``: print a node's kube-proxy rules table.

Contract: reads ``<lab>/nodes/<NODE>/var/lib/kemu/proxy-rules.txt``, the
iptables-save-style text each node's kube-proxy rewrites atomically on every
sync, from the lab named by ``--lab-dir`` or else the current lab
(``$KEMU_HOME/current``). It needs no apiserver, so it also shows the stale
table of a partitioned node. Exit 1 with a message naming the file when there
is no current lab, no such node, or no table yet.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from emulator.cli.commands._node_files import node_root

# The proxy's file under a node's root (node/proxy/proxy.py RULES_FILE; emulator/ cannot import node/).
RULES_FILE = Path("var") / "lib" / "kemu" / "proxy-rules.txt"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("proxy", help="inspect kube-proxy on a node",
                              description="Inspect a node's kube-proxy. 'rules NODE' prints its "
                                          "rules table as iptables-save would.")
    p.add_argument("what", choices=["rules"], help="what to show")
    p.add_argument("node", metavar="NODE", help="the node's name")
    p.add_argument("--lab-dir", help="the lab directory (default: the current lab)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    root = node_root(args.lab_dir, args.node, err)
    if root is None:
        return 1
    path = root / RULES_FILE
    try:
        text = path.read_text()
    except OSError:
        print(f'error: node "{args.node}" has no proxy rules yet ({path} is missing)', file=err)
        return 1
    out.write(text)
    return 0
