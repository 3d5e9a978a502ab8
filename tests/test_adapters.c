/* test_adapters.c - adapters of every method in their real file formats (PEFT, AdapterHub),
 * written by this test next to tiny random base checkpoints of each architecture:
 * identities (B = 0, l = 1, adapter_up = 0), LoRA/IA3 against checkpoints with the delta merged
 * into the weights, heads, mixed batches against sequences run alone, save/load round trips,
 * every refusal, and reference counting from several threads. */
#include "adapter.h"
#include "safetensors.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[2048];
static char root[256];

/* ==== Tensor lists and random numbers ==== */

typedef struct { char name[256]; int ndim; int64_t shape[2]; float *data; } T;
typedef struct { T *t; int n, cap; } TL;

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *tl_add(TL *l, const char *name, int64_t d0, int64_t d1, float scale, float mean) {
    if (l->n == l->cap) { l->cap = l->cap ? l->cap * 2 : 64; l->t = realloc(l->t, sizeof(T) * (size_t)l->cap); PD_ASSERT(l->t); }
    T *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    t->data = malloc(sizeof(float) * (n ? n : 1));
    PD_ASSERT(t->data);
    for (size_t i = 0; i < n; i++) t->data[i] = mean + scale * frand();
    return t->data;
}

static float *tl_addf(TL *l, int64_t d0, int64_t d1, float scale, float mean, const char *fmt, ...) PD_PRINTF(6, 7);
static float *tl_addf(TL *l, int64_t d0, int64_t d1, float scale, float mean, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return tl_add(l, name, d0, d1, scale, mean);
}

static T *tl_find(TL *l, const char *name) {
    for (int i = 0; i < l->n; i++) if (!strcmp(l->t[i].name, name)) return &l->t[i];
    return NULL;
}

static void tl_copy(TL *dst, const TL *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++) {
        const T *s = &src->t[i];
        float *d = tl_add(dst, s->name, s->shape[0], s->shape[1], 0, 0);
        memcpy(d, s->data, sizeof(float) * (size_t)(s->shape[0] * (s->ndim == 2 ? s->shape[1] : 1)));
    }
}

static void tl_free(TL *l) {
    for (int i = 0; i < l->n; i++) free(l->t[i].data);
    free(l->t);
    memset(l, 0, sizeof *l);
}

static void tl_write(const TL *l, const char *path) {
    pd_st_wtensor *w = calloc((size_t)(l->n ? l->n : 1), sizeof *w);
    for (int i = 0; i < l->n; i++) {
        w[i].name = l->t[i].name;
        w[i].ndim = l->t[i].ndim;
        w[i].shape[0] = l->t[i].shape[0];
        w[i].shape[1] = l->t[i].shape[1];
        w[i].data = l->t[i].data;
    }
    pd_status st = pd_st_write(path, w, l->n, NULL, 0, err, sizeof err);
    if (st) fprintf(stderr, "pd_st_write %s: %s\n", path, err);
    PD_ASSERT(st == PD_OK);
    free(w);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    PD_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static void mkdir_p(const char *d) { mkdir(d, 0755); }

/* ==== Tiny base checkpoints ==== */

enum { H = 16, NH = 2, NL = 2, FF = 32, VOCAB = 30 };

static const char *const BERT_LIN[6] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                        "attention.output.dense", "intermediate.dense", "output.dense"};
static const char *const DIST_LIN[6] = {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"};

static const char *pfx(pd_arch a) { return a == PD_ARCH_BERT ? "bert" : a == PD_ARCH_ROBERTA ? "roberta" : "distilbert"; }

/* "bert.encoder.layer.1.attention.self.query" */
static void mod_path(pd_arch a, int l, int k, char *buf, size_t cap) {
    if (a == PD_ARCH_DISTILBERT) snprintf(buf, cap, "distilbert.transformer.layer.%d.%s", l, DIST_LIN[k]);
    else snprintf(buf, cap, "%s.encoder.layer.%d.%s", pfx(a), l, BERT_LIN[k]);
}
static int lin_in(int k) { return k == 5 ? FF : H; }
static int lin_out(int k) { return k == 4 ? FF : H; }

/* A random checkpoint: nl > 0 adds a classification head with nl labels, qa a QA head. */
static void gen_base(TL *l, pd_arch a, int nl, int qa) {
    memset(l, 0, sizeof *l);
    const char *p = pfx(a);
    int maxpos = a == PD_ARCH_ROBERTA ? 42 : 40;
    tl_addf(l, VOCAB, H, 0.5f, 0, "%s.embeddings.word_embeddings.weight", p);
    tl_addf(l, maxpos, H, 0.5f, 0, "%s.embeddings.position_embeddings.weight", p);
    if (a != PD_ARCH_DISTILBERT) tl_addf(l, a == PD_ARCH_ROBERTA ? 1 : 2, H, 0.5f, 0, "%s.embeddings.token_type_embeddings.weight", p);
    tl_addf(l, H, 0, 0.1f, 1, "%s.embeddings.LayerNorm.weight", p);
    tl_addf(l, H, 0, 0.1f, 0, "%s.embeddings.LayerNorm.bias", p);
    for (int i = 0; i < NL; i++) {
        char m[256];
        for (int k = 0; k < 6; k++) {
            mod_path(a, i, k, m, sizeof m);
            tl_addf(l, lin_out(k), lin_in(k), 0.3f, 0, "%s.weight", m);
            tl_addf(l, lin_out(k), 0, 0.1f, 0, "%s.bias", m);
        }
        const char *ln1 = a == PD_ARCH_DISTILBERT ? "sa_layer_norm" : "attention.output.LayerNorm";
        const char *ln2 = a == PD_ARCH_DISTILBERT ? "output_layer_norm" : "output.LayerNorm";
        const char *stem = a == PD_ARCH_DISTILBERT ? "transformer" : "encoder";
        tl_addf(l, H, 0, 0.1f, 1, "%s.%s.layer.%d.%s.weight", p, stem, i, ln1);
        tl_addf(l, H, 0, 0.1f, 0, "%s.%s.layer.%d.%s.bias", p, stem, i, ln1);
        tl_addf(l, H, 0, 0.1f, 1, "%s.%s.layer.%d.%s.weight", p, stem, i, ln2);
        tl_addf(l, H, 0, 0.1f, 0, "%s.%s.layer.%d.%s.bias", p, stem, i, ln2);
    }
    if (a != PD_ARCH_DISTILBERT) {
        tl_addf(l, H, H, 0.3f, 0, "%s.pooler.dense.weight", p);
        tl_addf(l, H, 0, 0.1f, 0, "%s.pooler.dense.bias", p);
    }
    if (nl > 0) {
        if (a == PD_ARCH_ROBERTA) {
            tl_add(l, "classifier.dense.weight", H, H, 0.3f, 0);
            tl_add(l, "classifier.dense.bias", H, 0, 0.1f, 0);
            tl_add(l, "classifier.out_proj.weight", nl, H, 0.3f, 0);
            tl_add(l, "classifier.out_proj.bias", nl, 0, 0.1f, 0);
        } else {
            if (a == PD_ARCH_DISTILBERT) {
                tl_add(l, "pre_classifier.weight", H, H, 0.3f, 0);
                tl_add(l, "pre_classifier.bias", H, 0, 0.1f, 0);
            }
            tl_add(l, "classifier.weight", nl, H, 0.3f, 0);
            tl_add(l, "classifier.bias", nl, 0, 0.1f, 0);
        }
    }
    if (qa) {
        tl_add(l, "qa_outputs.weight", 2, H, 0.3f, 0);
        tl_add(l, "qa_outputs.bias", 2, 0, 0.1f, 0);
    }
}

static void write_base(const char *dir, pd_arch a, const TL *l, int nl) {
    mkdir_p(dir);
    char cfg[2048], lab[256] = "";
    if (nl > 0) {
        size_t k = (size_t)snprintf(lab, sizeof lab, ", \"id2label\": {");
        for (int i = 0; i < nl; i++) k += (size_t)snprintf(lab + k, sizeof lab - k, "%s\"%d\": \"base%d\"", i ? ", " : "", i, i);
        snprintf(lab + k, sizeof lab - k, "}");
    }
    if (a == PD_ARCH_DISTILBERT)
        snprintf(cfg, sizeof cfg, "{\"model_type\": \"distilbert\", \"vocab_size\": %d, \"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, "
                 "\"hidden_dim\": %d, \"max_position_embeddings\": 40, \"pad_token_id\": 0, \"activation\": \"gelu\"%s}", VOCAB, H, NL, NH, FF, lab);
    else
        snprintf(cfg, sizeof cfg, "{\"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, \"num_hidden_layers\": %d, "
                 "\"num_attention_heads\": %d, \"intermediate_size\": %d, \"max_position_embeddings\": %d, \"type_vocab_size\": %d, "
                 "\"pad_token_id\": %d, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"%s}",
                 pfx(a), VOCAB, H, NL, NH, FF, a == PD_ARCH_ROBERTA ? 42 : 40, a == PD_ARCH_ROBERTA ? 1 : 2, a == PD_ARCH_ROBERTA ? 1 : 0, lab);
    write_text(dir, "config.json", cfg);
    char vocab[1024] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (int i = 5; i < VOCAB; i++) {
        char w[8];
        snprintf(w, sizeof w, "%c%c\n", 'a' + (i % 26), 'a' + (i / 26));
        strcat(vocab, w);
    }
    write_text(dir, "vocab.txt", vocab);
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    tl_write(l, p);
}

