"""Cluster IP and NodePort allocation for Services, as the kube-apiserver does it.

Contract:
- ``IPRange(cidr)`` / ``PortRange(first, last)`` hold which addresses/ports are
  taken (plain sets, no I/O). A range excludes the network and broadcast
  addresses of an IPv4 CIDR. ``allocate(value)`` reserves a requested value or
  raises ``NotInRange``/``AlreadyAllocated``; ``allocate_next()`` picks a free
  one (dynamic allocation prefers the upper band, leaving the first
  ``offset`` values, such as ``.1`` of the ``kubernetes`` Service, for static
  requests) or raises ``RangeFull``; ``release(value)`` frees it.
- ``ServiceAllocations`` is the apiserver's write hook for kind Service
  (``strategy.KindHooks``): on create it allocates ``spec.clusterIP(s)`` when
  empty (honouring a requested IP; ``None`` is headless, ExternalName gets
  none) and a nodePort for every port of a NodePort/LoadBalancer Service that
  has none; on update it first carries the allocated values over when the
  client left them out (``prepare_update``), then reserves what is new and
  releases what is gone; on removal it releases everything. Every failure
  raises ``APIError(INVALID)`` worded as Kubernetes' (``spec.clusterIPs:
  Invalid value: []string{"10.0.0.1"}: failed to allocate IP 10.0.0.1: the
  provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is
  127.96.0.0/12``) and leaves nothing reserved. ``rebuild(services)`` replays
  the stored Services (after recovery) so allocations survive restarts.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any, Iterable

from control.apiserver.strategy import KindHooks
from emulator.api.errors import INVALID, APIError, cause
from emulator.api.kinds.service import needs_cluster_ip, needs_node_ports
from emulator.api.meta import invalid_error

__all__ = ["DEFAULT_SERVICE_CIDR", "DEFAULT_NODE_PORT_RANGE", "IPRange", "PortRange",
           "ServiceAllocations", "AllocationError", "NotInRange", "AlreadyAllocated",
           "RangeFull", "parse_port_range"]

DEFAULT_SERVICE_CIDR = "127.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)


class AllocationError(Exception):
    pass


class NotInRange(AllocationError):
    pass


class AlreadyAllocated(AllocationError):
    pass


class RangeFull(AllocationError):
    pass


class _Bitmap:
    """Offsets 0..size-1 of a range; dynamic picks start in [offset, size)."""

    def __init__(self, size: int, offset: int, rng: random.Random) -> None:
        self.size = size
        self.offset = min(offset, size)
        self.used: set[int] = set()
        self.rng = rng

    def take(self, i: int) -> None:
        if i in self.used:
            raise AlreadyAllocated(i)
        self.used.add(i)

    def take_next(self) -> int:
        if len(self.used) >= self.size:
            raise RangeFull()
        for lo, hi in ((self.offset, self.size), (0, self.offset)):
            if hi <= lo:
                continue
            start = self.rng.randrange(lo, hi)
            for i in range(start, hi):
                if i not in self.used:
                    self.used.add(i)
                    return i
            for i in range(lo, start):
                if i not in self.used:
                    self.used.add(i)
                    return i
        raise RangeFull()


class IPRange:
    """The service CIDR's usable addresses (network and broadcast excluded)."""

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, rng: random.Random | None = None) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        total = self.network.num_addresses
        if self.network.version == 4:
            usable = max(total - 2, 0) if total > 2 else total
            self.base = int(self.network.network_address) + (1 if total > 2 else 0)
        else:
            usable = max(total - 1, 0)
            self.base = int(self.network.network_address) + 1
        if usable <= 0:
            raise ValueError(f"service CIDR {cidr} has no usable addresses")
        self.bits = _Bitmap(usable, min(max(16, usable // 16), 256), rng or random.Random())

    def _offset(self, ip: str) -> int:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise NotInRange(ip)
        i = int(addr) - self.base
        if addr.version != self.network.version or not 0 <= i < self.bits.size:
            raise NotInRange(ip)
        return i

    def contains(self, ip: str) -> bool:
        try:
            self._offset(ip)
        except NotInRange:
            return False
        return True

    def allocate(self, ip: str) -> None:
        self.bits.take(self._offset(ip))

    def allocate_next(self) -> str:
        return str(ipaddress.ip_address(self.base + self.bits.take_next()))

    def release(self, ip: str) -> None:
        try:
            self.bits.used.discard(self._offset(ip))
        except NotInRange:
            pass

    def is_allocated(self, ip: str) -> bool:
        try:
            return self._offset(ip) in self.bits.used
        except NotInRange:
            return False

    @property
    def first(self) -> str:
        return str(ipaddress.ip_address(self.base))

    def __len__(self) -> int:
        return len(self.bits.used)


class PortRange:
    """A node-port range, both ends inclusive."""

    def __init__(self, first: int = DEFAULT_NODE_PORT_RANGE[0],
                 last: int = DEFAULT_NODE_PORT_RANGE[1], rng: random.Random | None = None) -> None:
        if not 0 < first <= last <= 65535:
            raise ValueError(f"invalid port range {first}-{last}")
        self.first, self.last = first, last
        size = last - first + 1
        self.bits = _Bitmap(size, min(max(16, size // 32), 128), rng or random.Random())

    def _offset(self, port: int) -> int:
        if not isinstance(port, int) or not self.first <= port <= self.last:
            raise NotInRange(port)
        return port - self.first

    def allocate(self, port: int) -> None:
        self.bits.take(self._offset(port))

    def allocate_next(self) -> int:
        return self.first + self.bits.take_next()

    def release(self, port: int) -> None:
        if isinstance(port, int) and self.first <= port <= self.last:
            self.bits.used.discard(port - self.first)

    def is_allocated(self, port: int) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last and \
            (port - self.first) in self.bits.used

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def parse_port_range(text: str) -> tuple[int, int]:
    """``30000-32767`` (or ``30000+2767``) as (first, last)."""
    if "+" in text:
        a, n = text.split("+", 1)
        return int(a), int(a) + int(n)
    a, _, b = text.partition("-")
    return int(a), int(b or a)


def _go_strings(values: list[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def _ips(svc: dict[str, Any]) -> list[str]:
    """The cluster IPs a stored Service holds (none for headless/ExternalName)."""
    if not needs_cluster_ip(svc):
        return []
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if isinstance(ip, str) and ip and ip != "None"]


def _node_ports(svc: dict[str, Any]) -> list[int]:
    spec = svc.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return []
    return [p["nodePort"] for p in spec.get("ports") or ()
            if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]]


class ServiceAllocations(KindHooks):
    """Cluster IPs and node ports of all Services (the Service ``KindHooks``)."""

    def __init__(self, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 node_ports: tuple[int, int] = DEFAULT_NODE_PORT_RANGE,
                 rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.ips = IPRange(service_cidr, rng)
        self.ports = PortRange(node_ports[0], node_ports[1], rng)

    # -- replay ---------------------------------------------------------------
    def rebuild(self, services: Iterable[dict[str, Any]]) -> None:
        for svc in services:
            for ip in _ips(svc):
                try:
                    self.ips.allocate(ip)
                except AllocationError:
                    pass   # out of a changed range, or shared: keep serving
            for port in _node_ports(svc):
                try:
                    self.ports.allocate(port)
                except AllocationError:
                    pass

    # -- create ---------------------------------------------------------------
    def before_create(self, svc: dict[str, Any]) -> None:
        self._reserve(svc, set(), set())

    def after_remove(self, svc: dict[str, Any]) -> None:
        for ip in _ips(svc):
            self.ips.release(ip)
        for port in _node_ports(svc):
            self.ports.release(port)

    # -- update ---------------------------------------------------------------
    def prepare_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        """Carry allocated values the client left out; drop ones the new type has no use for."""
        spec, old_spec = new.get("spec"), old.get("spec") or {}
        if not isinstance(spec, dict):
            return
        new_type, old_type = spec.get("type") or "ClusterIP", old_spec.get("type") or "ClusterIP"
        if new_type == "ExternalName" and old_type != "ExternalName":
            if spec.get("clusterIP") in (None, "", old_spec.get("clusterIP")):
                for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
                            "internalTrafficPolicy"):
                    spec.pop(key, None)
        elif needs_cluster_ip(old) and needs_cluster_ip(new):
            if not spec.get("clusterIP") and not spec.get("clusterIPs"):
                for key in ("clusterIP", "clusterIPs"):
                    if key in old_spec:
                        spec[key] = old_spec[key]
            elif spec.get("clusterIP") and spec.get("clusterIPs") == old_spec.get("clusterIPs") \
                    and isinstance(spec.get("clusterIPs"), list) and spec["clusterIPs"]:
                spec["clusterIPs"] = [spec["clusterIP"]] + spec["clusterIPs"][1:]
        ports = spec.get("ports")
        if not isinstance(ports, list):
            return
        old_by_name = {p.get("name") or "": p.get("nodePort") for p in old_spec.get("ports") or ()
                       if isinstance(p, dict)}
        if new_type in ("NodePort", "LoadBalancer") and old_type in ("NodePort", "LoadBalancer"):
            used = set(_node_ports(old)) & {p.get("nodePort") for p in ports if isinstance(p, dict)}
            for p in ports:
                if isinstance(p, dict) and not p.get("nodePort"):
                    v = old_by_name.get(p.get("name") or "")
                    if v and v not in used:
                        p["nodePort"] = v
        elif new_type not in ("NodePort", "LoadBalancer") and old_type in ("NodePort", "LoadBalancer"):
            for p in ports:   # a node port kept unchanged from the old type is dropped
                if isinstance(p, dict) and p.get("nodePort") and \
                        p.get("nodePort") == old_by_name.get(p.get("name") or ""):
                    del p["nodePort"]

    def before_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        old_ips, old_ports = set(_ips(old)), set(_node_ports(old))
        self._reserve(new, old_ips, old_ports)
        new_ips, new_ports = set(_ips(new)), set(_node_ports(new))
        for ip in old_ips - new_ips:
            self.ips.release(ip)
        for port in old_ports - new_ports:
            self.ports.release(port)

    # -- the allocation itself ------------------------------------------------
    def _reserve(self, svc: dict[str, Any], keep_ips: set[str], keep_ports: set[int]) -> None:
        """Reserve ``svc``'s IPs and node ports (all or none), filling empty ones in."""
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            return
        taken_ips: list[str] = []
        taken_ports: list[int] = []
        saved = {k: spec[k] for k in ("clusterIP", "clusterIPs") if k in spec}
        ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
        saved_ports = [(p, p.get("nodePort"), "nodePort" in p) for p in ports]
        try:
            if needs_cluster_ip(svc):
                self._reserve_ips(svc, spec, keep_ips, taken_ips)
            if needs_node_ports(svc):
                self._reserve_ports(svc, spec, keep_ports, taken_ports)
        except APIError:
            for ip in taken_ips:
                self.ips.release(ip)
            for port in taken_ports:
                self.ports.release(port)
            for k in ("clusterIP", "clusterIPs"):   # leave the object as it came
                spec.pop(k, None)
            spec.update(saved)
            for p, value, present in saved_ports:
                if present:
                    p["nodePort"] = value
                else:
                    p.pop("nodePort", None)
            raise

    def _fail(self, svc: dict[str, Any], field: str, message: str) -> APIError:
        name = (svc.get("metadata") or {}).get("name") or ""
        return invalid_error("Service", name, [cause(field, "FieldValueInvalid", message)])

    def _reserve_ips(self, svc: dict[str, Any], spec: dict[str, Any], keep: set[str],
                     taken: list[str]) -> None:
        requested = [ip for ip in spec.get("clusterIPs") or
                     ([spec["clusterIP"]] if spec.get("clusterIP") else []) if ip]
        if not requested:
            try:
                ip = self.ips.allocate_next()
            except RangeFull:
                raise APIError(INVALID, f'Service "{(svc.get("metadata") or {}).get("name")}" '
                               "is invalid: spec.clusterIPs: Internal error: failed to allocate "
                               "a serviceIP: range is full")
            taken.append(ip)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            return
        for ip in requested[:1]:   # single stack: the primary family only
            if ip in keep:
                continue
            try:
                self.ips.allocate(ip)
            except NotInRange:
                raise self._fail(svc, "spec.clusterIPs",
                                 f"Invalid value: {_go_strings(requested)}: failed to allocate "
                                 f"IP {ip}: the provided IP ({ip}) is not in the valid range. "
                                 f"The range of valid IPs is {self.ips.cidr}")
            except AlreadyAllocated:
                raise self._fail(svc, "spec.clusterIPs",
                                 f"Invalid value: {_go_strings(requested)}: failed to allocate "
                                 f"IP {ip}: provided IP is already allocated")
            taken.append(ip)

    def _reserve_ports(self, svc: dict[str, Any], spec: dict[str, Any], keep: set[int],
                       taken: list[int]) -> None:
        ports = spec.get("ports") or []
        for i, p in enumerate(ports):
            if not isinstance(p, dict):
                continue
            np = p.get("nodePort")
            if not np:
                try:
                    p["nodePort"] = self.ports.allocate_next()
                except RangeFull:
                    raise self._fail(svc, f"spec.ports[{i}].nodePort",
                                     "Internal error: failed to allocate a nodePort: range is full")
                taken.append(p["nodePort"])
                continue
            if np in keep or np in taken:
                continue   # a port number shared by two protocols of one Service
            try:
                self.ports.allocate(np)
            except NotInRange:
                raise self._fail(svc, f"spec.ports[{i}].nodePort",
                                 f"Invalid value: {np}: provided port is not in the valid "
                                 f"range. The range of valid ports is {self.ports}")
            except AlreadyAllocated:
                raise self._fail(svc, f"spec.ports[{i}].nodePort",
                                 f"Invalid value: {np}: provided port is already allocated")
            taken.append(np)
