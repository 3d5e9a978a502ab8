#!/usr/bin/python3
"""End-to-end tests of the web console (server/console/, embedded by server/console.c).

Runs the real binary (PEFTD_BIN, default build/peftd) twice on free loopback ports: server A
without an API key, server B with --api-key-file and --auth-all. Then:

1. HTTP, no browser: GET / and every file index.html references are served from the binary
   byte for byte as in server/console/, with their content type, an ETag (If-None-Match,
   weak forms and lists give 304 with no body), Cache-Control, X-Content-Type-Options:
   nosniff and a Content-Security-Policy without inline script or style; HEAD gives the
   headers and no body; other methods 405 with Allow; unknown files and path tricks 404; the
   console loads without the key on server B while its API answers 401.
2. Browser: tests/e2e/console/console.js drives Debian's chromium headless through
   playwright-core (pinned by tests/e2e/console/package-lock.json, installed with `npm ci` into
   build/console-e2e/): uploads an adapter through the form (drag and drop, then a replace
   through the file input), downloads it, predicts in the playground and reads the bars against
   /predict, starts a training job from examples/sst2-small.jsonl and sees its curves grow,
   cancels it, reads the server view against /metrics, deletes the adapter, works by keyboard
   and in a narrow window, and on server B goes through the key prompt. Screenshots go to
   build/console-shots/. Without chromium (no network to install it) this part is skipped with
   a message, except under CI (CI=true), where that is a failure.
3. Afterwards: neither server's request log shows the key in any path.

Usage: python3 tests/e2e/test_console.py   (from the repo root)
Prints "e2e_console: N passed, N failed, N skipped" last; exits 1 if anything failed.
"""

import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peftio import Server, npm_ci  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("PEFTD_BIN", os.path.join(ROOT, "build", "peftd")))
ASSETS = os.path.join(ROOT, "server", "console")
NODE_SRC = os.path.join(ROOT, "tests", "e2e", "console")
NODE_WORK = os.path.join(ROOT, "build", "console-e2e")
SHOTS = os.path.join(ROOT, "build", "console-shots")
KEY = "console-e2e-key-7f3a9c21d04b"

passed = failed = skipped = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what, flush=True)
    return cond


def skip(what):
    global skipped
    skipped += 1
    print("skip: " + what, flush=True)


