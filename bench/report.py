#!/usr/bin/python3
"""Merges the raw results of one bench/run.sh run into tables, target checks and files.

Reads DIR/*.json written by the bench programs (gemm, engine-<round>, ort-<round>,
torch-<round>, adapters, server) and run.sh's step records (step-*.json), prints the tables
and one PASS/MISS line per target, and writes
  RESULTS/<date>-<host>.json   everything, raw samples included
  RESULTS/latest.md            the tables as markdown
Rounds of the same runtime are pooled: the median is over all samples of all rounds.
Stdlib only.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess

TARGETS_DOC = {
    "roofline": "engine effective GFLOP/s >= 85% of the machine's sgemm roofline at batch >= 8",
    "vs_ort": "engine seq/s >= 0.9x ONNX Runtime at batch 8 and 32, >= 0.8x at batch 1",
    "bf16_vs_fp32": "--dtype bf16 seq/s >= 1.7x peftd fp32 at batch 8 and 32",
    "bf16_vs_ort": "--dtype bf16 seq/s >= 1.6x ONNX Runtime fp32 at batch 8 and 32, >= 1.3x at batch 1",
    "int8_vs_ort": "--dtype int8 seq/s >= 2.5x ONNX Runtime fp32 at batch 8 and 32",
    "int8_vs_ort_int8": "--dtype int8 seq/s >= 1.1x ONNX Runtime int8 (quantize_dynamic) at batch 8 and 32",
    "dtype_bytes": "resident base weights: bf16 <= 0.55x and int8 <= 0.30x fp32's",
    "lora_one": "one LoRA <= 8% slower than the bare base (batch 32)",
    "lora_each": "32 different LoRAs <= 10% slower than one LoRA (batch 32)",
    "server_overhead": "the server adds <= 15% to the compute time of the batches it forms",
    "upload": "a new adapter version answers < 20 ms p50 after its upload completes",
    "train_vs_torch": "LoRA training examples/s >= 2x PyTorch (r=8 query+value, BERT-base shape, batch 16 x 128, AdamW)",
    "train_bf16": "LoRA training through a bf16 base >= 1.6x peftd fp32 training (examples/s, same step)",
    "train_parity": "the same SST-2 LoRA run ends within 1.5 points of dev accuracy in peftd and PyTorch",
    "pretrain_roofline": "masked-LM pretraining step >= 60% of the sgemm roofline (4 x 256, FFN 1024, vocab 16k, batch 32 x 128)",
    "pretrain_vs_torch": "masked-LM pretraining tokens/s >= 2x PyTorch on the same step",
}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def isa():
    """The vector extensions the kernels may use (the VM's model name is often just "AMD EPYC")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = set(line.split(":", 1)[1].split())
                    return " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if x in fl)
    except OSError:
        pass
    return None


def mem_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1048576, 1)
    except OSError:
        pass
    return None


def pooled(rounds, batch, key=None):
    """Median seconds over all samples of `batch` in every round (key: engine design)."""
    s = []
    for r in rounds:
        for e in r.get("results", []):
            if e.get("batch") != batch:
                continue
            e = e.get(key) if key else e
            if e:
                s += e.get("samples_s") or [e["median_s"]]
    return (statistics.median(s), len(s)) if s else (None, 0)


def round_median(r, batch, key=None):
    """Median seconds of one round at one batch size, or None."""
    for e in r.get("results", []):
        if e.get("batch") == batch:
            e = e.get(key) if key else e
            return e["median_s"] if e else None
    return None


def paired_ratio(engines, peers, batch, ekey="pool", pkey=None):
    """Median over rounds k of peer_k / engine_k (seconds), pairing the k-th round of each: the
    rounds of one index ran next to each other, so slow phases of the machine cancel out.
    ekey / pkey: the design key of each side's results (peftd's engine rounds: "pool")."""
    by = {r["_round"].split("-")[-1]: r for r in engines}
    v = []
    for p in peers:
        e = by.get(p["_round"].split("-")[-1])
        if e:
            a, b = round_median(e, batch, ekey), round_median(p, batch, pkey)
            if a and b:
                v.append(b / a)
    return (statistics.median(v), len(v)) if v else (None, 0)


def paired_roofline_share(engines, batch, flops):
    """Median over engine rounds of (the round's GFLOP/s at `batch`) / (the median of the roofline
    samples bench/engine timed between that round's forwards): engine and roofline measured in
    the same minute, so a slow phase of the shared machine lowers both. None for older results."""
    v = []
    for r in engines:
        for e in r.get("results", []):
            if e.get("batch") != batch or not e.get("roofline_gflops_samples") or not e.get("pool"):
                continue
            roof = statistics.median(e["roofline_gflops_samples"])
            v.append(flops / e["pool"]["median_s"] * 1e-9 / roof)
    return (statistics.median(v), len(v)) if v else (None, 0)


def fmt(x, spec=".1f", none="-"):
    return none if x is None else format(x, spec)


