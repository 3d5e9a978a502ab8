#!/usr/bin/python3
"""Server benchmark for bench/run.sh: POST /predict throughput and latency under wrk, the
server's overhead over the compute time of the batches it forms (from /metrics), and how soon
a newly uploaded adapter version answers.

For each model (the embedded tiny default and the BERT-base-shaped bench checkpoint):
  1. start `peftd serve --port 0` on 127.0.0.1 with a private --data-dir and read the port
     from its "listening" log line;
  2. for each concurrency (1, 16, 64): scrape /metrics, run wrk (one wrk thread, closed loop,
     `concurrency` connections, a Lua script sending one JSON body), scrape /metrics again;
     report requests/s, p50/p99, and the compute time the scheduler's batches took
     (peftd_batch_duration_seconds) against the wall time and the latencies; also the
     server process's CPU time per request (/proc/PID/stat);
  3. (tiny) the HTTP floor: wrk at concurrency 1 on GET /health, a route that does no work,
     so the c=1 predict latency splits into that floor, the batch compute and the rest;
  4. upload LoRAs as new versions of one name with PUT /adapters/{name} and measure, per
     version, the time from the upload's response to the first /predict response computed by
     the new version (polled on one keep-alive connection; the response names its version),
     then the same predict again with the version warm. Tiny model: a ~1 MB LoRA (r=144 on all
     six linears of both layers: query, key, value, attention.output.dense, intermediate.dense,
     output.dense; the rank is above the hidden size only to make the file 1 MB). BERT-base:
     r=8 on query and value (1.19 MB); there one predict takes ~45 ms, so the swap's own cost
     is reported as first answer minus warm answer, per version.

Overhead definitions (written into the results):
  c=1:  latency_overhead = mean latency / mean batch compute time - 1 (each request is one
        batch: HTTP round trip, JSON, tokenizing, queueing and any batch wait, relative to the
        forward pass; means on both sides, so a stall of the shared CPU counts on both)
  all:  busy_overhead = wall time / summed batch compute time - 1, wall time running from
        wrk's start until the server's queue is empty again (wrk abandons requests in flight
        at its deadline; the server still computes them): at saturation (c=64), the share of
        time the compute pool sat idle while requests were waiting (on these 2 shared cores
        that includes the CPU time wrk and the HTTP threads take from the compute threads).
--dtype bf16|int8 passes that --dtype to every `peftd serve` (the base's linear weights in that
dtype; adapters stay fp32); run.sh runs the BERT-base part again in each (--skip-tiny).
wrk runs on the same 2 cores as the server; that is stated, not hidden.
Only loopback addresses are used; every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np

CONS, VOW = "bdfghjklmnprstvwzcxy", "aeiou"


def bench_word(i):
    """The i-th two-syllable word of the bench vocabulary (bench_util.h bench_word)."""
    a, b = i % 100, (i // 100) % 100
    return CONS[b // 5] + VOW[b % 5] + CONS[a // 5] + VOW[a % 5]


def text_of(words, seed):
    return " ".join(bench_word((seed * 7919 + k * 104729) % 10000) for k in range(words))


ENGLISH = ("the quick brown fox jumps over the lazy dog while a small bird sings in the tall green tree "
           "and the children play near the old river on a warm summer day").split()


# ==== HTTP helpers (loopback only) ====


def request(port, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metrics(port):
    st, body = request(port, "GET", "/metrics")
    if st != 200:
        raise RuntimeError("/metrics answered %d" % st)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def mdelta(a, b, key):
    return b.get(key, 0.0) - a.get(key, 0.0)


def proc_cpu_s(pid):
    """User + system CPU seconds of a process so far (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ==== the server process ====


class Server:
    def __init__(self, peftd, model, threads, log, dtype="fp32"):
        self.dir = tempfile.mkdtemp(prefix="peftd-bench-")
        args = [peftd, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", os.path.join(self.dir, "data"),
                "--threads", str(threads), "--dtype", dtype]
        if model:
            args += ["--model", model]
        self.log = open(log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEFTD_")}
        self.p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=self.log, env=env, text=True)
        self.port = None
        self.ready = None
        deadline = time.time() + 180
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.write(line)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("msg") == "listening":
                self.port = ev.get("port")
            if ev.get("msg") == "ready":
                self.ready = ev
                break
        if not self.ready or not self.port:
            self.stop()
            raise RuntimeError("peftd serve did not become ready (see %s)" % log)
        # keep draining stderr into the log so the server never blocks on a full pipe
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        for line in self.p.stderr:
            self.log.write(line)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if getattr(self, "drain", None):
            self.drain.join(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ==== wrk ====

LUA = r"""
%s
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%.1f, "status_errors": %%d, "timeouts": %%d, "connect_errors": %%d, "read_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, summary.errors.status, summary.errors.timeout, summary.errors.connect, summary.errors.read))
end
"""


def run_wrk(port, body, conc, seconds, workdir, path="/predict"):
    """body None: GET path; else POST the JSON body."""
    lua = os.path.join(workdir, "req.lua")
    req = ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[%s]==]' % body
           if body is not None else 'wrk.method = "GET"')
    with open(lua, "w") as f:
        f.write(LUA % req)
    cmd = ["wrk", "-t1", "-c%d" % conc, "-d%ds" % seconds, "--timeout", "60s", "-s", lua,
           "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON "):])
    raise RuntimeError("wrk gave no result: %s %s" % (out.stdout, out.stderr))


