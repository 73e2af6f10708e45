"""What a report reads: a lab directory or a scenario run directory, as plain data.

Contract
--------
``load_source(path) -> Source``: ``path`` is a lab directory (it has ``logs/``;
``metrics/`` and ``run/`` may be absent) or a run directory written by
``lab.chaos.scenario_run`` (it has ``result.json`` and ``timeline.jsonl``).
Anything else raises ``ReportError``. Log records come from
``lab.logs.timeline`` (a lab) or ``timeline.jsonl`` (a run), streamed; only
the events the SLIs read (``EVENTS``, and every chaos record) are kept, each
with ``_t`` added (its ``ts`` as seconds since the epoch); ``start``/``end``
span every record (and the load). ``faults`` are the windows of
the chaos log (``fault_injected`` to ``fault_healed``, or to the end of the
log when never healed). Metrics are read only through
``lab.metrics_store.read``; ``Source.metrics()`` returns that reader bound to
the metrics directory and the source's time range, or None when the module
or the directory is missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


class ReportError(Exception):
    """Bad input: the message names the flag and the fix."""


def ts_of(s: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Fault:
    id: str
    kind: str
    targets: list[str]
    start: float
    end: float
    healed: bool
    target: str = ""


@dataclass
class Source:
    kind: str                     # "lab" or "run"
    dir: Path
    name: str
    records: list[dict[str, Any]]
    load: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    metrics_dir: Path | None = None
    faults: list[Fault] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    reader: Callable[..., Iterator[tuple]] | None = None   # tests inject a metrics reader

    def metrics(self) -> Callable[..., Iterator[tuple]] | None:
        """``read(name=None, process=None)`` over this source's metrics, or None."""
        if self.metrics_dir is None or not self.metrics_dir.is_dir():
            return None
        read = self.reader
        if read is None:
            try:
                from lab.metrics_store import read   # type: ignore[no-redef]
            except ImportError:
                return None
        since, until = _rfc(self.start), _rfc(self.end)
        mdir = self.metrics_dir

        def bound(name: str | None = None, process: str | None = None) -> Iterator[tuple]:
            return read(mdir, name=name, process=process, since=since, until=until)
        return bound


def _rfc(t: float) -> str:
    from datetime import timezone
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


# The events the SLIs and the plots read; only these are kept, so memory follows them, not the log's size.
EVENTS = frozenset({
    "pod_created", "pods_created", "daemon_pod_created", "job_pod_created", "statefulset_pod_created",
    "container_started", "pod_evicted", "pod_deletion_confirmed", "node_registered", "node_adopted",
    "node_ready", "node_not_ready", "node_status_unknown", "endpointslice_sync", "proxy_sync",
    "scheduler_started", "scheduler_stopping", "process started", "process exited"})


def _stamp(recs: Iterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], float | None, float | None]:
    """The records the report uses, in time order, and the first and last ``ts`` of all of them."""
    out = []
    lo = hi = None
    for r in recs:
        ts = r.get("ts")
        if isinstance(ts, str):
            lo = ts if lo is None or ts < lo else lo
            hi = ts if hi is None or ts > hi else hi
        if r.get("event") not in EVENTS and r.get("component") != "chaos":
            continue
        t = ts_of(ts)
        if t is not None:
            r["_t"] = t
            out.append(r)
    out.sort(key=lambda r: r["_t"])   # stable: a process's own order is kept
    return out, ts_of(lo) if lo else None, ts_of(hi) if hi else None


def load_source(path: str | Path, flag: str = "--run") -> Source:
    d = Path(path)
    if not d.is_dir():
        raise ReportError(f"{flag}: {d} is not a directory: give a lab directory or a scenario run directory")
    if (d / "result.json").is_file():
        return _run_source(d)
    if (d / "logs").is_dir():
        return _lab_source(d)
    raise ReportError(f"{flag}: {d} is neither a lab directory (it has no logs/) nor a scenario run "
                      "directory (it has no result.json): give --lab NAME or --run DIR")


def _lab_source(d: Path) -> Source:
    from lab.logs import timeline
    recs, lo, hi = _stamp(rec for rec, _raw in timeline(d / "logs"))
    name = d.name
    try:
        name = json.loads((d / "lab.json").read_text()).get("name") or name
    except (OSError, ValueError, AttributeError):
        pass
    src = Source("lab", d, name, recs, metrics_dir=d / "metrics")
    _bounds(src, lo, hi)
    return src


def _run_source(d: Path) -> Source:
    try:
        result = json.loads((d / "result.json").read_text())
    except ValueError as e:
        raise ReportError(f"--run: {d / 'result.json'} is not JSON ({e}): is this a run directory?") from None
    recs, lo, hi = _stamp(_read_jsonl(d / "timeline.jsonl"))
    load = [r for r in _read_jsonl(d / "load.jsonl")]
    for r in load:
        r["_t"] = ts_of(r.get("ts"))
    load = [r for r in load if r["_t"] is not None]
    scenario = None
    try:
        scenario = yaml.safe_load((d / "scenario.yaml").read_text())
    except (OSError, yaml.YAMLError):
        pass
    mdir = d / "metrics"
    if not mdir.is_dir():   # the lab's own, when it is still there
        lab_dir = (result.get("lab") or {}).get("dir")
        mdir = Path(lab_dir) / "metrics" if lab_dir else mdir
    src = Source("run", d, str(result.get("name") or d.name), recs, load=load, result=result,
                 scenario=scenario if isinstance(scenario, dict) else None, metrics_dir=mdir)
    _bounds(src, lo, hi)
    if result.get("started"):
        src.start = min(src.start, ts_of(result["started"]) or src.start)
    if result.get("ended"):
        src.end = max(src.end, ts_of(result["ended"]) or src.end)
    return src


def _bounds(src: Source, lo: float | None, hi: float | None) -> None:
    ts = [t for t in (lo, hi) if t is not None] + [r["_t"] for r in src.records] + [r["_t"] for r in src.load]
    src.start = min(ts) if ts else 0.0
    src.end = max(ts) if ts else 0.0
    src.faults = fault_windows(src.records, src.end)


def fault_windows(records: list[dict[str, Any]], end: float) -> list[Fault]:
    faults: dict[str, Fault] = {}
    for r in records:
        if r.get("component") != "chaos":
            continue
        fid = str(r.get("id"))
        if r.get("event") == "fault_injected":
            faults[fid] = Fault(fid, str(r.get("kind")), [str(t) for t in r.get("targets") or []],
                                r["_t"], end, False, str(r.get("target") or ""))
        elif r.get("event") == "fault_healed" and fid in faults:
            faults[fid].end, faults[fid].healed = r["_t"], True
    return sorted(faults.values(), key=lambda f: f.start)
