// app.js - starts the console: shows the view named by the URL fragment (#adapters,
// #playground, #training, #server), starting its polling and stopping the others', fills the
// header from GET /info, and offers the API key button once the server says it uses a key.

import { askKey, hasKey, info } from "./api.js";
import * as adapters from "./adapters.js";
import * as playground from "./playground.js";
import * as training from "./training.js";
import * as metrics from "./metrics.js";
import { $, errorText } from "./ui.js";

const VIEWS = { adapters, playground, training, server: metrics };
let active = null;

function route() {
  const name = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "adapters";
  if (name === active) return;
  if (active) VIEWS[active].hide();
  for (const v of Object.keys(VIEWS)) {
    $("#view-" + v).hidden = v !== name;
    const link = $("#nav-" + v);
    if (v === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const first = active === null;
  active = name;
  document.title = `${name[0].toUpperCase() + name.slice(1)} · peftd console`;
  VIEWS[name].show();
  if (!first) $("#view-" + name + " h2").focus();
}

async function header() {
  try {
    const i = await info();
    const m = i.model;
    $("#model-info").textContent = `${m.name} · ${m.architecture}, ${m.layers} layers, hidden ${m.hidden} · peftd ${i.peftd_version}`;
    $("#key-button").hidden = !i.auth.enabled;
  } catch (e) {
    $("#model-info").textContent = "server: " + errorText(e);
  }
}

function keyButton() {
  const b = $("#key-button");
  b.textContent = hasKey() ? "Change API key" : "Set API key";
  if (hasKey()) b.hidden = false;
}

export function start() {
  for (const v of Object.values(VIEWS)) v.init?.();
  for (const h2 of document.querySelectorAll(".view > h2")) h2.tabIndex = -1;
  for (const id of ["#detail-h", "#job-h"]) $(id).tabIndex = -1;
  document.addEventListener("peftd:key", keyButton);
  $("#key-button").addEventListener("click", () =>
    askKey(hasKey() ? "Enter a new key, or cancel to keep the current one." : "Enter the server's API key.").then(() => {
      header();
      adapters.refresh();
    }, () => {}));
  keyButton();
  window.addEventListener("hashchange", route);
  route();
  header();
}

start();