def raw(port, method, path, headers=None):
    """One request on its own connection: (status, {lower-case header: value}, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


# ==== 1. HTTP ====

TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def referenced_files():
    """index.html and the files it and the modules reference (src/href, ES module imports)."""
    names, todo = set(), ["index.html"]
    while todo:
        n = todo.pop()
        if n in names:
            continue
        names.add(n)
        text = open(os.path.join(ASSETS, n), encoding="utf-8").read()
        todo += re.findall(r'(?:src|href)="/console/([A-Za-z0-9._-]+)"', text)
        todo += re.findall(r'from "\./([A-Za-z0-9._-]+)"', text)
    return sorted(names)


def http_checks(a, b):
    files = referenced_files()
    check({"index.html", "app.js", "console.css", "api.js"} <= set(files), "index.html references the modules: %s" % files)
    on_disk = sorted(f for f in os.listdir(ASSETS) if os.path.splitext(f)[1] in TYPES)
    check(files == on_disk, "every console file is referenced and every reference exists: %s vs %s" % (files, on_disk))
    etags = set()
    for f in files:
        want = open(os.path.join(ASSETS, f), "rb").read()
        path = "/" if f == "index.html" else "/console/" + f
        st, h, body = raw(a.port, "GET", path)
        ok = check(st == 200 and body == want, "GET %s serves server/console/%s byte for byte (%d, %d bytes)" % (path, f, st, len(body)))
        if not ok:
            continue
        check(h.get("content-type") == TYPES[os.path.splitext(f)[1]], "%s: Content-Type %s" % (f, h.get("content-type")))
        check(h.get("x-content-type-options") == "nosniff", "%s: nosniff" % f)
        check(h.get("cache-control") == "no-cache", "%s: Cache-Control %s" % (f, h.get("cache-control")))
        csp = h.get("content-security-policy", "")
        check("script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp and
              "unsafe-inline" not in csp and "unsafe-eval" not in csp, "%s: strict CSP: %s" % (f, csp))
        etag = h.get("etag", "")
        check(re.fullmatch(r'"[0-9a-f]{16}"', etag) is not None, "%s: strong ETag %s" % (f, etag))
        etags.add(etag)
        for inm in (etag, "W/" + etag, '"0000000000000000", ' + etag, "*"):
            st2, h2, body2 = raw(a.port, "GET", path, {"If-None-Match": inm})
            check(st2 == 304 and body2 == b"" and h2.get("etag") == etag, "%s: If-None-Match %s -> %d" % (f, inm, st2))
        st3, _, body3 = raw(a.port, "GET", path, {"If-None-Match": '"0000000000000000"'})
        check(st3 == 200 and body3 == want, "%s: another ETag -> 200 with the body" % f)
        st4, h4, body4 = raw(a.port, "HEAD", path)
        check(st4 == 200 and body4 == b"" and h4.get("content-length") == str(len(want)) and h4.get("etag") == etag,
              "%s: HEAD gives the headers without a body" % f)
    check(len(etags) == len(files), "every file has its own ETag")
    # index.html: no inline script or style for the CSP to refuse.
    index = open(os.path.join(ASSETS, "index.html"), encoding="utf-8").read()
    check(not re.search(r"<script(?![^>]*\bsrc=)", index) and "<style" not in index and not re.search(r"\sstyle=", index)
          and not re.search(r"\son[a-z]+=", index), "index.html has no inline script, style or handler")

    st, h, body = raw(a.port, "POST", "/")
    check(st == 405 and h.get("allow") == "GET, HEAD" and b"method_not_allowed" in body, "POST / is 405 with Allow (%d)" % st)
    for p in ("/console/nope.js", "/console/", "/console", "/console/../index.html", "/console/%2e%2e/index.html",
              "/console/index.html/x", "/index.html", "/console/embed.c"):
        st, h, body = raw(a.port, "GET", p)
        check(st == 404 and b'"not_found"' in body, "GET %s is a JSON 404 (%d)" % (p, st))
    # With --auth-all the page still loads (it asks for the key itself); the API does not.
    st, _, body = raw(b.port, "GET", "/")
    check(st == 200 and body.startswith(b"<!doctype html>"), "server B serves the console without the key (%d)" % st)
    st, _, _ = raw(b.port, "GET", "/adapters")
    check(st == 401, "server B's API needs the key (%d)" % st)


# ==== 2. Browser ====

def find_chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def npm_install():
    """playwright-core, pinned by tests/e2e/console/package-lock.json, into build/console-e2e."""
    err = npm_ci(NODE_SRC, NODE_WORK)
    if not check(err is None, str(err)):
        return False
    shutil.copy(os.path.join(NODE_SRC, "console.js"), NODE_WORK)
    return True


def browser_checks(a, b, tmp):
    chromium = find_chromium()
    if not chromium:
        msg = "chromium is not installed (scripts/install-deps.sh --test installs Debian's package)"
        if os.environ.get("CI") == "true":
            check(False, msg + "; CI must run the browser test")
        else:
            skip(msg + ": browser test skipped")
        return
    if not npm_install():
        return
    lora = os.path.join(tmp, "lora")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "make_lora.py"), "--model", os.path.join(tmp, "model"),
                        "--out", lora], capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "make_lora.py: " + r.stdout + r.stderr):
        return
    shutil.rmtree(SHOTS, ignore_errors=True)
    env = dict(os.environ, CONSOLE_URL="http://127.0.0.1:%d" % a.port, CONSOLE_KEY_URL="http://127.0.0.1:%d" % b.port,
               CONSOLE_KEY=KEY, CONSOLE_LORA=lora, CONSOLE_TRAIN=os.path.join(ROOT, "examples", "sst2-small.jsonl"),
               CONSOLE_SHOTS=SHOTS, CHROMIUM=chromium, HOME=tmp)
    p = subprocess.run(["node", os.path.join(NODE_WORK, "console.js")], cwd=NODE_WORK, env=env, capture_output=True,
                       text=True, timeout=900)
    print(p.stdout.rstrip(), flush=True)
    if p.stderr.strip():
        print(p.stderr.rstrip()[-4000:], flush=True)
    m = re.search(r"^console_browser: (\d+) passed, (\d+) failed$", p.stdout, re.M)
    if not check(m is not None, "console.js printed no summary (exit %d)" % p.returncode):
        return
    global passed, failed
    passed += int(m.group(1))
    failed += int(m.group(2))
    check(p.returncode == (1 if int(m.group(2)) else 0), "console.js exit status %d agrees with its summary" % p.returncode)
    shots = sorted(os.listdir(SHOTS)) if os.path.isdir(SHOTS) else []
    check({"adapters.png", "playground.png", "training.png", "server.png", "key-prompt.png"} <= set(shots),
          "screenshots in build/console-shots: %s" % shots)


# ==== Main ====

def main():
    if not os.path.exists(BIN):
        print("e2e_console: %s not found (set PEFTD_BIN)" % BIN)
        print("e2e_console: 0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="peftd-console-")
    servers = []
    try:
        model = os.path.join(tmp, "model")
        subprocess.run([BIN, "gen-model", "--out", model], check=True, timeout=120, capture_output=True)
        keyfile = os.path.join(tmp, "key")
        with open(keyfile, "w") as f:
            f.write(KEY + "\n")
        a = Server(BIN, ["--model", model, "--data-dir", os.path.join(tmp, "a")], log_path=os.path.join(tmp, "a.log")).start()
        servers.append(a)
        b = Server(BIN, ["--model", model, "--data-dir", os.path.join(tmp, "b"), "--api-key-file", keyfile, "--auth-all"],
                   log_path=os.path.join(tmp, "b.log")).start()
        servers.append(b)
        http_checks(a, b)
        browser_checks(a, b, tmp)
        for s in servers:
            paths = [l.get("path", "") for l in s.log_lines() if "path" in l]
            check(paths and not any(KEY in p for p in paths), "no logged request path holds the key (%d requests)" % len(paths))
        for s in servers:
            check(s.stop() == 0, "the server exits cleanly")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("e2e_console: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
