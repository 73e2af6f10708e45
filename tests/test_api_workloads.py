"""The issue-4 kinds (Service, Endpoints, EndpointSlice, ReplicaSet, Deployment,
DaemonSet, Job): defaulting and validation in Kubernetes' wording, the docs'
manifests applied unchanged, and the Deployment/ReplicaSet scale subresource."""
from __future__ import annotations

import copy
from typing import Iterator

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.meta import default_object, validate_object
from emulator.api.registry import REGISTRY
from emulator.client import Client

NGINX_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                                   "ports": [{"containerPort": 80}]}]}}}}
MY_NGINX_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "my-nginx", "labels": {"run": "my-nginx"}},
    "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"run": "my-nginx"}}}
FLUENTD_DAEMONSET = {
    "apiVersion": "apps/v1", "kind": "DaemonSet",
    "metadata": {"name": "fluentd-elasticsearch", "namespace": "kube-system",
                 "labels": {"k8s-app": "fluentd-logging"}},
    "spec": {
        "selector": {"matchLabels": {"name": "fluentd-elasticsearch"}},
        "template": {
            "metadata": {"labels": {"name": "fluentd-elasticsearch"}},
            "spec": {
                "tolerations": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                     "effect": "NoSchedule"},
                    {"key": "node-role.kubernetes.io/master", "operator": "Exists",
                     "effect": "NoSchedule"}],
                "containers": [{
                    "name": "fluentd-elasticsearch",
                    "image": "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
                    "resources": {"limits": {"memory": "200Mi"},
                                  "requests": {"cpu": "100m", "memory": "200Mi"}},
                    "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}]}],
                "terminationGracePeriodSeconds": 30,
                "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}]}}}}
PI_JOB = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
    "spec": {"template": {"spec": {
        "containers": [{"name": "pi", "image": "perl:5.34.0",
                        "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]}],
        "restartPolicy": "Never"}},
        "backoffLimit": 4}}


def prepared(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    default_object(REGISTRY.for_object(obj), obj)
    return obj


def message(obj: dict, old: dict | None = None) -> str:
    obj = prepared(obj)
    with pytest.raises(APIError) as ei:
        validate_object(REGISTRY.for_object(obj), obj, old)
    assert ei.value.code == errors.INVALID
    return ei.value.message


def valid(obj: dict, old: dict | None = None) -> dict:
    obj = prepared(obj)
    validate_object(REGISTRY.for_object(obj), obj, old)
    return obj


def with_spec(obj: dict, **spec: object) -> dict:
    out = copy.deepcopy(obj)
    out["spec"].update(spec)
    return out


# --- registration -----------------------------------------------------------------

@pytest.mark.parametrize("name,kind,api_version,status,generation", [
    ("svc", "Service", "v1", True, True),
    ("ep", "Endpoints", "v1", False, False),
    ("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", False, False),
    ("rs", "ReplicaSet", "apps/v1", True, True),
    ("deploy", "Deployment", "apps/v1", True, True),
    ("ds", "DaemonSet", "apps/v1", True, True),
    ("jobs", "Job", "batch/v1", True, True),
    ("deployments.apps", "Deployment", "apps/v1", True, True),
])
def test_kinds_resolve(name, kind, api_version, status, generation) -> None:
    rt = REGISTRY.resolve(name)
    assert (rt.kind, rt.api_version, rt.has_status, rt.has_generation) == \
        (kind, api_version, status, generation)
    assert rt.namespaced


# --- Deployment / ReplicaSet / DaemonSet ------------------------------------------

def test_deployment_defaults() -> None:
    d = valid(NGINX_DEPLOYMENT)
    spec = d["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"],
            spec["minReadySeconds"]) == (10, 600, 0)
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    assert tspec["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert tspec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "status" not in spec["template"]
    no_replicas = copy.deepcopy(NGINX_DEPLOYMENT)
    del no_replicas["spec"]["replicas"]
    assert valid(no_replicas)["spec"]["replicas"] == 1
    assert prepared(d) == d   # idempotent


def test_replica_set_and_daemon_set_defaults() -> None:
    rs = valid(dict(NGINX_DEPLOYMENT, kind="ReplicaSet",
                    spec={k: v for k, v in NGINX_DEPLOYMENT["spec"].items() if k != "replicas"}))
    assert rs["spec"]["replicas"] == 1 and "strategy" not in rs["spec"]
    ds = valid(FLUENTD_DAEMONSET)
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10 and "replicas" not in ds["spec"]


def test_selector_must_match_template_labels() -> None:
    bad = copy.deepcopy(NGINX_DEPLOYMENT)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    assert message(bad) == (
        'Deployment.apps "nginx-deployment" is invalid: spec.template.metadata.labels: '
        'Invalid value: map[string]string{"app":"x"}: `selector` does not match template `labels`')
    bad["kind"] = "ReplicaSet"
    assert "`selector` does not match template `labels`" in message(bad)


def test_selector_required_and_not_empty() -> None:
    bad = copy.deepcopy(NGINX_DEPLOYMENT)
    del bad["spec"]["selector"]
    assert message(bad).endswith("spec.selector: Required value")
    bad["spec"]["selector"] = {}
    assert "spec.selector: Invalid value: {}: empty selector is invalid for deployment" \
        in message(bad)


def test_negative_replicas_rejected() -> None:
    assert message(with_spec(NGINX_DEPLOYMENT, replicas=-1)).endswith(
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0")


def test_selector_immutable_on_update() -> None:
    old = valid(NGINX_DEPLOYMENT)
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "nginx", "tier": "web"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    msg = message(new, old)
    assert 'spec.selector: Invalid value: &v1.LabelSelector{MatchLabels:map[string]string' \
           '{"app":"nginx", "tier":"web"}' in msg and msg.endswith("field is immutable")
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    valid(scaled, old)


def test_template_is_a_valid_pod_spec_with_restart_always() -> None:
    bad = copy.deepcopy(NGINX_DEPLOYMENT)
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    bad["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    msg = message(bad)
    assert "spec.template.spec.containers[0].image: Required value" in msg
    assert 'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": ' \
           'supported values: "Always"' in msg
    bad["spec"]["template"]["spec"] = {}
    assert "spec.template.spec.containers: Required value" in message(bad)


def test_deployment_strategy_rules() -> None:
    zero = with_spec(NGINX_DEPLOYMENT, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    assert 'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 ' \
           "when `maxSurge` is 0" in message(zero)
    bogus = with_spec(NGINX_DEPLOYMENT, strategy={"type": "Blue"})
    assert 'spec.strategy.type: Unsupported value: "Blue"' in message(bogus)
    recreate = with_spec(NGINX_DEPLOYMENT, strategy={"type": "Recreate"})
    assert valid(recreate)["spec"]["strategy"] == {"type": "Recreate"}
    pds = with_spec(NGINX_DEPLOYMENT, minReadySeconds=10, progressDeadlineSeconds=5)
    assert "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than " \
           "minReadySeconds" in message(pds)


# --- Job ----------------------------------------------------------------------------

def test_job_defaults() -> None:
    spec = valid(PI_JOB)["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"],
            spec["completionMode"], spec["suspend"]) == (1, 1, 4, "NonIndexed", False)
    parallel = valid(with_spec(PI_JOB, parallelism=3))["spec"]
    assert parallel["parallelism"] == 3 and "completions" not in parallel
    bare = copy.deepcopy(PI_JOB)
    del bare["spec"]["backoffLimit"]
    assert valid(bare)["spec"]["backoffLimit"] == 6


def test_job_restart_policy_must_be_never_or_on_failure() -> None:
    bad = copy.deepcopy(PI_JOB)
    del bad["spec"]["template"]["spec"]["restartPolicy"]   # defaults to Always, as in Kubernetes
    assert message(bad) == (
        'Job.batch "pi" is invalid: spec.template.spec.restartPolicy: Unsupported value: '
        '"Always": supported values: "Never", "OnFailure"')
    bad["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    valid(bad)


def test_job_validation() -> None:
    assert "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0" in \
        message(with_spec(PI_JOB, backoffLimit=-1))
    assert "spec.completions: Required value: when completion mode is Indexed" in \
        message(with_spec(PI_JOB, completionMode="Indexed", parallelism=2))
    manual = with_spec(PI_JOB, manualSelector=True, selector={"matchLabels": {"a": "b"}})
    assert "`selector` does not match template `labels`" in message(manual)
    old = valid(PI_JOB)
    assert "spec.completions: Invalid value: 3: field is immutable" in \
        message(with_spec(old, completions=3), old)


# --- Service / Endpoints / EndpointSlice --------------------------------------------

def service(**spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def test_service_defaults() -> None:
    spec = valid(MY_NGINX_SERVICE)["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert (spec["ipFamilies"], spec["ipFamilyPolicy"], spec["internalTrafficPolicy"]) == \
        (["IPv4"], "SingleStack", "Cluster")
    assert "externalTrafficPolicy" not in spec and "clusterIP" not in spec
    np = valid(service(type="NodePort"))["spec"]
    assert np["externalTrafficPolicy"] == "Cluster"
    en = valid({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                "spec": {"type": "ExternalName", "externalName": "db.example.com"}})["spec"]
    assert "ipFamilies" not in en and "internalTrafficPolicy" not in en
    named = valid(service(ports=[{"port": 80, "targetPort": "http"}]))["spec"]
    assert named["ports"][0]["targetPort"] == "http"


def test_service_ports_validation() -> None:
    assert message(service(ports=[])).endswith("spec.ports: Required value")
    valid(service(ports=[], clusterIP="None"))   # headless needs no ports
    dup = service(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}])
    assert message(dup) == 'Service "web" is invalid: spec.ports[1].name: Duplicate value: "http"'
    unnamed = service(ports=[{"port": 80}, {"name": "b", "port": 81}])
    assert message(unnamed) == 'Service "web" is invalid: spec.ports[0].name: Required value'
    assert "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive" \
        in message(service(ports=[{"port": 70000}]))
    assert 'spec.ports[0].targetPort: Invalid value: "http--x": must not contain consecutive ' \
           "hyphens" in message(service(ports=[{"port": 80, "targetPort": "http--x"}]))
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" \
        in message(service(ports=[{"port": 80, "nodePort": 30080}]))


def test_service_type_and_cluster_ip_validation() -> None:
    assert 'spec.type: Unsupported value: "Weird": supported values: "ClusterIP", ' \
           '"ExternalName", "LoadBalancer", "NodePort"' in message(service(type="Weird"))
    assert 'spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for ' \
           "NodePort services" in message(service(type="NodePort", clusterIP="None"))
    assert 'spec.clusterIPs[0]: Invalid value: "x.y": must be a valid IP address' \
        in message(service(clusterIP="x.y"))
    assert message({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "e"},
                    "spec": {"type": "ExternalName"}}).endswith("spec.externalName: Required value")


def test_service_cluster_ip_immutable() -> None:
    old = valid(service(clusterIP="127.96.0.10"))
    assert old["spec"]["clusterIPs"] == ["127.96.0.10"]
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "127.96.0.11"
    new["spec"]["clusterIPs"] = ["127.96.0.11"]
    assert message(new, old).endswith(
        'spec.clusterIPs[0]: Invalid value: []string{"127.96.0.11"}: may not change once set')


def test_endpoints_validation() -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
          "subsets": [{"addresses": [{"ip": "127.64.0.5"}], "ports": [{"port": 80}]}]}
    assert valid(ep)["subsets"][0]["ports"][0]["protocol"] == "TCP"
    ep["subsets"][0]["addresses"][0]["ip"] = "nope"
    assert 'subsets[0].addresses[0].ip: Invalid value: "nope"' in message(ep)


def test_endpoint_slice_validation() -> None:
    es = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
          "addressType": "IPv4",
          "endpoints": [{"addresses": ["127.64.0.5"], "conditions": {"ready": True}}],
          "ports": [{"name": "http", "port": 80}]}
    assert valid(es)["ports"][0]["protocol"] == "TCP"
    missing = {k: v for k, v in es.items() if k != "addressType"}
    assert message(missing).endswith("addressType: Required value")
    assert 'addressType: Unsupported value: "IPv5"' in message(dict(es, addressType="IPv5"))
    empty = dict(es, endpoints=[{"addresses": []}])
    assert "endpoints[0].addresses: Required value: must contain at least 1 address" \
        in message(empty)
    wrong = dict(es, endpoints=[{"addresses": ["::1"]}])
    assert 'endpoints[0].addresses[0]: Invalid value: "::1": must be a valid IPv4 address' \
        in message(wrong)
    old = valid(es)
    assert 'addressType: Invalid value: "IPv6": field is immutable' in \
        message(dict(old, addressType="IPv6", endpoints=[]), old)


# --- through the apiserver ------------------------------------------------------------

@pytest.fixture
def c(mem_server) -> Iterator[Client]:
    client = Client(mem_server.address, component="test", timeout=5)
    yield client
    client.close()


def test_docs_manifests_apply_unchanged(c: Client) -> None:
    for manifest in (NGINX_DEPLOYMENT, MY_NGINX_SERVICE, FLUENTD_DAEMONSET, PI_JOB):
        out = c.create(copy.deepcopy(manifest))
        md = out["metadata"]
        assert md["generation"] == 1 and md["uid"] and out["status"] is not None
    svc = c.get("Service", "my-nginx", "default")
    assert svc["spec"]["clusterIP"] and svc["status"] == {"loadBalancer": {}}
    job = c.get("Job", "pi", "default")
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
        "controller-uid": uid, "job-name": "pi"}
    assert c.get("DaemonSet", "fluentd-elasticsearch", "kube-system")["status"] == {}


def test_status_is_a_subresource_and_generation_follows_spec(c: Client) -> None:
    d = c.create(copy.deepcopy(NGINX_DEPLOYMENT))
    d["status"] = {"replicas": 99}
    d = c.update(d)
    assert d["status"] == {} and d["metadata"]["generation"] == 1
    d = c.patch("Deployment", "nginx-deployment", {"status": {"replicas": 3}},
                "default", subresource="status")
    assert d["status"] == {"replicas": 3} and d["metadata"]["generation"] == 1
    d = c.patch("Deployment", "nginx-deployment", {"spec": {"minReadySeconds": 5}}, "default")
    assert d["metadata"]["generation"] == 2


def test_scale_subresource(c: Client) -> None:
    c.create(copy.deepcopy(NGINX_DEPLOYMENT))
    scale = c.patch("Deployment", "nginx-deployment", {"spec": {"replicas": 5}}, "default",
                    subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 5}
    assert scale["status"] == {"replicas": 0, "selector": "app=nginx"}
    d = c.get("Deployment", "nginx-deployment", "default")
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 2
    assert scale["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]
    with pytest.raises(APIError) as ei:
        c.patch("Deployment", "nginx-deployment", {"spec": {"replicas": -1}}, "default",
                subresource="scale")
    assert ei.value.code == errors.INVALID
    assert ei.value.message == ('Scale.autoscaling "nginx-deployment" is invalid: spec.replicas: '
                                "Invalid value: -1: must be greater than or equal to 0")
    with pytest.raises(APIError) as ei:   # only spec.replicas is taken from a Scale
        c.patch("Deployment", "nginx-deployment",
                {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}, "default",
                subresource="scale")
    assert ei.value.code == errors.CONFLICT
    rs = dict(copy.deepcopy(NGINX_DEPLOYMENT), kind="ReplicaSet")
    c.create(rs)
    assert c.patch("ReplicaSet", "nginx-deployment", [{"op": "replace", "path": "/spec/replicas",
                                                       "value": 0}], "default", patch_type="json",
                   subresource="scale")["spec"]["replicas"] == 0
    c.create(copy.deepcopy(PI_JOB))
    with pytest.raises(APIError) as ei:
        c.patch("Job", "pi", {"spec": {"replicas": 2}}, "default", subresource="scale")
    assert ei.value.code == errors.NOT_FOUND


def test_invalid_workloads_rejected_by_the_server(c: Client) -> None:
    bad = copy.deepcopy(NGINX_DEPLOYMENT)
    bad["spec"]["selector"]["matchLabels"]["app"] = "other"
    with pytest.raises(APIError) as ei:
        c.create(bad)
    assert ei.value.code == errors.INVALID and "does not match template" in ei.value.message
    assert c.list("Deployment", "default")["items"] == []
