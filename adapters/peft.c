/* peft.c - Hugging Face PEFT adapters: LoRA, IA3, prefix tuning, prompt tuning and P-tuning,
 * read from adapter_config.json + adapter_model.safetensors exactly as PEFT's
 * save_pretrained writes them (get_peft_model_state_dict), and turned into core deltas.
 *
 * Names: PEFT saves "base_model.model.<module path>.lora_A.weight" (the adapter name removed;
 * some tools keep ".default", which is accepted), IA3 "...<module>.ia3_l", heads saved through
 * modules_to_save as "base_model.model.classifier.weight", prompt learning methods
 * "prompt_embeddings" (+ "base_model.classifier.*" heads: their prefix is "base_model.").
 * Module paths are those of the Hugging Face model the adapter was trained on
 * ("bert.encoder.layer.3.attention.self.query"; without "bert." when trained on AutoModel).
 *
 * Config matching (target_modules, exclude_modules, layers_to_transform/layers_pattern,
 * rank_pattern/alpha_pattern, feedforward_modules) follows PEFT's check_target_module_exists and
 * get_pattern_key. Regex strings use Python syntax; they are translated to POSIX extended
 * regular expressions (\d \w \s, (?:...), lazy quantifiers), and refused when they use
 * anything else (look-arounds, back references).
 *
 * Training (the end of the file): fresh PEFT adapters (config with PEFT's defaults, tensors
 * initialised as PEFT does, the task head), the *_bwd callbacks of every method, and the
 * derived buffers kept current for a trainable adapter (folded prefix projection, per-layer
 * prefix copies, embeddings LayerNorm shift). */
#include "adapter_impl.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <string.h>

/* Where the keys of a config come from, for messages: the adapter's file, or the config a caller
 * gives for a fresh adapter. */
#define CFG "adapter_config.json: "
#define USER "config."

/* ==== Python regular expressions on POSIX regex ==== */

/* Translates a Python regex into POSIX ERE. wrap: anchor as a full match ^(...)$.
 * Returns 0, or -1 for syntax peftd cannot translate (or a pattern too long). */
static int py_to_ere(const char *py, int wrap, char *out, size_t cap) {
    size_t k = 0;
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
    if (py_to_ere(pattern, 1, ere, sizeof ere) || regcomp(&re, ere, REG_EXTENDED | REG_NOSUB)) {
        pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: %s regex \"%s\" uses syntax peftd cannot evaluate", what, pattern);
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
    if (pattern) {
        if (py_to_ere(pattern, 0, body, sizeof body)) {
            pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: layers_pattern \"%s\" uses syntax peftd cannot evaluate", pattern);
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

/* ==== The base model's modules ==== */

static const char *const BERT_LIN[PD_LIN_COUNT] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                                   "attention.output.dense", "intermediate.dense", "output.dense"};
static const char *const DIST_LIN[PD_LIN_COUNT] = {"attention.q_lin", "attention.k_lin", "attention.v_lin",
                                                   "attention.out_lin", "ffn.lin1", "ffn.lin2"};
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

static const char *arch_prefix(pd_arch a) {
    return a == PD_ARCH_BERT ? "bert." : a == PD_ARCH_ROBERTA ? "roberta." : "distilbert.";
}

static int is_dist(const pd_adapter *a) { return a->cfg->arch == PD_ARCH_DISTILBERT; }

static const char *lin_name(const pd_adapter *a, int k) { return is_dist(a) ? DIST_LIN[k] : BERT_LIN[k]; }

static void layer_module(const pd_adapter *a, const char *P, int l, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s.%d%s%s", P, is_dist(a) ? "transformer.layer" : "encoder.layer", l, *suffix ? "." : "", suffix);
}

/* ==== Tensor names ==== */

typedef enum { K_LORA_A, K_LORA_B, K_LORA_BB, K_IA3, K_DORA, K_LORA_EMB, K_PARAM_W, K_PARAM_B, K_PROMPT } tkind;

/* Strips "base_model.model." / "base_model." and removes ".default" segments (the adapter name
 * PEFT's save_pretrained removes but other writers keep). */
static int norm_name(const char *in, char *out, size_t cap) {
    const char *s = in;
    if (!strncmp(s, "base_model.model.", 17)) s += 17;
    else if (!strncmp(s, "base_model.", 11)) s += 11;
    size_t k = 0;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t L = dot ? (size_t)(dot - s) : strlen(s);
        if (!(L == 7 && !strncmp(s, "default", 7))) {
            if (k + L + 2 >= cap) return -1;
            if (k) out[k++] = '.';
            memcpy(out + k, s, L);
            k += L;
        }
        s += L;
        if (*s == '.') s++;
    }
    out[k] = 0;
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Splits a normalized name into module path (mod) and kind. */
static tkind split_name(const char *n, char *mod, size_t cap) {
    static const struct { const char *suf; tkind k; } S[] = {
        {".lora_A.weight", K_LORA_A}, {".lora_B.weight", K_LORA_B}, {".lora_B.bias", K_LORA_BB},
        {".ia3_l.weight", K_IA3}, {".ia3_l", K_IA3}, {".base_layer.bias", K_PARAM_B}, {".base_layer.weight", K_PARAM_W},
    };
    if (!strcmp(n, "prompt_embeddings")) { mod[0] = 0; return K_PROMPT; }
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        if (ends_with(n, S[i].suf)) {
            snprintf(mod, cap, "%.*s", (int)(strlen(n) - strlen(S[i].suf)), n);
            return S[i].k;
        }
    }
    if (strstr(n, "lora_magnitude_vector")) { snprintf(mod, cap, "%s", n); return K_DORA; }
    if (strstr(n, "lora_embedding_")) { snprintf(mod, cap, "%s", n); return K_LORA_EMB; }
    const char *dot = strrchr(n, '.');
    if (dot && !strcmp(dot, ".weight")) { snprintf(mod, cap, "%.*s", (int)(dot - n), n); return K_PARAM_W; }
    if (dot && !strcmp(dot, ".bias")) { snprintf(mod, cap, "%.*s", (int)(dot - n), n); return K_PARAM_B; }
    snprintf(mod, cap, "%s", n);
    return K_PARAM_W; /* classified as an unknown module below */
}

typedef enum { M_UNKNOWN, M_ENC_LIN, M_ENC_LN, M_EMB_LN, M_POOLER, M_CLS, M_CLS_DENSE, M_CLS_OUT, M_PRE_CLS, M_QA,
               M_OTHER_ARCH, M_ENC_OTHER } mkind;

/* Parses "<digits>.<rest>" into a layer index. */
static int parse_layer(const char *s, int *l, const char **rest) {
    if (!isdigit((unsigned char)*s)) return 0;
    long v = 0;
    while (isdigit((unsigned char)*s)) { v = v * 10 + (*s - '0'); if (v > 1000000) return 0; s++; }
    if (*s != '.') return 0;
    *l = (int)v;
    *rest = s + 1;
    return 1;
}

/* Classifies a module path (as found in the file) for the base architecture. P is the prefix
 * the file uses for the backbone ("bert." or ""). *layer / *idx get the layer and linear or
 * LayerNorm site. *other names the architecture a foreign path belongs to. */
static mkind module_kind(const pd_adapter *a, const char *P, const char *mod, int *layer, int *idx, const char **other) {
    pd_arch arch = a->cfg->arch;
    static const pd_arch all[] = {PD_ARCH_BERT, PD_ARCH_DISTILBERT, PD_ARCH_ROBERTA};
    for (int i = 0; i < 3; i++) {
        const char *p = arch_prefix(all[i]);
        if (all[i] != arch && !strncmp(mod, p, strlen(p))) { *other = pd_arch_name(all[i]); return M_OTHER_ARCH; }
    }
    if (!strcmp(mod, "qa_outputs")) return M_QA;
    if (arch == PD_ARCH_ROBERTA) {
        if (!strcmp(mod, "classifier.dense")) return M_CLS_DENSE;
        if (!strcmp(mod, "classifier.out_proj")) return M_CLS_OUT;
    } else {
        if (!strcmp(mod, "classifier")) return M_CLS;
        if (arch == PD_ARCH_DISTILBERT && !strcmp(mod, "pre_classifier")) return M_PRE_CLS;
    }
    const char *r = mod;
    size_t pl = strlen(P);
    if (pl && !strncmp(r, P, pl)) r += pl;
    else if (pl) return M_UNKNOWN;
    int dist = arch == PD_ARCH_DISTILBERT;
    const char *stem = dist ? "transformer.layer." : "encoder.layer.";
    const char *foreign = dist ? "encoder.layer." : "transformer.layer.";
    if (!strncmp(r, foreign, strlen(foreign))) { *other = dist ? "bert/roberta" : "distilbert"; return M_OTHER_ARCH; }
    if (!strcmp(r, "embeddings.LayerNorm")) return M_EMB_LN;
    if (!dist && !strcmp(r, "pooler.dense")) return M_POOLER;
    const char *rest;
    if (!strncmp(r, stem, strlen(stem)) && parse_layer(r + strlen(stem), layer, &rest)) {
        for (int k = 0; k < PD_LIN_COUNT; k++)
            if (!strcmp(rest, dist ? DIST_LIN[k] : BERT_LIN[k])) { *idx = k; return M_ENC_LIN; }
        if (!strcmp(rest, dist ? "sa_layer_norm" : "attention.output.LayerNorm")) { *idx = PD_SITE_ATTN; return M_ENC_LN; }
        if (!strcmp(rest, dist ? "output_layer_norm" : "output.LayerNorm")) { *idx = PD_SITE_FFN; return M_ENC_LN; }
        return M_ENC_OTHER;
    }
    return M_UNKNOWN;
}

