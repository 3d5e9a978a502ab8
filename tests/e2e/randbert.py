"""A random BERT checkpoint, in Hugging Face layout, around an existing WordPiece tokenizer.

test_train.py's SST-2 test needs a base whose vocabulary holds English words: the embedded
default model (core/genmodel.h) has a few hundred, so SST-2 sentences come out as [UNK] and no
adapter can learn them. This writes config.json and model.safetensors (F32) for
BertForSequenceClassification with the vocabulary of the tokenizer directory given (the real
bert-base-uncased one from ../shared in the test) and copies the tokenizer files beside them.

The weights are random, N(0, std) from a seeded PRNG (biases 0, LayerNorm 1/0): nothing is
pretrained. With std 0.1 instead of BERT's 0.02 a token's embedding still shows at the [CLS]
position after two layers, so an adapter has a bag-of-words signal to learn from; with 0.02 it
is lost under the [CLS] row's own embedding (measured: every method stays at the majority class).

Pure Python (Debian's python3 has no numpy in CI): about 2 s for hidden 128."""

import json
import os
import random
import shutil

from peftio import bert_encoder, randn, st_bytes

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def write(out, tok_dir, hidden=128, layers=2, heads=4, ffn=512, max_pos=128, labels=("0", "1"), seed=1, std=0.1):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(tok_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = sum(1 for _ in f)
    rnd = random.Random(seed)
    tensors = {}

    def normal(name, *shape):
        n = 1
        for x in shape:
            n *= x
        tensors[name] = (shape, randn(rnd, n, std))

    def linear(p, o, i):
        normal(p + ".weight", o, i)
        tensors[p + ".bias"] = ((o,), [0.0] * o)

    def layernorm(p):
        tensors[p + ".weight"] = ((hidden,), [1.0] * hidden)
        tensors[p + ".bias"] = ((hidden,), [0.0] * hidden)

    e = "bert.embeddings."
    normal(e + "word_embeddings.weight", vocab, hidden)
    normal(e + "position_embeddings.weight", max_pos, hidden)
    normal(e + "token_type_embeddings.weight", 2, hidden)
    layernorm(e + "LayerNorm")
    bert_encoder(layers, hidden, ffn, linear, layernorm)
    linear("bert.pooler.dense", hidden, hidden)
    linear("classifier", len(labels), hidden)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(st_bytes(tensors))
    cfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": vocab,
           "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
           "intermediate_size": ffn, "hidden_act": "gelu", "max_position_embeddings": max_pos,
           "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
           "id2label": {str(i): lab for i, lab in enumerate(labels)},
           "label2id": {lab: i for i, lab in enumerate(labels)}}
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    for n in TOKENIZER_FILES:
        if os.path.exists(os.path.join(tok_dir, n)):
            shutil.copyfile(os.path.join(tok_dir, n), os.path.join(out, n))
    return out
