/* lora.c - LoRA and IA3 adapters in PEFT format (peft.h): which encoder linears a config
 * selects (PEFT's check_target_module_exists and get_pattern_key, on the module names of the base
 * architecture), loading their tensors into core deltas, the training callbacks, and fresh
 * adapters initialised as PEFT does.
 *
 * Config matching (target_modules, exclude_modules, layers_to_transform/layers_pattern,
 * rank_pattern/alpha_pattern, feedforward_modules) follows PEFT. Regex strings use Python
 * syntax; they are translated to POSIX extended regular expressions (\d \w \s, (?:...), lazy
 * quantifiers), and refused when they use anything else (look-arounds, back references). */
#include "peft.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <string.h>

/* ==== Python regular expressions on POSIX regex ==== */

/* Patterns come from uploaded configs, and glibc's regcomp builds an automaton whose size (and
 * time: 67 s for one upload with 24 stacked '+') grows with repetitions of repetitions. So
 * before anything is compiled, a pattern must be plain (what PEFT configs hold) and small once
 * expanded: no quantifier after a quantifier (a lazy "?" is fine; Python refuses "+++" too)
 * or with nothing to repeat, counted repetitions {m,n} of at most REGEX_MAX_COUNT, groups
 * nested at most REGEX_MAX_DEPTH deep, and at most REGEX_MAX_SIZE atoms once every
 * repetition is expanded (an estimate of the automaton's states). NULL when sane, else why not. */
#define REGEX_MAX_COUNT 100
#define REGEX_MAX_DEPTH 16
#define REGEX_MAX_SIZE 4096
static const char *py_regex_unsafe(const char *py) {
    size_t sz[REGEX_MAX_DEPTH + 1] = {0}, last = 0; /* atoms per open group; the size of the last atom */
    int d = 0, can_repeat = 0, repeated = 0;
    for (size_t i = 0; py[i]; i++) {
        char c = py[i];
        long count = 0;
        if (c == '*' || c == '+' || c == '?') {
            if (repeated && c == '?' && repeated == 1) { repeated = 2; continue; } /* lazy: same language */
            count = 2;
        } else if (c == '{' && isdigit((unsigned char)py[i + 1])) {
            char *e;
            long m = strtol(py + i + 1, &e, 10), n = m;
            if (*e == ',') n = isdigit((unsigned char)e[1]) ? strtol(e + 1, &e, 10) : m + 1, e += *e == ',';
            if (*e != '}') { can_repeat = 1, repeated = 0, last = 1, sz[d]++; continue; } /* a literal '{' */
            if (m > REGEX_MAX_COUNT || n > REGEX_MAX_COUNT) return "a counted repetition of more than 100";
            count = n > 1 ? n : 1;
            i = (size_t)(e - py);
        }
        if (count) {
            if (repeated) return "a quantifier after a quantifier";
            if (!can_repeat) return "a quantifier with nothing to repeat";
            sz[d] += last * (size_t)(count - 1);
            repeated = 1;
        } else if (c == '(') {
            if (++d > REGEX_MAX_DEPTH) return "groups nested too deep";
            sz[d] = 0;
            can_repeat = 0, repeated = 0;
            if (py[i + 1] == '?') i++; /* (?: and (?P<..>: the translator checks the rest */
            continue;
        } else if (c == ')') {
            if (d == 0) return "an unbalanced ')'";
            last = sz[d] + 1;
            sz[--d] += last;
            can_repeat = 1, repeated = 0;
        } else if (c == '|' || c == '^' || c == '$') {
            sz[d]++;
            can_repeat = 0, repeated = 0;
        } else {
            if (c == '\\' && py[i + 1]) i++;
            else if (c == '[') { /* a class is one atom */
                size_t j = i + 1;
                if (py[j] == '^') j++;
                if (py[j] == ']') j++;
                while (py[j] && py[j] != ']') j += py[j] == '\\' && py[j + 1] ? 2 : 1;
                if (!py[j]) return "an unclosed '['";
                i = j;
            }
            sz[d]++;
            last = 1;
            can_repeat = 1, repeated = 0;
        }
        if (sz[d] > REGEX_MAX_SIZE) return "too large once its repetitions are expanded";
    }
    return d ? "an unclosed '('" : NULL;
}

/* Translates a Python regex into POSIX ERE. wrap: anchor as a full match ^(...)$.
 * Returns 0, or -1 for syntax peftd cannot translate or will not compile (py_regex_unsafe;
 * *why says so) or a pattern too long. */
static int py_to_ere(const char *py, int wrap, char *out, size_t cap, const char **why) {
    size_t k = 0;
    *why = "uses syntax peftd cannot evaluate";
    const char *u = py_regex_unsafe(py);
    if (u) {
        *why = u;
        return -1;
    }
#define PUT(s)                                                   \
    do {                                                         \
        size_t L_ = strlen(s);                                   \
        if (k + L_ + 1 >= cap) return -1;                        \
        memcpy(out + k, s, L_);                                  \
        k += L_;                                                 \
    } while (0)
    if (wrap) PUT("^(");
    for (size_t i = 0; py[i]; i++) {
        char c = py[i], one[3] = {c, 0, 0};
        if (c == '\\') {
            char n = py[++i];
            if (!n) return -1;
            switch (n) {
            case 'd': PUT("[0-9]"); break;
            case 'D': PUT("[^0-9]"); break;
            case 'w': PUT("[A-Za-z0-9_]"); break;
            case 'W': PUT("[^A-Za-z0-9_]"); break;
            case 's': PUT("[[:space:]]"); break;
            case 'S': PUT("[^[:space:]]"); break;
            default:
                if (isalnum((unsigned char)n)) return -1; /* \b \A \1 ... */
                one[0] = '\\'; one[1] = n;
                PUT(one);
            }
        } else if (c == '[') {
            PUT("[");
            i++;
            if (py[i] == '^') { PUT("^"); i++; }
            if (py[i] == ']') { PUT("]"); i++; }
            for (; py[i] && py[i] != ']'; i++) {
                if (py[i] == '\\') {
                    char n = py[++i];
                    if (n == 'd') PUT("0-9");
                    else if (n == 'w') PUT("A-Za-z0-9_");
                    else if (n == 's') PUT("[:space:]");
                    else if (n == '.' || n == '_' || n == '*' || n == '+' || n == '?' || n == '(' || n == ')' || n == '|' || n == '$' || n == '{' || n == '}') {
                        one[0] = n; one[1] = 0;
                        PUT(one);
                    } else return -1;
                } else {
                    one[0] = py[i]; one[1] = 0;
                    PUT(one);
                }
            }
            if (!py[i]) return -1;
            PUT("]");
        } else if (c == '(' && py[i + 1] == '?') {
            if (py[i + 2] == ':') { PUT("("); i += 2; }
            else if (py[i + 2] == 'P' && py[i + 3] == '<') {
                const char *e = strchr(py + i + 4, '>');
                if (!e) return -1;
                PUT("(");
                i = (size_t)(e - py);
            } else return -1;
        } else if ((c == '*' || c == '+' || c == '?' || c == '}') && py[i + 1] == '?') {
            /* A lazy quantifier matches the same strings as a greedy one; only a full match is asked. */
            PUT(one);
            i++;
        } else {
            PUT(one);
        }
    }
    if (wrap) PUT(")$");
    out[k] = 0;
    return 0;
#undef PUT
}

/* re.fullmatch(pattern, s): 1 match, 0 no match, -1 pattern not usable (message in err). */
static int py_fullmatch(const char *pattern, const char *s, const char *what, char *err, size_t errlen) {
    char ere[2048];
    regex_t re;
    const char *why;
    if (py_to_ere(pattern, 1, ere, sizeof ere, &why) || regcomp(&re, ere, REG_EXTENDED | REG_NOSUB)) {
        pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: %s regex \"%.200s\": %s", what, pattern, why);
        return -1;
    }
    int r = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return r;
}

/* PEFT's layer index of a module key: re.match(r".*\.{pattern}\.(\d+)\.", key), or the generic
 * ".*\.[^.]*\.(\d+)\." without a pattern. Returns the index, -1 if none, -2 on a bad pattern. */
