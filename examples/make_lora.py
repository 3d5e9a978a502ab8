#!/usr/bin/python3
"""Writes a tiny example LoRA adapter for peftd's default model, in Hugging Face PEFT format.

    python3 examples/make_lora.py [--model models/default] [--out examples/lora-demo]

The adapter is what `peft` would save for a BertForSequenceClassification with
LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]):

    adapter_config.json
    adapter_model.safetensors
        base_model.model.bert.encoder.layer.N.attention.self.{query,value}.lora_A.weight  (r, hidden)
        base_model.model.bert.encoder.layer.N.attention.self.{query,value}.lora_B.weight  (hidden, r)
        base_model.model.classifier.{weight,bias}   (the head, saved through modules_to_save)

Its weights are random (fixed seed, so the bytes are the same on every run): like the default
model itself it demonstrates the files and the API, not a useful classifier. Shapes come from
the model's config.json, so it fits whatever base it is pointed at if that is a BERT.
Standard library only.
"""
import argparse
import json
import os
import random
import struct
import sys


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, shape, flat list of floats), written as F32 little-endian,
    sorted by name like the reference writer, header padded with spaces to 8 bytes."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, shape, values in sorted(tensors):
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default", help="base model directory (reads config.json)")
    ap.add_argument("--out", default="examples/lora-demo", help="output directory")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    cfg_path = os.path.join(args.model, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        sys.exit("make_lora: cannot read %s (%s); run `make model` first or pass --model" % (cfg_path, e.strerror))
    if cfg.get("model_type") != "bert":
        sys.exit("make_lora: %s is a %s model; this example is for BERT" % (cfg_path, cfg.get("model_type")))
    hidden, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    labels = len(cfg.get("id2label") or {"0": 0, "1": 1})
    r = args.rank

    rng = random.Random(args.seed)

    def normal(n, std):
        return [rng.gauss(0.0, std) for _ in range(n)]

    tensors = []
    for layer in range(layers):
        for mod in ("query", "value"):
            p = "base_model.model.bert.encoder.layer.%d.attention.self.%s" % (layer, mod)
            tensors.append((p + ".lora_A.weight", (r, hidden), normal(r * hidden, 0.1)))
            tensors.append((p + ".lora_B.weight", (hidden, r), normal(hidden * r, 0.1)))
    tensors.append(("base_model.model.classifier.weight", (labels, hidden), normal(labels * hidden, 0.5)))
    tensors.append(("base_model.model.classifier.bias", (labels,), [0.0] * labels))

    config = {
        "base_model_name_or_path": "peftd-default",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "lora_alpha": args.alpha,
        "lora_dropout": 0.0,
        "modules_to_save": ["classifier"],
        "peft_type": "LORA",
        "r": r,
        "target_modules": ["query", "value"],
        "task_type": "SEQ_CLS",
        "use_dora": False,
        "use_rslora": False,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(args.out, "adapter_model.safetensors"), tensors, {"format": "pt"})
    n = sum(len(t[2]) for t in tensors)
    print("wrote %s: LoRA r=%d on query,value of %d layers + classifier head, %d parameters" % (args.out, r, layers, n))


if __name__ == "__main__":
    main()
