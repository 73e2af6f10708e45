"""Unit tests of the CLI's output: tables, ages, -o formats, describe, apply's merge, servers."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from emulator.cli import printers
from emulator.cli.describers import Writer, describe, events_block, labels_block, smart_label
from emulator.cli.merge import LAST_APPLIED, three_way_merge, with_last_applied
from emulator.cli.printers import (Column, age, as_list, dump_json, dump_yaml, human_duration,
                                   object_name, register_printer, render_table)
from emulator.cli.printers_core import node_roles, node_status, pod_ready, pod_restarts, pod_status
from emulator.cli.server import NO_SERVER, ServerError, resolve_server
from emulator.cli.tabwriter import align

NOW = 1_700_000_000.0


def ts(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str = "web-1", phase: str = "Running", statuses: list | None = None,
        **extra: object) -> dict:
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts(65)},
         "spec": {"containers": [{"name": "c", "image": "nginx"}]},
         "status": {"phase": phase, "containerStatuses": statuses or []}}
    for k, v in extra.items():
        p[k] = v
    return p


def running(ready: bool = True, restarts: int = 0, last: dict | None = None) -> dict:
    return {"name": "c", "ready": ready, "restartCount": restarts,
            "state": {"running": {"startedAt": ts(60)}}, "lastState": last or {}}


# -- durations ---------------------------------------------------------------

@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
    (182, "3m2s"), (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"),
    (3 * 3600 + 300, "3h5m"), (8 * 3600, "8h"), (47 * 3600, "47h"), (51 * 3600, "2d3h"),
    (48 * 3600, "2d"), (8 * 86400, "8d"), (400 * 86400, "400d"), (730 * 86400, "2y"),
    (740 * 86400, "2y10d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_apimachinery(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_age_of_missing_or_bad_timestamp_is_unknown() -> None:
    assert age(None, NOW) == "<unknown>"
    assert age("yesterday", NOW) == "<unknown>"
    assert age(ts(182), NOW) == "3m2s"


# -- tabwriter ---------------------------------------------------------------

def test_table_alignment_is_go_tabwriter_with_kubectl_settings() -> None:
    text = align("NAME\tREADY\tSTATUS\tAGE\nweb-1\t1/1\tRunning\t5s\n", 6, 3)
    assert text == ("NAME    READY   STATUS    AGE\n"
                    "web-1   1/1     Running   5s\n")
    # minwidth 6: a narrow column is still 6 wide; the last cell is never padded.
    assert align("A\tB\nx\ty\n", 6, 3) == "A     B\nx     y\n"


def test_tabwriter_blocks_end_at_lines_without_the_column() -> None:
    text = align("Name:\tweb\nLabels:\ta=b\n\tc=d\nIPs:\n  IP:\t1.2.3.4\n", 0, 2)
    assert text == ("Name:    web\nLabels:  a=b\n         c=d\nIPs:\n  IP:  1.2.3.4\n")


# -- pods --------------------------------------------------------------------

def test_pod_status_is_phase_or_container_reason() -> None:
    assert pod_status(pod(phase="Pending")) == "Pending"
    assert pod_status(pod(statuses=[running()])) == "Running"
    waiting = {"name": "c", "ready": False, "restartCount": 3,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    assert pod_status(pod(statuses=[waiting])) == "CrashLoopBackOff"
    done = {"name": "c", "ready": False, "state": {"terminated": {"reason": "Completed",
                                                                  "exitCode": 0}}}
    assert pod_status(pod(phase="Succeeded", statuses=[done])) == "Completed"
    killed = {"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
    assert pod_status(pod(phase="Failed", statuses=[killed])) == "Signal:9"
    failed = {"name": "c", "state": {"terminated": {"exitCode": 2}}}
    assert pod_status(pod(phase="Failed", statuses=[failed])) == "ExitCode:2"
    assert pod_status(pod(status={"phase": "Failed", "reason": "Evicted"})) == "Evicted"


def test_pod_status_terminating_and_unknown() -> None:
    p = pod(statuses=[running()])
    p["metadata"]["deletionTimestamp"] = ts(-30)
    assert pod_status(p) == "Terminating"
    p["status"]["phase"] = "Succeeded"
    assert pod_status(p) == "Succeeded"          # terminal pods are not "Terminating"
    lost = pod(status={"phase": "Running", "reason": "NodeLost"})
    lost["metadata"]["deletionTimestamp"] = ts(0)
    assert pod_status(lost) == "Unknown"


def test_pod_status_init_containers() -> None:
    p = pod(phase="Pending")
    p["spec"]["initContainers"] = [{"name": "i1"}, {"name": "i2"}]
    p["status"]["initContainerStatuses"] = [
        {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
        {"name": "i2", "state": {"running": {}}}]
    assert pod_status(p) == "Init:1/2"
    p["status"]["initContainerStatuses"][1] = {"name": "i2", "restartCount": 4,
                                               "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    assert pod_status(p) == "Init:CrashLoopBackOff"
    assert pod_restarts(p, NOW) == "4"


def test_pod_ready_and_restarts() -> None:
    p = pod(statuses=[running(ready=False)])
    p["spec"]["containers"].append({"name": "d", "image": "x"})
    assert pod_ready(p) == "0/2"
    assert pod_ready(pod(statuses=[running()])) == "1/1"
    last = {"terminated": {"exitCode": 1, "finishedAt": ts(300)}}
    assert pod_restarts(pod(statuses=[running(restarts=3, last=last)]), NOW) == "3 (5m ago)"
    assert pod_restarts(pod(statuses=[running(restarts=2)]), NOW) == "2"


def test_pod_table_columns_normal_wide_and_all_namespaces() -> None:
    p = pod(statuses=[running()])
    p["spec"]["nodeName"] = "node-1"
    p["status"]["podIP"] = "10.0.0.5"
    assert render_table("Pod", [p], now=NOW) == (
        "NAME    READY   STATUS    RESTARTS   AGE\n"
        "web-1   1/1     Running   0          65s\n")
    wide = render_table("Pod", [p], wide=True, with_namespace=True, now=NOW).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP",
                               "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    assert wide[1].split() == ["default", "web-1", "1/1", "Running", "0", "65s", "10.0.0.5",
                               "node-1", "<none>", "<none>"]


# -- nodes and other kinds -----------------------------------------------------

def node(ready: str | None = "True", unschedulable: bool = False, labels: dict | None = None) -> dict:
    n = {"metadata": {"name": "node-1", "creationTimestamp": ts(3 * 86400),
                      "labels": labels or {}},
         "spec": {"unschedulable": unschedulable},
         "status": {"conditions": [], "nodeInfo": {"kubeletVersion": "v1.32.0"},
                    "addresses": [{"type": "InternalIP", "address": "10.1.0.1"}]}}
    if ready is not None:
        n["status"]["conditions"].append({"type": "Ready", "status": ready})
    return n


def test_node_status_and_roles() -> None:
    assert node_status(node("True")) == "Ready"
    assert node_status(node("False")) == "NotReady"
    assert node_status(node("Unknown")) == "NotReady"     # kubectl: not True is NotReady
    assert node_status(node(None)) == "Unknown"
    assert node_status(node("True", unschedulable=True)) == "Ready,SchedulingDisabled"
    assert node_roles(node()) == "<none>"
    labels = {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "",
              "kubernetes.io/role": "edge"}
    assert node_roles(node(labels=labels)) == "control-plane,edge,worker"


def test_node_table() -> None:
    lines = render_table("Node", [node()], now=NOW).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert lines[1].split() == ["node-1", "Ready", "<none>", "3d", "v1.32.0"]
    wide = render_table("Node", [node()], wide=True, now=NOW).splitlines()
    assert wide[0].split()[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
                                   "CONTAINER-RUNTIME"]
    assert wide[1].split()[5:] == ["10.1.0.1", "<none>", "<unknown>", "<unknown>", "<unknown>"]


def test_simple_kind_tables() -> None:
    md = {"name": "x", "creationTimestamp": ts(5)}
    cm = {"metadata": md, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert render_table("ConfigMap", [cm], now=NOW).splitlines()[1].split() == ["x", "3", "5s"]
    sec = {"metadata": md, "type": "Opaque", "data": {"a": "MQ=="}}
    assert render_table("Secret", [sec], now=NOW).splitlines() == [
        "NAME   TYPE     DATA   AGE", "x      Opaque   1      5s"]
    ns = {"metadata": md, "status": {"phase": "Active"}}
    assert render_table("Namespace", [ns], now=NOW).splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    lease = {"metadata": md, "spec": {"holderIdentity": "node-1"}}
    assert render_table("Lease", [lease], now=NOW).splitlines()[1].split() == ["x", "node-1", "5s"]


def test_event_table_normal_and_wide() -> None:
    ev = {"metadata": {"name": "web.1", "namespace": "default"}, "type": "Warning",
          "reason": "BackOff", "message": "Back-off restarting  ", "count": 4,
          "firstTimestamp": ts(600), "lastTimestamp": ts(10),
          "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
          "source": {"component": "kubelet", "host": "node-1"}}
    lines = render_table("Event", [ev], now=NOW).splitlines()
    assert lines[0] == "LAST SEEN   TYPE      REASON    OBJECT    MESSAGE"
    assert lines[1] == "10s         Warning   BackOff   pod/web   Back-off restarting"
    wide = render_table("Event", [ev], wide=True, now=NOW).splitlines()
    assert re.split(r"\s{2,}", wide[0].strip()) == [
        "LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
        "FIRST SEEN", "COUNT", "NAME"]
    assert re.split(r"\s{2,}", wide[1].strip()) == [
        "10s", "Warning", "BackOff", "pod/web", "spec.containers{c}", "kubelet, node-1",
        "Back-off restarting", "10m", "4", "web.1"]


def test_unknown_kind_gets_name_age_and_kinds_can_register_columns() -> None:
    obj = {"metadata": {"name": "f", "creationTimestamp": ts(7)}, "spec": {"size": 3}}
    assert render_table("Widget", [obj], now=NOW) == "NAME   AGE\nf      7s\n"
    register_printer("Widget", [("NAME", lambda o, now: o["metadata"]["name"]),
                                Column("SIZE", lambda o, now: o["spec"]["size"])],
                     [("COLOR", lambda o, now: None)])
    try:
        assert render_table("Widget", [obj], now=NOW) == "NAME   SIZE\nf      3\n"
        assert render_table("Widget", [obj], wide=True, now=NOW) == \
            "NAME   SIZE   COLOR\nf      3      <none>\n"
    finally:
        printers._PRINTERS.pop("Widget")


def test_table_options_labels_kind_prefix_no_headers() -> None:
    cm = {"metadata": {"name": "x", "creationTimestamp": ts(5), "labels": {"b": "2", "a": "1"}}}
    assert render_table("ConfigMap", [cm], show_labels=True, now=NOW).splitlines() == [
        "NAME   DATA   AGE   LABELS", "x      0      5s    a=1,b=2"]
    assert render_table("ConfigMap", [cm], with_kind="configmap", headers=False,
                        now=NOW) == "configmap/x   0     5s\n"


# -- -o formats --------------------------------------------------------------

def test_list_wrapper_and_json_like_kubectl() -> None:
    text = dump_json(as_list([{"kind": "Pod", "apiVersion": "v1"}]))
    assert text == ('{\n    "apiVersion": "v1",\n    "items": [\n        {\n'
                    '            "apiVersion": "v1",\n            "kind": "Pod"\n        }\n'
                    '    ],\n    "kind": "List",\n    "metadata": {\n'
                    '        "resourceVersion": ""\n    }\n}\n')


def test_yaml_like_go_yaml() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1",
           "metadata": {"name": "x", "creationTimestamp": None},
           "data": {"n": "1", "t": "true", "e": "", "multi": "a\nb\n", "sp": "2 "},
           "items": [{"b": 1, "a": 2}]}
    assert dump_yaml(obj) == (
        "apiVersion: v1\n"
        "data:\n"
        '  e: ""\n'
        "  multi: |\n"
        "    a\n"
        "    b\n"
        '  n: "1"\n'
        "  sp: '2 '\n"
        '  t: "true"\n'
        "items:\n"
        "- a: 2\n"
        "  b: 1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  creationTimestamp: null\n"
        "  name: x\n")
    assert yaml.safe_load(dump_yaml(obj))["data"] == obj["data"]


def test_object_names() -> None:
    assert object_name("Pod", "", "web-1") == "pod/web-1"
    assert object_name("Lease", "coordination.k8s.io", "n1") == "lease.coordination.k8s.io/n1"


# -- describe ----------------------------------------------------------------

class _RT:
    def __init__(self, kind: str, namespaced: bool = True) -> None:
        self.kind, self.group, self.namespaced = kind, "", namespaced


def test_labels_and_events_blocks() -> None:
    w = Writer()
    w.line(0, "Name:\tweb")
    labels_block(w, "Labels", {"b": "2", "a": "1"})
    events_block(w, [], NOW)
    assert w.text() == "Name:    web\nLabels:  a=1\n         b=2\nEvents:  <none>\n"
    w = Writer()
    ev = {"type": "Normal", "reason": "Scheduled", "message": "assigned web to node-1",
          "firstTimestamp": ts(70), "lastTimestamp": ts(70), "count": 1,
          "source": {"component": "default-scheduler"}}
    events_block(w, [ev], NOW)
    assert w.text() == (
        "Events:\n"
        "  Type    Reason     Age   From               Message\n"
        "  ----    ------     ----  ----               -------\n"
        "  Normal  Scheduled  70s   default-scheduler  assigned web to node-1\n")


def test_describe_pod_sections() -> None:
    p = pod(statuses=[running(restarts=1)])
    p["spec"]["nodeName"] = "node-1"
    p["metadata"]["labels"] = {"app": "web"}
    p["metadata"]["annotations"] = {LAST_APPLIED: "{}\n", "note": "hi"}
    p["status"].update(podIP="10.0.0.5", podIPs=[{"ip": "10.0.0.5"}], hostIP="10.1.0.1",
                       conditions=[{"type": "Ready", "status": "True"}])
    text = describe(p, _RT("Pod"), [])
    lines = text.splitlines()
    assert lines[0].startswith("Name:") and lines[0].split() == ["Name:", "web-1"]
    for expected in ("Namespace:", "Node:", "Labels:", "Status:", "IP:", "Containers:",
                     "Conditions:", "QoS Class:", "Events:"):
        assert any(line.startswith(expected) for line in lines), expected
    assert "node-1/10.1.0.1" in text
    assert "Annotations:" in text and "note: hi" in text and LAST_APPLIED not in text
    assert "    Image:          nginx" in text
    assert "    State:          Running" in text
    assert "    Restart Count:  1" in text
    assert re.search(r"^  Type +Status\n  Ready +True $", text, re.M)
    assert lines[-1].split() == ["Events:", "<none>"]


def test_describe_node_and_generic_kinds() -> None:
    n = node()
    n["status"]["capacity"] = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    n["status"]["allocatable"] = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    n["status"]["nodeInfo"].update(osImage="kemu", architecture="amd64")
    busy = pod()
    busy["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    text = describe(n, _RT("Node", False), [], {"lease": None, "pods": [busy]})
    for section in ("Roles:", "Conditions:", "Addresses:", "Capacity:", "Allocatable:",
                    "System Info:", "Non-terminated Pods:", "Allocated resources:", "Events:"):
        assert section in text, section
    assert re.search(r"^  Ready +True +\w", text, re.M)
    assert "500m (12%)" in text and "1Gi (12%)" in text
    assert "  Architecture:               amd64" in text
    widget = {"apiVersion": "x.io/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "default", "uid": "u1"},
              "spec": {"sizeLimit": 3, "podIPs": ["a"]}}
    text = describe(widget, _RT("Widget"), None)
    assert "API Version:  x.io/v1" in text and "Size Limit:  3" in text and "UID:" in text
    assert "Events" not in text


def test_smart_label() -> None:
    assert smart_label("apiVersion") == "API Version"
    assert smart_label("creationTimestamp") == "Creation Timestamp"
    assert smart_label("uid") == "UID"
    assert smart_label("kube.io/x") == "kube.io/x"


# -- apply's merge -----------------------------------------------------------

def test_three_way_merge_keeps_others_fields_and_deletes_removed_ones() -> None:
    original = {"metadata": {"labels": {"a": "1", "gone": "x"}}, "data": {"k": "v"}}
    modified = {"metadata": {"labels": {"a": "2"}}, "data": {"k": "v"}}
    current = {"metadata": {"labels": {"a": "1", "gone": "x", "other": "y"}, "uid": "u"},
               "data": {"k": "v"}, "status": {"phase": "Active"}}
    merged = three_way_merge(original, modified, current)
    assert merged == {"metadata": {"labels": {"a": "2", "other": "y"}, "uid": "u"},
                      "data": {"k": "v"}, "status": {"phase": "Active"}}


def test_three_way_merge_merges_containers_by_name() -> None:
    modified = {"spec": {"containers": [{"name": "c", "image": "v2"}]}}
    current = {"spec": {"containers": [{"name": "c", "image": "v1", "imagePullPolicy": "Always"},
                                       {"name": "sidecar", "image": "s"}]}}
    original = {"spec": {"containers": [{"name": "c", "image": "v1"}]}}
    merged = three_way_merge(original, modified, current)
    assert merged["spec"]["containers"] == [
        {"name": "c", "image": "v2", "imagePullPolicy": "Always"},
        {"name": "sidecar", "image": "s"}]
    # Unchanged manifest, defaulted server fields: nothing to do.
    same = three_way_merge(original, original, current)
    assert same["spec"]["containers"][0] == current["spec"]["containers"][0]


def test_last_applied_annotation() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}
    annotated = with_last_applied(obj)
    value = annotated["metadata"]["annotations"][LAST_APPLIED]
    assert value == ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"annotations":{},'
                     '"name":"x"}}\n')
    again = with_last_applied(annotated)        # the annotation never nests itself
    assert again["metadata"]["annotations"][LAST_APPLIED] == value
    assert obj == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}


# -- server resolution -------------------------------------------------------

@pytest.fixture
def kemu_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    return tmp_path


def test_resolve_server_order(kemu_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServerError) as e:
        resolve_server(None)
    assert str(e.value) == NO_SERVER
    lab = kemu_env / "lab1"
    (lab / "run").mkdir(parents=True)
    (lab / "run" / "apiserver.endpoint").write_text("tcp://127.0.0.1:7001\n")
    (kemu_env / "home").mkdir()
    (kemu_env / "home" / "current").write_text(str(lab) + "\n")
    assert resolve_server(None) == "tcp://127.0.0.1:7001"
    monkeypatch.setenv("KEMU_SERVER", "tcp://127.0.0.1:7002")
    assert resolve_server(None) == "tcp://127.0.0.1:7002"
    assert resolve_server("tcp://localhost:7003") == "tcp://localhost:7003"
    assert resolve_server("ipc:///tmp/kemu.sock") == "ipc:///tmp/kemu.sock"


def test_resolve_server_errors_name_the_source_and_fix(kemu_env: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("127.0.0.1:6443", "tcp://host", "tcp://h:99999", "http://h:1", "ftp://x"):
        with pytest.raises(ServerError) as e:
            resolve_server(bad)
        assert "--server" in str(e.value) and "tcp://HOST:PORT" in str(e.value)
    with pytest.raises(ServerError, match="did you mean tcp://127.0.0.1:6443"):
        resolve_server("127.0.0.1:6443")
    monkeypatch.setenv("KEMU_SERVER", "nope")
    with pytest.raises(ServerError, match="KEMU_SERVER"):
        resolve_server(None)
    monkeypatch.delenv("KEMU_SERVER")
    (kemu_env / "home").mkdir()
    (kemu_env / "home" / "current").write_text(str(kemu_env / "gone-lab"))
    with pytest.raises(ServerError, match="kemu lab up"):
        resolve_server(None)
