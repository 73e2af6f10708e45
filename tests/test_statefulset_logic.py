"""Pure decisions of the StatefulSet controller (statefulset_logic): no apiserver."""
from __future__ import annotations

import copy

from control.controllers import statefulset_history as history
from control.controllers import statefulset_logic as logic

NOW = 1_700_000_000.0


def make_set(replicas: int = 3, policy: str = "OrderedReady", partition: int | None = 0,
             strategy: str = "RollingUpdate", claims: tuple[str, ...] = ("www",), start: int | None = None,
             retention: tuple[str, str] = ("Retain", "Retain"), min_ready: int = 0) -> dict:
    us: dict = {"type": strategy}
    if strategy == "RollingUpdate" and partition is not None:
        us["rollingUpdate"] = {"partition": partition}
    spec: dict = {"replicas": replicas, "podManagementPolicy": policy, "serviceName": "nginx",
                  "selector": {"matchLabels": {"app": "nginx"}}, "updateStrategy": us, "minReadySeconds": min_ready,
                  "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention[0], "whenScaled": retention[1]},
                  "template": {"metadata": {"labels": {"app": "nginx"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx:1"}],
                                        "volumes": [{"name": "www", "emptyDir": {}},
                                                    {"name": "cfg", "configMap": {"name": "x"}}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": n, "labels": {"tier": "db"}},
                                            "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": "1Gi"}}}}
                                           for n in claims]}
    if start is not None:
        spec["ordinals"] = {"start": start}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 1},
            "spec": spec, "status": {}}


