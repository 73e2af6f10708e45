"""The issue 4 benchmarks: their bookkeeping without servers, and tiny real-lab runs (bounded)."""
from __future__ import annotations

import os

from lab.bench import endpoints, rollout


def _pod(name: str, hash_: str, phase: str = "Running", deleting: bool = False) -> dict:
    md = {"name": name, "labels": {"pod-template-hash": hash_}}
    if deleting:
        md["deletionTimestamp"] = "2026-11-26T00:00:00Z"
    return {"metadata": md, "status": {"phase": phase}}


def test_rolling_waves_resolve_surge_up_and_unavailable_down():
    assert rollout.rolling_waves(1000) == 2            # 250 + 250 per wave
    assert rollout.rolling_waves(6) == 2               # surge 2, unavailable 1: ceil(6 / 3)
    assert rollout.rolling_waves(3) == 3               # surge 1, unavailable 0
    assert rollout.rolling_waves(4, 0, 0) == 4         # both 0: unavailable becomes 1
    assert rollout.rolling_waves(0) == 0


def test_rollout_completion_predicates():
    d = {"metadata": {"generation": 2},
         "status": {"observedGeneration": 1, "replicas": 8, "updatedReplicas": 6, "availableReplicas": 6}}
    assert not rollout.deployment_available(d, 6)      # status not yet current
    d["status"]["observedGeneration"] = 2
    assert rollout.deployment_available(d, 6)
    assert not rollout.rollout_status_complete(d, 6)   # old replicas pending termination
    d["status"]["replicas"] = 6
    assert rollout.rollout_status_complete(d, 6)


def test_old_pods_terminating_are_not_running():
    pods = [_pod("a", "old"), _pod("b", "old", deleting=True), _pod("c", "new"),
            _pod("d", "old", phase="Pending")]
    assert rollout.count_old_pods(pods, "old") == {"running": 1, "terminating": 1, "present": 3}


def test_propagation_tracker_takes_the_last_node_and_tables_seen_before_the_ip():
    t = endpoints.PropagationTracker(["n1", "n2"])
    t.table_seen("n1", "-A X -j DNAT --to-destination 127.64.1.2:8080\n", 1.0)   # before the pod is known
    t.pod_seen("p", None, False, 0.5)
    t.pod_seen("p", "127.64.1.2", True, 0.9)
    assert t.latencies() == {} and t.pending(["p"]) == ["p"]
    t.table_seen("n2", "--to-destination 127.64.1.20:8080\n", 1.1)   # another IP with the same prefix
    assert t.pending(["p"]) == ["p"]
    t.table_seen("n2", "--to-destination 127.64.1.2:8080\n", 1.3)
    assert t.pending(["p"]) == []
    assert abs(t.latencies()["p"] - 0.4) < 1e-9


def test_rules_files_returns_only_changed_files(tmp_path):
    p = tmp_path / "rules.txt"
    files = endpoints.RulesFiles({"n1": str(p), "n2": str(tmp_path / "missing")})
    assert files.changed() == {}
    p.write_text("a\n")
    assert files.changed() == {"n1": "a\n"}
    assert files.changed() == {}
    tmp = tmp_path / "rules.tmp"
    tmp.write_text("bb\n")
    os.replace(tmp, p)                                  # as kube-proxy writes it
    assert files.changed() == {"n1": "bb\n"}


def test_small_rollout_bench():
    home = os.environ.get("KEMU_HOME")
    r = rollout.run(nodes=3, replicas=6, timeout=30)
    assert os.environ.get("KEMU_HOME") == home
    assert r["create"]["duration_s"] is not None and r["create"]["duration_s"] > 0
    assert r["rolling_update"]["duration_s"] is not None
    assert r["rolling_update"]["old_pods_at_completion"]["running"] == 0
    assert r["final_status"]["updatedReplicas"] == 6 and r["final_status"]["observedGeneration"] == 2
    assert r["rolling_update"]["waves"] == 2 and r["rolling_update"]["lower_bound_s"] > 0


def test_small_endpoints_bench():
    r = endpoints.run(nodes=3, pods=5, rate=10.0, timeout=20)
    assert r["service_in_every_table_before_pods"] and r["create_errors"] == 0
    assert r["pods_propagated"] == 5
    assert r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] >= 0
