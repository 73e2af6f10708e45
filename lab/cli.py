"""The ``kemu`` entry point: kubectl-style commands plus the process commands.

Contract: kubectl-style commands come from ``emulator.cli.kubectl``; process
commands (``apiserver``, ``bench``, ``lab``, ``dashboard``, ``report``, ``demo``) are added here, because only ``lab`` may
depend on every layer. Exit codes: 0 success, 1 an error the message
explains, 2 bad usage (argparse).
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from control.apiserver import main as apiserver_main
    from emulator.cli import kubectl
    from lab import cli_lab, images
    from lab.chaos import cli as chaos_cli
    from lab.dashboard import cli as dashboard_cli
    from lab.bench import cli as bench_cli
    from lab.report import cli as report_cli
    parser = argparse.ArgumentParser(prog="kemu", description="kemu: a Kubernetes cluster emulator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    kubectl.register(sub)
    apiserver_main.add_parser(sub)
    bench_cli.add_parser(sub)
    cli_lab.add_parser(sub)
    chaos_cli.add_parser(sub)
    images.add_parser(sub)
    report_cli.add_parser(sub)
    dashboard_cli.add_parser(sub)
    demo = sub.add_parser("demo", help="the main job: a 10-node lab, a node failure, a timeline")
    demo.add_argument("--runtime", choices=["fake", "process"], default="fake",
                      help="the nodes' runtime (process: real web servers and real traffic)")
    demo.set_defaults(func=lambda args: __import__("lab.demo", fromlist=["main"]).main(args.runtime))
    return parser


def main(argv: list[str] | None = None) -> int:
    from emulator.cli.kubectl import parse_args
    parser = build_parser()
    args = parse_args(parser, sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
