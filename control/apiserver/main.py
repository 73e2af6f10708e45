"""``kemu apiserver``: run the apiserver as its own process.

Contract: binds ``--listen`` (``:0`` picks a free port), writes the bound
address to ``--endpoint-file`` once it serves (atomically, so a reader never
sees half an address), logs JSON lines, serves the lab's control socket
with ``--ctl-dir`` (chaos ops and ``metrics``), and stops cleanly on SIGTERM/SIGINT
(the WAL is committed and closed). Exit code 0 on a clean stop, 1 when it
cannot start (the message names the flag to fix).
"""
from __future__ import annotations

import argparse
import os
import sys

from emulator import protocol, transport
from emulator.cli.common import parse_duration
from emulator.logging import configure, get_logger
from emulator.process import settle_heap


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apiserver", help="run the apiserver")
    p.add_argument("--data-dir", required=True, help="directory for the write-ahead log and snapshots")
    p.add_argument("--listen", default="tcp://127.0.0.1:6443",
                   help="address to bind: tcp://127.0.0.1:PORT (PORT 0 picks one) or ipc://PATH")
    p.add_argument("--endpoint-file", help="write the bound address here once serving")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (faster, not durable)")
    p.add_argument("--commit-mode", choices=["auto", "sync", "pipelined"], default="auto",
                   help="fdatasync in the loop (sync) or in a thread while the loop goes on "
                        "(pipelined); auto picks by measuring the disk")
    p.add_argument("--max-frame-bytes", type=int, default=protocol.DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--bookmark-interval", type=float, default=5.0, help="seconds between watch bookmarks")
    p.add_argument("--snapshot-every", type=int, default=200_000,
                   help="WAL records between snapshots, at least; a snapshot also waits for as many "
                        "records as the last one packed objects")
    p.add_argument("--history-size", type=int, default=50_000, help="watch events kept for resuming")
    p.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready/unreachable tolerations added to every pod")
    p.add_argument("--service-cluster-ip-range", default="127.96.0.0/12",
                   help="CIDR Services' cluster IPs are allocated from")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range NodePort Services' node ports are allocated from")
    p.add_argument("--event-ttl", type=parse_duration, default=3600.0,
                   help="how long an Event is kept after its last write (kube-apiserver's flag; "
                        "1h by default): 3600, 3600s, 60m or 1h")
    p.add_argument("--log-file", help="JSON lines log (default: stderr)")
    p.add_argument("--lab", help="the lab this apiserver belongs to (a field of every log line)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ctl-dir", help="serve the lab's control socket <DIR>/apiserver.ctl (chaos: clock skew)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from control.apiserver.server import APIServer
    problem = transport.check_address(args.listen)
    if problem or args.listen.startswith("mem://"):
        print(f"error: --listen: {problem or 'mem:// is in-process only'}; "
              "use tcp://127.0.0.1:PORT", file=sys.stderr)
        return 1
    for flag, value, least, what in (
            ("--max-frame-bytes", args.max_frame_bytes, 1024, "the largest frame, in bytes"),
            ("--snapshot-every", args.snapshot_every, 1, "WAL records between snapshots"),
            ("--history-size", args.history_size, 1, "watch events kept for resuming"),
            ("--default-toleration-seconds", args.default_toleration_seconds, 0,
             "seconds a pod stays on a not-ready or unreachable node"),
            ("--bookmark-interval", args.bookmark_interval, 0.001, "seconds between watch bookmarks")):
        if value < least:
            print(f"error: {flag} must be at least {least} ({what}), got {value}", file=sys.stderr)
            return 1
    from control.apiserver.allocator import IPRange, PortRange, parse_port_range
    try:
        IPRange(args.service_cluster_ip_range)
    except ValueError as e:
        print(f"error: --service-cluster-ip-range: {e}", file=sys.stderr)
        return 1
    try:
        node_ports = parse_port_range(args.service_node_port_range)
        PortRange(*node_ports)
    except ValueError as e:
        print(f"error: --service-node-port-range: {e} (e.g. 30000-32767)", file=sys.stderr)
        return 1
    configure("apiserver", path=args.log_file, level=args.log_level, lab=args.lab)
    from emulator.clock import WALL
    ctl_server = None
    if args.ctl_dir:
        from emulator import ctl
        ctl_server = ctl.serve("apiserver", args.ctl_dir, ["apiserver"])
        from emulator import metrics
        metrics.install(ctl_server)   # the ``metrics`` op: this process's Prometheus metrics
    try:
        os.makedirs(args.data_dir, exist_ok=True)
        server = APIServer(args.listen, args.data_dir, fsync=not args.no_fsync,
                           max_frame_bytes=args.max_frame_bytes,
                           bookmark_interval=args.bookmark_interval,
                           snapshot_every=args.snapshot_every, history_size=args.history_size,
                           lab=args.lab, commit_mode=args.commit_mode,
                           default_toleration_seconds=args.default_toleration_seconds,
                           service_cluster_ip_range=args.service_cluster_ip_range,
                           service_node_port_range=node_ports, clock=WALL, event_ttl=args.event_ttl)
        server.install_signal_handlers()
        address = server.start()
    except Exception as e:
        print(f"error: apiserver could not start on --listen {args.listen} with --data-dir "
              f"{args.data_dir}: {e}", file=sys.stderr)
        get_logger().error("apiserver failed to start", error=str(e))
        return 1
    settle_heap()   # the store is long-lived: the recovered objects leave the collector's scans
    if args.endpoint_file:
        tmp = args.endpoint_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(address + "\n")
        os.replace(tmp, args.endpoint_file)
    try:
        server.serve_forever()
    finally:
        if ctl_server is not None:
            ctl_server.close()
    return 0
