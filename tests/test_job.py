"""The Job controller against a real apiserver (in-process); pod phases are patched (no kubelet)."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import pytest

from control.controllers.manager import ControllerManager
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import step_until as run_until

NS = "default"
PROFILE = replace(FAST, crashloop_backoff_initial=0.01, crashloop_backoff_max=0.05)




@pytest.fixture
def env(mem_server) -> Iterator[tuple[Client, ControllerManager]]:  # type: ignore[no-untyped-def]
    admin = Client(mem_server.address, component="test")
    cmc = Client(mem_server.address, component="controller-manager")
    cm = ControllerManager(cmc, PROFILE, controllers=("job",))
    cm.start()
    yield admin, cm
    cmc.close()
    admin.close()


def make_job(admin: Client, name: str, completions: int, parallelism: int, backoff: int) -> dict:
    return admin.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
                         "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
                                  "template": {"spec": {"restartPolicy": "Never",
                                                        "containers": [{"name": "c", "image": "busybox"}]}}}})


def active_pods(admin: Client, job: str) -> list[dict]:
    return [p for p in admin.list("Pod", NS, label_selector=f"job-name={job}")["items"]
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def finish(admin: Client, pod: dict, phase: str) -> None:
    pod = admin.get("Pod", pod["metadata"]["name"], NS)
    pod["status"] = {**(pod.get("status") or {}), "phase": phase}
    admin.update_status(pod)


def status(admin: Client, name: str) -> dict:
    return admin.get("Job", name, NS).get("status") or {}


def reasons(admin: Client) -> list[str]:
    return [e["reason"] for e in admin.list("Event", NS)["items"]]


def test_runs_to_completion_with_parallelism(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    job = make_job(admin, "pi", completions=3, parallelism=2, backoff=1)
    pods = run_until(cm, lambda: (lambda p: p if len(p) == 2 else None)(active_pods(admin, "pi")), "2 pods")
    p = pods[0]  # type: ignore[index]
    assert p["metadata"]["generateName"] == "pi-"
    labels = p["metadata"]["labels"]
    assert labels["job-name"] == "pi" and labels["batch.kubernetes.io/job-name"] == "pi"
    assert labels["controller-uid"] == job["metadata"]["uid"]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "Job"
    run_until(cm, lambda: status(admin, "pi").get("active") == 2 and status(admin, "pi").get("startTime"),
              "active 2")
    for _ in range(3):
        finish(admin, active_pods(admin, "pi")[0], "Succeeded")
        cm.step(0.02)
    run_until(cm, lambda: any(c["type"] == "Complete" for c in status(admin, "pi").get("conditions") or []),
              "Complete", timeout=5)
    st = status(admin, "pi")
    assert st["succeeded"] == 3 and "active" not in st and st["completionTime"]
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    run_until(cm, lambda: "Completed" in reasons(admin), "Completed event")
    assert reasons(admin).count("SuccessfulCreate") == 3
    for _ in range(20):
        cm.step(0.01)
    assert len(admin.list("Pod", NS)["items"]) == 3   # no more pods once done
    assert all(c.next_due() > cm.clock() for c in cm.controllers)   # idle: no busy loop


def test_backoff_limit_exceeded(env) -> None:  # type: ignore[no-untyped-def]
    admin, cm = env
    make_job(admin, "bad", completions=2, parallelism=1, backoff=1)
    for n in range(2):   # the first failure is replaced (failed 1 <= backoffLimit 1), the second is not
        pod = run_until(cm, lambda: active_pods(admin, "bad"), f"pod {n}")
        finish(admin, pod[0], "Failed")  # type: ignore[index]
    cond = run_until(cm, lambda: [c for c in status(admin, "bad").get("conditions") or [] if c["type"] == "Failed"],
                     "Failed condition")
    c = cond[0]  # type: ignore[index]
    assert (c["status"], c["reason"], c["message"]) == ("True", "BackoffLimitExceeded",
                                                        "Job has reached the specified backoff limit")
    assert status(admin, "bad")["failed"] == 2
    run_until(cm, lambda: "BackoffLimitExceeded" in reasons(admin), "BackoffLimitExceeded event")
    for _ in range(20):
        cm.step(0.01)
    assert active_pods(admin, "bad") == []
