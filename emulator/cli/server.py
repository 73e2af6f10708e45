"""Which apiserver the CLI talks to.

Contract: ``resolve_server(flag)`` returns a validated address, taken from the
first of: the ``--server`` flag, the ``KEMU_SERVER`` environment variable, the
current lab (``$KEMU_HOME/current`` names a lab directory whose
``run/apiserver.endpoint`` holds the address; ``KEMU_HOME`` defaults to
``~/.kemu``). It raises ``ServerError`` (a ``ValueError`` whose message is
ready to print after ``error: ``) when none is set, or when the address is
not ``tcp://HOST:PORT``, ``ipc://PATH`` or ``mem://NAME`` (the in-process
transport, for tests; the schemes ``emulator.transport`` serves); the message names
where the bad value came from and how to fix it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["ServerError", "resolve_server", "validate_address", "kemu_home", "NO_SERVER"]

NO_SERVER = ("no apiserver: pass --server tcp://127.0.0.1:PORT, set KEMU_SERVER, "
             "or start a lab with 'kemu lab up'")
_FIX = "expected tcp://HOST:PORT, ipc://PATH or mem://NAME (e.g. --server tcp://127.0.0.1:6443)"
_TCP = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+):(\d{1,5})$")


class ServerError(ValueError):
    """No usable apiserver address; ``str()`` is the message to print."""


def kemu_home() -> Path:
    return Path(os.environ.get("KEMU_HOME") or Path.home() / ".kemu").expanduser()


def validate_address(addr: str, source: str = "--server") -> str:
    """Return ``addr`` stripped if it is a valid ZeroMQ endpoint, else raise ServerError."""
    a = addr.strip()
    ok = False
    if a.startswith("tcp://"):
        m = _TCP.match(a)
        ok = bool(m) and 0 < int(m.group(2)) <= 65535
    elif a.startswith(("ipc://", "mem://")):
        ok = len(a.split("://", 1)[1]) > 0 and not any(c.isspace() for c in a)
    if not ok:
        hint = ""
        if re.match(r"^[^:/]+:\d+$", a):
            hint = f" (did you mean tcp://{a}?)"
        elif a.startswith(("http://", "https://")):
            hint = " (kemu speaks ZeroMQ, not HTTP: use tcp://HOST:PORT)"
        raise ServerError(f"invalid {source} address {addr!r}: {_FIX}{hint}")
    return a


def _from_lab() -> tuple[str, str] | None:
    current = kemu_home() / "current"
    try:
        lab_dir = current.read_text().strip()
    except OSError:
        return None
    if not lab_dir:
        return None
    endpoint = Path(lab_dir).expanduser() / "run" / "apiserver.endpoint"
    try:
        addr = endpoint.read_text().strip()
    except OSError:
        raise ServerError(f"the current lab {lab_dir} (from {current}) has no running apiserver: "
                          f"{endpoint} is missing; start it with 'kemu lab up', or pass "
                          "--server tcp://127.0.0.1:PORT") from None
    if not addr:
        raise ServerError(f"{endpoint} is empty: restart the lab with 'kemu lab up', or pass "
                          "--server tcp://127.0.0.1:PORT")
    return addr, str(endpoint)


def resolve_server(flag: str | None) -> str:
    """The apiserver address to use: flag, then $KEMU_SERVER, then the current lab."""
    if flag is not None and flag.strip():
        return validate_address(flag, "--server")
    env = os.environ.get("KEMU_SERVER")
    if env is not None and env.strip():
        return validate_address(env, "KEMU_SERVER")
    lab = _from_lab()
    if lab is not None:
        return validate_address(lab[0], lab[1])
    raise ServerError(NO_SERVER)
