#!/usr/bin/python3
"""Generate the tiny reference checkpoints and golden outputs for peftd.

    /usr/bin/python3 tests/reference/gen_engine.py

Writes tests/reference/models/<name>/ (config.json, model.safetensors or a
sharded/pickled variant, tokenizer files) and tests/reference/golden/<name>.jsonl.
Deterministic: fixed seeds, one CPU thread, sorted keys, floats rounded to 9
significant digits; running it twice gives byte-identical files.
See README.md beside this file for the formats and the semantic rules.
"""

import copy
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import refmodel  # noqa: E402
import tinytok  # noqa: E402
from safetensors_io import save_file, tensor_nbytes  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

MODELS_DIR = os.path.join(HERE, "models")
GOLDEN_DIR = os.path.join(HERE, "golden")
TRANSFORMERS_VERSION = "4.44.2"
LABELS = ["negative", "neutral", "positive"]
MAX_POS = 64            # tokens; RoBERTa gets 64 + 2 position rows
HIDDEN, HEADS, INTER, LAYERS = 32, 4, 64, 2

# ============================================================================
# Text: BPE training corpus and golden inputs
# ============================================================================

BPE_CORPUS = """
The movie was absolutely wonderful, and the actors were great!
I didn't like it... the plot was boring and predictable.
The weather is nice today. It is sunny and warm outside, isn't it?
Is this review positive or negative? The story is slow at first, but the ending makes every minute worth watching.
The Eiffel Tower is a famous iron tower in Paris, France. It was built in 1889.
The book was written by Mary Shelley when she was only eighteen years old.
On a clear day the sky looks blue because air scatters blue light more than red light.
Bees collect nectar from flowers and turn it into honey inside the hive.
The queen bee lays the eggs, and the worker bees build wax cells to store the honey.
In the spring of 1927 the river flooded the village, and the farmers lost their crops.
The people of the town built a new bridge over the river after the flood.
She said that the film was the best film she had seen this year.
We watched the movie together in the evening and talked about the story for hours.
They're going to the park tomorrow morning if the weather is good.
He'll be there at ten o'clock, and we've already bought the tickets.
Children were playing in the garden while their parents were reading books.
There are many people who think that the city is too loud at night.
What do you want to do this weekend? Let's go to the lake and swim.
Where is the station? The station is near the old church in the center of the town.
Who wrote this song? A young singer from London wrote it in 2019.
When did the war end? The war ended in 1945 after six long years.
The actors were good, but the music was even better than the acting.
This is one of the worst movies I have ever seen, and I have seen a lot of movies.
The food at the restaurant was fresh, the service was fast, and the price was fair.
A little rain in the morning, then clear skies and warm sunshine in the afternoon.
The students learned about plants, animals and the water cycle in their science class.
Every summer the family travels to the sea and stays in a small house near the beach.
The cat sat on the mat and looked out of the window at the birds in the tree.
The company reported that its sales had grown by ten percent in the last quarter.
Scientists believe that the first people arrived on the island thousands of years ago.
The river runs from the mountains in the north to the sea in the south.
After the flood the farmers planted their fields again and the village slowly recovered.
Honey bees communicate with each other by dancing, which tells the others where the flowers are.
A hive can hold tens of thousands of bees in the middle of the summer.
It was a dark and stormy night; the rain fell in torrents, except at occasional intervals.
The train was late again, so we waited on the platform and drank hot coffee.
Reading is to the mind what exercise is to the body.
The quick brown fox jumps over the lazy dog near the river bank.
Please answer the question using only the words that appear in the text.
The number of visitors to the museum doubled after the new exhibition opened.
Good morning! How are you today? I'm fine, thank you, and how about you?
The teacher asked the students to write a short story about their favourite animal.
Many visitors come to the festival to hear the music and to taste the bread and fruit.
The market was full of people buying flowers, vegetables and fresh fish.
My brother works in a hospital, and my sister studies history at the university.
The old bridge was closed for repairs, so the cars had to drive around the town.
The singer walked onto the stage, smiled at the crowd and began to sing.
""".strip().splitlines()

