"""DNS faults: ``dns-error``, the lab's DNS add-on failing chosen names.

As Chaos Mesh's DNSChaos action "error": queries for the matching names get
SERVFAIL (or NXDOMAIN) from the add-on instead of their answer; other names
are answered as usual.

Contract
--------
* ``dns-error`` targets the ``dns`` process only (any other target is an error
  naming it; a lab started without DNS has no ``dns`` target). Params:
  ``rcode`` SERVFAIL (default) or NXDOMAIN; ``patterns`` comma-separated name
  globs (``fnmatch``, lowercased, trailing dot dropped; default ``*``: every
  name); ``percent`` the share of matching queries that fail, a whole number
  1-100 (default 100). ``check`` raises ``ValueError`` naming a bad param.
* It is a ctl fault (``lab.chaos.ctl_state``): ``ctl_items`` gives ``{"dns":
  {"dns": [rule]}}`` with the rule ``{"fault", "patterns", "rcode",
  "percent"}`` of ``control.dns.faults``. ``inject`` rebuilds the DNS process's
  state with the fault added and returns ``{"rule": rule, "report": {process:
  "applied" | "pending: <why>"}}`` (pending: the process is paused or
  restarting and picks the rule up from its state file when it runs again);
  ``heal`` rebuilds it without the fault. Several dns-error faults stack.
"""
from __future__ import annotations

from typing import Any

from control.dns.faults import RCODES, check_pattern
from lab.chaos import ctl_state

PROCESS = "dns"


def rule(params: dict[str, str], fault_id: str = "") -> dict:
    """The add-on's rule for these params; ``ValueError`` naming a bad param."""
    rcode = (params.get("rcode") or "SERVFAIL").strip()
    if rcode.upper() not in RCODES:
        raise ValueError(f"--param rcode={rcode!r}: use SERVFAIL or NXDOMAIN")
    raw = params.get("patterns")
    patterns = ["*"]
    if raw not in (None, ""):
        items = [p.strip() for p in str(raw).split(",")]
        if any(not p for p in items):
            raise ValueError(f"--param patterns={raw!r}: has an empty item; use comma-separated name "
                             "globs, e.g. patterns=web.default.svc.cluster.local,*.kube-system.svc.cluster.local")
        try:
            patterns = [check_pattern(p, "pattern") for p in items]
        except ValueError as e:
            raise ValueError(f"--param patterns={raw!r}: {str(e).removeprefix('pattern: ')}") from None
    pct = params.get("percent")
    percent = 100
    if pct not in (None, ""):
        try:
            percent = int(str(pct).strip())
        except ValueError:
            raise ValueError(f"--param percent={pct!r}: use a whole number from 1 to 100, e.g. "
                             "percent=50") from None
        if not 1 <= percent <= 100:
            raise ValueError(f"--param percent={pct!r}: must be from 1 to 100 (100: every matching "
                             "query fails)")
    return {"fault": fault_id, "patterns": patterns, "rcode": rcode.upper(), "percent": percent}


class DnsError:
    name = "dns-error"
    help = "the DNS add-on answers SERVFAIL or NXDOMAIN for the chosen names (DNSChaos error)"
    params = {"rcode": "SERVFAIL (default) or NXDOMAIN",
              "patterns": "comma-separated name globs, e.g. web.default.svc.cluster.local,"
                          "*.kube-system.svc.cluster.local (default: every name)",
              "percent": "share of matching queries that fail, 1-100 (default 100)"}
    target_mode = "process"

    def check(self, params: dict[str, str]) -> None:
        rule(params)

    def _check_targets(self, fault: Any) -> None:
        other = [t for t in fault.targets if t != PROCESS]
        if other or not fault.targets:
            raise ValueError(f"dns-error: target {fault.target!r} is not the DNS add-on: this fault "
                             "applies to the dns process only (kemu chaos dns-error dns)")

    def ctl_items(self, lab: Any, fault: Any) -> dict[str, dict[str, list]]:
        return {PROCESS: {"dns": [rule(fault.params, fault.id)]}}

    def inject(self, lab: Any, fault: Any) -> dict:
        self._check_targets(fault)
        r = rule(fault.params, fault.id)
        report = ctl_state.sync(lab, adding=fault)
        return {"rule": r, "report": report}

    def heal(self, lab: Any, fault: Any) -> None:
        ctl_state.sync(lab, removing=fault.id)


DNS_KINDS = {"dns-error": DnsError()}
