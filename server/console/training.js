// training.js - the Training view: start a job from a JSON Lines file with a method and
// hyper-parameters (multipart POST /train with the parts spec, train and eval), follow one job
// live by polling GET /jobs/{id} every second (loss and evaluation curves, progress,
// examples/s, ETA), cancel it (DELETE /jobs/{id}), and the list of jobs (GET /jobs), finished
// ones included.

import { api } from "./api.js";
import { lineChart } from "./chart.js";
import { $, h, status, errorText, fmtNum, fmtTime, fmtDuration, poller, redraw } from "./ui.js";

const LIVE = new Set(["queued", "running"]);
let jobs = [];
let shown = "";
let current = null; // id of the job in the job panel
const listPoll = poller(refreshJobs, 3000);
const jobPoll = poller(refreshJob, 1000);

export function show() {
  listPoll.start();
  if (current) jobPoll.start();
}

export function hide() {
  listPoll.stop();
  jobPoll.stop();
}

// ==== Starting a job ====

// The task of a new adapter when the form leaves it to the data: the first example's shape,
// as scripts/train.sh decides it.
async function taskOf(file) {
  const first = (await file.text()).split("\n").find((l) => l.trim());
  if (!first) throw new Error(`${file.name} holds no example`);
  let ex;
  try {
    ex = JSON.parse(first);
  } catch (e) {
    throw new Error(`${file.name}, first line: not JSON (${e.message})`);
  }
  return ex && typeof ex === "object" && "question" in ex ? "question_answering" : "classification";
}

function number(id, what, test) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || !test(v)) throw new Error(`${what}: ${raw} is not allowed`);
  return v;
}

async function start(e) {
  e.preventDefault();
  const st = $("#train-status");
  const data = $("#tr-data").files[0], evalFile = $("#tr-eval").files[0];
  const spec = { adapter: $("#tr-adapter").value.trim() };
  try {
    if (!spec.adapter) throw new Error("Name the adapter to train.");
    if (!data) throw new Error("Choose the training data (a JSON Lines file).");
    const method = $("#tr-method").value;
    if (method) spec.method = method;
    const task = $("#tr-task").value || (method ? await taskOf(data) : "");
    if (task) spec.task = task;
    const opt = {
      epochs: number("#tr-epochs", "Epochs", (v) => Number.isInteger(v) && v >= 1),
      batch_size: number("#tr-batch", "Batch size", (v) => Number.isInteger(v) && v >= 1),
      learning_rate: number("#tr-lr", "Learning rate", (v) => v > 0),
      eval_fraction: number("#tr-eval-fraction", "Hold out", (v) => v > 0 && v <= 0.9),
      eval_every: number("#tr-eval-every", "Evaluate every", (v) => Number.isInteger(v) && v >= 0),
    };
    for (const [k, v] of Object.entries(opt)) if (v !== undefined) spec[k] = v;
    spec.publish = $("#tr-publish").value;
    const cfg = $("#tr-config").value.trim();
    if (cfg) {
      try {
        spec.config = JSON.parse(cfg);
      } catch (err) {
        throw new Error("Hyper-parameters: not JSON (" + err.message + ")");
      }
      if (!spec.config || typeof spec.config !== "object" || Array.isArray(spec.config))
        throw new Error('Hyper-parameters: a JSON object is needed, e.g. {"r": 8}');
    }
  } catch (err) {
    status(st, "error", err.message);
    return;
  }
  const form = new FormData();
  form.append("spec", JSON.stringify(spec));
  form.append("train", data);
  if (evalFile) form.append("eval", evalFile);
  const btn = $("#tr-submit");
  btn.disabled = true;
  status(st, "busy", "Sending the data…");
  try {
    const r = await api("POST", "/train", { form });
    status(st, "ok", `Started job ${r.job} (${r.status}).`);
    select(r.job);
    listPoll.now();
  } catch (err) {
    status(st, "error", "Cannot start the job: " + errorText(err));
  } finally {
    btn.disabled = false;
  }
}

// ==== One job, live ====

function select(id) {
  current = id;
  $("#job-view").hidden = false;
  $("#job-none").hidden = true;
  status($("#job-status"), "", "");
  jobPoll.stop();
  jobPoll.start();
}

async function refreshJob() {
  if (!current) return;
  const id = current;
  let j;
  try {
    j = await api("GET", "/jobs/" + encodeURIComponent(id));
  } catch (e) {
    status($("#job-status"), "error", `Cannot read job ${id}: ` + errorText(e));
    return;
  }
  if (id !== current) return;
  renderJob(j);
  if (!LIVE.has(j.status)) {
    jobPoll.stop();
    listPoll.now();
  }
}

