"""Label and field selectors, as Kubernetes parses and matches them."""
from __future__ import annotations

import pytest

from emulator.api import errors
from emulator.api.errors import APIError
from emulator.api.registry import REGISTRY
from emulator.api.selectors import (EVERYTHING, NOTHING, label_selector_from_dict,
                                    parse_field_selector, parse_label_selector,
                                    validate_label_selector)

LABELS = {"app": "web", "tier": "front", "env": "prod", "version": "3"}


@pytest.mark.parametrize("sel,expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db, cache)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    (" app = web , tier in ( front ) , !missing ", True),
    ("version>2", True),
    ("version<3", False),
    ("app>1", False),
    ("example.com/role=x", False),
    ("missing=", False),
])
def test_label_selector_matches(sel, expected):
    assert parse_label_selector(sel).matches(LABELS) is expected


def test_empty_value_equality():
    assert parse_label_selector("a=").matches({"a": ""})
    assert not parse_label_selector("a=").matches({})


def test_label_selector_properties():
    s = parse_label_selector("tier=front,app in (web),env!=dev")
    assert not s.empty
    assert s.equality_value("tier") == "front"
    assert s.equality_value("app") == "web"
    assert s.equality_value("env") is None
    assert s.equality_value("nope") is None
    assert str(s) == "app in (web),env!=dev,tier=front"
    assert parse_label_selector(str(s)) == s
    assert parse_label_selector("").empty and parse_label_selector("   ").empty
    assert parse_label_selector("a") == parse_label_selector("a")
    assert parse_label_selector("x").matches(None) is False
    assert EVERYTHING.matches(None)


@pytest.mark.parametrize("bad", [
    "a b", "a=b c", "a in b", "a in (b", "a in ()", "=b", "a,", ",a", "!a=b", "a=(b)",
    "Bad Key=x", "a=bad value!", "a=" + "v" * 64, "a>b", "a,,b", "a in (x y)",
])
def test_label_selector_syntax_errors(bad):
    with pytest.raises(APIError) as ei:
        parse_label_selector(bad)
    assert ei.value.code == errors.BAD_REQUEST
    assert ei.value.message.startswith("unable to parse requirement: ")


def test_label_selector_error_names_problem():
    with pytest.raises(APIError, match="found 'c', expected: ',' or 'end of string'"):
        parse_label_selector("a=b c")
    with pytest.raises(APIError, match="values set can't be empty"):
        parse_label_selector("a in ()")


def test_keyword_values_and_keys():
    assert parse_label_selector("a=in").matches({"a": "in"})
    assert parse_label_selector("notin=x").matches({"notin": "x"})