static int layer_index(const char *key, const char *pattern, char *err, size_t errlen) {
    char body[1024], ere[1200];
    const char *why;
    if (pattern) {
        if (py_to_ere(pattern, 0, body, sizeof body, &why)) {
            pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: layers_pattern \"%.200s\": %s", pattern, why);
            return -2;
        }
        snprintf(ere, sizeof ere, "^.*\\.(%s)\\.([0-9]+)\\.", body);
    } else {
        snprintf(ere, sizeof ere, "^.*\\.[^.]*\\.([0-9]+)\\.");
    }
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED)) {
        pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: layers_pattern \"%s\" uses syntax peftd cannot evaluate", pattern ? pattern : "");
        return -2;
    }
    regmatch_t m[3];
    int g = pattern ? 2 : 1, idx = -1;
    if (regexec(&re, key, 3, m, 0) == 0 && m[g].rm_so >= 0) {
        long v = strtol(key + m[g].rm_so, NULL, 10);
        idx = v > 1000000 ? 1000000 : (int)v;
    }
    regfree(&re);
    return idx;
}

/* ==== The base model's modules that are not encoder linears ==== */

static const char *const BERT_LAYER_OTHER[] = {"", "attention", "attention.self", "attention.self.dropout", "attention.output",
                                               "attention.output.LayerNorm", "attention.output.dropout", "intermediate",
                                               "intermediate.intermediate_act_fn", "output", "output.LayerNorm", "output.dropout", NULL};
static const char *const DIST_LAYER_OTHER[] = {"", "attention", "attention.dropout", "sa_layer_norm", "ffn", "ffn.dropout",
                                               "ffn.activation", "output_layer_norm", NULL};
static const char *const BERT_GLOBAL[] = {"embeddings", "embeddings.word_embeddings", "embeddings.position_embeddings",
                                          "embeddings.token_type_embeddings", "embeddings.LayerNorm", "embeddings.dropout",
                                          "encoder", "encoder.layer", "pooler", "pooler.dense", "pooler.activation", NULL};
static const char *const DIST_GLOBAL[] = {"embeddings", "embeddings.word_embeddings", "embeddings.position_embeddings",
                                          "embeddings.LayerNorm", "embeddings.dropout", "transformer", "transformer.layer", NULL};
static const char *const BERT_HEADS[] = {"dropout", "classifier", "qa_outputs", NULL};
static const char *const DIST_HEADS[] = {"pre_classifier", "classifier", "dropout", "qa_outputs", NULL};
static const char *const ROB_HEADS[] = {"classifier", "classifier.dense", "classifier.dropout", "classifier.out_proj", "qa_outputs", NULL};


/* ==== State and callbacks ==== */

typedef struct lin_delta {
    int lora;                 /* 1: LoRA on this linear */
    const float *A, *B, *bB;  /* (r, in), (out, r), (out) or NULL (lora_bias) */
    int r;
    float s;                  /* scaling: alpha / r, or alpha / sqrt(r) with use_rslora */
    const float *ia3;         /* IA3 vector: (out) scales the output, (in) the input when ff */
    int ff;
    const float *bias;        /* replacement bias (out) (LoRA bias="all"/"lora_only") or NULL */
    float *cadd;              /* constant (out) added to every row (embeddings LayerNorm bias shift) */
    /* trainable adapters only: gradients (NULL when absent), and the embeddings LayerNorm shift
     * the LoRA input gets at layer 0 (there cadd holds only the base part W d, so that dropout
     * applies to the shifted input as it does in PEFT) */
    float *gA, *gB, *gbB, *gia3, *gbias;
    const float *xshift;
} lin_delta;

typedef struct lora_state {
    int layers;
    lin_delta *lin;           /* (layers * PD_LIN_COUNT) */
    const float **ln_b;       /* (layers * 2) replacement LayerNorm bias or NULL */
    const float *emb_shift;   /* (hidden) embeddings LayerNorm bias minus the base's, or NULL */
    const float *emb_b;       /* (hidden) the stored embeddings LayerNorm bias, or NULL */
    float *shift_buf;         /* trainable: (hidden) emb_shift's storage, recomputed from emb_b */
    /* trainable adapters only */
    float lora_dropout;
    float **g_ln_b;           /* (layers * 2) */
    float *g_emb_b;           /* (hidden) */
} lora_state;

static void lora_state_free(void *p) {
    lora_state *s = p;
    if (!s) return;
    free(s->lin);
    free(s->ln_b);
    free(s->g_ln_b);
    free(s);
}

/* The state of a LoRA / IA3 adapter of L layers, or NULL on OOM. */
static lora_state *lora_state_new(int L) {
    lora_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->layers = L;
    s->lin = calloc((size_t)L * PD_LIN_COUNT, sizeof *s->lin);
    s->ln_b = calloc((size_t)L * 2, sizeof *s->ln_b);
    if (!s->lin || !s->ln_b) {
        lora_state_free(s);
        return NULL;
    }
    return s;
}

/* The LoRA input of a trainable adapter for rows [r0, r0 + n) of the group: x (+ the
 * embeddings LayerNorm shift at layer 0), dropped out when p > 0. */
static void lora_input(const lin_delta *ld, uint64_t key, float p, const float *x, int r0, int n, int in, float *xin) {
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)(r0 + i) * in;
        float *o = xin + (size_t)i * in;
        if (ld->xshift) for (int j = 0; j < in; j++) o[j] = xr[j] + ld->xshift[j];
        else memcpy(o, xr, sizeof(float) * (size_t)in);
    }
    if (p > 0) pd_dropout_mul(key, r0, n, in, p, xin);
}

/* LoRA / IA3 / bias replacement on one linear layer for a block of rows. A trainable adapter in
 * training mode counts its forward passes here (layer 0's query comes first in every pass) and
 * drops out the LoRA input with masks keyed by that count. */
static void lora_linear(const pd_delta *d, int layer, pd_lin which, const float *x, float *y, int rows, int in, int out,
                        const pd_wmat *w, const float *b, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const lora_state *s = a->impl;
    const lin_delta *ld = &s->lin[layer * PD_LIN_COUNT + which];
    pd_train *tr = a->train;
    if (tr && tr->on && layer == 0 && which == PD_LIN_Q) tr->pass++;
    float p = tr && tr->on ? s->lora_dropout : 0.0f;
    if (ld->cadd)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += ld->cadd[j];
    if (ld->bias) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += ld->bias[j] - (b ? b[j] : 0.0f);
    }
    if (ld->lora && (p > 0 || ld->xshift)) {
        uint64_t key = p > 0 ? pd_dropout_key(tr, layer, which) : 0;
        float *buf;
        int chunk = pd_scratch_rows(rows, (size_t)in + ld->r, &buf);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            float *xin = buf, *t = buf + (size_t)n * in;
            lora_input(ld, key, p, x, r0, n, in, xin);
            pd_gemm(pool, 0, 1, n, ld->r, in, 1.0f, xin, in, ld->A, in, 0.0f, t, ld->r);
            pd_gemm(pool, 0, 1, n, out, ld->r, ld->s, t, ld->r, ld->B, ld->r, 1.0f, y + (size_t)r0 * out, out);
        }
    } else if (ld->lora) {
        /* y += s * (x A^T) B^T as two GEMMs over the group's rows; the base weights stay untouched. */
        float *t;
        int chunk = pd_scratch_rows(rows, (size_t)ld->r, &t);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            pd_gemm(pool, 0, 1, n, ld->r, in, 1.0f, x + (size_t)r0 * in, in, ld->A, in, 0.0f, t, ld->r);
            pd_gemm(pool, 0, 1, n, out, ld->r, ld->s, t, ld->r, ld->B, ld->r, 1.0f, y + (size_t)r0 * out, out);
        }
    }
    if (ld->lora && ld->bB)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += ld->s * ld->bB[j];
    if (ld->ia3 && !ld->ff) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] *= ld->ia3[j];
    } else if (ld->ia3) {
        /* (x * l) W^T + b = x W^T + b + (x * (l - 1)) W^T: only the difference is computed. */
        float *t;
        int chunk = pd_scratch_rows(rows, (size_t)in, &t);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < in; j++) t[(size_t)i * in + j] = x[(size_t)(r0 + i) * in + j] * (ld->ia3[j] - 1.0f);
            pd_wmat_linear(pool, w, t, n, NULL, y + (size_t)r0 * out, 1);
        }
    }
}

/* Backward of lora_linear for a trainable adapter: accumulates the gradients of A, B, the LoRA
 * bias, the replacement bias, the IA3 vector and the embeddings LayerNorm bias (through cadd and
 * the shifted LoRA input), and adds the delta's part of dL/dx. The dropout mask is regenerated
 * from the same key the forward pass used (no forward pass runs in between). */
