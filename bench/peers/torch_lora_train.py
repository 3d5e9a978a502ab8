#!/usr/bin/python3
"""PyTorch peer for LoRA training (bench/run.sh step "train"): the training step peftd's trainer
takes, written with torch.nn on the BERT of torch_bert.py (transformers' eager BertModel layout),
loaded from the same model.safetensors.

The model is BertForSequenceClassification as PEFT trains it with get_peft_model(LoraConfig(
task_type=SEQ_CLS, r, lora_alpha, target_modules=[query, value])):
  * every base weight frozen (requires_grad False), the pooler (dense + tanh) included;
  * query and value wrapped as PEFT's lora.Linear: base(x) + lora_B(lora_A(dropout(x))) * alpha/r,
    lora_A kaiming_uniform_(a=sqrt(5)), lora_B zeros (lora_dropout 0 here: dropout is identity);
  * the classifier trainable (PEFT's modules_to_save for SEQ_CLS);
  * no dropout in the base model (peftd keeps the frozen base in inference behaviour, see
    docs/TRAINING.md; the two compute the same function).
One step = zero_grad, forward, cross-entropy (mean over the batch), backward, clip_grad_norm_ to
1.0, torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0): what peftd's
pd_train_engine_step does.

Bench mode (--bench): random token ids ([CLS] ids [SEP], no padding, as bench/train.c), labels
alternating, median seconds per step over --steps after --warmup; results to --json.

Also imported by bench/parity.py (build_model, load_lora_init, step).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bert as tb  # noqa: E402


class LoraLinear(nn.Module):
    """PEFT's lora.Linear for one nn.Linear: y = base(x) + lora_B(lora_A(x)) * (alpha / r)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.scaling = alpha / r
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


class LoraClassifier(nn.Module):
    """BertForSequenceClassification (pooler + classifier) with LoRA on the target modules."""

    def __init__(self, cfg, num_labels, r, alpha, targets):
        super().__init__()
        h = cfg["hidden_size"]
        self.bert = tb.Bert(cfg)
        self.pooler = nn.Linear(h, h)
        self.classifier = nn.Linear(h, num_labels)
        self.targets = list(targets)
        self.r, self.alpha = r, alpha

    def add_lora(self):
        for p in self.parameters():
            p.requires_grad_(False)
        for layer in self.bert.encoder.layer:
            att = layer.attention.self
            for t in self.targets:
                if t not in ("query", "key", "value"):
                    raise ValueError("target module %r: only query, key, value" % t)
                setattr(att, t, LoraLinear(getattr(att, t), self.r, self.alpha))
        for p in self.classifier.parameters():
            p.requires_grad_(True)

    def lora_modules(self):
        """[(layer index, target name, LoraLinear)]"""
        return [(i, t, getattr(layer.attention.self, t)) for i, layer in enumerate(self.bert.encoder.layer) for t in self.targets]

    def forward(self, ids, mask, types):
        hid = self.bert(ids, mask, types)
        return self.classifier(torch.tanh(self.pooler(hid[:, 0])))


