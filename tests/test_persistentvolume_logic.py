"""PersistentVolume binder decisions without a server."""
from __future__ import annotations

from control.controllers import persistentvolume_logic as logic


def pv(name: str, size: str = "10Gi", cls: str = "manual", modes: tuple = ("ReadWriteOnce",),
       phase: str = "Available", labels: dict | None = None, claim: dict | None = None,
       mode: str | None = None, node: str | None = None, policy: str = "Retain",
       anns: dict | None = None, source: dict | None = None) -> dict:
    spec: dict = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                  "persistentVolumeReclaimPolicy": policy}
    spec.update(source if source is not None else {"hostPath": {"path": "/mnt/data"}})
    if claim is not None:
        spec["claimRef"] = claim
    if mode:
        spec["volumeMode"] = mode
    if node:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    md: dict = {"name": name, "labels": labels or {}, "resourceVersion": "5"}
    if anns:
        md["annotations"] = anns
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": md, "spec": spec,
            "status": {"phase": phase}}


def pvc(name: str = "task-pv-claim", size: str = "3Gi", cls: str | None = "manual",
        modes: tuple = ("ReadWriteOnce",), selector: dict | None = None, volume: str = "",
        anns: dict | None = None, phase: str = "Pending", mode: str | None = None) -> dict:
    spec: dict = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    if volume:
        spec["volumeName"] = volume
    if mode:
        spec["volumeMode"] = mode
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "7",
                         "annotations": anns or {}},
            "spec": spec, "status": {"phase": phase}}


def ref(claim: dict, uid: bool = True) -> dict:
    r = logic.claim_ref(claim)
    if not uid:
        r.pop("uid")
    return r


def names(v: dict | None) -> str | None:
    return None if v is None else v["metadata"]["name"]


WFFC = {"metadata": {"name": "standard"}, "provisioner": "kemu.io/local-dir",
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}
SHARED = {"metadata": {"name": "shared"}, "provisioner": "kemu.io/shared-dir",
          "volumeBindingMode": "Immediate", "reclaimPolicy": "Delete"}


# -- matching ---------------------------------------------------------------------
def test_smallest_volume_that_fits() -> None:
    vols = [pv("big", "100Gi"), pv("small", "1Gi"), pv("fit", "5Gi"), pv("fit2", "10Gi")]
    assert names(logic.find_matching_volume(pvc(size="3Gi"), vols)) == "fit"
    assert names(logic.find_matching_volume(pvc(size="5Gi"), vols)) == "fit"
    assert logic.find_matching_volume(pvc(size="200Gi"), vols) is None


def test_class_must_match_and_empty_matches_empty() -> None:
    vols = [pv("fast", cls="fast"), pv("none", cls="")]
    assert names(logic.find_matching_volume(pvc(cls="fast"), vols)) == "fast"
    assert names(logic.find_matching_volume(pvc(cls=""), vols)) == "none"
    assert names(logic.find_matching_volume(pvc(cls=None), vols)) == "none"
    assert logic.find_matching_volume(pvc(cls="slow"), vols) is None


def test_access_modes_superset_fewest_modes_first() -> None:
    vols = [pv("rwx", "5Gi", modes=("ReadWriteOnce", "ReadWriteMany")), pv("rwo", "10Gi")]
    assert names(logic.find_matching_volume(pvc(), vols)) == "rwo"     # fewer modes wins over size
    assert names(logic.find_matching_volume(pvc(modes=("ReadWriteMany",)), vols)) == "rwx"
    assert logic.find_matching_volume(pvc(modes=("ReadOnlyMany",)), vols) is None


def test_selector_volume_mode_phase_and_deletion() -> None:
    vols = [pv("a", labels={"type": "local"}), pv("b", "5Gi"), pv("blk", "4Gi", mode="Block"),
            pv("bound", "4Gi", phase="Bound"), pv("gone", "4Gi")]
    vols[-1]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert names(logic.find_matching_volume(pvc(selector={"matchLabels": {"type": "local"}}), vols)) == "a"
    assert names(logic.find_matching_volume(pvc(), vols)) == "b"
    assert names(logic.find_matching_volume(pvc(mode="Block"), vols)) == "blk"
    sel = {"matchExpressions": [{"key": "type", "operator": "In", "values": ["nfs"]}]}
    assert logic.find_matching_volume(pvc(selector=sel), vols) is None


