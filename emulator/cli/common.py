"""What every CLI command shares: flags, the client, kind resolution, error output.

Contract
--------
* ``add_common_flags(parser)`` adds ``--server/-s``, ``-n/--namespace`` and
  ``--request-timeout`` (``suppress=True`` for parsers nested under a command
  that already has them, so a value given before the sub-command survives).
* ``Context`` is built per invocation from the parsed args and the output
  streams. ``ctx.client`` connects lazily (``resolve_server`` then
  ``Client``); tests inject ``client_factory`` and ``registry``.
* ``CLIError`` is a user error printed as ``error: <message>`` (exit 1).
  ``report(ctx, exc)`` prints any error the way kubectl does: an ``APIError``
  from the server as ``Error from server (<Reason>): <message>``, an
  unreachable server as ``error: <message>`` (the message names the address).
* ``resolve_kind`` maps a CLI name (``po``, ``pods``, ``leases.coordination.k8s.io``)
  to a ``ResourceType``; an unknown one is ``CLIError('the server doesn't
  have a resource type "x"')``. ``split_type_name_args`` parses kubectl's
  ``TYPE[,TYPE] [NAME...]`` / ``TYPE/NAME...`` argument forms.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.cli.printers import kind_label, object_name
from emulator.cli.server import ServerError, resolve_server

__all__ = ["CLIError", "Context", "add_common_flags", "report", "resolve_kind",
           "split_type_name_args", "parse_duration", "parse_bool", "ref", "label",
           "run_command", "print_objects", "with_type_meta", "namespace_for", "find_gvk",
           "is_connection_error", "DEFAULT_NAMESPACE"]

DEFAULT_NAMESPACE = "default"

# Our error codes as the Status reasons kubectl prints.
_REASONS = {errors.UNAVAILABLE: "ServiceUnavailable", errors.TOO_LARGE: "RequestEntityTooLarge"}


class CLIError(Exception):
    """A user-facing error; printed as ``error: <message>`` with exit code 1."""


def parse_duration(value: str) -> float:
    """``5``, ``5s``, ``500ms``, ``2m``, ``1h`` -> seconds (argparse type)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value or "")
    if not m:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use a number with a unit, e.g. 5s, 500ms, 2m")
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_bool(value: str) -> bool:
    """kubectl-style boolean flag values (``--wait=false``) (argparse type)."""
    v = (value or "").strip().lower()
    if v in ("true", "t", "1", "yes"):
        return True
    if v in ("false", "f", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}: use true or false")


