"""The log timeline: filters, merge order, rotated files, fault windows, output and bad flags."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lab.logs import Filter, fault_window, format_record, parse_since, print_timeline, timeline, use_color
from lab.logs_scan import process_files, ts_of


def ts(sec: float) -> str:
    s = int(sec)
    return f"2026-11-26T10:{s // 60:02d}:{s % 60:02d}.{int(round((sec - s) * 1e6)):06d}Z"


def rec(sec: float, component: str = "kubelet", node: str | None = None, event: str = "e",
        level: str = "info", first: bool = True, **kw: object) -> dict:
    r = {"ts": ts(sec), "level": level, "lab": "t", "component": component, "node": node, "pid": 1,
         "event": event, **kw}
    if not first:   # structlog's old order: ts last
        r = {k: v for k, v in r.items() if k != "ts"} | {"ts": r["ts"]}
    return r


def write(path: Path, recs: list[dict], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        f.write(extra)


def events(logs: Path, flt: Filter | None = None) -> list[str]:
    return [r["event"] for r, _raw in timeline(logs, flt)]


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    write(d / "node-1.jsonl", [
        rec(1, node="node-1", event="pod_started", kind="Pod", namespace="default", name="web-1"),
        rec(3, node="node-1", event="probe_failed", level="warning", pod="default/web-1"),
        rec(5, node="node-1", event="container_exited", level="error", pod="web-2", namespace="prod"),
        rec(7, node="node-1", event="debug_tick", level="debug")])
    write(d / "node-2.jsonl", [
        rec(2, node="node-2", event="pod_started", kind="Pod", namespace="prod", name="web-1", first=False),
        rec(4, node="node-2", event="lease_renewed", first=False, note="timed out once")])
    write(d / "controller-manager.jsonl", [
        rec(2.5, component="controller-manager", event="node_not_ready", kind="Node", name="node-2"),
        rec(6, component="controller-manager", event="pod_evicted", kind="Pod", namespace="default",
            name="web-1", nodeName="node-1")], extra="not json at all\n")
    write(d / "supervisor.jsonl", [rec(4.5, component="supervisor", event="process exited", process="node-2")])
    return d


def test_merge_by_ts_and_nonjson_skipped(logs: Path) -> None:
    assert events(logs) == ["pod_started", "pod_started", "node_not_ready", "probe_failed", "lease_renewed",
                            "process exited", "container_exited", "pod_evicted", "debug_tick"]


def test_within_one_process_written_order_kept(tmp_path: Path) -> None:
    # Two threads' lines can land a few microseconds out of order: the file's order wins.
    write(tmp_path / "a.jsonl", [rec(5, event="a1"), rec(4.999, event="a2"), rec(6, event="a3")])
    write(tmp_path / "b.jsonl", [rec(5, event="b1"), rec(5.5, event="b2")])
    got = events(tmp_path)
    assert got.index("a1") < got.index("a2") < got.index("a3")
    assert got.index("b1") < got.index("b2")
    assert got == ["a1", "a2", "b1", "b2", "a3"]   # equal ts: the file listed first, stably


def test_rotated_files_read_oldest_first(tmp_path: Path) -> None:
    write(tmp_path / "node-1.jsonl.2", [rec(1, event="r2")])
    write(tmp_path / "node-1.jsonl.1", [rec(2, event="r1")])
    write(tmp_path / "node-1.jsonl", [rec(3, event="cur")])
    write(tmp_path / "node-2.jsonl.1", [rec(1.5, event="other")])   # no current file: still read
    assert [p.name for p in process_files(tmp_path)["node-1"]] == ["node-1.jsonl.2", "node-1.jsonl.1",
                                                                    "node-1.jsonl"]
    assert events(tmp_path) == ["r2", "other", "r1", "cur"]


@pytest.mark.parametrize("flt, want", [
    (Filter(component="controller-manager"), ["node_not_ready", "pod_evicted"]),
    (Filter(node="node-2"), ["pod_started", "node_not_ready", "lease_renewed", "process exited"]),
    (Filter(node="node-1"), ["pod_started", "probe_failed", "container_exited", "pod_evicted", "debug_tick"]),
    (Filter(pod="web-1"), ["pod_started", "pod_started", "probe_failed", "pod_evicted"]),
    (Filter(pod="default/web-1"), ["pod_started", "probe_failed", "pod_evicted"]),
    (Filter(pod="prod/web-2"), ["container_exited"]),
    (Filter(pod="prod/web-1"), ["pod_started"]),
    (Filter(level="warning"), ["probe_failed", "container_exited"]),
    (Filter(level="ERROR"), ["container_exited"]),
    (Filter(level="info", node="node-1"), ["pod_started", "probe_failed", "container_exited", "pod_evicted"]),
    (Filter(event="pod_*"), ["pod_started", "pod_started", "pod_evicted"]),
    (Filter(event="*_not_[rR]eady"), ["node_not_ready"]),
    (Filter(since=ts(4), until=ts(5)), ["lease_renewed", "process exited", "container_exited"]),
    (Filter(grep=r"timed out|web-2"), ["lease_renewed", "container_exited"]),
    (Filter(grep=r'^\{"ts": "[^"]*", "level": "warning"'), ["probe_failed"]),
    (Filter(grep=r"node-2.*lease"), ["lease_renewed"]),
    (Filter(grep=r"lease.*node-2"), []),            # node comes before event in that line
    (Filter(node="node-1", grep="prod", level="error"), ["container_exited"]),
])
def test_filters(logs: Path, flt: Filter, want: list[str]) -> None:
    assert events(logs, flt) == want


def test_grep_never_matches_across_lines(tmp_path: Path) -> None:
    write(tmp_path / "a.jsonl", [rec(1, event="alpha"), rec(2, event="beta"), rec(3, event="gamma alpha")])
    assert events(tmp_path, Filter(grep=r"alpha\W+\{.*beta")) == []
    assert events(tmp_path, Filter(grep=r"alpha\s*}$")) == []
    assert events(tmp_path, Filter(grep=r"gamma")) == ["gamma alpha"]


def test_ts_of_fast_slice_agrees_with_json() -> None:
    for r in (rec(1.25), rec(2.5, first=False), rec(3, first=False, params={"ts": "x"})):
        line = json.dumps(r)
        assert ts_of(line) == r["ts"]


def test_fault_window(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write(logs / "chaos.jsonl", [
        rec(2, component="chaos", event="fault_injected", id="f-1"),
        rec(3, component="chaos", event="fault_injected", id="f-2"),
        rec(5, component="chaos", event="fault_healed", id="f-1")])
    write(logs / "node-1.jsonl", [rec(1, event="before"), rec(2.5, event="during"), rec(4, event="both"),
                                  rec(6, event="after")])
    assert fault_window(logs, "f-1") == (ts(2), ts(5))
    assert fault_window(logs, "f-2") == (ts(3), None)   # still active: to now
    start, end = fault_window(logs, "f-1")
    assert events(logs, Filter(since=start, until=end, component="kubelet")) == ["during", "both"]
    with pytest.raises(ValueError, match="--fault: no fault 'f-9'"):
        fault_window(logs, "f-9")


def test_parse_since_and_until() -> None:
    from datetime import datetime, timezone
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc)
    assert parse_since("90s", now) == "2026-11-26T09:58:30.000000Z"
    assert parse_since("2026-11-26T11:00:00+01:00") == "2026-11-26T10:00:00.000000Z"
    with pytest.raises(ValueError, match="--until: 'soon'"):
        parse_since("soon", flag="--until")


def test_format_aligned_and_colour_only_when_asked() -> None:
    a = format_record(rec(1, node="node-1", event="pod_started", name="web 1", extra={"a": 1}))
    b = format_record(rec(2, component="scheduler", event="x", level="warning"))
    assert a.startswith("10:00:01.000000  node-1               INFO  pod_started")
    assert 'name="web 1"' in a and 'extra={"a":1}' in a
    assert b.index(" x") == a.index(" pod_started") and "WARN" in b
    assert "\x1b[" not in a + b
    c = format_record(rec(3, event="boom", level="error"), color=True)
    assert "\x1b[31mERROR" in c


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_tty_without_no_color(monkeypatch: pytest.MonkeyPatch, logs: Path) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(_Tty()) and not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Tty())
    out = io.StringIO()
    assert print_timeline(logs, Filter(level="warning"), out, as_json=True, color=False) == 2
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["probe_failed", "container_exited"]


# -- the CLI ------------------------------------------------------------------

@pytest.fixture
def lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KEMU_HOME", str(home))
    monkeypatch.delenv("NO_COLOR", raising=False)
    labdir = home / "labs" / "t"
    labdir.mkdir(parents=True)
    (labdir / "lab.json").write_text(json.dumps({"name": "t"}))
    logs.rename(labdir / "logs")
    write(labdir / "logs" / "chaos.jsonl", [rec(2.9, component="chaos", event="fault_injected", id="f-1"),
                                           rec(5.5, component="chaos", event="fault_healed", id="f-1")])
    return labdir


def kemu(*argv: str) -> int:
    from lab.cli import main
    return main(list(argv))


def test_cli_filters_json_and_text(lab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kemu("lab", "logs", "--name", "t", "--json", "--node", "node-1", "--level", "warning") == 0
    out = capsys.readouterr().out
    assert [json.loads(x)["event"] for x in out.splitlines()] == ["probe_failed", "container_exited"]
    assert kemu("lab", "logs", "--name", "t", "--fault", "f-1", "--component", "kubelet") == 0
    out = capsys.readouterr().out
    assert [x.split()[3] for x in out.splitlines()] == ["probe_failed", "lease_renewed", "container_exited"]
    assert "\x1b[" not in out   # captured output is not a terminal


@pytest.mark.parametrize("argv, flag", [
    (["--since", "yesterday"], "--since"),
    (["--until", "5 minutes"], "--until"),
    (["--level", "loud"], "--level"),
    (["--grep", "("], "--grep"),
    (["--fault", "f-9"], "--fault"),
])
def test_cli_bad_flags(lab_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> None:
    assert kemu("lab", "logs", "--name", "t", *argv) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}:"), err


def test_cli_follow_returns_after_follow_seconds(lab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kemu("lab", "logs", "--name", "t", "-f", "--follow-seconds", "0", "--json", "--event", "pod_*") == 0
    out = capsys.readouterr().out
    assert [json.loads(x)["event"] for x in out.splitlines()] == ["pod_started", "pod_started", "pod_evicted"]
