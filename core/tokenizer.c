/* tokenizer.c - Hugging Face tokenizers in C: WordPiece (BERT) and byte-level BPE (RoBERTa).
 *
 * The pipeline is the one of the Rust `tokenizers` crate, stage by stage:
 *
 *   raw text -> added tokens matched on the raw text (normalized=false ones)
 *            -> normalizer (per remaining piece)
 *            -> added tokens matched on the normalized text (normalized=true ones)
 *            -> pre-tokenizer (BertPreTokenizer / ByteLevel / Whitespace[Split])
 *            -> model (WordPiece / BPE)
 *            -> offset trimming (ByteLevel or RobertaProcessing with trim_offsets)
 *
 * pd_tokenizer_assemble then adds the post-processor's special tokens.
 *
 * Offsets: the normalized text is kept as UTF-8 bytes, and each normalized byte carries the
 * byte range [s, e) of the ORIGINAL character it came from. A token spanning normalized bytes
 * [a, b) therefore has offsets [s(a), e(b-1)) in the caller's text, whatever the normalizer
 * did (lowercasing, NFD + accent removal, CJK spacing, control removal). As in the Rust
 * crate, a byte-level token holding only some bytes of a multi-byte character covers the
 * whole character (tokenizers' `offsets_when_char_split_up` test): offsets always fall on
 * character boundaries, so text[start..end) is valid UTF-8.
 *
 * Thread-safety: a loaded tokenizer is never written again; every tokenize call allocates
 * its own scratch (no cache, no globals). */
#include "tokenizer.h"
#include "json.h"
#include "unicode_tables.h"

#include <cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#define MAX_ID (1 << 22)            /* ids from this on are treated as hostile (32 MB of tables) */
#define MAX_FILE ((size_t)1 << 30)  /* tokenizer.json / vocab.txt size limit */
#define NORM_MAX 32                 /* code points one input character may normalize to */
#define TPL_MAX 16                  /* pieces in a post-processor template */
#define TPL_IDS_MAX 64              /* special-token ids across both templates */
#define NORM_STEPS_MAX 16

/* ==== Unicode tables ==== */

/* The tables (unicode_tables.h) are generated from Python 3.11's unicodedata (Unicode 14.0.0)
 * by scripts/gen-unicode-tables.py; tests/test_tokenizer.c checks they are its output.
 *
 * Coverage and approximations (each also noted where it is used):
 * - Categories: exact for Unicode 14. The Rust crate takes them from the older
 *   `unicode_categories` crate, so characters assigned since then may classify differently.
 *   Unassigned code points (Cn) are "control", as in the Rust is_other(), so BertNormalizer's
 *   clean_text deletes them.
 * - Lowercase: every one-to-one mapping of str.lower(), plus U+0130 -> "i\u0307" (the only
 *   one-to-many lowercase mapping), which is what Rust's char::to_lowercase gives.
 * - NFD: every canonical decomposition of Unicode 14 (Latin, Greek, Cyrillic, kana voiced
 *   marks, Indic nukta forms, Hebrew presentation forms, ...) and Hangul syllables
 *   (algorithmic), except the CJK compatibility ideographs U+F900-FAFF and U+2F800-2FA1F,
 *   which would map to a single unified ideograph and are left as they are. Combining marks
 *   that follow a base character are not canonically reordered (it makes no difference once
 *   accents are stripped, the only use of NFD in BERT). */

/* ==== Character classes ==== */

/* General category class of cp (PD_UC_*). ASCII is decided inline; the rest by binary search. */
static int uc_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) - 'a' < 26) return PD_UC_LETTER;
        if (cp - '0' < 10) return PD_UC_NUMBER;
        if (cp < 0x20 || cp == 0x7f) return PD_UC_CONTROL;
        if (cp == ' ' || strchr("$+<=>^`|~", (int)cp)) return PD_UC_OTHER; /* Sc, Sm, Sk */
        return PD_UC_PUNCT;
    }
    size_t lo = 0, hi = sizeof pd_uc_class_runs / sizeof pd_uc_class_runs[0];
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((pd_uc_class_runs[mid] >> 3) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(pd_uc_class_runs[lo] & 7);
}

/* White_Space property (Unicode 14): Rust's char::is_whitespace, regex \s, Oniguruma \s. */
static bool uc_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* BertNormalizer's is_whitespace: \t \n \r count even though they are controls. */
static bool bert_is_space(uint32_t cp) { return uc_is_space(cp); }

/* BertNormalizer's is_control: category C* (Cn included) except \t \n \r. */
static bool bert_is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    return uc_class(cp) == PD_UC_CONTROL;
}

/* BertPreTokenizer's is_bert_punc: ASCII punctuation (which includes the ASCII symbols
 * $+<=>^`|~) or general category P*. */
static bool bert_is_punct(uint32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    return cp >= 0x80 && uc_class(cp) == PD_UC_PUNCT;
}

/* BertNormalizer's is_chinese_char, with the ranges of the Rust source (which starts the
 * Extension C/D/E block at U+2B920 where BERT's Python has U+2B820). */
static bool bert_is_chinese(uint32_t cp) {
    return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
           (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
           (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/* Regex \w as the added-token single_word check uses it (approximation: letters, numbers,
 * nonspacing marks and '_'; spacing marks and Join_Control are left out). */
static bool uc_is_word(uint32_t cp) {
    int k = uc_class(cp);
    return k == PD_UC_LETTER || k == PD_UC_NUMBER || k == PD_UC_MARK || cp == '_';
}

/* One-to-one lowercase mapping (U+0130 is handled by the caller). */
static uint32_t uc_tolower(uint32_t cp) {
    if (cp < 0x80) return cp - 'A' < 26 ? cp + 32 : cp;
    size_t n = sizeof pd_uc_lower_runs / sizeof pd_uc_lower_runs[0];
    if (cp < pd_uc_lower_runs[0].first) return cp;
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (pd_uc_lower_runs[mid].first <= cp) lo = mid;
        else hi = mid;
    }
    const struct pd_uc_lower_run *r = &pd_uc_lower_runs[lo];
    uint32_t d = cp - r->first;
    if (d % r->stride == 0 && d / r->stride < r->count) return (uint32_t)((int32_t)cp + r->delta);
    return cp;
}

/* Canonical decomposition of cp into out[0..4); returns the count (1 if cp has none in our
 * coverage). */
static int uc_nfd(uint32_t cp, uint32_t *out) {
    if (cp - 0xac00 < 11172) { /* Hangul syllable: L V [T] (Unicode Standard, section 3.12) */
        uint32_t s = cp - 0xac00, tr = s % 28;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + (s % 588) / 28;
        if (!tr) return 2;
        out[2] = 0x11a7 + tr;
        return 3;
    }
    out[0] = cp;
    size_t lo = 0, hi = sizeof pd_uc_nfd_table / sizeof pd_uc_nfd_table[0];
    if (cp < (uint32_t)(pd_uc_nfd_table[0] >> 42) || cp > (uint32_t)(pd_uc_nfd_table[hi - 1] >> 42)) return 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = (uint32_t)(pd_uc_nfd_table[mid] >> 42);
        if (c == cp) {
            uint64_t e = pd_uc_nfd_table[mid];
            int n = 0;
            out[n++] = (uint32_t)(e >> 21) & 0x1fffff;
            for (int sh = 14; sh >= 0; sh -= 7)
                if ((e >> sh) & 0x7f) out[n++] = pd_uc_nfd_tail[((e >> sh) & 0x7f) - 1];
            return n;
        }
        if (c < cp) lo = mid + 1;
        else hi = mid;
    }
    return 1;
}

/* ==== UTF-8 ==== */

/* Decodes one UTF-8 sequence at s[0..n); returns its length (1-4) and sets *cp, or returns 0
 * for anything invalid (truncated, overlong, surrogate, above U+10FFFF). */
static int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) { len = 2; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

static int utf8_encode(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xc0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12)); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18)); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Returns the byte index of the first invalid sequence in s[0..n), or n if all is valid. */
static size_t utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}

static bool is_cont(uint8_t b) { return (b & 0xc0) == 0x80; }

/* ==== Hash tables ==== */

/* String -> int32 table, open addressing with linear probing, FNV-1a hashes. Keys live in
 * the tokenizer's arena (offset + length), so the arena may grow while the table fills. The
 * capacity is fixed at creation to at least twice the number of keys: there is always an
 * empty slot and probes stay short. */
typedef struct {
    uint32_t hash, koff, klen;
    int32_t val; /* -1: empty slot */
} str_slot;

typedef struct {
    str_slot *slots;
    uint32_t mask;
} str_table;

#define FNV_BASIS 2166136261u