/* ==== Method state and callbacks ==== */

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

typedef struct peft_state {
    int layers;
    lin_delta *lin;           /* (layers * PD_LIN_COUNT) */
    const float **ln_b;       /* (layers * 2) replacement LayerNorm bias or NULL */
    const float *emb_shift;   /* (hidden) embeddings LayerNorm bias minus the base's, or NULL */
    const float *emb_b;       /* (hidden) the stored embeddings LayerNorm bias, or NULL */
    float *shift_buf;         /* trainable: (hidden) emb_shift's storage, recomputed from emb_b */
    float **pk, **pv;         /* prefix tuning: [layer] -> (nvt, hidden) */
    float *prefix_emb;        /* prefix tuning: prompt_embeddings (nvt, layers * 2 * hidden) */
    /* trainable adapters only */
    float lora_dropout;
    float **g_ln_b;           /* (layers * 2) */
    float *g_emb_b;           /* (hidden) */
    float *g_prefix;          /* (nvt, layers * 2 * hidden), prefix tuning without projection */
    float *g_prompt;          /* (nvt, hidden) */
    int mlp_hidden;           /* prefix projection: E */
    float *mlp[5], *g_mlp[5]; /* embedding (nvt, H), W1 (E, H), b1 (E), W2 (L*2H, E), b2 (L*2H) */
    float *mlp_h;             /* (nvt, E) tanh(embedding W1^T + b1), kept for the backward pass */
} peft_state;

static void peft_state_free(void *p) {
    peft_state *s = p;
    if (!s) return;
    free(s->lin);
    free(s->ln_b);
    free(s->g_ln_b);
    free(s->pk);
    free(s->pv);
    free(s);
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
static void peft_linear(const pd_delta *d, int layer, pd_lin which, const float *x, float *y, int rows, int in, int out,
                        const float *w, const float *b, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
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
            pd_gemm(pool, 0, 1, n, out, in, 1.0f, t, in, w, in, 1.0f, y + (size_t)r0 * out, out);
        }
    }
}

/* Backward of peft_linear for a trainable adapter: accumulates the gradients of A, B, the LoRA
 * bias, the replacement bias, the IA3 vector and the embeddings LayerNorm bias (through cadd and
 * the shifted LoRA input), and adds the delta's part of dL/dx. The dropout mask is regenerated
 * from the same key the forward pass used (no forward pass runs in between). */
static void peft_linear_bwd(const pd_delta *d, int layer, pd_lin which, const float *x, const float *dy, float *dx, int rows,
                            int in, int out, const float *w, const float *b, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
    const lin_delta *ld = &s->lin[layer * PD_LIN_COUNT + which];
    const pd_train *tr = a->train;
    float p = tr && tr->on ? s->lora_dropout : 0.0f;
    if (ld->cadd && s->g_emb_b) {
        /* cadd = W d: dL/dd += colsum(dy) W */
        for (int j = 0; j < out; j++) {
            double c = 0;
            for (int i = 0; i < rows; i++) c += dy[(size_t)i * out + j];
            const float *wr = w + (size_t)j * in;
            for (int k = 0; k < in; k++) s->g_emb_b[k] += (float)c * wr[k];
        }
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
            pd_linear(pool, x + (size_t)r0 * in, n, in, w, b, out, y0);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < out; j++) {
                    float gy = dy[(size_t)(r0 + i) * out + j];
                    ld->gia3[j] += gy * y0[(size_t)i * out + j];
                    g[(size_t)i * out + j] = gy * (ld->ia3[j] - 1.0f);
                }
            if (dx) pd_gemm(pool, 0, 0, n, in, out, 1.0f, g, out, w, in, 1.0f, dx + (size_t)r0 * in, in);
        }
    } else if (ld->ia3 && ld->gia3) {
        /* y = (x * l) W^T + b: g = dy W; gl += colsum(x * g); dx += g * (l - 1) */
        float *g;
        int chunk = pd_scratch_rows(rows, (size_t)in, &g);
        for (int r0 = 0; r0 < rows; r0 += chunk) {
            int n = rows - r0 < chunk ? rows - r0 : chunk;
            pd_gemm(pool, 0, 0, n, in, out, 1.0f, dy + (size_t)r0 * out, out, w, in, 0.0f, g, in);
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
static int peft_sublayer(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                         const float *ln_b, float eps, int rows, int dim, float *out, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
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

/* Backward of peft_sublayer: LayerNorm(h + resid (+ shift)) with the replaced bias. Writes dh
 * and dresid, accumulates the LayerNorm bias gradient and the embeddings shift's. */
static int peft_sublayer_bwd(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                             const float *ln_b, float eps, int rows, int dim, const float *dout, float *dh, float *dresid,
                             pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
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

/* Soft prompt gradient of one sequence. */
static void peft_prompt_bwd(const pd_delta *d, const float *dprompt) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
    size_t n = (size_t)d->n_prompt * a->cfg->hidden;
    for (size_t i = 0; i < n; i++) s->g_prompt[i] += dprompt[i];
}

/* Prefix gradient of one sequence and layer: into prompt_embeddings' columns of the layer (keys
 * block 2l, values block 2l+1), or through the projection MLP P = tanh(e W1^T + b1) W2^T + b2.
 * The MLP's backward is linear in dP, so each (sequence, layer) piece is pushed through at once. */
static void peft_prefix_bwd(const pd_delta *d, int layer, const float *dk, const float *dv) {
    const pd_adapter *a = d->impl;
    const peft_state *s = a->impl;
    int nvt = d->n_prefix, H = a->cfg->hidden;
    size_t row = (size_t)a->cfg->layers * 2 * H;
    if (!s->mlp[0]) {
        for (int t = 0; t < nvt; t++) {
            float *g = s->g_prefix + (size_t)t * row + (size_t)2 * layer * H;
            for (int j = 0; j < H; j++) {
                g[j] += dk[(size_t)t * H + j];
                g[H + j] += dv[(size_t)t * H + j];
            }
        }
        return;
    }
    int E = s->mlp_hidden;
    float *dh = pd_scratch((size_t)nvt * E);
    PD_ASSERT(dh);
    const float *W2k = s->mlp[3] + (size_t)2 * layer * H * E, *W2v = W2k + (size_t)H * E;
    float *gW2k = s->g_mlp[3] + (size_t)2 * layer * H * E, *gW2v = gW2k + (size_t)H * E;
    pd_gemm(NULL, 1, 0, H, E, nvt, 1.0f, dk, H, s->mlp_h, E, 1.0f, gW2k, E);
    pd_gemm(NULL, 1, 0, H, E, nvt, 1.0f, dv, H, s->mlp_h, E, 1.0f, gW2v, E);
    pd_colsum_add(dk, nvt, H, s->g_mlp[4] + (size_t)2 * layer * H);
    pd_colsum_add(dv, nvt, H, s->g_mlp[4] + (size_t)(2 * layer + 1) * H);
    pd_gemm(NULL, 0, 0, nvt, E, H, 1.0f, dk, H, W2k, E, 0.0f, dh, E);
    pd_gemm(NULL, 0, 0, nvt, E, H, 1.0f, dv, H, W2v, E, 1.0f, dh, E);
    for (size_t i = 0; i < (size_t)nvt * E; i++) dh[i] *= 1.0f - s->mlp_h[i] * s->mlp_h[i];
    pd_gemm(NULL, 1, 0, E, H, nvt, 1.0f, dh, E, s->mlp[0], H, 1.0f, s->g_mlp[1], H);
    pd_colsum_add(dh, nvt, E, s->g_mlp[2]);
    pd_gemm(NULL, 0, 0, nvt, H, E, 1.0f, dh, E, s->mlp[1], H, 1.0f, s->g_mlp[0], H);
}

/* ==== Config helpers ==== */

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
        if (py_to_ere(e->string, 0, body, sizeof body) ||
            (snprintf(ere, sizeof ere, "^(.*\\.)?(%s)$", body), regcomp(&re, ere, REG_EXTENDED | REG_NOSUB))) {
            pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: %s key \"%s\" uses syntax peftd cannot evaluate", what, e->string);
            *bad = 1;
            return NULL;
        }
        int m = regexec(&re, key, 0, NULL, 0) == 0;
        regfree(&re);
        if (m) return e;
    }
    return NULL;
}

