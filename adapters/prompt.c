/* prompt.c - prompt learning adapters in PEFT format (peft.h): prefix tuning (per-layer key and
 * value prefixes, optionally through PEFT's PrefixEncoder projection while training) and prompt
 * tuning / P-tuning (a soft prompt before the embeddings): loading prompt_embeddings into core
 * deltas, their training callbacks, and fresh adapters initialised as PEFT does. */
#include "peft.h"

#include <math.h>
#include <string.h>

/* ==== State and callbacks ==== */

typedef struct prompt_state {
    float **pk, **pv;         /* prefix tuning: [layer] -> (nvt, hidden) */
    float *prefix_emb;        /* prefix tuning: prompt_embeddings (nvt, layers * 2 * hidden) */
    /* trainable adapters only */
    float *g_prefix;          /* (nvt, layers * 2 * hidden), prefix tuning without projection */
    float *g_prompt;          /* (nvt, hidden) */
    int mlp_hidden;           /* prefix projection: E */
    float *mlp[5], *g_mlp[5]; /* embedding (nvt, H), W1 (E, H), b1 (E), W2 (L*2H, E), b2 (L*2H) */
    float *mlp_h;             /* (nvt, E) tanh(embedding W1^T + b1), kept for the backward pass */
} prompt_state;

static void prompt_state_free(void *p) {
    prompt_state *s = p;
    if (!s) return;
    free(s->pk);
    free(s->pv);
    free(s);
}

/* Soft prompt gradient of one sequence. */
static void prompt_bwd(const pd_delta *d, const float *dprompt) {
    const pd_adapter *a = d->impl;
    const prompt_state *s = a->impl;
    size_t n = (size_t)d->n_prompt * a->cfg->hidden;
    for (size_t i = 0; i < n; i++) s->g_prompt[i] += dprompt[i];
}

/* Prefix gradient of one sequence and layer: into prompt_embeddings' columns of the layer (keys
 * block 2l, values block 2l+1), or through the projection MLP P = tanh(e W1^T + b1) W2^T + b2.
 * The MLP's backward is linear in dP, so each (sequence, layer) piece is pushed through at once. */
