/* pretrain.c - masked-LM pretraining: corpus cache and windows, masking, the training step and
 * the `peftd pretrain` loop. See pretrain.h; the choices and their measurements are in
 * docs/PRETRAINING.md. */
#include "fs.h"
#include "pretrain.h"

#include "optim.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ==== Random numbers ====
 * Counter-based: every stream is splitmix64 over a key, so a window's masks, an epoch's order and
 * a tensor's initial values each depend on their own key alone (no generator state to save). */


static uint64_t rnd_next(uint64_t *s) { return pd_mix64(*s += 0x632BE59BD9B4E019ull); }
static double rnd_unit(uint64_t *s) { return (double)(rnd_next(s) >> 11) * (1.0 / 9007199254740992.0); } /* [0, 1) */
static uint64_t rnd_below(uint64_t *s, uint64_t n) { return (uint64_t)(rnd_unit(s) * (double)n); }

static uint64_t hash_str(const char *s, uint64_t h) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

uint64_t pd_mask_key(uint64_t seed, long epoch, long w) { return pd_mix64(pd_mix64(pd_mix64(seed) ^ (uint64_t)epoch) ^ (uint64_t)w); }

/* ==== Corpus: tokens, cache, windows ==== */

#define CACHE_MAGIC "PDTOKS1\n"
#define SENT_DOC_START 0x80000000u

typedef struct {
    char magic[8];
    uint64_t text_size, text_mtime_ns, vocab_hash;
    uint64_t n_tok, n_sent, n_doc;
} cache_header;

void pd_corpus_free(pd_corpus *c) {
    if (!c) return;
    free(c->tok);
    free(c->win_off);
    free(c->win_len);
    free(c->wtok);
    free(c);
}

/* A fingerprint of the vocabulary: every token's text in id order. */
static uint64_t vocab_hash(const pd_tokenizer *tok) {
    uint64_t h = 1469598103934665603ull;
    int n = pd_tokenizer_vocab_size(tok);
    for (int i = 0; i < n; i++) {
        const char *t = pd_tokenizer_id_to_token(tok, i);
        h = hash_str(t ? t : "", h) * 31 + (uint64_t)i;
    }
    return h;
}

/* Tokens of the text, one sentence per line; sent[i] = its token count | SENT_DOC_START when a
 * blank line (or the file start) came before it. Lines that give no token are dropped. */
static pd_status tokenize_text(const char *text, size_t len, const pd_tokenizer *tok, uint32_t **tok_out, size_t *n_tok,
                               uint32_t **sent_out, size_t *n_sent, size_t *n_doc, char *err, size_t errlen) {
    size_t cap_t = len / 3 + 1024, cap_s = len / 40 + 1024, nt = 0, ns = 0, nd = 0;
    uint32_t *t = malloc(cap_t * sizeof *t), *s = malloc(cap_s * sizeof *s);
    pd_tokens tk = {0};
    pd_status st = PD_OK;
    if (!t || !s) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
    int new_doc = 1;
    size_t line = 0;
    for (size_t a = 0; a < len;) {
        size_t b = a;
        while (b < len && text[b] != '\n') b++;
        line++;
        size_t e = b;
        while (e > a && (text[e - 1] == '\r' || text[e - 1] == ' ' || text[e - 1] == '\t')) e--;
        if (e == a) {
            new_doc = 1;
        } else {
            st = pd_tokenizer_tokenize(tok, text + a, e - a, &tk, err, errlen);
            if (st) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s", err);
                st = pd_err(err, errlen, PD_ERR_FORMAT, "line %zu: %s", line, msg);
                goto fail;
            }
            if (tk.n > 0) {
                if (nt + (size_t)tk.n > cap_t) {
                    cap_t = (nt + (size_t)tk.n) * 2;
                    uint32_t *nt2 = realloc(t, cap_t * sizeof *t);
                    if (!nt2) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
                    t = nt2;
                }
                if (ns == cap_s) {
                    cap_s *= 2;
                    uint32_t *ns2 = realloc(s, cap_s * sizeof *s);
                    if (!ns2) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
                    s = ns2;
                }
                for (int i = 0; i < tk.n; i++)
                    t[nt + i] = (uint32_t)tk.ids[i] | (i == 0 || tk.word[i] != tk.word[i - 1] ? PD_TOK_WORD_START : 0);
                nt += (size_t)tk.n;
                s[ns++] = (uint32_t)tk.n | (new_doc ? SENT_DOC_START : 0);
                nd += new_doc;
                new_doc = 0;
            }
        }
        a = b + 1;
    }
    pd_tokens_free(&tk);
    *tok_out = t;
    *sent_out = s;
    *n_tok = nt;
    *n_sent = ns;
    *n_doc = nd;
    return PD_OK;
fail:
    pd_tokens_free(&tk);
    free(t);
    free(s);
    return st;
}

static int read_exact(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

/* Reads a cache written for exactly this header; 1 if used, 0 if absent or stale. */
static int cache_read(const char *path, const cache_header *want, uint32_t **tok, uint32_t **sent) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    cache_header h;
    int ok = !read_exact(f, &h, sizeof h) && !memcmp(h.magic, want->magic, 8) && h.text_size == want->text_size &&
             h.text_mtime_ns == want->text_mtime_ns && h.vocab_hash == want->vocab_hash && h.n_tok < (1ull << 34) &&
             h.n_sent < (1ull << 32);
    uint32_t *t = NULL, *s = NULL;
    if (ok) {
        t = malloc((h.n_tok ? h.n_tok : 1) * sizeof *t);
        s = malloc((h.n_sent ? h.n_sent : 1) * sizeof *s);
        ok = t && s && !read_exact(f, s, h.n_sent * sizeof *s) && !read_exact(f, t, h.n_tok * sizeof *t);
        uint64_t sum = 0;
        for (size_t i = 0; ok && i < h.n_sent; i++) sum += s[i] & ~SENT_DOC_START;
        ok = ok && sum == h.n_tok;
    }
    fclose(f);
    if (!ok) {
        free(t);
        free(s);
        return 0;
    }
    *tok = t;
    *sent = s;
    ((cache_header *)want)->n_tok = h.n_tok;
    ((cache_header *)want)->n_sent = h.n_sent;
    ((cache_header *)want)->n_doc = h.n_doc;
    return 1;
}

/* Writes the cache under a temporary name and renames it into place. */
static pd_status cache_write(const char *path, const cache_header *h, const uint32_t *tok, const uint32_t *sent, char *err,
                             size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", tmp, strerror(errno));
    int bad = fwrite(h, sizeof *h, 1, f) != 1 || fwrite(sent, sizeof *sent, h->n_sent, f) != h->n_sent ||
              fwrite(tok, sizeof *tok, h->n_tok, f) != h->n_tok;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(e));
    }
    return PD_OK;
}