class Report:
    def __init__(self):
        self.lines = []  # markdown
        self.checks = []

    def h(self, text):
        print("\n" + text)
        self.lines += ["", "## " + text, ""]

    def p(self, text):
        print(text)
        self.lines += [text, ""]

    def table(self, head, rows):
        w = [max(len(str(x)) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
        print("  ".join(str(x).rjust(w[i]) for i, x in enumerate(head)))
        for r in rows:
            print("  ".join(str(x).rjust(w[i]) for i, x in enumerate(r)))
        self.lines.append("| " + " | ".join(head) + " |")
        self.lines.append("|" + "|".join("---:" for _ in head) + "|")
        for r in rows:
            self.lines.append("| " + " | ".join(str(x) for x in r) + " |")
        self.lines.append("")

    def check(self, key, label, ok, measured):
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        self.checks.append({"target": key, "what": label, "status": status, "measured": measured})


def pretrain_section(R, rounds):
    """The "Pretraining throughput" section: peftd's masked-LM step (bench/pretrain.c) against
    PyTorch's (peers/torch_mlm.py) in alternated rounds, with the roofline timed between peftd's
    steps. Adds the two targets; returns what goes into the raw JSON."""
    pp_all, pp = rounds("pretrain-peftd")
    pt_all, pt = rounds("pretrain-torch")
    out = {"peftd_rounds": pp_all, "torch_rounds": pt_all}
    if not (pp or pt):
        R.p("Pretraining throughput was not measured in this run.")
        return out
    x = (pp or pt)[0]
    m = x.get("model", {})
    R.p("Masked-LM pretraining step of a fresh BERT, %d layers x hidden %d (%d heads, FFN %d), vocabulary %d, batch %d x %d "
        "tokens (%d masked: 15%%, 80/10/10), fp32, 2 threads. One step: zero gradients, training forward, the MLM head on "
        "the masked rows only (decoder tied to the word embeddings), backward through every weight, clipping, AdamW. "
        "peftd: `bench/pretrain.c` timing `pd_pretrainer_step` (what `peftd pretrain` runs), the 2048^3 sgemm roofline timed "
        "before its first timed steps; PyTorch %s eager: `bench/peers/torch_mlm.py` (the same model in torch.nn, "
        "torch.optim.AdamW foreach). GFLOP/s counts matrix products (bench/pretrain.c step_flops). Rounds alternate."
        % (m.get("layers", 0), m.get("hidden", 0), m.get("heads", 0), m.get("ffn", 0), m.get("vocab", 0), x.get("batch", 0),
           x.get("seq", 0), x.get("masked", 0), (pt[0].get("torch", "") if pt else "")))
    rows, ratios, shares = [], [], []
    for r in sorted(set([y["_round"].split("-")[-1] for y in pp_all + pt_all]), key=int):
        p = next((y for y in pp_all if y["_round"].endswith("-" + r)), None)
        t = next((y for y in pt_all if y["_round"].endswith("-" + r)), None)
        ratio = p["tokens_per_s"] / t["tokens_per_s"] if p and t else None
        if ratio and any(y is p for y in pp) and any(y is t for y in pt):
            ratios.append(ratio)
        if p and p.get("roofline_gflops") and any(y is p for y in pp):
            shares.append(p["roofline_share"])
        rows.append([r, fmt(p and p["median_s"], ".3f"), fmt(p and p["tokens_per_s"], ".0f"), fmt(p and p.get("gflops"), ".0f"),
                     fmt(p and p.get("roofline_gflops"), ".0f"), fmt(p and 100 * p.get("roofline_share", 0), ".0f"),
                     fmt(t and t["median_s"], ".3f"), fmt(t and t["tokens_per_s"], ".0f"), fmt(ratio, ".2f"),
                     "%.0f%% / %.0f%%" % (100 * (p or {}).get("_other_cpu_share", 0), 100 * (t or {}).get("_other_cpu_share", 0))])
    R.table(["round", "peftd s/step", "peftd tokens/s", "peftd GFLOP/s", "roofline GFLOP/s", "% of roofline", "torch s/step",
             "torch tokens/s", "peftd/torch", "other load peftd / torch"], rows)
    ratio = statistics.median(ratios) if ratios else None
    share = statistics.median(shares) if shares else None
    out.update({"ratio": ratio, "roofline_share": share, "ratio_rounds": len(ratios)})
    R.p("Median over rounds: peftd at **%s%%** of the paired roofline; peftd/torch **%s**. Peak resident memory: peftd %s MB, "
        "PyTorch %s MB." % (fmt(share and 100 * share, ".0f"), fmt(ratio, ".2f") + "x" if ratio else "-",
                            fmt(max([y.get("peak_rss_kb", 0) / 1024.0 for y in pp] or [0]) or None, ".0f"),
                            fmt(max([y.get("peak_rss_kb", 0) / 1024.0 for y in pt] or [0]) or None, ".0f")))
    R.check("pretrain_roofline", TARGETS_DOC["pretrain_roofline"], None if share is None else share >= 0.6,
            "%s%%" % fmt(share and 100 * share, ".0f"))
    R.check("pretrain_vs_torch", TARGETS_DOC["pretrain_vs_torch"], None if ratio is None else ratio >= 2.0, "%sx" % fmt(ratio, ".2f"))
    return out


def training_dtypes(R, rounds, tp_all, tp):
    """The same LoRA training step through a bf16 and an int8 base (bench/train --dtype, what POST
    /train runs on a server started with that --dtype), each round right after the fp32 round of
    the same index: table, per-round ratio to fp32, and the bf16 target."""
    out = {}
    by_fp32 = {x["_round"].split("-")[-1]: x for x in tp_all}
    rows = []
    for dt in ("bf16", "int8"):
        allr, used = rounds("train_" + dt)
        if not allr:
            continue
        ratios = []
        for x in allr:
            k = x["_round"].split("-")[-1]
            f = by_fp32.get(k)
            ratio = x["examples_per_s"] / f["examples_per_s"] if f else None
            if ratio and any(y is x for y in used) and any(y is f for y in tp):
                ratios.append(ratio)
            rows.append([dt, k, x.get("gemm_kernel", "-"), fmt(x["median_s"], ".2f"), fmt(x["examples_per_s"], ".2f"),
                         fmt(f and f["examples_per_s"], ".2f"), fmt(ratio, ".2f"), fmt(x.get("cpu_median_s"), ".2f"),
                         fmt(x.get("peak_rss_kb", 0) / 1024.0, ".0f"), "%.0f%%" % (100 * x.get("_other_cpu_share", 0))])
        v = [y["batch"] / t for y in used for t in y.get("samples_s", [])]
        ratio = statistics.median(ratios) if ratios else None
        out[dt] = {"rounds": allr, "examples_per_s": statistics.median(v) if v else None, "vs_fp32": ratio,
                   "vs_fp32_rounds": len(ratios), "weights_bytes": allr[0].get("weights_bytes")}
    if not out:
        return out
    R.p("**Through a low-precision base** (`bench/train --dtype`: the same `pd_train_engine_step` on the base loaded as "
        "`peftd serve --dtype` loads it, so what POST /train runs there: forward and input gradients on the packed bf16 / "
        "int8 weights, the LoRA, the head, their gradients and AdamW's state in fp32). Each round ran right after the fp32 "
        "round of the same index; \"vs fp32\" is that round's ratio.")
    R.table(["dtype", "round", "GEMM kernel", "s/step", "ex/s", "fp32 ex/s (same round)", "vs fp32", "CPU s/step",
             "peak RSS MB", "other load"], rows)
    R.p("Median over rounds: " + "; ".join("%s **%s** ex/s, **%s** x fp32 (%d rounds)"
                                           % (dt, fmt(o["examples_per_s"], ".2f"), fmt(o["vs_fp32"], ".2f"), o["vs_fp32_rounds"])
                                           for dt, o in out.items()) + ".")
    b = out.get("bf16")
    if b:
        R.check("train_bf16", TARGETS_DOC["train_bf16"], None if b["vs_fp32"] is None else b["vs_fp32"] >= 1.6,
                "%sx (bf16 %s ex/s)" % (fmt(b["vs_fp32"], ".2f"), fmt(b["examples_per_s"], ".2f")))
    return out


def training_section(R, rounds, parity):
    """The "Training throughput" section: peftd's LoRA training step (bench/train.c) against
    PyTorch's (peers/torch_lora_train.py) in alternated rounds, and the SST-2 accuracy parity run
    (parity.py). Adds the two targets; returns what goes into the raw JSON."""
    tp_all, tp = rounds("train-peftd")
    tt_all, tt = rounds("train-torch")
    out = {"peftd_rounds": tp_all, "torch_rounds": tt_all, "parity": parity}
    if tp or tt:
        x = (tp or tt)[0]
        R.p("LoRA r=%d (alpha %d) on query and value, classification head, BERT-base shape (random weights), batch %d x %d "
            "tokens, AdamW, gradient clipping, 2 threads. One step: zero gradients, training forward, cross-entropy, "
            "backward through the frozen encoder into the LoRA and head gradients, clipping, AdamW. peftd: `bench/train.c` "
            "timing `pd_train_engine_step` (the trainer's step, its own micro-batches); PyTorch %s eager: "
            "`bench/peers/torch_lora_train.py` (LoRA as PEFT's lora.Linear in torch.nn, frozen base, torch.optim.AdamW). "
            "Median seconds per step after 1 warm-up step; rounds alternate (peftd, torch, torch, peftd, ...). The two "
            "compute the same loss and gradients; peftd does less work for them: its top layer computes queries, "
            "attention output and feed-forward for each sequence's first row only, the one row the classifier reads "
            "(docs/ENGINE.md), while PyTorch computes every row."
            % (x.get("r", 8), x.get("lora_alpha", 16), x.get("batch", 16), x.get("seq", 128),
               (tt[0].get("torch", "") if tt else "")))
        rows, ratios = [], []
        for r in sorted(set([x["_round"].split("-")[-1] for x in tp_all + tt_all]), key=int):
            p = next((x for x in tp_all if x["_round"].endswith("-" + r)), None)
            t = next((x for x in tt_all if x["_round"].endswith("-" + r)), None)
            ratio = p["examples_per_s"] / t["examples_per_s"] if p and t else None
            if ratio and any(x is p for x in tp) and any(x is t for x in tt):  # both rounds quiet enough to pool
                ratios.append(ratio)
            rows.append([r, fmt(p and p["median_s"], ".2f"), fmt(p and p["examples_per_s"], ".2f"),
                         fmt(p and p.get("cpu_median_s"), ".2f"), fmt(p and p.get("gflops"), ".0f"),
                         fmt(t and t["median_s"], ".2f"), fmt(t and t["examples_per_s"], ".2f"), fmt(ratio, ".2f"),
                         "%.0f%% / %.0f%%" % (100 * (p or {}).get("_other_cpu_share", 0), 100 * (t or {}).get("_other_cpu_share", 0))])
        R.table(["round", "peftd s/step", "peftd ex/s", "peftd CPU s/step", "peftd GFLOP/s", "torch s/step", "torch ex/s",
                 "peftd/torch", "other load peftd / torch"], rows)

        def pooled_eps(rs):
            v = [x["batch"] / s for x in rs for s in x.get("samples_s", [])]
            return statistics.median(v) if v else None

        pe, te = pooled_eps(tp), pooled_eps(tt)
        ratio = statistics.median(ratios) if ratios else None
        out.update({"peftd_examples_per_s": pe, "torch_examples_per_s": te, "ratio": ratio, "ratio_rounds": len(ratios)})
        R.p("Pooled medians over every timed step: peftd **%s** examples/s, PyTorch **%s** examples/s; peftd/torch "
            "(median of the per-round ratios) **%s**. GFLOP/s counts the base model's matrix products peftd's forward and "
            "backward compute (bench/train.c train_flops). peftd ran each batch as %s micro-batch(es) under the trainer's "
            "limit of %s rows (its 1 GiB activation budget). Peak resident memory: peftd %s MB, PyTorch %s MB."
            % (fmt(pe, ".2f"), fmt(te, ".2f"), fmt(ratio, ".2f") + "x" if ratio else "-",
               (tp or [{}])[0].get("micro_batches", "?"), (tp or [{}])[0].get("micro_batch_limit_rows", "?"),
               fmt(max([x.get("peak_rss_kb", 0) / 1024.0 for x in tp] or [0]) or None, ".0f"),
               fmt(max([x.get("peak_rss_kb", 0) / 1024.0 for x in tt] or [0]) or None, ".0f")))
        R.check("train_vs_torch", TARGETS_DOC["train_vs_torch"], None if ratio is None else ratio >= 2.0,
                "%sx (peftd %s, torch %s ex/s)" % (fmt(ratio, ".2f"), fmt(pe, ".2f"), fmt(te, ".2f")))
        out["dtypes"] = training_dtypes(R, rounds, tp_all, tp)
    else:
        R.p("Training throughput was not measured in this run.")
    if parity and "peftd" in parity and "torch" in parity:
        pp, pt = parity["peftd"], parity["torch"]
        R.p("**Accuracy parity** (bench/parity.py): SST-2, the first %d training examples, %d epochs, batch %d, learning rate "
            "%g, warmup %g, max_seq_len %d, LoRA r=%d alpha %d on query+value, seed %d, on peftd's default model (`peftd "
            "gen-model`: random weights, 2 layers, hidden 64, a small vocabulary; most SST-2 words are unknown to it, so "
            "accuracy is modest). Both sides use the same token ids (peftd's tokenizer), the same initial adapter (peftd's "
            "init, loaded by torch) and the same example order (peftd's seeded shuffle, recomputed in Python). peftd trains "
            "through the server (`peftd serve`, POST /train); torch with torch.nn. Evaluated on all %d dev examples."
            % (parity["n_train"], parity["epochs"], parity["batch"], parity["lr"], parity["warmup_ratio"], parity["max_seq_len"],
               parity["r"], parity["lora_alpha"], parity["seed"], parity["n_dev"]))
        R.table(["runtime", "dev accuracy", "dev loss", "steps", "train s", "examples/s"],
                [["peftd", "%.4f" % pp["accuracy"], "%.4f" % pp["eval_loss"], pp["total_steps"], "%.1f" % pp["wall_s"],
                  "%.0f" % pp["examples_per_s"]],
                 ["PyTorch", "%.4f" % pt["accuracy"], "%.4f" % pt["eval_loss"], pt["total_steps"], "%.1f" % pt["wall_s"],
                  "%.0f" % pt["examples_per_s"]],
                 ["majority class", "%.4f" % parity["majority"], "", "", "", ""]])
        fl = parity.get("first_losses") or {}
        R.p("Difference peftd - torch: **%+.2f points**. Training losses logged at the same steps agree to %s over %s "
            "points (first ones: peftd %s; torch %s), so both runs took the same steps on the same batches. peftd's "
            "train seconds are the job's wall time (tokenizing, training, evaluation, publishing); PyTorch's the "
            "training loop alone; neither is a speed comparison (tiny model, Python overhead per step)."
            % (parity["diff_points"], fmt(parity.get("loss_max_abs_diff"), ".1e"), parity.get("loss_points_compared", "?"),
               ", ".join("%.5f" % v for v in fl.get("peftd", [])), ", ".join("%.5f" % v for v in fl.get("torch", []))))
        R.check("train_parity", TARGETS_DOC["train_parity"], abs(parity["diff_points"]) <= 1.5,
                "%+.2f points (peftd %.4f, torch %.4f; majority %.4f)"
                % (parity["diff_points"], pp["accuracy"], pt["accuracy"], parity["majority"]))
    else:
        R.p("Accuracy parity was not measured in this run.")
    return out


def dtype_section(R, engines, orts, orts8, dtype_rounds):
    """The "Base dtypes" section: bench/engine --dtype bf16/int8 rounds, each run right after the
    fp32 engine round of the same index, against that round's fp32 engine, ONNX Runtime fp32 and
    (int8) ONNX Runtime on the int8 graph of bench/peers/quantize_int8.py."""
    e0 = engines[0]
    R.h("Base dtypes (--dtype), the same forward, BERT-base shape, sequence length %d, 2 threads" % e0["seq"])
    rows, tab = [], {}
    for dt, (allr, used) in dtype_rounds.items():
        if not used:
            continue
        ld = used[0]["load"]
        for r0 in e0["results"]:
            b = r0["batch"]
            sd, n = pooled(used, b, "pool")
            vf, nf = paired_ratio(used, engines, b, "pool", "pool")
            vo, no = paired_ratio(used, orts, b)
            v8, n8 = paired_ratio(used, orts8, b) if dt == "int8" else (None, 0)
            s8, _ = pooled(orts8, b) if dt == "int8" else (None, 0)
            tab[(dt, b)] = (vf, vo, v8)
            rows.append([dt, used[0].get("gemm_kernel", "-"), b, "%.2f" % (b / sd) if sd else "-", fmt(vf, ".2f"),
                         fmt(vo, ".2f"), "%.2f" % (b / s8) if s8 else "-", fmt(v8, ".2f"), "%d/%d/%d/%d" % (n, nf, no, n8)])
        tab[(dt, "bytes")] = ld["weights_bytes"]
        R.p("%s: weights %.1f MB (%.3f of fp32's %.1f MB); VmRSS %.1f MB after load, %.1f MB after the first forward "
            "(fp32: %.1f)." % (dt, ld["weights_bytes"] / 1e6, ld["weights_bytes"] / e0["load"]["weights_bytes"],
                               e0["load"]["weights_bytes"] / 1e6, ld["rss_after_load_kb"] / 1024,
                               ld["rss_after_first_forward_kb"] / 1024, e0["load"]["rss_after_first_forward_kb"] / 1024))
    R.table(["dtype", "GEMM kernel", "batch", "seq/s", "vs peftd fp32", "vs ONNX Runtime fp32", "ORT int8 seq/s",
             "vs ORT int8", "N / rounds fp32 / ORT / ORT int8"], rows)
    R.p("vs columns: the median over rounds of the per-round speed ratio (each dtype round ran right after the fp32 "
        "engine round of the same index). ORT int8: ONNX Runtime on the export rewritten as quantize_dynamic does "
        "(bench/peers/quantize_int8.py: DynamicQuantizeLinear + MatMulInteger, per-channel int8 weights).")
    d8 = [x.get("check_max_abs_diff") for x in orts8[:1] if x.get("check_max_abs_diff") is not None]
    if d8:
        R.p("ORT int8's last hidden states leave peftd fp32's by max |diff| %.1e (its quantization error, not a check)." % d8[0])
    for b in (8, 32):
        vf, vo, _ = tab.get(("bf16", b), (None, None, None))
        R.check("bf16_vs_fp32", "batch %d: bf16 >= 1.7x peftd fp32" % b, None if vf is None else vf >= 1.7, fmt(vf, ".2f"))
        R.check("bf16_vs_ort", "batch %d: bf16 >= 1.6x ONNX Runtime fp32" % b, None if vo is None else vo >= 1.6, fmt(vo, ".2f"))
        _, vo8, v88 = tab.get(("int8", b), (None, None, None))
        R.check("int8_vs_ort", "batch %d: int8 >= 2.5x ONNX Runtime fp32" % b, None if vo8 is None else vo8 >= 2.5, fmt(vo8, ".2f"))
        R.check("int8_vs_ort_int8", "batch %d: int8 >= 1.1x ONNX Runtime int8" % b, None if v88 is None else v88 >= 1.1,
                "n/a (no ONNX Runtime int8 result)" if v88 is None else "%.2fx" % v88)
    _, vo1, _ = tab.get(("bf16", 1), (None, None, None))
    R.check("bf16_vs_ort", "batch 1: bf16 >= 1.3x ONNX Runtime fp32", None if vo1 is None else vo1 >= 1.3, fmt(vo1, ".2f"))
    fb = e0["load"]["weights_bytes"]
    for dt, lim in (("bf16", 0.55), ("int8", 0.30)):
        if (dt, "bytes") in tab:
            r = tab[(dt, "bytes")] / fb
            R.check("dtype_bytes", "%s weights <= %.2fx fp32's" % (dt, lim), r <= lim, "%.3fx" % r)


def server_table(R, levels):
    """The table of one model's wrk levels (server_bench.py's "levels")."""
    R.table(["concurrency", "req/s", "p50 ms", "p99 ms", "inputs/batch", "batch compute ms", "compute / wall",
             "server overhead", "server CPU ms/request", "server cores busy", "errors"],
            [[r["concurrency"], fmt(r["rps"]), fmt(r["p50_ms"], ".2f" if r["p50_ms"] < 10 else ".1f"), fmt(r["p99_ms"]),
              fmt(r["inputs_per_batch"]), fmt(r["mean_batch_ms"], ".2f"), "%.0f%%" % (100 * (r["compute_share"] or 0)),
              ("latency %+.0f%% (%+.2f ms)" % (100 * r["latency_overhead"], r["latency_added_ms"]))
              if "latency_added_ms" in r else
              ("latency %+.0f%%" % (100 * r["latency_overhead"])) if "latency_overhead" in r else
              ("busy %+.0f%%" % (100 * r["busy_overhead"])) if "busy_overhead" in r else "-",
              fmt(r.get("server_cpu_ms_per_request"), ".2f"), fmt(r.get("server_cores"), ".2f"), r["errors"]]
             for r in levels])


def server_bert_checks(R, b, dt):
    """The server-overhead targets on the BERT-base run of one base dtype."""
    lv = {r["concurrency"]: r for r in b["levels"]}
    if 1 in lv and "latency_overhead" in lv[1]:
        v = lv[1]["latency_overhead"]
        R.check("server_overhead", "BERT-base %s, c=1: latency over batch compute <= +15%%" % dt, v <= 0.15, "%+.1f%%" % (100 * v))
    top = max(lv)
    if "busy_overhead" in lv[top]:
        v = lv[top]["busy_overhead"]
        R.check("server_overhead", "BERT-base %s, c=%d: wall over batch compute <= +15%%" % (dt, top), v <= 0.15,
                "%+.1f%%" % (100 * v))


def adapters_section(R, adapters, dt, other_share):
    """The "Adapters" table of one base dtype (bench/adapters [--dtype]) and its two targets."""
    res = adapters["results"]
    bare = res["bare"]["median_s"]
    R.h("Adapters, base in %s%s: batch %d x %d tokens, median of %d alternated rounds"
        % (dt, " (GEMM kernel %s)" % adapters["gemm_kernel"] if adapters.get("gemm_kernel") else "", adapters["batch"],
           adapters["seq"], adapters["runs"]))
    names = {"bare": "bare base", "lora_one": "every sequence on one LoRA (r=8, query+value)",
             "lora_each": "every sequence on its own LoRA (%d distinct)" % adapters["distinct_loras"],
             "prefix": "prefix tuning, 20 virtual tokens", "bottleneck": "bottleneck (seq_bn), reduction 16"}
    cbare = res["bare"].get("cpu_median_s")
    R.table(["configuration", "ms", "seq/s", "vs bare", "CPU ms", "CPU vs bare"],
            [[names[k], fmt(v["median_s"] * 1e3), fmt(v["seq_per_s"], ".2f"), "%+.1f%%" % (100 * (v["median_s"] / bare - 1)),
              fmt(v.get("cpu_median_s", 0) * 1e3), "%+.1f%%" % (100 * (v["cpu_median_s"] / cbare - 1)) if cbare else "-"]
             for k, v in res.items()])
    if dt == "fp32":
        R.p("CPU ms is the process's user + system time per forward (pool workers sleep when idle, so it counts work "
            "done); it is less disturbed by other processes than wall time, but does not show a thread left idle.")
    else:
        R.p("The adapters stay fp32 on the %s base (the server's `--dtype %s`)." % (dt, dt))
    lo = adapters["lora"]
    mem = "LoRA: file %.2f MB, %d params, %.2f MB resident (pd_adapter_bytes), RSS growth %.2f MB per loaded LoRA, " \
          "load %.1f ms" % (lo["file_bytes"] / 1e6, lo["params"], lo["adapter_bytes"] / 1e6, lo["rss_bytes_each"] / 1e6,
                           lo["load_ms_median"])
    for k in ("prefix", "bottleneck"):
        if k in adapters:
            mem += "; %s: %d params, %.2f MB resident" % (k, adapters[k]["params"], adapters[k]["adapter_bytes"] / 1e6)
    R.p(mem + ".")
    noisy_a = other_share > 0.10

    def cpu_note(a_, b_):
        if not (noisy_a and res[a_].get("cpu_median_s") and res[b_].get("cpu_median_s")):
            return ""
        return " (noisy run; CPU time %+.1f%%)" % (100 * (res[a_]["cpu_median_s"] / res[b_]["cpu_median_s"] - 1))

    if "lora_one" in res:
        v = res["lora_one"]["median_s"] / bare
        R.check("lora_one", "%s: one LoRA vs bare <= +8%%" % dt, v <= 1.08, "%+.1f%%" % (100 * (v - 1)) + cpu_note("lora_one", "bare"))
    if "lora_each" in res and "lora_one" in res:
        v = res["lora_each"]["median_s"] / res["lora_one"]["median_s"]
        R.check("lora_each", "%s: %d LoRAs vs one <= +10%%" % (dt, adapters["distinct_loras"]), v <= 1.10,
                "%+.1f%%" % (100 * (v - 1)) + cpu_note("lora_each", "lora_one"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--env-coretype", default="")
    ap.add_argument("--env-l2", default="")
    ap.add_argument("--partial", default="0", help="1: a quick or partial run; saved beside, latest.md untouched")
    a = ap.parse_args()
    d = a.dir

    now = datetime.datetime.now(datetime.timezone.utc)
    host = platform.node() or "host"
    gemm = load(os.path.join(d, "gemm.json"))
    steps = [x for x in (load(p) for p in sorted(glob.glob(os.path.join(d, "step-*.json")))) if x]
    share = {s["step"]: s.get("other_cpu_share", 0.0) for s in steps if "skipped" not in s}

    def rounds(kind):
        """All rounds of a runtime, and the ones to pool: those measured while other processes used
        <= 10% of the CPU, or all of them when no round was that quiet."""
        allr, used = [], []
        for p in sorted(glob.glob(os.path.join(d, kind + "-*.json"))):
            x = load(p)
            if not x:
                continue
            name = os.path.basename(p)[:-5]
            x["_round"], x["_other_cpu_share"] = name, share.get(name, 0.0)
            allr.append(x)
        used = [x for x in allr if x["_other_cpu_share"] <= 0.10] or allr
        return allr, used

    engines_all, engines = rounds("engine")
    orts_all, orts = rounds("ort")
    torches_all, torches = rounds("torch")
    adapters = load(os.path.join(d, "adapters.json"))
    server = load(os.path.join(d, "server.json"))
    try:
        blas_pkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libopenblas0-pthread"], capture_output=True,
                                  text=True).stdout or None
    except OSError:
        blas_pkg = None

    kernel = (gemm or {}).get("kernel") or (engines[0]["kernel"] if engines else None) or next(
        (x.get("kernel") for x in (load(q) for q in sorted(glob.glob(os.path.join(d, "train-peftd-*.json")) +
                                                          glob.glob(os.path.join(d, "pretrain-peftd-*.json")))) if x), None)
    meta = {"date": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "host": host, "cpu": cpu_model(), "isa": isa(), "cpus": os.cpu_count(),
            "mem_gib": mem_gib(), "kernel": platform.release(), "openblas_kernel": kernel,
            "openblas_package": blas_pkg, "env_openblas_coretype": a.env_coretype or None,
            "env_openblas_l2_size": a.env_l2 or None,
            "note_env": "both OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE were unset for every measured command",
            "quick": a.quick == "1"}
    R = Report()
    title = "peftd benchmarks - %s on %s (%s, %s CPUs, %s GiB; %s)" % (meta["date"], host, meta["cpu"], meta["cpus"],
                                                                   meta["mem_gib"], meta["isa"])
    print("\n" + "=" * len(title) + "\n" + title + "\n" + "=" * len(title))
    R.lines = ["# " + title, ""]
    pins = ["%s=%s" % (k, v) for k, v in (("OPENBLAS_CORETYPE", a.env_coretype), ("OPENBLAS_L2_SIZE", a.env_l2)) if v]
    env_note = ("the environment's %s %s unset for every measured command" % (" and ".join(pins), "were" if len(pins) > 1 else "was")
                if pins else "the environment set neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE")
    R.p("OpenBLAS kernel: **%s** (libopenblas %s; %s). Threads: 2 for every runtime.%s"
        % (kernel, blas_pkg or "?", env_note, " QUICK RUN: fewer samples, not for quoting." if a.quick == "1" else ""))

    # ==== machine load ====
    R.h("Machine load during each step")
    rows = []
    for s in steps:
        if "skipped" in s:
            rows.append([s["step"], "skipped: " + s["skipped"], "", "", ""])
        else:
            rows.append([s["step"], "ok" if s["rc"] == 0 else "exit %d" % s["rc"], fmt(s["wall_s"]),
                         fmt(s["user_s"] + s["sys_s"]), "%.0f%%" % (100 * s["other_cpu_share"])])
    R.table(["step", "status", "wall s", "cpu s", "other processes' CPU"], rows)
    noisy = [s["step"] for s in steps if s.get("other_cpu_share", 0) > 0.10]
    if noisy:
        R.p("WARNING: other processes used more than 10%% of the machine during: %s. Those numbers are low." % ", ".join(noisy))

    # ==== roofline ====
    roof = None
    if gemm:
        R.h("Roofline: OpenBLAS sgemm (C = A B), median of %d" % gemm["runs"])
        R.table(["M x N x K", "threads", "GFLOP/s", "min..max"],
                [["%dx%dx%d" % (r["m"], r["n"], r["k"]), r["threads"], fmt(r["gflops"]), "%.0f..%.0f" % (r["min"], r["max"])]
                 for r in gemm["roofline"]])
        two = [r["gflops"] for r in gemm["roofline"] if r["threads"] == 2]
        roof = max(two) if two else None
        R.p("Roofline used below: %.1f GFLOP/s (the best 2-thread sgemm above)." % roof)
        R.h("GEMM threading designs on BERT-base linears (y = x W^T)")
        R.table(["T x out x in", "pd_pool(2) + OpenBLAS 1 thread", "OpenBLAS 2 threads", "pool / openblas"],
                [["%dx%dx%d" % (r["m"], r["n"], r["k"]), fmt(r["pool_gflops"]), fmt(r["openblas_gflops"]),
                  fmt(r["pool_gflops"] / r["openblas_gflops"], ".2f")] for r in gemm["designs"]])
        h = gemm.get("handoff_us")
        if h:
            R.p("Pool hand-off (an empty 2-task pd_pool_run, median): back to back %.1f us; after the caller slept 1 ms, "
                "as a server does between requests: %.1f us for the first job, %.1f us for each of the next three "
                "(spin loops yield the core, so a worker woken onto the caller's core runs at once; docs/ENGINE.md)."
                % (h["back_to_back"], h["after_idle_first"], h["after_idle_next"]))

    # ==== engine vs peers ====
    engine_tab = {}
    if engines:
        e0 = engines[0]
        mdl = e0["model"]
        L = e0["seq"]
        R.h("Encoder throughput, BERT-base shape, sequence length %d, 2 threads" % L)
        R.p("Model: %d layers, hidden %d, heads %d, FFN %d, vocab %d (random weights, HF layout). FLOPs counted: "
            "`%s`; embeddings, layer norms, softmax and GELU are not counted. Runtimes ran in alternated rounds; "
            "medians are over all samples of the rounds measured while other processes used <= 10%% of the CPU "
            "(all rounds when none was that quiet). Rounds used: %s (N = samples)."
            % (mdl["layers"], mdl["hidden"], mdl["heads"], mdl["ffn"], mdl["vocab"], e0["flops_formula"],
               ", ".join("%s%s" % (x["_round"], "" if x in (engines + orts + torches) else " (not used: %.0f%% other load)"
                                   % (100 * x["_other_cpu_share"])) for x in engines_all + orts_all + torches_all)))
        rows = []
        for r0 in e0["results"]:
            b = r0["batch"]
            fl = r0["flops"]
            sp, np_ = pooled(engines, b, "pool")
            so, no = pooled(engines, b, "openblas")
            sr, nr = pooled(orts, b)
            st, nt = pooled(torches, b)
            g = fl / sp * 1e-9 if sp else None
            po, npo = paired_ratio(engines, orts, b)
            pt, npt = paired_ratio(engines, torches, b)
            ps, nps = paired_roofline_share(engines, b, fl)
            engine_tab[b] = {"flops": fl, "peftd_s": sp, "peftd_n": np_, "openblas_design_s": so, "ort_s": sr, "ort_n": nr,
                             "torch_s": st, "torch_n": nt, "peftd_gflops": g,
                             "roofline_share": g / roof if (g and roof) else None,
                             "roofline_share_paired": ps, "roofline_share_paired_rounds": nps,
                             "vs_ort_pooled": sr / sp if (sr and sp) else None,
                             "vs_torch_pooled": st / sp if (st and sp) else None,
                             "vs_ort": po, "vs_ort_rounds": npo, "vs_torch": pt, "vs_torch_rounds": npt,
                             "pool_vs_openblas": so / sp if (so and sp) else None}
            rows.append([b, "%.2f" % (b / sp) if sp else "-", fmt(g), "%.0f%%" % (100 * g / roof) if (g and roof) else "-",
                         "%.0f%%" % (100 * ps) if ps else "-",
                         "%.2f" % (b / so) if so else "-", "%.2f" % (b / sr) if sr else "-", "%.2f" % (b / st) if st else "-",
                         fmt(po, ".2f"), fmt(pt, ".2f"), "%d/%d/%d" % (np_, nr, nt)])
        R.table(["batch", "peftd seq/s", "peftd GFLOP/s", "of roofline", "of paired roofline", "peftd (OpenBLAS-pool design) seq/s",
                 "ONNX Runtime seq/s", "PyTorch seq/s", "peftd/ORT", "peftd/torch", "N peftd/ORT/torch"], rows)
        R.p("seq/s columns: pooled medians. peftd/ORT and peftd/torch: the median over rounds of each round's speed "
            "ratio (round k of each runtime ran next to round k of the others, so slow phases of the machine cancel); "
            "these ratios are the ones checked against the targets. \"of roofline\": pooled GFLOP/s over the roofline "
            "of the gemm step above, measured once at the start of the run; \"of paired roofline\": the median over "
            "rounds of each round's GFLOP/s over the 2048^3 2-thread sgemm timed between that round's forwards "
            "(the same roofline case, measured in the same minute); the paired share is the one checked, as the "
            "machine's speed drifts by 10-20% over a run.")
        rr = []
        for x in engines_all + orts_all + torches_all:
            key = "pool" if x in engines_all else None
            roofs = [statistics.median(e["roofline_gflops_samples"]) for e in x.get("results", [])
                     if key and e.get("roofline_gflops_samples")]
            rr.append([x["_round"], "%.0f%%" % (100 * x["_other_cpu_share"])] +
                      [fmt((round_median(x, r0["batch"], key) or 0) * 1e3, ".0f") for r0 in e0["results"]] +
                      [" / ".join("%.0f" % v for v in roofs) if roofs else "-"])
        R.p("Per-round medians (ms per forward), and for peftd's rounds the paired roofline (GFLOP/s, per batch size):")
        R.table(["round", "other load"] + ["batch %d" % r0["batch"] for r0 in e0["results"]] + ["paired roofline"], rr)
        ld = e0["load"]
        R.p("Checkpoint load (pd_model_load, weights mapped): %.3f s; weights %.1f MB; VmRSS %.1f MB after load, "
            "%.1f MB after the first forward (pages touched)."
            % (ld["seconds"], ld["weights_bytes"] / 1e6, ld["rss_after_load_kb"] / 1024, ld["rss_after_first_forward_kb"] / 1024))
        if orts:
            o = orts[0]
            R.p("ONNX Runtime %s (node, bundled CPU library): session create %.2f s, VmRSS %.0f MB after it."
                % (o.get("version"), o.get("load_s", 0), o.get("rss_after_load_kb", 0) / 1024))
        if torches:
            t = torches[0]
            blas = (t.get("blas") or {}).get("openblas_core")
            R.p("PyTorch %s eager (Debian python3-torch): load %.2f s, VmRSS %.0f MB; GEMMs on %s."
                % (t.get("torch"), t.get("load_s", 0), t.get("rss_after_load_kb", 0) / 1024,
                   "OpenBLAS (" + blas + ")" if blas else "its BLAS: " + ", ".join((t.get("blas") or {}).get("libs", []))))
        diffs = [("ONNX Runtime", x.get("check_max_abs_diff")) for x in orts[:1]] + \
                [("PyTorch", x.get("check_max_abs_diff")) for x in torches[:1]]
        diffs = [(n, v) for n, v in diffs if v is not None]
        if diffs:
            R.p("Same function check (last hidden states, 2 x %d tokens): " % L +
                "; ".join("%s max |diff| %.1e %s" % (n, v, "ok" if v < 1e-3 else "TOO LARGE") for n, v in diffs))
        designs = [(b, t["pool_vs_openblas"]) for b, t in engine_tab.items() if t["pool_vs_openblas"]]
        if designs:
            R.p("Threading design: " + "; ".join("batch %d: pd_pool design %.2fx the OpenBLAS-pool design" % x for x in designs) +
                " (> 1 means peftd's pd_pool design is faster).")
        for b in (8, 32):
            t = engine_tab.get(b)
            if t and t["roofline_share_paired"]:
                ps = t["roofline_share_paired"]
                R.check("roofline", "batch %d: >= 85%% of roofline (paired per round)" % b, ps >= 0.85,
                        "%.0f%% (median of %d rounds; pooled %.1f GFLOP/s is %s%% of the start-of-run %s)"
                        % (100 * ps, t["roofline_share_paired_rounds"], t["peftd_gflops"],
                           fmt(t["roofline_share"] and 100 * t["roofline_share"], ".0f"), fmt(roof)))
            elif t and roof:
                R.check("roofline", "batch %d: >= 85%% of roofline" % b, t["roofline_share"] >= 0.85,
                        "%.0f%% (%.1f of %.1f GFLOP/s)" % (100 * t["roofline_share"], t["peftd_gflops"], roof))
        for b, need in ((1, 0.8), (8, 0.9), (32, 0.9)):
            t = engine_tab.get(b)
            if t:
                v = t["vs_ort"]
                R.check("vs_ort", "batch %d: >= %.1fx ONNX Runtime" % (b, need), None if v is None else v >= need,
                        "n/a (no ORT result)" if v is None else "%.2fx" % v)

    # ==== base dtypes ====
    dtype_rounds = {dt: rounds("engine_" + dt) for dt in ("bf16", "int8")}
    if engines and any(used for _, used in dtype_rounds.values()):
        dtype_section(R, engines, orts, rounds("ort_int8")[1], dtype_rounds)

    # ==== adapters ====
    adapters_by = {"fp32": adapters}
    for dt in ("bf16", "int8"):
        adapters_by[dt] = load(os.path.join(d, "adapters_%s.json" % dt))
    for dt, ad in adapters_by.items():
        if ad:
            adapters_section(R, ad, dt, share.get("adapters" if dt == "fp32" else "adapters_" + dt, 0))

    # ==== server ====
    if server:
        R.h("Server: POST /predict under wrk (closed loop, 1 wrk thread on the same 2 cores)")
        for key, label in (("tiny", "tiny default model, 24-word input"), ("bert", "BERT-base shape, 128-token input")):
            s = server.get(key)
            if not s:
                continue
            R.p("**%s**" % label)
            server_table(R, s["levels"])
        R.p("Server overhead: at concurrency 1 (one request per batch), mean latency over mean batch compute time: what "
            "the HTTP round trip, JSON, tokenizing, queueing and hand-offs between threads add to each forward pass. At "
            "higher concurrency, wall time over summed batch compute time: the share of time the compute threads sat "
            "idle while clients waited (on these 2 cores that includes the CPU that wrk and the HTTP threads take from "
            "them). Batch compute times come from /metrics (peftd_batch_duration_seconds). Server CPU: the peftd "
            "process's user + system time (all threads, compute included) per request, and over the wall time (cores busy, "
            "of %s; wrk uses the rest)." % (meta["cpus"] or "?"))
        t = server.get("tiny")
        if t:
            lv = {r["concurrency"]: r for r in t["levels"]}
            fl = t.get("http_floor")
            if 1 in lv and "latency_added_ms" in lv[1]:
                r1 = lv[1]
                R.p("Tiny model: the forward pass is short (%.2f ms per batch at c=1), so this table shows the server's "
                    "own cost. At c=1 each request spends %.2f ms (mean) outside its forward pass%s."
                    % (r1["mean_batch_ms"], r1["latency_added_ms"],
                       "; of that, %.3f ms (p50) is the HTTP round trip itself, measured by wrk at c=1 on GET /health, a "
                       "route that does no work" % fl["p50_ms"] if fl else ""))
                R.check("server_overhead", "tiny model, c=1: latency over batch compute <= +15% (HTTP round trip included)",
                        r1["latency_overhead"] <= 0.15, "%+.1f%% (%+.2f ms)" % (100 * r1["latency_overhead"], r1["latency_added_ms"]))
            top = max(lv)
            if top > 1 and lv[top].get("server_cores") is not None:
                rt = lv[top]
                R.p("At c=%d the peftd process kept %.2f of the %s cores busy (%.2f ms of CPU per request, compute "
                    "included) and wrk ran on the same cores: the compute threads' idle share there includes the CPU "
                    "time that reading requests and writing responses take (peftd's HTTP threads and wrk)."
                    % (top, rt["server_cores"], meta["cpus"] or "?", rt["server_cpu_ms_per_request"]))
            if top > 1 and "busy_overhead" in lv[top]:
                v = lv[top]["busy_overhead"]
                R.check("server_overhead", "tiny model, c=%d: wall over batch compute <= +15%% (wrk on the same cores)" % top, v <= 0.15,
                        "%+.1f%%" % (100 * v))
        b = server.get("bert")
        if b:
            server_bert_checks(R, b, "fp32")

        def upload_text(label, up):
            R.p("LoRA upload, %s (%.2f MB adapter_model.safetensors, r=%d on %s, PUT /adapters/{name}, %d new versions): "
                "upload request %.1f ms p50; from the upload's response to the first /predict response computed by the new "
                "version (the response names it; polled on one keep-alive connection): %.1f ms p50, max %.1f; the same "
                "%d-word predict again with that version warm: %.1f ms p50; first answer minus warm answer, per version: "
                "%.1f ms p50, max %.1f." % (label, up["lora_bytes"] / 1e6, up["lora_r"], ", ".join(up["lora_modules"]),
                                            up["versions"], up["upload_ms_p50"], up["available_ms_p50"],
                                            up["available_ms_max"], up["input_words"], up["warm_predict_ms_p50"],
                                            up["swap_ms_p50"], up["swap_ms_max"]))

        up = (t or {}).get("upload")
        if up:
            upload_text("tiny model", up)
            R.check("upload", "tiny model, %.2f MB LoRA: new version answers < 20 ms p50 after its upload's response"
                    % (up["lora_bytes"] / 1e6), up["available_ms_p50"] < 20,
                    "%.1f ms (max %.1f)" % (up["available_ms_p50"], up["available_ms_max"]))
        upb = (b or {}).get("upload")
        if upb:
            upload_text("BERT-base shape", upb)
            if "swap_ms_p50" in upb:
                R.check("upload", "BERT-base, %.2f MB LoRA: first answer minus warm answer < 20 ms p50 (one answer alone "
                        "takes %.0f ms)" % (upb["lora_bytes"] / 1e6, upb["warm_predict_ms_p50"]), upb["swap_ms_p50"] < 20,
                        "%.1f ms" % upb["swap_ms_p50"])

    servers_dt = {dt: load(os.path.join(d, "server_%s.json" % dt)) for dt in ("bf16", "int8")}
    for dt, sd in servers_dt.items():
        b = (sd or {}).get("bert")
        if not b:
            continue
        R.h("Server, base in %s (`peftd serve --dtype %s`): POST /predict under wrk, BERT-base shape, 128-token input" % (dt, dt))
        server_table(R, b["levels"])
        server_bert_checks(R, b, dt)
        upb = b.get("upload")
        if upb and "swap_ms_p50" in upb:
            R.p("LoRA upload (%.2f MB, r=%d, %d new versions) on the %s base: first answer minus warm answer %.1f ms p50 "
                "(max %.1f); a warm 6-word predict %.1f ms p50."
                % (upb["lora_bytes"] / 1e6, upb["lora_r"], upb["versions"], dt, upb["swap_ms_p50"], upb["swap_ms_max"],
                   upb["warm_predict_ms_p50"]))

    # ==== training ====
    R.h("Training throughput")
    training = training_section(R, rounds, load(os.path.join(d, "parity.json")))

    # ==== pretraining ====
    R.h("Pretraining throughput")
    pretraining = pretrain_section(R, rounds)

    # ==== targets ====
    R.h("Targets")
    rows = [[c["status"], c["what"], c["measured"]] for c in R.checks]
    for key, doc in TARGETS_DOC.items():
        if not any(c["target"] == key for c in R.checks):
            rows.append(["n/a", doc, "not measured in this run"])
    R.table(["status", "target", "measured"], rows)

    os.makedirs(a.results, exist_ok=True)
    stem = "%s-%s%s" % (now.strftime("%Y-%m-%d"), host, "-partial" if a.partial == "1" else "")
    out = {"meta": meta, "steps": steps, "gemm": gemm, "engine_rounds": engines_all,
           "engine_dtype_rounds": {dt: allr for dt, (allr, _) in dtype_rounds.items()}, "ort_int8_rounds": rounds("ort_int8")[0],
           "ort_rounds": orts_all,
           "torch_rounds": torches_all, "rounds_pooled": [x["_round"] for x in engines + orts + torches],
           "engine_summary": {str(k): v for k, v in engine_tab.items()}, "roofline_gflops": roof, "adapters": adapters,
           "server": server, "server_dtypes": servers_dt,
           "adapters_dtypes": {k: v for k, v in adapters_by.items() if k != "fp32"}, "training": training, "pretraining": pretraining, "targets": R.checks}
    with open(os.path.join(a.results, stem + ".json"), "w") as f:
        json.dump(out, f, indent=1)
    if a.partial == "1":
        print("\nwrote bench/results/%s.json (a quick or partial run: latest.md left as it was)" % stem)
        return
    with open(os.path.join(a.results, "latest.md"), "w") as f:
        f.write("\n".join(R.lines).rstrip() + "\n\nRaw results: `bench/results/%s.json`.\n" % stem)
    print("\nwrote bench/results/%s.json and bench/results/latest.md" % stem)


if __name__ == "__main__":
    main()
