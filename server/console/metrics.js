// metrics.js - the Server view: polls GET /metrics (Prometheus text) every 2 s and shows
// requests/s, /predict latency p50/p99 (from the histogram, interpolated within buckets as
// Prometheus' histogram_quantile does), queue depth, batch sizes, resident adapters, memory
// and training, over the last minute, with five minutes of history as charts; and the model
// and limits from GET /info.

import { api, info } from "./api.js";
import { barList, lineChart } from "./chart.js";
import { $, h, status, errorText, fmtBytes, fmtNum, fmtDuration, poller } from "./ui.js";

const POLL_MS = 2000, WINDOW_S = 60, HISTORY_S = 300;
let samples = []; // {t (s), m: [{name, labels, value}]}, oldest first
let history = []; // {t, rps, rpsPredict, p50, p99} per poll interval
const poll = poller(refresh, POLL_MS);

export function show() {
  poll.start();
  showInfo();
}

export const hide = () => poll.stop();

// ==== Prometheus text ====

export function parse(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    const v = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

// Mean of a histogram since start (its _sum over its _count); NaN before any observation.
const meanOf = (ms, name) => sum(ms, name + "_sum") / sum(ms, name + "_count");

// Sum of the samples named name whose labels include every pair of want.
function sum(ms, name, want = {}) {
  let s = 0;
  for (const x of ms) if (x.name === name && Object.entries(want).every(([k, v]) => x.labels[k] === v)) s += x.value;
  return s;
}

// Cumulative buckets [[le, count], ...] of a histogram, sorted by le.
function buckets(ms, name, want = {}) {
  return ms.filter((x) => x.name === name + "_bucket" && Object.entries(want).every(([k, v]) => x.labels[k] === v))
    .map((x) => [x.labels.le === "+Inf" ? Infinity : Number(x.labels.le), x.value]).sort((a, b) => a[0] - b[0]);
}

// Bucket counts of b (newer) minus a (older), for a quantile over the interval.
function delta(b, a) {
  return b.map(([le, c], i) => [le, c - (a[i] ? a[i][1] : 0)]);
}

// histogram_quantile: linear interpolation inside the bucket holding the q-th rank; a rank in
// the +Inf bucket answers the highest finite bound. NaN when the histogram is empty.
export function quantile(q, bk) {
  const total = bk.length ? bk[bk.length - 1][1] : 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let prevLe = 0, prevC = 0;
  for (const [le, c] of bk) {
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevC)) / Math.max(c - prevC, 1e-12);
    }
    prevLe = le;
    prevC = c;
  }
  return prevLe;
}

// ==== Polling ====

async function refresh() {
  let text;
  try {
    text = await api("GET", "/metrics", { as: "text" });
  } catch (e) {
    status($("#server-status"), "error", "Cannot read /metrics: " + errorText(e));
    return;
  }
  status($("#server-status"), "", "");
  const now = { t: performance.now() / 1000, m: parse(text) };
  const prev = samples[samples.length - 1];
  // A restarted server starts its counters again: forget the older samples.
  if (prev && sum(now.m, "peftd_uptime_seconds") < sum(prev.m, "peftd_uptime_seconds")) samples = [];
  samples.push(now);
  samples = samples.filter((s) => s.t >= now.t - HISTORY_S);
  if (samples.length > 1) history.push({ t: now.t, ...rates(samples[samples.length - 2], now) });
  history = history.filter((p) => p.t >= now.t - HISTORY_S);
  render(now);
}

// Rates and latency quantiles between two samples.
function rates(a, b) {
  const dt = b.t - a.t;
  const lat = delta(buckets(b.m, "peftd_request_duration_seconds", { route: "/predict" }),
    buckets(a.m, "peftd_request_duration_seconds", { route: "/predict" }));
  return {
    dt,
    rps: (sum(b.m, "peftd_requests_total") - sum(a.m, "peftd_requests_total")) / dt,
    rpsPredict: (sum(b.m, "peftd_requests_total", { route: "/predict" }) - sum(a.m, "peftd_requests_total", { route: "/predict" })) / dt,
    tokens: (sum(b.m, "peftd_tokens_total") - sum(a.m, "peftd_tokens_total")) / dt,
    batches: sum(b.m, "peftd_batch_size_count") - sum(a.m, "peftd_batch_size_count"),
    batchInputs: sum(b.m, "peftd_batch_size_sum") - sum(a.m, "peftd_batch_size_sum"),
    p50: quantile(0.5, lat) * 1000,
    p99: quantile(0.99, lat) * 1000,
  };
}

