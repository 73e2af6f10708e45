"""Litmus-style probes: one check each, against a running lab.

Contract
--------
``check(probe, ctx) -> (ok, detail)`` runs one attempt of a ``Probe`` (see
``lab.chaos.scenario``), bounded by ``probe.timeout``; it never raises (an
error is a failed attempt, its message the detail). ``ctx`` is a ``ProbeContext``
(the lab's client, its logs directory, the run's start time as RFC 3339, and
the environment for commands). ``attempt(probe, ctx, stop)`` runs up to
``1 + retries`` checks ``interval`` apart and returns the first pass or the
last failure. The types:

* ``k8s``: ``kind``, ``namespace``, ``resourceName`` or ``selector`` (a label
  selector), and ``condition: FIELD OP VALUE`` (dotted path, ``[i]`` indexes,
  ``conditions[type=Ready].status`` selects; with a selector every match must
  hold and there must be one, the field ``count`` is the number of matches) or
  ``operation: present|absent``.
* ``http``: ``url``, or ``service: ns/name`` (its ClusterIP, ``port``
  default the first port, ``path``); passes when the status is ``expect``
  (200). ``minSuccessRatio`` is for continuous modes (see the runner).
* ``cmd``: ``command`` (a list; ``kemu`` is this interpreter's ``kemu``),
  ``expectExit`` (0), ``expectOutput`` (a regex searched in stdout+stderr).
* ``log``: over the lab's merged log since the run started: records whose
  ``event`` matches the glob ``event`` (and ``component``, and every
  ``match`` key=value); ``present: true`` passes when there is one.
* ``metric``: over the samples the lab collected since the run started
  (``<labdir>/metrics/``, ``lab.metrics_store``): the series named ``metric``
  (from ``process``, with every ``labels`` key=value), summed per scrape, then
  ``aggregate``: ``last`` (the sum of each process's latest value), ``max`` or
  ``min`` (over every scrape), ``increase`` (each process's last minus first,
  summed) or ``quantile`` (``quantile`` of the histogram ``metric`` from each
  process's latest buckets, summed). ``condition`` is ``value OP NUMBER``. No
  sample yet is a failed attempt.
"""
from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lab.chaos.scenario import Probe

_SEG = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


@dataclass
class ProbeContext:
    client: Any
    logs: Path | None = None
    since: str = ""                      # RFC 3339: log probes look from here on
    env: dict[str, str] = field(default_factory=dict)


def field_value(obj: Any, path: str) -> Any:
    """``status.conditions[type=Ready].status`` / ``spec.containers[0].image`` → value or None."""
    cur = obj
    for m in _SEG.finditer(path):
        key, idx = m.group(1), m.group(2)
        if cur is None:
            return None
        if key is not None:
            cur = cur.get(key) if isinstance(cur, dict) else None
        elif "=" in idx:
            k, _, v = idx.partition("=")
            cur = next((x for x in cur if isinstance(x, dict) and str(x.get(k)) == v), None) \
                if isinstance(cur, list) else None
        else:
            try:
                cur = cur[int(idx)] if isinstance(cur, list) else None
            except (ValueError, IndexError):
                cur = None
    return cur


