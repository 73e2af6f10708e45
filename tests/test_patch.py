"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""
from __future__ import annotations

import copy

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.patch import json_equal, json_merge_patch, json_patch

# RFC 7386 appendix A.
RFC7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,expected", RFC7386_CASES)
def test_merge_patch_rfc_examples(target, patch, expected):
    t, p = copy.deepcopy(target), copy.deepcopy(patch)
    assert json_merge_patch(target, patch) == expected
    assert target == t and patch == p  # inputs untouched


def test_merge_patch_result_shares_nothing():
    target = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    patch = {"metadata": {"labels": {"b": "2"}}, "data": {"x": [1]}}
    out = json_merge_patch(target, patch)
    out["spec"]["list"].append(3)
    out["data"]["x"].append(2)
    out["metadata"]["labels"]["c"] = "3"
    assert target == {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}}
    assert patch == {"metadata": {"labels": {"b": "2"}}, "data": {"x": [1]}}


def test_merge_patch_k8s_shape():
    pod = {"metadata": {"name": "p", "labels": {"app": "web", "old": "x"}},
           "spec": {"containers": [{"name": "a", "image": "nginx:1"}]}}
    out = json_merge_patch(pod, {"metadata": {"labels": {"old": None, "new": "y"}},
                                 "spec": {"containers": [{"name": "a", "image": "nginx:2"}]}})
    assert out["metadata"]["labels"] == {"app": "web", "new": "y"}
    assert out["spec"]["containers"] == [{"name": "a", "image": "nginx:2"}]


DOC = {"metadata": {"name": "p", "labels": {"app": "web"}, "a/b": 1, "m~n": 2},
       "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}


def apply(ops, doc=None):
    doc = DOC if doc is None else doc
    before = copy.deepcopy(doc)
    out = json_patch(doc, ops)
    assert doc == before
    return out


def test_json_patch_add():
    out = apply([{"op": "add", "path": "/metadata/labels/tier", "value": "front"},
                 {"op": "add", "path": "/spec/containers/1", "value": {"name": "mid"}},
                 {"op": "add", "path": "/spec/containers/-", "value": {"name": "end"}},
                 {"op": "add", "path": "/spec/nodeName", "value": None}])
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "mid", "b", "end"]
    assert out["spec"]["nodeName"] is None
    assert apply([{"op": "add", "path": "", "value": {"x": 1}}]) == {"x": 1}


def test_json_patch_remove_replace_escapes():
    out = apply([{"op": "remove", "path": "/metadata/labels/app"},
                 {"op": "remove", "path": "/spec/containers/0"},
                 {"op": "replace", "path": "/metadata/a~1b", "value": 10},
                 {"op": "replace", "path": "/metadata/m~0n", "value": 20}])
    assert out["metadata"] == {"name": "p", "labels": {}, "a/b": 10, "m~n": 20}
    assert out["spec"]["containers"] == [{"name": "b"}]


def test_json_patch_move_copy_test():
    out = apply([{"op": "test", "path": "/metadata/name", "value": "p"},
                 {"op": "copy", "from": "/metadata/labels", "path": "/spec/selector"},
                 {"op": "move", "from": "/spec/containers/0", "path": "/spec/first"},
                 {"op": "move", "from": "/metadata/name", "path": "/metadata/name"}])
    assert out["spec"]["selector"] == {"app": "web"}
    assert out["spec"]["selector"] is not out["metadata"]["labels"]
    assert out["spec"]["first"] == {"name": "a"}
    assert out["spec"]["containers"] == [{"name": "b"}]


@pytest.mark.parametrize("ops,fragment", [
    ([{"op": "test", "path": "/metadata/name", "value": "q"}], '"/metadata/name"'),
    ([{"op": "remove", "path": "/metadata/nope"}], '"/metadata/nope"'),
    ([{"op": "replace", "path": "/spec/x", "value": 1}], '"/spec/x"'),
    ([{"op": "add", "path": "/missing/child", "value": 1}], '"/missing/child"'),
    ([{"op": "add", "path": "/spec/containers/5", "value": 1}], '"/spec/containers/5"'),
    ([{"op": "remove", "path": "/spec/containers/2"}], '"/spec/containers/2"'),
    ([{"op": "remove", "path": "/spec/containers/01"}], '"/spec/containers/01"'),
    ([{"op": "move", "from": "/spec", "path": "/spec/inner"}], '"/spec/inner"'),
    ([{"op": "copy", "from": "/nope", "path": "/x"}], '"/nope"'),
    ([{"op": "test", "path": "/metadata/a~1b", "value": True}], '"/metadata/a~1b"'),
])
def test_json_patch_does_not_apply(ops, fragment):
    with pytest.raises(APIError) as ei:
        apply(ops)
    assert ei.value.code == errors.INVALID
    assert fragment in ei.value.message


@pytest.mark.parametrize("ops", [
    {"op": "add"},
    [{"op": "frobnicate", "path": "/a"}],
    [{"op": "add", "path": "/a"}],
    [{"op": "add", "value": 1}],
    [{"op": "add", "path": "a", "value": 1}],
    [{"op": "move", "path": "/a"}],
    ["not an op"],
])
def test_json_patch_malformed(ops):
    with pytest.raises(APIError) as ei:
        apply(ops)
    assert ei.value.code == errors.BAD_REQUEST


def test_json_patch_atomic():
    doc = copy.deepcopy(DOC)
    with pytest.raises(APIError):
        json_patch(doc, [{"op": "replace", "path": "/metadata/name", "value": "x"},
                         {"op": "test", "path": "/metadata/name", "value": "p"}])
    assert doc == DOC


def test_json_equal():
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1)
