"""``kemu crictl NODE ps|inspect``: reads a node's runtime state file; bad input says what is wrong."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from emulator.cli.commands.crictl import run

STATUS = {"id": "abc123def4567890", "sandbox_id": "sb1", "pod_uid": "u", "namespace": "default",
          "pod_name": "web-0", "name": "nginx", "attempt": 1, "image": "nginx", "image_id": "", "state": "running",
          "created_at": 1.0, "started_at": 2.0, "finished_at": None, "exit_code": None, "reason": "",
          "ready": True, "cpu_millis": 0, "memory_bytes": 0, "labels": {},
          "mounts": [{"container_path": "/data", "host_path": "/lab/nodes/node-1/mnt/data",
                      "read_only": False, "name": "www"}]}


def call(lab: Path, *argv: str) -> tuple[int, str, str]:
    ns = argparse.Namespace(node=argv[0], what=argv[1], id=argv[2] if len(argv) > 2 else None, all=False,
                            lab_dir=str(lab))
    out, err = io.StringIO(), io.StringIO()
    return run(ns, out, err), out.getvalue(), err.getvalue()


def test_ps_and_inspect(tmp_path: Path) -> None:
    state = tmp_path / "nodes" / "node-1" / "var" / "lib" / "kemu"
    state.mkdir(parents=True)
    (state / "runtime.json").write_text(json.dumps({"sandboxes": [{"id": "sb1", "name": "web-0"}],
                                                    "containers": [{"status": STATUS}]}))
    rc, out, _ = call(tmp_path, "node-1", "ps")
    assert rc == 0
    assert out.splitlines()[0].split() == ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD",
                                           "ID", "POD"]
    assert out.splitlines()[1].split()[0] == "abc123def4567" and out.splitlines()[1].split()[-1] == "web-0"
    rc, out, _ = call(tmp_path, "node-1", "inspect", "abc1")
    assert rc == 0
    assert json.loads(out)["status"]["mounts"] == [{"containerPath": "/data", "hostPath": "/lab/nodes/node-1/mnt/data",
                                                    "readonly": False, "name": "www"}]
    rc, _, err = call(tmp_path, "node-1", "inspect", "zzz")
    assert rc == 1 and 'no container matches "zzz" on node-1' in err
    rc, _, err = call(tmp_path, "node-1", "inspect")
    assert rc == 1 and "inspect needs a container ID" in err


def test_unknown_node_and_missing_state(tmp_path: Path) -> None:
    (tmp_path / "nodes" / "node-2").mkdir(parents=True)
    rc, _, err = call(tmp_path, "node-9", "ps")
    assert rc == 1 and 'node "node-9" not found' in err
    rc, _, err = call(tmp_path, "node-2", "ps")
    assert rc == 1 and "has no runtime state yet" in err and "runtime.json" in err


def test_a_malformed_journal_is_an_error_that_names_its_line(tmp_path: Path) -> None:
    state = tmp_path / "nodes" / "node-1" / "var" / "lib" / "kemu"
    state.mkdir(parents=True)
    (state / "runtime.json").write_text('{"version": 2, "runtime": "fake"}\n{"sandbox": {"name": "x"}}\n')
    rc, out, err = call(tmp_path, "node-1", "ps")
    assert rc == 1 and out == "" and "has no runtime state yet" in err and "journal line 2" in err