static void lora_linear_bwd(const pd_delta *d, int layer, pd_lin which, const float *x, const float *dy, float *dx, int rows,
                            int in, int out, const pd_wmat *w, const float *b, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const lora_state *s = a->impl;
    const lin_delta *ld = &s->lin[layer * PD_LIN_COUNT + which];
    const pd_train *tr = a->train;
    float p = tr && tr->on ? s->lora_dropout : 0.0f;
    if (ld->cadd && s->g_emb_b) {
        /* cadd = W d: dL/dd += colsum(dy) W */
        float *c;
        pd_scratch_rows(1, (size_t)out, &c);
        for (int j = 0; j < out; j++) {
            double t = 0;
            for (int i = 0; i < rows; i++) t += dy[(size_t)i * out + j];
            c[j] = (float)t;
        }
        pd_wmat_dx(pool, w, c, 1, s->g_emb_b, 1);
    }
    if (ld->gbias) pd_colsum_add(dy, rows, out, ld->gbias);
    if (ld->lora) {
        uint64_t key = p > 0 ? pd_dropout_key(tr, layer, which) : 0;
        int want_dxin = dx || (ld->xshift && s->g_emb_b);
        /* without dropout or shift the LoRA input is x itself, and dt A adds straight into dx */
        int plain = p <= 0 && !ld->xshift;
        float *buf;
        int chunk = pd_scratch_rows(rows, plain ? 2 * (size_t)ld->r : (size_t)2 * in + 2 * (size_t)ld->r, &buf);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            const float *dyc = dy + (size_t)r0 * out;
            if (plain) {
                float *t = buf, *dt = t + (size_t)n * ld->r;
                const float *xc = x + (size_t)r0 * in;
                pd_gemm(pool, 0, 1, n, ld->r, in, 1.0f, xc, in, ld->A, in, 0.0f, t, ld->r);
                pd_gemm(pool, 1, 0, out, ld->r, n, ld->s, dyc, out, t, ld->r, 1.0f, ld->gB, ld->r);
                pd_gemm(pool, 0, 0, n, ld->r, out, ld->s, dyc, out, ld->B, ld->r, 0.0f, dt, ld->r);
                pd_gemm(pool, 1, 0, ld->r, in, n, 1.0f, dt, ld->r, xc, in, 1.0f, ld->gA, in);
                if (dx) pd_gemm(pool, 0, 0, n, in, ld->r, 1.0f, dt, ld->r, ld->A, in, 1.0f, dx + (size_t)r0 * in, in);
                continue;
            }
            float *xin = buf, *dxin = xin + (size_t)n * in, *t = dxin + (size_t)n * in, *dt = t + (size_t)n * ld->r;
            lora_input(ld, key, p, x, r0, n, in, xin);
            pd_gemm(pool, 0, 1, n, ld->r, in, 1.0f, xin, in, ld->A, in, 0.0f, t, ld->r);
            /* y = s t B^T: gB += s dy^T t; dt = s dy B; gA += dt^T xin; dxin = dt A */
            pd_gemm(pool, 1, 0, out, ld->r, n, ld->s, dyc, out, t, ld->r, 1.0f, ld->gB, ld->r);
            pd_gemm(pool, 0, 0, n, ld->r, out, ld->s, dyc, out, ld->B, ld->r, 0.0f, dt, ld->r);
            pd_gemm(pool, 1, 0, ld->r, in, n, 1.0f, dt, ld->r, xin, in, 1.0f, ld->gA, in);
            if (!want_dxin) continue;
            pd_gemm(pool, 0, 0, n, in, ld->r, 1.0f, dt, ld->r, ld->A, in, 0.0f, dxin, in);
            if (p > 0) pd_dropout_mul(key, r0, n, in, p, dxin);
            if (ld->xshift && s->g_emb_b) pd_colsum_add(dxin, n, in, s->g_emb_b);
            if (dx)
                for (size_t e = 0; e < (size_t)n * in; e++) dx[(size_t)r0 * in + e] += dxin[e];
        }
        if (ld->gbB) {
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < out; j++) ld->gbB[j] += ld->s * dy[(size_t)i * out + j];
        }
    }
    if (ld->ia3 && !ld->ff && ld->gia3) {
        /* y = (x W^T + b) * l: gl += colsum(dy * (x W^T + b)); dx += (dy * (l - 1)) W */
        float *buf;
        int chunk = pd_scratch_rows(rows, (size_t)2 * out, &buf);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            float *y0 = buf, *g = buf + (size_t)n * out;
            pd_wmat_linear(pool, w, x + (size_t)r0 * in, n, b, y0, 0);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < out; j++) {
                    float gy = dy[(size_t)(r0 + i) * out + j];
                    ld->gia3[j] += gy * y0[(size_t)i * out + j];
                    g[(size_t)i * out + j] = gy * (ld->ia3[j] - 1.0f);
                }
            if (dx) pd_wmat_dx(pool, w, g, n, dx + (size_t)r0 * in, 1);
        }
    } else if (ld->ia3 && ld->gia3) {
        /* y = (x * l) W^T + b: g = dy W; gl += colsum(x * g); dx += g * (l - 1) */
        float *g;
        int chunk = pd_scratch_rows(rows, (size_t)in, &g);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            pd_wmat_dx(pool, w, dy + (size_t)r0 * out, n, g, 0);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < in; j++) {
                    float gx = g[(size_t)i * in + j];
                    ld->gia3[j] += gx * x[(size_t)(r0 + i) * in + j];
                    if (dx) dx[(size_t)(r0 + i) * in + j] += gx * (ld->ia3[j] - 1.0f);
                }
        }
    }
}

/* LayerNorm bias replacement (LoRA bias="all") and the embeddings LayerNorm bias shift. */
static int lora_sublayer(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                         const float *ln_b, float eps, int rows, int dim, float *out, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const lora_state *s = a->impl;
    const float *nb = s->ln_b[layer * 2 + site];
    int shift = s->emb_shift && layer == 0 && site == PD_SITE_ATTN;
    if (!nb && !shift) return 0;
    if (!shift) {
        pd_layernorm(pool, h, resid, ln_w, nb ? nb : ln_b, eps, rows, dim, out);
        return 1;
    }
    /* The attention residual of layer 0 is the embeddings output, which moved by emb_shift. */
    float *t;
    int chunk = pd_scratch_rows(rows, (size_t)dim, &t);
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int n = rows - r0 < chunk ? rows - r0 : chunk;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < dim; j++) t[(size_t)i * dim + j] = h[(size_t)(r0 + i) * dim + j] + s->emb_shift[j];
        pd_layernorm(pool, t, resid + (size_t)r0 * dim, ln_w, nb ? nb : ln_b, eps, n, dim, out + (size_t)r0 * dim);
    }
    return 1;
}

/* Backward of lora_sublayer: LayerNorm(h + resid (+ shift)) with the replaced bias. Writes dh
 * and dresid, accumulates the LayerNorm bias gradient and the embeddings shift's. */
static int lora_sublayer_bwd(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                             const float *ln_b, float eps, int rows, int dim, const float *dout, float *dh, float *dresid,
                             pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const lora_state *s = a->impl;
    const float *nb = s->ln_b[layer * 2 + site];
    int shift = s->emb_shift && layer == 0 && site == PD_SITE_ATTN;
    if (!nb && !shift) return 0;
    float *gnb = s->g_ln_b ? s->g_ln_b[layer * 2 + site] : NULL;
    float *t;
    int chunk = pd_scratch_rows(rows, (size_t)dim, &t);
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int n = rows - r0 < chunk ? rows - r0 : chunk;
        size_t o = (size_t)r0 * dim;
        for (size_t e = 0; e < (size_t)n * dim; e++) t[e] = h[o + e] + resid[o + e] + (shift ? s->emb_shift[e % (size_t)dim] : 0.0f);
        pd_ln_bwd(t, ln_w, eps, n, dim, dout + o, dh + o, NULL, gnb);
        memcpy(dresid + o, dh + o, sizeof(float) * (size_t)n * dim);
        if (shift && s->g_emb_b) pd_colsum_add(dh + o, n, dim, s->g_emb_b);
    }
    return 1;
}

/* ==== Config matching ==== */

typedef struct tcfg {
    const cJSON *target, *exclude, *layers, *layers_pattern, *mts;
} tcfg;

/* key equals e or ends with it (after a '.' when dotted). */
static int suffix_match(const char *key, const char *e, int dotted) {
    if (!strcmp(key, e)) return 1;
    size_t kl = strlen(key), el = strlen(e);
    return kl > el && !strcmp(key + kl - el, e) && (!dotted || key[kl - el - 1] == '.');
}

