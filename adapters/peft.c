/* peft.c - the Hugging Face PEFT file format: what LoRA, IA3, prefix tuning, prompt tuning and
 * P-tuning adapters share. adapter_config.json + adapter_model.safetensors exactly as PEFT's
 * save_pretrained writes them (get_peft_model_state_dict): peft_type and task_type, tensor and
 * module names, the task head saved through modules_to_save, and a fresh adapter's common
 * config fields and head. The methods are lora.c and prompt.c; peft.h says more about names. */
#include "peft.h"

#include <ctype.h>
#include <string.h>

/* ==== The base model's modules ==== */

static const char *const BERT_LIN[PD_LIN_COUNT] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                                   "attention.output.dense", "intermediate.dense", "output.dense"};
static const char *const DIST_LIN[PD_LIN_COUNT] = {"attention.q_lin", "attention.k_lin", "attention.v_lin",
                                                   "attention.out_lin", "ffn.lin1", "ffn.lin2"};
const char *pd_peft_arch_prefix(pd_arch a) {
    return a == PD_ARCH_BERT ? "bert." : a == PD_ARCH_ROBERTA ? "roberta." : "distilbert.";
}

int pd_peft_is_dist(const pd_adapter *a) { return a->cfg->arch == PD_ARCH_DISTILBERT; }

const char *pd_peft_lin_name(const pd_adapter *a, int k) { return pd_peft_is_dist(a) ? DIST_LIN[k] : BERT_LIN[k]; }

void pd_peft_layer_module(const pd_adapter *a, const char *P, int l, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s.%d%s%s", P, pd_peft_is_dist(a) ? "transformer.layer" : "encoder.layer", l, *suffix ? "." : "", suffix);
}


/* ==== Tensor names ==== */

/* Strips "base_model.model." / "base_model." and removes ".default" segments (the adapter name
 * PEFT's save_pretrained removes but other writers keep). */
