"""``kemu bench NAME``: the benchmark commands. Each prints JSON on stdout."""
from __future__ import annotations

import argparse


def _positive(kind: type) -> object:
    def parse(s: str) -> object:
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s!r}")
        return v
    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark; prints JSON")
    bsub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    bsub.required = True
    a = bsub.add_parser("apiserver", help="echo limit vs. creates, updates and gets")
    a.add_argument("--seconds", type=_positive(float), default=3.0)
    a.add_argument("--clients", type=_positive(int), default=2)
    a.add_argument("--window", type=_positive(int), default=128)
    a.add_argument("--no-fsync", action="store_true")
    a.add_argument("--commit-mode", choices=["auto", "sync", "pipelined"], default="auto")
    a.set_defaults(func=lambda args: __import__("lab.bench.apiserver", fromlist=["main"]).main(args))
    w = bsub.add_parser("watch", help="watch fan-out latency to node-scoped watchers")
    w.add_argument("--watchers", type=_positive(int), default=1000)
    w.add_argument("--rate", type=_positive(float), default=1000.0)
    w.add_argument("--seconds", type=_positive(float), default=5.0)
    w.add_argument("--procs", type=_positive(int), default=2)
    w.set_defaults(func=lambda args: __import__("lab.bench.watch", fromlist=["main"]).main(args))
    r = bsub.add_parser("restart", help="restart time with many objects")
    r.add_argument("--objects", type=_positive(int), default=100_000)
    r.add_argument("--clients", type=_positive(int), default=2)
    r.add_argument("--snapshot-every", type=_positive(int), default=200_000)
    r.set_defaults(func=lambda args: __import__("lab.bench.restart", fromlist=["main"]).main(args))
    ls = bsub.add_parser("lab-start", help="time for N node processes to be Ready vs. the fork limit")
    ls.add_argument("--nodes", type=_positive(int), default=100)
    ls.add_argument("--repeat", type=_positive(int), default=3,
                    help="pairs of (limit, lab) measured; the median ratio is reported")
    ls.set_defaults(func=lambda args: __import__("lab.bench.lab_start", fromlist=["main"]).main(args))
    st = bsub.add_parser("storage", help="provisioning and binding claims: claims/s and p99 claim to Bound")
    st.add_argument("--nodes", type=_positive(int), default=100)
    st.add_argument("--claims", type=_positive(int), default=1000)
    st.add_argument("--rate", type=_positive(float), default=100.0, help="claims created per second")
    st.set_defaults(func=lambda args: __import__("lab.bench.storage", fromlist=["main"]).main(args))
    nf = bsub.add_parser("node-failure", help="from a node kill to Ready=Unknown (fast profile)")
    nf.add_argument("--nodes", type=_positive(int), default=3)
    nf.set_defaults(func=lambda args: __import__("lab.bench.node_failure", fromlist=["main"]).main(args))
    ps = bsub.add_parser("pod-startup", help="pod creation to Running, seen through a watch")
    ps.add_argument("--nodes", type=_positive(int), default=100)
    ps.add_argument("--pods", type=_positive(int), default=1000)
    ps.add_argument("--rate", type=_positive(float), default=100.0, help="pods created per second")
    ps.add_argument("--runtime", choices=["fake", "process"], default="fake",
                    help="process: real processes, with the bare subprocess spawn cost beside them")
    ps.set_defaults(func=lambda args: __import__("lab.bench.pod_startup", fromlist=["main"]).main(args))
    sc = bsub.add_parser("scheduler", help="pods per second from creation to binding")
    sc.add_argument("--nodes", type=_positive(int), default=100)
    sc.add_argument("--pods", type=_positive(int), default=5000)
    sc.set_defaults(func=lambda args: __import__("lab.bench.scheduler", fromlist=["main"]).main(args))
    d = bsub.add_parser("dns", help="DNS add-on qps and p99 vs. a constant dnslib server")
    d.add_argument("--seconds", type=_positive(float), default=3.0)
    d.add_argument("--services", type=_positive(int), default=1000)
    d.set_defaults(func=lambda args: __import__("lab.bench.dns", fromlist=["main"]).main(args))
    ro = bsub.add_parser("rollout", help="Deployment create and rolling update vs. a per-wave floor")
    ro.add_argument("--nodes", type=_positive(int), default=100)
    ro.add_argument("--replicas", type=_positive(int), default=1000)
    ro.add_argument("--timeout", type=_positive(float), default=180.0, help="deadline per phase, seconds")
    ro.set_defaults(func=lambda args: __import__("lab.bench.rollout", fromlist=["main"]).main(args))
    ep = bsub.add_parser("endpoints", help="pod Ready to its IP in every node's proxy rules")
    ep.add_argument("--nodes", type=_positive(int), default=100)
    ep.add_argument("--pods", type=_positive(int), default=50)
    ep.add_argument("--rate", type=_positive(float), default=5.0, help="pods created per second")
    ep.set_defaults(func=lambda args: __import__("lab.bench.endpoints", fromlist=["main"]).main(args))
    px = bsub.add_parser("proxy", help="kube-proxy forwarding: HTTP straight to a pod vs. through its ClusterIP")
    px.add_argument("--seconds", type=_positive(float), default=8.0, help="total load time, split across rounds")
    px.add_argument("--clients", type=_positive(int), default=4, help="concurrent clients (closed loop)")
    px.add_argument("--body-bytes", type=_positive(int), default=1024, help="response body size")
    px.set_defaults(func=lambda args: __import__("lab.bench.proxy", fromlist=["main"]).main(args))
    lg = bsub.add_parser("logs", help="filtering a large lab log (default 1Gi): MB/s and peak RSS")
    lg.add_argument("--size", default="1Gi", help="bytes of logs to generate (a quantity: 1Gi, 50Mi)")
    lg.add_argument("--files", type=_positive(int), default=100, help="process log files")
    lg.add_argument("--dir", help="where to make the temporary log directory (default: $TMPDIR)")
    lg.set_defaults(func=lambda args: __import__("lab.bench.logs", fromlist=["main"]).main(args))
    sc2 = bsub.add_parser("scale", help="issue 9's scale suite: 1,000 node processes, scheduler, pod startup, "
                          "node failure, node hosts; one JSON document")
    sc2.add_argument("--quick", action="store_true",
                     help="200 node processes (and 2,000 nodes in hosts): correctness checks only, no timings")
    sc2.add_argument("--parts", help="comma-separated subset of: limits, nodes, pod-startup, scheduler, "
                     "node-failure, hosts (default: all)")
    sc2.add_argument("--table", help="also write the Markdown table of figures to this file")
    sc2.set_defaults(func=lambda args: __import__("lab.bench.scale", fromlist=["main"]).main(args))
