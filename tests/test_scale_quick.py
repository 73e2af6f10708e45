"""``kemu bench scale``: the table from a JSON document, and the quick mode's correctness checks at scale.

The quick run (200 node processes with 1,000 pods; 2,000 nodes in node hosts
when they exist) asserts correctness only: all Ready, all pods Running, no lost
pods, no error-level log lines. It checks no timings.
"""
from __future__ import annotations

import os

import pytest

from lab.bench import scale, scale_parts


def _doc() -> dict:
    return {"limits": {"echo_msgs_per_s": 50000, "fork_and_import_children": 1000, "fork_and_import_s": 4.0},
            "nodes": {"nodes": 1000, "up_to_all_ready_s": 40.0, "node_uss_mib": {"mean": 6.0, "max": 7.5},
                      "idle_cpu": {"percent_of_one_core": 30.0}},
            "pod_startup": {"pods": 600, "running": 600, "create_rate": 20.0, "latency_ms": {"p99": 400.0}},
            "scheduler": {"nodes": 1000, "pods": 10000, "pods_bound": 10000, "pods_per_second": 900.0},
            "node_failure": {"nodes": 1000, "grace_period_s": 2.0, "kill_to_ready_unknown_s": 2.5,
                             "eviction_timeout_s": 15.0, "taint_to_replaced_s": None},
            "hosts": {"status": "not built"}}


def test_targets_put_each_figure_beside_its_target_and_limit():
    rows = {r["figure"]: r for r in scale.targets(_doc())}
    ready = rows["1,000 node processes: lab up to all Ready (s)"]
    assert ready["met"] is False and "fork+import of 1000: 4.0 s" in ready["limit"]
    assert rows["USS per node process, mean / max (MiB)"]["met"] is True
    assert rows["scheduler, 1,000 nodes / 10,000 pods (pods/s)"]["met"] is False
    assert rows["  taint to replacement pods Running (s)"]["met"] is False   # never measured is not met
    assert rows["10,000 nodes in node hosts: Ready (s)"]["value"] == "not built"
    md = scale.table({**_doc(), "targets": list(rows.values())})
    assert md.startswith("| figure | measured |") and "**no**" in md and "bus echo: 50,000 msg/s" in md


def test_error_lines_counts_only_error_level_records(tmp_path):
    (tmp_path / "node-1.jsonl").write_text(
        '{"level": "info", "event": "an error word in info"}\n'
        '{"level": "error", "event": "sync failed"}\nnot json "level": "error"\n')
    (tmp_path / "apiserver.jsonl.1").write_text('{"level": "critical", "event": "boom"}\n')
    r = scale_parts.error_lines(tmp_path)
    assert r["count"] == 2 and sorted(r["sample"]) == ["apiserver.jsonl.1: boom", "node-1.jsonl: sync failed"]


@pytest.mark.timeout(280)
def test_quick_scale_suite_is_correct_at_scale():
    home = os.environ.get("KEMU_HOME")
    doc = scale.run(("nodes", "hosts"), quick=True)
    assert os.environ.get("KEMU_HOME") == home
    n = doc["nodes"]
    assert n["nodes"] == 200 and "error" not in n, n.get("error")
    assert n["all_ready"] and n["all_ready_at_end"]
    assert n["pods_check"]["ok"] and n["pods_check"]["expected"] == n["pods"], n["pods_check"]
    assert n["pods_at_bound"]["running"] == n["pods"] and n["pods_created_to_running_s"] is not None
    progress = n["pods_progress"]   # [seconds, created, running]: every 10 s, and the end
    assert progress[-1][1:] == [n["pods"], n["pods"]], progress
    assert all(a <= b for row in zip(*progress) for a, b in zip(row, row[1:])), progress
    assert n["log_errors"]["count"] == 0, n["log_errors"]
    roles = n["pods_phase_cpu"]["by_role_percent"]   # where the cores went while the pods started
    assert {"apiserver", "scheduler", "controller-manager", "bench"} <= set(roles), roles
    assert all(v >= 0 for v in roles.values()) and roles["apiserver"] > 0
    if scale_parts.hosts_supported():
        h = doc["hosts"]
        assert h["nodes"] == 2000 and "error" not in h, h.get("error")
        assert h["all_ready"] and h["pods_check"]["ok"], h.get("pods_check")
        assert h["pods_check"]["expected"] == h["pods"] == h["pods_at_bound"]["running"], h.get("pods_at_bound")
        assert h["log_errors"]["count"] == 0, h["log_errors"]
    else:
        assert doc["hosts"]["status"] == "not built"
    assert doc["checks_ok"], doc["checks"]