static uint32_t fnv1a(uint32_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static bool mem_eq(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static pd_status strtab_init(str_table *tb, size_t nkeys) {
    size_t cap = 16;
    while (cap < 2 * nkeys) {
        if (cap > ((size_t)1 << 30)) return PD_ERR_TOO_LARGE;
        cap *= 2;
    }
    tb->slots = malloc(cap * sizeof *tb->slots);
    if (!tb->slots) return PD_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) tb->slots[i].val = -1;
    tb->mask = (uint32_t)(cap - 1);
    return PD_OK;
}

/* Looks up the key p1[0..n1) ++ p2[0..n2) (two parts so WordPiece can look up "##" + piece
 * without building the string). Returns the value or -1. */
static int32_t strtab_get2(const str_table *tb, const char *arena, const void *p1, size_t n1, const void *p2,
                           size_t n2) {
    if (!tb->slots) return -1;
    uint32_t h = fnv1a(fnv1a(FNV_BASIS, p1, n1), p2, n2);
    for (uint32_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
        const str_slot *s = &tb->slots[i];
        if (s->val < 0) return -1;
        if (s->hash == h && s->klen == n1 + n2 && mem_eq(arena + s->koff, p1, n1) &&
            mem_eq(arena + s->koff + n1, p2, n2))
            return s->val;
    }
}

/* Inserts or overwrites key -> val (a later duplicate wins, as in a Rust HashMap insert). The
 * table must have been sized for all keys by strtab_init. */
static void strtab_put(str_table *tb, const char *arena, uint32_t koff, uint32_t klen, int32_t val) {
    uint32_t h = fnv1a(FNV_BASIS, arena + koff, klen);
    for (uint32_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
        str_slot *s = &tb->slots[i];
        if (s->val < 0 || (s->hash == h && s->klen == klen && mem_eq(arena + s->koff, arena + koff, klen))) {
            s->hash = h;
            s->koff = koff;
            s->klen = klen;
            s->val = val;
            return;
        }
    }
}

/* BPE merges: (left id, right id) -> (rank, merged id), same scheme with a 64-bit mix. */
typedef struct {
    uint64_t key;
    int32_t rank; /* -1: empty slot */
    int32_t id;
} pair_slot;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ==== The tokenizer object ==== */

enum { NORM_CLEAN, NORM_CHINESE, NORM_NFD, NORM_STRIP, NORM_LOWER };
enum { PRE_NONE, PRE_BERT, PRE_BYTELEVEL, PRE_WHITESPACE, PRE_WS_SPLIT };
enum { TPL_A, TPL_B, TPL_SPECIAL };

typedef struct {
    uint32_t off, len;   /* content in the arena */
    uint32_t noff, nlen; /* content after the normalizer (matched when normalized) */
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* Added tokens of one kind (raw or normalized) bucketed by first byte, longest first: at a
 * given position the first hit in a bucket is the leftmost-longest match. */
typedef struct {
    int32_t start[257]; /* items[start[b] .. start[b+1]) begin with byte b */
    int32_t *items;     /* indices into pd_tokenizer.added */
    int n;
} added_set;

typedef struct {
    uint8_t kind; /* TPL_* */
    int32_t type_id;
    int first, n; /* TPL_SPECIAL: ids tpl_ids[first .. first+n) */
} tpl_piece;

struct pd_tokenizer {
    pd_tok_kind kind;

    char *arena; /* every string: vocab tokens, added tokens, WordPiece prefix */
    size_t arena_len, arena_cap;

    int32_t n_ids;    /* largest id + 1 */
    uint32_t *id_off; /* (n_ids) id -> text shown by id_to_token (added content wins) */
    int32_t *id_len;  /* (n_ids) -1 when no token has this id */
    str_table vocab;  /* model vocabulary: text -> id */
    size_t max_tok_len;

    int norm[NORM_STEPS_MAX]; /* NORM_* steps applied in order to every character */
    int n_norm;
    bool norm_lower;

    int pre; /* PRE_* */
    bool bl_add_prefix_space, bl_use_regex;

    int32_t unk_id;                 /* WordPiece: required; BPE: -1 when there is none */
    uint32_t wp_prefix_off, wp_prefix_len;
    int wp_max_chars;

    pair_slot *merges; /* BPE */
    uint32_t merges_mask;
    bool byte_level, bpe_fuse_unk, bpe_ignore_merges;
    int32_t byte_id[256];      /* id of each byte's byte-level character, -1 if absent */
    uint16_t byte_char[256];   /* GPT-2 bytes_to_unicode */

    added_tok *added;
    int n_added;
    str_table added_text; /* content -> id */
    added_set raw_set, norm_set;

    tpl_piece single[TPL_MAX], pair[TPL_MAX];
    int n_single, n_pair;
    int32_t tpl_ids[TPL_IDS_MAX];
    int n_tpl_ids;
    bool trim_offsets, pp_add_prefix_space;

    int32_t pad_id;
};

void pd_tokenizer_free(pd_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->id_off);
    free(t->id_len);
    free(t->vocab.slots);
    free(t->merges);
    free(t->added);
    free(t->added_text.slots);
    free(t->raw_set.items);
    free(t->norm_set.items);
    free(t);
}

static pd_tokenizer *tok_new(void) {
    pd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = -1;
    t->pad_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

/* Appends s[0..n) plus a NUL to the arena; *off gets its offset. */
static pd_status arena_add(pd_tokenizer *t, const void *s, size_t n, uint32_t *off) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return PD_ERR_TOO_LARGE;
        char *a = realloc(t->arena, cap);
        if (!a) return PD_ERR_NOMEM;
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n) memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    *off = (uint32_t)t->arena_len;
    t->arena_len += n + 1;
    return PD_OK;
}

/* Allocates the id -> text arrays for ids [0, n_ids). */
static pd_status ids_init(pd_tokenizer *t, int32_t n_ids) {
    t->n_ids = n_ids;
    t->id_off = calloc((size_t)n_ids + 1, sizeof *t->id_off);
    t->id_len = malloc(((size_t)n_ids + 1) * sizeof *t->id_len);
    if (!t->id_off || !t->id_len) return PD_ERR_NOMEM;
    for (int32_t i = 0; i < n_ids; i++) t->id_len[i] = -1;
    return PD_OK;
}

/* Adds one model vocabulary entry. */
static pd_status vocab_add(pd_tokenizer *t, const char *s, size_t n, int32_t id) {
    uint32_t off;
    pd_status st = arena_add(t, s, n, &off);
    if (st) return st;
    strtab_put(&t->vocab, t->arena, off, (uint32_t)n, id);
    t->id_off[id] = off;
    t->id_len[id] = (int32_t)n;
    if (n > t->max_tok_len) t->max_tok_len = n;
    return PD_OK;
}

static int32_t vocab_get(const pd_tokenizer *t, const char *s, size_t n) {
    return strtab_get2(&t->vocab, t->arena, NULL, 0, s, n);
}

/* ==== Normalization ==== */

/* Runs the normalizer steps on one code point; writes the result (0..NORM_MAX code points)
 * to out and returns the count. The steps are all character-local, so this is exact. */
static int norm_char(const pd_tokenizer *t, uint32_t cp, uint32_t *out) {
    if (cp >= 0x20 && cp < 0x7f) { /* printable ASCII: only lowercasing can change it */
        out[0] = t->norm_lower && cp - 'A' < 26 ? cp + 32 : cp;
        return 1;
    }
    uint32_t buf[2][NORM_MAX];
    int n = 1, cur = 0;
    buf[0][0] = cp;
    for (int s = 0; s < t->n_norm; s++) {
        const uint32_t *src = buf[cur];
        uint32_t *dst = buf[cur ^ 1];
        int m = 0;
        for (int i = 0; i < n; i++) {
            uint32_t c = src[i];
            PD_ASSERT(m + 4 <= NORM_MAX); /* load-time check bounds the expansion */
            switch (t->norm[s]) {
            case NORM_CLEAN:
                if (c == 0 || c == 0xfffd || bert_is_control(c)) break;
                dst[m++] = bert_is_space(c) ? ' ' : c;
                break;
            case NORM_CHINESE:
                if (bert_is_chinese(c)) {
                    dst[m++] = ' ';
                    dst[m++] = c;
                    dst[m++] = ' ';
                } else {
                    dst[m++] = c;
                }
                break;
            case NORM_NFD: m += uc_nfd(c, dst + m); break;
            case NORM_STRIP:
                if (uc_class(c) != PD_UC_MARK) dst[m++] = c;
                break;
            case NORM_LOWER:
                if (c == 0x130) {
                    dst[m++] = 'i';
                    dst[m++] = 0x307;
                } else {
                    dst[m++] = uc_tolower(c);
                }
                break;
            default: PD_ASSERT(0);
            }
        }
        n = m;
        cur ^= 1;
    }
    memcpy(out, buf[cur], (size_t)n * sizeof *out);
    return n;
}

/* ==== Per-call state ==== */

/* A byte string with, for every byte, the original range [s, e) of the character it came
 * from. */
typedef struct {
    const uint8_t *b;
    const int32_t *s, *e;
} span;

typedef struct {
    size_t a, b;
    int32_t id; /* -1: text to tokenize, else an added token */
} seg;

typedef struct {
    int32_t id, prev, next; /* id -1: merged into its left neighbour */
    uint32_t u0, u1;        /* bytes [u0, u1) of the word */
} bpe_sym;

typedef struct {
    int32_t rank, pos, id;
} bpe_cand;

typedef struct {
    const pd_tokenizer *t;
    const uint8_t *text;
    pd_tokens *out;
    uint8_t *nb; /* normalized piece, with its per-byte origins ns/ne */
    int32_t *ns, *ne;
    size_t nn, ncap;
    uint8_t *wb; /* ByteLevel: piece with the prefix space */
    int32_t *ws, *we;
    size_t wcap;
    seg *rseg, *nseg; /* added-token splits of the raw text and of one normalized piece */
    size_t rcap, ncapseg;
    bpe_sym *sym;
    size_t symcap;
    bpe_cand *heap;
    size_t heapcap;
    uint8_t *key;
    size_t keycap;
    int32_t word; /* index of the current pre-tokenized word, for pd_tokens.word */
    int64_t total; /* tokens produced so far; out holds the first min(total, keep) */
    int64_t keep;  /* tokens kept in out (INT64_MAX: all) */
    bool stop;     /* stop once keep tokens are known (no total asked for) */
} tok_ctx;

/* realloc for n elements of size sz, with overflow check. */
static void *realloc_n(void *p, size_t n, size_t sz) {
    if (n && sz > SIZE_MAX / n) return NULL;
    return realloc(p, n * sz);
}

static size_t grow_cap(size_t cap, size_t need) {
    size_t c = cap ? cap : 256;
    while (c < need) c *= 2;
    return c;
}

#define GROW(p, cap, need)                                                  \
    do {                                                                    \
        if ((need) > (cap)) {                                               \
            size_t nc_ = grow_cap((cap), (need));                           \
            void *q_ = realloc_n((p), nc_, sizeof *(p));                    \
            if (!q_) return PD_ERR_NOMEM;                                   \
            (p) = q_;                                                       \
            (cap) = nc_;                                                    \
        }                                                                   \
    } while (0)