LONG_TEXT = (
    "The festival began early in the morning, when the first visitors walked through the "
    "old gates of the town and found the market already full of music, bread, fruit and "
    "flowers. By noon the streets were crowded with families, and the children ran from one "
    "game to the next while their parents talked with friends they had not seen for many "
    "years. In the evening a small band played in the square, people danced until late at "
    "night, and everyone agreed that it had been the best day of the whole summer."
)

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3   # 135 chars > 100

CLS_CASES = [
    {"input": "hello world"},
    {"input": "The movie was absolutely wonderful, and the actors were great!"},
    {"input": "I didn't like it... the plot was boring & predictable."},
    {"input": "Café crème brûlée: a naïve résumé from ZÜRICH."},
    {"input": "Xylophones zigzag quixotically \U0001F642 日本 ☃ ok"},
    {"input": "  multiple   spaces\tand\nnew lines\u200b here  "},
    {"input": "that word is " + LONG_WORD + " ok"},
    {"input": "mask [MASK] and <mask> here"},
    {"input": {"text": "The weather is nice today.",
               "text_pair": "It is sunny and warm outside, isn't it?"}},
    {"input": {"text": "Is this review positive or negative?",
               "text_pair": "The story is slow at first, but the ending makes every minute "
                            "worth watching again and again."},
     "max_length": 16},
    {"input": {"text": "Is it good?",
               "text_pair": "The story is slow at first, but the ending makes every minute "
                            "worth watching again and again."},
     "max_length": 16},
    {"input": {"text": "The story is slow at first, but the ending makes every minute "
                       "worth watching again and again.",
               "text_pair": "Is it good?"},
     "max_length": 16},
    {"input": {"text": "the cat sat on the mat and looked out of the window at the birds",
               "text_pair": "the cat sat on the mat and looked out of the window at the birds"},
     "max_length": 16},
    {"input": "Honey bees communicate with each other by dancing in the hive.", "max_length": 8},
    {"input": LONG_TEXT},
]

QA_SHORT = dict(max_length=64, stride=16, max_answer_length=15)
QA_LONG = dict(max_length=32, stride=8)
QA_CASES = [
    dict(question="Where is the Eiffel Tower?",
         context="The Eiffel Tower is a famous iron tower in Paris, France. It was built in 1889.",
         **QA_SHORT),
    dict(question="Who wrote the book?",
         context="The book was written by Mary Shelley when she was only eighteen years old.",
         **QA_SHORT),
    dict(question="Why is the sky blue?",
         context="On a clear day the sky looks blue because air scatters blue light more than "
                 "red light.",
         **QA_SHORT),
    dict(question="When did the river flood?",
         context="In the spring of 1927 the river flooded the village, and the farmers lost "
                 "their crops. The people of the town built a new bridge over the river after "
                 "the flood. After the flood the farmers planted their fields again and the "
                 "village slowly recovered. Today the river runs quietly from the mountains in "
                 "the north to the sea in the south.",
         max_answer_length=15, **QA_LONG),
    dict(question="What do bees make?",
         context="Bees collect nectar from flowers and turn it into honey inside the hive. The "
                 "queen bee lays the eggs, and the worker bees build wax cells to store the "
                 "honey. Honey bees communicate with each other by dancing, which tells the "
                 "others where the flowers are. A hive can hold tens of thousands of bees in "
                 "the middle of the summer.",
         max_answer_length=4, **QA_LONG),
    dict(question="Who was at the festival?",
         context=LONG_TEXT, max_answer_length=8, **QA_LONG),
]

# ============================================================================
# Helpers
# ============================================================================


def rnd(x):
    return float("%.9g" % float(x))


def write_json(path, obj, sort_keys=True):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys, ensure_ascii=False)
        f.write("\n")