/* Packs sentences into windows: [CLS] sentences [SEP], a [SEP] between documents, at most seq
 * tokens; a sentence longer than seq - 2 tokens is cut into windows of its own. */
static pd_status pack_windows(pd_corpus *c, const uint32_t *sent, int32_t cls, int32_t sep, char *err, size_t errlen) {
    size_t cap_w = c->n_tok / 16 + 64, cap_t = c->n_tok + c->n_tok / 8 + 4096;
    c->win_off = malloc(cap_w * sizeof *c->win_off);
    c->win_len = malloc(cap_w * sizeof *c->win_len);
    c->wtok = malloc(cap_t * sizeof *c->wtok);
    if (!c->win_off || !c->win_len || !c->wtok) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const uint32_t CLS = (uint32_t)cls | PD_TOK_WORD_START, SEP = (uint32_t)sep | PD_TOK_WORD_START;
    int room = c->seq - 2, cur = 0; /* tokens in the open window, specials but the final [SEP] included */
    size_t nw = 0, nt = 0, at = 0;
#define ENSURE(extra)                                                                                           \
    do {                                                                                                        \
        if (nt + (extra) + 2 > cap_t || nw + 2 > cap_w) {                                                       \
            cap_t = (nt + (extra) + 2) * 2;                                                                     \
            cap_w = (nw + 2) * 2;                                                                               \
            uint32_t *a_ = realloc(c->wtok, cap_t * sizeof *a_), *b_ = realloc(c->win_off, cap_w * sizeof *b_); \
            if (a_) c->wtok = a_;                                                                               \
            if (b_) c->win_off = b_;                                                                            \
            uint16_t *l_ = realloc(c->win_len, cap_w * sizeof *l_);                                             \
            if (l_) c->win_len = l_;                                                                            \
            if (!a_ || !b_ || !l_) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");                   \
        }                                                                                                       \
    } while (0)
#define OPEN() (c->win_off[nw] = (uint32_t)nt, c->wtok[nt++] = CLS, cur = 1)
#define CLOSE() (c->wtok[nt++] = SEP, c->win_len[nw] = (uint16_t)(cur + 1), nw++, cur = 0)
    for (size_t i = 0; i < c->n_sent; i++) {
        int L = (int)(sent[i] & ~SENT_DOC_START), doc = (sent[i] & SENT_DOC_START) != 0;
        const uint32_t *src = c->tok + at;
        at += (size_t)L;
        ENSURE((size_t)L + 2);
        if (L > room) { /* a long sentence: windows of its own */
            if (cur) CLOSE();
            for (int o = 0; o < L; o += room) {
                int k = L - o < room ? L - o : room;
                ENSURE((size_t)k + 2);
                OPEN();
                memcpy(c->wtok + nt, src + o, sizeof(uint32_t) * (size_t)k);
                nt += (size_t)k;
                cur += k;
                CLOSE();
            }
            continue;
        }
        int need = L + (cur > 1 && doc ? 1 : 0);
        if (cur && cur + need > room + 1) CLOSE();
        if (!cur) OPEN();
        else if (doc && cur > 1) c->wtok[nt++] = SEP, cur++;
        memcpy(c->wtok + nt, src, sizeof(uint32_t) * (size_t)L);
        nt += (size_t)L;
        cur += L;
    }
    if (cur) CLOSE();
#undef ENSURE
#undef OPEN
#undef CLOSE
    if (nw > (size_t)INT32_MAX) return pd_err(err, errlen, PD_ERR_TOO_LARGE, "too many windows");
    c->n_win = (int)nw;
    c->n_wtok = nt;
    return PD_OK;
}

pd_status pd_corpus_load(const char *text_path, const char *cache_path, const pd_tokenizer *tok, int seq, pd_corpus **out,
                         char *err, size_t errlen) {
    *out = NULL;
    if (seq < 8 || seq > 65535) return pd_err(err, errlen, PD_ERR_INVALID, "window length %d outside [8, 65535]", seq);
    int32_t cls = pd_tokenizer_token_to_id(tok, "[CLS]"), sep = pd_tokenizer_token_to_id(tok, "[SEP]");
    if (cls < 0 || sep < 0) return pd_err(err, errlen, PD_ERR_INVALID, "the vocabulary has no [CLS] or [SEP]");
    struct stat sb;
    if (stat(text_path, &sb)) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: %s", text_path, strerror(errno));
    cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.text_size = (uint64_t)sb.st_size;
    h.text_mtime_ns = (uint64_t)sb.st_mtim.tv_sec * 1000000000ull + (uint64_t)sb.st_mtim.tv_nsec;
    h.vocab_hash = vocab_hash(tok);
    pd_corpus *c = calloc(1, sizeof *c);
    if (!c) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    c->seq = seq;
    uint32_t *sent = NULL;
    pd_status st = PD_OK;
    if (!cache_path || !cache_read(cache_path, &h, &c->tok, &sent)) {
        char *text = NULL;
        size_t len = 0;
        st = pd_read_file(text_path, (size_t)1 << 34, &text, &len, err, errlen);
        if (!st) {
            st = tokenize_text(text, len, tok, &c->tok, &c->n_tok, &sent, &c->n_sent, &c->n_doc, err, errlen);
            free(text);
        }
        if (!st) {
            h.n_tok = c->n_tok;
            h.n_sent = c->n_sent;
            h.n_doc = c->n_doc;
            if (cache_path) st = cache_write(cache_path, &h, c->tok, sent, err, errlen);
        }
    } else {
        c->n_tok = h.n_tok;
        c->n_sent = h.n_sent;
        c->n_doc = h.n_doc;
    }
    if (!st && c->n_tok == 0) st = pd_err(err, errlen, PD_ERR_INVALID, "%s: no tokens", text_path);
    if (!st) st = pack_windows(c, sent, cls, sep, err, errlen);
    free(sent);
    if (st) {
        pd_corpus_free(c);
        return st;
    }
    *out = c;
    return PD_OK;
}

/* ==== Masking ==== */

int pd_mask_window(const uint32_t *toks, int len, uint64_t key, const pd_mask_cfg *mc, int32_t *ids, int32_t *pos,
                   int32_t *labels) {
    uint64_t s = key;
    /* candidates (pos doubles as scratch): every non-special token; with whole words, the
     * first piece of each word (a word's pieces follow it until the next word start) */
    int nc = 0, maskable = 0;
    for (int i = 0; i < len; i++) {
        int32_t id = PD_TOK_ID(toks[i]);
        ids[i] = id;
        if (mc->special[id]) continue;
        maskable++;
        if (!mc->whole_words || (toks[i] & PD_TOK_WORD_START) || i == 0 || mc->special[PD_TOK_ID(toks[i - 1])]) pos[nc++] = i;
    }
    if (!maskable) return 0;
    int target = (int)lround(mc->prob * maskable);
    if (target < 1) target = 1;
    /* choose candidates in random order (partial Fisher-Yates) until target tokens are taken;
     * labels marks taken positions */
    for (int i = 0; i < len; i++) labels[i] = -1;
    int taken = 0;
    for (int k = 0; k < nc && taken < target; k++) {
        int j = k + (int)rnd_below(&s, (uint64_t)(nc - k));
        int32_t t = pos[k];
        pos[k] = pos[j];
        pos[j] = t;
        int p = pos[k], e = p + 1;
        if (mc->whole_words)
            while (e < len && !(toks[e] & PD_TOK_WORD_START) && !mc->special[PD_TOK_ID(toks[e])]) e++;
        if (taken && taken + (e - p) > target) continue; /* a word that would overshoot: skip it */
        for (int i = p; i < e; i++) labels[i] = 1;
        taken += e - p;
    }
    int n = 0;
    for (int i = 0; i < len; i++) {
        if (labels[i] < 0) continue;
        pos[n] = i;
        labels[n] = ids[i];
        double r = rnd_unit(&s);
        if (r < 0.8) ids[i] = mc->mask_id;
        else if (r < 0.9) ids[i] = mc->draw[rnd_below(&s, (uint64_t)mc->n_draw)];
        n++;
    }
    return n;
}

/* ==== The training step ==== */

struct pd_pretrainer {
    pd_config cfg;
    pd_pretrain_hyper hp;
    pd_params *w, *g, *m, *v; /* weights, gradients, AdamW moments: one layout */
    uint8_t *decay;           /* (n_tensors) */
    pd_model *model;
    pd_ctx *ctx;
    pd_mlm *mlm;
    pd_pool *pool;
    long t;                   /* optimizer steps taken */
    pd_seq *seqs;
    int cap_seqs;
};

void pd_pretrainer_free(pd_pretrainer *t) {
    if (!t) return;
    pd_mlm_free(t->mlm);
    pd_ctx_free(t->ctx);
    pd_model_free(t->model);
    pd_params_free(t->w);
    pd_params_free(t->g);
    pd_params_free(t->m);
    pd_params_free(t->v);
    free(t->decay);
    free(t->seqs);
    free(t);
}

pd_pretrainer *pd_pretrainer_new(const pd_config *cfg, const pd_pretrain_hyper *hp, uint64_t seed, pd_pool *pool) {
    pd_pretrainer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cfg = *cfg;
    t->hp = *hp;
    t->pool = pool;
    t->w = pd_params_new(cfg, 1);
    t->g = pd_params_new(cfg, 1);
    t->m = pd_params_new(cfg, 1);
    t->v = pd_params_new(cfg, 1);
    t->mlm = pd_mlm_new();
    char err[256];
    if (!t->w || !t->g || !t->m || !t->v || !t->mlm || pd_model_from_params(t->w, NULL, &t->model, err, sizeof err) ||
        !(t->ctx = pd_ctx_new(t->model, pool)) || !(t->decay = calloc((size_t)t->w->n_tensors, 1))) {
        pd_pretrainer_free(t);
        return NULL;
    }
    /* transformers' BertPreTrainedModel._init_weights: Linear and Embedding N(0, 0.02) (the
     * padding row zero), biases 0, LayerNorm 1 and 0; MLM bias 0. Each tensor's draws come from
     * its own stream (seed, name), Box-Muller. */
    for (int i = 0; i < t->w->n_tensors; i++) {
        const pd_param_tensor *p = pd_params_tensor(t->w, i);
        size_t L = strlen(p->name);
        int is_bias = L > 5 && !strcmp(p->name + L - 5, ".bias"), is_ln = strstr(p->name, "LayerNorm") != NULL;
        t->decay[i] = !is_bias && !is_ln; /* transformers' Trainer: no decay on biases and LayerNorm weights */
        if (is_ln && !is_bias) {
            for (size_t k = 0; k < p->n; k++) p->data[k] = 1.0f;
        } else if (!is_bias) {
            uint64_t s = hash_str(p->name, pd_mix64(seed));
            for (size_t k = 0; k < p->n; k++) {
                double u = 1.0 - rnd_unit(&s), v = rnd_unit(&s);
                p->data[k] = (float)(0.02 * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
            }
        }
    }
    memset(t->w->word_emb + (size_t)cfg->pad_id * cfg->hidden, 0, sizeof(float) * (size_t)cfg->hidden);
    return t;
}

pd_params *pd_pretrainer_params(pd_pretrainer *t) { return t->w; }
const pd_model *pd_pretrainer_model(const pd_pretrainer *t) { return t->model; }
long pd_pretrainer_steps(const pd_pretrainer *t) { return t->t; }

void pd_pretrainer_reset_optimizer(pd_pretrainer *t) {
    memset(t->m->data, 0, t->m->n * sizeof(float));
    memset(t->v->data, 0, t->v->n * sizeof(float));
    t->t = 0;
}

/* Runs the forward pass of batch b (training mode or not). */
static pd_status batch_forward(pd_pretrainer *t, const pd_mlm_batch *b, int train, char *err, size_t errlen) {
    if (b->n <= 0 || b->n_masked <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty batch or nothing masked");
    if (b->n > t->cap_seqs) {
        pd_seq *s = realloc(t->seqs, sizeof *s * (size_t)b->n);
        if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        t->seqs = s;
        t->cap_seqs = b->n;
    }
    for (int i = 0; i < b->n; i++) t->seqs[i] = (pd_seq){b->ids[i], NULL, b->len[i], NULL, 0};
    pd_ctx_set_training(t->ctx, train);
    pd_ctx_set_grad(t->ctx, train ? t->g : NULL);
    pd_status st = pd_forward(t->ctx, t->seqs, b->n, err, errlen);
    if (st) return st;
    for (int i = 0, row = 0; i < b->n; row += b->len[i], i++) PD_ASSERT(pd_ctx_row(t->ctx, i) == row); /* rows as packed */
    return PD_OK;
}

typedef struct {
    pd_pretrainer *t;
    int nchunks;
    double lr, clip_coef;
    double *sums; /* (nchunks) */
} flat_job;

/* Chunk k of the flat parameter index space. */
static void chunk_range(const pd_pretrainer *t, int nchunks, int k, size_t *a, size_t *b) {
    size_t n = t->w->n, per = (n + (size_t)nchunks - 1) / (size_t)nchunks;
    per = (per + 15) & ~(size_t)15;
    *a = (size_t)k * per < n ? (size_t)k * per : n;
    *b = *a + per < n ? *a + per : n;
}

static void sumsq_task(void *arg, int k) {
    flat_job *j = arg;
    size_t a, b;
    chunk_range(j->t, j->nchunks, k, &a, &b);
    const float *g = j->t->g->data;
    double s = 0;
    for (size_t i = a; i < b; i += 4096) {
        float acc[16] = {0};
        size_t e = i + 4096 < b ? i + 4096 : b, q = i;
        for (; q + 16 <= e; q += 16)
            for (int l = 0; l < 16; l++) acc[l] += g[q + l] * g[q + l];
        for (; q < e; q++) acc[0] += g[q] * g[q];
        for (int l = 0; l < 16; l++) s += acc[l];
    }
    j->sums[k] = s;
}

/* AdamW on the parts of chunk k's tensors, after scaling the gradients by clip_coef. */
static void adamw_task(void *arg, int k) {
    flat_job *j = arg;
    pd_pretrainer *t = j->t;
    size_t a, b;
    chunk_range(t, j->nchunks, k, &a, &b);
    for (int i = 0; i < t->w->n_tensors; i++) {
        const pd_param_tensor *p = pd_params_tensor(t->w, i);
        size_t o = (size_t)(p->data - t->w->data), lo = o > a ? o : a, hi = o + p->n < b ? o + p->n : b;
        if (lo >= hi) continue;
        float *g = t->g->data + lo;
        if (j->clip_coef < 1.0) {
            float c = (float)j->clip_coef;
            for (size_t q = 0; q < hi - lo; q++) g[q] *= c;
        }
        pd_adamw_update(t->w->data + lo, g, t->m->data + lo, t->v->data + lo, hi - lo, t->t, j->lr,
                        t->decay[i] ? t->hp.weight_decay : 0.0, t->hp.beta1, t->hp.beta2, t->hp.eps);
    }
}

pd_status pd_pretrainer_step(pd_pretrainer *t, const pd_mlm_batch *b, double lr, pd_step_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    memset(t->g->data, 0, t->g->n * sizeof(float));
    pd_status s = batch_forward(t, b, 1, err, errlen);
    if (s) return s;
    int R;
    const float *hid = pd_ctx_hidden_all(t->ctx, &R);
    float *dh = pd_ctx_grad_hidden(t->ctx);
    double loss;
    s = pd_mlm_loss(t->mlm, t->pool, t->w, hid, R, b->rows, b->labels, b->n_masked, 1.0f / (float)b->n_masked, dh, t->g, &loss,
                    &st->correct, err, errlen);
    if (!s) s = pd_backward(t->ctx, err, errlen);
    if (s) return s;
    st->loss = loss / b->n_masked;
    /* clip_grad_norm_ over every tensor, then AdamW; chunks are a fixed function of the sizes */
    enum { NCH = 64 };
    double sums[NCH];
    flat_job j = {t, NCH, lr, 1.0, sums};
    pd_pool_run(t->pool, sumsq_task, &j, NCH);
    double norm2 = 0;
    for (int k = 0; k < NCH; k++) norm2 += sums[k];
    st->grad_norm = sqrt(norm2);
    if (t->hp.clip > 0 && t->hp.clip / (st->grad_norm + 1e-6) < 1.0) j.clip_coef = t->hp.clip / (st->grad_norm + 1e-6);
    t->t++;
    pd_pool_run(t->pool, adamw_task, &j, NCH);
    return PD_OK;
}

pd_status pd_pretrainer_eval(pd_pretrainer *t, const pd_mlm_batch *b, double *loss_sum, int *correct, char *err, size_t errlen) {
    pd_status s = batch_forward(t, b, 0, err, errlen);
    if (s) return s;
    int R;
    const float *hid = pd_ctx_hidden_all(t->ctx, &R);
    return pd_mlm_loss(t->mlm, t->pool, t->w, hid, R, b->rows, b->labels, b->n_masked, 1.0f, NULL, NULL, loss_sum, correct, err,
                       errlen);
}

/* ==== Optimizer state file: param.<name>, m.<name>, v.<name> and metadata "step" ==== */

/* The optimizer state file's view of the weights (optim.h): a pd_param on each tensor of w, and
 * the matching tensors of m and v. Freed with free() on all three; -1 when out of memory. */
static int state_view(const pd_pretrainer *t, pd_param **p, float ***m, float ***v) {
    int nt = t->w->n_tensors;
    *p = calloc((size_t)nt, sizeof **p);
    *m = calloc((size_t)nt, sizeof **m);
    *v = calloc((size_t)nt, sizeof **v);
    if (!*p || !*m || !*v) return -1;
    for (int i = 0; i < nt; i++) {
        const pd_param_tensor *w = pd_params_tensor(t->w, i);
        (*p)[i] = (pd_param){w->data, NULL, w->n, 0, w->name};
        (*m)[i] = pd_params_tensor(t->m, i)->data;
        (*v)[i] = pd_params_tensor(t->v, i)->data;
    }
    return 0;
}

pd_status pd_pretrainer_save(const pd_pretrainer *t, const char *path, const char *const *meta_kv, int n_meta, char *err,
                             size_t errlen) {
    pd_param *p = NULL;
    float **m = NULL, **v = NULL;
    pd_status st = state_view(t, &p, &m, &v) ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory")
                                            : pd_adamw_state_write(path, p, t->w->n_tensors, m, v, t->t, meta_kv, n_meta, err, errlen);
    free(p);
    free(m);
    free(v);
    return st;
}

pd_status pd_pretrainer_load(pd_pretrainer *t, const char *path, char *err, size_t errlen) {
    pd_param *p = NULL;
    float **m = NULL, **v = NULL;
    long step = 0;
    pd_status st = state_view(t, &p, &m, &v) ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory")
                                            : pd_adamw_state_read(path, p, t->w->n_tensors, m, v, &step, err, errlen);
    if (!st) t->t = step;
    free(p);
    free(m);
    free(v);
    return st;
}

/* ==== The command ==== */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

/* The run's state besides the optimizer's: where the data stands and how far the schedule is. */
typedef struct {
    long epoch, pos;     /* the next window: position pos of epoch's order */
    long total;          /* schedule length in steps; 0 until known */
    long warmup;
    double tokens;       /* tokens trained on */
    double seconds;      /* training time so far (evaluations and checkpoints excluded) */
} run_state;

/* The options a resumed run must share with the checkpoint (anything that changes the bits). */
static void opts_fingerprint(const pd_pretrain_opts *o, const pd_tokenizer *tok, char *buf, size_t cap) {
    snprintf(buf, cap, "v1 layers=%d hidden=%d heads=%d ffn=%d seq=%d max_pos=%d batch=%d seed=%d mask=%.17g wwm=%d lr=%.17g "
                       "wd=%.17g clip=%.17g b1=%.17g b2=%.17g eps=%.17g vocab=%016llx",
             o->layers, o->hidden, o->heads, o->ffn, o->seq, o->max_pos, o->batch, o->seed, o->mask, o->wwm, o->lr,
             o->weight_decay, o->clip, o->beta1, o->beta2, o->adam_eps, (unsigned long long)vocab_hash(tok));
}

/* Epoch e's order of n windows: a Fisher-Yates shuffle keyed by (seed, e). */
static void epoch_order(int32_t *perm, int n, uint64_t seed, long e) {
    uint64_t s = pd_mix64(pd_mix64(seed ^ 0xD1B54A32D192ED03ull) ^ (uint64_t)e);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd_below(&s, (uint64_t)i + 1);
        int32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
}

/* A batch being assembled: windows masked into ids/rows/labels. */
typedef struct {
    int cap, seq, n, n_masked;
    int32_t *ids, *rows, *labels, *pos, *lab;
    const int32_t **idp;
    int *len;
    long tokens;
} batch_buf;

static void batch_free(batch_buf *b) {
    free(b->ids); free(b->rows); free(b->labels); free(b->pos); free(b->lab); free(b->idp); free(b->len);
    memset(b, 0, sizeof *b);
}

static int batch_init(batch_buf *b, int cap, int seq) {
    memset(b, 0, sizeof *b);
    b->cap = cap;
    b->seq = seq;
    size_t n = (size_t)cap * seq;
    b->ids = malloc(n * sizeof(int32_t));
    b->rows = malloc(n * sizeof(int32_t));
    b->labels = malloc(n * sizeof(int32_t));
    b->pos = malloc((size_t)seq * sizeof(int32_t));
    b->lab = malloc((size_t)seq * sizeof(int32_t));
    b->idp = malloc((size_t)cap * sizeof *b->idp);
    b->len = malloc((size_t)cap * sizeof(int));
    if (!b->ids || !b->rows || !b->labels || !b->pos || !b->lab || !b->idp || !b->len) { batch_free(b); return -1; }
    return 0;
}

/* Appends window w of corpus c masked with key. */
static void batch_add(batch_buf *b, const pd_corpus *c, int w, uint64_t key, const pd_mask_cfg *mc) {
    int L = c->win_len[w], row0 = 0;
    for (int i = 0; i < b->n; i++) row0 += b->len[i];
    int32_t *ids = b->ids + (size_t)b->n * b->seq;
    int k = pd_mask_window(c->wtok + c->win_off[w], L, key, mc, ids, b->pos, b->lab);
    for (int i = 0; i < k; i++) {
        b->rows[b->n_masked + i] = row0 + b->pos[i];
        b->labels[b->n_masked + i] = b->lab[i];
    }
    b->n_masked += k;
    b->idp[b->n] = ids;
    b->len[b->n] = L;
    b->tokens += L;
    b->n++;
}

static pd_mlm_batch batch_view(const batch_buf *b) {
    return (pd_mlm_batch){b->n, b->idp, b->len, b->n_masked, b->rows, b->labels};
}

/* The fixed held-out masks: the same for every run (seeded by a constant; 15% of the tokens,
 * token by token, whatever --mask and --wwm say for training), so curves compare. */
#define EVAL_SEED 0x5EED0FEB1ull

/* Held-out masked-LM loss and accuracy over the first n windows. */
static pd_status evaluate(pd_pretrainer *t, const pd_corpus *h, int n, int bsz, const pd_mask_cfg *mc, batch_buf *b, double *loss,
                          double *acc, char *err, size_t errlen) {
    double ls = 0;
    long correct = 0, total = 0;
    if (n > h->n_win) n = h->n_win;
    for (int w0 = 0; w0 < n; w0 += bsz) {
        b->n = b->n_masked = 0;
        b->tokens = 0;
        for (int w = w0; w < n && w < w0 + bsz; w++) batch_add(b, h, w, pd_mask_key(EVAL_SEED, 0, w), mc);
        if (!b->n_masked) continue;
        pd_mlm_batch v = batch_view(b);
        double s;
        int c;
        pd_status st = pd_pretrainer_eval(t, &v, &s, &c, err, errlen);
        if (st) return st;
        ls += s;
        correct += c;
        total += b->n_masked;
    }
    *loss = total ? ls / total : NAN;
    *acc = total ? (double)correct / total : NAN;
    return PD_OK;
}

static void fmt_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, cap, "?"); return; }
    long x = (long)(s + 0.5);
    if (x >= 3600) snprintf(buf, cap, "%ldh%02ldm", x / 3600, x / 60 % 60);
    else snprintf(buf, cap, "%ldm%02lds", x / 60, x % 60);
}

/* Appends a line to OUT/name, creating it with header when new. */
static void csv_append(const char *out, const char *name, const char *header, const char *line) {
    char path[4096];
    if (pd_path_join(path, sizeof path, out, name)) return;
    struct stat sb;
    int fresh = stat(path, &sb) != 0;
    FILE *f = fopen(path, "a");
    if (!f) return;
    if (fresh) fprintf(f, "%s\n", header);
    fprintf(f, "%s\n", line);
    fclose(f);
}

/* Keeps only the rows of OUT/name whose first field (a step) is <= step: a resumed run rewrites
 * what came after its checkpoint. */
static void csv_truncate(const char *out, const char *name, long step) {
    char path[4096], tmp[4096];
    if (pd_path_join(path, sizeof path, out, name) || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    FILE *g = fopen(tmp, "w");
    if (!g) { fclose(f); return; }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        if (first || strtol(line, NULL, 10) <= step) fputs(line, g);
        first = 0;
    }
    fclose(f);
    if (fclose(g) == 0) rename(tmp, path);
}

/* Copies the tokenizer files of the vocabulary directory into OUT/model (once). */
static pd_status copy_tokenizer(const char *vocab, const char *mdir, char *err, size_t errlen) {
    static const char *const files[] = {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[4096], dst[4096];
        if (pd_path_join(src, sizeof src, vocab, files[i]) || pd_path_join(dst, sizeof dst, mdir, files[i]))
            return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
        char *buf = NULL;
        size_t len = 0;
        if (pd_read_file(src, 64 << 20, &buf, &len, err, errlen)) continue; /* not every vocabulary has every file */
        pd_status st = pd_fs_write(dst, buf, len, err, errlen);
        free(buf);
        if (st) return st;
    }
    return PD_OK;
}

/* OUT/state.safetensors (atomically) and the Hugging Face checkpoint OUT/model. */
static pd_status checkpoint(pd_pretrainer *t, const pd_pretrain_opts *o, const run_state *rs, const char *fp, pd_dtype dtype,
                            const float *pooler_w, const float *pooler_b, char *err, size_t errlen) {
    char path[4096], tmp[4096], mdir[4096];
    if (pd_path_join(path, sizeof path, o->out, "state.safetensors") || pd_path_join(mdir, sizeof mdir, o->out, "model") ||
        snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    char v[6][64];
    snprintf(v[0], sizeof v[0], "%ld", rs->epoch);
    snprintf(v[1], sizeof v[1], "%ld", rs->pos);
    snprintf(v[2], sizeof v[2], "%ld", rs->total);
    snprintf(v[3], sizeof v[3], "%ld", rs->warmup);
    snprintf(v[4], sizeof v[4], "%.17g", rs->tokens);
    snprintf(v[5], sizeof v[5], "%.17g", rs->seconds);
    const char *kv[] = {"epoch", v[0], "pos", v[1], "total_steps", v[2], "warmup_steps", v[3], "tokens", v[4], "seconds", v[5],
                        "options", fp};
    pd_status st = pd_pretrainer_save(t, tmp, kv, 7, err, errlen);
    if (!st && rename(tmp, path)) st = pd_err(err, errlen, PD_ERR_IO, "rename %s: %s", path, strerror(errno));
    if (st) {
        unlink(tmp);
        return st;
    }
    if (mkdir(mdir, 0755) && errno != EEXIST) return pd_err(err, errlen, PD_ERR_IO, "mkdir %s: %s", mdir, strerror(errno));
    int H = t->cfg.hidden;
    pd_st_wtensor pooler[2] = {{"bert.pooler.dense.weight", 2, {H, H}, pooler_w}, {"bert.pooler.dense.bias", 1, {H}, pooler_b}};
    st = copy_tokenizer(o->vocab, mdir, err, errlen);
    if (!st) st = pd_params_save(t->w, pooler, 2, "BertForMaskedLM", dtype, mdir, err, errlen);
    return st;
}

static const char *meta_str(const pd_st_file *f, const char *k) {
    const char *v = pd_st_metadata(f, k);
    return v ? v : "";
}

/* Reads the loop state of OUT/state.safetensors and checks the options fingerprint. */
static pd_status resume_state(const char *path, const char *fp, run_state *rs, char *err, size_t errlen) {
    pd_st_file *f = NULL;
    pd_status st = pd_st_open(path, &f, err, errlen);
    if (st) return st;
    if (strcmp(meta_str(f, "options"), fp)) {
        st = pd_err(err, errlen, PD_ERR_MISMATCH, "%s was made with other options:\n  it: %s\n  now: %s", path, meta_str(f, "options"), fp);
    } else {
        rs->epoch = atol(meta_str(f, "epoch"));
        rs->pos = atol(meta_str(f, "pos"));
        rs->total = atol(meta_str(f, "total_steps"));
        rs->warmup = atol(meta_str(f, "warmup_steps"));
        rs->tokens = atof(meta_str(f, "tokens"));
        rs->seconds = atof(meta_str(f, "seconds"));
    }
    pd_st_close(f);
    return st;
}

int pd_pretrain_run(const pd_pretrain_opts *opts) {
    pd_pretrain_opts o = *opts;
    char err[1024];
    if (o.eval_only && !o.resume) {
        fprintf(stderr, "peftd pretrain: --eval-only needs --resume (see --help)\n");
        return 2;
    }
    if (o.quick) {
        o.layers = 2;
        o.hidden = 64;
        o.heads = 2;
        o.ffn = 256;
        o.seq = 64;
        o.batch = 16;
        o.tokens = 3e5;
        o.eval_windows = 64;
    }
    pd_dtype dtype = !strcmp(o.dtype, "F16") ? PD_DT_F16 : !strcmp(o.dtype, "BF16") ? PD_DT_BF16 : PD_DT_F32;
    const char *bad = !*o.corpus ? "--corpus FILE is required" : !*o.heldout ? "--heldout FILE is required"
                    : !*o.vocab ? "--vocab DIR is required" : !*o.out ? "--out DIR is required"
                    : o.hidden % o.heads ? "--heads must divide --hidden" : o.max_pos < o.seq ? "--max-pos must be >= --seq"
                    : (o.tokens <= 0 && o.minutes <= 0) ? "give the schedule's length: --tokens N or --minutes M"
                    : (strcmp(o.dtype, "F32") && strcmp(o.dtype, "F16") && strcmp(o.dtype, "BF16")) ? "--dtype must be F32, F16 or BF16"
                    : NULL;
    if (bad) {
        fprintf(stderr, "peftd pretrain: %s (see --help)\n", bad);
        return 2;
    }
    pd_tokenizer *tok = NULL;
    if (pd_tokenizer_load_dir(o.vocab, &tok, err, sizeof err)) {
        fprintf(stderr, "peftd pretrain: %s\n", err);
        return 1;
    }
    int rc = 1, V = pd_tokenizer_vocab_size(tok);
    pd_corpus *train = NULL, *held = NULL;
    pd_pool *pool = NULL;
    pd_pretrainer *t = NULL;
    uint8_t *special = NULL;
    int32_t *draw = NULL, *perm = NULL;
    float *pooler_w = NULL, *pooler_b = NULL;
    batch_buf b = {0};
    char path[4096], fp[512];
    opts_fingerprint(&o, tok, fp, sizeof fp);
    if (mkdir(o.out, 0755) && errno != EEXIST) {
        fprintf(stderr, "peftd pretrain: mkdir %s: %s\n", o.out, strerror(errno));
        goto out;
    }
    /* vocabulary roles: [X]-style tokens are special (never masked, never drawn) */
    int32_t mask_id = pd_tokenizer_token_to_id(tok, "[MASK]");
    special = calloc((size_t)V, 1);
    draw = malloc(sizeof(int32_t) * (size_t)V);
    if (!special || !draw || mask_id < 0) {
        fprintf(stderr, "peftd pretrain: %s\n", mask_id < 0 ? "the vocabulary has no [MASK]" : "out of memory");
        goto out;
    }
    int n_draw = 0;
    for (int i = 0; i < V; i++) {
        const char *s = pd_tokenizer_id_to_token(tok, i);
        size_t L = s ? strlen(s) : 0;
        special[i] = !s || (L >= 3 && s[0] == '[' && s[L - 1] == ']' && strcmp(s, "[UNK]"));
        if (!special[i]) draw[n_draw++] = i;
    }
    pd_mask_cfg mc = {o.mask, o.wwm, mask_id, special, draw, n_draw}, emc = {0.15, 0, mask_id, special, draw, n_draw};
    double t0 = pd_now();
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/tokens-train.bin", o.out);
    if (pd_corpus_load(o.corpus, cache, tok, o.seq, &train, err, sizeof err)) {
        fprintf(stderr, "peftd pretrain: %s: %s\n", o.corpus, err);
        goto out;
    }
    snprintf(cache, sizeof cache, "%s/tokens-heldout.bin", o.out);
    if (pd_corpus_load(o.heldout, cache, tok, o.seq, &held, err, sizeof err)) {
        fprintf(stderr, "peftd pretrain: %s: %s\n", o.heldout, err);
        goto out;
    }
    fprintf(stderr, "pretrain: corpus %zu tokens in %zu sentences, %zu documents -> %d windows of <= %d (%.1f tokens on average); "
                    "held-out %d windows; vocabulary %d; %.1f s\n",
            train->n_tok, train->n_sent, train->n_doc, train->n_win, o.seq, (double)train->n_wtok / train->n_win, held->n_win, V,
            pd_now() - t0);
    pd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = PD_ARCH_BERT;
    cfg.vocab = V;
    cfg.hidden = o.hidden;
    cfg.layers = o.layers;
    cfg.heads = o.heads;
    cfg.ffn = o.ffn;
    cfg.max_pos = o.max_pos;
    cfg.max_tokens = o.max_pos;
    cfg.type_vocab = 2;
    cfg.pad_id = pd_tokenizer_pad_id(tok);
    cfg.ln_eps = 1e-12f;
    cfg.act = PD_ACT_GELU;
    pd_pretrain_hyper hp = {o.beta1, o.beta2, o.adam_eps, o.weight_decay, o.clip};
    pool = pd_pool_new(o.threads);
    t = pool ? pd_pretrainer_new(&cfg, &hp, (uint64_t)o.seed, pool) : NULL;
    perm = malloc(sizeof(int32_t) * (size_t)train->n_win);
    pooler_w = malloc(sizeof(float) * (size_t)o.hidden * o.hidden);
    pooler_b = calloc((size_t)o.hidden, sizeof(float));
    if (!t || !perm || !pooler_w || !pooler_b || batch_init(&b, o.batch, o.seq)) {
        fprintf(stderr, "peftd pretrain: out of memory\n");
        goto out;
    }
    { /* the pooler of the exported checkpoint: not trained by MLM, initialised as transformers does */
        uint64_t s = hash_str("bert.pooler.dense.weight", pd_mix64((uint64_t)o.seed));
        for (int k = 0; k < o.hidden * o.hidden; k++) {
            double u = 1.0 - rnd_unit(&s), v = rnd_unit(&s);
            pooler_w[k] = (float)(0.02 * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
        }
    }
    run_state rs = {0, 0, 0, 0, 0, 0};
    if (pd_path_join(path, sizeof path, o.out, "state.safetensors")) goto out;
    if (o.resume) {
        if (resume_state(path, fp, &rs, err, sizeof err) || pd_pretrainer_load(t, path, err, sizeof err)) {
            fprintf(stderr, "peftd pretrain: cannot resume: %s\n", err);
            goto out;
        }
        if (o.eval_only) {
            double l, a;
            if (evaluate(t, held, o.eval_windows, o.batch, &emc, &b, &l, &a, err, sizeof err)) goto fail;
            printf("step %ld, %.0f tokens: held-out loss %.6f, accuracy %.6f\n", pd_pretrainer_steps(t), rs.tokens, l, a);
            rc = 0;
            goto out;
        }
        csv_truncate(o.out, "heldout.csv", pd_pretrainer_steps(t));
        csv_truncate(o.out, "train.csv", pd_pretrainer_steps(t));
        fprintf(stderr, "pretrain: resumed at step %ld of %ld (epoch %ld, window %ld, %.0f tokens, %.1f min trained)\n",
                pd_pretrainer_steps(t), rs.total, rs.epoch, rs.pos, rs.tokens, rs.seconds / 60);
    } else {
        struct stat sb;
        if (stat(path, &sb) == 0) {
            fprintf(stderr, "peftd pretrain: %s exists: pass --resume to continue it, or another --out\n", path);
            goto out;
        }
        remove(strcat(strcpy(cache, o.out), "/heldout.csv"));
        remove(strcat(strcpy(cache, o.out), "/train.csv"));
    }
    double avg_tokens = (double)train->n_wtok / train->n_win * o.batch;
    if (!rs.total && o.tokens > 0) rs.total = (long)ceil(o.tokens / avg_tokens);
    else if (rs.total && o.tokens > 0 && (long)ceil(o.tokens / avg_tokens) != rs.total) {
        /* a resumed run given another length: the decay stretches or shrinks to the new end (the
         * warmup stays); it cannot end before the step it stands at */
        long was = rs.total, want = (long)ceil(o.tokens / avg_tokens);
        if (want <= pd_pretrainer_steps(t)) {
            fprintf(stderr, "peftd pretrain: --tokens %.0f ends at step %ld, but the run is at step %ld\n",
                    o.tokens, want, pd_pretrainer_steps(t));
            goto out;
        }
        rs.total = want;
        fprintf(stderr, "pretrain: schedule %s from %ld to %ld steps (%.0f tokens)\n",
                want > was ? "lengthened" : "shortened", was, rs.total, o.tokens);
    }
    if (!rs.warmup && rs.total) rs.warmup = o.warmup >= 1 ? (long)o.warmup : (long)ceil(o.warmup * rs.total);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    epoch_order(perm, train->n_win, (uint64_t)o.seed, rs.epoch);
    double start = pd_now(), last_log = start, last_eval = rs.seconds, last_ckpt = start;
    long log_steps = 0, log_correct = 0, log_masked = 0;
    double log_loss = 0, log_tokens = 0, log_time = 0, rate = 0;
    if (pd_pretrainer_steps(t) == 0) { /* the curve starts at the random model */
        double l, a;
        if (evaluate(t, held, o.eval_windows, o.batch, &emc, &b, &l, &a, err, sizeof err)) goto fail;
        char line[256];
        snprintf(line, sizeof line, "0,0,0.00,%.6f,%.6f", l, a);
        csv_append(o.out, "heldout.csv", "step,tokens,minutes,loss,accuracy", line);
        fprintf(stderr, "pretrain: held-out at step 0: loss %.4f, accuracy %.4f\n", l, a);
    }
    if (!rs.total) {
        /* --minutes: time a few steps at learning rate 0 (the weights do not move), size the
         * schedule from them, then forget them: the run starts from the same state as ever */
        const int CALIB = 4;
        double c0 = 0;
        for (int k = 0; k <= CALIB; k++) {
            b.n = b.n_masked = 0;
            b.tokens = 0;
            for (int i = 0; i < o.batch; i++) {
                int w = perm[(k * o.batch + i) % train->n_win];
                batch_add(&b, train, w, pd_mask_key((uint64_t)o.seed, 0, w), &mc);
            }
            pd_mlm_batch bv = batch_view(&b);
            pd_step_stats ss;
            if (k == 1) c0 = pd_now(); /* the first step warms the buffers up */
            if (pd_pretrainer_step(t, &bv, 0.0, &ss, err, sizeof err)) goto fail;
        }
        double per = (pd_now() - c0) / CALIB;
        pd_pretrainer_reset_optimizer(t);
        rs.total = (long)(o.minutes * 60 / per);
        if (rs.total < 1) rs.total = 1;
        rs.warmup = o.warmup >= 1 ? (long)o.warmup : (long)ceil(o.warmup * rs.total);
        fprintf(stderr, "pretrain: %.3f s a step: %ld steps in %.1f minutes, warmup %ld\n", per, rs.total, o.minutes, rs.warmup);
        start = last_log = last_ckpt = pd_now();
    }
    for (;;) {
        long step = pd_pretrainer_steps(t);
        if (step >= rs.total) break;
        if (g_stop) break;
        if (o.stop_minutes > 0 && pd_now() - start >= o.stop_minutes * 60) break;
        if (o.stop_steps > 0 && step >= o.stop_steps) break;
        /* the next batch: windows in epoch order */
        b.n = b.n_masked = 0;
        b.tokens = 0;
        while (b.n < o.batch) {
            if (rs.pos >= train->n_win) {
                rs.epoch++;
                rs.pos = 0;
                epoch_order(perm, train->n_win, (uint64_t)o.seed, rs.epoch);
            }
            int w = perm[rs.pos];
            batch_add(&b, train, w, pd_mask_key((uint64_t)o.seed, rs.epoch, w), &mc);
            rs.pos++;
        }
        double lr = o.lr * pd_lr_lambda(step, rs.warmup, rs.total);
        pd_mlm_batch bv = batch_view(&b);
        pd_step_stats ss;
        double ts = pd_now();
        if (pd_pretrainer_step(t, &bv, lr, &ss, err, sizeof err)) goto fail;
        double dt = pd_now() - ts;
        if (!isfinite(ss.loss)) {
            fprintf(stderr, "peftd pretrain: the loss is %g at step %ld (lower --lr?)\n", ss.loss, step);
            goto out;
        }
        rs.tokens += (double)b.tokens;
        rs.seconds += dt;
        log_steps++;
        log_loss += ss.loss;
        log_correct += ss.correct;
        log_masked += b.n_masked;
        log_tokens += (double)b.tokens;
        log_time += dt;
        step++;
        double now = pd_now();
        if (now - last_log >= o.log_seconds || step >= rs.total) {
            rate = log_tokens / log_time;
            char eta[32], el[32];
            fmt_duration((rs.total - step) * (log_time / log_steps), eta, sizeof eta);
            fmt_duration(rs.seconds, el, sizeof el);
            fprintf(stderr, "step %ld/%ld  tokens %.2fM  %.0f tok/s  loss %.4f  acc %.4f  lr %.2e  |g| %.2f  epoch %ld  %s  ETA %s\n",
                    step, rs.total, rs.tokens / 1e6, rate, log_loss / log_steps, (double)log_correct / log_masked, lr,
                    ss.grad_norm, rs.epoch, el, eta);
            char line[256];
            snprintf(line, sizeof line, "%ld,%.0f,%.2f,%.6f,%.6f,%.6g,%.0f", step, rs.tokens, rs.seconds / 60, log_loss / log_steps,
                     (double)log_correct / log_masked, lr, rate);
            csv_append(o.out, "train.csv", "step,tokens,minutes,loss,accuracy,lr,tokens_per_s", line);
            last_log = now;
            log_steps = log_correct = log_masked = 0;
            log_loss = log_tokens = log_time = 0;
        }
        int done = step >= rs.total;
        if (done || (o.eval_minutes > 0 && rs.seconds - last_eval >= o.eval_minutes * 60)) {
            double l, a;
            if (evaluate(t, held, o.eval_windows, o.batch, &emc, &b, &l, &a, err, sizeof err)) goto fail;
            char line[256];
            snprintf(line, sizeof line, "%ld,%.0f,%.2f,%.6f,%.6f", step, rs.tokens, rs.seconds / 60, l, a);
            csv_append(o.out, "heldout.csv", "step,tokens,minutes,loss,accuracy", line);
            fprintf(stderr, "pretrain: held-out at step %ld (%.2fM tokens): loss %.4f, accuracy %.4f\n", step, rs.tokens / 1e6, l, a);
            last_eval = rs.seconds;
        }
        if (!done && o.ckpt_minutes > 0 && pd_now() - last_ckpt >= o.ckpt_minutes * 60) {
            double c0 = pd_now();
            if (checkpoint(t, &o, &rs, fp, dtype, pooler_w, pooler_b, err, sizeof err)) goto fail;
            fprintf(stderr, "pretrain: checkpoint at step %ld (%.1f s)\n", step, pd_now() - c0);
            last_ckpt = pd_now();
        }
    }
    if (checkpoint(t, &o, &rs, fp, dtype, pooler_w, pooler_b, err, sizeof err)) goto fail;
    if (pd_pretrainer_steps(t) >= rs.total)
        fprintf(stderr, "pretrain: done: %ld steps, %.2fM tokens, %.1f minutes of training; model in %s/model\n",
                pd_pretrainer_steps(t), rs.tokens / 1e6, rs.seconds / 60, o.out);
    else
        fprintf(stderr, "pretrain: stopped at step %ld of %ld%s with a checkpoint; continue with --resume\n", pd_pretrainer_steps(t),
                rs.total, g_stop ? " (signal)" : "");
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "peftd pretrain: %s\n", err);
out:
    batch_free(&b);
    pd_pretrainer_free(t);
    pd_pool_free(pool);
    pd_corpus_free(train);
    pd_corpus_free(held);
    pd_tokenizer_free(tok);
    free(special);
    free(draw);
    free(perm);
    free(pooler_w);
    free(pooler_b);
    return rc;
}
