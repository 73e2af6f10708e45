"""Output formats for the CLI: kubectl-style tables and ``-o json|yaml|name``.

Contract
--------
* Tables are built from a per-kind printer table: ``register_printer(kind,
  columns, wide_columns)`` adds (or replaces) the columns for a Kind, so a kind
  added to the registry later gets its own columns by registering them. A kind
  without a printer gets kubectl's default ``NAME AGE``. Built-in printers
  (pods, nodes, namespaces, configmaps, secrets, leases, events) live in
  ``emulator.cli.printers_core`` and are loaded on first use.
* ``render_table`` returns the text kubectl would print: upper-case headers,
  cells aligned like Go's tabwriter (``minwidth 6, padding 3``), an optional
  leading ``NAMESPACE`` column (``-A``), ``kind/name`` names when several kinds
  are shown, a trailing ``LABELS`` column (``--show-labels``).
* ``human_duration`` is apimachinery's ``HumanDuration`` (``5s``, ``3m2s``,
  ``2d3h``...); ``age`` formats a RFC 3339 timestamp the way the AGE column
  does (``<unknown>`` when missing).
* ``dump_json``/``dump_yaml`` print like kubectl: JSON indented by 4 with
  sorted keys (or insertion order for locally built objects), YAML with sorted
  keys, block sequences, ``|`` for multi-line strings and double quotes for
  strings that would otherwise read as numbers, booleans or null.
* ``as_list`` wraps several objects as kubectl's ``{"apiVersion": "v1",
  "kind": "List", "items": [...], "metadata": {"resourceVersion": ""}}``.
* ``object_name`` gives ``pod/web-1`` (``lease.coordination.k8s.io/x`` for
  grouped kinds), ``kind_label`` the ``pod`` / ``lease.coordination.k8s.io``
  part alone.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import yaml

from emulator.cli.tabwriter import TABLE, align

__all__ = ["Column", "Printer", "register_printer", "get_printer", "render_table",
           "render_rows", "column_widths", "format_rows", "human_duration", "age", "parse_time", "dump_json", "dump_yaml",
           "as_list", "object_name", "kind_label", "cell_or_none"]

CellFunc = Callable[[dict, float], Any]


@dataclass(frozen=True)
class Column:
    """One table column: its header and how to compute a cell from an object.

    ``func(obj, now)`` returns the cell; ``None`` prints as ``<none>``.
    """
    header: str
    func: CellFunc


@dataclass
class Printer:
    columns: list[Column]
    wide_columns: list[Column] = field(default_factory=list)
    # Header order of the wide table, when wide columns do not simply follow the
    # normal ones (kubectl's events put SUBOBJECT/SOURCE before MESSAGE).
    wide_order: list[str] | None = None

    def table_columns(self, wide: bool) -> list[Column]:
        if not wide:
            return list(self.columns)
        cols = list(self.columns) + list(self.wide_columns)
        if self.wide_order:
            by_header = {c.header: c for c in cols}
            cols = [by_header[h] for h in self.wide_order]
        return cols


_PRINTERS: dict[str, Printer] = {}
_builtins_loaded = False


def register_printer(kind: str, columns: Sequence[Column | tuple[str, CellFunc]],
                     wide_columns: Sequence[Column | tuple[str, CellFunc]] = (), *,
                     wide_order: Sequence[str] | None = None) -> None:
    """Register the table columns for ``kind`` (a canonical Kind, e.g. ``"Pod"``).

    ``columns`` are shown always, ``wide_columns`` are added with ``-o wide``
    (after the normal ones, or in ``wide_order`` when given). Columns are
    ``Column`` objects or ``(header, func)`` pairs.
    """
    def norm(cs: Iterable[Column | tuple[str, CellFunc]]) -> list[Column]:
        return [c if isinstance(c, Column) else Column(c[0], c[1]) for c in cs]

    printer = Printer(norm(columns), norm(wide_columns), list(wide_order) if wide_order else None)
    if printer.wide_order is not None:
        headers = {c.header for c in printer.columns + printer.wide_columns}
        unknown = [h for h in printer.wide_order if h not in headers]
        if unknown:
            raise ValueError(f"wide_order names unknown columns {unknown} for kind {kind}")
    _PRINTERS[kind] = printer


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        import emulator.cli.printers_apps  # noqa: F401  (each registers on import)
        import emulator.cli.printers_core  # noqa: F401
        import emulator.cli.printers_network  # noqa: F401
        import emulator.cli.printers_policy  # noqa: F401
        import emulator.cli.printers_storage  # noqa: F401


def get_printer(kind: str) -> Printer:
    """The printer for ``kind``; kubectl's default ``NAME AGE`` when none is registered."""
    _load_builtins()
    return _PRINTERS.get(kind) or DEFAULT_PRINTER


