// playground.js - the Playground view: one input (a text, a text pair, or a question and its
// context) through POST /predict, with an adapter or the base model. Classification shows
// every label's score as a bar; question answering shows the answer highlighted in the
// context with its score (and the next best answers with top_k > 1); "Show logits" adds the
// raw logits (return_logits).

import { api, info } from "./api.js";
import { barList } from "./chart.js";
import { $, h, status, errorText, fmtNum } from "./ui.js";

let adapters = [];

const kind = () => document.querySelector('input[name="pg-kind"]:checked').value;

function setKind(k) {
  document.querySelector(`input[name="pg-kind"][value="${k}"]`).checked = true;
  for (const el of document.querySelectorAll("#pg-form [data-kind]")) el.hidden = !el.getAttribute("data-kind").split(" ").includes(k);
  $("#pg-topk-what").textContent = k === "qa" ? "answers" : "labels";
}

// Keeps the adapter list in step with the Adapters view, keeping the selection.
function fillAdapters(list) {
  adapters = list;
  const sel = $("#pg-adapter"), keep = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "Base model"),
    ...list.map((a) => h("option", { value: a.name }, `${a.name} (v${a.version}, ${a.method}${a.task ? ", " + a.task : ""})`)));
  sel.value = list.some((a) => a.name === keep) ? keep : "";
}

// An adapter made for one task picks the matching input kind.
function onAdapter() {
  const a = adapters.find((x) => x.name === $("#pg-adapter").value);
  if (a && a.task === "question_answering") setKind("qa");
  else if (a && a.task === "classification" && kind() === "qa") setKind("text");
}

function input() {
  const k = kind();
  const text = $("#pg-text").value, pair = $("#pg-pair").value;
  const question = $("#pg-question").value, context = $("#pg-context").value;
  if (k === "qa") {
    if (!question.trim() || !context.trim()) throw new Error("Type a question and a context.");
    return { question, context };
  }
  if (!text.trim()) throw new Error("Type a text.");
  if (k === "pair") {
    if (!pair.trim()) throw new Error("Type the second text of the pair.");
    return { text, text_pair: pair };
  }
  return text;
}

async function predict(e) {
  e.preventDefault();
  const st = $("#pg-status");
  const topk = Number($("#pg-topk").value || 0);
  let body;
  try {
    if (!Number.isInteger(topk) || topk < 0 || topk > 100) throw new Error("How many: a whole number from 0 to 100.");
    body = { inputs: [input()], adapter: $("#pg-adapter").value || null, top_k: topk, return_logits: $("#pg-logits").checked };
  } catch (err) {
    status(st, "error", err.message);
    return;
  }
  const btn = $("#pg-submit");
  btn.disabled = true;
  status(st, "busy", "Predicting…");
  try {
    const t0 = performance.now();
    const resp = await api("POST", "/predict", { json: body, as: "response" });
    const r = await resp.json();
    const rid = resp.headers.get("X-Request-Id");
    status(st, "ok", `Answered in ${fmtNum(performance.now() - t0, 3)} ms` + (rid ? ` (request ${rid}).` : "."));
    await render(r, body.inputs[0]);
  } catch (err) {
    status(st, "error", "Prediction failed: " + errorText(err));
  } finally {
    btn.disabled = false;
  }
}

async function render(r, inp) {
  const out = r.outputs[0];
  const who = r.adapter ? `adapter ${r.adapter} v${r.version}` : "base model";
  $("#pg-result").hidden = false;
  $("#pg-bars").replaceChildren();
  $("#pg-context-shown").replaceChildren();
  $("#pg-answers").replaceChildren();
  $("#pg-logits-out").replaceChildren();
  if (r.task === "question_answering") {
    $("#pg-summary").textContent = `Answer "${out.answer}", score ${fmtNum(out.score, 4)} (${who}).`;
    // start/end count Unicode code points; JavaScript strings count UTF-16 units.
    const cps = Array.from(inp.context);
    $("#pg-context-shown").append(cps.slice(0, out.start).join(""),
      h("mark", { "data-start": out.start, "data-end": out.end }, cps.slice(out.start, out.end).join("")), cps.slice(out.end).join(""));
    for (const a of out.answers || [])
      $("#pg-answers").append(h("li", {}, h("q", {}, a.answer), ` ${fmtNum(a.score, 4)} (characters ${a.start}-${a.end})`));
    if (out.start_logits) {
      $("#pg-logits-out").append(logitsTable("Token", ["Start logit", "End logit"],
        out.start_logits.map((s, i) => [String(i), s, out.end_logits[i]])));
    }
    return;
  }
  $("#pg-summary").textContent = `${out.label}, score ${fmtNum(out.score, 4)} (${who}).`;
  barList($("#pg-bars"), out.scores.map((s) => ({ label: s.label, value: s.score, text: s.score.toFixed(4) })), 1);
  if (out.logits) {
    // logits are in label-id order: the adapter's labels, else the base model's, else LABEL_i.
    const a = adapters.find((x) => x.name === r.adapter);
    let names = a && a.labels.length ? a.labels : [];
    if (!names.length) names = (await info().catch(() => ({ model: { labels: [] } }))).model.labels;
    $("#pg-logits-out").append(logitsTable("Label", ["Logit"], out.logits.map((v, i) => [names[i] || "LABEL_" + i, v])));
  }
}

function logitsTable(first, cols, rows) {
  return h("div", { class: "table-wrap logits" },
    h("table", {},
      h("caption", {}, "Logits"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, first), ...cols.map((c) => h("th", { scope: "col", class: "num" }, c)))),
      h("tbody", {}, ...rows.map(([k, ...v]) => h("tr", {}, h("th", { scope: "row" }, k), ...v.map((x) => h("td", { class: "num" }, fmtNum(x, 5))))))));
}

export function init() {
  document.addEventListener("peftd:adapters", (e) => fillAdapters(e.detail));
  $("#pg-form").addEventListener("submit", predict);
  $("#pg-adapter").addEventListener("change", onAdapter);
  for (const r of document.querySelectorAll('input[name="pg-kind"]')) r.addEventListener("change", () => setKind(kind()));
  setKind("text");
}

// The list follows the Adapters view's refreshes; fetch it when this view opens.
export async function show() {
  try {
    fillAdapters((await api("GET", "/adapters")).adapters);
  } catch (e) {
    status($("#pg-status"), "error", "Cannot list the adapters: " + errorText(e));
  }
}

export function hide() {}