static pd_status tokens_reserve(pd_tokens *o, int need) {
    if (need <= o->cap) return PD_OK;
    int nc = o->cap > 0 ? o->cap : 64;
    while (nc < need) {
        if (nc > INT_MAX / 2) return PD_ERR_NOMEM;
        nc *= 2;
    }
    int32_t *p = realloc_n(o->ids, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->ids = p;
    p = realloc_n(o->start, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->start = p;
    p = realloc_n(o->end, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->end = p;
    p = realloc_n(o->word, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->word = p;
    o->cap = nc;
    return PD_OK;
}

static pd_status emit(tok_ctx *c, int32_t id, int32_t s, int32_t e) {
    pd_tokens *o = c->out;
    if (c->total == INT64_MAX) return PD_ERR_NOMEM;
    if (c->total++ >= c->keep) return PD_OK; /* counted, not kept */
    if (o->n == INT_MAX) return PD_ERR_NOMEM;
    if (o->n >= o->cap) {
        pd_status st = tokens_reserve(o, o->n + 1);
        if (st) return st;
    }
    o->ids[o->n] = id;
    o->start[o->n] = s;
    o->end[o->n] = e;
    o->word[o->n] = c->word;
    o->n++;
    return PD_OK;
}

/* An added (special) token is a word of its own. */
static pd_status emit_word(tok_ctx *c, int32_t id, int32_t s, int32_t e) {
    c->word++;
    pd_status st = emit(c, id, s, e);
    c->word++;
    return st;
}

/* Normalizes the original text [a, b) into c->nb; every byte of each output character gets
 * the original range of the input character it came from. */
static pd_status normalize_piece(tok_ctx *c, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->nn = 0;
    size_t cap = c->ncap;
    for (size_t i = a; i < b;) {
        if (c->nn + 4 * NORM_MAX > cap) {
            size_t nc = grow_cap(cap, c->nn + 4 * NORM_MAX + (b - i));
            uint8_t *nb = realloc_n(c->nb, nc, 1);
            if (!nb) return PD_ERR_NOMEM;
            c->nb = nb;
            int32_t *p = realloc_n(c->ns, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ns = p;
            p = realloc_n(c->ne, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ne = p;
            c->ncap = cap = nc;
        }
        uint32_t cp, o[NORM_MAX];
        int l = utf8_decode(c->text + i, b - i, &cp);
        PD_ASSERT(l > 0); /* validated, and pieces start on character boundaries */
        int32_t s = (int32_t)i, e = (int32_t)(i + (size_t)l);
        int k = t->n_norm ? norm_char(t, cp, o) : 1;
        if (!t->n_norm || (k == 1 && o[0] == cp)) {
            memcpy(c->nb + c->nn, c->text + i, (size_t)l);
            for (int j = 0; j < l; j++, c->nn++) {
                c->ns[c->nn] = s;
                c->ne[c->nn] = e;
            }
        } else {
            for (int q = 0; q < k; q++) {
                int m = utf8_encode(o[q], c->nb + c->nn);
                for (int j = 0; j < m; j++, c->nn++) {
                    c->ns[c->nn] = s;
                    c->ne[c->nn] = e;
                }
            }
        }
        i += (size_t)l;
    }
    return PD_OK;
}

/* ==== Added tokens ==== */

/* Code point of the character ending just before byte i of s (i > 0). */
static uint32_t prev_char(const uint8_t *s, size_t lo, size_t i, size_t *start) {
    size_t j = i - 1;
    while (j > lo && is_cont(s[j])) j--;
    uint32_t cp = 0;
    if (!utf8_decode(s + j, i - j, &cp)) cp = 0;
    if (start) *start = j;
    return cp;
}

/* Splits s[a..b) on the added tokens of set, as AddedVocabulary::find_matches does:
 * leftmost-longest matches, single_word matches dropped when glued to a word character,
 * lstrip/rstrip widening the match over adjacent whitespace. Splits go to *out. One
 * difference: after a match widened by rstrip the search resumes after the whitespace it
 * swallowed (HF resumes right after the token), so splits never overlap. */
static pd_status find_added(const pd_tokenizer *t, const added_set *set, bool normalized, const uint8_t *s,
                            size_t a, size_t b, seg **out, size_t *cap, size_t *n) {
    *n = 0;
    size_t start_off = a, i = a;
    while (i < b) {
        int32_t lo = set->start[s[i]], hi = set->start[s[i] + 1];
        const added_tok *hit = NULL;
        uint32_t hlen = 0;
        for (int32_t k = lo; k < hi; k++) {
            const added_tok *at = &t->added[set->items[k]];
            uint32_t off = normalized ? at->noff : at->off, len = normalized ? at->nlen : at->len;
            if (len <= b - i && memcmp(t->arena + off, s + i, len) == 0) {
                hit = at;
                hlen = len;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t ms = i, me = i + hlen;
        uint32_t cp;
        if (hit->single_word) {
            bool glued = ms > a && uc_is_word(prev_char(s, a, ms, NULL));
            if (!glued && me < b && utf8_decode(s + me, b - me, &cp) && uc_is_word(cp)) glued = true;
            if (glued) {
                i = me;
                continue;
            }
        }
        if (hit->lstrip) {
            size_t p;
            while (ms > start_off && uc_is_space(prev_char(s, a, ms, &p))) ms = p;
        }
        if (hit->rstrip) {
            int l;
            while (me < b && (l = utf8_decode(s + me, b - me, &cp)) > 0 && uc_is_space(cp)) me += (size_t)l;
        }
        GROW(*out, *cap, *n + 2);
        if (start_off < ms) (*out)[(*n)++] = (seg){start_off, ms, -1};
        (*out)[(*n)++] = (seg){ms, me, hit->id};
        start_off = i = me;
    }
    GROW(*out, *cap, *n + 1);
    if (start_off < b) (*out)[(*n)++] = (seg){start_off, b, -1};
    return PD_OK;
}

/* ==== Models ==== */

/* WordPiece on the word w[a..b): greedy longest-match-first, continuation pieces looked up
 * with the prefix ("##"); a word longer than max_input_chars_per_word, or with a part no
 * piece matches, becomes one unk token over the whole word (models/wordpiece/mod.rs). */
static pd_status wp_word(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->word++;
    int32_t s0 = w.s[a], e0 = w.e[b - 1];
    size_t nch = 0;
    for (size_t i = a; i < b; i++) nch += !is_cont(w.b[i]);
    if (nch > (size_t)t->wp_max_chars) return emit(c, t->unk_id, s0, e0);
    int mark = c->out->n;
    int64_t mark_total = c->total;
    const char *pre = t->arena + t->wp_prefix_off;
    for (size_t pos = a; pos < b;) {
        size_t end = b;
        /* no vocabulary entry is longer than max_tok_len bytes: skip hopeless lookups */
        if (end - pos > t->max_tok_len) {
            end = pos + t->max_tok_len;
            while (end > pos && is_cont(w.b[end])) end--;
        }
        int32_t id = -1;
        while (end > pos) {
            id = pos > a ? strtab_get2(&t->vocab, t->arena, pre, t->wp_prefix_len, w.b + pos, end - pos)
                         : strtab_get2(&t->vocab, t->arena, NULL, 0, w.b + pos, end - pos);
            if (id >= 0) break;
            do end--;
            while (end > pos && is_cont(w.b[end]));
        }
        if (id < 0) {
            c->out->n = mark;
            c->total = mark_total;
            return emit(c, t->unk_id, s0, e0);
        }
        pd_status st = emit(c, id, w.s[pos], w.e[end - 1]);
        if (st) return st;
        pos = end;
    }
    return PD_OK;
}

static const pair_slot *merge_find(const pd_tokenizer *t, int32_t l, int32_t r) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const pair_slot *s = &t->merges[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

static bool cand_less(bpe_cand x, bpe_cand y) { return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos); }

static void heap_push(bpe_cand *h, size_t *n, bpe_cand v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(v, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < *n && cand_less(h[l], last)) m = l;
        if (l + 1 < *n && cand_less(h[l + 1], m == i ? last : h[l])) m = l + 1;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* Queues the merge of symbol pos with its right neighbour, if the merges table has it. */
static void bpe_queue(tok_ctx *c, size_t *nh, int32_t pos) {
    const bpe_sym *s = &c->sym[pos];
    if (s->next < 0) return;
    const pair_slot *m = merge_find(c->t, s->id, c->sym[s->next].id);
    if (m) heap_push(c->heap, nh, (bpe_cand){m->rank, pos, m->id});
}

/* Emits the BPE token made of word bytes [u0, u1). With trim_offsets, leading and trailing
 * spaces ('Ġ') leave the offsets as processors/byte_level.rs process_offsets does, including
 * its rule that keeps one leading space on the first token when add_prefix_space is set. */
static pd_status bpe_emit(tok_ctx *c, span w, uint32_t u0, uint32_t u1, int32_t id) {
    const pd_tokenizer *t = c->t;
    int32_t s = w.s[u0], e = w.e[u1 - 1];
    if (t->trim_offsets) {
        uint32_t lead = 0, trail = 0;
        while (u0 + lead < u1 && w.b[u0 + lead] == ' ') lead++;
        while (trail < u1 - u0 && w.b[u1 - 1 - trail] == ' ') trail++;
        if (lead == 1 && t->pp_add_prefix_space && (c->total == 0 || s == 0)) lead = 0;
        if (lead) s = u0 + lead < u1 ? w.s[u0 + lead] : e;
        if (trail) {
            int32_t ne = trail < u1 - u0 ? w.e[u1 - 1 - trail] : s;
            e = ne > s ? ne : s;
        }
        if (s > e) s = e;
    }
    return emit(c, id, s, e);
}

/* BPE on the word w[a..b) (models/bpe/model.rs merge_word + word.rs merge_all): one symbol
 * per byte (byte-level) or per character, unknown symbols become unk (fused if fuse_unk) or
 * are dropped when there is no unk token, then the lowest-ranked adjacent pair is merged
 * until none is left, leftmost first among equal ranks. A binary heap of candidate merges
 * (stale entries skipped on pop) keeps this O(n log n) per word. */
static pd_status bpe_word(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->word++;
    size_t n = b - a;
    if (n > INT32_MAX / 4) return PD_ERR_TOO_LARGE;
    if (t->bpe_ignore_merges) { /* a word already in the vocabulary is kept whole */
        GROW(c->key, c->keycap, 2 * n);
        size_t kn = 0;
        if (t->byte_level) {
            for (size_t i = a; i < b; i++) kn += (size_t)utf8_encode(t->byte_char[w.b[i]], c->key + kn);
        } else {
            memcpy(c->key, w.b + a, n);
            kn = n;
        }
        int32_t id = vocab_get(t, (const char *)c->key, kn);
        if (id >= 0) return bpe_emit(c, w, (uint32_t)a, (uint32_t)b, id);
    }
    GROW(c->sym, c->symcap, n);
    GROW(c->heap, c->heapcap, 3 * n + 1);
    int32_t ns = 0, open_unk = -1;
    for (size_t i = a; i < b;) {
        size_t l = 1;
        int32_t id;
        if (t->byte_level) {
            id = t->byte_id[w.b[i]];
        } else {
            while (i + l < b && is_cont(w.b[i + l])) l++;
            id = vocab_get(t, (const char *)w.b + i, l);
        }
        if (id >= 0) {
            c->sym[ns++] = (bpe_sym){id, -1, -1, (uint32_t)i, (uint32_t)(i + l)};
            open_unk = -1;
        } else if (t->unk_id >= 0) {
            if (open_unk >= 0 && t->bpe_fuse_unk) {
                c->sym[open_unk].u1 = (uint32_t)(i + l);
            } else {
                open_unk = ns;
                c->sym[ns++] = (bpe_sym){t->unk_id, -1, -1, (uint32_t)i, (uint32_t)(i + l)};
            }
        } /* else: HF drops a symbol it cannot represent */
        i += l;
    }
    if (!ns) return PD_OK;
    size_t nh = 0;
    for (int32_t i = 0; i < ns; i++) {
        c->sym[i].prev = i - 1;
        c->sym[i].next = i + 1 < ns ? i + 1 : -1;
    }
    if (t->merges)
        for (int32_t i = 0; i + 1 < ns; i++) bpe_queue(c, &nh, i);
    while (nh) {
        bpe_cand top = heap_pop(c->heap, &nh);
        bpe_sym *s = &c->sym[top.pos];
        if (s->id < 0 || s->next < 0) continue;
        bpe_sym *r = &c->sym[s->next];
        const pair_slot *m = merge_find(t, s->id, r->id);
        if (!m || m->id != top.id) continue; /* stale: one side changed since it was queued */
        s->id = top.id;
        s->u1 = r->u1;
        s->next = r->next;
        r->id = -1;
        if (s->next >= 0) c->sym[s->next].prev = top.pos;
        if (s->prev >= 0) bpe_queue(c, &nh, s->prev);
        bpe_queue(c, &nh, top.pos);
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next) {
        pd_status st = bpe_emit(c, w, c->sym[i].u0, c->sym[i].u1, c->sym[i].id);
        if (st) return st;
    }
    return PD_OK;
}

static pd_status model_word(tok_ctx *c, span w, size_t a, size_t b) {
    if (a >= b) return PD_OK;
    return c->t->kind == PD_TOK_WORDPIECE ? wp_word(c, w, a, b) : bpe_word(c, w, a, b);
}

/* ==== Pre-tokenizers ==== */

/* Whitespace-delimited pre-tokenizers: BertPreTokenizer (split on whitespace, removed, then
 * every punctuation character on its own), WhitespaceSplit, and Whitespace (\w+|[^\w\s]+). */
static pd_status pre_split(tok_ctx *c, span w, size_t a, size_t b) {
    int pre = c->t->pre;
    size_t start = SIZE_MAX;
    int kind = 0;
    pd_status st;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        int l = utf8_decode(w.b + i, b - i, &cp);
        PD_ASSERT(l > 0);
        if (uc_is_space(cp)) {
            if (start != SIZE_MAX && (st = model_word(c, w, start, i))) return st;
            start = SIZE_MAX;
        } else if (pre == PRE_BERT && bert_is_punct(cp)) {
            if (start != SIZE_MAX && (st = model_word(c, w, start, i))) return st;
            start = SIZE_MAX;
            if ((st = model_word(c, w, i, i + (size_t)l))) return st;
        } else {
            int k = pre == PRE_WHITESPACE ? (uc_is_word(cp) ? 1 : 2) : 0;
            if (start != SIZE_MAX && k != kind) {
                if ((st = model_word(c, w, start, i))) return st;
                start = SIZE_MAX;
            }
            if (start == SIZE_MAX) start = i;
            kind = k;
        }
        i += (size_t)l;
    }
    return start != SIZE_MAX ? model_word(c, w, start, b) : PD_OK;
}

enum { BL_SPACE, BL_LETTER, BL_NUMBER, BL_OTHER };

static int bl_kind(uint32_t cp) {
    if (uc_is_space(cp)) return BL_SPACE;
    int k = uc_class(cp);
    return k == PD_UC_LETTER ? BL_LETTER : k == PD_UC_NUMBER ? BL_NUMBER : BL_OTHER;
}

/* Length of a GPT-2 contraction ('s 't 're 've 'm 'll 'd) at s[0..n), 0 if none. */
static size_t bl_contraction(const uint8_t *s, size_t n) {
    if (n < 2 || s[0] != '\'') return 0;
    if (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd') return 2;
    if (n >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') || (s[1] == 'l' && s[2] == 'l')))
        return 3;
    return 0;
}

/* ByteLevel pre-tokenizer: optional prefix space, then the GPT-2 split
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * by hand: at each position the first alternative that matches wins, each run is greedy, and
 * \s+(?!\S) backs off one character so the last space of a run goes to the next word. The
 * bytes of each piece then go to BPE one by one (the byte-to-character mapping is folded
 * into byte_id). */
static pd_status pre_bytelevel(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    if (t->bl_add_prefix_space && w.b[a] != ' ') {
        size_t n = b - a + 1;
        if (n > c->wcap) {
            size_t nc = grow_cap(c->wcap, n);
            uint8_t *wb = realloc_n(c->wb, nc, 1);
            if (!wb) return PD_ERR_NOMEM;
            c->wb = wb;
            int32_t *p = realloc_n(c->ws, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ws = p;
            p = realloc_n(c->we, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->we = p;
            c->wcap = nc;
        }
        /* the added space stands for nothing in the original: an empty range before the
         * first character */
        c->wb[0] = ' ';
        c->ws[0] = c->we[0] = w.s[a];
        memcpy(c->wb + 1, w.b + a, b - a);
        memcpy(c->ws + 1, w.s + a, (b - a) * sizeof *c->ws);
        memcpy(c->we + 1, w.e + a, (b - a) * sizeof *c->we);
        w = (span){c->wb, c->ws, c->we};
        a = 0;
        b = n;
    }
    if (!t->bl_use_regex) return bpe_word(c, w, a, b);
    for (size_t i = a; i < b;) {
        uint32_t cp, cp2 = 0;
        int l = utf8_decode(w.b + i, b - i, &cp), l2 = 0;
        PD_ASSERT(l > 0);
        size_t j = i + bl_contraction(w.b + i, b - i);
        if (j == i) {
            if (i + (size_t)l < b) l2 = utf8_decode(w.b + i + l, b - i - (size_t)l, &cp2);
            int k = bl_kind(cp);
            size_t p = i + (size_t)l;
            if (cp == ' ' && l2 && bl_kind(cp2) != BL_SPACE) { /* " ?X+" */
                k = bl_kind(cp2);
                p += (size_t)l2;
            }
            if (k != BL_SPACE) {
                while (p < b) {
                    uint32_t q;
                    int ql = utf8_decode(w.b + p, b - p, &q);
                    if (bl_kind(q) != k) break;
                    p += (size_t)ql;
                }
                j = p;
            } else {
                size_t last = i; /* start of the last whitespace character of the run */
                while (p < b) {
                    uint32_t q;
                    int ql = utf8_decode(w.b + p, b - p, &q);
                    if (bl_kind(q) != BL_SPACE) break;
                    last = p;
                    p += (size_t)ql;
                }
                j = (p < b && last > i) ? last : p;
            }
        }
        pd_status st = bpe_word(c, w, i, j);
        if (st) return st;
        i = j;
    }
    return PD_OK;
}

static pd_status pretokenize(tok_ctx *c, span w, size_t a, size_t b) {
    if (a >= b) return PD_OK;
    switch (c->t->pre) {
    case PRE_NONE: return model_word(c, w, a, b);
    case PRE_BYTELEVEL: return pre_bytelevel(c, w, a, b);
    default: return pre_split(c, w, a, b);
    }
}

/* ==== Tokenize ==== */

/* Normalizes the original text [a, b) (no raw added token inside), extracts the normalized
 * added tokens, and pre-tokenizes + models the rest. */
static pd_status tokenize_piece(tok_ctx *c, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    pd_status st = normalize_piece(c, a, b);
    if (st || !c->nn) return st;
    span w = {c->nb, c->ns, c->ne};
    if (!t->norm_set.n) return pretokenize(c, w, 0, c->nn);
    size_t n;
    if ((st = find_added(t, &t->norm_set, true, c->nb, 0, c->nn, &c->nseg, &c->ncapseg, &n))) return st;
    for (size_t i = 0; i < n && !st; i++) {
        seg g = c->nseg[i];
        st = g.id >= 0 ? emit_word(c, g.id, c->ns[g.a], c->ne[g.b - 1]) : pretokenize(c, w, g.a, g.b);
    }
    return st;
}

/* Tokenizes the original text [a, b): splits on the raw added tokens, then each piece. */
static pd_status tokenize_range(tok_ctx *c, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    if (!t->raw_set.n) return tokenize_piece(c, a, b);
    size_t n;
    pd_status st = find_added(t, &t->raw_set, false, c->text, a, b, &c->rseg, &c->rcap, &n);
    for (size_t i = 0; i < n && !st; i++) {
        seg g = c->rseg[i];
        st = g.id >= 0 ? emit_word(c, g.id, (int32_t)g.a, (int32_t)g.b) : tokenize_piece(c, g.a, g.b);
    }
    return st;
}

/* Whether the text may be cut into chunks at a space between two printable ASCII characters
 * without changing a token: true when the pre-tokenizer splits there (every one but none and
 * a ByteLevel without its regex: a space between two non-spaces always starts a new word or
 * GPT-2 piece, and the next chunk starting with that space gets no prefix space) and no added
 * token could span the cut (a space in its content, or rstrip, which would swallow the space). */
static bool chunkable(const pd_tokenizer *t) {
    if (t->pre == PRE_NONE || (t->pre == PRE_BYTELEVEL && !t->bl_use_regex)) return false;
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *at = &t->added[i];
        if (at->rstrip || memchr(t->arena + at->off, ' ', at->len) || memchr(t->arena + at->noff, ' ', at->nlen)) return false;
    }
    return true;
}

/* Whether any code point of the UTF-8 bytes [p, p + n) is a CJK ideograph (bert_is_chinese). */
static bool has_chinese(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode(p + i, n - i, &cp);
        if (l <= 0) return false;
        if (bert_is_chinese(cp)) return true;
        i += (size_t)l;
    }
    return false;
}

/* Whether the text may also be cut between two CJK ideographs (a text without spaces, such as
 * Chinese, would otherwise be normalized whole): BERT's normalizer pads each one with spaces
 * (handle_chinese_chars), so each is a word of its own for every pre-tokenizer that splits at
 * spaces, and no added token holds one (it could span the cut). */
static bool cjk_cuttable(const pd_tokenizer *t) {
    bool chinese = false;
    for (int i = 0; i < t->n_norm; i++) chinese |= t->norm[i] == NORM_CHINESE;
    if (!chinese || (t->pre != PRE_BERT && t->pre != PRE_WHITESPACE && t->pre != PRE_WS_SPLIT)) return false;
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *at = &t->added[i];
        if (has_chinese((const uint8_t *)t->arena + at->off, at->len) ||
            has_chinese((const uint8_t *)t->arena + at->noff, at->nlen))
            return false;
    }
    return true;
}

/* Whether a CJK ideograph starts at s[x] and another ends there (x > a, a a character boundary:
 * the text is valid UTF-8). */
static bool cjk_pair_at(const uint8_t *s, size_t a, size_t x, size_t len) {
    if (s[x] < 0xe0 || (s[x] & 0xc0) == 0x80) return false; /* ideographs take 3 or 4 bytes */
    uint32_t cp;
    if (utf8_decode(s + x, len - x, &cp) <= 0 || !bert_is_chinese(cp)) return false;
    size_t p = x - 1;
    while (p > a && (s[p] & 0xc0) == 0x80) p--;
    return utf8_decode(s + p, x - p, &cp) == (int)(x - p) && bert_is_chinese(cp);
}

/* Bytes of text normalized at a time when the text may be cut (0: never cut). */
static size_t tok_chunk = 1 << 16;

void pd_tokenizer_set_chunk(size_t bytes) { tok_chunk = bytes; }

static bool ascii_graph(uint8_t b) { return b > 0x20 && b < 0x7f; }

/* The end of the chunk that starts at a: the first place at or after a + tok_chunk that is a
 * space between two printable ASCII characters or (cjk) the start of a CJK ideograph after
 * another, else len. */
static size_t chunk_end(const uint8_t *s, size_t a, size_t len, bool cjk) {
    if (!tok_chunk || len - a <= tok_chunk + 1) return len;
    for (size_t x = a + tok_chunk; x + 1 < len; x++) {
        if (s[x] == ' ' && ascii_graph(s[x - 1]) && ascii_graph(s[x + 1])) return x;
        if (cjk && cjk_pair_at(s, a, x, len)) return x;
    }
    return len;
}

pd_status pd_tokenizer_tokenize(const pd_tokenizer *t, const char *text, size_t len, pd_tokens *out, char *err,
                                size_t errlen) {
    return pd_tokenizer_tokenize_max(t, text, len, -1, out, NULL, err, errlen);
}

pd_status pd_tokenizer_tokenize_max(const pd_tokenizer *t, const char *text, size_t len, int max, pd_tokens *out,
                                    int64_t *total, char *err, size_t errlen) {
    if (!t || !out || (!text && len)) return pd_err(err, errlen, PD_ERR_INVALID, "tokenize: NULL argument");
    out->n = 0;
    if (total) *total = 0;
    if (len > (size_t)INT32_MAX - 8)
        return pd_err(err, errlen, PD_ERR_TOO_LARGE, "tokenize: text of %zu bytes is too long", len);
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = utf8_check(s, len);
    if (bad < len) return pd_err(err, errlen, PD_ERR_INVALID, "text is not valid UTF-8 (byte %zu)", bad);
    tok_ctx c = {.t = t, .text = s, .out = out, .keep = max < 0 ? INT64_MAX : max, .stop = total == NULL};
    pd_status st = PD_OK;
    bool cut = chunkable(t), cjk = cut && cjk_cuttable(t);
    for (size_t a = 0; a < len && !st;) {
        size_t b = cut ? chunk_end(s, a, len, cjk) : len;
        st = tokenize_range(&c, a, b);
        if (c.stop && c.total >= c.keep) break;
        a = b;
    }
    if (total) *total = c.total;
    free(c.nb);
    free(c.ns);
    free(c.ne);
    free(c.wb);
    free(c.ws);
    free(c.we);
    free(c.rseg);
    free(c.nseg);
    free(c.sym);
    free(c.heap);
    free(c.key);
    if (st) {
        out->n = 0;
        return pd_err(err, errlen, st, "tokenize: %s", st == PD_ERR_NOMEM ? "out of memory" : "word too long");
    }
    return PD_OK;
}

void pd_tokens_free(pd_tokens *t) {
    if (!t) return;
    free(t->ids);
    free(t->start);
    free(t->end);
    free(t->word);
    memset(t, 0, sizeof *t);
}

/* ==== Post-processing ==== */

int pd_tokenizer_num_special(const pd_tokenizer *t, int pair) {
    const tpl_piece *p = pair ? t->pair : t->single;
    int n = pair ? t->n_pair : t->n_single, k = 0;
    for (int i = 0; i < n; i++)
        if (p[i].kind == TPL_SPECIAL) k += p[i].n;
    return k;
}

int pd_tokenizer_assemble(const pd_tokenizer *t, const int32_t *a, int na, const int32_t *b, int nb, int32_t *ids,
                          int32_t *type_ids, int32_t *src, int32_t *idx) {
    const tpl_piece *p = nb >= 0 ? t->pair : t->single;
    int np = nb >= 0 ? t->n_pair : t->n_single, k = 0;
    for (int i = 0; i < np; i++) {
        if (p[i].kind == TPL_SPECIAL) {
            for (int j = 0; j < p[i].n; j++, k++) {
                ids[k] = t->tpl_ids[p[i].first + j];
                type_ids[k] = p[i].type_id;
                src[k] = -1;
                idx[k] = -1;
            }
            continue;
        }
        bool is_b = p[i].kind == TPL_B;
        const int32_t *x = is_b ? b : a;
        int nx = is_b ? nb : na;
        for (int j = 0; j < nx; j++, k++) {
            ids[k] = x[j];
            type_ids[k] = p[i].type_id;
            src[k] = is_b;
            idx[k] = j;
        }
    }
    return k;
}

/* ==== Accessors ==== */

pd_tok_kind pd_tokenizer_kind(const pd_tokenizer *t) { return t->kind; }
int pd_tokenizer_vocab_size(const pd_tokenizer *t) { return t->n_ids; }
int32_t pd_tokenizer_pad_id(const pd_tokenizer *t) { return t->pad_id >= 0 ? t->pad_id : 0; }

int32_t pd_tokenizer_token_to_id(const pd_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = strtab_get2(&t->added_text, t->arena, NULL, 0, token, n);
    return id >= 0 ? id : vocab_get(t, token, n);
}

const char *pd_tokenizer_id_to_token(const pd_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || t->id_len[id] < 0) return NULL;
    return t->arena + t->id_off[id];
}

/* ==== Building: shared by both loaders ==== */

/* Registers an added token (content s, flags) under id. */
static pd_status added_push(pd_tokenizer *t, const char *s, size_t n, int32_t id, bool single_word, bool lstrip,
                            bool rstrip, bool normalized, bool special) {
    added_tok *a = realloc_n(t->added, (size_t)t->n_added + 1, sizeof *a);
    if (!a) return PD_ERR_NOMEM;
    t->added = a;
    added_tok *at = &t->added[t->n_added++];
    memset(at, 0, sizeof *at);
    pd_status st = arena_add(t, s, n, &at->off);
    if (st) return st;
    at->len = (uint32_t)n;
    at->id = id;
    at->single_word = single_word;
    at->lstrip = lstrip;
    at->rstrip = rstrip;
    at->normalized = normalized;
    at->special = special;
    return PD_OK;
}

typedef struct {
    uint8_t first;
    uint32_t len;
    int32_t idx;
} added_key;

static int added_key_cmp(const void *x, const void *y) {
    const added_key *a = x, *b = y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Builds one matching set from the added tokens with the given `normalized` flag. */
static pd_status added_set_build(pd_tokenizer *t, added_set *set, bool normalized) {
    added_key *keys = malloc(((size_t)t->n_added + 1) * sizeof *keys);
    set->items = malloc(((size_t)t->n_added + 1) * sizeof *set->items);
    if (!keys || !set->items) {
        free(keys);
        return PD_ERR_NOMEM;
    }
    int n = 0;
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *at = &t->added[i];
        uint32_t len = normalized ? at->nlen : at->len, off = normalized ? at->noff : at->off;
        if (at->normalized != normalized || !len) continue;
        keys[n++] = (added_key){(uint8_t)t->arena[off], len, i};
    }
    qsort(keys, (size_t)n, sizeof *keys, added_key_cmp);
    memset(set->start, 0, sizeof set->start);
    for (int i = 0; i < n; i++) {
        set->items[i] = keys[i].idx;
        set->start[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++) set->start[b + 1] += set->start[b];
    set->n = n;
    free(keys);
    return PD_OK;
}

/* Final step of every loader: added-token tables (normalized contents go through the
 * normalizer, as AddedVocabulary::refresh_added_tokens does), id_to_token overrides, pad id,
 * sanity checks on the normalizer expansion. */
static pd_status tok_finish(pd_tokenizer *t, const char *file, char *err, size_t errlen) {
    pd_status st;
    int grow = 1;
    for (int i = 0; i < t->n_norm; i++) t->norm_lower |= t->norm[i] == NORM_LOWER;
    for (int i = 0; i < t->n_norm; i++) {
        int f = t->norm[i] == NORM_CHINESE ? 3 : t->norm[i] == NORM_NFD ? 4 : t->norm[i] == NORM_LOWER ? 2 : 1;
        grow *= f;
        if (grow > NORM_MAX - 4)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: sequence expands text too much", file);
    }
    if ((st = strtab_init(&t->added_text, (size_t)t->n_added))) return pd_err(err, errlen, st, "%s: out of memory", file);
    for (int i = 0; i < t->n_added; i++) {
        added_tok *at = &t->added[i];
        const char *s = t->arena + at->off;
        if (utf8_check((const uint8_t *)s, at->len) != at->len)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: added token %d is not valid UTF-8", file, (int)at->id);
        strtab_put(&t->added_text, t->arena, at->off, at->len, at->id);
        t->id_off[at->id] = at->off;
        t->id_len[at->id] = (int32_t)at->len;
        if (!at->normalized) continue;
        /* normalized content, built in a local buffer then copied to the arena */
        size_t cap = (size_t)at->len * 4 * NORM_MAX + 1, n = 0;
        uint8_t *buf = malloc(cap);
        if (!buf) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
        for (size_t j = 0; j < at->len;) {
            uint32_t cp, o[NORM_MAX];
            int l = utf8_decode((const uint8_t *)t->arena + at->off + j, at->len - j, &cp);
            int k = t->n_norm ? norm_char(t, cp, o) : (o[0] = cp, 1);
            for (int q = 0; q < k; q++) n += (size_t)utf8_encode(o[q], buf + n);
            j += (size_t)l;
        }
        st = arena_add(t, buf, n, &at->noff);
        free(buf);
        if (st) return pd_err(err, errlen, st, "%s: out of memory", file);
        at->nlen = (uint32_t)n;
    }
    if ((st = added_set_build(t, &t->raw_set, false)) || (st = added_set_build(t, &t->norm_set, true)))
        return pd_err(err, errlen, st, "%s: out of memory", file);
    if (t->pad_id < 0) {
        int32_t id = pd_tokenizer_token_to_id(t, "[PAD]");
        if (id < 0) id = pd_tokenizer_token_to_id(t, "<pad>");
        t->pad_id = id;
    }
    return PD_OK;
}

static pd_status tpl_add(pd_tokenizer *t, tpl_piece *tpl, int *n, int kind, int32_t type_id, const int32_t *ids,
                         int nids) {
    if (*n >= TPL_MAX || t->n_tpl_ids + nids > TPL_IDS_MAX) return PD_ERR_UNSUPPORTED;
    tpl_piece *p = &tpl[(*n)++];
    p->kind = (uint8_t)kind;
    p->type_id = type_id;
    p->first = t->n_tpl_ids;
    p->n = nids;
    for (int i = 0; i < nids; i++) t->tpl_ids[t->n_tpl_ids++] = ids[i];
    return PD_OK;
}

/* Templates of BertProcessing ([CLS] A [SEP] / [CLS] A [SEP] B [SEP], B part type 1) or
 * RobertaProcessing (<s> A </s> / <s> A </s> </s> B </s>, all type 0). */
static pd_status tpl_cls_sep(pd_tokenizer *t, int32_t cls, int32_t sep, bool roberta) {
    pd_status st;
    int32_t tb = roberta ? 0 : 1;
    t->n_single = t->n_pair = 0;
    if ((st = tpl_add(t, t->single, &t->n_single, TPL_SPECIAL, 0, &cls, 1)) ||
        (st = tpl_add(t, t->single, &t->n_single, TPL_A, 0, NULL, 0)) ||
        (st = tpl_add(t, t->single, &t->n_single, TPL_SPECIAL, 0, &sep, 1)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &cls, 1)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_A, 0, NULL, 0)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &sep, 1)))
        return st;
    if (roberta && (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &sep, 1))) return st;
    if ((st = tpl_add(t, t->pair, &t->n_pair, TPL_B, tb, NULL, 0)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, tb, &sep, 1)))
        return st;
    return PD_OK;
}

/* pd_tokenizer_assemble's callers size their arrays as na + nb + num_special: a template
 * must hold A exactly once, and B exactly once in a pair template and never in a single one. */
static bool tpl_valid(const tpl_piece *p, int n, bool pair) {
    int na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        na += p[i].kind == TPL_A;
        nb += p[i].kind == TPL_B;
    }
    return na == 1 && nb == (pair ? 1 : 0);
}

/* No post-processor: A alone, or A then B with type ids 0 and 1. */
static void tpl_plain(pd_tokenizer *t) {
    t->n_single = t->n_pair = 0;
    tpl_add(t, t->single, &t->n_single, TPL_A, 0, NULL, 0);
    tpl_add(t, t->pair, &t->n_pair, TPL_A, 0, NULL, 0);
    tpl_add(t, t->pair, &t->n_pair, TPL_B, 1, NULL, 0);
}

/* ==== Loading tokenizer.json ==== */

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static bool jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Optional boolean member: absent or null leaves *v; true/false set it; else an error. */
static pd_status jbool(const cJSON *o, const char *k, bool *v, const char *file, const char *ctx, char *err,
                       size_t errlen) {
    const cJSON *x = jget(o, k);
    if (jnull(x)) return PD_OK;
    if (!cJSON_IsBool(x)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s.%s: expected a boolean", file, ctx, k);
    *v = cJSON_IsTrue(x);
    return PD_OK;
}

/* An integer in [lo, hi] from a JSON number; false if it is not one. */
static bool jint(const cJSON *x, double lo, double hi, int32_t *v) {
    if (!cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) return false;
    *v = (int32_t)d;
    return true;
}

/* Optional string member: absent or null gives NULL (and PD_OK); a non-string is an error. */
static pd_status jstr(const cJSON *o, const char *k, const char **v, const char *file, const char *ctx, char *err,
                      size_t errlen) {
    const cJSON *x = jget(o, k);
    *v = NULL;
    if (jnull(x)) return PD_OK;
    if (!cJSON_IsString(x)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s.%s: expected a string", file, ctx, k);
    *v = x->valuestring;
    return PD_OK;
}

static const char *jtype(const cJSON *o) {
    const cJSON *x = jget(o, "type");
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static pd_status parse_normalizer(pd_tokenizer *t, const cJSON *n, int depth, const char *file, char *err,
                                  size_t errlen) {
    if (jnull(n)) return PD_OK;
    const char *type = jtype(n);
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: normalizer: missing \"type\"", file);
    int steps[5], ns = 0;
    pd_status st;
    if (!strcmp(type, "BertNormalizer")) {
        bool clean = true, chinese = true, lower = true, strip;
        if ((st = jbool(n, "clean_text", &clean, file, "normalizer", err, errlen)) ||
            (st = jbool(n, "handle_chinese_chars", &chinese, file, "normalizer", err, errlen)) ||
            (st = jbool(n, "lowercase", &lower, file, "normalizer", err, errlen)))
            return st;
        strip = lower; /* strip_accents: null means "follow lowercase" */
        if ((st = jbool(n, "strip_accents", &strip, file, "normalizer", err, errlen))) return st;
        if (clean) steps[ns++] = NORM_CLEAN;
        if (chinese) steps[ns++] = NORM_CHINESE;
        if (strip) {
            steps[ns++] = NORM_NFD;
            steps[ns++] = NORM_STRIP;
        }
        if (lower) steps[ns++] = NORM_LOWER;
    } else if (!strcmp(type, "Lowercase")) {
        steps[ns++] = NORM_LOWER;
    } else if (!strcmp(type, "NFD")) {
        steps[ns++] = NORM_NFD;
    } else if (!strcmp(type, "StripAccents")) {
        steps[ns++] = NORM_STRIP;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(n, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: normalizer.normalizers: expected an array", file);
        if (depth > 4) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: nested too deeply", file);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_normalizer(t, it, depth + 1, file, err, errlen))) return st;
        }
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", file, type);
    }
    for (int i = 0; i < ns; i++) {
        if (t->n_norm >= NORM_STEPS_MAX)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: too many steps", file);
        t->norm[t->n_norm++] = steps[i];
    }
    return PD_OK;
}

static pd_status parse_pre_tokenizer(pd_tokenizer *t, const cJSON *p, const char *file, char *err, size_t errlen) {
    t->pre = PRE_NONE;
    if (jnull(p)) return PD_OK;
    const char *type = jtype(p);
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: pre_tokenizer: missing \"type\"", file);
    if (!strcmp(type, "BertPreTokenizer")) {
        t->pre = PRE_BERT;
    } else if (!strcmp(type, "Whitespace")) {
        t->pre = PRE_WHITESPACE;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        t->pre = PRE_WS_SPLIT;
    } else if (!strcmp(type, "ByteLevel")) {
        pd_status st;
        t->pre = PRE_BYTELEVEL;
        t->bl_add_prefix_space = t->bl_use_regex = true;
        if ((st = jbool(p, "add_prefix_space", &t->bl_add_prefix_space, file, "pre_tokenizer", err, errlen)) ||
            (st = jbool(p, "use_regex", &t->bl_use_regex, file, "pre_tokenizer", err, errlen)))
            return st;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers: expected an array", file);
        if (cJSON_GetArraySize(list) != 1)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer: a Sequence of %d is not supported",
                          file, cJSON_GetArraySize(list));
        if (cJSON_IsObject(list->child) && jtype(list->child) && !strcmp(jtype(list->child), "Sequence"))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer: nested Sequence", file);
        return parse_pre_tokenizer(t, list->child, file, err, errlen);
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", file, type);
    }
    return PD_OK;
}

/* Reads ["token", id] (BertProcessing / RobertaProcessing cls and sep). */
static pd_status parse_tok_pair(const cJSON *p, const char *k, int32_t *id, const char *file, char *err,
                                size_t errlen) {
    const cJSON *x = jget(p, k);
    if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(x->child) ||
        !jint(x->child->next, 0, MAX_ID - 1, id))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected [\"token\", id]", file, k);
    return PD_OK;
}

static pd_status parse_template(pd_tokenizer *t, const cJSON *p, const char *which, tpl_piece *tpl, int *n,
                                const char *file, char *err, size_t errlen) {
    const cJSON *list = jget(p, which), *it, *specials = jget(p, "special_tokens");
    if (!cJSON_IsArray(list))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected an array", file, which);
    *n = 0;
    cJSON_ArrayForEach(it, list) {
        const cJSON *sp = jget(it, "SpecialToken"), *sq = jget(it, "Sequence"), *x = sp ? sp : sq;
        const cJSON *name = jget(x, "id");
        int32_t type_id = 0, ids[TPL_IDS_MAX];
        int nids = 0;
        if (!x || !cJSON_IsString(name))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected SpecialToken or Sequence pieces",
                          file, which);
        if (!jnull(jget(x, "type_id")) && !jint(jget(x, "type_id"), 0, 1 << 16, &type_id))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: bad type_id", file, which);
        int kind;
        if (sq) {
            if (!strcmp(name->valuestring, "A")) kind = TPL_A;
            else if (!strcmp(name->valuestring, "B")) kind = TPL_B;
            else
                return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: sequence id \"%s\"", file, which,
                              name->valuestring);
        } else {
            kind = TPL_SPECIAL;
            const cJSON *def = jget(specials, name->valuestring), *idl = jget(def, "ids"), *v;
            if (!cJSON_IsArray(idl))
                return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.special_tokens: no ids for \"%s\"",
                              file, name->valuestring);
            cJSON_ArrayForEach(v, idl) {
                if (nids >= TPL_IDS_MAX || !jint(v, 0, MAX_ID - 1, &ids[nids]))
                    return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.special_tokens.%s: bad ids", file,
                                  name->valuestring);
                nids++;
            }
        }
        if (tpl_add(t, tpl, n, kind, type_id, ids, nids))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor: template too long", file);
    }
    return PD_OK;
}

