"""The API type layer: registry, quantities, generic and per-kind defaulting and
validation, in Kubernetes' wording."""
from __future__ import annotations

import base64
import copy
from fractions import Fraction

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.meta import default_object, validate_object
from emulator.api.quantity import cpu_millis, memory_bytes, parse_quantity
from emulator.api.registry import REGISTRY, Registry, ResourceType
from emulator.api.kinds.pod import pod_qos_class

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
    "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
    "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def pod(name="foo", containers=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers if containers is not None
                     else [{"name": "web", "image": "nginx:1.25"}], **spec}}


def prepared(obj):
    rt = REGISTRY.for_object(obj)
    default_object(rt, obj)
    return rt, obj


def invalid_message(obj, old=None):
    rt, obj = prepared(obj)
    with pytest.raises(APIError) as ei:
        validate_object(rt, obj, old)
    assert ei.value.code == errors.INVALID
    return ei.value.message


def ok(obj, old=None):
    rt, obj = prepared(obj)
    validate_object(rt, obj, old)
    return obj


# --- registry -------------------------------------------------------------------

def test_builtin_kinds_sorted_and_shaped():
    kinds = [rt.kind for rt in REGISTRY.all()]
    assert kinds == sorted(kinds)
    assert {"ConfigMap", "DaemonSet", "Deployment", "EndpointSlice", "Endpoints", "Event", "Job", "Lease",
            "Namespace", "Node", "PersistentVolume", "PersistentVolumeClaim", "Pod", "ReplicaSet", "Secret",
            "Service", "StorageClass"} <= set(kinds)
    p = REGISTRY.by_kind("Pod")
    assert (p.api_version, p.list_kind, p.resource, p.short_names) == ("v1", "PodList", "pods", ("po",))
    assert p.namespaced and p.has_status and p.has_generation
    lease = REGISTRY.by_kind("Lease")
    assert lease.api_version == "coordination.k8s.io/v1"
    assert lease.qualified_kind == "Lease.coordination.k8s.io"
    assert not lease.has_status and lease.short_names == ()
    for kind in ("Namespace", "Node"):
        assert not REGISTRY.by_kind(kind).namespaced
    for kind in ("Event", "ConfigMap", "Secret", "Lease"):
        rt = REGISTRY.by_kind(kind)
        assert rt.namespaced and not rt.has_status and not rt.has_generation
    hash(p)  # usable as a dict key


@pytest.mark.parametrize("name,kind", [
    ("po", "Pod"), ("pods", "Pod"), ("pod", "Pod"), ("Pod", "Pod"), ("PODS", "Pod"),
    ("no", "Node"), ("nodes", "Node"), ("ns", "Namespace"), ("cm", "ConfigMap"),
    ("configmaps", "ConfigMap"), ("secrets", "Secret"), ("secret", "Secret"),
    ("ev", "Event"), ("events", "Event"), ("leases", "Lease"),
    ("leases.coordination.k8s.io", "Lease"), ("lease.coordination.k8s.io", "Lease"),
])
def test_resolve_cli_names(name, kind):
    assert REGISTRY.resolve(name).kind == kind


def test_resolve_unknown():
    with pytest.raises(APIError) as ei:
        REGISTRY.resolve("foo")
    assert ei.value.code == errors.BAD_REQUEST
    assert ei.value.message == 'the server doesn\'t have a resource type "foo"'


def test_for_object_errors():
    with pytest.raises(APIError) as ei:
        REGISTRY.for_object({"apiVersion": "v1", "kind": "Foo"})
    assert ei.value.code == errors.BAD_REQUEST
    assert ei.value.message.startswith(
        'no kind "Foo" is registered for version "v1"; supported kinds: v1/ConfigMap, '
        "apps/v1/ControllerRevision, apps/v1/DaemonSet, apps/v1/Deployment, ")
    for pair in ("v1/Event", "coordination.k8s.io/v1/Lease", "batch/v1/Job", "v1/Service"):
        assert pair in ei.value.message
    with pytest.raises(APIError, match='no kind "Pod" is registered for version "apps/v1"'):
        REGISTRY.for_object({"apiVersion": "apps/v1", "kind": "Pod"})
    with pytest.raises(APIError, match='no kind "Lease" is registered for version "v1"'):
        REGISTRY.for_object({"apiVersion": "v1", "kind": "Lease"})
    with pytest.raises(APIError, match="Object 'Kind' is missing in"):
        REGISTRY.for_object({"apiVersion": "v1", "metadata": {"name": "x"}})
    with pytest.raises(APIError, match="Object 'apiVersion' is missing in"):
        REGISTRY.for_object({"kind": "Pod"})
    with pytest.raises(APIError, match="supported kinds: ConfigMap, ControllerRevision, DaemonSet, Deployment"):
        REGISTRY.by_kind("Foo")


