// adapters.js - the Adapters view: the list (GET /adapters, refreshed while the view is shown),
// upload and replace through one form with drag and drop (POST /adapters, PUT
// /adapters/{name}), delete after a confirmation in the row (DELETE /adapters/{name}), and a
// detail panel: the files of the current version (downloaded through fetch, so an API key
// never lands in a URL) and the version history (GET /adapters/{name}/versions), with who made
// each version when this page (an upload) or a training job (its published versions) can tell.

import { api } from "./api.js";
import { $, h, status, errorText, fmtBytes, fmtTime, poller, redraw, saveBlob } from "./ui.js";

const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
const FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter.safetensors", "head_config.json", "model_head.safetensors"];
const FIELD_FOR = { config: "adapter_config.json", weights: "weights (.safetensors)", head_config: "head_config.json", head_weights: "model_head.safetensors" };

let adapters = [];
let shown = ""; // what the table shows, to redraw only on a change (keeps keyboard focus)
let listFailed = false;
let confirming = null; // name whose delete awaits confirmation
let replacing = null; // name the form uploads a new version of (PUT), or null for a new adapter
let chosen = {}; // upload field -> File
let detail = null; // {name, version} shown in the detail panel
const seen = new Map(); // name -> Map(version -> {when, by}): versions this page saw current
const poll = poller(refresh, 5000);
const enc = encodeURIComponent;

export const show = () => poll.start();
export const hide = () => poll.stop();

// GET /adapters; tells the other views ("peftd:adapters" event).
export async function refresh() {
  try {
    adapters = (await api("GET", "/adapters")).adapters;
  } catch (e) {
    listFailed = true;
    status($("#adapters-status"), "error", "Cannot list the adapters: " + errorText(e));
    return;
  }
  if (listFailed) status($("#adapters-status"), "", "");
  listFailed = false;
  for (const a of adapters) note(a, null);
  render();
  document.dispatchEvent(new CustomEvent("peftd:adapters", { detail: adapters }));
  const cur = detail && adapters.find((a) => a.name === detail.name);
  if (detail && !cur) closeDetail();
  else if (cur && cur.version !== detail.version) showDetail(cur.name, false);
}

// Remembers that a's current version was seen (by: who made it, when known).
function note(a, by) {
  if (!seen.has(a.name)) seen.set(a.name, new Map());
  const m = seen.get(a.name), old = m.get(a.version);
  m.set(a.version, { when: a.updated_at, by: by || (old && old.by) || null });
}

// ==== The list ====

function render() {
  const key = JSON.stringify([adapters, confirming]);
  if (key === shown) return;
  shown = key;
  redraw($("#adapters-table tbody"), adapters.map(row));
  $("#adapters-empty").hidden = adapters.length > 0;
}

function row(a) {
  const n = a.name;
  const labels = a.labels.length ? a.labels.join(", ") : "the base model's";
  const actions =
    confirming === n
      ? [h("span", { class: "confirm" }, `Delete ${n}?`),
         h("button", { type: "button", class: "danger", "data-key": "yes:" + n, onclick: () => remove(n) }, "Delete"),
         h("button", { type: "button", class: "quiet", "data-key": "no:" + n, onclick: () => confirmDelete(null) }, "Keep")]
      : [h("button", { type: "button", class: "quiet", "data-key": "det:" + n, "aria-label": `Details of ${n}`, onclick: () => showDetail(n, true) }, "Details"),
         h("button", { type: "button", class: "quiet", "data-key": "rep:" + n, "aria-label": `Replace ${n}`, onclick: () => startReplace(n) }, "Replace"),
         h("button", { type: "button", class: "quiet danger", "data-key": "del:" + n, "aria-label": `Delete ${n}`, onclick: () => confirmDelete(n) }, "Delete")];
  return h("tr", { "data-name": n },
    h("th", { scope: "row" }, n),
    h("td", {}, a.method),
    h("td", {}, a.task || "any"),
    h("td", { class: "labels" }, labels),
    h("td", { class: "num" }, a.version),
    h("td", { class: "num" }, fmtBytes(a.bytes)),
    h("td", {}, a.resident ? "yes" : "no"),
    h("td", {}, h("time", { datetime: new Date(a.updated_at * 1000).toISOString() }, fmtTime(a.updated_at))),
    h("td", { class: "row-actions" }, actions));
}

