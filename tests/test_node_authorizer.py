"""A kubelet reads only the Secrets, ConfigMaps, claims and volumes its own pods use."""
from __future__ import annotations

import pytest

from emulator.api.errors import APIError
from emulator.client import Client


def test_kubelet_reads_only_what_its_pods_use(mem_server) -> None:
    admin = Client(mem_server.address)
    kubelet = Client(mem_server.address, component="kubelet", node="node-1")
    try:
        for name in ("used", "unused"):
            admin.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
                          "stringData": {"k": "v"}})
        admin.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "env", "namespace": "default"}})
        admin.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": "data", "namespace": "default"},
                      "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-1",
                               "resources": {"requests": {"storage": "1Gi"}}}})
        admin.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
                      "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                               "hostPath": {"path": "/mnt/data"}}})
        admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                      "spec": {"nodeName": "node-1", "containers": [{
                          "name": "c", "image": "busybox",
                          "envFrom": [{"configMapRef": {"name": "env"}}]}],
                          "volumes": [{"name": "s", "secret": {"secretName": "used"}},
                                      {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
        assert kubelet.get("Secret", "used", "default")["metadata"]["name"] == "used"
        assert kubelet.get("ConfigMap", "env", "default")
        assert kubelet.get("PersistentVolumeClaim", "data", "default")
        assert kubelet.get("PersistentVolume", "pv-1")
        with pytest.raises(APIError) as e:
            kubelet.get("Secret", "unused", "default")
        assert e.value.code == "Forbidden"
        assert e.value.message == (
            'secrets "unused" is forbidden: User "system:node:node-1" cannot get resource "secrets" in API '
            "group \"\" in the namespace \"default\": no relationship found between node 'node-1' and this object")
        other = Client(mem_server.address, component="kubelet", node="node-2")
        try:
            with pytest.raises(APIError, match="system:node:node-2"):
                other.get("Secret", "used", "default")
        finally:
            other.close()
        assert admin.get("Secret", "unused", "default")   # other components are not limited
    finally:
        admin.close(), kubelet.close()
