"""What ``kemu lab logs`` keeps: the ``Filter``, its flags' parsing, and fault windows.

Contract: ``Filter(...)`` validates its fields when built and raises
``ValueError`` naming the flag (``--level``, ``--grep``, ``--event``) and the
fix. ``accepts(rec, raw)`` is the exact test. For speed the scanner first asks
cheap questions of the raw line: ``needles`` are substrings every matching
line contains (a necessary condition, never a sufficient one), ``anchor`` is
the most selective of them (searched for across a whole block of lines), and
``needs_record`` says whether ``json.loads`` is needed at all (``--grep``,
``--since`` and ``--until`` work on the raw line). Records without a ``level``
count as ``info``.

``--pod NAME`` matches a record that names the pod: ``name`` with ``kind``
Pod, or a ``pod`` field, as ``NAME`` or ``NAMESPACE/NAME``. ``--node NAME``
matches ``node``, ``nodeName``, a supervisor's ``process`` and a Node's
``name``. ``fault_window(logs_dir, id)`` reads ``chaos.jsonl``: from the
fault's ``fault_injected`` to its ``fault_healed`` (``None`` while active).
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_ALIASES = {"warn": "warning", "fatal": "critical", "exception": "error", "err": "error"}
_GLOB_SPECIAL = re.compile(r"\*|\?|\[[^\]]*\]")
_REGEX_SPECIAL = re.compile(r"[\\.^$*+?{}\[\]()|]")


def parse_since(spec: str, now: datetime | None = None, flag: str = "--since") -> str:
    """``30s``/``5m``/``2h`` ago, or an RFC 3339 time → an RFC 3339 UTC string to compare with ``ts``."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(spec.strip())
    if m:
        t = now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    else:
        try:
            t = datetime.fromisoformat(spec.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{flag}: {spec!r} is neither a duration (30s, 5m, 2h) nor a time "
                             "(2026-11-26T10:00:00Z)") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def level_of(rec: dict[str, Any]) -> int:
    lv = str(rec.get("level") or "info").lower()
    return LEVELS.get(_ALIASES.get(lv, lv), LEVELS["info"])


def _quoted(value: str) -> str | None:
    """``"value"`` as a JSON writer spells it, if that spelling is certain (ASCII, nothing escaped)."""
    q = json.dumps(value)
    return q if q == f'"{value}"' else None


def _glob_literal(glob: str) -> str | None:
    """The longest literal piece of a glob, if it is long enough to be worth a substring search."""
    pieces = [p for p in _GLOB_SPECIAL.split(glob) if p and _quoted(p)]
    best = max(pieces, key=len, default="")
    return best if len(best) >= 3 else None


