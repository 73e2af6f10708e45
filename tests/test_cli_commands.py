"""End-to-end tests of the kubectl-style commands against a real apiserver."""
from __future__ import annotations

import io
import json
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.cli.kubectl import run
from emulator.cli.merge import LAST_APPLIED
from emulator.client import Client
from tests.conftest import poll_for


class Result:
    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def kemu(apiserver_addr: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run a command against the test apiserver (via KEMU_SERVER, as a user would)."""
    monkeypatch.setenv("KEMU_SERVER", apiserver_addr)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "kemu-home"))

    def k(*argv: str, stdin: str | None = None, **kw: Any) -> Result:
        out, err = io.StringIO(), io.StringIO()
        rc = run(list(argv), out, err, stdin=io.StringIO(stdin) if stdin is not None else None,
                 **kw)
        return Result(rc, out.getvalue(), err.getvalue())
    return k


@pytest.fixture
def api(apiserver_addr: str):
    c = Client(apiserver_addr, component="test")
    yield c
    c.close()


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: c
    image: nginx
"""
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# -- get ---------------------------------------------------------------------

def test_get_empty_prints_no_resources_on_stderr(kemu) -> None:
    r = kemu("get", "pods")
    assert (r.rc, r.out, r.err) == (0, "", "No resources found in default namespace.\n")
    r = kemu("get", "pods", "-n", "kube-system")
    assert r.err == "No resources found in kube-system namespace.\n"
    assert kemu("get", "nodes").err == "No resources found\n"
    assert kemu("get", "pods", "-A").err == "No resources found\n"


def test_create_then_get_table_json_yaml_name(kemu, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", POD.format(name="web-1", app="web") + "---\n"
              + POD.format(name="web-2", app="web") + "---\n" + CM.format(name="cfg"))
    r = kemu("create", "-f", f)
    assert (r.rc, r.out) == (0, "pod/web-1 created\npod/web-2 created\nconfigmap/cfg created\n")

    r = kemu("get", "pods")
    assert r.rc == 0 and r.err == ""
    assert rows(r.out) == [["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                           ["web-1", "0/1", "Pending", "0", rows(r.out)[1][4]],
                           ["web-2", "0/1", "Pending", "0", rows(r.out)[2][4]]]
    assert r.out.splitlines()[0] == "NAME    READY   STATUS    RESTARTS   AGE"

    r = kemu("get", "po", "-o", "json")
    doc = json.loads(r.out)
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    assert doc["metadata"] == {"resourceVersion": ""}
    assert [i["metadata"]["name"] for i in doc["items"]] == ["web-1", "web-2"]
    assert all(i["kind"] == "Pod" and i["apiVersion"] == "v1" for i in doc["items"])

    single = json.loads(kemu("get", "pod", "web-1", "-o", "json").out)
    assert single["kind"] == "Pod" and single["metadata"]["name"] == "web-1"
    assert yaml.safe_load(kemu("get", "pods/web-2", "-o", "yaml").out)["metadata"]["name"] == "web-2"
    assert kemu("get", "pods", "-o", "name").out == "pod/web-1\npod/web-2\n"

    r = kemu("get", "pods,cm", "-l", "app=web")
    assert r.rc == 0 and [row[0] for row in rows(r.out)] == ["NAME", "pod/web-1", "pod/web-2"]
    r = kemu("get", "pods,configmaps")
    assert "\n\nNAME            DATA   AGE\nconfigmap/cfg   1      " in r.out

    r = kemu("get", "pods", "-A", "-o", "wide")
    assert rows(r.out)[0][:3] == ["NAMESPACE", "NAME", "READY"] and "READINESS" in r.out
    assert rows(r.out)[1][:2] == ["default", "web-1"]


def test_get_missing_name_reports_and_prints_the_rest(kemu, tmp_path: Path) -> None:
    kemu("create", "-f", write(tmp_path, "cm.yaml", CM.format(name="here")))
    r = kemu("get", "cm", "here", "gone")
    assert r.rc == 1
    assert [row[0] for row in rows(r.out)] == ["NAME", "here"]
    assert r.err == 'Error from server (NotFound): configmaps "gone" not found\n'
    assert kemu("get", "cm", "gone", "--ignore-not-found").rc == 0


def test_get_pages_with_chunk_size(kemu, tmp_path: Path, apiserver_addr: str) -> None:
    docs = "---\n".join(CM.format(name=f"cm-{i}") for i in range(5))
    assert kemu("create", "-f", write(tmp_path, "many.yaml", docs)).rc == 0
    calls: list[dict] = []

    class Recording(Client):
        def list(self, kind: str, **kw: Any) -> dict:   # type: ignore[override]
            calls.append(kw)
            return super().list(kind, **kw)

    r = kemu("get", "cm", "--chunk-size", "2", "-o", "name",
             client_factory=lambda server, timeout: Recording(server, component="t"))
    assert r.out == "".join(f"configmap/cm-{i}\n" for i in range(5))
    assert [c["limit"] for c in calls] == [2, 2, 2]
    assert calls[0]["continue_"] is None and calls[1]["continue_"]


def test_get_usage_errors(kemu) -> None:
    r = kemu("get", "foo")
    assert (r.rc, r.err) == (1, 'error: the server doesn\'t have a resource type "foo"\n')
    r = kemu("get", "pods", "--output", "bogus")
    assert r.rc == 2 and "argument -o/--output: invalid choice: 'bogus'" in r.err
    r = kemu("get", "pods", "--no-such-flag")
    assert r.rc == 2 and "--no-such-flag" in r.err
    r = kemu("get", "pods", "--chunk-size", "-1")
    assert r.rc == 2 and "--chunk-size" in r.err
    r = kemu("get", "pod", "web", "-A")
    assert r.rc == 1 and "across all namespaces" in r.err


def test_dead_server_and_no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    out, err = io.StringIO(), io.StringIO()
    rc = run(["get", "pods", "--server", addr, "--request-timeout", "200ms"], out, err)
    assert rc == 1 and err.getvalue().startswith("error: ") and addr in err.getvalue()

    monkeypatch.delenv("KEMU_SERVER", raising=False)
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "empty-home"))
    out, err = io.StringIO(), io.StringIO()
    assert run(["get", "pods"], out, err) == 1
    assert err.getvalue() == ("error: no apiserver: pass --server tcp://127.0.0.1:PORT, set "
                              "KEMU_SERVER, or start a lab with 'kemu lab up'\n")
    out, err = io.StringIO(), io.StringIO()
    assert run(["get", "pods", "--server", "localhost:6443"], out, err) == 1
    assert "--server" in err.getvalue() and "tcp://localhost:6443" in err.getvalue()


