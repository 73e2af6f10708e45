"""Loading ``-f`` manifests: files, directories, stdin, multi-document YAML, JSON, errors."""
from __future__ import annotations

import io
import json
from pathlib import Path

from emulator.cli.manifests import load_manifests, parse_documents

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def names(manifests: list) -> list[str]:
    return [m.obj["metadata"]["name"] for m in manifests]


def test_multi_document_yaml_skips_empty_documents(tmp_path: Path) -> None:
    f = tmp_path / "all.yaml"
    f.write_text("---\n" + CM.format(name="a") + "---\n---\n# just a comment\n---\n"
                 + CM.format(name="b"))
    ms, errs = load_manifests([str(f)])
    assert errs == []
    assert names(ms) == ["a", "b"]
    assert [m.source for m in ms] == [str(f), str(f)]
    assert [m.index for m in ms] == [1, 2]


def test_json_single_and_concatenated(tmp_path: Path) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j1"}}
    (tmp_path / "one.json").write_text(json.dumps(obj, indent=2))
    (tmp_path / "two.json").write_text(json.dumps(obj) + "\n" +
                                       json.dumps(dict(obj, metadata={"name": "j2"})))
    ms, errs = load_manifests([str(tmp_path / "one.json"), str(tmp_path / "two.json")])
    assert errs == []
    assert names(ms) == ["j1", "j1", "j2"]


def test_kind_list_is_expanded(tmp_path: Path) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("apiVersion: v1\nkind: List\nitems:\n"
                 "- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n"
                 "- {apiVersion: v1, kind: ConfigMapList, items: "
                 "[{apiVersion: v1, kind: ConfigMap, metadata: {name: y}}]}\n")
    ms, errs = load_manifests([str(f)])
    assert errs == [] and names(ms) == ["x", "y"]


def test_directory_in_name_order_and_recursive(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(CM.format(name="b"))
    (tmp_path / "a.yml").write_text(CM.format(name="a"))
    (tmp_path / "c.json").write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "c"}}))
    (tmp_path / "notes.txt").write_text("not a manifest: ][")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text(CM.format(name="d"))
    ms, errs = load_manifests([str(tmp_path)])
    assert errs == [] and names(ms) == ["a", "b", "c"]
    ms, errs = load_manifests([str(tmp_path)], recursive=True)
    assert errs == [] and names(ms) == ["a", "b", "c", "d"]


def test_stdin() -> None:
    ms, errs = load_manifests(["-"], stdin=io.StringIO(CM.format(name="s")))
    assert errs == [] and names(ms) == ["s"] and ms[0].source == "STDIN"


def test_syntax_error_names_file_and_line_and_drops_the_whole_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CM.format(name="first") + "---\napiVersion: v1\nkind: ConfigMap\n"
                   "metadata:\n  name: x\n  bad: : :\n")
    good = tmp_path / "good.yaml"
    good.write_text(CM.format(name="ok"))
    ms, errs = load_manifests([str(bad), str(good)])
    assert names(ms) == ["ok"]                       # nothing from bad.yaml
    assert len(errs) == 1
    msg = str(errs[0])
    assert msg == (f"error parsing {bad}: error converting YAML to JSON: yaml: line 10: "
                   "mapping values are not allowed in this context")
    assert errs[0].source == str(bad)


def test_json_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{\n  "apiVersion": "v1",\n  "kind": "ConfigMap"\n  "metadata": {}\n}\n')
    ms, errs = load_manifests([str(f)])
    assert ms == [] and str(errs[0]).startswith(f"error parsing {f}: json: line 4:")


def test_missing_kind_or_api_version_names_file_and_document(tmp_path: Path) -> None:
    f = tmp_path / "partial.yaml"
    f.write_text(CM.format(name="fine") + "---\nmetadata:\n  name: nokind\n")
    ms, errs = load_manifests([str(f)])
    assert ms == []
    assert str(errs[0]) == (f'error validating "{f}": document 2: error validating data: '
                            "[apiVersion not set, kind not set]")
    f.write_text("- just\n- a list\n")
    ms, errs = load_manifests([str(f)])
    assert ms == [] and "document 1" in str(errs[0]) and "expected an object" in str(errs[0])


def test_missing_path_and_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    ms, errs = load_manifests([str(missing)])
    assert ms == [] and str(errs[0]) == f'the path "{missing}" does not exist'
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    ms, errs = load_manifests([str(binary)])
    assert ms == [] and "not UTF-8" in str(errs[0])


def test_parse_documents_reports_start_lines() -> None:
    docs = parse_documents("a: 1\n---\n\n---\nb: 2\nc: 3\n", "x")
    assert docs == [({"a": 1}, 1), ({"b": 2, "c": 3}, 5)]
