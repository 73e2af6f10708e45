"""Durability: an apiserver killed with SIGKILL comes back with every acknowledged write."""
from __future__ import annotations

import os
import signal
import threading

from emulator.client import Client
from tests.test_apiserver import cm


def test_sigkill_loses_no_acknowledged_write(server_process) -> None:
    sp = server_process()
    addr = sp.start()
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        c = Client(addr, timeout=1, retries=0)
        i = 0
        try:
            while not stop.is_set():
                name = f"cm-{i}"
                try:
                    c.create(cm(name, i=str(i)))
                except Exception:
                    return   # the server died: everything before was acknowledged
                acked.append(name)
                i += 1
        finally:
            c.close()

    t = threading.Thread(target=writer)
    t.start()
    from tests.conftest import poll_for
    poll_for(lambda: len(acked) >= 300, 30, what="300 acknowledged writes")
    os.kill(sp.proc.pid, signal.SIGKILL)
    sp.proc.wait(10)
    t.join(10)
    stop.set()
    addr = sp.start()
    c = Client(addr)
    try:
        names = {o["metadata"]["name"] for o in c.list_all("ConfigMap", "default")["items"]}
        missing = [n for n in acked if n not in names]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        c.create(cm("after-restart"))
        ns = {o["metadata"]["name"] for o in c.list("Namespace")["items"]}
        assert "kube-node-lease" in ns
    finally:
        c.close()


def test_revision_never_goes_backwards_across_restarts(server_process) -> None:
    sp = server_process()
    c = Client(sp.start())
    obj = c.create(cm("a"))
    c.close()
    sp.stop()
    c = Client(sp.start())
    try:
        again = c.get("ConfigMap", "a", "default")
        assert again == obj
        newer = c.create(cm("b"))
        assert int(newer["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    finally:
        c.close()


def test_torn_tail_is_dropped_on_restart(server_process) -> None:
    sp = server_process()
    c = Client(sp.start())
    c.create(cm("a"))
    c.close()
    sp.kill()
    segs = sorted(p for p in sp.data_dir.iterdir() if p.name.startswith("wal-"))
    with open(segs[-1], "ab") as f:   # a crash in the middle of the next record
        f.write(b"\x40\x00\x00\x00\x12\x34")
    c = Client(sp.start())
    try:
        assert c.get("ConfigMap", "a", "default")["metadata"]["name"] == "a"
        c.create(cm("b"))
    finally:
        c.close()
    log = sp.log.read_text()
    assert '"torn_bytes_dropped": 6' in log