def load_levels(srv, body, levels, seconds, workdir):
    res = []
    # warm-up: a few requests so page faults and first allocations are not measured
    for _ in range(3):
        st, out = request(srv.port, "POST", "/predict", body.encode(), {"Content-Type": "application/json"})
        if st != 200:
            raise RuntimeError("/predict answered %d: %s" % (st, out[:300]))
    for c in levels:
        m0 = metrics(srv.port)
        cpu0 = proc_cpu_s(srv.p.pid)
        t0 = time.time()
        w = run_wrk(srv.port, body, c, seconds, workdir)
        # wrk abandons the requests in flight when its time is up; the server still computes
        # them. Wait (bounded) until the queue is empty so compute and wall cover the same work.
        m1 = metrics(srv.port)
        for _ in range(1200):
            if m1.get("peftd_queue_depth", 0) == 0:
                break
            time.sleep(0.05)
            m1 = metrics(srv.port)
        wall = time.time() - t0
        cpu = proc_cpu_s(srv.p.pid) - cpu0
        compute = mdelta(m0, m1, "peftd_batch_duration_seconds_sum")
        batches = mdelta(m0, m1, "peftd_batch_duration_seconds_count")
        inputs = mdelta(m0, m1, "peftd_inputs_total")
        tokens = mdelta(m0, m1, "peftd_tokens_total")
        dur = w["duration_us"] / 1e6
        r = {"concurrency": c, "seconds": dur, "requests": w["requests"], "rps": w["requests"] / dur,
             "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3,
             "max_ms": w["max_us"] / 1e3, "mean_ms": w["mean_us"] / 1e3,
             "errors": w["status_errors"] + w["timeouts"] + w["connect_errors"] + w["read_errors"],
             "batches": batches, "inputs": inputs, "tokens": tokens, "compute_s": compute,
             "mean_batch_ms": compute / batches * 1e3 if batches else None,
             "inputs_per_batch": inputs / batches if batches else None,
             "tokens_per_input": tokens / inputs if inputs else None,
             "compute_share": compute / wall if wall else None,
             "server_cpu_ms_per_request": cpu / w["requests"] * 1e3 if w["requests"] else None,
             "server_cores": cpu / wall if wall else None}
        if batches and c == 1:
            # one request = one batch here, so mean latency - mean batch compute is the time the
            # server (and the loopback round trip) adds to each request's forward pass
            r["latency_overhead"] = (w["mean_us"] / 1e3) / r["mean_batch_ms"] - 1
            r["latency_added_ms"] = w["mean_us"] / 1e3 - r["mean_batch_ms"]
        if compute:
            r["busy_overhead"] = wall / compute - 1
        res.append(r)
        print("  c=%-3d %8.1f req/s  p50 %8.1f ms  p99 %8.1f ms  %5.1f inputs/batch  batch %7.1f ms  compute %3.0f%% of wall%s"
              % (c, r["rps"], r["p50_ms"], r["p99_ms"], r["inputs_per_batch"] or 0, r["mean_batch_ms"] or 0,
                 100 * (r["compute_share"] or 0), "  ERRORS %d" % r["errors"] if r["errors"] else ""))
        sys.stdout.flush()
    return res


# ==== adapter upload ====


# module -> (path under encoder.layer.N, out features, in features) of a BERT layer
LINEARS = {"query": ("attention.self.query", "h", "h"), "key": ("attention.self.key", "h", "h"),
           "value": ("attention.self.value", "h", "h"), "attention.output.dense": ("attention.output.dense", "h", "h"),
           "intermediate.dense": ("intermediate.dense", "f", "h"), "output.dense": ("output.dense", "h", "f")}
