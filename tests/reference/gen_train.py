#!/usr/bin/python3
"""Golden values for training: losses, gradients and AdamW steps computed by torch autograd.

    /usr/bin/python3 tests/reference/gen_train.py      # after gen_engine.py (models/)

For each case (a method on a tiny base model from models/) it builds an adapter with fixed
weights through gen_adapters.py's builders (the same PEFT / AdapterHub math the inference
goldens use), runs one batch through the float64 reference with autograd on, and records

  * the mean batch loss (classification: cross-entropy; QA: (CE(start) + CE(end)) / 2 over the
    real tokens of the sequence),
  * the gradient of every trainable tensor, under its saved tensor name,
  * the gradient norm before clipping, and every tensor after torch.optim.AdamW steps with
    torch.nn.utils.clip_grad_norm_ and transformers' linear warmup/decay schedule (LambdaLR):
    two steps on the same batch, so the schedule, bias correction at t = 2 and gradients at
    moved parameters are all covered.

Trainable tensors follow PEFT / AdapterHub: LoRA A and B, prompt / prefix embeddings, bottleneck
down / up projections, and the task head (PEFT's modules_to_save "classifier" / "qa_outputs";
AdapterHub's prediction head). The base model, its pooler included, stays frozen. Weight decay
applies to every tensor except biases and LayerNorm weights (transformers' Trainer).

Output: golden_train/<case>/ (the adapter in its real file format, for pd_adapter_load_dir) and
golden_train/<case>.json:
  {"base", "adapter", "task", "hyper": {"lr", "weight_decay", "betas", "eps", "max_grad_norm",
   "warmup_steps", "total_steps"}, "batch": [{"ids", "type_ids", "label" | "start", "end"}],
   "steps": [{"lr", "loss", "grad_norm", "grads": {name: [...]}, "params": {name: [...]}}],
   "decay": {name: 0|1}}  (the initial values are the adapter files)
Deterministic: fixed weights (gen_adapters' CRC-seeded draws), one thread, floats rounded to 8
significant digits (float32 holds about 7).
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gen_adapters as GA  # noqa: E402

torch.set_num_threads(1)
OUT = os.path.join(HERE, "golden_train")


def r8(x):
    return float("%.8g" % x)


def flat(t):
    return [r8(v) for v in t.detach().reshape(-1).tolist()]


# ============================================================================
# Batches
# ============================================================================

CLS_TEXTS = [("the movie was good", None, 2), ("a bad film", None, 0),
             ("great acting and a nice story", "i liked it", 2), ("boring", None, 1),
             ("the story was long and sad but the actors were great", None, 1)]
QA_CASES = [("who was great?", "the actors were great and the story was long", (0, 1)),
            ("what was long?", "the movie was good. the story was long and boring.", (2, 3)),
            ("where is it?", "it is in the small house near the river", (4, 5))]


def cls_batch(base, n_virtual, labels):
    out = []
    for text, pair, lab in CLS_TEXTS:
        enc = base.tok.encode(text, pair, max_length=base.max_tokens - n_virtual)
        out.append({"ids": enc.ids, "type_ids": enc.type_ids, "label": lab % len(labels)})
    return out


def qa_batch(base, n_virtual):
    out = []
    for q, c, (a, b) in QA_CASES:
        enc = base.tok.encode_qa(q, c, base.max_tokens - n_virtual, 8)[0]
        ctx = [i for i, s in enumerate(enc.sequence_ids) if s == 1]
        out.append({"ids": enc.ids, "type_ids": enc.type_ids, "start": ctx[a], "end": ctx[b]})
    return out


# ============================================================================
# The adapted model with autograd on (gen_adapters.Runner without no_grad)
# ============================================================================


def forward(runner, ex, prompt=None, prefix=None):
    """Logits of one example: cls (num_labels,) or (start, end) over the real tokens."""
    base, model = runner.base, runner.model
    ids = torch.tensor([ex["ids"]], dtype=torch.long)
    tt = torch.tensor([ex["type_ids"]], dtype=torch.long)
    if base.arch == "roberta":
        tt = torch.zeros_like(tt)
    T = ids.shape[1]
    if prompt is not None:
        n = prompt.shape[0]
        emb = base.backbone(model).embeddings.word_embeddings(ids)
        kw = dict(inputs_embeds=torch.cat([prompt[None], emb], dim=1),
                  attention_mask=torch.ones(1, n + T, dtype=torch.long),
                  token_type_ids=torch.cat([torch.zeros(1, n, dtype=torch.long), tt], 1))
    elif prefix is not None:
        kw = dict(input_ids=ids, token_type_ids=tt, past_key_values=prefix,
                  attention_mask=torch.ones(1, prefix[0][0].shape[2] + T, dtype=torch.long))
    else:
        kw = dict(input_ids=ids, token_type_ids=tt, attention_mask=torch.ones(1, T, dtype=torch.long))
    n = prompt.shape[0] if prompt is not None else 0
    if runner.hub_head is not None:
        h, _ = base.backbone(model)(**kw)
        if runner.hub_head.cfg["head_type"] == "classification":
            return runner.hub_head(h[0, 0])
        lg = runner.hub_head(h[0])
        return lg[:, 0], lg[:, 1]
    out = model(**kw)
    if isinstance(out, tuple):
        return out[0][0, n:], out[1][0, n:]
    return out[0]


def prefix_from(emb, base):
    """peft_model.get_prompt without projection: (nvt, layers*2*hidden) -> per layer (k, v)."""
    nvt = emb.shape[0]
    pkv = emb[None].view(1, nvt, base.layers * 2, base.heads, base.hidden // base.heads)
    pkv = pkv.permute([2, 0, 3, 1, 4]).split(2)
    return [(blk[0], blk[1]) for blk in pkv]


def batch_loss(runner, batch, task, prompt=None, prefix_emb=None):
    prefix = prefix_from(prefix_emb, runner.base) if prefix_emb is not None else None
    total = 0
    for ex in batch:
        out = forward(runner, ex, prompt, prefix)
        if task == "classification":
            total = total + F.cross_entropy(out[None], torch.tensor([ex["label"]]))
        else:
            s, e = out
            total = total + 0.5 * (F.cross_entropy(s[None], torch.tensor([ex["start"]])) +
                                   F.cross_entropy(e[None], torch.tensor([ex["end"]])))
    return total / len(batch)


# ============================================================================
# Cases
# ============================================================================


def head_params(base, model, prefix):
    """PEFT modules_to_save head tensors: (saved name, parameter)."""
    mods = ["classifier"] if base.task == "cls" else ["qa_outputs"]
    out = []
    for name, p in model.named_parameters():
        if any(name.startswith(m + ".") for m in mods):
            p.requires_grad_(True)
            out.append((prefix + name, p))
    return out


def build_case(case):
    toks = case["toks"]
    base = GA.Base(case["base"], toks)
    for p in base.model.parameters():
        p.requires_grad_(False)
    spec = case["spec"]
    aid = "train__" + case["name"]
    named = []          # (saved name, leaf tensor)
    extra = {}
    if spec["kind"] == "lora":
        files, runner = GA.build_lora(base, aid, spec)
        P = "base_model.model."
        for i in range(base.layers):
            for which in GA.LIN_ORDER:
                key = base.module_name(i, which)
                m = runner.model.get_submodule(key)
                if isinstance(m, GA.LoraLinear):
                    m.A.requires_grad_(True)
                    m.B.requires_grad_(True)
                    named += [(P + key + ".lora_A.weight", m.A), (P + key + ".lora_B.weight", m.B)]
        named += head_params(base, runner.model, P)
    elif spec["kind"] in ("prefix", "prompt"):
        files, runner = GA.BUILDERS[spec["kind"]](base, aid, spec)
        emb = GA.f64(files["adapter_model.safetensors"][0]["prompt_embeddings"]).requires_grad_(True)
        named.append(("prompt_embeddings", emb))
        extra["prompt" if spec["kind"] == "prompt" else "prefix_emb"] = emb
        named += head_params(base, runner.model, "base_model.")
    else:
        captured = {}
        orig = GA.install_bottlenecks

        def capture(b, model, sites):
            captured.update(sites)
            return orig(b, model, sites)

        GA.install_bottlenecks = capture
        try:
            files, runner = GA.build_hub(base, aid, spec)
        finally:
            GA.install_bottlenecks = orig
        name = spec["hub_name"]
        for (i, site), bn in sorted(captured.items()):
            pre = "%s.%d.%s.%s." % (GA.ARCH[base.arch]["layers"], i, GA.ARCH[base.arch]["hub_site"][site], name)
            for k, sn in (("down_w", "adapter_down.0.weight"), ("down_b", "adapter_down.0.bias"),
                          ("up_w", "adapter_up.weight"), ("up_b", "adapter_up.bias")):
                bn.p[k].requires_grad_(True)
                named.append((pre + sn, bn.p[k]))
        idxs = sorted({int(k.split(".")[2]) for k in files["model_head.safetensors"][0]})
        for idx, (w, b) in zip(idxs, runner.hub_head.layers):
            w.requires_grad_(True)
            named.append(("heads.%s.%d.weight" % (name, idx), w))
            if b is not None:
                b.requires_grad_(True)
                named.append(("heads.%s.%d.bias" % (name, idx), b))
    return base, files, runner, named, extra


def lr_lambda(step, warmup, total):
    """transformers.get_linear_schedule_with_warmup."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def is_decay(name):
    """transformers Trainer.get_decay_parameter_names: not biases, not LayerNorm weights."""
    return not ("bias" in name or "norm" in name.lower())