static pd_status check_str_list(const cJSON *v, const char *what, int allow_string, char *err, size_t errlen) {
    if (!v) return PD_OK;
    if (allow_string && cJSON_IsString(v)) return PD_OK;
    if (!cJSON_IsArray(v)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"%s\" must be a list of strings%s", what, allow_string ? " or a regex string" : "");
    const cJSON *e;
    cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"%s\" must hold strings", what);
    return PD_OK;
}

/* The backbone prefix the file's module paths use: "bert." (a model with a head) or "" (AutoModel). */
static const char *detect_prefix(const pd_adapter *a, const pd_st_file *st) {
    const char *own = arch_prefix(a->cfg->arch);
    int bare = 0;
    for (int i = 0; i < pd_st_count(st); i++) {
        char n[1024];
        if (norm_name(pd_st_at(st, i)->name, n, sizeof n)) continue;
        if (!strncmp(n, own, strlen(own))) return own;
        if (!strncmp(n, "encoder.", 8) || !strncmp(n, "transformer.", 12) || !strncmp(n, "embeddings.", 11) || !strncmp(n, "pooler.", 7)) bare = 1;
    }
    return bare ? "" : own;
}

/* Refuses a file whose module paths belong to another architecture, before the config is
 * matched against this one's modules (which would only say "selects nothing"). */
static pd_status arch_scan(const pd_adapter *a, const pd_st_file *st, const char *P, char *err, size_t errlen) {
    for (int i = 0; i < pd_st_count(st); i++) {
        char n[1024], mod[1024];
        if (norm_name(pd_st_at(st, i)->name, n, sizeof n)) continue;
        split_name(n, mod, sizeof mod);
        int layer, idx;
        const char *other = NULL;
        if (module_kind(a, P, mod, &layer, &idx, &other) == M_OTHER_ARCH)
            return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", pd_st_at(st, i)->name, other,
                          pd_arch_name(a->cfg->arch));
    }
    return PD_OK;
}

/* ==== Heads ==== */

/* The head tensors a file saved. The slots point at copies of the store's entries, not into
 * a->t: later pd_at_take calls may realloc that array (the tensor data itself never moves). */
#define HEAD_SLOTS 12
typedef struct head_parts {
    const pd_atensor *pool_w, *pool_b, *pre_w, *pre_b, *cls_w, *cls_b, *dense_w, *dense_b, *out_w, *out_b, *qa_w, *qa_b;
    pd_atensor copy[HEAD_SLOTS];
    int n;
} head_parts;

static pd_status shape_check(const pd_atensor *t, int ndim, int64_t d0, int64_t d1, char *err, size_t errlen) {
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (ok) return PD_OK;
    char got[64], want[64];
    int64_t w[2] = {d0, d1};
    int64_t g[2] = {t->shape[0], t->shape[1]};
    pd_shape_str(g, t->ndim, got, sizeof got);
    pd_shape_str(w, ndim, want, sizeof want);
    return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape %s but the base model needs %s", t->name, got, want);
}

/* Records a head tensor; full head weights come from modules_to_save. */
static pd_status head_take(pd_adapter *a, mkind mk, int is_bias, const pd_atensor *t, head_parts *hp, char *err, size_t errlen) {
    int H = a->cfg->hidden;
    const pd_atensor **slot = NULL;
    int64_t d0 = H;
    switch (mk) {
    case M_POOLER: slot = is_bias ? &hp->pool_b : &hp->pool_w; break;
    case M_PRE_CLS: slot = is_bias ? &hp->pre_b : &hp->pre_w; break;
    case M_CLS_DENSE: slot = is_bias ? &hp->dense_b : &hp->dense_w; break;
    case M_CLS: slot = is_bias ? &hp->cls_b : &hp->cls_w; d0 = -1; break;
    case M_CLS_OUT: slot = is_bias ? &hp->out_b : &hp->out_w; d0 = -1; break;
    case M_QA: slot = is_bias ? &hp->qa_b : &hp->qa_w; d0 = 2; break;
    default: PD_ASSERT(0);
    }
    if (d0 < 0) { /* the label count comes from the classifier itself */
        d0 = t->shape[0];
        if (t->shape[0] < 1 || t->shape[0] > 100000)
            return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s: %lld classifier outputs", t->name, (long long)t->shape[0]);
    }
    pd_status s = is_bias ? shape_check(t, 1, d0, 0, err, errlen) : shape_check(t, 2, d0, H, err, errlen);
    if (s) return s;
    if (*slot) return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name);
    PD_ASSERT(hp->n < HEAD_SLOTS);
    hp->copy[hp->n] = *t;
    *slot = &hp->copy[hp->n++];
    return PD_OK;
}

/* Builds the adapter's own head from the head tensors it saved (modules_to_save), taking the
 * parts it did not save from the base checkpoint (bert's pooler, distilbert's pre_classifier). */
static pd_status peft_build_head(pd_adapter *a, const head_parts *hp, const pd_adapter_files *f, char *err, size_t errlen) {
    int H = a->cfg->hidden;
    pd_arch arch = a->cfg->arch;
    const pd_head *bh = pd_model_head(a->base, PD_TASK_CLS);
    pd_model_extras ex;
    pd_model_get_extras(a->base, &ex);
    int cls_any = hp->pool_w || hp->pool_b || hp->pre_w || hp->pre_b || hp->cls_w || hp->cls_b || hp->dense_w || hp->dense_b ||
                  hp->out_w || hp->out_b;
    int qa_any = hp->qa_w || hp->qa_b;
    if (cls_any && qa_any) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "the adapter saves both a classification and a QA head; one head per adapter is supported");
    pd_head *h = &a->head;
    if (qa_any) {
        if (!hp->qa_w || !hp->qa_b) return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter saves qa_outputs.%s without qa_outputs.%s", hp->qa_w ? "weight" : "bias", hp->qa_w ? "bias" : "weight");
        h->task = PD_TASK_QA;
        h->n_layers = 1;
        h->layer[0] = (pd_head_layer){hp->qa_w->data, hp->qa_b->data, H, 2, PD_ACT_NONE};
        return PD_OK;
    }
    if (!cls_any) return PD_OK;
    /* Each part: the adapter's if saved, else the base checkpoint's. */
    const pd_atensor *fw = arch == PD_ARCH_ROBERTA ? hp->dense_w : arch == PD_ARCH_DISTILBERT ? hp->pre_w : hp->pool_w;
    const pd_atensor *fb = arch == PD_ARCH_ROBERTA ? hp->dense_b : arch == PD_ARCH_DISTILBERT ? hp->pre_b : hp->pool_b;
    const pd_atensor *cw = arch == PD_ARCH_ROBERTA ? hp->out_w : hp->cls_w;
    const pd_atensor *cb = arch == PD_ARCH_ROBERTA ? hp->out_b : hp->cls_b;
    const char *fname = arch == PD_ARCH_ROBERTA ? "classifier.dense" : arch == PD_ARCH_DISTILBERT ? "pre_classifier" : "bert.pooler.dense";
    const char *cname = arch == PD_ARCH_ROBERTA ? "classifier.out_proj" : "classifier";
    if (cw && !cb) return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter saves %s.weight without %s.bias", cname, cname);
    if (cb && !cw && !(bh && bh->layer[1].out == cb->shape[0]))
        return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter saves %s.bias without %s.weight", cname, cname);
    const float *w0 = fw ? fw->data : NULL, *b0 = fb ? fb->data : NULL;
    if (arch == PD_ARCH_BERT) {
        if (!w0) w0 = ex.pooler_w;
        if (!b0) b0 = ex.pooler_b;
    } else if (bh) {
        if (!w0) w0 = bh->layer[0].w;
        if (!b0) b0 = bh->layer[0].b;
    }
    const float *w1 = cw ? cw->data : bh ? bh->layer[1].w : NULL;
    const float *b1 = cb ? cb->data : bh ? bh->layer[1].b : NULL;
    int nl = cw ? (int)cw->shape[0] : bh ? bh->layer[1].out : 0;
    if (!w1) return PD_OK; /* only bias replacements of a head the base does not have: nothing to run */
    if (!w0 || !b0)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter's classifier needs %s, which neither the adapter nor the base checkpoint has", fname);
    h->task = PD_TASK_CLS;
    h->n_layers = 2;
    h->layer[0] = (pd_head_layer){w0, b0, H, H, arch == PD_ARCH_DISTILBERT ? PD_ACT_RELU : PD_ACT_TANH};
    h->layer[1] = (pd_head_layer){w1, b1, H, nl, PD_ACT_NONE};
    const cJSON *lab = pd_json_get(a->config, "labels");
    if (!lab) lab = pd_json_get(a->config, "id2label");
    return pd_adapter_set_labels(a, nl, lab, "adapter_config.json", f, err, errlen);
}

