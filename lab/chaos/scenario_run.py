"""``kemu chaos run``: run a ``Scenario`` in its own lab and decide a verdict.

Contract
--------
``run_scenario(scenario, out=None, chaos_for=None, say=print) -> dict`` (the
result) does, in order, bounded by ``scenario.duration`` once the lab is up:

1. starts the lab (``Lab(name=scenario.name, make_current=False, ...)``,
   under ``$KEMU_HOME`` as every lab) and applies the setup objects (create,
   or update when they exist);
2. runs the start-of-test (``sot``) probes;
3. starts the load (a bounded thread: HTTP requests at ``rate`` per second,
   or Deployment churn), the ``continuous`` probes and the ``onchaos`` probes
   (checked only while a fault is active), each in its own thread with its
   own client;
4. the chaos phase: injects each fault at ``at`` (from the phase's start) or
   once its ``after`` probe passes (plus ``delay``), through
   ``chaos.inject(kind, target, **params)``, and heals the ones with ``for``
   when that has passed. The phase ends when every fault is injected and
   every timed one healed, or when the duration runs out (faults not yet
   injected are then reported as skipped, and fail the verdict);
5. runs the end-of-test (``eot``) probes (faults without ``for`` still hold),
   stops the threads, heals every fault (always, errors included), saves the
   final objects, takes the lab down, and writes the run directory: ``out``,
   default ``<labdir>/../runs/<name>-<UTC timestamp>``, holding
   ``scenario.yaml``, ``result.json``, ``timeline.jsonl`` (the merged log),
   ``objects.yaml`` (Nodes, and the namespaces used) and ``load.jsonl``; then
   ``lab.report.generate`` writes ``report/`` in it (a failure there is a
   warning, never a change of the verdict).

The verdict is ``pass`` when every probe passed, every fault was injected
and the lab came up; otherwise ``fail``. A continuous or onchaos probe passes
when its share of passing checks is at least ``minSuccessRatio`` (1 unless
given) and it ran at least once. ``chaos_for(lab)`` returns the object with
``inject``/``heal`` (default ``lab.chaos``), so tests can pass a fake.

``lab=`` runs the scenario on a lab that is already up (``make demo`` does):
steps 1's start and 5's ``down`` are skipped (the setup is still applied), the
scenario's ``lab`` section is not used, and the lab is left running.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from lab.chaos.probes import ProbeContext, _http_url, attempt, http_get
from lab.chaos.scenario import Probe, Scenario

OBJECT_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Pod", "Service",
                "EndpointSlice", "ConfigMap", "PersistentVolumeClaim", "PodDisruptionBudget", "Event")


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_chaos(lab: Any) -> Any:
    chaos = getattr(lab, "chaos", None)
    if chaos is None:
        from lab.chaos import Chaos   # type: ignore[attr-defined]
        chaos = Chaos(lab)
    return chaos


class _Run:
    def __init__(self, sc: Scenario, lab: Any, chaos: Any, say: Callable[[str], None], started: float) -> None:
        self.sc, self.lab, self.chaos, self.say = sc, lab, chaos, say
        self.stop = threading.Event()
        self.active = 0                      # faults in effect (onchaos probes look at it)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.deadline = self.t0 + sc.duration
        self.chaos_start = self.t0
        self.result: dict[str, Any] = {"probes": [], "faults": [], "load": None, "errors": []}
        self.load_records: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []
        self.since = rfc3339(started)   # log probes look at the whole run, the lab's start included

    def rel(self) -> float:
        return round(time.monotonic() - self.chaos_start, 3)

    def ctx(self, client: Any = None) -> ProbeContext:
        return ProbeContext(client=client or self.lab.client, logs=self.lab.layout.logs, since=self.since,
                            env={"KEMU_SERVER": self.lab.server})

    def new_client(self) -> Any:
        from emulator.client import Client
        return Client(self.lab.server, component="chaos-runner", lab=self.lab.name, timeout=5, retries=3)

    # -- setup ---------------------------------------------------------------
    def apply_setup(self) -> None:
        c = self.lab.client
        for src, obj in self.sc.setup:
            md = obj.get("metadata") or {}
            try:
                c.create(obj, md.get("namespace"))
            except Exception as e:   # noqa: BLE001
                if getattr(e, "code", "") != "AlreadyExists":
                    raise RuntimeError(f"setup: {src}: {obj.get('kind')} {md.get('name')}: {e}") from None
                cur = c.get(obj["kind"], md["name"], md.get("namespace"))
                new = dict(obj, metadata={**md, "resourceVersion": cur["metadata"]["resourceVersion"]})
                c.update(new)

    # -- probes --------------------------------------------------------------
    def run_once(self, p: Probe) -> dict[str, Any]:
        ok, detail, n = attempt(p, self.ctx(), self.stop, self.deadline)
        rec = {"name": p.name, "type": p.type, "mode": p.mode, "ok": ok, "detail": detail,
               "attempts": n, "at": self.rel()}
        self.say(f"  probe {p.name} ({p.mode}): {'pass' if ok else 'FAIL'}: {detail}")
        self.result["probes"].append(rec)
        return rec

    def start_watchers(self) -> None:
        for p in self.sc.probes:
            if p.mode in ("continuous", "onchaos"):
                rec = {"name": p.name, "type": p.type, "mode": p.mode, "ok": False, "checks": 0,
                       "passes": 0, "detail": "not run", "failures": []}
                self.result["probes"].append(rec)
                self._thread(self._watch, p, rec)

    def _watch(self, p: Probe, rec: dict[str, Any]) -> None:
        client = self.new_client()
        try:
            ctx = self.ctx(client)
            while not self.stop.is_set():
                if p.mode == "continuous" or self.active > 0:
                    ok, detail, _n = attempt(p, ctx, self.stop, self.deadline)
                    if self.stop.is_set() and not ok:
                        break   # cut short by the end of the run: not a verdict
                    rec["checks"] += 1
                    rec["passes"] += ok
                    if not ok and len(rec["failures"]) < 20:
                        rec["failures"].append({"at": self.rel(), "detail": detail})
                    rec["detail"] = detail
                self.stop.wait(p.interval)
        finally:
            client.close()

    def finish_watchers(self) -> None:
        for rec in self.result["probes"]:
            if rec["mode"] not in ("continuous", "onchaos"):
                continue
            p = next(p for p in self.sc.probes if p.name == rec["name"])
            want = p.min_ratio
            ratio = rec["passes"] / rec["checks"] if rec["checks"] else 0.0
            rec["ratio"] = round(ratio, 4)
            rec["ok"] = rec["checks"] > 0 and ratio >= want
            if not rec["checks"]:
                rec["detail"] = "never ran" + (" (no fault was active)" if p.mode == "onchaos" else "")
            else:
                last = rec["detail"]
                rec["detail"] = f"{rec['passes']}/{rec['checks']} checks passed (want ratio >= {want:g})"
                if not rec["ok"]:
                    rec["detail"] += f"; last: {last}"
            self.say(f"  probe {p.name} ({p.mode}): {'pass' if rec['ok'] else 'FAIL'}: {rec['detail']}")

    # -- load ----------------------------------------------------------------
    def start_load(self) -> None:
        spec = self.sc.load
        if not spec:
            return
        stats = {"type": spec["type"], "sent": 0, "ok": 0, "failed": 0,
                 "first_failure_s": None, "last_failure_s": None}
        self.result["load"] = stats
        self._thread(self._http_load if spec["type"] == "http" else self._churn, spec, stats)

    def _record(self, stats: dict[str, Any], ok: bool, detail: str) -> None:
        at = self.rel()
        with self.lock:
            stats["sent"] += 1
            if ok:
                stats["ok"] += 1
            else:
                stats["failed"] += 1
                stats["first_failure_s"] = stats["first_failure_s"] if stats["first_failure_s"] is not None else at
                stats["last_failure_s"] = at
            if len(self.load_records) < 100_000:
                self.load_records.append({"ts": rfc3339(time.time()), "at": at, "ok": ok, "detail": detail})

    def _http_load(self, spec: dict[str, Any], stats: dict[str, Any]) -> None:
        client = self.new_client()
        try:
            url = _http_url(spec, self.ctx(client))
        except Exception as e:   # noqa: BLE001
            self._record(stats, False, f"cannot resolve the target: {e}")
            client.close()
            return
        client.close()
        stats["url"] = url
        period = 1.0 / spec["rate"]
        nxt = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                code = http_get(url, spec["timeout"])
                self._record(stats, code < 500, str(code))
            except Exception as e:   # noqa: BLE001
                self._record(stats, False, f"{type(e).__name__}: {e}")
            nxt += period
            self.stop.wait(max(0.0, nxt - time.monotonic()))

    def _churn(self, spec: dict[str, Any], stats: dict[str, Any]) -> None:
        ns, _, name = spec["deployment"].partition("/")
        lo, hi = spec["replicas"]
        client = self.new_client()
        n = 0
        try:
            while not self.stop.wait(spec["interval"]) and time.monotonic() < self.deadline \
                    and n < spec.get("count", 1 << 30):
                n += 1
                if spec.get("restart"):   # a rollout, as 'kubectl rollout restart' starts one
                    patch = {"spec": {"template": {"metadata": {"annotations": {
                        "kubectl.kubernetes.io/restartedAt": rfc3339(time.time())}}}}}
                    what = "rollout restart"
                else:
                    want = hi if n % 2 else lo
                    patch, what = {"spec": {"replicas": want}}, f"replicas={want}"
                try:
                    client.patch("Deployment", name, patch, ns)
                    self._record(stats, True, what)
                except Exception as e:   # noqa: BLE001
                    self._record(stats, False, f"{type(e).__name__}: {e}")
        finally:
            client.close()

    def _thread(self, fn: Callable[..., None], *args: Any) -> None:
        def body() -> None:
            try:
                fn(*args)
            except Exception as e:   # noqa: BLE001 - a crashed thread fails the run, loudly
                self.result["errors"].append(f"{fn.__name__}: {type(e).__name__}: {e}")
                self.say(f"  error in {fn.__name__}: {e}")
        t = threading.Thread(target=body, daemon=True)
        t.start()
        self.threads.append(t)

    # -- faults --------------------------------------------------------------
    def chaos_phase(self) -> None:
        self.chaos_start = time.monotonic()
        pending = list(enumerate(self.sc.faults))
        recs = {i: {"index": i, "kind": f.kind, "target": f.target, "params": f.params, "for_s": f.duration,
                    "state": "pending"} for i, f in pending}
        self.result["faults"] = [recs[i] for i, _ in pending]
        ready_at: dict[int, float] = {}
        next_check: dict[int, float] = {}
        timed: list[tuple[float, int, Any]] = []   # (heal at, index, fault)
        ctx = None
        while (pending or timed) and not self.stop.is_set():
            now = time.monotonic()
            if now >= self.deadline:
                break
            for i, f in list(pending):
                due = None
                if f.at is not None:
                    due = self.chaos_start + f.at
                elif i in ready_at:
                    due = ready_at[i]
                elif now >= next_check.get(i, 0.0):
                    ctx = ctx or self.ctx()
                    from lab.chaos.probes import check
                    ok, detail = check(f.after, ctx)
                    recs[i]["after"] = detail
                    if ok:
                        ready_at[i] = due = time.monotonic() + f.delay
                    next_check[i] = time.monotonic() + f.after.interval
                if due is not None and time.monotonic() >= due:
                    pending.remove((i, f))
                    fault = self.inject(f, recs[i])
                    if fault is not None and f.duration is not None:
                        timed.append((time.monotonic() + f.duration, i, fault))
            for item in list(timed):
                if time.monotonic() >= item[0]:
                    timed.remove(item)
                    self.heal(item[2], recs[item[1]])
            self.stop.wait(0.02)
        for i, _f in pending:
            recs[i]["state"] = "skipped"
            recs[i]["error"] = "not injected: the scenario's duration ran out first"
            self.say(f"  fault {i} ({recs[i]['kind']} {recs[i]['target']}): SKIPPED, the duration ran out")
        for _at, i, fault in timed:
            self.heal(fault, recs[i])

    def inject(self, f: Any, rec: dict[str, Any]) -> Any:
        rec["injected_s"] = self.rel()
        try:
            fault = self.chaos.inject(f.kind, f.target, **f.params)
        except Exception as e:   # noqa: BLE001
            rec["state"] = "error"
            rec["error"] = f"{type(e).__name__}: {e}"
            self.say(f"  fault {rec['index']} {f.kind} {f.target}: ERROR: {e}")
            return None
        with self.lock:
            self.active += 1
        rec.update(state="active", id=getattr(fault, "id", None),
                   targets=list(getattr(fault, "targets", None) or []), injected_at=getattr(fault, "injected_at", None))
        self.say(f"  +{rec['injected_s']:.1f}s fault {rec.get('id') or rec['index']}: {f.kind} {f.target} "
                 f"{rec['targets'] or ''}".rstrip())
        rec["_fault"] = fault
        return fault

    def heal(self, fault: Any, rec: dict[str, Any]) -> None:
        rec.pop("_fault", None)
        try:
            if callable(getattr(fault, "heal", None)):
                fault.heal()   # not an error when it is healed already (instant kinds)
            else:
                self.chaos.heal(fault.id, missing_ok=True)
            rec["state"] = "healed"
        except Exception as e:   # noqa: BLE001
            rec["state"] = "heal-error"
            rec["error"] = f"heal: {type(e).__name__}: {e}"
        rec["healed_s"] = self.rel()
        with self.lock:
            self.active -= 1
        self.say(f"  +{rec['healed_s']:.1f}s healed {rec.get('id') or rec['index']} ({rec['state']})")

    def heal_all(self) -> None:
        for rec in self.result["faults"]:
            fault = rec.get("_fault")
            if fault is not None:
                self.heal(fault, rec)
        try:
            self.chaos.heal()
        except Exception as e:   # noqa: BLE001
            self.result["errors"].append(f"heal all: {type(e).__name__}: {e}")


def _objects(lab: Any, namespaces: list[str]) -> list[dict]:
    c = lab.client
    out: list[dict] = []
    try:
        out += c.list("Node")["items"]
    except Exception:   # noqa: BLE001
        pass
    for ns in namespaces:
        for kind in OBJECT_KINDS:
            try:
                out += [dict(o, kind=kind) for o in c.list(kind, ns)["items"]]
            except Exception:   # noqa: BLE001 - a kind this apiserver does not serve
                pass
    return out


def run_scenario(sc: Scenario, out: str | Path | None = None, *, chaos_for: Callable[[Any], Any] | None = None,
                 say: Callable[[str], None] = print, lab_dir: str | Path | None = None,
                 lab: Any = None) -> dict[str, Any]:
    from lab.lab import Lab
    own_lab = lab is None
    opts = {k: v for k, v in sc.lab.items()} if own_lab else {"nodes": len(lab.nodes),
                                                              "profile": lab.config.profile}
    if own_lab:
        lab = Lab(name=sc.name, make_current=False, dir=lab_dir, **opts)
    started = time.time()
    stamp = datetime.fromtimestamp(started, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(out) if out else lab.layout.root.parent / "runs" / f"{sc.name}-{stamp}"
    say(f"scenario {sc.name}: lab of {opts.get('nodes')} node(s), profile {opts.get('profile')}, "
        f"bound {sc.duration:g}s")
    run: _Run | None = None
    objects: list[dict] = []
    errors: list[str] = []
    try:
        if own_lab:
            lab.up()
        run = _Run(sc, lab, (chaos_for or default_chaos)(lab), say, started)
        run.apply_setup()
        for p in sc.probes:
            if p.mode == "sot":
                run.run_once(p)
        run.start_load()
        run.start_watchers()
        run.chaos_phase()
        for p in sc.probes:
            if p.mode == "eot":
                run.run_once(p)
    except Exception as e:   # noqa: BLE001 - recorded, the verdict fails, cleanup still runs
        errors.append(f"{type(e).__name__}: {e}")
        say(f"  error: {e}")
    finally:
        if run is not None:
            run.stop.set()
            for t in run.threads:
                t.join(15)
            try:
                run.heal_all()
            finally:
                run.finish_watchers()
            try:
                objects = _objects(lab, sc.namespaces())
            except Exception as e:   # noqa: BLE001
                errors.append(f"saving the objects: {e}")
        if own_lab:
            lab.down()
    res: dict[str, Any] = {"name": sc.name, "started": rfc3339(started), "ended": rfc3339(time.time()),
                           "duration_s": round(time.time() - started, 3),
                           "lab": {"name": lab.name, "dir": str(lab.layout.root), **opts},
                           "probes": [], "faults": [], "load": None, "errors": errors}
    if run is not None:
        res.update(probes=run.result["probes"], faults=run.result["faults"], load=run.result["load"])
        errors += run.result["errors"]
    for f in res["faults"]:
        f.pop("_fault", None)
    ok = (not errors and all(p["ok"] for p in res["probes"])
          and all(f["state"] in ("healed", "active") for f in res["faults"]))
    res["verdict"] = "pass" if ok else "fail"
    res["run_dir"] = str(out_dir)
    _write(out_dir, sc, res, lab, objects, run.load_records if run else [])
    try:   # the report never changes the verdict
        from lab.report import generate
        generate(out_dir)
        say(f"report: {out_dir / 'report' / 'report.html'}")
    except Exception as e:   # noqa: BLE001
        say(f"  warning: no report: {type(e).__name__}: {e}")
    say(f"verdict: {res['verdict'].upper()} ({sum(p['ok'] for p in res['probes'])}/{len(res['probes'])} "
        f"probes passed, {len(res['faults'])} fault(s)" +
        (f", load {res['load']['ok']}/{res['load']['sent']} ok" if res["load"] else "") + f"); run directory {out_dir}")
    return res


def _write(out_dir: Path, sc: Scenario, res: dict, lab: Any, objects: list[dict], load: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scenario.yaml").write_text(sc.text or yaml.safe_dump({"name": sc.name}))
    (out_dir / "result.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    from lab.logs import timeline
    with open(out_dir / "timeline.jsonl", "w") as f:
        if lab.layout.logs.is_dir():
            for _rec, raw in timeline(lab.layout.logs):
                f.write(raw + "\n")
    (out_dir / "objects.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    with open(out_dir / "load.jsonl", "w") as f:
        for r in load:
            f.write(json.dumps(r) + "\n")