def test_get_watch_streams_rows(kemu, api: Client, tmp_path: Path) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w0"}},
               namespace="default")
    out, err = io.StringIO(), io.StringIO()
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(run(
        ["get", "cm", "-w", "--watch-timeout", "3"], out, err)), daemon=True)
    t.start()
    poll_for(lambda: "w0" in out.getvalue(), 5, what="initial list")
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w1"},
                "data": {"a": "b"}}, namespace="default")
    api.delete("ConfigMap", "w0", namespace="default")
    poll_for(lambda: out.getvalue().count("w0") == 2 and "w1" in out.getvalue(), 5,
             what="watch rows")
    t.join(10)
    assert done == [0], err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == ["w0", "w1", "w0"]
    # Event rows keep the columns of the first table, as kubectl's tabwriter does.
    starts = [[m.start() for m in re.finditer(r"\S+", line)] for line in lines]
    assert all(st == starts[0] for st in starts[1:]), lines

    r = kemu("get", "cm", "w1", "-w", "-o", "json", "--output-watch-events",
             "--watch-timeout", "0.3")
    assert r.rc == 0
    first = json.loads(r.out.splitlines()[0])
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "w1"


class _FakeWatch:
    def __init__(self, events: list) -> None:
        self.events, self.closed = list(events), False

    def next(self, timeout: float | None = None) -> dict | None:
        if not self.events:
            self.closed = True
            return None
        ev = self.events.pop(0)
        if isinstance(ev, BaseException):
            raise ev
        return ev

    def stop(self) -> None:
        self.closed = True


