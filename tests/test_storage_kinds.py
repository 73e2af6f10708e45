"""The storage kinds through the apiserver: defaults, validation messages, the
default StorageClass and the protection finalizers (admission)."""
from __future__ import annotations

import pytest

from emulator.api.errors import APIError
from emulator.client import Client


def pv(name: str = "task-pv-volume", **spec: object) -> dict:
    base = {"storageClassName": "manual", "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/mnt/data"}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name,
            "labels": {"type": "local"}}, "spec": {k: v for k, v in base.items() if v is not None}}


def pvc(name: str = "task-pv-claim", **spec: object) -> dict:
    base = {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "3Gi"}}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {k: v for k, v in base.items() if v is not None}}


def sc(name: str, default: bool = False, **fields: object) -> dict:
    md: dict = {"name": name}
    if default:
        md["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": md,
            "provisioner": "kemu.io/local-dir", **fields}


@pytest.fixture
def client(mem_server):
    c = Client(mem_server.address)
    yield c
    c.close()


def test_docs_pv_and_pvc_get_defaults_and_finalizers(client: Client) -> None:
    v = client.create(pv())
    assert v["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert v["spec"]["volumeMode"] == "Filesystem"
    assert v["status"] == {"phase": "Pending"}
    assert v["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    c = client.create(pvc())
    assert c["status"] == {"phase": "Pending"}
    assert c["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert c["spec"]["storageClassName"] == "manual"


def test_default_storage_class_admission(client: Client) -> None:
    assert "storageClassName" not in client.create(pvc("before", storageClassName=None))["spec"]
    client.create(sc("standard", default=True, volumeBindingMode="WaitForFirstConsumer"))
    client.create(sc("other"))
    assert client.create(pvc("a", storageClassName=None))["spec"]["storageClassName"] == "standard"
    assert client.create(pvc("b", storageClassName=""))["spec"]["storageClassName"] == ""
    got = client.get("StorageClass", "other")
    assert got["reclaimPolicy"] == "Delete" and got["volumeBindingMode"] == "Immediate"


@pytest.mark.parametrize("obj,field,text", [
    (pv(capacity=None), "spec.capacity", "Required value"),
    (pv(accessModes=None), "spec.accessModes", "Required value"),
    (pv(accessModes=["ReadWriteSometimes"]), "spec.accessModes", 'Unsupported value: "ReadWriteSometimes"'),
    (pv(accessModes=["ReadWriteOncePod", "ReadOnlyMany"]), "spec.accessModes", "ReadWriteOncePod"),
    (pv(hostPath=None), "spec", "must specify a volume type"),
    (pv(local={"path": "/x"}), "spec.local", "may not specify more than 1 volume type"),
    (pv(hostPath=None, local={"path": "/x"}), "spec.nodeAffinity", "Local volume requires node affinity"),
    (pv(persistentVolumeReclaimPolicy="Recycle-ish"), "spec.persistentVolumeReclaimPolicy", "Unsupported"),
    (pv(capacity={"storage": "ten"}), "spec.capacity[storage]", "quantities must match"),
    (pvc(accessModes=[]), "spec.accessModes", "Required value"),
    (pvc(resources={}), "spec.resources[storage]", "Required value"),
    (pvc(resources={"requests": {"storage": "0"}}), "spec.resources[storage]", "greater than zero"),
    (pvc(volumeMode="Tape"), "spec.volumeMode", "Unsupported value"),
    (sc("x", provisioner=None), "provisioner", "Required value"),
    (sc("x", volumeBindingMode="Later"), "volumeBindingMode", "Unsupported value"),
])
def test_invalid_storage_objects_name_the_field(client: Client, obj: dict, field: str, text: str) -> None:
    if obj["kind"] == "StorageClass" and obj.get("provisioner") is None:
        obj.pop("provisioner")
    with pytest.raises(APIError) as e:
        client.create(obj)
    assert e.value.code == "Invalid"
    assert any(c["field"] == field and text in c["message"] for c in e.value.causes), e.value.causes


def test_pvc_spec_is_immutable_but_volume_name_is_set_once(client: Client) -> None:
    c = client.create(pvc())
    c["spec"]["volumeName"] = "task-pv-volume"
    c = client.update(c)
    c["spec"]["volumeName"] = "elsewhere"
    with pytest.raises(APIError, match="spec.volumeName: Forbidden: field is immutable once set"):
        client.update(c)
    c = client.get("PersistentVolumeClaim", "task-pv-claim", "default")
    c["spec"]["accessModes"] = ["ReadWriteMany"]
    with pytest.raises(APIError, match="spec is immutable after creation"):
        client.update(c)


def test_storage_class_fields_are_immutable(client: Client) -> None:
    s = client.create(sc("fixed"))
    s["reclaimPolicy"] = "Retain"
    with pytest.raises(APIError, match="updates to reclaimPolicy are forbidden"):
        client.update(s)
    s = client.get("StorageClass", "fixed")
    s["allowVolumeExpansion"] = True
    assert client.update(s)["allowVolumeExpansion"] is True


def test_claim_expansion_needs_a_bound_claim_and_an_expandable_class(client: Client) -> None:
    client.create(sc("fixed-size"))
    client.create(sc("growable", allowVolumeExpansion=True))
    for name, cls in (("a", "fixed-size"), ("b", "growable"), ("c", "growable")):
        client.create(pvc(name, storageClassName=cls, resources={"requests": {"storage": "1Gi"}}))
    for name in ("a", "b"):
        c = client.get("PersistentVolumeClaim", name, "default")
        c["spec"]["volumeName"] = f"pv-{name}"
        client.update(c)
    grow = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    for name in ("a", "c"):   # a: the class does not allow it; c: not bound
        with pytest.raises(APIError) as e:
            client.patch("PersistentVolumeClaim", name, grow, "default")
        assert e.value.code == "Forbidden" and "only dynamically provisioned pvc can be resized" in e.value.message
    got = client.patch("PersistentVolumeClaim", "b", grow, "default")
    assert got["spec"]["resources"]["requests"]["storage"] == "2Gi"