def add_common_flags(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("connection")
    g.add_argument("-s", "--server", default=d(None), metavar="ADDR",
                   help="apiserver address (tcp://HOST:PORT); default: $KEMU_SERVER, "
                        "then the current lab")
    g.add_argument("-n", "--namespace", default=d(None), metavar="NS",
                   help="namespace (default: default)")
    g.add_argument("--request-timeout", type=parse_duration, default=d(None), metavar="DURATION",
                   help="how long to wait for each request (e.g. 5s, 1m)")


def _default_client_factory(server: str, timeout: float | None) -> Any:
    from emulator.client import Client
    if timeout:
        return Client(server, component="kemu-cli", timeout=timeout)
    return Client(server, component="kemu-cli")


def _default_registry() -> Any:
    from emulator.api.registry import REGISTRY
    return REGISTRY


@dataclass
class Context:
    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO | None = None
    client_factory: Callable[[str, float | None], Any] | None = None
    registry_obj: Any = None
    _client: Any = None
    server: str | None = None
    failed: bool = False

    @property
    def registry(self) -> Any:
        if self.registry_obj is None:
            self.registry_obj = _default_registry()
        return self.registry_obj

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self.server = resolve_server(getattr(self.args, "server", None))
            except ServerError as e:
                raise CLIError(str(e)) from None
            factory = self.client_factory or _default_client_factory
            self._client = factory(self.server, getattr(self.args, "request_timeout", None))
        return self._client

    @property
    def namespace(self) -> str:
        return getattr(self.args, "namespace", None) or DEFAULT_NAMESPACE

    @property
    def explicit_namespace(self) -> bool:
        return bool(getattr(self.args, "namespace", None))

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

    def error(self, text: str) -> None:
        """Print ``error: text`` on stderr and remember the command failed."""
        self.failed = True
        self.err.write(f"error: {text}\n")
        self.err.flush()

    def warn(self, text: str) -> None:
        self.err.write(f"Warning: {text}\n")
        self.err.flush()


def is_connection_error(ctx: Context, e: APIError) -> bool:
    if e.code not in (errors.UNAVAILABLE, errors.TIMEOUT):
        return False
    return ctx.server is None or ctx.server in e.message or "connect" in e.message.lower()


def report(ctx: Context, e: BaseException, prefix: str = "") -> None:
    """Print ``e`` as kubectl would and mark the command failed."""
    ctx.failed = True
    if isinstance(e, APIError):
        if is_connection_error(ctx, e):
            ctx.err.write(f"error: {e.message}\n")
        else:
            reason = _REASONS.get(e.code, e.code)
            ctx.err.write(f"Error from server ({reason}): {prefix}{e.message}\n")
    else:
        ctx.err.write(f"error: {prefix}{e}\n")
    ctx.err.flush()


def resolve_kind(ctx: Context, name: str) -> Any:
    try:
        return ctx.registry.resolve(name)
    except APIError as e:
        raise CLIError(e.message) from None
    except KeyError:
        raise CLIError(f'the server doesn\'t have a resource type "{name}"') from None


def find_gvk(ctx: Context, api_version: str, kind: str) -> Any:
    """The ResourceType for a manifest's apiVersion/kind, or None."""
    for rt in ctx.registry.all():
        if rt.kind == kind and rt.api_version == api_version:
            return rt
    return None


def label(rt: Any) -> str:
    """``pod`` / ``lease.coordination.k8s.io``."""
    return kind_label(rt.kind, rt.group)


def ref(rt: Any, name: str) -> str:
    """``pod/web``."""
    return object_name(rt.kind, rt.group, name)


def split_type_name_args(ctx: Context, args: list[str],
                         verb: str = "get") -> list[tuple[Any, list[str]]]:
    """kubectl's argument forms -> [(ResourceType, [names])] (names empty = all)."""
    if not args:
        return []
    if "/" in args[0]:
        groups: list[tuple[Any, list[str]]] = []
        index: dict[str, int] = {}
        for a in args:
            if "/" not in a:
                raise CLIError("there is no need to specify a resource type as a separate "
                               "argument when passing arguments in resource/name form (e.g. "
                               f"'kemu {verb} resource/<resource_name>' instead of "
                               f"'kemu {verb} resource resource/<resource_name>'")
            t, _, n = a.partition("/")
            if not t or not n:
                raise CLIError(f"arguments in resource/name form must have a single resource "
                               f"and name: {a!r}")
            rt = resolve_kind(ctx, t)
            if rt.kind not in index:
                index[rt.kind] = len(groups)
                groups.append((rt, []))
            groups[index[rt.kind]][1].append(n)
        return groups
    for a in args[1:]:
        if "/" in a:
            raise CLIError("there is no need to specify a resource type as a separate argument "
                           "when passing arguments in resource/name form (e.g. "
                           f"'kemu {verb} resource/<resource_name>' instead of "
                           f"'kemu {verb} resource resource/<resource_name>'")
    seen: list[Any] = []
    for t in args[0].split(","):
        if not t:
            continue
        rt = resolve_kind(ctx, t)
        if all(s.kind != rt.kind for s in seen):
            seen.append(rt)
    return [(rt, list(args[1:])) for rt in seen]


def namespace_for(ctx: Context, rt: Any, all_namespaces: bool = False) -> str | None:
    """The namespace argument for the client: None for cluster kinds or -A."""
    if not rt.namespaced or all_namespaces:
        return None
    return ctx.namespace


def run_command(args: argparse.Namespace, out: TextIO | None, err: TextIO | None,
                body: Callable[[Context], int | None]) -> int:
    """Run a command body with kubectl's error handling; returns the exit code.

    ``out``/``err`` default to the current ``sys.stdout``/``sys.stderr``. Test
    seams ride on the args: ``_client_factory``, ``_registry``, ``_stdin``.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    ctx = Context(args, out, err, stdin=getattr(args, "_stdin", None) or sys.stdin,
                  client_factory=getattr(args, "_client_factory", None),
                  registry_obj=getattr(args, "_registry", None))
    try:
        rc = body(ctx)
    except CLIError as e:
        ctx.error(str(e))
        rc = 1
    except APIError as e:
        report(ctx, e)
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    finally:
        ctx.close()
    if rc is None:
        rc = 1 if ctx.failed else 0
    return rc


def print_objects(ctx: Context, objs: list[dict], output: str | None, rt_for: Callable[[dict], Any],
                  single: bool = False) -> None:
    """Print objects for ``-o json|yaml|name`` (callers print tables themselves)."""
    from emulator.cli.printers import as_list, dump_json, dump_yaml
    if output == "name":
        for o in objs:
            ctx.out.write(ref(rt_for(o), (o.get("metadata") or {}).get("name", "")) + "\n")
    elif output in ("json", "yaml"):
        doc = objs[0] if single and len(objs) == 1 else as_list(objs)
        ctx.out.write(dump_json(doc) if output == "json" else dump_yaml(doc))
    ctx.out.flush()


def with_type_meta(obj: dict, rt: Any) -> dict:
    """``obj`` with apiVersion/kind filled in (list items may lack them)."""
    if obj.get("apiVersion") and obj.get("kind"):
        return obj
    return dict(obj, apiVersion=obj.get("apiVersion") or rt.api_version,
                kind=obj.get("kind") or rt.kind)
