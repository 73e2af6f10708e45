"""Chaos scenarios: the schema's validation (in-process) and ``kemu chaos run --check``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.chaos.scenario import ScenarioError, load_scenario, parse_condition, parse_duration, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))


def base(**over: Any) -> dict:
    d: dict[str, Any] = {"name": "s1", "duration": "30s", "lab": {"nodes": 1, "profile": "fast"},
                         "faults": [{"at": "1s", "kind": "kill", "target": "node-1"}],
                         "probes": [{"name": "p", "type": "k8s", "mode": "eot", "kind": "Node",
                                     "resourceName": "node-1", "condition": "metadata.name==node-1"}]}
    d.update(over)
    return d


def error(d: dict, tmp_path: Path | None = None) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(d, tmp_path or ROOT)
    return str(e.value)


def test_examples_are_valid() -> None:
    assert {p.name for p in EXAMPLES} >= {"node-failure.yaml", "disk-pressure.yaml", "apiserver-crash.yaml",
                                         "minority-kill.yaml"}
    for p in EXAMPLES:
        sc = load_scenario(p)
        assert sc.name == p.stem and sc.setup and sc.faults and sc.probes
        assert sc.duration <= 60 and sc.lab["nodes"] <= 3 and sc.lab["profile"] == "fast"


def test_a_minimal_scenario() -> None:
    sc = parse_scenario(base(), ROOT)
    assert sc.faults[0].at == 1.0 and sc.faults[0].kind == "kill" and sc.duration == 30.0
    assert sc.probes[0].mode == "eot" and sc.probes[0].spec["_cond"] == ("metadata.name", "==", "node-1")


def test_unknown_fields_are_named_with_their_path() -> None:
    assert error(base(colour="red")).startswith("colour: unknown field")
    assert error(base(lab={"nodes": 1, "size": 3})).startswith("lab.size: unknown field")
    d = base()
    d["faults"][0]["when"] = "1s"
    msg = error(d)
    assert msg.startswith("faults[0].when: unknown field") and "allowed here: at, after" in msg
    d = base()
    d["probes"][0]["url"] = "http://x"
    assert error(d).startswith("probes[0].url: unknown field")


def test_unknown_probe_type_and_mode() -> None:
    d = base()
    d["probes"][0]["type"] = "promql"
    assert error(d) == "probes[0].type: unknown probe type 'promql'; use one of k8s, http, cmd, log, metric"
    d = base()
    d["probes"][0]["mode"] = "always"
    assert "probes[0].mode: unknown mode 'always'" in error(d)


def test_unknown_fault_kind() -> None:
    d = base(faults=[{"at": "1s", "kind": "explode", "target": "node-1"}])
    msg = error(d)
    assert msg.startswith("faults[0].kind: unknown fault kind 'explode'; known:") and "kill" in msg


@pytest.mark.parametrize("kind, params, words", [
    ("loss", {}, "faults[0].params.percent: required by loss"),
    ("loss", {"percent": "0"}, "faults[0].params: percent: Invalid value"),
    ("delay", {"latency": "1s", "distribution": "pareto"}, "faults[0].params: distribution: Unsupported"),
    ("clock-skew", {"offset": "+30s", "speed": "2"}, "faults[0].params.speed: unknown parameter of clock-skew"),
])
def test_fault_params_are_checked_by_their_kind(kind: str, params: dict, words: str) -> None:
    msg = error(base(faults=[{"at": "1s", "kind": kind, "target": "node-1", "params": params}]))
    assert msg.startswith(words), msg


def test_network_and_clock_faults_are_valid_scenario_faults() -> None:
    for kind, params in (("partition", {"with": "rest"}), ("delay", {"latency": "200ms±50ms"}),
                         ("loss", {"percent": "20%"}), ("clock-skew", {"offset": "+30s"}),
                         ("isolate", {})):
        sc = parse_scenario(base(faults=[{"at": "1s", "kind": kind, "target": "node-1", "params": params}]),
                            ROOT)
        assert sc.faults[0].kind == kind and sc.faults[0].params == params


@pytest.mark.parametrize("where, value, path", [
    ("duration", "10 sec", "duration"), ("duration", "-5s", "duration"), ("at", "soon", "faults[0].at"),
    ("for", "1x", "faults[0].for"), ("timeout", True, "probes[0].timeout")])
def test_bad_durations(where: str, value: Any, path: str) -> None:
    d = base()
    if where == "duration":
        d["duration"] = value
    elif where in ("at", "for"):
        d["faults"][0][where] = value
    else:
        d["probes"][0][where] = value
    msg = error(d)
    assert msg.startswith(f"{path}: ") and ("duration" in msg)


def test_duration_units() -> None:
    assert parse_duration("500ms", "x") == 0.5 and parse_duration("2m", "x") == 120
    assert parse_duration(3, "x") == 3.0


def test_required_fields_and_references() -> None:
    assert error({k: v for k, v in base().items() if k != "name"}).startswith("name: required")
    assert error(base(name="Bad_Name")).startswith("name: invalid lab name")
    assert error({k: v for k, v in base().items() if k != "duration"}).startswith("duration: required")
    assert "exactly one of at" in error(base(faults=[{"kind": "kill", "target": "node-1"}]))
    assert error(base(faults=[{"at": 1, "kind": "kill"}])).startswith("faults[0].target: required")
    msg = error(base(faults=[{"after": {"probe": "nope"}, "kind": "kill", "target": "node-1"}]))
    assert msg == "faults[0].after.probe: no probe named 'nope'; declared: p"
    d = base()
    d["probes"].append(dict(d["probes"][0]))
    assert "probes[1].name: 'p' is used twice" in error(d)


def test_probe_fields() -> None:
    def probe(**p: Any) -> str:
        return error(base(probes=[{"name": "p", "mode": "eot", **p}]))
    assert "give exactly one of condition" in probe(type="k8s", kind="Pod", selector="a=b")
    assert "give exactly one of condition" in probe(type="k8s", kind="Pod", selector="a=b", operation="present",
                                                    condition="x==1")
    assert "invalid condition 'ready'" in probe(type="k8s", kind="Pod", resourceName="a", condition="ready")
    assert "operation: 'gone'" in probe(type="k8s", kind="Pod", resourceName="a", operation="gone")
    assert "exactly one of url or service" in probe(type="http")
    assert "NAMESPACE/NAME" in probe(type="http", service="web")
    assert "probes[0].command: expected a non-empty list" in probe(type="cmd", command="ls")
    assert "expectOutput: invalid regular expression" in probe(type="cmd", command=["ls"], expectOutput="(")
    assert "probes[0].event: required" in probe(type="log")
    assert "only for the continuous and onchaos modes" in probe(type="log", event="x", minSuccessRatio=0.5)
    msg = error(base(probes=[{"name": "p", "type": "log", "event": "x", "mode": "continuous",
                              "minSuccessRatio": 2}]))
    assert "probes[0].minSuccessRatio: expected a number from 0 to 1" in msg


def test_load_and_setup(tmp_path: Path) -> None:
    assert error(base(load={"http": {"service": "a/b"}, "churn": {}})) == "load: give exactly one of http or churn"
    assert "load.http.rate: expected a positive number" in error(base(load={"http": {"service": "a/b", "rate": 0}}))
    assert "load.churn.replicas" in error(base(load={"churn": {"deployment": "a/b", "replicas": 3}}))
    assert "setup[0]: 'missing.yaml' does not exist" in error(base(setup=["missing.yaml"]), tmp_path)
    assert "setup[0]: an inline object needs" in error(base(setup=[{"kind": "Pod"}]))
    (tmp_path / "m.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n"
                                     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\n")
    sc = parse_scenario(base(setup=["m.yaml", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "y"}}]), tmp_path)
    assert [o["kind"] for _s, o in sc.setup] == ["Namespace", "ConfigMap", "Namespace"]
    assert sc.namespaces() == ["x", "y"]


def test_condition_syntax() -> None:
    assert parse_condition("status.availableReplicas>=3", "c") == ("status.availableReplicas", ">=", "3")
    assert parse_condition("status.conditions[type=Ready].status == True", "c") == \
        ("status.conditions[type=Ready].status", "==", "True")


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ})


def test_cli_invalid_scenario_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(base(faults=[{"at": "1s", "kind": "partition", "target": "node-1",
                                              "params": {"side": "b"}}])))
    r = kemu("chaos", "run", str(f))
    assert r.returncode == 2
    assert "invalid scenario" in r.stderr and "faults[0].params.side: unknown parameter of partition" in r.stderr
    f.write_text("name: [unclosed\n")
    r = kemu("chaos", "run", str(f))
    assert r.returncode == 2 and "invalid YAML" in r.stderr
    r = kemu("chaos", "run", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "cannot read the scenario" in r.stderr
    r = kemu("chaos", "run", "--check", str(EXAMPLES[0]))
    assert r.returncode == 0 and "valid" in r.stdout
