"""node-drain honouring a PodDisruptionBudget in a real lab (3 fast nodes, no DNS):
the controller-manager's disruption controller keeps the budget, the drain's
evictions are refused while it is spent and go through once it allows them."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.lab import Lab

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
       "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}}


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


def test_node_drain_honours_a_pod_disruption_budget() -> None:
    with Lab(3, name="c-pdb", profile="fast", dns=False) as lab:
        c = lab.client
        c.create(WEB, "default")
        c.create(PDB, "default")

        def running_pods() -> list[dict]:
            return [p for p in c.list("Pod", "default", label_selector="app=web")["items"]
                    if (p.get("status") or {}).get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")]

        def budget() -> dict:
            return c.get("PodDisruptionBudget", "web", "default").get("status") or {}
        lab.wait_for(lambda: len(running_pods()) == 3 and budget().get("currentHealthy") == 3, 30,
                     what="3 web pods running and counted healthy")
        assert budget()["disruptionsAllowed"] == 0 and budget()["expectedPods"] == 3
        victim = running_pods()[0]["spec"]["nodeName"]
        on_victim = sorted(f"default/{p['metadata']['name']}" for p in running_pods()
                           if p["spec"]["nodeName"] == victim)

        # minAvailable 3 of 3: every eviction is refused until the timeout; the pods stay
        d = lab.chaos.node_drain(victim, grace=0, timeout="2s")
        assert d.state["cordoned"] == [victim] and d.state["evicted"] == []
        assert sorted(d.state["blocked"]) == on_victim
        assert all("violate the pod's disruption budget" in m for m in d.state["blocked"].values())
        assert sorted(f"default/{p['metadata']['name']}" for p in running_pods()
                      if p["spec"]["nodeName"] == victim) == on_victim
        lab.chaos.heal(d.id)

        # maxUnavailable 1: the drain evicts, one pod at a time, and the Deployment replaces them
        obj = c.get("PodDisruptionBudget", "web", "default")
        obj["spec"] = {"maxUnavailable": 1, "selector": obj["spec"]["selector"]}
        c.update(obj)
        lab.wait_for(lambda: budget().get("observedGeneration") == 2 and budget().get("disruptionsAllowed") == 1,
                     20, what="the new budget observed")
        d = lab.chaos.node_drain(victim, grace=0, timeout="60s")
        assert sorted(d.state["evicted"]) == on_victim and d.state["blocked"] == {}
        lab.wait_for(lambda: len(running_pods()) == 3 and all(
            p["spec"]["nodeName"] != victim for p in running_pods()), 30,
            what=f"the pods replaced away from {victim}")
        lab.chaos.heal(d.id)
        assert not c.get("Node", victim)["spec"].get("unschedulable")
