// console.js - drives Debian's chromium (through playwright-core, pinned by package-lock.json)
// through the web console of two running peftd servers, as an operator would, and checks
// what the page shows against what the HTTP API answers directly. Run by
// tests/e2e/test_console.py, which starts the servers and passes (environment):
//
//   CONSOLE_URL        a server without an API key
//   CONSOLE_KEY_URL    a server with --api-key-file and --auth-all; CONSOLE_KEY its key
//   CONSOLE_LORA       a directory with adapter_config.json + adapter_model.safetensors
//   CONSOLE_TRAIN      a JSON Lines training file (examples/sst2-small.jsonl)
//   CONSOLE_SHOTS      where screenshots go; CHROMIUM the browser binary
//
// Prints "ok WHAT" / "FAIL WHAT" per check and last "console_browser: N passed, N failed".
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const URL_A = env("CONSOLE_URL"), URL_B = env("CONSOLE_KEY_URL"), KEY = env("CONSOLE_KEY");
const LORA = env("CONSOLE_LORA"), TRAIN = env("CONSOLE_TRAIN"), SHOTS = env("CONSOLE_SHOTS");
const WIDE = { width: 1280, height: 800 }, NARROW = { width: 390, height: 800 };
const CONFIG = path.join(LORA, "adapter_config.json"), WEIGHTS = path.join(LORA, "adapter_model.safetensors");

let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) passed++;
  else failed++;
  console.log((cond ? "ok " : "FAIL ") + what);
  return cond;
}