def build_model(model_dir, r, alpha, targets=("query", "value"), num_labels=None):
    """Loads the base (encoder, pooler and classifier) from model_dir/model.safetensors and adds
    LoRA. Returns (model, cfg). Raises on missing or mis-shaped tensors."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError("%s: the torch peer handles model_type bert with gelu" % model_dir)
    sd = tb.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    n = sd["classifier.weight"].shape[0] if num_labels is None else num_labels
    m = LoraClassifier(cfg, n, r, alpha, targets)
    enc = {k[len("bert."):]: v for k, v in sd.items() if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    m.bert.load_state_dict(enc, strict=True)
    m.pooler.load_state_dict({"weight": sd["bert.pooler.dense.weight"], "bias": sd["bert.pooler.dense.bias"]})
    if sd["classifier.weight"].shape[0] == n:
        m.classifier.load_state_dict({"weight": sd["classifier.weight"], "bias": sd["classifier.bias"]})
    else:  # transformers' init for a new head
        nn.init.normal_(m.classifier.weight, std=cfg.get("initializer_range", 0.02))
        nn.init.zeros_(m.classifier.bias)
    m.add_lora()
    return m, cfg


def load_lora_init(model, path):
    """Copies a PEFT adapter_model.safetensors (LoRA A/B of every target, the classifier) into
    model, so torch starts from exactly the adapter peftd starts from. Raises if a tensor the
    model trains is missing from the file or has another shape."""
    sd = tb.read_safetensors(path)
    used = set()

    def take(name, dst):
        for k in (name, name.replace(".weight", ".modules_to_save.default.weight").replace(".bias", ".modules_to_save.default.bias")):
            if k in sd:
                if tuple(sd[k].shape) != tuple(dst.shape):
                    raise ValueError("%s: shape %s, expected %s" % (k, tuple(sd[k].shape), tuple(dst.shape)))
                with torch.no_grad():
                    dst.copy_(sd[k])
                used.add(k)
                return
        raise ValueError("%s: not in %s" % (name, path))

    for i, t, mod in model.lora_modules():
        pre = "base_model.model.bert.encoder.layer.%d.attention.self.%s" % (i, t)
        take(pre + ".lora_A.weight", mod.lora_A.weight)
        take(pre + ".lora_B.weight", mod.lora_B.weight)
    take("base_model.model.classifier.weight", model.classifier.weight)
    take("base_model.model.classifier.bias", model.classifier.bias)
    left = sorted(set(sd) - used)
    if left:
        raise ValueError("%s: tensors the torch model does not train: %s" % (path, ", ".join(left[:5])))


def make_optimizer(model, lr, weight_decay=0.0):
    """AdamW over the trainable parameters; no decay on biases (HF Trainer; peftd's decay flags)."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=1e-8)


def step(model, opt, ids, mask, types, labels, max_grad_norm=1.0):
    """One training step; returns the batch's mean loss (a float)."""
    opt.zero_grad(set_to_none=True)
    logits = model(ids, mask, types)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    opt.step()
    return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="BERT checkpoint directory (config.json, model.safetensors)")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=int, default=16)
    a = ap.parse_args()
    if a.batch < 1 or a.seq < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("batch, seq, steps and threads must be positive")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, cfg = build_model(a.model, a.r, a.alpha)
    load_s = time.perf_counter() - t0
    if a.seq > cfg["max_position_embeddings"]:
        ap.error("--seq exceeds the model's positions")
    model.train()
    opt = make_optimizer(model, 1e-3)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(777)
    batches = []
    for _ in range(4):
        ids = torch.randint(104, cfg["vocab_size"], (a.batch, a.seq), dtype=torch.long, generator=g)
        ids[:, 0], ids[:, -1] = 101, 102
        batches.append((ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(a.batch) % 2))
    blas = tb.blas_info()
    print("PyTorch %s eager, %d threads; BLAS: %s; LoRA r=%d alpha=%d on query+value, %d trainable parameters; batch %d x %d"
          % (torch.__version__, torch.get_num_threads(), blas["openblas_core"], a.r, a.alpha, n_train, a.batch, a.seq))
    secs, losses = [], []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = step(model, opt, *batches[s % 4])
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            secs.append(dt)
            losses.append(loss)
        print("%s step %d: %.3f s, %.2f examples/s, loss %.4f" % ("timed" if s >= a.warmup else "warm-up", s, dt, a.batch / dt, loss))
        sys.stdout.flush()
    srt = sorted(secs)
    k = len(srt)
    med = srt[k // 2] if k % 2 else 0.5 * (srt[k // 2 - 1] + srt[k // 2])
    print("\nLoRA training step, batch %d x %d: median %.3f s (%.3f..%.3f) over %d steps after %d warm-up: %.2f examples/s; "
          "peak RSS %.0f MB" % (a.batch, a.seq, med, srt[0], srt[-1], k, a.warmup, a.batch / med,
                                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
    if a.json:
        res = {"runtime": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas,
               "batch": a.batch, "seq": a.seq, "r": a.r, "lora_alpha": a.alpha, "target_modules": ["query", "value"],
               "optimizer": "adamw", "trainable_params": n_train, "load_s": load_s, "warmup": a.warmup,
               "median_s": med, "min_s": srt[0], "max_s": srt[-1], "examples_per_s": a.batch / med,
               "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               "samples_s": secs, "losses": losses}
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
