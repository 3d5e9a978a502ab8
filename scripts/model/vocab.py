#!/usr/bin/python3
"""vocab.py - uncased WordPiece vocabularies learned from the corpus (issue 15).

Learns WordPiece vocabularies the way Hugging Face tokenizers' WordPieceTrainer does (BPE
merges over word counts, continuation pieces prefixed "##", then greedy longest-match-first
encoding), writes them in the files peftd (core/tokenizer.c) and Hugging Face load, and
measures every vocabulary on the corpus and on the downstream tasks' text. Debian's
/usr/bin/python3, standard library only.

Tokenizer pipeline (bert-base-uncased's): BertNormalizer (clean text, CJK characters spaced,
accents stripped, lower case), BertPreTokenizer (split on whitespace, every punctuation
character a word of its own), WordPiece with "##" continuations and
max_input_chars_per_word 100, [CLS] A [SEP] (B [SEP]) post-processing. Ids: [PAD]=0,
[UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then the alphabet (characters, then "##" characters),
then the merges in the order they were learned.

Output (WORK/vocab/):
  wp8k/, wp16k/   vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json
  report.json     per vocabulary (and bert-base-uncased's 30,522 from ../shared/fixtures for
                  comparison): tokens, tokens per word, [UNK] rate, words split, on the
                  corpus and on SST-2, SUBJ and WikiQA; learning time

  peftd_check     every vocabulary loaded by peftd's tokenizer (core/tokenizer.c, through
                  scripts/model/tokcheck.c) tokenizes every line of the held-out text exactly as
                  this script's encoder does (report.json: lines, lines differing)
  peer_check      with --peer-check, the same with a second implementation that loads
                  tokenizer.json + tokenizer_config.json as Hugging Face's libraries do
                  (@lenml/tokenizers 3.7.2, a port of transformers.js; scripts/model/peer/)

Usage: vocab.py [--work DIR] [--corpus FILE] [--sizes 8192,16384] [--shared DIR]
                [--limit-alphabet 1000] [--no-check] [--check-text FILE] [--peer-check]
"""

import argparse
import collections
import heapq
import json
import os
import re
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402  (the downstream texts, read once for both scripts)
REPO = os.path.dirname(os.path.dirname(HERE))

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PREFIX = "##"
MAX_CHARS = 100

# ==== BertNormalizer + BertPreTokenizer (tokenizers' normalizers/bert.rs, pre_tokenizers/bert.rs) ====

# Rust's char::is_whitespace (the Unicode White_Space property)
_WHITE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def _is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c)[0] == "C"


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punct(c):
    o = ord(c)
    if (33 <= o <= 47) or (58 <= o <= 64) or (91 <= o <= 96) or (123 <= o <= 126):
        return True
    return unicodedata.category(c)[0] == "P"


def normalize(text):
    """BertNormalizer(clean_text, handle_chinese_chars, strip_accents, lowercase)."""
    out = []
    for c in text:
        o = ord(c)
        if o == 0 or o == 0xFFFD or _is_control(c):
            continue
        if c in _WHITE:
            out.append(" ")
        elif _is_chinese(o):
            out.append(" " + c + " ")
        else:
            out.append(c)
    s = unicodedata.normalize("NFD", "".join(out))
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    return s.lower()


