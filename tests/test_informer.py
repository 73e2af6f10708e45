"""Informers: list-then-watch, handlers, relist on Expired, and survival of an apiserver restart."""
from __future__ import annotations

import pytest

from emulator.api.errors import EXPIRED, APIError
from emulator.client import Client
from emulator.informer import Informer, start_informers
from tests.conftest import poll_for
from tests.test_apiserver import cm


class Recorder:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def add(self, o: dict) -> None:
        self.log.append(("add", o["metadata"]["name"]))

    def update(self, old: dict, new: dict) -> None:
        self.log.append(("update", new["metadata"]["name"]))

    def delete(self, o: dict) -> None:
        self.log.append(("delete", o["metadata"]["name"]))


def test_list_then_watch_with_handlers(mem_server) -> None:
    writer, reader = Client(mem_server.address), Client(mem_server.address)
    try:
        writer.create(cm("a"))
        inf = Informer(reader, "ConfigMap", namespace="default")
        rec = Recorder()
        inf.add_event_handler(rec.add, rec.update, rec.delete)
        inf.start()
        assert inf.has_synced and rec.log == [("add", "a")]
        writer.create(cm("b"))
        writer.patch("ConfigMap", "a", {"data": {"x": "1"}}, "default")
        writer.delete("ConfigMap", "b", "default")
        poll_for(lambda: inf.run_once(0.05) is not None and len(rec.log) == 4, 5, what="4 handler calls")
        assert rec.log[1:] == [("add", "b"), ("update", "a"), ("delete", "b")]
        assert set(k[1] for k in inf.cache) == {"a"}
        assert inf.get("a", "default")["data"] == {"x": "1"}
    finally:
        writer.close(), reader.close()


def test_relists_after_the_watch_ends_with_expired(mem_server) -> None:
    writer, reader = Client(mem_server.address), Client(mem_server.address)
    try:
        inf = Informer(reader, "ConfigMap", namespace="default")
        rec = Recorder()
        inf.add_event_handler(rec.add, rec.update, rec.delete)
        writer.create(cm("gone"))
        inf.start()
        # The watch falls behind and the server has compacted past it: the client
        # ends the watch with an ERROR (Expired) event, as it does on a failed resume.
        for i in range(3):
            writer.create(cm(f"n{i}"))
        writer.delete("ConfigMap", "gone", "default")
        inf.watch._fail(APIError(EXPIRED, "too old resource version"))
        poll_for(lambda: inf.run_once(0.05) is not None and len(inf.cache) == 3, 5, what="relist")
        assert ("delete", "gone") in rec.log and inf.relists == 1
        assert {f"n{i}" for i in range(3)} == {k[1] for k in inf.cache}
        writer.create(cm("later"))   # and it watches again afterwards
        poll_for(lambda: inf.run_once(0.05) is not None and inf.get("later", "default"), 5)
    finally:
        writer.close(), reader.close()


def test_client_resume_of_a_compacted_watch_yields_expired(threaded_server) -> None:
    srv = threaded_server("mem://resume-expired", None, history_size=3)
    c = Client(srv.address)
    try:
        w = c.watch("ConfigMap", "default")
        for i in range(6):
            c.create(cm(f"x{i}"))
        w.resource_version = "1"   # as if the watch had been lost early on
        c._resume(w)
        events = list(w)   # ends when the watch closes
        assert events[-1]["type"] == "ERROR" and events[-1]["object"]["reason"] == EXPIRED
        assert w.closed
    finally:
        c.close()


def test_informer_survives_apiserver_restart(server_process) -> None:
    sp = server_process()
    addr = sp.start()
    writer = Client(addr, timeout=2, retries=10)
    reader = Client(addr, timeout=2, retries=10)
    try:
        writer.create(cm("a"))
        inf = Informer(reader, "ConfigMap", namespace="default")
        inf.start()
        sp.kill()
        sp.start(listen=addr)   # same data directory, same address
        writer.create(cm("b"))
        poll_for(lambda: inf.run_once(0.05) is not None and inf.get("b", "default"), 20,
                 what="the informer to see a write made after the restart")
        assert inf.get("a", "default")
    finally:
        writer.close(), reader.close()


def test_every_informer_of_a_client_survives_a_restart_that_renumbers_watches(server_process) -> None:
    """A restarted apiserver numbers watches from scratch. When another client's watch
    takes the first number, the resumed watches get numbers the client still holds for
    watches not yet resumed: each one must still reach its own informer (the lost-watch
    bug that stalled a rollout after an apiserver kill)."""
    sp = server_process()
    addr = sp.start()
    writer = Client(addr, timeout=2, retries=10)
    reader = Client(addr, timeout=2, retries=10)
    other = Client(addr, timeout=2, retries=10)
    try:
        kinds = ["ConfigMap", "Secret", "Service"]
        infs = [Informer(reader, k, namespace="default") for k in kinds]
        start_informers(infs)
        before = sorted(w.wid for w in reader._all_watches)
        sp.kill()
        sp.start(listen=addr)
        other.watch("Namespace")      # the new server's first watch id goes to another client
        for k in kinds:
            obj = {"apiVersion": "v1", "kind": k, "metadata": {"name": "late", "namespace": "default"}}
            if k == "Service":
                obj["spec"] = {"ports": [{"port": 80}]}
            writer.create(obj)

        def all_seen() -> bool:
            for inf in infs:
                inf.run_once(0.02)
            return all(inf.get("late", "default") for inf in infs)
        poll_for(all_seen, 20, what="every informer to see a write made after the restart; "
                                    f"seen by {[i.kind for i in infs if i.get('late', 'default')]}")
        assert len(reader._watches) == len(kinds), (before, reader._watches)
    finally:
        writer.close(), reader.close(), other.close()