/* Post-processors: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (only
 * trims offsets) and a Sequence of those. */
static pd_status parse_post_processor(pd_tokenizer *t, const cJSON *p, int depth, const char *file, char *err,
                                      size_t errlen) {
    if (jnull(p)) return PD_OK;
    const char *type = jtype(p);
    pd_status st;
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor: missing \"type\"", file);
    if (!strcmp(type, "TemplateProcessing")) {
        t->n_tpl_ids = 0;
        if ((st = parse_template(t, p, "single", t->single, &t->n_single, file, err, errlen)) ||
            (st = parse_template(t, p, "pair", t->pair, &t->n_pair, file, err, errlen)))
            return st;
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        bool roberta = type[0] == 'R';
        int32_t cls, sep;
        if ((st = parse_tok_pair(p, "cls", &cls, file, err, errlen)) ||
            (st = parse_tok_pair(p, "sep", &sep, file, err, errlen)))
            return st;
        t->n_tpl_ids = 0;
        if (tpl_cls_sep(t, cls, sep, roberta)) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor", file);
        if (roberta) {
            bool trim = true, aps = true;
            if ((st = jbool(p, "trim_offsets", &trim, file, "post_processor", err, errlen)) ||
                (st = jbool(p, "add_prefix_space", &aps, file, "post_processor", err, errlen)))
                return st;
            t->trim_offsets = trim;
            t->pp_add_prefix_space = aps;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        bool trim = true, aps = true;
        if ((st = jbool(p, "trim_offsets", &trim, file, "post_processor", err, errlen)) ||
            (st = jbool(p, "add_prefix_space", &aps, file, "post_processor", err, errlen)))
            return st;
        t->trim_offsets = trim;
        t->pp_add_prefix_space = aps;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(p, "processors"), *it;
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.processors: expected an array", file);
        if (depth > 2) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor: nested too deeply", file);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_post_processor(t, it, depth + 1, file, err, errlen))) return st;
        }
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", file, type);
    }
    return PD_OK;
}

