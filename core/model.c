/* model.c - loading Hugging Face encoder checkpoints and the batched forward pass.
 *
 * The forward pass packs the tokens of all sequences into one (T, hidden) matrix with no
 * padding, so every projection is one GEMM over all T rows of the batch, and attention runs
 * per (sequence, head) over that sequence's own keys (plus its prefix keys, if any).
 * Sequences are ordered by delta so each delta's rows are contiguous: a delta's callbacks
 * see one block of rows (the grouping idea of Punica's SGMV). */
#include "model.h"

#include "fs.h"
#include "grad_kernels.h"
#include "json.h"
#include "safetensors.h"
#include "train_kernels.h"

#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SHARDS 64

/* The word embeddings in the model's dtype (see emb_build). */
typedef struct {
    pd_wtype t;
    int dim;
    const float *f32;  /* fp32: the mapping, a converted copy or pd_params' array */
    uint16_t *bf16;    /* (rows, dim) */
    int8_t *i8;        /* (rows, dim) */
    float *scale;      /* int8: (rows) */
} emb_table;

struct pd_model {
    pd_config cfg;
    pd_wtype wtype;         /* of the linear weights and the word embeddings */
    pd_tokenizer *tok;
    pd_st_file *shard[MAX_SHARDS];
    int n_shards;
    emb_table word;         /* (vocab, hidden) */
    const float *pos_emb;   /* (max_pos, hidden) */
    const float *type_emb;  /* (type_vocab, hidden) or NULL */
    const float *emb_ln_w, *emb_ln_b;
    pd_layer *layer;        /* (layers) */
    pd_head cls, qa;        /* task == PD_TASK_NONE when absent */
    const float *pooler_w, *pooler_b; /* bert/roberta pooler, NULL when absent */
    void **owned;           /* converted tensors and tables we free */
    int n_owned, cap_owned;
    pd_wmat **wm;           /* the layers' matrices */
    int n_wm, cap_wm;
    size_t bytes;
    double load_s;
};

const char *pd_arch_name(pd_arch a) {
    switch (a) {
    case PD_ARCH_BERT: return "bert";
    case PD_ARCH_DISTILBERT: return "distilbert";
    case PD_ARCH_ROBERTA: return "roberta";
    }
    return "?";
}

/* ==== config.json ==== */

/* Reads an integer field; the first present name wins. Returns def when none is present,
 * -2 when present but not a non-negative integer. */
static int json_int(const cJSON *o, const char *a, const char *b, int def) {
    long v = def;
    return pd_json_long(o, pd_json_get(o, a) || !b ? a : b, "", 0, 1000000000, PD_ERR_FORMAT, &v, NULL, 0) ? -2 : (int)v;
}

static pd_status parse_config(const char *dir, pd_config *c, char *err, size_t errlen) {
    char path[4096];
    if (pd_path_join(path, sizeof path, dir, "config.json")) return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    char *text = NULL;
    size_t len = 0;
    pd_status st = pd_read_file(path, 1 << 20, &text, &len, err, errlen);
    if (st != PD_OK) return st;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    st = o ? PD_OK : pd_json_parse_failure(text, len);
    free(text);
    if (st == PD_ERR_NOMEM) return pd_err(err, errlen, st, "config.json: out of memory parsing it");
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return pd_err(err, errlen, PD_ERR_FORMAT, "config.json: not a JSON object");
    }
    st = PD_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    memset(c, 0, sizeof *c);
    if (!type) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: missing \"model_type\"");
        goto out;
    }
    if (!strcmp(type, "bert")) c->arch = PD_ARCH_BERT;
    else if (!strcmp(type, "distilbert")) c->arch = PD_ARCH_DISTILBERT;
    else if (!strcmp(type, "roberta")) c->arch = PD_ARCH_ROBERTA;
    else {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                    "config.json: model_type \"%s\" is not supported (bert, distilbert, roberta are)", type);
        goto out;
    }
    int dist = c->arch == PD_ARCH_DISTILBERT;
    c->vocab = json_int(o, "vocab_size", NULL, -1);
    c->hidden = dist ? json_int(o, "dim", "hidden_size", -1) : json_int(o, "hidden_size", NULL, -1);
    c->layers = dist ? json_int(o, "n_layers", "num_hidden_layers", -1) : json_int(o, "num_hidden_layers", NULL, -1);
    c->heads = dist ? json_int(o, "n_heads", "num_attention_heads", -1) : json_int(o, "num_attention_heads", NULL, -1);
    c->ffn = dist ? json_int(o, "hidden_dim", "intermediate_size", -1) : json_int(o, "intermediate_size", NULL, -1);
    c->max_pos = json_int(o, "max_position_embeddings", NULL, 512);
    c->type_vocab = dist ? 0 : json_int(o, "type_vocab_size", NULL, 2);
    c->pad_id = json_int(o, "pad_token_id", NULL, c->arch == PD_ARCH_ROBERTA ? 1 : 0);
    struct { const char *name; int v; } need[] = {
        {"vocab_size", c->vocab}, {dist ? "dim" : "hidden_size", c->hidden}, {dist ? "n_layers" : "num_hidden_layers", c->layers},
        {dist ? "n_heads" : "num_attention_heads", c->heads}, {dist ? "hidden_dim" : "intermediate_size", c->ffn},
        {"max_position_embeddings", c->max_pos}, {"type_vocab_size", dist ? 1 : c->type_vocab}, {"pad_token_id", c->pad_id}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (need[i].v == -1) { st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: missing \"%s\"", need[i].name); goto out; }
        if (need[i].v < 0 || (need[i].v == 0 && i < 6)) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: \"%s\" must be a positive integer", need[i].name);
            goto out;
        }
    }
    if (c->hidden % c->heads) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: hidden size %d is not a multiple of %d heads", c->hidden, c->heads);
        goto out;
    }
    if (c->layers > 256 || c->hidden > 65536 || c->ffn > 262144 || c->max_pos > 65536) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "config.json: sizes beyond peftd's limits");
        goto out;
    }
    if (c->pad_id >= c->vocab) { st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: pad_token_id %d outside the vocabulary", c->pad_id); goto out; }
    c->pos_offset = c->arch == PD_ARCH_ROBERTA ? c->pad_id + 1 : 0;
    c->max_tokens = c->max_pos - c->pos_offset;
    if (c->max_tokens < 3) { st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: max_position_embeddings too small"); goto out; }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps");
    c->ln_eps = dist ? 1e-12f : 1e-12f;
    if (eps) {
        if (!cJSON_IsNumber(eps) || eps->valuedouble <= 0 || eps->valuedouble > 1) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: layer_norm_eps must be a small positive number");
            goto out;
        }
        c->ln_eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, dist ? "activation" : "hidden_act");
    const char *an = cJSON_IsString(act) ? act->valuestring : "gelu";
    int a = pd_act_parse(an);
    if (a != PD_ACT_GELU && a != PD_ACT_GELU_TANH && a != PD_ACT_RELU) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "config.json: hidden_act \"%s\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu are)", an);
        goto out;
    }
    c->act = (pd_act)a;
    if (dist) {
        const cJSON *sin = cJSON_GetObjectItemCaseSensitive(o, "sinusoidal_pos_embds");
        if (cJSON_IsTrue(sin)) {
            /* The table is saved in the checkpoint either way, so it is read like a learned one. */
        }
    }
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(o, "position_embedding_type");
    if (cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute")) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "config.json: position_embedding_type \"%s\" is not supported (absolute is)", pe->valuestring);
        goto out;
    }
    /* id2label: {"0": "neg", "1": "pos"} */
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(o, "id2label");
    if (cJSON_IsObject(id2)) {
        int n = cJSON_GetArraySize(id2);
        if (n > 100000) { st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "config.json: too many labels"); goto out; }
        c->labels = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!c->labels) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        c->num_labels = n;
        const cJSON *it;
        cJSON_ArrayForEach(it, id2) {
            char *e = NULL;
            long k = strtol(it->string, &e, 10);
            if (!*it->string || *e || k < 0 || k >= n || !cJSON_IsString(it) || c->labels[k]) {
                st = pd_err(err, errlen, PD_ERR_FORMAT, "config.json: id2label must map 0..%d to strings", n - 1);
                goto out;
            }
            c->labels[k] = strdup(it->valuestring);
            if (!c->labels[k]) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        }
    }
out:
    cJSON_Delete(o);
    if (st != PD_OK) {
        pd_strv_free(c->labels, c->num_labels);
        c->labels = NULL;
        c->num_labels = 0;
    }
    return st;
}

/* ==== Weights ==== */

static pd_status open_shards(pd_model *m, const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (pd_fs_exists(dir, "model.safetensors")) {
        pd_path_join(path, sizeof path, dir, "model.safetensors");
        m->n_shards = 1;
        return pd_st_open(path, &m->shard[0], err, errlen);
    }
    if (pd_fs_exists(dir, "model.safetensors.index.json")) {
        pd_path_join(path, sizeof path, dir, "model.safetensors.index.json");
        char *text = NULL;
        size_t len = 0;
        pd_status st = pd_read_file(path, 64 << 20, &text, &len, err, errlen);
        if (st) return st;
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        st = o ? PD_OK : pd_json_parse_failure(text, len);
        free(text);
        if (st == PD_ERR_NOMEM) return pd_err(err, errlen, st, "model.safetensors.index.json: out of memory parsing it");
        const cJSON *wm = o ? cJSON_GetObjectItemCaseSensitive(o, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) {
            cJSON_Delete(o);
            return pd_err(err, errlen, PD_ERR_FORMAT, "model.safetensors.index.json: missing \"weight_map\" object");
        }
        const cJSON *it;
        st = PD_OK;
        cJSON_ArrayForEach(it, wm) {
            if (!cJSON_IsString(it)) { st = pd_err(err, errlen, PD_ERR_FORMAT, "model.safetensors.index.json: weight_map values must be file names"); break; }
            const char *fn = it->valuestring;
            if (strchr(fn, '/') || !strcmp(fn, "..") || !*fn) { st = pd_err(err, errlen, PD_ERR_FORMAT, "model.safetensors.index.json: shard name \"%s\" is not a plain file name", fn); break; }
        }
        if (st) { cJSON_Delete(o); return st; }
        /* Collect distinct shard names in first-seen order. */
        char *names[MAX_SHARDS];
        int nn = 0;
        cJSON_ArrayForEach(it, wm) {
            int dup = 0;
            for (int i = 0; i < nn; i++) if (!strcmp(names[i], it->valuestring)) dup = 1;
            if (dup) continue;
            if (nn == MAX_SHARDS) { st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "more than %d shards", MAX_SHARDS); break; }
            names[nn++] = it->valuestring;
        }
        for (int i = 0; i < nn && !st; i++) {
            if (pd_path_join(path, sizeof path, dir, names[i])) { st = pd_err(err, errlen, PD_ERR_INVALID, "path too long"); break; }
            st = pd_st_open(path, &m->shard[m->n_shards], err, errlen);
            if (!st) m->n_shards++;
        }
        cJSON_Delete(o);
        return st;
    }
    if (pd_fs_exists(dir, "pytorch_model.bin") || pd_fs_exists(dir, "model.bin"))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "%s has only a pickle checkpoint (pytorch_model.bin); peftd never loads pickle because unpickling runs code. "
                      "Convert it once with: python3 -c \"import torch; from safetensors.torch import save_file; "
                      "sd=torch.load('pytorch_model.bin', map_location='cpu'); save_file({k: v.contiguous() for k, v in sd.items()}, 'model.safetensors')\"",
                      dir);
    return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
}

