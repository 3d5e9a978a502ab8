#!/usr/bin/python3
"""Model-directory surgery for the checkpoint's own heads (numpy only):

    merge.py strip BASE OUT [--drop PREFIX ...]      copy a model dir without some tensors
    merge.py lora BASE ADAPTER OUT                   merge a PEFT LoRA adapter dir into BASE
    merge.py cast BASE OUT --dtype F16|F32           rewrite model.safetensors in another dtype

`lora` folds each adapted linear, W += scaling * B @ A (scaling lora_alpha / r, or
lora_alpha / sqrt(r) with use_rslora; rank_pattern / alpha_pattern honoured), and makes the
adapter's modules_to_save (its task head, and the pooler when the base had none) tensors of the
base: `classifier.*` with the adapter's labels as id2label/label2id in config.json, or
`qa_outputs.*`. The result is a plain Hugging Face BERT checkpoint: peftd's /predict without an
adapter then uses these heads. Tokenizer files are copied along.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peftjobs as pj  # noqa: E402

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def load_dir(d):
    t, _ = pj.st_read(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json")) as f:
        return t, json.load(f)


def save_dir(src, out, tensors, config, dtype="F32"):
    os.makedirs(out, exist_ok=True)
    for n in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, n)) and os.path.abspath(src) != os.path.abspath(out):
            shutil.copyfile(os.path.join(src, n), os.path.join(out, n))
    config = dict(config, torch_dtype={"F32": "float32", "F16": "float16"}[dtype])
    pj.st_write(os.path.join(out, "model.safetensors"), tensors, dtype, {"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def strip(base, out, drop, dtype="F32"):
    t, cf = load_dir(base)
    kept = {k: v for k, v in t.items() if not any(k.startswith(p) for p in drop)}
    if any(p.startswith("cls.") for p in drop):
        cf["architectures"] = ["BertModel"]
    save_dir(base, out, kept, cf, dtype)
    return sorted(set(t) - set(kept))


def _pattern(pat, module, default):
    """PEFT's rank_pattern / alpha_pattern: the first key whose regex matches the module's end."""
    for k, v in (pat or {}).items():
        if re.match(r"(.*\.)?%s$" % k, module):
            return v
    return default


def merge_lora(base, adapter, out):
    t, cf = load_dir(base)
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        ac = json.load(f)
    at, _ = pj.st_read(os.path.join(adapter, "adapter_model.safetensors"))
    if ac.get("peft_type", "LORA") != "LORA":
        raise SystemExit("merge: %s is a %s adapter, not LoRA" % (adapter, ac.get("peft_type")))
    pre = "base_model.model."
    done, heads = 0, {}
    for name in sorted(at):
        if not name.startswith(pre):
            raise SystemExit("merge: unexpected tensor %s" % name)
        n = name[len(pre):]
        m = re.match(r"(.*)\.lora_A(\.default)?\.weight$", n)
        if m:
            mod = m.group(1)
            a = at[name]
            b = at[pre + mod + ".lora_B.weight"]
            r = _pattern(ac.get("rank_pattern"), mod, ac["r"])
            alpha = _pattern(ac.get("alpha_pattern"), mod, ac["lora_alpha"])
            scale = alpha / math.sqrt(r) if ac.get("use_rslora") else alpha / r
            w = mod + ".weight"
            if w not in t or t[w].shape != (b.shape[0], a.shape[1]):
                raise SystemExit("merge: %s does not fit the base (%s)" % (name, w))
            t[w] = t[w] + scale * (b.astype("float64") @ a.astype("float64")).astype("float32")
            bb = pre + mod + ".lora_B.bias"
            if bb in at:
                t[mod + ".bias"] = t[mod + ".bias"] + scale * at[bb]
            done += 1
            continue
        if ".lora_B." in n:
            continue
        # modules_to_save: "<module>.modules_to_save.default.<param>" or plain "<module>.<param>"
        n = n.replace(".modules_to_save.default.", ".")
        heads[n] = at[name]
    for n, v in heads.items():
        t[n] = v
    if "classifier.weight" in heads:
        labels = ac.get("labels") or _labels_file(adapter) or ["LABEL_%d" % i for i in range(heads["classifier.weight"].shape[0])]
        cf["id2label"] = {str(i): l for i, l in enumerate(labels)}
        cf["label2id"] = {l: i for i, l in enumerate(labels)}
        cf["num_labels"] = len(labels)
    arch = [x for x in (["BertForSequenceClassification"] if "classifier.weight" in t else [])
            + (["BertForQuestionAnswering"] if "qa_outputs.weight" in t else [])]
    cf["architectures"] = arch or cf.get("architectures")
    save_dir(base, out, t, cf)
    return {"merged_linears": done, "heads": sorted(heads)}


def _labels_file(adapter):
    for n in ("labels.json", "id2label.json"):
        p = os.path.join(adapter, n)
        if os.path.exists(p):
            with open(p) as f:
                x = json.load(f)
            if isinstance(x, dict):
                x = [x[k] for k in sorted(x, key=int)]
            return x
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strip")
    s.add_argument("base")
    s.add_argument("out")
    s.add_argument("--drop", action="append", default=[])
    s.add_argument("--dtype", default="F32", choices=["F32", "F16"])
    m = sub.add_parser("lora")
    m.add_argument("base")
    m.add_argument("adapter")
    m.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "strip":
        print(json.dumps({"dropped": strip(a.base, a.out, a.drop, a.dtype)}))
    else:
        print(json.dumps(merge_lora(a.base, a.adapter, a.out)))


if __name__ == "__main__":
    main()