// Direct API calls, to compare with what the page shows.
async function apiJson(base, method, p, body, key) {
  const headers = {};
  if (key) headers.Authorization = "Bearer " + key;
  if (body !== undefined && !(body instanceof FormData)) headers["Content-Type"] = "application/json";
  const r = await fetch(base + p, { method, headers, body: body instanceof FormData || body === undefined ? body : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function waitFor(what, fn, ms = 60000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png") });
}

// Watches a page for uncaught errors and CSP reports, and records every request.
function watch(page, log) {
  page.on("pageerror", (e) => log.errors.push("pageerror: " + e.message));
  page.on("console", (m) => {
    // A 404 of a probed file is the browser's own network log line, not a fault of the page.
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) log.errors.push("console: " + m.text());
  });
  page.on("request", (r) => log.requests.push({ url: r.url(), auth: r.headers()["authorization"] || null }));
}

// Every form control has an accessible name (a <label>, aria-label or aria-labelledby; a
// button its text). Returns the ids of those without one.
const unlabelled = (page) => page.evaluate(() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby") &&
    !(e.tagName === "BUTTON" && e.textContent.trim()))
  .map((e) => e.id || e.outerHTML.slice(0, 60)));

const hScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

async function goView(page, name) {
  await page.click(`#nav-${name}`);
  await page.waitForSelector(`#view-${name}:not([hidden])`);
}

// ==== Server A: no key ====

async function adaptersFlow(page) {
  await goView(page, "adapters");
  const config = fs.readFileSync(CONFIG), weights = fs.readFileSync(WEIGHTS);

  // A corrupt weights file: the page must show the server's own message.
  const bad = new FormData();
  bad.append("name", "broken");
  bad.append("config", new Blob([config]), "adapter_config.json");
  bad.append("weights", new Blob([Buffer.from("this is not a safetensors file at all")]), "adapter_model.safetensors");
  const direct = await apiJson(URL_A, "POST", "/adapters", bad);
  check(direct.status === 400, `a corrupt upload is 400 from the API (${direct.status})`);
  await page.fill("#up-name", "broken");
  await page.setInputFiles("#up-files", [{ name: "adapter_config.json", mimeType: "application/json", buffer: config },
    { name: "adapter_model.safetensors", mimeType: "application/octet-stream", buffer: Buffer.from("this is not a safetensors file at all") }]);
  await page.click("#up-submit");
  const errText = await waitFor("the upload error", () => page.$eval("#upload-status.error", (e) => e.textContent).catch(() => null));
  check(errText.includes(direct.body.error.message) && errText.includes("HTTP 400"),
    `a failed upload shows the server's message: ${JSON.stringify(errText)}`);

  // Upload by drag and drop: the files are classified into the form's fields.
  await page.fill("#up-name", "demo");
  await page.evaluate(() => { document.getElementById("up-files").value = ""; });
  await page.evaluate((files) => {
    const dt = new DataTransfer();
    for (const f of files) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
    const drop = document.getElementById("up-drop");
    for (const type of ["dragenter", "dragover", "drop"]) drop.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [{ name: "adapter_config.json", b64: config.toString("base64") }, { name: "adapter_model.safetensors", b64: weights.toString("base64") }]);
  const listed = await page.$$eval("#up-list li", (ls) => ls.map((l) => l.textContent));
  check(listed.length === 2 && listed.some((t) => t.includes("adapter_config.json")) && listed.some((t) => t.includes("adapter_model.safetensors")),
    `dropped files are listed for upload: ${JSON.stringify(listed)}`);
  await page.click("#up-submit");
  await page.waitForSelector('#adapters-table tr[data-name="demo"]');
  const a1 = await apiJson(URL_A, "GET", "/adapters/demo");
  check(a1.status === 200 && a1.body.version === 1 && a1.body.method === "lora", "the dropped upload created adapter demo v1 (API)");
  const okText = await page.textContent("#upload-status");
  check(/Uploaded demo: version 1, lora/.test(okText), `the upload is confirmed: ${JSON.stringify(okText)}`);
  const cells = await page.$$eval('#adapters-table tr[data-name="demo"] > *', (c) => c.map((x) => x.textContent.trim()));
  check(cells[1] === "lora" && cells[2] === a1.body.task && cells[3] === a1.body.labels.join(", ") && cells[4] === "1" &&
        cells[6] === (a1.body.resident ? "yes" : "no"), `the row shows name, method, task, labels, version, resident: ${JSON.stringify(cells)}`);

  // Replace through the file input: version 2.
  await page.click('button[aria-label="Replace demo"]');
  check(await page.$eval("#up-name", (e) => e.readOnly && e.value === "demo"), "replace locks the name");
  await page.setInputFiles("#up-files", [CONFIG, WEIGHTS]);
  await page.fill("#up-labels", "bad, good");
  await page.click("#up-submit");
  await waitFor("version 2 in the table", () =>
    page.$eval('#adapters-table tr[data-name="demo"] td:nth-child(5)', (e) => e.textContent === "2").catch(() => false));
  const a2 = await apiJson(URL_A, "GET", "/adapters/demo");
  check(a2.body.version === 2 && JSON.stringify(a2.body.labels) === '["bad","good"]', "replace published v2 with the labels typed (API)");

  // Details: the files of the current version, the history, a download equal to the upload.
  await page.click('button[aria-label="Details of demo"]');
  await page.waitForSelector('#detail-files button[aria-label="Download adapter_model.safetensors"]');
  const files = await page.$$eval("#detail-files code", (c) => c.map((x) => x.textContent));
  check(JSON.stringify(files) === '["adapter_config.json","adapter_model.safetensors"]', `details list the files: ${files}`);
  const versions = await page.$$eval("#detail-versions tbody td:first-child", (c) => c.map((x) => x.textContent));
  const made = await page.$$eval("#detail-versions tbody td:nth-child(2)", (c) => c.map((x) => x.textContent));
  check(versions.join() === "2 (current),1" && made.every((m) => m === "upload from this page"),
    `the version history lists both uploads: ${versions} / ${made}`);
  const hist = await apiJson(URL_A, "GET", "/adapters/demo/versions");
  const sizes = await page.$$eval("#detail-versions tbody td:nth-child(4)", (c) => c.map((x) => x.textContent));
  check(hist.status === 200 && hist.body.versions.map((v) => v.version).join() === "2,1" && sizes.length === 2 &&
        sizes.every((x) => /B$/.test(x)), `the history comes from GET /adapters/demo/versions, sizes shown: ${sizes}`);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click('button[aria-label="Download adapter_model.safetensors"]')]);
  const got = fs.readFileSync(await dl.path());
  check(dl.suggestedFilename() === "adapter_model.safetensors" && got.equals(weights), "the download is byte for byte the uploaded weights");
  await shot(page, "adapters");
}

