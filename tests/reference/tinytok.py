"""Small, independent Python tokenizers for the tiny reference vocabularies.

Two models, written from the Hugging Face `tokenizers` semantics (Rust crate,
read for behaviour only):

* BERT WordPiece  -- normalizers/bert.rs (BertNormalizer), pre_tokenizers/bert.rs
  (BertPreTokenizer), models/wordpiece/mod.rs, processors/template.rs.
* GPT-2 byte-level BPE -- pre_tokenizers/byte_level.rs (ByteLevel, the GPT-2
  regex, bytes_char), models/bpe/{model,word}.rs, processors/roberta.rs
  (RobertaProcessing, trim_offsets).

Everything returns ids AND character offsets into the ORIGINAL string (what the
Python binding of `tokenizers` reports), plus word ids and sequence ids, because
the question-answering post-processing needs them.

Truncation follows tokenizers/src/utils/truncation.rs (see `truncate_pair`)
and overflow windows follow Encoding::truncate in tokenizer/encoding.rs (see
`windows`).

Special-token strings typed inside the input text ARE recognised, as the
AddedVocabulary does for non-normalized special tokens (leftmost-longest match
on the raw text; RoBERTa's <mask> has lstrip=true and swallows the whitespace
before it). Not implemented: padding, left truncation, non-special added tokens.
"""

import json
import os
import unicodedata
from collections import Counter

# ============================================================================
# Unicode helpers (Rust semantics)
# ============================================================================

