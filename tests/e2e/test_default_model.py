#!/usr/bin/python3
"""End-to-end checks of the committed default model (models/peftd-mini-en) served by the real
binary (PEFTD_BIN, default build/peftd):

  * /predict without an adapter gives the logits of the independent PyTorch reference
    (tests/reference/golden_models/peftd-mini-en.jsonl, made by tests/reference/gen_default_model.py)
    within 1e-4: the sentiment head's logits and label, the QA head's start/end logits and answer;
  * "a great movie" is positive; a question generated from WordNet glosses (as
    scripts/model/qa_data.py makes them) is answered with its gloss;
  * `make run`'s default: the Makefile serves this model.

Prints "e2e_default_model: N passed, N failed, N skipped" last; exits 1 if anything failed.
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import peftio  # noqa: E402

BIN = os.path.abspath(os.environ.get("PEFTD_BIN", os.path.join(ROOT, "build", "peftd")))
NAME = "peftd-mini-en"
MODEL = os.path.join(ROOT, "models", NAME)
GOLDEN = os.path.join(ROOT, "tests", "reference", "golden_models", NAME + ".jsonl")
TOL = 1e-4
passed = failed = skipped = 0


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg, flush=True)
    return ok


def close(a, b):
    return len(a) == len(b) and max((abs(x - y) for x, y in zip(a, b)), default=0) <= TOL


def main():
    global skipped
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        skipped += 1
        print("SKIP: no %s" % MODEL)
        return
    with open(GOLDEN, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    check(sum(c["kind"] == "cls" for c in cases) >= 5 and sum(c["kind"] == "qa" for c in cases) >= 2,
          "golden file has too few cases")
    data = tempfile.mkdtemp(prefix="peftd-e2e-default-")
    srv = peftio.Server(BIN, ["--model", MODEL, "--data-dir", data, "--threads", "2"],
                        log_path=os.path.join(data, "server.log"))
    srv.start(timeout=120)
    try:
        c = srv.client()
        for case in cases:
            if case["kind"] == "cls":
                body = {"inputs": case["input"], "return_logits": True}
                if "max_length" in case:
                    body["max_length"] = case["max_length"]
                r = c.predict(body)
                if not check(r.status == 200, "cls %r: %r" % (case["input"], r)):
                    continue
                out = r.json()["outputs"][0]
                check(close(out["logits"], case["logits"]),
                      "cls %r: logits %r vs reference %r" % (case["input"], out["logits"], case["logits"]))
                best = max(range(len(case["probs"])), key=lambda i: case["probs"][i])
                check(out["label"] == ["negative", "positive"][best],
                      "cls %r: label %s vs reference %d" % (case["input"], out["label"], best))
            else:
                body = {"inputs": case["input"], "return_logits": True, "max_answer_length": case["max_answer_length"]}
                r = c.predict(body)
                if not check(r.status == 200, "qa %r: %r" % (case["input"]["question"], r)):
                    continue
                out = r.json()["outputs"][0]
                check(close(out["start_logits"], case["start_logits"][0]) and close(out["end_logits"], case["end_logits"][0]),
                      "qa %r: start/end logits differ from the reference" % case["input"]["question"])
                check(out["answer"] == case["answer"]["answer"] and out["start"] == case["answer"]["start"],
                      "qa %r: answer %r vs reference %r" % (case["input"]["question"], out["answer"], case["answer"]))
        # what a newcomer sees
        r = c.predict({"inputs": ["a great movie", "a dull, lifeless and boring film"]})
        labels = [o["label"] for o in r.json()["outputs"]] if r.status == 200 else r
        check(labels == ["positive", "negative"], "sentiment of two plain reviews: %r" % (labels,))
        # a generated question answered with its gloss (the reference answers it so too)
        right = [x for x in cases if x["kind"] == "qa" and x["answer"]["answer"] == x["gold"]]
        if check(right, "the reference answers none of the golden questions with its gloss"):
            q = right[0]
            r = c.predict({"inputs": q["input"], "max_answer_length": 30})
            ans = r.json()["outputs"][0]["answer"] if r.status == 200 else r
            check(ans == q["gold"], "QA %r: %r, expected the gloss %r" % (q["input"]["question"], ans, q["gold"]))
    finally:
        srv.stop()
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        mk = f.read()
    check("MODEL ?= models/%s" % NAME in mk and "serve --model $(MODEL)" in mk, "make run does not serve %s" % NAME)


if __name__ == "__main__":
    main()
    print("e2e_default_model: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)