/* The tensor named name in any shard (and that shard in *file, when file is not NULL). */
static const pd_st_tensor *find_tensor(const pd_model *m, const char *name, const pd_st_file **file) {
    for (int i = 0; i < m->n_shards; i++) {
        const pd_st_tensor *t = pd_st_find(m->shard[i], name);
        if (t) {
            if (file) *file = m->shard[i];
            return t;
        }
    }
    return NULL;
}

/* Finds the first of several candidate names (prefix variants, legacy LayerNorm names). */
typedef struct {
    const char *prefix[2]; /* "bert." and "" */
} namer;

static const pd_st_tensor *lookup(const pd_model *m, const namer *nm, const char *suffix, char *used, size_t cap,
                                  const pd_st_file **file) {
    char buf[512];
    for (int p = 0; p < 2 && nm->prefix[p]; p++) {
        snprintf(buf, sizeof buf, "%s%s", nm->prefix[p], suffix);
        const pd_st_tensor *t = find_tensor(m, buf, file);
        if (t) { snprintf(used, cap, "%s", buf); return t; }
        /* legacy TF-converted names: LayerNorm.gamma / LayerNorm.beta */
        size_t L = strlen(buf);
        if (L > 16 && !strcmp(buf + L - 16, "LayerNorm.weight")) {
            strcpy(buf + L - 6, "gamma");
            if ((t = find_tensor(m, buf, file))) { snprintf(used, cap, "%s", buf); return t; }
        } else if (L > 14 && !strcmp(buf + L - 14, "LayerNorm.bias")) {
            strcpy(buf + L - 4, "beta");
            if ((t = find_tensor(m, buf, file))) { snprintf(used, cap, "%s", buf); return t; }
        }
    }
    snprintf(used, cap, "%s%s", nm->prefix[0], suffix);
    return NULL;
}

/* A tensor's values as fp32 while loading: straight from the mapping (aligned F32), or
 * converted into a copy (F16, BF16, unaligned F32) that `owned` holds. */
typedef struct {
    const float *f;
    float *owned;
    const pd_st_file *file;
    const pd_st_tensor *t;
} wsrc;

/* Finds a tensor with the expected shape (d1 = 0 for 1-D) and gives its fp32 values.
 * required=0 lets it be absent (s->f NULL, PD_OK). */
static pd_status weight_open(pd_model *m, const namer *nm, const char *suffix, int64_t d0, int64_t d1, int required,
                             wsrc *s, char *err, size_t errlen) {
    char name[512];
    memset(s, 0, sizeof *s);
    const pd_st_tensor *t = lookup(m, nm, suffix, name, sizeof name, &s->file);
    if (!t) {
        if (!required) return PD_OK;
        return pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor %s", name);
    }
    int want_nd = d1 ? 2 : 1;
    if (t->ndim != want_nd || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[128] = "", *p = got;
        for (int i = 0; i < t->ndim && p < got + 100; i++) p += sprintf(p, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (d1) return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape [%s], expected [%lld, %lld] from config.json", name, got, (long long)d0, (long long)d1);
        return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape [%s], expected [%lld] from config.json", name, got, (long long)d0);
    }
    s->t = t;
    if (t->dtype == PD_DT_F32 && ((uintptr_t)t->data & 3) == 0) {
        s->f = t->data;
        return PD_OK;
    }
    if (t->dtype != PD_DT_F32 && t->dtype != PD_DT_F16 && t->dtype != PD_DT_BF16)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s has dtype %s (F32, F16, BF16 are supported)", name, pd_dtype_name(t->dtype));
    pd_status st = pd_st_to_f32(t, &s->owned, err, errlen);
    s->f = s->owned;
    return st;
}

/* The values were turned into something else (a packed matrix, a table): the copy is freed,
 * or the mapping's pages of the tensor are handed back (pd_st_release), so the fp32 file does
 * not stay resident beside them. */
static void weight_drop(wsrc *s) {
    if (s->owned) free(s->owned);
    else if (s->t) pd_st_release(s->file, s->t);
    memset(s, 0, sizeof *s);
}

/* Appends p to the pointers the model frees; frees p and fails when memory runs out. */
static pd_status own(pd_model *m, void *p, char *err, size_t errlen) {
    if (m->n_owned == m->cap_owned) {
        int nc = m->cap_owned ? m->cap_owned * 2 : 64;
        void **no = realloc(m->owned, (size_t)nc * sizeof *no);
        if (!no) { free(p); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        m->owned = no;
        m->cap_owned = nc;
    }
    m->owned[m->n_owned++] = p;
    return PD_OK;
}

/* Returns a float view of a tensor with the expected shape (d1 = 0 for 1-D): the mapping, or
 * an owned converted copy. required=0 lets it be absent (NULL, OK). */
static pd_status get_weight(pd_model *m, const namer *nm, const char *suffix, int64_t d0, int64_t d1, int required,
                            const float **out, char *err, size_t errlen) {
    wsrc s;
    *out = NULL;
    pd_status st = weight_open(m, nm, suffix, d0, d1, required, &s, err, errlen);
    if (st || !s.f) {
        free(s.owned);
        return st;
    }
    if (s.owned && (st = own(m, s.owned, err, errlen))) return st;
    m->bytes += (size_t)pd_st_numel(s.t) * sizeof(float);
    *out = s.f;
    return PD_OK;
}

/* Keeps w among the matrices the model frees (pd_wmat_free on failure). */
static pd_status own_wmat(pd_model *m, pd_wmat *w, char *err, size_t errlen) {
    if (!w) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (m->n_wm == m->cap_wm) {
        int nc = m->cap_wm ? m->cap_wm * 2 : 64;
        pd_wmat **nw = realloc(m->wm, (size_t)nc * sizeof *nw);
        if (!nw) { pd_wmat_free(w); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        m->wm = nw;
        m->cap_wm = nc;
    }
    m->wm[m->n_wm++] = w;
    m->bytes += pd_wmat_bytes(w);
    return PD_OK;
}

/* A linear layer's weight (out, in), packed once in the model's dtype. */
static pd_status get_linear(pd_model *m, const namer *nm, const char *suffix, int out, int in, const pd_wmat **dst,
                            char *err, size_t errlen) {
    wsrc s;
    pd_status st = weight_open(m, nm, suffix, out, in, 1, &s, err, errlen);
    if (st) {
        free(s.owned);
        return st;
    }
    if (m->wtype == PD_WTYPE_INT8 && in > PD_WMAT_INT8_MAX_IN) {
        weight_drop(&s);
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "int8 weights need at most %d inputs per linear layer", PD_WMAT_INT8_MAX_IN);
    }
    pd_wmat *w = pd_wmat_new(m->wtype, s.f, out, in, (size_t)in);
    weight_drop(&s);
    if ((st = own_wmat(m, w, err, errlen))) return st;
    *dst = w;
    return PD_OK;
}

/* ==== Word embeddings ==== */

/* fp32 rows (the mapping, or a converted copy the model owns), or bf16 / int8 rows (one scale
 * per row, s = max|row| / 127, q = rint(v / s), as pd_wmat's int8 channels). */
static pd_status emb_build(pd_model *m, const float *src, int rows, int dim, char *err, size_t errlen) {
    emb_table *e = &m->word;
    e->dim = dim;
    e->t = m->wtype;
    size_t n = (size_t)rows * dim;
    if (e->t == PD_WTYPE_F32) {
        e->f32 = src;
        return PD_OK;
    }
    if (e->t == PD_WTYPE_BF16) {
        uint16_t *b = malloc(n * sizeof *b);
        if (!b) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) b[i] = pd_bf16_round(src[i]);
        e->bf16 = b;
        m->bytes += n * sizeof *b;
        return own(m, b, err, errlen);
    }
    int8_t *q = malloc(n);
    float *sc = malloc((size_t)rows * sizeof *sc);
    if (!q || !sc) {
        free(q);
        free(sc);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    for (int r = 0; r < rows; r++) {
        const float *x = src + (size_t)r * dim;
        float mx = 0.0f;
        for (int k = 0; k < dim; k++) mx = fabsf(x[k]) > mx ? fabsf(x[k]) : mx;
        float s = mx / 127.0f, inv = s > 0.0f && !isinf(s) ? 1.0f / s : 0.0f;
        sc[r] = inv > 0.0f ? s : 0.0f;
        for (int k = 0; k < dim; k++) {
            float v = nearbyintf(x[k] * inv); /* NaN -> -127 */
            q[(size_t)r * dim + k] = (int8_t)(v >= 127.0f ? 127 : v > -127.0f ? (int)v : -127);
        }
    }
    e->i8 = q;
    e->scale = sc;
    m->bytes += n + (size_t)rows * sizeof *sc;
    pd_status st = own(m, q, err, errlen);
    return st ? (free(sc), st) : own(m, sc, err, errlen);
}

/* Row id of the table as fp32: a pointer into the table, or tmp (dim floats) filled. */
static const float *emb_row(const emb_table *e, int id, float *tmp) {
    size_t o = (size_t)id * e->dim;
    if (e->f32) return e->f32 + o;
    if (e->bf16)
        for (int k = 0; k < e->dim; k++) tmp[k] = pd_bf16_float(e->bf16[o + k]);
    else
        for (int k = 0; k < e->dim; k++) tmp[k] = e->scale[id] * (float)e->i8[o + k];
    return tmp;
}

#define W(suffix, d0, d1, dst) do { st = get_weight(m, &nm, suffix, d0, d1, 1, dst, err, errlen); if (st) return st; } while (0)

static pd_status load_weights(pd_model *m, char *err, size_t errlen) {
    pd_config *c = &m->cfg;
    pd_status st;
    int H = c->hidden, F = c->ffn;
    char s[256];
    namer nm;
    const char *base = c->arch == PD_ARCH_BERT ? "bert." : c->arch == PD_ARCH_ROBERTA ? "roberta." : "distilbert.";
    nm.prefix[0] = base;
    nm.prefix[1] = "";
    /* dtype for /info: of the word embeddings */
    {
        char used[512];
        const pd_st_tensor *t = lookup(m, &nm, "embeddings.word_embeddings.weight", used, sizeof used, NULL);
        snprintf(c->dtype, sizeof c->dtype, "%s", t ? pd_dtype_name(t->dtype) : "?");
    }
    {
        /* the word embeddings in the model's dtype: fp32 stays in the mapping */
        wsrc ws;
        st = weight_open(m, &nm, "embeddings.word_embeddings.weight", c->vocab, H, 1, &ws, err, errlen);
        if (st) { free(ws.owned); return st; }
        if (m->wtype == PD_WTYPE_F32) {
            if (ws.owned && (st = own(m, ws.owned, err, errlen))) return st;
            m->bytes += (size_t)c->vocab * H * sizeof(float);
            st = emb_build(m, ws.f, c->vocab, H, err, errlen);
        } else {
            st = emb_build(m, ws.f, c->vocab, H, err, errlen);
            weight_drop(&ws);
        }
        if (st) return st;
    }
    W("embeddings.position_embeddings.weight", c->max_pos, H, &m->pos_emb);
    if (c->arch != PD_ARCH_DISTILBERT) W("embeddings.token_type_embeddings.weight", c->type_vocab, H, &m->type_emb);
    W("embeddings.LayerNorm.weight", H, 0, &m->emb_ln_w);
    W("embeddings.LayerNorm.bias", H, 0, &m->emb_ln_b);
    if (c->arch != PD_ARCH_DISTILBERT) {
        st = get_weight(m, &nm, "pooler.dense.weight", H, H, 0, &m->pooler_w, err, errlen); if (st) return st;
        if (m->pooler_w) { st = get_weight(m, &nm, "pooler.dense.bias", H, 0, 1, &m->pooler_b, err, errlen); if (st) return st; }
    }
    m->layer = calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->layers; l++) {
        pd_layer *L = &m->layer[l];
        const char *stack = c->arch == PD_ARCH_DISTILBERT ? "transformer" : "encoder";
        if (c->arch == PD_ARCH_DISTILBERT) {
#define DL(name, d0, d1, dst) snprintf(s, sizeof s, "%s.layer.%d.%s", stack, l, name); W(s, d0, d1, dst)
#define DM(name, d0, d1, dst) snprintf(s, sizeof s, "%s.layer.%d.%s", stack, l, name); \
            if ((st = get_linear(m, &nm, s, d0, d1, dst, err, errlen))) return st
            DM("attention.q_lin.weight", H, H, &L->wq); DL("attention.q_lin.bias", H, 0, &L->bq);
            DM("attention.k_lin.weight", H, H, &L->wk); DL("attention.k_lin.bias", H, 0, &L->bk);
            DM("attention.v_lin.weight", H, H, &L->wv); DL("attention.v_lin.bias", H, 0, &L->bv);
            DM("attention.out_lin.weight", H, H, &L->wo); DL("attention.out_lin.bias", H, 0, &L->bo);
            DL("sa_layer_norm.weight", H, 0, &L->ln1_w); DL("sa_layer_norm.bias", H, 0, &L->ln1_b);
            DM("ffn.lin1.weight", F, H, &L->w1); DL("ffn.lin1.bias", F, 0, &L->b1);
            DM("ffn.lin2.weight", H, F, &L->w2); DL("ffn.lin2.bias", H, 0, &L->b2);
            DL("output_layer_norm.weight", H, 0, &L->ln2_w); DL("output_layer_norm.bias", H, 0, &L->ln2_b);
        } else {
            DM("attention.self.query.weight", H, H, &L->wq); DL("attention.self.query.bias", H, 0, &L->bq);
            DM("attention.self.key.weight", H, H, &L->wk); DL("attention.self.key.bias", H, 0, &L->bk);
            DM("attention.self.value.weight", H, H, &L->wv); DL("attention.self.value.bias", H, 0, &L->bv);
            DM("attention.output.dense.weight", H, H, &L->wo); DL("attention.output.dense.bias", H, 0, &L->bo);
            DL("attention.output.LayerNorm.weight", H, 0, &L->ln1_w); DL("attention.output.LayerNorm.bias", H, 0, &L->ln1_b);
            DM("intermediate.dense.weight", F, H, &L->w1); DL("intermediate.dense.bias", F, 0, &L->b1);
            DM("output.dense.weight", H, F, &L->w2); DL("output.dense.bias", H, 0, &L->b2);
            DL("output.LayerNorm.weight", H, 0, &L->ln2_w); DL("output.LayerNorm.bias", H, 0, &L->ln2_b);
        }
#undef DM
#undef DL
        (void)s;
    }
    /* Heads live outside the encoder prefix. */
    namer hn = {{"", NULL}};
    int nl = 0;
    {
        char used[512];
        const pd_st_tensor *cw = lookup(m, &hn, c->arch == PD_ARCH_ROBERTA ? "classifier.out_proj.weight" : "classifier.weight", used, sizeof used, NULL);
        if (cw && cw->ndim == 2) nl = (int)cw->shape[0];
    }
    if (nl > 0) {
        pd_head *h = &m->cls;
        h->task = PD_TASK_CLS;
        const float *w0, *b0, *w1, *b1;
        if (c->arch == PD_ARCH_BERT) {
            if (!m->pooler_w) return pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor bert.pooler.dense.weight");
            w0 = m->pooler_w;
            b0 = m->pooler_b;
            st = get_weight(m, &hn, "classifier.weight", nl, H, 1, &w1, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.bias", nl, 0, 1, &b1, err, errlen); if (st) return st;
            h->layer[0] = (pd_head_layer){w0, b0, H, H, PD_ACT_TANH};
        } else if (c->arch == PD_ARCH_DISTILBERT) {
            st = get_weight(m, &hn, "pre_classifier.weight", H, H, 1, &w0, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "pre_classifier.bias", H, 0, 1, &b0, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.weight", nl, H, 1, &w1, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.bias", nl, 0, 1, &b1, err, errlen); if (st) return st;
            h->layer[0] = (pd_head_layer){w0, b0, H, H, PD_ACT_RELU};
        } else {
            st = get_weight(m, &hn, "classifier.dense.weight", H, H, 1, &w0, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.dense.bias", H, 0, 1, &b0, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.out_proj.weight", nl, H, 1, &w1, err, errlen); if (st) return st;
            st = get_weight(m, &hn, "classifier.out_proj.bias", nl, 0, 1, &b1, err, errlen); if (st) return st;
            h->layer[0] = (pd_head_layer){w0, b0, H, H, PD_ACT_TANH};
        }
        h->layer[1] = (pd_head_layer){w1, b1, H, nl, PD_ACT_NONE};
        h->n_layers = 2;
        h->num_labels = nl;
        if (c->labels && c->num_labels != nl)
            return pd_err(err, errlen, PD_ERR_MISMATCH, "config.json has %d labels in id2label but the classifier has %d outputs", c->num_labels, nl);
        if (!c->labels) {
            c->labels = calloc((size_t)nl, sizeof(char *));
            if (!c->labels) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            c->num_labels = nl;
            for (int i = 0; i < nl; i++) {
                char b[PD_LABEL_CAP];
                if (!(c->labels[i] = strdup(pd_label_name(NULL, i, b, sizeof b)))) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            }
        }
        h->labels = c->labels;
    }
    const float *qw = NULL, *qb = NULL;
    st = get_weight(m, &hn, "qa_outputs.weight", 2, H, 0, &qw, err, errlen); if (st) return st;
    if (qw) {
        st = get_weight(m, &hn, "qa_outputs.bias", 2, 0, 1, &qb, err, errlen); if (st) return st;
        m->qa.task = PD_TASK_QA;
        m->qa.n_layers = 1;
        m->qa.layer[0] = (pd_head_layer){qw, qb, H, 2, PD_ACT_NONE};
    }
    return PD_OK;
}
#undef W

pd_status pd_model_load_as(const char *dir, int max_tokens_cap, pd_wtype dtype, pd_model **out, char *err,
                           size_t errlen) {
    *out = NULL;
    double t0 = pd_now();
    if (dtype != PD_WTYPE_F32 && dtype != PD_WTYPE_BF16 && dtype != PD_WTYPE_INT8)
        return pd_err(err, errlen, PD_ERR_INVALID, "dtype must be fp32, bf16 or int8");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: not a directory", dir);
    pd_model *m = calloc(1, sizeof *m);
    if (!m) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    m->wtype = dtype;
    pd_status st = parse_config(dir, &m->cfg, err, errlen);
    if (!st) st = open_shards(m, dir, err, errlen);
    if (!st) st = load_weights(m, err, errlen);
    if (!st) st = pd_tokenizer_load_dir(dir, &m->tok, err, errlen);
    if (!st && pd_tokenizer_vocab_size(m->tok) > m->cfg.vocab)
        st = pd_err(err, errlen, PD_ERR_MISMATCH, "the tokenizer has %d tokens but the model's vocabulary is %d",
                    pd_tokenizer_vocab_size(m->tok), m->cfg.vocab);
    if (st) {
        pd_model_free(m);
        return st;
    }
    if (max_tokens_cap > 0 && max_tokens_cap < m->cfg.max_tokens) m->cfg.max_tokens = max_tokens_cap < 3 ? 3 : max_tokens_cap;
    m->load_s = pd_now() - t0;
    *out = m;
    return PD_OK;
}

pd_status pd_model_load(const char *dir, int max_tokens_cap, pd_model **out, char *err, size_t errlen) {
    return pd_model_load_as(dir, max_tokens_cap, PD_WTYPE_F32, out, err, errlen);
}

void pd_model_free(pd_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) pd_st_close(m->shard[i]);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->n_wm; i++) pd_wmat_free(m->wm[i]);
    free(m->wm);
    free(m->layer);
    pd_strv_free(m->cfg.labels, m->cfg.num_labels);
    pd_tokenizer_free(m->tok);
    free(m);
}

