"""Resource faults (disk-fill, memory-pressure, cpu-stress) against a stand-in lab, and the
kubelet's memory signal decisions (``node.kubelet.pressure``)."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from lab.chaos.model import Fault
from lab.chaos.resource_faults import (MAX_CPU_WORKERS, RESOURCE_KINDS, fill_size, hog_size, parse_percent)
from lab.paths import LabLayout
from node.kubelet import pressure
from node.runtime.interface import RUNNING, ContainerStatus
from node.volumes.usage import dir_usage
from tests.conftest import poll_for

GI = 2**30
MI = 2**20


class _NoServer:
    def get(self, *a: object, **k: object) -> dict:
        raise ConnectionError("no apiserver")


@pytest.fixture
def lab(tmp_path: Path) -> SimpleNamespace:
    layout = LabLayout(tmp_path / "lab")
    for n in ("node-1", "node-2", "node-3"):
        layout.node_root(n).mkdir(parents=True)
    return SimpleNamespace(name="t", nodes=["node-1", "node-2", "node-3"], layout=layout, client=_NoServer(),
                           config=SimpleNamespace(node_ephemeral_storage="1Gi", node_memory="16Gi",
                                                  profile="fast", process_profile="fast@3"))


def fault(kind: str, *targets: str, fid: str = "f-1", **params: str) -> Fault:
    return Fault(id=fid, kind=kind, target=",".join(targets), targets=list(targets), params=params)


def test_kinds_registry() -> None:
    assert sorted(RESOURCE_KINDS) == ["cpu-stress", "disk-fill", "memory-pressure"]
    for name, k in RESOURCE_KINDS.items():
        assert k.name == name and k.params and callable(k.inject) and callable(k.heal)


def test_fill_size_and_hog_size() -> None:
    assert fill_size(GI, 0, 95) == -(-GI * 95 // 100)
    assert fill_size(GI, 10 * MI, 50) == GI // 2 - 10 * MI
    assert fill_size(GI, GI, 95) == 0               # already fuller: nothing to add
    assert fill_size(100, 0, 100) == 100            # never more than the capacity
    assert hog_size(16 * GI, 0, 100 * MI) == 16 * GI - 50 * MI
    assert hog_size(GI, 2 * GI, 100 * MI) == 1


@pytest.mark.parametrize("bad", ["0", "101", "abc", "-5%", ""])
def test_bad_percent_names_the_param(bad: str) -> None:
    with pytest.raises(ValueError, match="--param percent"):
        parse_percent(bad)


def test_disk_fill_reaches_the_percentage_and_heals(lab: SimpleNamespace) -> None:
    root = lab.layout.node_root("node-1")
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "log" / "x.log").write_bytes(b"x" * 4096)
    kind = RESOURCE_KINDS["disk-fill"]
    f = fault("disk-fill", "node-1", percent="95%")
    f.state = kind.inject(lab, f)
    path = Path(f.state["files"]["node-1"])
    assert path == root / "var/lib/kemu/chaos-fill-f-1"
    assert dir_usage(str(root)) == -(-GI * 95 // 100)
    assert os.stat(path).st_blocks * 512 < MI      # sparse: no real disk used
    kind.heal(lab, f)
    assert not path.exists()
    kind.heal(lab, f)                                # healing twice is fine


def test_disk_fill_bad_input(lab: SimpleNamespace) -> None:
    kind = RESOURCE_KINDS["disk-fill"]
    with pytest.raises(ValueError, match="'apiserver' is not a node"):
        kind.inject(lab, fault("disk-fill", "apiserver"))
    with pytest.raises(ValueError, match="unknown parameter 'size'"):
        kind.inject(lab, fault("disk-fill", "node-1", size="5"))
    with pytest.raises(ValueError, match="--param percent"):
        kind.inject(lab, fault("disk-fill", "node-1", percent="150"))


def test_memory_pressure_registers_a_hog_and_heals(lab: SimpleNamespace) -> None:
    kind = RESOURCE_KINDS["memory-pressure"]
    f = fault("memory-pressure", "node-1", "node-2")
    f.state = kind.inject(lab, f)
    root = str(lab.layout.node_root("node-1"))
    assert pressure.hog_bytes(root) == f.state["bytes"]["node-1"] == 16 * GI - 50 * MI
    assert pressure.memory_available(16 * GI, [], root) < 100 * MI
    kind.heal(lab, f)
    assert pressure.hog_bytes(root) == 0
    g = fault("memory-pressure", "node-3", fid="f-2", bytes="512Mi")
    g.state = kind.inject(lab, g)
    assert pressure.hog_bytes(str(lab.layout.node_root("node-3"))) == 512 * MI
    kind.heal(lab, g)
    with pytest.raises(ValueError, match="--param bytes: bad quantity"):
        kind.inject(lab, fault("memory-pressure", "node-1", bytes="lots"))


def _worker_pids(state: dict) -> list[int]:
    return [w["pid"] for w in state["workers"]]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cpu_stress_workers_run_tagged_and_are_gone_after_heal(lab: SimpleNamespace) -> None:
    kind = RESOURCE_KINDS["cpu-stress"]
    f = fault("cpu-stress", "node-2", workers="2", load="50")
    f.duration = 60
    f.state = kind.inject(lab, f)
    pids = _worker_pids(f.state)
    assert len(pids) == 2 and "clamped" not in f.state
    for pid in pids:
        p = psutil.Process(pid)
        assert os.getpgid(pid) == pid                         # its own process group
        env = p.environ()
        assert env["KEMU_NODE_ROOT"] == str(lab.layout.node_root("node-2"))
        assert env["KEMU_CHAOS_FAULT"] == "f-1"
    kind.heal(lab, f)
    assert not any(_alive(pid) for pid in pids)


def test_cpu_stress_clamps_and_bounds(lab: SimpleNamespace, capsys: pytest.CaptureFixture) -> None:
    kind = RESOURCE_KINDS["cpu-stress"]
    f = fault("cpu-stress", "node-1", "node-2", workers="4")
    f.state = kind.inject(lab, f)
    try:
        assert len(f.state["workers"]) == MAX_CPU_WORKERS
        assert "clamped to 1 per node" in f.state["clamped"]
        assert "clamped" in capsys.readouterr().err
        assert f.state["lifetime"] == 300.0
    finally:
        kind.heal(lab, f)
    with pytest.raises(ValueError, match="at most 2 workers per fault"):
        kind.inject(lab, fault("cpu-stress", "node-1", "node-2", "node-3"))
    with pytest.raises(ValueError, match="--param load"):
        kind.inject(lab, fault("cpu-stress", "node-1", load="0"))
    with pytest.raises(ValueError, match="--param workers"):
        kind.inject(lab, fault("cpu-stress", "node-1", workers="many"))


def test_cpu_stress_workers_exit_by_themselves(lab: SimpleNamespace) -> None:
    kind = RESOURCE_KINDS["cpu-stress"]
    f = fault("cpu-stress", "node-1", load="10")
    f.duration = 0.3
    f.state = kind.inject(lab, f)
    pid = _worker_pids(f.state)[0]
    poll_for(lambda: not _alive(pid), timeout=20, what="the worker to exit at the fault's duration")
    kind.heal(lab, f)   # nothing left to kill: no error


# -- the kubelet's memory decisions -----------------------------------------------------------
def _pod(name: str, *, requests: dict | None = None, limits: dict | None = None, prio: int | None = None,
         created: str = "2024-01-01T00:00:00Z") -> dict:
    res = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    spec: dict = {"containers": [{"name": "app", "image": "x", "resources": res}]}
    if prio is not None:
        spec["priority"] = prio
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created}, "spec": spec}


def test_rank_for_memory_pressure() -> None:
    be = _pod("be")
    burst = _pod("burst", requests={"memory": "64Mi"})
    guar = _pod("guar", requests={"memory": "64Mi", "cpu": "1"}, limits={"memory": "64Mi", "cpu": "1"})
    hungry = _pod("hungry", requests={"memory": "64Mi"})
    crit = _pod("crit", prio=2_000_000_000)
    names = lambda r: [p["metadata"]["name"] for p, _ in r]  # noqa: E731
    # nothing reported: BestEffort (request 0) first, then Burstable, then Guaranteed; critical never
    assert names(pressure.rank_for_memory_pressure([(guar, 0), (burst, 0), (be, 0), (crit, 0)])) == \
        ["be", "burst", "guar"]
    # a pod above its request goes first, the largest excess first
    assert names(pressure.rank_for_memory_pressure([(be, 10 * MI), (burst, 0), (hungry, 200 * MI)])) == \
        ["hungry", "be", "burst"]
    low = _pod("low", requests={"memory": "64Mi"}, prio=-10)
    assert names(pressure.rank_for_memory_pressure([(burst, 0), (low, 0)])) == ["low", "burst"]


def test_memory_message_and_admission() -> None:
    msg = pressure.memory_pressure_message(100 * MI, 50 * MI, _pod("be"), {"app": 64 * MI})
    assert msg == ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
                   "Container app was using 64Mi, request is 0, has larger consumption of memory. ")
    be, burst = _pod("be"), _pod("burst", requests={"memory": "1Mi"})
    assert pressure.pressure_rejection(be, disk=False, memory=True) == "The node had condition: [MemoryPressure]. "
    assert pressure.pressure_rejection(burst, disk=False, memory=True) is None
    assert pressure.pressure_rejection(burst, disk=True, memory=True) == \
        "The node had condition: [MemoryPressure DiskPressure]. "
    tolerant = _pod("t")
    tolerant["spec"]["tolerations"] = [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
                                        "effect": "NoSchedule"}]
    assert pressure.pressure_rejection(tolerant, disk=False, memory=True) is None
    assert pressure.pressure_rejection(be, disk=False, memory=False) is None


def test_memory_available_counts_running_containers_and_hogs(tmp_path: Path) -> None:
    def c(state: str, mem: int) -> ContainerStatus:
        return ContainerStatus(id="c", sandbox_id="s", pod_uid="u", namespace="d", pod_name="p", name="app",
                               attempt=0, image="x", image_id="x", state=state, created_at=0.0, memory_bytes=mem)
    pressure.write_hog(str(tmp_path), "f-1", 100)
    pressure.write_hog(str(tmp_path), "f-2", 50)
    (tmp_path / "var/lib/kemu/chaos-memory-bad").write_text("lots")
    assert pressure.hog_bytes(str(tmp_path)) == 150
    assert pressure.memory_available(1000, [c(RUNNING, 200), c("exited", 999)], str(tmp_path)) == 650