/* ==== LoRA and IA3 ==== */

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
                layer_module(a, P, l, lin_name(a, k), key, sizeof key);
                hit = cJSON_IsString(e) && suffix_match(key, e->valuestring, dotted);
            }
        if (!hit)
            return pd_err(err, errlen, PD_ERR_INVALID, "config.%s: \"%s\" is not a linear layer of the %s encoder (%s, %s, %s, %s, %s, %s)", what,
                          e->valuestring, pd_arch_name(a->cfg->arch), lin_name(a, 0), lin_name(a, 1), lin_name(a, 2), lin_name(a, 3),
                          lin_name(a, 4), lin_name(a, 5));
    }
    return PD_OK;
}

/* Which encoder linears a LoRA / IA3 config selects (PEFT's check_target_module_exists), with
 * rank, scaling and feed-forward flag in s->lin. st: the file being loaded (its module prefix and
 * architecture are checked), or NULL for a fresh adapter, whose paths use the task model's
 * prefix ("bert.") and whose target_modules entries must each name an encoder linear. On
 * success *want_out (malloc'd, layers * PD_LIN_COUNT) holds each linear's rank (1 for IA3, 0 if
 * not selected), *P_out the module prefix. */
static pd_status lora_ia3_select(pd_adapter *a, const pd_st_file *st, peft_state *s, const char **P_out, int **want_out,
                                 int *lora_bias_out, char *err, size_t errlen) {
    const cJSON *c = a->config;
    int ia3 = a->method == PD_METHOD_IA3;
    int L = a->cfg->layers;
    pd_status ps;
    int r = 8, dora = 0, rslora = 0, fifo = 0, lora_bias = 0;
    double alpha = 8;
    if (!ia3) {
        if ((ps = pd_json_int(c, "r", CFG, 1, 1000000000, PD_ERR_INVALID, &r, err, errlen)) ||
            (ps = pd_json_num(c, "lora_alpha", CFG, -1e30, 0, 1e30, PD_ERR_INVALID, &alpha, err, errlen)) ||
            (ps = pd_json_bool(c, "use_dora", CFG, &dora, err, errlen)) || (ps = pd_json_bool(c, "use_rslora", CFG, &rslora, err, errlen)) ||
            (ps = pd_json_bool(c, "lora_bias", CFG, &lora_bias, err, errlen)))
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
    if ((ps = pd_json_bool(c, "fan_in_fan_out", CFG, &fifo, err, errlen))) return ps;
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
        if (is_dist(a)) { d[0] = ia3 ? "k_lin" : "q_lin"; d[1] = ia3 ? "v_lin" : "v_lin"; d[2] = ia3 ? "lin2" : NULL; }
        else { d[0] = ia3 ? "key" : "query"; d[1] = "value"; d[2] = ia3 ? "output.dense" : NULL; }
        for (int i = 0; i < 3 && d[i]; i++) cJSON_AddItemToArray(deflt, cJSON_CreateString(d[i]));
        tc.target = deflt;
    }
    const cJSON *ffm = pd_json_get(c, "feedforward_modules");
    cJSON *ffdef = NULL;
    if (ia3 && !ffm) {
        ffdef = cJSON_CreateArray();
        if (ffdef) cJSON_AddItemToArray(ffdef, cJSON_CreateString(is_dist(a) ? "lin2" : "output.dense"));
        ffm = ffdef;
    }
    const cJSON *rp = pd_json_get(c, "rank_pattern"), *ap = pd_json_get(c, "alpha_pattern");
    if ((ps = check_str_list(tc.target, "target_modules", 1, err, errlen)) || (ps = check_str_list(tc.exclude, "exclude_modules", 1, err, errlen)) ||
        (ps = check_str_list(tc.mts, "modules_to_save", 0, err, errlen)) || (ps = check_str_list(tc.layers_pattern, "layers_pattern", 1, err, errlen)) ||
        (ps = check_str_list(ffm, "feedforward_modules", 1, err, errlen)))
        goto out;
    if (tc.layers && !cJSON_IsNumber(tc.layers) && !cJSON_IsArray(tc.layers)) {
        ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"layers_to_transform\" must be an integer or a list of integers");
        goto out;
    }
    if ((rp && !cJSON_IsObject(rp)) || (ap && !cJSON_IsObject(ap))) {
        ps = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: rank_pattern and alpha_pattern must be objects");
        goto out;
    }
    const char *P = st ? detect_prefix(a, st) : arch_prefix(a->cfg->arch);
    if (st && (ps = arch_scan(a, st, P, err, errlen))) goto out;
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
            layer_module(a, P, l, lin_name(a, k), key, sizeof key);
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
        const char *const *glob = is_dist(a) ? DIST_GLOBAL : BERT_GLOBAL;
        const char *const *lay = is_dist(a) ? DIST_LAYER_OTHER : BERT_LAYER_OTHER;
        const char *const *heads = is_dist(a) ? DIST_HEADS : a->cfg->arch == PD_ARCH_ROBERTA ? ROB_HEADS : BERT_HEADS;
        for (int i = 0; glob[i] && !ps; i++) {
            snprintf(key, sizeof key, "%s%s", P, glob[i]);
            int m = target_match(&tc, key, err, errlen);
            if (m < 0) ps = PD_ERR_UNSUPPORTED;
            else if (m) ps = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "target_modules selects %s, which is not a linear layer of the encoder; only encoder linears can be %s targets", key, ia3 ? "IA3" : "LoRA");
        }
        for (int l = 0; l < L && !ps; l++) {
            for (int i = 0; lay[i] && !ps; i++) {
                layer_module(a, P, l, lay[i], key, sizeof key);
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

static pd_status lora_ia3_load(pd_adapter *a, const pd_st_file *st, const pd_adapter_files *f, peft_state *s, char *err,
                               size_t errlen) {
    int ia3 = a->method == PD_METHOD_IA3;
    int L = a->cfg->layers, H = a->cfg->hidden, F = a->cfg->ffn;
    const char *P = NULL;
    int *want_r = NULL, lora_bias = 0;
    char key[512];
    pd_status ps = lora_ia3_select(a, st, s, &P, &want_r, &lora_bias, err, errlen);
    if (ps) return ps;
    /* Every tensor in the file must be known and used. */
    head_parts hp;
    memset(&hp, 0, sizeof hp);
    pd_model_extras ex;
    pd_model_get_extras(a->base, &ex);
    for (int i = 0; i < pd_st_count(st) && !ps; i++) {
        const pd_st_tensor *t = pd_st_at(st, i);
        char n[1024], mod[1024], save[1100];
        if (norm_name(t->name, n, sizeof n)) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor name too long: %.100s...", t->name); break; }
        tkind tk = split_name(n, mod, sizeof mod);
        int layer = -1, idx = -1;
        const char *other = NULL;
        mkind mk = module_kind(a, P, mod, &layer, &idx, &other);
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
            if (tk == K_LORA_A) { if (ld->A) goto dup; if ((ps = shape_check(at, 2, rr, in, err, errlen))) break; ld->A = at->data; }
            else if (tk == K_LORA_B) { if (ld->B) goto dup; if ((ps = shape_check(at, 2, outd, rr, err, errlen))) break; ld->B = at->data; }
            else if (tk == K_LORA_BB) { if (ld->bB) goto dup; if ((ps = shape_check(at, 1, outd, 0, err, errlen))) break; ld->bB = at->data; }
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
            ps = head_take(a, mk, is_b, at, &hp, err, errlen);
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
            if ((ps = shape_check(at, 1, idx == PD_LIN_FFN1 ? F : H, 0, err, errlen))) break;
            ld->bias = at->data;
        } else if (mk == M_ENC_LN) {
            if (s->ln_b[layer * 2 + idx]) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if ((ps = shape_check(at, 1, H, 0, err, errlen))) break;
            s->ln_b[layer * 2 + idx] = at->data;
        } else if (mk == M_EMB_LN) {
            if (s->emb_b) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            if ((ps = shape_check(at, 1, H, 0, err, errlen))) break;
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
            layer_module(a, P, l, lin_name(a, k), key, sizeof key);
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
        const float *W[3] = {L0->wq, L0->wk, L0->wv};
        for (int k = 0; k < 3; k++) {
            lin_delta *ld = &s->lin[k];
            float *cadd = pd_adapter_alloc(a, (size_t)H);
            if (!cadd) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out_r; }
            pd_gemm(NULL, 0, 1, 1, H, H, 1.0f, s->emb_shift, H, W[k], H, 0.0f, cadd, H);
            if (ld->lora) {
                float *t = pd_adapter_alloc(a, (size_t)ld->r);
                if (!t) { ps = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out_r; }
                pd_gemm(NULL, 0, 1, 1, ld->r, H, 1.0f, s->emb_shift, H, ld->A, H, 0.0f, t, ld->r);
                pd_gemm(NULL, 0, 1, 1, H, ld->r, ld->s, t, ld->r, ld->B, ld->r, 1.0f, cadd, H);
            }
            ld->cadd = cadd;
        }
    }
    a->delta.linear = peft_linear;
    int any_ln = s->emb_shift != NULL;
    for (int i = 0; i < 2 * L; i++) any_ln |= s->ln_b[i] != NULL;
    if (any_ln) a->delta.sublayer = peft_sublayer;
    ps = peft_build_head(a, &hp, f, err, errlen);
out_r:
    free(want_r);
    return ps;
}

/* ==== Prefix tuning, prompt tuning, P-tuning ==== */

static pd_status prompt_load(pd_adapter *a, const pd_st_file *st, const pd_adapter_files *f, peft_state *s, char *err,
                             size_t errlen) {
    const cJSON *c = a->config;
    int prefix = a->method == PD_METHOD_PREFIX;
    int L = a->cfg->layers, H = a->cfg->hidden;
    int nvt = 0, v = 0;
    pd_status ps = pd_json_int(c, "num_virtual_tokens", CFG, 1, 1000000000, PD_ERR_INVALID, &nvt, err, errlen);
    if (ps) return ps;
    if (nvt <= 0) return pd_err(err, errlen, PD_ERR_INVALID, CFG "num_virtual_tokens must be > 0");
    if (prefix && is_dist(a))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "prefix tuning is not supported on distilbert: transformers' DistilBERT takes no past_key_values, so PEFT cannot run it either");
    if (nvt + 3 > a->cfg->max_tokens)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "num_virtual_tokens = %d leaves no room for a sequence in the base model's %d positions (it needs %d + 3)",
                      nvt, a->cfg->max_tokens, nvt);
    struct { const char *k; int want; } chk[] = {{"token_dim", H}, {"num_layers", L}, {"num_attention_heads", a->cfg->heads}};
    for (int i = 0; i < 3; i++) {
        v = chk[i].want;
        if ((ps = pd_json_int(c, chk[i].k, CFG, -1000000000, 1000000000, PD_ERR_INVALID, &v, err, errlen))) return ps;
        if (v != chk[i].want && (prefix || i == 0))
            return pd_err(err, errlen, PD_ERR_MISMATCH, "adapter_config.json: %s = %d but the base model has %d", chk[i].k, v, chk[i].want);
    }
    v = 1;
    if (pd_json_int(c, "num_transformer_submodules", CFG, 1, 1, PD_ERR_UNSUPPORTED, &v, NULL, 0))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: num_transformer_submodules must be 1 for an encoder");
    const char *P = detect_prefix(a, st);
    head_parts hp;
    memset(&hp, 0, sizeof hp);
    float *emb = NULL; /* the data of prompt_embeddings (a->t may move; the data does not) */
    for (int i = 0; i < pd_st_count(st) && !ps; i++) {
        const pd_st_tensor *t = pd_st_at(st, i);
        char n[1024], mod[1024], save[1100];
        if (norm_name(t->name, n, sizeof n)) return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor name too long: %.100s...", t->name);
        tkind tk = split_name(n, mod, sizeof mod);
        pd_atensor *at = NULL;
        if (tk == K_PROMPT) {
            if ((ps = pd_at_take(a, "prompt_embeddings", t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            int64_t want1 = prefix ? (int64_t)L * 2 * H : H;
            if (at->ndim != 2 || at->shape[0] != nvt || at->shape[1] != want1) {
                char got[64];
                int64_t g[2] = {at->shape[0], at->shape[1]};
                pd_shape_str(g, at->ndim, got, sizeof got);
                ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor prompt_embeddings has shape %s but the base model needs [%d, %lld]%s", got, nvt,
                            (long long)want1, prefix ? " (num_virtual_tokens, num_layers * 2 * hidden)" : " (num_virtual_tokens, hidden)");
                break;
            }
            if (emb) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
            emb = at->data;
            continue;
        }
        int layer = -1, idx = -1;
        const char *other = NULL;
        mkind mk = module_kind(a, P, mod, &layer, &idx, &other);
        if (mk == M_OTHER_ARCH) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", t->name, other, pd_arch_name(a->cfg->arch)); break; }
        if ((tk == K_PARAM_W || tk == K_PARAM_B) && (mk == M_POOLER || mk == M_CLS || mk == M_CLS_DENSE || mk == M_CLS_OUT || mk == M_PRE_CLS || mk == M_QA)) {
            snprintf(save, sizeof save, "base_model.%s", n); /* prompt learning: heads live under "base_model." */
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            ps = head_take(a, mk, tk == K_PARAM_B, at, &hp, err, errlen);
            continue;
        }
        ps = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s in a %s adapter (expected prompt_embeddings and head weights)", t->name,
                    prefix ? "prefix tuning" : "prompt tuning");
    }
    if (ps) return ps;
    if (!emb) return pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor prompt_embeddings");
    if (prefix) {
        /* PEFT's get_prompt: view (nvt, layers*2, heads, head_dim), permute to (layers*2, heads,
         * nvt, head_dim), split(2): layer l's keys are block 2l and its values block 2l+1 of each
         * row, head-major within the block, which is core's (nvt, hidden) layout. */
        s->pk = calloc((size_t)L, sizeof(float *));
        s->pv = calloc((size_t)L, sizeof(float *));
        if (!s->pk || !s->pv) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        for (int l = 0; l < L; l++) {
            s->pk[l] = pd_adapter_alloc(a, (size_t)nvt * H);
            s->pv[l] = pd_adapter_alloc(a, (size_t)nvt * H);
            if (!s->pk[l] || !s->pv[l]) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            for (int t = 0; t < nvt; t++) {
                const float *row = emb + (size_t)t * L * 2 * H;
                memcpy(s->pk[l] + (size_t)t * H, row + (size_t)(2 * l) * H, sizeof(float) * H);
                memcpy(s->pv[l] + (size_t)t * H, row + (size_t)(2 * l + 1) * H, sizeof(float) * H);
            }
        }
        s->prefix_emb = emb;
        a->delta.n_prefix = nvt;
        a->delta.prefix_k = (const float *const *)s->pk;
        a->delta.prefix_v = (const float *const *)s->pv;
    } else {
        a->delta.n_prompt = nvt;
        a->delta.prompt = emb;
    }
    return peft_build_head(a, &hp, f, err, errlen);
}