/* Reads the model's "vocab" object into the vocabulary (ids must already be allocated). */
static pd_status parse_vocab(pd_tokenizer *t, const cJSON *vocab, const char *file, char *err, size_t errlen) {
    const cJSON *it;
    pd_status st;
    if ((st = strtab_init(&t->vocab, (size_t)cJSON_GetArraySize(vocab))))
        return pd_err(err, errlen, st, "%s: model.vocab: too large", file);
    cJSON_ArrayForEach(it, vocab) {
        int32_t id;
        if (!jint(it, 0, MAX_ID - 1, &id) || !it->string)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.vocab: bad id for \"%.40s\"", file,
                          it->string ? it->string : "");
        if ((st = vocab_add(t, it->string, strlen(it->string), id))) return pd_err(err, errlen, st, "%s: out of memory", file);
    }
    return PD_OK;
}

/* Splits one merges entry: "a b" (exactly one space, as tokenizers' convert_merges_to_hashmap
 * requires) or ["a", "b"]. */
static bool merge_parts(const cJSON *m, const char **l, size_t *ll, const char **r, size_t *rl) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return false;
        *l = s;
        *ll = (size_t)(sp - s);
        *r = sp + 1;
        *rl = strlen(sp + 1);
        return true;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *l = m->child->valuestring;
        *ll = strlen(*l);
        *r = m->child->next->valuestring;
        *rl = strlen(*r);
        return true;
    }
    return false;
}

