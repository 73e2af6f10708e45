"""``kemu chaos run SCENARIO.yaml [--out DIR]``: the scenario runner's command.

Contract: ``add_run_parser(subparsers)`` adds ``run`` to the ``kemu chaos``
sub-parsers. Exit codes: 0 the verdict is pass, 1 fail, 2 the scenario is
invalid (the message names the field path and the fix) or cannot be read.
``--check`` validates only (exit 0 or 2), starting nothing.
"""
from __future__ import annotations

import argparse
import sys


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a chaos scenario in its own lab and print a verdict",
                       description="Start the scenario's lab, apply its setup, inject its faults, "
                                   "evaluate its probes, and write a run directory. Exit code: "
                                   "0 pass, 1 fail, 2 invalid scenario.")
    p.add_argument("scenario", metavar="SCENARIO.yaml")
    p.add_argument("--out", metavar="DIR", help="run directory (default: <labdir>/../runs/<name>-<time>)")
    p.add_argument("--check", action="store_true", help="validate the scenario only")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from lab.chaos.scenario import ScenarioError, load_scenario
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as e:
        print(f"error: invalid scenario {args.scenario}: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"scenario {sc.name}: valid ({len(sc.faults)} fault(s), {len(sc.probes)} probe(s))")
        return 0
    from lab.chaos.scenario_run import run_scenario
    res = run_scenario(sc, args.out, say=lambda s: print(s, flush=True))
    return 0 if res["verdict"] == "pass" else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.chaos.scenario_cli SCENARIO.yaml``: the command on its own."""
    parser = argparse.ArgumentParser(prog="kemu chaos")
    add_run_parser(parser.add_subparsers(dest="chaos_command", required=True))
    args = parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