def make_config(arch, head, vocab_size, dtype_name, layers=LAYERS, act="gelu"):
    archname = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta"}[arch]
    archname += "ForSequenceClassification" if head == "cls" else "ForQuestionAnswering"
    c = {"architectures": [archname], "model_type": arch, "torch_dtype": dtype_name,
         "transformers_version": TRANSFORMERS_VERSION, "vocab_size": vocab_size,
         "initializer_range": 0.02}
    if head == "cls":
        c["id2label"] = {str(i): l for i, l in enumerate(LABELS)}
        c["label2id"] = {l: i for i, l in enumerate(LABELS)}
    if arch == "distilbert":
        c.update({"dim": HIDDEN, "n_layers": layers, "n_heads": HEADS, "hidden_dim": INTER,
                  "activation": act, "max_position_embeddings": MAX_POS,
                  "sinusoidal_pos_embds": False, "dropout": 0.1, "attention_dropout": 0.1,
                  "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "tie_weights_": True,
                  "pad_token_id": 0})
    else:
        c.update({"hidden_size": HIDDEN, "num_hidden_layers": layers,
                  "num_attention_heads": HEADS, "intermediate_size": INTER, "hidden_act": act,
                  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                  "position_embedding_type": "absolute", "use_cache": True,
                  "classifier_dropout": None})
        if arch == "bert":
            c.update({"max_position_embeddings": MAX_POS, "type_vocab_size": 2,
                      "layer_norm_eps": 1e-12, "pad_token_id": 0})
        else:
            c.update({"max_position_embeddings": MAX_POS + 2, "type_vocab_size": 1,
                      "layer_norm_eps": 1e-05, "pad_token_id": 1, "bos_token_id": 0,
                      "eos_token_id": 2})
    return c


def init_weights(model, seed, std_override=None):
    """Random normal weights, large enough that logits differ between inputs.
    std_override: {substring of the tensor name: std} for special variants."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if "LayerNorm" in name or "layer_norm" in name:
            t = 1.0 + 0.1 * z if name.endswith("weight") else 0.1 * z
        elif name.endswith("bias"):
            t = 0.1 * z
        elif "embeddings" in name:
            t = 0.5 * z
        else:
            t = 0.3 * z
        for key, std in (std_override or {}).items():
            if key in name:
                t = std * z
        sd[name] = t
    return sd


DTYPES = {"f32": (torch.float32, "float32"), "f16": (torch.float16, "float16"),
          "bf16": (torch.bfloat16, "bfloat16")}


def fresh_dir(name):
    d = os.path.join(MODELS_DIR, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def pretraining_tensors(vocab_size, seed, dtype):
    """BertForPreTraining's cls.* tensors (decoder.weight is tied and not stored)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(s, generator=g)
    return {
        "cls.predictions.bias": (0.1 * r(vocab_size)).to(dtype),
        "cls.predictions.transform.dense.weight": (0.3 * r(HIDDEN, HIDDEN)).to(dtype),
        "cls.predictions.transform.dense.bias": (0.1 * r(HIDDEN)).to(dtype),
        "cls.predictions.transform.LayerNorm.weight": (1 + 0.1 * r(HIDDEN)).to(dtype),
        "cls.predictions.transform.LayerNorm.bias": (0.1 * r(HIDDEN)).to(dtype),
        "cls.seq_relationship.weight": (0.3 * r(2, HIDDEN)).to(dtype),
        "cls.seq_relationship.bias": (0.1 * r(2)).to(dtype),
    }


# ============================================================================
# Golden computation
# ============================================================================


def run(model, enc):
    ids = torch.tensor([enc.ids], dtype=torch.long)
    tt = torch.tensor([enc.type_ids], dtype=torch.long)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=tt)


def cls_record(model, tok, case):
    inp = case["input"]
    text, pair = (inp, None) if isinstance(inp, str) else (inp["text"], inp["text_pair"])
    enc = tok.encode(text, pair, max_length=case.get("max_length"))
    logits = run(model, enc)[0].double()
    probs = torch.softmax(logits, dim=-1)
    rec = {"input": inp}
    if "max_length" in case:
        rec["max_length"] = case["max_length"]
    rec.update({"ids": [enc.ids], "type_ids": [enc.type_ids], "tokens": [enc.tokens],
                "logits": [rnd(x) for x in logits], "probs": [rnd(x) for x in probs]})
    return rec


