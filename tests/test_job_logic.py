"""Job decisions, without a server."""
from __future__ import annotations

from control.controllers import job_logic as logic

NOW = 1_700_000_000.0


def job(completions: int | None = 3, parallelism: int = 2, backoff: int = 1, policy: str = "Never",
        **extra: object) -> dict:
    spec: dict = {"parallelism": parallelism, "backoffLimit": backoff,
                  "template": {"metadata": {"labels": {"app": "work"}, "annotations": {"kemu.io/x": "1"}},
                               "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}},
                  **extra}
    if completions is not None:
        spec["completions"] = completions
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default",
                                                                  "uid": "job-uid"}, "spec": spec}


def pod(name: str, phase: str = "Running", restarts: int = 0, deleting: bool = False, ready: bool = False) -> dict:
    md: dict = {"name": name, "namespace": "default", "creationTimestamp": f"2024-01-01T00:00:{len(name):02d}Z"}
    if deleting:
        md["deletionTimestamp"] = "2024-01-01T00:10:00Z"
    return {"metadata": md, "status": {"phase": phase,
                                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


def cond_types(st: dict) -> list[str]:
    return [c["type"] for c in st.get("conditions") or []]


def test_job_pod_shape() -> None:
    p = logic.job_pod(job())
    md = p["metadata"]
    assert md["generateName"] == "pi-"
    assert md["labels"] == {"app": "work", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                            "controller-uid": "job-uid", "batch.kubernetes.io/controller-uid": "job-uid"}
    assert md["ownerReferences"][0] == {"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid",
                                        "controller": True, "blockOwnerDeletion": True}
    assert md["annotations"] == {"kemu.io/x": "1"} and p["spec"]["restartPolicy"] == "Never"


def test_creates_up_to_parallelism_and_remaining_completions() -> None:
    p = logic.plan(job(), [], NOW)
    assert p.create == 2 and p.status["active"] == 2 and p.status["startTime"] == logic.rfc3339(NOW)
    p = logic.plan(job(), [pod("a", "Succeeded"), pod("bb", "Succeeded"), pod("ccc")], NOW)
    assert p.create == 0 and p.status["succeeded"] == 2 and p.status["active"] == 1
    p = logic.plan(job(completions=3, parallelism=5), [pod("a", "Succeeded")], NOW)
    assert p.create == 2
    p = logic.plan(job(completions=1, parallelism=1), [pod("a"), pod("bb")], NOW)
    assert [x["metadata"]["name"] for x in p.delete] == ["bb"]   # newest extra goes


def test_complete_after_completions() -> None:
    j = job(completions=2)
    p = logic.plan(j, [pod("a", "Succeeded"), pod("bb", "Succeeded")], NOW)
    assert cond_types(p.status) == ["SuccessCriteriaMet", "Complete"]
    complete = p.status["conditions"][1]
    assert (complete["status"], complete["reason"], complete["message"]) == \
        ("True", "CompletionsReached", "Reached expected number of succeeded pods")
    assert p.status["completionTime"] == logic.rfc3339(NOW) and p.event == ("Normal", "Completed", "Job completed")
    assert p.create == 0 and "active" not in p.status
    assert logic.plan({**j, "status": p.status}, [], NOW + 5).status == {}   # finished: nothing more


def test_no_completions_finishes_after_first_success() -> None:
    j = job(completions=None, parallelism=2)
    p = logic.plan(j, [pod("a", "Succeeded"), pod("bb")], NOW)
    assert p.create == 0 and cond_types(p.status) == []
    p = logic.plan(j, [pod("a", "Succeeded"), pod("bb", "Succeeded")], NOW)
    assert "Complete" in cond_types(p.status)


def test_backoff_limit_exceeded_with_never() -> None:
    j = job(completions=3, parallelism=2, backoff=1)
    p = logic.plan(j, [pod("a", "Failed"), pod("bb")], NOW)
    assert p.create == 1 and not cond_types(p.status)      # 1 failure <= backoffLimit 1: replace it
    p = logic.plan(j, [pod("a", "Failed"), pod("bb", "Failed"), pod("ccc")], NOW)
    assert cond_types(p.status) == ["FailureTarget"]
    assert [x["metadata"]["name"] for x in p.delete] == ["ccc"] and p.create == 0
    assert p.status["conditions"][0]["reason"] == "BackoffLimitExceeded"
    # once the lingering pod is gone, the terminal condition follows
    p2 = logic.plan({**j, "status": p.status}, [pod("a", "Failed"), pod("bb", "Failed"),
                                                pod("ccc", deleting=True)], NOW + 1)
    assert cond_types(p2.status) == ["FailureTarget"] and p2.status["terminating"] == 1
    p3 = logic.plan({**j, "status": p2.status}, [pod("a", "Failed"), pod("bb", "Failed")], NOW + 2)
    failed = p3.status["conditions"][-1]
    assert (failed["type"], failed["status"], failed["reason"], failed["message"]) == \
        ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert p3.event == ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert p3.status["failed"] == 2 and "completionTime" not in p3.status


def test_on_failure_counts_container_restarts() -> None:
    j = job(completions=1, parallelism=1, backoff=2, policy="OnFailure")
    assert not cond_types(logic.plan(j, [pod("a", restarts=1)], NOW).status)
    p = logic.plan(j, [pod("a", restarts=2)], NOW)
    assert cond_types(p.status) == ["FailureTarget"] and len(p.delete) == 1
    j0 = job(completions=1, parallelism=1, backoff=0, policy="OnFailure")
    assert cond_types(logic.plan(j0, [pod("a", restarts=1)], NOW).status) == ["FailureTarget"]


def test_counts_never_go_down_and_ready_is_counted() -> None:
    j = job()
    j["status"] = {"succeeded": 2, "failed": 1}
    p = logic.plan(j, [pod("a", ready=True)], NOW)
    assert p.status["succeeded"] == 2 and p.status["failed"] == 1 and p.status["ready"] == 1


def test_active_deadline() -> None:
    j = job(activeDeadlineSeconds=10)
    j["status"] = {"startTime": logic.rfc3339(NOW - 11)}
    p = logic.plan(j, [pod("a")], NOW)
    assert p.status["conditions"][0]["reason"] == "DeadlineExceeded" and len(p.delete) == 1


def test_suspend_and_resume() -> None:
    j = job(suspend=True)
    p = logic.plan(j, [], NOW)
    assert p.create == 0 and "startTime" not in p.status
    c = p.status["conditions"][0]
    assert (c["type"], c["status"], c["reason"], c["message"]) == ("Suspended", "True", "JobSuspended",
                                                                  "Job suspended")
    assert p.event == ("Normal", "Suspended", "Job suspended")
    running = job()
    running["status"] = {"startTime": logic.rfc3339(NOW - 50), "active": 2}
    p = logic.plan({**running, "spec": {**running["spec"], "suspend": True}}, [pod("a"), pod("bb")], NOW)
    assert len(p.delete) == 2 and "active" not in p.status and p.status["startTime"] == logic.rfc3339(NOW - 50)
    resumed = {**running, "status": p.status}
    p = logic.plan(resumed, [], NOW + 10)
    c = p.status["conditions"][0]
    assert (c["type"], c["status"], c["reason"]) == ("Suspended", "False", "JobResumed")
    assert p.create == 2 and p.status["startTime"] == logic.rfc3339(NOW + 10)
    assert p.event == ("Normal", "Resumed", "Job resumed")
