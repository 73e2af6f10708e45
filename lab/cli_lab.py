"""``kemu lab up|down|status|list|add-nodes|remove-node|logs``: one function per command.

Contract: every command prints what it did or why it failed (naming the flag
and the fix), exits 0 on success, 1 on a failure it explains and 2 on bad
usage. Without ``--name`` a command acts on the current lab.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lab.paths import check_lab_name


def _count(flag: str):   # noqa: ANN202
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1, got {v}")
        return v
    return parse


def _name(s: str) -> str:
    try:
        return check_lab_name(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--name: ")) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="start, inspect and stop labs")
    lsub = p.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lsub.required = True

    up = lsub.add_parser("up", help="start a lab and wait until its nodes are Ready")
    up.add_argument("--nodes", type=_count("--nodes"), default=3)
    up.add_argument("--name", type=_name, default="default")
    up.add_argument("--profile", choices=["default", "fast"], default="default")
    up.add_argument("--runtime", choices=["fake", "process", "docker"], default="fake",
                    help="every node's container runtime (fake: simulated; process: real OS processes; "
                         "docker: Docker containers)")
    up.add_argument("--runtime-for", action="append", default=[], metavar="NODE=RUNTIME",
                    help="another runtime for one node, e.g. node-3=process (repeatable)")
    up.add_argument("--node-cpu", default="4")
    up.add_argument("--node-memory", default="16Gi")
    up.add_argument("--node-ephemeral-storage", default="100Gi",
                    help="each node's disk capacity; DiskPressure when less than 10%% is free")
    up.add_argument("--node-pods", type=_count("--node-pods"), default=110)
    up.add_argument("--zones", default="1", help="a count (3: zone-a..zone-c) or names (a,b)")
    up.add_argument("--port", type=int, default=0, help="apiserver port on 127.0.0.1 (0: any free one)")
    up.add_argument("--dir", help="lab directory (default: $KEMU_HOME/labs/NAME)")
    up.add_argument("--no-dns", action="store_true", help="leave out the DNS add-on")
    up.add_argument("--dns-port", type=int, default=0, help="DNS port on 127.0.0.1 (0: any free one)")
    up.add_argument("--no-metrics", action="store_true", help="leave out the metrics add-on")
    up.add_argument("--metrics-port", type=int, default=0,
                    help="the metrics add-on's Prometheus port on 127.0.0.1 (0: any free one)")
    up.add_argument("--timeout", type=float, help="seconds to wait for the nodes to be Ready")
    up.add_argument("--nodes-per-process", type=_count("--nodes-per-process"), default=1, metavar="K",
                    help="pack K nodes into each node-host process (fake runtime only; default 1)")
    up.add_argument("--node-host-nice", type=int, metavar="N",
                    help="run node hosts N nice levels below the control plane, 0..19 (default: the "
                         "lowest priority, so that the control plane has the cores first, as on "
                         "machines of its own)")
    up.set_defaults(func=cmd_up)

    for name, fn, hlp in (("down", cmd_down, "stop a lab"), ("status", cmd_status, "the lab's processes"),
                          ("list", cmd_list, "every lab on this machine")):
        q = lsub.add_parser(name, help=hlp)
        if name != "list":
            q.add_argument("--name", type=_name)
        if name == "status":
            q.add_argument("-o", "--output", choices=["json"])
        q.set_defaults(func=fn)

    add = lsub.add_parser("add-nodes", help="add K nodes to the lab")
    add.add_argument("count", type=_count("K"))
    add.add_argument("--name", type=_name)
    add.set_defaults(func=cmd_add_nodes)

    rm = lsub.add_parser("remove-node", help="stop one node and delete its Node object")
    rm.add_argument("node")
    rm.add_argument("--name", type=_name)
    rm.set_defaults(func=cmd_remove_node)

    from lab.cli_metrics import add_parser as add_metrics_parser
    add_metrics_parser(lsub, _name)

    logs = lsub.add_parser("logs", help="the merged log timeline")
    logs.add_argument("--name", type=_name)
    logs.add_argument("--component", help="only this component (kubelet, scheduler, chaos, ...)")
    logs.add_argument("--node", help="records written by or about this node")
    logs.add_argument("--pod", metavar="[NAMESPACE/]NAME", help="records that name this pod")
    logs.add_argument("--level", help="the minimum level: debug, info, warning or error")
    logs.add_argument("--event", metavar="GLOB", help="event names matching a glob, e.g. 'pod_*'")
    logs.add_argument("--since", help="a duration ago (30s, 5m) or a time (RFC 3339)")
    logs.add_argument("--until", help="a duration ago (30s, 5m) or a time (RFC 3339)")
    logs.add_argument("--grep", metavar="REGEX", help="a regular expression on the raw JSON line")
    logs.add_argument("--fault", metavar="ID", help="everything within a fault's window (kemu chaos list)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--json", action="store_true", help="print the JSON lines")
    logs.add_argument("--follow-seconds", type=float, help=argparse.SUPPRESS)
    logs.set_defaults(func=cmd_logs)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    from lab.lab import Lab, LabError
    try:
        lab = Lab(args.nodes, name=args.name, profile=args.profile, runtime=args.runtime,
                  runtime_for=args.runtime_for,
                  node_cpu=args.node_cpu, node_memory=args.node_memory, node_pods=args.node_pods,
                  node_ephemeral_storage=args.node_ephemeral_storage, zones=args.zones, port=args.port, dir=args.dir, ready_timeout=args.timeout,
                  dns=not args.no_dns, dns_port=args.dns_port, nodes_per_process=args.nodes_per_process,
                  **({} if args.node_host_nice is None else {"node_host_nice": args.node_host_nice}),
                  metrics=not args.no_metrics, metrics_port=args.metrics_port)
    except ValueError as e:
        return _fail(str(e))
    try:
        lab.up()
    except LabError as e:
        running = lab.running()
        extra = (f"\nthe lab is still up for inspection; stop it with 'kemu lab down --name {lab.name}'"
                 if running else "")
        return _fail(f"{e}{extra}")
    print(f"lab {lab.name} is up: {len(lab.nodes)} node(s) Ready, profile {lab.config.profile}")
    print(f"  directory: {lab.layout.root}")
    print(f"  apiserver: {lab.server}")
    if lab.dns_address:
        print(f"  dns:       {lab.dns_address}")
    if lab.metrics_address:
        print(f"  metrics:   {lab.metrics_address}   (Prometheus text)")
    print("  try:       kemu get nodes      (this lab is now the current one)")
    print(f"  or:        export KEMU_SERVER={lab.server}")
    return 0


def _attach(args: argparse.Namespace) -> Any:
    from lab.lab import Lab
    return Lab.attach(getattr(args, "name", None))


def cmd_down(args: argparse.Namespace) -> int:
    from lab.lab import LabError
    try:
        lab = _attach(args)
    except LabError as e:
        return _fail(str(e))
    lab.down()
    print(f"lab {lab.name} is down (logs kept in {lab.layout.logs})")
    return 0


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60}s" if s < 600 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60}m"


def cmd_status(args: argparse.Namespace) -> int:
    from emulator.cli.tabwriter import align
    from lab.lab import LabError
    try:
        lab = _attach(args)
    except LabError as e:
        return _fail(str(e))
    rows = lab.status()
    try:
        ready = lab.ready_nodes() if lab.running() else 0
    except Exception:
        ready = 0
    if args.output == "json":
        print(json.dumps({"lab": lab.name, "running": lab.running(), "ready_nodes": ready,
                          "dns": lab.dns_address, "metrics": lab.metrics_address,
                          "nodes": len(lab.nodes), "processes": rows}, indent=1))
        return 0
    lines = ["NAME\tROLE\tPID\tSTATE\tCPU%\tRSS\tUPTIME\tRESTARTS"]
    for r in rows:
        cpu = "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}"
        rss = "-" if r["rss_bytes"] is None else f"{r['rss_bytes'] / (1 << 20):.1f}Mi"
        state = r["state"] + (f"({r['exit_code']})" if r["state"] == "exited" else "")
        lines.append(f"{r['name']}\t{r['role']}\t{r['pid']}\t{state}\t{cpu}\t{rss}\t"
                     f"{_age(r['uptime_s']) if r['uptime_s'] else '-'}\t{r['restarts']}")
    print(align("\n".join(lines) + "\n"), end="")
    print(f"\n{ready}/{len(lab.nodes)} nodes Ready" + ("" if lab.running() else " (the lab is down)"))
    print(f"apiserver: {lab.server if lab.running() else '-'}")
    print(f"dns:       {lab.dns_address or '-'}")
    print(f"metrics:   {lab.metrics_address or '-'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from emulator.cli.tabwriter import align
    from lab.lab import list_labs
    labs = list_labs()
    if not labs:
        print("No labs found.", file=sys.stderr)
        return 0
    lines = ["CURRENT\tNAME\tNODES\tPROFILE\tSTATE\tDIRECTORY"]
    for lab in labs:
        lines.append(f"{'*' if lab['current'] else ''}\t{lab['name']}\t{lab['nodes']}\t"
                     f"{lab['profile']}\t{'running' if lab['running'] else 'down'}\t{lab['dir']}")
    print(align("\n".join(lines) + "\n"), end="")
    return 0


def cmd_add_nodes(args: argparse.Namespace) -> int:
    from lab.lab import LabError
    try:
        lab = _attach(args)
        names = lab.add_nodes(args.count)
    except LabError as e:
        return _fail(str(e))
    print(f"added {', '.join(names)} (Ready)")
    return 0


def cmd_remove_node(args: argparse.Namespace) -> int:
    from lab.lab import LabError
    try:
        lab = _attach(args)
        lab.remove_node(args.node)
    except LabError as e:
        return _fail(str(e))
    print(f"node {args.node} removed")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    import resource

    from lab.lab import LabError
    from lab.logs import Filter, fault_window, follow, parse_since, print_timeline, use_color
    try:   # the flags first, whichever lab is meant
        since = parse_since(args.since, flag="--since") if args.since else None
        until = parse_since(args.until, flag="--until") if args.until else None
        Filter(level=args.level, grep=args.grep, event=args.event)
    except ValueError as e:
        return _fail(str(e))
    try:
        lab = _attach(args)
    except LabError as e:
        return _fail(str(e))
    if args.fault:
        try:
            start, end = fault_window(lab.layout.logs, args.fault)
        except ValueError as e:
            return _fail(str(e))
        since = max(since, start) if since else start
        until = (min(until, end) if until else end) if end else until
    flt = Filter(component=args.component, node=args.node, since=since, until=until, pod=args.pod,
                 level=args.level, event=args.event, grep=args.grep)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:   # one open file per process of the lab while merging
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = sys.stdout
    color = use_color(out)
    positions: dict = {} if args.follow else None
    try:
        print_timeline(lab.layout.logs, flt, out, args.json, color, positions)
        if args.follow:
            follow(lab.layout.logs, flt, out, args.json, args.follow_seconds, positions, color)
    except BrokenPipeError:
        pass
    except KeyboardInterrupt:
        return 130
    return 0