def qa_window_best(enc, start, end, cls_id, max_answer_len):
    """One window of QuestionAnsweringPipeline.postprocess (top_k=1,
    handle_impossible_answer=False). Returns (score, s, e) or None."""
    n = len(enc.ids)
    # p_mask: 1 for tokens that cannot be in the answer (not in sequence 1),
    # except tokens whose id is cls_token_id, which stay unmasked.
    allowed = [enc.sequence_ids[i] == 1 or enc.ids[i] == cls_id for i in range(n)]
    neg = torch.tensor(-10000.0, dtype=torch.float64)
    am = torch.tensor(allowed)
    ps = torch.softmax(torch.where(am, start, neg), dim=-1)
    pe = torch.softmax(torch.where(am, end, neg), dim=-1)
    ps[0] = 0.0     # "Mask CLS": index 0 after the softmax
    pe[0] = 0.0
    outer = ps[:, None] * pe[None, :]
    cand = torch.tril(torch.triu(outer), max_answer_len - 1)
    flat = int(torch.argmax(cand.reshape(-1)))   # first maximum in row-major order
    s, e = divmod(flat, n)
    if not (allowed[s] and allowed[e]):
        return None
    runner_up = float(torch.topk(cand.reshape(-1), 2).values[1])
    return float(cand[s, e]), s, e, runner_up


def qa_record(model, tok, case, cls_id):
    wins = tok.encode_qa(case["question"], case["context"], case["max_length"], case["stride"])
    rec = {"input": {"question": case["question"], "context": case["context"]},
           "max_length": case["max_length"], "stride": case["stride"],
           "max_answer_length": case["max_answer_length"],
           "ids": [], "type_ids": [], "start_logits": [], "end_logits": [],
           "tokens": [], "offsets": [], "sequence_ids": []}
    best = None
    scores_seen = []
    for w, enc in enumerate(wins):
        start, end = run(model, enc)
        start, end = start[0].double(), end[0].double()
        rec["ids"].append(enc.ids)
        rec["type_ids"].append(enc.type_ids)
        rec["start_logits"].append([rnd(x) for x in start])
        rec["end_logits"].append([rnd(x) for x in end])
        rec["tokens"].append(enc.tokens)
        rec["offsets"].append([list(o) for o in enc.offsets])
        rec["sequence_ids"].append([-1 if s is None else s for s in enc.sequence_ids])
        r = qa_window_best(enc, start, end, cls_id, case["max_answer_length"])
        if r is None:
            continue
        score, s, e, runner_up = r
        scores_seen += [score, runner_up]
        # align_to_words: widen to the words containing the start/end tokens,
        # looked up within this window's sequence 1.
        cs = enc.word_to_chars(enc.word_ids[s], 1)[0]
        ce = enc.word_to_chars(enc.word_ids[e], 1)[1]
        if best is None or score > best[0]:      # stable: earlier window wins ties
            best = (score, w, s, e, cs, ce)
    assert best is not None
    score, w, s, e, cs, ce = best
    # The answer must not hinge on a near-tie (the C side computes in float32).
    top = sorted(scores_seen, reverse=True)
    margin = (top[0] - top[1]) / top[0]
    assert margin > 1e-3, ("near-tie in QA answer", case["question"], top[:2])
    rec["answer"] = {"answer": case["context"][cs:ce], "start": cs, "end": ce, "score": rnd(score)}
    rec["answer_tokens"] = {"window": w, "start": s, "end": e}
    return rec


def float32_copy(model):
    """A float32 copy of a float64 model, tensors kept as plain attributes included."""
    m32 = copy.deepcopy(model).float()
    for mod in m32.modules():
        for k, v in list(vars(mod).items()):
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                setattr(mod, k, v.float())
    return m32