/* ==== Entry points ==== */

pd_status pd_peft_load(pd_adapter *a, const pd_st_file *st, const pd_adapter_files *f, char *err, size_t errlen) {
    const cJSON *c = a->config;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (!cJSON_IsString(pt)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"peft_type\" must be a string");
    const char *t = pt->valuestring;
    if (!strcmp(t, "LORA")) a->method = PD_METHOD_LORA;
    else if (!strcmp(t, "IA3")) a->method = PD_METHOD_IA3;
    else if (!strcmp(t, "PREFIX_TUNING")) a->method = PD_METHOD_PREFIX;
    else if (!strcmp(t, "PROMPT_TUNING") || !strcmp(t, "P_TUNING")) a->method = PD_METHOD_PROMPT;
    else return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "peft_type \"%s\" is not supported (LORA, IA3, PREFIX_TUNING, PROMPT_TUNING, P_TUNING are)", t);
    const cJSON *tt = pd_json_get(c, "task_type");
    if (tt && !cJSON_IsString(tt)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"task_type\" must be a string");
    a->task = PD_TASK_NONE;
    if (tt) {
        if (!strcmp(tt->valuestring, "SEQ_CLS")) a->task = PD_TASK_CLS;
        else if (!strcmp(tt->valuestring, "QUESTION_ANS")) a->task = PD_TASK_QA;
        else if (strcmp(tt->valuestring, "FEATURE_EXTRACTION"))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "task_type \"%s\" is not supported (SEQ_CLS, QUESTION_ANS, FEATURE_EXTRACTION are)", tt->valuestring);
    }
    const cJSON *mts = pd_json_get(c, "modules_to_save");
    pd_status ps = check_str_list(mts, "modules_to_save", 0, err, errlen);
    if (ps) return ps;
    peft_state *s = calloc(1, sizeof *s);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    a->impl = s;
    a->impl_free = peft_state_free;
    s->layers = a->cfg->layers;
    s->lin = calloc((size_t)s->layers * PD_LIN_COUNT, sizeof *s->lin);
    s->ln_b = calloc((size_t)s->layers * 2, sizeof *s->ln_b);
    if (!s->lin || !s->ln_b) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (a->method == PD_METHOD_LORA || a->method == PD_METHOD_IA3) return lora_ia3_load(a, st, f, s, err, errlen);
    return prompt_load(a, st, f, s, err, errlen);
}