// Shows (name) or withdraws (null) the confirmation in a row, moving the focus along.
function confirmDelete(name) {
  const prev = confirming;
  confirming = name;
  render();
  const k = name ? "no:" + name : prev ? "del:" + prev : null;
  const el = k && document.querySelector(`[data-key="${CSS.escape(k)}"]`);
  if (el) el.focus();
}

async function remove(name) {
  const st = $("#adapters-status");
  status(st, "busy", `Deleting ${name}…`);
  try {
    await api("DELETE", "/adapters/" + enc(name));
    status(st, "ok", `Deleted ${name}.`);
    if (replacing === name) stopReplace();
  } catch (e) {
    status(st, "error", `Cannot delete ${name}: ` + errorText(e));
  }
  confirming = null;
  await poll.now();
  $("#adapters-h").focus();
}

// ==== Details: files and version history ====

async function showDetail(name, focus) {
  const a = adapters.find((x) => x.name === name);
  if (!a) return;
  detail = { name, version: a.version };
  const panel = $("#adapter-detail");
  panel.hidden = false;
  $("#detail-h").textContent = `${name}, version ${a.version}`;
  const facts = [["Method", a.method], ["Task", a.task || "any (follows the inputs)"],
    ["Labels", a.labels.length ? a.labels.join(", ") : "the base model's"], ["Trainable parameters", a.params.toLocaleString("en")],
    ["Size", fmtBytes(a.bytes)], ["Resident in memory", a.resident ? "yes" : "no"],
    ["First version", fmtTime(a.created_at)], ["This version", fmtTime(a.updated_at)]];
  $("#detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  if (focus) $("#detail-h").focus();

  // Which of the known file names this version has: HEAD each (404 = not this one).
  const files = $("#detail-files");
  files.replaceChildren(h("li", { class: "muted" }, "looking…"));
  const found = await Promise.all(FILES.map((f) =>
    api("HEAD", `/adapters/${enc(name)}/files/${f}`, { as: "response" }).then((r) => [f, Number(r.headers.get("Content-Length"))], () => null)));
  files.replaceChildren(...found.filter(Boolean).map(([f, len]) =>
    h("li", {}, h("code", {}, f), ` ${fmtBytes(len)} `,
      h("button", { type: "button", class: "quiet", "aria-label": `Download ${f}`, onclick: () => download(name, f) }, "Download"))));

  // Versions: those kept on disk (GET /adapters/{name}/versions), who made them when this page
  // or a training job can tell, and versions jobs published that are no longer kept.
  let kept = [], jobs = [];
  try {
    kept = (await api("GET", `/adapters/${enc(name)}/versions`)).versions;
  } catch (e) {
    status($("#adapters-status"), "error", "Cannot read the version history: " + errorText(e));
  }
  try {
    jobs = (await api("GET", "/jobs")).jobs.filter((j) => j.adapter === name);
  } catch (e) {
    status($("#adapters-status"), "error", "Cannot list the training jobs: " + errorText(e));
  }
  const rows = new Map();
  for (const v of kept) rows.set(v.version, { by: "—", when: fmtTime(v.updated_at), size: fmtBytes(v.bytes), current: v.current });
  for (const [v, x] of seen.get(name) || [])
    if (rows.has(v) && x.by) rows.get(v).by = x.by;
  for (const j of jobs)
    for (const v of j.published_versions) {
      const by = `training job ${j.job} (${j.method || "continued"}, ${j.status})`;
      if (rows.has(v)) rows.get(v).by = by;
      else rows.set(v, { by, when: j.finished_at ? "by " + fmtTime(j.finished_at) : "during the job", size: "no longer kept", current: false });
    }
  $("#detail-versions tbody").replaceChildren(...[...rows.keys()].sort((x, y) => y - x).map((v) => {
    const r = rows.get(v);
    return h("tr", { "data-version": String(v) }, h("td", { class: "num" }, v + (r.current ? " (current)" : "")), h("td", {}, r.by),
      h("td", {}, r.when), h("td", { class: "num" }, r.size));
  }));
  $("#detail-versions-note").textContent = "The store keeps the current version and the two before it " +
    "(GET /adapters/{name}/versions); requests use the current one.";
}

function closeDetail() {
  detail = null;
  $("#adapter-detail").hidden = true;
}

async function download(name, file) {
  try {
    saveBlob(await api("GET", `/adapters/${enc(name)}/files/${file}`, { as: "blob" }), file);
  } catch (e) {
    status($("#adapters-status"), "error", `Cannot download ${file}: ` + errorText(e));
  }
}

// ==== Upload and replace ====

// Which upload field a file goes to, by its name; null (with a reason) if none.
function fieldOf(file) {
  const n = file.name;
  if (n === "head_config.json") return ["head_config"];
  if (n === "model_head.safetensors") return ["head_weights"];
  if (n.endsWith(".json")) return ["config"];
  if (n.endsWith(".safetensors")) return ["weights"];
  if (n.endsWith(".bin") || n.endsWith(".pt")) return [null, "pickle files are refused (unpickling runs code): save the adapter as safetensors"];
  return [null, "not an adapter file (expected .json or .safetensors)"];
}

function addFiles(list) {
  const bad = [];
  for (const f of list) {
    const [field, why] = fieldOf(f);
    if (field) chosen[field] = f;
    else bad.push(`${f.name}: ${why}`);
  }
  renderChosen();
  status($("#upload-status"), bad.length ? "error" : "", bad.join("; "));
}

function renderChosen() {
  $("#up-list").replaceChildren(...Object.entries(chosen).map(([field, f]) =>
    h("li", {}, h("span", { class: "field" }, FIELD_FOR[field]), " ", h("code", {}, f.name), ` ${fmtBytes(f.size)} `,
      h("button", { type: "button", class: "quiet", "aria-label": `Remove ${f.name}`,
                    onclick: () => { delete chosen[field]; renderChosen(); } }, "Remove"))));
}

function labelsField(text) {
  text = text.trim();
  if (!text) return null;
  if (text.startsWith("[")) {
    let v;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new Error("labels: not a JSON array (" + e.message + ")");
    }
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new Error("labels: a JSON array of strings is needed");
    return JSON.stringify(v);
  }
  return JSON.stringify(text.split(",").map((s) => s.trim()).filter(Boolean));
}

