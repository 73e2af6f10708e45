"""The kubectl-style part of the ``kemu`` CLI.

Contract
--------
* ``register(subparsers)`` adds get, describe, create, apply, delete, patch
  and label to an argparse sub-parsers object; each parser sets ``func`` to a
  ``run(args, out, err) -> int``. The ``kemu`` entry point dispatches with
  ``args.func(args, sys.stdout, sys.stderr)``.
* ``run(argv, out, err)`` builds a parser with just these commands, parses
  ``argv`` and runs the command, returning the exit code: 0 on success, 1 on
  an error (printed on ``err`` as kubectl prints it), 2 on bad usage (argparse
  prints the message naming the flag). It never calls ``sys.exit``.
  Keyword-only test seams: ``client_factory(server, timeout)`` replaces
  ``emulator.client.Client``, ``registry`` replaces ``REGISTRY``, ``stdin``
  feeds ``-f -``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Callable, TextIO

from emulator.cli.commands import COMMANDS

__all__ = ["register", "run", "build_parser"]


def register(subparsers: Any) -> None:
    """Add the kubectl-style commands to ``subparsers``."""
    for module in COMMANDS:
        module.add_parser(subparsers)


def build_parser(prog: str = "kemu") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="kubectl-style access to a kemu "
                                                            "apiserver")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse like kubectl: flags may come before, between or after positionals
    (``label pod web -n demo tier=frontend``).

    argparse alone stops a ``nargs='+'`` positional at the first flag, so the
    chosen command's own parser parses intermixed; commands with their own
    sub-commands (``create configmap``) parse normally.
    """
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is not None and argv and argv[0] in sub.choices:
        cmd = sub.choices[argv[0]]
        if not any(isinstance(a, argparse._SubParsersAction) for a in cmd._actions):
            args = cmd.parse_intermixed_args(argv[1:])
            setattr(args, sub.dest or "command", argv[0])
            return args
    return parser.parse_args(argv)


def run(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr, *,
        client_factory: Callable[[str, float | None], Any] | None = None,
        registry: Any = None, stdin: TextIO | None = None) -> int:
    """Run one command; see the module docstring."""
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parse_args(parser, argv)
    except SystemExit as e:   # argparse: --help (0) or a usage error (2)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if client_factory is not None:
        args._client_factory = client_factory
    if registry is not None:
        args._registry = registry
    if stdin is not None:
        args._stdin = stdin
    return int(args.func(args, out, err))


def main(argv: list[str] | None = None) -> int:
    """Run as ``python -m emulator.cli.kubectl``."""
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