def test_a_watch_the_client_lost_track_of_is_resumed_by_the_liveness_check(mem_server) -> None:
    """Defence in depth: a watch that is open but no longer mapped to a server-side id
    hears nothing; the liveness check resumes it instead of leaving it silent for ever."""
    writer, reader = Client(mem_server.address), Client(mem_server.address)
    try:
        reader.bookmark_interval = 0.1
        inf = Informer(reader, "ConfigMap", namespace="default")
        inf.start()
        reader._watches.pop(inf.watch.wid)     # as a renumbering bug would leave it
        writer.create(cm("after"))
        poll_for(lambda: inf.run_once(0.05) is not None and inf.get("after", "default"), 10,
                 what="the orphaned watch to be resumed")
    finally:
        writer.close(), reader.close()


def test_a_quiet_client_notices_a_restart_long_before_a_bookmark_would_tell(server_process) -> None:
    """Bookmarks every 20 s (the default profile sends one a minute): a silent watch would be
    resumed only after 60 s, but a client that hears nothing for 5 s pings, meets the
    restarted server's "hello required", says hello and resumes its watches."""
    sp = server_process("--bookmark-interval", "20")
    addr = sp.start()
    writer = Client(addr, timeout=2, retries=10)
    reader = Client(addr, timeout=2, retries=10)
    try:
        inf = Informer(reader, "ConfigMap", namespace="default")
        inf.start()
        assert reader.bookmark_interval == 20
        sp.kill()
        sp.start(listen=addr)
        writer.create(cm("after"))
        poll_for(lambda: inf.run_once(0.2) is not None and inf.get("after", "default"), 30,
                 what="the informer to resume through the quiet-connection ping")
    finally:
        writer.close(), reader.close()


def test_start_informers_pipelines_lists_and_watches(mem_server) -> None:
    """Several informers start together: every cache is full (including a list of
    several pages), and events that follow straight after the watches are delivered."""
    writer, reader = Client(mem_server.address), Client(mem_server.address)
    try:
        for i in range(7):
            writer.create(cm(f"c{i}"))
        writer.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
        paged = Informer(reader, "ConfigMap", namespace="default", page_size=3)
        nss = Informer(reader, "Namespace")
        recs = [Recorder(), Recorder()]
        paged.add_event_handler(recs[0].add, recs[0].update, recs[0].delete)
        nss.add_event_handler(recs[1].add, recs[1].update, recs[1].delete)
        start_informers([paged, nss])
        assert paged.has_synced and nss.has_synced
        assert sorted(k[1] for k in paged.cache) == [f"c{i}" for i in range(7)]
        assert {"default", "other"} <= {k[1] for k in nss.cache}
        writer.create(cm("late"))
        writer.delete("Namespace", "other")
        poll_for(lambda: (paged.run_once(0.02), nss.run_once(0.02)) and
                 ("add", "late") in recs[0].log and any(e[1] == "other" and e[0] != "add"
                                                       for e in recs[1].log), 5, what="events after start")
    finally:
        writer.close(), reader.close()


def test_watch_many_fails_whole_and_leaves_no_watch(mem_server) -> None:
    client = Client(mem_server.address)
    try:
        with pytest.raises(APIError) as e:
            client.watch_many([{"kind": "ConfigMap"}, {"kind": "NoSuchKind"}])
        assert "NoSuchKind" in e.value.message
        assert client._watches == {} and client._all_watches == []
    finally:
        client.close()


def test_pipelined_requests_recover_after_an_apiserver_restart(server_process) -> None:
    """A restarted apiserver answers "no hello on this connection"; the client says
    hello on its next pipelined request instead of failing for ever."""
    sp = server_process()
    addr = sp.start()
    client = Client(addr, timeout=2, retries=10)
    try:
        client.wait(client.send("create", object=cm("a"), namespace="default"))
        sp.kill()
        sp.start(listen=addr)
        errors_seen = []

        def pipelined_get() -> bool:
            try:
                return client.wait(client.send("get", kind="ConfigMap", name="a", namespace="default")) is not None
            except APIError as e:
                errors_seen.append(e.message)
                return False
        poll_for(pipelined_get, 20, what="a pipelined get to succeed after the restart")
        assert len(errors_seen) <= 3, errors_seen
    finally:
        client.close()
