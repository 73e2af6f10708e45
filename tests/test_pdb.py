"""PodDisruptionBudget (policy/v1) through the apiserver: validation, the
pods/eviction subresource, and kubectl's table and describe output."""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.registry import REGISTRY
from emulator.cli.printers import render_table
from emulator.client import Client

BUDGET = "Cannot evict pod as it would violate the pod's disruption budget."


def pdb(name: str = "web-pdb", **spec: Any) -> dict:
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}}
    body.update(spec)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {k: v for k, v in body.items() if v is not None}}


def pod(name: str, app: str = "web", node: str | None = "node-1") -> dict:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": spec}


@pytest.fixture
def client(mem_server: Any) -> Iterator[Client]:
    c = Client(mem_server.address)
    yield c
    c.close()


def invalid(client: Client, obj: dict) -> APIError:
    with pytest.raises(APIError) as ei:
        client.create(obj)
    assert ei.value.code == errors.INVALID
    return ei.value


# -- the kind ------------------------------------------------------------------

def test_kind_registration_and_defaults(client: Client) -> None:
    rt = REGISTRY.resolve("pdb")
    assert (rt.kind, rt.api_version, rt.plural, rt.namespaced, rt.has_status) == \
        ("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", True, True)
    assert REGISTRY.resolve("poddisruptionbudgets.policy") is rt
    got = client.create(pdb(minAvailable=2))
    assert got["metadata"]["generation"] == 1
    assert got["status"] == {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                             "expectedPods": 0}
    # the status a client sends on create is dropped; a spec update keeps the status
    got = client.create(dict(pdb("p2", maxUnavailable="50%"), status={"disruptionsAllowed": 5}))
    assert got["status"]["disruptionsAllowed"] == 0
    got["spec"]["maxUnavailable"] = 1
    got["status"] = {"disruptionsAllowed": 9}
    upd = client.update(got)
    assert upd["metadata"]["generation"] == 2 and upd["status"]["disruptionsAllowed"] == 0


def test_validation_errors_name_the_field(client: Client) -> None:
    e = invalid(client, pdb(minAvailable=1, maxUnavailable=1))
    assert e.message.startswith('PodDisruptionBudget.policy "web-pdb" is invalid: spec: Invalid value: '
                                "policy.PodDisruptionBudgetSpec{")
    assert e.message.endswith("minAvailable and maxUnavailable cannot be both set")
    e = invalid(client, pdb())
    assert e.causes[0]["field"] == "spec" and "spec.minAvailable or spec.maxUnavailable" in e.message
    e = invalid(client, pdb(minAvailable=-1))
    assert e.message.endswith("spec.minAvailable: Invalid value: -1: must be greater than or equal to 0")
    e = invalid(client, pdb(maxUnavailable="150%"))
    assert e.message.endswith('spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%')
    e = invalid(client, pdb(minAvailable="half"))
    assert e.causes[0]["field"] == "spec.minAvailable" and "a valid percent string" in e.message
    e = invalid(client, pdb(maxUnavailable=1.5))
    assert "spec.maxUnavailable: Invalid value: 1.5: must be an integer or percentage" in e.message
    e = invalid(client, pdb(minAvailable=1, selector={"matchExpressions": [{"key": "app", "operator": "In"}]}))
    assert e.causes[0]["field"] == "spec.selector.matchExpressions[0].values"
    e = invalid(client, pdb(minAvailable=1, unhealthyPodEvictionPolicy="Sometimes"))
    assert e.message.endswith('spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes": '
                              'supported values: "AlwaysAllow", "IfHealthyBudget"')
    ok = client.create(pdb(minAvailable="50%", unhealthyPodEvictionPolicy="AlwaysAllow"))
    ok["status"] = {"disruptionsAllowed": -1}
    with pytest.raises(APIError, match="status.disruptionsAllowed: Invalid value: -1"):
        client.update_status(ok)


# -- the eviction subresource ------------------------------------------------------

