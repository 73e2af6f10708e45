"""``kemu top nodes|pods`` from the nodes' usage summaries, in kubectl's columns."""
from __future__ import annotations

from pathlib import Path

from node.kubelet.stats import summary, write_summary
from node.runtime.interface import RUNNING, ContainerStatus
from tests.test_cli_commands import api, kemu, rows  # noqa: F401  (fixtures)


def container(pod: str, name: str, cpu: int, mem: int, ns: str = "default", state: str = RUNNING) -> ContainerStatus:
    return ContainerStatus(id=f"{pod}-{name}", sandbox_id="sb", pod_uid=f"uid-{pod}", namespace=ns, pod_name=pod,
                           name=name, attempt=0, image="busybox", image_id="", state=state, created_at=1.0,
                           cpu_millis=cpu, memory_bytes=mem)


def node(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi"}, "capacity": {"cpu": "4", "memory": "16Gi"}}}


def test_top_nodes_and_pods(kemu, api, tmp_path: Path) -> None:  # noqa: F811
    lab = tmp_path / "lab"
    for name in ("node-1", "node-2"):
        api.create(node(name))
    root = lab / "nodes" / "node-1"
    write_summary(str(root), summary("node-1", [
        container("web", "app", 250, 64 << 20), container("web", "sidecar", 50, 16 << 20),
        container("db", "pg", 1000, 1 << 30, ns="data"), container("done", "x", 999, 999, state="exited")]),
        "2026-01-01T00:00:00Z")
    (lab / "nodes" / "node-2").mkdir(parents=True)
    r = kemu("top", "nodes", "--lab-dir", str(lab))
    assert r.rc == 0, r
    assert rows(r.out) == [["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
                           ["node-1", "1300m", "32%", "1104Mi", "6%"],
                           ["node-2", "<unknown>", "<unknown>", "<unknown>", "<unknown>"]]
    r = kemu("top", "pods", "--lab-dir", str(lab))
    assert rows(r.out) == [["NAME", "CPU(cores)", "MEMORY(bytes)"], ["web", "300m", "80Mi"]]
    r = kemu("top", "pods", "-A", "--containers", "--lab-dir", str(lab))
    assert rows(r.out)[0] == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert ["data", "db", "pg", "1000m", "1024Mi"] in rows(r.out)


def test_top_without_metrics(kemu, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "lab" / "nodes" / "node-1").mkdir(parents=True)
    r = kemu("top", "nodes", "--lab-dir", str(tmp_path / "lab"))
    assert r.rc == 1 and "metrics not available yet" in r.err
    r = kemu("top", "pods", "--lab-dir", str(tmp_path / "missing"))
    assert r.rc == 1


def test_a_shorter_summary_written_over_a_longer_one_leaves_no_stale_tail(tmp_path: Path) -> None:
    import json

    from node.kubelet.stats import SUMMARY_FILE
    many = [ContainerStatus(id=f"c{i}", sandbox_id="s", pod_uid=f"u{i}", namespace="default",
                            pod_name=f"web-{i}", name="app", attempt=0, image="busybox", image_id="",
                            state=RUNNING, created_at=0.0, cpu_millis=5, memory_bytes=1 << 20)
            for i in range(20)]
    write_summary(str(tmp_path), summary("node-1", many), "2026-01-01T00:00:00Z")
    write_summary(str(tmp_path), summary("node-1", many[:1]), "2026-01-01T00:00:10Z")
    got = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert [p["podRef"]["name"] for p in got["pods"]] == ["web-0"] and got["time"] == "2026-01-01T00:00:10Z"
