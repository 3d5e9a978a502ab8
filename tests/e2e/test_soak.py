#!/usr/bin/python3
"""The soak (issue 17): a mixed load on one `peftd serve` for a while, then faults.

Load (--seconds, default 120; `make soak` runs 1800 on the normal build):
  * 200 adapters uploaded first; predicting clients over them (one to four inputs, some QA on the
    base model); replacements (PUT) of those adapters; new adapters uploaded, used and deleted;
    two training jobs at once (--train-threads 2), resubmitted as they end, cycling through
    LoRA, prefix tuning, prompt tuning, bottleneck and IA3; the resident budget
    (--max-resident-mb 1) makes adapters leave memory and load again all along;
  * no unprovoked error: every answer is the one its request must get (200/201/202/204, jobs
    succeed); the first few others are printed;
  * RSS (VmRSS, sampled each second) flat after the warm-up (the first quarter, at least 20 s):
    the slope fitted by least squares, times the measured window, within 10% of the mean + 8 MiB
    (+ 16 MiB on ASan for its quarantine);
  * /predict p99 of the last third within 2x (+ 25 ms) of the first third's.
  On 2026-12-07 the 30-minute run on the normal build failed the RSS check: +40 MiB over 22 min,
  the ~4 KiB each of the 13,426 finished jobs the server kept without a bound (finding 12). With
  --keep-jobs (default 1000) the same run passes: +3.3 MiB over 22 min (docs/RELIABILITY.md).

Faults (skipped with --no-faults):
  * kill -9 at random points while uploads, replacements and a training job run, three times
    (ten with --seconds >= 600): after the restart every acknowledged version is there (the
    current version is at least the one acknowledged), every adapter answers, and every job
    killed while it ran resumes from its checkpoint (or failed with a reason);
  * a data dir that fills up (an 8 MiB tmpfs; skipped with a message when it cannot be mounted):
    uploads past the space get a clean 500 with the old version intact and nothing
    half-registered, a training job whose publish fails ends failed with a reason, and after
    deletes uploads work again.
  * Allocation failures in the loaders and the trainer need a failure-injection hook inside the
    process (next phase of issue 17; see the report); not here.

Prints the figures and "e2e_soak: N passed, N failed[, N skipped]" last; exits 1 on failure.
Usage: python3 tests/e2e/test_soak.py [--seconds N] [--no-faults | --faults-only]
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peftio import SANITIZER_MARKS, Server, lora_files, multipart, proc_status_kb  # noqa: E402

BIN = os.path.abspath(os.environ.get("PEFTD_BIN", "build/peftd"))
SECONDS = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else float(os.environ.get("SOAK_SECONDS", "120"))
FAULTS = "--no-faults" not in sys.argv
LOAD = "--faults-only" not in sys.argv  # the faults alone (about 10 s): kill -9 rounds, full data dir
N_ADAPTERS = 200

passed = failed = skipped = 0
TMP = MODEL = None
IS_ASAN = False


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        frame = traceback.extract_stack(limit=2)[0]
        print("  FAIL %s:%d: %s" % (os.path.basename(frame.filename), frame.lineno, what), flush=True)
    return cond


def skip(why):
    global skipped
    skipped += 1
    print("  skip: " + why, flush=True)


def start(name, args=(), data=None):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    data = data or os.path.join(d, "data")
    s = Server(BIN, ["--model", MODEL, "--data-dir", data] + list(args), log_path=os.path.join(d, "server.log"),
               env={"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1") + ":quarantine_size_mb=16"})
    s.data = data
    return s.start(timeout=120)


def finish(s):
    rc = s.stop(timeout=60)
    check(rc == 0, "server exit status 0 (got %r):\n%s" % (rc, s.log_tail(20)))
    with open(s.log_path, errors="replace") as f:
        check(not any(m in f.read() for m in SANITIZER_MARKS), "no sanitizer report in %s" % s.log_path)


WORDS_POS = ["good", "great", "fun", "best", "love"]
WORDS_NEG = ["bad", "boring", "worst", "hate", "terrible"]
FILL = ["the", "movie", "film", "story", "was", "it", "very", "plot", "really", "this"]


def examples(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pos = rng.random() < 0.5
        w = [rng.choice(FILL) for _ in range(rng.randint(2, 6))]
        w.insert(rng.randint(0, len(w)), rng.choice(WORDS_POS if pos else WORDS_NEG))
        out.append({"text": " ".join(w), "label": "positive" if pos else "negative"})
    return out


METHODS = [("lora", {"r": 4}), ("prefix_tuning", {"num_virtual_tokens": 4}), ("prompt_tuning", {"num_virtual_tokens": 4}),
           ("bottleneck", {"reduction_factor": 16}), ("ia3", {})]


def job_spec(name, k, epochs=2):
    m, cfg = METHODS[k % len(METHODS)]
    return {"adapter": name, "method": m, "task": "classification", "config": cfg, "train": examples(32, k),
            "epochs": epochs, "batch_size": 8, "seed": k}


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def slope(points):
    """Least-squares slope of [(t, y)]."""
    n = len(points)
    if n < 3:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


# ============================================================================
# The load
# ============================================================================


class Load:
    def __init__(self, s, seconds):
        self.s, self.seconds = s, seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors, self.counts, self.lat = [], {}, []  # lat: (t, seconds) of /predict
        self.rss = []  # (t, MiB)
        self.versions = {}
        self.t0 = None

    def count(self, what, ok, detail=None):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            if not ok:
                self.errors.append("%s: %s" % (what, detail))

    def predictor(self, seed):
        rng = random.Random(seed)
        c = self.s.client(timeout=60)
        while not self.stop.is_set():
            if rng.random() < 0.1:
                body = {"inputs": [{"question": "who wrote it?", "context": "ann wrote it in paris last year"}]}
            else:
                body = {"adapter": "s%03d" % rng.randrange(N_ADAPTERS), "inputs": [rng.choice(FILL) + " film"] * rng.randint(1, 4)}
            t = time.time()
            r = c.predict(body)
            dt = time.time() - t
            with self.lock:
                self.lat.append((t - self.t0, dt))
            self.count("predict", r.status == 200, r)

    def replacer(self):
        rng = random.Random(7)
        c = self.s.client(timeout=60)
        k = 1000
        while not self.stop.wait(0.05):
            name = "s%03d" % rng.randrange(N_ADAPTERS)
            k += 1
            r = c.upload(name, lora_files(k), method="PUT")
            self.count("replace", r.status == 200, r)

    def churner(self):
        c = self.s.client(timeout=60)
        k = 0
        while not self.stop.wait(0.05):
            k += 1
            name = "c-%d" % k
            r = c.upload(name, lora_files(5000 + k, head_labels=["a", "b", "c"]))
            self.count("upload", r.status == 201, r)
            r = c.predict({"adapter": name, "inputs": ["a film"]})
            self.count("predict-new", r.status == 200 and len(r.json()["outputs"][0]["scores"]) == 3, r)
            r = c.request("DELETE", "/adapters/" + name)
            self.count("delete", r.status == 204, r)

    def trainer(self):
        c = self.s.client(timeout=60)
        k = 0
        running = {}
        while not self.stop.is_set():
            for slot in ("t-a", "t-b"):
                job = running.get(slot)
                if job is not None:
                    j = c.get("/jobs/" + job).json()
                    if j["status"] in ("queued", "running"):
                        continue
                    self.count("train-job", j["status"] == "succeeded", "%s %s: %s" % (job, j["status"], j.get("error")))
                    if j["status"] == "succeeded":
                        r = c.predict({"adapter": slot, "inputs": ["a good film"]})
                        self.count("predict-trained", r.status == 200, r)
                k += 1
                r = c.post("/train", job_spec(slot, k))
                self.count("train-submit", r.status == 202, r)
                running[slot] = r.json()["job"] if r.status == 202 else None
            self.stop.wait(0.2)
        for job in running.values():  # let the last ones end: the run then stops cleanly
            if job:
                t = time.time()
                while time.time() - t < 60 and c.get("/jobs/" + job).json()["status"] in ("queued", "running"):
                    time.sleep(0.2)

    def sampler(self):
        while not self.stop.wait(1.0):
            kb = proc_status_kb(self.s.proc.pid)
            if kb:
                self.rss.append((time.time() - self.t0, kb / 1024.0))

    def run(self):
        self.t0 = time.time()
        ths = [threading.Thread(target=self.predictor, args=(i,)) for i in range(3)]
        ths += [threading.Thread(target=f) for f in (self.replacer, self.churner, self.trainer, self.sampler)]
        for t in ths:
            t.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in ths:
            t.join()


def soak():
    s = start("soak", ["--threads", "2", "--train-threads", "2", "--max-resident-mb", "1"])
    try:
        c = s.client(timeout=60)
        t = time.time()
        bad = [r for r in (c.upload("s%03d" % i, lora_files(i, head_labels=["neg", "pos"] if i % 3 == 0 else None))
                           for i in range(N_ADAPTERS)) if r.status != 201]
        check(not bad, "%d adapters uploaded: %r" % (N_ADAPTERS, bad[:2]))
        print("  %d adapters uploaded in %.1f s" % (N_ADAPTERS, time.time() - t), flush=True)
        load = Load(s, SECONDS)
        load.run()
        dur = time.time() - load.t0
        print("  %.0f s: %s" % (dur, ", ".join("%s %d" % kv for kv in sorted(load.counts.items()))))
        check(not load.errors, "no unprovoked error (%d):\n    %s" % (len(load.errors), "\n    ".join(map(str, load.errors[:5]))))
        check(load.counts.get("train-job", 0) >= 2 and load.counts.get("replace", 0) > 0 and load.counts.get("delete", 0) > 0,
              "every kind of work ran: %r" % load.counts)
        jl = c.get("/jobs")
        print("  GET /jobs lists %d jobs in %d bytes (--keep-jobs)" % (len(jl.json()["jobs"]), len(jl.body)))
        # RSS flat after the warm-up
        warm = max(20.0, dur / 4)
        pts = [(t, m) for t, m in load.rss if t >= warm]
        if len(pts) >= 10:
            k = slope(pts)
            mean = sum(m for _, m in pts) / len(pts)
            window = pts[-1][0] - pts[0][0]
            grow = k * window
            allow = 0.10 * mean + 8 + (16 if IS_ASAN else 0)
            print("  RSS after %.0f s of warm-up: mean %.1f MiB, min %.1f, max %.1f, slope %+.2f MiB/min (%+.1f MiB over %.0f s; allowed %.1f)" %
                  (warm, mean, min(m for _, m in pts), max(m for _, m in pts), k * 60, grow, window, allow))
            check(grow <= allow, "RSS flat after the warm-up: %+.1f MiB over %.0f s" % (grow, window))
        else:
            skip("too short a run to fit the RSS slope (%d samples after the warm-up)" % len(pts))
        # p99 stable
        third = dur / 3
        first = [d for t, d in load.lat if t < third]
        last = [d for t, d in load.lat if t >= 2 * third]
        p1, p3 = pct(first, 0.99) * 1000, pct(last, 0.99) * 1000
        print("  /predict latency: p50 %.1f / %.1f ms, p99 %.1f / %.1f ms (first / last third; %d requests, %.0f/s)" %
              (pct(first, 0.5) * 1000, pct(last, 0.5) * 1000, p1, p3, len(load.lat), len(load.lat) / dur))
        check(p3 <= 2 * p1 + 25, "p99 of the last third (%.1f ms) within 2x + 25 ms of the first (%.1f ms)" % (p3, p1))
        # the store after the run: a restart sees the same adapters and versions
        before = {a["name"]: a["version"] for a in c.get("/adapters").json()["adapters"]}
        finish(s)
        s = start("soak", ["--threads", "2"], data=s.data)
        after = {a["name"]: a["version"] for a in s.client().get("/adapters").json()["adapters"]}
        check(after == before, "the same adapters and versions after a restart (%d vs %d)" % (len(after), len(before)))
    finally:
        if s.proc is not None:
            finish(s)


# ============================================================================
# Faults: kill -9, a full data dir
# ============================================================================


CKPT_STEPS = 50  # evaluations, hence checkpoints, of the kill -9 jobs


def kill9_rounds(rounds):
    """Each round: a training job running, uploads and replacements under way, then kill -9 at
    a random moment. Then a last start on the same data dir checks what survived."""
    data = os.path.join(TMP, "kill9-data")
    acked = {}  # name -> highest version acknowledged
    deleted = set()  # names a delete was sent for
    jobs = set()
    progressed = {}  # job -> the step it had reached shortly before a kill, past its first checkpoint
    rng = random.Random(99)
    for rnd in range(rounds):
        s = start("kill9-%d" % rnd, ["--threads", "2", "--train-threads", str(rounds)], data=data)
        c = s.client(timeout=30)
        stop = threading.Event()

        def uploader():
            cl = s.client(timeout=30)
            k = 0
            while not stop.is_set():
                name = "k%02d" % rng.randrange(20)
                k += 1
                try:
                    if k % 5 == 0:  # a delete: from its sending on, either outcome is right
                        acked.pop(name, None)
                        deleted.add(name)
                        cl.request("DELETE", "/adapters/" + name)
                        continue
                    r = cl.upload(name, lora_files(rnd * 1000 + k))
                except OSError:
                    return
                if r.status in (200, 201):
                    acked[name] = max(acked.get(name, 0), r.json()["version"])
        # long enough (6,000 steps) to be running when the kill comes; checkpointed at each
        # evaluation (every 50 steps), it resumes from the last one afterwards
        spec = dict(job_spec("k-train-%d" % rnd, rnd, epochs=2000), eval_fraction=0.25, eval_every=CKPT_STEPS)
        r = c.post("/train", spec)
        if check(r.status == 202, "round %d: training job queued: %r" % (rnd, r)):
            jobs.add(r.json()["job"])
        t = time.time()
        while time.time() - t < 30 and not any(j["status"] == "running" and j["step"] > 0 for j in c.get("/jobs").json()["jobs"]):
            time.sleep(0.05)
        th = threading.Thread(target=uploader)
        th.start()
        time.sleep(rng.uniform(0.2, 1.5))
        for j in c.get("/jobs").json()["jobs"]:
            # past its first checkpoint (written before the next step starts); before, it starts over
            if j["step"] > CKPT_STEPS and j["status"] == "running":
                progressed[j["job"]] = j["step"]
        s.kill9()
        stop.set()
        th.join()
    # after the last kill: everything acknowledged is there and works; every job resumes
    # (then is cancelled, to save time) or ends with a reason
    s = start("kill9-final", ["--threads", "2", "--train-threads", str(rounds)], data=data)
    try:
        c = s.client(timeout=60)
        have = {a["name"]: a["version"] for a in c.get("/adapters").json()["adapters"]}
        lost = {n: v for n, v in acked.items() if have.get(n, 0) < v}
        check(not lost, "every acknowledged version survived %d kill -9: lost %r" % (rounds, lost))
        bad = []
        for n in have:
            r = c.predict({"adapter": n, "inputs": ["a good film"]})
            if r.status != 200:
                bad.append((n, r))
        check(not bad, "every adapter in the store answers after the kills: %r" % bad[:3])
        # nothing half-written under a version number (docs/STORE.md): each numbered directory
        # is complete (meta.json written last, then the directory renamed; unfinished ones are
        # .tmp-*) or pruned (its .pruned marker written before its files are removed)
        torn = [(n, v, sorted(os.listdir(os.path.join(data, n, v)))) for n in os.listdir(data)
                if not n.startswith(".") and os.path.isdir(os.path.join(data, n)) for v in os.listdir(os.path.join(data, n))
                if v.isdigit() and not {"meta.json", ".pruned"} & set(os.listdir(os.path.join(data, n, v)))]
        torn += [(n, v) for n, v in have.items() if c.get("/adapters/" + n).json().get("version") != v]
        check(not torn, "no half-written version visible after the kills: %r" % torn[:3])
        t = time.time()
        states = {}
        while time.time() - t < 120:
            states = {j["job"]: j for j in c.get("/jobs").json()["jobs"] if j["job"] in jobs}
            if all(j["status"] != "queued" and (j["job"] not in progressed or j["status"] != "running" or j.get("resumed_from_step"))
                   for j in states.values()):
                break
            time.sleep(0.1)
        check(set(states) == jobs, "every job is listed after the kills: %s of %s" % (sorted(states), sorted(jobs)))
        resumed = [j["job"] for j in states.values() if j.get("resumed_from_step")]
        for j in states.values():
            if j["status"] == "running":
                c.request("DELETE", "/jobs/" + j["job"])
        states = {j["job"]: j for j in c.get("/jobs").json()["jobs"] if j["job"] in jobs}
        # a job that had made progress must have resumed (from a checkpoint at or after step 1)
        ok = [j for j in states.values() if (j["status"] in ("succeeded", "cancelled") and (j["job"] not in progressed or j["job"] in resumed))
              or (j["status"] == "failed" and j.get("error"))]
        check(len(ok) == len(states), "jobs resumed from their checkpoints or failed with a reason: %r" %
              [(j["job"], j["status"], j.get("resumed_from_step"), j.get("error")) for j in states.values()])
        print("  kill -9 x %d: %d adapters, %d acknowledged uploads kept, %d names deleted; jobs (step at the kill -> resumed from): %s" %
              (rounds, len(have), len(acked), len(deleted), ", ".join("%s %s -> %s" % (j["job"], progressed.get(j["job"], "-"), j.get("resumed_from_step"))
                                                        for j in states.values())))
    finally:
        finish(s)


def full_disk():
    mnt = os.path.join(TMP, "small-fs")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], capture_output=True, text=True)
    if p.returncode != 0:
        skip("full data dir: cannot mount a small tmpfs here (%s)" % p.stderr.strip())
        return
    try:
        data = os.path.join(mnt, "data")
        s = start("full", ["--threads", "2", "--train-threads", "1"], data=data)
        try:
            c = s.client(timeout=60)
            ok_names, failure = [], None
            for i in range(200):
                r = c.upload("f%03d" % i, lora_files(i, r=128))
                if r.status == 201:
                    ok_names.append("f%03d" % i)
                    continue
                failure = (i, r)
                break
            check(failure is not None and ok_names, "the disk filled up after %d uploads" % len(ok_names))
            if failure is None:
                return
            # and the last bytes: a file beside the data dir takes what is left
            try:
                with open(os.path.join(mnt, "filler"), "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
            except OSError:
                pass  # full (the close may fail too)
            i, r = failure
            e = r.json().get("error", {}) if r.body.startswith(b"{") else {}
            check(r.status == 500 and e.get("code") == "io_error" and e.get("message"), "a full disk is a clean 500 io_error: %r" % r)
            check(c.get("/adapters/f%03d" % i).status == 404, "the failed upload is not half-registered")
            v = c.get("/adapters/" + ok_names[0]).json()["version"]
            r = c.upload(ok_names[0], lora_files(999, r=128), method="PUT")
            check(r.status == 500, "a replacement on a full disk fails: %r" % r)
            g = c.get("/adapters/" + ok_names[0]).json()
            check(g["version"] == v and c.predict({"adapter": ok_names[0], "inputs": ["a"]}).status == 200,
                  "the old version stays current and answers")
            r = c.post("/train", job_spec("f-train", 0))
            if r.status == 202:
                t = time.time()
                while time.time() - t < 120:
                    j = c.get("/jobs/" + r.json()["job"]).json()
                    if j["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.3)
                check(j["status"] == "failed" and j.get("error"), "a job that cannot publish fails with a reason: %r" %
                      ((j["status"], j.get("error")),))
            else:
                check(r.status == 500, "or is refused with a 500: %r" % r)
            os.unlink(os.path.join(mnt, "filler"))
            for n in ok_names[: len(ok_names) // 2]:
                c.request("DELETE", "/adapters/" + n)
            r = c.upload("after-delete", lora_files(1))
            check(r.status == 201, "uploads work again after deletes: %r" % r)
            print("  full disk: %d uploads fit in 8 MiB; then %d %s" % (len(ok_names), failure[1].status, failure[1].body[:100]))
        finally:
            finish(s)
    finally:
        subprocess.run(["umount", "-l", mnt])


def main():
    global TMP, MODEL, IS_ASAN, failed
    if not os.path.exists(BIN):
        print("e2e_soak: %s not found (set PEFTD_BIN)" % BIN)
        print("e2e_soak: 0 passed, 1 failed")
        return 1
    with open(BIN, "rb") as f:
        IS_ASAN = b"__asan_init" in f.read()
    TMP = tempfile.mkdtemp(prefix="peftd-soak-")
    t0 = time.time()
    try:
        MODEL = os.path.join(TMP, "model")
        subprocess.run([BIN, "gen-model", "--out", MODEL], check=True, timeout=120, capture_output=True)
        for name, fn in ([("soak (%.0f s)" % SECONDS, soak)] if LOAD else []) + ([("kill -9", lambda: kill9_rounds(10 if SECONDS >= 600 else 3)),
                                                               ("full data dir", full_disk)] if FAULTS else []):
            t = time.time()
            before = failed
            try:
                fn()
            except Exception:  # noqa: BLE001 - a crashing part is one failure, the rest go on
                failed += 1
                print("  FAIL %s raised:\n%s" % (name, traceback.format_exc()), flush=True)
            print("%-24s %s (%.1f s)" % (name, "ok" if failed == before else "FAILED", time.time() - t), flush=True)
    finally:
        if os.environ.get("E2E_KEEP"):
            print("kept", TMP)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print("total %.1f s" % (time.time() - t0))
    print("e2e_soak: %d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