_ascii_words = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def pre_tokenize(text):
    """The words BertPreTokenizer makes of normalize(text) (punctuation split off)."""
    if text.isascii():
        # exact for ASCII: normalize() only lowercases it and turns \t\n\r into spaces
        # (other ASCII controls are removed)
        if any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in text):
            text = normalize(text)
        return _ascii_words.findall(text.lower())
    words = []
    for w in normalize(text).split():
        if all(not _is_punct(c) for c in w):
            words.append(w)
            continue
        cur = []
        for c in w:
            if _is_punct(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
    return words


def count_words(lines):
    """Counter of pre-tokenized words over an iterable of text lines."""
    cnt = collections.Counter()
    for ln in lines:
        if ln.strip():
            cnt.update(pre_tokenize(ln))
    return cnt


# ==== WordPiece ====

_special_split = re.compile("(" + "|".join(re.escape(t) for t in SPECIALS) + ")")


class WordPiece:
    """Greedy longest-match-first WordPiece encoder (tokenizers' models/wordpiece)."""

    def __init__(self, vocab):
        self.vocab = vocab            # list of tokens; id = index
        self.ids = {t: i for i, t in enumerate(vocab)}
        self.unk = self.ids["[UNK]"]
        self.cache = {}
        self.maxlen = max(len(t) for t in vocab)

    def word(self, w):
        """Ids of one pre-tokenized word."""
        r = self.cache.get(w)
        if r is not None:
            return r
        if len(w) > MAX_CHARS:
            r = (self.unk,)
        else:
            r, start, n = [], 0, len(w)
            while start < n:
                end = min(n, start + self.maxlen)
                found = None
                while start < end:
                    sub = w[start:end] if start == 0 else PREFIX + w[start:end]
                    i = self.ids.get(sub)
                    if i is not None:
                        found = i
                        break
                    end -= 1
                if found is None:
                    r = [self.unk]
                    break
                r.append(found)
                start = end
            r = tuple(r)
        self.cache[w] = r
        return r

    def encode(self, text):
        """Ids of a text; the special tokens written in it ("[SEP]") are matched first, as
        tokenizers' added tokens are (before normalisation)."""
        out = []
        for k, part in enumerate(_special_split.split(text)):
            if k % 2:
                out.append(self.ids[part])
            else:
                for w in pre_tokenize(part):
                    out.extend(self.word(w))
        return out


def learn(counts, size, limit_alphabet=1000, log=None):
    """Learns a WordPiece vocabulary of `size` tokens from word counts: the alphabet (the
    limit_alphabet most frequent characters, every printable ASCII character included),
    then BPE merges of the most frequent adjacent pair (ties: the smaller pair of strings)
    until the size is reached. Returns the token list (specials first)."""
    chars = collections.Counter()
    for w, c in counts.items():
        for ch in w:
            chars[ch] += c
    alphabet = set(chr(o) for o in range(33, 127))
    for ch, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(alphabet) >= limit_alphabet:
            break
        alphabet.add(ch)
    alphabet = sorted(alphabet)
    vocab = list(SPECIALS) + alphabet + [PREFIX + ch for ch in alphabet]
    if len(vocab) >= size:
        raise ValueError("vocabulary size %d is smaller than the alphabet (%d)" % (size, len(vocab)))
    tok_id = {t: i for i, t in enumerate(vocab)}

    # words as lists of symbol ids; only words of the alphabet and of at most MAX_CHARS
    # characters (the others encode as [UNK] whatever the merges)
    words, freqs = [], []
    for w, c in counts.items():
        if len(w) > MAX_CHARS or any(ch not in tok_id for ch in w):
            continue
        words.append([tok_id[w[0]]] + [tok_id[PREFIX + ch] for ch in w[1:]])
        freqs.append(c)

    pair_count = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for wi, sym in enumerate(words):
        f = freqs[wi]
        for a, b in zip(sym, sym[1:]):
            pair_count[(a, b)] += f
            where[(a, b)].add(wi)
    heap = [(-c, vocab[a], vocab[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    t0 = time.time()
    while len(vocab) < size and heap:
        negc, _, _, a, b = heapq.heappop(heap)
        c = pair_count.get((a, b), 0)
        if c <= 0:
            continue
        if -negc != c:              # stale entry: push the current count back
            heapq.heappush(heap, (-c, vocab[a], vocab[b], a, b))
            continue
        new = vocab[a] + vocab[b][len(PREFIX):]
        if new in tok_id:           # the same string reached by another pair
            nid = tok_id[new]
        else:
            nid = len(vocab)
            vocab.append(new)
            tok_id[new] = nid
        touched = collections.defaultdict(int)
        for wi in list(where.pop((a, b), ())):
            sym = words[wi]
            f = freqs[wi]
            for x, y in zip(sym, sym[1:]):
                touched[(x, y)] -= f
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(nid)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            words[wi] = out
            for x, y in zip(out, out[1:]):
                touched[(x, y)] += f
                where[(x, y)].add(wi)
        for p, d in touched.items():
            if d == 0:
                continue
            pair_count[p] += d
            if pair_count[p] <= 0:
                del pair_count[p]
            elif d > 0:
                heapq.heappush(heap, (-pair_count[p], vocab[p[0]], vocab[p[1]], p[0], p[1]))
        pair_count.pop((a, b), None)
        if log and len(vocab) % 2000 == 0:
            log("  %d tokens (%.0fs)" % (len(vocab), time.time() - t0))
    return vocab


# ==== Files ====

def _added(i, t):
    return {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def write_tokenizer(vocab, out_dir):
    """vocab.txt, tokenizer.json (tokenizers 0.x format, as bert-base-uncased's),
    tokenizer_config.json and special_tokens_map.json."""
    os.makedirs(out_dir, exist_ok=True)
    ids = {t: i for i, t in enumerate(vocab)}
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        for t in vocab:
            f.write(t + "\n")
    cls, sep = ids["[CLS]"], ids["[SEP]"]
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [_added(ids[t], t) for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": PREFIX, "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": PREFIX,
                  "max_input_chars_per_word": MAX_CHARS, "vocab": ids},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    special_map = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
                   "sep_token": "[SEP]", "unk_token": "[UNK]"}
    cfg = dict(special_map)
    cfg.update({"added_tokens_decoder": {str(ids[t]): {k: v for k, v in _added(ids[t], t).items()
                                                       if k not in ("id",)} for t in SPECIALS},
                "clean_up_tokenization_spaces": False, "do_lower_case": True, "model_max_length": 512,
                "strip_accents": None, "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer"})
    for k in cfg["added_tokens_decoder"].values():
        k.pop("id", None)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special_map, f, indent=1)
        f.write("\n")


def read_vocab_txt(path):
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f]


# ==== Measurements ====

def measure(wp, counts):
    """Tokens, words, tokens per word, [UNK] rate, share of words split into pieces, over a
    Counter of pre-tokenized words."""
    tokens = unk = words = split = 0
    for w, c in counts.items():
        ids = wp.word(w)
        tokens += c * len(ids)
        unk += c * ids.count(wp.unk)
        words += c
        split += c * (len(ids) > 1)
    return {"tokens": tokens, "words": words, "tokens_per_word": round(tokens / max(words, 1), 4),
            "unk_rate": round(unk / max(tokens, 1), 6), "words_split": round(split / max(words, 1), 4)}


def check_with_peftd(vocab_dir, wp, text_file, tool):
    """Tokenizes every line of text_file with peftd's tokenizer (tokcheck) and with wp;
    returns (lines, lines that differ, first difference or None)."""
    return compare_with([tool, vocab_dir], wp, text_file)


def compare_with(cmd, wp, text_file):
    """Runs cmd (a tokenizer reading lines on stdin, writing ids per line) on text_file and
    compares with wp's encoding: (lines, lines that differ, first difference or None)."""
    import subprocess
    with open(text_file, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    r = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True,
                       text=True, encoding="utf-8")
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], r.stderr.strip()))
    got = r.stdout.split("\n")
    bad, first = 0, None
    for i, ln in enumerate(lines):
        want = " ".join(map(str, wp.encode(ln)))
        if i >= len(got) or got[i] != want:
            bad += 1
            if first is None:
                first = {"line": i + 1, "text": ln[:200], "python": want[:200],
                         "peftd": got[i][:200] if i < len(got) else None}
    return len(lines), bad, first