function startReplace(name) {
  replacing = name;
  const input = $("#up-name");
  input.value = name;
  input.readOnly = true;
  $("#upload-h").textContent = `Replace ${name} with a new version`;
  $("#up-submit").textContent = "Upload new version";
  $("#up-cancel").hidden = false;
  status($("#upload-status"), "", "");
  $("#upload-form").scrollIntoView({ block: "nearest" });
  $("#up-files").focus();
}

function stopReplace() {
  replacing = null;
  const input = $("#up-name");
  input.readOnly = false;
  input.value = "";
  $("#upload-h").textContent = "Upload an adapter";
  $("#up-submit").textContent = "Upload";
  $("#up-cancel").hidden = true;
}

async function upload(e) {
  e.preventDefault();
  const st = $("#upload-status");
  const name = $("#up-name").value.trim();
  let labels;
  try {
    if (!NAME_RE.test(name)) throw new Error("Name: use 1-64 of A-Z a-z 0-9 . _ - (not starting with a dot)");
    if (!chosen.config) throw new Error("Add the adapter_config.json file");
    if (!chosen.weights) throw new Error("Add the weights (adapter_model.safetensors or adapter.safetensors)");
    labels = labelsField($("#up-labels").value);
  } catch (err) {
    status(st, "error", err.message);
    return;
  }
  const form = new FormData();
  if (!replacing) form.append("name", name);
  for (const field of ["config", "weights", "head_config", "head_weights"]) if (chosen[field]) form.append(field, chosen[field]);
  if (labels) form.append("labels", labels);
  const btn = $("#up-submit");
  btn.disabled = true;
  status(st, "busy", `Uploading ${name}…`);
  try {
    const r = replacing ? await api("PUT", "/adapters/" + enc(name), { form }) : await api("POST", "/adapters", { form });
    note(r, "upload from this page");
    status(st, "ok", `${r.created ? "Uploaded" : "Replaced"} ${r.name}: version ${r.version}, ${r.method}` +
      (r.task ? `, ${r.task}` : "") + `, ${r.params.toLocaleString("en")} parameters.`);
    chosen = {};
    renderChosen();
    $("#up-files").value = "";
    $("#up-labels").value = "";
    stopReplace();
    poll.now();
  } catch (err) {
    status(st, "error", "Upload failed: " + errorText(err));
  } finally {
    btn.disabled = false;
  }
}

export function init() {
  $("#upload-form").addEventListener("submit", upload);
  $("#up-files").addEventListener("change", (e) => addFiles(e.target.files));
  $("#up-cancel").addEventListener("click", () => {
    stopReplace();
    status($("#upload-status"), "", "");
  });
  $("#detail-close").addEventListener("click", closeDetail);
  const drop = $("#up-drop");
  for (const ev of ["dragenter", "dragover"])
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
}
