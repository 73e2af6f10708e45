"""A runtime's state file (a node's ``runtime.json``): a whole document, or an append-only journal.

Contract
--------
Two formats share the path ``<root>/var/lib/kemu/runtime.json`` (``state_path(root)``):

* **document** (version 1, written by the process runtime): one JSON object
  ``{"version": 1, "sandboxes": [...], "containers": [...]}`` replaced
  atomically at every change;
* **journal** (version 2, written by the fake runtime through ``Journal``):
  JSON lines. The first is the header ``{"version": 2, "runtime": NAME}``;
  each further line is one record: ``{"sandbox": S}`` or ``{"container": C}``
  (insert or replace, keyed by ``S["id"]`` / ``C["status"]["id"]``),
  ``{"remove_sandbox": ID}`` or ``{"remove_container": ID}``. A change
  appends its records (one ``write`` of whole lines), so it costs the size of
  what changed, not of the node's whole state (a node with 100 pods wrote all
  100 at each of the three runtime calls that start a pod). When the journal
  holds more than ``COMPACT_SLACK`` records beyond ``COMPACT_FACTOR`` times
  the live objects, it is rewritten (to a temporary file, then renamed over
  it) with one record per live object.

``read_state(path)`` returns either format as a document ``{"sandboxes":
[...], "containers": [...]}`` (plus ``runtime`` when the file names it), in
the order each object was first written; it raises ``OSError`` when the file
cannot be read and ``ValueError`` (naming the line, for a journal) when it is
neither format. A journal's torn
last line (a process killed mid-write) ends the replay: what came before it
stands. ``kemu crictl``, chaos and the runtimes themselves read through it.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

JOURNAL_VERSION = 2
COMPACT_FACTOR = 4
COMPACT_SLACK = 256


def state_path(root_dir: str) -> str:
    """A node's runtime state file: ``<root>/var/lib/kemu/runtime.json``."""
    return os.path.join(root_dir, "var", "lib", "kemu", "runtime.json")


def _replay(head: dict, lines: list[str]) -> dict[str, Any]:
    """``lines`` are the records after the header ``head``."""
    sandboxes: dict[str, dict] = {}
    containers: dict[str, dict] = {}
    for n, line in enumerate(lines, 2):
        try:
            rec = json.loads(line)
        except ValueError:
            break   # a torn tail: the writer died mid-line
        if not isinstance(rec, dict):
            raise ValueError(f"journal line {n} is not a JSON object")
        try:
            if "sandbox" in rec:
                sandboxes[rec["sandbox"]["id"]] = rec["sandbox"]
            elif "container" in rec:
                containers[rec["container"]["status"]["id"]] = rec["container"]
            elif "remove_sandbox" in rec:
                sandboxes.pop(rec["remove_sandbox"], None)
            elif "remove_container" in rec:
                containers.pop(rec["remove_container"], None)
        except (KeyError, TypeError) as e:
            raise ValueError(f"journal line {n} is not a sandbox, container or removal record "
                             f"({type(e).__name__}: {e})") from None
    out: dict[str, Any] = {"version": JOURNAL_VERSION, "sandboxes": list(sandboxes.values()),
                           "containers": list(containers.values())}
    if "runtime" in head:
        out["runtime"] = head["runtime"]
    return out


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as f:
        text = f.read()
    if not text.strip():
        raise ValueError("empty state file")
    first, nl, _ = text.partition("\n")
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if nl and isinstance(head, dict) and head.get("version") == JOURNAL_VERSION:
        return _replay(head, text.splitlines()[1:])
    doc = json.loads(text)   # the whole-document format
    if not isinstance(doc, dict):
        raise ValueError("the state file is not a JSON object")
    return doc


class Journal:
    """The writer of a version-2 journal at ``path`` for ``runtime``.

    ``append(records, live)`` appends the records (dicts, in the shapes
    above); ``live`` is how many objects the state holds now, and decides
    compaction, which calls ``snapshot()`` for one record per live object.
    ``rewrite(records)`` replaces the file with the header and ``records``.
    The file stays open for appending between rewrites (an open and a close
    per change cost ten times the write); ``close()`` closes it. A
    ``buffered`` journal keeps appended records until ``flush()`` writes them
    in one ``write``: the kubelet flushes once per turn, where a pod start made
    three writes, each of which waited on ext4's journal while the apiserver
    beside it synced (60 µs of CPU a pod start, measured with a process
    calling ``fdatasync`` in a loop). A crash between a change and the flush
    loses that turn's changes, as if they had not been made.
    """

    def __init__(self, path: str, runtime: str, snapshot: Callable[[], Iterable[dict]],
                 buffered: bool = False) -> None:
        self.path = path
        self.buffered = buffered
        self._pending: list[str] = []   # encoded records not yet written (buffered)
        self.runtime = runtime
        self.snapshot = snapshot
        self.records: int | None = None   # records in the file; None until this writer rewrote it
        self._dir_made = False
        self._file: Any = None   # the file, open for appending, since this writer's last rewrite

    def _header(self) -> str:
        return json.dumps({"version": JOURNAL_VERSION, "runtime": self.runtime}) + "\n"

    def rewrite(self, records: Iterable[dict]) -> None:
        if not self._dir_made:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._dir_made = True
        lines = [json.dumps(r) for r in records]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self._header() + "".join(line + "\n" for line in lines))
        os.replace(tmp, self.path)
        self._pending.clear()   # the snapshot holds them
        self.records = len(lines)
        self.close()
        self._file = open(self.path, "ab", buffering=0)   # one write(2) per append

    def append(self, records: list[dict], live: int) -> None:
        if self.records is None or self.records + len(records) > COMPACT_SLACK + COMPACT_FACTOR * live:
            self.rewrite(self.snapshot())   # a fresh journal, or compaction
            return
        self._pending.extend(json.dumps(r) + "\n" for r in records)
        self.records += len(records)
        if not self.buffered:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        if self._file is None:   # closed since the last rewrite
            self._file = open(self.path, "ab", buffering=0)
        self._file.write("".join(self._pending).encode())
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
