"""Pure tests of the scheduler's volume plugins: VolumeRestrictions, VolumeBinding, VolumeZone (no server)."""
from __future__ import annotations

import random

from control.scheduler.cache import Cache
from control.scheduler.framework import Framework, pre_filter_fit_error
from control.scheduler.podinfo import pod_info
from control.scheduler.volumebinding import (ERR_BIND_CONFLICT, ERR_NODE_CONFLICT, ERR_PV_NOT_EXIST,
                                             ERR_RWOP_CONFLICT, ERR_UNBOUND_IMMEDIATE, ERR_VOLUME_ZONE,
                                             match_topology, pre_filter, volume_matches_claim)
from control.scheduler.volumecache import ANN_SELECTED_NODE, VolumeCache
from tests.test_scheduler_logic import node as node_obj
from tests.test_scheduler_logic import pod as pod_obj

HOST = "kubernetes.io/hostname"


def node(name, **kw):
    labels = {HOST: name, **(kw.pop("labels", None) or {})}
    return node_obj(name, labels=labels, **kw)


def sc(name, mode="WaitForFirstConsumer", provisioner="kemu.io/local-dir", topologies=None):
    o = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
         "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": "Delete"}
    if topologies is not None:
        o["allowedTopologies"] = topologies
    return o


def pv(name, cls="standard", cap="1Gi", modes=("ReadWriteOnce",), host=None, phase="Available",
       claim=None, labels=None, mode=None, affinity=None):
    spec = {"capacity": {"storage": cap}, "accessModes": list(modes), "storageClassName": cls,
            "persistentVolumeReclaimPolicy": "Delete", "volumeMode": mode or "Filesystem",
            "local": {"path": f"/var/lib/kemu/storage/{name}"}}
    if host:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": HOST, "operator": "In", "values": [host]}]}]}}
    if affinity is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": affinity}}
    if claim:
        spec["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": claim}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec, "status": {"phase": phase}}


def pvc(name, cls="standard", req="1Gi", modes=("ReadWriteOnce",), volume=None, ann=None, deleting=False,
        selector=None, phase=None, mode=None):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": req}},
            "volumeMode": mode or "Filesystem"}
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    if selector is not None:
        spec["selector"] = selector
    md = {"name": name, "namespace": "default", "uid": f"uid-{name}", "annotations": dict(ann or {})}
    if volume and phase is None:
        md["annotations"]["pv.kubernetes.io/bind-completed"] = "yes"
        phase = "Bound"
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md, "spec": spec,
            "status": {"phase": phase or "Pending"}}


def claim_pod(name, *claims, **kw):
    p = pod_obj(name, **kw)
    p["spec"]["volumes"] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                            for i, c in enumerate(claims)]
    return p


def vcache(*objs):
    vc = VolumeCache()
    for o in objs:
        {"PersistentVolume": vc.add_pv, "PersistentVolumeClaim": vc.add_pvc,
         "StorageClass": vc.add_class}[o["kind"]](o)
    return vc


def ncache(*nodes):
    c = Cache()
    for n in nodes:
        c.add_node(n)
    return c


STD = sc("standard")
STATIC = sc("local-static", provisioner="kubernetes.io/no-provisioner")
SHARED = sc("shared", mode="Immediate", provisioner="kemu.io/shared-dir")


def feasible(state, cache):
    return [ni.name for ni in cache.node_infos() if state.filter(ni) is None]