static pd_status parse_bpe(pd_tokenizer *t, const cJSON *model, const char *file, char *err, size_t errlen) {
    const cJSON *merges = jget(model, "merges"), *it;
    pd_status st;
    const char *unk, *csp, *eow;
    bool byte_fallback = false, fuse = false, ignore = false;
    if ((st = jstr(model, "unk_token", &unk, file, "model", err, errlen)) ||
        (st = jstr(model, "continuing_subword_prefix", &csp, file, "model", err, errlen)) ||
        (st = jstr(model, "end_of_word_suffix", &eow, file, "model", err, errlen)) ||
        (st = jbool(model, "byte_fallback", &byte_fallback, file, "model", err, errlen)) ||
        (st = jbool(model, "fuse_unk", &fuse, file, "model", err, errlen)) ||
        (st = jbool(model, "ignore_merges", &ignore, file, "model", err, errlen)))
        return st;
    if ((csp && *csp) || (eow && *eow))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "%s: model: BPE continuing_subword_prefix / end_of_word_suffix are not supported", file);
    if (byte_fallback) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model: BPE byte_fallback is not supported", file);
    const cJSON *dropout = jget(model, "dropout");
    if (!jnull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model: BPE dropout is not supported", file);
    t->bpe_fuse_unk = fuse;
    t->bpe_ignore_merges = ignore;
    if (unk) {
        t->unk_id = vocab_get(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in the vocabulary", file, unk);
    }
    if (jnull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges: expected an array", file);
    size_t nm = merges ? (size_t)cJSON_GetArraySize(merges) : 0, cap = 16;
    while (cap < 2 * nm) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
    for (size_t i = 0; i < cap; i++) t->merges[i].rank = -1;
    t->merges_mask = (uint32_t)(cap - 1);
    int32_t rank = 0;
    if (merges) cJSON_ArrayForEach(it, merges) {
        const char *l, *r;
        size_t ll, rl;
        if (!merge_parts(it, &l, &ll, &r, &rl))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", file,
                          (int)rank);
        int32_t a = vocab_get(t, l, ll), b = vocab_get(t, r, rl);
        int32_t m = strtab_get2(&t->vocab, t->arena, l, ll, r, rl);
        if (a < 0 || b < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: \"%.*s\" is not in the vocabulary", file,
                          (int)rank, a < 0 ? (int)(ll > 40 ? 40 : ll) : (int)(rl > 40 ? 40 : rl), a < 0 ? l : r);
        if (m < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: merged token \"%.*s%.*s\" is not in the vocabulary",
                          file, (int)rank, (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r);
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
            pair_slot *s = &t->merges[i];
            if (s->rank < 0 || s->key == key) { /* a duplicate merge keeps the later rank (HashMap collect) */
                *s = (pair_slot){key, rank, m};
                break;
            }
        }
        rank++;
    }
    /* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to U+0100.. */
    int k = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        t->byte_char[b] = (uint16_t)(printable ? b : 256 + k++);
        uint8_t u[4];
        int n = utf8_encode(t->byte_char[b], u);
        t->byte_id[b] = vocab_get(t, (const char *)u, (size_t)n);
    }
    return PD_OK;
}

