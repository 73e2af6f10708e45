"""API semantics, against the real server loop on the in-process transport."""
from __future__ import annotations

from typing import Iterator

import pytest

from emulator.api.errors import (ALREADY_EXISTS, BAD_REQUEST, CONFLICT, FORBIDDEN, INVALID,
                                 NOT_FOUND, APIError)
from emulator.client import Client


def pod(name: str, ns: str = "default", node: str | None = None, **labels: str) -> dict:
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
         "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}
    if node:
        p["spec"]["nodeName"] = node
    return p


def cm(name: str, ns: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": dict(data)}


@pytest.fixture
def c(mem_server) -> Iterator[Client]:
    client = Client(mem_server.address, component="test", timeout=5)
    yield client
    client.close()


def code_of(fn, *a, **kw) -> str:
    with pytest.raises(APIError) as e:
        fn(*a, **kw)
    return e.value.code


def test_system_namespaces_exist(c: Client) -> None:
    names = {n["metadata"]["name"] for n in c.list("Namespace")["items"]}
    assert {"default", "kube-system", "kube-node-lease"} <= names
    assert code_of(c.delete, "Namespace", "kube-system") == FORBIDDEN


def test_create_defaults_and_stamps_metadata(c: Client) -> None:
    p = c.create(pod("web"))
    md = p["metadata"]
    assert md["uid"] and md["creationTimestamp"].endswith("Z") and md["generation"] == 1
    assert int(md["resourceVersion"]) > 0
    spec = p["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert p["status"]["phase"] == "Pending"
    assert c.get("Pod", "web", "default") == p
    assert code_of(c.create, pod("web")) == ALREADY_EXISTS


def test_namespace_defaults_to_default_and_must_exist(c: Client) -> None:
    obj = cm("a")
    del obj["metadata"]["namespace"]
    assert c.create(obj)["metadata"]["namespace"] == "default"
    with pytest.raises(APIError) as e:
        c.create(cm("a", ns="nope"))
    assert e.value.code == NOT_FOUND and e.value.message == 'namespaces "nope" not found'


def test_generate_name(c: Client) -> None:
    obj = cm("")
    obj["metadata"] = {"generateName": "job-", "namespace": "default"}
    name = c.create(obj)["metadata"]["name"]
    assert name.startswith("job-") and len(name) == len("job-") + 5


def test_secret_string_data_is_merged(c: Client) -> None:
    s = c.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                  "data": {"a": "eA=="}, "stringData": {"b": "hello"}})
    assert s["data"] == {"a": "eA==", "b": "aGVsbG8="}
    assert "stringData" not in s and s["type"] == "Opaque"


def test_unknown_kind_lists_supported_kinds(c: Client) -> None:
    with pytest.raises(APIError) as e:
        c.create({"apiVersion": "v1", "kind": "Frobnicator", "metadata": {"name": "x"}})
    assert e.value.code == BAD_REQUEST
    assert "Frobnicator" in e.value.message and "Pod" in e.value.message and "ConfigMap" in e.value.message
    with pytest.raises(APIError) as e:
        c.create({"apiVersion": "apps/v9", "kind": "Pod", "metadata": {"name": "x"}})
    assert "apps/v9" in e.value.message and "v1" in e.value.message


@pytest.mark.parametrize("mutate, field, text", [
    (lambda p: p["metadata"].pop("name"), "metadata.name", "Required value"),
    (lambda p: p["metadata"].__setitem__("name", "Foo_1"), "metadata.name",
     'Invalid value: "Foo_1": a lowercase RFC 1123 subdomain'),
    (lambda p: p["spec"]["containers"][0].pop("name"), "spec.containers[0].name", "Required value"),
    (lambda p: p["spec"]["containers"].append(dict(p["spec"]["containers"][0])),
     "spec.containers[1].name", 'Duplicate value: "app"'),
    (lambda p: p["spec"]["containers"][0].__setitem__("resources", {"requests": {"cpu": "-1"}}),
     "spec.containers[0].resources.requests.cpu", 'Invalid value: "-1": must be greater than or equal to 0'),
])
def test_invalid_manifests_name_the_field(c: Client, mutate, field: str, text: str) -> None:
    p = pod("ok")
    mutate(p)
    with pytest.raises(APIError) as e:
        c.create(p)
    assert e.value.code == INVALID
    assert f"{field}: {text}" in e.value.message
    assert any(cause["field"] == field for cause in e.value.causes)
    assert c.list("Pod", "default")["items"] == []   # nothing written


