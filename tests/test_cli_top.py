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