static int str_list_has_suffix(const cJSON *list, const char *key, int dotted) {
    const cJSON *e;
    cJSON_ArrayForEach(e, list) if (cJSON_IsString(e) && suffix_match(key, e->valuestring, dotted)) return 1;
    return 0;
}

/* A module listed (or inside a module listed) in modules_to_save is never an adapter target. */
static int in_modules_to_save(const cJSON *mts, const char *key) {
    const cJSON *e;
    cJSON_ArrayForEach(e, mts) {
        if (!cJSON_IsString(e) || !*e->valuestring) continue;
        const char *m = e->valuestring;
        size_t ml = strlen(m);
        for (const char *p = key; (p = strstr(p, m)) != NULL; p++) {
            int start = p == key || p[-1] == '.';
            int end = p[ml] == 0 || p[ml] == '.';
            if (start && end) return 1;
        }
    }
    return 0;
}

/* PEFT's check_target_module_exists. Returns 1/0, -1 on an unusable pattern (err set). */
static int target_match(const tcfg *c, const char *key, char *err, size_t errlen) {
    if (c->exclude) {
        if (cJSON_IsString(c->exclude)) {
            int r = py_fullmatch(c->exclude->valuestring, key, "exclude_modules", err, errlen);
            if (r) return r < 0 ? -1 : 0;
        } else if (str_list_has_suffix(c->exclude, key, 1)) return 0;
    }
    if (c->mts && in_modules_to_save(c->mts, key)) return 0;
    if (cJSON_IsString(c->target)) return py_fullmatch(c->target->valuestring, key, "target_modules", err, errlen);
    const cJSON *e;
    cJSON_ArrayForEach(e, c->target) if (cJSON_IsString(e) && !strcmp(key, e->valuestring)) return 1;
    if (!str_list_has_suffix(c->target, key, 1)) return 0;
    if (!c->layers) return 1;
    int idx = -1;
    if (c->layers_pattern && cJSON_IsArray(c->layers_pattern) && cJSON_GetArraySize(c->layers_pattern) > 0) {
        const cJSON *p;
        cJSON_ArrayForEach(p, c->layers_pattern) {
            idx = layer_index(key, p->valuestring, err, errlen);
            if (idx == -2) return -1;
            if (idx >= 0) break;
        }
    } else {
        const char *p = cJSON_IsString(c->layers_pattern) && *c->layers_pattern->valuestring ? c->layers_pattern->valuestring : NULL;
        idx = layer_index(key, p, err, errlen);
        if (idx == -2) return -1;
    }
    if (idx < 0) return 0;
    if (cJSON_IsNumber(c->layers)) return (int)c->layers->valuedouble == idx;
    cJSON_ArrayForEach(e, c->layers) if (cJSON_IsNumber(e) && (int)e->valuedouble == idx) return 1;
    return 0;
}

/* PEFT's get_pattern_key: the first key k (in file order) with re.match(rf"(.*\.)?({k})$", key). */
static const cJSON *pattern_value(const cJSON *patterns, const char *key, const char *what, char *err, size_t errlen, int *bad) {
    const cJSON *e;
    cJSON_ArrayForEach(e, patterns) {
        char ere[1200], body[1024];
        regex_t re;
        const char *why;
        if (py_to_ere(e->string, 0, body, sizeof body, &why) ||
            (snprintf(ere, sizeof ere, "^(.*\\.)?(%s)$", body), regcomp(&re, ere, REG_EXTENDED | REG_NOSUB))) {
            pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: %s key \"%.200s\": %s", what, e->string, why);
            *bad = 1;
            return NULL;
        }
        int m = regexec(&re, key, 0, NULL, 0) == 0;
        regfree(&re);
        if (m) return e;
    }
    return NULL;
}

/* ==== Loading ==== */

/* A fresh adapter's list entries must each name an encoder linear (a typo would otherwise
 * silently adapt less than asked). dotted: target_modules suffix rule; else feedforward's. */
static pd_status fresh_targets_exist(const pd_adapter *a, const char *P, const cJSON *list, const char *what, int dotted, char *err,
                                     size_t errlen) {
    if (!cJSON_IsArray(list)) return PD_OK;
    const cJSON *e;
    char key[512];
    cJSON_ArrayForEach(e, list) {
        int hit = 0;
        for (int l = 0; l < a->cfg->layers && !hit; l++)
            for (int k = 0; k < PD_LIN_COUNT && !hit; k++) {
                pd_peft_layer_module(a, P, l, pd_peft_lin_name(a, k), key, sizeof key);
                hit = cJSON_IsString(e) && suffix_match(key, e->valuestring, dotted);
            }
        if (!hit)
            return pd_err(err, errlen, PD_ERR_INVALID, "config.%s: \"%s\" is not a linear layer of the %s encoder (%s, %s, %s, %s, %s, %s)", what,
                          e->valuestring, pd_arch_name(a->cfg->arch), pd_peft_lin_name(a, 0), pd_peft_lin_name(a, 1), pd_peft_lin_name(a, 2), pd_peft_lin_name(a, 3),
                          pd_peft_lin_name(a, 4), pd_peft_lin_name(a, 5));
    }
    return PD_OK;
}

/* Which encoder linears a LoRA / IA3 config selects (PEFT's check_target_module_exists), with
 * rank, scaling and feed-forward flag in s->lin. st: the file being loaded (its module prefix and
 * architecture are checked), or NULL for a fresh adapter, whose paths use the task model's
 * prefix ("bert.") and whose target_modules entries must each name an encoder linear. On
 * success *want_out (malloc'd, layers * PD_LIN_COUNT) holds each linear's rank (1 for IA3, 0 if
 * not selected), *P_out the module prefix. */
