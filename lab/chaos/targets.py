"""Target resolution: what a fault's target string names, as a list of lab process names.

Contract
--------
``resolve(lab, target, seed=None, nodes_only=False)`` understands:

* a process name: ``node-3``, ``apiserver``, ``scheduler``, ``controller-manager``, ``dns``;
* a comma list of targets (each resolved; duplicates dropped, order kept);
* ``nodes:all``; ``nodes:zone=<zone>`` (by the Node label ``topology.kubernetes.io/zone``,
  or the lab configuration when the apiserver does not answer);
* ``nodes:random:N``: N distinct nodes, seeded by ``seed`` when given (reproducible);
* ``nodes:minority``: floor((n-1)/2) nodes: the highest-numbered ones, or a seeded
  random choice when ``seed`` is given.

An unknown target, an empty group, or (``nodes_only``) a control-plane process raises
``TargetError`` (a ``ValueError``) naming the target and what exists.
"""
from __future__ import annotations

import random
import re
from typing import Any

ZONE_LABEL = "topology.kubernetes.io/zone"
GROUPS = "nodes:all, nodes:zone=ZONE, nodes:random:N, nodes:minority"


class TargetError(ValueError):
    pass


def _node_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 0, name)


def _process_names(lab: Any) -> list[str]:
    names = [p["name"] for p in lab.processes()]
    for n in lab.nodes:
        if n not in names:
            names.append(n)
    return names


def _zones(lab: Any, nodes: list[str]) -> dict[str, str]:
    """node -> zone, from the Node objects (the configuration as a fallback)."""
    zones: dict[str, str] = {}
    try:
        for n in lab.client.list_all("Node")["items"]:
            z = ((n.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL)
            if z:
                zones[n["metadata"]["name"]] = z
    except Exception:
        pass
    for n in nodes:
        if n not in zones:
            idx = _node_key(n)[0]
            try:
                zones[n] = lab.config.zone_for(idx)
            except Exception:
                pass
    return zones


def describe(lab: Any) -> str:
    nodes = sorted(lab.nodes, key=_node_key)
    others = [p for p in _process_names(lab) if p not in nodes]
    shown = (f"{nodes[0]}..{nodes[-1]}" if len(nodes) > 3 else ", ".join(nodes)) or "no nodes"
    return f"the lab has {shown}" + (", " + ", ".join(others) if others else "") + f"; groups: {GROUPS}"


def resolve(lab: Any, target: str, seed: int | None = None, nodes_only: bool = False) -> list[str]:
    target = (target or "").strip()
    if not target:
        raise TargetError(f"empty target: name a lab process or a group ({describe(lab)})")
    out: list[str] = []
    for part in [p.strip() for p in target.split(",")]:
        if not part:
            raise TargetError(f"target {target!r} has an empty item: use NAME,NAME")
        for name in _resolve_one(lab, part, seed):
            if name not in out:
                out.append(name)
    if nodes_only:
        nodes = set(lab.nodes)
        bad = [n for n in out if n not in nodes]
        if bad:
            raise TargetError(f"target {target!r}: {', '.join(bad)} is not a node; this fault "
                              f"applies to nodes only ({describe(lab)})")
    return out


def _resolve_one(lab: Any, part: str, seed: int | None) -> list[str]:
    nodes = sorted(lab.nodes, key=_node_key)
    if part == "nodes:all":
        if not nodes:
            raise TargetError("target nodes:all: the lab has no nodes")
        return nodes
    if part.startswith("nodes:zone="):
        zone = part.removeprefix("nodes:zone=")
        zones = _zones(lab, nodes)
        picked = [n for n in nodes if zones.get(n) == zone]
        if not picked:
            have = ", ".join(sorted(set(zones.values()))) or "none"
            raise TargetError(f"target {part!r}: no node is in zone {zone!r}; the zones are: {have}")
        return picked
    if part.startswith("nodes:random:"):
        raw = part.removeprefix("nodes:random:")
        try:
            count = int(raw)
        except ValueError:
            raise TargetError(f"target {part!r}: N must be a whole number, e.g. nodes:random:2") from None
        if not 1 <= count <= len(nodes):
            raise TargetError(f"target {part!r}: N must be between 1 and {len(nodes)} "
                              f"(the lab has {len(nodes)} nodes)")
        picked = random.Random(seed).sample(nodes, count)
        return sorted(picked, key=_node_key)
    if part == "nodes:minority":
        count = (len(nodes) - 1) // 2
        if count < 1:
            raise TargetError(f"target nodes:minority is empty with {len(nodes)} node(s): it is "
                              "floor((n-1)/2) nodes, so it needs at least 3")
        picked = random.Random(seed).sample(nodes, count) if seed is not None else nodes[-count:]
        return sorted(picked, key=_node_key)
    if part.startswith("nodes:"):
        raise TargetError(f"unknown group {part!r}: use one of {GROUPS}")
    if part in _process_names(lab):
        return [part]
    raise TargetError(f"unknown target {part!r}: {describe(lab)}")