/* Saving writes the config as loaded, with the labels of the adapter's own classification head
 * under "labels" (an array of names, index = class id). */
pd_status pd_peft_config_for_save(const pd_adapter *a, cJSON **out) {
    cJSON *c = cJSON_Duplicate(a->config, 1);
    if (!c) return PD_ERR_NOMEM;
    if (a->head.task == PD_TASK_CLS && a->labels) {
        cJSON *arr = cJSON_CreateStringArray((const char *const *)a->labels, a->num_labels);
        if (!arr) { cJSON_Delete(c); return PD_ERR_NOMEM; }
        cJSON_DeleteItemFromObjectCaseSensitive(c, "labels");
        cJSON_AddItemToObject(c, "labels", arr);
    }
    *out = c;
    return PD_OK;
}

/* ==== Training ==== */

/* PEFT's PrefixEncoder names (the adapter name left out, as save_pretrained does elsewhere). */
static const char *const MLP_NAMES[5] = {"prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
                                         "prompt_encoder.transform.0.bias", "prompt_encoder.transform.2.weight",
                                         "prompt_encoder.transform.2.bias"};

pd_status pd_peft_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen) {
    peft_state *s = a->impl;
    int L = a->cfg->layers, H = a->cfg->hidden;
#define G(dst, ptr, decay)                                                             \
    do {                                                                               \
        if (!((dst) = pd_at_grad(a, (ptr), (decay)))) goto oom;                        \
    } while (0)
    if (a->method == PD_METHOD_LORA || a->method == PD_METHOD_IA3) {
        if (a->method == PD_METHOD_LORA) {
            double p = 0;
            pd_status st = pd_json_num(a->config, "lora_dropout", CFG, 0, 0, 0.999999, PD_ERR_INVALID, &p, err, errlen);
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
        a->delta.linear = peft_linear;
        a->delta.linear_bwd = peft_linear_bwd;
        if (any_ln) {
            a->delta.sublayer = peft_sublayer;
            a->delta.sublayer_bwd = peft_sublayer_bwd;
        }
    } else if (a->method == PD_METHOD_PREFIX) {
        int nvt = a->delta.n_prefix;
        if (mlp) {
            int E = mlp_hidden;
            int64_t shp[5][2] = {{nvt, H}, {E, H}, {E, 1}, {(int64_t)L * 2 * H, E}, {(int64_t)L * 2 * H, 1}};
            for (int i = 0; i < 5; i++) {
                pd_atensor *at;
                int nd = i == 2 || i == 4 ? 1 : 2;
                pd_status st = pd_at_add(a, MLP_NAMES[i], nd, shp[i][0], shp[i][1], mlp[i], PD_FILE_NONE, &at, err, errlen);
                if (st) return st;
                s->mlp[i] = at->data;
            }
            for (int i = 0; i < 5; i++) G(s->g_mlp[i], s->mlp[i], i != 2 && i != 4); /* biases do not decay */
            s->mlp_hidden = E;
            if (!(s->mlp_h = pd_adapter_alloc(a, (size_t)nvt * E))) goto oom;
        } else {
            G(s->g_prefix, s->prefix_emb, 1);
        }
        a->delta.prefix_bwd = peft_prefix_bwd;
    } else {
        G(s->g_prompt, a->delta.prompt, 1);
        a->delta.prompt_bwd = peft_prompt_bwd;
    }
#undef G
    pd_peft_params_changed(a);
    return PD_OK;
oom:
    return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
}

void pd_peft_params_changed(pd_adapter *a) {
    peft_state *s = a->impl;
    int L = a->cfg->layers, H = a->cfg->hidden;
    if (s->mlp[0]) {
        /* P = tanh(e W1^T + b1) W2^T + b2: the folded prefix core and the saved file use */
        int nvt = a->delta.n_prefix, E = s->mlp_hidden;
        pd_linear(NULL, s->mlp[0], nvt, H, s->mlp[1], s->mlp[2], E, s->mlp_h);
        for (size_t i = 0; i < (size_t)nvt * E; i++) s->mlp_h[i] = tanhf(s->mlp_h[i]);
        pd_linear(NULL, s->mlp_h, nvt, E, s->mlp[3], s->mlp[4], L * 2 * H, s->prefix_emb);
    }
    if (s->pk && s->prefix_emb) {
        int nvt = a->delta.n_prefix;
        for (int l = 0; l < L; l++)
            for (int t = 0; t < nvt; t++) {
                const float *row = s->prefix_emb + (size_t)t * L * 2 * H;
                memcpy(s->pk[l] + (size_t)t * H, row + (size_t)(2 * l) * H, sizeof(float) * H);
                memcpy(s->pv[l] + (size_t)t * H, row + (size_t)(2 * l + 1) * H, sizeof(float) * H);
            }
    }
    if (s->shift_buf) {
        pd_model_extras ex;
        pd_model_get_extras(a->base, &ex);
        for (int j = 0; j < H; j++) s->shift_buf[j] = s->emb_b[j] - ex.emb_ln_b[j];
        const pd_layer *L0 = pd_model_layer(a->base, 0);
        const float *W[3] = {L0->wq, L0->wk, L0->wv};
        for (int k = 0; k < 3; k++) pd_gemm(NULL, 0, 1, 1, H, H, 1.0f, s->shift_buf, H, W[k], H, 0.0f, s->lin[k].cadd, H);
    }
}

float *const *pd_peft_mlp(const pd_adapter *a, int *hidden) {
    const peft_state *s = a->impl;
    if (a->format != PD_FMT_PEFT || !s || !s->mlp[0]) return NULL;
    *hidden = s->mlp_hidden;
    return s->mlp;
}

/* ==== Fresh adapters ==== */

static const char *const LORA_KEYS[] = {"r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "use_rslora", "bias",
                                        "lora_bias", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern",
                                        "alpha_pattern", NULL};
static const char *const IA3_KEYS[] = {"target_modules", "feedforward_modules", "exclude_modules", "init_ia3_weights",
                                       "layers_to_transform", "layers_pattern", NULL};
static const char *const PREFIX_KEYS[] = {"num_virtual_tokens", "prefix_projection", "encoder_hidden_size", NULL};
static const char *const PROMPT_KEYS[] = {"num_virtual_tokens", "prompt_init_text", "prompt_tuning_init", "prompt_tuning_init_text",
                                          "tokenizer_name_or_path", NULL};

/* Adds v under k (v may be NULL only on OOM, which *bad records). */
static void jput(cJSON *o, const char *k, cJSON *v, int *bad) {
    if (!v || !cJSON_AddItemToObject(o, k, v)) { cJSON_Delete(v); *bad = 1; }
}

/* The user's value of k (copied) or the default. */
static void jput_user(cJSON *o, const cJSON *user, const char *k, cJSON *dflt, int *bad) {
    const cJSON *u = user ? pd_json_get(user, k) : NULL;
    if (u) { cJSON_Delete(dflt); jput(o, k, cJSON_Duplicate(u, 1), bad); }
    else jput(o, k, dflt, bad);
}

static float *tl_add(pd_tlist *tl, const char *name, int ndim, int64_t d0, int64_t d1, int *bad) {
    float *p = pd_tlist_add(tl, name, ndim, d0, d1);
    if (!p) *bad = 1;
    return p;
}

/* A head tensor: the base's values when given (same shape), else HF's _init_weights for a new
 * Linear: weight normal(0, 0.02), bias zero. */
static void tl_head(pd_tlist *tl, const char *pre, const char *mod, int out, int H, const float *w, const float *b, pd_rng *rng, int *bad) {
    char n[256];
    snprintf(n, sizeof n, "%s%s.weight", pre, mod);
    float *pw = tl_add(tl, n, 2, out, H, bad);
    snprintf(n, sizeof n, "%s%s.bias", pre, mod);
    float *pb = tl_add(tl, n, 1, out, 0, bad);
    if (!pw || !pb) return;
    if (w) memcpy(pw, w, sizeof(float) * (size_t)out * H);
    else pd_fill_normal(rng, pw, (size_t)out * H, 0.0, 0.02);
    if (b) memcpy(pb, b, sizeof(float) * (size_t)out);
}

/* The task head PEFT trains through modules_to_save: the base checkpoint's tensors where they
 * fit (HF's from_pretrained keeps every tensor whose shape matches and re-initialises the rest),
 * and parts the base lacks (bert's pooler, distilbert's pre_classifier) saved as trainable
 * modules too, so the adapter never depends on weights a reload would draw anew. */
static void peft_fresh_head(const pd_model *base, const pd_fresh_head *fh, const char *pre, pd_rng *rng, pd_tlist *tl, cJSON *mts, int *bad) {
    const pd_config *cf = pd_model_config(base);
    int H = cf->hidden;
    pd_model_extras ex;
    pd_model_get_extras(base, &ex);
    if (fh->task == PD_TASK_QA) {
        const pd_head *qh = pd_model_head(base, PD_TASK_QA);
        tl_head(tl, pre, "qa_outputs", 2, H, qh ? qh->layer[0].w : NULL, qh ? qh->layer[0].b : NULL, rng, bad);
        cJSON_AddItemToArray(mts, cJSON_CreateString("qa_outputs"));
        return;
    }
    if (fh->task != PD_TASK_CLS) return;
    const pd_head *bh = pd_model_head(base, PD_TASK_CLS);
    int nl = fh->num_labels, match = bh && bh->layer[1].out == nl;
    char mod[64];
    cJSON_AddItemToArray(mts, cJSON_CreateString("classifier"));
    cJSON_AddItemToArray(mts, cJSON_CreateString("score"));
    if (cf->arch == PD_ARCH_ROBERTA) {
        tl_head(tl, pre, "classifier.dense", H, H, bh ? bh->layer[0].w : NULL, bh ? bh->layer[0].b : NULL, rng, bad);
        tl_head(tl, pre, "classifier.out_proj", nl, H, match ? bh->layer[1].w : NULL, match ? bh->layer[1].b : NULL, rng, bad);
        return;
    }
    if (cf->arch == PD_ARCH_BERT && !ex.pooler_w) {
        snprintf(mod, sizeof mod, "%spooler.dense", arch_prefix(cf->arch));
        tl_head(tl, pre, mod, H, H, NULL, NULL, rng, bad);
        cJSON_AddItemToArray(mts, cJSON_CreateString("pooler"));
    }
    if (cf->arch == PD_ARCH_DISTILBERT && !bh) {
        tl_head(tl, pre, "pre_classifier", H, H, NULL, NULL, rng, bad);
        cJSON_AddItemToArray(mts, cJSON_CreateString("pre_classifier"));
    }
    tl_head(tl, pre, "classifier", nl, H, match ? bh->layer[1].w : NULL, match ? bh->layer[1].b : NULL, rng, bad);
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
        return pd_json_bool(u, "init_ia3_weights", USER, &b, err, errlen);
    }
    int r = 8, flag = 0;
    double x = 8;
    if ((st = pd_json_int(u, "r", USER, 1, 1 << 20, PD_ERR_INVALID, &r, err, errlen)) ||
        (st = pd_json_num(u, "lora_alpha", USER, 0, 1, 1e9, PD_ERR_INVALID, &x, err, errlen)) ||
        (st = pd_json_num(u, "lora_dropout", USER, 0, 0, 0.999999, PD_ERR_INVALID, &x, err, errlen)) ||
        (st = pd_json_bool(u, "use_rslora", USER, &flag, err, errlen)) || (st = pd_json_bool(u, "lora_bias", USER, &flag, err, errlen)))
        return st;
    const char *bias = NULL;
    if ((st = pd_json_str(u, "bias", USER, &bias, err, errlen))) return st;
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
static pd_status fresh_lora(const pd_model *base, int ia3, const cJSON *u, const pd_fresh_head *fh, pd_rng *rng, pd_fresh *out,
                            cJSON *c, char *err, size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    pd_status st = fresh_lora_check(u, ia3, err, errlen);
    if (st) return st;
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
    jput(c, "fan_in_fan_out", cJSON_CreateFalse(), &bad);
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
        jput(c, "use_dora", cJSON_CreateFalse(), &bad);
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
    peft_state *ps = calloc(1, sizeof *ps);
    int L = cf->layers, H = cf->hidden, F = cf->ffn;
    if (ps) ps->lin = calloc((size_t)L * PD_LIN_COUNT, sizeof *ps->lin);
    if (!tmp || !ps || !ps->lin) {
        free(tmp);
        peft_state_free(ps);
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
    pd_json_bool(c, "init_ia3_weights", USER, &ia3_init, NULL, 0);
    char key[512], n[700];
    for (int l = 0; l < L && !bad; l++) {
        const pd_layer *ly = pd_model_layer(base, l);
        const float *bb[PD_LIN_COUNT] = {ly->bq, ly->bk, ly->bv, ly->bo, ly->b1, ly->b2};
        for (int k = 0; k < PD_LIN_COUNT && !bad; k++) {
            int in = k == PD_LIN_FFN2 ? F : H, o = k == PD_LIN_FFN1 ? F : H;
            const lin_delta *ld = &ps->lin[l * PD_LIN_COUNT + k];
            int sel = want[l * PD_LIN_COUNT + k] > 0;
            layer_module(tmp, P, l, lin_name(tmp, k), key, sizeof key);
            if (sel && ia3) {
                snprintf(n, sizeof n, "base_model.model.%s.ia3_l", key);
                float *v = tl_add(&out->w, n, 2, ld->ff ? 1 : o, ld->ff ? in : 1, &bad);
                /* reset_ia3_parameters: ones; without it the parameter keeps torch.randn */
                if (v) for (int i = 0; i < (ld->ff ? in : o); i++) v[i] = ia3_init ? 1.0f : (float)pd_rng_normal(rng);
            } else if (sel) {
                int r = ld->r;
                snprintf(n, sizeof n, "base_model.model.%s.lora_A.weight", key);
                float *A = tl_add(&out->w, n, 2, r, in, &bad);
                snprintf(n, sizeof n, "base_model.model.%s.lora_B.weight", key);
                float *B = tl_add(&out->w, n, 2, o, r, &bad);
                float *bB = NULL;
                if (lora_bias) {
                    snprintf(n, sizeof n, "base_model.model.%s.lora_B.bias", key);
                    bB = tl_add(&out->w, n, 1, o, 0, &bad);
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
                float *v = tl_add(&out->w, n, 1, o, 0, &bad);
                if (v && bb[k]) memcpy(v, bb[k], sizeof(float) * (size_t)o);
            }
        }
        if (!ia3 && !strcmp(bias, "all")) {
            const char *lnn[2] = {dist ? "sa_layer_norm" : "attention.output.LayerNorm", dist ? "output_layer_norm" : "output.LayerNorm"};
            const float *lnb[2] = {ly->ln1_b, ly->ln2_b};
            for (int k = 0; k < 2; k++) {
                layer_module(tmp, P, l, lnn[k], key, sizeof key);
                snprintf(n, sizeof n, "base_model.model.%s.bias", key);
                float *v = tl_add(&out->w, n, 1, H, 0, &bad);
                if (v) memcpy(v, lnb[k], sizeof(float) * (size_t)H);
            }
        }
    }
    if (!ia3 && !strcmp(bias, "all") && !bad) {
        pd_model_extras ex;
        pd_model_get_extras(base, &ex);
        snprintf(n, sizeof n, "base_model.model.%sembeddings.LayerNorm.bias", P);
        float *v = tl_add(&out->w, n, 1, H, 0, &bad);
        if (v) memcpy(v, ex.emb_ln_b, sizeof(float) * (size_t)H);
        /* the pooler's bias too, where the classification head uses the base's pooler */
        if (v && ex.pooler_b && fh->task == PD_TASK_CLS && cf->arch == PD_ARCH_BERT) {
            snprintf(n, sizeof n, "base_model.model.%spooler.dense.bias", P);
            if ((v = tl_add(&out->w, n, 1, H, 0, &bad))) memcpy(v, ex.pooler_b, sizeof(float) * (size_t)H);
        }
    }
    if (bad) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
done:
    free(want);
    peft_state_free(ps);
    free(tmp);
    return st;
}

/* Prompt tuning's TEXT init: the word embeddings of the text's tokens (special tokens included,
 * as the tokenizer's __call__ adds them), repeated and cut to num_virtual_tokens. */
static pd_status prompt_from_text(const pd_model *base, const char *text, int nvt, float *out, char *err, size_t errlen) {
    const pd_tokenizer *tok = pd_model_tokenizer(base);
    int H = pd_model_config(base)->hidden;
    pd_tokens t;
    memset(&t, 0, sizeof t);
    pd_status st = pd_tokenizer_tokenize(tok, text, strlen(text), &t, err, errlen);
    if (st) return st;
    int cap = t.n + pd_tokenizer_num_special(tok, 0) + 1;
    int32_t *buf = malloc(sizeof(int32_t) * 4 * (size_t)cap);
    if (!buf) { pd_tokens_free(&t); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    int n = pd_tokenizer_assemble(tok, t.ids, t.n, NULL, -1, buf, buf + cap, buf + 2 * cap, buf + 3 * cap);
    pd_model_extras ex;
    pd_model_get_extras(base, &ex);
    if (n <= 0) st = pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_init_text gives no tokens");
    for (int i = 0; i < nvt && !st; i++) memcpy(out + (size_t)i * H, ex.word_emb + (size_t)buf[i % n] * H, sizeof(float) * H);
    free(buf);
    pd_tokens_free(&t);
    return st;
}

/* Prefix / prompt tuning: PromptLearningConfig fields, then prompt_embeddings (and the MLP). */
static pd_status fresh_prompt(const pd_model *base, int prefix, const cJSON *u, pd_rng *rng, pd_fresh *out, cJSON *c, char *err,
                              size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    int L = cf->layers, H = cf->hidden, nvt = 20, proj = 0, E = H, bad = 0;
    pd_status st;
    if (prefix && cf->arch == PD_ARCH_DISTILBERT)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "prefix tuning is not supported on distilbert: transformers' DistilBERT takes no past_key_values, so PEFT cannot run it either");
    if ((st = pd_json_int(u, "num_virtual_tokens", USER, 1, 1 << 20, PD_ERR_INVALID, &nvt, err, errlen))) return st;
    if (nvt + 3 > cf->max_tokens)
        return pd_err(err, errlen, PD_ERR_INVALID, "config.num_virtual_tokens = %d leaves no room for text in the model's %d positions (at most %d)",
                      nvt, cf->max_tokens, cf->max_tokens - 3);
    const char *text = NULL, *init = NULL, *tokname = NULL;
    if (prefix) {
        if ((st = pd_json_bool(u, "prefix_projection", USER, &proj, err, errlen)) ||
            (st = pd_json_int(u, "encoder_hidden_size", USER, 1, 1 << 16, PD_ERR_INVALID, &E, err, errlen)))
            return st;
    } else {
        if ((st = pd_json_str(u, "prompt_init_text", USER, &text, err, errlen)) ||
            (st = pd_json_str(u, "prompt_tuning_init", USER, &init, err, errlen)) ||
            (st = pd_json_str(u, "tokenizer_name_or_path", USER, &tokname, err, errlen)))
            return st;
        const char *t2 = NULL;
        if ((st = pd_json_str(u, "prompt_tuning_init_text", USER, &t2, err, errlen))) return st;
        if (text && t2 && strcmp(text, t2))
            return pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_init_text and config.prompt_tuning_init_text differ; give one");
        if (!text) text = t2;
        if (init && strcmp(init, "RANDOM") && strcmp(init, "TEXT"))
            return pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_tuning_init must be \"RANDOM\" or \"TEXT\"");
        if (init && !strcmp(init, "TEXT") && !text)
            return pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_tuning_init = \"TEXT\" needs config.prompt_init_text");
        if (init && !strcmp(init, "RANDOM")) text = NULL;
        if (text && !*text) return pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_init_text is empty");
    }
    jput(c, "num_virtual_tokens", cJSON_CreateNumber(nvt), &bad);
    jput(c, "token_dim", cJSON_CreateNumber(H), &bad);
    jput(c, "num_transformer_submodules", cJSON_CreateNumber(1), &bad);
    jput(c, "num_attention_heads", cJSON_CreateNumber(cf->heads), &bad);
    jput(c, "num_layers", cJSON_CreateNumber(L), &bad);
    if (prefix) {
        jput(c, "encoder_hidden_size", cJSON_CreateNumber(E), &bad);
        jput(c, "prefix_projection", cJSON_CreateBool(proj), &bad);
    } else {
        /* PEFT refuses a TEXT config without tokenizer_name_or_path when it loads one, and the
         * base's path is unknown here: such prompts are recorded as RANDOM plus their text
         * (the init only matters before training; the file holds the trained values). */
        int as_text = text && tokname;
        jput(c, "prompt_tuning_init", cJSON_CreateString(as_text ? "TEXT" : "RANDOM"), &bad);
        jput(c, "prompt_tuning_init_text", text ? cJSON_CreateString(text) : cJSON_CreateNull(), &bad);
        jput(c, "tokenizer_name_or_path", tokname ? cJSON_CreateString(tokname) : cJSON_CreateNull(), &bad);
        jput(c, "tokenizer_kwargs", cJSON_CreateNull(), &bad);
    }
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int64_t width = prefix ? (int64_t)L * 2 * H : H;
    float *emb = pd_tlist_add(&out->w, "prompt_embeddings", 2, nvt, width);
    if (!emb) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!prefix) {
        /* PromptEmbedding: nn.Embedding's N(0, 1), or the text's word embeddings */
        if (text) return prompt_from_text(base, text, nvt, emb, err, errlen);
        pd_fill_normal(rng, emb, (size_t)nvt * H, 0.0, 1.0);
        return PD_OK;
    }
    if (!proj) {
        pd_fill_normal(rng, emb, (size_t)nvt * width, 0.0, 1.0);
        return PD_OK;
    }
    /* PrefixEncoder with projection: Embedding(nvt, H) N(0, 1), Linear(H, E), Tanh,
     * Linear(E, L*2*H) with nn.Linear's U(+-1/sqrt(fan_in)) weights and biases. */
    size_t sz[5] = {(size_t)nvt * H, (size_t)E * H, (size_t)E, (size_t)width * E, (size_t)width};
    for (int i = 0; i < 5; i++)
        if (!(out->mlp[i] = malloc(sizeof(float) * sz[i]))) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    out->mlp_hidden = E;
    pd_fill_normal(rng, out->mlp[0], sz[0], 0.0, 1.0);
    double b1 = 1.0 / sqrt((double)H), b2 = 1.0 / sqrt((double)E);
    pd_fill_uniform(rng, out->mlp[1], sz[1], -b1, b1);
    pd_fill_uniform(rng, out->mlp[2], sz[2], -b1, b1);
    pd_fill_uniform(rng, out->mlp[3], sz[3], -b2, b2);
    pd_fill_uniform(rng, out->mlp[4], sz[4], -b2, b2);
    float *h = malloc(sizeof(float) * (size_t)nvt * E);
    if (!h) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_linear(NULL, out->mlp[0], nvt, H, out->mlp[1], out->mlp[2], E, h);
    for (size_t i = 0; i < (size_t)nvt * E; i++) h[i] = tanhf(h[i]);
    pd_linear(NULL, h, nvt, E, out->mlp[3], out->mlp[4], (int)width, emb);
    free(h);
    return PD_OK;
}

