#!/usr/bin/python3
"""Accuracy parity of LoRA training: the same SST-2 run in peftd and in PyTorch (bench/run.sh
step "parity"; docs/TRAINING.md "Speed").

Both sides get the same base model, the same token ids, the same initial adapter, the same
example order and the same hyperparameters; each trains with its own code and evaluates on the
SST-2 dev set.

  * Data: the first --n-train lines of SST-2 train.tsv and all of dev.tsv, written as
    {"text", "label"} JSON lines (label 0 = negative, 1 = positive).
  * Token ids: build/bench/parity_data encodes every text with peftd's tokenizer exactly as a
    training job does (pd_item_encode, max_seq_len); torch reads those ids. The peftd job
    receives the texts and tokenizes them itself (the same function on the same strings).
  * Initial adapter: parity_data also creates the LoRA adapter a job creates for this spec and
    seed (pd_adapter_new_trainable: lora_A Kaiming-uniform from peftd's generator, lora_B zero,
    the classifier copied from the base) and saves it; torch loads it (torch_lora_train.py
    load_lora_init). So both start from identical weights.
  * Order: peftd shuffles each epoch with its own seeded Fisher-Yates (adapters/trainer.c
    shuffle/mix2/splitmix64); this script computes the same permutation, so torch sees the same
    batches in the same order.
  * Training: peftd through the real trainer (`peftd serve` on a free loopback port, POST
    /train multipart, GET /jobs/ID until it ends); torch with torch_lora_train.py's model, AdamW,
    clip_grad_norm_, transformers' linear warmup/decay schedule; batches padded to their longest
    sequence with an attention mask (peftd packs them without padding; same function).
  * Checks printed beside the accuracies: the majority-class baseline of dev, and the training
    losses peftd's job logs against torch's at the same steps (equal up to float rounding when
    the setups agree; float differences could make them drift apart over a long run).

Writes --json with both accuracies, the difference in points, the baseline, losses and timings.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "peers"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

M64 = (1 << 64) - 1

# ==== peftd's example order (adapters/trainer.c) ====


def splitmix64(state):
    """Returns (new state, value) as trainer.c's splitmix64 (state is updated in place there)."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def mix2(a, b):
    s = (a ^ ((b * 0xD1B54A32D192ED03) & M64)) & M64
    s, _ = splitmix64(s)
    s, v = splitmix64(s)
    return v


def shuffle(n, seed):
    """trainer.c shuffle(): Fisher-Yates with rand_below over splitmix64."""
    perm = list(range(n))
    s = seed
    for i in range(n - 1, 0, -1):
        m = i + 1
        lim = M64 - M64 % m
        while True:
            s, r = splitmix64(s)
            if r < lim:
                k = r % m
                break
        perm[i], perm[k] = perm[k], perm[i]
    return perm


def epoch_order(n, seed, epoch):
    return shuffle(n, mix2(seed, epoch + 1))


# ==== data ====