def check_f32(name, model, tok, kind, lines):
    """The C tests hold float32 to 1e-4 absolute on logits. That is only fair where float32
    arithmetic itself can get that close: rerun every case with the model in float32 and
    require PyTorch's own result within a quarter of the tolerance of the float64 golden."""
    m32 = float32_copy(model)
    if kind == "cls":
        again = [cls_record(m32, tok, case) for case in CLS_CASES]
        keys = ("logits",)
    else:
        cls_id = tok.vocab["[CLS]"] if "[CLS]" in tok.vocab else tok.vocab["<s>"]
        again = [qa_record(m32, tok, case, cls_id) for case in QA_CASES]
        keys = ("start_logits", "end_logits")
    def flat(rec, k):  # "logits" is a list; QA logits are one list per window
        v = rec[k] if k == "logits" else [x for w in rec[k] for x in w]
        return torch.tensor(v, dtype=torch.float64)

    dev = max(float((flat(a, k) - flat(b, k)).abs().max()) for a, b in zip(lines, again) for k in keys)
    assert dev < 2.5e-5, (name, "float32 PyTorch leaves the float64 golden by", dev)
    return dev


def write_golden(name, tok, kind):
    model, cfg = refmodel.load_model(os.path.join(MODELS_DIR, name))
    lines = []
    if kind == "cls":
        for case in CLS_CASES:
            lines.append(cls_record(model, tok, case))
    else:
        cls_id = tok.vocab["[CLS]"] if "[CLS]" in tok.vocab else tok.vocab["<s>"]
        for case in QA_CASES:
            lines.append(qa_record(model, tok, case, cls_id))
    check_f32(name, model, tok, kind, lines)
    with open(os.path.join(GOLDEN_DIR, name + ".jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r in lines:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    return lines


# ============================================================================
# Model directories
# ============================================================================


def save_model_dir(name, cfgdict, sd, dtype, tok, layout="single", extra=None,
                   tokenizer_files=True):
    d = fresh_dir(name)
    write_json(os.path.join(d, "config.json"), cfgdict)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    if extra:
        tensors.update(extra)
    if layout == "single":
        save_file(tensors, os.path.join(d, "model.safetensors"))
    elif layout == "sharded":
        names = sorted(tensors)
        first = [n for n in names if ".embeddings." in n or ".layer.0." in n]
        shards = {"model-00001-of-00002.safetensors": first,
                  "model-00002-of-00002.safetensors": [n for n in names if n not in first]}
        wm = {}
        for fn, ns in shards.items():
            save_file({n: tensors[n] for n in ns}, os.path.join(d, fn))
            wm.update({n: fn for n in ns})
        total = sum(tensor_nbytes(t) for t in tensors.values())
        write_json(os.path.join(d, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": wm})
    elif layout == "pickle":
        torch.save({k: tensors[k] for k in sorted(tensors)}, os.path.join(d, "pytorch_model.bin"))
    if tokenizer_files:
        if isinstance(tok, tinytok.WordPieceTokenizer):
            tok.save(d)
        else:
            tok.save(d)
    return d


def legacy_names(sd):
    """BertModel-style names (no "bert." prefix) and TF-era LayerNorm gamma/beta,
    plus the int64 position_ids buffer old checkpoints carried."""
    out = {}
    for k, v in sd.items():
        n = k[len("bert."):] if k.startswith("bert.") else k
        if ".LayerNorm." in "." + n:
            n = n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        out[n] = v
    return out


def main():
    os.makedirs(MODELS_DIR, exist_ok=True)
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    for d in (MODELS_DIR, GOLDEN_DIR):
        for e in sorted(os.listdir(d)):
            p = os.path.join(d, e)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    bert_tok = tinytok.WordPieceTokenizer(tinytok.build_bert_vocab(), model_max_length=MAX_POS)
    distil_tok = tinytok.WordPieceTokenizer(tinytok.build_bert_vocab(), model_max_length=MAX_POS,
                                            tokenizer_class="DistilBertTokenizer")
    merges = tinytok.train_bpe(BPE_CORPUS, 300)
    roberta_tok = tinytok.ByteLevelBPETokenizer(merges, model_max_length=MAX_POS)
    toks = {"bert": bert_tok, "distilbert": distil_tok, "roberta": roberta_tok}

    seeds = {("bert", "cls"): 101, ("bert", "qa"): 102, ("distilbert", "cls"): 201,
             ("distilbert", "qa"): 202, ("roberta", "cls"): 301, ("roberta", "qa"): 302}
    made = []
    for arch in ("bert", "distilbert", "roberta"):
        tok = toks[arch]
        for head in ("cls", "qa"):
            for dn, (dtype, dtname) in DTYPES.items():
                name = "%s_%s_%s" % (arch, head, dn)
                layers = 3 if name == "distilbert_cls_f32" else LAYERS
                cfgd = make_config(arch, head, len(tok.vocab_list), dtname, layers=layers)
                model = refmodel.build(refmodel.Config(cfgd))
                sd = init_weights(model, seeds[(arch, head)])
                extra = None
                if name == "bert_cls_f32":
                    extra = pretraining_tensors(len(tok.vocab_list), 1001, dtype)
                save_model_dir(name, cfgd, sd, dtype, tok, extra=extra)
                made.append((name, tok, head))

    # ---- variants of bert_cls (same weights as bert_cls_f32) -----------------
    cfgd = make_config("bert", "cls", len(bert_tok.vocab_list), "float32")
    sd = init_weights(refmodel.build(refmodel.Config(cfgd)), seeds[("bert", "cls")])
    leg = legacy_names(sd)
    leg["embeddings.position_ids"] = torch.arange(MAX_POS, dtype=torch.long)[None, :]
    save_model_dir("bert_cls_legacy", cfgd, leg, torch.float32, bert_tok)
    save_model_dir("bert_cls_sharded", cfgd, sd, torch.float32, bert_tok, layout="sharded")
    save_model_dir("bert_cls_vocabtxt", cfgd, sd, torch.float32, bert_tok, layout="single")
    os.remove(os.path.join(MODELS_DIR, "bert_cls_vocabtxt", "tokenizer.json"))
    save_model_dir("bert_cls_pickle", cfgd, sd, torch.float32, bert_tok, layout="pickle",
                   tokenizer_files=False)
    # gelu_new: own weights with wide FFN pre-activations, so that tanh-vs-erf
    # GELU moves the logits by well over the 1e-4 tolerance.
    gn = make_config("bert", "cls", len(bert_tok.vocab_list), "float32", act="gelu_new")
    sd_gn = init_weights(refmodel.build(refmodel.Config(gn)), 103,
                         {"intermediate.dense.weight": 0.6, "output.dense.weight": 2.0,
                          "pooler.dense.weight": 0.1, "classifier.weight": 1.0})
    save_model_dir("bert_cls_gelunew", gn, sd_gn, torch.float32, bert_tok)
    made += [(n, bert_tok, "cls") for n in
             ("bert_cls_legacy", "bert_cls_sharded", "bert_cls_vocabtxt", "bert_cls_gelunew")]
    # ---- DistilBERT with a relu FFN -----------------------------------------
    rl = make_config("distilbert", "cls", len(distil_tok.vocab_list), "float32", act="relu")
    sd = init_weights(refmodel.build(refmodel.Config(rl)), seeds[("distilbert", "cls")])
    save_model_dir("distilbert_cls_relu", rl, sd, torch.float32, distil_tok)
    made.append(("distilbert_cls_relu", distil_tok, "cls"))

    for name, tok, head in made:
        write_golden(name, tok, head)
        print("wrote", name)
    check_case_coverage(toks)


def check_case_coverage(toks):
    """The brief's promises about the cases hold for every tokenizer."""
    for arch, tok in toks.items():
        for c in QA_CASES:
            n = len(tok.encode_qa(c["question"], c["context"], c["max_length"], c["stride"]))
            if c["max_length"] == 64:
                assert n == 1, (arch, c["question"], n)
            else:
                assert n >= 3, (arch, c["question"], n)
        long_enc = tok.encode(LONG_TEXT)
        assert len(long_enc.ids) == MAX_POS, (arch, len(long_enc.ids))
        assert len(tok.tokenize(LONG_TEXT)) > MAX_POS - 2


if __name__ == "__main__":
    main()