# -- time --------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(ts: Any) -> float | None:
    """Seconds since the epoch for a RFC 3339 timestamp (``None`` if absent or bad)."""
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return float(ts)
    if not isinstance(ts, str) or not ts:
        return None
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def age(ts: Any, now: float | None = None) -> str:
    """kubectl's ``translateTimestampSince``: the AGE cell for a timestamp."""
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    return human_duration((time.time() if now is None else now) - t)


# -- tables ------------------------------------------------------------------

def cell_or_none(v: Any) -> str:
    if v is None:
        return "<none>"
    return str(v)


def _name(obj: dict, now: float) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _age(obj: dict, now: float) -> str:
    return age((obj.get("metadata") or {}).get("creationTimestamp"), now)


NAME_COLUMN = Column("NAME", _name)
AGE_COLUMN = Column("AGE", _age)
DEFAULT_PRINTER = Printer([NAME_COLUMN, AGE_COLUMN])


def kind_label(kind: str, group: str = "") -> str:
    """``pod``, ``lease.coordination.k8s.io``: how kubectl names a kind in messages."""
    return f"{kind.lower()}.{group}" if group else kind.lower()


def object_name(kind: str, group: str, name: str) -> str:
    """``-o name`` output: ``pod/web-1``."""
    return f"{kind_label(kind, group)}/{name}"


def _labels_cell(obj: dict) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def render_rows(kind: str, objs: Iterable[dict], *, wide: bool = False,
                with_namespace: bool = False, with_kind: str | None = None,
                show_labels: bool = False, headers: bool = True,
                now: float | None = None) -> list[list[str]]:
    """The table as rows of cells (first row the header when ``headers``)."""
    now = time.time() if now is None else now
    cols = get_printer(kind).table_columns(wide)
    rows: list[list[str]] = []
    if headers:
        head = ([("NAMESPACE")] if with_namespace else []) + [c.header for c in cols]
        if show_labels:
            head.append("LABELS")
        rows.append(head)
    for obj in objs:
        row = []
        if with_namespace:
            row.append((obj.get("metadata") or {}).get("namespace", ""))
        for i, c in enumerate(cols):
            try:
                v = c.func(obj, now)
            except Exception:  # a malformed object must not stop the listing
                v = "<error>"
            v = cell_or_none(v)
            if i == 0 and with_kind:
                v = f"{with_kind}/{v}"
            row.append(v)
        if show_labels:
            row.append(_labels_cell(obj))
        rows.append(row)
    return rows


def column_widths(rows: list[list[str]], minwidth: int, padding: int) -> list[int]:
    """Widths of every column but the last, as Go's tabwriter computes them."""
    n = max((len(r) for r in rows), default=0)
    return [max([minwidth] + [len(r[j]) + padding for r in rows if j < len(r) - 1])
            for j in range(n - 1)]


def format_rows(rows: list[list[str]], widths: list[int], padding: int) -> str:
    """Rows padded to remembered ``widths`` (never closer than one space)."""
    lines = []
    for r in rows:
        cells = [c.ljust(max(widths[j] if j < len(widths) else 0,
                             len(c) + (1 if j < len(widths) else padding)))
                 if j < len(r) - 1 else c for j, c in enumerate(r)]
        lines.append("".join(cells) + "\n")
    return "".join(lines)


def render_table(kind: str, objs: Iterable[dict], **kw: Any) -> str:
    """The text of a kubectl table for ``objs`` of ``kind`` (see ``render_rows``)."""
    rows = render_rows(kind, objs, **kw)
    if not rows:
        return ""
    text = "".join("\t".join(c.replace("\t", " ").replace("\n", " ") for c in r) + "\n"
                   for r in rows)
    return align(text, *TABLE)


# -- -o json / yaml ----------------------------------------------------------

def as_list(items: list[dict]) -> dict:
    """kubectl's wrapper for several objects under ``-o json|yaml``."""
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def dump_json(obj: Any, *, sort_keys: bool = True) -> str:
    return json.dumps(obj, indent=4, sort_keys=sort_keys, ensure_ascii=False) + "\n"


class _Dumper(yaml.SafeDumper):
    """PyYAML tuned to print like Go's yaml (as kubectl uses it)."""


def _represent_str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    # Go quotes with double quotes the strings that would read as another type.
    tag = dumper.resolve(yaml.ScalarNode, s, (True, False))
    if tag != "tag:yaml.org,2002:str":
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(obj: Any, *, sort_keys: bool = True) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False,
                     allow_unicode=True, width=1 << 30)