def set_status(client: Client, name: str, **status: Any) -> dict:
    obj = client.get("PodDisruptionBudget", name, "default")
    obj["status"] = {"currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0,
                     "observedGeneration": obj["metadata"]["generation"], **status}
    return client.update_status(obj)


def running(client: Client, name: str, ready: bool = True) -> dict:
    p = client.create(pod(name))
    p["status"] = {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return client.update_status(p)


def test_evict_without_a_budget_deletes_the_pod(client: Client) -> None:
    running(client, "a")
    assert client.evict("a", "default", grace_period_seconds=0)["status"] == "Success"
    with pytest.raises(APIError) as ei:
        client.get("Pod", "a", "default")
    assert ei.value.code == errors.NOT_FOUND
    running(client, "b")
    client.evict("b", "default")   # the pod's own grace period: marked for deletion
    assert client.get("Pod", "b", "default")["metadata"]["deletionGracePeriodSeconds"] == 30
    with pytest.raises(APIError) as ei:
        client.evict("nope", "default")
    assert ei.value.code == errors.NOT_FOUND


def test_evict_spends_the_budget_then_is_refused_with_429(client: Client) -> None:
    running(client, "a")
    running(client, "b")
    client.create(pdb(minAvailable=1))
    # not yet observed by the disruption controller: refused
    with pytest.raises(APIError) as ei:
        client.evict("a", "default")
    assert (ei.value.code, ei.value.message) == (errors.TOO_MANY_REQUESTS, BUDGET)
    assert errors.HTTP_STATUS[ei.value.code] == 429
    assert ei.value.causes[0]["reason"] == "DisruptionBudget"
    assert "is still being processed by the server" in ei.value.causes[0]["message"]
    set_status(client, "web-pdb", disruptionsAllowed=1, currentHealthy=2, desiredHealthy=1, expectedPods=2)
    client.evict("a", "default", grace_period_seconds=0)
    with pytest.raises(APIError):
        client.get("Pod", "a", "default")
    st = client.get("PodDisruptionBudget", "web-pdb", "default")["status"]
    assert st["disruptionsAllowed"] == 0 and list(st["disruptedPods"]) == ["a"]
    cond = next(c for c in st["conditions"] if c["type"] == "DisruptionAllowed")
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")
    with pytest.raises(APIError) as ei:
        client.evict("b", "default")
    assert ei.value.code == errors.TOO_MANY_REQUESTS and ei.value.message == BUDGET
    assert ei.value.causes[0]["message"] == "The disruption budget web-pdb needs 1 healthy pods and has 2 currently"
    assert not client.get("Pod", "b", "default")["metadata"].get("deletionTimestamp")


def test_evict_ignores_the_budget_for_finished_pending_and_unready_pods(client: Client) -> None:
    client.create(pdb(minAvailable=1))
    set_status(client, "web-pdb", disruptionsAllowed=0, currentHealthy=1, desiredHealthy=1, expectedPods=2)
    done = client.create(pod("done"))
    done["status"] = {"phase": "Succeeded"}
    client.update_status(done)
    client.evict("done", "default")
    client.create(pod("pending", node=None))
    client.evict("pending", "default")
    running(client, "sick", ready=False)   # IfHealthyBudget: current 1 >= desired 1 > 0
    client.evict("sick", "default", grace_period_seconds=0)
    assert not client.list("Pod", "default")["items"]
    assert client.get("PodDisruptionBudget", "web-pdb", "default")["status"]["disruptionsAllowed"] == 0
    # IfHealthyBudget with the budget not met: an unready pod is refused; AlwaysAllow lets it go
    set_status(client, "web-pdb", disruptionsAllowed=0, currentHealthy=0, desiredHealthy=1, expectedPods=2)
    running(client, "sick2", ready=False)
    with pytest.raises(APIError) as ei:
        client.evict("sick2", "default")
    assert ei.value.code == errors.TOO_MANY_REQUESTS
    obj = client.get("PodDisruptionBudget", "web-pdb", "default")
    obj["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    client.update(obj)
    client.evict("sick2", "default", grace_period_seconds=0)
    assert not client.list("Pod", "default")["items"]


def test_evict_with_two_budgets_is_an_internal_error(client: Client) -> None:
    running(client, "a")
    client.create(pdb("one", minAvailable=0))
    client.create(pdb("two", maxUnavailable=1))
    client.create(pdb("other", minAvailable=1, selector={"matchLabels": {"app": "db"}}))
    client.create(pdb("empty", minAvailable=1, selector={}))   # matches nothing for evictions
    with pytest.raises(APIError) as ei:
        client.evict("a", "default")
    assert ei.value.code == errors.INTERNAL_ERROR and errors.HTTP_STATUS[ei.value.code] == 500
    assert ei.value.message == ("This pod has more than one PodDisruptionBudget, which the eviction "
                                "subresource does not support.")
    client.delete("PodDisruptionBudget", "two", "default")
    set_status(client, "one", disruptionsAllowed=1)
    client.evict("a", "default", grace_period_seconds=0)
    assert not client.list("Pod", "default")["items"]


def test_eviction_object_is_checked(client: Client) -> None:
    running(client, "a")
    bad = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}
    with pytest.raises(APIError, match="name in URL does not match name in Eviction object"):
        client._call("create", {"object": bad, "namespace": "default", "name": "a", "subresource": "eviction"})
    with pytest.raises(APIError, match='takes kind "Eviction"'):
        client._call("create", {"object": {"apiVersion": "v1", "kind": "Binding"}, "namespace": "default",
                                "name": "a", "subresource": "eviction"})


# -- kubectl output --------------------------------------------------------------

def test_get_and_describe_pdb() -> None:
    from emulator.cli.describers import describe
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 300))
    a = dict(pdb("web-pdb", minAvailable=2), status={"disruptionsAllowed": 1, "currentHealthy": 3,
                                                     "desiredHealthy": 2, "expectedPods": 3})
    b = pdb("db-pdb", maxUnavailable="25%")
    for o in (a, b):
        o["metadata"]["creationTimestamp"] = ts
    rows = [ln.split() for ln in render_table("PodDisruptionBudget", [a, b], now=now).splitlines()]
    assert rows[0] == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert rows[1] == ["web-pdb", "2", "N/A", "1", "5m"]
    assert rows[2] == ["db-pdb", "N/A", "25%", "0", "5m"]
    text = describe(a, REGISTRY.by_kind("PodDisruptionBudget"), [])
    lines = [ln.split(":", 1)[0].strip() + ":" + ln.split(":", 1)[1].strip() if ":" in ln else ln
             for ln in text.splitlines()]
    for want in ("Name:web-pdb", "Namespace:default", "Min available:2", "Selector:app=web",
                 "Allowed disruptions:1", "Current:3", "Desired:2", "Total:3"):
        assert want in lines, (want, text)


PDB_YAML = """apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web-pdb
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
"""


def test_kemu_create_get_and_describe_pdb(apiserver_addr: str, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Any) -> None:
    import io

    from emulator.cli.kubectl import run
    monkeypatch.setenv("KEMU_SERVER", apiserver_addr)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))

    def kemu(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = run(list(argv), out, err, stdin=io.StringIO(stdin) if stdin is not None else None)
        return rc, out.getvalue(), err.getvalue()
    assert kemu("create", "-f", "-", stdin=PDB_YAML)[1] == "poddisruptionbudget.policy/web-pdb created\n"
    rc, out, _ = kemu("get", "pdb")
    assert rc == 0 and [ln.split() for ln in out.splitlines()][1][:4] == ["web-pdb", "2", "N/A", "0"]
    rc, out, _ = kemu("describe", "pdb", "web-pdb")
    assert rc == 0 and "Min available:" in out and "Allowed disruptions:" in out
    rc, _, err = kemu("create", "-f", "-", stdin=PDB_YAML.replace("web-pdb", "both").replace(
        "minAvailable: 2", "minAvailable: 2\n  maxUnavailable: 1"))
    assert rc != 0 and "minAvailable and maxUnavailable cannot be both set" in err