# -- PreFilter ---------------------------------------------------------------
def test_pod_without_claims_skips_the_plugins():
    assert pre_filter(pod_obj("p"), vcache(STD)) == (None, "")
    p = pod_obj("p")
    p["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    assert pre_filter(p, vcache(STD)) == (None, "")


def test_missing_claim_rejects_the_pod_on_every_node():
    state, msg = pre_filter(claim_pod("p", "data"), vcache(STD))
    assert state is None and msg == 'persistentvolumeclaim "data" not found'
    assert pre_filter_fit_error(3, msg) == (
        '0/3 nodes are available: persistentvolumeclaim "data" not found. preemption: '
        '0/3 nodes are available: 3 Preemption is not helpful for scheduling.')
    assert pre_filter_fit_error(3, msg, preemption_never=True).endswith(
        "preemption: not eligible due to preemptionPolicy=Never.")
    assert pre_filter_fit_error(0, msg) == "no nodes available to schedule pods"


def test_claim_being_deleted_or_lost_rejects_the_pod():
    _, msg = pre_filter(claim_pod("p", "data"), vcache(STD, pvc("data", deleting=True)))
    assert msg == 'persistentvolumeclaim "data" is being deleted'
    lost = pvc("data", volume="pv-gone", phase="Lost")
    _, msg = pre_filter(claim_pod("p", "data"), vcache(STD, lost))
    assert msg == 'persistentvolumeclaim "data" bound to non-existent persistentvolume "pv-gone"'


def test_unbound_immediate_claims_reject_the_pod():
    for claim, classes in ((pvc("data", cls="shared", modes=("ReadWriteMany",)), (SHARED,)),
                           (pvc("data", cls=None), (STD,)),           # no class
                           (pvc("data", cls="nope"), (STD,)),         # a class that does not exist
                           (pvc("data", volume="pv-1", phase="Pending"), (STD,))):   # prebound
        state, msg = pre_filter(claim_pod("p", "data"), vcache(*classes, claim))
        assert state is None and msg == ERR_UNBOUND_IMMEDIATE, claim
    assert pre_filter_fit_error(2, ERR_UNBOUND_IMMEDIATE) == (
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: "
        "0/2 nodes are available: 2 Preemption is not helpful for scheduling.")


def test_a_missing_claim_wins_over_an_unbound_immediate_one():
    vc = vcache(SHARED, pvc("a", cls="shared"))
    assert pre_filter(claim_pod("p", "a", "b"), vc)[1] == 'persistentvolumeclaim "b" not found'


# -- bound claims --------------------------------------------------------------
def test_bound_local_pv_admits_only_its_node():
    vc = vcache(STD, pv("pv-1", host="node-1", phase="Bound", claim="data"), pvc("data", volume="pv-1"))
    state, msg = pre_filter(claim_pod("p", "data"), vc)
    assert msg == "" and not state.needs_binding
    c = ncache(node("node-1"), node("node-2"))
    assert state.filter(c.nodes["node-1"]) is None
    st = state.filter(c.nodes["node-2"])
    assert st.reasons == (ERR_NODE_CONFLICT,) and st.unresolvable


def test_bound_claim_whose_pv_is_missing():
    vc = vcache(STD, pvc("data", volume="pv-gone"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    assert state.filter(ncache(node("node-1")).nodes["node-1"]).reasons == (ERR_PV_NOT_EXIST,)


def test_claim_bound_by_phase_alone_counts_as_bound():
    claim = pvc("data", volume="pv-1", phase="Bound")
    claim["metadata"]["annotations"].pop("pv.kubernetes.io/bind-completed", None)
    vc = vcache(STD, pv("pv-1", phase="Bound", claim="data"), claim)
    state, msg = pre_filter(claim_pod("p", "data"), vc)
    assert msg == "" and state.bound and not state.delayed


def test_dead_node_and_volume_affinity_are_both_named():
    """A pod whose local PV sits on a dead node stays Pending and says why (issue 5 §4)."""
    dead = node("node-1", ready="Unknown",
                taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}])
    c = ncache(dead, node("node-2"), node("node-3"))
    vc = vcache(STD, pv("pv-1", host="node-1", phase="Bound", claim="data"), pvc("data", volume="pv-1"))
    p = claim_pod("p", "data")
    state, _ = pre_filter(p, vc)
    res = Framework(random.Random(0)).schedule_one(pod_info(p), c, state.filter)
    assert res.node is None
    assert res.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "2 node(s) had volume node affinity conflict. preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling.")


# -- delayed (WaitForFirstConsumer) claims ------------------------------------------
def test_wffc_claim_with_a_provisioner_fits_any_node():
    state, _ = pre_filter(claim_pod("p", "data"), vcache(STD, pvc("data")))
    c = ncache(node("node-1"), node("node-2"))
    assert state.needs_binding and feasible(state, c) == ["node-1", "node-2"]
    plan = state.plan(c.nodes["node-2"])
    assert [(dc.key, v) for dc, v in plan] == [(("default", "data"), None)]   # provision


