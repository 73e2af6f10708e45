"""``kemu describe`` output, laid out as kubectl's describers lay it out.

Contract
--------
* ``describe(obj, rt, events, extra)`` returns the description text of one
  object: kind-specific describers for Pod, Node, Namespace, ConfigMap and
  Secret, and kubectl's generic describer (every field, camelCase keys shown
  as ``Title Case``) for any other kind. ``events`` is the list of Events
  about the object (``None`` = the kind shows no events); ``extra`` carries
  what a describer needs from other objects (a node's lease and pods).
* ``register_describer(kind, fn)`` lets a kind added later get its own
  describer; ``fn(obj, events, extra) -> str``.
* ``Writer`` is kubectl's PrefixWriter: ``w.line(level, text)`` with two
  spaces per level and tab-separated cells, aligned like Go's tabwriter
  (``minwidth 0, padding 2``) when ``w.text()`` is called; ``w.flush()``
  closes an alignment block as kubectl's ``Flush`` does.
"""
from __future__ import annotations

import base64
import re
import time
from datetime import datetime
from typing import Any, Callable

from emulator.cli.merge import LAST_APPLIED
from emulator.cli.printers import age, parse_time
from emulator.cli.tabwriter import DESCRIBE, align

__all__ = ["Writer", "describe", "register_describer", "rfc1123z", "labels_block",
           "annotations_block", "events_block", "sort_events"]

MAX_ANNOTATION_LEN = 140
ZERO_TIME = "Mon, 01 Jan 0001 00:00:00 +0000"

Describer = Callable[[dict, "list[dict] | None", dict], str]
_DESCRIBERS: dict[str, Describer] = {}


class Writer:
    """kubectl's PrefixWriter over a tabwriter."""

    def __init__(self) -> None:
        self._done: list[str] = []
        self._buf: list[str] = []

    def write(self, level: int, text: str) -> None:
        self._buf.append("  " * level + text)

    def line(self, level: int, text: str) -> None:
        self.write(level, text + "\n")

    def flush(self) -> None:
        self._done.append(align("".join(self._buf), *DESCRIBE))
        self._buf = []

    def text(self) -> str:
        self.flush()
        return "".join(self._done)


def register_describer(kind: str, fn: Describer) -> None:
    _DESCRIBERS[kind] = fn


def rfc1123z(ts: Any) -> str:
    """Go's ``time.RFC1123Z`` in local time (the zero time when unset)."""
    t = parse_time(ts)
    if t is None:
        return ZERO_TIME
    return datetime.fromtimestamp(t).astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


def _md(obj: dict) -> dict:
    return obj.get("metadata") or {}


def labels_block(w: Writer, title: str, labels: dict | None, level: int = 0) -> None:
    """``printLabelsMultiline``: ``Labels:  a=b`` then aligned continuation lines."""
    w.write(level, f"{title}:\t")
    if not labels:
        w.write(0, "<none>\n")
        return
    for i, k in enumerate(sorted(labels)):
        if i:
            w.write(level, "\t")
        w.write(0, f"{k}={labels[k]}\n")


def annotations_block(w: Writer, title: str, annotations: dict | None) -> None:
    """``printAnnotationsMultiline``: skips the last-applied configuration."""
    w.write(0, f"{title}:\t")
    keys = sorted(k for k in (annotations or {}) if k != LAST_APPLIED)
    if not keys:
        w.write(0, "<none>\n")
        return
    for i, k in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = str(annotations[k]).removesuffix("\n")   # type: ignore[index]
        if len(value) + len(k) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{k}:\n")
            for s in value.split("\n"):
                if len(s) > MAX_ANNOTATION_LEN - 2:
                    s = s[:MAX_ANNOTATION_LEN - 2] + "..."
                w.write(0, f"\t  {s}\n")
        else:
            w.write(0, f"{k}: {value}\n")


def sort_events(events: list[dict]) -> list[dict]:
    def key(e: dict) -> float:
        t = parse_time(e.get("lastTimestamp")) or parse_time(e.get("eventTime")) \
            or parse_time(e.get("firstTimestamp"))
        return t or 0.0
    return sorted(events, key=key)


def events_block(w: Writer, events: list[dict], now: float | None = None) -> None:
    """kubectl's ``DescribeEvents``."""
    now = time.time() if now is None else now
    if not events:
        w.line(0, "Events:\t<none>")
        return
    w.flush()
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.line(1, "----\t------\t----\t----\t-------")
    for e in sort_events(events):
        first = age(e.get("eventTime"), now) if e.get("eventTime") \
            else age(e.get("firstTimestamp"), now)
        series = e.get("series")
        count = int(e.get("count") or 0)
        if series:
            interval = (f"{age(series.get('lastObservedTime'), now)} "
                        f"(x{series.get('count', 0)} over {first})")
        elif count > 1:
            interval = f"{age(e.get('lastTimestamp'), now)} (x{count} over {first})"
        else:
            interval = first
        source = (e.get("source") or {}).get("component") or e.get("reportingController") or ""
        msg = (e.get("message") or e.get("note") or "").strip()
        w.line(1, f"{e.get('type', '')}\t{e.get('reason', '')}\t{interval}\t{source}\t{msg}")


# -- generic -----------------------------------------------------------------

