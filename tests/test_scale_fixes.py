"""Issue 9's small performance fixes, each tested for unchanged behaviour."""
from __future__ import annotations

import msgpack

from control.apiserver.watch import Watcher, WatchHub


def test_bookmark_pass_gives_each_watcher_its_own_kind_and_sequence() -> None:
    sent: list[tuple[bytes, dict]] = []
    hub = WatchHub(lambda peer, frame: sent.append((peer, msgpack.unpackb(frame))) or True)
    for wid, kind, bm in ((1, "Pod", True), (2, "Pod", True), (3, "Service", True), (4, "Pod", False)):
        hub.add(Watcher(wid, b"p%d" % wid, kind, None, None, None, bm))
    hub.bookmark(42, {"Pod": "v1", "Service": "v1"})
    hub.bookmark(43, {"Pod": "v1", "Service": "v1"})
    got = {(peer, m["seq"]): (m["type"], m["object"]["kind"], m["object"]["metadata"]["resourceVersion"])
           for peer, m in sent}
    assert got == {(b"p1", 1): ("BOOKMARK", "Pod", "42"), (b"p2", 1): ("BOOKMARK", "Pod", "42"),
                   (b"p3", 1): ("BOOKMARK", "Service", "42"), (b"p1", 2): ("BOOKMARK", "Pod", "43"),
                   (b"p2", 2): ("BOOKMARK", "Pod", "43"), (b"p3", 2): ("BOOKMARK", "Service", "43")}


def test_indexed_fan_out_reaches_exactly_the_matching_watchers() -> None:
    """Watchers found through the field and namespace indexes are exactly those a full scan would match,
    transitions included, while watchers come and go (the per-kind index-field counts stay right)."""
    import random

    from control.storage.store import ADDED, DELETED, MODIFIED, Event
    from emulator.api.registry import REGISTRY
    from emulator.api.selectors import parse_field_selector, parse_label_selector

    rng = random.Random(9)
    rt = REGISTRY.by_kind("Pod")
    sent: list[tuple[bytes, dict]] = []
    hub = WatchHub(lambda peer, frame: sent.append((peer, msgpack.unpackb(frame))) or True)
    nodes, namespaces = ["n1", "n2", "n3", ""], ["a", "b"]

    def pod(name: str) -> dict:
        return {"kind": "Pod", "metadata": {"name": name, "namespace": rng.choice(namespaces),
                                            "labels": {"app": rng.choice(["x", "y"])}},
                "spec": {"nodeName": rng.choice(nodes)} if rng.random() < 0.8 else {}}

    def new_watcher(wid: int) -> Watcher:
        fs = rng.choice([None, "spec.nodeName=n1", "spec.nodeName=n2", "spec.nodeName=",
                         "metadata.name=p3", "spec.nodeName!=n1"])
        return Watcher(wid, b"w%d" % wid, "Pod", rng.choice([None, "a", "b"]),
                       parse_label_selector("app=x") if rng.random() < 0.3 else None,
                       parse_field_selector(fs, rt) if fs else None, False)
    live: dict[int, Watcher] = {}
    objs: dict[str, dict] = {}
    rev = 0
    for wid in range(1, 41):
        live[wid] = new_watcher(wid)
        hub.add(live[wid])
    for step in range(400):
        if step % 20 == 0:   # churn: drop some watchers, add others
            for wid in rng.sample(sorted(live), 5):
                hub.remove(wid)
                del live[wid]
            for _ in range(5):
                wid = max(live, default=0) + 1 + step
                live[wid] = new_watcher(wid)
                hub.add(live[wid])
        name = f"p{rng.randrange(6)}"
        rev += 1
        prev = objs.get(name)
        if prev is not None and rng.random() < 0.2:
            ev = Event(rev, DELETED, "Pod", prev, prev)
            del objs[name]
        else:
            obj = pod(name)
            ev = Event(rev, MODIFIED if prev is not None else ADDED, "Pod", obj, prev)
            objs[name] = obj
        want = {w.peer for w in live.values() if WatchHub._transition(w, ev)[0] is not None}
        sent.clear()
        hub.dispatch([ev])
        assert {peer for peer, _ in sent} == want, (step, ev)
    used = {f: n for f, n in hub.index_fields.get("Pod", {}).items()}
    assert used == {f: sum(1 for w in live.values() if w.index and w.index[0] == f)
                    for f in {w.index[0] for w in live.values() if w.index}}