def test_update_checks_resource_version(c: Client) -> None:
    first = c.create(cm("a", k="1"))
    stale = dict(first, data={"k": "stale"})
    second = c.update(dict(first, data={"k": "2"}))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    with pytest.raises(APIError) as e:
        c.update(stale)
    assert e.value.code == CONFLICT and "the object has been modified" in e.value.message
    assert c.get("ConfigMap", "a", "default")["data"] == {"k": "2"}


def test_noop_update_writes_nothing(c: Client) -> None:
    a = c.create(cm("a", k="1"))
    assert c.update(a)["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]


def test_status_subresource_is_separate(c: Client) -> None:
    p = c.create(pod("web"))
    spec_write = dict(p, status={"phase": "Running"})
    spec_write["metadata"] = dict(p["metadata"], labels={"x": "y"})
    after = c.update(spec_write)
    assert after["status"]["phase"] == "Pending" and after["metadata"]["labels"] == {"x": "y"}
    status_write = dict(after, status={"phase": "Running"})
    status_write["metadata"] = dict(after["metadata"], labels={"changed": "no"})
    after2 = c.update_status(status_write)
    assert after2["status"]["phase"] == "Running" and after2["metadata"]["labels"] == {"x": "y"}
    assert after2["metadata"]["generation"] == 1
    assert code_of(c.update, status_write, "status") == CONFLICT   # stale RV on status too


def test_a_status_write_does_not_validate_the_stored_spec_again(c: Client, monkeypatch) -> None:
    """As ValidatePodStatusUpdate: a status write keeps the stored spec, which was validated
    when written; a spec write is validated in full."""
    from emulator.api.kinds import pod_validation
    calls: list[str] = []
    real = pod_validation._validate_containers
    monkeypatch.setattr(pod_validation, "_validate_containers",
                        lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))
    p = c.create(pod("web"))
    assert "spec.containers" in calls
    calls.clear()
    after = c.update_status(dict(p, status={"phase": "Running"}))
    assert after["status"]["phase"] == "Running" and calls == []
    bad = dict(after, spec=dict(after["spec"], activeDeadlineSeconds=-1))
    assert code_of(c.update, bad) == INVALID and "spec.containers" in calls


def test_generation_bumps_on_spec_change(c: Client) -> None:
    p = c.create(pod("web"))
    p["spec"]["containers"][0]["image"] = "busybox:1.37"
    assert c.update(p)["metadata"]["generation"] == 2


def test_merge_and_json_patch(c: Client) -> None:
    c.create(cm("a", k="1", drop="x"))
    p = c.patch("ConfigMap", "a", {"data": {"k": "2", "drop": None}}, "default")
    assert p["data"] == {"k": "2"}
    p = c.patch("ConfigMap", "a", [{"op": "add", "path": "/data/n", "value": "3"}], "default",
                patch_type="json")
    assert p["data"] == {"k": "2", "n": "3"}
    pp = c.create(pod("web"))
    after = c.patch("Pod", "web", {"status": {"phase": "Running"}}, "default", subresource="status")
    assert after["status"]["phase"] == "Running"
    assert c.patch("Pod", "web", {"status": {"phase": "Failed"}}, "default")["status"]["phase"] == "Running"
    assert pp["metadata"]["uid"] == after["metadata"]["uid"]