QV = ("query", "value")
ALL_LINEARS = tuple(LINEARS)


def lora_files(cfg, r, seed, modules=QV):
    """PEFT LoRA (rank r on `modules` of every layer) for a BertForSequenceClassification, as
    (adapter_config.json, adapter_model.safetensors) bytes."""
    dims = {"h": cfg["hidden_size"], "f": cfg["intermediate_size"]}
    rng = np.random.default_rng(seed)
    tensors = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in modules:
            path, out_f, in_f = LINEARS[m]
            base = "base_model.model.bert.encoder.layer.%d.%s" % (l, path)
            tensors[base + ".lora_A.weight"] = (rng.standard_normal((r, dims[in_f])) * 0.02).astype("<f4")
            tensors[base + ".lora_B.weight"] = (rng.standard_normal((dims[out_f], r)) * 0.02).astype("<f4")
    header, off = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for n in names:
        t = tensors[n]
        header[n] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    weights = struct.pack("<Q", len(hj)) + hj + b"".join(tensors[n].tobytes() for n in names)
    # a regex (PEFT full-matches a string target_modules) naming exactly these linears
    target = r".*encoder\.layer\.\d+\.(%s)" % "|".join(re.escape(LINEARS[m][0]) for m in modules)
    config = json.dumps({"peft_type": "LORA", "task_type": "SEQ_CLS", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
                         "target_modules": target, "bias": "none", "fan_in_fan_out": False,
                         "inference_mode": True, "base_model_name_or_path": "bench"}).encode()
    params = sum(t.size for t in tensors.values())
    return config, weights, params


def multipart(fields):
    b = uuid.uuid4().hex
    parts = []
    for name, (fname, data, ctype) in fields.items():
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fname if fname else "")
        parts.append(b"--" + b.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\nContent-Type: " +
                     ctype.encode() + b"\r\n\r\n" + data + b"\r\n")
    return b"".join(parts) + b"--" + b.encode() + b"--\r\n", "multipart/form-data; boundary=" + b


def upload_latency(srv, cfg, versions, text, r, modules):
    """Uploads versions + 1 LoRAs under one name (the first creates it; the rest are hot swaps)
    and times, per swap: the upload request; from its response to the first /predict response
    that names the new version (polled on one keep-alive connection, as a client that uploads
    and then predicts would); and the same predict once more with that version warm."""
    name = "bench-lora"
    body = json.dumps({"inputs": text, "adapter": name}).encode()
    hdr = {"Content-Type": "application/json"}
    ups, avail, plain, polls, sizes, params = [], [], [], [], [], 0
    pc = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)

    def predict():
        pc.request("POST", "/predict", body=body, headers=hdr)
        resp = pc.getresponse()
        return resp.status, resp.read()

    try:
        for v in range(versions + 1):
            config, weights, params = lora_files(cfg, r, 100 + v, modules)
            sizes.append(len(weights))
            form, ctype = multipart({"config": ("adapter_config.json", config, "application/json"),
                                     "weights": ("adapter_model.safetensors", weights, "application/octet-stream")})
            t0 = time.perf_counter()
            st, out = request(srv.port, "PUT", "/adapters/" + name, form, {"Content-Type": ctype})
            t1 = time.perf_counter()
            if st not in (200, 201):
                raise RuntimeError("upload answered %d: %s" % (st, out[:300]))
            ver = json.loads(out).get("version")
            # the first answer computed by the new version; bounded polling in case publication lags
            for k in range(1, 201):
                st, out = predict()
                if st == 200 and json.loads(out).get("version") == ver:
                    break
                if st != 200:
                    raise RuntimeError("/predict answered %d: %s" % (st, out[:300]))
            else:
                raise RuntimeError("version %s never answered" % ver)
            t2 = time.perf_counter()
            # the same request once more, with the version warm: the plain cost of answering
            st, out = predict()
            t3 = time.perf_counter()
            if st != 200 or json.loads(out).get("version") != ver:
                raise RuntimeError("warm predict failed: %d %s" % (st, out[:300]))
            if v == 0:
                continue  # the first upload creates the name; versions after it are swaps
            ups.append(t1 - t0)
            avail.append(t2 - t1)
            plain.append(t3 - t2)
            polls.append(k)
    finally:
        pc.close()
    med = lambda x: float(np.median(x)) if x else None
    swap = [a - b for a, b in zip(avail, plain)]
    return {"versions": versions, "lora_bytes": sizes[-1], "lora_params": params, "lora_r": r, "lora_modules": list(modules),
            "upload_ms_p50": med(ups) * 1e3, "available_ms_p50": med(avail) * 1e3, "available_ms_max": max(avail) * 1e3,
            "warm_predict_ms_p50": med(plain) * 1e3, "swap_ms_p50": med(swap) * 1e3, "swap_ms_max": max(swap) * 1e3,
            "polls_max": max(polls), "input_words": len(text.split()),
            "definition": "available: from the upload's response to the first /predict response computed by the new "
                          "version; warm: the same predict right after; swap: available - warm, per version"}


