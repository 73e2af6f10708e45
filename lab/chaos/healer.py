"""The healer: one detached process per fault with a duration (or a driven fault).

Contract
--------
``python -m lab.chaos.healer LABDIR FAULT_ID`` (started by ``Chaos.inject`` in a new
session; its pid is recorded in ``run/chaos.json``):

* waits until the fault expires, then claims it (under the record's lock) and heals
  it, logging ``fault_healed`` with reason "expired"; exits 0;
* for a driven kind (crash-loop), calls the kind's ``tick`` when due, logging each
  ``fault_action``;
* exits as soon as the fault is no longer in the record (healed by someone else, who
  also stops it with SIGTERM), or the lab's supervisor is gone (``lab down`` heals
  what is left). It never outlives its lab: bounded by the fault's duration, or by
  the lab for a driven fault held until healed.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from lab.chaos.kinds import get_kind
from lab.chaos.model import Fault
from lab.chaos.record import log_event


def run(lab_dir: str, fault_id: str, poll: float = 0.05) -> int:
    from lab.lab import Lab
    lab = Lab.attach(dir=Path(lab_dir))
    chaos = lab.chaos
    next_tick = 0.0
    next_alive_check = 0.0
    while True:
        d = chaos.store.read()["faults"].get(fault_id)
        if d is None:
            return 0
        fault = Fault.from_dict(d, chaos=chaos)
        kind = get_kind(fault.kind)
        now = time.time()
        if now >= next_alive_check:
            if not lab.running():
                return 0
            next_alive_check = now + 1.0
        exp = fault.expires_at()
        if exp is not None and now >= exp:
            for f in chaos.claim(fault_id):
                try:
                    chaos.heal_claimed(f, "expired")
                except Exception as e:
                    print(f"healer: healing {fault_id} failed: {e}", file=sys.stderr)
                    return 1
            return 0
        if getattr(kind, "driven", False) and now >= next_tick:
            if next_tick:   # the first kill was the injection itself
                interval = kind.tick(lab, fault)
                with chaos.store.locked() as data:   # what a heal by someone else needs to know
                    if fault_id in data["faults"]:
                        data["faults"][fault_id]["state"] = fault.state
                log_event(lab.layout, lab.name, "fault_action", fault,
                          actions=fault.state.get("last_actions"))
            else:
                interval = float(fault.state.get("every") or 1.0)
            next_tick = time.time() + interval
        wait = poll
        if exp is not None:
            wait = min(wait, max(0.0, exp - time.time()))
        time.sleep(wait)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m lab.chaos.healer LABDIR FAULT_ID", file=sys.stderr)
        return 2
    return run(argv[0], argv[1])


if __name__ == "__main__":
    sys.exit(main())
