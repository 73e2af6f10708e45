"""``kemu scale`` and ``kemu rollout`` against a real apiserver, with the controllers in a thread."""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from emulator.cli.commands.rollout import status_message
from emulator.cli.kubectl import run
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import poll_for

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}


class Controllers:
    """The replicaset and deployment controllers plus a fake kubelet, stepping in a thread."""

    def __init__(self, address: str) -> None:
        self.client = Client(address, component="controller-manager")
        self.kubelet = Client(address, component="fake-kubelet")
        self.cm = ControllerManager(self.client, FAST, controllers=("replicaset", "deployment"))
        self.cm.start()
        self.ready = True
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.cm.step(0.02)
            if self.ready:
                stamp = cu.format_time(time.time() - 1)
                for p in self.kubelet.list("Pod", "default")["items"]:
                    if not p["metadata"].get("deletionTimestamp") and not cu.is_pod_ready(p):
                        p["status"] = {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}
                        self.kubelet.update_status(p)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()
        self.kubelet.close()


@pytest.fixture
def env(mem_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Client, Controllers]]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEMU_SERVER", mem_server.address)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))

    def k(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = run(list(argv), out, err)
        return rc, out.getvalue(), err.getvalue()
    admin = Client(mem_server.address, component="test")
    ctl = Controllers(mem_server.address)
    yield k, admin, ctl
    ctl.close()
    admin.close()


def image_of(admin: Client) -> str:
    return admin.get("Deployment", "web", "default")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_status_messages() -> None:
    d = {"metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3},
         "status": {"observedGeneration": 1}}
    assert status_message(d)[0] == "Waiting for deployment spec update to be observed..."
    d["status"] = {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1}
    assert status_message(d)[0] == ('Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas '
                                    "have been updated...")
    d["status"].update(updatedReplicas=3)
    assert status_message(d)[0] == 'Waiting for deployment "web" rollout to finish: 1 old replicas are pending ' \
                                   "termination..."
    d["status"].update(replicas=3, availableReplicas=1)
    assert status_message(d)[0] == ('Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas '
                                    "are available...")
    d["status"].update(availableReplicas=3)
    assert status_message(d) == ('deployment "web" successfully rolled out', True, None)
    d["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    assert status_message(d)[2] == 'deployment "web" exceeded its progress deadline'


def test_scale_status_restart_undo_history(env) -> None:  # type: ignore[no-untyped-def]
    k, admin, ctl = env
    admin.create(DEPLOY)
    rc, out, err = k("rollout", "status", "deployment/web", "--timeout", "20s")
    assert rc == 0, err
    assert out.splitlines()[-1] == 'deployment "web" successfully rolled out'

    assert k("scale", "deployment/web", "--replicas=5")[:2] == (0, "deployment.apps/web scaled\n")
    assert admin.get("Deployment", "web", "default")["spec"]["replicas"] == 5
    assert k("scale", "deploy", "web", "--replicas", "2")[:2] == (0, "deployment.apps/web scaled\n")
    rc, out, err = k("scale", "deploy/web", "--replicas=-1")
    assert rc == 1 and err == ("error: The --replicas=COUNT flag is required, and COUNT must be greater than "
                               "or equal to 0\n")
    rc, _, err = k("scale", "deploy/web", "--replicas=1", "--current-replicas=7")
    assert rc == 1 and "Expected replicas to be 7, was 2" in err
    rc, out, _ = k("rollout", "status", "deploy/web", "--timeout", "20s")
    assert rc == 0 and out.endswith('deployment "web" successfully rolled out\n')

    assert k("rollout", "restart", "deployment/web")[:2] == (0, "deployment.apps/web restarted\n")
    ann = admin.get("Deployment", "web", "default")["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in ann
    rc, out, _ = k("rollout", "status", "deployment/web", "--timeout", "20s")
    assert rc == 0
    assert len(admin.list("ReplicaSet", "default")["items"]) == 2

    admin.patch("Deployment", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:2"}]}}}}, "default")
    assert k("rollout", "status", "deployment/web", "--timeout", "20s")[0] == 0
    rc, out, _ = k("rollout", "history", "deployment/web")
    assert out == ("deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
                   "3         <none>\n\n")
    assert k("rollout", "undo", "deployment/web")[:2] == (0, "deployment.apps/web rolled back\n")
    assert image_of(admin) == "nginx:1"
    assert k("rollout", "status", "deployment/web", "--timeout", "20s")[0] == 0
    poll_for(lambda: admin.get("Deployment", "web", "default")["metadata"]["annotations"]
             ["deployment.kubernetes.io/revision"] == "4", 10, what="revision 4")
    assert k("rollout", "undo", "deployment/web", "--to-revision=3")[:2] == (0, "deployment.apps/web rolled back\n")
    assert image_of(admin) == "nginx:2"
    rc, _, err = k("rollout", "undo", "deployment/web", "--to-revision=42")
    assert rc == 1 and err == "error: unable to find specified revision 42 in history\n"

    assert k("rollout", "pause", "deployment/web")[:2] == (0, "deployment.apps/web paused\n")
    rc, _, err = k("rollout", "restart", "deployment/web")
    assert rc == 1 and "can't restart paused deployment (run rollout resume first)" in err
    assert k("rollout", "resume", "deployment/web")[:2] == (0, "deployment.apps/web resumed\n")


def test_status_fails_on_deadline_and_timeout(env) -> None:  # type: ignore[no-untyped-def]
    k, admin, ctl = env
    ctl.ready = False
    admin.create({**DEPLOY, "spec": {**DEPLOY["spec"], "progressDeadlineSeconds": 1}})
    rc, out, err = k("rollout", "status", "deployment/web", "--timeout", "0.3s")
    assert rc == 1 and err == "error: timed out waiting for the condition\n"
    rc, out, err = k("rollout", "status", "deployment/web", "-w=false")
    assert rc == 0 and out.startswith('Waiting for deployment "web" rollout to finish')
    assert len(out.splitlines()) == 1
    rc, out, err = k("rollout", "status", "deployment/web", "--timeout", "20s")
    assert rc == 1 and err == 'error: deployment "web" exceeded its progress deadline\n'


def test_scale_replicaset_and_refuse_pods(env) -> None:  # type: ignore[no-untyped-def]
    k, admin, _ = env
    admin.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs1", "namespace": "default"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rs1"}},
                           "template": {"metadata": {"labels": {"app": "rs1"}},
                                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    assert k("scale", "rs", "rs1", "--replicas=2")[:2] == (0, "replicaset.apps/rs1 scaled\n")
    poll_for(lambda: len(admin.list("Pod", "default", label_selector="app=rs1")["items"]) == 2, 10, what="2 pods")
    rc, _, err = k("scale", "pod/x", "--replicas=2")
    assert rc == 1 and "cannot scale pod" in err