def test_allowed_topologies_limit_provisioning():
    cls = sc("zonal", topologies=[{"matchLabelExpressions": [
        {"key": "topology.kubernetes.io/zone", "values": ["a"]}]}])
    state, _ = pre_filter(claim_pod("p", "data"), vcache(cls, pvc("data", cls="zonal")))
    c = ncache(node("node-1", labels={"topology.kubernetes.io/zone": "a"}),
               node("node-2", labels={"topology.kubernetes.io/zone": "b"}), node("node-3"))
    assert feasible(state, c) == ["node-1"]
    st = state.filter(c.nodes["node-2"])
    assert st.reasons == (ERR_BIND_CONFLICT,) and st.unresolvable
    assert match_topology([], {}) and match_topology(None, {})


def test_no_provisioner_needs_an_available_pv_on_the_node():
    vc = vcache(STATIC, pvc("data", cls="local-static"),
                pv("pv-2", cls="local-static", host="node-2"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    c = ncache(node("node-1"), node("node-2"))
    assert feasible(state, c) == ["node-2"]
    assert state.filter(c.nodes["node-1"]).reasons == (ERR_BIND_CONFLICT,)
    assert state.plan(c.nodes["node-2"])[0][1]["metadata"]["name"] == "pv-2"


def test_pv_must_match_the_claim():
    claim = pvc("data", cls="local-static", req="2Gi", modes=("ReadWriteOnce",),
                selector={"matchLabels": {"tier": "fast"}})
    good = pv("ok", cls="local-static", cap="2Gi", labels={"tier": "fast"})
    assert volume_matches_claim(good, claim)
    for bad in (pv("small", cls="local-static", cap="1Gi", labels={"tier": "fast"}),
                pv("modes", cls="local-static", cap="2Gi", modes=("ReadOnlyMany",), labels={"tier": "fast"}),
                pv("label", cls="local-static", cap="2Gi", labels={"tier": "slow"}),
                pv("block", cls="local-static", cap="2Gi", labels={"tier": "fast"}, mode="Block"),
                pv("class", cls="other", cap="2Gi", labels={"tier": "fast"})):
        assert not volume_matches_claim(bad, claim), bad["metadata"]["name"]
    # Only Available PVs without a claimRef are candidates.
    vc = vcache(STATIC, claim, pv("pending", cls="local-static", cap="2Gi", labels={"tier": "fast"},
                                  phase="Pending"),
                pv("taken", cls="local-static", cap="2Gi", labels={"tier": "fast"}, claim="other"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    assert feasible(state, ncache(node("node-1"))) == []


def test_the_smallest_fitting_pv_is_planned():
    vc = vcache(STATIC, pvc("data", cls="local-static", req="1Gi"),
                pv("big", cls="local-static", cap="10Gi", host="node-1"),
                pv("mid", cls="local-static", cap="5Gi"),
                pv("small", cls="local-static", cap="2Gi", host="node-1"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    c = ncache(node("node-1"), node("node-2"))
    assert state.plan(c.nodes["node-1"])[0][1]["metadata"]["name"] == "small"
    assert state.plan(c.nodes["node-2"])[0][1]["metadata"]["name"] == "mid"


def test_two_claims_of_one_pod_never_take_the_same_pv():
    vc = vcache(STATIC, pvc("a", cls="local-static"), pvc("b", cls="local-static"),
                pv("pv-1", cls="local-static", host="node-1"), pv("pv-2", cls="local-static", host="node-2"),
                pv("pv-3", cls="local-static", host="node-2"))
    state, _ = pre_filter(claim_pod("p", "a", "b"), vc)
    c = ncache(node("node-1"), node("node-2"))
    assert feasible(state, c) == ["node-2"]
    assert sorted(v["metadata"]["name"] for _, v in state.plan(c.nodes["node-2"])) == ["pv-2", "pv-3"]


def test_an_assumed_pv_is_not_offered_to_the_next_pod():
    vc = vcache(STATIC, pvc("a", cls="local-static"), pvc("b", cls="local-static"),
                pv("pv-1", cls="local-static", host="node-1"))
    c = ncache(node("node-1"))
    first, _ = pre_filter(claim_pod("p1", "a"), vc)
    (dc, chosen), = first.plan(c.nodes["node-1"])
    vc.assume_pv(chosen, dc.key, ("default", "p1"))
    second, _ = pre_filter(claim_pod("p2", "b"), vc)
    assert second.filter(c.nodes["node-1"]).reasons == (ERR_BIND_CONFLICT,)
    vc.release(("default", "p1"))       # p1 gave up: the PV is offered again
    third, _ = pre_filter(claim_pod("p2", "b"), vc)
    assert third.filter(c.nodes["node-1"]) is None


def test_a_claim_with_a_selected_node_fits_only_that_node():
    vc = vcache(STD, pvc("data", ann={ANN_SELECTED_NODE: "node-2"}))
    c = ncache(node("node-1"), node("node-2"))
    state, _ = pre_filter(claim_pod("p", "data"), vc, lambda n: n in c.nodes)
    assert feasible(state, c) == ["node-2"]
    assert state.filter(c.nodes["node-1"]).reasons == (ERR_BIND_CONFLICT,)
    # A selected node that no longer exists is ignored.
    vc = vcache(STD, pvc("data", ann={ANN_SELECTED_NODE: "node-gone"}))
    state, _ = pre_filter(claim_pod("p", "data"), vc, lambda n: n in c.nodes)
    assert feasible(state, c) == ["node-1", "node-2"]
    # An assumed selected node reads like the annotation.
    vc.assume_selected_node(("default", "data"), "node-1", ("default", "other"))
    state, _ = pre_filter(claim_pod("p", "data"), vc, lambda n: n in c.nodes)
    assert feasible(state, c) == ["node-1"]


def test_prebound_pv_decides_the_node():
    p = pv("pv-1", cls="local-static", host="node-1", claim="data")
    vc = vcache(STATIC, pvc("data", cls="local-static"), p,
                pv("pv-2", cls="local-static", host="node-2"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    assert feasible(state, ncache(node("node-1"), node("node-2"))) == ["node-1"]


def test_bound_and_delayed_reasons_are_both_listed():
    vc = vcache(STATIC, pv("pv-1", cls="local-static", host="node-1", phase="Bound", claim="a"),
                pvc("a", cls="local-static", volume="pv-1"), pvc("b", cls="local-static"),
                pv("pv-2", cls="local-static", host="node-1"))
    state, _ = pre_filter(claim_pod("p", "a", "b"), vc)
    c = ncache(node("node-1"), node("node-2"))
    assert state.filter(c.nodes["node-1"]) is None
    assert state.filter(c.nodes["node-2"]).reasons == (ERR_NODE_CONFLICT, ERR_BIND_CONFLICT)


def test_pinned_pv_needs_the_hostname_label():
    vc = vcache(STATIC, pvc("data", cls="local-static"), pv("pv-1", cls="local-static", host="node-1"))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    unlabelled = node_obj("node-1")       # no kubernetes.io/hostname label
    assert feasible(state, ncache(unlabelled)) == []


def test_general_affinity_is_evaluated_per_node():
    aff = [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
    vc = vcache(STATIC, pvc("data", cls="local-static"), pv("pv-1", cls="local-static", affinity=aff))
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    c = ncache(node("node-1", labels={"disk": "ssd"}), node("node-2", labels={"disk": "hdd"}))
    assert feasible(state, c) == ["node-1"]


# -- VolumeRestrictions and VolumeZone -------------------------------------------
def test_read_write_once_pod_claim_in_use_fails_every_node():
    claim = pvc("data", modes=("ReadWriteOncePod",), volume="pv-1")
    vc = vcache(STD, claim, pv("pv-1", modes=("ReadWriteOncePod",), phase="Bound", claim="data"))
    vc.track_pod(("default", "owner"), "default", ["data"])
    p = claim_pod("p", "data")
    state, _ = pre_filter(p, vc)
    c = ncache(node("node-1"), node("node-2"))
    st = state.filter(c.nodes["node-1"])
    assert st.reasons == (ERR_RWOP_CONFLICT,) and not st.unresolvable
    res = Framework(random.Random(0)).schedule_one(pod_info(p), c, state.filter)
    assert res.message == (
        "0/2 nodes are available: 2 node has pod using PersistentVolumeClaim with the same name and "
        "ReadWriteOncePod access mode. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod.")
    # The owner itself is no conflict; once it is gone, others may use the claim.
    assert pre_filter(claim_pod("owner", "data"), vc)[0].filter(c.nodes["node-1"]) is None
    vc.track_pod(("default", "owner"), "default", [])
    assert pre_filter(p, vc)[0].filter(c.nodes["node-1"]) is None


def test_volume_zone_labels_must_match_the_node():
    zoned = pv("pv-1", phase="Bound", claim="data",
               labels={"topology.kubernetes.io/zone": "a__b", "failure-domain.beta.kubernetes.io/region": "r1"})
    vc = vcache(STD, pvc("data", volume="pv-1"), zoned)
    state, _ = pre_filter(claim_pod("p", "data"), vc)
    c = ncache(node("n-a", labels={"topology.kubernetes.io/zone": "a", "topology.kubernetes.io/region": "r1"}),
               node("n-b", labels={"topology.kubernetes.io/zone": "b",
                                   "failure-domain.beta.kubernetes.io/region": "r1"}),
               node("n-c", labels={"topology.kubernetes.io/zone": "c", "topology.kubernetes.io/region": "r1"}),
               node("n-none"))
    assert feasible(state, c) == ["n-a", "n-b"]
    st = state.filter(c.nodes["n-c"])
    assert st.reasons == (ERR_VOLUME_ZONE,) and st.unresolvable


# -- the cache's indexes -----------------------------------------------------------
def test_available_index_follows_pv_updates():
    vc = vcache(pv("pv-1"))
    assert [p["metadata"]["name"] for p in vc.available_in_class("standard")] == ["pv-1"]
    vc.add_pv(pv("pv-1", phase="Bound", claim="data"))
    assert list(vc.available_in_class("standard")) == []
    assert [p["metadata"]["name"] for p in vc.prebound_to(("default", "data"))] == ["pv-1"]
    vc.add_pv(pv("pv-1", cls="other"))
    assert list(vc.available_in_class("standard")) == [] and vc.prebound_to(("default", "data")) == []
    assert [p["metadata"]["name"] for p in vc.available_in_class("other")] == ["pv-1"]
    vc.remove_pv(pv("pv-1", cls="other"))
    assert vc.available == {} and vc.pvs == {}


# -- waiting for the PV controller (VolumeBinder) ---------------------------------
def test_a_waiting_pod_times_out_and_releases_its_assumptions():
    from control.scheduler.volumes import VolumeBinder
    vb = VolumeBinder(bind_timeout=5.0)
    for o in (STATIC, pvc("data", cls="local-static"), pv("pv-1", cls="local-static", host="node-1")):
        {"PersistentVolume": vb.on_pv, "PersistentVolumeClaim": vb.on_pvc, "StorageClass": vb.on_class}[o["kind"]](o)
    c = ncache(node("node-1"))
    p = claim_pod("p", "data")
    state, _ = vb.pre_filter(p, c)
    assert vb.reserve(("default", "p"), "qp", state, "node-1", 100.0, c) == [("default", "data")]
    assert vb.cache.assumed_pvs and vb.next_deadline() == 105.0
    assert vb.check_waiting(101.0, c) == ([], [])
    ready, failed = vb.check_waiting(105.0, c)
    assert ready == [] and failed[0][1] == \
        'running PreBind plugin "VolumeBinding": binding volumes: context deadline exceeded'
    vb.done(("default", "p"))
    assert vb.cache.assumed_pvs == {} and [x["metadata"]["name"] for x in vb.cache.available_in_class(
        "local-static")] == ["pv-1"]


def test_a_waiting_pod_is_ready_once_its_claims_are_bound():
    from control.scheduler.volumes import VolumeBinder
    vb = VolumeBinder(bind_timeout=600.0)
    vb.on_class(STD)
    vb.on_pvc(pvc("data"))
    c = ncache(node("node-1"), node("node-2"))
    state, _ = vb.pre_filter(claim_pod("p", "data"), c)
    vb.reserve(("default", "p"), "qp", state, "node-2", 0.0, c)
    vb.on_pvc_update({}, pvc("data", ann={ANN_SELECTED_NODE: "node-2"}))
    assert vb.check_waiting(1.0, c) == ([], [])
    vb.on_pvc_update({}, pvc("data", volume="pv-x", ann={ANN_SELECTED_NODE: "node-2"}))
    assert vb.check_waiting(1.0, c) == ([], [])       # its PV has not reached the cache yet
    vb.on_pv(pv("pv-x", host="node-2", phase="Bound", claim="data"))
    ready, failed = vb.check_waiting(2.0, c)
    assert [w.key for w in ready] == [("default", "p")] and failed == []
    assert vb.waiting == {} and vb.by_claim == {}
