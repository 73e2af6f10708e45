"""``kemu bench proxy``, small: it runs both paths in both modes and stops what it started."""
from __future__ import annotations

import argparse

from lab.bench import cli, proxy


def test_small_proxy_bench() -> None:
    r = proxy.run(seconds=0.8, clients=2, body_bytes=100)
    for mode in ("close", "keepalive"):
        for path in ("direct", "proxied"):
            assert r[mode][path]["requests"] > 0 and r[mode][path]["errors"] == 0, (mode, path, r[mode])
        assert r[mode]["throughput_ratio"] is not None
    assert r["cluster_ip"].startswith("127.111.") and r["backend"].startswith("127.64.")


def test_bench_proxy_is_registered() -> None:
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    args = p.parse_args(["bench", "proxy", "--clients", "2", "--seconds", "1"])
    assert args.clients == 2 and args.seconds == 1.0 and args.body_bytes == 1024
