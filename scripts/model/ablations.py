#!/usr/bin/python3
"""Collects the pretraining ablations (docs/PRETRAINING.md "Ablations") into one JSON file for
the model card: each run's last held-out row (its heldout.csv) and the downstream probe's JSON
(bench/pretrain_probe.py --json).

    scripts/model/ablations.py --dir /work/model-run/ablations --out WORK/ablations.json

The runs themselves are the driver scripts run.sh / run2.sh kept beside them (equal-time token
budgets of `peftd pretrain`, one thread, seed 1); this script only reads their outputs.
"""
import argparse
import csv
import json
import os

RUNS = [("base-v16k", "learned WordPiece 16k, 4 x 256, FFN 1024, lr 1e-3 (the baseline)"),
        ("v8k", "learned WordPiece 8k"),
        ("v30k", "bert-base-uncased's 30,522 pieces"),
        ("lr2e-3", "peak learning rate 2e-3"),
        ("wwm", "whole-word masking (accuracy on its own whole-word masks)"),
        ("mask30", "30% of tokens masked"),
        ("l6", "6 layers"),
        ("h384", "hidden 384, 6 heads, FFN 1536")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = []
    for name, change in RUNS:
        p = os.path.join(a.dir, name, "heldout.csv")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            last = list(csv.DictReader(f))[-1]
        rows.append({"run": name, "change": change, "step": int(last["step"]), "tokens": int(last["tokens"]),
                     "minutes": float(last["minutes"]), "loss": float(last["loss"]), "accuracy": float(last["accuracy"])})
    probe = None
    p = os.path.join(a.dir, "probe-vocab.json")
    if os.path.exists(p):
        with open(p) as f:
            probe = json.load(f)
    text = ("Equal-time pretraining runs (a token budget per configuration scaled by its FLOPs per token, "
            "about 12 minutes of one thread each; batch 32 x 128, 6% warmup, seed 1), held-out masked-token "
            "loss and accuracy at the end; 5.6% is the share of the most frequent token (the unigram plateau). "
            "Details and the decisions they led to: docs/PRETRAINING.md.\n")
    with open(a.out, "w") as f:
        json.dump({"source": os.path.abspath(a.dir), "text": text, "pretraining": rows, "probe": probe}, f, indent=1)
    print("ablations: %d runs%s -> %s" % (len(rows), " + probe" if probe else "", a.out))


if __name__ == "__main__":
    main()
