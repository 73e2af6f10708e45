"""Network faults on the bus, and on kube-proxy's forwarding: partition, isolate, delay,
loss, duplicate, reorder, bandwidth.

Contract
--------
Each kind is a ctl fault (``lab.chaos.ctl_state``): ``ctl_items`` gives every lab
process the ``emulator.netem`` rules that concern it; inject and heal rebuild the
processes' state. The rules act where each link has its applying end: a bus link
(a component and the apiserver) in the component's client, a forwarded
connection (kube-proxy on node S relaying to a pod on node D) in S's relay. The
lab's own clients (CLI, chaos, scenario runner) never pass through a rule.

* ``partition A`` with ``with=B`` (default ``rest``: every other process): every
  message between a process of A and one of B is dropped, both ways.
  ``isolate X`` is ``partition X`` from the rest.
* ``delay``, ``loss``, ``duplicate``, ``reorder``, ``bandwidth`` on a target T
  act on the messages that leave a process of T (Chaos Mesh's default
  direction, ``to``), whichever end applies them: a delayed node's requests are
  late, a delayed apiserver's replies and watch events are.

  - ``delay``: ``latency`` (``200ms``, or ``200ms±50ms`` / ``200ms+-50ms``),
    ``jitter``, ``distribution`` (constant; uniform when a jitter is given;
    normal; exponential, whose mean is the latency).
  - ``loss``/``duplicate``: ``percent`` (``20`` or ``20%``).
  - ``reorder``: ``percent`` of messages overtake the ones held by ``latency``
    (default 10ms).
  - ``bandwidth``: ``rate`` as tc writes it (``1mbit``, ``500kbit``) or in bytes
    (``64KiB/s``, ``1MB/s``).

  On a forwarded TCP stream, loss becomes retransmission delay and duplication
  and reordering do nothing, as TCP hides them (``emulator.netem.stream_hold``).
* Every kind needs a duration or a heal; a heal restores the links at once.
"""
from __future__ import annotations

import re
from typing import Any

from lab.chaos import ctl_state
from lab.chaos.model import parse_duration
from lab.chaos.targets import _process_names, resolve

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|B/s|KB/s|MB/s|GB/s|KiB/s|MiB/s|GiB/s)\s*$")
_RATE_UNITS = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "B/s": 1.0, "KB/s": 1e3,
               "MB/s": 1e6, "GB/s": 1e9, "KiB/s": 1024.0, "MiB/s": 1024.0 ** 2, "GiB/s": 1024.0 ** 3}
DISTRIBUTIONS = ("constant", "uniform", "normal", "exponential")


def parse_percent(value: str, what: str) -> float:
    m = _PERCENT.match(str(value))
    if not m or not 0 < float(m.group(1)) <= 100:
        raise ValueError(f"{what}: Invalid value: {value!r}: a percentage in (0, 100], e.g. 20 or 20%")
    return float(m.group(1)) / 100.0


def parse_rate(value: str) -> float:
    m = _RATE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"rate: Invalid value: {value!r}: use tc's units (1mbit, 500kbit) "
                         "or bytes (64KiB/s, 1MB/s)")
    return float(m.group(1)) * _RATE_UNITS[m.group(2)]


def parse_latency(params: dict[str, str]) -> dict:
    """``{"dist", "mean", "jitter"}`` from ``latency`` (maybe ``200ms±50ms``), ``jitter``, ``distribution``."""
    lat = params.get("latency", "")
    jitter_s = params.get("jitter")
    for sep in ("±", "+-"):
        if sep in lat:
            lat, jitter_s = lat.split(sep, 1)
    mean = parse_duration(lat.strip(), "latency")
    jitter = parse_duration(jitter_s.strip(), "jitter") if jitter_s else 0.0
    dist = params.get("distribution") or ("uniform" if jitter else "constant")
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"distribution: Unsupported value: {dist!r}: supported values: "
                         f"{', '.join(DISTRIBUTIONS)}")
    return {"dist": dist, "mean": mean, "jitter": jitter}