class _FakeClient:
    """Just enough of Client for watch edge cases."""

    def __init__(self, events: list) -> None:
        self.events = events

    def list(self, kind: str, **kw: Any) -> dict:
        return {"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []}

    def watch(self, kind: str, **kw: Any) -> _FakeWatch:
        assert kw["resource_version"] == "7"
        return _FakeWatch(self.events)

    def close(self) -> None:
        pass


def test_watch_interrupt_exits_zero_and_errors_exit_one(kemu) -> None:
    pod = {"metadata": {"name": "p", "namespace": "default"}, "status": {"phase": "Pending"},
           "spec": {"containers": [{"name": "c"}]}}
    r = kemu("get", "pods", "-w", "--output-watch-events",
             client_factory=lambda s, t: _FakeClient([{"type": "ADDED", "object": pod},
                                                      {"type": "BOOKMARK", "object": {}},
                                                      KeyboardInterrupt()]))
    assert r.rc == 0
    assert rows(r.out) == [["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
                           ["ADDED", "p", "0/1", "Pending", "0", "<unknown>"]]
    expired = {"type": "ERROR", "object": {"reason": "Expired", "message": "too old"}}
    r = kemu("get", "pods", "-w", client_factory=lambda s, t: _FakeClient([expired]))
    assert (r.rc, r.err) == (1, "Error from server (Expired): too old\n")


# -- create / apply ----------------------------------------------------------

def test_create_reports_server_errors_and_continues(kemu, tmp_path: Path) -> None:
    bad_pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers: []\n"
    f = write(tmp_path, "mixed.yaml", bad_pod + "---\n" + CM.format(name="after"))
    r = kemu("create", "-f", f)
    assert r.rc == 1
    assert r.out == "configmap/after created\n"
    assert r.err.startswith(f'Error from server (Invalid): error when creating "{f}": ')
    assert 'Pod "bad" is invalid' in r.err
    r = kemu("create", "-f", write(tmp_path, "again.yaml", CM.format(name="after")))
    assert r.rc == 1 and r.err.startswith("Error from server (AlreadyExists):")


def test_create_with_a_broken_file_applies_nothing_from_it(kemu, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", CM.format(name="never") + "---\n"
                   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  oops: : :\n")
    good = write(tmp_path, "good.yaml", CM.format(name="fine"))
    r = kemu("apply", "-f", broken, "-f", good)
    assert r.rc == 1
    assert r.out == "configmap/fine created\n"
    assert r.err == (f"error: error parsing {broken}: error converting YAML to JSON: yaml: "
                     "line 12: mapping values are not allowed in this context\n")
    assert kemu("get", "cm", "never").rc == 1
    nokind = write(tmp_path, "nokind.yaml", "metadata:\n  name: x\n")
    r = kemu("create", "-f", nokind)
    assert r.rc == 1 and nokind in r.err and "document 1" in r.err and "kind not set" in r.err
    r = kemu("create", "-f", str(tmp_path / "missing.yaml"))
    assert r.rc == 1 and "does not exist" in r.err


def test_create_from_stdin_and_dirs_and_namespace_rules(kemu, tmp_path: Path) -> None:
    assert kemu("create", "namespace", "team").rc == 0
    r = kemu("create", "-f", "-", "-n", "team", stdin=CM.format(name="piped"))
    assert (r.rc, r.out) == (0, "configmap/piped created\n")
    assert kemu("get", "cm", "piped", "-n", "team", "-o", "name").out == "configmap/piped\n"
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "a.yaml").write_text(CM.format(name="d-a"))
    (d / "sub" / "b.yaml").write_text(CM.format(name="d-b"))
    assert kemu("create", "-f", str(d)).out == "configmap/d-a created\n"
    assert kemu("apply", "-R", "-f", str(d)).out == ("configmap/d-a configured\n"
                                                     "configmap/d-b created\n")
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: z\n  namespace: elsewhere\n"
    r = kemu("create", "-f", "-", "-n", "team", stdin=other)
    assert r.rc == 1 and "does not match the namespace" in r.err
    r = kemu("create", "-f", "-", stdin="apiVersion: v9\nkind: Gadget\nmetadata:\n  name: g\n")
    assert r.rc == 1 and 'no matches for kind "Gadget" in version "v9"' in r.err


def test_apply_created_configured_unchanged(kemu, tmp_path: Path, api: Client) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(POD.format(name="web", app="web") + "---\n" + CM.format(name="conf"))
    r = kemu("apply", "-f", str(f))
    assert (r.rc, r.out) == (0, "pod/web created\nconfigmap/conf created\n")
    live = api.get("ConfigMap", "conf", "default")
    expected = yaml.safe_load(CM.format(name="conf"))
    expected["metadata"].update(namespace="default", annotations={})
    assert json.loads(live["metadata"]["annotations"][LAST_APPLIED]) == expected
    r = kemu("apply", "-f", str(f))
    assert (r.rc, r.out) == (0, "pod/web unchanged\nconfigmap/conf unchanged\n")
    # Someone else labels it; the manifest drops a field and changes another.
    api.patch("ConfigMap", "conf", {"metadata": {"labels": {"owner": "ops"}}}, "default")
    f.write_text(CM.format(name="conf").replace("  k: v\n", "  k2: v2\n"))
    r = kemu("apply", "-f", str(f))
    assert (r.rc, r.out) == (0, "configmap/conf configured\n")
    live = api.get("ConfigMap", "conf", "default")
    assert live["data"] == {"k2": "v2"}
    assert live["metadata"]["labels"] == {"owner": "ops"}
    r = kemu("apply", "-f", str(f), "--dry-run=client")
    assert r.out == "configmap/conf unchanged (dry run)\n"


# -- imperative create ---------------------------------------------------------

def test_create_imperative_dry_run_matches_kubectl(kemu, tmp_path: Path) -> None:
    r = kemu("create", "configmap", "x", "--from-literal", "a=b", "--dry-run=client", "-o", "yaml")
    assert r.out == ("apiVersion: v1\ndata:\n  a: b\nkind: ConfigMap\nmetadata:\n"
                     "  creationTimestamp: null\n  name: x\n")
    r = kemu("create", "secret", "generic", "s", "--from-literal", "a=b", "--type", "foo",
             "-n", "x", "--dry-run=client", "-o", "json")
    assert r.out == ('{\n    "kind": "Secret",\n    "apiVersion": "v1",\n    "metadata": {\n'
                     '        "name": "s",\n        "namespace": "x",\n'
                     '        "creationTimestamp": null\n    },\n    "data": {\n'
                     '        "a": "Yg=="\n    },\n    "type": "foo"\n}\n')
    r = kemu("create", "ns", "foo", "--dry-run=client", "-o", "yaml")
    assert r.out == ("apiVersion: v1\nkind: Namespace\nmetadata:\n  creationTimestamp: null\n"
                     "  name: foo\nspec: {}\nstatus: {}\n")
    assert kemu("create", "cm", "x", "--dry-run=client").out == "configmap/x created (dry run)\n"
    r = kemu("create", "cm", "x", "--from-literal", "a=1", "--from-literal", "a=2")
    assert r.rc == 1 and r.err == ('error: cannot add key "a", another key by that name already '
                                   'exists in Data for ConfigMap "x"\n')
    assert kemu("create", "cm", "x", "--from-literal", "a").err == \
        "error: invalid literal source a, expected key=value\n"
    assert kemu("create", "cm").err == "error: exactly one NAME is required, got 0\n"


def test_create_imperative_for_real(kemu, tmp_path: Path, api: Client) -> None:
    (tmp_path / "app.conf").write_text("port=80\n")
    (tmp_path / "env").write_text("# comment\nMODE=fast\n\nLEVEL=3\n")
    (tmp_path / "blob").write_bytes(b"\xff\x00")
    assert kemu("create", "namespace", "apps").out == "namespace/apps created\n"
    r = kemu("create", "configmap", "conf", "-n", "apps", "--from-literal", "k=v",
             "--from-file", str(tmp_path / "app.conf"), "--from-file", f"b={tmp_path / 'blob'}",
             "--from-env-file", str(tmp_path / "env"))
    assert (r.rc, r.out) == (0, "configmap/conf created\n")
    cm = api.get("ConfigMap", "conf", "apps")
    assert cm["data"] == {"k": "v", "app.conf": "port=80\n", "MODE": "fast", "LEVEL": "3"}
    assert cm["binaryData"] == {"b": "/wA="}
    r = kemu("create", "secret", "generic", "creds", "-n", "apps", "--from-literal", "user=admin")
    assert r.out == "secret/creds created\n"
    sec = api.get("Secret", "creds", "apps")
    assert sec["data"] == {"user": "YWRtaW4="} and sec.get("type", "Opaque") == "Opaque"
    r = kemu("get", "secrets", "-n", "apps")
    assert rows(r.out)[0] == ["NAME", "TYPE", "DATA", "AGE"] and rows(r.out)[1][:3] == \
        ["creds", "Opaque", "1"]


# -- delete ------------------------------------------------------------------

def test_delete_by_name_selector_all_and_file(kemu, tmp_path: Path) -> None:
    docs = "---\n".join(CM.format(name=n) for n in ("a", "b", "c", "d"))
    f = write(tmp_path, "cms.yaml", docs)
    kemu("create", "-f", f)
    kemu("label", "cm", "b", "c", "tier=x")
    r = kemu("delete", "cm", "a", "missing")
    assert r.rc == 1 and r.out == 'configmap "a" deleted\n'
    assert r.err == 'Error from server (NotFound): configmaps "missing" not found\n'
    assert kemu("delete", "cm", "missing", "--ignore-not-found").rc == 0
    r = kemu("delete", "cm", "-l", "tier=x")
    assert (r.rc, r.out) == (0, 'configmap "b" deleted\nconfigmap "c" deleted\n')
    assert kemu("delete", "cm", "-l", "tier=x").out == "No resources found\n"
    r = kemu("delete", "-f", write(tmp_path, "d.yaml", CM.format(name="d")))
    assert r.out == 'configmap "d" deleted\n'
    kemu("create", "-f", f)
    r = kemu("delete", "configmaps", "--all", "-o", "name")
    assert r.out.split() == ["configmap/a", "configmap/b", "configmap/c", "configmap/d"]
    r = kemu("delete", "cm")
    assert r.rc == 1 and "no name was specified" in r.err
    r = kemu("delete", "cm", "x", "--cascade=sideways")
    assert r.rc == 2 and "--cascade" in r.err


def test_delete_pod_graceful_and_force(kemu, tmp_path: Path, api: Client) -> None:
    kemu("create", "-f", write(tmp_path, "p.yaml", POD.format(name="slow", app="x")))
    api.bind("slow", "default", "n1")      # scheduled pods terminate gracefully
    r = kemu("delete", "pod", "slow", "--wait=false", "--cascade=foreground")
    assert (r.rc, r.out) == (0, 'pod "slow" deleted\n')
    assert rows(kemu("get", "pods").out)[1][2] == "Terminating"
    r = kemu("delete", "pod", "slow", "--force", "--timeout", "5s")
    assert r.rc == 0 and r.out == 'pod "slow" force deleted\n'
    assert r.err.startswith("Warning: Immediate deletion does not wait")
    assert kemu("get", "pod", "slow").rc == 1
    kemu("create", "-f", write(tmp_path, "p2.yaml", POD.format(name="stuck", app="x")))
    api.bind("stuck", "default", "n1")
    r = kemu("delete", "pod", "stuck", "--timeout", "300ms")
    assert r.rc == 1 and "timed out waiting for the condition on pod/stuck" in r.err


# -- patch and label ---------------------------------------------------------

def test_patch(kemu, tmp_path: Path, api: Client) -> None:
    kemu("create", "-f", write(tmp_path, "p.yaml", POD.format(name="web", app="web")))
    r = kemu("patch", "pod", "web", "-p", '{"metadata":{"labels":{"tier":"fe"}}}')
    assert (r.rc, r.out) == (0, "pod/web patched\n")
    assert api.get("Pod", "web", "default")["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    r = kemu("patch", "pod/web", "-p", '{"metadata":{"labels":{"tier":"fe"}}}')
    assert r.out == "pod/web patched (no change)\n"
    r = kemu("patch", "pod", "web", "--type", "json",
             "-p", '[{"op":"remove","path":"/metadata/labels/tier"}]')
    assert r.out == "pod/web patched\n"
    r = kemu("patch", "pod", "web", "--subresource", "status",
             "-p", '{"status":{"phase":"Running"}}')
    assert r.rc == 0 and api.get("Pod", "web", "default")["status"]["phase"] == "Running"
    r = kemu("patch", "pod", "web", "-p", "{not json")
    assert r.rc == 1 and r.err.startswith("error: unable to parse -p '{not json'")
    r = kemu("patch", "pod", "web", "--type", "json", "-p", '{"a": 1}')
    assert r.rc == 1 and "-p" in r.err and "list of operations" in r.err
    r = kemu("patch", "pod", "nope", "-p", "{}")
    assert r.rc == 1 and r.err == 'Error from server (NotFound): pods "nope" not found\n'
    assert kemu("patch", "pod", "web").rc == 2


def test_label(kemu, tmp_path: Path, api: Client) -> None:
    kemu("create", "-f", write(tmp_path, "p.yaml", POD.format(name="web", app="web")))
    assert kemu("label", "pod", "web", "tier=fe").out == "pod/web labeled\n"
    r = kemu("label", "pod", "web", "app=other")
    assert r.rc == 1 and r.err == \
        "error: 'app' already has a value (web), and --overwrite is false\n"
    assert kemu("label", "--overwrite", "pods", "web", "app=other").out == "pod/web labeled\n"
    r = kemu("label", "pods/web", "tier-", "ghost-")
    assert r.out == 'label "ghost" not found.\npod/web unlabeled\n'
    assert api.get("Pod", "web", "default")["metadata"]["labels"] == {"app": "other"}
    assert kemu("label", "pod", "web", "app=other", "--overwrite").out == "pod/web not labeled\n"
    r = kemu("label", "pod", "web", "bad=has space")
    assert r.rc == 1 and "invalid label value" in r.err
    assert kemu("label", "pod", "web").err == "error: at least one label update is required\n"


# -- describe ----------------------------------------------------------------

def test_describe_pod_with_events(kemu, tmp_path: Path, api: Client) -> None:
    kemu("create", "-f", write(tmp_path, "p.yaml", POD.format(name="web", app="web")))
    pod = api.get("Pod", "web", "default")
    api.create({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "web.1", "namespace": "default"},
                "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                                   "uid": pod["metadata"]["uid"]},
                "reason": "Scheduled", "message": "Successfully assigned default/web to n1",
                "type": "Normal", "source": {"component": "default-scheduler"},
                "firstTimestamp": pod["metadata"]["creationTimestamp"],
                "lastTimestamp": pod["metadata"]["creationTimestamp"], "count": 1},
               namespace="default")
    r = kemu("describe", "pod", "web")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["Name:", "web"]
    assert lines[1].split() == ["Namespace:", "default"]
    assert "Labels:" in r.out and "app=web" in r.out and "Containers:" in r.out
    assert "    Image:" in r.out and "nginx" in r.out
    assert "Events:\n  Type    Reason     Age" in r.out
    assert lines[-1].split()[:2] == ["Normal", "Scheduled"]
    assert "Successfully assigned default/web to n1" in lines[-1]
    # Prefix match, selectors, several objects separated by blank lines.
    kemu("create", "-f", write(tmp_path, "p2.yaml", POD.format(name="web-2", app="web")))
    r = kemu("describe", "pods", "-l", "app=web")
    assert r.out.count("\nName:") == 1 and "\n\n\nName:" in r.out
    assert kemu("describe", "pod", "we").out.count("Namespace:") == 2
    r = kemu("describe", "pod", "zzz")
    assert r.rc == 1 and r.err == 'Error from server (NotFound): pods "zzz" not found\n'


def test_describe_and_get_node(kemu, api: Client) -> None:
    node = api.create({"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": "n1",
                                    "labels": {"node-role.kubernetes.io/worker": ""}}})
    node["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                      "message": "kubelet is posting ready status"}],
                      "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                      "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                      "nodeInfo": {"kubeletVersion": "v1.32.0-kemu", "osImage": "kemu",
                                   "architecture": "amd64", "operatingSystem": "linux"}}
    api.update(node, subresource="status")
    r = kemu("get", "nodes")
    assert rows(r.out)[1][:3] == ["n1", "Ready", "worker"] and rows(r.out)[1][4] == "v1.32.0-kemu"
    r = kemu("describe", "node", "n1")
    assert r.rc == 0, r.err
    for section in ("Roles:", "Conditions:", "Capacity:", "Allocatable:", "System Info:",
                    "Kubelet Version:", "Events:"):
        assert section in r.out, section
    assert "KubeletReady" in r.out and "  cpu:     4" in r.out


def test_flags_may_sit_between_positionals(apiserver_addr: str) -> None:
    """kubectl accepts `label pod web -n demo tier=frontend`; so must we."""
    import io
    from emulator.cli.kubectl import run as krun
    out, err = io.StringIO(), io.StringIO()
    assert krun(["create", "namespace", "demo", "--server", apiserver_addr], out, err) == 0
    assert krun(["create", "configmap", "c", "-n", "demo", "--server", apiserver_addr], out, err) == 0
    rc = krun(["label", "configmap", "c", "-n", "demo", "tier=frontend", "--server", apiserver_addr], out, err)
    assert rc == 0, err.getvalue()
    out = io.StringIO()
    assert krun(["get", "cm", "-n", "demo", "-l", "tier=frontend", "-o", "name", "--server",
                 apiserver_addr], out, err) == 0
    assert out.getvalue().strip() == "configmap/c"