static pd_model *load_model(const char *dir) {
    pd_model *m = NULL;
    pd_status st = pd_model_load(dir, 0, &m, err, sizeof err);
    if (st) fprintf(stderr, "pd_model_load %s: %s\n", dir, err);
    PD_ASSERT(st == PD_OK);
    return m;
}

/* ==== Adapters on disk ==== */

static void write_adapter(const char *dir, const char *config, const TL *w, const char *wname) {
    mkdir_p(dir);
    write_text(dir, "adapter_config.json", config);
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, wname);
    tl_write(w, p);
}

static pd_adapter *load_adapter(const pd_model *m, const char *dir) {
    pd_adapter *a = NULL;
    pd_status st = pd_adapter_load_dir(m, dir, &a, err, sizeof err);
    if (st) fprintf(stderr, "load %s: %s (%s)\n", dir, err, pd_status_name(st));
    return a;
}

/* Expects loading dir to fail with st and a message containing every needle. */
static void expect_fail(const pd_model *m, const char *dir, pd_status want, const char *n1, const char *n2) {
    pd_adapter *a = NULL;
    err[0] = 0;
    pd_status st = pd_adapter_load_dir(m, dir, &a, err, sizeof err);
    CHECKF(st == want && a == NULL, "%s: got %s (%s), want %s", dir, pd_status_name(st), err, pd_status_name(want));
    if (n1) CHECKF(strstr(err, n1) != NULL, "%s: message '%s' lacks '%s'", dir, err, n1);
    if (n2) CHECKF(strstr(err, n2) != NULL, "%s: message '%s' lacks '%s'", dir, err, n2);
    pd_adapter_release(a);
}

/* ==== Running ==== */

static const int32_t IDS[3][9] = {{2, 7, 9, 11, 13, 3}, {2, 5, 6, 7, 8, 9, 10, 11, 3}, {2, 29, 28, 3}};
static const int LENS[3] = {6, 9, 4};

/* Hidden states of one sequence run alone: (*len, H) malloc'd. */
static float *run1(pd_ctx *c, const pd_delta *d, int s, int *len) {
    pd_seq q = {IDS[s], NULL, LENS[s], d, 0};
    pd_status st = pd_forward(c, &q, 1, err, sizeof err);
    if (st) fprintf(stderr, "pd_forward: %s\n", err);
    PD_ASSERT(st == PD_OK);
    const float *h = pd_ctx_hidden(c, 0, len);
    float *o = malloc(sizeof(float) * (size_t)*len * H);
    memcpy(o, h, sizeof(float) * (size_t)*len * H);
    return o;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - b[i]); if (d > m || d != d) m = d != d ? 1e9 : d; }
    return m;
}

/* Max difference of every test sequence between delta da on ca and db on cb. */
static double compare(pd_ctx *ca, const pd_delta *da, pd_ctx *cb, const pd_delta *db) {
    double m = 0;
    for (int s = 0; s < 3; s++) {
        int la, lb;
        float *x = run1(ca, da, s, &la), *y = run1(cb, db, s, &lb);
        double d = la == lb ? maxdiff(x, y, (size_t)la * H) : 1e9;
        if (d > m) m = d;
        free(x);
        free(y);
    }
    return m;
}

/* ==== Adapter builders ==== */

/* LoRA on layers/linears in mask (bit l*6+k), rank r; zero_b makes B = 0. Returns the scaling. */
static void lora_tensors(TL *w, pd_arch a, unsigned mask, int r, int zero_b, const char *infix) {
    memset(w, 0, sizeof *w);
    char m[256];
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < 6; k++) {
            if (!(mask >> (l * 6 + k) & 1)) continue;
            mod_path(a, l, k, m, sizeof m);
            tl_addf(w, r, lin_in(k), 0.3f, 0, "base_model.model.%s.lora_A%s.weight", m, infix);
            tl_addf(w, lin_out(k), r, zero_b ? 0.0f : 0.3f, 0, "base_model.model.%s.lora_B%s.weight", m, infix);
        }
}

/* Merges s * B A of the LoRA tensors into a copy of the base weights. */
static void lora_merge(TL *merged, const TL *base, const TL *w, pd_arch a, float s) {
    tl_copy(merged, base);
    char m[256], n[300];
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < 6; k++) {
            mod_path(a, l, k, m, sizeof m);
            snprintf(n, sizeof n, "base_model.model.%s.lora_A.weight", m);
            T *A = tl_find((TL *)w, n);
            if (!A) continue;
            snprintf(n, sizeof n, "base_model.model.%s.lora_B.weight", m);
            T *B = tl_find((TL *)w, n);
            snprintf(n, sizeof n, "%s.weight", m);
            T *W = tl_find(merged, n);
            int r = (int)A->shape[0], in = lin_in(k), out = lin_out(k);
            for (int i = 0; i < out; i++)
                for (int j = 0; j < in; j++) {
                    double acc = 0;
                    for (int q = 0; q < r; q++) acc += (double)B->data[i * r + q] * A->data[q * in + j];
                    W->data[i * in + j] += (float)(s * acc);
                }
        }
}

static char *peft_lora_config(pd_arch a, int r, double alpha, const char *targets, const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "{\"peft_type\": \"LORA\", \"task_type\": \"FEATURE_EXTRACTION\", \"r\": %d, \"lora_alpha\": %g, "
             "\"lora_dropout\": 0.1, \"target_modules\": %s, \"bias\": \"none\", \"fan_in_fan_out\": false, "
             "\"base_model_name_or_path\": \"tiny-%s\", \"inference_mode\": true, \"init_lora_weights\": true, "
             "\"use_dora\": false, \"use_rslora\": false, \"modules_to_save\": null, \"some_future_key\": {\"x\": 1}%s}",
             r, alpha, targets, pfx(a), extra ? extra : "");
    return buf;
}

static char *hub_config(pd_arch a, const char *name, const char *cfg) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "{\"config\": %s, \"hidden_size\": %d, \"model_class\": \"%sAdapterModel\", \"model_name\": \"tiny\", "
             "\"model_type\": \"%s\", \"name\": \"%s\", \"version\": \"1.0.0\"}", cfg, H, pfx(a), pfx(a), name);
    return buf;
}

/* Bottleneck tensors: sites bit 0 = mh_adapter (attention), bit 1 = output_adapter. */
static void bn_tensors(TL *w, pd_arch a, const char *name, int sites, int ds, int zero_up, int lnb, int lna, int scale_kind) {
    memset(w, 0, sizeof *w);
    for (int l = 0; l < NL; l++)
        for (int s = 0; s < 2; s++) {
            if (!(sites >> s & 1)) continue;
            char m[256];
            if (a == PD_ARCH_DISTILBERT) snprintf(m, sizeof m, "distilbert.transformer.layer.%d.%s.adapters.%s", l, s ? "output_adapters" : "attention_adapters", name);
            else snprintf(m, sizeof m, "%s.encoder.layer.%d.%s.adapters.%s", pfx(a), l, s ? "output" : "attention.output", name);
            int d = lnb ? 1 : 0;
            if (lnb) {
                float *lw = tl_addf(w, H, 0, 0.1f, 1, "%s.adapter_down.0.weight", m);
                float *lb = tl_addf(w, H, 0, 0.1f, 0, "%s.adapter_down.0.bias", m);
                memcpy(tl_addf(w, H, 0, 0, 0, "%s.adapter_norm_before.weight", m), lw, sizeof(float) * H);
                memcpy(tl_addf(w, H, 0, 0, 0, "%s.adapter_norm_before.bias", m), lb, sizeof(float) * H);
            }
            tl_addf(w, ds, H, 0.4f, 0, "%s.adapter_down.%d.weight", m, d);
            tl_addf(w, ds, 0, 0.1f, 0, "%s.adapter_down.%d.bias", m, d);
            tl_addf(w, H, ds, zero_up ? 0.0f : 0.4f, 0, "%s.adapter_up.weight", m);
            tl_addf(w, H, 0, zero_up ? 0.0f : 0.1f, 0, "%s.adapter_up.bias", m);
            if (lna) {
                tl_addf(w, H, 0, 0.1f, 1, "%s.adapter_norm_after.weight", m);
                tl_addf(w, H, 0, 0.1f, 0, "%s.adapter_norm_after.bias", m);
            }
            if (scale_kind) tl_addf(w, scale_kind == 1 ? 1 : H, 0, 0.2f, 1, "%s.scaling", m);
        }
}