// AdapterHub files (a bottleneck adapter with its own head, as a training job publishes them)
// dropped together: each goes to its form field, and the upload predicts exactly as the original.
async function adapterHubFlow(page) {
  const job = await apiJson(URL_A, "POST", "/train", { adapter: "bn", method: "bottleneck", task: "classification", epochs: 1,
    train: [{ text: "a fine film", label: "positive" }, { text: "a dull mess", label: "negative" }] });
  check(job.status === 202, `a bottleneck job is queued through the API (${job.status})`);
  await waitFor("the bottleneck job", async () => (await apiJson(URL_A, "GET", "/jobs/" + job.body.job)).body.status === "succeeded");
  const names = ["adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"];
  const files = [];
  for (const n of names) {
    const r = await fetch(`${URL_A}/adapters/bn/files/${n}`);
    files.push({ name: n, b64: Buffer.from(await r.arrayBuffer()).toString("base64") });
  }
  await page.fill("#up-name", "bnhub");
  await page.evaluate((fs) => {
    const dt = new DataTransfer();
    for (const f of fs) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name));
    document.getElementById("up-drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, files);
  const fields = await page.$$eval("#up-list li", (ls) => ls.map((l) => l.querySelector(".field").textContent + "=" + l.querySelector("code").textContent));
  check(fields.join() === "adapter_config.json=adapter_config.json,weights (.safetensors)=adapter.safetensors," +
    "head_config.json=head_config.json,model_head.safetensors=model_head.safetensors", `AdapterHub files go to their fields: ${fields}`);
  await page.click("#up-submit");
  await page.waitForSelector('#adapters-table tr[data-name="bnhub"]');
  const body = (name) => ({ adapter: name, inputs: ["a fine film", "what a mess"] });
  const [x, y] = [await apiJson(URL_A, "POST", "/predict", body("bn")), await apiJson(URL_A, "POST", "/predict", body("bnhub"))];
  check(y.status === 200 && JSON.stringify(x.body.outputs) === JSON.stringify(y.body.outputs),
    "the AdapterHub upload (head included) predicts exactly as the adapter it came from");
}

async function playgroundFlow(page) {
  await goView(page, "playground");
  await page.waitForSelector('#pg-adapter option[value="demo"]', { state: "attached" });
  await page.selectOption("#pg-adapter", "demo");
  await page.fill("#pg-text", "a great movie");
  await page.check("#pg-logits");
  await page.click("#pg-submit");
  await page.waitForSelector("#pg-bars .bar-row");
  const said = await page.textContent("#pg-status");
  check(/\(request [0-9a-f]{16}\)\.$/.test(said), `the answer names its request id: ${JSON.stringify(said)}`);
  const bars = await page.$$eval("#pg-bars .bar-row", (rows) => rows.map((r) => ({
    label: r.getAttribute("data-label"), shown: r.querySelector(".bar-value").textContent,
    ratio: r.querySelector(".bar-fill").getBoundingClientRect().width / r.querySelector(".bar-track").getBoundingClientRect().width })));
  const ref = await apiJson(URL_A, "POST", "/predict", { adapter: "demo", inputs: ["a great movie"], return_logits: true });
  const want = ref.body.outputs[0];
  check(bars.length === want.scores.length, `one bar per label (${bars.length})`);
  want.scores.forEach((s, i) => {
    const b = bars[i] || {};
    check(b.label === s.label && b.shown === s.score.toFixed(4), `bar ${i} reads ${b.label} ${b.shown}; the API says ${s.label} ${s.score.toFixed(4)}`);
    check(Math.abs(b.ratio - s.score) < 0.01, `bar ${i}'s length is its score (${(b.ratio || 0).toFixed(3)} vs ${s.score.toFixed(3)})`);
  });
  const logits = await page.$$eval("#pg-logits-out tbody tr", (rows) => rows.map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]));
  check(logits.length === want.logits.length && logits.every(([, v], i) => Math.abs(v - want.logits[i]) < 1e-3 * Math.max(1, Math.abs(want.logits[i]))) &&
        logits.map((l) => l[0]).join() === "bad,good", `logits on demand match the API: ${JSON.stringify(logits)}`);
  await shot(page, "playground");

  // Question answering with the base model: the answer highlighted in its context.
  await page.selectOption("#pg-adapter", "");
  await page.check('input[name="pg-kind"][value="qa"]');
  const question = "who directed the film?", context = "the film was directed by a friend of ours — in paris";
  await page.fill("#pg-question", question);
  await page.fill("#pg-context", context);
  await page.click("#pg-submit");
  await page.waitForSelector("#pg-context-shown mark");
  const qa = await apiJson(URL_A, "POST", "/predict", { inputs: [{ question, context }] });
  const o = qa.body.outputs[0];
  const mark = await page.$eval("#pg-context-shown mark", (m) => ({ text: m.textContent, start: m.getAttribute("data-start") }));
  const whole = await page.textContent("#pg-context-shown");
  check(mark.text === o.answer && Number(mark.start) === o.start && whole === context,
    `the QA answer "${mark.text}" is highlighted at ${mark.start} in the context (API: "${o.answer}" at ${o.start})`);
}