# Rust char::is_whitespace == Unicode White_Space property.
_WHITE_SPACE = set([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680,
                    0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
                   + list(range(0x2000, 0x200B)))


def is_white_space(c):
    return ord(c) in _WHITE_SPACE


def bert_is_whitespace(c):
    # normalizers/bert.rs: '\t' '\n' '\r' are whitespace, else char::is_whitespace
    return c in "\t\n\r" or is_white_space(c)


def bert_is_control(c):
    # normalizers/bert.rs: '\t' '\n' '\r' are not control; else "is_other":
    # general categories Cc, Cf, Cs, Co, Cn.
    if c in "\t\n\r":
        return False
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")


def bert_is_chinese_char(c):
    cp = ord(c)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF
            or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def bert_is_punctuation(c):
    # pre_tokenizers/bert.rs: is_ascii_punctuation || unicode P* category
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


class Token:
    __slots__ = ("id", "value", "start", "end", "word")

    def __init__(self, id_, value, start, end, word):
        self.id, self.value, self.start, self.end, self.word = id_, value, start, end, word

    def __repr__(self):
        return "Token(%d,%r,%d,%d,w%s)" % (self.id, self.value, self.start, self.end, self.word)


class Encoding:
    """One assembled sequence: what the model sees, plus bookkeeping."""

    def __init__(self):
        self.ids, self.type_ids, self.tokens = [], [], []
        self.offsets, self.word_ids, self.sequence_ids = [], [], []

    def add(self, tok, type_id, seq_id):
        self.ids.append(tok.id)
        self.type_ids.append(type_id)
        self.tokens.append(tok.value)
        self.offsets.append((tok.start, tok.end))
        self.word_ids.append(tok.word)
        self.sequence_ids.append(seq_id)

    def add_special(self, tid, value, type_id):
        self.add(Token(tid, value, 0, 0, None), type_id, None)

    def word_to_chars(self, word, seq_id):
        """tokenizers Encoding::word_to_chars restricted to `seq_id`:
        (start of first token of that word, end of last token of that word)."""
        idx = [i for i in range(len(self.ids))
               if self.sequence_ids[i] == seq_id and self.word_ids[i] == word]
        if not idx:
            return None
        return self.offsets[idx[0]][0], self.offsets[idx[-1]][1]


# ============================================================================
# Truncation (tokenizers/src/utils/truncation.rs) and overflow windows
# (Encoding::truncate in tokenizers/src/tokenizer/encoding.rs)
# ============================================================================

def truncate_pair(n1, n2, max_len):
    """LongestFirst for a pair, as truncate_encodings() computes it.

    max_len excludes the special tokens. Returns the kept lengths (k1, k2).
    NOTE: this is NOT "drop one token at a time from the longer one, second on
    ties": when both must be cut, the shorter-or-first one gets max_len // 2
    and the other max_len // 2 + max_len % 2; on equal lengths the SECOND
    sequence keeps the extra token.
    """
    if n1 + n2 <= max_len:
        return n1, n2
    swap = n1 > n2
    a, b = (n2, n1) if swap else (n1, n2)   # a = shorter
    if a > max_len:
        b = a
    else:
        b = max(a, max_len - a)
    if a + b > max_len:
        a = max_len // 2
        b = a + max_len % 2
    return (b, a) if swap else (a, b)


def windows(n, max_len, stride):
    """Ranges (start, stop) of the pieces Encoding::truncate(max_len, stride,
    Right) produces: the first piece is kept, the others become `overflowing`."""
    if max_len >= n:
        return [(0, n)]
    assert 0 <= stride < max_len
    step = max_len - stride
    out = []
    for start in range(0, n, step):
        stop = min(start + max_len, n)
        out.append((start, stop))
        if stop == n:
            break
    return out


# ============================================================================
# Post-processors
# ============================================================================

class BertTemplate:
    """TemplateProcessing "[CLS] $A:0 [SEP]:0" / "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1"."""

    def __init__(self, cls, sep):
        self.cls, self.sep = cls, sep   # (token, id)

    def added(self, pair):
        return 3 if pair else 2

    def assemble(self, a, b=None):
        e = Encoding()
        e.add_special(self.cls[1], self.cls[0], 0)
        for t in a:
            e.add(t, 0, 0)
        e.add_special(self.sep[1], self.sep[0], 0)
        if b is not None:
            for t in b:
                e.add(t, 1, 1)
            e.add_special(self.sep[1], self.sep[0], 1)
        return e

    def to_json(self):
        c, s = self.cls[0], self.sep[0]
        return {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": c, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": s, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": c, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": s, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": s, "type_id": 1}}],
            "special_tokens": {
                c: {"id": c, "ids": [self.cls[1]], "tokens": [c]},
                s: {"id": s, "ids": [self.sep[1]], "tokens": [s]},
            },
        }


_SPACE_SYM = None  # filled after bytes_to_unicode is defined


class RobertaProc:
    """RobertaProcessing: <s> A </s> and <s> A </s></s> B </s>, every type id 0,
    with ByteLevel offset trimming (trim_offsets=true, add_prefix_space=false)."""

    def __init__(self, cls, sep, trim_offsets=True, add_prefix_space=False):
        self.cls, self.sep = cls, sep
        self.trim_offsets, self.add_prefix_space = trim_offsets, add_prefix_space

    def added(self, pair):
        return 4 if pair else 2

    def _trim(self, toks):
        out = []
        for i, t in enumerate(toks):
            s, e = t.start, t.end
            lead = 0
            for ch in t.value:
                if ch == _SPACE_SYM or is_white_space(ch):
                    lead += 1
                else:
                    break
            trail = 0
            for ch in reversed(t.value):
                if ch == _SPACE_SYM or is_white_space(ch):
                    trail += 1
                else:
                    break
            if lead > 0:
                is_first = i == 0 or s == 0
                if is_first and self.add_prefix_space and lead == 1:
                    lead = 0
                s = min(s + lead, e)
            if trail > 0 and e >= trail:
                e = max(e - trail, s)
            out.append(Token(t.id, t.value, s, e, t.word))
        return out

    def assemble(self, a, b=None):
        if self.trim_offsets:
            a = self._trim(a)
            b = self._trim(b) if b is not None else None
        e = Encoding()
        e.add_special(self.cls[1], self.cls[0], 0)
        for t in a:
            e.add(t, 0, 0)
        e.add_special(self.sep[1], self.sep[0], 0)
        if b is not None:
            e.add_special(self.sep[1], self.sep[0], 0)
            for t in b:
                e.add(t, 0, 1)
            e.add_special(self.sep[1], self.sep[0], 0)
        return e

    def to_json(self):
        return {"type": "RobertaProcessing", "sep": [self.sep[0], self.sep[1]],
                "cls": [self.cls[0], self.cls[1]], "trim_offsets": self.trim_offsets,
                "add_prefix_space": self.add_prefix_space}


# ============================================================================
# Shared encode logic
# ============================================================================

class _Base:
    """Shared driver: special-token splitting, truncation, QA windows.
    Subclasses provide `specials` [(content, id, lstrip, rstrip)], `post`, and
    `_tokenize_range(text, start, end, word_base) -> (tokens, n_words)`."""

    model_max_length = 64

    def _find_specials(self, text):
        """AddedVocabulary split (non-normalized special tokens): leftmost-longest
        exact matches in the raw text; lstrip/rstrip widen a match over adjacent
        whitespace. Returns [(start, end, content, id)]."""
        out, i, n = [], 0, len(text)
        while i < n:
            best = None
            for content, tid, lstrip, rstrip in self.specials:
                if text.startswith(content, i) and (best is None or len(content) > len(best[0])):
                    best = (content, tid, lstrip, rstrip)
            if best is None:
                i += 1
                continue
            content, tid, lstrip, rstrip = best
            s, e = i, i + len(content)
            lo = out[-1][1] if out else 0
            if lstrip:
                while s > lo and is_white_space(text[s - 1]):
                    s -= 1
            if rstrip:
                while e < n and is_white_space(text[e]):
                    e += 1
            out.append((s, e, content, tid))
            i = e
        return out

    def tokenize(self, text):
        toks, pos, word = [], 0, 0
        for s, e, content, tid in self._find_specials(text) + [(len(text), len(text), None, None)]:
            if s > pos:
                t, nw = self._tokenize_range(text, pos, s, word)
                toks += t
                word += nw
            if content is not None:
                toks.append(Token(tid, content, s, e, word))
                word += 1
            pos = e
        return toks

    def encode(self, text, pair=None, max_length=None):
        """tokenizer(text, text_pair, truncation=True (longest_first), max_length)."""
        a = self.tokenize(text)
        b = self.tokenize(pair) if pair is not None else None
        if max_length is None:
            max_length = self.model_max_length
        room = max_length - self.post.added(b is not None)
        if b is None:
            a = a[:room]
        else:
            k1, k2 = truncate_pair(len(a), len(b), room)
            a, b = a[:k1], b[:k2]
        return self.post.assemble(a, b)

    def encode_qa(self, question, context, max_length, stride):
        """tokenizer(question, context, truncation="only_second", max_length,
        stride, return_overflowing_tokens=True): one Encoding per window."""
        q = self.tokenize(question)
        c = self.tokenize(context)
        room = max_length - self.post.added(True) - len(q)
        if room <= 0:
            raise ValueError("question too long for max_length")
        if len(c) <= room:
            return [self.post.assemble(q, c)]
        return [self.post.assemble(q, c[s:e]) for s, e in windows(len(c), room, stride)]


# ============================================================================
# BERT WordPiece
# ============================================================================

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Common English words for the tiny vocabulary (lowercase; BertNormalizer
# lowercases). Some words used by the golden inputs are deliberately missing
# so that they split into "##" pieces or single letters.
BERT_WORDS = """
the a an and or but if of to in on at by for with from as is are was were be been
being have has had do does did not no yes it its this that these those there here
i you he she we they me him her us them my your his our their what which who whom
whose when where why how all any both each few more most other some such only own
same so than too very can will just should would could may might must shall
one two three four five six seven eight nine ten first second third last next
new old good bad great little big small long short high low right left young early
late hot cold warm cool clear blue red green black white gold gray brown pink
day days night time year years week today tomorrow morning evening
man men woman women child children people person friend family mother father
world country city town river water sea lake rain snow sun sky light air fire earth
house home room door window table book books story plot movie movies film films
actor actors music song play game team school work job money car road
tower iron paris france london river bridge park garden tree trees flower flowers
bee bees honey hive wax food fruit bread milk tea coffee cafe
good nice fine wonderful beautiful boring funny sad happy love like liked loved
hate hated want wanted need needed know knew think thought see saw look looked
looks make made makes take took give gave get got go went come came say said
tell told ask asked use used find found feel felt try tried leave left call called
keep kept let begin began seem seemed help show showed hear heard run ran move
live lived believe bring brought happen happened write wrote written sit sat stand
stood lose lost pay paid meet met include continue set learn learned change led
understand watch watched follow followed stop create speak read spend grow grew
open opened walk walked win won offer remember consider appear buy wait serve
die died send sent expect build built stay fall fell cut reach kill remain
suggest raise pass sell require report decide pull
about above across after again against along also always among around because
before behind below between beyond during every except however inside into
near never often outside over since still through together toward under until
up down out off once then thus upon while within without well even ever almost
already enough quite rather really actually absolutely only
weather sunny outside inside minute minutes hour hours ending end start story
review positive negative neutral slow fast every worth watching again question
answer famous built wrote shelley mary only old blue because scatters scatter
more than flood flooded spring village farmers bank banks summer winter autumn
crops field fields hill hills valley north south east west people worker workers
collect pollen nectar queen colony flowers summer sugar store stores cell cells
cat sat mat birds bird dog dogs
word words sentence text token tokens number numbers
""".split()

BERT_SUBWORDS = """
##s ##es ##ed ##d ##ing ##ly ##er ##ers ##est ##ion ##ions ##tion ##able ##ful
##ness ##ment ##al ##ic ##y ##en ##ty ##ive ##ous ##ist ##ism ##ize ##ity ##less
##re ##ve ##ll ##t ##n ##th ##ph ##ch ##sh ##ou ##on ##an ##in ##ar ##or ##at
##it ##le ##li ##ri ##ro ##ra
""".split()


def build_bert_vocab():
    """Token list in id order: specials, every printable ASCII char, "##" +
    letters/digits, words, subwords (first occurrence wins)."""
    toks = list(BERT_SPECIALS)
    toks += [chr(c) for c in range(33, 127)]
    toks += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += ["##" + chr(c) for c in range(ord("0"), ord("9") + 1)]
    toks += BERT_WORDS + BERT_SUBWORDS
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


class WordPieceTokenizer(_Base):
    def __init__(self, vocab, lowercase=True, strip_accents=None, clean_text=True,
                 handle_chinese_chars=True, unk_token="[UNK]", prefix="##",
                 max_input_chars_per_word=100, model_max_length=64,
                 tokenizer_class="BertTokenizer"):
        self.vocab_list = list(vocab)
        self.vocab = {t: i for i, t in enumerate(self.vocab_list)}
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        self.unk_token, self.prefix = unk_token, prefix
        self.max_chars = max_input_chars_per_word
        self.model_max_length = model_max_length
        self.tokenizer_class = tokenizer_class
        self.post = BertTemplate(("[CLS]", self.vocab["[CLS]"]), ("[SEP]", self.vocab["[SEP]"]))
        self.specials = [(t, self.vocab[t], False, False) for t in BERT_SPECIALS]

    # -- BertNormalizer: clean -> chinese -> strip accents -> lowercase ----------
    def normalize(self, text, start=0, end=None):
        """Returns a list of (normalized_char, original_char_index)."""
        out = []
        do_strip = self.strip_accents if self.strip_accents is not None else self.lowercase
        for i in range(start, len(text) if end is None else end):
            c = text[i]
            if self.clean_text:
                if c == "\0" or c == "\ufffd" or bert_is_control(c):
                    continue
                if bert_is_whitespace(c):
                    c = " "
            pieces = [c]
            if self.handle_chinese_chars and bert_is_chinese_char(c):
                pieces = [" ", c, " "]
            res = []
            for p in pieces:
                if do_strip:
                    for d in unicodedata.normalize("NFD", p):
                        if unicodedata.category(d) != "Mn":
                            res.append(d)
                else:
                    res.append(p)
            if self.lowercase:
                res = [x for r in res for x in r.lower()]
            out.extend((r, i) for r in res)
        return out

    # -- BertPreTokenizer: split on whitespace (removed), punctuation (isolated)
    def pre_tokenize(self, norm):
        words, cur = [], []
        for ch, oi in norm:
            if is_white_space(ch):
                if cur:
                    words.append(cur)
                    cur = []
            elif bert_is_punctuation(ch):
                if cur:
                    words.append(cur)
                    cur = []
                words.append([(ch, oi)])
            else:
                cur.append((ch, oi))
        if cur:
            words.append(cur)
        return words

    # -- WordPiece: greedy longest-match-first ----------------------------------
    def _tokenize_range(self, text, start, end, word_base):
        toks = []
        words = self.pre_tokenize(self.normalize(text, start, end))
        for w, word in enumerate(words, word_base):
            chars = "".join(c for c, _ in word)
            first, last = word[0][1], word[-1][1] + 1
            unk = [Token(self.vocab[self.unk_token], self.unk_token, first, last, w)]
            if len(chars) > self.max_chars:
                toks.extend(unk)
                continue
            pieces, start, bad = [], 0, False
            while start < len(chars):
                end, found = len(chars), None
                while start < end:
                    sub = chars[start:end]
                    if start > 0:
                        sub = self.prefix + sub
                    if sub in self.vocab:
                        found = sub
                        break
                    end -= 1
                if found is None:
                    bad = True
                    break
                pieces.append(Token(self.vocab[found], found, word[start][1],
                                    word[end - 1][1] + 1, w))
                start = end
            toks.extend(unk if bad else pieces)
        return toks, len(words)

    # -- files -------------------------------------------------------------------
    def tokenizer_json(self):
        added = []
        for t in BERT_SPECIALS:
            added.append({"id": self.vocab[t], "content": t, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True})
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": self.clean_text,
                           "handle_chinese_chars": self.handle_chinese_chars,
                           "strip_accents": self.strip_accents,
                           "lowercase": self.lowercase},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": self.post.to_json(),
            "decoder": {"type": "WordPiece", "prefix": self.prefix, "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": self.unk_token,
                      "continuing_subword_prefix": self.prefix,
                      "max_input_chars_per_word": self.max_chars,
                      "vocab": {t: i for i, t in enumerate(self.vocab_list)}},
        }

    def tokenizer_config(self):
        dec = {}
        for t in BERT_SPECIALS:
            dec[str(self.vocab[t])] = {"content": t, "lstrip": False, "normalized": False,
                                       "rstrip": False, "single_word": False, "special": True}
        return {
            "added_tokens_decoder": dec,
            "clean_up_tokenization_spaces": False,
            "cls_token": "[CLS]",
            "do_lower_case": self.lowercase,
            "extra_special_tokens": {},
            "mask_token": "[MASK]",
            "model_max_length": self.model_max_length,
            "pad_token": "[PAD]",
            "sep_token": "[SEP]",
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.handle_chinese_chars,
            "tokenizer_class": self.tokenizer_class,
            "unk_token": "[UNK]",
        }

    def special_tokens_map(self):
        return {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
                "sep_token": "[SEP]", "unk_token": "[UNK]"}

    def save(self, d, with_tokenizer_json=True, with_vocab_txt=True):
        if with_tokenizer_json:
            _write_json(os.path.join(d, "tokenizer.json"), self.tokenizer_json())
        if with_vocab_txt:
            with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
                for t in self.vocab_list:
                    f.write(t + "\n")
        _write_json(os.path.join(d, "tokenizer_config.json"), self.tokenizer_config())
        _write_json(os.path.join(d, "special_tokens_map.json"), self.special_tokens_map())