static const char *SEQ_BN = "{\"architecture\": \"bottleneck\", \"mh_adapter\": false, \"output_adapter\": true, \"reduction_factor\": 4, "
    "\"non_linearity\": \"relu\", \"original_ln_before\": true, \"original_ln_after\": true, \"residual_before_ln\": true, "
    "\"adapter_residual_before_ln\": false, \"ln_before\": false, \"ln_after\": false, \"scaling\": 1.0, \"use_gating\": false, "
    "\"phm_layer\": false, \"init_weights\": \"bert\", \"is_parallel\": false, \"leave_out\": [], \"dropout\": 0.0, "
    "\"inv_adapter\": null, \"inv_adapter_reduction_factor\": null, \"cross_adapter\": false, \"stochastic_depth\": 0.0}";

/* ==== Tests ==== */

static void dirname_of(char *buf, size_t cap, const char *leaf) { snprintf(buf, cap, "%s/%s", root, leaf); }

typedef struct arch_env {
    pd_arch arch;
    TL base;
    char dir[512];
    pd_model *m;
    pd_ctx *c, *c2;
} arch_env;

static void env_init(arch_env *e, pd_arch a, int nl, int qa) {
    e->arch = a;
    gen_base(&e->base, a, nl, qa);
    char leaf[64];
    snprintf(leaf, sizeof leaf, "base-%s", pfx(a));
    dirname_of(e->dir, sizeof e->dir, leaf);
    write_base(e->dir, a, &e->base, nl);
    e->m = load_model(e->dir);
    e->c = pd_ctx_new(e->m, NULL);
    e->c2 = pd_ctx_new(e->m, NULL);
}

static void env_free(arch_env *e) {
    pd_ctx_free(e->c);
    pd_ctx_free(e->c2);
    pd_model_free(e->m);
    tl_free(&e->base);
}

/* (1) B = 0 is the base; (2) LoRA equals the merged checkpoint; rank/alpha patterns, rslora, ".default". */
static void test_lora(arch_env *e) {
    pd_arch a = e->arch;
    char d[512], leaf[64];
    TL w, merged;
    unsigned mask = 0;
    for (int l = 0; l < NL; l++) mask |= (1u << (l * 6 + 0)) | (1u << (l * 6 + 2)) | (1u << (l * 6 + 4)) | (1u << (l * 6 + 5));
    /* "output.dense" alone would also select attention.output.dense (PEFT matches suffixes) */
    const char *targets = a == PD_ARCH_DISTILBERT ? "[\"q_lin\", \"v_lin\", \"lin1\", \"lin2\"]"
                                                  : "[\"query\", \"value\", \"intermediate.dense\", \"layer.0.output.dense\", \"layer.1.output.dense\"]";

    lora_tensors(&w, a, mask, 4, 1, "");
    snprintf(leaf, sizeof leaf, "lora0-%s", pfx(a));
    dirname_of(d, sizeof d, leaf);
    write_adapter(d, peft_lora_config(a, 4, 8, targets, NULL), &w, "adapter_model.safetensors");
    pd_adapter *ad = load_adapter(e->m, d);
    CHECK(ad != NULL);
    if (ad) {
        CHECKF(compare(e->c, pd_adapter_delta(ad), e->c2, NULL) == 0.0, "%s: LoRA with B = 0 differs from the base", pfx(a));
        CHECK(pd_adapter_method(ad) == PD_METHOD_LORA);
        CHECK(pd_adapter_params(ad) == (int64_t)NL * (4 * H + H * 4 + 4 * H + H * 4 + 4 * H + FF * 4 + 4 * FF + H * 4));
        CHECK(pd_adapter_bytes(ad) > (size_t)pd_adapter_params(ad) * 4);
    }
    pd_adapter_release(ad);
    tl_free(&w);

    /* rank 4 with alpha 8 (scale 2), rank_pattern/alpha_pattern on the value linears, ".default" names. */
    for (int variant = 0; variant < 3; variant++) {
        lora_tensors(&w, a, mask, 4, 0, variant == 2 ? ".default" : "");
        const char *extra = variant == 1 ? ", \"use_rslora\": true" : NULL;
        double alpha = variant == 1 ? 6 : 8;
        float s = variant == 1 ? (float)(6 / sqrt(4.0)) : 2.0f;
        snprintf(leaf, sizeof leaf, "lora-%s-%d", pfx(a), variant);
        dirname_of(d, sizeof d, leaf);
        char *cfg = peft_lora_config(a, 4, alpha, targets, extra);
        if (variant == 1) { /* use_rslora key appears twice otherwise: rewrite it */
            char *p = strstr(cfg, "\"use_rslora\": false, ");
            if (p) memmove(p, p + strlen("\"use_rslora\": false, "), strlen(p + strlen("\"use_rslora\": false, ")) + 1);
        }
        write_adapter(d, cfg, &w, "adapter_model.safetensors");
        ad = load_adapter(e->m, d);
        CHECKF(ad != NULL, "variant %d", variant);
        if (variant == 2) { /* the merge helper reads names without ".default" */
            TL w2;
            lora_tensors(&w2, a, 0, 4, 0, "");
            for (int i = 0; i < w.n; i++) {
                char n[256];
                snprintf(n, sizeof n, "%s", w.t[i].name);
                char *q = strstr(n, ".default");
                memmove(q, q + 8, strlen(q + 8) + 1);
                float *dd = tl_add(&w2, n, w.t[i].shape[0], w.t[i].shape[1], 0, 0);
                memcpy(dd, w.t[i].data, sizeof(float) * (size_t)(w.t[i].shape[0] * w.t[i].shape[1]));
            }
            tl_free(&w);
            w = w2;
        }
        lora_merge(&merged, &e->base, &w, a, s);
        snprintf(leaf, sizeof leaf, "merged-%s-%d", pfx(a), variant);
        char md[512];
        dirname_of(md, sizeof md, leaf);
        write_base(md, a, &merged, 0);
        pd_model *mm = load_model(md);
        pd_ctx *mc = pd_ctx_new(mm, NULL);
        if (ad) {
            double diff = compare(e->c, pd_adapter_delta(ad), mc, NULL);
            CHECKF(diff < 1e-4, "%s variant %d: LoRA vs merged checkpoint differ by %g", pfx(a), variant, diff);
            double moved = compare(e->c, pd_adapter_delta(ad), e->c2, NULL);
            CHECKF(moved > 1e-3, "%s variant %d: LoRA changes nothing (%g)", pfx(a), variant, moved);
        }
        pd_ctx_free(mc);
        pd_model_free(mm);
        tl_free(&merged);
        pd_adapter_release(ad);
        tl_free(&w);
    }
}

