#!/usr/bin/python3
"""qa_data.py - SQuAD-style question answering examples generated from WordNet (issue 15).

For the default model's own QA head: each example asks what a word means ("what is a
lighthouse?", "what does it mean to abase?", "define gentle.") over a context of several
dictionary glosses, each introduced by its headword ("lighthouse: a tower with a light that
gives warning of shoals to passing ships. beacon: ..."); the answer is the asked word's gloss,
a span of the context. The distractors are glosses of other words of the same part of speech.
Deterministic (a fixed seed); the training and held-out slices have disjoint headwords (the
held-out slice: headwords whose sha1("qa/" + headword) falls in the first 5%), and each
slice draws its distractors from its own headwords only.

Output (WORK/qa/):
  train.jsonl, heldout.jsonl  one example a line, in the form POST /train takes for question
      answering (docs/TRAINING.md): {"id", "question", "context", "answer": {"text", "start"}}
      with start in code points; heldout.jsonl is also the card's exact-match / F1 set
  manifest.json  counts, templates, seed, the rules above

Usage: qa_data.py [--work DIR] [--root /] [--train N] [--heldout N] [--seed S] [--quick]
Standard library only; reads WordNet through corpus.py (wordnet-base must be installed:
corpus.py installs it).
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402  (WordNet reader and the repository's paths)

TEMPLATES = {
    "noun": ["what is {a} {w}?", "what is {a} {w}?", "what does {w} mean?", "define {w}.",
             "what is the meaning of {w}?", "what is meant by {w}?", "what is {a} {w}, exactly?",
             "can you tell me what {a} {w} is?", "{w}: what is it?", "what's {a} {w}?"],
    # capitalised nouns (people, places, taxa): no article
    "proper": ["who or what is {w}?", "what is {w}?", "what does {w} refer to?", "tell me about {w}.",
               "what do you know about {w}?", "define {w}."],
    "verb": ["what does it mean to {w}?", "what does {w} mean?", "define {w}.",
             "what is the meaning of the verb {w}?", "what does the verb {w} mean?",
             "to {w}: what does that mean?"],
    "adj": ["what does {w} mean?", "what does it mean to be {w}?", "define {w}.",
            "what is the meaning of the adjective {w}?", "what is something that is {w} like?"],
    "adv": ["what does {w} mean?", "define {w}.", "what is the meaning of the adverb {w}?",
            "what does it mean to do something {w}?"],
}
HELDOUT_PERCENT = 5
MAX_ANSWER_WORDS = 20     # POST /train's evaluation predicts spans of at most 30 tokens


def article(w):
    return "an" if w[:1].lower() in "aeiou" else "a"


def gloss_ok(definition):
    n = len(definition.split())
    return 3 <= n <= MAX_ANSWER_WORDS and '"' not in definition and definition[:1].isalnum()


def entries(root):
    """{pos: [(headword, definition)]}: per part of speech, the first (most frequent) sense
    of every headword whose WordNet gloss makes a short answer; headwords of letters, spaces,
    hyphens and apostrophes."""
    seen = set()
    out = {"noun": [], "verb": [], "adj": [], "adv": []}
    for pos, _off, lemmas, definition, _ex in corpus.wordnet_synsets(root):
        w = lemmas[0]
        key = (pos, w.lower())
        if key in seen or not re.fullmatch(r"[A-Za-z][A-Za-z' -]*[A-Za-z]", w):
            continue
        seen.add(key)
        if gloss_ok(definition):
            out[pos].append((w, definition))
    return out


def is_heldout(headword):
    return int(hashlib.sha1(("qa/" + headword.lower()).encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


def make_examples(pool, n, rng, prefix):
    """n examples over pool {pos: [(headword, definition)]}: a target, 2-5 distractors of the
    same part of speech with other headwords, in random order."""
    flat = [(pos, i) for pos in sorted(pool) for i in range(len(pool[pos]))]
    rng.shuffle(flat)
    if n and n < len(flat):
        flat = flat[:n]
    out = []
    for k, (pos, i) in enumerate(flat):
        w, definition = pool[pos][i]
        items = [(w, definition)]
        want = rng.randint(2, 5)
        tries = 0
        while len(items) < want + 1 and tries < 50:
            tries += 1
            dw, dd = pool[pos][rng.randrange(len(pool[pos]))]
            if all(dw.lower() != x.lower() for x, _ in items):
                items.append((dw, dd))
        rng.shuffle(items)
        context, start = "", -1
        for x, d in items:
            if context:
                context += " "
            if x == w and d == definition:
                start = len(context) + len(x) + 2
            context += "%s: %s." % (x, d)
        tpl = rng.choice(TEMPLATES["proper" if pos == "noun" and w[:1].isupper() else pos])
        q = tpl.format(w=w, a=article(w))
        if rng.random() < 0.5:
            q = q[0].upper() + q[1:]
        assert context[start:start + len(definition)] == definition
        out.append({"id": "%s-%d" % (prefix, k), "question": q, "context": context,
                    "answer": {"text": definition, "start": start}})
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(corpus.REPO, "build", "model"))
    ap.add_argument("--root", default="/")
    ap.add_argument("--train", type=int, default=20000, help="training examples (0: one per headword)")
    ap.add_argument("--heldout", type=int, default=1000, help="held-out examples (0: one per headword)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="500 training and 100 held-out examples")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.heldout = 500, 100
    t0 = time.time()
    out = os.path.join(args.work, "qa")
    os.makedirs(out, exist_ok=True)
    ent = entries(args.root)
    train_pool = {p: [e for e in v if not is_heldout(e[0])] for p, v in ent.items()}
    held_pool = {p: [e for e in v if is_heldout(e[0])] for p, v in ent.items()}
    rng = random.Random(args.seed)
    train = make_examples(train_pool, args.train, rng, "train")
    held = make_examples(held_pool, args.heldout, random.Random(args.seed + 1), "heldout")
    write_jsonl(os.path.join(out, "train.jsonl"), train)
    write_jsonl(os.path.join(out, "heldout.jsonl"), held)

    manifest = {
        "source": "WordNet 3.0 (wordnet-base), licence WordNet-3.0",
        "seed": args.seed, "heldout_rule": "sha1('qa/' + lower(headword)) %% 100 < %d" % HELDOUT_PERCENT,
        "headwords": {p: {"train": len(train_pool[p]), "heldout": len(held_pool[p])} for p in ent},
        "train_examples": len(train), "heldout_examples": len(held),
        "mean_context_chars": round(sum(len(r["context"]) for r in train) / max(len(train), 1), 1),
        "mean_answer_words": round(sum(len(r["answer"]["text"].split()) for r in train) / max(len(train), 1), 2),
        "templates": TEMPLATES, "seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("qa_data: %d train, %d held-out examples -> %s (%.1fs)" % (len(train), len(held), out, time.time() - t0),
          file=sys.stderr)


if __name__ == "__main__":
    main()
