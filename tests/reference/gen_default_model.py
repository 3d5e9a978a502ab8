#!/usr/bin/python3
"""Golden outputs of the committed default model (models/peftd-mini-en) from the independent
PyTorch reference (refmodel.py, tinytok.py), for tests/e2e/test_default_model.py.

    /usr/bin/python3 tests/reference/gen_default_model.py [MODEL_DIR]

Writes tests/reference/golden_models/<name>.jsonl: one line per case, gen_engine.py's record
format plus "kind" ("cls": the model's sentiment head; "qa": its qa_outputs head, contexts of
one window). The model is loaded twice from the same checkpoint, as BertForSequenceClassification
(pooler + classifier) and as BertForQuestionAnswering (qa_outputs), in float64; every case is
rerun in float32 and must stay within 2.5e-5 of the float64 golden (gen_engine.check_f32's rule),
so the e2e test's 1e-4 tolerance holds for peftd's float32 engine. Rerun it whenever the
committed model changes.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import gen_engine as ge  # noqa: E402
import refmodel  # noqa: E402
import tinytok  # noqa: E402

CLS_CASES = [
    {"input": "a great movie"},
    {"input": "a dull, lifeless and boring film"},
    {"input": "the acting is superb and the story is moving"},
    {"input": "I hated every minute of it."},
    {"input": "an unremarkable film, neither good nor bad"},
    {"input": {"text": "the plot", "text_pair": "was thin and predictable"}},
    {"input": "A Wonderful, HEART-WARMING Film!!", "max_length": 8},
]
# Four questions of the QA held-out slice (/work/model-data/qa/heldout.jsonl lines 12, 17, 1, 2:
# scripts/model/qa_data.py's WordNet questions, never trained on). The committed QA head is weak
# (held-out exact match 0.13, see its card): it answers the first and the last exactly and the
# middle two wrongly; the e2e test checks all four against the reference and the exact ones' answers.
QA_CASES = [
    {"question": "define riptide.",
     "context": "fell: the act of felling something (as a tree). billow: a large sea wave. riptide: a strong surface current flowing outwards from a shore.",
     "gold": "a strong surface current flowing outwards from a shore"},
    {"question": "What is meant by trichloride?",
     "context": "spark transmitter: an early radio transmitter using a discharge across a spark gap as the source of its power. trichloride: any compound containing three chlorine atoms in each molecule. brown bullhead: freshwater catfish of eastern United States.",
     "gold": "any compound containing three chlorine atoms in each molecule"},
    {"question": "what's a tibial vein?",
     "context": "end user: the ultimate user for which something is intended. tibial vein: veins of the lower leg; empty into the popliteal vein. trade acceptance: a bill of exchange for a specific purchase; drawn on the buyer by the seller and bearing the buyer's acceptance.",
     "gold": "veins of the lower leg; empty into the popliteal vein"},
    {"question": "What does sulfadiazine mean?",
     "context": "groenendael: black-coated sheepdog with a heavily plumed tail. sulfadiazine: a sulfa drug used in treating meningitis and pneumonia and other infections. Nostradamus: French astrologer who wrote cryptic predictions whose interpretations are still being debated (1503-1566). mucilage: a gelatinous substance secreted by plants.",
     "gold": "a sulfa drug used in treating meningitis and pneumonia and other infections"},
]
MAX_LENGTH, STRIDE, MAX_ANSWER = 384, 128, 30


def tokenizer(model_dir):
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    return tinytok.WordPieceTokenizer(vocab, lowercase=tc.get("do_lower_case", True),
                                      model_max_length=tc.get("model_max_length", 512))


def load(model_dir, arch):
    cfg = refmodel.Config.load(model_dir)
    cfg.architecture = arch
    model = refmodel.build(cfg).to(torch.float64)
    sd = refmodel.canonical_names(refmodel.read_checkpoint_tensors(model_dir), model)
    model.load_state_dict({k: v.to(torch.float64) for k, v in sd.items()}, strict=True)
    return model.eval()


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "peftd-mini-en")
    name = os.path.basename(os.path.normpath(model_dir))
    torch.set_num_threads(1)
    tok = tokenizer(model_dir)
    cls_m = load(model_dir, "BertForSequenceClassification")
    qa_m = load(model_dir, "BertForQuestionAnswering")
    cls_id = tok.vocab["[CLS]"]
    lines, dev = [], 0.0
    for case in CLS_CASES:
        rec = ge.cls_record(cls_m, tok, case)
        again = ge.cls_record(ge.float32_copy(cls_m), tok, case)
        dev = max(dev, max(abs(a - b) for a, b in zip(rec["logits"], again["logits"])))
        lines.append(dict(rec, kind="cls"))
    for case in QA_CASES:
        c = dict(case, max_length=MAX_LENGTH, stride=STRIDE, max_answer_length=MAX_ANSWER)
        rec = ge.qa_record(qa_m, tok, c, cls_id)
        assert len(rec["ids"]) == 1, "QA golden contexts must fit one window"
        again = ge.qa_record(ge.float32_copy(qa_m), tok, c, cls_id)
        for k in ("start_logits", "end_logits"):
            dev = max(dev, max(abs(a - b) for a, b in zip(rec[k][0], again[k][0])))
        lines.append(dict(rec, kind="qa", gold=case["gold"]))
    assert dev < 2.5e-5, ("float32 PyTorch leaves the float64 golden by", dev)
    out_dir = os.path.join(HERE, "golden_models")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + ".jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in lines:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n")
    print("%s: %d cases, float32 within %.2g of float64" % (path, len(lines), dev))
    for r in lines:
        if r["kind"] == "cls":
            print("  %-50s %s" % (json.dumps(r["input"])[:50], ["%.4f" % x for x in r["probs"]]))
        else:
            print("  %-50s -> %r (gold %r)" % (r["input"]["question"], r.get("answer"), r["gold"]))


if __name__ == "__main__":
    main()