const pd_config *pd_model_config(const pd_model *m) { return &m->cfg; }
const pd_tokenizer *pd_model_tokenizer(const pd_model *m) { return m->tok; }
const pd_layer *pd_model_layer(const pd_model *m, int l) { return &m->layer[l]; }
const pd_head *pd_model_head(const pd_model *m, pd_task t) {
    if (t == PD_TASK_CLS) return m->cls.task ? &m->cls : NULL;
    if (t == PD_TASK_QA) return m->qa.task ? &m->qa : NULL;
    return NULL;
}
void pd_model_get_extras(const pd_model *m, pd_model_extras *out) {
    out->emb_ln_w = m->emb_ln_w;
    out->emb_ln_b = m->emb_ln_b;
    out->pooler_w = m->pooler_w;
    out->pooler_b = m->pooler_b;
}
void pd_model_word_row(const pd_model *m, int id, float *out) {
    PD_ASSERT(id >= 0 && id < m->cfg.vocab);
    const float *r = emb_row(&m->word, id, out);
    if (r != out) memcpy(out, r, sizeof(float) * (size_t)m->word.dim);
}
pd_wtype pd_model_dtype(const pd_model *m) { return m->wtype; }
size_t pd_model_bytes(const pd_model *m) { return m->bytes; }
double pd_model_load_seconds(const pd_model *m) { return m->load_s; }

/* ==== Mutable fp32 weights ==== */

/* Tensors start at multiples of 16 floats (64 bytes), aligned for the vector kernels. */
#define PARAM_ALIGN 16

static const char *const LAYER_NAMES[16] = {
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight", "attention.self.key.bias",
    "attention.self.value.weight", "attention.self.value.bias", "attention.output.dense.weight",
    "attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias"};

/* The fields of a pd_layer_params in LAYER_NAMES order. */
static void layer_fields(pd_layer_params *L, float **f[16]) {
    float **v[16] = {&L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo, &L->bo,
                     &L->ln1_w, &L->ln1_b, &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_w, &L->ln2_b};
    memcpy(f, v, sizeof v);
}

