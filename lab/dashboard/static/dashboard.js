// The kemu dashboard page: a "snapshot" from /api/stream, then "delta" events applied on top.
// Read-only; every value from the lab is inserted as text (textContent), never as HTML.
"use strict";

const S = { lab: "", nodes: {}, pods: {}, events: {}, faults: [], windows: {}, samples: [],
            started: 0, skew: 0, status: "connecting", live: false };
const SVG = "http://www.w3.org/2000/svg";
const MAX_EVENT_ROWS = 100;
const TIMELINE_SPAN = 30 * 60;   // seconds shown at most

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function now() { return Date.now() / 1000 + S.skew; }   // the server's clock

function age(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return s + "s";
  if (s < 7200) return s < 600 ? Math.floor(s / 60) + "m" + (s % 60) + "s" : Math.floor(s / 60) + "m";
  return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
}

function applyMap(target, changes) {
  for (const [k, v] of Object.entries(changes || {})) {
    if (v === null) delete target[k]; else target[k] = v;
  }
}

function onSnapshot(d) {
  S.lab = d.lab || ""; S.nodes = d.nodes || {}; S.pods = d.pods || {}; S.events = d.events || {};
  S.faults = d.faults || []; S.samples = d.samples || []; S.started = d.started || now();
  S.windows = {}; for (const w of d.windows || []) S.windows[w.id] = w;
  S.status = d.status || ""; S.skew = d.now - Date.now() / 1000;
  render();
}

function onDelta(d) {
  applyMap(S.nodes, d.nodes); applyMap(S.pods, d.pods); applyMap(S.events, d.events);
  if (d.faults) S.faults = d.faults;
  for (const w of d.windows || []) S.windows[w.id] = w;
  if (d.samples) S.samples.push(...d.samples);
  if (S.samples.length > 20000) S.samples.splice(0, S.samples.length - 20000);
  if (d.status !== undefined) S.status = d.status;
  if (d.now) S.skew = d.now - Date.now() / 1000;
  scheduleRender();
}

let renderPending = false;
function scheduleRender() {   // a burst of deltas (a relist, a rollout) is drawn once
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => { renderPending = false; render(); }, 30);
}

function render() {
  document.getElementById("lab").textContent = S.lab;
  document.title = "kemu " + S.lab;
  renderSummary(); renderNodes(); renderFaults(); renderEvents(); drawTimeline();
}

function renderSummary() {
  const nodes = Object.values(S.nodes), pods = Object.values(S.pods);
  const ready = nodes.filter(n => n.ready === "True").length;
  const running = pods.filter(p => p.phase === "Running").length;
  document.getElementById("summary").textContent =
    `${ready}/${nodes.length} nodes Ready · ${running}/${pods.length} pods Running · ` +
    `${S.faults.length} active fault${S.faults.length === 1 ? "" : "s"}`;
  const c = document.getElementById("connection");
  c.dataset.state = !S.live ? "down" : S.status === "watching" ? "live"
    : (S.status === "connecting" || S.status === "rewatching") ? "connecting" : "down";
  c.textContent = !S.live ? "disconnected: reconnecting" : (S.status === "watching" ? "live" : S.status);
}

function podItem(p) {
  const li = el("li", { "data-pod": p.namespace + "/" + p.name, "data-phase": p.phase,
                        "data-ready": String(!!p.ready), "data-deleting": String(!!p.deleting) },
                (p.namespace === "default" ? "" : p.namespace + "/") + p.name);
  li.title = `${p.namespace}/${p.name}: ${p.phase}${p.reason ? " (" + p.reason + ")" : ""}` +
             `${p.ready ? ", Ready" : ""}${p.deleting ? ", terminating" : ""}`;
  return li;
}

function byName(a, b) { return a.name.localeCompare(b.name, undefined, { numeric: true }); }

function renderNodes() {
  const onNode = {}, unscheduled = [];
  for (const p of Object.values(S.pods)) {
    if (p.node) (onNode[p.node] = onNode[p.node] || []).push(p); else unscheduled.push(p);
  }
  const grid = document.getElementById("nodes");
  const cells = [];
  for (const n of Object.values(S.nodes).sort(byName)) {
    const cell = el("div", { class: "node", "data-node": n.name, "data-status": n.status, "data-ready": n.ready });
    cell.appendChild(el("div", { class: "name" }, n.name));
    const cond = [n.ready === "True" ? "Ready" : (n.ready === "Unknown" ? "Unknown" : "NotReady")]
      .concat(n.pressure || []).concat(n.unschedulable ? ["SchedulingDisabled"] : []);
    cell.appendChild(el("div", { class: "cond" }, cond.join(", ") + (n.zone ? " · " + n.zone : "")));
    const ul = el("ul", { class: "pods" });
    for (const p of (onNode[n.name] || []).sort(byName)) ul.appendChild(podItem(p));
    cell.appendChild(ul);
    cells.push(cell);
  }
  grid.replaceChildren(...cells);
  const un = document.getElementById("unscheduled");
  un.replaceChildren(...unscheduled.sort(byName).map(podItem));
  document.getElementById("unscheduled-wrap").hidden = unscheduled.length === 0;
}