static pd_status lora_ia3_select(pd_adapter *a, const pd_st_file *st, lora_state *s, const char **P_out, int **want_out,
                                 int *lora_bias_out, char *err, size_t errlen) {
    const cJSON *c = a->config;
    int ia3 = a->method == PD_METHOD_IA3;
    int L = a->cfg->layers;
    pd_status ps;
    int r = 8, dora = 0, rslora = 0, fifo = 0, lora_bias = 0;
    double alpha = 8;
    if (!ia3) {
        if ((ps = pd_json_int(c, "r", PD_PEFT_CFG, 1, 1000000000, PD_ERR_INVALID, &r, err, errlen)) ||
            (ps = pd_json_num(c, "lora_alpha", PD_PEFT_CFG, -1e30, 0, 1e30, PD_ERR_INVALID, &alpha, err, errlen)) ||
            (ps = pd_json_bool(c, "use_dora", PD_PEFT_CFG, &dora, err, errlen)) || (ps = pd_json_bool(c, "use_rslora", PD_PEFT_CFG, &rslora, err, errlen)) ||
            (ps = pd_json_bool(c, "lora_bias", PD_PEFT_CFG, &lora_bias, err, errlen)))
            return ps;
        if (dora) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: use_dora = true (DoRA) is not supported");
        const cJSON *b = pd_json_get(c, "bias");
        if (b && (!cJSON_IsString(b) || (strcmp(b->valuestring, "none") && strcmp(b->valuestring, "all") && strcmp(b->valuestring, "lora_only"))))
            return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"bias\" must be \"none\", \"all\" or \"lora_only\"");
        if (pd_json_get(c, "layer_replication"))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: layer_replication is not supported");
        const cJSON *tp = pd_json_get(c, "target_parameters");
        if (tp && (!cJSON_IsArray(tp) || cJSON_GetArraySize(tp) > 0))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: target_parameters is not supported");
        if (pd_json_get(c, "trainable_token_indices"))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: trainable_token_indices is not supported");
    }
    /* fan_in_fan_out only concerns GPT-2 style Conv1D; PEFT forces it to false for nn.Linear. */
    if ((ps = pd_json_bool(c, "fan_in_fan_out", PD_PEFT_CFG, &fifo, err, errlen))) return ps;
    tcfg tc;
    tc.target = pd_json_get(c, "target_modules");
    tc.exclude = pd_json_get(c, "exclude_modules");
    tc.layers = pd_json_get(c, "layers_to_transform");
    tc.layers_pattern = pd_json_get(c, "layers_pattern");
    tc.mts = pd_json_get(c, "modules_to_save");
    cJSON *deflt = NULL;
    if (!tc.target) {
        /* PEFT's defaults for these model types (TRANSFORMERS_MODELS_TO_*_TARGET_MODULES_MAPPING). */
        deflt = cJSON_CreateArray();
        if (!deflt) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        const char *d[3] = {NULL, NULL, NULL};
        if (pd_peft_is_dist(a)) { d[0] = ia3 ? "k_lin" : "q_lin"; d[1] = ia3 ? "v_lin" : "v_lin"; d[2] = ia3 ? "lin2" : NULL; }
        else { d[0] = ia3 ? "key" : "query"; d[1] = "value"; d[2] = ia3 ? "output.dense" : NULL; }
        for (int i = 0; i < 3 && d[i]; i++) cJSON_AddItemToArray(deflt, cJSON_CreateString(d[i]));
        tc.target = deflt;
    }
    const cJSON *ffm = pd_json_get(c, "feedforward_modules");
    cJSON *ffdef = NULL;
    if (ia3 && !ffm) {
        ffdef = cJSON_CreateArray();
        if (ffdef) cJSON_AddItemToArray(ffdef, cJSON_CreateString(pd_peft_is_dist(a) ? "lin2" : "output.dense"));
        ffm = ffdef;
    }
    const cJSON *rp = pd_json_get(c, "rank_pattern"), *ap = pd_json_get(c, "alpha_pattern");
    if ((ps = pd_peft_check_str_list(tc.target, "target_modules", 1, err, errlen)) || (ps = pd_peft_check_str_list(tc.exclude, "exclude_modules", 1, err, errlen)) ||
        (ps = pd_peft_check_str_list(tc.mts, "modules_to_save", 0, err, errlen)) || (ps = pd_peft_check_str_list(tc.layers_pattern, "layers_pattern", 1, err, errlen)) ||
        (ps = pd_peft_check_str_list(ffm, "feedforward_modules", 1, err, errlen)))
        goto out;
    if (tc.layers && !cJSON_IsNumber(tc.layers) && !cJSON_IsArray(tc.layers)) {
        ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"layers_to_transform\" must be an integer or a list of integers");
        goto out;
    }
    if ((rp && !cJSON_IsObject(rp)) || (ap && !cJSON_IsObject(ap))) {
        ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: rank_pattern and alpha_pattern must be objects");
        goto out;
    }
    const char *P = st ? pd_peft_detect_prefix(a, st) : pd_peft_arch_prefix(a->cfg->arch);
    if (st && (ps = pd_peft_arch_scan(a, st, P, err, errlen))) goto out;
    if (!st && ((ps = fresh_targets_exist(a, P, tc.target, "target_modules", 1, err, errlen)) ||
                (ia3 && (ps = fresh_targets_exist(a, P, ffm, "feedforward_modules", 0, err, errlen)))))
        goto out;
    char key[512];
    int n_target = 0;
    /* Which encoder linears the config selects, with their rank and scaling. */
    int *want_r = calloc((size_t)L * PD_LIN_COUNT, sizeof(int));
    if (!want_r) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
    for (int l = 0; l < L && !ps; l++) {
        for (int k = 0; k < PD_LIN_COUNT; k++) {
            pd_peft_layer_module(a, P, l, pd_peft_lin_name(a, k), key, sizeof key);
            int m = target_match(&tc, key, err, errlen);
            if (m < 0) { ps = PD_ERR_UNSUPPORTED; break; }
            if (!m) continue;
            n_target++;
            lin_delta *ld = &s->lin[l * PD_LIN_COUNT + k];
            if (ia3) {
                int ff;
                if (cJSON_IsString(ffm)) {
                    ff = py_fullmatch(ffm->valuestring, key, "feedforward_modules", err, errlen);
                    if (ff < 0) { ps = PD_ERR_UNSUPPORTED; break; }
                } else {
                    ff = str_list_has_suffix(ffm, key, 0);
                }
                ld->ff = ff;
                want_r[l * PD_LIN_COUNT + k] = 1;
                continue;
            }
            int bad = 0, rr = r;
            double al = alpha;
            const cJSON *pv = rp ? pattern_value(rp, key, "rank_pattern", err, errlen, &bad) : NULL;
            if (bad) { ps = PD_ERR_UNSUPPORTED; break; }
            if (pv) {
                if (!cJSON_IsNumber(pv) || pv->valuedouble < 1 || pv->valuedouble > 1e6 || pv->valuedouble != (int)pv->valuedouble) {
                    ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: rank_pattern \"%s\" must be a positive integer", pv->string);
                    break;
                }
                rr = (int)pv->valuedouble;
            }
            pv = ap ? pattern_value(ap, key, "alpha_pattern", err, errlen, &bad) : NULL;
            if (bad) { ps = PD_ERR_UNSUPPORTED; break; }
            if (pv) {
                if (!cJSON_IsNumber(pv)) { ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: alpha_pattern \"%s\" must be a number", pv->string); break; }
                al = pv->valuedouble;
            }
            want_r[l * PD_LIN_COUNT + k] = rr;
            ld->r = rr;
            ld->s = (float)(rslora ? al / sqrt((double)rr) : al / rr);
        }
    }
    if (ps) goto out_r;
    /* Anything else the config selects is not an encoder linear: PEFT would adapt it, peftd cannot. */
    {
        const char *const *glob = pd_peft_is_dist(a) ? DIST_GLOBAL : BERT_GLOBAL;
        const char *const *lay = pd_peft_is_dist(a) ? DIST_LAYER_OTHER : BERT_LAYER_OTHER;
        const char *const *heads = pd_peft_is_dist(a) ? DIST_HEADS : a->cfg->arch == PD_ARCH_ROBERTA ? ROB_HEADS : BERT_HEADS;
        for (int i = 0; glob[i] && !ps; i++) {
            snprintf(key, sizeof key, "%s%s", P, glob[i]);
            int m = target_match(&tc, key, err, errlen);
            if (m < 0) ps = PD_ERR_UNSUPPORTED;
            else if (m) ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "target_modules selects %s, which is not a linear layer of the encoder; only encoder linears can be %s targets", key, ia3 ? "IA3" : "LoRA");
        }
        for (int l = 0; l < L && !ps; l++) {
            for (int i = 0; lay[i] && !ps; i++) {
                pd_peft_layer_module(a, P, l, lay[i], key, sizeof key);
                int m = target_match(&tc, key, err, errlen);
                if (m < 0) ps = PD_ERR_UNSUPPORTED;
                else if (m) ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "target_modules selects %s, which is not a linear layer of the encoder; only encoder linears can be %s targets", key, ia3 ? "IA3" : "LoRA");
            }
        }
        for (int i = 0; *P && heads[i] && !ps; i++) {
            int m = target_match(&tc, heads[i], err, errlen);
            if (m < 0) ps = PD_ERR_UNSUPPORTED;
            else if (m) ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "target_modules selects the head layer %s; only encoder linears can be %s targets (list heads in modules_to_save instead)", heads[i], ia3 ? "IA3" : "LoRA");
        }
    }
    if (ps) goto out_r;
    if (!n_target) {
        ps = pd_err(err, errlen, PD_ERR_MISMATCH, "adapter_config.json: target_modules selects no linear layer of this %s model", pd_arch_name(a->cfg->arch));
        goto out_r;
    }
    *P_out = P;
    *want_out = want_r;
    *lora_bias_out = lora_bias;
    want_r = NULL;
out_r:
    free(want_r);
out:
    cJSON_Delete(deflt);
    cJSON_Delete(ffdef);
    return ps;
}

