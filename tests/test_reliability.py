"""Reliability checks under crashes (issue 7's list): a Jepsen-style set check of writes while
the apiserver is SIGKILLed at random moments, and informers that end with exactly the store's
state after the crashes.

The apiserver is a real process with its WAL fsynced; it is killed while pipelined requests
are in flight, then started again on the same address, three times.
"""
from __future__ import annotations

import random
from typing import Any

from emulator.api.errors import APIError
from emulator.client import Client
from emulator.informer import Informer
from tests.conftest import poll_for

N_WRITES = 5000
WINDOW = 64


def cm(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"w-{i:05d}", "namespace": "default", "labels": {"set": "jepsen"}},
            "data": {"seq": str(i)}}


def test_acknowledged_writes_survive_three_apiserver_kills(server_process: Any) -> None:
    sp = server_process()
    addr = sp.start()
    rng = random.Random(20261126)
    kill_at = sorted(rng.sample(range(WINDOW * 4, N_WRITES - WINDOW), 3))
    client = Client(addr, timeout=2, retries=10)
    acked: set[str] = set()
    indeterminate: set[str] = set()
    kills = 0
    try:
        i = 0
        while i < N_WRITES:
            batch = list(range(i, min(N_WRITES, i + WINDOW)))
            rids = []
            for j in batch:
                try:
                    rids.append((j, client.send("create", object=cm(j), namespace="default")))
                except APIError:
                    indeterminate.add(cm(j)["metadata"]["name"])
            if kills < 3 and i <= kill_at[kills] < i + WINDOW:
                sp.kill()   # SIGKILL with this batch in flight: some committed, some not, replies lost
                kills += 1
            lost = False
            for j, rid in rids:
                name = cm(j)["metadata"]["name"]
                try:   # once one reply is lost to the crash, the rest of the batch is too
                    client.wait(rid, timeout=0.05 if lost else 2)
                    acked.add(name)
                except APIError:
                    indeterminate.add(name)
                    lost = True
            if sp.proc is None or sp.proc.poll() is not None:
                sp.start(listen=addr)   # same data directory, same address
            i += WINDOW
        assert kills == 3
        # the outcome of an indeterminate write is learned by trying it again
        for name in sorted(indeterminate):
            j = int(name.split("-")[1])
            try:
                client.create(cm(j), namespace="default")
                acked.add(name)
            except APIError as e:
                assert e.code == "AlreadyExists", e   # it had been committed before the crash
                acked.add(name)
        items = client.list_all("ConfigMap", "default", label_selector="set=jepsen")["items"]
        names = [o["metadata"]["name"] for o in items]
        assert len(names) == len(set(names)), "an object appears twice"
        assert acked <= set(names), f"acknowledged writes lost: {sorted(acked - set(names))[:10]}"
        assert set(names) <= {cm(j)["metadata"]["name"] for j in range(N_WRITES)}
        assert len(names) == N_WRITES
        assert all(o["data"]["seq"] == str(int(o["metadata"]["name"][2:])) for o in items)
        assert indeterminate, "no write was in flight at a kill: the check did not exercise a crash"
    finally:
        client.close()


def test_informers_end_with_the_store_state_after_kills(server_process: Any) -> None:
    sp = server_process()
    addr = sp.start()
    rng = random.Random(7)
    writer = Client(addr, timeout=2, retries=20)
    readers = [Client(addr, timeout=2, retries=20) for _ in range(3)]
    informers = [Informer(r, "ConfigMap", namespace="default") for r in readers]
    try:
        for inf in informers:
            inf.start()
        live: set[int] = set()
        for rnd in range(3):
            for _ in range(300):   # creates, updates and deletes
                j = rng.randrange(200)
                try:
                    if j in live and rng.random() < 0.3:
                        writer.delete("ConfigMap", f"w-{j:05d}", "default")
                        live.discard(j)
                    elif j in live:
                        writer.patch("ConfigMap", f"w-{j:05d}", {"data": {"r": str(rng.random())}}, "default")
                    else:
                        writer.create(cm(j), namespace="default")
                        live.add(j)
                except APIError as e:
                    if e.code not in ("AlreadyExists", "NotFound"):   # a retried write that had landed
                        raise
                for inf in informers:
                    inf.run_once(0)
            sp.kill()
            for inf in informers:   # they notice the loss while the apiserver is down
                inf.run_once(0)
            sp.start(listen=addr)

        def converged() -> bool:
            for inf in informers:
                inf.run_once(0.02)
            want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                    for o in writer.list_all("ConfigMap", "default")["items"]}
            return all({k[1]: o["metadata"]["resourceVersion"] for k, o in inf.cache.items()} == want
                       for inf in informers)
        poll_for(converged, 30, what="every informer's cache equal to the store")
    finally:
        writer.close()
        for r in readers:
            r.close()


def test_informers_end_with_the_store_state_through_partitions_and_packet_faults(
        server_process: Any, monkeypatch: Any) -> None:
    """Watch correctness through a partition, then loss, duplication and reordering, then an
    apiserver kill: each informer's cache ends equal to the store once everything heals."""
    from emulator import netem
    table = netem.LinkTable()
    table.enabled = True
    monkeypatch.setattr(netem, "TABLE", table)
    sp = server_process()
    addr = sp.start()
    rng = random.Random(11)
    writer = Client(addr, timeout=2, retries=20)   # no rules for its name: a clean link
    readers = [Client(addr, component="kubelet", node=f"r{i}", timeout=0.5, retries=2) for i in range(3)]
    assert all(isinstance(r._conn, netem.NetemConnection) for r in readers)
    informers = [Informer(r, "ConfigMap", namespace="default") for r in readers]
    live: set[int] = set()

    def churn(n: int) -> None:
        for _ in range(n):
            j = rng.randrange(100)
            try:
                if j in live and rng.random() < 0.3:
                    writer.delete("ConfigMap", f"w-{j:05d}", "default")
                    live.discard(j)
                elif j in live:
                    writer.patch("ConfigMap", f"w-{j:05d}", {"data": {"r": str(rng.random())}}, "default")
                else:
                    writer.create(cm(j), namespace="default")
                    live.add(j)
            except APIError as e:
                if e.code not in ("AlreadyExists", "NotFound"):
                    raise
            for inf in informers:
                inf.run_once(0)

    try:
        for inf in informers:
            inf.start()
        churn(100)
        table.set_rules("r0", [{"peers": ["apiserver"], "drop": 1.0}])          # r0 partitioned
        churn(100)
        table.set_rules("r0", [])
        for i in (1, 2):                                                          # a flaky link
            table.set_rules(f"r{i}", [{"peers": ["apiserver"], "drop": 0.15, "duplicate": 0.1,
                                       "reorder": 0.2, "delay": {"dist": "exponential", "mean": 0.003}}])
        churn(150)
        sp.kill()
        for inf in informers:
            inf.run_once(0)
        sp.start(listen=addr)
        churn(50)
        for i in (1, 2):
            table.set_rules(f"r{i}", [])
        assert sum(r._conn.dropped for r in readers) > 0

        def converged() -> bool:
            for inf in informers:
                inf.run_once(0.02)
            want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                    for o in writer.list_all("ConfigMap", "default")["items"]}
            return all({k[1]: o["metadata"]["resourceVersion"] for k, o in inf.cache.items()} == want
                       for inf in informers)
        poll_for(converged, 60, what="every informer's cache equal to the store")
    finally:
        writer.close()
        for r in readers:
            r.close()
