"""Network emulation on the bus: partitions, delay, loss, duplication, reorder, bandwidth.

Linux netem's knobs with Maelstrom's model: messages, not packets, are what a
fault drops, delays or repeats, in the process's own bus layer, so no root,
kernel module or real network is needed. The lab's chaos layer computes the
rules of every process and hands them over the process's ctl socket
(``emulator.ctl``); the lab's own clients (the CLI, the chaos layer) never go
through a rule, so the control channel is never cut.

Contract
--------
* A rule (a dict, checked by ``check_rule``)::

      {"fault": "f-1a2b", "peers": ["apiserver"] | "*", "dir": "out" | "in" | "both",
       "drop": 0..1, "duplicate": 0..1, "reorder": 0..1, "rate": bytes/s,
       "delay": {"dist": "constant" | "uniform" | "normal" | "exponential",
                 "mean": seconds, "jitter": seconds}}

  ``peers`` names the processes at the other end of the links it covers (``*``:
  every one but this); ``dir`` is the direction, from this process's side, of
  the messages it acts on. Every field but ``peers`` is optional.
* ``LinkTable``: the rules in force in this process, by local name (a node, or a
  component's name). ``set_rules(local, rules)`` replaces them and bumps
  ``generation``; ``link(local, peer, rng)`` combines the matching rules into a
  ``Link`` (``None``: a clean link). ``TABLE`` is the process's table;
  ``enable()`` marks the process as a lab process whose connections are wrapped.
* ``Link.depart(nbytes, now, direction)``: the release times of one message
  (``[]``: dropped; two times: duplicated). Drops compose as independent
  losses, delays add, the narrowest rate wins. Without reorder a direction is
  FIFO, as a netem queue with a rate is: no message is released before one sent
  ahead of it. With ``reorder`` p, a message skips the queue with probability
  p and the others are held (by their delay, or ``REORDER_GAP`` without one).
  A rate serialises messages: each occupies the link for ``nbytes / rate``.
* ``NetemConnection(inner, local, peer)``: a ``ClientTransport`` that applies
  its link to every frame sent (``out``) and received (``in``). Held frames are
  released inside ``recv``, which wakes for them. ``lossy`` is true while the
  link may drop frames: the client then retransmits (``emulator.client``).
  ``reconnect`` drops what is held, as a reset connection does.
* ``stream_hold(local, peer, nbytes, direction, rng)``: for kube-proxy's relay,
  the seconds to hold a chunk of a TCP stream, or ``None`` when the link is cut.
  TCP turns loss into retransmission (an extra ``RTO`` per lost try) and hides
  duplication and reordering; delay and rate apply as they are.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

DISTRIBUTIONS = ("constant", "uniform", "normal", "exponential")
DIRECTIONS = ("out", "in", "both")
REORDER_GAP = 0.01     # seconds a held message waits when reorder has no delay to work with
RTO = 0.2              # TCP's minimum retransmission timeout (RFC 6298 allows 1 s; Linux uses 200 ms)


class RuleError(ValueError):
    """A rule is malformed; the message names the field."""


def _prob(rule: dict, key: str) -> float:
    v = rule.get(key, 0.0)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise RuleError(f"{key}: Invalid value: {v!r}: must be a probability from 0 to 1")
    return float(v)


def check_rule(rule: Any) -> dict:
    """Return ``rule`` if it is well formed; raise RuleError naming the bad field."""
    if not isinstance(rule, dict):
        raise RuleError(f"rule: Invalid value: {rule!r}: must be a mapping")
    peers = rule.get("peers")
    if peers != "*" and not (isinstance(peers, list) and all(isinstance(p, str) and p for p in peers)):
        raise RuleError(f"peers: Invalid value: {peers!r}: must be \"*\" or a list of process names")
    if rule.get("dir", "both") not in DIRECTIONS:
        raise RuleError(f"dir: Unsupported value: {rule.get('dir')!r}: supported values: "
                        f"{', '.join(DIRECTIONS)}")
    for key in ("drop", "duplicate", "reorder"):
        _prob(rule, key)
    rate = rule.get("rate")
    if rate is not None and (not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0):
        raise RuleError(f"rate: Invalid value: {rate!r}: must be a positive number of bytes per second")
    delay = rule.get("delay")
    if delay is not None:
        if not isinstance(delay, dict):
            raise RuleError(f"delay: Invalid value: {delay!r}: must be a mapping")
        if delay.get("dist", "constant") not in DISTRIBUTIONS:
            raise RuleError(f"delay.dist: Unsupported value: {delay.get('dist')!r}: supported values: "
                            f"{', '.join(DISTRIBUTIONS)}")
        for key in ("mean", "jitter"):
            v = delay.get(key, 0.0)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or math.isinf(v):
                raise RuleError(f"delay.{key}: Invalid value: {v!r}: must be a number of seconds >= 0")
    return rule


def sample_delay(delay: dict | None, rng: random.Random) -> float:
    """One draw from a delay distribution, in seconds (never negative)."""
    if not delay:
        return 0.0
    mean = float(delay.get("mean", 0.0))
    jitter = float(delay.get("jitter", 0.0))
    dist = delay.get("dist", "constant")
    if dist == "uniform":
        d = rng.uniform(mean - jitter, mean + jitter)
    elif dist == "normal":
        d = rng.gauss(mean, jitter)
    elif dist == "exponential":
        d = rng.expovariate(1.0 / mean) if mean > 0 else 0.0
    else:
        d = mean
    return max(0.0, d)


@dataclass
class _Way:
    """One direction of a link: its combined knobs and queue state."""
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    rate: float | None = None
    delays: list[dict] = field(default_factory=list)
    last_release: float = 0.0
    busy_until: float = 0.0

    def add(self, rule: dict) -> None:
        self.drop = 1.0 - (1.0 - self.drop) * (1.0 - float(rule.get("drop", 0.0)))
        self.duplicate = 1.0 - (1.0 - self.duplicate) * (1.0 - float(rule.get("duplicate", 0.0)))
        self.reorder = max(self.reorder, float(rule.get("reorder", 0.0)))
        if rule.get("rate"):
            self.rate = float(rule["rate"]) if self.rate is None else min(self.rate, float(rule["rate"]))
        if rule.get("delay"):
            self.delays.append(rule["delay"])

    @property
    def clean(self) -> bool:
        return not (self.drop or self.duplicate or self.reorder or self.rate or self.delays)

    def delay(self, rng: random.Random) -> float:
        return sum(sample_delay(d, rng) for d in self.delays)


class Link:
    """The combined rules of one (local, peer) link, with per-direction state."""

    def __init__(self, rules: list[dict], rng: random.Random) -> None:
        self.rng = rng
        self.ways = {"out": _Way(), "in": _Way()}
        self.faults = sorted({r.get("fault", "") for r in rules})
        for r in rules:
            d = r.get("dir", "both")
            for way in (("out", "in") if d == "both" else (d,)):
                self.ways[way].add(r)

    def may_drop(self) -> bool:
        return self.ways["out"].drop > 0 or self.ways["in"].drop > 0

    def cut(self, direction: str) -> bool:
        return self.ways[direction].drop >= 1.0

    def depart(self, nbytes: int, now: float, direction: str) -> list[float]:
        w = self.ways[direction]
        rng = self.rng
        if w.drop and (w.drop >= 1.0 or rng.random() < w.drop):
            return []
        copies = 2 if w.duplicate and rng.random() < w.duplicate else 1
        out = []
        for _ in range(copies):
            start = now
            if w.rate:
                start = max(now, w.busy_until) + nbytes / w.rate
                w.busy_until = start
            if w.reorder and rng.random() < w.reorder:
                out.append(start)   # skips the queue
                continue
            d = w.delay(rng)
            if w.reorder and not w.delays:
                d = REORDER_GAP
            t = max(start + d, w.last_release)
            w.last_release = t
            out.append(t)
        return out


class LinkTable:
    def __init__(self) -> None:
        self.rules: dict[str, list[dict]] = {}
        self.generation = 0
        self.enabled = False

    def set_rules(self, local: str, rules: list[dict]) -> None:
        checked = [check_rule(r) for r in rules]
        if checked:
            self.rules[local] = checked
        else:
            self.rules.pop(local, None)
        self.generation += 1

    def clear(self) -> None:
        self.rules.clear()
        self.generation += 1

    def matching(self, local: str, peer: str) -> list[dict]:
        return [r for r in self.rules.get(local, ())
                if (peer != local if r["peers"] == "*" else peer in r["peers"])]

    def link(self, local: str, peer: str, rng: random.Random | None = None) -> Link | None:
        rules = self.matching(local, peer)
        if not rules:
            return None
        link = Link(rules, rng or random.Random())
        return None if all(w.clean for w in link.ways.values()) else link


TABLE = LinkTable()


def enable() -> None:
    """This is a lab process: its bus connections go through ``TABLE``."""
    TABLE.enabled = True


def wrap(inner: Any, local: str, peer: str = "apiserver") -> Any:
    """``inner`` wrapped in a ``NetemConnection`` when this is a lab process."""
    return NetemConnection(inner, local, peer) if TABLE.enabled else inner


class NetemConnection:
    def __init__(self, inner: Any, local: str, peer: str = "apiserver", table: LinkTable | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.local = local
        self.peer = peer
        self.table = table or TABLE
        self.rng = rng or random.Random()
        self.clock = clock
        self._gen = -1
        self._link: Link | None = None
        self._outq: list[tuple[float, int, bytes]] = []
        self._inq: list[tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self.dropped = 0

    @property
    def address(self) -> str:
        return self.inner.address

    def link(self) -> Link | None:
        if self._gen != self.table.generation:
            self._gen = self.table.generation
            self._link = self.table.link(self.local, self.peer, self.rng)
        return self._link

    def next_due(self) -> float | None:
        """When the next held frame is due (monotonic), or None when none is held."""
        heads = [q[0][0] for q in (self._inq, self._outq) if q]
        return min(heads) if heads else None

    @property
    def lossy(self) -> bool:
        link = self.link()
        return link is not None and link.may_drop()

    def send(self, frame: bytes) -> None:
        link = self.link()
        if link is None and not self._outq:
            self.inner.send(frame)
            return
        now = self.clock()
        times = link.depart(len(frame), now, "out") if link is not None else [now]
        if not times:
            self.dropped += 1
        for t in times:
            if t <= now and not self._outq:
                self.inner.send(frame)
            else:
                heapq.heappush(self._outq, (t, next(self._seq), frame))

    def _flush(self, now: float) -> None:
        q = self._outq
        while q and q[0][0] <= now:
            frame = heapq.heappop(q)[2]
            try:
                self.inner.send(frame)
            except ConnectionError:
                self.dropped += 1   # nobody there when it was due: lost, as on a wire

    def recv(self, timeout: float) -> bytes | None:
        deadline = self.clock() + timeout
        inq = self._inq
        while True:
            now = self.clock()
            self._flush(now)
            if inq and inq[0][0] <= now:
                return heapq.heappop(inq)[2]
            wait = deadline - now
            for q in (self._outq, inq):
                if q:
                    wait = min(wait, q[0][0] - now)
            frame = self.inner.recv(max(0.0, wait))
            if frame is not None:
                link = self.link()
                if link is None and not inq:
                    return frame
                now = self.clock()
                times = link.depart(len(frame), now, "in") if link is not None else [now]
                if not times:
                    self.dropped += 1
                for t in times:
                    heapq.heappush(inq, (t, next(self._seq), frame))
                continue
            if self.clock() >= deadline and not (inq and inq[0][0] <= self.clock()):
                self._flush(self.clock())
                return None

    def reconnect(self) -> None:
        self._outq.clear()
        self._inq.clear()
        self.inner.reconnect()

    def close(self) -> None:
        self._outq.clear()
        self._inq.clear()
        self.inner.close()


def stream_hold(local: str, peer: str, nbytes: int, direction: str,
                rng: random.Random | None = None, table: LinkTable | None = None) -> float | None:
    """Seconds to hold a chunk of a TCP stream on (local, peer), or None when cut."""
    rules = (table or TABLE).matching(local, peer)
    if not rules:
        return 0.0
    rng = rng or random.Random()
    way = Link(rules, rng).ways[direction]
    if way.drop >= 1.0:
        return None
    hold = way.delay(rng)
    rto = RTO
    while way.drop and rng.random() < way.drop:   # each lost try costs a retransmission timeout
        hold += rto
        rto = min(rto * 2, 60.0)
    if way.rate:
        hold += nbytes / way.rate
    return hold