static pd_status parse_wordpiece(pd_tokenizer *t, const cJSON *model, const char *file, char *err, size_t errlen) {
    const char *unk, *prefix;
    pd_status st;
    if ((st = jstr(model, "unk_token", &unk, file, "model", err, errlen)) ||
        (st = jstr(model, "continuing_subword_prefix", &prefix, file, "model", err, errlen)))
        return st;
    if (!unk) unk = "[UNK]";
    if (!prefix) prefix = "##";
    t->unk_id = vocab_get(t, unk, strlen(unk));
    if (t->unk_id < 0)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in the vocabulary", file, unk);
    if ((st = arena_add(t, prefix, strlen(prefix), &t->wp_prefix_off))) return pd_err(err, errlen, st, "%s: out of memory", file);
    t->wp_prefix_len = (uint32_t)strlen(prefix);
    int32_t mc = 100;
    const cJSON *x = jget(model, "max_input_chars_per_word");
    if (!jnull(x) && !jint(x, 0, INT32_MAX, &mc))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.max_input_chars_per_word: expected an integer", file);
    t->wp_max_chars = mc;
    return PD_OK;
}

static pd_status parse_added_tokens(pd_tokenizer *t, const cJSON *list, const char *file, char *err, size_t errlen) {
    const cJSON *it;
    pd_status st;
    int i = -1;
    cJSON_ArrayForEach(it, list) {
        i++;
        const cJSON *content = jget(it, "content");
        int32_t id;
        bool sw = false, ls = false, rs = false, special = false, norm;
        if (!cJSON_IsString(content) || !jint(jget(it, "id"), 0, MAX_ID - 1, &id))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: added_tokens[%d]: needs \"id\" and \"content\"", file, i);
        if ((st = jbool(it, "special", &special, file, "added_tokens", err, errlen))) return st;
        norm = !special;
        if ((st = jbool(it, "single_word", &sw, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "lstrip", &ls, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "rstrip", &rs, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "normalized", &norm, file, "added_tokens", err, errlen)))
            return st;
        if (!*content->valuestring) continue; /* HF ignores empty added tokens */
        if ((st = added_push(t, content->valuestring, strlen(content->valuestring), id, sw, ls, rs, norm, special)))
            return pd_err(err, errlen, st, "%s: out of memory", file);
    }
    return PD_OK;
}

static pd_status load_json_named(const char *json, size_t len, const char *file, pd_tokenizer **out, char *err,
                                 size_t errlen) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        if (pd_json_parse_failure(json, len) == PD_ERR_NOMEM) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory parsing it", file);
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", file, at);
    }
    pd_tokenizer *t = tok_new();
    pd_status st = PD_OK;
    const cJSON *model = jget(root, "model"), *vocab = jget(model, "vocab"), *added = jget(root, "added_tokens"), *it;
    const char *type = jtype(model);
    if (!t) {
        st = pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: expected a JSON object", file);
        goto done;
    }
    if (!cJSON_IsObject(model)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: missing \"model\" object", file);
        goto done;
    }
    if (!type) { /* files from old tokenizers versions leave the type implicit */
        if (jget(model, "merges")) type = "BPE";
        else if (jget(model, "continuing_subword_prefix") || jget(model, "max_input_chars_per_word")) type = "WordPiece";
        else type = "?";
    }
    if (!strcmp(type, "WordPiece")) t->kind = PD_TOK_WORDPIECE;
    else if (!strcmp(type, "BPE")) t->kind = PD_TOK_BPE;
    else {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (WordPiece and BPE are)",
                    file, type);
        goto done;
    }
    if (!cJSON_IsObject(vocab)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.vocab: expected an object", file);
        goto done;
    }
    if (!jnull(added) && !cJSON_IsArray(added)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: added_tokens: expected an array", file);
        goto done;
    }
    /* ids span the model vocabulary and the added tokens */
    int32_t max_id = -1, id;
    cJSON_ArrayForEach(it, vocab) if (jint(it, 0, MAX_ID - 1, &id) && id > max_id) max_id = id;
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added) if (jint(jget(it, "id"), 0, MAX_ID - 1, &id) && id > max_id) max_id = id;
    if ((st = ids_init(t, max_id + 1))) {
        st = pd_err(err, errlen, st, "%s: out of memory", file);
        goto done;
    }
    if ((st = parse_vocab(t, vocab, file, err, errlen))) goto done;
    st = t->kind == PD_TOK_WORDPIECE ? parse_wordpiece(t, model, file, err, errlen) : parse_bpe(t, model, file, err, errlen);
    if (st) goto done;
    if (cJSON_IsArray(added) && (st = parse_added_tokens(t, added, file, err, errlen))) goto done;
    if ((st = parse_normalizer(t, jget(root, "normalizer"), 0, file, err, errlen))) goto done;
    if ((st = parse_pre_tokenizer(t, jget(root, "pre_tokenizer"), file, err, errlen))) goto done;
    if (t->pre == PRE_BYTELEVEL && t->kind != PD_TOK_BPE) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: ByteLevel pre-tokenizer needs a BPE model", file);
        goto done;
    }
    t->byte_level = t->pre == PRE_BYTELEVEL;
    tpl_plain(t);
    if ((st = parse_post_processor(t, jget(root, "post_processor"), 0, file, err, errlen))) goto done;
    const cJSON *padding = jget(root, "padding");
    if (cJSON_IsObject(padding) && !jint(jget(padding, "pad_id"), 0, MAX_ID - 1, &t->pad_id)) t->pad_id = -1;
    if ((st = tok_finish(t, file, err, errlen))) goto done;
    if (!tpl_valid(t->single, t->n_single, false) || !tpl_valid(t->pair, t->n_pair, true)) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                    "%s: post_processor: templates must hold sequence A once (and B once for pairs)", file);
        goto done;
    }
    /* every id the post-processor emits must exist, or the model would index past its table */
    for (int i = 0; i < t->n_tpl_ids; i++)
        if (t->tpl_ids[i] >= t->n_ids) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor: special token id %d is out of the vocabulary",
                        file, (int)t->tpl_ids[i]);
            goto done;
        }
