"""``kemu chaos``: inject a fault, list the active ones, heal them (and ``run`` scenarios).

Contract
--------
* ``kemu chaos KIND [TARGET] [--for D] [--param k=v ...] [--seed N] [--name LAB]``
  injects one fault into the current lab (or ``--name``) and prints its ID.
  ``kill`` also takes ``--no-restart``.
* ``kemu chaos list [-o json]``: ``ID KIND TARGET PARAMS AGE REMAINING``.
* ``kemu chaos heal ID`` / ``kemu chaos heal --all``.
* ``kemu chaos run SCENARIO.yaml``: added by ``lab.chaos.scenario_cli`` when present.
* Exit codes: 0 done; 1 an error the message explains (unknown target, bad param,
  no such fault, the lab is down); 2 bad usage (unknown kind, bad ``--for``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from lab.chaos.model import format_age, parse_duration


def _duration(s: str) -> float:
    try:
        return parse_duration(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--for: ")) from None


def _lab_name(s: str) -> str:
    from lab.paths import check_lab_name
    try:
        return check_lab_name(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--name: ")) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lab.chaos.kinds import KINDS
    p = sub.add_parser("chaos", help="inject faults into the lab, list and heal them",
                       description="Inject a fault: kemu chaos KIND TARGET [--for 30s] [--param k=v]. "
                                   "Targets: a process (node-3, apiserver, scheduler, controller-manager, "
                                   "dns), a comma list, nodes:all, nodes:zone=ZONE, nodes:random:N, "
                                   "nodes:minority. See docs/chaos.md.")
    csub = p.add_subparsers(dest="chaos_command", metavar="KIND|list|heal|run")
    csub.required = True
    for name, kind in KINDS.items():
        params = getattr(kind, "params", {}) or {}
        epilog = ("parameters (--param NAME=VALUE): " + "; ".join(f"{k}: {h}" for k, h in params.items())
                  if params else None)
        k = csub.add_parser(name, help=getattr(kind, "help", name), epilog=epilog)
        optional = getattr(kind, "target_mode", "process") == "pods"
        k.add_argument("target", nargs="?" if optional else None,
                       help="a lab process or group" + (" (optional: narrows to pods on those nodes)"
                                                        if optional else ""))
        k.add_argument("--for", dest="duration", type=_duration, metavar="D",
                       help="heal after D (30s, 500ms, 2m); without it the fault holds until healed")
        k.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        k.add_argument("--seed", type=int, help="seed for nodes:random:N and nodes:minority")
        if name == "kill":
            k.add_argument("--no-restart", action="store_true",
                           help="healing leaves the killed nodes dead")
        k.add_argument("--name", type=_lab_name, help="the lab (default: the current one)")
        k.set_defaults(func=cmd_inject, kind=name)

    ls = csub.add_parser("list", help="the active faults")
    ls.add_argument("--name", type=_lab_name)
    ls.add_argument("-o", "--output", choices=["json"])
    ls.set_defaults(func=cmd_list)

    heal = csub.add_parser("heal", help="heal one fault (ID) or every one (--all)")
    heal.add_argument("id", nargs="?")
    heal.add_argument("--all", action="store_true")
    heal.add_argument("--name", type=_lab_name)
    heal.set_defaults(func=cmd_heal)

    try:
        from lab.chaos import scenario_cli
    except ImportError:
        scenario_cli = None   # type: ignore[assignment]
    if scenario_cli is not None:
        scenario_cli.add_run_parser(csub)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _attach(args: argparse.Namespace) -> Any:
    from lab.lab import Lab
    return Lab.attach(getattr(args, "name", None))


def cmd_inject(args: argparse.Namespace) -> int:
    from lab.chaos.chaos import ChaosError
    from lab.chaos.model import parse_params
    from lab.lab import LabError
    try:
        params: dict[str, Any] = parse_params(args.param)
        if getattr(args, "no_restart", False):
            params["no-restart"] = "true"
        lab = _attach(args)
        fault = lab.chaos.inject(args.kind, args.target, duration=args.duration, seed=args.seed,
                                 **{k.replace("-", "_"): v for k, v in params.items()})
    except (ValueError, ChaosError, LabError) as e:
        return _fail(str(e))
    print(fault.id)
    return 0


def _params(p: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in p.items()) or "-"


def cmd_list(args: argparse.Namespace) -> int:
    from emulator.cli.tabwriter import align
    from lab.lab import LabError
    try:
        lab = _attach(args)
    except LabError as e:
        return _fail(str(e))
    faults = lab.chaos.active()
    if args.output == "json":
        print(json.dumps([f.to_dict() for f in faults], indent=1))
        return 0
    if not faults:
        print("No active faults.", file=sys.stderr)
        return 0
    now = time.time()
    lines = ["ID\tKIND\tTARGET\tPARAMS\tAGE\tREMAINING"]
    for f in faults:
        rem = f.remaining(now)
        lines.append(f"{f.id}\t{f.kind}\t{f.target or '-'}\t{_params(f.params)}\t"
                     f"{format_age(now - f.injected_at)}\t{'-' if rem is None else format_age(rem)}")
    print(align("\n".join(lines) + "\n"), end="")
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    from lab.chaos.chaos import ChaosError
    from lab.lab import LabError
    if bool(args.id) == bool(args.all):
        print("error: kemu chaos heal takes a fault ID or --all (see 'kemu chaos list')", file=sys.stderr)
        return 2
    try:
        lab = _attach(args)
        healed = lab.chaos.heal(None if args.all else args.id)
    except (ChaosError, LabError) as e:
        return _fail(str(e))
    if not healed:
        print("no active faults", file=sys.stderr)
    for f in healed:
        print(f"healed {f.id} ({f.kind} {f.target})")
    return 0
