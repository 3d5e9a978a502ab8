"""Golden values for tests/test_genmodel.c, computed independently of the C code.

1. Re-implements the generator's PRNG (splitmix64 seeded from FNV-1a of the tensor name,
   Box-Muller, std 0.02) in plain Python and checks it against model.safetensors, so the
   C generator is checked against a second implementation, not against itself.
2. Runs the PyTorch reference (refmodel.py, float64) on the checkpoint for one sentence
   (classification logits) and one question/context pair (QA start/end logits).

3. Prints the FNV-1a 64 hash of every file (the exact bytes the test pins).

Usage: python3 tests/reference/genmodel_golden.py DIR   (DIR from `peftd gen-model --out DIR`)
Prints the C initialisers pasted into tests/test_genmodel.c.
"""
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import refmodel  # noqa: E402
from safetensors_io import load_file  # noqa: E402

M64 = (1 << 64) - 1


def fnv1a(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & M64
    return h


def normals(name, count):
    s = fnv1a(name) ^ 0x7065667464763031
    out = []
    while len(out) < count:
        us = []
        for _ in range(2):
            s = (s + 0x9e3779b97f4a7c15) & M64
            z = s
            z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
            z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
            z ^= z >> 31
            us.append(((z >> 11) + 1) * (1.0 / 9007199254740992.0))
        rad = math.sqrt(-2.0 * math.log(us[0]))
        th = 6.283185307179586 * us[1]
        out += [rad * math.cos(th), rad * math.sin(th)]
    return [struct.unpack("<f", struct.pack("<f", 0.02 * x))[0] for x in out[:count]]


def main(d):
    tensors, _ = load_file(os.path.join(d, "model.safetensors"))
    checks = {"bert.embeddings.word_embeddings.weight": 64 * 8,  # rows 0..7 (row 0 is zeroed)
              "classifier.weight": 128, "qa_outputs.weight": 128,
              "bert.encoder.layer.1.output.dense.weight": 256}
    for name, n in checks.items():
        want = normals(name, n)
        got = tensors[name].reshape(-1)[:n].tolist()
        if name.endswith("word_embeddings.weight"):
            want[:64] = [0.0] * 64
        assert got == want, name
    print("/* PRNG re-implementation agrees on %d tensors */" % len(checks))
    print("static const float GOLD_WORD_EMB_ROW5[4] = {%s};" %
          ", ".join("%.9gf" % v for v in tensors["bert.embeddings.word_embeddings.weight"][5, :4].tolist()))

    vocab = json.load(open(os.path.join(d, "tokenizer.json")))["model"]["vocab"]
    ids = lambda ws: [vocab[w] for w in ws]  # noqa: E731
    sent = ["[CLS]"] + "the movie was great !".split() + ["[SEP]"]
    q = "who directed the film ?".split()
    c = "the film was directed by a friend".split()
    pair = ["[CLS]"] + q + ["[SEP]"] + c + ["[SEP]"]
    types = [0] * (len(q) + 2) + [1] * (len(c) + 1)

    model, cfg = refmodel.load_model(d)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids(sent)]))[0].tolist()
    cfg.architecture = "BertForQuestionAnswering"
    qa = refmodel.build(cfg).to(torch.float64)
    sd = refmodel.canonical_names(refmodel.read_checkpoint_tensors(d), qa)
    qa.load_state_dict({k: v.to(torch.float64) for k, v in sd.items()}, strict=True)
    qa.eval()
    with torch.no_grad():
        s, e = qa(input_ids=torch.tensor([ids(pair)]), token_type_ids=torch.tensor([types]))
    fmt = lambda xs: ", ".join("%.9g" % v for v in xs)  # noqa: E731
    print("static const int32_t GOLD_CLS_IDS[%d] = {%s};" % (len(sent), ", ".join(map(str, ids(sent)))))
    print("static const double GOLD_CLS_LOGITS[2] = {%s};" % fmt(logits))
    print("static const int32_t GOLD_QA_IDS[%d] = {%s};" % (len(pair), ", ".join(map(str, ids(pair)))))
    print("static const int32_t GOLD_QA_TYPES[%d] = {%s};" % (len(pair), ", ".join(map(str, types))))
    print("static const double GOLD_QA_START[%d] = {%s};" % (len(pair), fmt(s[0].tolist())))
    print("static const double GOLD_QA_END[%d] = {%s};" % (len(pair), fmt(e[0].tolist())))
    hashes = []
    for f in ["config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
              "special_tokens_map.json", "model.safetensors"]:
        h = 0xcbf29ce484222325
        for b in open(os.path.join(d, f), "rb").read():
            h = ((h ^ b) * 0x100000001b3) & M64
        hashes.append("0x%016xull" % h)
    print("static const uint64_t GOLD_FNV[N_FILES] = {%s};" % ", ".join(hashes))


if __name__ == "__main__":
    main(sys.argv[1])