def test_binding_sets_node_once(c: Client) -> None:
    c.create(pod("web"))
    assert c.bind("web", "default", "node-1") == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                  "status": "Success", "code": 201}
    b = c.get("Pod", "web", "default")
    assert b["spec"]["nodeName"] == "node-1"
    assert any(x["type"] == "PodScheduled" and x["status"] == "True" for x in b["status"]["conditions"])
    with pytest.raises(APIError) as e:
        c.bind("web", "default", "node-2")
    assert e.value.code == CONFLICT and "already assigned" in e.value.message


def test_graceful_pod_deletion_waits_for_the_kubelet(c: Client) -> None:
    c.create(pod("web", node="node-1"))
    marked = c.delete("Pod", "web", "default")
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert c.get("Pod", "web", "default")["metadata"]["deletionTimestamp"]
    c.delete("Pod", "web", "default", grace_period_seconds=0)   # the kubelet's confirmation
    assert code_of(c.get, "Pod", "web", "default") == NOT_FOUND


def test_unscheduled_pods_and_force_delete_go_at_once(c: Client) -> None:
    c.create(pod("pending"))
    c.delete("Pod", "pending", "default")
    assert code_of(c.get, "Pod", "pending", "default") == NOT_FOUND
    c.create(pod("running", node="node-1"))
    c.delete("Pod", "running", "default", grace_period_seconds=0)
    assert code_of(c.get, "Pod", "running", "default") == NOT_FOUND


def test_finalizers_hold_deletion(c: Client) -> None:
    obj = cm("held")
    obj["metadata"]["finalizers"] = ["example.com/keep"]
    c.create(obj)
    marked = c.delete("ConfigMap", "held", "default")
    assert marked["metadata"]["deletionTimestamp"]
    assert c.get("ConfigMap", "held", "default")
    c.patch("ConfigMap", "held", {"metadata": {"finalizers": None}}, "default")
    assert code_of(c.get, "ConfigMap", "held", "default") == NOT_FOUND


def test_namespace_deletion_removes_its_contents(c: Client) -> None:
    c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    c.create(cm("a", ns="team"))
    c.create(pod("p", ns="team", node="node-1"))
    ns = c.delete("Namespace", "team")
    assert ns["status"]["phase"] == "Terminating"
    assert code_of(c.get, "ConfigMap", "a", "team") == NOT_FOUND
    assert code_of(c.create, cm("b", ns="team")) == FORBIDDEN
    c.delete("Pod", "p", "team", grace_period_seconds=0)   # the kubelet confirms
    assert code_of(c.get, "Namespace", "team") == NOT_FOUND


