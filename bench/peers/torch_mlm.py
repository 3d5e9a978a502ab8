#!/usr/bin/python3
"""PyTorch peer for masked-LM pretraining (bench/run.sh step "pretrain"): the step peftd's
`peftd pretrain` takes (train/pretrain.c pd_pretrainer_step, timed by bench/pretrain.c), written
with torch.nn on the eager BERT of torch_bert.py (transformers' modeling_bert.py layout) plus
BertForMaskedLM's head.

Same shape, batch, masking and precision as bench/pretrain.c: a fresh BERT (--layers, --hidden,
--heads, --ffn, --vocab; 512 positions, 2 token types), fp32, --threads threads; --batch windows
of exactly --seq tokens ([CLS] random ids [SEP], no padding), 15% of the non-special tokens
masked (80% [MASK], 10% random, 10% kept). One step = zero_grad, forward, the MLM head on the
masked rows only (dense, gelu, LayerNorm, decoder tied to the word embeddings + bias), mean
cross-entropy, backward through every weight, clip_grad_norm_ 1.0, torch.optim.AdamW (betas
0.9/0.98, eps 1e-6, weight decay 0.01 except biases and LayerNorms; foreach, the fastest
implementation torch 1.13 has on CPU). Every weight trains, so the embedding gradient is dense
as in peftd. GFLOP/s uses bench/pretrain.c's FLOP count (matrix products only).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bert as tb  # noqa: E402

CLS, SEP, MASK, FIRST_ID = 101, 102, 103, 104  # bench_util.h's vocabulary layout


class MlmHead(nn.Module):
    """cls.predictions: transform (dense, gelu, LayerNorm), decoder tied to the word embeddings, bias."""

    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.dense = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=c.get("layer_norm_eps", 1e-12))
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, x, emb):
        return nn.functional.linear(self.LayerNorm(nn.functional.gelu(self.dense(x))), emb, self.bias)


class BertForMaskedLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = tb.Bert(c)
        self.head = MlmHead(c)
        for m in self.modules():  # transformers' _init_weights
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, ids, mask, types, rows):
        h = self.bert(ids, mask, types)
        h = h.reshape(-1, h.shape[-1]).index_select(0, rows)  # the masked rows only
        return self.head(h, self.bert.embeddings.word_embeddings.weight)


def step_flops(layers, h, f, v, n, seq, m):
    t = n * seq
    fwd = 2.0 * t * (4 * h * h + 2 * h * f) + 4.0 * t * seq * h
    return layers * 3.0 * fwd + 3.0 * (2.0 * m * h * h + 2.0 * m * h * v)


def make_batch(g, n, seq, vocab):
    ids = torch.randint(FIRST_ID, vocab, (n, seq), dtype=torch.long, generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    rows, labels = [], []
    k = round(0.15 * (seq - 2))
    for i in range(n):
        pos = (torch.randperm(seq - 2, generator=g)[:k] + 1).sort().values
        for p in pos.tolist():
            labels.append(int(ids[i, p]))
            rows.append(i * seq + p)
            r = float(torch.rand(1, generator=g))
            if r < 0.8:
                ids[i, p] = MASK
            elif r < 0.9:
                ids[i, p] = int(torch.randint(FIRST_ID, vocab, (1,), generator=g))
    return ids, torch.ones_like(ids), torch.zeros_like(ids), torch.tensor(rows), torch.tensor(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    if a.batch < 1 or a.seq < 8 or a.steps < 1 or a.warmup < 0 or a.threads < 1 or a.hidden % a.heads:
        ap.error("bad sizes")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = {"vocab_size": a.vocab, "hidden_size": a.hidden, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "intermediate_size": a.ffn, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    model = BertForMaskedLM(cfg)
    model.train()  # no dropout modules exist in the model: train() changes nothing but intent
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4,
                            betas=(0.9, 0.98), eps=1e-6, foreach=True)
    g = torch.Generator().manual_seed(777)
    batches = [make_batch(g, a.batch, a.seq, a.vocab) for _ in range(4)]
    n_masked = len(batches[0][4])
    fl = step_flops(a.layers, a.hidden, a.ffn, a.vocab, a.batch, a.seq, n_masked)
    blas = tb.blas_info()
    print("PyTorch %s eager, %d threads; BLAS: %s; BERT %d layers, hidden %d, heads %d, ffn %d, vocab %d; batch %d x %d, %d masked; "
          "%.2f GFLOP a step" % (torch.__version__, torch.get_num_threads(), blas["openblas_core"], a.layers, a.hidden, a.heads,
                                 a.ffn, a.vocab, a.batch, a.seq, n_masked, fl * 1e-9))
    secs, losses = [], []
    for s in range(a.warmup + a.steps):
        ids, mask, types, rows, labels = batches[s % 4]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(ids, mask, types, rows), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = float(loss)
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            secs.append(dt)
            losses.append(lv)
        print("%s step %d: %.3f s, %.0f tokens/s, %.1f GFLOP/s, loss %.4f"
              % ("timed" if s >= a.warmup else "warm-up", s, dt, a.batch * a.seq / dt, fl / dt * 1e-9, lv))
        sys.stdout.flush()
    srt = sorted(secs)
    k = len(srt)
    med = srt[k // 2] if k % 2 else 0.5 * (srt[k // 2 - 1] + srt[k // 2])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("\nMLM pretraining step, batch %d x %d: median %.3f s (%.3f..%.3f) over %d steps: %.0f tokens/s, %.1f GFLOP/s; "
          "peak RSS %.0f MB" % (a.batch, a.seq, med, srt[0], srt[-1], k, a.batch * a.seq / med, fl / med * 1e-9, rss / 1024.0))
    if a.json:
        res = {"runtime": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas,
               "batch": a.batch, "seq": a.seq, "masked": n_masked,
               "model": {"layers": a.layers, "hidden": a.hidden, "heads": a.heads, "ffn": a.ffn, "vocab": a.vocab},
               "flops_per_step": fl, "median_s": med, "min_s": srt[0], "max_s": srt[-1], "tokens_per_s": a.batch * a.seq / med,
               "gflops": fl / med * 1e-9, "peak_rss_kb": rss, "samples_s": secs, "losses": losses}
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
