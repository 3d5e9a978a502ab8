#!/usr/bin/python3
"""Golden values for pretraining: the masked-LM loss of a packed batch and the gradient of every
weight of a BERT encoder and its BertForMaskedLM head, by torch autograd.

    /usr/bin/python3 tests/reference/gen_mlm.py

The model is refmodel.BertModel (no pooler) plus the masked-LM head written here from the
behaviour of transformers' BertForMaskedLM (modeling_bert.py, BertPredictionHeadTransform and
BertLMPredictionHead): t = dense(h); u = act(t) (config hidden_act); v = LayerNorm(u) with the
config's eps; logits = v E^T + bias, E = bert.embeddings.word_embeddings.weight (the decoder is
tied to it) and bias = cls.predictions.bias; loss = cross-entropy averaged over the masked
tokens only (labels -100 elsewhere). Nothing of peftd's C code is used.

The batch is three sequences of different lengths, each run on its own (no padding), as peftd
packs them; the loss is the mean over all masked tokens of the batch. Weights are drawn once in
float32 from torch.Generator seeds (stored F32) and the reference runs in float64 on them.

Output: golden_mlm/model/ (config.json, model.safetensors, vocab.txt) and golden_mlm/case.json:
  {"sequences": [{"ids", "type_ids", "masked": [positions], "labels": [original ids]}],
   "loss": mean, "correct": masked tokens whose largest logit is the label,
   "grads": {tensor name: flat list, row-major}}
Deterministic: fixed seeds, one thread, floats rounded to 9 significant digits.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import refmodel  # noqa: E402
import safetensors_io  # noqa: E402

torch.set_num_threads(1)
OUT = os.path.join(HERE, "golden_mlm")

CONFIG = {
    "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 60, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48, "hidden_act": "gelu",
    "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "torch_dtype": "float32",
}
LENGTHS = [12, 7, 16]
MASK_ID = 4


def r9(x):
    return float("%.9g" % x)


class MlmHead(nn.Module):
    """cls.predictions: transform.dense, transform.LayerNorm, bias; decoder weight tied."""

    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(h, h)
        self.transform.LayerNorm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.act = refmodel.get_activation(cfg.hidden_act)

    def forward(self, h, word_embeddings):
        t = self.transform.LayerNorm(self.act(self.transform.dense(h)))
        return t @ word_embeddings.t() + self.bias


class BertForMaskedLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.bert = refmodel.BertModel(cfg, add_pooling_layer=False)
        self.cls = nn.Module()
        self.cls.predictions = MlmHead(cfg)

    def forward(self, ids, type_ids):
        h, _ = self.bert(input_ids=ids, token_type_ids=type_ids)
        return self.cls.predictions(h, self.bert.embeddings.word_embeddings.weight)


def draw_weights(model):
    """float32 draws per tensor, seeded by the tensor's index in state_dict order."""
    sd = {}
    for i, (name, t) in enumerate(sorted(model.state_dict().items())):
        g = torch.Generator().manual_seed(1000 + i)
        if name.endswith("LayerNorm.weight"):
            v = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        elif "embeddings" in name:
            v = 0.5 * torch.randn(t.shape, generator=g)
        elif name.endswith("bias"):
            v = 0.1 * torch.randn(t.shape, generator=g)
        else:
            v = 0.3 * torch.randn(t.shape, generator=g)
        sd[name] = v.to(torch.float32)
    return sd


def make_batch():
    g = torch.Generator().manual_seed(7)
    seqs = []
    for n in LENGTHS:
        ids = torch.randint(5, CONFIG["vocab_size"], (n,), generator=g)
        ids[0], ids[-1] = 2, 3  # [CLS] ... [SEP]
        types = torch.zeros(n, dtype=torch.long)
        types[n // 2:] = 1
        pick = torch.rand(n, generator=g) < 0.25
        pick[0] = pick[-1] = False
        pos = [int(p) for p in torch.nonzero(pick).flatten()]
        labels = [int(ids[p]) for p in pos]
        # 80/10/10 would be random here; the goldens only need fixed inputs: most [MASK], one kept
        for k, p in enumerate(pos):
            if k % 4 != 3:
                ids[p] = MASK_ID
        seqs.append({"ids": [int(x) for x in ids], "type_ids": [int(x) for x in types], "masked": pos, "labels": labels})
    return seqs


def loss_of(model, seqs, dtype):
    total, correct, n = 0, 0, 0
    for s in seqs:
        ids = torch.tensor([s["ids"]])
        types = torch.tensor([s["type_ids"]])
        logits = model(ids, types)[0]
        pos = torch.tensor(s["masked"], dtype=torch.long)
        lab = torch.tensor(s["labels"], dtype=torch.long)
        z = logits[pos]
        total = total + F.cross_entropy(z.to(dtype), lab, reduction="sum")
        correct += int((z.argmax(dim=-1) == lab).sum())
        n += len(s["masked"])
    return total / n, correct


def main():
    cfg = refmodel.Config(CONFIG)
    model = BertForMaskedLM(cfg)
    sd = draw_weights(model)
    model.load_state_dict(sd)
    seqs = make_batch()

    m64 = BertForMaskedLM(cfg).double().eval()  # eval: no dropout
    m64.load_state_dict({k: v.double() for k, v in sd.items()})
    loss, correct = loss_of(m64, seqs, torch.float64)
    loss.backward()
    grads = {name: p.grad for name, p in m64.named_parameters()}
    # the float32 model lands close to float64 on these inputs (the C side is float32)
    m32 = BertForMaskedLM(cfg).eval()
    m32.load_state_dict(sd)
    l32, _ = loss_of(m32, seqs, torch.float32)
    l32.backward()
    worst = 0.0
    for name, p in m32.named_parameters():
        ref = grads[name]
        e = float((p.grad.double() - ref).abs().max() / (ref.abs().max() + 1e-2))
        if e > 1e-5:
            print("  %s: float32 off by %.1e of the largest (%.1e)" % (name, e, float(ref.abs().max())))
        worst = max(worst, e)
    assert abs(float(l32) - float(loss)) < 1e-5, (float(l32), float(loss))
    assert worst < 2e-5, worst
    print("loss %.6f, float32 loss off by %.1e, float32 gradients off by %.1e of each tensor's largest (+ 0.01)"
          % (float(loss), abs(float(l32) - float(loss)), worst))

    os.makedirs(os.path.join(OUT, "model"), exist_ok=True)
    safetensors_io.save_file(sd, os.path.join(OUT, "model", "model.safetensors"))
    with open(os.path.join(OUT, "model", "config.json"), "w", encoding="utf-8") as f:
        json.dump(CONFIG, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(OUT, "model", "vocab.txt"), "w", encoding="utf-8") as f:
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["w%d" % i for i in range(5, CONFIG["vocab_size"])]
        f.write("\n".join(words) + "\n")
    case = {"sequences": seqs, "loss": r9(float(loss)), "correct": correct,
            "grads": {k: [r9(x) for x in v.reshape(-1).tolist()] for k, v in sorted(grads.items())}}
    with open(os.path.join(OUT, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d tensors)" % (OUT, len(grads)))


if __name__ == "__main__":
    main()