def test_prebound_volume_wins_and_claimed_volumes_are_skipped() -> None:
    claim = pvc()
    other = pvc("other")
    vols = [pv("small", "3Gi"), pv("mine", "50Gi", cls="other", phase="Pending", claim=ref(claim, uid=False)),
            pv("theirs", "3Gi", claim=ref(other))]
    assert names(logic.find_matching_volume(claim, vols)) == "mine"   # class not checked for pre-bound
    assert names(logic.find_matching_volume(other, vols)) == "theirs"
    assert names(logic.find_matching_volume(pvc("third"), vols)) == "small"


def test_delay_binding_without_node_matches_only_prebound() -> None:
    claim = pvc(cls="standard")
    vols = [pv("free", cls="standard", node="node-1")]
    assert logic.find_matching_volume(claim, vols, delay_binding=True) is None
    node1 = {"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}}
    node2 = {"metadata": {"name": "node-2", "labels": {"kubernetes.io/hostname": "node-2"}}}
    assert names(logic.find_matching_volume(claim, vols, node1, "node-1", True)) == "free"
    assert logic.find_matching_volume(claim, vols, node2, "node-2", True) is None
    vols = [pv("pre", cls="standard", node="node-1", claim=ref(claim))]
    assert logic.find_matching_volume(claim, vols, node2, "node-2", True) is None


def test_check_volume_satisfies_claim_reasons() -> None:
    claim = pvc(size="3Gi")
    assert logic.check_volume_satisfies_claim(pv("v"), claim) is None
    assert logic.check_volume_satisfies_claim(pv("v", "1Gi"), claim) == "requested PV is too small"
    assert logic.check_volume_satisfies_claim(pv("v", cls="x"), claim) == "storageClassName does not match"
    assert logic.check_volume_satisfies_claim(pv("v", mode="Block"), claim) == "incompatible volumeMode"
    assert logic.check_volume_satisfies_claim(pv("v", modes=("ReadOnlyMany",)), claim) == "incompatible accessMode"


# -- claims -----------------------------------------------------------------------
def plan(claim: dict, vols: list[dict], sc: dict | None = None, volume: dict | None = None,
         node: dict | None = None) -> logic.ClaimPlan:
    return logic.sync_claim(claim, volume=volume, candidates=lambda: vols, storage_class=sc, node=node)


def test_unbound_claim_binds_or_reports() -> None:
    assert plan(pvc(), [pv("task-pv-volume")]).bind == "task-pv-volume"
    p = plan(pvc(size="100Gi", cls=""), [pv("v", cls="")])
    assert p.bind is None and p.events == [("Normal", "FailedBinding", "no persistent volumes available for this "
                                            "claim and no storage class is set")]
    p = plan(pvc(cls="nope"), [])
    assert p.events == [("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "nope" not found')]
    p = plan(pvc(cls="shared"), [], SHARED)
    assert p.provisioner == "kemu.io/shared-dir" and p.events[0][1] == "ExternalProvisioning"
    assert "external provisioner 'kemu.io/shared-dir'" in p.events[0][2]
    p = plan(pvc(cls="local"), [], {"metadata": {"name": "local"}, "provisioner": logic.NO_PROVISIONER})
    assert p.events == [("Warning", "ProvisioningFailed",
                         "no volume plugin matched name: kubernetes.io/no-provisioner")]


def test_wait_for_first_consumer_until_selected_node() -> None:
    p = plan(pvc(cls="standard"), [pv("v", cls="standard")], WFFC)
    assert p.bind is None and p.provisioner is None
    assert p.events == [("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")]
    claim = pvc(cls="standard", anns={logic.ANN_SELECTED_NODE: "node-2"})
    node2 = {"metadata": {"name": "node-2", "labels": {"kubernetes.io/hostname": "node-2"}}}
    assert plan(claim, [pv("v", cls="standard", node="node-2")], WFFC, node=node2).bind == "v"
    p = plan(claim, [pv("v", cls="standard", node="node-1")], WFFC, node=node2)
    assert p.bind is None and p.provisioner == "kemu.io/local-dir"


def test_claim_naming_a_volume() -> None:
    claim = pvc(volume="v")
    assert plan(claim, [], volume=None).bind is None
    assert plan(claim, [], volume=pv("v")).bind == "v"
    p = plan(claim, [], volume=pv("v", "1Gi"))
    assert p.events == [("Warning", "VolumeMismatch", 'Cannot bind to requested volume "v": requested PV is too small')]
    assert plan(claim, [], volume=pv("v", claim=ref(claim))).bind == "v"
    p = plan(claim, [], volume=pv("v", claim=ref(pvc("other"))))
    assert p.bind is None and p.events[0][1] == "FailedBinding"


def test_bound_claim_lost_and_misbound() -> None:
    anns = {logic.ANN_BIND_COMPLETED: "yes"}
    claim = pvc(volume="v", anns=anns, phase="Bound")
    assert plan(claim, [], volume=pv("v", claim=ref(claim), phase="Bound")).bind == "v"
    p = plan(claim, [], volume=None)
    assert p.phase == "Lost" and p.events[0][:2] == ("Warning", "ClaimLost")
    p = plan(claim, [], volume=pv("v", claim=ref(pvc("other"))))
    assert p.phase == "Lost" and p.events[0][1] == "ClaimMisbound"
    assert plan(pvc(volume="v", anns=anns, phase="Lost"), [], volume=None).phase is None


def test_binding_writes_are_idempotent() -> None:
    claim, vol = pvc(), pv("task-pv-volume")
    v2 = logic.bound_volume(vol, claim)
    assert v2 is not None and v2["spec"]["claimRef"] == {
        "kind": "PersistentVolumeClaim", "namespace": "default", "name": "task-pv-claim",
        "uid": "uid-task-pv-claim", "apiVersion": "v1", "resourceVersion": "7"}
    assert v2["metadata"]["annotations"] == {logic.ANN_BOUND_BY_CONTROLLER: "yes"}
    assert logic.bound_volume(v2, claim) is None
    assert vol["spec"].get("claimRef") is None    # inputs untouched
    st = logic.bound_volume_status(v2, "T")
    assert st == {"phase": "Bound", "lastPhaseTransitionTime": "T"}
    assert logic.bound_volume_status({**v2, "status": st}, "T2") is None
    c2 = logic.bound_claim(claim, v2)
    assert c2["spec"]["volumeName"] == "task-pv-volume"   # type: ignore[index]
    assert c2["metadata"]["annotations"] == {logic.ANN_BOUND_BY_CONTROLLER: "yes",   # type: ignore[index]
                                             logic.ANN_BIND_COMPLETED: "yes"}
    assert logic.bound_claim(c2, v2) is None   # type: ignore[arg-type]
    cst = logic.claim_phase_status(claim, "Bound", v2)
    assert cst == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}
    # a volume the provisioner pre-bound gets no bound-by-controller annotation
    pre = pv("pvc-x", claim=ref(claim), anns={logic.ANN_PROVISIONED_BY: "kemu.io/local-dir"})
    assert logic.bound_volume(pre, claim) is None


# -- volumes and reclaim ---------------------------------------------------------------
def vplan(vol: dict, claim: dict | None, checked: bool = True) -> logic.VolumePlan:
    return logic.sync_volume(vol, claim, claim_checked=checked, external=lambda p: p.startswith("kemu.io/"))


def test_volume_phases() -> None:
    claim = pvc(volume="v", anns={logic.ANN_BIND_COMPLETED: "yes"})
    assert vplan(pv("v", phase="Pending"), None).phase == "Available"
    assert vplan(pv("v", claim=ref(claim, uid=False), phase="Pending"), None).phase == "Available"
    assert vplan(pv("v", claim=ref(claim)), claim).phase == "Bound"
    assert vplan(pv("v", claim=ref(pvc())), pvc()).enqueue_claim == ("default", "task-pv-claim")
    assert vplan(pv("v", claim=ref(claim), phase="Bound"), None, checked=False).check_claim
    assert vplan(pv("v", claim=ref(claim), phase="Bound"), None).phase == "Released"
    recreated = pvc(volume="v")
    recreated["metadata"]["uid"] = "new"
    assert vplan(pv("v", claim=ref(claim), phase="Bound"), recreated).phase == "Released"


def test_unbind_when_claim_went_elsewhere() -> None:
    claim = pvc(volume="other")
    vol = pv("v", claim=ref(claim), anns={logic.ANN_BOUND_BY_CONTROLLER: "yes"}, phase="Bound")
    p = vplan(vol, claim)
    assert p.unbind and p.phase == "Available"
    assert "claimRef" not in logic.unbound_volume(vol)["spec"]
    user = logic.unbound_volume(pv("v", claim=ref(claim)))
    assert user["spec"]["claimRef"]["name"] == "task-pv-claim" and "uid" not in user["spec"]["claimRef"]


def test_reclaim_decisions() -> None:
    claim = pvc()
    retain = pv("v", claim=ref(claim), phase="Bound")
    p = vplan(retain, None)
    assert p.phase == "Released" and p.reclaim is None and not p.events
    ours = pv("pvc-1", claim=ref(claim), phase="Bound", policy="Delete",
              anns={logic.ANN_PROVISIONED_BY: "kemu.io/local-dir"}, source={"local": {"path": "/x"}})
    p = vplan(ours, None)
    assert p.phase == "Released" and p.reclaim is None and not p.events    # the provisioner deletes it
    static = pv("static", claim=ref(claim), phase="Bound", policy="Delete", source={"local": {"path": "/x"}})
    p = vplan(static, None)
    assert p.phase == "Failed" and p.message == ('error getting deleter volume plugin for volume "static": '
                                                 "no deletable volume plugin matched")
    assert p.events == [("Warning", "VolumeFailedDelete", p.message)]
    hp = vplan(pv("hp", claim=ref(claim), phase="Released", policy="Delete"), None)
    assert hp.phase == "Failed" and hp.message == ('failed to create deleter for volume "hp": host_path deleter '
                                                   "only supports /tmp/.+ but received provided /mnt/data")
    intree = vplan(pv("gce", claim=ref(claim), phase="Bound", policy="Delete", source={"local": {"path": "/x"}},
                      anns={logic.ANN_PROVISIONED_BY: "kubernetes.io/gce-pd"}), None)
    assert intree.phase == "Failed" and intree.events[0][1] == "VolumeFailedDelete"
    other = vplan(pv("ext", claim=ref(claim), phase="Bound", policy="Delete",
                     anns={logic.ANN_PROVISIONED_BY: "kemu.io/shared-dir"}), None)
    assert other.phase == "Released" and not other.events
    tmp = vplan(pv("tmp", claim=ref(claim), phase="Released", policy="Delete",
                   source={"hostPath": {"path": "/tmp/x"}}), None)
    assert tmp.reclaim == "delete-object"
    rec = vplan(pv("r", claim=ref(claim), phase="Released", policy="Recycle"), None)
    assert rec.phase == "Failed" and rec.events[0][1] == "VolumeFailedRecycle"
    assert vplan(pv("f", claim=ref(claim), phase="Failed", policy="Delete"), None).events == []


def test_provisioner_annotations() -> None:
    c = logic.with_provisioner(pvc(), "kemu.io/shared-dir")
    assert c is not None and c["metadata"]["annotations"] == {
        logic.ANN_STORAGE_PROVISIONER: "kemu.io/shared-dir", logic.ANN_BETA_STORAGE_PROVISIONER: "kemu.io/shared-dir"}
    assert logic.with_provisioner(c, "kemu.io/shared-dir") is None
