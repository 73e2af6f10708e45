"""``kemu dashboard [--name LAB] [--port N]``: serve the live dashboard of a running lab.

Contract: prints the page's URL (``http://127.0.0.1:PORT/``) on one line, flushed, then
serves until SIGINT or SIGTERM (the handler only sets a flag; the server stops in
normal code) and exits 0. Exits 1 with a message naming the flag and the fix when the
lab is unknown or not running, the port is taken, or ``--address`` is not 127.0.0.1;
2 on bad usage (a port that is not a number from 0 to 65535).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port takes a number from 0 to 65535, got {s!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be from 0 to 65535 (0: any free port), got {v}")
    return v


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lab.cli_lab import _name
    p = sub.add_parser("dashboard", help="a live, read-only web page of a lab (on 127.0.0.1)")
    p.add_argument("--name", type=_name, help="the lab (default: the current one)")
    p.add_argument("--port", type=_port, default=0, help="the port on 127.0.0.1 (default 0: any free one)")
    p.add_argument("--address", default="127.0.0.1",
                   help="only 127.0.0.1: the page has no authentication, so it stays on this machine")
    p.add_argument("--serve-seconds", type=float, help=argparse.SUPPRESS)   # tests: stop after this
    p.set_defaults(func=cmd_dashboard)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def cmd_dashboard(args: argparse.Namespace) -> int:
    from lab.dashboard.server import DashboardError, DashboardServer, check_address
    from lab.lab import Lab, LabError
    try:
        check_address(args.address)
        lab = Lab.attach(args.name)
        if not lab.running():
            raise LabError(f"lab {lab.name} is not running: start it with 'kemu lab up --name {lab.name}'")
        dash = DashboardServer(lab.server, lab.layout.run / "chaos.json", lab=lab.name,
                               address=args.address, port=args.port)
    except (DashboardError, LabError) as e:
        return _fail(str(e))
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        dash.start()
        print(f"dashboard for lab {lab.name}: {dash.url}  (Ctrl-C to stop)", flush=True)
        deadline = None if args.serve_seconds is None else time.monotonic() + args.serve_seconds
        while not stop.wait(0.5):   # a short wait, so a signal is noticed at once
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        dash.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