pd_status pd_peft_fresh(const pd_model *base, pd_method m, const cJSON *u, const pd_fresh_head *fh, pd_rng *rng, pd_fresh *out,
                        char *err, size_t errlen) {
    const char *const *keys = m == PD_METHOD_LORA ? LORA_KEYS : m == PD_METHOD_IA3 ? IA3_KEYS : m == PD_METHOD_PREFIX ? PREFIX_KEYS : PROMPT_KEYS;
    char what[40];
    snprintf(what, sizeof what, "%s option", pd_method_name(m));
    pd_status st = pd_json_known(u, USER, what, keys, err, errlen);
    if (st) return st;
    cJSON *c = out->config = cJSON_CreateObject();
    if (!c) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int bad = 0;
    static const char *const TYPES[] = {NULL, "LORA", "IA3", "PREFIX_TUNING", "PROMPT_TUNING"};
    jput(c, "peft_type", cJSON_CreateString(TYPES[m]), &bad);
    jput(c, "task_type", fh->task == PD_TASK_CLS ? cJSON_CreateString("SEQ_CLS") : fh->task == PD_TASK_QA ? cJSON_CreateString("QUESTION_ANS")
                                                                                                          : cJSON_CreateNull(), &bad);
    jput(c, "base_model_name_or_path", cJSON_CreateNull(), &bad);
    jput(c, "revision", cJSON_CreateNull(), &bad);
    jput(c, "inference_mode", cJSON_CreateTrue(), &bad);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int prompt = m == PD_METHOD_PREFIX || m == PD_METHOD_PROMPT;
    st = prompt ? fresh_prompt(base, m == PD_METHOD_PREFIX, u, rng, out, c, err, errlen)
                : fresh_lora(base, m == PD_METHOD_IA3, u, fh, rng, out, c, err, errlen);
    if (st) return st;
    /* modules_to_save: PeftModelForSequenceClassification's ["classifier", "score"], QA's
     * ["qa_outputs"]; prompt learning saves heads under "base_model." */
    cJSON *mts = cJSON_CreateArray();
    jput(c, "modules_to_save", mts, &bad);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    peft_fresh_head(base, fh, prompt ? "base_model." : "base_model.model.", rng, &out->w, mts, &bad);
    if (fh->task == PD_TASK_CLS) jput(c, "labels", cJSON_CreateStringArray((const char *const *)fh->labels, fh->num_labels), &bad);
    if (cJSON_GetArraySize(mts) == 0) cJSON_DeleteItemFromObjectCaseSensitive(c, "modules_to_save");
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    return PD_OK;
}