def test_register_more_kinds_in_private_registry():
    reg = Registry()
    widget = ResourceType(kind="Widget", group="example.com", version="v1alpha1",
                          plural="widgets", singular="widget", short_names=("wd",))
    reg.register(widget)
    assert reg.resolve("wd") is widget and reg.resolve("widgets.example.com") is widget
    assert reg.for_object({"apiVersion": "example.com/v1alpha1", "kind": "Widget"}) is widget
    with pytest.raises(ValueError):
        reg.register(ResourceType(kind="Gadget", group="", version="v1", plural="gadgets",
                                  singular="gadget", short_names=("wd",)))
    assert "Pod" in REGISTRY and "Widget" not in REGISTRY


# --- quantities -----------------------------------------------------------------

@pytest.mark.parametrize("q,millis", [("100m", 100), ("0.5", 500), ("2", 2000), (2, 2000),
                                      (0.25, 250), ("1.5", 1500), ("1u", 1)])
def test_cpu_millis(q, millis):
    assert cpu_millis(q) == millis


@pytest.mark.parametrize("q,n", [("64Mi", 64 * 2**20), ("1G", 10**9), ("1e3", 1000),
                                 ("128974848", 128974848), ("1Ki", 1024), ("1.5Gi", 3 * 2**29),
                                 ("1E", 10**18), ("5E-2", 1), ("12k", 12000), ("1Ei", 2**60)])
def test_memory_bytes(q, n):
    assert memory_bytes(q) == n


def test_parse_quantity_exact_and_errors():
    assert parse_quantity("100m") == Fraction(1, 10)
    assert parse_quantity("-1") == -1
    for bad in ("", "abc", "1Zi", "1.2.3", "1m3", "Mi", None, True, "1e"):
        with pytest.raises(ValueError, match="invalid quantity"):
            parse_quantity(bad)


# --- generic metadata -------------------------------------------------------------

