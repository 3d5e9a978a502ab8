"""Helpers shared by the model scripts (heads.py, evidence.py, card.py): datasets from ../shared,
safetensors read/write (numpy), training jobs through a real `peftd serve` over HTTP, and
SQuAD-style QA scoring. Uses tests/e2e/peftio.py for the server process and HTTP.
"""
import json
import os
import random
import re
import string
import struct
import sys
import tempfile
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import peftio  # noqa: E402

SHARED = os.environ.get("PD_SHARED", os.path.join(ROOT, "..", "shared"))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)

# ==== Data ====


def sst2(split, n=None, seed=1):
    """SST-2 rows {"text", "label"} (label negative/positive); a seeded sample of n rows if n."""
    rows = []
    with open(os.path.join(SHARED, "data", "sst2", split + ".tsv"), encoding="utf-8") as f:
        for line in f:
            lab, _, text = line.rstrip("\n").partition("\t")
            if lab in ("0", "1") and text.strip():
                rows.append({"text": text.strip(), "label": "positive" if lab == "1" else "negative"})
    if n and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return rows


def subj(seed=13, n_dev=1000):
    """SUBJ split as bench/pretrain_probe.py splits it: (train, dev), dev = the first 1,000 shuffled."""
    rows = []
    for name, label in (("subj.subjective", "subjective"), ("subj.objective", "objective")):
        with open(os.path.join(SHARED, "data", "subj", name), encoding="latin-1") as f:
            rows += [{"text": line.strip(), "label": label} for line in f if line.strip()]
    random.Random(seed).shuffle(rows)
    return rows[n_dev:], rows[:n_dev]


def wikiqa(split, n=None, seed=1):
    """WikiQA answer selection as sentence pairs {"text": question, "text_pair": sentence, "label"}."""
    rows = []
    with open(os.path.join(SHARED, "data", "wikiqa", split + ".txt"), encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) == 3 and p[2] in ("0", "1") and p[0].strip() and p[1].strip():
                rows.append({"text": p[0].strip(), "text_pair": p[1].strip(), "label": "yes" if p[2] == "1" else "no"})
    if n and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return rows


def read_jsonl(path, n=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if n and len(out) >= n:
                    break
    return out


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)

# ==== safetensors ====


_DT = {"F32": np.float32, "F16": np.float16, "BF16": None}


def st_read(path):
    """{name: float32 array}, metadata. BF16 is widened by shifting into the high half of F32."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        raw = data[a:b]
        if h["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif h["dtype"] in ("F32", "F16"):
            arr = np.frombuffer(raw, dtype="<" + np.dtype(_DT[h["dtype"]]).str[1:]).astype(np.float32)
        else:
            raise ValueError("%s: tensor %s has dtype %s" % (path, name, h["dtype"]))
        out[name] = arr.reshape(h["shape"]).copy()
    return out, meta


def st_write(path, tensors, dtype="F32", metadata=None):
    """Writes {name: array} as dtype F32 or F16 (names sorted), atomically."""
    npdt = {"F32": "<f4", "F16": "<f2"}[dtype]
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "F16" and np.abs(arr).max(initial=0) > 65504:
            raise ValueError("tensor %s does not fit in F16" % name)
        raw = arr.astype(npdt).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)

# ==== peftd over HTTP ====


class Peftd:
    """A `peftd serve` on MODEL with a fresh data dir; jobs and predictions over HTTP."""

    def __init__(self, binary, model, threads=2, data_dir=None):
        self.data = data_dir or tempfile.mkdtemp(prefix="peftd-model-")
        self.log = os.path.join(self.data, "..", os.path.basename(self.data) + ".log")
        self.srv = peftio.Server(binary, ["--model", model, "--data-dir", self.data, "--threads", str(threads)],
                                 log_path=self.log)

    def __enter__(self):
        self.srv.start(timeout=300)
        self.c = self.srv.client(timeout=3600)
        return self

    def __exit__(self, *exc):
        self.srv.stop()

    def train(self, spec, train, dev=None, poll=2.0):
        """Runs one job to its end; returns the job JSON (raises if it did not succeed)."""
        fields = [("spec", json.dumps(spec), None), ("train", jsonl(train), "train.jsonl")]
        if dev:
            fields.append(("eval", jsonl(dev), "eval.jsonl"))
        ct, body = peftio.multipart(fields)
        t0 = time.time()
        r = self.c.request("POST", "/train", body, ctype=ct)
        if r.status != 202:
            raise RuntimeError("POST /train: %d %s" % (r.status, r.body[:400]))
        job, last = r.json()["job"], -1
        while True:
            j = self.c.get("/jobs/" + job).json()
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            if j.get("step", 0) // 100 != last:
                last = j.get("step", 0) // 100
                log("  %s %s step %s/%s loss %s" % (spec["adapter"], job, j.get("step"), j.get("total_steps"),
                                                    j["loss"][-1][1] if j.get("loss") else "-"))
            time.sleep(poll)
        if j["status"] != "succeeded":
            raise RuntimeError("job %s %s: %s" % (job, j["status"], j.get("error")))
        j["wall_s"] = round(time.time() - t0, 1)
        return j

    def adapter_dir(self, name):
        """The directory of the adapter's current version in the data dir."""
        d = os.path.join(self.data, name)
        versions = sorted((int(v) for v in os.listdir(d) if v.isdigit()))
        return os.path.join(d, str(versions[-1]))

    def predict(self, inputs, adapter=None, batch=64):
        out = []
        for i in range(0, len(inputs), batch):
            body = {"inputs": inputs[i:i + batch]}
            if adapter:
                body["adapter"] = adapter
            r = self.c.predict(body)
            if r.status != 200:
                raise RuntimeError("POST /predict: %d %s" % (r.status, r.body[:400]))
            out += r.json()["predictions"] if "predictions" in r.json() else r.json()["outputs"]
        return out

# ==== QA scoring (SQuAD v1.1's evaluate script: normalise, exact match, token F1) ====


def qa_normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def qa_em(pred, gold):
    return float(qa_normalize(pred) == qa_normalize(gold))


def qa_f1(pred, gold):
    p, g = qa_normalize(pred).split(), qa_normalize(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)