def print_upload(up):
    print("  LoRA upload (%.2f MB, r=%d on %s): upload %.1f ms p50; new version answered %.1f ms p50 (max %.1f) after the "
          "upload's response (%d poll(s) at most); the same predict warm: %.1f ms p50; first answer - warm answer: "
          "%.1f ms p50 (max %.1f)"
          % (up["lora_bytes"] / 1e6, up["lora_r"], "+".join(up["lora_modules"]), up["upload_ms_p50"], up["available_ms_p50"],
             up["available_ms_max"], up["polls_max"], up["warm_predict_ms_p50"], up["swap_ms_p50"], up["swap_ms_max"]))
    sys.stdout.flush()


def bench_tiny(a, levels, work, res):
    """The tiny default model: load levels, the HTTP floor, the 1 MB LoRA upload."""
    print("tiny model (the embedded default), input: 24 English words; --dtype %s" % a.dtype)
    srv = Server(a.peftd, "", a.threads, os.path.join(a.logdir, "serve-tiny-%s.log" % a.dtype), a.dtype)
    try:
        body = json.dumps({"inputs": " ".join(ENGLISH[:24])})
        res["tiny"] = {"ready": srv.ready, "levels": load_levels(srv, body, levels, a.seconds_tiny, work)}
        w = run_wrk(srv.port, None, 1, a.seconds_floor, work, "/health")
        res["tiny"]["http_floor"] = {"route": "GET /health", "concurrency": 1, "rps": w["requests"] / (w["duration_us"] / 1e6),
                                     "p50_ms": w["p50_us"] / 1e3, "p99_ms": w["p99_us"] / 1e3}
        print("  HTTP floor (GET /health, c=1): p50 %.3f ms, %.0f req/s" % (w["p50_us"] / 1e3, res["tiny"]["http_floor"]["rps"]))
        with open(os.path.join(srv.ready["model"], "config.json")) as f:
            tcfg = json.load(f)
        up = upload_latency(srv, tcfg, a.versions, " ".join(ENGLISH[:6]), 144, ALL_LINEARS)
        res["tiny"]["upload"] = up
        print_upload(up)
    finally:
        srv.stop()


def bench_bert(a, levels, work, res):
    """The BERT-base-shaped checkpoint: load levels, the r=8 LoRA upload."""
    with open(os.path.join(a.bert, "config.json")) as f:
        cfg = json.load(f)
    print("BERT-base shape, input: 126 words = 128 tokens with [CLS] and [SEP]; --dtype %s" % a.dtype)
    srv = Server(a.peftd, a.bert, a.threads, os.path.join(a.logdir, "serve-bert-%s.log" % a.dtype), a.dtype)
    try:
        body = json.dumps({"inputs": text_of(126, 1)})
        res["bert"] = {"ready": srv.ready, "levels": load_levels(srv, body, levels, a.seconds_bert, work)}
        up = upload_latency(srv, cfg, a.versions, text_of(6, 2), 8, QV)
        res["bert"]["upload"] = up
        print_upload(up)
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peftd", required=True)
    ap.add_argument("--bert", required=True, help="the BERT-base-shaped checkpoint dir")
    ap.add_argument("--json", required=True)
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--seconds-tiny", type=int, default=8)
    ap.add_argument("--seconds-bert", type=int, default=20)
    ap.add_argument("--seconds-floor", type=int, default=4)
    ap.add_argument("--versions", type=int, default=15)
    ap.add_argument("--skip-bert", action="store_true")
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "int8"], help="peftd serve --dtype")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    os.makedirs(a.logdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="peftd-bench-wrk-")
    res = {"threads": a.threads, "dtype": a.dtype, "levels": levels, "load_generator": "wrk 1 thread on the same machine",
           "overhead_definitions": {
               "latency_overhead": "c=1: mean latency / mean batch compute time - 1",
               "busy_overhead": "wall time / summed batch compute time - 1"}}
    try:
        if not a.skip_tiny:
            bench_tiny(a, levels, work, res)
        if not a.skip_bert:
            bench_bert(a, levels, work, res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
