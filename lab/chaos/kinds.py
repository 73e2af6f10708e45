"""The fault kinds: the ``FaultKind`` protocol and the ``KINDS`` registry.

Contract
--------
A fault kind has ``name``, ``params`` (param name -> help), ``inject(lab, fault) ->
dict`` (returns the state ``heal`` needs, JSON-serialisable) and ``heal(lab, fault)``.
Optional attributes, read with defaults by ``Chaos``:

* ``help`` (one line for ``kemu chaos --help``);
* ``target_mode``: "process" (any lab process; the default), "nodes" (nodes only) or
  "pods" (no target needed; a node target narrows the pods to those nodes);
* ``required``: param names that must be given;
* ``instant``: the fault is an action (restart, pod-kill): without a duration it is
  healed as soon as it is injected;
* ``driven``: a healer process calls ``tick(lab, fault) -> seconds until the next
  tick`` for as long as the fault is active (crash-loop), with or without a duration;
* ``check(params)``: raise ``ValueError`` naming a bad param;
* ``ctl_items(lab, fault)``: the fault lives inside processes (``ctl_state``).

``KINDS`` is built from ``process_faults.PROCESS_KINDS``, ``k8s_faults.K8S_KINDS``,
``net_faults.NET_KINDS``, ``time_faults.TIME_KINDS``, ``dns_faults.DNS_KINDS`` and,
when that module exists and imports, ``resource_faults.RESOURCE_KINDS``.
"""
from __future__ import annotations

from typing import Any, Protocol

from lab.chaos.dns_faults import DNS_KINDS
from lab.chaos.k8s_faults import K8S_KINDS
from lab.chaos.net_faults import NET_KINDS
from lab.chaos.process_faults import PROCESS_KINDS
from lab.chaos.time_faults import TIME_KINDS


class FaultKind(Protocol):
    name: str
    params: dict[str, str]

    def inject(self, lab: Any, fault: Any) -> dict: ...

    def heal(self, lab: Any, fault: Any) -> None: ...


KINDS: dict[str, FaultKind] = {}
KINDS.update(PROCESS_KINDS)
KINDS.update(K8S_KINDS)
KINDS.update(NET_KINDS)
KINDS.update(TIME_KINDS)
try:
    from lab.chaos.resource_faults import RESOURCE_KINDS
except Exception:   # not there (yet), or broken: the other kinds still work
    RESOURCE_KINDS = {}
KINDS.update(RESOURCE_KINDS)
KINDS.update(DNS_KINDS)


def get_kind(name: str) -> FaultKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown fault kind {name!r}: one of {', '.join(sorted(KINDS))}") from None