/* (3) IA3 with l = 1 is the base; random l equals the merged checkpoint. */
static void test_ia3(arch_env *e) {
    pd_arch a = e->arch;
    char d[512], leaf[64], m[256];
    for (int ones = 1; ones >= 0; ones--) {
        TL w, merged;
        memset(&w, 0, sizeof w);
        /* key, value (output scaled), output dense / lin2 (feed-forward: input scaled); on bert and
         * roberta "output.dense" also selects attention.output.dense, feed-forward too, as in PEFT */
        int ks[4] = {1, 2, 5, 3}, nk = a == PD_ARCH_DISTILBERT ? 3 : 4;
        for (int l = 0; l < NL; l++)
            for (int i = 0; i < nk; i++) {
                int k = ks[i];
                mod_path(a, l, k, m, sizeof m);
                if (k >= 3) tl_addf(&w, 1, lin_in(k), ones ? 0 : 0.5f, 1, "base_model.model.%s.ia3_l", m);
                else tl_addf(&w, lin_out(k), 1, ones ? 0 : 0.5f, 1, "base_model.model.%s.ia3_l", m);
            }
        const char *cfg = a == PD_ARCH_DISTILBERT
            ? "{\"peft_type\": \"IA3\", \"task_type\": \"FEATURE_EXTRACTION\", \"target_modules\": [\"k_lin\", \"v_lin\", \"lin2\"], \"feedforward_modules\": [\"lin2\"], \"fan_in_fan_out\": false, \"init_ia3_weights\": true, \"modules_to_save\": null}"
            : "{\"peft_type\": \"IA3\", \"task_type\": \"FEATURE_EXTRACTION\", \"target_modules\": [\"key\", \"value\", \"output.dense\"], \"feedforward_modules\": [\"output.dense\"], \"fan_in_fan_out\": false, \"init_ia3_weights\": true, \"modules_to_save\": null}";
        snprintf(leaf, sizeof leaf, "ia3-%s-%d", pfx(a), ones);
        dirname_of(d, sizeof d, leaf);
        write_adapter(d, cfg, &w, "adapter_model.safetensors");
        pd_adapter *ad = load_adapter(e->m, d);
        CHECK(ad != NULL);
        if (ad && ones) CHECKF(compare(e->c, pd_adapter_delta(ad), e->c2, NULL) == 0.0, "%s: IA3 with l = 1 differs from the base", pfx(a));
        if (ad && !ones) {
            tl_copy(&merged, &e->base);
            for (int l = 0; l < NL; l++)
                for (int i = 0; i < nk; i++) {
                    int k = ks[i], in = lin_in(k), out = lin_out(k);
                    char n[300];
                    mod_path(a, l, k, m, sizeof m);
                    snprintf(n, sizeof n, "base_model.model.%s.ia3_l", m);
                    T *lv = tl_find(&w, n);
                    snprintf(n, sizeof n, "%s.weight", m);
                    T *W = tl_find(&merged, n);
                    snprintf(n, sizeof n, "%s.bias", m);
                    T *B = tl_find(&merged, n);
                    for (int r = 0; r < out; r++)
                        for (int c = 0; c < in; c++) W->data[r * in + c] *= k >= 3 ? lv->data[c] : lv->data[r];
                    if (k < 3) for (int r = 0; r < out; r++) B->data[r] *= lv->data[r];
                }
            char md[512];
            snprintf(leaf, sizeof leaf, "ia3merged-%s", pfx(a));
            dirname_of(md, sizeof md, leaf);
            write_base(md, a, &merged, 0);
            pd_model *mm = load_model(md);
            pd_ctx *mc = pd_ctx_new(mm, NULL);
            double diff = compare(e->c, pd_adapter_delta(ad), mc, NULL);
            CHECKF(diff < 1e-4, "%s: IA3 vs merged checkpoint differ by %g", pfx(a), diff);
            pd_ctx_free(mc);
            pd_model_free(mm);
            tl_free(&merged);
        }
        pd_adapter_release(ad);
        tl_free(&w);
    }
}

/* (4) Bottleneck adapters with adapter_up = 0 are the base where AdapterHub guarantees it. */
static void test_bn_identity(arch_env *e) {
    pd_arch a = e->arch;
    static const char *cfgs[3] = {"\"seq_bn\"", "\"double_seq_bn\"", "\"par_bn\""};
    static const int sites[3] = {2, 3, 2};
    static const int ds[3] = {1, 1, 8}; /* 16 // 16, 16 // 16, 16 // 2 */
    for (int i = 0; i < 3; i++) {
        TL w;
        bn_tensors(&w, a, "task", sites[i], ds[i], 1, 0, 0, 0);
        char d[512], leaf[64];
        snprintf(leaf, sizeof leaf, "bn0-%s-%d", pfx(a), i);
        dirname_of(d, sizeof d, leaf);
        write_adapter(d, hub_config(a, "task", cfgs[i]), &w, "adapter.safetensors");
        pd_adapter *ad = load_adapter(e->m, d);
        CHECKF(ad != NULL, "%s %s", pfx(a), cfgs[i]);
        if (ad) {
            double diff = compare(e->c, pd_adapter_delta(ad), e->c2, NULL);
            CHECKF(diff < 1e-6, "%s %s with adapter_up = 0 differs from the base by %g", pfx(a), cfgs[i], diff);
            CHECK(pd_adapter_method(ad) == PD_METHOD_BOTTLENECK);
        }
        pd_adapter_release(ad);
        tl_free(&w);
    }
}

/* Heads: a LoRA SEQ_CLS adapter with its own classifier (labels from the config) equals the merged
 * checkpoint with that classifier; an AdapterHub head equals the head computed by hand. */
static void test_heads(arch_env *e) {
    pd_arch a = e->arch;
    TL w, merged;
    unsigned mask = 1u | (1u << 2) | (1u << 6) | (1u << 8);
    lora_tensors(&w, a, mask, 2, 0, "");
    /* modules_to_save: the classifier (and distilbert's pre_classifier), 2 labels */
    const char *mts;
    if (a == PD_ARCH_ROBERTA) {
        tl_add(&w, "base_model.model.classifier.dense.weight", H, H, 0.3f, 0);
        tl_add(&w, "base_model.model.classifier.dense.bias", H, 0, 0.1f, 0);
        tl_add(&w, "base_model.model.classifier.out_proj.weight", 2, H, 0.3f, 0);
        tl_add(&w, "base_model.model.classifier.out_proj.bias", 2, 0, 0.1f, 0);
        mts = "[\"classifier\", \"score\"]";
    } else if (a == PD_ARCH_DISTILBERT) {
        tl_add(&w, "base_model.model.pre_classifier.weight", H, H, 0.3f, 0);
        tl_add(&w, "base_model.model.pre_classifier.bias", H, 0, 0.1f, 0);
        tl_add(&w, "base_model.model.classifier.weight", 2, H, 0.3f, 0);
        tl_add(&w, "base_model.model.classifier.bias", 2, 0, 0.1f, 0);
        mts = "[\"pre_classifier\", \"classifier\", \"score\"]";
    } else {
        tl_add(&w, "base_model.model.classifier.weight", 2, H, 0.3f, 0);
        tl_add(&w, "base_model.model.classifier.bias", 2, 0, 0.1f, 0);
        mts = "[\"classifier\", \"score\"]";
    }
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"task_type\": \"SEQ_CLS\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": %s, "
             "\"modules_to_save\": %s, \"labels\": [\"neg\", \"pos\"]}", a == PD_ARCH_DISTILBERT ? "[\"q_lin\", \"v_lin\"]" : "[\"query\", \"value\"]", mts);
    char d[512], leaf[64];
    snprintf(leaf, sizeof leaf, "lorahead-%s", pfx(a));
    dirname_of(d, sizeof d, leaf);
    write_adapter(d, cfg, &w, "adapter_model.safetensors");
    pd_adapter *ad = load_adapter(e->m, d);
    CHECK(ad != NULL);
    if (ad) {
        CHECK(pd_adapter_task(ad) == PD_TASK_CLS);
        CHECK(pd_adapter_num_labels(ad) == 2);
        CHECK(pd_adapter_label(ad, 1) && !strcmp(pd_adapter_label(ad, 1), "pos"));
        CHECK(pd_adapter_label(ad, 2) == NULL);
        const pd_head *h = pd_adapter_head(ad, e->m, PD_TASK_CLS);
        CHECK(h != NULL && h != pd_model_head(e->m, PD_TASK_CLS) && h->num_labels == 2);
        CHECK(pd_adapter_delta(ad)->head == h);
        /* the merged checkpoint: LoRA merged, the adapter's classifier as the head */
        lora_merge(&merged, &e->base, &w, a, 2.0f);
        for (int i = 0; i < w.n; i++) {
            const T *src = &w.t[i];
            const char *n = src->name + strlen("base_model.model.");
            if (strncmp(n, "classifier", 10) && strncmp(n, "pre_classifier", 14)) continue;
            size_t cnt = (size_t)(src->shape[0] * (src->ndim == 2 ? src->shape[1] : 1));
            T *dst = tl_find(&merged, n);
            if (!dst) {
                tl_add(&merged, n, src->shape[0], src->ndim == 2 ? src->shape[1] : 0, 0, 0);
                dst = &merged.t[merged.n - 1];
            }
            free(dst->data);
            dst->data = malloc(sizeof(float) * cnt);
            memcpy(dst->data, src->data, sizeof(float) * cnt);
            dst->shape[0] = src->shape[0];
        }
        char md[512];
        snprintf(leaf, sizeof leaf, "headmerged-%s", pfx(a));
        dirname_of(md, sizeof md, leaf);
        write_base(md, a, &merged, 2);
        pd_model *mm = load_model(md);
        pd_ctx *mc = pd_ctx_new(mm, NULL);
        for (int s = 0; s < 3; s++) {
            pd_seq q1 = {IDS[s], NULL, LENS[s], pd_adapter_delta(ad), 0}, q2 = {IDS[s], NULL, LENS[s], NULL, 0};
            float o1[8], o2[8];
            PD_ASSERT(pd_forward(e->c, &q1, 1, err, sizeof err) == PD_OK);
            int n1 = pd_ctx_head(e->c, 0, h, o1, 8);
            PD_ASSERT(pd_forward(mc, &q2, 1, err, sizeof err) == PD_OK);
            int n2 = pd_ctx_head(mc, 0, pd_model_head(mm, PD_TASK_CLS), o2, 8);
            CHECK(n1 == 2 && n2 == 2);
            CHECKF(n1 == 2 && maxdiff(o1, o2, 2) < 1e-4, "%s: adapter head logits differ from the merged checkpoint", pfx(a));
        }
        pd_ctx_free(mc);
        pd_model_free(mm);
        tl_free(&merged);
        /* caller labels override the config's */
        pd_adapter_files f;
        memset(&f, 0, sizeof f);
        char p[600];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", d);
        char *wb = NULL, *cb = cfg;
        size_t wl = 0;
        PD_ASSERT(pd_read_file(p, 1 << 26, &wb, &wl, err, sizeof err) == PD_OK);
        f.config = cb; f.config_len = strlen(cb); f.weights = wb; f.weights_len = wl;
        f.labels = "[\"bad\", \"good\"]"; f.labels_len = strlen(f.labels);
        pd_adapter *a2 = NULL;
        CHECK(pd_adapter_load(e->m, &f, &a2, err, sizeof err) == PD_OK);
        if (a2) CHECK(!strcmp(pd_adapter_label(a2, 0), "bad"));
        pd_adapter_release(a2);
        f.labels = "[\"one\"]"; f.labels_len = strlen(f.labels);
        a2 = NULL;
        CHECK(pd_adapter_load(e->m, &f, &a2, err, sizeof err) == PD_ERR_INVALID && strstr(err, "labels") != NULL);
        pd_adapter_release(a2);
        free(wb);
    }
    pd_adapter_release(ad);
    tl_free(&w);

    /* AdapterHub classification head: 2 layers with tanh, on token 0 */
    TL bw, hw;
    bn_tensors(&bw, a, "sst", 2, 1, 0, 0, 0, 0); /* seq_bn: 16 // 16 */
    memset(&hw, 0, sizeof hw);
    float *w1 = tl_add(&hw, "heads.sst.1.weight", H, H, 0.3f, 0), *b1 = tl_add(&hw, "heads.sst.1.bias", H, 0, 0.1f, 0);
    float *w2 = tl_add(&hw, "heads.sst.4.weight", 3, H, 0.3f, 0), *b2 = tl_add(&hw, "heads.sst.4.bias", 3, 0, 0.1f, 0);
    snprintf(leaf, sizeof leaf, "hubhead-%s", pfx(a));
    dirname_of(d, sizeof d, leaf);
    write_adapter(d, hub_config(a, "sst", "\"seq_bn\""), &bw, "adapter.safetensors");
    char p[600];
    snprintf(p, sizeof p, "%s/model_head.safetensors", d);
    tl_write(&hw, p);
    char hc[1024];
    snprintf(hc, sizeof hc, "{\"config\": {\"head_type\": \"classification\", \"num_labels\": 3, \"layers\": 2, \"activation_function\": \"tanh\", "
             "\"label2id\": {\"x\": 0, \"y\": 1, \"z\": 2}, \"use_pooler\": false, \"bias\": true, \"dropout_prob\": null}, "
             "\"hidden_size\": %d, \"model_class\": \"%sAdapterModel\", \"model_name\": \"tiny\", \"model_type\": \"%s\", \"name\": \"sst\", \"version\": \"1.0.0\"}",
             H, pfx(a), pfx(a));
    write_text(d, "head_config.json", hc);
    ad = load_adapter(e->m, d);
    CHECK(ad != NULL);
    if (ad) {
        CHECK(pd_adapter_num_labels(ad) == 3 && !strcmp(pd_adapter_label(ad, 2), "z"));
        const pd_head *h = pd_adapter_head(ad, e->m, PD_TASK_CLS);
        pd_seq q = {IDS[1], NULL, LENS[1], pd_adapter_delta(ad), 0};
        PD_ASSERT(pd_forward(e->c, &q, 1, err, sizeof err) == PD_OK);
        int len;
        const float *x = pd_ctx_hidden(e->c, 0, &len);
        float t[H], o[3], got[8];
        for (int i = 0; i < H; i++) { double s = b1[i]; for (int j = 0; j < H; j++) s += (double)w1[i * H + j] * x[j]; t[i] = (float)tanh(s); }
        for (int i = 0; i < 3; i++) { double s = b2[i]; for (int j = 0; j < H; j++) s += (double)w2[i * H + j] * t[j]; o[i] = (float)s; }
        int n = pd_ctx_head(e->c, 0, h, got, 8);
        CHECKF(n == 3 && maxdiff(o, got, 3) < 1e-5, "%s: AdapterHub head differs from the hand computation", pfx(a));
        CHECK(strcmp(pd_adapter_file_names(ad)[3], "model_head.safetensors") == 0);
    }
    pd_adapter_release(ad);
    tl_free(&bw);
    tl_free(&hw);
}

