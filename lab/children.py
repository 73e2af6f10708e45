"""What each forked lab process runs: the entry of every component, by role.

Contract: ``ROLES[role](ctx)`` runs one component until it is told to stop
(SIGTERM) and returns. It is called in a child forked from the supervisor
(the zygote), after the fork, so every ZeroMQ context and logger is created
in the child. ``ctx`` carries the lab's layout and configuration, the
process's name and node index, and the apiserver's address; a node host's
(role ``nodehost``) also its nodes (``members``: name, index), the ones to
start (``start``; None: all) and its end of the supervisor's command channel.
A node host lowers its priority by the lab's ``node_host_nice`` first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from lab.config import LabConfig
from lab.paths import LabLayout


@dataclass
class ChildContext:
    layout: LabLayout
    config: LabConfig
    name: str
    index: int
    server: str
    members: list[tuple[str, int]] = field(default_factory=list)
    start: list[str] | None = None
    command_fd: int | None = None


# Fault hook for start-up experiments (and the test of it): a node named in
# KEMU_FAULT_NODE_START dies as it starts, as if killed (exit code 137).
FAULT_NODE_START = "KEMU_FAULT_NODE_START"


def run_node(ctx: ChildContext) -> None:
    if ctx.name in os.environ.get(FAULT_NODE_START, "").split(","):
        os._exit(137)
    from node.kubelet.kubelet import run
    root = ctx.layout.node_root(ctx.name)
    root.mkdir(parents=True, exist_ok=True)
    run(server=ctx.server, node_name=ctx.name, profile_name=ctx.config.process_profile,
        root_dir=str(root), zone=ctx.config.zone_for(ctx.index), cpu=ctx.config.node_cpu,
        memory=ctx.config.node_memory, pods=ctx.config.node_pods,
        log_path=str(ctx.layout.log_for(ctx.name)), lab=ctx.config.name,
        pod_cidr=ctx.config.pod_cidr(ctx.index), ephemeral_storage=ctx.config.node_ephemeral_storage,
        node_ip=ctx.config.node_ip(ctx.index),
        shared_root=str(ctx.layout.shared), runtime=ctx.config.runtime_for_node(ctx.name))


def run_nodehost(ctx: ChildContext) -> None:
    from node.host import run
    from node.host_node import NodeSpec
    cfg = ctx.config
    # Before the host's ZeroMQ threads start, so that they run at its priority too; the
    # ctl server, started at the fork, keeps the supervisor's (chaos reaches a busy host).
    os.nice(cfg.node_host_nice)
    specs = [NodeSpec(name, str(ctx.layout.node_root(name)), zone=cfg.zone_for(i), cpu=cfg.node_cpu,
                      memory=cfg.node_memory, pods=cfg.node_pods,
                      ephemeral_storage=cfg.node_ephemeral_storage, node_ip=cfg.node_ip(i),
                      pod_cidr=cfg.pod_cidr(i), shared_root=str(ctx.layout.shared))
             for name, i in ctx.members]
    run(ctx.server, specs, cfg.process_profile, run_dir=str(ctx.layout.run),
        log_path=str(ctx.layout.log_for(ctx.name)), lab=cfg.name, command_fd=ctx.command_fd,
        start=ctx.start)


def run_scheduler(ctx: ChildContext) -> None:
    from control.scheduler.scheduler import run
    run(server=ctx.server, profile_name=ctx.config.process_profile,
        log_path=str(ctx.layout.log_for(ctx.name)), lab=ctx.config.name)


def run_controller_manager(ctx: ChildContext) -> None:
    from control.controllers.manager import CONTROLLERS, run
    run(server=ctx.server, profile_name=ctx.config.process_profile,
        log_path=str(ctx.layout.log_for(ctx.name)), lab=ctx.config.name,
        controllers=tuple(CONTROLLERS), nodes_root=str(ctx.layout.nodes),
        shared_root=str(ctx.layout.shared))


def run_metrics(ctx: ChildContext) -> None:
    from emulator.profiles import get_profile
    from lab.chaos.model import parse_duration
    from lab.metrics_addon import run
    interval = parse_duration(get_profile(ctx.config.process_profile).metrics_interval, "metrics_interval")
    run(str(ctx.layout.run), str(ctx.layout.root / "metrics"), interval, lab=ctx.config.name,
        log_path=str(ctx.layout.log_for(ctx.name)), port=ctx.config.metrics_port,
        port_file=str(ctx.layout.run / "metrics.endpoint"))


def run_dns(ctx: ChildContext) -> None:
    from control.dns.server import run
    run(server=ctx.server, profile_name=ctx.config.process_profile, listen_host="127.0.0.1",
        port=ctx.config.dns_port, log_path=str(ctx.layout.log_for(ctx.name)), lab=ctx.config.name,
        port_file=str(ctx.layout.run / "dns.endpoint"))


ROLES: dict[str, Callable[[ChildContext], None]] = {
    "node": run_node,
    "nodehost": run_nodehost,
    "scheduler": run_scheduler,
    "controller-manager": run_controller_manager,
    "dns": run_dns,
    "metrics": run_metrics,
}


def preimport() -> list[str]:
    """Import everything the children run, so each fork starts warm. Returns what failed."""
    failed = []
    for mod in ("node.kubelet.kubelet", "node.host", "node.host_ctl",
                "control.scheduler.scheduler", "control.controllers.manager",
                "emulator.client", "emulator.informer", "emulator.events", "emulator.transport.zmq",
                "node.runtime.fake", "node.proxy.proxy", "control.dns.server", "dnslib",
                "zmq", "msgpack", "prometheus_client", "emulator.metrics", "lab.metrics_addon",
                "lab.chaos.model",
                "structlog"):
        try:
            __import__(mod)
        except Exception as e:   # reported by the supervisor; the child will fail loudly
            failed.append(f"{mod}: {e}")
    return failed
