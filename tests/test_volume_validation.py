"""Pod volume sources: defaults and Kubernetes-worded errors for bad ones."""
from __future__ import annotations

import pytest

from emulator.api.errors import APIError
from emulator.client import Client


def pod(volumes: list, mounts: list | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts or []}],
                     "volumes": volumes}}


@pytest.fixture
def client(mem_server):
    c = Client(mem_server.address)
    yield c
    c.close()


def test_defaults(client: Client) -> None:
    got = client.create(pod([{"name": "scratch"}, {"name": "s", "secret": {"secretName": "x"}},
                             {"name": "h", "hostPath": {"path": "/mnt/data"}}]))
    vols = {v["name"]: v for v in got["spec"]["volumes"]}
    assert vols["scratch"]["emptyDir"] == {}
    assert vols["s"]["secret"]["defaultMode"] == 420
    assert vols["h"]["hostPath"]["type"] == ""


@pytest.mark.parametrize("volume,field,text", [
    ({"name": "v", "secret": {"secretName": "s", "items": [{"key": "k", "path": "../../etc/passwd"}]}},
     "spec.volumes[0].secret.items[0].path", "must not contain '..'"),
    ({"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/passwd"}]}},
     "spec.volumes[0].configMap.items[0].path", "must be a relative path"),
    ({"name": "v", "secret": {"secretName": "s", "defaultMode": 0o1777}},
     "spec.volumes[0].secret.defaultMode", "between 0 and 0777"),
    ({"name": "v", "secret": {}}, "spec.volumes[0].secret.secretName", "Required value"),
    ({"name": "v", "hostPath": {"path": "/x", "type": "Directroy"}}, "spec.volumes[0].hostPath.type",
     'Unsupported value: "Directroy"'),
    ({"name": "v", "hostPath": {}}, "spec.volumes[0].hostPath.path", "Required value"),
    ({"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}, "spec.volumes[0].hostPath",
     "may not specify more than 1 volume type"),
    ({"name": "v", "persistentVolumeClaim": {}}, "spec.volumes[0].persistentVolumeClaim.claimName",
     "Required value"),
    ({"name": "v", "emptyDir": {"sizeLimit": "lots"}}, "spec.volumes[0].emptyDir.sizeLimit",
     "quantities must match"),
    ({"name": "v", "downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.secret"}}]}},
     "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", "Unsupported value"),
    ({"name": "v", "nfs": {"server": "s", "path": "/"}}, "spec.volumes[0].nfs", "Unsupported value"),
])
def test_bad_volume_sources(client: Client, volume: dict, field: str, text: str) -> None:
    with pytest.raises(APIError) as e:
        client.create(pod([volume]))
    assert any(c["field"] == field and text in c["message"] for c in e.value.causes), e.value.causes
    assert client.list("Pod", "default")["items"] == []


def test_mount_of_an_undefined_volume(client: Client) -> None:
    with pytest.raises(APIError) as e:
        client.create(pod([{"name": "data", "emptyDir": {}}], [{"name": "date", "mountPath": "/d"}]))
    assert 'spec.containers[0].volumeMounts[0].name: Not found: "date"' in e.value.message