int pd_peft_norm_name(const char *in, char *out, size_t cap) {
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
pd_peft_tkind pd_peft_split_name(const char *n, char *mod, size_t cap) {
    static const struct { const char *suf; pd_peft_tkind k; } S[] = {
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
pd_peft_mkind pd_peft_module_kind(const pd_adapter *a, const char *P, const char *mod, int *layer, int *idx, const char **other) {
    pd_arch arch = a->cfg->arch;
    static const pd_arch all[] = {PD_ARCH_BERT, PD_ARCH_DISTILBERT, PD_ARCH_ROBERTA};
    for (int i = 0; i < 3; i++) {
        const char *p = pd_peft_arch_prefix(all[i]);
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

pd_status pd_peft_check_str_list(const cJSON *v, const char *what, int allow_string, char *err, size_t errlen) {
    if (!v) return PD_OK;
    if (allow_string && cJSON_IsString(v)) return PD_OK;
    if (!cJSON_IsArray(v)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"%s\" must be a list of strings%s", what, allow_string ? " or a regex string" : "");
    const cJSON *e;
    cJSON_ArrayForEach(e, v) if (!cJSON_IsString(e)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"%s\" must hold strings", what);
    return PD_OK;
}

/* The backbone prefix the file's module paths use: "bert." (a model with a head) or "" (AutoModel). */
const char *pd_peft_detect_prefix(const pd_adapter *a, const pd_st_file *st) {
    const char *own = pd_peft_arch_prefix(a->cfg->arch);
    int bare = 0;
    for (int i = 0; i < pd_st_count(st); i++) {
        char n[1024];
        if (pd_peft_norm_name(pd_st_at(st, i)->name, n, sizeof n)) continue;
        if (!strncmp(n, own, strlen(own))) return own;
        if (!strncmp(n, "encoder.", 8) || !strncmp(n, "transformer.", 12) || !strncmp(n, "embeddings.", 11) || !strncmp(n, "pooler.", 7)) bare = 1;
    }
    return bare ? "" : own;
}

/* Refuses a file whose module paths belong to another architecture, before the config is
 * matched against this one's modules (which would only say "selects nothing"). */
pd_status pd_peft_arch_scan(const pd_adapter *a, const pd_st_file *st, const char *P, char *err, size_t errlen) {
    for (int i = 0; i < pd_st_count(st); i++) {
        char n[1024], mod[1024];
        if (pd_peft_norm_name(pd_st_at(st, i)->name, n, sizeof n)) continue;
        pd_peft_split_name(n, mod, sizeof mod);
        int layer, idx;
        const char *other = NULL;
        if (pd_peft_module_kind(a, P, mod, &layer, &idx, &other) == M_OTHER_ARCH)
            return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", pd_st_at(st, i)->name, other,
                          pd_arch_name(a->cfg->arch));
    }
    return PD_OK;
}

/* ==== Heads ==== */

pd_status pd_peft_shape_check(const pd_atensor *t, int ndim, int64_t d0, int64_t d1, char *err, size_t errlen) {
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
pd_status pd_peft_head_take(pd_adapter *a, pd_peft_mkind mk, int is_bias, const pd_atensor *t, pd_peft_head *hp, char *err, size_t errlen) {
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
    pd_status s = is_bias ? pd_peft_shape_check(t, 1, d0, 0, err, errlen) : pd_peft_shape_check(t, 2, d0, H, err, errlen);
    if (s) return s;
    if (*slot) return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name);
    PD_ASSERT(hp->n < PD_PEFT_HEAD_SLOTS);
    hp->copy[hp->n] = *t;
    *slot = &hp->copy[hp->n++];
    return PD_OK;
}

/* Builds the adapter's own head from the head tensors it saved (modules_to_save), taking the
 * parts it did not save from the base checkpoint (bert's pooler, distilbert's pre_classifier). */
pd_status pd_peft_build_head(pd_adapter *a, const pd_peft_head *hp, const pd_adapter_files *f, char *err, size_t errlen) {
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

/* ==== Loading and saving ==== */

/* PEFT's names for the methods (peft_type) and tasks (task_type), read and written from one
 * table each; a value's first name is the one written. */
typedef struct { const char *name; int value; } peft_name;
static const peft_name PEFT_TYPES[] = {{"LORA", PD_METHOD_LORA},           {"IA3", PD_METHOD_IA3},
                                       {"PREFIX_TUNING", PD_METHOD_PREFIX}, {"PROMPT_TUNING", PD_METHOD_PROMPT},
                                       {"P_TUNING", PD_METHOD_PROMPT},     {NULL, 0}};
static const peft_name PEFT_TASKS[] = {{"SEQ_CLS", PD_TASK_CLS}, {"QUESTION_ANS", PD_TASK_QA}, {"FEATURE_EXTRACTION", PD_TASK_NONE}, {NULL, 0}};

static int peft_value(const peft_name *t, const char *name) { /* -1: not in the table */
    for (; t->name; t++)
        if (!strcmp(t->name, name)) return t->value;
    return -1;
}

static const char *peft_name_of(const peft_name *t, int value) {
    for (; t->name; t++)
        if (t->value == value) return t->name;
    return NULL;
}

pd_status pd_peft_begin(pd_adapter *a, char *err, size_t errlen) {
    const cJSON *c = a->config;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (!cJSON_IsString(pt)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"peft_type\" must be a string");
    const char *t = pt->valuestring;
    int m = peft_value(PEFT_TYPES, t);
    if (m >= 0) a->method = (pd_method)m;
    else return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "peft_type \"%s\" is not supported (LORA, IA3, PREFIX_TUNING, PROMPT_TUNING, P_TUNING are)", t);
    const cJSON *tt = pd_json_get(c, "task_type");
    if (tt && !cJSON_IsString(tt)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"task_type\" must be a string");
    a->task = PD_TASK_NONE;
    if (tt) {
        int task = peft_value(PEFT_TASKS, tt->valuestring);
        if (task >= 0) a->task = (pd_task)task;
        else
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "task_type \"%s\" is not supported (SEQ_CLS, QUESTION_ANS, FEATURE_EXTRACTION are)", tt->valuestring);
    }
    return pd_peft_check_str_list(pd_json_get(c, "modules_to_save"), "modules_to_save", 0, err, errlen);
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

/* ==== Fresh adapters ==== */

float *pd_peft_tl_add(pd_tlist *tl, const char *name, int ndim, int64_t d0, int64_t d1, int *bad) {
    float *p = pd_tlist_add(tl, name, ndim, d0, d1);
    if (!p) *bad = 1;
    return p;
}

/* A head tensor: the base's values when given (same shape), else HF's _init_weights for a new
 * Linear: weight normal(0, 0.02), bias zero. */
static void tl_head(pd_tlist *tl, const char *pre, const char *mod, int out, int H, const float *w, const float *b, pd_rng *rng, int *bad) {
    char n[256];
    snprintf(n, sizeof n, "%s%s.weight", pre, mod);
    float *pw = pd_peft_tl_add(tl, n, 2, out, H, bad);
    snprintf(n, sizeof n, "%s%s.bias", pre, mod);
    float *pb = pd_peft_tl_add(tl, n, 1, out, 0, bad);
    if (!pw || !pb) return;
    if (w) memcpy(pw, w, sizeof(float) * (size_t)out * H);
    else pd_fill_normal(rng, pw, (size_t)out * H, 0.0, 0.02);
    if (b) memcpy(pb, b, sizeof(float) * (size_t)out);
}

/* The task head PEFT trains through modules_to_save: the base checkpoint's tensors where they
 * fit (HF's from_pretrained keeps every tensor whose shape matches and re-initialises the rest),
 * and parts the base lacks (bert's pooler, distilbert's pre_classifier) saved as trainable
 * modules too, so the adapter never depends on weights a reload would draw anew. */
static void fresh_head(const pd_model *base, const pd_fresh_head *fh, const char *pre, pd_rng *rng, pd_tlist *tl, cJSON *mts, int *bad) {
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
        snprintf(mod, sizeof mod, "%spooler.dense", pd_peft_arch_prefix(cf->arch));
        tl_head(tl, pre, mod, H, H, NULL, NULL, rng, bad);
        cJSON_AddItemToArray(mts, cJSON_CreateString("pooler"));
    }
    if (cf->arch == PD_ARCH_DISTILBERT && !bh) {
        tl_head(tl, pre, "pre_classifier", H, H, NULL, NULL, rng, bad);
        cJSON_AddItemToArray(mts, cJSON_CreateString("pre_classifier"));
    }
    tl_head(tl, pre, "classifier", nl, H, match ? bh->layer[1].w : NULL, match ? bh->layer[1].b : NULL, rng, bad);
}


pd_status pd_peft_fresh_config(pd_method m, const char *what, const cJSON *u, const char *const *keys, const pd_fresh_head *fh,
                               pd_fresh *out, char *err, size_t errlen) {
    pd_status st = pd_json_known(u, PD_PEFT_USER, what, keys, err, errlen);
    if (st) return st;
    cJSON *c = out->config = cJSON_CreateObject();
    if (!c) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int bad = 0;
    const char *task_type = fh->task == PD_TASK_NONE ? NULL : peft_name_of(PEFT_TASKS, fh->task);
    pd_json_add(c, "peft_type", cJSON_CreateString(peft_name_of(PEFT_TYPES, m)), &bad);
    pd_json_add(c, "task_type", task_type ? cJSON_CreateString(task_type) : cJSON_CreateNull(), &bad);
    pd_json_add(c, "base_model_name_or_path", cJSON_CreateNull(), &bad);
    pd_json_add(c, "revision", cJSON_CreateNull(), &bad);
    pd_json_add(c, "inference_mode", cJSON_CreateTrue(), &bad);
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}

pd_status pd_peft_fresh_head(const pd_model *base, const pd_fresh_head *fh, const char *prefix, pd_rng *rng, pd_fresh *out,
                             char *err, size_t errlen) {
    /* modules_to_save: PeftModelForSequenceClassification's ["classifier", "score"], QA's
     * ["qa_outputs"]; prompt learning saves heads under "base_model." */
    cJSON *c = out->config, *mts = cJSON_CreateArray();
    int bad = 0;
    pd_json_add(c, "modules_to_save", mts, &bad);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    fresh_head(base, fh, prefix, rng, &out->w, mts, &bad);
    if (fh->task == PD_TASK_CLS) pd_json_add(c, "labels", cJSON_CreateStringArray((const char *const *)fh->labels, fh->num_labels), &bad);
    if (cJSON_GetArraySize(mts) == 0) cJSON_DeleteItemFromObjectCaseSensitive(c, "modules_to_save");
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}
