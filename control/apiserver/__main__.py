"""``python -m control.apiserver``: the apiserver alone, without the rest of the CLI."""
import argparse
import sys

from control.apiserver.main import add_parser

parser = argparse.ArgumentParser(prog="kemu")
sub = parser.add_subparsers(dest="command")
add_parser(sub)
args = parser.parse_args(["apiserver", *sys.argv[1:]])
sys.exit(args.func(args))
