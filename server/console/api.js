// api.js - every call the console makes to the peftd HTTP API goes through api(): JSON in and
// out, the server's own error message on failure (ApiError), and the API key. On a 401 the
// key dialog asks for the key; it is kept in this module's memory (and in this tab's
// sessionStorage only when the operator ticks "keep"), sent only as "Authorization: Bearer",
// never put in a URL. Downloads therefore go through fetch and a blob, not a link.

const STORE = "peftd.apiKey";
let key = sessionStorage.getItem(STORE);
let asking = null; // the pending key prompt, shared by every request that got a 401
let infoPromise = null;

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId || null; // X-Request-Id: what the server's log line names
  }
}

export function hasKey() {
  return key !== null;
}

export function forgetKey() {
  key = null;
  sessionStorage.removeItem(STORE);
  document.dispatchEvent(new CustomEvent("peftd:key"));
}

function setKey(value, keep) {
  key = value;
  if (keep) sessionStorage.setItem(STORE, value);
  else sessionStorage.removeItem(STORE);
  document.dispatchEvent(new CustomEvent("peftd:key"));
}

// Shows the key dialog with the server's reason; resolves when a key was entered, rejects
// with err when the operator cancels. One dialog at a time, whatever the number of requests.
export function askKey(reason, err) {
  if (asking) return asking;
  const dlg = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const keep = document.getElementById("key-keep");
  const cancel = document.getElementById("key-cancel");
  const forget = document.getElementById("key-forget");
  forget.hidden = key === null;
  document.getElementById("key-reason").textContent = reason;
  input.value = "";
  keep.checked = sessionStorage.getItem(STORE) !== null;
  asking = new Promise((resolve, reject) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      dlg.removeEventListener("cancel", onCancel);
      cancel.removeEventListener("click", onCancel);
      forget.removeEventListener("click", onForget);
      dlg.close();
      asking = null;
      if (ok) resolve();
      else reject(err || new ApiError(401, "unauthorized", "no API key given"));
    };
    const onSubmit = (e) => {
      e.preventDefault();
      if (!input.value.trim()) {
        document.getElementById("key-reason").textContent = "Type the key first.";
        return;
      }
      setKey(input.value.trim(), keep.checked);
      done(true);
    };
    const onCancel = (e) => {
      e.preventDefault();
      done(false);
    };
    const onForget = () => {
      forgetKey();
      done(false);
    };
    form.addEventListener("submit", onSubmit);
    dlg.addEventListener("cancel", onCancel);
    cancel.addEventListener("click", onCancel);
    forget.addEventListener("click", onForget);
    dlg.showModal();
    input.focus();
  });
  return asking;
}

// The {"error": {"code", "message", "request_id"}} body of a failed response, as an ApiError.
async function errorOf(resp) {
  let code = "http_" + resp.status, message = resp.statusText || "HTTP " + resp.status;
  let rid = resp.headers.get("X-Request-Id");
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      rid = body.error.request_id || rid;
    }
  } catch (e) {
    // not JSON (a proxy's page): keep the status line
  }
  return new ApiError(resp.status, code, message, rid);
}

// api(method, path, {json, form, as}): json is sent as an application/json body, form (a
// FormData) as multipart/form-data. as: "json" (default), "text", "blob" or "response".
// Returns null for 204. Throws ApiError with the server's code and message.
export async function api(method, path, opts = {}) {
  for (;;) {
    const headers = {};
    if (key !== null) headers["Authorization"] = "Bearer " + key;
    let body;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.form) {
      body = opts.form;
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, "network", "cannot reach the server (" + e.message + ")");
    }
    if (resp.status === 401) {
      const err = await errorOf(resp);
      await askKey(err.message, err); // rejects on cancel
      continue;
    }
    if (!resp.ok) throw await errorOf(resp);
    const as = opts.as || "json";
    if (as === "response") return resp;
    if (resp.status === 204) return null;
    if (as === "text") return resp.text();
    if (as === "blob") return resp.blob();
    return resp.json();
  }
}

// GET /info, fetched once (again after a failure).
export function info() {
  if (!infoPromise) {
    infoPromise = api("GET", "/info");
    infoPromise.catch(() => (infoPromise = null));
  }
  return infoPromise;
}
