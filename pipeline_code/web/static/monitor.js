// The monitoring page of `dataflow up`: snapshots arrive as server-sent
// events (/events) and are drawn with uPlot (vendored beside this file).
"use strict";

const errors = [];
function report(message) {
  errors.push(message);
  document.getElementById("errors").textContent = errors.join("\n");
}
window.addEventListener("error", (e) => report(String(e.message)));
window.addEventListener("unhandledrejection", (e) => report(String(e.reason)));

const CHARTS = {
  "chart-flow": { title: "events per second in · processed per batch", series: [
    ["ingest_per_s", "in /s", "#1f77b4"], ["processed_per_batch", "processed /batch", "#2ca02c"]] },
  "chart-lag": { title: "processing lag: events · seconds", series: [
    ["lag_events", "events", "#ff7f0e"], ["lag_seconds", "seconds (right axis)", "#d62728", "s"]] },
  "chart-freshness": { title: "freshness: event to changed recommendations (ms)", series: [
    ["freshness_ms", "ms", "#9467bd"]] },
  "chart-latency": { title: "latency (ms): API and model server p50 · p99", series: [
    ["api_p50_ms", "API p50", "#17becf"], ["api_p99_ms", "API p99", "#1f77b4"],
    ["model_p50_ms", "model p50", "#bcbd22"], ["model_p99_ms", "model p99", "#8c564b"]] },
};
const plots = {};

function plot(id, spec, series) {
  const data = [series.t, ...spec.series.map(([name]) => series[name])];
  if (plots[id]) {
    plots[id].setData(data);
    return;
  }
  const el = document.getElementById(id);
  // A series may name its own scale (drawn on a right-hand axis): seconds beside events.
  const scales = [...new Set(spec.series.map(([, , , scale]) => scale || "y"))];
  plots[id] = new uPlot({
    title: spec.title,
    width: Math.max(420, el.clientWidth - 12),
    height: 220,
    series: [{}, ...spec.series.map(([, label, stroke, scale]) => (
      { label, stroke, width: 2, spanGaps: false, scale: scale || "y" }))],
    scales: { x: { time: true } },
    axes: [{}, ...scales.map((scale, i) => ({ scale, side: i === 0 ? 3 : 1, grid: { show: i === 0 } }))],
  }, data, el);
}

const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));

function text(id, value) { document.getElementById(id).textContent = value; }

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

async function showPayload(offset) {
  const answer = await fetch(`/dead-letters/${offset}`);
  const body = await answer.json();
  const pre = document.getElementById("payload");
  pre.hidden = false;
  pre.textContent = answer.ok ? `offset ${offset}, ${body.stage}: ${body.reason}\n\n${body.payload_text}` : body.message;
}

function render(s) {
  for (const [id, spec] of Object.entries(CHARTS)) plot(id, spec, s.series);
  const t = s.totals || {};
  text("events-in", fmt(t.log_events));
  text("accounting", `${fmt(t.stored)} · ${fmt(t.duplicates)} · ${fmt(t.dead_letters)}`);
  const lag = s.lag || {};
  text("lag", `${fmt(lag.events)} events · ${lag.seconds == null ? "–" : lag.seconds.toFixed(1)} s`);
  const last = s.series.freshness_ms.filter((v) => v !== null).slice(-1)[0];
  text("freshness", last === undefined ? "–" : `${fmt(Math.round(last))} ms`);
  const m = s.model;
  text("model", m ? m.version : "none yet");
  text("model-metrics", m ? `NDCG@10 ${m.ndcg.toFixed(4)} · baseline ${m.baseline_ndcg.toFixed(4)}` : "");
  const g = s.gate;
  text("gate", g ? g.decision : "–");
  text("gate-reason", g ? g.reason : "");
  const reasons = document.querySelector("#dead-reasons tbody");
  reasons.replaceChildren(...(s.dead_reasons || []).map((r) => row([r.stage, r.reason, fmt(r.rows)])));
  const newest = document.querySelector("#dead-newest tbody");
  newest.replaceChildren(...(s.dead_newest || []).map((d) => {
    const link = document.createElement("a");
    link.href = `/dead-letters/${d.offset}`;
    link.textContent = d.preview;
    link.addEventListener("click", (e) => { e.preventDefault(); showPayload(d.offset).catch(report); });
    const tr = row([d.at, d.stage, d.reason, link]);
    tr.querySelector("td:nth-child(3)").className = "reason";
    return tr;
  }));
}

// ?close_after=N stops listening after N updates (a screenshot, a headless test).
const closeAfter = Number(new URLSearchParams(location.search).get("close_after") || 0);
let updates = 0;
const source = new EventSource("/events");
source.addEventListener("open", () => text("connection", "live"));
source.addEventListener("error", () => text("connection", "reconnecting"));
source.addEventListener("snapshot", (event) => {
  render(JSON.parse(event.data));
  updates += 1;
  text("updates", String(updates));
  document.body.dataset.updates = String(updates);
  if (closeAfter && updates >= closeAfter) {
    source.close();
    text("connection", `closed after ${updates} updates`);
  }
});
