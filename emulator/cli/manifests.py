"""Loading manifests for ``-f FILE|DIR|-``, as kubectl reads them.

Contract
--------
* ``load_manifests(paths, recursive=False, stdin=None)`` returns
  ``(manifests, errors)``. Every path is read; a directory contributes its
  ``.yaml``/``.yml``/``.json`` files in name order (sub-directories too with
  ``recursive``); ``-`` reads ``stdin``.
* A file is parsed whole before anything from it is returned: a YAML or JSON
  syntax error, or a document that is not an object with ``apiVersion`` and
  ``kind``, makes the file contribute *no* manifests and one ``ManifestError``
  naming the file and the 1-based line (syntax) or document number
  (validation). Other files are unaffected.
* Files may hold several YAML documents (``---``) or concatenated JSON
  objects; empty documents are skipped; ``kind: List`` (and ``*List``) objects
  are expanded into their items.
* Each ``Manifest`` has the object, its source (path or ``STDIN``) and its
  1-based document number within the source.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

__all__ = ["Manifest", "ManifestError", "load_manifests", "parse_documents", "EXTENSIONS"]

EXTENSIONS = (".json", ".yaml", ".yml")

try:  # the C loader is ~10x faster on big manifests
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

# PyYAML words its problems differently from Go's yaml (which kubectl shows).
_GO_WORDING = {
    "mapping values are not allowed here": "mapping values are not allowed in this context",
    "found character '\\t' that cannot start any token":
        "found character that cannot start any token",
}


@dataclass
class Manifest:
    obj: dict
    source: str
    index: int     # 1-based document number in its source


class ManifestError(Exception):
    """A file (or stdin) that could not be used; ``str()`` is ready for ``error: ``."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source = source
        self.message = message

    def __str__(self) -> str:
        return self.message


def _expand(path: str, recursive: bool) -> list[str]:
    if path == "-":
        return ["-"]
    if not os.path.exists(path):
        raise ManifestError(path, f'the path "{path}" does not exist')
    if not os.path.isdir(path):
        return [path]
    found = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            if recursive:
                found.extend(_expand(full, recursive))
        elif entry.endswith(EXTENSIONS):
            found.append(full)
    return found


def _yaml_error(source: str, e: yaml.YAMLError) -> ManifestError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    problem = _GO_WORDING.get(problem, problem)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return ManifestError(source, f"error parsing {source}: error converting YAML to JSON: "
                                 f"yaml: {where}{problem}")


def _parse_json_stream(text: str, source: str) -> list[tuple[Any, int]]:
    dec = json.JSONDecoder()
    docs: list[tuple[Any, int]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ManifestError(source, f"error parsing {source}: json: line {e.lineno}: "
                                        f"{e.msg} (column {e.colno})") from None
        docs.append((obj, text.count("\n", 0, pos) + 1))
        pos = end


def parse_documents(text: str, source: str) -> list[tuple[Any, int]]:
    """Every non-empty document in ``text`` with its 1-based starting line.

    Raises ``ManifestError`` on a syntax error, naming ``source`` and the line.
    """
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _parse_json_stream(text, source)
    docs: list[tuple[Any, int]] = []
    try:
        loader = _Loader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                line = node.start_mark.line + 1 if node is not None else 0
                obj = loader.construct_document(node)
                if obj is not None:
                    docs.append((obj, line))
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None
    return docs


def _expand_lists(obj: Any, source: str, doc: int, out: list[Manifest]) -> None:
    if not isinstance(obj, dict):
        raise ManifestError(source, f'error validating "{source}": document {doc}: expected an '
                                    f"object with apiVersion and kind, got a "
                                    f"{type(obj).__name__}")
    missing = [f"{k} not set" for k in ("apiVersion", "kind") if not obj.get(k)]
    if missing:
        raise ManifestError(source, f'error validating "{source}": document {doc}: '
                                    f"error validating data: [{', '.join(missing)}]")
    kind = obj["kind"]
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            _expand_lists(item, source, doc, out)
        return
    if not isinstance(obj.get("metadata", {}), dict):
        raise ManifestError(source, f'error validating "{source}": document {doc}: '
                                    "metadata must be an object")
    out.append(Manifest(obj, source, doc))


def _load_one(path: str, stdin: TextIO | None) -> list[Manifest]:
    source = "STDIN" if path == "-" else path
    if path == "-":
        if stdin is None:
            raise ManifestError(source, "no standard input to read manifests from")
        text = stdin.read()
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ManifestError(source, f"error reading {path}: not UTF-8 text") from None
        except OSError as e:
            raise ManifestError(source, f"error reading {path}: {e.strerror}") from None
    out: list[Manifest] = []
    for i, (obj, _line) in enumerate(parse_documents(text, source), start=1):
        _expand_lists(obj, source, i, out)
    return out


def load_manifests(paths: list[str], recursive: bool = False,
                   stdin: TextIO | None = None) -> tuple[list[Manifest], list[ManifestError]]:
    """Load every manifest under ``paths``; see the module docstring."""
    manifests: list[Manifest] = []
    errors: list[ManifestError] = []
    for p in paths:
        try:
            files = _expand(p, recursive)
        except ManifestError as e:
            errors.append(e)
            continue
        for f in files:
            try:
                manifests.extend(_load_one(f, stdin))
            except ManifestError as e:
                errors.append(e)
    return manifests, errors