# ============================================================================
# GPT-2 byte-level BPE
# ============================================================================

def bytes_to_unicode():
    """byte -> printable char: printable Latin-1 bytes map to themselves, the
    other 68 bytes to U+0100 + n in increasing byte order."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
            + list(range(0xAE, 0x100)))
    table, n = {}, 0
    for b in keep:
        table[b] = chr(b)
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {v: k for k, v in BYTE_TO_CHAR.items()}
_SPACE_SYM = BYTE_TO_CHAR[ord(" ")]   # 'Ġ'
# The 256 symbols in vocab order: printable ones first (in byte order), then the
# remapped ones, i.e. sorted by code point of the symbol.
BYTE_SYMBOLS = sorted(BYTE_TO_CHAR.values(), key=ord)


def _cat(c):
    return unicodedata.category(c)[0]


def gpt2_split(text):
    """The ByteLevel pre-tokenizer regex, hand-written (Python's `re` has no \\p{L}):
      's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    Returns [(start, end)] char spans covering the whole text."""
    n = len(text)
    is_l = lambda c: _cat(c) == "L"
    is_n = lambda c: _cat(c) == "N"
    is_o = lambda c: not is_white_space(c) and _cat(c) not in ("L", "N")
    spans, i = [], 0
    while i < n:
        j = None
        for suf in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
            if text.startswith(suf, i):
                j = i + len(suf)
                break
        if j is None:
            for cls in (is_l, is_n, is_o):
                k = i
                if text[k] == " " and k + 1 < n and cls(text[k + 1]):
                    k += 1
                if cls(text[k]):
                    while k < n and cls(text[k]):
                        k += 1
                    j = k
                    break
        if j is None:
            k = i
            while k < n and is_white_space(text[k]):
                k += 1
            assert k > i, "unclassifiable char %r" % text[i]
            if k == n or k - i == 1:
                j = k                # \s+(?!\S) at the end, or the plain \s+
            else:
                j = k - 1            # leave one space to prefix the next word
        spans.append((i, j))
        i = j
    return spans


def to_byte_level(text, start, end):
    """Chars of text[start:end] -> list of (byte_symbol, original_char_index)."""
    out = []
    for ci in range(start, end):
        for b in text[ci].encode("utf-8"):
            out.append((BYTE_TO_CHAR[b], ci))
    return out


def train_bpe(texts, num_merges, min_count=2):
    """Tiny deterministic BPE trainer: words from the GPT-2 split, pairs counted
    weighted by word frequency, the most frequent pair merged each step (ties
    broken by the lexicographically smallest pair)."""
    counts = Counter()
    for t in texts:
        for s, e in gpt2_split(t):
            counts["".join(c for c, _ in to_byte_level(t, s, e))] += 1
    words = {w: list(w) for w in sorted(counts)}
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for w, syms in words.items():
            for k in range(len(syms) - 1):
                pairs[(syms[k], syms[k + 1])] += counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < min_count:
            break
        merges.append(best)
        a, b = best
        for w, syms in words.items():
            new, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == a and syms[k + 1] == b:
                    new.append(a + b)
                    k += 2
                else:
                    new.append(syms[k])
                    k += 1
            words[w] = new
    return merges


ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


class ByteLevelBPETokenizer(_Base):
    def __init__(self, merges, model_max_length=64, tokenizer_class="RobertaTokenizer"):
        vocab = list(ROBERTA_SPECIALS) + list(BYTE_SYMBOLS)
        for a, b in merges:
            if a + b not in vocab:
                vocab.append(a + b)
        vocab.append("<mask>")
        self.vocab_list = vocab
        self.vocab = {t: i for i, t in enumerate(vocab)}
        assert len(self.vocab) == len(vocab)
        self.merges = list(merges)
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self.model_max_length = model_max_length
        self.tokenizer_class = tokenizer_class
        self.post = RobertaProc(("<s>", self.vocab["<s>"]), ("</s>", self.vocab["</s>"]))
        self.specials = [(t, self.vocab[t], t == "<mask>", False)
                         for t in ROBERTA_SPECIALS + ["<mask>"]]

    def bpe(self, syms):
        """Rank-based merging: repeatedly merge every occurrence (left to right)
        of the adjacent pair with the lowest merge rank."""
        syms = list(syms)
        while len(syms) > 1:
            best = None
            for k in range(len(syms) - 1):
                r = self.ranks.get((syms[k], syms[k + 1]))
                if r is not None and (best is None or r < best):
                    best = r
            if best is None:
                break
            a, b = self.merges[best]
            new, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == a and syms[k + 1] == b:
                    new.append(a + b)
                    k += 2
                else:
                    new.append(syms[k])
                    k += 1
            syms = new
        return syms

    def _tokenize_range(self, text, start, end, word_base):
        toks = []
        spans = gpt2_split(text[start:end])
        for w, (s, e) in enumerate(spans, word_base):
            bl = to_byte_level(text, start + s, start + e)
            pos = 0
            for piece in self.bpe([c for c, _ in bl]):
                ln = len(piece)
                toks.append(Token(self.vocab[piece], piece, bl[pos][1], bl[pos + ln - 1][1] + 1, w))
                pos += ln
        return toks, len(spans)

    def tokenizer_json(self):
        added = []
        for t in ROBERTA_SPECIALS + ["<mask>"]:
            added.append({"id": self.vocab[t], "content": t, "single_word": False,
                          "lstrip": t == "<mask>", "rstrip": False, "normalized": False,
                          "special": True})
        bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
              "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": dict(bl),
            "post_processor": self.post.to_json(),
            "decoder": dict(bl),
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {t: i for i, t in enumerate(self.vocab_list)},
                      "merges": ["%s %s" % m for m in self.merges]},
        }

    def tokenizer_config(self):
        dec = {}
        for t in ROBERTA_SPECIALS + ["<mask>"]:
            dec[str(self.vocab[t])] = {"content": t, "lstrip": t == "<mask>",
                                       "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True}
        return {
            "add_prefix_space": False,
            "added_tokens_decoder": dec,
            "bos_token": "<s>",
            "clean_up_tokenization_spaces": False,
            "cls_token": "<s>",
            "eos_token": "</s>",
            "errors": "replace",
            "extra_special_tokens": {},
            "mask_token": "<mask>",
            "model_max_length": self.model_max_length,
            "pad_token": "<pad>",
            "sep_token": "</s>",
            "tokenizer_class": self.tokenizer_class,
            "trim_offsets": True,
            "unk_token": "<unk>",
        }

    def special_tokens_map(self):
        return {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>",
                "mask_token": {"content": "<mask>", "lstrip": True, "normalized": False,
                               "rstrip": False, "single_word": False},
                "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}

    def save(self, d):
        _write_json(os.path.join(d, "tokenizer.json"), self.tokenizer_json())
        _write_json(os.path.join(d, "vocab.json"),
                    {t: i for i, t in enumerate(self.vocab_list)}, indent=None)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write("%s %s\n" % (a, b))
        _write_json(os.path.join(d, "tokenizer_config.json"), self.tokenizer_config())
        _write_json(os.path.join(d, "special_tokens_map.json"), self.special_tokens_map())


def _write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")