REV1 = logic.Revision("web-rev1", {"metadata": {"labels": {"app": "nginx"}},
                                   "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}})
REV2 = logic.Revision("web-rev2", {"metadata": {"labels": {"app": "nginx"}},
                                   "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}})


def pod(sts: dict, ordinal: int, phase: str = "Running", ready: bool = True, rev: logic.Revision = REV1,
        terminating: bool = False) -> dict:
    p = logic.new_pod(sts, ordinal, rev.template, rev.name)
    p["metadata"]["uid"] = f"uid-{ordinal}"
    p["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                   "lastTransitionTime": "2023-01-01T00:00:00Z"}]}
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2023-11-14T00:00:00Z"
    return p


def ops(plan: logic.Plan) -> list[tuple[str, str]]:
    return [(a.op, a.pod["metadata"]["name"]) for a in plan.actions]


# -- names, pods, claims --------------------------------------------------------
def test_parent_and_ordinal() -> None:
    assert logic.parent_and_ordinal("web-12") == ("web", 12)
    assert logic.parent_and_ordinal("my-web-0") == ("my-web", 0)
    assert logic.parent_and_ordinal("web") == ("", -1)
    assert logic.parent_and_ordinal("web-x") == ("", -1)
    assert logic.parent_and_ordinal("web-99999999999") == ("web", -1)


def test_new_pod_identity_and_storage() -> None:
    sts = make_set()
    p = logic.new_pod(sts, 2, sts["spec"]["template"], "web-abc")
    md, spec = p["metadata"], p["spec"]
    assert md["name"] == "web-2" and md["generateName"] == "web-" and md["namespace"] == "default"
    assert md["labels"] == {"app": "nginx", "statefulset.kubernetes.io/pod-name": "web-2",
                            "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                      "uid": "set-uid", "controller": True, "blockOwnerDeletion": True}]
    assert spec["hostname"] == "web-2" and spec["subdomain"] == "nginx"
    # the template's own "www" volume is replaced by the claim; others stay
    assert spec["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}},
                               {"name": "cfg", "configMap": {"name": "x"}}]
    assert sts["spec"]["template"]["spec"]["volumes"][0] == {"name": "www", "emptyDir": {}}   # not mutated


def test_claims_for_names_and_labels() -> None:
    sts = make_set(claims=("www", "logs"))
    claims = logic.claims_for(sts, 4)
    assert [(t, c["metadata"]["name"]) for t, c in claims] == [("www", "www-web-4"), ("logs", "logs-web-4")]
    assert claims[0][1]["metadata"]["labels"] == {"tier": "db", "app": "nginx"}
    assert claims[0][1]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claims[0][1]["kind"] == "PersistentVolumeClaim"


def test_versioned_pod_below_partition_uses_current_revision() -> None:
    sts = make_set(partition=2)
    assert logic.versioned_pod(sts, 1, REV1, REV2)["metadata"]["labels"]["controller-revision-hash"] == REV1.name
    assert logic.versioned_pod(sts, 2, REV1, REV2)["metadata"]["labels"]["controller-revision-hash"] == REV2.name
    on_delete = make_set(strategy="OnDelete")
    assert logic.versioned_pod(on_delete, 0, REV1, REV2)["spec"]["containers"][0]["image"] == "nginx:2"


# -- OrderedReady / Parallel ----------------------------------------------------
def test_ordered_ready_creates_lowest_missing_ordinal_first_with_its_claim() -> None:
    sts = make_set()
    p = logic.plan(sts, [], {}, REV1, REV1, NOW)
    assert ops(p) == [("create", "web-0")]
    assert [c["metadata"]["name"] for c in p.actions[0].claims] == ["www-web-0"]
    assert "ownerReferences" not in p.actions[0].claims[0]["metadata"]


def test_ordered_ready_waits_for_running_and_ready_predecessors() -> None:
    sts = make_set(claims=())
    assert ops(logic.plan(sts, [pod(sts, 0, "Pending", False)], {}, REV1, REV1, NOW)) == []
    assert ops(logic.plan(sts, [pod(sts, 0, "Running", False)], {}, REV1, REV1, NOW)) == []
    assert ops(logic.plan(sts, [pod(sts, 0)], {}, REV1, REV1, NOW)) == [("create", "web-1")]
    # a hole is filled in order, before anything above it
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 2)], {}, REV1, REV1, NOW)) == [("create", "web-1")]


def test_ordered_ready_waits_for_min_ready_seconds() -> None:
    sts = make_set(min_ready=30)
    ready_at = 1_700_000_000.0 - 10
    p0 = pod(sts, 0)
    p0["status"]["conditions"][0]["lastTransitionTime"] = "2023-11-14T22:13:10Z"
    plan = logic.plan(sts, [p0], {}, REV1, REV1, ready_at + 10)
    assert ops(plan) == [] and plan.requeue_at is not None
    assert ops(logic.plan(sts, [p0], {}, REV1, REV1, plan.requeue_at + 1)) == [("create", "web-1")]


def test_parallel_creates_all_missing_at_once() -> None:
    sts = make_set(policy="Parallel", claims=())
    assert ops(logic.plan(sts, [pod(sts, 1, "Pending", False)], {}, REV1, REV1, NOW)) == \
        [("create", "web-0"), ("create", "web-2")]


def test_ordinals_start() -> None:
    sts = make_set(replicas=2, policy="Parallel", start=5)
    assert ops(logic.plan(sts, [], {}, REV1, REV1, NOW)) == [("create", "web-5"), ("create", "web-6")]
    sts = make_set(replicas=2, start=5)
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 5), pod(sts, 6)], {}, REV1, REV1, NOW)) == \
        [("delete", "web-0")]


def test_failed_pod_is_deleted_then_recreated() -> None:
    sts = make_set(replicas=2)
    plan = logic.plan(sts, [pod(sts, 0, "Failed", False), pod(sts, 1)], {}, REV1, REV1, NOW)
    assert [(a.op, a.pod["metadata"]["name"], a.reason) for a in plan.actions] == [("delete", "web-0", "failed")]
    assert ops(logic.plan(sts, [pod(sts, 1)], {}, REV1, REV1, NOW)) == [("create", "web-0")]


def test_scale_down_from_highest_ordinal_one_at_a_time() -> None:
    sts = make_set(replicas=1)
    pods = [pod(sts, 0), pod(sts, 1), pod(sts, 2)]
    plan = logic.plan(sts, pods, {}, REV1, REV1, NOW)
    assert [(a.op, a.pod["metadata"]["name"], a.reason) for a in plan.actions] == [("delete", "web-2", "scale-down")]
    pods[2]["metadata"]["deletionTimestamp"] = "2023-11-14T00:00:00Z"
    assert ops(logic.plan(sts, pods, {}, REV1, REV1, NOW)) == []   # waits for web-2 to terminate
    assert ops(logic.plan(sts, pods[:2], {}, REV1, REV1, NOW)) == [("delete", "web-1")]


