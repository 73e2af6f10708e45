"""``kemu report``: write a lab's or a scenario run's report, or compare two.

Contract
--------
* ``kemu report [--lab NAME | --run DIR] [--out DIR]``: the current lab when
  neither flag is given; prints where the report went and its headline
  figures. ``--lab`` takes a lab name (``$KEMU_HOME/labs/NAME``) or a path.
* ``kemu report --compare A B [--out DIR]``: A and B are run or lab
  directories, or directories holding a ``report.json``.
* Exit codes: 0 written; 1 bad input (the message names the flag: both
  ``--lab`` and ``--run``, a directory that is neither a lab nor a run, no
  current lab); 2 bad usage (argparse).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="SLIs, plots and a report of a lab or a scenario run (or compare two)",
                       description="Compute the SLIs of a lab or a chaos scenario run from its logs and "
                                   "metrics and write report.json, report.md, report.html and PNG plots. "
                                   "See docs/reports.md.")
    p.add_argument("--lab", metavar="NAME", help="a lab's name or directory (default: the current lab)")
    p.add_argument("--run", metavar="DIR", help="a scenario run directory (kemu chaos run's output)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two run (or lab) directories side by side")
    p.add_argument("--out", metavar="DIR", help="output directory (default: <run or lab dir>/report/)")
    p.set_defaults(func=cmd_report)


def _lab_dir(name: str) -> Path:
    d = Path(name)
    if d.is_dir() and ("/" in name or name.startswith(".")):
        return d
    from lab.paths import lab_dir_for
    d = lab_dir_for(name)
    if not d.is_dir():
        raise FileNotFoundError(f"--lab: no lab named {name!r} (no directory {d}): give a lab name from "
                                "'kemu lab list' or a lab directory")
    return d


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report import ReportError, compare, generate
    try:
        if args.compare:
            if args.lab or args.run:
                raise ReportError("--compare: give two directories, without --lab or --run")
            res = compare(args.compare[0], args.compare[1], args.out)
            print(f"comparison written to {res['out']} (compare.md, compare.html, compare.json)")
            return 0
        if args.lab and args.run:
            raise ReportError("--lab and --run: give one of them, not both")
        if args.run:
            rep = generate(args.run, args.out, flag="--run")
        else:
            if args.lab:
                d = _lab_dir(args.lab)
            else:
                from lab.paths import get_current
                d = get_current()
                if d is None:
                    raise ReportError("--lab: there is no current lab: give --lab NAME or --run DIR")
            rep = generate(d, args.out, flag="--lab")
    except (ReportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from lab.report.render import _fmt, rows
    print(f"report written to {rep['out']} (report.md, report.html, report.json)")
    for _k, label, v, unit in rows(rep)[:12]:
        print(f"  {label}: {_fmt(v, unit)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kemu")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