/* LoRA with bias="all": new linear, LayerNorm and embeddings LayerNorm biases equal a checkpoint
 * holding those biases (the embeddings one is applied as a shift of layer 0's inputs). */
static void test_bias_all(arch_env *e) {
    TL w, merged;
    lora_tensors(&w, PD_ARCH_BERT, 0x7u, 2, 0, ""); /* layer 0 query, key, value */
    static const char *const bias[] = {"bert.encoder.layer.0.attention.self.query.base_layer.bias", "bert.encoder.layer.1.intermediate.dense.bias",
                                       "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.1.output.LayerNorm.bias",
                                       "bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias"};
    for (int i = 0; i < 6; i++) tl_addf(&w, i == 1 ? FF : H, 0, 0.3f, 0, "base_model.model.%s", bias[i]);
    char d[512];
    dirname_of(d, sizeof d, "lora-bias-all");
    char *cfg = peft_lora_config(PD_ARCH_BERT, 2, 3, "[\"query\", \"key\", \"value\"]", ", \"layers_to_transform\": [0]");
    char *b = strstr(cfg, "\"bias\": \"none\"");
    PD_ASSERT(b);
    memcpy(b, "\"bias\": \"all\" ", 14);
    write_adapter(d, cfg, &w, "adapter_model.safetensors");
    pd_adapter *ad = load_adapter(e->m, d);
    CHECK(ad != NULL);
    lora_merge(&merged, &e->base, &w, PD_ARCH_BERT, 1.5f);
    for (int i = 0; i < 6; i++) {
        char n[300], t[300];
        snprintf(n, sizeof n, "base_model.model.%s", bias[i]);
        snprintf(t, sizeof t, "%s", bias[i]);
        char *q = strstr(t, ".base_layer");
        if (q) memmove(q, q + 11, strlen(q + 11) + 1);
        T *src = tl_find(&w, n), *dst = tl_find(&merged, t);
        PD_ASSERT(src && dst);
        memcpy(dst->data, src->data, sizeof(float) * (size_t)src->shape[0]);
    }
    char md[512];
    dirname_of(md, sizeof md, "lora-bias-all-merged");
    write_base(md, PD_ARCH_BERT, &merged, 0);
    pd_model *mm = load_model(md);
    pd_ctx *mc = pd_ctx_new(mm, NULL);
    if (ad) {
        double diff = compare(e->c, pd_adapter_delta(ad), mc, NULL);
        CHECKF(diff < 1e-4, "bias=all LoRA vs merged checkpoint differ by %g", diff);
    }
    pd_ctx_free(mc);
    pd_model_free(mm);
    tl_free(&merged);
    tl_free(&w);
    pd_adapter_release(ad);
}

