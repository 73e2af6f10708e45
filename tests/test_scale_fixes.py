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
