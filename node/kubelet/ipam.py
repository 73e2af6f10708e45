"""Pod IP addresses from the node's /24, as host-local IPAM hands them out.

Contract: pod CIDRs live in 127.64.0.0/10, one /24 per node
(``pod_cidr_for_index(i)``). ``allocate(cidr, used)`` returns the lowest free
address after the gateway (``.1``) and below broadcast, or "" when the range
is full or there is no CIDR. Addresses in use are read from the runtime's
sandboxes, so a restarted kubelet never hands out a live pod's address.
"""
from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import Iterable

POD_NETWORK = ipaddress.IPv4Network("127.64.0.0/10")


def pod_cidr_for_index(index: int) -> str:
    base = int(POD_NETWORK.network_address) + 256 * index
    if index < 0 or base + 255 > int(POD_NETWORK.broadcast_address):
        raise ValueError(f"node index {index} is outside {POD_NETWORK}")
    return f"{ipaddress.IPv4Address(base)}/24"


def allocate(cidr: str, used: Iterable[str]) -> str:
    if not cidr:
        return ""
    taken = set(used)
    net = _network(cidr)
    first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1   # .1 is the gateway
    for n in range(first, last + 1):
        ip = socket.inet_ntoa(n.to_bytes(4, "big"))
        if ip not in taken:
            return ip
    return ""


@lru_cache(maxsize=64)
def _network(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr, strict=False)