function renderFaults() {
  const t = now();
  const rows = S.faults.slice().sort((a, b) => a.injected_at - b.injected_at).map(f => {
    const tr = el("tr", { "data-fault": f.id, "data-kind": f.kind });
    for (const v of [f.id, f.kind, f.target, (f.targets || []).join(","), age(t - f.injected_at),
                     f.expires_at ? age(f.expires_at - t) : "until healed"]) tr.appendChild(el("td", {}, v));
    return tr;
  });
  document.querySelector("#faults tbody").replaceChildren(...rows);
  document.getElementById("no-faults").hidden = rows.length > 0;
}

function eventTime(e) { const t = Date.parse(e.lastTimestamp); return isNaN(t) ? 0 : t / 1000; }

function renderEvents() {
  const t = now();
  const evs = Object.values(S.events).sort((a, b) => eventTime(b) - eventTime(a)).slice(0, MAX_EVENT_ROWS);
  const rows = evs.map(e => {
    const tr = el("tr", { class: e.type, "data-reason": e.reason });
    const seen = eventTime(e) ? age(t - eventTime(e)) : "-";
    for (const v of [seen, e.type, e.reason, e.object, e.message + (e.count > 1 ? ` (x${e.count})` : "")])
      tr.appendChild(el("td", {}, v));
    return tr;
  });
  document.querySelector("#events tbody").replaceChildren(...rows);
  document.getElementById("no-events").hidden = rows.length > 0;
}

function clock(t) { return new Date(t * 1000).toTimeString().slice(0, 8); }

function stepPath(points, x, y) {
  let d = "";
  points.forEach(([t, v], i) => { d += i === 0 ? `M${x(t)},${y(v)}` : `H${x(t)}V${y(v)}`; });
  return d;
}

function drawTimeline() {
  const box = document.getElementById("timeline");
  const W = box.clientWidth || 800, H = box.clientHeight || 230;
  const L = 36, R = 12, T = 22, B = 22;
  const t1 = now(), t0 = Math.max(S.started || t1, t1 - TIMELINE_SPAN, (S.samples[0] || [t1])[0]);
  const span = Math.max(t1 - t0, 10);
  // the value at t0 is the last sample at or before it; the lines run on to now
  let first = 0;
  while (first + 1 < S.samples.length && S.samples[first + 1][0] <= t0) first++;
  const shown = S.samples.slice(first).map(s => [Math.max(s[0], t0), s[1], s[2]]);
  if (shown.length) shown.push([t1, shown[shown.length - 1][1], shown[shown.length - 1][2]]);
  const top = Math.max(1, ...shown.map(s => Math.max(s[1], s[2])));
  const x = t => L + (t - t0) / span * (W - L - R);
  const y = v => T + (1 - v / (top * 1.1)) * (H - T - B);
  const parts = [];
  for (const w of Object.values(S.windows)) {
    const a = Math.max(w.start, t0), b = w.end === null ? t1 : w.end;
    if (b < t0) continue;
    parts.push(svg("rect", { class: "window", "data-fault": w.id, x: x(a), y: T, width: Math.max(2, x(b) - x(a)), height: H - T - B }));
    parts.push(svg("text", { class: "window-label", x: x(a) + 3, y: T - 6 }, `${w.id} ${w.kind} ${w.target}`));
  }
  parts.push(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  parts.push(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const v of [0, Math.round(top / 2), top]) {
    parts.push(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + span * i / 4;
    parts.push(svg("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : (i === 4 ? "end" : "middle") }, clock(t)));
  }
  parts.push(svg("path", { class: "running-line", d: stepPath(shown.map(s => [s[0], s[2]]), x, y) }));
  parts.push(svg("path", { class: "ready-line", d: stepPath(shown.map(s => [s[0], s[1]]), x, y) }));
  parts.push(svg("text", { x: W - R, y: 12, "text-anchor": "end" }, "— Ready nodes (green) · Running pods (blue) · faults shaded"));
  box.replaceChildren(...parts);
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("snapshot", e => { S.live = true; onSnapshot(JSON.parse(e.data)); });
  es.addEventListener("delta", e => onDelta(JSON.parse(e.data)));
  es.onerror = () => { S.live = false; renderSummary(); };   // EventSource reconnects by itself
}

window.addEventListener("DOMContentLoaded", () => {
  connect();
  // the lines and ages run on between changes: redraw from what the page already has
  setInterval(() => { drawTimeline(); renderFaults(); renderEvents(); }, 1000);
  window.addEventListener("resize", drawTimeline);
});