function render(now) {
  const m = now.m;
  const first = samples.find((s) => s.t >= now.t - WINDOW_S);
  const w = first !== now ? rates(first, now) : null;
  const span = w ? `over the last ${Math.round(w.dt)} s` : "measuring…";
  // Latency: the window's, else since start, else nothing yet.
  let p50 = w ? w.p50 : NaN, p99 = w ? w.p99 : NaN, latNote = span;
  if (Number.isNaN(p50)) {
    const all = buckets(m, "peftd_request_duration_seconds", { route: "/predict" });
    p50 = quantile(0.5, all) * 1000;
    p99 = quantile(0.99, all) * 1000;
    latNote = Number.isNaN(p50) ? "no predictions yet" : w ? `since start (none ${span})` : "since start";
  }
  const ms = (v) => (Number.isNaN(v) ? "—" : fmtNum(v, 3) + " ms");
  const cards = [
    ["rps", "Requests/s", w ? fmtNum(w.rps, 3) : "—", w ? `${fmtNum(w.rpsPredict, 3)}/s on /predict, ${span}` : span],
    ["latency", "/predict latency p50 / p99", `${ms(p50)} / ${ms(p99)}`, latNote],
    ["queue", "Queue depth", fmtNum(sum(m, "peftd_queue_depth")), `inputs waiting or running; ${fmtNum(sum(m, "peftd_rejected_inputs_total"))} rejected (503) since start`],
    ["batch", "Mean batch size", w && w.batches > 0 ? fmtNum(w.batchInputs / w.batches, 3) : "—", w ? `inputs per forward pass; ${fmtNum(w.tokens, 3)} tokens/s` : span],
    ["adapters", "Resident adapters", `${fmtNum(sum(m, "peftd_adapters_resident"))} of ${fmtNum(sum(m, "peftd_adapters_registered"))}`,
      `${fmtBytes(sum(m, "peftd_adapters_resident_bytes"))} in memory; ${fmtNum(sum(m, "peftd_adapter_loads_total"))} loads, ${fmtNum(sum(m, "peftd_adapter_evictions_total"))} evictions`],
    ["wait", "Queue wait / batch compute", `${ms(meanOf(m, "peftd_queue_wait_seconds") * 1000)} / ${ms(meanOf(m, "peftd_batch_duration_seconds") * 1000)}`,
      "mean since start: an input's wait for its batch, a batch's forward pass"],
    ["memory", "Memory (RSS)", fmtBytes(sum(m, "peftd_resident_memory_bytes")), "resident set of the process"],
    ["training", "Training jobs", `${fmtNum(sum(m, "peftd_training_jobs", { state: "running" }))} running, ${fmtNum(sum(m, "peftd_training_jobs", { state: "queued" }))} queued`,
      ["succeeded", "failed", "cancelled"].map((s) => `${fmtNum(sum(m, "peftd_training_jobs_finished_total", { status: s }))} ${s}`).join(", ") +
        `; ${fmtNum(sum(m, "peftd_training_steps_total"))} steps`],
    ["uptime", "Uptime", fmtDuration(sum(m, "peftd_uptime_seconds")), sum(m, "peftd_ready") ? "ready" : "loading the model"],
  ];
  $("#server-cards").replaceChildren(...cards.map(([key, title, big, sub]) =>
    h("div", { class: "card" }, h("dt", {}, title), h("dd", { class: "big", "data-metric": key }, big), h("dd", { class: "sub" }, sub))));

  const t0 = now.t;
  const pts = (f) => history.filter((p) => Number.isFinite(p[f])).map((p) => [Math.round(p.t - t0), p[f]]);
  lineChart($("#rate-chart"), [{ name: "all routes", points: pts("rps") }, { name: "/predict", points: pts("rpsPredict") }],
    { xLabel: "seconds (0 = now)", yLabel: "requests/s", yMin: 0, title: "Requests per second" });
  lineChart($("#latency-chart"), [{ name: "p50", points: pts("p50") }, { name: "p99", points: pts("p99") }],
    { xLabel: "seconds (0 = now)", yLabel: "ms", yMin: 0, title: "/predict latency" });

  // Answered predictions per adapter (the server's top 20, .other, .base), most first.
  const per = m.filter((x) => x.name === "peftd_adapter_requests_total" && x.value > 0).sort((x, y) => y.value - x.value);
  barList($("#adapter-bars"), per.map((x) => ({ label: x.labels.adapter, value: x.value, text: fmtNum(x.value) + (x.value === 1 ? " request" : " requests") })));
  if (!per.length) $("#adapter-bars").replaceChildren(h("p", { class: "muted" }, "no predictions yet"));

  // Batch sizes since start: the count in each histogram bucket, up to the last one used.
  const bk = buckets(m, "peftd_batch_size");
  const counts = bk.map(([, c], i) => c - (i ? bk[i - 1][1] : 0));
  const used = Math.max(4, counts.findLastIndex((c) => c > 0) + 1);
  barList($("#batch-bars"), bk.slice(0, used).map(([le], i) => {
    const lo = i ? bk[i - 1][0] : 0;
    const label = le === Infinity ? `more than ${lo}` : le === lo + 1 ? String(le) : `${lo + 1}–${le}`;
    return { label: label + (le === 1 ? " input" : " inputs"), value: counts[i], text: fmtNum(counts[i]) + (counts[i] === 1 ? " batch" : " batches") };
  }));
}

async function showInfo() {
  let i;
  try {
    i = await info();
  } catch (e) {
    status($("#server-status"), "error", "Cannot read /info: " + errorText(e));
    return;
  }
  const md = i.model, lim = i.limits;
  const facts = [
    ["peftd", i.peftd_version],
    ["Model", `${md.name} (${md.architecture}, ${md.layers} layers, hidden ${md.hidden}, ${md.heads} heads, vocabulary ${md.vocab})`],
    ["Weights", `${md.dtype}, ${fmtBytes(md.bytes)}, loaded in ${fmtDuration(md.load_seconds)}`],
    ["Heads", md.heads_available.join(", ") || "none"],
    ["Labels", md.labels.join(", ") || "—"],
    ["Longest input", `${md.max_tokens} tokens`],
    ["Batches", `up to ${lim.max_batch_tokens} tokens, waiting at most ${lim.batch_wait_ms} ms`],
    ["Queue", `${lim.max_queue} inputs`],
    ["Adapter memory", lim.max_resident_bytes ? fmtBytes(lim.max_resident_bytes) : "no limit"],
    ["Largest body", fmtBytes(lim.max_body_bytes)],
    ["Threads", `${i.threads.compute} compute, ${i.threads.http} HTTP, ${i.threads.train} training`],
    ["API key", i.auth.enabled ? (i.auth.all_routes ? "required on every route" : "required on writes") : "not configured"],
  ];
  $("#model-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
