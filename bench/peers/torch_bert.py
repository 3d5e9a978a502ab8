#!/usr/bin/python3
"""PyTorch eager peer for bench/run.sh: a BERT encoder written with torch.nn the way
Hugging Face transformers' modeling_bert.py runs it in eager mode (separate query/key/value
Linear layers, transpose_for_scores, matmul + scale + additive mask + softmax + matmul,
erf GELU, post-LayerNorm residuals; dropout is a no-op in eval). torch 1.13 has no
scaled_dot_product_attention, so eager attention is what transformers uses on it.

Weights come from the same model.safetensors the C engine loads (read here with a small
stdlib + numpy reader), so all runtimes compute the same function.

Modes (combinable):
  --check DUMP    run the ids in DUMP/ids.bin and compare with the C engine's DUMP/hidden.bin
  --bench         time batches of --seq tokens, median of --runs after --warmup
  --export PATH   write an ONNX model (torch.onnx.export) for the ONNX Runtime peer
Results go to --json FILE.
"""
import argparse
import ctypes
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

# ==== safetensors ====

_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """Returns {name: torch.Tensor} (float32 copies) from a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        arr = np.frombuffer(data, dtype=_NP[e["dtype"]], count=(end - b) // np.dtype(_NP[e["dtype"]]).itemsize, offset=b)
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).astype(np.float32))
    return out


# ==== the model (names follow transformers' BertModel so state dicts line up) ====


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, input_ids, token_type_ids):
        pos = torch.arange(input_ids.shape[1], dtype=torch.long).unsqueeze(0)
        e = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(pos)
        return self.LayerNorm(e)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.dh = h // self.nh
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)

    def split(self, x):
        b, l, _ = x.shape
        return x.view(b, l, self.nh, self.dh).permute(0, 2, 1, 3)

    def forward(self, x, ext_mask):
        q = self.split(self.query(x))
        k = self.split(self.key(x))
        v = self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        scores = scores + ext_mask
        probs = nn.functional.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], -1)


class DenseLN(nn.Module):
    def __init__(self, c, din):
        super().__init__()
        self.dense = nn.Linear(din, c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))

    def forward(self, x, resid):
        return self.LayerNorm(self.dense(x) + resid)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = DenseLN(c, c["hidden_size"])

    def forward(self, x, ext_mask):
        return self.output(self.self(x, ext_mask), x)


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseLN(c, c["intermediate_size"])

    def forward(self, x, ext_mask):
        a = self.attention(x, ext_mask)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, x, ext_mask):
        for layer in self.layer:
            x = layer(x, ext_mask)
        return x


class Bert(nn.Module):
    """BertModel without the pooler: returns last_hidden_state."""

    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)

    def forward(self, input_ids, attention_mask, token_type_ids):
        # transformers' get_extended_attention_mask: (1 - mask) * dtype min, broadcast over heads and queries
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        return self.encoder(self.embeddings(input_ids, token_type_ids), ext)


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg.get("model_type") == "bert", "torch peer handles model_type bert"
    assert cfg.get("hidden_act", "gelu") == "gelu"
    t0 = time.perf_counter()
    sd = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    sd = {k[len("bert."):]: v for k, v in sd.items() if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    m = Bert(cfg)
    m.load_state_dict(sd, strict=True)  # raises on any missing or unexpected tensor
    m.eval()
    return m, cfg, time.perf_counter() - t0


def flops(cfg, n, seq):
    t, h, f = n * seq, cfg["hidden_size"], cfg["intermediate_size"]
    return cfg["num_hidden_layers"] * (2.0 * t * (4 * h * h + 2 * h * f) + n * 4.0 * seq * seq * h)


def blas_info():
    """Which BLAS this process runs GEMMs on (Debian's torch links the system libblas)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if any(s in p for s in ("blas", "dnnl", "mkl", "gomp")):
                libs.add(p)
    core = None
    for p in libs:
        if "openblas" in p:
            try:
                lib = ctypes.CDLL(p)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                core = lib.openblas_get_corename().decode()
                core += ", %d threads" % lib.openblas_get_num_threads()
            except (OSError, AttributeError):
                pass
    return {"libs": sorted(libs), "openblas_core": core}


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--check")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--export")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    rss0 = rss_kb()
    model, cfg, load_s = load_model(a.model)
    res = {"runtime": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "load_s": load_s, "rss_after_load_kb": rss_kb(), "rss_before_kb": rss0, "seq": a.seq}

    if a.export:
        ids = torch.randint(104, cfg["vocab_size"], (2, 16), dtype=torch.long)
        args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dyn = {n: {0: "batch", 1: "seq"} for n in names}
        dyn["last_hidden_state"] = {0: "batch", 1: "seq"}
        tmp = a.export + ".tmp"
        torch.onnx.export(model, args, tmp, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=dyn, opset_version=14, do_constant_folding=True)
        os.replace(tmp, a.export)
        print("exported %s (%.1f MB)" % (a.export, os.path.getsize(a.export) / 1e6))

    if a.check:
        with open(os.path.join(a.check, "meta.json")) as f:
            meta = json.load(f)
        n, L, H = meta["batch"], meta["seq"], meta["hidden"]
        ids = torch.from_numpy(np.fromfile(os.path.join(a.check, "ids.bin"), dtype=np.int32).astype(np.int64)).view(n, L)
        ref = np.fromfile(os.path.join(a.check, "hidden.bin"), dtype=np.float32).reshape(n, L, H)
        out = model(ids, torch.ones_like(ids), torch.zeros_like(ids)).numpy()
        diff = float(np.max(np.abs(out - ref)))
        res["check_max_abs_diff"] = diff
        print("torch vs peftd: max |diff| of last hidden states = %.2e over %d x %d x %d" % (diff, n, L, H))

    if a.bench:
        res["blas"] = blas_info()
        res["results"] = []
        g = torch.Generator().manual_seed(1)
        print("PyTorch %s eager, %d threads, seq %d; BLAS: %s" % (torch.__version__, torch.get_num_threads(), a.seq,
                                                                   res["blas"]["openblas_core"]))
        print("%6s %5s %12s %12s %12s" % ("batch", "N", "ms", "seq/s", "GFLOP/s"))
        for b in [int(x) for x in a.batches.split(",")]:
            ids = torch.randint(104, cfg["vocab_size"], (b, a.seq), dtype=torch.long, generator=g)
            mask, types = torch.ones_like(ids), torch.zeros_like(ids)
            with torch.inference_mode():
                for _ in range(a.warmup):
                    model(ids, mask, types)
                t0 = time.perf_counter()
                model(ids, mask, types)
                one = time.perf_counter() - t0
                runs = max(a.runs, min(200, int(1.5 / max(one, 1e-4))))
                s = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    model(ids, mask, types)
                    s.append(time.perf_counter() - t0)
            s.sort()
            med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
            fl = flops(cfg, b, a.seq)
            res["results"].append({"batch": b, "runs": runs, "median_s": med, "min_s": s[0], "max_s": s[-1],
                                   "seq_per_s": b / med, "gflops": fl / med * 1e-9, "samples_s": s})
            print("%6d %5d %12.2f %12.2f %12.1f" % (b, runs, med * 1e3, b / med, fl / med * 1e-9))
            sys.stdout.flush()

    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