pd_status pd_lora_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                       size_t errlen) {
    lora_state *s = lora_state_new(a->cfg->layers);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    a->impl = s;
    a->impl_free = lora_state_free;
    int ia3 = a->method == PD_METHOD_IA3;
    int L = a->cfg->layers, H = a->cfg->hidden, F = a->cfg->ffn;
    const char *P = NULL;
    int *want_r = NULL, lora_bias = 0;
    char key[512];
    pd_status ps = lora_ia3_select(a, st, s, &P, &want_r, &lora_bias, err, errlen);
    if (ps) return ps;
    /* Every tensor in the file must be known and used. */
    pd_peft_head hp;
    memset(&hp, 0, sizeof hp);
    pd_model_extras ex;
    pd_model_get_extras(a->base, &ex);
    for (int i = 0; i < pd_st_count(st) && !ps; i++) {
        const pd_st_tensor *t = pd_st_at(st, i);
        char n[1024], mod[1024], save[1100];
        if (pd_peft_norm_name(t->name, n, sizeof n)) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor name too long: %.100s...", t->name); break; }
        pd_peft_tkind tk = pd_peft_split_name(n, mod, sizeof mod);
        int layer = -1, idx = -1;
        const char *other = NULL;
        pd_peft_mkind mk = pd_peft_module_kind(a, P, mod, &layer, &idx, &other);
        if (tk == K_DORA) { ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s is a DoRA magnitude vector; DoRA is not supported", t->name); break; }
        if (tk == K_LORA_EMB) { ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s adapts an embedding; only encoder linears can be LoRA targets", t->name); break; }
        if (mk == M_OTHER_ARCH) {
            ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", t->name, other, pd_arch_name(a->cfg->arch));
            break;
        }
        if ((mk == M_ENC_LIN || mk == M_ENC_LN || mk == M_ENC_OTHER) && layer >= L) {
            ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s is for layer %d but the base model has %d layers", t->name, layer, L);
            break;
        }
        snprintf(save, sizeof save, "base_model.model.%s", n);
        int adapter_kind = tk == K_LORA_A || tk == K_LORA_B || tk == K_LORA_BB || tk == K_IA3;
        if (adapter_kind && (ia3 != (tk == K_IA3))) {
            ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s does not belong to a %s adapter", t->name, ia3 ? "IA3" : "LoRA");
            break;
        }
        if (adapter_kind && mk != M_ENC_LIN) {
            if (mk == M_POOLER || mk == M_CLS || mk == M_CLS_DENSE || mk == M_CLS_OUT || mk == M_PRE_CLS || mk == M_QA)
                ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s adapts the head layer %s; only encoder linears can be %s targets", t->name, mod, ia3 ? "IA3" : "LoRA");
            else
                ps = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: %s is not a linear layer of the %s encoder", t->name, mod, pd_arch_name(a->cfg->arch));
            break;
        }
        pd_atensor *at = NULL;
        if (adapter_kind) {
            lin_delta *ld = &s->lin[layer * PD_LIN_COUNT + idx];
            int rr = want_r[layer * PD_LIN_COUNT + idx];
            if (!rr) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s is for %s, which target_modules does not select", t->name, mod); break; }
            int in = idx == PD_LIN_FFN2 ? F : H, outd = idx == PD_LIN_FFN1 ? F : H;
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if (tk == K_LORA_A) { if (ld->A) goto dup; if ((ps = pd_peft_shape_check(at, 2, rr, in, err, errlen))) break; ld->A = at->data; }
            else if (tk == K_LORA_B) { if (ld->B) goto dup; if ((ps = pd_peft_shape_check(at, 2, outd, rr, err, errlen))) break; ld->B = at->data; }
            else if (tk == K_LORA_BB) { if (ld->bB) goto dup; if ((ps = pd_peft_shape_check(at, 1, outd, 0, err, errlen))) break; ld->bB = at->data; }
            else {
                if (ld->ia3) goto dup;
                int want = ld->ff ? in : outd;
                int ok = (at->ndim == 2 && ((ld->ff && at->shape[0] == 1 && at->shape[1] == want) || (!ld->ff && at->shape[0] == want && at->shape[1] == 1))) ||
                         (at->ndim == 1 && at->shape[0] == want);
                if (!ok) {
                    char got[64];
                    int64_t g[2] = {at->shape[0], at->shape[1]};
                    pd_shape_str(g, at->ndim, got, sizeof got);
                    ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape %s but the base model needs [%d, %d] (%s)", t->name, got,
                                ld->ff ? 1 : want, ld->ff ? want : 1, ld->ff ? "feed-forward: scales the input" : "scales the output");
                    break;
                }
                ld->ia3 = at->data;
            }
            continue;
        dup:
            ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice (with and without \".default\"?)", t->name);
            break;
        }
        /* Full parameters: biases (LoRA bias="all"/"lora_only") and heads (modules_to_save). */
        int is_b = tk == K_PARAM_B;
        if (mk == M_POOLER || mk == M_CLS || mk == M_CLS_DENSE || mk == M_CLS_OUT || mk == M_PRE_CLS || mk == M_QA) {
            if (mk == M_POOLER && !*P) snprintf(save, sizeof save, "base_model.model.%s", n);
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            ps = pd_peft_head_take(a, mk, is_b, at, &hp, err, errlen);
            continue;
        }
        if (!is_b || ia3) {
            if (tk == K_PARAM_W && (mk == M_ENC_LIN || mk == M_ENC_LN || mk == M_EMB_LN))
                ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s replaces a weight of the encoder (%s in modules_to_save?); only heads may be saved whole", t->name, mod);
            else
                ps = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: not a %s parameter of a %s model", t->name, ia3 ? "IA3" : "LoRA", pd_arch_name(a->cfg->arch));
            break;
        }
        if (mk == M_ENC_LIN) {
            lin_delta *ld = &s->lin[layer * PD_LIN_COUNT + idx];
            if (ld->bias) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if ((ps = pd_peft_shape_check(at, 1, idx == PD_LIN_FFN1 ? F : H, 0, err, errlen))) break;
            ld->bias = at->data;
        } else if (mk == M_ENC_LN) {
            if (s->ln_b[layer * 2 + idx]) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if ((ps = pd_peft_shape_check(at, 1, H, 0, err, errlen))) break;
            s->ln_b[layer * 2 + idx] = at->data;
        } else if (mk == M_EMB_LN) {
            if (s->emb_b) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if ((ps = pd_peft_shape_check(at, 1, H, 0, err, errlen))) break;
            float *d = pd_adapter_alloc(a, (size_t)H);
            if (!d) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            s->emb_b = at->data;
            int nz = 0;
            for (int j = 0; j < H; j++) { d[j] = at->data[j] - ex.emb_ln_b[j]; nz |= d[j] != 0.0f; }
            if (nz) s->emb_shift = d;
        } else {
            ps = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: not a parameter of a %s model", t->name, pd_arch_name(a->cfg->arch));
        }
    }
    if (ps) goto out_r;
    for (int l = 0; l < L && !ps; l++) {
        for (int k = 0; k < PD_LIN_COUNT; k++) {
            if (!want_r[l * PD_LIN_COUNT + k]) continue;
            lin_delta *ld = &s->lin[l * PD_LIN_COUNT + k];
            pd_peft_layer_module(a, P, l, pd_peft_lin_name(a, k), key, sizeof key);
            const char *miss = ia3 ? (ld->ia3 ? NULL : "ia3_l") : !ld->A ? "lora_A.weight" : !ld->B ? "lora_B.weight" : (lora_bias && !ld->bB) ? "lora_B.bias" : NULL;
            if (miss) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor base_model.model.%s.%s (target_modules selects it)", key, miss); break; }
            if (!ia3) ld->lora = 1;
        }
    }
    if (ps) goto out_r;
    /* A shifted embeddings LayerNorm bias moves the input of layer 0 by emb_shift: its q/k/v get
     * the constant W d (+ the LoRA part of it), its attention residual the shift itself. */
    if (s->emb_shift) {
        const pd_layer *L0 = pd_model_layer(a->base, 0);
        const pd_wmat *W[3] = {L0->wq, L0->wk, L0->wv};
        for (int k = 0; k < 3; k++) {
            lin_delta *ld = &s->lin[k];
            float *cadd = pd_adapter_alloc(a, (size_t)H);
            if (!cadd) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out_r; }
            pd_wmat_linear(NULL, W[k], s->emb_shift, 1, NULL, cadd, 0);
            if (ld->lora) {
                float *t = pd_adapter_alloc(a, (size_t)ld->r);
                if (!t) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out_r; }
                pd_gemm(NULL, 0, 1, 1, ld->r, H, 1.0f, s->emb_shift, H, ld->A, H, 0.0f, t, ld->r);
                pd_gemm(NULL, 0, 1, 1, H, ld->r, ld->s, t, ld->r, ld->B, ld->r, 1.0f, cadd, H);
            }
            ld->cadd = cadd;
        }
    }
    a->delta.linear = lora_linear;
    int any_ln = s->emb_shift != NULL;
    for (int i = 0; i < 2 * L; i++) any_ln |= s->ln_b[i] != NULL;
    if (any_ln) a->delta.sublayer = lora_sublayer;
    ps = pd_peft_build_head(a, &hp, f, err, errlen);
out_r:
    free(want_r);
    return ps;
}

/* ==== Training ==== */

