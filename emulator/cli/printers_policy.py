"""Table columns and ``describe`` for PodDisruptionBudget, as kubectl 1.32 prints them.

Contract: importing this module registers the PDB printer (``NAME MIN
AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE``, "N/A" for the unset
bound; ``printPodDisruptionBudget``) and describer (Name, Namespace, the
bound, Selector, Status: Allowed disruptions / Current / Desired / Total,
Events; ``PodDisruptionBudgetDescriber``).
"""
from __future__ import annotations

from emulator.api.kinds.apps_validation import selector_string
from emulator.cli.describers import Writer, events_block, register_describer
from emulator.cli.printers import Column, age, register_printer

__all__ = ["describe_pdb"]


def _md(o: dict) -> dict:
    return o.get("metadata") or {}


def _bound(o: dict, key: str) -> str:
    v = (o.get("spec") or {}).get(key)
    return "N/A" if v is None else str(v)


def _allowed(o: dict) -> str:
    v = (o.get("status") or {}).get("disruptionsAllowed")
    return str(v if isinstance(v, int) else 0)


register_printer("PodDisruptionBudget", [
    Column("NAME", lambda o, now: _md(o).get("name", "")),
    Column("MIN AVAILABLE", lambda o, now: _bound(o, "minAvailable")),
    Column("MAX UNAVAILABLE", lambda o, now: _bound(o, "maxUnavailable")),
    Column("ALLOWED DISRUPTIONS", lambda o, now: _allowed(o)),
    Column("AGE", lambda o, now: age(_md(o).get("creationTimestamp"), now)),
])


def describe_pdb(obj: dict, events: list[dict] | None, extra: dict) -> str:
    md, spec, status = _md(obj), obj.get("spec") or {}, obj.get("status") or {}
    w = Writer()
    w.line(0, f"Name:\t{md.get('name', '')}")
    w.line(0, f"Namespace:\t{md.get('namespace', '')}")
    if spec.get("minAvailable") is not None:
        w.line(0, f"Min available:\t{spec['minAvailable']}")
    elif spec.get("maxUnavailable") is not None:
        w.line(0, f"Max unavailable:\t{spec['maxUnavailable']}")
    sel = spec.get("selector")
    w.line(0, "Selector:\t" + ("<unset>" if sel is None else selector_string(sel) or "<none>"))
    w.line(0, "Status:")
    w.line(2, f"Allowed disruptions:\t{status.get('disruptionsAllowed') or 0}")
    w.line(2, f"Current:\t{status.get('currentHealthy') or 0}")
    w.line(2, f"Desired:\t{status.get('desiredHealthy') or 0}")
    w.line(2, f"Total:\t{status.get('expectedPods') or 0}")
    if events is not None:
        events_block(w, events)
    return w.text()


register_describer("PodDisruptionBudget", describe_pdb)