class _NetFault:
    """A ctl fault whose items are netem rules; subclasses say what a rule holds."""
    name = ""
    help = ""
    params: dict[str, str] = {}
    required: tuple[str, ...] = ()

    def check(self, params: dict[str, str]) -> None:
        self.knobs(params)

    def knobs(self, params: dict[str, str]) -> dict:
        raise NotImplementedError

    def inject(self, lab: Any, fault: Any) -> dict:
        fault.state = self.plan(lab, fault)
        report = ctl_state.sync(lab, adding=fault)
        return {**fault.state, "processes": report}

    def plan(self, lab: Any, fault: Any) -> dict:
        return {"all": _process_names(lab)}

    def heal(self, lab: Any, fault: Any) -> None:
        ctl_state.sync(lab, removing=fault.id)

    def ctl_items(self, lab: Any, fault: Any) -> dict[str, dict[str, list]]:
        """Messages leaving a target are affected, at whichever end applies the rule."""
        knobs = dict(self.knobs(fault.params), fault=fault.id)
        targets = set(fault.targets)
        out: dict[str, dict[str, list]] = {}
        for p in fault.state.get("all") or _process_names(lab):
            rules = []
            if p in targets:
                rules.append(dict(knobs, peers="*", dir="out"))
            others = sorted(targets - {p})
            if others:
                rules.append(dict(knobs, peers=others, dir="in"))
            if rules:
                out[p] = {"netem": rules}
        return out


class Partition(_NetFault):
    name = "partition"
    help = "drop every message between the target and another group (with=GROUP, default: the rest)"
    params = {"with": "the other side: a target or group (default: rest, every other process)"}

    def knobs(self, params: dict[str, str]) -> dict:
        return {"drop": 1.0}

    def plan(self, lab: Any, fault: Any) -> dict:
        everyone = _process_names(lab)
        other = fault.params.get("with", "rest")
        if other == "rest":
            b = [p for p in everyone if p not in fault.targets]
        else:
            b = [p for p in resolve(lab, other) if p not in fault.targets]
        if not b:
            raise ValueError(f"partition: with={other!r}: the other side is empty (it has to name "
                             "processes outside the target)")
        return {"other": b, "all": everyone}

    def ctl_items(self, lab: Any, fault: Any) -> dict[str, dict[str, list]]:
        a, b = list(fault.targets), list(fault.state.get("other") or [])
        rule = dict(self.knobs(fault.params), fault=fault.id, dir="both")
        out = {p: {"netem": [dict(rule, peers=b)]} for p in a}
        out.update({p: {"netem": [dict(rule, peers=a)]} for p in b})
        return out


class Isolate(Partition):
    name = "isolate"
    help = "cut the target off from every other process (a partition from the rest)"
    params: dict[str, str] = {}


class Delay(_NetFault):
    name = "delay"
    help = "delay the messages the target sends (latency=200ms±50ms, distribution=...)"
    params = {"latency": "the mean delay: 200ms, or 200ms±50ms",
              "jitter": "the spread: 50ms (uniform unless distribution says otherwise)",
              "distribution": "constant, uniform, normal or exponential"}
    required = ("latency",)

    def knobs(self, params: dict[str, str]) -> dict:
        return {"delay": parse_latency(params)}


class Loss(_NetFault):
    name = "loss"
    help = "drop a share of the messages the target sends (percent=20)"
    params = {"percent": "the share dropped: 20 or 20%"}
    required = ("percent",)

    def knobs(self, params: dict[str, str]) -> dict:
        return {"drop": parse_percent(params.get("percent", ""), "percent")}


class Duplicate(_NetFault):
    name = "duplicate"
    help = "send a share of the target's messages twice (percent=5)"
    params = {"percent": "the share duplicated: 5 or 5%"}
    required = ("percent",)

    def knobs(self, params: dict[str, str]) -> dict:
        return {"duplicate": parse_percent(params.get("percent", ""), "percent")}


class Reorder(_NetFault):
    name = "reorder"
    help = "let a share of the target's messages overtake the others (percent=25, latency=10ms)"
    params = {"percent": "the share that overtakes: 25 or 25%",
              "latency": "how long the others are held (default 10ms)"}
    required = ("percent",)

    def knobs(self, params: dict[str, str]) -> dict:
        knobs: dict[str, Any] = {"reorder": parse_percent(params.get("percent", ""), "percent")}
        if params.get("latency"):
            knobs["delay"] = parse_latency({"latency": params["latency"]})
        return knobs


class Bandwidth(_NetFault):
    name = "bandwidth"
    help = "limit the rate of what the target sends (rate=1mbit)"
    params = {"rate": "1mbit, 500kbit (tc's units) or 64KiB/s, 1MB/s"}
    required = ("rate",)

    def knobs(self, params: dict[str, str]) -> dict:
        return {"rate": parse_rate(params.get("rate", ""))}


NET_KINDS = {k.name: k for k in (Partition(), Isolate(), Delay(), Loss(), Duplicate(), Reorder(), Bandwidth())}
