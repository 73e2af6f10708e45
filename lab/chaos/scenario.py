"""Chaos scenarios: the YAML schema, parsed and validated.

Contract
--------
``load_scenario(path)`` (or ``parse_scenario(data, base_dir)``) returns a
``Scenario`` or raises ``ScenarioError`` whose message names the field path
(``faults[1].kind``) and the fix. Nothing is started here. The schema::

    name: node-failure              # also the lab's name (lower case, digits, '-')
    duration: 60s                   # bound on the whole run once the lab is up
    lab: {nodes: 3, profile: fast, runtime: fake, zones: 1}
    setup: [web.yaml, {apiVersion: v1, kind: Namespace, ...}]   # paths relative to this file
    load: {http: {service: ns/name, port: 80, path: /, rate: 10, timeout: 1s}}
       or {churn: {deployment: ns/name, interval: 2s, replicas: [2, 4]}}   # scale between
       or {churn: {deployment: ns/name, interval: 2s, restart: true, count: 1}}  # rollouts
    faults:
    - {at: 5s, kind: kill, target: node-2, for: 20s, params: {}}
    - {after: {probe: NAME-or-inline-probe, delay: 1s}, kind: restart, target: apiserver}
    probes:
    - {name: p, type: k8s|http|cmd|log, mode: sot|eot|continuous|onchaos,
       timeout: 5s, retries: 0, interval: 1s, ...type fields}

Durations are ``500ms``, ``5s``, ``2m`` or a number of seconds. ``at`` counts
from the start of the chaos phase (after setup and the start-of-test probes).
Fault kinds are those of ``lab.chaos.kinds.KINDS`` when it imports, else the
list below; a fault's params are checked by its kind (``check``) when it has one.
"""
from __future__ import annotations

import fnmatch  # noqa: F401  (re-exported for probes' glob checks)
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.paths import check_lab_name

KNOWN_KINDS = ("kill", "restart", "pause", "crash-loop", "pod-kill", "node-taint", "node-drain",
               "disk-fill", "memory-pressure", "cpu-stress")
PROBE_TYPES = ("k8s", "http", "cmd", "log", "metric")
AGGREGATES = ("last", "max", "min", "increase", "quantile")
MODES = ("sot", "eot", "continuous", "onchaos")
_DUR = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_COND = re.compile(r"^\s*([A-Za-z_][\w.\[\]=\-/]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")


class ScenarioError(ValueError):
    """An invalid scenario; ``str()`` names the field path and the fix."""


def available_kinds() -> tuple[str, ...]:
    try:
        from lab.chaos.kinds import KINDS   # the chaos core's registry, when present
        return tuple(KINDS)
    except Exception:   # noqa: BLE001 - the core is optional for validation
        return KNOWN_KINDS


