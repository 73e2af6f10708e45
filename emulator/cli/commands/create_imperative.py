"""Objects for kubectl's imperative ``create`` forms: namespace, configmap, secret generic.

Contract: ``build_namespace``, ``build_configmap`` and ``build_secret`` return
the object kubectl would build, with kubectl's field order (which ``-o json``
shows) and its validation messages (raised as ``CLIError``): literal sources
must be ``key=value``, keys must match ``[-._a-zA-Z0-9]+`` (env-file keys the
environment-variable rule), a key may be given once, ``--from-file`` takes
``[key=]path`` where a directory contributes each regular file. ConfigMap
file content that is not UTF-8 goes to ``binaryData``; secret data is base64.
"""
from __future__ import annotations

import base64
import os
import re
from typing import Any

from emulator.cli.common import CLIError

__all__ = ["build_namespace", "build_configmap", "build_secret"]

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_KEY = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_KEY_RULE = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
             "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
             "'[-._a-zA-Z0-9]+')")
_ENV_RULE = ("a valid environment variable name must consist of alphabetic characters, "
             "digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  "
             "or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is "
             "'[-._a-zA-Z][-._a-zA-Z0-9]*')")


def _meta(name: str, namespace: str | None) -> dict:
    md: dict[str, Any] = {"name": name}
    if namespace:
        md["namespace"] = namespace
    md["creationTimestamp"] = None
    return md


def build_namespace(name: str) -> dict:
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "creationTimestamp": None}, "spec": {}, "status": {}}


class _Data:
    """Collects key/value pairs with kubectl's validation."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name
        self.text: dict[str, str] = {}
        self.binary: dict[str, bytes] = {}

    def add(self, key: str, value: bytes, env: bool = False) -> None:
        if env:
            if not _ENV_KEY.match(key):
                raise CLIError(f'"{key}" is not a valid key name: {_ENV_RULE}')
        elif not _KEY.match(key):
            raise CLIError(f'"{key}" is not a valid key name for a {self.kind}: {_KEY_RULE}')
        if key in self.text or key in self.binary:
            raise CLIError(f'cannot add key "{key}", another key by that name already exists '
                           f'in Data for {self.kind} "{self.name}"')
        try:
            self.text[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            self.binary[key] = value

    def literals(self, sources: list[str]) -> None:
        for s in sources:
            if "=" not in s:
                raise CLIError(f"invalid literal source {s}, expected key=value")
            k, _, v = s.partition("=")
            self.add(k, v.encode())

    def files(self, sources: list[str]) -> None:
        for s in sources:
            key, path = None, s
            if "=" in s:
                key, _, path = s.partition("=")
                if not key or not path:
                    raise CLIError(f"key names or file paths cannot be empty: {s!r}")
            if os.path.isdir(path):
                if key is not None:
                    raise CLIError("cannot give a key name for a directory path")
                for entry in sorted(os.listdir(path)):
                    full = os.path.join(path, entry)
                    if os.path.isfile(full):
                        self.add(entry, _read(full))
            else:
                self.add(key if key is not None else os.path.basename(path), _read(path))

    def env_files(self, paths: list[str]) -> None:
        for path in paths:
            text = _read(path).decode("utf-8", errors="replace").removeprefix("\ufeff")
            for line in text.splitlines():
                line = line.lstrip()
                if not line or line.startswith("#"):
                    continue
                if "=" in line:
                    k, _, v = line.partition("=")
                else:
                    k, v = line, os.environ.get(line, "")
                self.add(k, v.encode(), env=True)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CLIError(f"error reading {path}: no such file or directory") from None
    except OSError as e:
        raise CLIError(f"error reading {path}: {e.strerror}") from None


def build_configmap(name: str, namespace: str | None, literals: list[str], files: list[str],
                    env_files: list[str]) -> dict:
    d = _Data("ConfigMap", name)
    d.literals(literals)
    d.files(files)
    d.env_files(env_files)
    obj: dict[str, Any] = {"kind": "ConfigMap", "apiVersion": "v1",
                           "metadata": _meta(name, namespace)}
    if d.text:
        obj["data"] = dict(sorted(d.text.items()))
    if d.binary:
        obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in sorted(d.binary.items())}
    return obj


def build_secret(name: str, namespace: str | None, literals: list[str], files: list[str],
                 env_files: list[str], secret_type: str | None) -> dict:
    d = _Data("Secret", name)
    d.literals(literals)
    d.files(files)
    d.env_files(env_files)
    raw = {**{k: v.encode() for k, v in d.text.items()}, **d.binary}
    obj: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1", "metadata": _meta(name, namespace)}
    if raw:
        obj["data"] = {k: base64.b64encode(v).decode() for k, v in sorted(raw.items())}
    if secret_type:
        obj["type"] = secret_type
    return obj
