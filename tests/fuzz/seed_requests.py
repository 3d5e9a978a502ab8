#!/usr/bin/env python3
"""seed_requests.py TARGET DUMP_DIR CORPUS_DIR - seeds for the request targets of tests/fuzz/
(predict_body, train_request, jsonl) from the hostile suite's raw requests
(tests/e2e/test_hostile.py --dump-corpus DUMP_DIR) plus a few well-formed requests, so that
mutation starts both from hostile bodies and from bodies that get through to tokenizing.
train_request's input is spec NUL train NUL eval (multipart requests are split into their
parts); jsonl's is a train.jsonl part, kept only when json.loads reads every non-blank line."""
import hashlib, json, os, re, sys

target, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(dst, exist_ok=True)
CLS = [{"text": "a fine film", "label": "pos"}, {"text": "dull and slow", "label": "neg"},
       {"text": "caf\u00e9 \u4e2d\u6587", "label": "pos"}]
QA = [{"question": "who?", "context": "Ann went home.", "answers": {"text": ["Ann"], "answer_start": [0]}}]
seeds = []
if target == "predict_body":
    seeds += [json.dumps(b).encode() for b in (
        {"inputs": "hello world"}, {"inputs": ["a", "b c"], "top_k": 2, "max_length": 16},
        {"inputs": {"text": "a", "text_pair": "b"}}, {"inputs": {"question": "who?", "context": "Ann went home."},
                                                      "task": "question_answering", "doc_stride": 4, "max_length": 12},
        {"inputs": "x", "adapter": None, "return_logits": True})]
def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()
if target == "train_request":
    base = {"adapter": "s", "method": "lora", "task": "classification", "epochs": 1, "batch_size": 2}
    seeds += [json.dumps(dict(base, train=CLS)).encode(),
              json.dumps(dict(base, train=CLS, eval=CLS[:2], config={"r": 2, "lora_alpha": 4})).encode(),
              json.dumps(dict(base, method="ia3", train=CLS, eval_fraction=0.3)).encode(),
              json.dumps(dict(base, method="prefix_tuning", config={"num_virtual_tokens": 2})).encode() + b"\0" + jsonl(CLS),
              json.dumps(dict(base, task="question_answering", max_seq_len=32, doc_stride=8)).encode() + b"\0" + jsonl(QA) + b"\0" + jsonl(QA)]
if target == "jsonl":
    seeds += [jsonl(CLS), jsonl(CLS[:1]) + b"\n  \n" + jsonl([{"text": "x", "label": 1}])]

for f in sorted(os.listdir(src)):
    raw = open(os.path.join(src, f), "rb").read()
    head, _, body = raw.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0]
    if target == "predict_body" and line.startswith(b"POST /predict"):
        seeds.append(body)
    if target in ("train_request", "jsonl") and line.startswith(b"POST /train"):
        m = re.search(rb"boundary=\"?([^\";\r\n]{1,70})", head)
        parts = {}
        if m:
            for p in body.split(b"--" + m.group(1))[1:]:
                h, _, d = p.partition(b"\r\n\r\n")
                n = re.search(rb'name="([^"]*)"', h)
                if n: parts[n.group(1).decode("latin-1")] = d[:-2] if d.endswith(b"\r\n") else d
        else:
            parts["spec"] = body
        if target == "train_request":
            seeds.append(parts.get("spec", b"") + b"\0" + parts.get("train", b"") + (b"\0" + parts["eval"] if "eval" in parts else b""))
        elif "train" in parts:
            seeds.append(parts["train"])
for s in seeds:
    if target == "jsonl":
        try:
            [json.loads(l) for l in s.decode().split("\n") if l.strip()]
        except ValueError:
            continue
    open(os.path.join(dst, hashlib.md5(s).hexdigest()[:12]), "wb").write(s)
print("%s: %d seeds" % (target, len(os.listdir(dst))), file=sys.stderr)
