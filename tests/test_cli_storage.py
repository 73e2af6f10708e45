"""The storage kinds through the CLI: the docs' manifests apply unchanged, ``get
pv,pvc,sc`` lists in kubectl's columns, and ``describe`` shows claims and volumes."""
from __future__ import annotations

from pathlib import Path

from tests.test_cli_commands import api, kemu, rows  # noqa: F401  (fixtures)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "storage"


def test_docs_manifests_get_and_describe(kemu, api) -> None:  # noqa: F811
    for name in ("pv-volume.yaml", "pv-claim.yaml", "pv-pod.yaml"):
        r = kemu("apply", "-f", str(EXAMPLES / name))
        assert r.rc == 0, r
    r = kemu("get", "pv,pvc,sc")
    assert r.rc == 0, r
    table = rows(r.out)
    assert table[0][:4] == ["NAME", "CAPACITY", "ACCESS", "MODES"]
    assert table[1][:7] == ["persistentvolume/task-pv-volume", "10Gi", "RWO", "Retain", "Pending", "manual", "<unset>"]
    pvc_header = next(i for i, row in enumerate(table) if row[:2] == ["NAME", "STATUS"])
    assert table[pvc_header + 1][:4] == ["persistentvolumeclaim/task-pv-claim", "Pending", "manual", "<unset>"]
    r = kemu("describe", "pvc", "task-pv-claim")
    assert r.rc == 0, r
    assert "StorageClass:  manual" in r.out and "Used By:       task-pv-pod" in r.out
    assert "Finalizers:    [kubernetes.io/pvc-protection]" in r.out
    r = kemu("describe", "pv", "task-pv-volume")
    assert r.rc == 0, r
    assert "Type:          HostPath (bare host directory volume)" in r.out
    assert "Path:          /mnt/data" in r.out
    assert any(line.split() == ["Reclaim", "Policy:", "Retain"] for line in r.out.splitlines())


def test_bad_claim_manifest_names_the_field(kemu, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\n"
                   "spec: {accessModes: [ReadWriteOnce]}\n")
    r = kemu("apply", "-f", str(bad))
    assert r.rc == 1
    assert "spec.resources[storage]: Required value" in r.err