/* Appends tensor (name, d0 x d1) to p's table; with p->data set, points *field at its floats. */
static void params_add(pd_params *p, size_t *off, float **field, const char *name, size_t d0, size_t d1) {
    size_t n = d0 * (d1 ? d1 : 1);
    if (p->tensors) {
        pd_param_tensor *t = &p->tensors[p->n_tensors];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->data = p->data + *off;
        t->ndim = d1 ? 2 : 1;
        t->shape[0] = (int64_t)d0;
        t->shape[1] = (int64_t)d1;
        t->n = n;
        *field = t->data;
    }
    p->n_tensors++;
    *off += (n + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
}

/* Walks every tensor in order: counts them and their floats (p->tensors NULL), or fills the
 * table and the field pointers. Returns the floats of the layout. */
static size_t params_layout(pd_params *p, int mlm) {
    const pd_config *c = &p->cfg;
    size_t H = (size_t)c->hidden, F = (size_t)c->ffn, off = 0;
    char nm[80];
    p->n_tensors = 0;
    params_add(p, &off, &p->word_emb, "bert.embeddings.word_embeddings.weight", (size_t)c->vocab, H);
    params_add(p, &off, &p->pos_emb, "bert.embeddings.position_embeddings.weight", (size_t)c->max_pos, H);
    params_add(p, &off, &p->type_emb, "bert.embeddings.token_type_embeddings.weight", (size_t)c->type_vocab, H);
    params_add(p, &off, &p->emb_ln_w, "bert.embeddings.LayerNorm.weight", H, 0);
    params_add(p, &off, &p->emb_ln_b, "bert.embeddings.LayerNorm.bias", H, 0);
    static const int out_ffn[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0};
    static const int in_kind[16] = {1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0}; /* 0: 1-D, 1: hidden, 2: ffn */
    for (int l = 0; l < c->layers; l++) {
        float **f[16];
        layer_fields(&p->layer[l], f);
        for (int i = 0; i < 16; i++) {
            snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s", l, LAYER_NAMES[i]);
            params_add(p, &off, f[i], nm, out_ffn[i] ? F : H, in_kind[i] == 0 ? 0 : in_kind[i] == 1 ? H : F);
        }
    }
    if (mlm) {
        params_add(p, &off, &p->mlm.dense_w, "cls.predictions.transform.dense.weight", H, H);
        params_add(p, &off, &p->mlm.dense_b, "cls.predictions.transform.dense.bias", H, 0);
        params_add(p, &off, &p->mlm.ln_w, "cls.predictions.transform.LayerNorm.weight", H, 0);
        params_add(p, &off, &p->mlm.ln_b, "cls.predictions.transform.LayerNorm.bias", H, 0);
        params_add(p, &off, &p->mlm.bias, "cls.predictions.bias", (size_t)c->vocab, 0);
    }
    return off;
}

pd_params *pd_params_new(const pd_config *cfg, int mlm) {
    if (cfg->arch != PD_ARCH_BERT || cfg->vocab < 1 || cfg->hidden < 1 || cfg->layers < 1 || cfg->heads < 1 ||
        cfg->hidden % cfg->heads || cfg->ffn < 1 || cfg->max_pos < 3 || cfg->type_vocab < 1 || cfg->layers > 256)
        return NULL;
    pd_params *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->cfg = *cfg;
    p->cfg.labels = NULL;
    p->cfg.num_labels = 0;
    p->layer = calloc((size_t)cfg->layers, sizeof *p->layer);
    if (!p->layer) { free(p); return NULL; }
    p->n = params_layout(p, mlm); /* counts */
    p->tensors = calloc((size_t)p->n_tensors, sizeof *p->tensors);
    p->data = aligned_alloc(64, (p->n * sizeof(float) + 63) / 64 * 64);
    if (!p->tensors || !p->data) { pd_params_free(p); return NULL; }
    memset(p->data, 0, p->n * sizeof(float));
    params_layout(p, mlm);
    return p;
}

void pd_params_free(pd_params *p) {
    if (!p) return;
    free(p->data);
    free(p->tensors);
    free(p->layer);
    free(p);
}

const pd_param_tensor *pd_params_tensor(const pd_params *p, int i) {
    PD_ASSERT(i >= 0 && i < p->n_tensors);
    return &p->tensors[i];
}

pd_status pd_model_from_params(const pd_params *p, pd_tokenizer *tok, pd_model **out, char *err, size_t errlen) {
    *out = NULL;
    pd_model *m = calloc(1, sizeof *m);
    if (!m) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    m->cfg = p->cfg;
    m->cfg.pos_offset = 0;
    m->cfg.max_tokens = m->cfg.max_pos;
    m->wtype = PD_WTYPE_F32;
    snprintf(m->cfg.dtype, sizeof m->cfg.dtype, "F32");
    m->layer = calloc((size_t)p->cfg.layers, sizeof *m->layer);
    if (!m->layer) {
        free(m);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    int H = p->cfg.hidden, F = p->cfg.ffn;
    m->word = (emb_table){PD_WTYPE_F32, H, p->word_emb, NULL, NULL, NULL};
    m->pos_emb = p->pos_emb;
    m->type_emb = p->type_emb;
    m->emb_ln_w = p->emb_ln_w;
    m->emb_ln_b = p->emb_ln_b;
    pd_status st = PD_OK;
    for (int l = 0; l < p->cfg.layers && !st; l++) {
        const pd_layer_params *s = &p->layer[l];
        pd_layer *L = &m->layer[l];
        *L = (pd_layer){.bq = s->bq, .bk = s->bk, .bv = s->bv, .bo = s->bo, .b1 = s->b1, .b2 = s->b2,
                        .ln1_w = s->ln1_w, .ln1_b = s->ln1_b, .ln2_w = s->ln2_w, .ln2_b = s->ln2_b};
        struct { const pd_wmat **dst; const float *w; int out, in; } mats[6] = {
            {&L->wq, s->wq, H, H}, {&L->wk, s->wk, H, H}, {&L->wv, s->wv, H, H},
            {&L->wo, s->wo, H, H}, {&L->w1, s->w1, F, H}, {&L->w2, s->w2, H, F}};
        for (int k = 0; k < 6 && !st; k++) {
            pd_wmat *w = pd_wmat_borrow(mats[k].w, mats[k].out, mats[k].in, (size_t)mats[k].in);
            if (!(st = own_wmat(m, w, err, errlen))) *mats[k].dst = w;
        }
    }
    if (st) {
        pd_model_free(m);
        return st;
    }
    m->tok = tok;
    m->bytes = p->n * sizeof(float);
    *out = m;
    return PD_OK;
}

/* config.json of a BERT checkpoint with p's shapes, in transformers' BertConfig keys. */
static cJSON *params_config_json(const pd_config *c, const char *arch, pd_dtype dtype) {
    cJSON *o = cJSON_CreateObject(), *a;
    if (!o) return NULL;
    a = cJSON_AddArrayToObject(o, "architectures");
    if (a) cJSON_AddItemToArray(a, cJSON_CreateString(arch));
    cJSON_AddNumberToObject(o, "attention_probs_dropout_prob", 0.1);
    cJSON_AddStringToObject(o, "hidden_act", pd_act_name(c->act));
    cJSON_AddNumberToObject(o, "hidden_dropout_prob", 0.1);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", c->ffn);
    char eps[32];
    snprintf(eps, sizeof eps, "%.6g", (double)c->ln_eps); /* the float's shortest decimal (1e-12, not 9.99999996e-13) */
    cJSON_AddNumberToObject(o, "layer_norm_eps", strtod(eps, NULL));
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_pos);
    cJSON_AddStringToObject(o, "model_type", "bert");
    cJSON_AddNumberToObject(o, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_id);
    cJSON_AddStringToObject(o, "position_embedding_type", "absolute");
    cJSON_AddStringToObject(o, "torch_dtype", dtype == PD_DT_F16 ? "float16" : dtype == PD_DT_BF16 ? "bfloat16" : "float32");
    cJSON_AddNumberToObject(o, "type_vocab_size", c->type_vocab);
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
    return o;
}

/* Renames dir/tmp to dir/name. */
static pd_status rename_in(const char *dir, const char *tmp, const char *name, char *err, size_t errlen) {
    char a[4096], b[4096];
    if (pd_path_join(a, sizeof a, dir, tmp) || pd_path_join(b, sizeof b, dir, name))
        return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    if (rename(a, b)) return pd_err(err, errlen, PD_ERR_IO, "rename %s -> %s: %s", a, b, strerror(errno));
    return PD_OK;
}

pd_status pd_params_save(const pd_params *p, const pd_st_wtensor *extra, int n_extra, const char *arch, pd_dtype dtype,
                         const char *dir, char *err, size_t errlen) {
    if (dtype != PD_DT_F32 && dtype != PD_DT_F16 && dtype != PD_DT_BF16)
        return pd_err(err, errlen, PD_ERR_INVALID, "checkpoint dtype must be F32, F16 or BF16");
    if (n_extra < 0 || (n_extra && !extra)) return pd_err(err, errlen, PD_ERR_INVALID, "bad extra tensors");
    int n = p->n_tensors + n_extra;
    pd_st_wtensor *w = calloc((size_t)n, sizeof *w);
    if (!w) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->n_tensors; i++) {
        const pd_param_tensor *t = &p->tensors[i];
        w[i] = (pd_st_wtensor){t->name, t->ndim, {t->shape[0], t->shape[1]}, t->data};
    }
    for (int i = 0; i < n_extra; i++) w[p->n_tensors + i] = extra[i];
    char path[4096];
    static const char *const meta[] = {"format", "pt"};
    pd_status st = pd_path_join(path, sizeof path, dir, "model.safetensors.tmp")
                       ? pd_err(err, errlen, PD_ERR_INVALID, "path too long")
                       : pd_st_write_as(path, w, n, meta, 1, dtype, err, errlen);
    free(w);
    if (!st) st = rename_in(dir, "model.safetensors.tmp", "model.safetensors", err, errlen);
    if (!st) {
        cJSON *o = params_config_json(&p->cfg, arch, dtype);
        char *text = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!text) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        else if (pd_path_join(path, sizeof path, dir, "config.json.tmp")) st = pd_err(err, errlen, PD_ERR_INVALID, "path too long");
        else st = pd_fs_write(path, text, strlen(text), err, errlen);
        free(text);
    }
    if (!st) st = rename_in(dir, "config.json.tmp", "config.json", err, errlen);
    return st;
}

/* ==== Forward pass ==== */

/* Activations one layer keeps for the backward pass (training mode only). */
typedef struct {
    float *q, *k, *v, *att, *h1, *x1, *f, *a, *h2; /* (rows, hidden), f/a (rows, ffn) */
} saved_layer;

struct pd_ctx {
    const pd_model *m;
    pd_pool *pool;
    int train;          /* keep activations for pd_backward */
    int cap_rows;
    float *x, *x1, *q, *k, *v, *att, *h, *f; /* inference scratch (rows, hidden); f (rows, ffn) */
    int cap_seqs;
    int n, rows;        /* sequences and rows of the last forward */
    int *order;         /* (n) sequence indices sorted by delta */
    int *off;           /* (n) first row of sequence i */
    int *tot;           /* (n) rows of sequence i (prompt + real tokens) */
    const pd_delta **delta; /* (n) */
    int *grp_row, *grp_rows; /* (n) contiguous row blocks per delta */
    const pd_delta **grp_delta;
    int n_grp;
    /* The top layer's query rows (see pd_seq.first_only): sequence i's qlen[i] rows start at
     * row qoff[i] of a packed "view"; vgrp_row/vgrp_rows are the delta groups in that view. */
    int view, view_rows;  /* view: some sequence is first_only; then view_rows < rows */
    int *qoff, *qlen, *vgrp_row, *vgrp_rows;
    float *vx, *vout;     /* (view rows, hidden): the top layer's input rows; its output (or gradient) */
    int cap_view;
    float *scratch;     /* attention scores, one slice per pool thread */
    size_t cap_scratch, slice;
    /* training */
    int cap_train_rows;
    float *tbuf;        /* all saved activations */
    float **X;          /* (layers + 1) layer inputs; X[layers] = final hidden states */
    float *emb;         /* (rows, hidden) embedding sums before LayerNorm */
    saved_layer *S;     /* (layers) */
    float *gbuf;        /* gradient scratch */
    float *dhidden;     /* (rows, hidden) gradient of the final hidden states */
    float *pk, *pv;     /* prefix gradients, (n, max_prefix, hidden) */
    int cap_prefix;
    /* weight gradients (pd_ctx_set_grad) */
    const pd_params *grad; /* NULL: the encoder is frozen */
    int32_t *tok_id, *tok_pos, *tok_type; /* (rows) of the last training forward; -1 for prompt rows */
    int cap_tok;
    int grad_oom;          /* a weight-gradient kernel ran out of scratch memory */
    float *erow;           /* (hidden) a word-embedding row converted from bf16 / int8 */
};

