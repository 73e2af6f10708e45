"""Payloads of configMap, secret, downwardAPI and projected volumes (pure)."""
from __future__ import annotations

import base64

import pytest

from node.volumes.atomic_writer import FileProjection
from node.volumes.sources import (SourceError, configmap_payload, downward_api_payload, format_map,
                                  projected_payload, referenced_objects, resource_value,
                                  secret_payload)

POD = {"metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                    "labels": {"app": "web", "tier": "front"}, "annotations": {"note": 'say "hi"'}},
       "spec": {"containers": [{"name": "app", "image": "x",
                                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                              "limits": {"memory": "128Mi"}}}]}}
ALLOC = {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi"}


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_configmap_all_keys_default_mode() -> None:
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"c": b64("bin")}}
    assert configmap_payload({"name": "cm"}, cm) == {"a": FileProjection(b"1", 0o644),
                                                     "b": FileProjection(b"2", 0o644),
                                                     "c": FileProjection(b"bin", 0o644)}


def test_configmap_items_modes_and_missing_key() -> None:
    cm = {"data": {"a": "1", "b": "2"}}
    src = {"name": "cm", "defaultMode": 0o600, "items": [{"key": "a", "path": "x/a.txt"},
                                                         {"key": "b", "path": "b", "mode": 0o400}]}
    assert configmap_payload(src, cm) == {"x/a.txt": FileProjection(b"1", 0o600),
                                          "b": FileProjection(b"2", 0o400)}
    with pytest.raises(SourceError, match="configmap references non-existent config key: zz"):
        configmap_payload({"name": "cm", "items": [{"key": "zz", "path": "z"}]}, cm)
    assert configmap_payload({"name": "cm", "optional": True, "items": [{"key": "zz", "path": "z"}]},
                             cm) == {}


def test_configmap_missing() -> None:
    with pytest.raises(SourceError, match='configmap "cm" not found'):
        configmap_payload({"name": "cm"}, None)
    assert configmap_payload({"name": "cm", "optional": True}, None) == {}


def test_secret_decodes_and_reports_missing() -> None:
    s = {"data": {"username": b64("admin"), "password": b64("s3cr3t")}}
    assert secret_payload({"secretName": "creds"}, s)["password"] == FileProjection(b"s3cr3t", 0o644)
    with pytest.raises(SourceError, match='secret "creds" not found'):
        secret_payload({"secretName": "creds"}, None)
    with pytest.raises(SourceError, match="references non-existent secret key: nope"):
        secret_payload({"secretName": "creds", "items": [{"key": "nope", "path": "n"}]}, s)


def test_format_map_is_kubernetes_format() -> None:
    assert format_map({"tier": "front", "app": "web"}) == 'app="web"\ntier="front"'
    assert format_map({"q": 'a"b'}) == 'q="a\\"b"'


def test_downward_api_fields() -> None:
    src = {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                     {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                     {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
                     {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                     {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                     {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o400}]}
    p = downward_api_payload(src, POD, ALLOC)
    assert p["name"].data == b"web" and p["ns"].data == b"prod" and p["uid"].data == b"u-1"
    assert p["labels"].data == b'app="web"\ntier="front"'
    assert p["app"].data == b"web"
    assert p["annotations"] == FileProjection(b'note="say \\"hi\\""', 0o400)
    with pytest.raises(SourceError, match="unsupported fieldPath: spec.nodeName"):
        downward_api_payload({"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}, POD, ALLOC)


def test_resource_field_ref() -> None:
    ref = lambda r, d=None: resource_value(POD, {"containerName": "app", "resource": r,
                                                 **({"divisor": d} if d else {})}, ALLOC)
    assert ref("requests.cpu") == "1"            # 250m rounded up to whole cores
    assert ref("requests.cpu", "1m") == "250"
    assert ref("limits.cpu") == "4"              # unset limit: node allocatable
    assert ref("limits.memory", "1Mi") == "128"
    assert ref("requests.memory") == str(64 * 2**20)
    with pytest.raises(SourceError, match="container nope not found"):
        resource_value(POD, {"containerName": "nope", "resource": "limits.cpu"}, ALLOC)


def test_projected_combines_sources_and_aggregates_errors() -> None:
    src = {"sources": [{"secret": {"name": "s", "items": [{"key": "k", "path": "sec/k"}]}},
                       {"configMap": {"name": "c"}},
                       {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                       {"serviceAccountToken": {"path": "token", "audience": "api"}}]}
    objs = {("Secret", "s"): {"data": {"k": b64("v")}}, ("ConfigMap", "c"): {"data": {"x": "y"}}}
    p = projected_payload(src, POD, objs, ALLOC)
    assert p["sec/k"].data == b"v" and p["x"].data == b"y" and p["labels"].data.startswith(b"app=")
    assert p["token"].data.count(b".") == 2
    with pytest.raises(SourceError, match=r'^\[secret "s" not found, configmap "c" not found\]$'):
        projected_payload(src, POD, {}, ALLOC)
    assert referenced_objects({"projected": src}) == [("Secret", "s"), ("ConfigMap", "c")]