done:
    cJSON_Delete(root);
    if (st) {
        pd_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PD_OK;
}

pd_status pd_tokenizer_load_json(const char *json, size_t len, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out) return pd_err(err, errlen, PD_ERR_INVALID, "load_json: NULL argument");
    *out = NULL;
    if (!json) return pd_err(err, errlen, PD_ERR_INVALID, "load_json: NULL argument");
    return load_json_named(json, len, "tokenizer.json", out, err, errlen);
}

/* ==== Loading vocab.txt (+ tokenizer_config.json) ==== */

/* What BertTokenizerFast builds from vocab.txt: BertNormalizer, BertPreTokenizer, WordPiece
 * ("##", 100 characters) and the [CLS] A [SEP] (B [SEP]) template. */
typedef struct {
    bool lowercase, chinese;
    int strip_accents; /* -1: follow lowercase */
    const char *unk, *cls, *sep, *pad, *mask;
    const cJSON *added; /* added_tokens_decoder of tokenizer_config.json, or NULL */
} bert_cfg;

static pd_status load_vocab_txt_cfg(const char *path, const bert_cfg *cfg, pd_tokenizer **out, char *err,
                                    size_t errlen) {
    *out = NULL;
    char *buf;
    size_t len;
    pd_status st = pd_read_file(path, MAX_FILE, &buf, &len, err, errlen);
    if (st) return st;
    pd_tokenizer *t = tok_new();
    if (!t) {
        free(buf);
        return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", path);
    }
    t->kind = PD_TOK_WORDPIECE;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (len && buf[len - 1] != '\n') lines++;
    int32_t max_id = (int32_t)(lines > (size_t)MAX_ID ? MAX_ID : lines) - 1, id;
    const cJSON *it;
    if (cfg->added)
        cJSON_ArrayForEach(it, cfg->added) {
            char *endp;
            long v = it->string ? strtol(it->string, &endp, 10) : -1;
            if (v >= 0 && v < MAX_ID && *endp == 0 && v > max_id) max_id = (int32_t)v;
        }
    if (lines > (size_t)MAX_ID) {
        st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: more than %d lines", path, MAX_ID);
        goto done;
    }
    if ((st = ids_init(t, max_id + 1)) || (st = strtab_init(&t->vocab, lines))) {
        st = pd_err(err, errlen, st, "%s: out of memory", path);
        goto done;
    }
    id = 0;
    for (size_t i = 0; i < len; id++) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t e = j; /* WordPiece::read_file trims trailing whitespace */
        while (e > i && (buf[e - 1] == '\r' || buf[e - 1] == ' ' || buf[e - 1] == '\t')) e--;
        if (utf8_check((const uint8_t *)buf + i, e - i) != e - i) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: line %d is not valid UTF-8", path, (int)id + 1);
            goto done;
        }
        if ((st = vocab_add(t, buf + i, e - i, id))) {
            st = pd_err(err, errlen, st, "%s: out of memory", path);
            goto done;
        }
        i = j + 1;
    }
    t->unk_id = vocab_get(t, cfg->unk, strlen(cfg->unk));
    if (t->unk_id < 0) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: the unknown token %s is not in the vocabulary", path, cfg->unk);
        goto done;
    }
    if ((st = arena_add(t, "##", 2, &t->wp_prefix_off))) goto done;
    t->wp_prefix_len = 2;
    t->wp_max_chars = 100;
    bool strip = cfg->strip_accents < 0 ? cfg->lowercase : cfg->strip_accents > 0;
    t->norm[t->n_norm++] = NORM_CLEAN;
    if (cfg->chinese) t->norm[t->n_norm++] = NORM_CHINESE;
    if (strip) {
        t->norm[t->n_norm++] = NORM_NFD;
        t->norm[t->n_norm++] = NORM_STRIP;
    }
    if (cfg->lowercase) t->norm[t->n_norm++] = NORM_LOWER;
    t->pre = PRE_BERT;
    const char *specials[5] = {cfg->pad, cfg->unk, cfg->cls, cfg->sep, cfg->mask};
    for (int i = 0; i < 5; i++) {
        if (!specials[i] || (id = vocab_get(t, specials[i], strlen(specials[i]))) < 0) continue;
        if ((st = added_push(t, specials[i], strlen(specials[i]), id, false, false, false, false, true))) goto done;
    }
    if (cfg->added)
        cJSON_ArrayForEach(it, cfg->added) {
            const cJSON *content = jget(it, "content");
            char *endp;
            long v = it->string ? strtol(it->string, &endp, 10) : -1;
            if (v < 0 || v >= MAX_ID || *endp || !cJSON_IsString(content) || !*content->valuestring) continue;
            bool sw = false, ls = false, rs = false, special = false, norm;
            const char *file = "tokenizer_config.json";
            if ((st = jbool(it, "special", &special, file, "added_tokens_decoder", err, errlen))) goto done;
            norm = !special;
            if ((st = jbool(it, "single_word", &sw, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "lstrip", &ls, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "rstrip", &rs, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "normalized", &norm, file, "added_tokens_decoder", err, errlen)))
                goto done;
            bool dup = false; /* the named special tokens were registered already */
            for (int i = 0; i < t->n_added; i++)
                dup |= t->added[i].len == strlen(content->valuestring) &&
                       !memcmp(t->arena + t->added[i].off, content->valuestring, t->added[i].len);
            if (dup) continue;
            if ((st = added_push(t, content->valuestring, strlen(content->valuestring), (int32_t)v, sw, ls, rs, norm,
                                 special)))
                goto done;
        }
    int32_t cls = cfg->cls ? vocab_get(t, cfg->cls, strlen(cfg->cls)) : -1;
    int32_t sep = cfg->sep ? vocab_get(t, cfg->sep, strlen(cfg->sep)) : -1;
    if (cls < 0 || sep < 0) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s or %s is not in the vocabulary", path,
                    cfg->cls ? cfg->cls : "(cls)", cfg->sep ? cfg->sep : "(sep)");
        goto done;
    }
    if ((st = tpl_cls_sep(t, cls, sep, false))) goto done;
    if (cfg->pad) t->pad_id = vocab_get(t, cfg->pad, strlen(cfg->pad));
    st = tok_finish(t, path, err, errlen);
done:
    free(buf);
    if (st) {
        if (st == PD_ERR_NOMEM && err && errlen && !*err) pd_err(err, errlen, st, "%s: out of memory", path);
        pd_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PD_OK;
}

static const bert_cfg bert_defaults = {true, true, -1, "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", NULL};

pd_status pd_tokenizer_load_vocab_txt(const char *path, int lowercase, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out || !path) return pd_err(err, errlen, PD_ERR_INVALID, "load_vocab_txt: NULL argument");
    bert_cfg cfg = bert_defaults;
    cfg.lowercase = lowercase != 0;
    if (err && errlen) err[0] = 0;
    return load_vocab_txt_cfg(path, &cfg, out, err, errlen);
}

/* A special token in tokenizer_config.json: "[CLS]" or {"content": "[CLS]", ...}. */
static const char *cfg_token(const cJSON *cfg, const char *k, const char *dflt) {
    const cJSON *x = jget(cfg, k);
    if (cJSON_IsString(x)) return x->valuestring;
    if (cJSON_IsString(jget(x, "content"))) return jget(x, "content")->valuestring;
    return dflt;
}

pd_status pd_tokenizer_load_dir(const char *dir, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out || !dir) return pd_err(err, errlen, PD_ERR_INVALID, "load_dir: NULL argument");
    *out = NULL;
    if (err && errlen) err[0] = 0;
    char path[4096];
    char *buf;
    size_t len;
    if (pd_path_join(path, sizeof path, dir, "tokenizer.json"))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: path too long", dir);
    pd_status st = pd_read_file(path, MAX_FILE, &buf, &len, err, errlen);
    if (!st) {
        st = load_json_named(buf, len, path, out, err, errlen);
        free(buf);
        return st;
    }
    if (st != PD_ERR_NOT_FOUND) return st;

    char vpath[4096], cpath[4096];
    if (pd_path_join(vpath, sizeof vpath, dir, "vocab.txt") || pd_path_join(cpath, sizeof cpath, dir, "tokenizer_config.json"))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: path too long", dir);
    FILE *f = fopen(vpath, "rb");
    if (!f) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: neither tokenizer.json nor vocab.txt", dir);
    fclose(f);
    bert_cfg cfg = bert_defaults;
    cJSON *root = NULL;
    st = pd_read_file(cpath, MAX_FILE, &buf, &len, err, errlen);
    if (st && st != PD_ERR_NOT_FOUND) return st;
    if (!st) {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
        pd_status why = root ? PD_OK : pd_json_parse_failure(buf, len);
        free(buf);
        if (why == PD_ERR_NOMEM) return pd_err(err, errlen, why, "%s: out of memory parsing it", cpath);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: not a JSON object", cpath);
        }
        bool lower = true, chinese = true, strip = false;
        const cJSON *sa = jget(root, "strip_accents");
        if ((st = jbool(root, "do_lower_case", &lower, cpath, "config", err, errlen)) ||
            (st = jbool(root, "tokenize_chinese_chars", &chinese, cpath, "config", err, errlen)) ||
            (st = jbool(root, "strip_accents", &strip, cpath, "config", err, errlen))) {
            cJSON_Delete(root);
            return st;
        }
        cfg.lowercase = lower;
        cfg.chinese = chinese;
        cfg.strip_accents = jnull(sa) ? -1 : strip;
        cfg.unk = cfg_token(root, "unk_token", cfg.unk);
        cfg.cls = cfg_token(root, "cls_token", cfg.cls);
        cfg.sep = cfg_token(root, "sep_token", cfg.sep);
        cfg.pad = cfg_token(root, "pad_token", cfg.pad);
        cfg.mask = cfg_token(root, "mask_token", cfg.mask);
        const cJSON *dec = jget(root, "added_tokens_decoder");
        cfg.added = cJSON_IsObject(dec) ? dec : NULL;
    }
    if (err && errlen) err[0] = 0;
    st = load_vocab_txt_cfg(vpath, &cfg, out, err, errlen);
    cJSON_Delete(root);
    return st;
}