def compare(actual: Any, op: str, want: str) -> bool:
    if actual is None:
        actual = 0 if _num(want) is not None and op in (">=", "<=", ">", "<") else None
    a, w = _num(actual), _num(want)
    if a is not None and w is not None:
        x, y = a, w
    else:
        x, y = ("" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)), want
        if op not in ("==", "!="):
            return False
    return {"==": x == y, "!=": x != y, ">=": x >= y, "<=": x <= y, ">": x > y, "<": x < y}[op]


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _k8s(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    s = p.spec
    kind, ns = s["kind"], s.get("namespace")
    if s.get("resourceName"):
        try:
            objs = [ctx.client.get(kind, s["resourceName"], ns)]
        except Exception as e:   # noqa: BLE001
            if getattr(e, "code", "") != "NotFound":
                raise
            objs = []
        what = f"{kind} {ns + '/' if ns else ''}{s['resourceName']}"
    else:
        objs = [o for o in ctx.client.list(kind, ns, label_selector=s.get("selector"))["items"]
                if not (o.get("metadata") or {}).get("deletionTimestamp")]
        what = f"{kind}s {s.get('selector') or ''} in {ns or 'all namespaces'}"
    op = s.get("operation")
    if op:
        ok = bool(objs) == (op == "present")
        return ok, f"{what}: {len(objs)} found (want {op})"
    fld, cmp, want = s["_cond"]
    if fld == "count":
        ok = compare(len(objs), cmp, want)
        return ok, f"{what}: count={len(objs)} (want {cmp}{want})"
    if not objs:
        return False, f"{what}: not found"
    vals = [field_value(o, fld) for o in objs]
    ok = all(compare(v, cmp, want) for v in vals)
    shown = vals[0] if len(vals) == 1 else vals[:10]
    return ok, f"{what}: {fld}={shown} (want {cmp}{want})"


def _http_url(p: Probe | dict, ctx: ProbeContext) -> str:
    s = p.spec if isinstance(p, Probe) else p
    if s.get("url"):
        return str(s["url"])
    ns, _, name = str(s["service"]).partition("/")
    svc = ctx.client.get("Service", name, ns)
    ip = svc["spec"].get("clusterIP")
    port = s.get("port") or ((svc["spec"].get("ports") or [{}])[0].get("port") or 80)
    return f"http://{ip}:{port}{s.get('path') or '/'}"


def http_get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _http(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    url = _http_url(p, ctx)
    code = http_get(url, p.timeout)
    want = int(p.spec.get("expect", 200))
    return code == want, f"GET {url}: {code} (want {want})"


def _cmd(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    argv = [str(a) for a in p.spec["command"]]
    if argv[0] == "kemu":
        argv = [sys.executable, "-m", "lab.cli", *argv[1:]]
    env = {**os.environ, **ctx.env}
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=p.timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"{' '.join(p.spec['command'])}: timed out after {p.timeout:g}s"
    except OSError as e:
        return False, f"{' '.join(p.spec['command'])}: cannot run: {e.strerror or e}"
    want = int(p.spec.get("expectExit", 0))
    out = (r.stdout or "") + (r.stderr or "")
    if r.returncode != want:
        return False, f"exit code {r.returncode} (want {want}): {out.strip()[-200:]}"
    rx = p.spec.get("expectOutput")
    if rx is not None and not re.search(str(rx), out):
        return False, f"output does not match /{rx}/: {out.strip()[-200:]}"
    return True, f"exit code {r.returncode}" + (f", output matches /{rx}/" if rx is not None else "")


def _log(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    from lab.logs import Filter, timeline
    s = p.spec
    if ctx.logs is None:
        return False, "no lab log to read"
    flt = Filter(component=s.get("component"), since=ctx.since or None)
    match = {str(k): str(v) for k, v in (s.get("match") or {}).items()}
    found = None
    for rec, _raw in timeline(ctx.logs, flt):
        if fnmatch.fnmatchcase(str(rec.get("event", "")), str(s["event"])) and \
                all(str(rec.get(k)) == v for k, v in match.items()):
            found = rec
            break
    want = bool(s.get("present", True))
    desc = f"event {s['event']!r}" + (f" from {s['component']}" if s.get("component") else "")
    if found is not None:
        return want, f"{desc} found at {found.get('ts')}"
    return not want, f"{desc} not found"


def _metric(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    from lab import metrics_store
    s = p.spec
    if ctx.logs is None:
        return False, "no lab to read metrics from"
    mdir = Path(ctx.logs).parent / "metrics"
    name, agg = str(s["metric"]), s.get("aggregate", "last")
    want = {str(k): str(v) for k, v in (s.get("labels") or {}).items()}
    series_name = name + "_bucket" if agg == "quantile" else name
    per_proc: dict[str, list[tuple[str, float]]] = {}      # process -> [(ts, sum of the scrape)]
    buckets: dict[str, tuple[str, dict[float, float]]] = {}   # process -> (ts, le -> count)
    for ts, proc, sname, labels, value in metrics_store.read(mdir, name=series_name, process=s.get("process"),
                                                             since=ctx.since or None):
        if sname != series_name or any(str(labels.get(k)) != v for k, v in want.items()):
            continue
        if agg == "quantile":
            last_ts, les = buckets.get(proc, ("", {}))
            if ts != last_ts:
                les = {}
            le = float(labels.get("le", "inf"))
            les[le] = les.get(le, 0.0) + value
            buckets[proc] = (ts, les)
            continue
        rows = per_proc.setdefault(proc, [])
        if rows and rows[-1][0] == ts:
            rows[-1] = (ts, rows[-1][1] + value)
        else:
            rows.append((ts, value))
    what = f"{agg} of {name}" + (f" {s['quantile']}" if agg == "quantile" else "") + \
        (f" on {s['process']}" if s.get("process") else "")
    if agg == "quantile":
        # the files keep only the buckets that change; a missing le holds the count below it
        edges = sorted({le for _ts, les in buckets.values() for le in les})
        total = dict.fromkeys(edges, 0.0)
        for _ts, les in buckets.values():
            have = sorted(les.items())
            for le in edges:
                total[le] += max((n for b, n in have if b <= le), default=0.0)
        value = metrics_store.histogram_quantile(float(s["quantile"]), sorted(total.items()))
    elif not per_proc:
        value = None
    elif agg == "last":
        value = sum(rows[-1][1] for rows in per_proc.values())
    elif agg == "increase":
        value = sum(rows[-1][1] - rows[0][1] for rows in per_proc.values())
    else:
        pick = max if agg == "max" else min
        value = pick(v for rows in per_proc.values() for _ts, v in rows)
    _fld, op, limit = s["_cond"]
    if value is None:
        return False, f"{what}: no samples yet"
    return compare(value, op, limit), f"{what} = {value:g} (want {op}{limit})"


CHECKS: dict[str, Callable[[Probe, ProbeContext], tuple[bool, str]]] = {
    "k8s": _k8s, "http": _http, "cmd": _cmd, "log": _log, "metric": _metric}


def check(p: Probe, ctx: ProbeContext) -> tuple[bool, str]:
    """One attempt; errors are failures with their message."""
    try:
        return CHECKS[p.type](p, ctx)
    except Exception as e:   # noqa: BLE001 - a probe reports, it does not crash the run
        return False, f"{type(e).__name__}: {e}"


def attempt(p: Probe, ctx: ProbeContext, stop: threading.Event | None = None,
            deadline: float | None = None) -> tuple[bool, str, int]:
    """Up to ``1 + retries`` checks ``interval`` apart: (ok, detail, attempts)."""
    ok, detail, n = False, "not run", 0
    for i in range(p.retries + 1):
        n = i + 1
        ok, detail = check(p, ctx)
        if ok or i == p.retries:
            break
        if deadline is not None and time.monotonic() + p.interval > deadline:
            detail += " (the scenario's duration ended)"
            break
        if stop is not None:
            if stop.wait(p.interval):
                break
        else:
            time.sleep(p.interval)   # pacing between retries, as Litmus's interval
    return ok, detail, n
