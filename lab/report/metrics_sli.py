"""The SLIs that come from the metrics (``<labdir>/metrics/``, read through ``lab.metrics_store.read``).

Contract: every function takes ``read(name=None, process=None)`` yielding
``(ts, process, name, labels, value)`` (see ``Source.metrics``) and returns a
dict with units and definitions, or ``{"available": False, "reason": ...}``.
Counters (and histogram buckets, which are counters) are taken as totals over
the window: the last scrape's value plus the value before each reset (a
process restart), summed over processes. Quantiles of a histogram are
Prometheus' ``histogram_quantile``: linear interpolation inside the bucket that
holds the rank, the upper bound of the last finite bucket when the rank falls
in ``+Inf``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterator

from lab.report.source import ts_of

Reader = Callable[..., Iterator[tuple]]

API_SLO = ("p99 of apiserver_request_duration_seconds per verb (summed over resources), by "
           "histogram_quantile over the run; WATCH is excluded as in Kubernetes. The SLO: 1 s for "
           "single-object calls (GET, CREATE, UPDATE, PATCH, DELETE); LIST's is 30 s (Kubernetes' bound for "
           "cluster-scoped lists).")
POD_START_METRIC = "histogram_quantile of kubelet_pod_start_sli_duration_seconds, summed over the nodes."
SCHED_LAT = ("histogram_quantile of scheduler_scheduling_attempt_duration_seconds{result=\"scheduled\"}: "
             "from taking the pod off the queue to its binding being sent.")
SCHED_TPUT = ("scheduler_schedule_attempts_total{result=\"scheduled\"}, counting from 0 at the start: the total "
              "over the time to the last scrape (mean), and the largest increase between two scrapes divided "
              "by their interval (peak).")
RESOURCES = ("CPU: the increase of process_cpu_seconds_total between scrapes over their interval (cores); "
             "memory: process_resident_memory_bytes.")


def _samples(read: Reader, sample: str, base: str) -> list[tuple]:
    got = [s for s in read(name=sample) if s[2] == sample]
    if not got:
        got = [s for s in read(name=base) if s[2] == sample]
    return got


def _series(samples: list[tuple], drop: tuple[str, ...] = ()) -> dict[tuple, list[tuple[float, float]]]:
    out: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for ts, proc, _name, labels, value in samples:
        t = ts_of(ts)
        if t is None:
            continue
        key = (proc, tuple(sorted((k, str(v)) for k, v in (labels or {}).items() if k not in drop)))
        out[key].append((t, float(value)))
    for v in out.values():
        v.sort()
    return out


def counter_total(points: list[tuple[float, float]]) -> float:
    """The last value plus the value before each reset."""
    total, prev = 0.0, None
    for _t, v in points:
        if prev is not None and v < prev:
            total += prev
        prev = v
    return total + (prev or 0.0)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets."""
    b = sorted(buckets)
    if not b or b[-1][1] <= 0:
        return None
    total = b[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def _histograms(read: Reader, base: str, group: tuple[str, ...], where: dict[str, str] | None = None
                ) -> dict[tuple, list[tuple[float, float]]]:
    """group-label values → cumulative buckets (le, count), totals summed over processes and other labels.

    The collector trims buckets (``lab.metrics_store``): a missing ``le`` holds the count of the next
    lower one present (0 below the first). So each scrape's buckets are filled in on the union of every
    ``le`` seen before series are summed."""
    scrapes: dict[tuple, dict[float, float]] = defaultdict(dict)   # (t, proc, labels) → {le: count}
    les: set[float] = set()
    for ts, proc, _name, labels, value in _samples(read, base + "_bucket", base):
        lab = {k: str(v) for k, v in (labels or {}).items()}
        if where and any(lab.get(k) != v for k, v in where.items()):
            continue
        t = ts_of(ts)
        try:
            le = float(lab.pop("le", "nan"))
        except ValueError:
            continue
        if t is None or math.isnan(le):
            continue
        les.add(le)
        scrapes[(t, proc, tuple(sorted(lab.items())))][le] = float(value)
    series: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (t, proc, labels), present in sorted(scrapes.items()):
        count = 0.0
        for le in sorted(les):
            count = present.get(le, count)
            series[(proc, labels, le)].append((t, count))
    sums: dict[tuple, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (_proc, labels, le), pts in series.items():
        lab = dict(labels)
        sums[tuple(lab.get(g, "") for g in group)][le] += counter_total(pts)
    return {k: sorted(v.items()) for k, v in sums.items()}


def _quantiles(buckets: list[tuple[float, float]], unit: str = "s") -> dict[str, Any]:
    r = lambda v: None if v is None else round(v, 6)   # noqa: E731
    return {"unit": unit, "count": int(buckets[-1][1]) if buckets else 0,
            "p50": r(histogram_quantile(0.5, buckets)), "p90": r(histogram_quantile(0.9, buckets)),
            "p99": r(histogram_quantile(0.99, buckets))}


def api_latency(read: Reader | None) -> dict[str, Any]:
    if read is None:
        return {"available": False, "definition": API_SLO,
                "reason": "not available: no metrics (no metrics/ directory or no lab.metrics_store)"}
    hist = _histograms(read, "apiserver_request_duration_seconds", ("verb",))
    by_verb = {}
    for (verb,), buckets in sorted(hist.items()):
        v = verb.upper()
        if v == "WATCH" or not buckets:
            continue
        q = _quantiles(buckets)
        slo = 30.0 if v == "LIST" else 1.0
        q.update(slo_s=slo, slo_met=None if q["p99"] is None else q["p99"] <= slo)
        by_verb[v] = q
    if not by_verb:
        return {"available": False, "definition": API_SLO,
                "reason": "not available: the metrics hold no apiserver_request_duration_seconds"}
    return {"available": True, "definition": API_SLO, "unit": "s", "by_verb": by_verb}


def pod_startup_metric(read: Reader | None) -> dict[str, Any] | None:
    if read is None:
        return None
    hist = _histograms(read, "kubelet_pod_start_sli_duration_seconds", ())
    buckets = hist.get(())
    if not buckets or buckets[-1][1] <= 0:
        return None
    return {"definition": POD_START_METRIC, **_quantiles(buckets)}


def scheduling(read: Reader | None, start: float | None = None) -> dict[str, Any] | None:
    """``start``: when the window starts; the counter counts from 0 there (the scheduler starts in it)."""
    if read is None:
        return None
    out: dict[str, Any] = {}
    hist = _histograms(read, "scheduler_scheduling_attempt_duration_seconds", (), {"result": "scheduled"})
    if hist.get(()) and hist[()][-1][1] > 0:
        out["latency"] = {"definition": SCHED_LAT, **_quantiles(hist[()])}
    series = [pts for (_p, labels), pts in _series(_samples(read, "scheduler_schedule_attempts_total",
                                                            "scheduler_schedule_attempts")).items()
              if dict(labels).get("result") == "scheduled"]
    if start is not None:
        series = [[(start, 0.0)] + p if p[0][0] > start else p for p in series]
    if series:
        total = sum(counter_total(p) for p in series)
        t0 = min(p[0][0] for p in series)
        t1 = max(p[-1][0] for p in series)
        peak = 0.0
        for pts in series:
            for (ta, va), (tb, vb) in zip(pts, pts[1:]):
                if tb > ta:
                    peak = max(peak, (vb - va if vb >= va else vb) / (tb - ta))
        out["throughput"] = {"definition": SCHED_TPUT, "unit": "pods/s", "pods_bound": int(total),
                             "mean": round(total / (t1 - t0), 6) if t1 > t0 else None,
                             "peak": round(peak, 6)}
    return out or None


def process_resources(read: Reader | None) -> dict[str, Any]:
    if read is None:
        return {"available": False, "definition": RESOURCES,
                "reason": "not available: no metrics (no metrics/ directory or no lab.metrics_store)"}
    cpu: dict[str, list[tuple[float, float]]] = {}
    for (proc, _l), pts in _series(_samples(read, "process_cpu_seconds_total", "process_cpu_seconds")).items():
        rates = []
        for (ta, va), (tb, vb) in zip(pts, pts[1:]):
            if tb > ta:
                rates.append((tb, (vb - va if vb >= va else vb) / (tb - ta)))
        cpu[proc] = rates
    rss: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (proc, _l), pts in _series(_samples(read, "process_resident_memory_bytes",
                                            "process_resident_memory_bytes")).items():
        rss[proc] += pts
    procs = {}
    for p in sorted(set(cpu) | set(rss)):
        c, m = cpu.get(p, []), sorted(rss.get(p, []))
        procs[p] = {"cpu_mean_cores": round(sum(v for _t, v in c) / len(c), 6) if c else None,
                    "cpu_max_cores": round(max(v for _t, v in c), 6) if c else None,
                    "rss_max_bytes": int(max(v for _t, v in m)) if m else None,
                    "rss_last_bytes": int(m[-1][1]) if m else None}
    if not procs:
        return {"available": False, "definition": RESOURCES,
                "reason": "not available: the metrics hold no process_* samples"}
    return {"available": True, "definition": RESOURCES, "processes": procs,
            "series": {"cpu_cores": cpu, "rss_bytes": dict(rss)}}