pd_status pd_lora_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen) {
    lora_state *s = a->impl;
    int L = a->cfg->layers, H = a->cfg->hidden;
#define G(dst, ptr, decay)                                                             \
    do {                                                                               \
        if (!((dst) = pd_at_grad(a, (ptr), (decay)))) goto oom;                        \
    } while (0)
    if (a->method == PD_METHOD_LORA) {
        double p = 0;
        pd_status st = pd_json_num(a->config, "lora_dropout", PD_PEFT_CFG, 0, 0, 0.999999, PD_ERR_INVALID, &p, err, errlen);
        if (st) return st;
        s->lora_dropout = (float)p;
    }
    for (int i = 0; i < L * PD_LIN_COUNT; i++) {
        lin_delta *ld = &s->lin[i];
        if (ld->lora) {
            G(ld->gA, ld->A, 1);
            G(ld->gB, ld->B, 1);
            if (ld->bB) G(ld->gbB, ld->bB, 0);
        }
        if (ld->ia3) G(ld->gia3, ld->ia3, 1);
        if (ld->bias) G(ld->gbias, ld->bias, 0);
    }
    if (!(s->g_ln_b = calloc((size_t)L * 2, sizeof *s->g_ln_b))) goto oom;
    int any_ln = 0;
    for (int i = 0; i < 2 * L; i++)
        if (s->ln_b[i]) { G(s->g_ln_b[i], s->ln_b[i], 0); any_ln = 1; }
    if (s->emb_b) {
        /* cadd becomes the base part W d only; LoRA sees the shifted input itself. */
        if (!(s->shift_buf = pd_adapter_alloc(a, (size_t)H))) goto oom;
        s->emb_shift = s->shift_buf;
        G(s->g_emb_b, s->emb_b, 0);
        for (int k = 0; k < 3; k++) {
            lin_delta *ld = &s->lin[k];
            if (!(ld->cadd = pd_adapter_alloc(a, (size_t)H))) goto oom;
            if (ld->lora) ld->xshift = s->shift_buf;
        }
        any_ln = 1;
    }
    a->delta.linear = lora_linear;
    a->delta.linear_bwd = lora_linear_bwd;
    if (any_ln) {
        a->delta.sublayer = lora_sublayer;
        a->delta.sublayer_bwd = lora_sublayer_bwd;
    }
#undef G
    pd_lora_params_changed(a);
    return PD_OK;
oom:
    return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
}

/* A shifted embeddings LayerNorm bias moves layer 0's q/k/v by W d: recomputed from the bias. */
void pd_lora_params_changed(pd_adapter *a) {
    lora_state *s = a->impl;
    int H = a->cfg->hidden;
    if (s->shift_buf) {
        pd_model_extras ex;
        pd_model_get_extras(a->base, &ex);
        for (int j = 0; j < H; j++) s->shift_buf[j] = s->emb_b[j] - ex.emb_ln_b[j];
        const pd_layer *L0 = pd_model_layer(a->base, 0);
        const pd_wmat *W[3] = {L0->wq, L0->wk, L0->wv};
        for (int k = 0; k < 3; k++) pd_wmat_linear(NULL, W[k], s->shift_buf, 1, NULL, s->lin[k].cadd, 0);
    }
}

/* ==== Fresh adapters ==== */

const char *const pd_lora_config_keys[] = {"r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "use_rslora", "bias",
                                           "lora_bias", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern",
                                           "alpha_pattern", NULL};
const char *const pd_ia3_config_keys[] = {"target_modules", "feedforward_modules", "exclude_modules", "init_ia3_weights",
                                          "layers_to_transform", "layers_pattern", NULL};

/* The user's value of k (copied) or the default. */
static void jput_user(cJSON *o, const cJSON *user, const char *k, cJSON *dflt, int *bad) {
    const cJSON *u = user ? pd_json_get(user, k) : NULL;
    if (u) { cJSON_Delete(dflt); pd_json_add(o, k, cJSON_Duplicate(u, 1), bad); }
    else pd_json_add(o, k, dflt, bad);
}

/* Checks the user's LoRA / IA3 keys with "config.<key>" messages; the selection itself is the
 * loader's (lora_ia3_select), run on the config being built. */
static pd_status fresh_lora_check(const cJSON *u, int ia3, char *err, size_t errlen) {
    pd_status st;
    const cJSON *v;
    static const char *const lists[] = {"target_modules", "exclude_modules", "feedforward_modules", "layers_pattern", NULL};
    for (int i = 0; lists[i]; i++) {
        if (!(v = pd_json_get(u, lists[i]))) continue;
        if (cJSON_IsString(v)) continue;
        if (!cJSON_IsArray(v) || (i == 0 && cJSON_GetArraySize(v) == 0))
            return pd_err(err, errlen, PD_ERR_INVALID, "config.%s must be a %slist of module names or a regex string", lists[i], i == 0 ? "non-empty " : "");
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) return pd_err(err, errlen, PD_ERR_INVALID, "config.%s must hold strings", lists[i]);
    }
    if ((v = pd_json_get(u, "layers_to_transform"))) {
        int ok = cJSON_IsNumber(v) || cJSON_IsArray(v);
        const cJSON *e;
        if (cJSON_IsArray(v)) cJSON_ArrayForEach(e, v) ok &= cJSON_IsNumber(e);
        if (!ok) return pd_err(err, errlen, PD_ERR_INVALID, "config.layers_to_transform must be a layer index or a list of them");
    }
    if (ia3) {
        int b = 1;
        return pd_json_bool(u, "init_ia3_weights", PD_PEFT_USER, &b, err, errlen);
    }
    int r = 8, flag = 0;
    double x = 8;
    if ((st = pd_json_int(u, "r", PD_PEFT_USER, 1, 1 << 20, PD_ERR_INVALID, &r, err, errlen)) ||
        (st = pd_json_num(u, "lora_alpha", PD_PEFT_USER, 0, 1, 1e9, PD_ERR_INVALID, &x, err, errlen)) ||
        (st = pd_json_num(u, "lora_dropout", PD_PEFT_USER, 0, 0, 0.999999, PD_ERR_INVALID, &x, err, errlen)) ||
        (st = pd_json_bool(u, "use_rslora", PD_PEFT_USER, &flag, err, errlen)) || (st = pd_json_bool(u, "lora_bias", PD_PEFT_USER, &flag, err, errlen)))
        return st;
    const char *bias = NULL;
    if ((st = pd_json_str(u, "bias", PD_PEFT_USER, &bias, err, errlen))) return st;
    if (bias && strcmp(bias, "none") && strcmp(bias, "all") && strcmp(bias, "lora_only"))
        return pd_err(err, errlen, PD_ERR_INVALID, "config.bias must be \"none\", \"all\" or \"lora_only\" (got \"%s\")", bias);
    if ((v = pd_json_get(u, "init_lora_weights")) && !cJSON_IsBool(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "gaussian")))
        return pd_err(err, errlen, cJSON_IsString(v) ? PD_ERR_UNSUPPORTED : PD_ERR_INVALID,
                      "config.init_lora_weights must be true, false or \"gaussian\"");
    static const char *const pats[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        if (!(v = pd_json_get(u, pats[i]))) continue;
        if (!cJSON_IsObject(v)) return pd_err(err, errlen, PD_ERR_INVALID, "config.%s must be an object {\"module pattern\": value}", pats[i]);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsNumber(e) || (i == 0 && (e->valuedouble < 1 || e->valuedouble != floor(e->valuedouble))))
                return pd_err(err, errlen, PD_ERR_INVALID, "config.%s.%s must be a %s", pats[i], e->string, i == 0 ? "positive integer" : "number");
        }
    }
    return PD_OK;
}

