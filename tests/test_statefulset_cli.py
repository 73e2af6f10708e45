"""``kemu scale statefulset`` and ``kemu rollout status/restart/history/undo statefulset``,
with the StatefulSet controller and a fake kubelet stepping in a thread."""
from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.controllers import controller_utils as cu
from control.controllers.manager import ControllerManager
from emulator.cli.commands.rollout_statefulset import status_message
from emulator.cli.kubectl import run
from emulator.client import Client
from emulator.profiles import FAST
from tests.conftest import poll_for

STS = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"replicas": 2, "serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}}


class Controllers:
    def __init__(self, address: str) -> None:
        self.client = Client(address, component="controller-manager")
        self.kubelet = Client(address, component="fake-kubelet")
        self.cm = ControllerManager(self.client, FAST, controllers=("statefulset",))
        self.cm.start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.cm.step(0.02)
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
def env(mem_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Client]]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEMU_SERVER", mem_server.address)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))

    def k(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = run(list(argv), out, err)
        return rc, out.getvalue(), err.getvalue()
    admin = Client(mem_server.address, component="test")
    ctl = Controllers(mem_server.address)
    yield k, admin
    ctl.close()
    admin.close()


def test_status_messages() -> None:
    s = {"metadata": {"name": "web", "generation": 2},
         "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
         "status": {"observedGeneration": 1}}
    assert status_message(s)[0] == "Waiting for statefulset spec update to be observed..."
    s["status"] = {"observedGeneration": 2, "readyReplicas": 1}
    assert status_message(s)[0] == "Waiting for 2 pods to be ready..."
    s["status"] = {"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1}
    line = "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."
    assert status_message(s) == (line, False, None)
    s["status"]["updatedReplicas"] = 3
    assert status_message(s) == ("partitioned roll out complete: 3 new pods have been updated...", True, None)
    s["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert status_message(s)[2] == "rollout status is only available for RollingUpdate strategy type"


def test_scale_rollout_status_restart_history_undo(env) -> None:  # type: ignore[no-untyped-def]
    k, admin = env
    admin.create(dict(STS))
    rc, out, err = k("rollout", "status", "statefulset/web", "--timeout", "20s")
    assert rc == 0, err
    assert out.splitlines()[-1] == "partitioned roll out complete: 2 new pods have been updated..."
    assert k("scale", "sts/web", "--replicas=3")[:2] == (0, "statefulset.apps/web scaled\n")
    rc, out, _ = k("rollout", "status", "sts", "web", "--timeout", "20s")
    assert rc == 0 and out.splitlines()[-1] == "partitioned roll out complete: 3 new pods have been updated..."
    assert {p["metadata"]["name"] for p in admin.list("Pod", "default")["items"]} == {"web-0", "web-1", "web-2"}
    assert k("rollout", "restart", "statefulset/web")[:2] == (0, "statefulset.apps/web restarted\n")
    rc, out, _ = k("rollout", "status", "statefulset/web", "--timeout", "20s")
    assert rc == 0
    rc, out, _ = k("rollout", "history", "statefulset/web")
    assert out == "statefulset.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    assert k("rollout", "undo", "statefulset/web")[:2] == (0, "statefulset.apps/web rolled back\n")
    poll_for(lambda: "kubectl.kubernetes.io/restartedAt" not in (
        admin.get("StatefulSet", "web", "default")["spec"]["template"].get("metadata") or {}).get(
            "annotations", {}), 5)
    rc, _, _ = k("rollout", "status", "statefulset/web", "--timeout", "20s")
    assert rc == 0
    rc, out, _ = k("rollout", "history", "statefulset/web")
    assert out.splitlines()[2:4] == ["2         <none>", "3         <none>"]   # revision 1 renumbered to 3
    rc, _, err = k("rollout", "undo", "statefulset/web", "--to-revision=42")
    assert rc == 1 and "unable to find specified revision 42 in history" in err
    rc, _, err = k("rollout", "pause", "statefulset/web")
    assert rc == 1 and "no pause has been implemented" in err
