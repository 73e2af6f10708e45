"""The lab: spawning, supervision, chaos, logs, reports and benchmarks.

``from lab import Lab``: see ``lab.lab``.

Layering contract: ``lab`` may import ``emulator``, ``control`` and ``node``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Lab", "LabError"]


def __getattr__(name: str) -> Any:   # lazy, so ``python -m lab.supervisor`` stays light
    if name in __all__:
        from lab import lab as _lab
        return getattr(_lab, name)
    raise AttributeError(name)