pd_ctx *pd_ctx_new(const pd_model *m, pd_pool *pool) {
    pd_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->pool = pool;
    c->erow = malloc(sizeof(float) * (size_t)m->cfg.hidden);
    if (!c->erow) {
        free(c);
        return NULL;
    }
    pd_blas_init();
    return c;
}

static void ctx_free_rows(pd_ctx *c) {
    free(c->x); free(c->x1); free(c->q); free(c->k); free(c->v); free(c->att); free(c->h); free(c->f);
    c->x = c->x1 = c->q = c->k = c->v = c->att = c->h = c->f = NULL;
    c->cap_rows = 0;
}

static void ctx_free_seqs(pd_ctx *c) {
    free(c->order); free(c->off); free(c->tot); free(c->delta);
    free(c->grp_row); free(c->grp_rows); free(c->grp_delta);
    free(c->qoff); free(c->qlen); free(c->vgrp_row); free(c->vgrp_rows);
    c->order = c->off = c->tot = c->grp_row = c->grp_rows = NULL;
    c->qoff = c->qlen = c->vgrp_row = c->vgrp_rows = NULL;
    c->delta = c->grp_delta = NULL;
    c->cap_seqs = 0;
}

static void ctx_free_train(pd_ctx *c) {
    free(c->tbuf); free(c->X); free(c->S); free(c->gbuf); free(c->pk); free(c->pv);
    c->tbuf = c->gbuf = c->pk = c->pv = NULL;
    c->X = NULL;
    c->S = NULL;
    c->cap_train_rows = 0;
    c->cap_prefix = 0;
}

void pd_ctx_free(pd_ctx *c) {
    if (!c) return;
    ctx_free_rows(c);
    ctx_free_seqs(c);
    ctx_free_train(c);
    free(c->scratch);
    free(c->vx);
    free(c->vout);
    free(c->tok_id);
    free(c->tok_pos);
    free(c->tok_type);
    free(c->erow);
    free(c);
}

pd_pool *pd_ctx_pool(pd_ctx *c) { return c->pool; }

void pd_ctx_set_training(pd_ctx *c, int on) { c->train = on; }

void pd_ctx_set_grad(pd_ctx *c, const pd_params *g) {
    PD_ASSERT(!g || (g->cfg.hidden == c->m->cfg.hidden && g->cfg.layers == c->m->cfg.layers &&
                     g->cfg.vocab == c->m->cfg.vocab && g->cfg.ffn == c->m->cfg.ffn));
    c->grad = g;
}

int pd_ctx_row(const pd_ctx *c, int i) {
    PD_ASSERT(i >= 0 && i < c->n);
    return c->off[i];
}

/* Gradient scratch layout (floats per row): dx, dx1, dh, datt, dq, dk, dv (hidden each), da (ffn). */
#define GRAD_PER_ROW(H, F) (7 * (size_t)(H) + (size_t)(F))

static int ctx_reserve(pd_ctx *c, int rows, int nseq, size_t scratch, int max_prefix) {
    const pd_config *cf = &c->m->cfg;
    size_t H = (size_t)cf->hidden, F = (size_t)cf->ffn, L = (size_t)cf->layers;
    if (!c->train && rows > c->cap_rows) {
        ctx_free_rows(c);
        size_t b = (size_t)rows * H * sizeof(float);
        c->x = malloc(b); c->x1 = malloc(b); c->q = malloc(b); c->k = malloc(b);
        c->v = malloc(b); c->att = malloc(b); c->h = malloc(b);
        c->f = malloc((size_t)rows * F * sizeof(float));
        if (!c->x || !c->x1 || !c->q || !c->k || !c->v || !c->att || !c->h || !c->f) { ctx_free_rows(c); return -1; }
        c->cap_rows = rows;
    }
    if (c->train && (rows > c->cap_train_rows || max_prefix * nseq > c->cap_prefix)) {
        ctx_free_train(c);
        size_t R = (size_t)rows;
        size_t per_layer = 7 * H + 2 * F;
        c->tbuf = malloc(sizeof(float) * R * ((L + 2) * H + L * per_layer));
        c->X = malloc(sizeof(float *) * (L + 1));
        c->S = malloc(sizeof(saved_layer) * L);
        c->gbuf = malloc(sizeof(float) * R * (GRAD_PER_ROW(H, F) + H));
        size_t pf = (size_t)(max_prefix > 0 ? max_prefix : 1) * (size_t)nseq * H;
        c->pk = malloc(sizeof(float) * pf);
        c->pv = malloc(sizeof(float) * pf);
        if (!c->tbuf || !c->X || !c->S || !c->gbuf || !c->pk || !c->pv) { ctx_free_train(c); return -1; }
        float *p = c->tbuf;
        for (size_t l = 0; l <= L; l++, p += R * H) c->X[l] = p;
        c->emb = p; p += R * H;
        for (size_t l = 0; l < L; l++) {
            saved_layer *s = &c->S[l];
            s->q = p; p += R * H; s->k = p; p += R * H; s->v = p; p += R * H; s->att = p; p += R * H;
            s->h1 = p; p += R * H; s->x1 = p; p += R * H; s->h2 = p; p += R * H;
            s->f = p; p += R * F; s->a = p; p += R * F;
        }
        c->dhidden = c->gbuf + R * GRAD_PER_ROW(H, F);
        c->cap_train_rows = rows;
        c->cap_prefix = max_prefix * nseq;
    }
    if (nseq > c->cap_seqs) {
        ctx_free_seqs(c);
        size_t n = (size_t)nseq;
        c->order = malloc(n * sizeof(int)); c->off = malloc(n * sizeof(int)); c->tot = malloc(n * sizeof(int));
        c->delta = malloc(n * sizeof(*c->delta)); c->grp_row = malloc(n * sizeof(int));
        c->grp_rows = malloc(n * sizeof(int)); c->grp_delta = malloc(n * sizeof(*c->grp_delta));
        c->qoff = malloc(n * sizeof(int)); c->qlen = malloc(n * sizeof(int));
        c->vgrp_row = malloc(n * sizeof(int)); c->vgrp_rows = malloc(n * sizeof(int));
        if (!c->order || !c->off || !c->tot || !c->delta || !c->grp_row || !c->grp_rows || !c->grp_delta || !c->qoff ||
            !c->qlen || !c->vgrp_row || !c->vgrp_rows) { ctx_free_seqs(c); return -1; }
        c->cap_seqs = nseq;
    }
    if (scratch > c->cap_scratch) {
        free(c->scratch);
        c->scratch = malloc(scratch * sizeof(float));
        if (!c->scratch) { c->cap_scratch = 0; return -1; }
        c->cap_scratch = scratch;
    }
    return 0;
}

/* Attention over (sequence, head) pairs taken from a shared counter; task t uses slice t.
 * Keys and values are every row of a sequence; its queries (q, out, dout, dq) are the same rows,
 * or with qoff != NULL the sequence's qlen rows at qoff in the top layer's view. */
typedef struct {
    pd_ctx *c;
    int layer;
    int npairs;
    int next;           /* taken with __atomic */
    const int *qoff;    /* NULL: queries are the sequence's own rows */
    const float *q, *k, *v;
    float *out;
    /* backward only */
    const float *dout;
    float *dq, *dk, *dv;
} attn_job;

/* Query rows of sequence s in the job; *qrow gets the first one. */
static int attn_queries(const attn_job *j, int s, size_t *qrow) {
    const pd_ctx *c = j->c;
    *qrow = (size_t)(j->qoff ? j->qoff[s] : c->off[s]);
    return j->qoff ? c->qlen[s] : c->tot[s];
}

/* Scores and probabilities of one (sequence, head): sc (Lq, P + L), prefix columns first. */
static void attn_probs(const attn_job *j, int s, int hh, float *sc) {
    const pd_ctx *c = j->c;
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden, dh = H / cf->heads;
    float scale = 1.0f / sqrtf((float)dh);
    int o = c->off[s], L = c->tot[s];
    size_t qr;
    int Lq = attn_queries(j, s, &qr);
    const pd_delta *d = c->delta[s];
    int P = d ? d->n_prefix : 0, ld = P + L;
    const float *Q = j->q + qr * H + hh * dh;
    const float *K = j->k + (size_t)o * H + hh * dh;
    if (P) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, P, dh, scale, Q, H, d->prefix_k[j->layer] + hh * dh, H,
                       0.0f, sc, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, L, dh, scale, Q, H, K, H, 0.0f, sc + P, ld);
    pd_softmax_rows(sc, Lq, ld);
}

static void attn_task(void *arg, int t) {
    attn_job *j = arg;
    pd_ctx *c = j->c;
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden, nh = cf->heads, dh = H / nh;
    float *sc = c->scratch + (size_t)t * c->slice;
    for (;;) {
        int p = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (p >= j->npairs) break;
        int s = p / nh, hh = p % nh;
        int o = c->off[s], L = c->tot[s];
        size_t qr;
        int Lq = attn_queries(j, s, &qr);
        const pd_delta *d = c->delta[s];
        int P = d ? d->n_prefix : 0, ld = P + L;
        attn_probs(j, s, hh, sc);
        const float *V = j->v + (size_t)o * H + hh * dh;
        float *out = j->out + qr * H + hh * dh;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, dh, L, 1.0f, sc + P, ld, V, H, 0.0f, out, H);
        if (P) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, dh, P, 1.0f, sc, ld, d->prefix_v[j->layer] + hh * dh, H,
                           1.0f, out, H);
    }
}

/* The top layer's view: dst (view rows) gets each sequence's query rows of src (all rows);
 * view_scatter copies them back. */
static void view_gather(const pd_ctx *c, const float *src, float *dst) {
    size_t H = (size_t)c->m->cfg.hidden;
    for (int i = 0; i < c->n; i++)
        memcpy(dst + (size_t)c->qoff[i] * H, src + (size_t)c->off[i] * H, sizeof(float) * H * (size_t)c->qlen[i]);
}

static void view_scatter(const pd_ctx *c, const float *src, float *dst) {
    size_t H = (size_t)c->m->cfg.hidden;
    for (int i = 0; i < c->n; i++)
        memcpy(dst + (size_t)c->off[i] * H, src + (size_t)c->qoff[i] * H, sizeof(float) * H * (size_t)c->qlen[i]);
}