function renderJob(j) {
  $("#job-h").textContent = `Job ${j.job}: ${j.adapter} (${j.method || "continued"}, ${j.task})`;
  $("#job-view").setAttribute("data-status", j.status);
  const p = $("#job-progress");
  p.value = j.total_steps ? j.step / j.total_steps : 0;
  const live = LIVE.has(j.status);
  const best = j.best ? `${j.best.metric} ${fmtNum(j.best.value, 4)} at step ${j.best.step}` : "—";
  const facts = [
    ["Status", j.status + (j.error ? `: ${j.error}` : "")],
    ["Step", `${j.step} of ${j.total_steps}`],
    ["Epoch", `${fmtNum(j.epoch, 3)} of ${j.epochs}`],
    ["Examples/s", fmtNum(j.examples_per_s, 4)],
    ["ETA", live && j.status === "running" ? fmtDuration(j.eta_s) : "—"],
    ["Last loss", j.loss.length ? fmtNum(j.loss[j.loss.length - 1][1], 4) : "—"],
    ["Best evaluation", best],
    ["Published versions", j.published_versions.length ? j.published_versions.join(", ") : "none yet"],
    ["Examples", `${j.train_examples} training, ${j.eval_examples} evaluation`],
    ["Started", fmtTime(j.started_at)],
    ["Finished", fmtTime(j.finished_at)],
  ];
  if (j.resumed_from_step !== null) facts.push(["Resumed from step", j.resumed_from_step]);
  $("#job-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)]));
  $("#job-cancel").hidden = !live;

  lineChart($("#loss-chart"), [
    { name: "training loss", points: j.loss },
    { name: "evaluation loss", points: j.eval.map(([s, m]) => [s, m.loss]) },
  ], { xLabel: "step", yLabel: "loss", title: `Loss of job ${j.job}` });
  const metrics = [...new Set(j.eval.flatMap(([, m]) => Object.keys(m)))].filter((k) => k !== "loss");
  lineChart($("#eval-chart"), metrics.map((k) => ({ name: k, points: j.eval.map(([s, m]) => [s, m[k]]) })),
    { xLabel: "step", yLabel: "score", yMin: 0, yMax: 1, title: `Evaluation of job ${j.job}` });
}

async function cancel() {
  const id = current, st = $("#job-status");
  status(st, "busy", `Cancelling ${id}…`);
  try {
    const j = await api("DELETE", "/jobs/" + encodeURIComponent(id));
    status(st, "ok", `Job ${id} is ${j.status}.`);
    if (id === current) renderJob(j);
  } catch (e) {
    status(st, "error", `Cannot cancel ${id}: ` + errorText(e));
  }
  jobPoll.now();
  listPoll.now();
}

// ==== The job list ====

async function refreshJobs() {
  try {
    jobs = (await api("GET", "/jobs")).jobs;
  } catch (e) {
    status($("#jobs-status"), "error", "Cannot list the jobs: " + errorText(e));
    return;
  }
  status($("#jobs-status"), "", "");
  if (!current) {
    const live = jobs.filter((j) => LIVE.has(j.status)).pop();
    if (live) select(live.job);
  }
  const key = JSON.stringify(jobs.map((j) => [j.job, j.status, j.step, j.loss.length]));
  if (key === shown) return;
  shown = key;
  redraw($("#jobs-table tbody"), jobs.slice().reverse().map((j) => {
    const last = j.loss[j.loss.length - 1];
    const pct = j.total_steps ? Math.round((100 * j.step) / j.total_steps) : 0;
    return h("tr", { "data-job": j.job },
      h("th", { scope: "row" }, j.job),
      h("td", {}, j.adapter),
      h("td", {}, j.method || "continued"),
      h("td", { class: "job-" + j.status }, j.status),
      h("td", {}, `${j.step} / ${j.total_steps} (${pct}%)`),
      h("td", { class: "num" }, last ? fmtNum(last[1], 4) : "—"),
      h("td", {}, fmtTime(j.created_at)),
      h("td", {}, h("button", { type: "button", class: "quiet", "data-key": "view:" + j.job, "aria-label": `Show job ${j.job}`,
                                onclick: () => { select(j.job); $("#job-h").focus(); } }, "Show")));
  }));
  $("#jobs-empty").hidden = jobs.length > 0;
}

export function init() {
  $("#train-form").addEventListener("submit", start);
  $("#job-cancel").addEventListener("click", cancel);
  document.addEventListener("peftd:adapters", (e) =>
    $("#tr-adapter-names").replaceChildren(...e.detail.map((a) => h("option", { value: a.name }))));
}
