#!/usr/bin/python3
"""The model card's evidence table: adapters trained through `peftd serve` / POST /train on tasks
the base has not seen, on the pretrained base and on a randomly initialised model of the same
shape and vocabulary, with the same hyperparameters; dev accuracy out.

    scripts/model/evidence.py --base MODEL_DIR --out evidence.json [--models pretrained,random]
        [--methods lora,prefix_tuning,bottleneck] [--tasks subj,wikiqa] [--seeds 7,8,9]
        [--random DIR] [--corpus FILE] [--quick]

The random model is `peftd pretrain --tokens 1 --lr 0` (one step at learning rate 0: the
pretrainer's own initialisation, seed 1, the base's shape, vocabulary and tokenizer), made in
--random DIR when it is missing. Results are merged into --out (one entry per model, task and
method and seed), so the random-model runs can go first and the pretrained ones later. Each seed
changes the adapter's initialisation and the order of the examples; the card reports the mean over
the seeds run and their range (one seed moves SUBJ by about a point).

Tasks: SUBJ (../shared/data/subj: 10,000 sentences shuffled with seed 13, the first 1,000 for
dev, as bench/pretrain_probe.py); WikiQA answer selection as sentence pairs: dev all 2,733 pairs
(140 right answers), train every right answer of train.txt (1,040) and three times as many wrong
ones sampled with seed 1, 2 epochs; the card reports its macro F1, since answering "no" to every
pair already scores 0.949 accuracy.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peftjobs as pj  # noqa: E402

COMMON = {"batch_size": 32, "max_seq_len": 64, "warmup_ratio": 0.06, "seed": 7}
METHODS = {
    "lora": {"config": {"r": 16, "lora_alpha": 32, "target_modules": ["query", "key", "value", "intermediate.dense", "output.dense"]},
             "learning_rate": 1e-3},
    "prefix_tuning": {"config": {"num_virtual_tokens": 20}, "learning_rate": 1e-2},
    "bottleneck": {"config": {"architecture": "seq_bn", "reduction_factor": 16}, "learning_rate": 1e-3},
}


def task_data(task, quick):
    if task == "subj":
        train, dev = pj.subj()
        labels = ["objective", "subjective"]
        epochs = 2
        if quick:
            train, dev, epochs = train[:200], dev[:100], 1
    elif task == "wikiqa":
        rows = pj.wikiqa("train")
        yes = [r for r in rows if r["label"] == "yes"]
        no = random.Random(1).sample([r for r in rows if r["label"] == "no"], 3 * len(yes))
        train = yes + no
        random.Random(2).shuffle(train)
        dev = pj.wikiqa("dev")
        labels, epochs = ["no", "yes"], 2
        if quick:
            train, dev = train[:200], dev[:100]
    else:
        raise SystemExit("evidence: unknown task %s" % task)
    return train, dev, labels, epochs


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def run_key(r):
    """A run's identity: runs from before --seeds carry their seed in the spec only."""
    return (r["model"], r["task"], r["method"], r.get("seed", r["spec"]["seed"]))


def make_random(peftd, base, out, corpus):
    if os.path.exists(os.path.join(out, "model", "model.safetensors")):
        return os.path.join(out, "model")
    with open(os.path.join(base, "config.json")) as f:
        cf = json.load(f)
    cmd = [peftd, "pretrain", "--corpus", corpus, "--heldout", corpus, "--vocab", base, "--out", out,
           "--layers", str(cf["num_hidden_layers"]), "--hidden", str(cf["hidden_size"]),
           "--heads", str(cf["num_attention_heads"]), "--ffn", str(cf["intermediate_size"]),
           "--max-pos", str(cf["max_position_embeddings"]), "--tokens", "1", "--lr", "0", "--seed", "1",
           "--threads", "1", "--eval-windows", "16"]
    pj.log("evidence: random model:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return os.path.join(out, "model")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the pretrained model directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--peftd", default=os.path.join(pj.ROOT, "build", "peftd"))
    ap.add_argument("--models", default="random,pretrained")
    ap.add_argument("--methods", default="lora,prefix_tuning,bottleneck")
    ap.add_argument("--tasks", default="subj")
    ap.add_argument("--random", default=None, help="directory of the random model (made if missing)")
    ap.add_argument("--corpus", default="/work/model-data/corpus/heldout.txt",
                    help="any text in the corpus format, read by `peftd pretrain` for the random model's one step")
    ap.add_argument("--seeds", default=str(COMMON["seed"]), help="comma-separated training seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    res = {"common": COMMON, "methods": METHODS, "runs": []}
    if os.path.exists(a.out):
        with open(a.out) as f:
            res["runs"] = json.load(f).get("runs", [])
    rnd_dir = a.random or os.path.join(os.path.dirname(os.path.abspath(a.out)), "random-init")
    for model in a.models.split(","):
        mdir = a.base if model == "pretrained" else make_random(a.peftd, a.base, rnd_dir, a.corpus)
        digest = sha256(os.path.join(mdir, "model.safetensors"))
        with pj.Peftd(a.peftd, mdir, a.threads) as srv:
            for task in a.tasks.split(","):
                train, dev, labels, epochs = task_data(task, a.quick)
                for method, seed in ((m, int(s)) for m in a.methods.split(",") for s in a.seeds.split(",")):
                    spec = dict(COMMON, adapter="%s-%s-%d" % (task, method.replace("_", "-"), seed), method=method,
                                task="classification", labels=labels, epochs=epochs, **METHODS[method])
                    spec["seed"] = seed
                    pj.log("evidence: %s %s %s seed %d (%d train, %d dev)" % (model, task, method, seed, len(train),
                                                                             len(dev)))
                    j = srv.train(spec, train, dev)
                    ev = j["eval"][-1][1]
                    run = {"model": model, "model_dir": os.path.abspath(mdir), "model_sha256": digest, "task": task,
                           "method": method, "seed": seed, "accuracy": ev["accuracy"], "f1": ev["f1"], "eval_loss": ev["loss"],
                           "loss_first": j["loss"][0][1], "loss_last": j["loss"][-1][1], "steps": j["total_steps"],
                           "epochs": epochs, "train_examples": j["train_examples"], "eval_examples": j["eval_examples"],
                           "wall_s": j["wall_s"], "quick": a.quick, "spec": spec}
                    pj.log("evidence: %s %s %s seed %d accuracy %.4f f1 %.4f (%d steps, %.0f s)" % (
                        model, task, method, seed, run["accuracy"], run["f1"], run["steps"], run["wall_s"]))
                    key = (model, task, method, seed)
                    res["runs"] = [r for r in res["runs"] if run_key(r) != key]
                    res["runs"].append(run)
                    with open(a.out + ".tmp", "w") as f:
                        json.dump(res, f, indent=1)
                    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