def install_peer(work):
    """npm ci of scripts/model/peer (a second WordPiece implementation, pinned by its lock
    file) into WORK/peer; returns that directory."""
    import shutil
    import subprocess
    d = os.path.join(work, "peer")
    os.makedirs(d, exist_ok=True)
    for fn in ("package.json", "package-lock.json", "encode.mjs"):
        shutil.copyfile(os.path.join(HERE, "peer", fn), os.path.join(d, fn))
    if not os.path.exists(os.path.join(d, "node_modules", "@lenml", "tokenizers", "package.json")):
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=d, check=True)
    return d


def build_tokcheck():
    """Builds scripts/model's tokcheck (peftd's tokenizer on lines) and returns its path."""
    import subprocess
    out = os.path.join(REPO, "build", "model-tools")
    subprocess.run(["make", "-s", "-C", HERE, "OUT=" + out], check=True)
    return os.path.join(out, "tokcheck")


def log(msg):
    print("vocab: " + msg, file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(REPO, "build", "model"))
    ap.add_argument("--corpus", default=None, help="default: WORK/corpus/train.txt")
    ap.add_argument("--sizes", default="8192,16384")
    ap.add_argument("--shared", default=os.environ.get("PD_SHARED") or os.path.join(REPO, "..", "shared"))
    ap.add_argument("--limit-alphabet", type=int, default=1000)
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with peftd's tokenizer")
    ap.add_argument("--check-text", default=None, help="default: heldout.txt beside the corpus")
    ap.add_argument("--peer-check", action="store_true",
                    help="also compare with @lenml/tokenizers (npm ci of scripts/model/peer into WORK/peer)")
    args = ap.parse_args(argv)
    t_all = time.time()
    corpus_file = args.corpus or os.path.join(args.work, "corpus", "train.txt")
    out = os.path.join(args.work, "vocab")
    os.makedirs(out, exist_ok=True)

    t0 = time.time()
    with open(corpus_file, encoding="utf-8") as f:
        counts = count_words(f)
    log("%d words, %d distinct, counted in %.1fs" % (sum(counts.values()), len(counts), time.time() - t0))
    report = {"corpus": os.path.abspath(corpus_file), "corpus_words": sum(counts.values()),
              "corpus_distinct_words": len(counts), "count_seconds": round(time.time() - t0, 1),
              "vocabularies": {}}
    down = {k: count_words(v) for k, v in corpus.downstream_texts(args.shared).items()}

    # Merges are learned one after the other, so the smaller vocabularies are prefixes of the
    # largest one: learn it once.
    vocabs = {}
    sizes = sorted(int(x) for x in args.sizes.split(",") if x)
    t0 = time.time()
    full = learn(counts, sizes[-1], args.limit_alphabet, log) if sizes else []
    secs = time.time() - t0
    report["learn_seconds"] = round(secs, 1)
    for size in sizes:
        name = "wp%dk" % (size // 1024) if size % 1024 == 0 else "wp%d" % size
        vocab = full[:size]
        write_tokenizer(vocab, os.path.join(out, name))
        log("%s: %d tokens -> %s" % (name, len(vocab), os.path.join(out, name)))
        vocabs[name] = (vocab, {"size": len(vocab), "dir": os.path.join(out, name)})
    log("learned %d tokens in %.1fs" % (len(full), secs))
    bert = os.path.join(args.shared, "fixtures", "bert-base-uncased-tokenizer", "vocab.txt")
    if os.path.exists(bert):
        v = read_vocab_txt(bert)
        vocabs["bert-base-uncased"] = (v, {"size": len(v), "dir": os.path.dirname(bert)})

    for name, (vocab, info) in vocabs.items():
        wp = WordPiece(vocab)
        info["corpus"] = measure(wp, counts)
        for task, cnt in down.items():
            info[task] = measure(wp, cnt)
        report["vocabularies"][name] = info
        log("%-18s corpus %s" % (name, info["corpus"]))
        for task in down:
            log("%-18s %-6s %s" % ("", task, info[task]))
    heldout = args.check_text or os.path.join(os.path.dirname(corpus_file), "heldout.txt")
    if not args.no_check:
        tool = build_tokcheck()
        for name, (vocab, info) in vocabs.items():
            t0 = time.time()
            n, bad, first = check_with_peftd(info["dir"], WordPiece(vocab), heldout, tool)
            info["peftd_check"] = {"text": os.path.abspath(heldout), "lines": n, "lines_differing": bad,
                                   "first_difference": first, "seconds": round(time.time() - t0, 1)}
            log("%-18s peftd's tokenizer vs this encoder on %s: %d lines, %d differ" % (name, heldout, n, bad))
            if bad:
                log("  first difference: %s" % json.dumps(first, ensure_ascii=False))
    if args.peer_check:
        peer = install_peer(args.work)
        for name, (vocab, info) in vocabs.items():
            t0 = time.time()
            n, bad, first = compare_with(["node", os.path.join(peer, "encode.mjs"), info["dir"]], WordPiece(vocab),
                                         heldout)
            info["peer_check"] = {"implementation": "@lenml/tokenizers 3.7.2 (transformers.js port)",
                                  "lines": n, "lines_differing": bad, "first_difference": first,
                                  "seconds": round(time.time() - t0, 1)}
            log("%-18s @lenml/tokenizers vs this encoder: %d lines, %d differ" % (name, n, bad))
    report["seconds"] = round(time.time() - t_all, 1)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    log("done in %.1fs" % (time.time() - t_all))


if __name__ == "__main__":
    main()