def test_scale_down_blocked_by_unhealthy_pod_unless_it_is_the_first_unhealthy() -> None:
    sts = make_set(replicas=1, claims=())
    # web-1 is the first unhealthy pod; web-2, unhealthy too, is not -> blocked
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 1, "Pending", False), pod(sts, 2, "Pending", False)],
                          {}, REV1, REV1, NOW)) == []
    # a healthy pod is deleted even when a lower condemned one is unhealthy (as Kubernetes)
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 1, "Pending", False), pod(sts, 2)], {}, REV1, REV1, NOW)) == \
        [("delete", "web-2")]
    # web-2 is itself the first unhealthy pod -> it may go
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 1), pod(sts, 2, "Pending", False)], {}, REV1, REV1, NOW)) == \
        [("delete", "web-2")]


def test_parallel_scale_down_deletes_all_condemned() -> None:
    sts = make_set(replicas=1, policy="Parallel", claims=())
    assert ops(logic.plan(sts, [pod(sts, 0), pod(sts, 1, "Pending", False), pod(sts, 2)], {}, REV1, REV1, NOW)) == \
        [("delete", "web-2"), ("delete", "web-1")]


def test_set_being_deleted_does_nothing() -> None:
    sts = make_set()
    sts["metadata"]["deletionTimestamp"] = "2023-11-14T00:00:00Z"
    assert ops(logic.plan(sts, [pod(sts, 5)], {}, REV1, REV1, NOW)) == []


# -- rolling update -------------------------------------------------------------
def test_rolling_update_highest_ordinal_first_one_at_a_time() -> None:
    sts = make_set(claims=())
    pods = [pod(sts, i) for i in range(3)]
    plan = logic.plan(sts, pods, {}, REV1, REV2, NOW)
    assert [(a.op, a.pod["metadata"]["name"], a.reason) for a in plan.actions] == [("delete", "web-2", "update")]
    assert plan.status["currentReplicas"] == 2
    # web-2 recreated at the new revision but not ready yet: nothing else happens
    pods[2] = pod(sts, 2, "Pending", False, rev=REV2)
    assert ops(logic.plan(sts, pods, {}, REV1, REV2, NOW)) == []
    pods[2] = pod(sts, 2, rev=REV2)
    assert ops(logic.plan(sts, pods, {}, REV1, REV2, NOW)) == [("delete", "web-1")]


def test_rolling_update_max_unavailable() -> None:
    sts = make_set(replicas=4, policy="Parallel", claims=())
    sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 2
    pods = [pod(sts, i) for i in range(4)]
    assert ops(logic.plan(sts, pods, {}, REV1, REV2, NOW)) == [("delete", "web-3"), ("delete", "web-2")]
    pods[3] = pod(sts, 3, "Pending", False, rev=REV2)   # one already unavailable: one more may go
    assert ops(logic.plan(sts, pods, {}, REV1, REV2, NOW)) == [("delete", "web-2")]
    sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "10%"   # rounds down, at least 1
    assert logic.max_unavailable(sts) == 1
    sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "50%"
    assert logic.max_unavailable(sts) == 2


def test_rolling_update_honours_partition() -> None:
    sts = make_set(partition=2)
    pods = [pod(sts, 0), pod(sts, 1), pod(sts, 2, rev=REV2)]
    plan = logic.plan(sts, pods, {}, REV1, REV2, NOW)
    assert ops(plan) == []
    assert plan.status["updatedReplicas"] == 1 and plan.status["currentReplicas"] == 2
    assert plan.status["currentRevision"] == REV1.name   # not complete below the partition


def test_rolling_update_completes_and_moves_current_revision() -> None:
    sts = make_set()
    pods = [pod(sts, i, rev=REV2) for i in range(3)]
    st = logic.plan(sts, pods, {}, REV1, REV2, NOW).status
    assert st["currentRevision"] == REV2.name and st["currentReplicas"] == 3 and st["updatedReplicas"] == 3


def test_on_delete_never_deletes_for_update() -> None:
    sts = make_set(strategy="OnDelete")
    pods = [pod(sts, i) for i in range(3)]
    assert ops(logic.plan(sts, pods, {}, REV1, REV2, NOW)) == []
    plan = logic.plan(sts, pods[:2], {}, REV1, REV2, NOW)
    assert ops(plan) == [("create", "web-2")]
    assert plan.actions[0].pod["metadata"]["labels"]["controller-revision-hash"] == REV2.name