/* Switches the delta groups' row ranges between all rows and the view (called in pairs). */
static void swap_groups(pd_ctx *c) {
    int *t = c->grp_row;
    c->grp_row = c->vgrp_row;
    c->vgrp_row = t;
    t = c->grp_rows;
    c->grp_rows = c->vgrp_rows;
    c->vgrp_rows = t;
}

/* y = x W^T + b over all rows, then each delta's linear callback on its own rows. */
static void linear_with_deltas(pd_ctx *c, int layer, pd_lin which, const float *x, int in, const pd_wmat *w,
                               const float *b, int out, float *y, int rows) {
    pd_wmat_linear(c->pool, w, x, rows, b, y, 0);
    for (int g = 0; g < c->n_grp; g++) {
        const pd_delta *d = c->grp_delta[g];
        if (!d || !d->linear) continue;
        int r0 = c->grp_row[g];
        d->linear(d, layer, which, x + (size_t)r0 * in, y + (size_t)r0 * out, c->grp_rows[g], in, out, w, b, c->pool);
    }
}

/* out = LayerNorm(h + resid) over all rows; then deltas with a sub-layer callback redo theirs. */
static void sublayer_with_deltas(pd_ctx *c, int layer, pd_site site, const float *h, const float *resid, const float *lw,
                                 const float *lb, float *out, int rows) {
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden;
    pd_layernorm(c->pool, h, resid, lw, lb, cf->ln_eps, rows, H, out);
    for (int g = 0; g < c->n_grp; g++) {
        const pd_delta *d = c->grp_delta[g];
        if (!d || !d->sublayer) continue;
        size_t r0 = (size_t)c->grp_row[g] * H;
        d->sublayer(d, layer, site, h + r0, resid + r0, lw, lb, cf->ln_eps, c->grp_rows[g], H, out + r0, c->pool);
    }
}

pd_status pd_forward(pd_ctx *c, const pd_seq *seqs, int n, char *err, size_t errlen) {
    const pd_model *m = c->m;
    const pd_config *cf = &m->cfg;
    int H = cf->hidden;
    if (n <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty batch");
    long rows = 0;
    int maxL = 0, maxP = 0;
    for (int i = 0; i < n; i++) {
        const pd_seq *s = &seqs[i];
        const pd_delta *d = s->delta;
        int np = d ? d->n_prompt : 0, pf = d ? d->n_prefix : 0;
        if (s->len <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "sequence %d is empty", i);
        if ((long)s->len + np + pf > cf->max_tokens)
            return pd_err(err, errlen, PD_ERR_INVALID, "sequence %d has %d tokens (+%d virtual), more than the model's %d", i,
                          s->len, np + pf, cf->max_tokens);
        for (int t = 0; t < s->len; t++) {
            if (s->ids[t] < 0 || s->ids[t] >= cf->vocab)
                return pd_err(err, errlen, PD_ERR_INVALID, "sequence %d: token id %d outside the vocabulary", i, s->ids[t]);
            if (s->type_ids && cf->arch != PD_ARCH_DISTILBERT && (s->type_ids[t] < 0 || s->type_ids[t] >= cf->type_vocab))
                return pd_err(err, errlen, PD_ERR_INVALID, "sequence %d: token type %d outside 0..%d", i, s->type_ids[t], cf->type_vocab - 1);
        }
        rows += s->len + np;
        if (s->len + np > maxL) maxL = s->len + np;
        if (pf > maxP) maxP = pf;
    }
    int nt = pd_pool_size(c->pool);
    /* scores + their gradient (training) per pool thread */
    size_t slice = (size_t)maxL * (size_t)(maxL + maxP) * (c->train ? 2 : 1);
    if (rows > (1L << 24) || ctx_reserve(c, (int)rows, n, slice * (size_t)nt, maxP))
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for a batch of %ld tokens", rows);
    c->slice = slice;
    c->n = n;
    c->rows = (int)rows;
    /* Stable insertion sort by delta pointer: reentrant, and batches are small. */
    for (int i = 0; i < n; i++) c->order[i] = i;
    for (int i = 1; i < n; i++) {
        int v = c->order[i], j = i - 1;
        uintptr_t dv = (uintptr_t)seqs[v].delta;
        while (j >= 0 && (uintptr_t)seqs[c->order[j]].delta > dv) { c->order[j + 1] = c->order[j]; j--; }
        c->order[j + 1] = v;
    }
    int r = 0;
    c->n_grp = 0;
    for (int k = 0; k < n; k++) {
        int i = c->order[k];
        const pd_delta *d = seqs[i].delta;
        c->off[i] = r;
        c->tot[i] = seqs[i].len + (d ? d->n_prompt : 0);
        c->delta[i] = d;
        if (c->n_grp == 0 || c->grp_delta[c->n_grp - 1] != d) {
            c->grp_delta[c->n_grp] = d;
            c->grp_row[c->n_grp] = r;
            c->grp_rows[c->n_grp] = 0;
            c->n_grp++;
        }
        c->grp_rows[c->n_grp - 1] += c->tot[i];
        r += c->tot[i];
    }
    /* The top layer's view: the query rows of every sequence, packed in the same order, and the
     * delta groups over them. */
    int vr = 0;
    for (int k = 0, g = -1; k < n; k++) {
        int i = c->order[k];
        if (g < 0 || c->grp_delta[g] != c->delta[i]) {
            g++;
            c->vgrp_row[g] = vr;
            c->vgrp_rows[g] = 0;
        }
        c->qoff[i] = vr;
        c->qlen[i] = seqs[i].first_only ? 1 : c->tot[i];
        c->vgrp_rows[g] += c->qlen[i];
        vr += c->qlen[i];
    }
    c->view_rows = vr;
    c->view = vr < r;
    if (c->view && vr > c->cap_view) {
        free(c->vx);
        free(c->vout);
        c->vx = malloc(sizeof(float) * (size_t)vr * H);
        c->vout = malloc(sizeof(float) * (size_t)vr * H);
        c->cap_view = c->vx && c->vout ? vr : 0;
        if (!c->cap_view) {
            c->n = 0;
            return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for a batch of %ld tokens", rows);
        }
    }
    if (c->train && rows > c->cap_tok) {
        free(c->tok_id);
        free(c->tok_pos);
        free(c->tok_type);
        c->tok_id = malloc(sizeof(int32_t) * (size_t)rows);
        c->tok_pos = malloc(sizeof(int32_t) * (size_t)rows);
        c->tok_type = malloc(sizeof(int32_t) * (size_t)rows);
        c->cap_tok = c->tok_id && c->tok_pos && c->tok_type ? (int)rows : 0;
        if (!c->cap_tok) {
            c->n = 0;
            return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for a batch of %ld tokens", rows);
        }
    }
    /* Embeddings: word (or soft prompt) + position + token type, then LayerNorm. Real tokens
     * sit after the prompt and the prefix: position = offset + n_prompt + n_prefix + t, as
     * transformers does with inputs_embeds and past_key_values_length. */
    float *emb = c->train ? c->emb : c->x;
    for (int i = 0; i < n; i++) {
        const pd_seq *s = &seqs[i];
        const pd_delta *d = s->delta;
        int np = d ? d->n_prompt : 0, pf = d ? d->n_prefix : 0;
        for (int t = 0; t < c->tot[i]; t++) {
            float *row = emb + (size_t)(c->off[i] + t) * H;
            int real = t - np;
            const float *we = real < 0 ? d->prompt + (size_t)t * H : emb_row(&m->word, s->ids[real], c->erow);
            int pos = cf->pos_offset + pf + t;
            const float *pe = m->pos_emb + (size_t)pos * H;
            int ty = (real >= 0 && s->type_ids) ? s->type_ids[real] : 0;
            if (m->type_emb) {
                const float *te = m->type_emb + (size_t)ty * H;
                for (int e = 0; e < H; e++) row[e] = we[e] + pe[e] + te[e];
            } else {
                for (int e = 0; e < H; e++) row[e] = we[e] + pe[e];
            }
            if (c->train) {
                size_t rr = (size_t)(c->off[i] + t);
                c->tok_id[rr] = real < 0 ? -1 : s->ids[real];
                c->tok_pos[rr] = pos;
                c->tok_type[rr] = m->type_emb ? ty : -1;
            }
        }
    }
    int R = (int)rows;
    float *x = c->train ? c->X[0] : c->x;
    pd_layernorm(c->pool, emb, NULL, m->emb_ln_w, m->emb_ln_b, cf->ln_eps, R, H, x);
    for (int l = 0; l < cf->layers; l++) {
        const pd_layer *L = &m->layer[l];
        saved_layer b = {c->q, c->k, c->v, c->att, c->h, c->x1, c->f, c->f, c->h};
        if (c->train) b = c->S[l];
        float *xo = c->train ? c->X[l + 1] : c->x; /* inference writes the output over the input */
        /* The top layer with a view: keys and values from every row, everything else on the view
         * rows only (q, att, h1, x1, f, a, h2 hold view rows; the output is scattered back). */
        int top = c->view && l == cf->layers - 1, Rq = top ? c->view_rows : R;
        const float *xq = x;
        if (top) {
            view_gather(c, x, c->vx);
            xq = c->vx;
            swap_groups(c);
        }
        /* Q first: a delta's callbacks may count passes from layer 0's query (peft.c's dropout keys) */
        linear_with_deltas(c, l, PD_LIN_Q, xq, H, L->wq, L->bq, H, b.q, Rq);
        if (top) swap_groups(c);
        linear_with_deltas(c, l, PD_LIN_K, x, H, L->wk, L->bk, H, b.k, R);
        linear_with_deltas(c, l, PD_LIN_V, x, H, L->wv, L->bv, H, b.v, R);
        if (top) swap_groups(c);
        attn_job aj = {c, l, n * cf->heads, 0, top ? c->qoff : NULL, b.q, b.k, b.v, b.att, NULL, NULL, NULL, NULL};
        pd_pool_run(c->pool, attn_task, &aj, nt);
        linear_with_deltas(c, l, PD_LIN_O, b.att, H, L->wo, L->bo, H, b.h1, Rq);
        sublayer_with_deltas(c, l, PD_SITE_ATTN, b.h1, xq, L->ln1_w, L->ln1_b, b.x1, Rq);
        linear_with_deltas(c, l, PD_LIN_FFN1, b.x1, H, L->w1, L->b1, cf->ffn, b.f, Rq);
        pd_act_apply_to(c->pool, cf->act, b.f, b.a, (size_t)Rq * cf->ffn); /* training keeps f; inference: a == f */
        linear_with_deltas(c, l, PD_LIN_FFN2, b.a, cf->ffn, L->w2, L->b2, H, b.h2, Rq);
        sublayer_with_deltas(c, l, PD_SITE_FFN, b.h2, b.x1, L->ln2_w, L->ln2_b, top ? c->vout : xo, Rq);
        if (top) {
            swap_groups(c);
            view_scatter(c, c->vout, xo);
        }
        x = xo;
    }
    return PD_OK;
}

static const float *final_hidden(const pd_ctx *c) { return c->train ? c->X[c->m->cfg.layers] : c->x; }

const float *pd_ctx_hidden_all(const pd_ctx *c, int *rows) {
    if (rows) *rows = c->rows;
    return final_hidden(c);
}

const float *pd_ctx_hidden(const pd_ctx *c, int i, int *len) {
    PD_ASSERT(i >= 0 && i < c->n);
    if (len) *len = c->tot[i];
    return final_hidden(c) + (size_t)c->off[i] * c->m->cfg.hidden;
}

/* Runs head layers over rows of x; keeps every layer's output in acts[k] (rows, out_k) when
 * acts != NULL (training). Returns the final output (malloc'd) or NULL. */
static float *head_run(const pd_head *head, const float *x, int rows, int H, float **acts) {
    int in = H;
    const float *cur = x;
    float *res = NULL;
    for (int k = 0; k < head->n_layers; k++) {
        const pd_head_layer *hl = &head->layer[k];
        if (hl->in != in) { free(res); return NULL; }
        float *y = malloc(sizeof(float) * (size_t)rows * hl->out);
        if (!y) { free(res); return NULL; }
        pd_linear(NULL, cur, rows, hl->in, hl->w, hl->b, hl->out, y);
        pd_act_apply(NULL, hl->act, y, (size_t)rows * hl->out);
        if (acts) acts[k] = y;
        else { free(res); res = y; }
        cur = y;
        in = hl->out;
    }
    if (acts) {
        res = malloc(sizeof(float) * (size_t)rows * in);
        if (res) memcpy(res, cur, sizeof(float) * (size_t)rows * in);
    }
    return res;
}

int pd_ctx_head(pd_ctx *c, int i, const pd_head *head, float *out, int cap) {
    PD_ASSERT(i >= 0 && i < c->n);
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden;
    if (!head || head->n_layers < 1 || head->n_layers > PD_HEAD_MAX_LAYERS || head->layer[0].in != H) return -1;
    int np = c->delta[i] ? c->delta[i]->n_prompt : 0;
    if (head->task == PD_TASK_QA && c->qlen[i] < c->tot[i]) return -1; /* first_only: one row was computed */
    int rows = head->task == PD_TASK_QA ? c->tot[i] - np : 1;
    const float *x = final_hidden(c) + (size_t)(c->off[i] + (head->task == PD_TASK_QA ? np : 0)) * H;
    float *y = head_run(head, x, rows, H, NULL);
    if (!y) return -1;
    int outw = head->layer[head->n_layers - 1].out, n;
    if (head->task == PD_TASK_QA) {
        n = 2 * rows;
        if (outw != 2 || n > cap) { free(y); return -1; }
        for (int t = 0; t < rows; t++) { out[t] = y[2 * t]; out[rows + t] = y[2 * t + 1]; }
    } else {
        n = outw;
        if (n > cap) { free(y); return -1; }
        memcpy(out, y, sizeof(float) * (size_t)n);
    }
    free(y);
    return n;
}

/* ==== Backward pass (training) ==== */

float *pd_ctx_grad_hidden(pd_ctx *c) {
    if (!c->train || !c->dhidden) return NULL;
    memset(c->dhidden, 0, sizeof(float) * (size_t)c->rows * c->m->cfg.hidden);
    return c->dhidden;
}

/* Cross-entropy of logits z (n) against target, its gradient into dz (scaled). */
static float xent(const float *z, int n, int target, float scale, float *dz) {
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++) if (z[i] > mx) mx = z[i];
    for (int i = 0; i < n; i++) s += exp(z[i] - mx);
    for (int i = 0; i < n; i++) dz[i] = (float)(exp(z[i] - mx) / s) * scale;
    dz[target] -= scale;
    return (float)(log(s) + mx - z[target]);
}

