"""Kubernetes resource quantities ("100m", "0.5", "64Mi", "1G", "1e3").

Contract: ``parse_quantity`` turns a quantity (a string, or an int/float as
YAML may give) into an exact ``Fraction``; it raises ``ValueError`` with a
message naming the bad input. Suffixes are Kubernetes': binary ``Ki Mi Gi Ti
Pi Ei``, decimal ``n u m k M G T P E`` and decimal exponents ``e3``/``E-2``.
``cpu_millis`` and ``memory_bytes`` round up, as Kubernetes' ``MilliValue`` and
``Value`` do. Results are cached: parsing is on the apiserver's write path.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

__all__ = ["QUANTITY_ERROR", "parse_quantity", "cpu_millis", "memory_bytes", "Quantity"]

Quantity = str | int | float | Fraction

# Kubernetes' wording for an unparseable quantity.
QUANTITY_ERROR = ("quantities must match the regular expression "
                  "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")

_RE = re.compile(r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([a-zA-Z]*)([-+]?[0-9]*)$")
_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9),
    "T": Fraction(10**12), "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}


@lru_cache(maxsize=4096)
def _parse_str(s: str) -> Fraction:
    m = _RE.match(s.strip()) if s else None
    if m is None:
        raise ValueError(f"invalid quantity {s!r}: {QUANTITY_ERROR}")
    sign, number, suffix, exp = m.groups()
    value = Fraction(number)
    if suffix in ("e", "E") and exp:
        # A decimal exponent: "1e3", "5E-2". A bare "E" is the exa suffix.
        try:
            power = int(exp)
        except ValueError:
            raise ValueError(f"invalid quantity {s!r}: {QUANTITY_ERROR}") from None
        if abs(power) > 64:
            raise ValueError(f"invalid quantity {s!r}: exponent out of range")
        value *= Fraction(10) ** power
    elif exp or suffix not in _SUFFIXES:
        raise ValueError(f"invalid quantity {s!r}: unknown suffix "
                         f"{suffix + exp!r}; {QUANTITY_ERROR}")
    else:
        value *= _SUFFIXES[suffix]
    return -value if sign == "-" else value


def parse_quantity(q: Quantity) -> Fraction:
    """Parse a Kubernetes quantity exactly. Raises ValueError on bad input."""
    if isinstance(q, bool) or q is None:
        raise ValueError(f"invalid quantity {q!r}: {QUANTITY_ERROR}")
    if isinstance(q, str):
        return _parse_str(q)
    if isinstance(q, Fraction):
        return q
    if isinstance(q, int):
        return Fraction(q)
    if isinstance(q, float):
        if not math.isfinite(q):
            raise ValueError(f"invalid quantity {q!r}: {QUANTITY_ERROR}")
        return _parse_str(repr(q))
    raise ValueError(f"invalid quantity {q!r}: {QUANTITY_ERROR}")


@lru_cache(maxsize=4096)
def _cpu_millis_str(s: str) -> int:
    return math.ceil(_parse_str(s) * 1000)


@lru_cache(maxsize=4096)
def _memory_bytes_str(s: str) -> int:
    return math.ceil(_parse_str(s))


def cpu_millis(q: Quantity) -> int:
    """CPU in millicores, rounded up: "100m" -> 100, "0.5" -> 500, 2 -> 2000.

    Strings are memoised: the scheduler and kubelet read the same few
    quantities on every pod."""
    if type(q) is str:
        return _cpu_millis_str(q)
    return math.ceil(parse_quantity(q) * 1000)


def memory_bytes(q: Quantity) -> int:
    """Bytes, rounded up: "64Mi" -> 67108864, "1G" -> 10**9, "1e3" -> 1000 (strings memoised)."""
    if type(q) is str:
        return _memory_bytes_str(q)
    return math.ceil(parse_quantity(q))