@dataclass
class Filter:
    component: str | None = None
    node: str | None = None
    since: str | None = None          # RFC 3339 UTC, as ``parse_since`` returns
    until: str | None = None
    pod: str | None = None            # NAME or NAMESPACE/NAME
    level: str | None = None          # the minimum level
    event: str | None = None          # a glob
    grep: str | None = None           # a regular expression on the raw line
    needles: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    anchor: Callable[[str], Callable[[int], int]] | None = field(default=None, init=False, repr=False, compare=False)
    needs_record: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._min_level = 0
        if self.level:
            lv = self.level.strip().lower()
            lv = _ALIASES.get(lv, lv)
            if lv not in LEVELS:
                raise ValueError(f"--level: unknown level {self.level!r}: use debug, info, warning or error")
            self._min_level = LEVELS[lv]
        self._event_rx = re.compile(fnmatch.translate(self.event)) if self.event else None
        self._grep_rx = None
        if self.grep:
            try:
                self._grep_rx = re.compile(self.grep)
            except re.error as e:
                raise ValueError(f"--grep: bad regular expression {self.grep!r}: {e}") from None
        self._pod_ns, _, self._pod_name = (self.pod or "").rpartition("/")
        self._plan()

    def _plan(self) -> None:
        """The raw-line prefilters, most selective first; the first one is searched for per block."""
        needles: list[str] = []
        # A node or component is a whole JSON string; a pod's name may sit inside "ns/name".
        for q in (self.node and _quoted(self.node),
                  self._pod_name and _quoted(self._pod_name) and self._pod_name,
                  self.component and _quoted(self.component)):
            if q:
                needles.append(q)
        lit = _glob_literal(self.event) if self.event else None
        if lit:
            needles.append(lit)
        self.needles = needles
        self.needs_record = bool(self.component or self.node or self.pod or self.event
                                 or self._min_level > LEVELS["debug"])
        self._level_words = ([f'"{w}"' for w in (*LEVELS, *_ALIASES)
                              if LEVELS[_ALIASES.get(w, w)] >= self._min_level]
                             if self._min_level > LEVELS["info"] else [])
        literals = _literal_alternatives(self.grep) if self.grep else None
        if needles:
            self.anchor = _finder([needles[0]])
        elif literals:
            self.anchor = _finder(literals)
        elif self._grep_rx is not None and not re.search(r"\\[AZ]", self.grep or ""):
            self.anchor = _searcher(re.compile(self.grep or "", re.M))
        elif self._level_words:
            self.anchor = _finder(self._level_words)
        else:
            self.anchor = None

    def raw_ok(self, line: str, ts: str) -> bool:
        """The checks that need no parsing: needles, level words, time range, ``--grep``."""
        for n in self.needles:
            if n not in line:
                return False
        if self._level_words and not any(w in line for w in self._level_words):
            return False
        if self.since and ts and ts < self.since:
            return False
        if self.until and ts and ts > self.until:
            return False
        return self._grep_rx is None or self._grep_rx.search(line) is not None

    def accepts(self, rec: dict[str, Any], raw: str | None = None) -> bool:
        """The exact test of one record (``raw``, its line, for ``--grep``)."""
        if not self.fields_ok(rec):
            return False
        ts = str(rec.get("ts", ""))
        if self.since and ts < self.since:
            return False
        if self.until and ts > self.until:
            return False
        if self._grep_rx is not None:
            return self._grep_rx.search(raw if raw is not None else json.dumps(rec)) is not None
        return True

    def fields_ok(self, rec: dict[str, Any]) -> bool:
        """The checks that need the parsed record: component, node, pod, level, event."""
        if self.component and rec.get("component") != self.component:
            return False
        if self.node and self.node not in (rec.get("node"), rec.get("nodeName"), rec.get("process")) and \
                not (rec.get("kind") == "Node" and rec.get("name") == self.node):
            return False
        if self.pod and not self._names_pod(rec):
            return False
        if self._min_level and level_of(rec) < self._min_level:
            return False
        return self._event_rx is None or self._event_rx.match(str(rec.get("event", ""))) is not None

    def _names_pod(self, rec: dict[str, Any]) -> bool:
        ns, name = self._pod_ns, self._pod_name
        if rec.get("kind") == "Pod" and rec.get("name") == name and (not ns or rec.get("namespace") == ns):
            return True
        pod = rec.get("pod")
        if not isinstance(pod, str):
            return False
        p_ns, _, p_name = pod.rpartition("/")
        if p_name != name:
            return False
        if not ns:
            return True
        return (p_ns or rec.get("namespace")) == ns


def _literal_alternatives(pattern: str) -> list[str] | None:
    """``timed out|refused`` -> the literals, when a regex is nothing but alternative plain strings."""
    parts = pattern.split("|")
    if all(p and not _REGEX_SPECIAL.search(p) for p in parts):
        return parts
    return None


def _finder(needles: list[str]) -> Callable[[str], Callable[[int], int]]:
    """For one block: the position of the first of ``needles`` at or after ``pos`` (-1: none).

    Each needle's next position is remembered, so a block is scanned once per needle."""
    def bind(buf: str) -> Callable[[int], int]:
        if len(needles) == 1:
            needle = needles[0]
            return lambda pos: buf.find(needle, pos)
        nxt = [-2] * len(needles)

        def find(pos: int) -> int:
            best = -1
            for k, n in enumerate(needles):
                j = nxt[k]
                if j == -2 or (j != -1 and j < pos):
                    j = nxt[k] = buf.find(n, pos)
                if j != -1 and (best == -1 or j < best):
                    best = j
            return best
        return find
    return bind


def _searcher(rx: re.Pattern[str]) -> Callable[[str], Callable[[int], int]]:
    def bind(buf: str) -> Callable[[int], int]:
        def find(pos: int) -> int:
            m = rx.search(buf, pos)
            return -1 if m is None else m.start()
        return find
    return bind


def fault_window(logs_dir: Path, fault_id: str) -> tuple[str, str | None]:
    """(injected ts, healed ts or None while active) of a fault, from ``chaos.jsonl``."""
    start: str | None = None
    end: str | None = None
    path = Path(logs_dir) / "chaos.jsonl"
    try:
        f = open(path, errors="replace")
    except FileNotFoundError:
        f = None
    if f is not None:
        with f:
            for line in f:
                if fault_id not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or str(rec.get("id")) != fault_id:
                    continue
                if rec.get("event") == "fault_injected":
                    start, end = str(rec.get("ts", "")), None   # the latest injection wins
                elif rec.get("event") == "fault_healed" and start is not None and end is None:
                    end = str(rec.get("ts", ""))
    if start is None:
        raise ValueError(f"--fault: no fault {fault_id!r} in {path}; see 'kemu chaos list' "
                         "(or that file) for the fault IDs")
    return start, end