async function trainingFlow(page) {
  await goView(page, "training");
  // A bad hyper-parameter: the server's 422 message is shown.
  await page.fill("#tr-adapter", "sst2c");
  await page.setInputFiles("#tr-data", TRAIN);
  await page.fill("#tr-config", '{"r": 0}');
  await page.click("#tr-submit");
  const err = await waitFor("the training error", () => page.$eval("#train-status.error", (e) => e.textContent).catch(() => null));
  check(/config\.r/.test(err) && /HTTP 422/.test(err), `a bad hyper-parameter shows the server's message: ${JSON.stringify(err)}`);

  // A long job: its loss and evaluation curves must grow between polls.
  await page.fill("#tr-config", '{"r": 4}');
  await page.fill("#tr-epochs", "2000");
  await page.fill("#tr-batch", "8");
  await page.fill("#tr-eval-fraction", "0.25");
  await page.fill("#tr-eval-every", "40");
  await page.click("#tr-submit");
  const started = await waitFor("the job to start", () => page.$eval("#train-status.ok", (e) => e.textContent).catch(() => null));
  const id = (/job (j-\d+)/.exec(started) || [])[1];
  check(!!id, `the job started: ${JSON.stringify(started)}`);
  const points = () => page.$eval("#loss-chart", (s) => Number(s.getAttribute("data-points"))).catch(() => 0);
  const p1 = await waitFor("the first loss points", async () => ((await points()) > 0 ? points() : 0));
  const p2 = await waitFor("more loss points", async () => { const p = await points(); return p > p1 ? p : 0; });
  check(p2 > p1, `the loss curve grows while the page polls (${p1} then ${p2} points)`);
  const polyline = await page.$$eval("#loss-chart polyline", (l) => l.length);
  check(polyline >= 1, "the loss curve is drawn as an SVG line");
  const evals = await waitFor("an evaluation point", () => page.$eval("#eval-chart", (s) => Number(s.getAttribute("data-points"))).catch(() => 0));
  check(evals > 0, `evaluation points are drawn (${evals})`);
  const facts = await page.$$eval("#job-facts dd", (d) => Object.fromEntries(d.map((x) => [x.getAttribute("data-fact"), x.textContent])));
  check(facts.Status === "running" && /^\d/.test(facts["Examples/s"]) && facts.ETA !== "—", `progress, examples/s and ETA are shown: ${JSON.stringify(facts)}`);
  await shot(page, "training");

  await page.click("#job-cancel");
  await page.waitForSelector('#job-view[data-status="cancelled"]');
  const j = await apiJson(URL_A, "GET", "/jobs/" + id);
  check(j.body.status === "cancelled", `cancel stopped the job (API: ${j.body.status})`);
  await waitFor("the cancelled job in the list", () =>
    page.$eval(`#jobs-table tr[data-job="${id}"] td:nth-child(4)`, (e) => e.textContent === "cancelled").catch(() => false));
  check(true, "the job list shows the job cancelled");
}

