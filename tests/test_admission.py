"""DefaultTolerationSeconds admission: unit and through the apiserver."""
from __future__ import annotations

from control.apiserver.admission import (TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE,
                                         default_toleration_seconds)
from emulator.client import Client


def pod(tolerations: list | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default"},
            "spec": spec}


def defaults(n: int) -> list[dict]:
    return [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": n}
            for k in (TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE)]


def test_adds_both_tolerations() -> None:
    p = pod()
    assert default_toleration_seconds(p, 15)
    assert p["spec"]["tolerations"] == defaults(15)


def test_not_duplicated() -> None:
    p = pod(defaults(300))
    assert not default_toleration_seconds(p, 15)
    assert p["spec"]["tolerations"] == defaults(300)


def test_user_toleration_for_the_key_is_kept() -> None:
    mine = {"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 6000}
    other = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    p = pod([other, mine])
    default_toleration_seconds(p, 300)
    assert p["spec"]["tolerations"] == [other, mine, defaults(300)[0]]


def test_empty_key_or_effect_tolerates_everything() -> None:
    p = pod([{"operator": "Exists"}])
    assert not default_toleration_seconds(p, 300)
    p = pod([{"key": TAINT_NODE_NOT_READY, "operator": "Exists"}])   # any effect
    default_toleration_seconds(p, 300)
    assert [t["key"] for t in p["spec"]["tolerations"]] == [TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE]
    p = pod([{"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoSchedule"}])
    default_toleration_seconds(p, 300)
    assert len(p["spec"]["tolerations"]) == 3   # a NoSchedule toleration does not count


def test_apiserver_applies_it_on_pod_create(threaded_server) -> None:  # type: ignore[no-untyped-def]
    srv = threaded_server("mem://admission-test", None, default_toleration_seconds=15)
    with Client(srv.address) as c:
        created = c.create(pod())
        assert created["spec"]["tolerations"] == defaults(15)
        assert c.get("Pod", "web-1", "default")["spec"]["tolerations"] == defaults(15)


def test_apiserver_default_is_300(mem_server) -> None:  # type: ignore[no-untyped-def]
    with Client(mem_server.address) as c:
        assert c.create(pod())["spec"]["tolerations"] == defaults(300)