def run_case(case):
    base, files, runner, named, extra = build_case(case)
    task = "classification" if base.task == "cls" else "question_answering"
    nv = runner.n_virtual
    batch = cls_batch(base, nv, runner.labels) if task == "classification" else qa_batch(base, nv)
    h = dict(lr=case.get("lr", 1e-3), weight_decay=case.get("wd", 0.5), betas=[0.9, 0.999], eps=1e-8,
             max_grad_norm=case.get("max_grad_norm", 1.0), warmup_steps=case.get("warmup", 0),
             total_steps=case.get("total", 4))
    params = [p for _, p in named]
    decay = {n: int(is_decay(n)) for n, _ in named}
    groups = [{"params": [p for n, p in named if decay[n]], "weight_decay": h["weight_decay"]},
              {"params": [p for n, p in named if not decay[n]], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, h["warmup_steps"], h["total_steps"]))
    steps = []
    for _ in range(2):
        opt.zero_grad()
        loss = batch_loss(runner, batch, task, extra.get("prompt"), extra.get("prefix_emb"))
        loss.backward()
        grads = {n: flat(p.grad) for n, p in named}
        lr = opt.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_(params, h["max_grad_norm"])
        opt.step()
        sched.step()
        steps.append({"lr": r8(lr), "loss": r8(float(loss)), "grad_norm": r8(float(norm)), "grads": grads,
                      "params": {n: flat(p) for n, p in named}})
    adir = os.path.join(OUT, case["name"])
    GA.write_adapter_dir(adir, files)
    rec = {"base": "tests/reference/models/%s" % case["base"], "adapter": "tests/reference/golden_train/%s" % case["name"],
           "task": task, "n_virtual": nv, "hyper": h, "batch": batch, "decay": decay, "steps": steps}
    with open(os.path.join(OUT, case["name"] + ".json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(rec, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    return rec


def main():
    GA.fresh_dir(OUT)
    toks = GA.make_tokenizers()
    qv = ["query", "value"]
    cases = [
        dict(name="bert_cls_lora", base="bert_cls_f32", spec=dict(kind="lora", r=4, alpha=8, target=qv),
             warmup=1, total=4),
        dict(name="bert_cls_prefix", base="bert_cls_f32", spec=dict(kind="prefix", nvt=5), lr=2e-3),
        dict(name="bert_cls_prompt", base="bert_cls_f32", spec=dict(kind="prompt", nvt=4), max_grad_norm=0.05),
        dict(name="bert_cls_seq_bn", base="bert_cls_f32",
             spec=dict(kind="hub", preset="seq_bn", hub_name="sst_seq", config={"reduction_factor": 8},
                       head=dict(type="classification", labels=["no", "maybe", "yes"])), warmup=2, total=6),
        dict(name="distilbert_cls_par_bn", base="distilbert_cls_f32",
             spec=dict(kind="hub", preset="par_bn", hub_name="parallel", config={"reduction_factor": 8}, std_up=0.05,
                       head=dict(type="classification", labels=["bad", "ok", "good"])), max_grad_norm=100.0),
        dict(name="roberta_qa_lora", base="roberta_qa_f32",
             spec=dict(kind="lora", r=4, alpha=8, target=["query", "key", "value"])),
    ]
    for c in cases:
        c["toks"] = toks
        rec = run_case(c)
        n = sum(len(v) for v in rec["steps"][0]["grads"].values())
        s0, s1 = rec["steps"]
        print("%-24s %5d params  loss %.6f -> %.6f  |g| %.4f (clip %.2f)  lr %.2e, %.2e" %
              (c["name"], n, s0["loss"], s1["loss"], s0["grad_norm"], rec["hyper"]["max_grad_norm"],
               s0["lr"], s1["lr"]))


if __name__ == "__main__":
    main()
