"""A lab's configuration: what ``kemu lab up`` was asked for, validated.

Contract: ``LabConfig.validate()`` raises ValueError with a message that names
the flag and the fix. Node names are ``node-1`` .. ``node-N``; zones are
assigned round-robin from ``zones``; every node runs ``runtime`` (fake,
process or docker) unless ``runtime_for`` names another for it; each node gets a /24 for pod IPs out of
127.64.0.0/10 (node i: ``127.(64 + i // 256).(i % 256).0/24``) and the node
IP ``127.32.0.0 + i`` (``node_ip(i)``: node-1 is 127.32.0.1). ``dns`` and
``metrics`` turn those add-ons on (both by default); ``metrics_port`` is the
metrics add-on's HTTP port on 127.0.0.1 (0: a free one).
``nodes_per_process`` K > 1 packs the nodes into node hosts (``node.host``),
``nodehost-1`` holding node-1..node-K and so on (``host_groups()``); hosts run
the fake runtime only, ``node_host_nice`` (0..19) nice levels below the
control plane (``NODE_HOST_NICE`` by default; see docs/architecture.md).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.api.quantity import cpu_millis, memory_bytes
from emulator.profiles import get_profile
from lab.paths import check_lab_name

RUNTIMES = ("fake", "process", "docker")
NODE_IP_BASE = int(ipaddress.IPv4Address("127.32.0.0"))   # node i: 127.32.0.0 + i (its InternalIP)
MAX_NODES = 16_384   # the pod-CIDR plan gives one /24 per node in 127.64.0.0/10
# Node hosts yield the cores to the control plane, which in a cluster has machines of its own.
NODE_HOST_NICE = 19


def parse_runtime_for(specs: list[str] | None) -> dict[str, str]:
    """``["node-3=process", ...]`` (``--runtime-for``, repeated) -> {node: runtime}."""
    out: dict[str, str] = {}
    for spec in specs or ():
        node, sep, rt = str(spec).partition("=")
        node, rt = node.strip(), rt.strip()
        if not sep or not node or not rt:
            raise ValueError(f'--runtime-for: expected NODE=RUNTIME (e.g. node-3=process), got "{spec}"')
        if node in out and out[node] != rt:
            raise ValueError(f"--runtime-for: {node} is given twice ({out[node]} and {rt}); give it once")
        out[node] = rt
    return out


def parse_zones(spec: str) -> list[str]:
    """``3`` → zone-a, zone-b, zone-c; ``a,b`` → a, b."""
    spec = spec.strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= 26:
            raise ValueError(f"--zones: {spec} is out of range: give 1 to 26, or a comma list of names")
        return [f"zone-{chr(ord('a') + i)}" for i in range(n)]
    zones = [z.strip() for z in spec.split(",") if z.strip()]
    bad = [z for z in zones if not re.match(r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$", z)]
    if not zones or bad:
        raise ValueError(f"--zones: invalid zone names {bad or [spec]}: give a count (3) or "
                         "names separated by commas (a,b)")
    return zones


@dataclass
class LabConfig:
    name: str = "default"
    nodes: int = 3
    profile: str = "default"
    runtime: str = "fake"
    node_cpu: str = "4"
    node_memory: str = "16Gi"
    node_pods: int = 110
    node_ephemeral_storage: str = "100Gi"   # the kubelet's ephemeral-storage capacity (DiskPressure)
    zones: list[str] = field(default_factory=lambda: ["zone-a"])
    port: int = 0
    dns: bool = True
    dns_port: int = 0
    metrics: bool = True
    metrics_port: int = 0
    node_names: list[str] = field(default_factory=list)
    runtime_for: dict[str, str] = field(default_factory=dict)   # per-node override: node -> runtime
    nodes_per_process: int = 1   # K > 1: K nodes in each node-host process (node.host)
    node_host_nice: int = NODE_HOST_NICE   # the node hosts' nice increment (os.nice), 0..19

    @property
    def process_profile(self) -> str:
        """The profile name the lab's processes run: ``NAME@NODES`` (``emulator.profiles``)."""
        return f"{self.profile}@{self.nodes}"

    def validate(self) -> "LabConfig":
        check_lab_name(self.name)
        if not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"--nodes: must be a whole number of at least 1, got {self.nodes!r}")
        if self.nodes > MAX_NODES:
            raise ValueError(f"--nodes: at most {MAX_NODES} nodes per lab, got {self.nodes}")
        get_profile(self.profile)
        if self.runtime not in RUNTIMES:
            raise ValueError(f'--runtime: unsupported runtime "{self.runtime}"; supported: '
                             f'{", ".join(RUNTIMES)}')
        for flag, value, parse in (("--node-cpu", self.node_cpu, cpu_millis),
                                   ("--node-memory", self.node_memory, memory_bytes),
                                   ("--node-ephemeral-storage", self.node_ephemeral_storage, memory_bytes)):
            try:
                if parse(value) <= 0:
                    raise ValueError("must be positive")
            except ValueError as e:
                raise ValueError(f"{flag}: invalid quantity {value!r}: {e}") from None
        if self.node_pods < 1:
            raise ValueError(f"--node-pods: must be at least 1, got {self.node_pods}")
        if not 0 <= self.dns_port <= 65535:
            raise ValueError(f"--dns-port: {self.dns_port} is not a port number (0 picks a free one)")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"--metrics-port: {self.metrics_port} is not a port number (0 picks a free one)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port: {self.port} is not a port number (0 picks a free one)")
        if not self.node_names:
            self.node_names = [f"node-{i}" for i in range(1, self.nodes + 1)]
        for node, rt in self.runtime_for.items():
            if node not in self.node_names:
                raise ValueError(f'--runtime-for: node "{node}" does not exist; this lab has '
                                 f'{self.node_names[0]} .. {self.node_names[-1]} (see --nodes)')
            if rt not in RUNTIMES:
                raise ValueError(f'--runtime-for: unsupported runtime "{rt}" for {node}; supported: '
                                 f'{", ".join(RUNTIMES)}')
        self._check_packing()
        return self

    def _check_packing(self) -> None:
        k = self.nodes_per_process
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"--nodes-per-process: must be a whole number of at least 1, got {k!r}")
        n = self.node_host_nice
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 19:
            raise ValueError(f"--node-host-nice: must be a whole number from 0 (the control plane's "
                             f"priority) to 19 (the lowest), got {n!r}")
        if k > 1:
            real = [n for n in self.node_names if self.runtime_for_node(n) != "fake"]
            if real:
                raise ValueError(f'--nodes-per-process: node hosts run the fake runtime only, but '
                                 f'{real[0]} runs "{self.runtime_for_node(real[0])}" (--runtime/'
                                 f'--runtime-for); use --nodes-per-process 1 with a real runtime')

    @property
    def packed(self) -> bool:
        return self.nodes_per_process > 1

    def host_groups(self, names: list[str] | None = None, first_host: int = 1,
                    first_index: int = 1) -> list[tuple[str, list[tuple[str, int]]]]:
        """``[(host name, [(node name, node index), ...]), ...]``: ``names`` (default every
        node) in order, ``nodes_per_process`` to a host, hosts numbered from ``first_host``."""
        names = self.node_names if names is None else names
        k = self.nodes_per_process
        indexed = list(zip(names, range(first_index, first_index + len(names))))
        return [(f"nodehost-{first_host + h}", indexed[h * k:(h + 1) * k])
                for h in range((len(indexed) + k - 1) // k)]

    def runtime_for_node(self, name: str) -> str:
        """The node's runtime: its ``--runtime-for`` override, else ``--runtime``."""
        return self.runtime_for.get(name, self.runtime)

    def zone_for(self, index: int) -> str:
        return self.zones[(index - 1) % len(self.zones)]

    @staticmethod
    def pod_cidr(index: int) -> str:
        return f"127.{64 + index // 256}.{index % 256}.0/24"

    @staticmethod
    def node_ip(index: int) -> str:
        """The node's InternalIP (where its NodePorts listen): 127.32.0.0 + index."""
        return str(ipaddress.IPv4Address(NODE_IP_BASE + index))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