float pd_ctx_head_loss(pd_ctx *c, int i, const pd_head *head, const pd_head *grad, int label, int start, int end,
                       float scale, float *out) {
    PD_ASSERT(c->train && i >= 0 && i < c->n);
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden;
    int np = c->delta[i] ? c->delta[i]->n_prompt : 0;
    int qa = head->task == PD_TASK_QA;
    if (qa && c->qlen[i] < c->tot[i]) return NAN; /* first_only: one row was computed */
    int rows = qa ? c->tot[i] - np : 1;
    size_t row0 = (size_t)(c->off[i] + (qa ? np : 0));
    const float *x = c->X[cf->layers] + row0 * H;
    if (!qa && (label < 0 || label >= head->layer[head->n_layers - 1].out)) return NAN;
    if (rows < 1 || (qa && (start < 0 || start >= rows || end < 0 || end >= rows))) return NAN;
    float *acts[PD_HEAD_MAX_LAYERS] = {0};
    float *y = head_run(head, x, rows, H, acts);
    if (!y) {
        for (int k = 0; k < PD_HEAD_MAX_LAYERS; k++) free(acts[k]); /* the layers before the one that failed */
        return NAN;
    }
    int K = head->n_layers, outw = head->layer[K - 1].out;
    float *dy = calloc((size_t)rows * outw, sizeof(float));
    float loss;
    if (!dy) goto nomem;
    if (!qa) {
        if (out) memcpy(out, y, sizeof(float) * (size_t)outw);
        loss = xent(y, outw, label, scale, dy);
    } else {
        /* HF: (CE(start) + CE(end)) / 2 over the positions of the sequence */
        float *zs = calloc((size_t)rows * 2, sizeof(float)), *dz = calloc((size_t)rows * 2, sizeof(float));
        if (!zs || !dz || !dy) {
            free(zs); free(dz); free(dy); free(y);
            for (int k = 0; k < K; k++) free(acts[k]);
            return NAN;
        }
        for (int t = 0; t < rows; t++) { zs[t] = y[2 * t]; zs[rows + t] = y[2 * t + 1]; }
        if (out) memcpy(out, zs, sizeof(float) * (size_t)rows * 2);
        loss = 0.5f * (xent(zs, rows, start, 0.5f * scale, dz) + xent(zs + rows, rows, end, 0.5f * scale, dz + rows));
        for (int t = 0; t < rows; t++) { dy[2 * t] = dz[t]; dy[2 * t + 1] = dz[rows + t]; }
        free(zs);
        free(dz);
    }
    /* back through the head layers */
    for (int k = K - 1; k >= 0; k--) {
        const pd_head_layer *hl = &head->layer[k];
        /* dy is the gradient of this layer's activated output; make it pre-activation */
        if (hl->act != PD_ACT_NONE) {
            /* derivative from the output value for tanh/relu/sigmoid; others from pre-activation
             * (recomputed from the layer input) */
            const float *in = k ? acts[k - 1] : x;
            float *pre = malloc(sizeof(float) * (size_t)rows * hl->out);
            if (!pre) goto nomem;
            pd_linear(NULL, in, rows, hl->in, hl->w, hl->b, hl->out, pre);
            for (size_t e = 0; e < (size_t)rows * hl->out; e++) dy[e] *= pd_act1_grad(hl->act, pre[e]);
            free(pre);
        }
        const float *in = k ? acts[k - 1] : x;
        if (grad) {
            const pd_head_layer *gl = &grad->layer[k];
            /* dW += dy^T in, db += sum dy */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hl->out, hl->in, rows, 1.0f, dy, hl->out, in, hl->in, 1.0f,
                        (float *)gl->w, hl->in);
            if (gl->b)
                for (int r = 0; r < rows; r++)
                    for (int o = 0; o < hl->out; o++) ((float *)gl->b)[o] += dy[(size_t)r * hl->out + o];
        }
        float *din = calloc((size_t)rows * hl->in, sizeof(float));
        if (!din) goto nomem;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hl->in, hl->out, 1.0f, dy, hl->out, hl->w, hl->in, 0.0f, din,
                    hl->in);
        free(dy);
        dy = din;
    }
    float *dh = c->dhidden + row0 * H;
    for (size_t e = 0; e < (size_t)rows * H; e++) dh[e] += dy[e];
    free(dy);
    for (int k = 0; k < K; k++) free(acts[k]);
    free(y);
    return loss;
nomem: /* out of memory (test_allocfail): NAN, as for the other failures */
    free(dy);
    for (int k = 0; k < K; k++) free(acts[k]);
    free(y);
    return NAN;
}

/* LayerNorm backward for rows: s = h + resid (recomputed), y = LN(s) * w + b; writes ds
 * (train_kernels.c: float sums in 8 lanes; ds must not alias the inputs). */
static void layernorm_bwd(const float *h, const float *resid, const float *w, float eps, int rows, int dim,
                          const float *dy, float *ds) {
    pd_layernorm_bwd_rows(h, resid, w, eps, rows, dim, dy, ds);
}

typedef struct {
    pd_ctx *c;
    const float *h, *resid, *w, *dy;
    float *ds;
    int rows, dim, chunk;
    float eps;
} lnb_job;

static void lnb_task(void *arg, int t) {
    lnb_job *j = arg;
    int r0 = t * j->chunk, r1 = r0 + j->chunk;
    if (r1 > j->rows) r1 = j->rows;
    if (r0 >= r1) return;
    size_t o = (size_t)r0 * j->dim;
    layernorm_bwd(j->h + o, j->resid ? j->resid + o : NULL, j->w, j->eps, r1 - r0, j->dim, j->dy + o, j->ds + o);
}

/* ds = the LayerNorm backward of out = LN(h + resid) * w + b over rows, split across the pool. */
static void layernorm_bwd_pool(pd_ctx *c, const float *h, const float *resid, const float *w, const float *dout, float *ds,
                               int rows) {
    const pd_config *cf = &c->m->cfg;
    int nt = pd_pool_size(c->pool);
    lnb_job j = {c, h, resid, w, dout, ds, rows, cf->hidden, (rows + nt - 1) / nt, cf->ln_eps};
    pd_pool_run(c->pool, lnb_task, &j, (rows + j.chunk - 1) / j.chunk);
}

/* The weight-gradient sink's arrays for a LayerNorm site or a linear layer of layer l. */
static void grad_ln(const pd_ctx *c, int l, pd_site site, float **dw, float **db) {
    const pd_layer_params *G = &c->grad->layer[l];
    *dw = site == PD_SITE_ATTN ? G->ln1_w : G->ln2_w;
    *db = site == PD_SITE_ATTN ? G->ln1_b : G->ln2_b;
}

static void grad_lin(const pd_ctx *c, int l, pd_lin which, float **dw, float **db) {
    const pd_layer_params *G = &c->grad->layer[l];
    switch (which) {
    case PD_LIN_Q: *dw = G->wq; *db = G->bq; return;
    case PD_LIN_K: *dw = G->wk; *db = G->bk; return;
    case PD_LIN_V: *dw = G->wv; *db = G->bv; return;
    case PD_LIN_O: *dw = G->wo; *db = G->bo; return;
    case PD_LIN_FFN1: *dw = G->w1; *db = G->b1; return;
    case PD_LIN_FFN2: *dw = G->w2; *db = G->b2; return;
    case PD_LIN_COUNT: break;
    }
    PD_ASSERT(0);
}

/* Backward of the sub-layer "out = LN(h + resid)" (or a delta's replacement): writes dh and
 * dresid. For the base, dh = dresid = ds; with a gradient sink, the LayerNorm's weight and bias
 * gradients are added to it. */
