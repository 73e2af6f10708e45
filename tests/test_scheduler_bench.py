"""A small run of ``kemu bench scheduler``: real apiserver and scheduler processes, nothing left behind."""
from __future__ import annotations

from lab.bench.scheduler import run


def test_small_scheduler_bench_binds_every_pod():
    r = run(nodes=3, pods=60)
    assert r["pods_bound"] == 60 and r["create_errors"] == 0
    assert r["scheduler"]["scheduled"] == 60
    assert r["pods_per_node"]["nodes_used"] == 3
    assert r["pods_per_second"] > 0 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"]