/* Loads the adapter zoo used by the mixed batch and the round trips (bert base). */
enum { ZOO = 9 };
static void make_zoo(arch_env *e, pd_adapter **z, char dirs[ZOO][512]) {
    pd_arch a = e->arch;
    TL w;
    char leaf[64];
    int i = 0;
    /* 0 LoRA with bias="all" (linear, LayerNorm and embeddings LayerNorm biases) */
    lora_tensors(&w, a, 0x3Fu, 3, 0, "");
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.bias", H, 0, 0.2f, 0);
    tl_add(&w, "base_model.model.bert.encoder.layer.1.intermediate.dense.bias", FF, 0, 0.2f, 0);
    tl_add(&w, "base_model.model.bert.encoder.layer.1.output.LayerNorm.bias", H, 0, 0.2f, 0);
    tl_add(&w, "base_model.model.bert.embeddings.LayerNorm.bias", H, 0, 0.2f, 0);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], peft_lora_config(a, 3, 5, "\"bert\\\\.encoder\\\\.layer\\\\.0\\\\.(attention\\\\.self\\\\.(q\\\\w+|key|value)|attention\\\\.output\\\\.dense|intermediate\\\\.dense|output\\\\.dense)\"", NULL), &w, "adapter_model.safetensors");
    {
        /* the bias mode is recorded in the config */
        char cfgp[600], *txt = NULL;
        size_t n;
        snprintf(cfgp, sizeof cfgp, "%.500s/adapter_config.json", dirs[i]);
        PD_ASSERT(pd_read_file(cfgp, 1 << 20, &txt, &n, err, sizeof err) == PD_OK);
        char *b = strstr(txt, "\"bias\": \"none\"");
        PD_ASSERT(b);
        memcpy(b, "\"bias\": \"all\" ", 14);
        write_text(dirs[i], "adapter_config.json", txt);
        free(txt);
    }
    tl_free(&w); i++;
    /* 1 IA3 */
    memset(&w, 0, sizeof w);
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l", H, 1, 0.5f, 1);
    tl_add(&w, "base_model.model.bert.encoder.layer.1.attention.self.value.ia3_l", H, 1, 0.5f, 1);
    tl_add(&w, "base_model.model.bert.encoder.layer.1.output.dense.ia3_l", 1, FF, 0.5f, 1);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], "{\"peft_type\": \"IA3\", \"task_type\": \"SEQ_CLS\", \"target_modules\": \"bert\\\\.encoder\\\\.layer\\\\.(0\\\\.attention\\\\.self\\\\.key|1\\\\.attention\\\\.self\\\\.value|1\\\\.output\\\\.dense)\", "
                  "\"feedforward_modules\": [\"output.dense\"], \"modules_to_save\": [\"classifier\"]}", &w, "adapter_model.safetensors");
    tl_free(&w); i++;
    /* 2 prefix tuning: 5 virtual tokens; classifier saved under "base_model." (prompt learning) */
    memset(&w, 0, sizeof w);
    tl_add(&w, "prompt_embeddings", 5, NL * 2 * H, 0.5f, 0);
    tl_add(&w, "base_model.classifier.weight", 4, H, 0.3f, 0);
    tl_add(&w, "base_model.classifier.bias", 4, 0, 0.1f, 0);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"SEQ_CLS\", \"num_virtual_tokens\": 5, \"token_dim\": 16, "
                  "\"num_transformer_submodules\": 1, \"num_attention_heads\": 2, \"num_layers\": 2, \"encoder_hidden_size\": 16, "
                  "\"prefix_projection\": true, \"inference_mode\": true, \"modules_to_save\": [\"classifier\", \"score\"]}", &w, "adapter_model.safetensors");
    tl_free(&w); i++;
    /* 3 prompt tuning, 4 P-tuning */
    for (int pt = 0; pt < 2; pt++) {
        memset(&w, 0, sizeof w);
        tl_add(&w, "prompt_embeddings", 3 + pt, H, 0.5f, 0);
        snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
        write_adapter(dirs[i], pt ? "{\"peft_type\": \"P_TUNING\", \"task_type\": \"FEATURE_EXTRACTION\", \"num_virtual_tokens\": 4, \"token_dim\": 16, "
                                    "\"num_transformer_submodules\": 1, \"num_attention_heads\": 2, \"num_layers\": 2, \"encoder_reparameterization_type\": \"MLP\", \"encoder_hidden_size\": 8}"
                                  : "{\"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"FEATURE_EXTRACTION\", \"num_virtual_tokens\": 3, \"token_dim\": 16, "
                                    "\"num_transformer_submodules\": 1, \"num_attention_heads\": 2, \"num_layers\": 2, \"prompt_tuning_init\": \"RANDOM\"}",
                      &w, "adapter_model.safetensors");
        tl_free(&w); i++;
    }
    /* 5 seq_bn, 6 double_seq_bn with ln_before/ln_after/channel scaling, 7 par_bn with learned scaling, 8 post_add + per-layer rf */
    bn_tensors(&w, a, "a5", 2, 4, 0, 0, 0, 0);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], hub_config(a, "a5", SEQ_BN), &w, "adapter.safetensors");
    tl_free(&w); i++;
    bn_tensors(&w, a, "a6", 3, 2, 0, 1, 1, 2);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], hub_config(a, "a6", "{\"architecture\": \"bottleneck\", \"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": 8, "
                                         "\"non_linearity\": \"swish\", \"original_ln_before\": false, \"original_ln_after\": true, \"residual_before_ln\": false, "
                                         "\"adapter_residual_before_ln\": true, \"ln_before\": true, \"ln_after\": true, \"scaling\": \"channel\", \"is_parallel\": false}"),
                  &w, "adapter.safetensors");
    tl_free(&w); i++;
    bn_tensors(&w, a, "a7", 2, 8, 0, 0, 1, 1);
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], hub_config(a, "a7", "{\"architecture\": \"bottleneck\", \"mh_adapter\": false, \"output_adapter\": true, \"reduction_factor\": 2, "
                                         "\"non_linearity\": \"relu\", \"original_ln_before\": false, \"original_ln_after\": true, \"ln_before\": false, "
                                         "\"ln_after\": true, \"scaling\": \"learned\", \"is_parallel\": true, \"init_weights\": \"mam_adapter\"}"),
                  &w, "adapter.safetensors");
    tl_free(&w); i++;
    memset(&w, 0, sizeof w);
    {
        TL w0, w1;
        bn_tensors(&w0, a, "a8", 1, 4, 0, 0, 0, 0); /* layer 0 mh: 16 // 4 */
        bn_tensors(&w1, a, "a8", 1, 2, 0, 0, 0, 0); /* layer 1 mh: 16 // 8 */
        for (int k = 0; k < w0.n; k++) if (strstr(w0.t[k].name, "layer.0.")) {
            float *dd = tl_add(&w, w0.t[k].name, w0.t[k].shape[0], w0.t[k].shape[1], 0, 0);
            memcpy(dd, w0.t[k].data, sizeof(float) * (size_t)(w0.t[k].shape[0] * (w0.t[k].ndim == 2 ? w0.t[k].shape[1] : 1)));
        }
        for (int k = 0; k < w1.n; k++) if (strstr(w1.t[k].name, "layer.1.")) {
            float *dd = tl_add(&w, w1.t[k].name, w1.t[k].shape[0], w1.t[k].shape[1], 0, 0);
            memcpy(dd, w1.t[k].data, sizeof(float) * (size_t)(w1.t[k].shape[0] * (w1.t[k].ndim == 2 ? w1.t[k].shape[1] : 1)));
        }
        tl_free(&w0);
        tl_free(&w1);
    }
    snprintf(leaf, sizeof leaf, "zoo%d", i); dirname_of(dirs[i], 512, leaf);
    write_adapter(dirs[i], hub_config(a, "a8", "{\"architecture\": \"bottleneck\", \"mh_adapter\": true, \"output_adapter\": false, \"reduction_factor\": {\"1\": 8, \"default\": 4}, "
                                         "\"non_linearity\": \"gelu\", \"original_ln_before\": true, \"original_ln_after\": false, \"residual_before_ln\": \"post_add\"}"),
                  &w, "adapter.safetensors");
    tl_free(&w); i++;
    PD_ASSERT(i == ZOO);
    for (int k = 0; k < ZOO; k++) {
        z[k] = load_adapter(e->m, dirs[k]);
        CHECKF(z[k] != NULL, "zoo adapter %d", k);
    }
}