async function serverFlow(page) {
  await goView(page, "server");
  // Two polls give rates; predictions were made above, so latency quantiles exist.
  const rps = await waitFor("requests/s", () => page.$eval('[data-metric="rps"]', (e) => (e.textContent !== "—" ? e.textContent : null)).catch(() => null), 20000);
  check(Number(rps) > 0, `requests/s is shown (${rps})`);
  const lat = await page.textContent('[data-metric="latency"]');
  check(/^[\d.]+ ms \/ [\d.]+ ms$/.test(lat), `/predict p50 / p99 are shown (${lat})`);
  const text = await (await fetch(URL_A + "/metrics")).text();
  const gauge = (n) => Number((new RegExp("^" + n + " (\\S+)$", "m").exec(text) || [])[1]);
  // No prediction since the view opened: the page shows the quantiles since start, which must
  // be Prometheus' histogram_quantile over /metrics' cumulative /predict buckets.
  const note = await page.$eval('[data-metric="latency"] + dd', (e) => e.textContent);
  if (check(/^since start/.test(note), `latency over the whole run when the window has no prediction (${note})`)) {
    const bk = [...text.matchAll(/^peftd_request_duration_seconds_bucket\{route="\/predict",le="([^"]+)"\} (\S+)$/gm)]
      .map((m) => [m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
    const q = (p) => {
      const rank = p * bk[bk.length - 1][1];
      let lo = 0, below = 0;
      for (const [le, c] of bk) {
        if (c >= rank) return le === Infinity ? lo : lo + ((le - lo) * (rank - below)) / (c - below);
        [lo, below] = [le, c];
      }
      return lo;
    };
    const want = `${Number((q(0.5) * 1000).toPrecision(3))} ms / ${Number((q(0.99) * 1000).toPrecision(3))} ms`;
    check(lat === want, `p50 / p99 shown (${lat}) are histogram_quantile of /metrics (${want})`);
  }
  const res = await page.textContent('[data-metric="adapters"]');
  check(res === `${gauge("peftd_adapters_resident")} of ${gauge("peftd_adapters_registered")}`, `resident adapters as in /metrics (${res})`);
  check(/B$/.test(await page.textContent('[data-metric="memory"]')), "memory is shown");
  check((await page.$$("#batch-bars .bar-row")).length >= 4, "batch sizes are shown as bars");
  const perAdapter = await page.$$eval("#adapter-bars .bar-row", (rows) => rows.map((r) => [r.getAttribute("data-label"), Number(r.getAttribute("data-value"))]));
  const demoRow = perAdapter.find(([l]) => l === "demo");
  check(demoRow && demoRow[1] === gauge('peftd_adapter_requests_total{adapter="demo"}') && demoRow[1] > 0,
    `predictions by adapter as in /metrics: ${JSON.stringify(perAdapter)}`);
  check(/ms \/ .*ms$/.test(await page.textContent('[data-metric="wait"]')), "queue wait and batch compute are shown");
  await page.waitForFunction(() => Number(document.getElementById("rate-chart").getAttribute("data-points")) > 0);
  await shot(page, "server");
}

async function deleteFlow(page) {
  await goView(page, "adapters");
  await page.click('button[aria-label="Delete demo"]');
  check(await page.evaluate(() => document.activeElement.textContent === "Keep"), "delete asks first, focus on Keep");
  await page.click('#adapters-table tr[data-name="demo"] button.danger:not(.quiet)');
  await page.waitForSelector('#adapters-table tr[data-name="demo"]', { state: "detached" });
  const r = await apiJson(URL_A, "GET", "/adapters/demo");
  check(r.status === 404, `delete removed demo (API: ${r.status})`);
}

async function keyboardFlow(page) {
  // From the top of a fresh page, Tab to the Playground link, Enter, then type and predict.
  await page.goto(URL_A + "/");
  await page.waitForSelector("#view-adapters:not([hidden])");
  let ok = false;
  for (let i = 0; i < 8 && !ok; i++) {
    await page.keyboard.press("Tab");
    ok = await page.evaluate(() => document.activeElement.id === "nav-playground");
  }
  check(ok, "the Playground link is reached by Tab");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#view-playground:not([hidden])");
  check(await page.evaluate(() => document.activeElement.id === "playground-h"), "switching views moves the focus to the view's heading");
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(() => document.activeElement.id === "pg-text")) break;
  }
  await page.keyboard.type("a boring mess");
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(() => document.activeElement.id === "pg-submit")) break;
  }
  await page.keyboard.press("Enter");
  await page.waitForSelector("#pg-bars .bar-row");
  check(true, "a prediction made with the keyboard alone shows its bars");
}

