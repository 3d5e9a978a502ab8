#!/usr/bin/python3
"""Self-checks for the reference generator. Run after gen_engine.py:

    /usr/bin/python3 tests/reference/selfcheck.py

Prints one line per check and a final "N passed, N failed" line; exits 1 on failure.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import gen_engine as G  # noqa: E402
import refmodel  # noqa: E402
import tinytok  # noqa: E402
from safetensors_io import load_file  # noqa: E402

torch.set_num_threads(1)
PASSED, FAILED = [0], [0]


def check(name, cond, detail=""):
    if cond:
        PASSED[0] += 1
        print("ok   " + name)
    else:
        FAILED[0] += 1
        print("FAIL " + name + (" -- " + str(detail) if detail else ""))


def md(name):
    return os.path.join(G.MODELS_DIR, name)


def raw_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        size = os.path.getsize(path)
    return n, h, size


def check_safetensors():
    for name, dt, dts in (("bert_cls_f32", torch.float32, "F32"),
                          ("roberta_qa_f16", torch.float16, "F16"),
                          ("distilbert_qa_bf16", torch.bfloat16, "BF16")):
        path = os.path.join(md(name), "model.safetensors")
        n, h, size = raw_header(path)
        meta = h.pop("__metadata__", None)
        spans = sorted(v["data_offsets"] for v in h.values())
        contiguous = spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        check("%s: header length %% 8 == 0, metadata format=pt" % name,
              n % 8 == 0 and meta == {"format": "pt"})
        check("%s: data offsets contiguous and end at file end" % name,
              contiguous and 8 + n + spans[-1][1] == size)
        check("%s: every tensor stored as %s" % (name, dts),
              all(v["dtype"] == dts for k, v in h.items()))
        # Regenerate the weights the generator drew and compare with what we read back.
        arch, head, _ = name.split("_")
        cfg = json.load(open(os.path.join(md(name), "config.json")))
        model = refmodel.build(refmodel.Config(cfg))
        want = G.init_weights(model, {"bert": 100, "distilbert": 200, "roberta": 300}[arch]
                              + (1 if head == "cls" else 2))
        got, _ = load_file(path)
        same = all(torch.equal(got[k], want[k].to(dt)) for k in want)
        check("%s: tensors read back == generated weights cast to %s" % (name, dts), same)
        extra = set(got) - set(want)
        if name == "bert_cls_f32":
            check("bert_cls_f32: carries cls.* pretraining tensors (to be ignored)",
                  extra and all(k.startswith("cls.") for k in extra), sorted(extra))
        else:
            check("%s: no extra tensors" % name, not extra, sorted(extra))


def check_batch_invariance():
    for arch, tok in (("bert", G_TOKS["bert"]), ("distilbert", G_TOKS["distilbert"]),
                      ("roberta", G_TOKS["roberta"])):
        for head in ("cls", "qa"):
            model, cfg = refmodel.load_model(md("%s_%s_f32" % (arch, head)))
            encs = [tok.encode(t, p) for t, p in (
                ("hello world", None),
                ("The weather is nice today.", "It is sunny and warm outside, isn't it?"),
                ("I didn't like it... the plot was boring & predictable.", None))]
            T = max(len(e.ids) for e in encs)
            pad = cfg.pad_token_id
            ids = torch.tensor([e.ids + [pad] * (T - len(e.ids)) for e in encs])
            tt = torch.tensor([e.type_ids + [0] * (T - len(e.ids)) for e in encs])
            mask = torch.tensor([[1] * len(e.ids) + [0] * (T - len(e.ids)) for e in encs])
            with torch.no_grad():
                batched = model(input_ids=ids, attention_mask=mask, token_type_ids=tt)
                worst = 0.0
                for i, e in enumerate(encs):
                    one = model(input_ids=torch.tensor([e.ids]),
                                token_type_ids=torch.tensor([e.type_ids]))
                    n = len(e.ids)
                    if head == "cls":
                        worst = max(worst, float((batched[i] - one[0]).abs().max()))
                    else:
                        for b, o in zip(batched, one):
                            worst = max(worst, float((b[i, :n] - o[0]).abs().max()))
            check("%s_%s: padded batch == one by one (max diff %.1e)" % (arch, head, worst),
                  worst < 1e-10)


def check_inputs_embeds_and_prefix():
    for name in ("bert_cls_f32", "roberta_cls_f32", "distilbert_cls_f32"):
        model, cfg = refmodel.load_model(md(name))
        base = getattr(model, {"bert": "bert", "roberta": "roberta",
                               "distilbert": "distilbert"}[cfg.model_type])
        ids = torch.tensor([[2, 50, 60, 70, 3]]) if cfg.model_type != "roberta" else \
            torch.tensor([[0, 50, 60, 70, 2]])
        with torch.no_grad():
            a = model(input_ids=ids)
            b = model(inputs_embeds=base.embeddings.word_embeddings(ids))
            check("%s: inputs_embeds path == input_ids path" % name,
                  float((a - b).abs().max()) < 1e-12)
            L, H, D = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
            g = torch.Generator().manual_seed(7)
            pkv = [(torch.randn(1, H, 3, D, generator=g, dtype=torch.float64),
                    torch.randn(1, H, 3, D, generator=g, dtype=torch.float64)) for _ in range(L)]
            c = model(input_ids=ids, past_key_values=pkv,
                      attention_mask=torch.ones(1, 3 + ids.shape[1], dtype=torch.long))
            check("%s: prefix past_key_values accepted, changes the output" % name,
                  c.shape == a.shape and float((c - a).abs().max()) > 1e-6)


def check_golden_reproduces():
    for name, tok, kind in (("bert_cls_bf16", G_TOKS["bert"], "cls"),
                            ("roberta_qa_f16", G_TOKS["roberta"], "qa"),
                            ("distilbert_cls_f32", G_TOKS["distilbert"], "cls")):
        path = os.path.join(G.GOLDEN_DIR, name + ".jsonl")
        before = open(path, "rb").read()
        G.write_golden(name, tok, kind)
        check("%s: golden recomputed from the files on disk is identical" % name,
              before == open(path, "rb").read())


def check_variants_equal():
    ref = [json.loads(l)["logits"] for l in open(os.path.join(G.GOLDEN_DIR, "bert_cls_f32.jsonl"))]
    for v in ("bert_cls_legacy", "bert_cls_sharded", "bert_cls_vocabtxt"):
        got = [json.loads(l)["logits"] for l in open(os.path.join(G.GOLDEN_DIR, v + ".jsonl"))]
        check("%s: same logits as bert_cls_f32" % v, got == ref)
    # gelu_new vs erf gelu on the same weights must be told apart at 1e-4.
    model, cfg = refmodel.load_model(md("bert_cls_gelunew"))
    d = 0.0
    for r in (json.loads(l) for l in open(os.path.join(G.GOLDEN_DIR, "bert_cls_gelunew.jsonl"))):
        for layer in model.bert.encoder.layer:
            layer.intermediate.act = refmodel.get_activation("gelu")
        with torch.no_grad():
            lg = model(input_ids=torch.tensor(r["ids"]), token_type_ids=torch.tensor(r["type_ids"]))[0]
        d = max(d, max(abs(float(a) - b) for a, b in zip(lg, r["logits"])))
    check("bert_cls_gelunew: erf gelu would move logits by %.1e (> 1e-3)" % d, d > 1e-3)
    try:
        refmodel.load_model(md("bert_cls_pickle"))
        check("bert_cls_pickle: refused by the loader", False)
    except FileNotFoundError:
        check("bert_cls_pickle: refused by the loader", True)
    idx = json.load(open(os.path.join(md("bert_cls_sharded"), "model.safetensors.index.json")))
    total = 0
    for shard in set(idx["weight_map"].values()):
        n, h, size = raw_header(os.path.join(md("bert_cls_sharded"), shard))
        total += size - 8 - n
    check("bert_cls_sharded: metadata.total_size == sum of tensor bytes",
          idx["metadata"]["total_size"] == total)


def check_truncation_rule():
    # Expectations restated from the table in tokenizers' truncation.rs tests
    # (max_length 7; sequences of length 0, 2, 4, 8).
    table = {(0, 0): (0, 0), (0, 2): (0, 2), (0, 4): (0, 4), (0, 8): (0, 7),
             (2, 0): (2, 0), (2, 2): (2, 2), (2, 4): (2, 4), (2, 8): (2, 5),
             (4, 0): (4, 0), (4, 2): (4, 2), (4, 4): (3, 4), (4, 8): (3, 4),
             (8, 0): (7, 0), (8, 2): (5, 2), (8, 4): (4, 3), (8, 8): (3, 4)}
    bad = {k: tinytok.truncate_pair(k[0], k[1], 7) for k in table
           if tinytok.truncate_pair(k[0], k[1], 7) != table[k]}
    check("truncate_pair matches the truncation.rs longest_first table", not bad, bad)
    check("overflow windows: 10 tokens, max 4, stride 1 -> (0,4),(3,7),(6,10)",
          tinytok.windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)])


def check_wordpiece_against_fixture():
    fx = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "fixtures",
                                       "bert-base-uncased-tokenizer"))
    if not os.path.isdir(fx):
        print("skip WordPiece vs bert-base-uncased fixture (no ../shared)")
        return
    vocab = [l.rstrip("\n") for l in open(os.path.join(fx, "vocab.txt"), encoding="utf-8")]
    tok = tinytok.WordPieceTokenizer(vocab, model_max_length=512)
    bad, n = 0, 0
    for line in open(os.path.join(fx, "reference_encodings.jsonl"), encoding="utf-8"):
        r = json.loads(line)
        n += 1
        if tok.encode(r["text"], r.get("text_pair"), max_length=10 ** 6).ids != r["ids"]:
            bad += 1
    check("WordPiece with the real bert-base-uncased vocab reproduces %d fixture encodings" % n,
          bad == 0, "%d differ" % bad)


def check_offsets():
    # Every non-special token's offsets must slice its own source text.
    for arch, tok in G_TOKS.items():
        for c in G.QA_CASES:
            for enc in tok.encode_qa(c["question"], c["context"], c["max_length"], c["stride"]):
                ok = all(0 <= s <= e <= len(c["context"] if q == 1 else c["question"])
                         for (s, e), q in zip(enc.offsets, enc.sequence_ids) if q is not None)
                if not ok:
                    break
        check("%s: QA token offsets lie inside question/context" % arch, ok)


if __name__ == "__main__":
    bert = tinytok.WordPieceTokenizer(tinytok.build_bert_vocab(), model_max_length=G.MAX_POS)
    G_TOKS = {"bert": bert, "distilbert": bert,
              "roberta": tinytok.ByteLevelBPETokenizer(tinytok.train_bpe(G.BPE_CORPUS, 300),
                                                       model_max_length=G.MAX_POS)}
    check_safetensors()
    check_batch_invariance()
    check_inputs_embeds_and_prefix()
    check_golden_reproduces()
    check_variants_equal()
    check_truncation_rule()
    check_wordpiece_against_fixture()
    check_offsets()
    print("%d passed, %d failed" % (PASSED[0], FAILED[0]))
    sys.exit(1 if FAILED[0] else 0)