/* (5) a mixed batch equals each sequence alone; (6) save_dir + load_dir reproduce the outputs. */
static void test_zoo(arch_env *e) {
    pd_adapter *z[ZOO];
    char dirs[ZOO][512];
    make_zoo(e, z, dirs);
    for (int k = 0; k < ZOO; k++) if (!z[k]) { for (int j = 0; j < ZOO; j++) pd_adapter_release(z[j]); return; }
    CHECK(pd_adapter_n_virtual(z[2]) == 5 && pd_adapter_delta(z[2])->n_prefix == 5);
    CHECK(pd_adapter_n_virtual(z[3]) == 3 && pd_adapter_delta(z[3])->n_prompt == 3);
    CHECK(pd_adapter_task(z[1]) == PD_TASK_CLS && pd_adapter_head(z[1], e->m, PD_TASK_CLS) == NULL); /* no head of its own, none in the base */
    CHECK(pd_adapter_task(z[2]) == PD_TASK_CLS && pd_adapter_num_labels(z[2]) == 4 && !strcmp(pd_adapter_label(z[2], 3), "LABEL_3"));
    CHECK(pd_adapter_task(z[5]) == PD_TASK_NONE);
    /* every adapter changes the output */
    for (int k = 0; k < ZOO; k++) {
        int la, lb;
        float *x = run1(e->c, pd_adapter_delta(z[k]), 1, &la), *y = run1(e->c2, NULL, 1, &lb);
        int nv = pd_adapter_delta(z[k])->n_prompt;
        CHECKF(la == lb + nv, "adapter %d: %d hidden rows, want %d", k, la, lb + nv);
        if (la == lb + nv) CHECKF(maxdiff(x + (size_t)nv * H, y, (size_t)lb * H) > 1e-3, "adapter %d changes nothing", k);
        free(x);
        free(y);
    }
    /* mixed batch: 2 x (ZOO adapters + bare), interleaved */
    enum { NSEQ = 2 * (ZOO + 1) };
    pd_seq seqs[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        int k = i % (ZOO + 1), s = (i / (ZOO + 1) + k) % 3;
        seqs[i] = (pd_seq){IDS[s], NULL, LENS[s], k < ZOO ? pd_adapter_delta(z[k]) : NULL, 0};
    }
    pd_pool *pool = pd_pool_new(2);
    pd_ctx *pc = pd_ctx_new(e->m, pool);
    pd_status st = pd_forward(pc, seqs, NSEQ, err, sizeof err);
    CHECKF(st == PD_OK, "mixed batch: %s", err);
    double worst = 0;
    for (int i = 0; i < NSEQ && st == PD_OK; i++) {
        int lb, la;
        const float *hb = pd_ctx_hidden(pc, i, &lb);
        pd_status s1 = pd_forward(e->c, &seqs[i], 1, err, sizeof err);
        PD_ASSERT(s1 == PD_OK);
        const float *ha = pd_ctx_hidden(e->c, 0, &la);
        double d = la == lb ? maxdiff(ha, hb, (size_t)la * H) : 1e9;
        if (d > worst) worst = d;
    }
    CHECKF(worst < 1e-5, "mixed batch differs from sequences alone by %g", worst);
    pd_ctx_free(pc);
    pd_pool_free(pool);
    /* round trips */
    for (int k = 0; k < ZOO; k++) {
        char sd[600];
        snprintf(sd, sizeof sd, "%s-saved", dirs[k]);
        mkdir_p(sd);
        st = pd_adapter_save_dir(z[k], sd, err, sizeof err);
        CHECKF(st == PD_OK, "save %d: %s", k, err);
        pd_adapter *b = load_adapter(e->m, sd);
        CHECKF(b != NULL, "reload %d", k);
        if (!b) continue;
        CHECKF(compare(e->c, pd_adapter_delta(z[k]), e->c2, pd_adapter_delta(b)) == 0.0, "adapter %d differs after save/load", k);
        CHECK(pd_adapter_params(b) == pd_adapter_params(z[k]) && pd_adapter_method(b) == pd_adapter_method(z[k]));
        CHECK(pd_adapter_num_labels(b) == pd_adapter_num_labels(z[k]));
        for (int j = 0; j < pd_adapter_num_labels(b); j++) CHECK(!strcmp(pd_adapter_label(b, j), pd_adapter_label(z[k], j)));
        for (const char *const *fn = pd_adapter_file_names(b); *fn; fn++) {
            char p[700];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", sd, *fn);
            CHECKF(stat(p, &sb) == 0, "saved file %s missing", p);
        }
        pd_adapter_release(b);
    }
    /* labels survive a save: the prefix adapter with caller labels */
    {
        char p[600], *cfg = NULL, *wb = NULL;
        size_t cl, wl;
        snprintf(p, sizeof p, "%s/adapter_config.json", dirs[2]);
        PD_ASSERT(pd_read_file(p, 1 << 20, &cfg, &cl, err, sizeof err) == PD_OK);
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dirs[2]);
        PD_ASSERT(pd_read_file(p, 1 << 26, &wb, &wl, err, sizeof err) == PD_OK);
        const char *labels = "[\"w\", \"x\", \"y\", \"z\"]";
        pd_adapter_files f = {cfg, cl, wb, wl, NULL, 0, NULL, 0, labels, strlen(labels)};
        pd_adapter *b = NULL;
        CHECK(pd_adapter_load(e->m, &f, &b, err, sizeof err) == PD_OK);
        char sd[600];
        snprintf(sd, sizeof sd, "%s-labels", dirs[2]);
        mkdir_p(sd);
        if (b) CHECK(pd_adapter_save_dir(b, sd, err, sizeof err) == PD_OK);
        pd_adapter *c2 = load_adapter(e->m, sd);
        CHECK(c2 && pd_adapter_num_labels(c2) == 4 && !strcmp(pd_adapter_label(c2, 3), "z"));
        pd_adapter_release(b);
        pd_adapter_release(c2);
        free(cfg);
        free(wb);
    }
    for (int k = 0; k < ZOO; k++) pd_adapter_release(z[k]);
}