def test_status_counts() -> None:
    sts = make_set(replicas=3)
    pods = [pod(sts, 0), pod(sts, 1, "Running", False, rev=REV2), pod(sts, 2, terminating=True)]
    st = logic.plan(sts, pods, {}, REV1, REV2, NOW).status
    assert st == {"observedGeneration": 1, "currentRevision": REV1.name, "updateRevision": REV2.name,
                  "collisionCount": 0, "replicas": 3, "readyReplicas": 2, "availableReplicas": 2,
                  "currentReplicas": 1, "updatedReplicas": 1}


# -- claims and retention -------------------------------------------------------
def claim(name: str, refs: list[dict] | None = None, deleting: bool = False) -> dict:
    c = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": name, "namespace": "default", "uid": f"c-{name}"}, "spec": {}}
    if refs:
        c["metadata"]["ownerReferences"] = refs
    if deleting:
        c["metadata"]["deletionTimestamp"] = "2023-11-14T00:00:00Z"
    return c


def test_existing_claim_is_reused_and_claim_being_deleted_blocks() -> None:
    sts = make_set()
    plan = logic.plan(sts, [], {"www-web-0": claim("www-web-0")}, REV1, REV1, NOW)
    assert ops(plan) == [("create", "web-0")] and plan.actions[0].claims == []
    plan = logic.plan(sts, [], {"www-web-0": claim("www-web-0", deleting=True)}, REV1, REV1, NOW)
    assert [(a.op, a.reason) for a in plan.actions] == [("fail", "pvc www-web-0 is being deleted")]


def test_pending_pod_gets_missing_claims() -> None:
    sts = make_set()
    plan = logic.plan(sts, [pod(sts, 0, "Pending", False)], {}, REV1, REV1, NOW)
    assert ops(plan) == [("create_claims", "web-0")]
    assert plan.actions[0].claims[0]["metadata"]["name"] == "www-web-0"


def test_when_deleted_delete_owns_claims_by_the_set() -> None:
    sts = make_set(retention=("Delete", "Retain"))
    plan = logic.plan(sts, [], {}, REV1, REV1, NOW)
    assert plan.actions[0].claims[0]["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid",
         "controller": True, "blockOwnerDeletion": True}]
    # an existing claim without the ref is fixed once its pod is healthy
    plan = logic.plan(sts, [pod(sts, 0)], {"www-web-0": claim("www-web-0")}, REV1, REV1, NOW)
    assert ops(plan)[0] == ("update_claim", "web-0")
    assert plan.actions[0].claim["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"


def test_when_scaled_delete_hands_condemned_claims_to_their_pod() -> None:
    sts = make_set(replicas=1, retention=("Retain", "Delete"))
    claims = {"www-web-0": claim("www-web-0"), "www-web-1": claim("www-web-1")}
    plan = logic.plan(sts, [pod(sts, 0), pod(sts, 1)], claims, REV1, REV1, NOW)
    assert ops(plan) == [("update_claim", "web-1"), ("delete", "web-1")]
    assert plan.actions[0].claim["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "uid-1", "controller": True,
         "blockOwnerDeletion": True}]


def test_stale_claim_of_previous_pod_makes_the_pass_wait() -> None:
    sts = make_set(replicas=2, retention=("Retain", "Delete"))
    stale = claim("www-web-1", refs=[{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "old",
                                      "controller": True}])
    assert ops(logic.plan(sts, [pod(sts, 0)], {"www-web-1": stale}, REV1, REV1, NOW)) == []