static void prefix_bwd(const pd_delta *d, int layer, const float *dk, const float *dv) {
    const pd_adapter *a = d->impl;
    const prompt_state *s = a->impl;
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

/* ==== Loading ==== */

pd_status pd_prompt_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                         size_t errlen) {
    prompt_state *s = calloc(1, sizeof *s);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    a->impl = s;
    a->impl_free = prompt_state_free;
    const cJSON *c = a->config;
    int prefix = a->method == PD_METHOD_PREFIX;
    int L = a->cfg->layers, H = a->cfg->hidden;
    int nvt = 0, v = 0;
    pd_status ps = pd_json_int(c, "num_virtual_tokens", PD_PEFT_CFG, 1, 1000000000, PD_ERR_INVALID, &nvt, err, errlen);
    if (ps) return ps;
    if (nvt <= 0) return pd_err(err, errlen, PD_ERR_INVALID, PD_PEFT_CFG "num_virtual_tokens must be > 0");
    if (prefix && pd_peft_is_dist(a))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "prefix tuning is not supported on distilbert: transformers' DistilBERT takes no past_key_values, so PEFT cannot run it either");
    if (nvt + 3 > a->cfg->max_tokens)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "num_virtual_tokens = %d leaves no room for a sequence in the base model's %d positions (it needs %d + 3)",
                      nvt, a->cfg->max_tokens, nvt);
    struct { const char *k; int want; } chk[] = {{"token_dim", H}, {"num_layers", L}, {"num_attention_heads", a->cfg->heads}};
    for (int i = 0; i < 3; i++) {
        v = chk[i].want;
        if ((ps = pd_json_int(c, chk[i].k, PD_PEFT_CFG, -1000000000, 1000000000, PD_ERR_INVALID, &v, err, errlen))) return ps;
        if (v != chk[i].want && (prefix || i == 0))
            return pd_err(err, errlen, PD_ERR_MISMATCH, "adapter_config.json: %s = %d but the base model has %d", chk[i].k, v, chk[i].want);
    }
    v = 1;
    if (pd_json_int(c, "num_transformer_submodules", PD_PEFT_CFG, 1, 1, PD_ERR_UNSUPPORTED, &v, NULL, 0))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: num_transformer_submodules must be 1 for an encoder");
    const char *P = pd_peft_detect_prefix(a, st);
    pd_peft_head hp;
    memset(&hp, 0, sizeof hp);
    float *emb = NULL; /* the data of prompt_embeddings (a->t may move; the data does not) */
    for (int i = 0; i < pd_st_count(st) && !ps; i++) {
        const pd_st_tensor *t = pd_st_at(st, i);
        char n[1024], mod[1024], save[1100];
        if (pd_peft_norm_name(t->name, n, sizeof n)) return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor name too long: %.100s...", t->name);
        pd_peft_tkind tk = pd_peft_split_name(n, mod, sizeof mod);
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
        pd_peft_mkind mk = pd_peft_module_kind(a, P, mod, &layer, &idx, &other);
        if (mk == M_OTHER_ARCH) { ps = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", t->name, other, pd_arch_name(a->cfg->arch)); break; }
        if ((tk == K_PARAM_W || tk == K_PARAM_B) && (mk == M_POOLER || mk == M_CLS || mk == M_CLS_DENSE || mk == M_CLS_OUT || mk == M_PRE_CLS || mk == M_QA)) {
            snprintf(save, sizeof save, "base_model.%s", n); /* prompt learning: heads live under "base_model." */
            if ((ps = pd_at_take(a, save, t, PD_FILE_WEIGHTS, &at, err, errlen))) break;
            ps = pd_peft_head_take(a, mk, tk == K_PARAM_B, at, &hp, err, errlen);
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
    return pd_peft_build_head(a, &hp, f, err, errlen);
}

/* ==== Training ==== */

/* PEFT's PrefixEncoder names (the adapter name left out, as save_pretrained does elsewhere). */
static const char *const MLP_NAMES[5] = {"prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
                                         "prompt_encoder.transform.0.bias", "prompt_encoder.transform.2.weight",
                                         "prompt_encoder.transform.2.bias"};

pd_status pd_prompt_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen) {
    prompt_state *s = a->impl;
    int L = a->cfg->layers, H = a->cfg->hidden;
#define G(dst, ptr, decay)                                                             \
    do {                                                                               \
        if (!((dst) = pd_at_grad(a, (ptr), (decay)))) goto oom;                        \
    } while (0)
    if (a->method == PD_METHOD_PREFIX) {
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
        a->delta.prefix_bwd = prefix_bwd;
    } else {
        G(s->g_prompt, a->delta.prompt, 1);
        a->delta.prompt_bwd = prompt_bwd;
    }
#undef G
    pd_prompt_params_changed(a);
    return PD_OK;
oom:
    return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
}

/* The prefix core and the saved file use: P = tanh(e W1^T + b1) W2^T + b2 through the projection
 * MLP, split per layer into keys and values. */
void pd_prompt_params_changed(pd_adapter *a) {
    prompt_state *s = a->impl;
    int L = a->cfg->layers, H = a->cfg->hidden;
    if (s->mlp[0]) {
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
}

float *const *pd_prompt_mlp(const pd_adapter *a, int *hidden) {
    const prompt_state *s = a->impl;
    if (!s || !s->mlp[0]) return NULL;
    *hidden = s->mlp_hidden;
    return s->mlp;
}

/* ==== Fresh adapters ==== */

const char *const pd_prefix_config_keys[] = {"num_virtual_tokens", "prefix_projection", "encoder_hidden_size", NULL};
const char *const pd_prompt_config_keys[] = {"num_virtual_tokens", "prompt_init_text", "prompt_tuning_init", "prompt_tuning_init_text",
                                             "tokenizer_name_or_path", NULL};


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
    if (n <= 0) st = pd_err(err, errlen, PD_ERR_INVALID, "config.prompt_init_text gives no tokens");
    for (int i = 0; i < nvt && !st; i++) pd_model_word_row(base, buf[i % n], out + (size_t)i * H);
    free(buf);
    pd_tokens_free(&t);
    return st;
}

/* PromptLearningConfig's fields, then prompt_embeddings (and the MLP). */
static pd_status fresh_prompt(const pd_model *base, int prefix, const cJSON *u, pd_rng *rng, pd_fresh *out, cJSON *c, char *err,
                              size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    int L = cf->layers, H = cf->hidden, nvt = 20, proj = 0, E = H, bad = 0;
    pd_status st;
    if (prefix && cf->arch == PD_ARCH_DISTILBERT)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "prefix tuning is not supported on distilbert: transformers' DistilBERT takes no past_key_values, so PEFT cannot run it either");
    if ((st = pd_json_int(u, "num_virtual_tokens", PD_PEFT_USER, 1, 1 << 20, PD_ERR_INVALID, &nvt, err, errlen))) return st;
    if (nvt + 3 > cf->max_tokens)
        return pd_err(err, errlen, PD_ERR_INVALID, "config.num_virtual_tokens = %d leaves no room for text in the model's %d positions (at most %d)",
                      nvt, cf->max_tokens, cf->max_tokens - 3);
    const char *text = NULL, *init = NULL, *tokname = NULL;
    if (prefix) {
        if ((st = pd_json_bool(u, "prefix_projection", PD_PEFT_USER, &proj, err, errlen)) ||
            (st = pd_json_int(u, "encoder_hidden_size", PD_PEFT_USER, 1, 1 << 16, PD_ERR_INVALID, &E, err, errlen)))
            return st;
    } else {
        if ((st = pd_json_str(u, "prompt_init_text", PD_PEFT_USER, &text, err, errlen)) ||
            (st = pd_json_str(u, "prompt_tuning_init", PD_PEFT_USER, &init, err, errlen)) ||
            (st = pd_json_str(u, "tokenizer_name_or_path", PD_PEFT_USER, &tokname, err, errlen)))
            return st;
        const char *t2 = NULL;
        if ((st = pd_json_str(u, "prompt_tuning_init_text", PD_PEFT_USER, &t2, err, errlen))) return st;
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
    pd_json_add(c, "num_virtual_tokens", cJSON_CreateNumber(nvt), &bad);
    pd_json_add(c, "token_dim", cJSON_CreateNumber(H), &bad);
    pd_json_add(c, "num_transformer_submodules", cJSON_CreateNumber(1), &bad);
    pd_json_add(c, "num_attention_heads", cJSON_CreateNumber(cf->heads), &bad);
    pd_json_add(c, "num_layers", cJSON_CreateNumber(L), &bad);
    if (prefix) {
        pd_json_add(c, "encoder_hidden_size", cJSON_CreateNumber(E), &bad);
        pd_json_add(c, "prefix_projection", cJSON_CreateBool(proj), &bad);
    } else {
        /* PEFT refuses a TEXT config without tokenizer_name_or_path when it loads one, and the
         * base's path is unknown here: such prompts are recorded as RANDOM plus their text
         * (the init only matters before training; the file holds the trained values). */
        int as_text = text && tokname;
        pd_json_add(c, "prompt_tuning_init", cJSON_CreateString(as_text ? "TEXT" : "RANDOM"), &bad);
        pd_json_add(c, "prompt_tuning_init_text", text ? cJSON_CreateString(text) : cJSON_CreateNull(), &bad);
        pd_json_add(c, "tokenizer_name_or_path", tokname ? cJSON_CreateString(tokname) : cJSON_CreateNull(), &bad);
        pd_json_add(c, "tokenizer_kwargs", cJSON_CreateNull(), &bad);
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


pd_status pd_prompt_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *u, const pd_fresh_head *fh, pd_rng *rng,
                          pd_fresh *out, char *err, size_t errlen) {
    int prefix = self->method == PD_METHOD_PREFIX;
    char what[48];
    snprintf(what, sizeof what, "%s option", self->name);
    pd_status st = pd_peft_fresh_config(self->method, what, u, self->config_keys, fh, out, err, errlen);
    if (!st) st = fresh_prompt(base, prefix, u, rng, out, out->config, err, errlen);
    if (!st) st = pd_peft_fresh_head(base, fh, "base_model.", rng, out, err, errlen); /* prompt learning: heads under "base_model." */
    return st;
}