/* (7) refusals */
static void test_refusals(arch_env *eb, arch_env *ed) {
    char d[512];
    TL w;
    const char *tq = "[\"query\", \"value\"]";
    unsigned mask = 1u | (1u << 2) | (1u << 6) | (1u << 8);
    /* unknown tensor */
    lora_tensors(&w, PD_ARCH_BERT, mask, 4, 0, "");
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_C.weight", 4, H, 1, 0);
    dirname_of(d, sizeof d, "bad-unknown");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "lora_C", NULL);
    tl_free(&w);
    /* wrong shape, naming both */
    memset(&w, 0, sizeof w);
    lora_tensors(&w, PD_ARCH_BERT, mask & ~1u, 4, 0, "");
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", 4, H + 1, 1, 0);
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight", H, 4, 1, 0);
    dirname_of(d, sizeof d, "bad-shape");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "[4, 17]", "[4, 16]");
    /* NaN and infinite weights */
    tl_free(&w);
    for (int bad = 0; bad < 2; bad++) {
        memset(&w, 0, sizeof w);
        lora_tensors(&w, PD_ARCH_BERT, mask, 4, 0, "");
        T *t = tl_find(&w, "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight");
        CHECK(t != NULL);
        if (t) t->data[5] = bad ? INFINITY : NAN;
        dirname_of(d, sizeof d, bad ? "bad-inf" : "bad-nan");
        write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL), &w, "adapter_model.safetensors");
        expect_fail(eb->m, d, PD_ERR_FORMAT, bad ? "infinite value at element 5" : "NaN value at element 5",
                    "layer.1.attention.self.value.lora_B");
        tl_free(&w);
    }
    memset(&w, 0, sizeof w);
    lora_tensors(&w, PD_ARCH_BERT, mask & ~1u, 4, 0, "");
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", 4, H + 1, 1, 0);
    tl_add(&w, "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight", H, 4, 1, 0);
    /* rank 0 */
    dirname_of(d, sizeof d, "bad-rank0");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 0, 8, tq, NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_INVALID, "r must be > 0", NULL);
    tl_free(&w);
    /* missing tensor (target selects layer 1 query, file lacks it) */
    lora_tensors(&w, PD_ARCH_BERT, 1u | (1u << 2) | (1u << 8), 4, 0, "");
    dirname_of(d, sizeof d, "bad-missing");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "layer.1.attention.self.query.lora_A", NULL);
    /* layers_to_transform excluding layer 1 makes the same file valid */
    dirname_of(d, sizeof d, "ok-layers");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, ", \"layers_to_transform\": [0], \"layers_pattern\": \"layer\""), &w, "adapter_model.safetensors");
    pd_adapter *ok = NULL;
    CHECKF(pd_adapter_load_dir(eb->m, d, &ok, err, sizeof err) == PD_ERR_MISMATCH && strstr(err, "does not select"),
           "layers_to_transform [0] accepted a layer-1 tensor: %s", err);
    pd_adapter_release(ok);
    tl_free(&w);
    lora_tensors(&w, PD_ARCH_BERT, 1u | (1u << 2), 4, 0, "");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, tq, ", \"layers_to_transform\": 0, \"layers_pattern\": [\"layer\"]"), &w, "adapter_model.safetensors");
    ok = load_adapter(eb->m, d);
    CHECKF(ok != NULL, "layers_to_transform 0: %s", err);
    pd_adapter_release(ok);
    /* use_dora, LOHA, wrong JSON type, malformed JSON, embedding target */
    dirname_of(d, sizeof d, "bad-dora");
    write_adapter(d, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"query\"], \"use_dora\": true}", &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "use_dora", NULL);
    dirname_of(d, sizeof d, "bad-loha");
    write_adapter(d, "{\"peft_type\": \"LOHA\", \"r\": 4, \"alpha\": 8, \"target_modules\": [\"query\"]}", &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "LOHA", NULL);
    dirname_of(d, sizeof d, "bad-type");
    write_adapter(d, "{\"peft_type\": \"LORA\", \"r\": \"4\", \"lora_alpha\": 8, \"target_modules\": [\"query\"]}", &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_INVALID, "r must be an integer", NULL);
    dirname_of(d, sizeof d, "bad-json");
    write_adapter(d, "{\"peft_type\": \"LORA\", \"r\": 4,, }", &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_FORMAT, "adapter_config.json", NULL);
    dirname_of(d, sizeof d, "bad-embedding");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, "[\"query\", \"word_embeddings\"]", NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "word_embeddings", NULL);
    dirname_of(d, sizeof d, "bad-regex");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 4, 8, "\"(?=x).*query\"", NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "regex", NULL);
    tl_free(&w);
    /* distilbert names on a bert base; AdapterHub model_type roberta on bert */
    lora_tensors(&w, PD_ARCH_DISTILBERT, 1u, 4, 0, "");
    dirname_of(d, sizeof d, "bad-arch");
    write_adapter(d, peft_lora_config(PD_ARCH_DISTILBERT, 4, 8, "[\"q_lin\"]", NULL), &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "distilbert", NULL);
    tl_free(&w);
    bn_tensors(&w, PD_ARCH_ROBERTA, "t", 2, 1, 0, 0, 0, 0);
    dirname_of(d, sizeof d, "bad-hubarch");
    write_adapter(d, hub_config(PD_ARCH_ROBERTA, "t", "\"seq_bn\""), &w, "adapter.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "roberta", NULL);
    tl_free(&w);
    /* bottleneck refusals: gating, phm, wrong shape */
    bn_tensors(&w, PD_ARCH_BERT, "t", 2, 4, 0, 0, 0, 0);
    dirname_of(d, sizeof d, "bad-gating");
    write_adapter(d, hub_config(PD_ARCH_BERT, "t", "{\"architecture\": \"bottleneck\", \"mh_adapter\": false, \"output_adapter\": true, \"reduction_factor\": 4, \"non_linearity\": \"relu\", \"use_gating\": true}"), &w, "adapter.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "use_gating", NULL);
    dirname_of(d, sizeof d, "bad-phm");
    write_adapter(d, hub_config(PD_ARCH_BERT, "t", "{\"architecture\": \"bottleneck\", \"mh_adapter\": false, \"output_adapter\": true, \"reduction_factor\": 4, \"non_linearity\": \"relu\", \"phm_layer\": true}"), &w, "adapter.safetensors");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "phm_layer", NULL);
    dirname_of(d, sizeof d, "bad-bnshape");
    write_adapter(d, hub_config(PD_ARCH_BERT, "t", "\"seq_bn\""), &w, "adapter.safetensors"); /* 16 // 16 = 1, tensors have 4 */
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "[4]", "[1]");
    tl_free(&w);
    /* prefix tuning on distilbert; too many virtual tokens */
    memset(&w, 0, sizeof w);
    tl_add(&w, "prompt_embeddings", 5, NL * 2 * H, 0.5f, 0);
    dirname_of(d, sizeof d, "bad-prefix-distil");
    write_adapter(d, "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 5, \"token_dim\": 16, \"num_layers\": 2, \"num_attention_heads\": 2}", &w, "adapter_model.safetensors");
    expect_fail(ed->m, d, PD_ERR_UNSUPPORTED, "distilbert", NULL);
    tl_free(&w);
    memset(&w, 0, sizeof w);
    tl_add(&w, "prompt_embeddings", 38, H, 0.5f, 0);
    dirname_of(d, sizeof d, "bad-nvt");
    write_adapter(d, "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 38, \"token_dim\": 16}", &w, "adapter_model.safetensors");
    expect_fail(eb->m, d, PD_ERR_MISMATCH, "num_virtual_tokens", NULL);
    tl_free(&w);
    /* pickle: a directory with adapter_model.bin only, and pickle bytes given directly */
    dirname_of(d, sizeof d, "bad-pickle");
    mkdir_p(d);
    write_text(d, "adapter_config.json", peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL));
    write_text(d, "adapter_model.bin", "\x80\x02}q\x00.");
    expect_fail(eb->m, d, PD_ERR_UNSUPPORTED, "pickle", "safetensors");
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    const char *cfg = peft_lora_config(PD_ARCH_BERT, 4, 8, tq, NULL);
    f.config = cfg; f.config_len = strlen(cfg);
    f.weights = "PK\x03\x04zipzip"; f.weights_len = 10;
    pd_adapter *a = NULL;
    CHECK(pd_adapter_load(eb->m, &f, &a, err, sizeof err) == PD_ERR_UNSUPPORTED && strstr(err, "pickle") && !a);
    /* truncated and hostile safetensors */
    lora_tensors(&w, PD_ARCH_BERT, mask, 4, 0, "");
    char *buf = NULL;
    size_t len = 0;
    pd_st_wtensor wt[16];
    for (int i = 0; i < w.n; i++) wt[i] = (pd_st_wtensor){w.t[i].name, 2, {w.t[i].shape[0], w.t[i].shape[1]}, w.t[i].data};
    PD_ASSERT(pd_st_write_buffer(wt, w.n, NULL, 0, &buf, &len, err, sizeof err) == PD_OK);
    f.weights = buf;
    for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
        f.weights_len = cut;
        a = NULL;
        pd_status st = pd_adapter_load(eb->m, &f, &a, err, sizeof err);
        CHECKF(st == (cut ? PD_ERR_FORMAT : PD_ERR_INVALID) && !a, "truncated to %zu: %s", cut, pd_status_name(st));
    }
    f.weights_len = len;
    CHECK(pd_adapter_load(eb->m, &f, &a, err, sizeof err) == PD_OK);
    pd_adapter_release(a);
    memcpy(buf, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8); /* header length far past the end */
    a = NULL;
    CHECK(pd_adapter_load(eb->m, &f, &a, err, sizeof err) == PD_ERR_FORMAT && !a);
    free(buf);
    PD_ASSERT(pd_st_write_buffer(wt, w.n, NULL, 0, &buf, &len, err, sizeof err) == PD_OK);
    f.weights = buf;
    f.weights_len = len;
    /* neither format */
    f.config = "{\"hello\": 1}"; f.config_len = strlen(f.config);
    CHECK(pd_adapter_load(eb->m, &f, &a, err, sizeof err) == PD_ERR_INVALID && strstr(err, "peft_type"));
    f.config = "[1, 2]"; f.config_len = 6;
    CHECK(pd_adapter_load(eb->m, &f, &a, err, sizeof err) == PD_ERR_INVALID);
    free(buf);
    tl_free(&w);
}

/* (8) retain/release from several threads, and concurrent forward passes on one adapter. */
typedef struct thr_arg { pd_adapter *a; const pd_model *m; double diff; } thr_arg;

static void *thr_refs(void *p) {
    thr_arg *t = p;
    for (int i = 0; i < 20000; i++) {
        pd_adapter_retain(t->a);
        if (i % 3 == 0) { pd_adapter_retain(t->a); pd_adapter_release(t->a); }
        pd_adapter_release(t->a);
    }
    return NULL;
}

static void *thr_fwd(void *p) {
    thr_arg *t = p;
    pd_ctx *c = pd_ctx_new(t->m, NULL);
    pd_ctx *ref = pd_ctx_new(t->m, NULL);
    int la;
    float *x0 = run1(ref, pd_adapter_delta(t->a), 1, &la);
    for (int i = 0; i < 30; i++) {
        int lb;
        float *x = run1(c, pd_adapter_delta(t->a), 1, &lb);
        double d = lb == la ? maxdiff(x, x0, (size_t)la * H) : 1e9;
        if (d > t->diff) t->diff = d;
        free(x);
    }
    free(x0);
    pd_ctx_free(c);
    pd_ctx_free(ref);
    return NULL;
}

static void test_threads(arch_env *e) {
    char d[512];
    TL w;
    lora_tensors(&w, PD_ARCH_BERT, 0xFFFu, 2, 0, "");
    dirname_of(d, sizeof d, "thr");
    write_adapter(d, peft_lora_config(PD_ARCH_BERT, 2, 4, "[\"query\", \"key\", \"value\", \"attention.output.dense\", \"intermediate.dense\", \"output.dense\"]", NULL), &w, "adapter_model.safetensors");
    tl_free(&w);
    pd_adapter *a = load_adapter(e->m, d);
    CHECK(a != NULL);
    if (!a) return;
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) { args[i] = (thr_arg){a, e->m, 0}; pthread_create(&th[i], NULL, i < 2 ? thr_refs : thr_fwd, &args[i]); }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK(args[2].diff == 0.0 && args[3].diff == 0.0);
    /* still alive with exactly one reference: one more retain/release pair, then the last release */
    pd_adapter_retain(a);
    pd_adapter_release(a);
    CHECK(pd_adapter_delta(a)->impl == a);
    pd_adapter_release(a);
    pd_adapter_release(NULL);
}

static void rm_rf(const char *p) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%.900s'", p);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/test_adapters-XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    CHECK(!strcmp(pd_method_name(PD_METHOD_LORA), "lora") && !strcmp(pd_method_name(PD_METHOD_BOTTLENECK), "bottleneck"));
    arch_env env[3];
    pd_arch archs[3] = {PD_ARCH_BERT, PD_ARCH_DISTILBERT, PD_ARCH_ROBERTA};
    for (int i = 0; i < 3; i++) {
        env_init(&env[i], archs[i], i == 0 ? 0 : 3, 0);
        test_lora(&env[i]);
        test_ia3(&env[i]);
        test_bn_identity(&env[i]);
        test_heads(&env[i]);
    }
    test_bias_all(&env[0]);
    test_zoo(&env[0]);
    test_refusals(&env[0], &env[1]);
    test_threads(&env[0]);
    for (int i = 0; i < 3; i++) env_free(&env[i]);
    rm_rf(root);
    return TEST_SUMMARY("test_adapters");
}
