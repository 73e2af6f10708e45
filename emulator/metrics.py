"""Each lab process's Prometheus metrics: its registry, metric helpers and the ``metrics`` ctl op.

Contract
--------
* ``registry()`` is this process's ``prometheus_client.CollectorRegistry``. It
  is created on first use in each process (a forked child that calls it gets
  a new one: nothing is shared with the zygote), with a ``ProcessCollector``
  (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...,
  read from ``/proc`` at scrape time). ``_created`` samples are off.
* ``counter``, ``gauge`` and ``histogram(name, doc, labelnames, buckets)``
  return the process's metric of that name, creating it on first use, so
  several instances of a component in one process (tests) share it.
* ``loop_histogram`` and ``loop_counter`` are the same for a single-threaded
  hot loop (the apiserver's request path): ``observe(labels, value)`` /
  ``inc(labels)`` take no lock and cost a dict lookup, a bisect and two adds;
  the scrape reads them (a scrape racing a loop turn may be one observation
  behind; ``_count`` always equals the ``+Inf`` bucket).
* ``collector(name, fn)`` registers a callback collector once: ``fn()``
  yields metric families at scrape time, so a value the component already
  counts (watch events sent) costs nothing per event.
* ``families()`` is ``[[name, type, help, [[sample, labels, value], ...]], ...]``
  of every metric now; ``text()`` is the Prometheus text exposition.
* ``handle(args)`` is the ``metrics`` ctl op: ``{"text": exposition}``; with
  ``{"format": "families"}`` it answers ``{"families": families()}`` instead,
  which the lab's collector uses (no text to parse). ``install(server)`` adds
  it to a ``ctl.CtlServer`` (``ctl.current`` by default).
"""
from __future__ import annotations

import os
import threading
from bisect import bisect_left
from typing import Any, Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

__all__ = ["DEF_BUCKETS", "LoopCounter", "LoopHistogram", "collector", "counter", "exponential_buckets",
           "families", "gauge", "handle", "histogram", "install", "loop_counter", "loop_histogram",
           "registry", "text"]

DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)   # Prometheus' DefBuckets

prometheus_client.disable_created_metrics()

_lock = threading.Lock()
_pid: int | None = None
_registry: CollectorRegistry | None = None
_metrics: dict[str, Any] = {}


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Prometheus' ExponentialBuckets: ``start * factor**i`` for i < count."""
    return tuple(start * factor ** i for i in range(count))


def registry() -> CollectorRegistry:
    global _pid, _registry
    pid = os.getpid()
    if _pid != pid or _registry is None:
        with _lock:
            if _pid != pid or _registry is None:
                reg = CollectorRegistry(auto_describe=False)
                ProcessCollector(registry=reg)
                _metrics.clear()
                _registry, _pid = reg, pid
    return _registry


def _get_or_make(name: str, make: Callable[[CollectorRegistry], Any]) -> Any:
    reg = registry()
    m = _metrics.get(name)
    if m is None:
        with _lock:
            m = _metrics.get(name)
            if m is None:
                m = _metrics[name] = make(reg)
    return m


def counter(name: str, doc: str, labelnames: Iterable[str] = ()) -> Counter:
    return _get_or_make(name, lambda reg: Counter(name, doc, tuple(labelnames), registry=reg))


def gauge(name: str, doc: str, labelnames: Iterable[str] = ()) -> Gauge:
    return _get_or_make(name, lambda reg: Gauge(name, doc, tuple(labelnames), registry=reg))


def histogram(name: str, doc: str, labelnames: Iterable[str] = (),
              buckets: Iterable[float] = DEF_BUCKETS) -> Histogram:
    return _get_or_make(name, lambda reg: Histogram(name, doc, tuple(labelnames), registry=reg,
                                                    buckets=tuple(buckets)))


class _Callback:
    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self.fn = fn

    def collect(self) -> Iterable[Metric]:
        return list(self.fn())


def collector(name: str, fn: Callable[[], Iterable[Metric]]) -> Any:
    """Register ``fn`` (yielding metric families at scrape time) once per process under ``name``."""
    def make(reg: CollectorRegistry) -> _Callback:
        c = _Callback(fn)
        reg.register(c)
        return c
    return _get_or_make(f"collector:{name}", make)


class LoopHistogram:
    """A lock-free histogram for one thread's hot loop; see the module docstring."""

    def __init__(self, name: str, doc: str, labelnames: Iterable[str], buckets: Iterable[float]) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.bounds = tuple(sorted(buckets))
        self.children: dict[tuple, list[float]] = {}   # labels -> [count per bucket..., +Inf, sum]

    def observe(self, labels: tuple, value: float) -> None:
        c = self.children.get(labels)
        if c is None:
            c = self.child(labels)
        c[bisect_left(self.bounds, value)] += 1
        c[-1] += value

    def child(self, labels: tuple) -> list:
        """The counts of ``labels``: ``[per bucket..., +Inf, sum]``, for a caller that
        observes many values itself (``c[bisect_left(bounds, v)] += 1; c[-1] += v``)."""
        c = self.children.get(labels)
        if c is None:
            c = self.children[labels] = [0] * (len(self.bounds) + 2)
        return c

    def collect(self) -> Iterable[Metric]:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for labels, c in list(self.children.items()):
            c = list(c)
            acc, buckets = 0, []
            for edge, n in zip(edges, c[:-1]):
                acc += n
                buckets.append((edge, acc))
            fam.add_metric(list(labels), buckets, c[-1])
        return [fam]


class LoopCounter:
    """A lock-free labelled counter for one thread's hot loop."""

    def __init__(self, name: str, doc: str, labelnames: Iterable[str]) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self.values: dict[tuple, float] = {}

    def inc(self, labels: tuple, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, v in list(self.values.items()):
            fam.add_metric(list(labels), v)
        return [fam]


def loop_histogram(name: str, doc: str, labelnames: Iterable[str], buckets: Iterable[float]) -> LoopHistogram:
    def make(reg: CollectorRegistry) -> LoopHistogram:
        h = LoopHistogram(name, doc, labelnames, buckets)
        reg.register(h)
        return h
    return _get_or_make(name, make)


def loop_counter(name: str, doc: str, labelnames: Iterable[str]) -> LoopCounter:
    def make(reg: CollectorRegistry) -> LoopCounter:
        c = LoopCounter(name, doc, labelnames)
        reg.register(c)
        return c
    return _get_or_make(name, make)


def families(reg: CollectorRegistry | None = None) -> list[list]:
    out = []
    for fam in (reg or registry()).collect():
        out.append([fam.name, fam.type, fam.documentation,
                    [[s.name, dict(s.labels), float(s.value)] for s in fam.samples]])
    return out


def text(reg: CollectorRegistry | None = None) -> str:
    return generate_latest(reg or registry()).decode()


def handle(args: dict) -> dict:
    fmt = args.get("format", "text")
    if fmt == "families":
        return {"families": families()}
    if fmt != "text":
        raise ValueError(f'format: Unsupported value: "{fmt}": supported values: "text", "families"')
    return {"text": text()}


def install(server: Any = None) -> None:
    """Serve the ``metrics`` op on ``server`` (default: this process's ``ctl.current``)."""
    if server is None:
        from emulator import ctl
        server = ctl.current
    if server is not None:
        registry()
        server.add_handler("metrics", handle)
