"""kubectl 1.32's columns for workloads, Services, EndpointSlices and the storage kinds."""
from __future__ import annotations

import time

from emulator.cli.printers import render_table

NOW = time.time()
TS = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 300))


def md(name: str, **extra: object) -> dict:
    return {"name": name, "namespace": "default", "creationTimestamp": TS, **extra}


def lines(kind: str, objs: list[dict], wide: bool = False) -> list[list[str]]:
    text = render_table(kind, objs, wide=wide, now=NOW)
    return [line.split() for line in text.splitlines()]


def test_storage_kinds() -> None:
    pv = {"metadata": md("pvc-1"), "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
          "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
          "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}}
    text = render_table("PersistentVolume", [pv], now=NOW)
    assert text.splitlines()[0].split() == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS",
                                            "CLAIM", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert lines("PersistentVolume", [pv])[1] == ["pvc-1", "1Gi", "RWO,RWX", "Delete", "Bound", "default/data",
                                                   "standard", "<unset>", "5m"]
    pending = {"metadata": md("data"), "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}
    bound = {"metadata": md("db"), "spec": {"storageClassName": "standard", "volumeName": "pvc-1"},
             "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}
    rows = lines("PersistentVolumeClaim", [pending, bound])
    assert rows[0] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                       "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert rows[1] == ["data", "Pending", "standard", "<unset>", "5m"]
    assert rows[2] == ["db", "Bound", "pvc-1", "1Gi", "RWO", "standard", "<unset>", "5m"]
    sc = {"metadata": md("standard", annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
          "provisioner": "kemu.io/local-dir", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}
    rows = lines("StorageClass", [sc])
    assert rows[0] == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    assert rows[1] == ["standard", "(default)", "kemu.io/local-dir", "Delete", "WaitForFirstConsumer", "false", "5m"]


def test_workload_kinds() -> None:
    tmpl = {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    dep = {"metadata": md("web"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
           "template": tmpl}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert lines("Deployment", [dep], wide=True) == [
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        ["web", "2/3", "3", "2", "5m", "web", "nginx", "app=web"]]
    rs = {"metadata": md("web-abc"), "spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 1}}
    assert lines("ReplicaSet", [rs])[1] == ["web-abc", "3", "3", "1", "5m"]
    sts = {"metadata": md("db"), "spec": {"replicas": 2, "template": tmpl}, "status": {"readyReplicas": 1}}
    assert lines("StatefulSet", [sts]) == [["NAME", "READY", "AGE"], ["db", "1/2", "5m"]]
    rev = {"metadata": md("db-7d4b9c", ownerReferences=[{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                         "name": "db", "controller": True}]), "revision": 2}
    assert lines("ControllerRevision", [rev])[1] == ["db-7d4b9c", "statefulset.apps/db", "2", "5m"]
    job = {"metadata": md("pi"), "spec": {"completions": 1},
           "status": {"succeeded": 1, "startTime": TS, "completionTime": TS,
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    assert lines("Job", [job]) == [["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
                                   ["pi", "Complete", "1/1", "0s", "5m"]]
    ds = {"metadata": md("agent"), "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 3,
                     "updatedNumberScheduled": 3, "numberAvailable": 3}}
    assert lines("DaemonSet", [ds])[1] == ["agent", "3", "3", "3", "3", "3", "disk=ssd", "5m"]


def test_service_and_endpointslice() -> None:
    svc = {"metadata": md("web"), "spec": {"type": "NodePort", "clusterIP": "127.96.0.10",
           "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}
    assert lines("Service", [svc], wide=True) == [
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        ["web", "NodePort", "127.96.0.10", "<none>", "80:30080/TCP", "5m", "app=web"]]
    es = {"metadata": md("web-x"), "addressType": "IPv4", "ports": [{"port": 8080}],
          "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(5)]}
    assert lines("EndpointSlice", [es])[1] == ["web-x", "IPv4", "8080", "10.0.0.0,10.0.0.1,10.0.0.2", "+", "2",
                                               "more...", "5m"]