static void sublayer_bwd(pd_ctx *c, int layer, pd_site site, const float *h, const float *resid, const float *lw, const float *lb,
                         const float *dout, float *dh, float *dresid, int rows) {
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden;
    layernorm_bwd_pool(c, h, resid, lw, dout, dh, rows);
    if (c->grad) {
        float *gw, *gb;
        grad_ln(c, layer, site, &gw, &gb);
        if (pd_layernorm_param_grad(c->pool, h, resid, cf->ln_eps, rows, H, dout, gw, gb)) c->grad_oom = 1;
    }
    memcpy(dresid, dh, sizeof(float) * (size_t)rows * H);
    for (int g = 0; g < c->n_grp; g++) {
        const pd_delta *d = c->grp_delta[g];
        if (!d || !d->sublayer_bwd) continue;
        size_t r0 = (size_t)c->grp_row[g] * H;
        d->sublayer_bwd(d, layer, site, h + r0, resid + r0, lw, lb, cf->ln_eps, c->grp_rows[g], H, dout + r0, dh + r0, dresid + r0,
                        c->pool);
    }
}

/* dx (=, or += when accumulate) dy W for a linear y = x W^T + b, plus the deltas' backward; with
 * a gradient sink also dW += dy^T x and db += the column sums of dy. */
static void linear_bwd(pd_ctx *c, int layer, pd_lin which, const float *x, int in, const pd_wmat *w, const float *b, int out,
                       const float *dy, float *dx, int accumulate, int rows) {
    if (dx) pd_wmat_dx(c->pool, w, dy, rows, dx, accumulate);
    if (c->grad) {
        float *gw, *gb;
        grad_lin(c, layer, which, &gw, &gb);
        pd_gemm(c->pool, 1, 0, out, in, rows, 1.0f, dy, out, x, in, 1.0f, gw, in);
        pd_grad_bias_add(c->pool, dy, rows, out, gb);
    }
    for (int g = 0; g < c->n_grp; g++) {
        const pd_delta *d = c->grp_delta[g];
        if (!d || !d->linear_bwd) continue;
        int r0 = c->grp_row[g];
        d->linear_bwd(d, layer, which, x + (size_t)r0 * in, dy + (size_t)r0 * out, dx ? dx + (size_t)r0 * in : NULL,
                      c->grp_rows[g], in, out, w, b, c->pool);
    }
}

/* Attention backward per (sequence, head): recomputes the probabilities, then
 * dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dP P)), dQ = s dS K, dK = s dS^T Q. Prefix
 * gradients go to c->pk / c->pv at the sequence's slot. */
static void attn_bwd_task(void *arg, int t) {
    attn_job *j = arg;
    pd_ctx *c = j->c;
    const pd_config *cf = &c->m->cfg;
    int H = cf->hidden, nh = cf->heads, dh = H / nh;
    float scale = 1.0f / sqrtf((float)dh);
    float *sc = c->scratch + (size_t)t * c->slice;
    int maxp = c->cap_prefix / (c->n ? c->n : 1);
    for (;;) {
        int p = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (p >= j->npairs) break;
        int s = p / nh, hh = p % nh;
        int o = c->off[s], L = c->tot[s];
        size_t qr;
        int Lq = attn_queries(j, s, &qr);
        const pd_delta *d = c->delta[s];
        int P = d ? d->n_prefix : 0, ld = P + L;
        float *dp = sc + (size_t)Lq * ld;
        size_t base = (size_t)o * H + hh * dh, qbase = qr * H + hh * dh;
        /* the probabilities again: attn_probs' products and the forward's softmax kernel */
        if (P) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, P, dh, scale, j->q + qbase, H,
                           d->prefix_k[j->layer] + hh * dh, H, 0.0f, sc, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, L, dh, scale, j->q + qbase, H, j->k + base, H, 0.0f, sc + P, ld);
        pd_softmax_rows_ld(sc, Lq, ld, ld);
        const float *dO = j->dout + qbase;
        /* dP = dO [Vp; V]^T */
        if (P) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, P, dh, 1.0f, dO, H, d->prefix_v[j->layer] + hh * dh, H, 0.0f,
                           dp, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, L, dh, 1.0f, dO, H, j->v + base, H, 0.0f, dp + P, ld);
        /* dV = P^T dO */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, dh, Lq, 1.0f, sc + P, ld, dO, H, 0.0f, j->dv + base, H);
        float *pk = NULL, *pv = NULL;
        if (P) {
            pk = c->pk + (size_t)s * maxp * H + hh * dh;
            pv = c->pv + (size_t)s * maxp * H + hh * dh;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, dh, Lq, 1.0f, sc, ld, dO, H, 0.0f, pv, H);
        }
        /* dS = P * (dP - sum(dP * P)) * scale, in place in dp */
        pd_softmax_bwd_rows(sc, dp, Lq, ld, ld, scale);
        /* dQ = dS [Kp; K] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, dh, L, 1.0f, dp + P, ld, j->k + base, H, 0.0f, j->dq + qbase, H);
        if (P) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, dh, P, 1.0f, dp, ld, d->prefix_k[j->layer] + hh * dh, H, 1.0f,
                           j->dq + qbase, H);
        /* dK = dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, dh, Lq, 1.0f, dp + P, ld, j->q + qbase, H, 0.0f, j->dk + base, H);
        if (P) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, dh, Lq, 1.0f, dp, ld, j->q + qbase, H, 0.0f, pk, H);
    }
}

/* Hands each prefix delta the gradient of its layer-l keys and values (attn_bwd_task's pk/pv). */
static void prefix_bwd(pd_ctx *c, int l) {
    int H = c->m->cfg.hidden, maxp = c->cap_prefix / (c->n ? c->n : 1);
    for (int i = 0; i < c->n; i++) {
        const pd_delta *d = c->delta[i];
        if (d && d->n_prefix && d->prefix_bwd) d->prefix_bwd(d, l, c->pk + (size_t)i * maxp * H, c->pv + (size_t)i * maxp * H);
    }
}

/* Backward of layer l: dx (c->gbuf, all rows) holds the gradient of its output and becomes that
 * of its input (if want_dx). A top layer the forward ran on a view (pd_seq.first_only) has
 * output gradient in the view rows only: everything but the keys and values runs on those. */
static void layer_bwd(pd_ctx *c, int l, int want_dx) {
    const pd_config *cf = &c->m->cfg;
    const pd_layer *L = &c->m->layer[l];
    const saved_layer *S = &c->S[l];
    int H = cf->hidden, F = cf->ffn, R = c->rows, nt = pd_pool_size(c->pool);
    size_t RH = (size_t)R * H;
    float *dx = c->gbuf, *dx1 = dx + RH, *dh = dx1 + RH, *datt = dh + RH, *dq = datt + RH, *dk = dq + RH, *dv = dk + RH;
    float *da = dv + RH; /* (R, F) */
    int view = c->view && l == cf->layers - 1, rows = view ? c->view_rows : R;
    const float *x = c->X[l];
    float *dxo = dx; /* the rows below: output gradient, then input gradient */
    if (view) {
        view_gather(c, dx, c->vout);
        view_gather(c, c->X[l], c->vx);
        x = c->vx;
        dxo = c->vout;
        swap_groups(c);
    }
    /* out = LN2(h2 + x1) */
    sublayer_bwd(c, l, PD_SITE_FFN, S->h2, S->x1, L->ln2_w, L->ln2_b, dxo, dh, dx1, rows);
    /* h2 = a W2^T: da = dh W2 */
    linear_bwd(c, l, PD_LIN_FFN2, S->a, F, L->w2, L->b2, H, dh, da, 0, rows);
    pd_act_grad_mul(c->pool, cf->act, S->f, da, (size_t)rows * F);
    /* f = x1 W1^T: dx1 += df W1 */
    linear_bwd(c, l, PD_LIN_FFN1, S->x1, H, L->w1, L->b1, F, da, dx1, 1, rows);
    /* x1 = LN1(h1 + x) */
    sublayer_bwd(c, l, PD_SITE_ATTN, S->h1, x, L->ln1_w, L->ln1_b, dx1, dh, dxo, rows);
    /* h1 = att Wo^T */
    linear_bwd(c, l, PD_LIN_O, S->att, H, L->wo, L->bo, H, dh, datt, 0, rows);
    attn_job aj = {c, l, c->n * cf->heads, 0, view ? c->qoff : NULL, S->q, S->k, S->v, NULL, datt, dq, dk, dv};
    pd_pool_run(c->pool, attn_bwd_task, &aj, nt);
    prefix_bwd(c, l);
    linear_bwd(c, l, PD_LIN_Q, x, H, L->wq, L->bq, H, dq, want_dx ? dxo : NULL, 1, rows);
    if (view) {
        swap_groups(c);
        if (want_dx) {
            memset(dx, 0, sizeof(float) * RH);
            view_scatter(c, dxo, dx);
        }
    }
    /* dK and dV have every row */
    linear_bwd(c, l, PD_LIN_K, c->X[l], H, L->wk, L->bk, H, dk, want_dx ? dx : NULL, 1, R);
    linear_bwd(c, l, PD_LIN_V, c->X[l], H, L->wv, L->bv, H, dv, want_dx ? dx : NULL, 1, R);
}

pd_status pd_backward(pd_ctx *c, char *err, size_t errlen) {
    if (!c->train || !c->n) return pd_err(err, errlen, PD_ERR_INVALID, "pd_backward needs a training forward pass first");
    const pd_model *m = c->m;
    const pd_config *cf = &m->cfg;
    int H = cf->hidden, R = c->rows;
    size_t RH = (size_t)R * H;
    float *dx = c->gbuf, *dh = dx + 2 * RH; /* layer_bwd's layout */
    int need_prompt = 0;
    for (int g = 0; g < c->n_grp; g++)
        if (c->grp_delta[g] && c->grp_delta[g]->n_prompt && c->grp_delta[g]->prompt_bwd) need_prompt = 1;
    if (c->grad)
        for (int i = 0; i < c->n; i++)
            if (c->delta[i])
                return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "weight gradients are computed for batches without deltas only");
    c->grad_oom = 0;
    memcpy(dx, c->dhidden, sizeof(float) * RH); /* dx: gradient of the current layer output */
    /* the input gradient of layer 0 is only needed for a soft prompt or the embeddings' gradients */
    for (int l = cf->layers - 1; l >= 0; l--) layer_bwd(c, l, l > 0 || need_prompt || c->grad);
    if (c->grad) {
        /* X[0] = LN(word + position + type): the LayerNorm, then each lookup's rows */
        const pd_params *g = c->grad;
        layernorm_bwd_pool(c, c->emb, NULL, m->emb_ln_w, dx, dh, R);
        if (pd_layernorm_param_grad(c->pool, c->emb, NULL, cf->ln_eps, R, H, dx, g->emb_ln_w, g->emb_ln_b)) c->grad_oom = 1;
        pd_rows_scatter_add(c->pool, dh, c->tok_id, R, H, g->word_emb);
        pd_rows_scatter_add(c->pool, dh, c->tok_pos, R, H, g->pos_emb);
        if (m->type_emb) pd_rows_scatter_add(c->pool, dh, c->tok_type, R, H, g->type_emb);
        if (c->grad_oom) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for the weight gradients");
    }
    if (need_prompt) {
        /* X[0] = LN(emb): the prompt rows' gradient goes back through the embedding LayerNorm */
        for (int i = 0; i < c->n; i++) {
            const pd_delta *d = c->delta[i];
            if (!d || !d->n_prompt || !d->prompt_bwd) continue;
            size_t r0 = (size_t)c->off[i] * H;
            layernorm_bwd(c->emb + r0, NULL, m->emb_ln_w, cf->ln_eps, d->n_prompt, H, dx + r0, dh + r0);
            d->prompt_bwd(d, dh + r0);
        }
    }
    return PD_OK;
}
