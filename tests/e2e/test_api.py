#!/usr/bin/python3
"""End-to-end tests of the API conventions of docs/API.md ("Conventions"): unknown fields refused
with a suggestion, LoRAX's adapter_id, TEI's pair inputs, truncate / "truncated", X-Request-Id,
/ready apart from /health, /openapi.json.

Runs the real binary (PEFTD_BIN, default build/peftd) on free loopback ports with temporary
data dirs and the embedded default model (written with `peftd gen-model`). Python standard
library only (PyYAML, when installed, checks /openapi.json against docs/openapi.yaml).

Usage: python3 tests/e2e/test_api.py [-k SUBSTRING]   (from the repo root)
Prints "e2e_api: N passed, N failed" last; exits 1 if anything failed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peftio import SANITIZER_MARKS, Server, lora_files  # noqa: E402

BIN = os.path.abspath(os.environ.get("PEFTD_BIN", "build/peftd"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_TIMEOUT = int(os.environ.get("E2E_TEST_TIMEOUT", "150"))

passed = 0
failed = 0
TMP = None
MODEL = None


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        frame = traceback.extract_stack(limit=2)[0]
        print("  FAIL %s:%d: %s" % (os.path.basename(frame.filename), frame.lineno, what), flush=True)
    return cond


def error_of(resp):
    try:
        return resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}


def refused(resp, status, *words):
    """resp is an error with this status whose message holds every word."""
    msg = error_of(resp).get("message", "")
    ok = resp.status == status and all(w in msg for w in words)
    if not ok:
        print("    got %r, wanted %d with %r" % (resp, status, words))
    return ok


def close(a, b, atol=2e-5, rtol=1e-4):
    if a is None or b is None or len(a) != len(b):
        return False
    return all(abs(x - y) <= atol + rtol * abs(y) for x, y in zip(a, b))


def logits_of(resp):
    return [x for o in resp.json()["outputs"] for x in o["logits"]]


def start(name, args=()):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    s = Server(BIN, ["--model", MODEL, "--data-dir", os.path.join(d, "data"), "--max-body-mb", "1"] + list(args),
               log_path=os.path.join(d, "server.log"))
    s.data = os.path.join(d, "data")
    return s.start(timeout=120)


def finish(s):
    rc = s.stop()
    check(rc == 0, "server exit status 0 (got %r):\n%s" % (rc, s.log_tail()))
    with open(s.log_path, errors="replace") as f:
        txt = f.read()
    check(not any(m in txt for m in SANITIZER_MARKS), "no sanitizer report in %s" % s.log_path)


TEXTS = ["a great movie with a fine cast", "the plot was boring"]

# ============================================================================
# Tests
# ============================================================================


def test_unknown_fields():
    s = start("unknown")
    try:
        c = s.client()
        r = c.predict({"inputs": ["a"], "adaptor": "x"})
        check(refused(r, 400, "adaptor: unknown field", 'did you mean "adapter"'), "misspelled adapter: %r" % r)
        check(error_of(r).get("code") == "invalid_input", "code invalid_input")
        r = c.predict({"inputs": ["a"], "return_logit": True})
        check(refused(r, 400, 'did you mean "return_logits"'), "misspelled return_logits")
        r = c.predict({"inputs": ["a"], "zzzzzz": 1})
        check(refused(r, 400, "zzzzzz: unknown field") and "did you mean" not in error_of(r)["message"], "no suggestion when nothing is close")
        r = c.predict({"input": ["a"]})
        check(refused(r, 400, "input: unknown field", 'did you mean "inputs"'), "input for inputs")
        r = c.predict({"inputs": [{"txt": "a"}]})
        check(refused(r, 400, "inputs[0].txt: unknown field", 'did you mean "text"'), "unknown field in an input")
        r = c.predict({"inputs": [{"question": "q", "contxt": "c"}]})
        check(refused(r, 400, "inputs[0].contxt", 'did you mean "context"'), "misspelled context")
        r = c.predict({"inputs": ["a"], "parameters": {"top_kk": 2}})
        check(refused(r, 400, "parameters.top_kk: unknown field", 'did you mean "top_k"'), "unknown field in parameters")
        r = c.predict({"inputs": ["a"], "parameters": {"inputs": ["b"]}})
        check(refused(r, 400, "parameters.inputs"), "inputs do not go in parameters")
        r = c.predict({"inputs": ["a"], "top_k": 1, "parameters": {"top_k": 1}})
        check(refused(r, 400, "top_k", "both"), "an option given twice")
        r = c.predict({"inputs": ["a"], "parameters": [1]})
        check(refused(r, 400, "parameters must be an object"), "parameters not an object")
        r = c.predict({"inputs": ["a"], "parameters": {"top_k": 1, "return_logits": True}})
        o = r.json()["outputs"][0] if r.status == 200 else {}
        check(r.status == 200 and len(o.get("scores", [])) == 1 and "logits" in o, "options in parameters apply: %r" % r)
        r = c.predict({"inputs": ["a"], "parameters": {"top_k": "x"}})
        check(refused(r, 400, "parameters.top_k"), "a bad option in parameters is named with its place")
        # /train: the body's fields and the method's hyperparameters
        two = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
        base = {"adapter": "v", "method": "lora", "task": "classification", "train": two}
        r = c.post("/train", dict(base, learnig_rate=0.1))
        check(refused(r, 400, "learnig_rate: unknown field", 'did you mean "learning_rate"'), "train: misspelled field: %r" % r)
        r = c.post("/train", dict(base, config={"r": 4, "lora_alpah": 16}))
        check(refused(r, 400, "config.lora_alpah: unknown lora option", 'did you mean "lora_alpha"'), "train: misspelled option: %r" % r)
        r = c.post("/train", dict(base, method="bottleneck", config={"reduction_factr": 4}))
        check(refused(r, 400, "config.reduction_factr", 'did you mean "reduction_factor"'), "train: misspelled bottleneck option")
        r = c.post("/train", dict(base, method="prefix_tuning", config={"num_virtual_token": 4}))
        check(refused(r, 400, "config.num_virtual_token", 'did you mean "num_virtual_tokens"'), "train: misspelled prefix option")
        r = c.post("/train", dict(base, config={"r": 2, "lora_alpha": 4, "target_modules": ["query"]}))
        check(r.status == 202, "known options still accepted: %r" % r)
        rows = [{"text": "good", "label": "pos", "idx": 1}, {"text": "bad", "label": "neg", "idx": 2}]
        r = c.post("/train", dict(base, adapter="w", train=rows, epochs=1))
        check(r.status == 202, "extra columns in training examples are ignored: %r" % r)
    finally:
        finish(s)


def test_adapter_id_and_pairs():
    s = start("synonyms")
    try:
        c = s.client()
        r = c.upload("sent", lora_files(1))
        check(r.status == 201, "upload: %r" % r)
        want = c.predict({"adapter": "sent", "inputs": TEXTS, "return_logits": True})
        check(want.status == 200, "predict by adapter")
        for body in ({"adapter_id": "sent"}, {"parameters": {"adapter_id": "sent"}}, {"parameters": {"adapter": "sent"}},
                     {"adapter": "sent", "parameters": {"adapter_id": "sent"}}):
            r = c.predict(dict(body, inputs=TEXTS, return_logits=True))
            ok = r.status == 200 and r.json()["adapter"] == "sent" and r.json()["version"] == 1
            check(ok and close(logits_of(r), logits_of(want)), "%r names the adapter: %r" % (body, r))
        r = c.predict({"inputs": TEXTS, "adapter_id": None, "return_logits": True})
        check(r.status == 200 and r.json()["adapter"] is None, "adapter_id null: the base model")
        r = c.predict({"inputs": ["a"], "adapter": "sent", "adapter_id": "other"})
        check(refused(r, 400, "adapter", "adapter_id", "other"), "adapter and adapter_id differ")
        r = c.predict({"inputs": ["a"], "parameters": {"adapter_id": "other"}}, headers={"X-Adapter": "sent"})
        check(refused(r, 400, "parameters.adapter_id", "X-Adapter"), "parameters.adapter_id and X-Adapter differ")
        r = c.predict({"inputs": ["a"], "parameters": {"adapter_id": "sent"}}, headers={"X-Adapter": "sent"})
        check(r.status == 200 and r.json()["adapter"] == "sent", "equal to X-Adapter")
        r = c.predict({"inputs": ["a"], "adapter_id": "nosuch"})
        check(r.status == 404, "adapter_id of a missing adapter: 404")
        r = c.predict({"inputs": ["a"], "adapter_id": 3})
        check(refused(r, 400, "adapter_id must be a string"), "adapter_id of the wrong type")
        # TEI's pair form
        obj = c.predict({"inputs": [{"text": "a great movie", "text_pair": "with a fine cast"}, {"text": "dull"}], "return_logits": True})
        r = c.predict({"inputs": [["a great movie", "with a fine cast"], "dull"], "return_logits": True})
        check(r.status == 200 and obj.status == 200 and close(logits_of(r), logits_of(obj)), "[text, text_pair] is a pair: %r" % r)
        single = c.predict({"inputs": [{"text": "a great movie"}], "return_logits": True})
        check(not close(logits_of(single), logits_of(obj)[:len(logits_of(single))], atol=1e-6), "the pair is not read as its first text")
        r = c.predict({"inputs": ["a great movie", "with a fine cast"]})
        check(r.status == 200 and len(r.json()["outputs"]) == 2, "a list of two strings stays two inputs")
        for bad in ([["a"]], [["a", "b", "c"]], [["a", 3]], [[]]):
            r = c.predict({"inputs": bad})
            check(refused(r, 400, "inputs[0]", "pair"), "bad pair %r: %r" % (bad, r))
    finally:
        finish(s)


def test_truncate():
    s = start("truncate")
    try:
        c = s.client()
        long1, long2 = "good " * 200, "good " * 50
        r = c.predict({"inputs": [long1, long2, "good"], "max_length": 8, "return_logits": True})
        outs = r.json()["outputs"] if r.status == 200 else []
        check(len(outs) == 3 and outs[0].get("truncated") is True and outs[1].get("truncated") is True, "cut inputs say so: %r" % r)
        check(len(outs) == 3 and "truncated" not in outs[2], "an input that fits has no \"truncated\"")
        check(len(outs) == 3 and close(outs[0]["logits"], outs[1]["logits"]), "both are cut to the same first tokens")
        r = c.predict({"inputs": ["good", long1], "max_length": 8, "truncate": False})
        check(refused(r, 413, "inputs[1]", "truncate") and error_of(r).get("code") == "too_large", "truncate false refuses: %r" % r)
        r = c.predict({"inputs": {"text": "good", "text_pair": long1 * 3}, "parameters": {"truncate": False}})
        check(refused(r, 413, "inputs"), "a long pair refused (default max_length): %r" % r)
        r = c.predict({"inputs": ["good"], "max_length": 8, "truncate": False})
        check(r.status == 200 and "truncated" not in r.json()["outputs"][0], "truncate false: short inputs pass")
        r = c.predict({"inputs": ["good"], "truncate": "no"})
        check(refused(r, 400, "truncate must be a boolean"), "truncate of the wrong type")
        qa = {"question": "what?", "context": "word " * 300}
        r = c.predict({"inputs": [qa], "max_length": 32, "truncate": False})
        check(r.status == 200 and "truncated" not in r.json()["outputs"][0], "QA contexts are windowed, never cut: %r" % r)
    finally:
        finish(s)


def test_request_ids():
    s = start("ids")
    try:
        c = s.client()
        r = c.get("/info", headers={"X-Request-Id": "client-id_42"})
        check(r.status == 200 and r.header("X-Request-Id") == "client-id_42", "the client's id echoed: %r" % r.header("X-Request-Id"))
        r = c.get("/info")
        gen = r.header("X-Request-Id") or ""
        check(re.fullmatch(r"[0-9a-f]{16}", gen) is not None, "an id generated when absent: %r" % gen)
        r2 = c.get("/info")
        check(r2.header("X-Request-Id") not in (None, gen), "generated ids differ")
        for bad in ("has space", "x" * 129, "caf\u00e9".encode("utf-8").decode("latin-1")):
            r = c.get("/info", headers={"X-Request-Id": bad})
            check(re.fullmatch(r"[0-9a-f]{16}", r.header("X-Request-Id") or "") is not None, "an unusable id replaced: %r" % bad)
        r = c.predict({"inputs": ["a"], "adaptor": "x"}, headers={"X-Request-Id": "err-77"})
        check(r.status == 400 and r.header("X-Request-Id") == "err-77" and error_of(r).get("request_id") == "err-77",
              "error bodies carry the id: %r" % r)
        r = c.get("/nosuch", headers={"X-Request-Id": "nf-1"})
        check(r.status == 404 and error_of(r).get("request_id") == "nf-1", "404 bodies too")
        r = c.predict({"inputs": ["a"]}, headers={"X-Request-Id": "pred-9"})
        check(r.status == 200 and r.header("X-Request-Id") == "pred-9", "predictions echo it")
        time.sleep(0.3)
        lines = [ln for ln in s.log_lines() if ln.get("request_id") in ("err-77", "pred-9")]
        check(len(lines) == 2 and all(ln.get("path") == "/predict" for ln in lines), "the access log names the ids: %r" % lines)
    finally:
        finish(s)


def test_ready_health_openapi():
    s = start("ready")
    try:
        c = s.client()
        r = c.get("/health")
        check(r.status == 200 and r.json() == {"status": "ok"}, "/health: %r" % r)
        r = c.get("/ready")
        check(r.status == 200 and r.json() == {"status": "ready"}, "/ready: %r" % r)
        # a lost store takes the replica out of rotation; the process stays alive
        moved = s.data + ".away"
        os.rename(s.data, moved)
        t0 = time.time()
        while time.time() - t0 < 30 and c.get("/ready").status == 200:
            time.sleep(0.5)
        r = c.get("/ready")
        check(refused(r, 503, "data-dir") and error_of(r).get("code") == "not_ready", "/ready 503 without the store: %r" % r)
        check(c.get("/health").status == 200, "/health still 200")
        os.rename(moved, s.data)
        t0 = time.time()
        while time.time() - t0 < 15 and c.get("/ready").status != 200:
            time.sleep(0.3)
        check(c.get("/ready").status == 200, "/ready again once the store is back")
        # the API's description
        r = c.get("/openapi.json")
        check(r.status == 200 and (r.header("Content-Type") or "").startswith("application/json"), "/openapi.json: %r" % r)
        spec = r.json() if r.status == 200 else {}
        paths = spec.get("paths", {})
        for p in ("/health", "/ready", "/predict", "/adapters", "/adapters/{name}", "/train", "/jobs/{id}", "/openapi.json"):
            check(p in paths, "%s documented" % p)
        props = (paths.get("/predict", {}).get("post", {}).get("requestBody", {}).get("content", {})
                 .get("application/json", {}).get("schema", {}))
        check("X-Request-Id" in json.dumps(spec), "X-Request-Id documented")
        try:
            import yaml
        except ImportError:
            print("  (PyYAML missing: /openapi.json not compared with docs/openapi.yaml)")
            yaml = None
        if yaml is not None:
            with open(os.path.join(ROOT, "docs", "openapi.yaml"), encoding="utf-8") as f:
                check(yaml.safe_load(f) == spec, "/openapi.json is docs/openapi.yaml")
        check(isinstance(props, dict), "predict body schema")
    finally:
        finish(s)


def metric_lines(c):
    r = c.get("/metrics")
    out = {}
    for ln in r.body.decode().splitlines():
        if ln and not ln.startswith("#"):
            k, _, v = ln.rpartition(" ")
            out[k] = float(v)
    return out


def test_metrics():
    s = start("metrics")
    try:
        c = s.client()
        n = 22
        for i in range(n):
            r = c.upload("a%02d" % i, lora_files(i + 1))
            check(r.status == 201, "upload a%02d: %r" % (i, r))
        inputs = 0
        for i in range(n):  # adapter a<i> gets i + 1 requests
            for _ in range(i + 1):
                r = c.predict({"adapter": "a%02d" % i, "inputs": ["a", "b"]})
                inputs += 2
        for _ in range(3):
            c.predict({"inputs": ["base"]})
            inputs += 1
        c.predict({"adapter": "nosuch", "inputs": ["x"]})  # 404: not counted per adapter
        m = metric_lines(c)
        per = {k: v for k, v in m.items() if k.startswith("peftd_adapter_requests_total{")}
        named = {k for k in per if ".other" not in k and ".base" not in k}
        check(len(named) == 20, "the 20 most requested adapters have a series: %d" % len(named))
        check(per.get('peftd_adapter_requests_total{adapter="a21"}') == 22, "a21's count: %r" % per)
        check(per.get('peftd_adapter_requests_total{adapter="a02"}') == 3, "a02's count")
        check(per.get('peftd_adapter_requests_total{adapter=".other"}') == 1 + 2, "the two least requested in .other: %r" % per)
        check(per.get('peftd_adapter_requests_total{adapter=".base"}') == 3, "the base model's requests in .base")
        check(m.get("peftd_queue_wait_seconds_count") == inputs, "one queue wait per input: %r vs %d" %
              (m.get("peftd_queue_wait_seconds_count"), inputs))
        check(m.get('peftd_queue_wait_seconds_bucket{le="+Inf"}') == inputs, "queue wait buckets")
        check(m.get("peftd_batch_duration_seconds_count", 0) >= 1, "compute histogram beside it")
        check(m.get('peftd_model_info{model="model"}') == 1, "the model's name: %r" % [k for k in m if "model_info" in k])
        for st in ("succeeded", "failed", "cancelled"):
            check('peftd_training_jobs_finished_total{status="%s"}' % st in m, "job outcome %s" % st)
        # a cancelled job counts as cancelled
        two = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 200
        r = c.post("/train", {"adapter": "t", "method": "lora", "task": "classification", "train": two, "epochs": 50})
        job = r.json().get("job") if r.status == 202 else None
        check(job is not None, "job queued: %r" % r)
        if job:
            c.request("DELETE", "/jobs/" + job)
            t0 = time.time()
            while time.time() - t0 < 60 and c.get("/jobs/" + job).json().get("status") not in ("cancelled", "succeeded", "failed"):
                time.sleep(0.2)
            m = metric_lines(c)
            check(m.get('peftd_training_jobs_finished_total{status="cancelled"}') == 1, "one cancelled job counted")
        # the job's lifecycle in the log
        time.sleep(0.3)
        ev = [ln for ln in s.log_lines() if ln.get("job") == job and "msg" in ln]
        msgs = [ln["msg"] for ln in ev]
        check("job queued" in msgs and "job ended" in msgs, "job lifecycle lines: %r" % msgs)
        ended = [ln for ln in ev if ln["msg"] == "job ended"]
        check(len(ended) == 1 and ended[0].get("status") == "cancelled" and ended[0].get("reason"), "ended with a reason: %r" % ended)
        # a job that runs to its end: started, evaluated, published, ended
        small = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
        r = c.post("/train", {"adapter": "t2", "method": "lora", "task": "classification", "train": small * 4, "eval": small,
                              "epochs": 1, "batch_size": 4})
        job2 = r.json().get("job") if r.status == 202 else None
        t0 = time.time()
        while job2 and time.time() - t0 < 60 and c.get("/jobs/" + job2).json().get("status") not in ("succeeded", "failed"):
            time.sleep(0.2)
        time.sleep(0.3)
        ev = [ln for ln in s.log_lines() if ln.get("job") == job2 and "msg" in ln]
        msgs = [ln["msg"] for ln in ev]
        check(msgs == ["job queued", "job started", "job evaluated", "job published", "job ended"], "a job's lines in order: %r" % msgs)
        check(ev and ev[-1].get("status") == "succeeded" and ev[2].get("accuracy") is not None and ev[3].get("version") == 1,
              "their fields: %r" % ev)
        m = metric_lines(c)
        check(m.get('peftd_training_jobs_finished_total{status="succeeded"}') == 1, "one succeeded job counted")
    finally:
        finish(s)


def test_api_key_rules():
    d = os.path.join(TMP, "keys")
    os.makedirs(d, exist_ok=True)
    for key, why in [("short-key-12345", "characters"), ("change-me-placeholder-key", "placeholder"),
                     ("MY-EXAMPLE-KEY-0123456789", "placeholder"), ("aaaaaaaaaaaaaaaaaaaa", "repeated")]:
        kf = os.path.join(d, "k")
        with open(kf, "w") as f:
            f.write(key + "\n")
        p = subprocess.run([BIN, "serve", "--port", "0", "--model", MODEL, "--data-dir", os.path.join(d, "data"), "--api-key-file", kf],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode != 0 and why in p.stderr and key not in p.stderr, "key %r refused (%s): %d %s" % (key, why, p.returncode,
                                                                                                       p.stderr[-300:]))
    with open(os.path.join(d, "k"), "w") as f:
        f.write("0123456789abcdef\n")  # 16 characters: the shortest accepted
    s = start("keys-ok", ["--api-key-file", os.path.join(d, "k")])
    try:
        check(s.client("0123456789abcdef").request("DELETE", "/adapters/nosuch").status == 404, "a 16-character key works")
        check(s.client().request("DELETE", "/adapters/nosuch").status == 401, "and is needed")
    finally:
        finish(s)


def help_options():
    """[(flag, default, env, meaning)] from `peftd serve --help`."""
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=60).stdout.splitlines()
    rows = []
    for i, ln in enumerate(out):
        m = re.match(r"  (--[a-z0-9-]+)(?: \S+)?\s{2,}(.*)$", ln)
        d = re.match(r"\s+default: (.*); env (PEFTD_[A-Z0-9_]+)$", out[i + 1]) if m and i + 1 < len(out) else None
        if m and d:
            rows.append((m.group(1), d.group(1), d.group(2), m.group(2).strip()))
    return rows


def doc_table(path, heading):
    """[(flag, default, env, meaning)] of the first "| flag | environment |" table after heading."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    at = text.index("| flag | environment | default | meaning |", text.index(heading))
    rows = []
    for ln in text[at:].splitlines()[2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        rows.append((cells[0].strip("`").split()[0], cells[2].replace("`", ""), cells[1].strip("`"), cells[3].replace("`", "")))
    return rows


def test_config_tables():
    opts = help_options()
    check(len(opts) >= 15, "serve --help lists the options: %d" % len(opts))
    readme = doc_table("README.md", "## Configuration")
    want = [(f, "none" if d == "(none)" else d, e, m) for f, d, e, m in opts]
    check(readme == want, "README's configuration table is `peftd serve --help`:\n  %s" %
          "\n  ".join("README %r\n  help   %r" % (a, b) for a, b in zip(readme + [None] * 99, want) if a != b))
    api = doc_table("docs/API.md", "### peftd serve")
    check([(f, e) for f, _, e, _ in api] == [(f, e) for f, _, e, _ in opts], "docs/API.md lists the same options and variables")
    check([d for f, d, _, _ in api if f != "--model"] == [("none" if d == "(none)" else d) for f, d, _, _ in opts if f != "--model"],
          "docs/API.md's defaults are the binary's")


def test_versions():
    s = start("versions")
    try:
        c = s.client()
        for i in range(4):
            r = c.upload("v", lora_files(i + 1), method="PUT" if i else "POST")
            check(r.status in (200, 201) and r.json()["version"] == i + 1, "version %d: %r" % (i + 1, r))
        r = c.get("/adapters/v/versions")
        j = r.json() if r.status == 200 else {}
        check(r.status == 200 and j.get("name") == "v" and j.get("current") == 4, "the history names the current version: %r" % r)
        vs = j.get("versions", [])
        check([v["version"] for v in vs] == [4, 3, 2], "the three kept versions, newest first: %r" % [v.get("version") for v in vs])
        check([v["current"] for v in vs] == [True, False, False], "only the newest is current")
        check(all(v["method"] == "lora" and v["task"] == "classification" and v["bytes"] > 0 for v in vs), "each described: %r" % vs)
        one = c.get("/adapters/v").json()
        check(vs and {k: vs[0][k] for k in one} == one, "the current entry equals GET /adapters/v")
        check(c.get("/adapters/nosuch/versions").status == 404, "unknown adapter: 404")
        check(c.get("/adapters/..x/versions").status in (400, 404), "invalid name refused")
        check(c.request("DELETE", "/adapters/v/versions").status == 405, "only GET")
        check(c.request("DELETE", "/adapters/v").status == 204, "delete")
        check(c.get("/adapters/v/versions").status == 404, "a deleted adapter has no history")
    finally:
        finish(s)


def test_jobs_from_any_replica():
    a = start("rep-a")
    d = os.path.join(TMP, "rep-b")
    os.makedirs(d, exist_ok=True)
    b = Server(BIN, ["--model", MODEL, "--data-dir", a.data], log_path=os.path.join(d, "server.log")).start(timeout=120)
    try:
        ca, cb = a.client(), b.client()
        two = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
        r = ca.post("/train", {"adapter": "shared", "method": "lora", "task": "classification", "train": two * 2, "epochs": 1})
        job = r.json().get("job") if r.status == 202 else None
        check(job is not None, "job queued on A: %r" % r)
        t0 = time.time()
        while job and time.time() - t0 < 60 and ca.get("/jobs/" + job).json().get("status") != "succeeded":
            time.sleep(0.2)
        rb = cb.get("/jobs/" + job)
        ja = ca.get("/jobs/" + job).json()
        check(rb.status == 200 and rb.json().get("job") == job and rb.json().get("adapter") == "shared" and
              rb.json().get("status") == ja.get("status") == "succeeded", "B answers A's job from the store: %r" % rb)
        check(rb.json().get("published_versions") == ja.get("published_versions"), "with its published versions")
        for bad in ("j-999999", "j-../../x", "nope", "j-01"):
            check(cb.get("/jobs/" + bad).status == 404, "unknown job %r: 404 on B" % bad)
    finally:
        finish(b)
        finish(a)


TESTS = [test_unknown_fields, test_adapter_id_and_pairs, test_truncate, test_request_ids, test_ready_health_openapi, test_metrics, test_api_key_rules, test_config_tables, test_versions, test_jobs_from_any_replica]


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout("test took longer than %d s" % TEST_TIMEOUT)


def main():
    global TMP, MODEL, failed
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    if not os.path.exists(BIN):
        print("e2e_api: %s not found (set PEFTD_BIN)" % BIN)
        print("e2e_api: 0 passed, 1 failed")
        return 1
    TMP = tempfile.mkdtemp(prefix="peftd-api-")
    try:
        MODEL = os.path.join(TMP, "model")
        subprocess.run([BIN, "gen-model", "--out", MODEL], check=True, timeout=120, stdout=subprocess.DEVNULL)
        signal.signal(signal.SIGALRM, on_alarm)
        for t in TESTS:
            if only and only not in t.__name__:
                continue
            t0 = time.time()
            before = failed
            signal.alarm(TEST_TIMEOUT)
            try:
                t()
            except Exception:  # noqa: BLE001 - a crashing test is one failure, the rest go on
                failed += 1
                print("  FAIL %s raised:\n%s" % (t.__name__, traceback.format_exc()), flush=True)
            finally:
                signal.alarm(0)
            print("%-36s %s (%.1f s)" % (t.__name__, "ok" if failed == before else "FAILED", time.time() - t0), flush=True)
    finally:
        if os.environ.get("E2E_KEEP"):
            print("kept", TMP)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print("e2e_api: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