/* LoRA / IA3: the config, then the selected linears' tensors. */
pd_status pd_lora_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *u, const pd_fresh_head *fh, pd_rng *rng,
                        pd_fresh *out, char *err, size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    int ia3 = self->method == PD_METHOD_IA3;
    char what[48];
    snprintf(what, sizeof what, "%s option", self->name);
    pd_status st = pd_peft_fresh_config(self->method, what, u, self->config_keys, fh, out, err, errlen);
    if (!st) st = fresh_lora_check(u, ia3, err, errlen);
    if (st) return st;
    cJSON *c = out->config;
    int bad = 0, dist = cf->arch == PD_ARCH_DISTILBERT;
    /* PEFT's TRANSFORMERS_MODELS_TO_{LORA,IA3}_TARGET_MODULES_MAPPING for bert / roberta; PEFT
     * has no entry for distilbert, whose analogous linears peftd uses. */
    cJSON *tm = cJSON_CreateArray(), *ff = NULL;
    if (tm) {
        const char *d[3] = {ia3 ? (dist ? "k_lin" : "key") : (dist ? "q_lin" : "query"), dist ? "v_lin" : "value",
                            ia3 ? (dist ? "lin2" : "output.dense") : NULL};
        for (int i = 0; i < 3 && d[i]; i++) cJSON_AddItemToArray(tm, cJSON_CreateString(d[i]));
    }
    jput_user(c, u, "target_modules", tm, &bad);
    jput_user(c, u, "exclude_modules", cJSON_CreateNull(), &bad);
    jput_user(c, u, "layers_to_transform", cJSON_CreateNull(), &bad);
    jput_user(c, u, "layers_pattern", cJSON_CreateNull(), &bad);
    pd_json_add(c, "fan_in_fan_out", cJSON_CreateFalse(), &bad);
    if (ia3) {
        if ((ff = cJSON_CreateArray())) cJSON_AddItemToArray(ff, cJSON_CreateString(dist ? "lin2" : "output.dense"));
        jput_user(c, u, "feedforward_modules", ff, &bad);
        jput_user(c, u, "init_ia3_weights", cJSON_CreateTrue(), &bad);
    } else {
        jput_user(c, u, "r", cJSON_CreateNumber(8), &bad);
        jput_user(c, u, "lora_alpha", cJSON_CreateNumber(8), &bad);
        jput_user(c, u, "lora_dropout", cJSON_CreateNumber(0.0), &bad);
        jput_user(c, u, "use_rslora", cJSON_CreateFalse(), &bad);
        jput_user(c, u, "bias", cJSON_CreateString("none"), &bad);
        jput_user(c, u, "lora_bias", cJSON_CreateFalse(), &bad);
        jput_user(c, u, "init_lora_weights", cJSON_CreateTrue(), &bad);
        jput_user(c, u, "rank_pattern", cJSON_CreateObject(), &bad);
        jput_user(c, u, "alpha_pattern", cJSON_CreateObject(), &bad);
        pd_json_add(c, "use_dora", cJSON_CreateFalse(), &bad);
    }
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (ia3) {
        /* IA3Config: feedforward_modules must be a subset of target_modules (both lists) */
        const cJSON *t = pd_json_get(c, "target_modules"), *f = pd_json_get(c, "feedforward_modules"), *e, *x;
        if (cJSON_IsArray(t) && cJSON_IsArray(f))
            cJSON_ArrayForEach(e, f) {
                int in = 0;
                cJSON_ArrayForEach(x, t) in |= !strcmp(x->valuestring, e->valuestring);
                if (!in)
                    return pd_err(err, errlen, PD_ERR_INVALID, "config.feedforward_modules must be a subset of target_modules (\"%s\" is not a target)",
                                  e->valuestring);
            }
    }
    /* The loader's own target selection, run on a scratch adapter holding this config. */
    pd_adapter *tmp = calloc(1, sizeof *tmp);
    int L = cf->layers, H = cf->hidden, F = cf->ffn;
    lora_state *ps = lora_state_new(L);
    if (!tmp || !ps) {
        free(tmp);
        lora_state_free(ps);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    tmp->base = base;
    tmp->cfg = cf;
    tmp->config = c;
    tmp->method = ia3 ? PD_METHOD_IA3 : PD_METHOD_LORA;
    const char *P = NULL;
    int *want = NULL, lora_bias = 0;
    st = lora_ia3_select(tmp, NULL, ps, &P, &want, &lora_bias, err, errlen);
    if (st) goto done;
    const char *bias = "none";
    const cJSON *bv = pd_json_get(c, "bias");
    if (cJSON_IsString(bv)) bias = bv->valuestring;
    int init_gauss = 0, init_off = 0, ia3_init = 1;
    const cJSON *iv = pd_json_get(c, "init_lora_weights");
    init_gauss = cJSON_IsString(iv);
    init_off = cJSON_IsFalse(iv);
    pd_json_bool(c, "init_ia3_weights", PD_PEFT_USER, &ia3_init, NULL, 0);
    char key[512], n[700];
    for (int l = 0; l < L && !bad; l++) {
        const pd_layer *ly = pd_model_layer(base, l);
        const float *bb[PD_LIN_COUNT] = {ly->bq, ly->bk, ly->bv, ly->bo, ly->b1, ly->b2};
        for (int k = 0; k < PD_LIN_COUNT && !bad; k++) {
            int in = k == PD_LIN_FFN2 ? F : H, o = k == PD_LIN_FFN1 ? F : H;
            const lin_delta *ld = &ps->lin[l * PD_LIN_COUNT + k];
            int sel = want[l * PD_LIN_COUNT + k] > 0;
            pd_peft_layer_module(tmp, P, l, pd_peft_lin_name(tmp, k), key, sizeof key);
            if (sel && ia3) {
                snprintf(n, sizeof n, "base_model.model.%s.ia3_l", key);
                float *v = pd_peft_tl_add(&out->w, n, 2, ld->ff ? 1 : o, ld->ff ? in : 1, &bad);
                /* reset_ia3_parameters: ones; without it the parameter keeps torch.randn */
                if (v) for (int i = 0; i < (ld->ff ? in : o); i++) v[i] = ia3_init ? 1.0f : (float)pd_rng_normal(rng);
            } else if (sel) {
                int r = ld->r;
                snprintf(n, sizeof n, "base_model.model.%s.lora_A.weight", key);
                float *A = pd_peft_tl_add(&out->w, n, 2, r, in, &bad);
                snprintf(n, sizeof n, "base_model.model.%s.lora_B.weight", key);
                float *B = pd_peft_tl_add(&out->w, n, 2, o, r, &bad);
                float *bB = NULL;
                if (lora_bias) {
                    snprintf(n, sizeof n, "base_model.model.%s.lora_B.bias", key);
                    bB = pd_peft_tl_add(&out->w, n, 1, o, 0, &bad);
                }
                if (!A || !B || (lora_bias && !bB)) break;
                /* reset_lora_parameters: A kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(in)) or
                 * normal(0, 1/r) ("gaussian"), B and its bias zero. init_lora_weights=false keeps
                 * nn.Linear's own init: U(+-1/sqrt(fan_in)) for every weight and bias. */
                if (init_gauss) pd_fill_normal(rng, A, (size_t)r * in, 0.0, 1.0 / r);
                else pd_fill_uniform(rng, A, (size_t)r * in, -1.0 / sqrt((double)in), 1.0 / sqrt((double)in));
                if (init_off) {
                    pd_fill_uniform(rng, B, (size_t)o * r, -1.0 / sqrt((double)r), 1.0 / sqrt((double)r));
                    if (bB) pd_fill_uniform(rng, bB, (size_t)o, -1.0 / sqrt((double)r), 1.0 / sqrt((double)r));
                }
            }
            /* bias="all" trains every bias, "lora_only" those of LoRA-wrapped linears (PEFT names a
             * wrapped linear's bias "<module>.base_layer.bias") */
            if (!ia3 && (!strcmp(bias, "all") || (sel && !strcmp(bias, "lora_only")))) {
                snprintf(n, sizeof n, "base_model.model.%s.%sbias", key, sel ? "base_layer." : "");
                float *v = pd_peft_tl_add(&out->w, n, 1, o, 0, &bad);
                if (v && bb[k]) memcpy(v, bb[k], sizeof(float) * (size_t)o);
            }
        }
        if (!ia3 && !strcmp(bias, "all")) {
            const char *lnn[2] = {dist ? "sa_layer_norm" : "attention.output.LayerNorm", dist ? "output_layer_norm" : "output.LayerNorm"};
            const float *lnb[2] = {ly->ln1_b, ly->ln2_b};
            for (int k = 0; k < 2; k++) {
                pd_peft_layer_module(tmp, P, l, lnn[k], key, sizeof key);
                snprintf(n, sizeof n, "base_model.model.%s.bias", key);
                float *v = pd_peft_tl_add(&out->w, n, 1, H, 0, &bad);
                if (v) memcpy(v, lnb[k], sizeof(float) * (size_t)H);
            }
        }
    }
    if (!ia3 && !strcmp(bias, "all") && !bad) {
        pd_model_extras ex;
        pd_model_get_extras(base, &ex);
        snprintf(n, sizeof n, "base_model.model.%sembeddings.LayerNorm.bias", P);
        float *v = pd_peft_tl_add(&out->w, n, 1, H, 0, &bad);
        if (v) memcpy(v, ex.emb_ln_b, sizeof(float) * (size_t)H);
        /* the pooler's bias too, where the classification head uses the base's pooler */
        if (v && ex.pooler_b && fh->task == PD_TASK_CLS && cf->arch == PD_ARCH_BERT) {
            snprintf(n, sizeof n, "base_model.model.%spooler.dense.bias", P);
            if ((v = pd_peft_tl_add(&out->w, n, 1, H, 0, &bad))) memcpy(v, ex.pooler_b, sizeof(float) * (size_t)H);
        }
    }
    if (bad) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st) st = pd_peft_fresh_head(base, fh, "base_model.model.", rng, out, err, errlen);
done:
    free(want);
    lora_state_free(ps);
    free(tmp);
    return st;
}

