// ui.js - small DOM and formatting helpers shared by the views: element building, status
// lines that show the server's error message, number/time formatting and a poller that runs
// one request at a time while its view is visible.

import { ApiError } from "./api.js";

export const $ = (sel, root = document) => root.querySelector(sel);

// h("td", {class: "num", "data-x": 1}, "text", childNode, ...): attributes are set with
// setAttribute (never a "style" attribute: the CSP forbids inline styles); functions under
// "on*" keys become event listeners.
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export function errorText(e) {
  if (e instanceof ApiError)
    return e.status ? `${e.message} (${e.code}, HTTP ${e.status}${e.requestId ? ", request " + e.requestId : ""})` : e.message;
  return String(e && e.message ? e.message : e);
}

// Sets a status line: kind "error" (role=alert, so screen readers announce it), "ok", "busy"
// or "" to clear.
export function status(el, kind, text) {
  el.textContent = text || "";
  el.className = "status" + (kind ? " " + kind : "");
  if (kind === "error") el.setAttribute("role", "alert");
  else el.setAttribute("role", "status");
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : String(n)) + " " + u[i];
}

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString("en");
  return Number(x.toPrecision(digits)).toString();
}

export function fmtTime(unix) {
  if (!unix) return "—";
  const d = new Date(unix * 1000);
  const pad = (v) => String(v).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
  if (s < 90) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 5400) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

// Replaces container's children with nodes; if the focused element had a data-key, the new
// element with the same key gets the focus back (tables redrawn by polling stay usable by
// keyboard).
export function redraw(container, nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute("data-key") : null;
  container.replaceChildren(...nodes);
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// poller(fn, ms): start() runs fn now and then ms after each run ends (never two at once);
// stop() ends it; now() runs it again at once (after the run in flight, if any). fn shows its
// own errors; a rejection here only ends that run.
export function poller(fn, ms) {
  let timer = null, on = false, current = null;
  const run = () => {
    if (current) return current.then(run);
    clearTimeout(timer);
    timer = null;
    current = Promise.resolve()
      .then(fn)
      .catch(() => {})
      .finally(() => {
        current = null;
        if (on && !timer) timer = setTimeout(run, ms);
      });
    return current;
  };
  return {
    start() {
      if (on) return;
      on = true;
      run();
    },
    stop() {
      on = false;
      clearTimeout(timer);
      timer = null;
    },
    now: run,
  };
}

// Starts a browser download of a blob under a file name, without a URL that holds a key.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