def test_label_selector_from_dict():
    s = label_selector_from_dict({"matchLabels": {"app": "web"},
                                  "matchExpressions": [
                                      {"key": "tier", "operator": "In", "values": ["front", "mid"]},
                                      {"key": "env", "operator": "NotIn", "values": ["dev"]},
                                      {"key": "version", "operator": "Exists"},
                                      {"key": "legacy", "operator": "DoesNotExist"}]})
    assert s.matches(LABELS)
    assert not s.matches({**LABELS, "legacy": "1"})
    assert not s.matches({**LABELS, "env": "dev"})
    assert s.equality_value("app") == "web"
    assert s == parse_label_selector("app=web,tier in (front,mid),env notin (dev),version,!legacy")
    assert label_selector_from_dict({}) is EVERYTHING and EVERYTHING.empty
    nothing = label_selector_from_dict(None)
    assert nothing is NOTHING and not nothing.matches({}) and not nothing.empty
    for bad in ({"matchExpressions": [{"key": "a", "operator": "Near"}]},
                {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
                {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                {"matchLabels": {"a": "bad value"}}):
        with pytest.raises(APIError) as ei:
            label_selector_from_dict(bad)
        assert ei.value.code == errors.BAD_REQUEST


def test_validate_label_selector_causes():
    causes = validate_label_selector({
        "matchLabels": {"bad key": "v"},
        "matchExpressions": [{"key": "a", "operator": "In"},
                             {"key": "b", "operator": "Exists", "values": ["x"]},
                             {"key": "c", "operator": "Near"}]}, "spec.selector")
    fields = [c["field"] for c in causes]
    assert fields == ["spec.selector.matchLabels", "spec.selector.matchExpressions[0].values",
                      "spec.selector.matchExpressions[1].values",
                      "spec.selector.matchExpressions[2].operator"]
    assert validate_label_selector({"matchLabels": {"app": "web"}}, "spec.selector") == []


# --- field selectors -------------------------------------------------------------

POD = REGISTRY.by_kind("Pod")
NODE = REGISTRY.by_kind("Node")
EVENT = REGISTRY.by_kind("Event")

RUNNING = {"metadata": {"name": "web-1", "namespace": "prod"},
           "spec": {"nodeName": "node-1", "schedulerName": "default-scheduler",
                    "restartPolicy": "Always"},
           "status": {"phase": "Running"}}
PENDING = {"metadata": {"name": "web-2", "namespace": "prod"}, "spec": {},
           "status": {"phase": "Pending"}}


def test_field_selector_pod():
    s = parse_field_selector("spec.nodeName=node-1,status.phase!=Failed", POD)
    assert s.matches(RUNNING) and not s.matches(PENDING)
    assert s.equality_value("spec.nodeName") == "node-1"
    assert s.equality_value("status.phase") is None
    unscheduled = parse_field_selector("spec.nodeName=", POD)
    assert unscheduled.matches(PENDING) and not unscheduled.matches(RUNNING)
    assert unscheduled.equality_value("spec.nodeName") == ""
    assert parse_field_selector("metadata.name==web-1", POD).matches(RUNNING)
    assert parse_field_selector("metadata.namespace=prod", POD).matches(PENDING)
    assert parse_field_selector("spec.restartPolicy=Always", POD).matches(RUNNING)
    assert parse_field_selector("spec.schedulerName!=other", POD).matches(PENDING)
    empty = parse_field_selector("", POD)
    assert empty.empty and empty.matches(RUNNING)


def test_field_selector_node_bool_default():
    s = parse_field_selector("spec.unschedulable=false", NODE)
    assert s.matches({"metadata": {"name": "n"}, "spec": {}})
    assert s.matches({"metadata": {"name": "n"}})
    assert not s.matches({"metadata": {"name": "n"}, "spec": {"unschedulable": True}})
    assert parse_field_selector("spec.unschedulable=true", NODE).matches(
        {"spec": {"unschedulable": True}})


def test_field_selector_event_and_others():
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-1",
                                                       "namespace": "prod", "uid": "u1"},
          "reason": "Scheduled", "type": "Normal"}
    s = parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web-1,"
                             "involvedObject.namespace=prod,involvedObject.uid=u1,"
                             "reason=Scheduled,type=Normal", EVENT)
    assert s.matches(ev)
    assert parse_field_selector("type=Opaque", REGISTRY.by_kind("Secret")).matches({"type": "Opaque"})
    assert parse_field_selector("status.phase=Active", REGISTRY.by_kind("Namespace")).matches(
        {"status": {"phase": "Active"}})
    assert parse_field_selector("metadata.name=x", REGISTRY.by_kind("Lease")).matches(
        {"metadata": {"name": "x"}})


def test_field_selector_escapes():
    s = parse_field_selector(r"metadata.name=a\,b\=c\\d", POD)
    assert s.matches({"metadata": {"name": "a,b=c\\d"}})
    assert parse_field_selector(str(s), POD) == s


@pytest.mark.parametrize("bad,msg", [
    ("foo=bar", "field label not supported: foo"),
    ("spec.nodeName=a,foo=bar", "field label not supported: foo"),
    ("status.podIP=1", None),  # supported
    ("spec.unschedulable=true", "field label not supported: spec.unschedulable"),
    ("spec.nodeName", "invalid selector"),
    (r"metadata.name=a\b", "invalid escape sequence"),
])
def test_field_selector_errors(bad, msg):
    if msg is None:
        parse_field_selector(bad, POD)
        return
    with pytest.raises(APIError) as ei:
        parse_field_selector(bad, POD)
    assert ei.value.code == errors.BAD_REQUEST
    assert msg in ei.value.message


def test_field_selector_unsupported_for_kind():
    with pytest.raises(APIError, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=x", REGISTRY.by_kind("ConfigMap"))
