"""Availability of each Service under a scenario run's load and probes.

Contract: ``service_availability(src)`` reads a run's HTTP load (``load.jsonl``:
one record per request, ``ts``, ``ok``; the target from ``scenario.yaml``'s
``load.http.service`` or ``url``) and its continuous/onchaos HTTP probes
(``result.json``: ``checks``, ``passes``). Availability is the share of
requests that succeeded (a status below 500, as the runner counts them),
overall and inside fault windows; the longest outage is the longest run of
consecutive failed requests, from the first failure to the next success (or
the last failure). ``availability_series(load, bin_s)`` gives the per-bin
share for the timeline plot. A lab directory has no load: the section says so.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from lab.report.source import Fault, Source

DEFINITION = ("Share of the load's HTTP requests to the Service that succeeded (status < 500, as the "
              "scenario runner counts them): overall, and for requests sent while a fault was active. "
              "Longest outage: the longest run of consecutive failed requests, from the first failure to "
              "the next success. Probes: passes / checks of each continuous or onchaos HTTP probe.")


def _target(spec: dict[str, Any] | None, fallback: str) -> str:
    spec = spec or {}
    if spec.get("service"):
        return f"Service {spec['service']}"
    return str(spec.get("url") or fallback)


def _in_fault(t: float, faults: list[Fault]) -> bool:
    return any(f.start <= t <= f.end for f in faults)


def load_figures(load: list[dict[str, Any]], faults: list[Fault]) -> dict[str, Any]:
    sent = len(load)
    ok = sum(1 for r in load if r.get("ok"))
    during = [r for r in load if _in_fault(r["_t"], faults)]
    longest, start = 0.0, None
    last_fail = None
    for r in sorted(load, key=lambda r: r["_t"]):
        if not r.get("ok"):
            start = r["_t"] if start is None else start
            last_fail = r["_t"]
        elif start is not None:
            longest, start = max(longest, r["_t"] - start), None
    if start is not None and last_fail is not None:
        longest = max(longest, last_fail - start)
    return {"unit": "ratio", "sent": sent, "ok": ok,
            "availability": round(ok / sent, 6) if sent else None,
            "during_faults": {"sent": len(during), "ok": sum(1 for r in during if r.get("ok")),
                              "availability": round(sum(1 for r in during if r.get("ok")) / len(during), 6)
                              if during else None},
            "longest_outage_s": round(longest, 6)}


def service_availability(src: Source) -> dict[str, Any]:
    if src.kind != "run":
        return {"available": False, "definition": DEFINITION,
                "reason": "not available: a lab directory has no load; run a scenario with load.http"}
    sc = src.scenario or {}
    services: dict[str, Any] = {}
    res_load = (src.result or {}).get("load") or {}
    spec = ((sc.get("load") or {}).get("http")) if isinstance(sc.get("load"), dict) else None
    if src.load and (spec is not None or res_load.get("type") == "http"):
        services[_target(spec, str(res_load.get("url") or "load"))] = {"source": "load", **load_figures(src.load,
                                                                                                      src.faults)}
    probe_specs = {p.get("name"): p for p in sc.get("probes") or [] if isinstance(p, dict)}
    for p in (src.result or {}).get("probes") or []:
        if p.get("type") != "http" or p.get("mode") not in ("continuous", "onchaos") or not p.get("checks"):
            continue
        key = f"{_target(probe_specs.get(p['name']), p['name'])} (probe {p['name']})"
        services[key] = {"source": f"probe {p['name']} ({p['mode']})", "unit": "ratio", "sent": p["checks"],
                         "ok": p["passes"], "availability": round(p["passes"] / p["checks"], 6)}
    if not services:
        return {"available": False, "definition": DEFINITION,
                "reason": "not available: the run had no HTTP load and no continuous HTTP probe"}
    return {"available": True, "definition": DEFINITION, "services": services}


def availability_series(load: list[dict[str, Any]], bin_s: float = 1.0) -> list[tuple[float, float]]:
    bins: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in load:
        b = bins[int(r["_t"] // bin_s)]
        b[0] += 1
        b[1] += 1 if r.get("ok") else 0
    return [((k + 0.5) * bin_s, ok / n) for k, (n, ok) in sorted(bins.items())]
