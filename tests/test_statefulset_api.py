"""StatefulSet and ControllerRevision kinds: defaults and validation in Kubernetes' wording,
the docs' manifest applied unchanged, the scale subresource."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.meta import default_object, validate_object
from emulator.api.registry import REGISTRY
from emulator.client import Client

# The "Components" example of https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/
DOCS_STATEFULSET = {
    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
    "spec": {"selector": {"matchLabels": {"app": "nginx"}}, "serviceName": "nginx", "replicas": 3,
             "minReadySeconds": 10,
             "template": {"metadata": {"labels": {"app": "nginx"}},
                          "spec": {"terminationGracePeriodSeconds": 10,
                                   "containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.24",
                                                   "ports": [{"containerPort": 80, "name": "web"}],
                                                   "volumeMounts": [{"name": "www",
                                                                     "mountPath": "/usr/share/nginx/html"}]}]}},
             "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                       "spec": {"accessModes": ["ReadWriteOnce"],
                                                "storageClassName": "my-storage-class",
                                                "resources": {"requests": {"storage": "1Gi"}}}}]}}


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


def with_spec(**changes: object) -> dict:
    obj = copy.deepcopy(DOCS_STATEFULSET)
    obj["spec"].update(changes)
    return obj


def test_kind_resolves() -> None:
    for name in ("statefulset", "statefulsets", "sts", "StatefulSet", "statefulsets.apps"):
        assert REGISTRY.resolve(name).kind == "StatefulSet"
    assert REGISTRY.resolve("controllerrevisions").kind == "ControllerRevision"


def test_defaults() -> None:
    obj = prepared({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"selector": {"matchLabels": {"a": "b"}},
                             "template": {"metadata": {"labels": {"a": "b"}},
                                          "spec": {"containers": [{"name": "c", "image": "i"}]}},
                             "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                       "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    spec = obj["spec"]
    assert spec["replicas"] == 1 and spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}
    assert spec["revisionHistoryLimit"] == 10 and spec["minReadySeconds"] == 0
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    vct = spec["volumeClaimTemplates"][0]
    assert vct["apiVersion"] == "v1" and vct["kind"] == "PersistentVolumeClaim"
    assert vct["spec"]["volumeMode"] == "Filesystem" and vct["status"] == {"phase": "Pending"}
    on_delete = prepared(with_spec(updateStrategy={"type": "OnDelete"}))
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_docs_manifest_is_valid() -> None:
    obj = prepared(DOCS_STATEFULSET)
    validate_object(REGISTRY.for_object(obj), obj, None)


def test_field_errors() -> None:
    base = 'StatefulSet.apps "web" is invalid: '
    assert message(with_spec(podManagementPolicy="Random")) == \
        base + 'spec.podManagementPolicy: Invalid value: "Random": must be \'OrderedReady\' or \'Parallel\''
    assert message(with_spec(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}})).startswith(
        base + "spec.updateStrategy.rollingUpdate: Invalid value: ")
    assert "only allowed for updateStrategy 'RollingUpdate'" in message(
        with_spec(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}}))
    assert message(with_spec(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": -1}})) == \
        base + "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"
    assert message(with_spec(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}})) \
        == base + "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0"
    assert "must be 'RollingUpdate' or 'OnDelete'" in message(with_spec(updateStrategy={"type": "Recreate"}))
    assert message(with_spec(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"})) == \
        base + ('spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": '
                'supported values: "Delete", "Retain"')
    assert message(with_spec(replicas=-1)) == \
        base + "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert message(with_spec(ordinals={"start": -2})) == \
        base + "spec.ordinals.start: Invalid value: -2: must be greater than or equal to 0"
    assert message(with_spec(selector=None)) == base + "spec.selector: Required value"
    assert "spec.template.metadata.labels: Invalid value" in message(with_spec(selector={"matchLabels": {"app": "x"}}))
    assert "empty selector is invalid for statefulset" in message(with_spec(selector={}))


def test_template_and_claim_template_errors() -> None:
    base = 'StatefulSet.apps "web" is invalid: '
    bad = with_spec()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert message(bad) == base + ('spec.template.spec.restartPolicy: Unsupported value: "Never": '
                                   'supported values: "Always"')
    bad = with_spec()
    bad["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert message(bad) == base + ("spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds "
                                   "in StatefulSet is not Supported")
    bad = with_spec()   # a mount that neither a volume nor a claim template provides
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "data"
    assert "spec.template.spec.containers[0].volumeMounts[0].name: Not found" in message(bad)
    bad = with_spec()
    del bad["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert "spec.volumeClaimTemplates[0].metadata.name: Required value" in message(bad)
    bad = with_spec()
    bad["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] = ["ReadWriteSometimes"]
    assert message(bad).startswith(base + "spec.volumeClaimTemplates[0].spec.accessModes")


def test_name_must_be_a_dns_label() -> None:
    bad = copy.deepcopy(DOCS_STATEFULSET)
    bad["metadata"]["name"] = "web.v1"
    assert "metadata.name: Invalid value: \"web.v1\"" in message(bad)


def test_update_only_some_fields_may_change() -> None:
    old = prepared(DOCS_STATEFULSET)
    forbidden = ('StatefulSet.apps "web" is invalid: spec: Forbidden: updates to statefulset spec for fields '
                 "other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                 "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
    for key, value in (("serviceName", "other"), ("podManagementPolicy", "Parallel"),
                       ("volumeClaimTemplates", [{**old["spec"]["volumeClaimTemplates"][0],
                                                  "metadata": {"name": "www", "labels": {"x": "y"}}}]),
                       ("revisionHistoryLimit", 3)):
        new = copy.deepcopy(old)
        new["spec"][key] = value
        assert message(new, old) == forbidden, key
    new = copy.deepcopy(old)
    new["spec"].update(replicas=5, minReadySeconds=0, ordinals={"start": 1},
                       updateStrategy={"type": "OnDelete"},
                       persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"})
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    validate_object(REGISTRY.for_object(new), new, old)


def test_controller_revision_validation() -> None:
    cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "web-1"}, "revision": 1}
    assert message(cr) == 'ControllerRevision.apps "web-1" is invalid: data: Required value: data is mandatory'
    old = prepared(dict(cr, data={"a": 1}))
    new = dict(copy.deepcopy(old), data={"a": 2})
    assert "data: Invalid value" in message(new, old) and "field is immutable" in message(new, old)
    assert "revision: Invalid value: -1" in message(dict(cr, data={}, revision=-1))


@pytest.fixture
def c(mem_server) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    client = Client(mem_server.address, component="test", timeout=5)
    yield client
    client.close()


def test_docs_manifest_applies_and_scales(c: Client) -> None:
    out = c.create(copy.deepcopy(DOCS_STATEFULSET))
    assert out["status"] == {} and out["metadata"]["generation"] == 1
    scale = c.patch("StatefulSet", "web", {"spec": {"replicas": 5}}, "default", subresource="scale")
    assert scale["spec"] == {"replicas": 5} and scale["status"] == {"replicas": 0, "selector": "app=nginx"}
    assert c.get("StatefulSet", "web", "default")["spec"]["replicas"] == 5
    with pytest.raises(APIError) as ei:
        c.patch("StatefulSet", "web", {"spec": {"serviceName": "x"}}, "default")
    assert ei.value.code == errors.INVALID and "spec: Forbidden: updates to statefulset spec" in ei.value.message
