#!/usr/bin/python3
"""Downstream probe for pretraining ablations (docs/PRETRAINING.md): a short LoRA on SUBJ trained
through peftd's own trainer (`peftd serve`, POST /train) on each model given, dev accuracy out.

    bench/pretrain_probe.py --peftd build/peftd --subj ../shared/data/subj MODEL_DIR [MODEL_DIR ...]

SUBJ (5,000 subjective + 5,000 objective sentences) is shuffled with a fixed seed and split into
--n-train training and 1,000 dev sentences, the same for every model. Each model gets a fresh
server (its own data directory) and one job: LoRA r=8, alpha 16 on query+value, the adapter's
own classification head (the base's pooler frozen, as PEFT does), --epochs epochs, batch 32,
learning rate 1e-3, warmup 6%, max_seq_len 64, seed 7 (the e2e SST-2 test's settings). Prints and
(with --json) writes each model's dev accuracy, loss and time. Stdlib only, plus tests/e2e/peftio.py.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import peftio  # noqa: E402


def subj(path, n_train, seed=13):
    rows = []
    for name, label in (("subj.subjective", "subjective"), ("subj.objective", "objective")):
        with open(os.path.join(path, name), encoding="latin-1") as f:
            rows += [{"text": line.strip(), "label": label} for line in f if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows[1000:1000 + n_train], rows[:1000]


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def probe(binary, model, train, dev, epochs, threads, log):
    data = tempfile.mkdtemp(prefix="peftd-probe-")
    s = peftio.Server(binary, ["--model", model, "--data-dir", data, "--threads", str(threads)], log_path=log)
    s.start(timeout=120)
    try:
        c = s.client(timeout=600)
        spec = {"adapter": "subj", "method": "lora", "task": "classification", "labels": ["objective", "subjective"],
                "config": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}, "epochs": epochs,
                "batch_size": 32, "learning_rate": 1e-3, "max_seq_len": 64, "warmup_ratio": 0.06, "seed": 7}
        ct, body = peftio.multipart([("spec", json.dumps(spec), None), ("train", jsonl(train), "train.jsonl"),
                                     ("eval", jsonl(dev), "eval.jsonl")])
        t0 = time.time()
        r = c.request("POST", "/train", body, ctype=ct)
        if r.status != 202:
            raise RuntimeError("POST /train: %d %s" % (r.status, r.body[:300]))
        job = r.json()["job"]
        while True:
            j = c.get("/jobs/" + job).json()
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        if j["status"] != "succeeded":
            raise RuntimeError("job %s: %s" % (j["status"], j.get("error")))
        return {"model": model, "accuracy": j["eval"][-1][1]["accuracy"], "loss_first": j["loss"][0][1],
                "loss_last": j["loss"][-1][1], "steps": j["total_steps"], "seconds": time.time() - t0}
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--peftd", default="build/peftd")
    ap.add_argument("--subj", default=os.path.join(os.environ.get("PD_SHARED", "../shared"), "data", "subj"))
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    train, dev = subj(a.subj, a.n_train)
    out = []
    for m in a.models:
        r = probe(a.peftd, m, train, dev, a.epochs, a.threads, os.path.join(tempfile.gettempdir(), "peftd-probe.log"))
        print("%-50s SUBJ dev accuracy %.4f  loss %.3f -> %.3f  %d steps, %.0f s" % (m, r["accuracy"], r["loss_first"],
                                                                                  r["loss_last"], r["steps"], r["seconds"]),
              flush=True)
        out.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n_train": len(train), "n_dev": len(dev), "epochs": a.epochs, "results": out}, f, indent=1)


if __name__ == "__main__":
    main()
