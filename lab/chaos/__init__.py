"""Chaos: faults injected into a running lab, healed by hand, at expiry, or by ``lab down``.

See ``lab.chaos.chaos.Chaos`` (the Python API, ``lab.chaos``), ``lab.chaos.kinds``
(the fault kinds) and docs/chaos.md.
"""
from __future__ import annotations

from lab.chaos.chaos import Chaos, ChaosError
from lab.chaos.model import Fault, parse_duration

__all__ = ["Chaos", "ChaosError", "Fault", "parse_duration"]
