"""``kemu report``: the SLIs of a lab or a scenario run, as JSON, Markdown and HTML with plots.

Contract
--------
``generate(path, out=None) -> dict`` reads a lab directory (``logs/``,
``metrics/``, ``run/``) or a scenario run directory (``result.json``,
``timeline.jsonl``, ``load.jsonl``, ``scenario.yaml``; see
``lab.chaos.scenario_run``), computes every SLI (``lab.report.sli`` from the
logs, ``lab.report.metrics_sli`` from the metrics), and writes into ``out``
(default ``<dir>/report/``): ``report.json`` (every figure with its ``unit``
and ``definition``), ``report.md``, ``report.html`` (self-contained: the
plots embedded as base64 PNG, no external URL) and the PNGs. It returns the
report dict. ``compare(a, b, out) -> dict`` puts two reports side by side
(``compare.json``, ``compare.md``, ``compare.html``).

A directory that is neither a lab nor a run raises ``ReportError`` with a
message naming the flag. Metrics are optional: without ``lab.metrics_store``
or a ``metrics/`` directory the metric sections say "not available".
"""
from __future__ import annotations

from lab.report.build import ReportError, compare, generate

__all__ = ["ReportError", "compare", "generate"]