def read_tsv(path, limit=None):
    out = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        li, ti = header.index("label"), 1 - header.index("label")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[ti].strip():
                continue
            out.append({"text": parts[ti], "label": int(parts[li])})
            if limit and len(out) >= limit:
                break
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_ids(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ==== the peftd side ====


def run_peftd(a, work, train_path, dev_path):
    import peftio

    spec = {"adapter": "parity", "method": "lora", "task": "classification", "labels": ["negative", "positive"],
            "config": {"r": a.r, "lora_alpha": a.alpha, "target_modules": ["query", "value"]},
            "epochs": a.epochs, "batch_size": a.batch, "learning_rate": a.lr, "weight_decay": a.weight_decay,
            "warmup_ratio": a.warmup_ratio, "max_grad_norm": 1.0, "max_seq_len": a.max_seq_len, "seed": a.seed,
            "eval_every": 0}
    srv = peftio.Server(a.peftd, ["--model", a.model, "--data-dir", os.path.join(work, "data"), "--threads", str(a.threads),
                                  "--train-threads", "1"], log_path=os.path.join(work, "peftd.log"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEFTD_")}
    srv.env = env
    srv.start(timeout=120)
    try:
        c = srv.client(timeout=300)
        with open(train_path, "rb") as f:
            tr = f.read()
        with open(dev_path, "rb") as f:
            dv = f.read()
        ct, body = peftio.multipart([("spec", json.dumps(spec), None), ("train", tr, "train.jsonl"), ("eval", dv, "dev.jsonl")])
        t0 = time.time()
        r = c.request("POST", "/train", body, ctype=ct)
        if r.status != 202:
            raise RuntimeError("POST /train: %r" % r)
        job = r.json()["job"]
        while True:
            j = c.get("/jobs/" + job).json()
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
        wall = time.time() - t0
    finally:
        rc = srv.stop()
    if j["status"] != "succeeded":
        raise RuntimeError("peftd job %s %s: %s" % (job, j["status"], j.get("error")))
    if rc != 0:
        raise RuntimeError("peftd exited with %r (see %s)" % (rc, os.path.join(work, "peftd.log")))
    ev = j["eval"][-1][1]
    return {"accuracy": ev["accuracy"], "f1": ev["f1"], "eval_loss": ev["loss"], "loss": j["loss"],
            "examples_per_s": j["examples_per_s"], "wall_s": wall, "total_steps": j["total_steps"]}


# ==== the torch side ====


def run_torch(a, train_ids, dev_ids, init_path):
    import torch
    import torch_lora_train as tl

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, cfg = tl.build_model(a.model, a.r, a.alpha, num_labels=2)
    tl.load_lora_init(model, init_path)
    opt = tl.make_optimizer(model, a.lr, a.weight_decay)
    n = len(train_ids)
    spe = (n + a.batch - 1) // a.batch
    total = spe * a.epochs
    warm = math.ceil(total * a.warmup_ratio)

    def lr_lambda(step):  # transformers' get_linear_schedule_with_warmup (= pd_lr_lambda)
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)

    def batch_tensors(rows):
        L = max(len(r["ids"]) for r in rows)
        ids = torch.zeros(len(rows), L, dtype=torch.long)
        types = torch.zeros(len(rows), L, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows):
            k = len(r["ids"])
            ids[i, :k] = torch.tensor(r["ids"])
            types[i, :k] = torch.tensor(r["type_ids"])
            mask[i, :k] = 1
        return ids, mask, types, torch.tensor([r["label"] for r in rows])

    model.train()
    losses = []
    t0 = time.time()
    for ep in range(a.epochs):
        perm = epoch_order(n, a.seed, ep)
        for b in range(spe):
            rows = [train_ids[i] for i in perm[b * a.batch:(b + 1) * a.batch]]
            losses.append(tl.step(model, opt, *batch_tensors(rows), max_grad_norm=1.0))
            sched.step()
    train_s = time.time() - t0
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for b in range(0, len(dev_ids), 64):
            ids, mask, types, lab = batch_tensors(dev_ids[b:b + 64])
            logits = model(ids, mask, types)
            loss_sum += float(torch.nn.functional.cross_entropy(logits, lab, reduction="sum"))
            correct += int((logits.argmax(-1) == lab).sum())
    # peftd's loss history (trainer.c push_loss): the mean over each interval of ceil(total / 500) steps
    every = max(1, (total + 499) // 500)
    logged, acc = [], []
    for s, v in enumerate(losses, 1):
        acc.append(v)
        if s % every == 0 or s == total:
            logged.append([s, sum(acc) / len(acc)])
            acc = []
    return {"accuracy": correct / len(dev_ids), "eval_loss": loss_sum / len(dev_ids), "loss": logged,
            "examples_per_s": n * a.epochs / train_s, "wall_s": train_s, "total_steps": total}


def main():
    ap = argparse.ArgumentParser(description="LoRA accuracy parity, peftd against PyTorch, on SST-2")
    ap.add_argument("--peftd", required=True, help="the peftd binary")
    ap.add_argument("--prep", required=True, help="the parity_data bench program")
    ap.add_argument("--model", required=True, help="base model directory (e.g. from peftd gen-model)")
    ap.add_argument("--data", required=True, help="directory with SST-2 train.tsv and dev.tsv")
    ap.add_argument("--json")
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup-ratio", type=float, default=0.06)
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["peftd", "torch"], help="run one side (debugging)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    a = ap.parse_args()
    for f in ("train.tsv", "dev.tsv"):
        if not os.path.isfile(os.path.join(a.data, f)):
            ap.error("%s: no %s" % (a.data, f))

    work = tempfile.mkdtemp(prefix="peftd-parity-")
    try:
        train = read_tsv(os.path.join(a.data, "train.tsv"), a.n_train)
        dev = read_tsv(os.path.join(a.data, "dev.tsv"))
        tp, dp = os.path.join(work, "train.jsonl"), os.path.join(work, "dev.jsonl")
        write_jsonl(tp, train)
        write_jsonl(dp, dev)
        prep = os.path.join(work, "prep")
        subprocess.run([a.prep, "--model", a.model, "--train", tp, "--dev", dp, "--out", prep, "--max-seq-len",
                        str(a.max_seq_len), "--seed", str(a.seed), "--r", str(a.r), "--alpha", str(a.alpha)],
                       check=True, stdout=subprocess.DEVNULL)
        train_ids, dev_ids = read_ids(os.path.join(prep, "train_ids.jsonl")), read_ids(os.path.join(prep, "dev_ids.jsonl"))
        ones = sum(r["label"] for r in dev)
        majority = max(ones, len(dev) - ones) / len(dev)
        res = {"n_train": len(train), "n_dev": len(dev), "epochs": a.epochs, "batch": a.batch, "lr": a.lr,
               "weight_decay": a.weight_decay, "warmup_ratio": a.warmup_ratio, "max_seq_len": a.max_seq_len,
               "r": a.r, "lora_alpha": a.alpha, "seed": a.seed, "threads": a.threads, "majority": majority,
               "model": os.path.abspath(a.model)}
        print("SST-2: %d training examples (first lines of train.tsv), %d dev; dev majority class %.4f; %d epochs, batch %d, "
              "lr %g, warmup %g, max_seq_len %d; LoRA r=%d alpha=%d on query+value; seed %d"
              % (len(train), len(dev), majority, a.epochs, a.batch, a.lr, a.warmup_ratio, a.max_seq_len, a.r, a.alpha, a.seed))
        sys.stdout.flush()
        if a.only != "torch":
            res["peftd"] = run_peftd(a, work, tp, dp)
            p = res["peftd"]
            print("peftd: dev accuracy %.4f (loss %.4f), %d steps in %.1f s, %.0f examples/s"
                  % (p["accuracy"], p["eval_loss"], p["total_steps"], p["wall_s"], p["examples_per_s"]))
            sys.stdout.flush()
        if a.only != "peftd":
            res["torch"] = run_torch(a, train_ids, dev_ids, os.path.join(prep, "init", "adapter_model.safetensors"))
            t = res["torch"]
            print("torch: dev accuracy %.4f (loss %.4f), %d steps in %.1f s, %.0f examples/s"
                  % (t["accuracy"], t["eval_loss"], t["total_steps"], t["wall_s"], t["examples_per_s"]))
        if "peftd" in res and "torch" in res:
            p, t = res["peftd"], res["torch"]
            # peftd's job JSON rounds accuracies; compare at 6 digits (one dev example is 1/872) and drop a -0
            res["diff_points"] = round(100.0 * (round(p["accuracy"], 6) - round(t["accuracy"], 6)), 4) + 0.0
            k = min(5, len(p["loss"]), len(t["loss"]))
            res["first_losses"] = {"peftd": [v for _, v in p["loss"][:k]], "torch": [v for _, v in t["loss"][:k]]}
            same = [(x[1], y[1]) for x, y in zip(p["loss"], t["loss"]) if x[0] == y[0]]
            res["loss_points_compared"] = len(same)
            res["loss_max_abs_diff"] = max(abs(x - y) for x, y in same) if same else None
            print("accuracy difference peftd - torch: %+.2f points; training loss of the first %d logged steps: "
                  "peftd %s, torch %s; largest difference over all %d logged losses %.2e (peftd's job JSON rounds "
                  "losses to 6 digits)"
                  % (res["diff_points"], k, ", ".join("%.5f" % v for v in res["first_losses"]["peftd"]),
                     ", ".join("%.5f" % v for v in res["first_losses"]["torch"]), len(same), res["loss_max_abs_diff"]))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
    finally:
        if a.keep:
            print("parity: working directory kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
