"""DNS faults inside the add-on: answer SERVFAIL or NXDOMAIN for chosen names.

The emulator's take on Chaos Mesh's DNSChaos action "error": the lab (fault kind
``dns-error``, ``lab.chaos.dns_faults``) writes the rules into the DNS process's
ctl state (op ``dns``); the add-on applies them here.

Contract
--------
* A rule is ``{"fault": id, "patterns": [glob, ...], "rcode": "SERVFAIL" |
  "NXDOMAIN", "percent": 0-100}``; ``patterns`` defaults to ``["*"]``, ``rcode``
  to SERVFAIL, ``percent`` to 100. Patterns are ``fnmatch`` globs over the query
  name, lowercased and without its trailing dot (``*`` matches every name,
  names outside the cluster domain included).
* ``DNSFaults(rng=None)``: ``set({"rules": [rule, ...]})`` validates every rule
  (``ValueError`` naming the field, e.g. ``rules[0].rcode: ...``; nothing is
  changed then) and swaps the compiled rules in with one attribute assignment:
  the DNS threads read ``rules`` without a lock and see the old or the new
  tuple, never a mix. A change logs ``dns_faults_set`` (``rules``, ``faults``);
  re-applying the same rules logs nothing. Returns ``{"rules": count}``.
* ``match(name) -> rcode | None``: each rule whose patterns match ``name``
  fires, in order, with probability percent/100 (every active fault acts
  independently); the first that fires gives its rcode (``records.SERVFAIL``
  or ``records.NXDOMAIN``). None: the query is answered normally.
"""
from __future__ import annotations

import fnmatch
import random
import re
from dataclasses import dataclass
from typing import Any

from control.dns import records as rec
from emulator.logging import get_logger

RCODES = {"SERVFAIL": rec.SERVFAIL, "NXDOMAIN": rec.NXDOMAIN}
_PATTERN = re.compile(r"^[a-z0-9_*?\[\]!.-]+$")


@dataclass(frozen=True)
class Rule:
    fault: str
    patterns: tuple[str, ...]
    rcode: int
    percent: float

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


def normalise_name(name: str) -> str:
    return str(name).lower().rstrip(".")


def check_pattern(pattern: Any, field: str) -> str:
    """One glob, lowercased and without a trailing dot; ``ValueError`` naming ``field``."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"{field}: must be a non-empty name glob, e.g. web.default.svc.cluster.local "
                         "or *.kube-system.svc.cluster.local")
    p = normalise_name(pattern.strip())
    if not p or not _PATTERN.match(p):
        raise ValueError(f"{field}: {pattern!r} is not a name glob: use letters, digits, '-', '_', '.' "
                         "and the wildcards *, ?, [...]")
    return p


def parse_rule(raw: Any, i: int) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping with fault, patterns, rcode, percent")
    unknown = sorted(set(raw) - {"fault", "patterns", "rcode", "percent"})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field; a rule has fault, patterns, rcode, percent")
    fault = raw.get("fault", "")
    if not isinstance(fault, str):
        raise ValueError(f"{where}.fault: must be a string (the fault's ID, e.g. f-3)")
    patterns = raw.get("patterns", ["*"])
    if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)) or not patterns:
        raise ValueError(f"{where}.patterns: must be a non-empty list of name globs, e.g. ['*']")
    globs = tuple(check_pattern(p, f"{where}.patterns[{j}]") for j, p in enumerate(patterns))
    rcode = raw.get("rcode", "SERVFAIL")
    if not isinstance(rcode, str) or rcode.upper() not in RCODES:
        raise ValueError(f"{where}.rcode: {rcode!r} is not supported: use SERVFAIL or NXDOMAIN")
    percent = raw.get("percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
        raise ValueError(f"{where}.percent: {percent!r} must be a number from 0 to 100")
    return Rule(fault, globs, RCODES[rcode.upper()], float(percent))


class DNSFaults:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rules: tuple[Rule, ...] = ()
        self._rng = rng or random.Random()

    def set(self, args: dict) -> dict:
        if not isinstance(args, dict):
            raise ValueError('args: must be a mapping {"rules": [rule, ...]}')
        raw = args.get("rules")
        if raw is None:
            raw = []
        if not isinstance(raw, (list, tuple)):
            raise ValueError("rules: must be a list of rules")
        rules = tuple(parse_rule(r, i) for i, r in enumerate(raw))
        if rules != self.rules:
            self.rules = rules   # one reference swap: readers see the old or the new rules
            get_logger().info("dns_faults_set", rules=len(rules),
                              faults=sorted({r.fault for r in rules if r.fault}))
        return {"rules": len(rules)}

    def match(self, name: str) -> int | None:
        rules = self.rules
        if not rules:
            return None
        qname = normalise_name(name)
        for r in rules:
            if r.matches(qname):
                if r.percent >= 100 or self._rng.random() * 100 < r.percent:
                    return r.rcode
        return None


__all__ = ["DNSFaults", "RCODES", "Rule", "check_pattern", "normalise_name", "parse_rule"]