_ACRONYMS = {"API", "URL", "UID", "GUID"}


def smart_label(field: str) -> str:
    """kubectl's ``smartLabelFor``: ``podIPs`` -> ``Pod I Ps``-free ``Pod IPs``."""
    if any(not (c.isalpha() or c == "-") for c in field):
        return field
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z]?[a-z]+|[A-Z]+|-", field)
    out = []
    for p in parts:
        if p.upper() in _ACRONYMS:
            out.append(p.upper())
        elif p.islower():
            out.append(p.title())
        else:
            out.append(p)
    return " ".join(out)


def _unstructured(w: Writer, level: int, content: dict, prefix: str, skip: set[str]) -> None:
    for field in sorted(content):
        value = content[field]
        path = f"{prefix}.{field}"
        if path in skip:
            continue
        if isinstance(value, dict):
            w.line(level, f"{smart_label(field)}:")
            _unstructured(w, level + 1, value, path, skip)
        elif isinstance(value, list):
            w.line(level, f"{smart_label(field)}:")
            for child in value:
                if isinstance(child, dict):
                    _unstructured(w, level + 1, child, path, skip)
                else:
                    w.line(level + 1, _go_value(child))
        else:
            w.line(level, f"{smart_label(field)}:\t{_go_value(value)}")


def _go_value(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _header(obj: dict) -> tuple[Writer, dict]:
    """The lines every namespaced describer starts with: Name, Namespace, Labels, Annotations."""
    w = Writer()
    md = _md(obj)
    w.line(0, f"Name:\t{md.get('name', '')}")
    w.line(0, f"Namespace:\t{md.get('namespace', '')}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    return w, md


def describe_generic(obj: dict, events: list[dict] | None, extra: dict) -> str:
    w, md = _header(obj)
    _unstructured(w, 0, obj, "", {".metadata.managedFields", ".metadata.name",
                                  ".metadata.namespace", ".metadata.labels",
                                  ".metadata.annotations"})
    if events is not None:
        events_block(w, events)
    return w.text()


# -- simple kinds ------------------------------------------------------------

def describe_configmap(obj: dict, events: list[dict] | None, extra: dict) -> str:
    w, md = _header(obj)
    w.write(0, "\nData\n====\n")
    for k, v in sorted((obj.get("data") or {}).items()):
        w.write(0, f"{k}:\n----\n")
        w.write(0, f"{v}\n")
        w.write(0, "\n")
    w.write(0, "\nBinaryData\n====\n")
    for k, v in sorted((obj.get("binaryData") or {}).items()):
        try:
            n = len(base64.b64decode(v))
        except Exception:
            n = len(v)
        w.write(0, f"{k}: {n} bytes\n")
    w.write(0, "\n")
    if events is not None:
        events_block(w, events)
    return w.text()


def describe_secret(obj: dict, events: list[dict] | None, extra: dict) -> str:
    w, md = _header(obj)
    w.write(0, f"\nType:\t{obj.get('type', '')}\n")
    w.write(0, "\nData\n====\n")
    for k, v in sorted((obj.get("data") or {}).items()):
        try:
            raw = base64.b64decode(v)
        except Exception:
            raw = str(v).encode()
        if k == "token" and obj.get("type") == "kubernetes.io/service-account-token":
            w.write(0, f"{k}:\t{raw.decode(errors='replace')}\n")
        else:
            w.write(0, f"{k}:\t{len(raw)} bytes\n")
    return w.text()


def describe_namespace(obj: dict, events: list[dict] | None, extra: dict) -> str:
    w = Writer()
    md = _md(obj)
    w.line(0, f"Name:\t{md.get('name', '')}")
    labels_block(w, "Labels", md.get("labels"))
    annotations_block(w, "Annotations", md.get("annotations"))
    status = obj.get("status") or {}
    w.line(0, f"Status:\t{status.get('phase', '')}")
    conds = status.get("conditions") or []
    if conds:
        w.line(0, "Conditions:")
        w.line(1, "Type\tStatus\tLastTransitionTime\tReason\tMessage")
        w.line(1, "----\t------\t------------------\t------\t-------")
        for c in conds:
            w.line(1, f"{c.get('type', '')}\t{c.get('status', '')}\t"
                      f"{rfc1123z(c.get('lastTransitionTime'))}\t{c.get('reason', '')}\t"
                      f"{c.get('message', '')}")
    w.write(0, "\n")
    w.write(0, "No resource quota.\n")
    w.write(0, "\n")
    w.write(0, "No LimitRange resource.\n")
    return w.text()


def describe(obj: dict, rt: Any, events: list[dict] | None, extra: dict | None = None) -> str:
    """The description of ``obj`` (of ResourceType ``rt``)."""
    import emulator.cli.describers_core  # noqa: F401  (registers Pod and Node)
    import emulator.cli.describers_storage  # noqa: F401  (registers PersistentVolume(Claim))
    import emulator.cli.printers_policy  # noqa: F401  (registers PodDisruptionBudget)
    fn = _DESCRIBERS.get(rt.kind, describe_generic)
    return fn(obj, events, extra or {})


register_describer("ConfigMap", describe_configmap)
register_describer("Secret", describe_secret)
register_describer("Namespace", describe_namespace)
