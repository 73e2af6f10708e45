"""``kemu get events`` and ``kemu events`` in kubectl's columns."""
from __future__ import annotations

import io
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from emulator.cli.commands.events import interval
from emulator.cli.kubectl import run
from emulator.client import Client
from tests.conftest import poll_for


def ts(ago: float) -> str:
    return datetime.fromtimestamp(time.time() - ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(name: str, kind: str, obj: str, type_: str, reason: str, message: str, last: float,
          first: float | None = None, count: int = 1, ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": kind, "name": obj, "namespace": ns},
            "type": type_, "reason": reason, "message": message, "count": count,
            "firstTimestamp": ts(first if first is not None else last), "lastTimestamp": ts(last),
            "source": {"component": "kubelet", "host": "node-1"}}


@pytest.fixture
def kemu(apiserver_addr: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KEMU_SERVER", apiserver_addr)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))

    def k(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        rc = run(list(argv), out, err)
        return rc, out.getvalue(), err.getvalue()
    return k


@pytest.fixture
def api(apiserver_addr: str):
    c = Client(apiserver_addr, component="test")
    yield c
    c.close()


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def seed(api: Client) -> None:
    api.create(event("b", "Pod", "web", "Warning", "BackOff", "Back-off restarting", 10, 600, 4))
    api.create(event("a", "Pod", "web", "Normal", "Pulled", "Pulled image", 700))
    api.create(event("c", "Node", "node-1", "Normal", "NodeReady", "Node node-1 status is now: NodeReady", 60))
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    api.create({**event("d", "Pod", "db", "Normal", "Started", "Started container c", 5, ns="other")},
               namespace="other")


def test_get_events_columns_and_wide(kemu, api: Client) -> None:
    seed(api)
    rc, out, err = kemu("get", "events")
    assert rc == 0, err
    lines = out.splitlines()
    assert cells(lines[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    by_name = {c[3] + c[2]: c for c in map(cells, lines[1:])}
    assert by_name["pod/webBackOff"] == ["10s", "Warning", "BackOff", "pod/web", "Back-off restarting"]
    assert by_name["node/node-1NodeReady"][0] == "60s"
    rc, out, _ = kemu("get", "ev", "-o", "wide")
    lines = out.splitlines()
    assert cells(lines[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
                               "FIRST SEEN", "COUNT", "NAME"]
    row = next(cells(ln) for ln in lines[1:] if "BackOff" in ln)
    assert row == ["10s", "Warning", "BackOff", "pod/web", "kubelet, node-1", "Back-off restarting",
                   "10m", "4", "b"]   # an empty SUBOBJECT cell
    rc, out, _ = kemu("get", "events", "-A")
    assert cells(out.splitlines()[0])[0] == "NAMESPACE" and "other" in out


def test_events_sorted_by_last_seen_with_interval(kemu, api: Client) -> None:
    seed(api)
    rc, out, err = kemu("events")
    assert rc == 0, err
    lines = out.splitlines()
    assert cells(lines[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [cells(ln)[2] for ln in lines[1:]] == ["Pulled", "NodeReady", "BackOff"]   # oldest first
    assert cells(lines[3]) == ["10s (x4 over 10m)", "Warning", "BackOff", "Pod/web", "Back-off restarting"]
    assert cells(lines[1])[0] == "11m"
    rc, out, _ = kemu("events", "-A")
    lines = out.splitlines()
    assert cells(lines[0])[:2] == ["NAMESPACE", "LAST SEEN"]
    assert [cells(ln)[0] for ln in lines[1:]] == ["default", "default", "default", "other"]


def test_events_for_and_types(kemu, api: Client) -> None:
    seed(api)
    rc, out, _ = kemu("events", "--for", "pod/web")
    assert rc == 0 and [cells(ln)[2] for ln in out.splitlines()[1:]] == ["Pulled", "BackOff"]
    rc, out, _ = kemu("events", "--for", "no/node-1")
    assert [cells(ln)[2] for ln in out.splitlines()[1:]] == ["NodeReady"]
    rc, out, _ = kemu("events", "--types", "Warning")
    assert [cells(ln)[2] for ln in out.splitlines()[1:]] == ["BackOff"]
    rc, out, _ = kemu("events", "--types", "normal,WARNING")
    assert len(out.splitlines()) == 4
    rc, out, err = kemu("events", "--for", "pod/nothing")
    assert (rc, out, err) == (0, "", "No events found in default namespace.\n")
    rc, out, err = kemu("events", "-n", "empty")
    assert err == "No events found in empty namespace.\n"


def test_events_bad_flags_name_the_flag(kemu) -> None:
    rc, _, err = kemu("events", "--types", "Bogus")
    assert rc == 1 and err == "error: valid --types are Normal or Warning\n"
    rc, _, err = kemu("events", "--for", "nothing")
    assert rc == 1 and err == "error: --for must be in resource/name form\n"
    rc, _, err = kemu("events", "--for", "bogus/x")
    assert rc == 1 and err.startswith("error: --for: ") and '"bogus"' in err


def test_interval_like_kubectl() -> None:
    now = time.time()
    assert interval({"count": 1, "firstTimestamp": ts(5)}, now) == "5s"
    assert interval({"eventTime": "2020-01-01T00:00:00.000000Z", "series": {
        "count": 3, "lastObservedTime": ts(2)}}, now).startswith("2s (x3 over ")
    assert interval({}, now) == "<unknown>"


def test_events_watch_prints_new_and_updated_events(kemu, api: Client, apiserver_addr: str) -> None:
    api.create(event("old", "Pod", "web", "Normal", "Pulled", "Pulled image", 30))
    out, err = io.StringIO(), io.StringIO()
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(run(
        ["events", "-w", "--watch-timeout", "3", "--types", "Warning,Normal"], out, err)), daemon=True)
    t.start()
    poll_for(lambda: "Pulled" in out.getvalue(), 5, what="initial list")
    api.create(event("new", "Pod", "web", "Warning", "BackOff", "Back-off", 1))
    api.create(event("skip", "Pod", "web", "Normal", "Created", "Created container", 1))
    api.patch("Event", "new", {"count": 2, "lastTimestamp": ts(0)}, "default")
    api.delete("Event", "old", "default")
    poll_for(lambda: "(x2 over" in out.getvalue(), 5, what="watched rows")
    t.join(10)
    assert done == [0], err.getvalue()
    lines = out.getvalue().splitlines()
    reasons = [re.search(r"REASON|Pulled|BackOff|Created", ln).group(0) for ln in lines]  # type: ignore[union-attr]
    assert reasons == ["REASON", "Pulled", "BackOff", "Created", "BackOff"]
    assert "(x2 over" in lines[4] and "Created" not in "".join(lines[:3])
    # rows keep the TYPE column of the first block, as kubectl's tabwriter does
    assert len({ln.index("Warning") if "Warning" in ln else ln.index("TYPE" if "TYPE" in ln else "Normal")
                for ln in lines[:4]}) == 1, lines


def test_events_watch_with_types_filters(kemu, api: Client) -> None:
    out, err = io.StringIO(), io.StringIO()
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(run(
        ["events", "-w", "--watch-timeout", "2", "--types", "Warning"], out, err)), daemon=True)
    t.start()
    poll_for(lambda: "LAST SEEN" in out.getvalue(), 5, what="header")
    api.create(event("n", "Pod", "web", "Normal", "Created", "Created container", 1))
    api.create(event("w", "Pod", "web", "Warning", "BackOff", "Back-off", 1))
    poll_for(lambda: "BackOff" in out.getvalue(), 5, what="warning row")
    t.join(10)
    assert done == [0] and "Created" not in out.getvalue()


def test_get_events_wide_source_falls_back_to_reporting_fields() -> None:
    from emulator.cli.printers import render_table
    now = time.time()
    e = {"metadata": {"name": "x", "namespace": "default"}, "type": "Normal", "reason": "Scheduled",
         "message": "ok", "eventTime": ts(3).replace("Z", ".000000Z"),
         "involvedObject": {"kind": "Pod", "name": "web"},
         "reportingComponent": "default-scheduler", "reportingInstance": "sched-1"}
    wide = render_table("Event", [e], wide=True, now=now).splitlines()
    assert cells(wide[1]) == ["3s", "Normal", "Scheduled", "pod/web", "default-scheduler, sched-1", "ok",
                              "3s", "1", "x"]
