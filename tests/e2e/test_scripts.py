#!/usr/bin/python3
"""Tests of scripts/*.sh's command lines: --help anywhere prints the header and has no side
effect (no request, no build, no package install), options may come anywhere, unknown options
and bad numbers exit 2 before any request, and the requests the ops scripts send.

The ops scripts talk to a fake server on a loopback port (PEFTD_URL) that records every request
and answers 200 {}; no peftd is needed. Python standard library only.

Usage: python3 tests/e2e/test_scripts.py      Prints "e2e_scripts: N passed, N failed" last.
"""

import glob
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
passed = failed = 0
SEEN = []  # (method, path, body) the fake server received


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        frame = traceback.extract_stack(limit=2)[0]
        print("  FAIL %s:%d: %s" % (os.path.basename(frame.filename), frame.lineno, what), flush=True)
    return cond


class Fake(http.server.BaseHTTPRequestHandler):
    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        SEEN.append((self.command, self.path, body))
        out = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_one

    def log_message(self, *a):
        pass


def run(script, *args, env=None):
    e = dict(os.environ, PEFTD_URL=URL)
    e.pop("PEFTD_API_KEY", None)
    e.update(env or {})
    del SEEN[:]
    return subprocess.run(["bash", os.path.join(SCRIPTS, script)] + list(args), capture_output=True, text=True, timeout=60,
                          env=e, cwd=TMP)


def test_help():
    for path in sorted(glob.glob(os.path.join(SCRIPTS, "*.sh"))):
        name = os.path.basename(path)
        if name in ("lib.sh", "args.sh"):
            continue
        for args in (["--help"], ["-h"], ["x", "--help"], ["--logits", "-h", "y"]):
            before = set(os.listdir(ROOT)) | set(glob.glob("/tmp/peftd-tests.*"))
            p = run(name, *args)
            after = set(os.listdir(ROOT)) | set(glob.glob("/tmp/peftd-tests.*"))
            out = p.stdout
            check(p.returncode == 0 and out.startswith(name) and "#" not in "".join(ln[:1] for ln in out.splitlines()),
                  "%s %s: the header, clean (rc %d): %r" % (name, args, p.returncode, out[:120]))
            check(not SEEN, "%s %s sent no request: %r" % (name, args, SEEN))
            check(after == before, "%s %s created nothing: %r" % (name, args, after ^ before))
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "gen-unicode-tables.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0 and p.stdout.startswith("gen-unicode-tables.py"), "gen-unicode-tables.py --help")


def test_refusals():
    cases = [("delete.sh", ["--help-me"]), ("delete.sh", ["--force", "a"]), ("delete.sh", []), ("delete.sh", ["a", "b"]),
             ("list.sh", ["-v"]), ("upload.sh", ["a"]), ("download.sh", ["--out", "x", "a", "f"]), ("watch-job.sh", ["j-1", "x"]),
             ("watch-job.sh", ["j-1", "0"]), ("predict.sh", ["--top-k", "x", "a"]), ("predict.sh", ["--top-k", "101", "a"]),
             ("predict.sh", ["--top-k"]), ("predict.sh", ["--task", "translate", "a"]), ("predict.sh", ["--bogus", "a"]),
             ("predict.sh", []), ("train.sh", ["--adapter", "a", "--data", "d", "--epochs", "two"]),
             ("train.sh", ["--adapter", "a", "--data", "d", "--epochs", "0"]),
             ("train.sh", ["--adapter", "a", "--data", "d", "--learning-rate", "fast"]), ("train.sh", ["--adapter"]),
             ("train.sh", ["--frobnicate", "1"]), ("fuzz.sh", ["now"]), ("run-tests.sh", ["all"]), ("install-deps.sh", ["--tset"])]
    for script, args in cases:
        p = run(script, *args)
        check(p.returncode == 2 and p.stderr.strip() and not SEEN, "%s %s: exit 2 with a message, no request (rc %d, %r, %r)" %
              (script, args, p.returncode, p.stderr.strip()[-120:], SEEN))


def test_requests():
    p = run("delete.sh", "--", "--help")
    check(p.returncode == 0 and SEEN == [("DELETE", "/adapters/--help", b"")], "an adapter named --help after --: %r" % SEEN)
    p = run("predict.sh", "sst2", "a great movie", "--logits", "--top-k", "2")
    body = json.loads(SEEN[0][2]) if SEEN else {}
    check(p.returncode == 0 and body == {"adapter": "sst2", "inputs": ["a great movie"], "return_logits": True, "top_k": 2},
          "options after the arguments: %r %r" % (p.stderr, body))
    p = run("predict.sh", "--task", "classification", "-", "x")
    body = json.loads(SEEN[0][2]) if SEEN else {}
    check(body == {"inputs": ["x"], "task": "classification"}, "'-' is the base model: %r" % body)
    p = run("list.sh", "demo")
    check(p.returncode == 0 and [s[:2] for s in SEEN] == [("GET", "/adapters/demo")], "list.sh NAME")
    data = os.path.join(TMP, "d.jsonl")
    with open(data, "w") as f:
        f.write('{"text": "good", "label": "pos"}\n')
    p = run("train.sh", "--epochs", "2", "--adapter", "a", "--data", data, "--learning-rate", "1e-3", "--method", "lora")
    check(p.returncode == 0 and len(SEEN) == 1 and SEEN[0][:2] == ("POST", "/train") and b'"epochs": 2' in SEEN[0][2] and
          b'"learning_rate": 1e-3' in SEEN[0][2], "train.sh sends the validated numbers: %r %r" % (p.stderr, SEEN[:1]))


def main():
    global URL, TMP
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    URL = "http://127.0.0.1:%d" % srv.server_address[1]
    with tempfile.TemporaryDirectory(prefix="peftd-scripts-") as TMP:
        for t in (test_help, test_refusals, test_requests):
            try:
                t()
            except Exception:  # noqa: BLE001 - one failure, the rest go on
                global failed
                failed += 1
                print("  FAIL %s raised:\n%s" % (t.__name__, traceback.format_exc()), flush=True)
            print("%-20s done" % t.__name__, flush=True)
    srv.shutdown()
    print("e2e_scripts: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
