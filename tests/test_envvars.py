"""The kubelet's makeEnvironmentVariables and $(VAR) expansion, with Kubernetes' messages."""
from __future__ import annotations

import base64

import pytest

from node.kubelet.envvars import (EnvError, container_env, expand, make_environment_variables,
                                  mapping_for)


def test_expand_follows_kubernetes_expansion() -> None:
    m = mapping_for({"A": "x", "EMPTY": ""})
    assert expand("$(A)-$(A)", m) == "x-x"
    assert expand("$(MISSING)", m) == "$(MISSING)"          # unknown stays as written
    assert expand("$$(A)", m) == "$(A)"                     # $$ escapes
    assert expand("$$$(A)", m) == "$x"
    assert expand("a$b", m) == "a$b"                        # $ before anything else is kept
    assert expand("$(A", m) == "$(A"                         # unclosed reference is kept
    assert expand("end$", m) == "end$"
    assert expand("$(EMPTY)z", m) == "z"
    assert expand("", m) == ""


def _objects(**objs: dict):
    store = {(o["kind"], o["metadata"]["name"]): o for o in objs.values()}
    calls: list[tuple[str, str]] = []

    def get(kind: str, name: str, ns: str | None) -> dict | None:
        calls.append((kind, name))
        return store.get((kind, name))
    return get, calls


POD = {"metadata": {"name": "web-0", "namespace": "default", "uid": "u-1", "labels": {"app": "web"},
                    "annotations": {"a": "1"}},
       "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                "containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"},
                                                             "requests": {"cpu": "250m"}}}]}}


def test_sources_order_and_values() -> None:
    get, calls = _objects(
        cm={"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"MODE": "fast", "bad key": "x"}},
        s={"kind": "Secret", "metadata": {"name": "sec"}, "data": {"pw": base64.b64encode(b"hunter2").decode()}})
    c = dict(POD["spec"]["containers"][0])
    c["envFrom"] = [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "gone", "optional": True}}]
    c["env"] = [
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
        {"name": "URL", "value": "http://$(IP):80/$(NAME)/$(UNDEFINED)/$$(IP)"},
    ]
    res = make_environment_variables(POD, c, pod_ip="127.64.1.2", host_ip="127.32.0.1", get_object=get,
                                     allocatable={"cpu": "4", "memory": "16Gi"})
    env = res.env
    assert env["CFG_MODE"] == "fast" and "CFG_bad key" not in env
    assert res.warnings == ["Keys [CFG_bad key] from the EnvFrom configMap default/cfg were skipped since "
                            "they are considered invalid environment variable names."]
    assert (env["NAME"], env["NS"], env["APP"], env["NODE"], env["SA"]) == ("web-0", "default", "web", "node-1", "default")
    assert (env["IP"], env["HOST"]) == ("127.64.1.2", "127.32.0.1")
    assert (env["MEM"], env["CPU_M"], env["CPU"]) == ("64", "250", "1")
    assert env["PW"] == "hunter2"
    assert "OPT" not in env
    assert env["URL"] == "http://127.64.1.2:80/web-0/$(UNDEFINED)/$(IP)"
    assert calls.count(("ConfigMap", "cfg")) == 1      # each object fetched once


@pytest.mark.parametrize("ref,message", [
    ({"secretKeyRef": {"name": "x", "key": "k"}}, 'secret "x" not found'),
    ({"configMapKeyRef": {"name": "x", "key": "k"}}, 'configmap "x" not found'),
    ({"secretKeyRef": {"name": "s", "key": "k"}}, "couldn't find key k in Secret default/s"),
    ({"configMapKeyRef": {"name": "c", "key": "k"}}, "couldn't find key k in ConfigMap default/c"),
    ({"fieldRef": {"fieldPath": "spec.bogus"}}, "unsupported fieldPath: spec.bogus"),
])
def test_missing_sources_are_kubernetes_errors(ref: dict, message: str) -> None:
    get, _ = _objects(s={"kind": "Secret", "metadata": {"name": "s"}, "data": {}},
                      c={"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}})
    c = {"name": "app", "env": [{"name": "V", "valueFrom": ref}]}
    with pytest.raises(EnvError) as e:
        make_environment_variables(POD, c, get_object=get)
    assert str(e.value) == message


def test_missing_env_from_is_an_error_unless_optional() -> None:
    get, _ = _objects()
    c = {"name": "app", "envFrom": [{"secretRef": {"name": "creds"}}]}
    with pytest.raises(EnvError, match='^secret "creds" not found$'):
        make_environment_variables(POD, c, get_object=get)
    c["envFrom"][0]["secretRef"]["optional"] = True
    assert make_environment_variables(POD, c, get_object=get).env == {}


def test_container_env_adds_pod_ip_and_expands_command() -> None:
    get, _ = _objects()
    c = {"name": "app", "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)"],
         "args": ["$(PORT)", "$$(PORT)"], "env": [{"name": "PORT", "value": "8080"}]}
    env, spec, _ = container_env(POD, c, pod_ip="127.64.0.9", host_ip="127.0.0.1", node_root="/n",
                                 get_object=get, allocatable={})
    assert env["POD_IP"] == "127.64.0.9" and env["KEMU_NODE_ROOT"] == "/n"
    assert spec["command"] == ["python3", "-m", "http.server", "--bind", "127.64.0.9"]
    assert spec["args"] == ["8080", "$(PORT)"]
    assert c["command"][-1] == "$(POD_IP)"     # the pod's spec is not changed
    own = {"name": "app", "env": [{"name": "POD_IP", "value": "mine"}]}
    assert container_env(POD, own, pod_ip="127.64.0.9", host_ip="", node_root="/n", get_object=get,
                         allocatable={})[0]["POD_IP"] == "mine"