def test_label_and_field_selectors(c: Client) -> None:
    c.create(pod("a", app="web", tier="front"))
    c.create(pod("b", app="web", tier="back"))
    c.create(pod("c", app="db"))
    c.create(pod("d", node="node-1"))

    def names(**kw) -> list[str]:
        return [p["metadata"]["name"] for p in c.list("Pod", "default", **kw)["items"]]
    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app!=web") == ["c", "d"]
    assert names(label_selector="tier in (front,middle)") == ["a"]
    assert names(label_selector="tier notin (front)") == ["b", "c", "d"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(field_selector="spec.nodeName=node-1") == ["d"]
    assert names(field_selector="spec.nodeName=") == ["a", "b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="status.phase=Pending,metadata.name!=a") == ["b", "c", "d"]
    assert code_of(c.list, "Pod", "default", field_selector="spec.bogus=1") == BAD_REQUEST


def test_lists_across_namespaces_and_paging(c: Client) -> None:
    c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    for i in range(7):
        c.create(cm(f"cm-{i}"))
    c.create(cm("x", ns="other"))
    everything = c.list("ConfigMap")
    assert len(everything["items"]) == 8
    rv = everything["metadata"]["resourceVersion"]
    page = c.list("ConfigMap", "default", limit=3)
    got = [x["metadata"]["name"] for x in page["items"]]
    assert len(got) == 3 and page["metadata"]["continue"]
    while page["metadata"].get("continue"):
        page = c.list("ConfigMap", "default", limit=3, continue_=page["metadata"]["continue"])
        got += [x["metadata"]["name"] for x in page["items"]]
        assert page["metadata"]["resourceVersion"] == rv
    assert got == sorted(f"cm-{i}" for i in range(7))
    assert code_of(c.list, "ConfigMap", "default", limit=3, continue_="garbage!") == BAD_REQUEST


def test_leases_and_events(c: Client) -> None:
    lease = c.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                      "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}})
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    ev = c.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
                   "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                   "reason": "Scheduled", "message": "ok", "type": "Normal"})
    assert ev["metadata"]["namespace"] == "default"


def test_deletion_propagation_sets_the_garbage_collectors_finalizers(c: Client) -> None:
    c.create(cm("fg"))
    marked = c.delete("ConfigMap", "fg", "default", propagation_policy="Foreground")
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert marked["metadata"]["deletionTimestamp"]
    c.create(cm("or"))
    assert c.delete("ConfigMap", "or", "default", propagation_policy="Orphan")["metadata"]["finalizers"] == ["orphan"]
    c.create(cm("bg"))
    c.delete("ConfigMap", "bg", "default", propagation_policy="Background")
    assert code_of(c.get, "ConfigMap", "bg", "default") == NOT_FOUND
    # the garbage collector removing its finalizer finishes the deletion
    c.patch("ConfigMap", "fg", {"metadata": {"finalizers": None}}, "default")
    assert code_of(c.get, "ConfigMap", "fg", "default") == NOT_FOUND
    assert code_of(c.delete, "ConfigMap", "or", "default", propagation_policy="Sideways") == BAD_REQUEST


def test_a_noreply_request_is_not_answered_unless_it_fails(c: Client) -> None:
    """``post`` (Events) asks for no reply: the apiserver writes the object and sends
    nothing back; an invalid one is still answered with its error."""
    from emulator import protocol
    seen: list = []
    dispatch = c._dispatch
    c._dispatch = lambda frame: (seen.append(protocol.decode(frame).get("id")), dispatch(frame))[1]
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
          "reason": "Started", "message": "m", "type": "Normal"}
    c.post("create", object=ev, namespace="default")
    c.post("create", object={"apiVersion": "v1", "kind": "Event"}, namespace="default")   # no name
    rid = c.send("ping")
    c.wait(rid)   # replies come in order: anything for the posts came before this one
    # ids in order: the valid post's rid - 2, the invalid one's rid - 1 (its error), the ping's
    assert seen[-2:] == [rid - 1, rid] and rid - 2 not in seen
    assert c.get("Event", "e1", "default")["reason"] == "Started"


def test_a_noreply_success_does_not_even_build_its_reply(c: Client, monkeypatch) -> None:
    from control.apiserver import server
    built: list[int] = []
    for name in ("ok_reply", "ok_reply_packed"):
        real = getattr(server.protocol, name)
        monkeypatch.setattr(server.protocol, name, lambda rid, *a, _real=real: built.append(rid) or _real(rid, *a))
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e3", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
          "reason": "Started", "message": "m", "type": "Normal"}
    c.post("create", object=ev, namespace="default")
    rid = c.send("ping")
    c.wait(rid)
    assert rid in built and rid - 1 not in built   # the ping's reply, not the post's (rid - 1)
    assert c.get("Event", "e3", "default")["reason"] == "Started"


def test_a_noreply_that_is_not_a_boolean_is_refused_and_nothing_is_written(c: Client) -> None:
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
          "reason": "Started", "message": "m", "type": "Normal"}
    rid = c.send("create", object=ev, namespace="default", noreply="yes")
    with pytest.raises(APIError) as e:
        c.wait(rid)
    assert e.value.code == "BadRequest" and 'envelope field "noreply": expected' in e.value.message
    assert code_of(c.get, "Event", "e2", "default") == "NotFound"