async function narrowFlow(page) {
  await page.setViewportSize(NARROW);
  for (const v of ["adapters", "playground", "training", "server"]) {
    await goView(page, v);
    await page.waitForTimeout(300);
    const over = await hScroll(page);
    check(over <= 0, `${v} fits a ${NARROW.width}px window (overflow ${over}px)`);
  }
  await goView(page, "training");
  await page.screenshot({ path: path.join(SHOTS, "training-narrow.png"), fullPage: true });
  await page.setViewportSize(WIDE);
}

// ==== Server B: API key on every route ====

async function keyFlow(ctx) {
  const page = await ctx.newPage();
  const log = { errors: [], requests: [] };
  watch(page, log);
  await page.goto(URL_B + "/");
  await page.waitForSelector("#key-dialog[open]");
  const reason = await page.textContent("#key-reason");
  check(/Authorization: Bearer/.test(reason), `the key prompt says why: ${JSON.stringify(reason)}`);
  await shot(page, "key-prompt");
  await page.fill("#key-input", "not-the-key-at-all");
  await page.click("#key-ok");
  await waitFor("the prompt again", () => page.$eval("#key-reason", (e) => e.textContent === "wrong API key").catch(() => false), 20000);
  check(await page.$eval("#key-dialog", (d) => d.open), "a wrong key asks again, with the server's message");
  await page.fill("#key-input", KEY);
  await page.click("#key-ok");
  await page.waitForSelector("#key-dialog:not([open])", { state: "attached" });
  await page.waitForSelector("#adapters-empty:not([hidden])");
  check(true, "with the key the adapter list loads");
  // A write with the key: upload through the form.
  await page.fill("#up-name", "keyed");
  await page.setInputFiles("#up-files", [CONFIG, WEIGHTS]);
  await page.click("#up-submit");
  await page.waitForSelector('#adapters-table tr[data-name="keyed"]');
  const r = await apiJson(URL_B, "GET", "/adapters/keyed", undefined, KEY);
  check(r.status === 200, "an upload with the key works (API)");
  const inUrl = log.requests.filter((q) => q.url.includes(KEY) || q.url.includes("not-the-key"));
  check(inUrl.length === 0, `no request URL holds the key (${log.requests.length} requests)`);
  const api = log.requests.filter((q) => new URL(q.url).pathname.startsWith("/adapters"));
  check(api.length > 0 && api.some((q) => q.auth === "Bearer " + KEY), "the key goes as Authorization: Bearer");
  const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage));
  check(!stored.includes(KEY), "the key is in neither localStorage nor sessionStorage (keep was not ticked)");
  check(log.errors.length === 0, "no script error or CSP violation on the keyed server" + (log.errors.length ? ": " + log.errors.join(" | ") : ""));
  await page.close();
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "peftd-console-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: WIDE,
    acceptDownloads: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  ctx.setDefaultTimeout(60000);
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    const log = { errors: [], requests: [] };
    watch(page, log);
    await page.goto(URL_A + "/");
    await page.waitForSelector("#view-adapters:not([hidden])");
    check((await page.title()).includes("peftd"), "the console loads at /");
    const missing = await unlabelled(page);
    check(missing.length === 0, "every control has a label" + (missing.length ? ": " + missing.join(", ") : ""));
    for (const [name, fn] of [["adapters", adaptersFlow], ["adapterhub", adapterHubFlow], ["playground", playgroundFlow], ["training", trainingFlow],
      ["server", serverFlow], ["delete", deleteFlow], ["keyboard", keyboardFlow], ["narrow", narrowFlow]]) {
      try {
        await fn(page);
      } catch (e) {
        check(false, `${name}: ${e.message.split("\n")[0]}`);
        await shot(page, "failed-" + name).catch(() => {});
      }
    }
    check(log.errors.length === 0, "no script error or CSP violation" + (log.errors.length ? ": " + log.errors.join(" | ") : ""));
    try {
      await keyFlow(ctx);
    } catch (e) {
      check(false, `key: ${e.message.split("\n")[0]}`);
    }
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => {
    console.log(`console_browser: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  },
  (e) => {
    console.log("FAIL " + e.stack);
    console.log(`console_browser: ${passed} passed, ${failed + 1} failed`);
    process.exit(1);
  });