def test_claim_refs_policy_matrix() -> None:
    p_in, p_out = pod(make_set(replicas=2), 1), pod(make_set(replicas=2), 3)
    cases = {("Retain", "Retain"): ([], []), ("Delete", "Retain"): (["StatefulSet"], ["StatefulSet"]),
             ("Retain", "Delete"): ([], ["Pod"]), ("Delete", "Delete"): (["StatefulSet"], ["Pod"])}
    for policy, (want_in, want_out) in cases.items():
        sts = make_set(replicas=2, retention=policy)
        got_in = [r["kind"] for r in logic.claim_refs(claim("c"), sts, p_in)]
        got_out = [r["kind"] for r in logic.claim_refs(claim("c"), sts, p_out)]
        assert (got_in, got_out) == (want_in, want_out), policy
        fixed = claim("c", logic.claim_refs(claim("c"), sts, p_in))
        assert logic.claim_refs_up_to_date(fixed, sts, p_in)
    # a foreign controller is never displaced
    foreign = claim("c", [{"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "u", "controller": True}])
    sts = make_set(retention=("Delete", "Delete"))
    assert logic.claim_refs_up_to_date(foreign, sts, p_in)


def test_identity_label_is_restored() -> None:
    sts = make_set(replicas=1)
    p = pod(sts, 0)
    del p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"]
    plan = logic.plan(sts, [p], {"www-web-0": claim("www-web-0")}, REV1, REV1, NOW)
    assert [(a.op, a.labels) for a in plan.actions] == [("update_pod", {
        "statefulset.kubernetes.io/pod-name": "web-0", "apps.kubernetes.io/pod-index": "0"})]


# -- revisions ------------------------------------------------------------------
def test_revision_name_hash_and_data() -> None:
    sts = make_set()
    sts["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v1"}
    cr = history.new_revision(sts, 1, 0)
    h = cr["metadata"]["labels"]["controller.kubernetes.io/hash"]
    assert cr["metadata"]["name"] == f"web-{h}" and cr["revision"] == 1
    assert cr["metadata"]["labels"]["app"] == "nginx"
    assert cr["metadata"]["annotations"] == {"kubernetes.io/change-cause": "v1"}
    assert cr["data"]["spec"]["template"]["$patch"] == "replace"
    assert history.revision_template(cr) == sts["spec"]["template"]
    assert history.new_revision(sts, 1, 1)["metadata"]["name"] != cr["metadata"]["name"]   # collision count
    other = copy.deepcopy(sts)
    other["spec"]["replicas"] = 7   # not part of the revision
    assert history.new_revision(other, 1, 0)["metadata"]["name"] == cr["metadata"]["name"]
    assert history.fnv32(b"") == 0x811C9DC5 and history.fnv32(b"a") == 0x050C5D7E   # FNV-1, not FNV-1a


def test_choose_revisions_create_reuse_renumber() -> None:
    sts = make_set()
    assert history.choose_revisions(sts, []).create is not None
    r1 = history.new_revision(sts, 1, 0)
    r1["metadata"]["creationTimestamp"] = "2023-01-01T00:00:00Z"
    assert history.choose_revisions(sts, [r1]).update is r1
    changed = copy.deepcopy(sts)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    r2 = history.new_revision(changed, 2, 0)
    ch = history.choose_revisions(sts, [r1, r2])   # rolled back to the first template
    assert ch.renumber == (r1, 3)
    sts["status"] = {"currentRevision": r1["metadata"]["name"]}
    assert history.choose_revisions(sts, [r1]).current_name == r1["metadata"]["name"]


def test_history_to_delete_keeps_live_and_limit() -> None:
    sts = make_set()
    sts["spec"]["revisionHistoryLimit"] = 1
    revs = []
    for i in range(1, 5):
        s = copy.deepcopy(sts)
        s["spec"]["template"]["spec"]["containers"][0]["image"] = f"nginx:{i}"
        revs.append(history.new_revision(s, i, 0))
    names = [r["metadata"]["name"] for r in revs]
    p = pod(sts, 0, rev=logic.Revision(names[0], {}))
    doomed = history.history_to_delete(sts, [p], revs, {names[3]})
    assert [r["metadata"]["name"] for r in doomed] == [names[1]]   # names[0] is used by a pod


# -- stable network identity (headless service DNS) -----------------------------
def test_pods_get_per_pod_dns_names_through_a_headless_service() -> None:
    from control.controllers import endpointslice_logic as eps
    from control.dns.records import answer, build_records
    sts = make_set(replicas=2, claims=())
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "namespace": "default", "uid": "s"},
           "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"name": "web", "port": 80}]}}
    pods = []
    for i in range(2):
        p = pod(sts, i)
        p["spec"]["nodeName"] = "node-1"
        p["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 80}]
        p["status"]["podIP"] = f"10.244.0.{10 + i}"
        pods.append(p)
    desired = eps.desired_endpoints(svc, pods, {})
    slices = [eps.new_slice(svc, ports, eps_) for ports, eps_ in desired.items()]
    assert [e["hostname"] for e in slices[0]["endpoints"]] == ["web-0", "web-1"]
    records = build_records([svc], slices)
    rcode, recs = answer(records, "web-1.nginx.default.svc.cluster.local", "A")
    assert rcode == 0 and [r.data for r in recs] == [("10.244.0.11",)]