def test_namespace_defaulting():
    _, obj = prepared(pod())
    assert obj["metadata"]["namespace"] == "default"
    _, node = prepared({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": "n1", "namespace": "oops"}})
    assert "namespace" not in node["metadata"]


def test_name_required():
    obj = pod(name="")
    assert invalid_message(obj) == \
        'Pod "" is invalid: metadata.name: Required value: name or generateName is required'


def test_generate_name_allowed():
    obj = pod(name="")
    obj["metadata"]["generateName"] = "web-"
    ok(obj)


def test_name_must_be_subdomain():
    msg = invalid_message(pod(name="Foo_1"))
    assert msg == f'Pod "Foo_1" is invalid: metadata.name: Invalid value: "Foo_1": {SUBDOMAIN_MSG}'
    ok(pod(name="a.b-c"))


def test_namespace_name_is_label():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}
    assert invalid_message(ns) == \
        f'Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": {LABEL_MSG}'
    long = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a" * 64}}
    assert "must be no more than 63 characters" in invalid_message(long)


def test_bad_namespace_field():
    obj = pod()
    obj["metadata"]["namespace"] = "Bad_NS"
    assert f'metadata.namespace: Invalid value: "Bad_NS": {LABEL_MSG}' in invalid_message(obj)


def test_labels_and_annotations():
    obj = pod()
    obj["metadata"]["labels"] = {"app": "web", "example.com/tier": "front", "x": ""}
    obj["metadata"]["annotations"] = {"kubernetes.io/desc": "anything goes here!"}
    ok(obj)
    obj = pod()
    obj["metadata"]["labels"] = {"bad key": "v", "k": "bad value", "k2": "v" * 64}
    msg = invalid_message(obj)
    assert msg.startswith('Pod "foo" is invalid: [metadata.labels: Invalid value: "bad key": '
                          "name part must consist of alphanumeric characters")
    assert 'metadata.labels: Invalid value: "bad value": a valid label must be an empty ' \
           "string or consist of" in msg
    assert "must be no more than 63 characters" in msg
    obj = pod()
    obj["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in invalid_message(obj)


def test_metadata_immutable_on_update():
    old = ok(pod())
    old["metadata"]["uid"] = "u1"
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "u2"
    assert invalid_message(new, old) == \
        'Pod "foo" is invalid: metadata.uid: Invalid value: "u2": field is immutable'
    new = copy.deepcopy(old)
    del new["metadata"]["uid"]  # omitted uid is fine: the server keeps the stored one
    ok(new, old)


# --- Pod --------------------------------------------------------------------------

def test_pod_defaults():
    obj = ok(pod(containers=[
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "nginx:latest"},
        {"name": "c", "image": "registry:5000/app:1.2"},
        {"name": "d", "image": "localhost:5000/app"},
        {"name": "e", "image": "app@sha256:abcd"},
    ]))
    spec = obj["spec"]
    assert spec["restartPolicy"] == "Always" and spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst" and spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True and spec["securityContext"] == {}
    policies = [c["imagePullPolicy"] for c in spec["containers"]]
    assert policies == ["Always", "Always", "IfNotPresent", "Always", "IfNotPresent"]
    c0 = spec["containers"][0]
    assert c0["terminationMessagePath"] == "/dev/termination-log"
    assert c0["terminationMessagePolicy"] == "File"
    assert c0["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_pod_defaulting_idempotent_and_keeps_explicit_values():
    obj = pod(restartPolicy="Never", terminationGracePeriodSeconds=0)
    obj["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    _, once = prepared(obj)
    twice = copy.deepcopy(once)
    default_object(REGISTRY.by_kind("Pod"), twice)
    assert once == twice
    assert once["spec"]["restartPolicy"] == "Never"
    assert once["spec"]["terminationGracePeriodSeconds"] == 0
    assert once["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def res(requests=None, limits=None):
    r = {}
    if requests is not None:
        r["requests"] = requests
    if limits is not None:
        r["limits"] = limits
    return r


@pytest.mark.parametrize("resources,qos", [
    ([None], "BestEffort"),
    ([res({"cpu": "100m"})], "Burstable"),
    ([res(limits={"cpu": "1", "memory": "1Gi"})], "Guaranteed"),  # requests copied
    ([res({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], "Guaranteed"),
    ([res({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], "Burstable"),
    ([res(limits={"cpu": "1"})], "Burstable"),
    ([res(limits={"cpu": "1", "memory": "1Gi"}), None], "Burstable"),
    ([res(limits={"cpu": "1", "memory": "1Gi"}), res(limits={"cpu": "2", "memory": "2Gi"})],
     "Guaranteed"),
    ([res({"cpu": "0"})], "BestEffort"),
    ([res({"ephemeral-storage": "1Gi"})], "BestEffort"),
])
def test_qos_class(resources, qos):
    cs = []
    for i, r in enumerate(resources):
        c = {"name": f"c{i}", "image": "x:1"}
        if r is not None:
            c["resources"] = r
        cs.append(c)
    obj = ok(pod(containers=cs))
    assert obj["status"]["qosClass"] == qos
    assert pod_qos_class(obj) == qos


def test_limits_copied_into_requests():
    obj = ok(pod(containers=[{"name": "a", "image": "x:1",
                              "resources": {"requests": {"cpu": "100m"},
                                            "limits": {"cpu": "1", "memory": "1Gi"}}}]))
    assert obj["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m",
                                                                     "memory": "1Gi"}


def test_pod_containers_required():
    assert invalid_message(pod(containers=[])) == 'Pod "foo" is invalid: spec.containers: Required value'
    obj = pod()
    del obj["spec"]
    assert invalid_message(obj) == 'Pod "foo" is invalid: spec.containers: Required value'


def test_pod_container_name_and_image():
    assert invalid_message(pod(containers=[{"image": "nginx"}])) == \
        'Pod "foo" is invalid: spec.containers[0].name: Required value'
    assert invalid_message(pod(containers=[{"name": "web"}])) == \
        'Pod "foo" is invalid: spec.containers[0].image: Required value'
    msg = invalid_message(pod(containers=[{"name": "Web_1", "image": "x"}]))
    assert msg == f'Pod "foo" is invalid: spec.containers[0].name: Invalid value: "Web_1": {LABEL_MSG}'
    msg = invalid_message(pod(containers=[{}, {"name": "b"}]))
    assert msg == ('Pod "foo" is invalid: [spec.containers[0].name: Required value, '
                   "spec.containers[0].image: Required value, "
                   "spec.containers[1].image: Required value]")


def test_pod_duplicate_container_names():
    msg = invalid_message(pod(containers=[{"name": "web", "image": "a"},
                                          {"name": "web", "image": "b"}]))
    assert msg == 'Pod "foo" is invalid: spec.containers[1].name: Duplicate value: "web"'
    obj = pod(initContainers=[{"name": "web", "image": "a"}])
    assert 'spec.containers[0].name: Duplicate value: "web"' in invalid_message(obj)


def test_pod_resources_validation():
    def with_res(r):
        return pod(containers=[{"name": "a", "image": "x:1", "resources": r}])
    assert invalid_message(with_res({"requests": {"cpu": "-1"}})) == (
        'Pod "foo" is invalid: spec.containers[0].resources.requests.cpu: '
        'Invalid value: "-1": must be greater than or equal to 0')
    assert invalid_message(with_res({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})) == (
        'Pod "foo" is invalid: spec.containers[0].resources.requests.cpu: '
        'Invalid value: "2": must be less than or equal to cpu limit of 1')
    assert "quantities must match the regular expression" in \
        invalid_message(with_res({"limits": {"memory": "lots"}}))
    assert "must be a standard resource for containers" in \
        invalid_message(with_res({"limits": {"gpu": "1"}}))
    ok(with_res({"requests": {"cpu": "0.5", "memory": "64Mi"},
                 "limits": {"cpu": 1, "memory": "1e9", "example.com/gpu": "1"}}))


def test_pod_spec_fields():
    assert invalid_message(pod(restartPolicy="Sometimes")) == (
        'Pod "foo" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "Never", "OnFailure"')
    assert invalid_message(pod(terminationGracePeriodSeconds=-1)) == (
        'Pod "foo" is invalid: spec.terminationGracePeriodSeconds: Invalid value: -1: '
        "must be greater than or equal to 0")
    msg = invalid_message(pod(containers=[{"name": "a", "image": "x",
                                           "ports": [{"containerPort": 0}, {"containerPort": 70000},
                                                     {"containerPort": 80, "protocol": "ICMP"}]}]))
    assert "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 " \
           "and 65535, inclusive" in msg
    assert "spec.containers[0].ports[1].containerPort: Invalid value: 70000" in msg
    assert 'ports[2].protocol: Unsupported value: "ICMP"' in msg
    msg = invalid_message(pod(volumes=[{"name": "data"}, {"name": "data"}]))
    assert msg == 'Pod "foo" is invalid: spec.volumes[1].name: Duplicate value: "data"'
    msg = invalid_message(pod(containers=[{"name": "a", "image": "x", "volumeMounts": [
        {"name": "nope", "mountPath": "/x"}]}]))
    assert msg == 'Pod "foo" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "nope"'
    assert "spec.nodeName: Invalid value" in invalid_message(pod(nodeName="Node_1"))
    assert "spec.tolerations[0].effect: Unsupported value" in invalid_message(
        pod(tolerations=[{"key": "k", "operator": "Exists", "effect": "Sometimes"}]))


def test_pod_update_allowed_fields():
    old = ok(pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "NoSchedule"}]))
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["activeDeadlineSeconds"] = 60
    new["spec"]["terminationGracePeriodSeconds"] = 5
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    new["metadata"]["labels"] = {"x": "y"}
    ok(new, old)


def test_pod_update_forbidden():
    old = ok(pod())
    new = copy.deepcopy(old)
    new["spec"]["restartPolicy"] = "Never"
    msg = invalid_message(new, old)
    assert msg.startswith('Pod "foo" is invalid: spec: Forbidden: pod updates may not change '
                          "fields other than `spec.containers[*].image`,")
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    assert "spec: Forbidden: pod updates may not change" in invalid_message(new, old)
    old2 = ok(pod(tolerations=[{"key": "a", "operator": "Exists"}]))
    new = copy.deepcopy(old2)
    new["spec"]["tolerations"] = []
    assert "spec.tolerations: Forbidden: existing toleration can not be modified" in \
        invalid_message(new, old2)


def test_pod_update_node_name_binding():
    old = ok(pod())
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "node-1"
    ok(bound, old)  # empty -> set: the binding
    same = copy.deepcopy(bound)
    ok(same, bound)  # kept equal
    moved = copy.deepcopy(bound)
    moved["spec"]["nodeName"] = "node-2"
    assert "spec: Forbidden: pod updates may not change" in invalid_message(moved, bound)


def test_validation_does_not_mutate():
    _, obj = prepared(pod())
    snapshot = copy.deepcopy(obj)
    validate_object(REGISTRY.by_kind("Pod"), obj, snapshot)
    assert obj == snapshot


# --- Node, Namespace -----------------------------------------------------------------

def node(**spec):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": spec}


def test_node():
    ok({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker.example.com"}})
    obj = ok(node(taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
                  unschedulable=True))
    assert obj["status"] == {}
    msg = invalid_message(node(taints=[{"key": "k", "effect": "Sometimes"}]))
    assert msg == ('Node "node-1" is invalid: spec.taints[0].effect: Unsupported value: '
                   '"Sometimes": supported values: "NoExecute", "NoSchedule", "PreferNoSchedule"')
    assert "spec.taints[0].key: Required value" in invalid_message(node(taints=[{"effect": "NoExecute"}]))
    bad = node()
    bad["status"] = {"capacity": {"cpu": "four"}}
    assert "status.capacity.cpu: Invalid value" in invalid_message(bad)


def test_namespace_defaults():
    obj = ok({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    assert obj["spec"] == {"finalizers": ["kubernetes"]}
    assert obj["status"] == {"phase": "Active"}
    assert "namespace" not in obj["metadata"]
    obj2 = copy.deepcopy(obj)
    default_object(REGISTRY.by_kind("Namespace"), obj2)
    assert obj2 == obj


# --- Secret, ConfigMap ---------------------------------------------------------------

def secret(**fields):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **fields}


def test_secret_string_data_merged():
    obj = ok(secret(data={"a": base64.b64encode(b"old").decode(), "b": "Yg=="},
                    stringData={"a": "new", "c": "ccc"}))
    assert "stringData" not in obj and obj["type"] == "Opaque"
    assert {k: base64.b64decode(v) for k, v in obj["data"].items()} == \
        {"a": b"new", "b": b"b", "c": b"ccc"}


def test_secret_validation():
    msg = invalid_message(secret(data={"foo/bar": "eA=="}))
    assert msg == ('Secret "s" is invalid: data[foo/bar]: Invalid value: "foo/bar": a valid '
                   "config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                   "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                   "'[-._a-zA-Z0-9]+')")
    assert "data[..]: Invalid value: \"..\": must not be '..'" in invalid_message(secret(data={"..": ""}))
    assert "data[k]: Invalid value" in invalid_message(secret(data={"k": "not base64!"}))
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    assert "data: Too long: must have at most 1048576 bytes" in invalid_message(secret(data={"k": big}))
    assert "data[tls.key]: Required value" in invalid_message(
        secret(type="kubernetes.io/tls", stringData={"tls.crt": "c"}))
    old = ok(secret(data={"k": "eA=="}))
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    assert 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable' in \
        invalid_message(new, old)


def test_immutable_secret_and_configmap():
    old = ok(secret(data={"k": "eA=="}, immutable=True))
    new = copy.deepcopy(old)
    new["data"]["k"] = "eQ=="
    assert "data: Forbidden: field is immutable when `immutable` is set" in invalid_message(new, old)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"a": "b"}
    ok(new, old)


def test_configmap_validation():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
          "data": {"k": "v", "app.conf": "x=1"}, "binaryData": {"bin": "AAEC"}}
    ok(copy.deepcopy(cm))
    cm["binaryData"]["k"] = "AA=="
    assert invalid_message(cm) == \
        'ConfigMap "cfg" is invalid: data[k]: Invalid value: "k": duplicate of key present in binaryData'
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
           "data": {"a b": "v", "big": "x" * (1024 * 1024)}}
    msg = invalid_message(bad)
    assert 'data[a b]: Invalid value: "a b": a valid config key' in msg
    assert "data: Too long: must have at most 1048576 bytes" in msg


# --- Lease, Event ----------------------------------------------------------------------

def test_lease():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                      "renewTime": "2024-01-02T15:04:05.123456Z"}}
    ok(copy.deepcopy(lease))
    lease["spec"]["leaseDurationSeconds"] = 0
    lease["spec"]["renewTime"] = "yesterday"
    msg = invalid_message(lease)
    assert msg.startswith('Lease.coordination.k8s.io "node-1" is invalid: [spec.leaseDurationSeconds: '
                          "Invalid value: 0: must be greater than 0, ")
    assert 'spec.renewTime: Invalid value: "yesterday"' in msg


def test_event():
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17a"},
          "involvedObject": {"kind": "Pod", "name": "web", "namespace": "prod"},
          "reason": "Scheduled", "message": "assigned", "firstTimestamp": "2024-01-02T15:04:05Z"}
    obj = ok(ev)
    assert obj["metadata"]["namespace"] == "prod"
    assert obj["type"] == "Normal" and obj["count"] == 1
    assert obj["firstTimestamp"] == "2024-01-02T15:04:05Z"
    node_ev = ok({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "n.1"},
                  "involvedObject": {"kind": "Node", "name": "node-1"}, "reason": "Ready"})
    assert node_ev["metadata"]["namespace"] == "default"
    msg = invalid_message({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                           "involvedObject": {"kind": "Pod"}, "type": "Bad"})
    assert msg == ('Event "e" is invalid: [involvedObject.name: Required value, type: '
                   'Unsupported value: "Bad": supported values: "Normal", "Warning"]')
    assert "involvedObject: Required value" in invalid_message(
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}})