def parse_duration(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise ScenarioError(f"{path}: expected a duration like 500ms, 5s or 2m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ScenarioError(f"{path}: a duration cannot be negative, got {value!r}")
        return float(value)
    m = _DUR.match(str(value).strip())
    if not m:
        raise ScenarioError(f"{path}: invalid duration {value!r}: use 500ms, 5s, 2m or a number of seconds")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_condition(text: str, path: str) -> tuple[str, str, str]:
    """``status.availableReplicas>=3`` → (field path, operator, value)."""
    m = _COND.match(str(text))
    if not m:
        raise ScenarioError(f"{path}: invalid condition {text!r}: write FIELD OP VALUE, e.g. "
                            "status.availableReplicas>=3 (OP: ==, !=, >=, <=, >, <)")
    return m.group(1), m.group(2), m.group(3).strip().strip("\"'")


@dataclass
class Probe:
    name: str
    type: str
    mode: str
    timeout: float = 5.0
    retries: int = 0
    interval: float = 1.0
    min_ratio: float = 1.0                                 # continuous, onchaos: share of checks to pass
    spec: dict[str, Any] = field(default_factory=dict)   # the type's own fields
    path: str = ""


@dataclass
class FaultSpec:
    kind: str
    target: str
    at: float | None = None
    after: Probe | None = None
    delay: float = 0.0
    duration: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    path: str = ""


@dataclass
class Scenario:
    name: str
    duration: float
    lab: dict[str, Any]
    setup: list[tuple[str, dict]]          # (source, object)
    load: dict[str, Any] | None
    faults: list[FaultSpec]
    probes: list[Probe]
    source: Path | None = None
    text: str = ""

    def namespaces(self) -> list[str]:
        """Namespaces the scenario touches (setup objects, probes, load), in first-seen order."""
        out: list[str] = []
        for _src, obj in self.setup:
            ns = obj.get("metadata", {}).get("namespace") or (
                obj["metadata"].get("name") if obj.get("kind") == "Namespace" else None)
            if ns and ns not in out:
                out.append(ns)
        for p in self.probes:
            ns = p.spec.get("namespace")
            if ns and ns not in out:
                out.append(ns)
        return out or ["default"]


def _mapping(v: Any, path: str) -> dict:
    if not isinstance(v, dict):
        raise ScenarioError(f"{path}: expected a mapping, got {type(v).__name__}")
    return v


def _only(d: dict, allowed: tuple[str, ...], path: str) -> None:
    for k in d:
        if k not in allowed:
            raise ScenarioError(f"{path}.{k}: unknown field; allowed here: {', '.join(allowed)}"
                                if path else f"{k}: unknown field; allowed here: {', '.join(allowed)}")


def _int(v: Any, path: str, low: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ScenarioError(f"{path}: expected a whole number of at least {low}, got {v!r}")
    return v


def _nsname(v: Any, path: str) -> tuple[str, str]:
    ns, sep, name = str(v).partition("/")
    if not sep or not ns or not name:
        raise ScenarioError(f"{path}: expected NAMESPACE/NAME (e.g. demo/web), got {v!r}")
    return ns, name


_LAB_FIELDS = ("nodes", "profile", "runtime", "zones", "node_cpu", "node_memory",
               "node_ephemeral_storage", "node_pods", "runtime_for")
_PROBE_COMMON = ("name", "type", "mode", "timeout", "retries", "interval", "minSuccessRatio")
_PROBE_FIELDS = {
    "k8s": ("kind", "namespace", "resourceName", "selector", "condition", "operation"),
    "http": ("url", "service", "port", "path", "expect"),
    "cmd": ("command", "expectExit", "expectOutput"),
    "log": ("component", "event", "present", "match", "since"),
    "metric": ("metric", "process", "labels", "aggregate", "quantile", "condition"),
}


def parse_probe(d: Any, path: str, need_mode: bool = True) -> Probe:
    d = _mapping(d, path)
    typ = d.get("type")
    if typ is None:
        raise ScenarioError(f"{path}.type: required; one of {', '.join(PROBE_TYPES)}")
    if typ not in PROBE_TYPES:
        raise ScenarioError(f"{path}.type: unknown probe type {typ!r}; use one of {', '.join(PROBE_TYPES)}")
    _only(d, _PROBE_COMMON + _PROBE_FIELDS[typ], path)
    name = d.get("name")
    if need_mode and not name:
        raise ScenarioError(f"{path}.name: required (a name for the probe in the result)")
    mode = d.get("mode", "eot" if need_mode else "eot")
    if mode not in MODES:
        raise ScenarioError(f"{path}.mode: unknown mode {mode!r}; use one of {', '.join(MODES)}")
    p = Probe(name=str(name or f"{typ}-probe"), type=typ, mode=mode,
              timeout=parse_duration(d.get("timeout", "5s"), f"{path}.timeout"),
              retries=_int(d.get("retries", 0), f"{path}.retries"),
              interval=parse_duration(d.get("interval", "1s"), f"{path}.interval"),
              spec={k: v for k, v in d.items() if k not in _PROBE_COMMON}, path=path)
    r = d.get("minSuccessRatio", 1.0)
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
        raise ScenarioError(f"{path}.minSuccessRatio: expected a number from 0 to 1, got {r!r}")
    if "minSuccessRatio" in d and mode not in ("continuous", "onchaos"):
        raise ScenarioError(f"{path}.minSuccessRatio: only for the continuous and onchaos modes")
    p.min_ratio = float(r)
    s = p.spec
    if typ == "k8s":
        if not s.get("kind"):
            raise ScenarioError(f"{path}.kind: required (e.g. Deployment)")
        if s.get("resourceName") and s.get("selector"):
            raise ScenarioError(f"{path}: give resourceName or selector, not both")
        has_cond, op = "condition" in s, s.get("operation")
        if has_cond == (op is not None):
            raise ScenarioError(f"{path}: give exactly one of condition (e.g. status.availableReplicas>=3) "
                                "or operation (present, absent)")
        if op is not None and op not in ("present", "absent"):
            raise ScenarioError(f"{path}.operation: {op!r} is not one of present, absent")
        if has_cond:
            s["_cond"] = parse_condition(s["condition"], f"{path}.condition")
            if not (s.get("resourceName") or s.get("selector")):
                raise ScenarioError(f"{path}: a condition needs resourceName (the object's name; "
                                    "name is the probe's) or selector")
    elif typ == "http":
        if bool(s.get("url")) == bool(s.get("service")):
            raise ScenarioError(f"{path}: give exactly one of url or service (NAMESPACE/NAME)")
        if s.get("service"):
            _nsname(s["service"], f"{path}.service")
        _int(s.get("expect", 200), f"{path}.expect", 100)
    elif typ == "cmd":
        cmd = s.get("command")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, (str, int, float)) for c in cmd):
            raise ScenarioError(f"{path}.command: expected a non-empty list of strings, e.g. [kemu, get, nodes]")
        _int(s.get("expectExit", 0), f"{path}.expectExit")
        if "expectOutput" in s:
            try:
                re.compile(str(s["expectOutput"]))
            except re.error as e:
                raise ScenarioError(f"{path}.expectOutput: invalid regular expression: {e}") from None
    elif typ == "log":
        if not s.get("event"):
            raise ScenarioError(f"{path}.event: required (a glob, e.g. 'node*NotReady*')")
        if not isinstance(s.get("present", True), bool):
            raise ScenarioError(f"{path}.present: expected true or false")
        if "match" in s:
            _mapping(s["match"], f"{path}.match")
    elif typ == "metric":
        if not s.get("metric"):
            raise ScenarioError(f"{path}.metric: required (a metric name, e.g. process_resident_memory_bytes)")
        agg = s.get("aggregate", "quantile" if "quantile" in s else "last")
        if agg not in AGGREGATES:
            raise ScenarioError(f"{path}.aggregate: unknown aggregate {agg!r}; use one of {', '.join(AGGREGATES)}")
        s["aggregate"] = agg
        if agg == "quantile":
            q = s.get("quantile")
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
                raise ScenarioError(f"{path}.quantile: expected a number between 0 and 1 (e.g. 0.99), got {q!r}")
        if "labels" in s:
            _mapping(s["labels"], f"{path}.labels")
        if "condition" not in s:
            raise ScenarioError(f"{path}.condition: required, on the field value (e.g. value<=0.5)")
        s["_cond"] = parse_condition(s["condition"], f"{path}.condition")
        if s["_cond"][0] != "value":
            raise ScenarioError(f"{path}.condition: a metric probe's condition is on value "
                                f"(e.g. value<=0.5), not {s['_cond'][0]!r}")
    return p


def _parse_fault(d: Any, path: str, probes: dict[str, Probe]) -> FaultSpec:
    d = _mapping(d, path)
    _only(d, ("at", "after", "kind", "target", "for", "params"), path)
    kind = d.get("kind")
    if not kind:
        raise ScenarioError(f"{path}.kind: required (e.g. kill)")
    kinds = available_kinds()
    if kind not in kinds:
        raise ScenarioError(f"{path}.kind: unknown fault kind {kind!r}; known: {', '.join(kinds)}")
    if not d.get("target"):
        raise ScenarioError(f"{path}.target: required (node-3, apiserver, nodes:zone=zone-b, "
                            "nodes:random:2, nodes:minority, or a selector for pod-kill)")
    if ("at" in d) == ("after" in d):
        raise ScenarioError(f"{path}: give exactly one of at (e.g. 5s) or after ({{probe: NAME}})")
    f = FaultSpec(kind=kind, target=str(d["target"]), path=path,
                  params={str(k): str(v) for k, v in
                          _mapping(d.get("params") or {}, f"{path}.params").items()})
    _check_params(kind, f.params, f"{path}.params")
    if "at" in d:
        f.at = parse_duration(d["at"], f"{path}.at")
    else:
        a = _mapping(d["after"], f"{path}.after")
        _only(a, ("probe", "delay"), f"{path}.after")
        ref = a.get("probe")
        if isinstance(ref, str):
            if ref not in probes:
                raise ScenarioError(f"{path}.after.probe: no probe named {ref!r}; declared: "
                                    f"{', '.join(probes) or 'none'}")
            f.after = probes[ref]
        elif isinstance(ref, dict):
            f.after = parse_probe(ref, f"{path}.after.probe", need_mode=False)
        else:
            raise ScenarioError(f"{path}.after.probe: required: a probe's name or an inline probe")
        f.delay = parse_duration(a.get("delay", 0), f"{path}.after.delay")
    if d.get("for") is not None:
        f.duration = parse_duration(d["for"], f"{path}.for")
    return f


def _check_params(kind: str, params: dict[str, str], path: str) -> None:
    try:
        from lab.chaos.kinds import get_kind
        k = get_kind(kind)
    except Exception:   # noqa: BLE001 - the core is optional for validation
        return
    allowed = getattr(k, "params", {}) or {}
    for name in params:
        if name not in allowed:
            raise ScenarioError(f"{path}.{name}: unknown parameter of {kind}; its parameters: "
                                f"{', '.join(allowed) or 'none'}")
    for name in getattr(k, "required", ()):
        if not params.get(name):
            raise ScenarioError(f"{path}.{name}: required by {kind} ({allowed.get(name, '')})")
    check = getattr(k, "check", None)
    if check is not None:
        try:
            check(params)
        except ValueError as e:
            raise ScenarioError(f"{path}: {e}") from None


def _parse_load(d: Any) -> dict[str, Any] | None:
    if d is None:
        return None
    d = _mapping(d, "load")
    if len(d) != 1 or next(iter(d)) not in ("http", "churn"):
        raise ScenarioError("load: give exactly one of http or churn")
    kind, spec = next(iter(d.items()))
    spec = dict(_mapping(spec, f"load.{kind}"))
    p = f"load.{kind}"
    if kind == "http":
        _only(spec, ("service", "url", "port", "path", "rate", "timeout"), p)
        if bool(spec.get("url")) == bool(spec.get("service")):
            raise ScenarioError(f"{p}: give exactly one of service (NAMESPACE/NAME) or url")
        if spec.get("service"):
            _nsname(spec["service"], f"{p}.service")
    else:
        _only(spec, ("deployment", "interval", "replicas", "restart", "count"), p)
        if not isinstance(spec.get("restart", False), bool):
            raise ScenarioError(f"{p}.restart: expected true or false")
        if "count" in spec:
            _int(spec["count"], f"{p}.count", 1)
        if not spec.get("deployment"):
            raise ScenarioError(f"{p}.deployment: required (NAMESPACE/NAME)")
        _nsname(spec["deployment"], f"{p}.deployment")
        reps = spec.get("replicas", [1, 3])
        if not (isinstance(reps, list) and len(reps) == 2 and all(isinstance(x, int) and x >= 0 for x in reps)):
            raise ScenarioError(f"{p}.replicas: expected [MIN, MAX], e.g. [2, 4]")
        spec["replicas"] = reps
        spec["interval"] = parse_duration(spec.get("interval", "2s"), f"{p}.interval")
    rate = spec.get("rate", 10)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        raise ScenarioError(f"{p}.rate: expected a positive number of requests per second, got {rate!r}")
    spec["rate"] = float(rate)
    spec["timeout"] = parse_duration(spec.get("timeout", "1s"), f"{p}.timeout")
    return {"type": kind, **spec}


def _parse_setup(items: Any, base: Path) -> list[tuple[str, dict]]:
    from emulator.cli.manifests import load_manifests
    if items is None:
        return []
    if not isinstance(items, list):
        raise ScenarioError("setup: expected a list of manifest paths or inline objects")
    out: list[tuple[str, dict]] = []
    for i, item in enumerate(items):
        path = f"setup[{i}]"
        if isinstance(item, str):
            p = Path(item) if Path(item).is_absolute() else base / item
            if not p.exists():
                raise ScenarioError(f"{path}: {item!r} does not exist (paths are relative to the "
                                    f"scenario file, here {p})")
            manifests, errors = load_manifests([str(p)])
            if errors:
                raise ScenarioError(f"{path}: {errors[0]}")
            out += [(m.source, m.obj) for m in manifests]
        elif isinstance(item, dict):
            if not item.get("apiVersion") or not item.get("kind") or not (item.get("metadata") or {}).get("name"):
                raise ScenarioError(f"{path}: an inline object needs apiVersion, kind and metadata.name")
            out.append((f"inline {path}", item))
        else:
            raise ScenarioError(f"{path}: expected a path or an object, got {type(item).__name__}")
    return out


def parse_scenario(data: Any, base_dir: Path | str = ".", text: str = "") -> Scenario:
    d = _mapping(data, "scenario")
    _only(d, ("name", "description", "duration", "lab", "setup", "load", "faults", "probes"), "")
    name = d.get("name")
    if not name:
        raise ScenarioError("name: required (lower case letters, digits and '-'; also the lab's name)")
    try:
        check_lab_name(str(name))
    except ValueError as e:
        raise ScenarioError("name: " + str(e).removeprefix("--name: ")) from None
    lab = dict(_mapping(d.get("lab") or {}, "lab"))
    _only(lab, _LAB_FIELDS, "lab")
    lab.setdefault("nodes", 3)
    lab.setdefault("profile", "fast")
    _int(lab["nodes"], "lab.nodes", 1)
    if lab["profile"] not in ("default", "fast"):
        raise ScenarioError(f"lab.profile: unknown profile {lab['profile']!r}; use fast or default")
    if lab.get("runtime", "fake") not in ("fake", "process", "docker"):
        raise ScenarioError(f"lab.runtime: unsupported runtime {lab['runtime']!r}; use fake, process or docker")
    if "zones" in lab:
        lab["zones"] = str(lab["zones"])
    if "duration" not in d:
        raise ScenarioError("duration: required: a bound on the whole run, e.g. 60s")
    duration = parse_duration(d["duration"], "duration")
    if duration <= 0:
        raise ScenarioError("duration: must be more than 0s")
    raw_probes = d.get("probes") or []
    if not isinstance(raw_probes, list):
        raise ScenarioError("probes: expected a list")
    probes = [parse_probe(p, f"probes[{i}]") for i, p in enumerate(raw_probes)]
    by_name: dict[str, Probe] = {}
    for p in probes:
        if p.name in by_name:
            raise ScenarioError(f"{p.path}.name: {p.name!r} is used twice; probe names must be unique")
        by_name[p.name] = p
    raw_faults = d.get("faults") or []
    if not isinstance(raw_faults, list):
        raise ScenarioError("faults: expected a list")
    faults = [_parse_fault(f, f"faults[{i}]", by_name) for i, f in enumerate(raw_faults)]
    base = Path(base_dir)
    return Scenario(name=str(name), duration=duration, lab=lab, setup=_parse_setup(d.get("setup"), base),
                    load=_parse_load(d.get("load")), faults=faults, probes=probes, text=text)


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read the scenario: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{path}:{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    s = parse_scenario(data, p.resolve().parent, text)
    s.source = p
    return s
