/* hub.c - AdapterHub ("adapters" library) bottleneck adapters and prediction heads: seq_bn
 * (pfeiffer), double_seq_bn (houlsby), par_bn (parallel) and any BnConfig, read from the files
 * AdapterHub's save_adapter / save_head write, written back, and made fresh for training. The
 * computation is bottleneck.c's.
 *
 * Files:
 *   adapter_config.json  {"config": {BnConfig fields, "architecture": "bottleneck"} | "seq_bn" | ...,
 *                         "model_type", "hidden_size", "name", "model_class", "model_name", "version"}
 *   adapter.safetensors  <prefix>encoder.layer.N.attention.output.adapters.<name>.adapter_down.0.weight ...
 *                        (bert/roberta: attention.output = mh_adapter, output = output_adapter;
 *                         distilbert: transformer.layer.N.attention_adapters / output_adapters)
 *   head_config.json     {"config": {"head_type", "num_labels", "layers", "activation_function",
 *                         "label2id", "use_pooler", "bias"}, "name", "model_type", ...}
 *   model_head.safetensors heads.<name>.<index in the head's nn.Sequential>.weight / .bias
 *
 * Training: fresh adapters get the BnConfig dict of their preset and AdapterHub's init_weights,
 * plus a prediction head. */
#include "bottleneck.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* Where config keys come from, for messages (see peft.h). */
#define CFG "adapter_config.json: "
#define HEAD_CFG "head_config.json: "
#define USER "config."

/* AdapterHub's config: the files name it with "config", PEFT's with "peft_type". */
int pd_hub_detect(const cJSON *config) { return cJSON_GetObjectItemCaseSensitive(config, "config") != NULL; }

/* ==== Config ==== */

typedef struct bn_cfg {
    int mh, outp, olb, ola, rbl, arbl, lnb, lna, par;
    int scale_kind;
    double scale;
    const cJSON *rf;     /* number or {"N": rf, "default": rf} */
    char act[64];
    const cJSON *leave_out;
} bn_cfg;

/* Fills c with a shorthand's values (AdapterHub's ADAPTER_CONFIG_MAP). Returns -1 if unknown. */
static int bn_shorthand(const char *name, bn_cfg *c, cJSON **rf_holder) {
    memset(c, 0, sizeof *c);
    c->ola = 1;
    c->rbl = 1;
    c->scale = 1.0;
    double rf;
    if (!strcmp(name, "seq_bn") || !strcmp(name, "pfeiffer")) {
        c->olb = 1; c->outp = 1; rf = 16; snprintf(c->act, sizeof c->act, "relu");
    } else if (!strcmp(name, "double_seq_bn") || !strcmp(name, "houlsby")) {
        c->mh = 1; c->outp = 1; rf = 16; snprintf(c->act, sizeof c->act, "swish");
    } else if (!strcmp(name, "par_bn") || !strcmp(name, "parallel") || !strcmp(name, "scaled_par_bn") || !strcmp(name, "scaled_parallel")) {
        c->outp = 1; c->par = 1; rf = 2; c->scale = 4.0; snprintf(c->act, sizeof c->act, "relu");
        if (strstr(name, "scaled")) c->scale_kind = 1;
    } else {
        return -1;
    }
    *rf_holder = cJSON_CreateNumber(rf);
    c->rf = *rf_holder;
    return 0;
}

static pd_status bn_parse(const pd_adapter *a, const cJSON *top, bn_cfg *c, cJSON **rf_holder, char *err, size_t errlen) {
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(top, "config");
    if (cJSON_IsString(cfg)) {
        if (bn_shorthand(cfg->valuestring, c, rf_holder))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: config \"%s\" is not supported (seq_bn/pfeiffer, double_seq_bn/houlsby, par_bn/parallel, scaled_par_bn are)", cfg->valuestring);
        if (!*rf_holder) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        return PD_OK;
    }
    if (!cJSON_IsObject(cfg)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"config\" must be an object or a config name");
    const cJSON *arch = pd_json_get(cfg, "architecture");
    if (arch && (!cJSON_IsString(arch) || strcmp(arch->valuestring, "bottleneck")))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: AdapterHub architecture \"%s\" is not supported (bottleneck is; use PEFT's format for LoRA, IA3, prefix and prompt tuning)",
                      cJSON_IsString(arch) ? arch->valuestring : "?");
    memset(c, 0, sizeof *c);
    c->ola = 1;
    c->rbl = 1;
    c->scale = 1.0;
    struct { const char *k; int *v; } bools[] = {{"mh_adapter", &c->mh}, {"output_adapter", &c->outp}, {"original_ln_before", &c->olb},
        {"original_ln_after", &c->ola}, {"adapter_residual_before_ln", &c->arbl}, {"ln_before", &c->lnb}, {"ln_after", &c->lna},
        {"is_parallel", &c->par}};
    pd_status st;
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
        if ((st = pd_json_bool(cfg, bools[i].k, CFG, bools[i].v, err, errlen))) return st;
    if (!pd_json_get(cfg, "mh_adapter") || !pd_json_get(cfg, "output_adapter") || !pd_json_get(cfg, "reduction_factor") || !pd_json_get(cfg, "non_linearity"))
        return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: a bottleneck config needs mh_adapter, output_adapter, reduction_factor and non_linearity");
    const cJSON *r = pd_json_get(cfg, "residual_before_ln");
    if (r) {
        if (cJSON_IsBool(r)) c->rbl = cJSON_IsTrue(r);
        else if (cJSON_IsString(r) && !strcmp(r->valuestring, "post_add")) c->rbl = 2;
        else return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"residual_before_ln\" must be true, false or \"post_add\"");
    }
    const cJSON *sc = pd_json_get(cfg, "scaling");
    if (sc) {
        if (cJSON_IsNumber(sc)) c->scale = sc->valuedouble;
        else if (cJSON_IsString(sc) && !strcmp(sc->valuestring, "learned")) c->scale_kind = 1;
        else if (cJSON_IsString(sc) && !strcmp(sc->valuestring, "channel")) c->scale_kind = 2;
        else return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"scaling\" must be a number, \"learned\" or \"channel\"");
    }
    int flag = 0;
    if (pd_json_bool(cfg, "use_gating", CFG, &flag, NULL, 0) || flag)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: use_gating = true is not supported");
    if (pd_json_bool(cfg, "phm_layer", CFG, &flag, NULL, 0) || flag)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: phm_layer = true (Compacter) is not supported");
    if (pd_json_get(cfg, "inv_adapter") || pd_json_get(cfg, "invertible_adapter"))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: invertible adapters (inv_adapter) are not supported");
    double sd = 0;
    if ((st = pd_json_num(cfg, "stochastic_depth", CFG, -1e30, 0, 1e30, PD_ERR_INVALID, &sd, err, errlen))) return st;
    if (c->rbl == 2 && !c->olb && !c->par)
        return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: residual_before_ln = \"post_add\" needs original_ln_before = true");
    c->rf = pd_json_get(cfg, "reduction_factor");
    if (!cJSON_IsNumber(c->rf) && !cJSON_IsObject(c->rf))
        return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"reduction_factor\" must be a number or a per-layer map with \"default\"");
    const cJSON *nl = pd_json_get(cfg, "non_linearity");
    if (!cJSON_IsString(nl)) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"non_linearity\" must be a string");
    snprintf(c->act, sizeof c->act, "%s", nl->valuestring);
    for (char *p = c->act; *p; p++) *p = (char)tolower((unsigned char)*p);
    /* Configs saved before AdapterHub versioned them used the old activation names. */
    if (!cJSON_GetObjectItemCaseSensitive(top, "version")) {
        if (!strcmp(c->act, "gelu")) snprintf(c->act, sizeof c->act, "gelu_new");
        else if (!strcmp(c->act, "gelu_orig")) snprintf(c->act, sizeof c->act, "gelu");
    }
    c->leave_out = pd_json_get(cfg, "leave_out");
    if (c->leave_out && !cJSON_IsArray(c->leave_out))
        return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"leave_out\" must be a list of layer ids");
    (void)a;
    return PD_OK;
}

/* Bottleneck width of a layer: int(hidden // reduction_factor), at least 1. */
static int bn_width(const bn_cfg *c, int layer, int H, char *err, size_t errlen) {
    const cJSON *rf = c->rf;
    if (cJSON_IsObject(rf)) {
        char k[16];
        snprintf(k, sizeof k, "%d", layer);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rf, k);
        if (!v) v = cJSON_GetObjectItemCaseSensitive(rf, "default");
        if (!v) {
            pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: reduction_factor has no entry for layer %d and no \"default\"", layer);
            return -1;
        }
        rf = v;
    }
    if (!cJSON_IsNumber(rf) || !(rf->valuedouble > 0)) {
        pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: reduction_factor must be a positive number");
        return -1;
    }
    double w = floor((double)H / rf->valuedouble);
    if (w < 1) w = 1;
    if (w > 1e7) w = 1e7;
    return (int)w;
}

/* ==== Weights ==== */

static const char *const LEGACY[][2] = {{"attention_text_task_adapters", "adapters"}, {"attention_text_lang_adapters", "adapters"},
                                        {"layer_text_task_adapters", "adapters"}, {"layer_text_lang_adapters", "adapters"},
                                        {"invertible_lang_adapters", "invertible_adapters"}};

/* AdapterHub's _rename_legacy_weights. */
static void legacy_rename(const char *in, char *out, size_t cap) {
    snprintf(out, cap, "%s", in);
    for (size_t i = 0; i < sizeof LEGACY / sizeof LEGACY[0]; i++) {
        char *p = strstr(out, LEGACY[i][0]);
        if (!p) continue;
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - out), out, LEGACY[i][1], p + strlen(LEGACY[i][0]));
        snprintf(out, cap, "%s", tmp);
    }
}

/* Finds "adapters.<name>." preceded by '.' or '_' (AdapterHub's filter_func). */
static const char *find_adapter_seg(const char *n, const char *name) {
    char pat[300];
    snprintf(pat, sizeof pat, "adapters.%s.", name);
    for (const char *p = n; (p = strstr(p, pat)) != NULL; p++)
        if (p > n && (p[-1] == '.' || p[-1] == '_')) return p;
    return NULL;
}

static pd_status take_checked(pd_adapter *a, const char *name, const pd_st_tensor *t, int file, int ndim, int64_t d0, int64_t d1,
                              pd_atensor **out, char *err, size_t errlen) {
    pd_status s = pd_at_take(a, name, t, file, out, err, errlen);
    if (s) return s;
    const pd_atensor *x = *out;
    if (x->ndim == ndim && x->shape[0] == d0 && (ndim == 1 || x->shape[1] == d1)) return PD_OK;
    char got[64], want[64];
    int64_t g[2] = {x->shape[0], x->shape[1]}, w[2] = {d0, d1};
    pd_shape_str(g, x->ndim, got, sizeof got);
    pd_shape_str(w, ndim, want, sizeof want);
    return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape %s but the base model and config need %s", name, got, want);
}

/* ==== Heads ==== */

static pd_status hub_head(pd_adapter *a, const pd_st_file *hst, const pd_adapter_files *f, const char *adapter_name, char *err,
                          size_t errlen) {
    int H = a->cfg->hidden;
    char jerr[160];
    pd_status js = pd_json_parse(f->head_config, f->head_config_len, &a->head_config, jerr, sizeof jerr);
    if (js) return pd_err(err, errlen, js == PD_ERR_INVALID ? PD_ERR_FORMAT : js, "head_config.json: %s", jerr);
    const cJSON *top = a->head_config;
    if (!cJSON_IsObject(top)) return pd_err(err, errlen, PD_ERR_INVALID, "head_config.json: not a JSON object");
    const cJSON *mt = pd_json_get(top, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, pd_arch_name(a->cfg->arch))))
        return pd_err(err, errlen, PD_ERR_MISMATCH, "head_config.json: the head was made for model_type \"%s\" but the base model is %s",
                      cJSON_IsString(mt) ? mt->valuestring : "?", pd_arch_name(a->cfg->arch));
    const cJSON *c = pd_json_get(top, "config");
    if (!cJSON_IsObject(c)) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "head_config.json: no \"config\" object (static heads of *ForSequenceClassification classes are not supported; save a flex head)");
    const cJSON *ht = pd_json_get(c, "head_type");
    if (!cJSON_IsString(ht)) return pd_err(err, errlen, PD_ERR_INVALID, "head_config.json: \"head_type\" must be a string");
    pd_task task;
    if (!strcmp(ht->valuestring, "classification") || !strcmp(ht->valuestring, "multilabel_classification")) task = PD_TASK_CLS;
    else if (!strcmp(ht->valuestring, "question_answering")) task = PD_TASK_QA;
    else return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "head_config.json: head_type \"%s\" is not supported (classification, question_answering are)", ht->valuestring);
    int layers = task == PD_TASK_QA ? 1 : 2, nl = 2, use_pooler = 0, bias = 1;
    pd_status st;
    if ((st = pd_json_int(c, "layers", HEAD_CFG, 1, 1000000000, PD_ERR_INVALID, &layers, err, errlen)) ||
        (st = pd_json_int(c, "num_labels", HEAD_CFG, 1, 100000, PD_ERR_INVALID, &nl, err, errlen)) ||
        (st = pd_json_bool(c, "use_pooler", HEAD_CFG, &use_pooler, err, errlen)) || (st = pd_json_bool(c, "bias", HEAD_CFG, &bias, err, errlen)))
        return st;
    if (task == PD_TASK_QA && nl != 2) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "head_config.json: a question_answering head must have num_labels = 2 (start, end)");
    if (task == PD_TASK_QA) use_pooler = 0;
    pd_act act = PD_ACT_NONE;
    const cJSON *af = pd_json_get(c, "activation_function");
    if (af) {
        if (!cJSON_IsString(af)) return pd_err(err, errlen, PD_ERR_INVALID, "head_config.json: \"activation_function\" must be a string");
        if (*af->valuestring) {
            char low[64];
            snprintf(low, sizeof low, "%s", af->valuestring);
            for (char *p = low; *p; p++) *p = (char)tolower((unsigned char)*p);
            int v = pd_act_parse(low);
            if (v < 0) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "head_config.json: activation_function \"%s\" is not supported", af->valuestring);
            act = (pd_act)v;
        }
    }
    pd_model_extras ex;
    pd_model_get_extras(a->base, &ex);
    if (use_pooler && !ex.pooler_w)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "head_config.json: use_pooler = true but the base checkpoint has no pooler");
    if (layers + use_pooler > PD_HEAD_MAX_LAYERS)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "head_config.json: %d head layers%s; at most %d are supported", layers, use_pooler ? " + pooler" : "", PD_HEAD_MAX_LAYERS);
    const cJSON *hn = pd_json_get(top, "name");
    const char *hname = cJSON_IsString(hn) ? hn->valuestring : adapter_name;
    /* nn.Sequential layout of PredictionHead.build: per layer a Dropout, the Linear, and between
     * layers the activation (when set). */
    int lin_idx[PD_HEAD_MAX_LAYERS], idx = 0;
    for (int l = 0; l < layers; l++) {
        idx++;
        lin_idx[l] = idx++;
        if (l < layers - 1 && act != PD_ACT_NONE) idx++;
    }
    pd_head *h = &a->head;
    memset(h, 0, sizeof *h);
    int k0 = 0;
    if (use_pooler) h->layer[k0++] = (pd_head_layer){ex.pooler_w, ex.pooler_b, H, H, PD_ACT_TANH};
    for (int l = 0; l < layers; l++) {
        int last = l == layers - 1;
        h->layer[k0 + l] = (pd_head_layer){NULL, NULL, H, last ? nl : H, last ? PD_ACT_NONE : act};
    }
    pd_status s = PD_OK;
    for (int i = 0; i < pd_st_count(hst) && !s; i++) {
        const pd_st_tensor *t = pd_st_at(hst, i);
        const char *n = t->name;
        size_t pl = hname ? strlen(hname) : 0;
        int ok = 0;
        if (!strncmp(n, "heads.", 6) && (!hname || (!strncmp(n + 6, hname, pl) && n[6 + pl] == '.'))) {
            const char *r = n + 6 + (hname ? pl + 1 : 0);
            if (!hname) { const char *d = strchr(r, '.'); r = d ? d + 1 : r; }
            char *e = NULL;
            long li = strtol(r, &e, 10);
            if (e != r && *e == '.') {
                int is_b = !strcmp(e, ".bias");
                if (is_b || !strcmp(e, ".weight")) {
                    for (int l = 0; l < layers; l++) {
                        if (lin_idx[l] != li) continue;
                        pd_head_layer *hl = &h->layer[k0 + l];
                        if ((is_b ? hl->b : hl->w) != NULL) break;
                        if (is_b && l == layers - 1 && !bias) break;
                        pd_atensor *at;
                        s = take_checked(a, n, t, PD_FILE_HEAD, is_b ? 1 : 2, hl->out, H, &at, err, errlen);
                        if (s) break;
                        if (is_b) hl->b = at->data; else hl->w = at->data;
                        ok = 1;
                        break;
                    }
                }
            }
        }
        if (!s && !ok)
            s = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s in model_head.safetensors (a %s head \"%s\" with %d layer(s)%s)", n,
                       ht->valuestring, hname ? hname : "?", layers, act != PD_ACT_NONE ? " and an activation" : "");
    }
    if (s) return s;
    for (int l = 0; l < layers; l++) {
        const pd_head_layer *hl = &h->layer[k0 + l];
        if (!hl->w || (!hl->b && (l < layers - 1 || bias)))
            return pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor heads.%s.%d.%s in model_head.safetensors", hname ? hname : "?", lin_idx[l], hl->w ? "bias" : "weight");
    }
    h->task = task;
    h->n_layers = k0 + layers;
    if (task == PD_TASK_QA) return PD_OK;
    const cJSON *lab = pd_json_get(c, "label2id");
    if (!lab) lab = pd_json_get(top, "label2id");
    if (!lab) lab = pd_json_get(c, "labels");
    return pd_adapter_set_labels(a, nl, lab, "head_config.json", f, err, errlen);
}

/* ==== Entry points ==== */

pd_status pd_hub_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                      size_t errlen) {
    const cJSON *top = a->config;
    int L = a->cfg->layers, H = a->cfg->hidden;
    a->method = PD_METHOD_BOTTLENECK;
    const cJSON *mt = pd_json_get(top, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, pd_arch_name(a->cfg->arch))))
        return pd_err(err, errlen, PD_ERR_MISMATCH, "adapter_config.json: the adapter was made for model_type \"%s\" but the base model is %s",
                      cJSON_IsString(mt) ? mt->valuestring : "?", pd_arch_name(a->cfg->arch));
    int hs = H;
    pd_status s = pd_json_int(top, "hidden_size", CFG, -1000000000, 1000000000, PD_ERR_INVALID, &hs, err, errlen);
    if (s) return s;
    if (hs != H) return pd_err(err, errlen, PD_ERR_MISMATCH, "adapter_config.json: hidden_size = %d but the base model has %d", hs, H);
    if ((head_st != NULL) != (f->head_config && f->head_config_len))
        return pd_err(err, errlen, PD_ERR_INVALID, "an AdapterHub head needs both head_config.json and model_head.safetensors");
    bn_cfg c;
    cJSON *rf_holder = NULL;
    s = bn_parse(a, top, &c, &rf_holder, err, errlen);
    bn_state *bs = NULL;
    if (s) goto out;
    int act = pd_act_parse(c.act);
    if (act < 0) { s = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "adapter_config.json: non_linearity \"%s\" is not supported", c.act); goto out; }
    bs = calloc(1, sizeof *bs);
    if (!bs) { s = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
    a->impl = bs;
    a->impl_free = pd_bn_state_free;
    bs->olb = c.olb; bs->ola = c.ola; bs->rbl = c.rbl; bs->arbl = c.arbl; bs->lnb = c.lnb; bs->lna = c.lna; bs->par = c.par;
    bs->scale_kind = c.scale_kind; bs->scale = (float)c.scale; bs->act = (pd_act)act;
    bs->site = calloc((size_t)L * 2, sizeof *bs->site);
    if (!bs->site) { s = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
    for (int l = 0; l < L; l++) {
        int left = 0;
        const cJSON *e;
        if (c.leave_out) cJSON_ArrayForEach(e, c.leave_out) if (cJSON_IsNumber(e) && (int)e->valuedouble == l) left = 1;
        if (left) continue;
        int w = bn_width(&c, l, H, err, errlen);
        if (w < 0) { s = PD_ERR_INVALID; goto out; }
        if (c.mh) { bs->site[l * 2 + PD_SITE_ATTN].on = 1; bs->site[l * 2 + PD_SITE_ATTN].ds = w; }
        if (c.outp) { bs->site[l * 2 + PD_SITE_FFN].on = 1; bs->site[l * 2 + PD_SITE_FFN].ds = w; }
    }
    /* The adapter's name: from the config, else from the first tensor. */
    char name[256] = "";
    const cJSON *nm = pd_json_get(top, "name");
    if (nm && !cJSON_IsString(nm)) { s = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: \"name\" must be a string"); goto out; }
    if (nm) snprintf(name, sizeof name, "%s", nm->valuestring);
    else if (pd_st_count(st) > 0) {
        char n[1024];
        legacy_rename(pd_st_at(st, 0)->name, n, sizeof n);
        const char *p = strstr(n, ".adapters.");
        if (!p) p = strstr(n, "_adapters.");
        if (p) { p += 10; const char *d = strchr(p, '.'); if (d) snprintf(name, sizeof name, "%.*s", (int)(d - p), p); }
    }
    const char *own = a->cfg->arch == PD_ARCH_BERT ? "bert." : a->cfg->arch == PD_ARCH_ROBERTA ? "roberta." : "distilbert.";
    int dist = a->cfg->arch == PD_ARCH_DISTILBERT;
    for (int i = 0; i < pd_st_count(st) && !s; i++) {
        const pd_st_tensor *t = pd_st_at(st, i);
        char n[1024];
        legacy_rename(t->name, n, sizeof n);
        static const char *const archs[] = {"bert.", "roberta.", "distilbert."};
        for (int k = 0; k < 3; k++)
            if (strcmp(archs[k], own) && !strncmp(n, archs[k], strlen(archs[k])))
                s = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %.*s model but the base model is %s", t->name,
                           (int)strlen(archs[k]) - 1, archs[k], pd_arch_name(a->cfg->arch));
        if (s) break;
        if (strstr(n, "invertible_adapters.")) { s = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s belongs to an invertible adapter, which is not supported", t->name); break; }
        const char *seg = *name ? find_adapter_seg(n, name) : NULL;
        if (!seg) { s = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: not a weight of the bottleneck adapter \"%s\"", t->name, name); break; }
        char mod[1024];
        snprintf(mod, sizeof mod, "%.*s", (int)(seg - n - 1), n);
        const char *param = seg + strlen("adapters.") + strlen(name) + 1;
        const char *m = mod;
        if (!strncmp(m, own, strlen(own))) m += strlen(own);
        int layer = -1, site = -1;
        const char *stem = dist ? "transformer.layer." : "encoder.layer.";
        const char *foreign = dist ? "encoder.layer." : "transformer.layer.";
        if (!strncmp(m, foreign, strlen(foreign))) {
            s = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s belongs to a %s model but the base model is %s", t->name, dist ? "bert/roberta" : "distilbert", pd_arch_name(a->cfg->arch));
            break;
        }
        if (!strncmp(m, stem, strlen(stem))) {
            char *e = NULL;
            long v = strtol(m + strlen(stem), &e, 10);
            if (e != m + strlen(stem) && *e == '.' && v >= 0 && v < 1000000) {
                const char *rest = e + 1;
                if (!strcmp(rest, dist ? "attention_adapters" : "attention.output")) site = PD_SITE_ATTN;
                else if (!strcmp(rest, dist ? "output_adapters" : "output")) site = PD_SITE_FFN;
                layer = (int)v;
            }
        }
        if (site < 0) { s = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: %s is not where a %s layer holds bottleneck adapters", t->name, mod, pd_arch_name(a->cfg->arch)); break; }
        if (layer >= L) { s = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s is for layer %d but the base model has %d layers", t->name, layer, L); break; }
        bn_site *b = &bs->site[layer * 2 + site];
        if (!b->on) {
            s = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s is for a %s adapter in layer %d, which the config (mh_adapter/output_adapter/leave_out) does not place",
                       t->name, site == PD_SITE_ATTN ? "mh_adapter" : "output_adapter", layer);
            break;
        }
        pd_atensor *at = NULL;
        /* adapter_down is nn.Sequential([LayerNorm if ln_before], Linear, activation). */
        const char *dlin_w = c.lnb ? "adapter_down.1.weight" : "adapter_down.0.weight";
        const char *dlin_b = c.lnb ? "adapter_down.1.bias" : "adapter_down.0.bias";
        const float **slot = NULL;
        int nd = 1;
        int64_t d0 = H, d1 = 0;
        int shared = 0;
        if (!strcmp(param, dlin_w)) { slot = &b->wd; nd = 2; d0 = b->ds; d1 = H; }
        else if (!strcmp(param, dlin_b)) { slot = &b->bd; d0 = b->ds; }
        else if (!strcmp(param, "adapter_up.weight")) { slot = &b->wu; nd = 2; d0 = H; d1 = b->ds; }
        else if (!strcmp(param, "adapter_up.bias")) { slot = &b->bu; }
        else if (c.lnb && !strcmp(param, "adapter_down.0.weight")) { slot = &b->lnb_w; }
        else if (c.lnb && !strcmp(param, "adapter_down.0.bias")) { slot = &b->lnb_b; }
        else if (c.lnb && (!strcmp(param, "adapter_norm_before.weight") || !strcmp(param, "adapter_norm_before.bias"))) {
            /* The same LayerNorm registered twice (attribute and Sequential slot 0): both names are saved. */
            shared = 1;
        }
        else if (c.lna && !strcmp(param, "adapter_norm_after.weight")) { slot = &b->lna_w; }
        else if (c.lna && !strcmp(param, "adapter_norm_after.bias")) { slot = &b->lna_b; }
        else if (c.scale_kind && !strcmp(param, "scaling")) { slot = &b->scale; d0 = c.scale_kind == 1 ? 1 : H; }
        else { s = pd_err(err, errlen, PD_ERR_MISMATCH, "unknown tensor %s: \"%s\" is not a parameter of this adapter's config", t->name, param); break; }
        if (slot && *slot) { s = pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s appears twice", t->name); break; }
        if ((s = take_checked(a, n, t, PD_FILE_WEIGHTS, nd, d0, d1, &at, err, errlen))) break;
        at->shared = shared;
        if (slot) *slot = at->data;
        if (shared && strstr(param, ".weight")) b->dup_w = at->data;
        else if (shared) b->dup_b = at->data;
    }
    if (s) goto out;
    for (int l = 0; l < L && !s; l++) {
        for (int k = 0; k < 2; k++) {
            const bn_site *b = &bs->site[l * 2 + k];
            if (!b->on) continue;
            const char *miss = !b->wd ? "adapter_down linear weight" : !b->bd ? "adapter_down linear bias" : !b->wu ? "adapter_up.weight" : !b->bu ? "adapter_up.bias"
                             : (c.lnb && (!b->lnb_w || !b->lnb_b)) ? "adapter_down.0 (ln_before LayerNorm)" : (c.lna && (!b->lna_w || !b->lna_b)) ? "adapter_norm_after"
                             : (c.scale_kind && !b->scale) ? "scaling" : NULL;
            if (miss) {
                s = pd_err(err, errlen, PD_ERR_MISMATCH, "missing tensor for layer %d %s: %s of adapter \"%s\"", l, k == PD_SITE_ATTN ? "mh_adapter" : "output_adapter", miss, name);
                break;
            }
        }
    }
    if (s) goto out;
    a->delta.sublayer = pd_bn_sublayer;
    if (head_st) s = hub_head(a, head_st, f, *name ? name : NULL, err, errlen);
out:
    cJSON_Delete(rf_holder);
    return s;
}

/* Saving keeps head_config.json as loaded and records the labels where AdapterHub reads them:
 * config.label2id ({"name": id}). */
pd_status pd_hub_head_config_for_save(const pd_adapter *a, cJSON **out) {
    cJSON *c = cJSON_Duplicate(a->head_config, 1);
    if (!c) return PD_ERR_NOMEM;
    cJSON *hc = cJSON_GetObjectItemCaseSensitive(c, "config");
    if (a->head.task == PD_TASK_CLS && a->labels && cJSON_IsObject(hc)) {
        cJSON *m = cJSON_CreateObject();
        if (!m) { cJSON_Delete(c); return PD_ERR_NOMEM; }
        for (int i = 0; i < a->num_labels; i++) cJSON_AddItemToObject(m, a->labels[i], cJSON_CreateNumber(i));
        cJSON_DeleteItemFromObjectCaseSensitive(hc, "label2id");
        cJSON_AddItemToObject(hc, "label2id", m);
    }
    *out = c;
    return PD_OK;
}

/* ==== Training ==== */

pd_status pd_hub_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen) {
    bn_state *s = a->impl;
    int L = a->cfg->layers;
    double p = 0;
    const cJSON *cfg = pd_json_get(a->config, "config");
    pd_status st = pd_json_num(cfg, "dropout", CFG, 0, 0, 0.999999, PD_ERR_INVALID, &p, err, errlen);
    if (st) return st;
    s->dropout = (float)p;
#define G(dst, ptr, decay)                                                             \
    do {                                                                               \
        if (!((dst) = pd_at_grad(a, (ptr), (decay)))) goto oom;                        \
    } while (0)
    for (int i = 0; i < 2 * L; i++) {
        bn_site *b = &s->site[i];
        if (!b->on) continue;
        /* HF Trainer's decay rule: no decay for biases and LayerNorm parameters */
        G(b->g_wd, b->wd, 1);
        G(b->g_bd, b->bd, 0);
        G(b->g_wu, b->wu, 1);
        G(b->g_bu, b->bu, 0);
        if (s->lnb) { G(b->g_lnb_w, b->lnb_w, 0); G(b->g_lnb_b, b->lnb_b, 0); }
        if (s->lna) { G(b->g_lna_w, b->lna_w, 0); G(b->g_lna_b, b->lna_b, 0); }
        if (s->scale_kind) G(b->g_scale, b->scale, 1);
    }
#undef G
    a->delta.sublayer_bwd = pd_bn_sublayer_bwd;
    pd_hub_params_changed(a);
    return PD_OK;
oom:
    return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
}

/* AdapterHub saves the ln_before LayerNorm under two names; the copy follows the trained one. */
void pd_hub_params_changed(pd_adapter *a) {
    bn_state *s = a->impl;
    int H = a->cfg->hidden;
    for (int i = 0; i < 2 * a->cfg->layers; i++) {
        bn_site *b = &s->site[i];
        if (b->dup_w) memcpy(b->dup_w, b->lnb_w, sizeof(float) * (size_t)H);
        if (b->dup_b) memcpy(b->dup_b, b->lnb_b, sizeof(float) * (size_t)H);
    }
}

/* ==== Fresh adapters ==== */

/* The name fresh adapters carry inside their files ("adapters.<name>.", "heads.<name>."). */
#define FRESH_NAME "peftd"
#define HUB_VERSION "adapters.1.1.0"

const char *const pd_hub_config_keys[] = {"architecture", "reduction_factor", "non_linearity", "mh_adapter", "output_adapter",
                                          "original_ln_before", "original_ln_after", "ln_before", "ln_after", "residual_before_ln",
                                          "adapter_residual_before_ln", "scaling", "is_parallel", "leave_out", "init_weights", "dropout",
                                          NULL};

static const char *hub_class(pd_arch a) {
    return a == PD_ARCH_BERT ? "BertAdapterModel" : a == PD_ARCH_ROBERTA ? "RobertaAdapterModel" : "DistilBertAdapterModel";
}

/* build_full_config: the config plus the model's identity. */
static cJSON *full_config(const pd_config *cf, cJSON *config, int *bad) {
    cJSON *top = cJSON_CreateObject();
    if (!top) { cJSON_Delete(config); *bad = 1; return NULL; }
    pd_json_add(top, "config", config, bad);
    pd_json_add(top, "hidden_size", cJSON_CreateNumber(cf->hidden), bad);
    pd_json_add(top, "model_class", cJSON_CreateString(hub_class(cf->arch)), bad);
    pd_json_add(top, "model_name", cJSON_CreateNull(), bad);
    pd_json_add(top, "model_type", cJSON_CreateString(pd_arch_name(cf->arch)), bad);
    pd_json_add(top, "name", cJSON_CreateString(FRESH_NAME), bad);
    pd_json_add(top, "version", cJSON_CreateString(HUB_VERSION), bad);
    return top;
}

/* The BnConfig dict: BnConfig's defaults, the preset's (SeqBnConfig, DoubleSeqBnConfig,
 * ParBnConfig), then the caller's values. */
static pd_status hub_config_dict(const cJSON *u, cJSON **out, char *err, size_t errlen) {
    const char *arch = "seq_bn";
    pd_status st = pd_json_str(u, "architecture", USER, &arch, err, errlen);
    if (st) return st;
    int preset = !strcmp(arch, "seq_bn") || !strcmp(arch, "pfeiffer") ? 1 : !strcmp(arch, "double_seq_bn") || !strcmp(arch, "houlsby") ? 2
               : !strcmp(arch, "par_bn") || !strcmp(arch, "parallel") ? 3 : !strcmp(arch, "bottleneck") ? 0 : -1;
    if (preset < 0)
        return pd_err(err, errlen, PD_ERR_INVALID, "config.architecture must be seq_bn, double_seq_bn, par_bn or bottleneck (got \"%s\")", arch);
    int bad = 0;
    cJSON *c = cJSON_CreateObject();
    if (!c) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    static const struct { const char *k; int v; } B[] = {
        {"adapter_residual_before_ln", 0}, {"cross_adapter", 0}, {"factorized_phm_W", 1}, {"factorized_phm_rule", 0},
        {"is_parallel", 0}, {"learn_phm", 1}, {"ln_after", 0}, {"ln_before", 0}, {"original_ln_after", 1},
        {"original_ln_before", 0}, {"phm_bias", 1}, {"phm_layer", 0}, {"residual_before_ln", 1}, {"shared_W_phm", 0},
        {"shared_phm_rule", 1}, {"use_gating", 0}};
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) pd_json_add(c, B[i].k, cJSON_CreateBool(B[i].v), &bad);
    pd_json_add(c, "dropout", cJSON_CreateNumber(0.0), &bad);
    pd_json_add(c, "hypercomplex_nonlinearity", cJSON_CreateString("glorot-uniform"), &bad);
    pd_json_add(c, "init_weights", cJSON_CreateString("bert"), &bad);
    pd_json_add(c, "inv_adapter", cJSON_CreateNull(), &bad);
    pd_json_add(c, "inv_adapter_reduction_factor", cJSON_CreateNull(), &bad);
    pd_json_add(c, "leave_out", cJSON_CreateArray(), &bad);
    pd_json_add(c, "phm_c_init", cJSON_CreateString("normal"), &bad);
    pd_json_add(c, "phm_dim", cJSON_CreateNumber(4), &bad);
    pd_json_add(c, "phm_init_range", cJSON_CreateNumber(0.0001), &bad);
    pd_json_add(c, "phm_rank", cJSON_CreateNumber(1), &bad);
    pd_json_add(c, "scaling", cJSON_CreateNumber(1.0), &bad);
    pd_json_add(c, "stochastic_depth", cJSON_CreateNumber(0.0), &bad);
    if (preset == 1) {
        pd_json_set(c, "original_ln_before", cJSON_CreateTrue(), &bad);
        pd_json_add(c, "mh_adapter", cJSON_CreateFalse(), &bad);
        pd_json_add(c, "output_adapter", cJSON_CreateTrue(), &bad);
        pd_json_add(c, "non_linearity", cJSON_CreateString("relu"), &bad);
        pd_json_add(c, "reduction_factor", cJSON_CreateNumber(16), &bad);
    } else if (preset == 2) {
        pd_json_add(c, "mh_adapter", cJSON_CreateTrue(), &bad);
        pd_json_add(c, "output_adapter", cJSON_CreateTrue(), &bad);
        pd_json_add(c, "non_linearity", cJSON_CreateString("swish"), &bad);
        pd_json_add(c, "reduction_factor", cJSON_CreateNumber(16), &bad);
    } else if (preset == 3) {
        pd_json_add(c, "mh_adapter", cJSON_CreateFalse(), &bad);
        pd_json_add(c, "output_adapter", cJSON_CreateTrue(), &bad);
        pd_json_add(c, "non_linearity", cJSON_CreateString("relu"), &bad);
        pd_json_add(c, "reduction_factor", cJSON_CreateNumber(2), &bad);
        pd_json_set(c, "init_weights", cJSON_CreateString("mam_adapter"), &bad);
        pd_json_set(c, "is_parallel", cJSON_CreateTrue(), &bad);
        pd_json_set(c, "scaling", cJSON_CreateNumber(4.0), &bad);
    }
    /* the caller's values, type-checked with their names */
    static const char *const bools[] = {"mh_adapter", "output_adapter", "original_ln_before", "original_ln_after", "ln_before",
                                        "ln_after", "adapter_residual_before_ln", "is_parallel", NULL};
    for (int i = 0; bools[i] && !st; i++) {
        int v = 0;
        if (!pd_json_get(u, bools[i])) continue;
        if (!(st = pd_json_bool(u, bools[i], USER, &v, err, errlen))) pd_json_set(c, bools[i], cJSON_CreateBool(v), &bad);
    }
    const cJSON *v;
    if (!st && (v = pd_json_get(u, "reduction_factor"))) {
        if (!(cJSON_IsNumber(v) && v->valuedouble > 0) && !cJSON_IsObject(v))
            st = pd_err(err, errlen, PD_ERR_INVALID, "config.reduction_factor must be a number > 0 or a per-layer map with \"default\"");
        else pd_json_set(c, "reduction_factor", cJSON_Duplicate(v, 1), &bad);
    }
    const char *str = NULL;
    if (!st && !(st = pd_json_str(u, "non_linearity", USER, &str, err, errlen)) && str) {
        char low[64];
        snprintf(low, sizeof low, "%s", str);
        for (char *q = low; *q; q++) *q = (char)tolower((unsigned char)*q);
        if (pd_act_parse(low) < 0) st = pd_err(err, errlen, PD_ERR_INVALID, "config.non_linearity \"%s\" is not a supported activation", str);
        else pd_json_set(c, "non_linearity", cJSON_CreateString(str), &bad);
    }
    if (!st && (v = pd_json_get(u, "residual_before_ln"))) {
        if (!cJSON_IsBool(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "post_add")))
            st = pd_err(err, errlen, PD_ERR_INVALID, "config.residual_before_ln must be true, false or \"post_add\"");
        else pd_json_set(c, "residual_before_ln", cJSON_Duplicate(v, 1), &bad);
    }
    if (!st && (v = pd_json_get(u, "scaling"))) {
        if (!cJSON_IsNumber(v) && !(cJSON_IsString(v) && (!strcmp(v->valuestring, "learned") || !strcmp(v->valuestring, "channel"))))
            st = pd_err(err, errlen, PD_ERR_INVALID, "config.scaling must be a number, \"learned\" or \"channel\"");
        else pd_json_set(c, "scaling", cJSON_Duplicate(v, 1), &bad);
    }
    if (!st && (v = pd_json_get(u, "leave_out"))) {
        int ok = cJSON_IsArray(v);
        const cJSON *e;
        if (ok) cJSON_ArrayForEach(e, v) ok &= cJSON_IsNumber(e) && e->valuedouble == floor(e->valuedouble) && e->valuedouble >= 0;
        if (!ok) st = pd_err(err, errlen, PD_ERR_INVALID, "config.leave_out must be a list of layer indices");
        else pd_json_set(c, "leave_out", cJSON_Duplicate(v, 1), &bad);
    }
    str = NULL;
    if (!st && !(st = pd_json_str(u, "init_weights", USER, &str, err, errlen)) && str) {
        if (strcmp(str, "bert") && strcmp(str, "mam_adapter") && strcmp(str, "houlsby"))
            st = pd_err(err, errlen, PD_ERR_INVALID, "config.init_weights must be \"bert\", \"mam_adapter\" or \"houlsby\"");
        else pd_json_set(c, "init_weights", cJSON_CreateString(str), &bad);
    }
    double dr = 0;
    if (!st && !(st = pd_json_num(u, "dropout", USER, 0, 0, 0.999999, PD_ERR_INVALID, &dr, err, errlen)) && pd_json_get(u, "dropout"))
        pd_json_set(c, "dropout", cJSON_CreateNumber(dr), &bad);
    if (!st && preset == 0) {
        static const char *const req[] = {"mh_adapter", "output_adapter", "reduction_factor", "non_linearity"};
        for (int i = 0; i < 4 && !st; i++)
            if (!pd_json_get(c, req[i])) st = pd_err(err, errlen, PD_ERR_INVALID, "config.%s is required with architecture \"bottleneck\"", req[i]);
    }
    if (!st && bad) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (st) { cJSON_Delete(c); return st; }
    *out = c;
    return PD_OK;
}

/* An AdapterHub prediction head for the task: a copy of the base checkpoint's head when it has
 * one with the same number of labels (bert: its classifier over the base pooler, use_pooler;
 * distilbert: pre_classifier + relu + classifier; roberta: dense + tanh + out_proj), else
 * add_classification_head's default (2 layers, tanh) / add_qa_head's (1 layer) initialised as
 * the model's _init_weights does (normal(0, 0.02), zero bias). */
static pd_status hub_fresh_head(const pd_model *base, const pd_fresh_head *fh, pd_rng *rng, pd_fresh *out, char *err, size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    int H = cf->hidden, bad = 0;
    pd_model_extras ex;
    pd_model_get_extras(base, &ex);
    cJSON *c = cJSON_CreateObject();
    if (!c) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const pd_head *bh = pd_model_head(base, fh->task);
    int nl = fh->task == PD_TASK_QA ? 2 : fh->num_labels;
    int match = bh && bh->layer[bh->n_layers - 1].out == nl;
    int pooler = match && fh->task == PD_TASK_CLS && cf->arch == PD_ARCH_BERT && ex.pooler_w;
    int layers = fh->task == PD_TASK_QA || pooler ? 1 : 2;
    const char *act = match && cf->arch == PD_ARCH_DISTILBERT && fh->task == PD_TASK_CLS ? "relu" : "tanh";
    pd_json_add(c, "head_type", cJSON_CreateString(fh->task == PD_TASK_QA ? "question_answering" : "classification"), &bad);
    pd_json_add(c, "num_labels", cJSON_CreateNumber(nl), &bad);
    pd_json_add(c, "layers", cJSON_CreateNumber(layers), &bad);
    pd_json_add(c, "activation_function", cJSON_CreateString(act), &bad);
    if (fh->task == PD_TASK_CLS) {
        cJSON *m = cJSON_CreateObject();
        for (int i = 0; m && i < nl; i++) pd_json_add(m, fh->labels[i], cJSON_CreateNumber(i), &bad);
        pd_json_add(c, "label2id", m, &bad);
        pd_json_add(c, "use_pooler", cJSON_CreateBool(pooler), &bad);
        pd_json_add(c, "bias", cJSON_CreateTrue(), &bad);
    } else {
        pd_json_add(c, "label2id", cJSON_CreateNull(), &bad);
    }
    pd_json_add(c, "dropout_prob", cJSON_CreateNull(), &bad);
    out->head_config = full_config(cf, c, &bad);
    /* nn.Sequential indices: per layer a Dropout then the Linear (and the activation between) */
    for (int l = 0; l < layers && !bad; l++) {
        int last = l == layers - 1, idx = l == 0 ? 1 : 4, o = last ? nl : H;
        const pd_head_layer *src = !match ? NULL : pooler ? &bh->layer[1] : &bh->layer[l];
        char n[128];
        snprintf(n, sizeof n, "heads.%s.%d.weight", FRESH_NAME, idx);
        float *w = pd_tlist_add(&out->head, n, 2, o, H);
        snprintf(n, sizeof n, "heads.%s.%d.bias", FRESH_NAME, idx);
        float *bb = pd_tlist_add(&out->head, n, 1, o, 0);
        if (!w || !bb) { bad = 1; break; }
        if (src) {
            memcpy(w, src->w, sizeof(float) * (size_t)o * H);
            if (src->b) memcpy(bb, src->b, sizeof(float) * (size_t)o);
        } else {
            pd_fill_normal(rng, w, (size_t)o * H, 0.0, 0.02);
        }
    }
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}

pd_status pd_hub_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *u, const pd_fresh_head *fh, pd_rng *rng,
                       pd_fresh *out, char *err, size_t errlen) {
    const pd_config *cf = pd_model_config(base);
    int L = cf->layers, H = cf->hidden, bad = 0;
    char what[48];
    snprintf(what, sizeof what, "%s option", self->name);
    pd_status st = pd_json_known(u, USER, what, self->config_keys, err, errlen);
    if (st) return st;
    cJSON *c = NULL;
    if ((st = hub_config_dict(u, &c, err, errlen))) return st;
    out->config = full_config(cf, c, &bad);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    /* the loader's own parse of what was built: widths, placement, activation */
    bn_cfg bc;
    cJSON *rf_holder = NULL;
    if ((st = bn_parse(NULL, out->config, &bc, &rf_holder, err, errlen))) return st;
    if (pd_act_parse(bc.act) < 0) st = pd_err(err, errlen, PD_ERR_INVALID, "config.non_linearity \"%s\" is not supported", bc.act);
    const char *init = "bert";
    const cJSON *iw = pd_json_get(c, "init_weights");
    if (cJSON_IsString(iw)) init = iw->valuestring;
    int dist = cf->arch == PD_ARCH_DISTILBERT;
    for (int l = 0; l < L && !st && !bad; l++) {
        int left = 0;
        const cJSON *e;
        if (bc.leave_out) cJSON_ArrayForEach(e, bc.leave_out) if (cJSON_IsNumber(e) && (int)e->valuedouble == l) left = 1;
        if (left) continue;
        int w = bn_width(&bc, l, H, err, errlen);
        if (w < 0) { st = PD_ERR_INVALID; break; }
        for (int site = 0; site < 2; site++) {
            if (!(site == PD_SITE_ATTN ? bc.mh : bc.outp)) continue;
            char pre[256], n[400];
            if (dist) snprintf(pre, sizeof pre, "distilbert.transformer.layer.%d.%s.adapters.%s.", l, site == PD_SITE_ATTN ? "attention_adapters" : "output_adapters", FRESH_NAME);
            else snprintf(pre, sizeof pre, "%s.encoder.layer.%d.%s.adapters.%s.", pd_arch_name(cf->arch), l, site == PD_SITE_ATTN ? "attention.output" : "output", FRESH_NAME);
#define ADD(var, suffix, nd, d0, d1)                                               \
    float *var;                                                                    \
    snprintf(n, sizeof n, "%s%s", pre, suffix);                                    \
    if (!(var = pd_tlist_add(&out->w, n, nd, d0, d1))) { bad = 1; break; }
            if (bc.lnb) {
                /* one LayerNorm registered twice: adapter_norm_before and adapter_down[0] */
                ADD(nbw, "adapter_norm_before.weight", 1, H, 0);
                ADD(nbb, "adapter_norm_before.bias", 1, H, 0);
                ADD(d0w, "adapter_down.0.weight", 1, H, 0);
                ADD(d0b, "adapter_down.0.bias", 1, H, 0);
                for (int j = 0; j < H; j++) nbw[j] = d0w[j] = 1.0f;
                (void)nbb;
                (void)d0b;
            }
            ADD(wd, bc.lnb ? "adapter_down.1.weight" : "adapter_down.0.weight", 2, w, H);
            ADD(bd, bc.lnb ? "adapter_down.1.bias" : "adapter_down.0.bias", 1, w, 0);
            ADD(wu, "adapter_up.weight", 2, H, w);
            ADD(bu, "adapter_up.bias", 1, H, 0);
            (void)bd;
            (void)bu;
            if (bc.lna) {
                ADD(naw, "adapter_norm_after.weight", 1, H, 0);
                ADD(nab, "adapter_norm_after.bias", 1, H, 0);
                for (int j = 0; j < H; j++) naw[j] = 1.0f;
                (void)nab;
            }
            if (bc.scale_kind) {
                ADD(scl, "scaling", 1, bc.scale_kind == 1 ? 1 : H, 0);
                for (int j = 0; j < (bc.scale_kind == 1 ? 1 : H); j++) scl[j] = 1.0f;
            }
#undef ADD
            /* Adapter.__init__'s init_weights; biases start at zero in every scheme */
            if (!strcmp(init, "bert")) {
                pd_fill_normal(rng, wd, (size_t)w * H, 0.0, 0.02);
                pd_fill_normal(rng, wu, (size_t)H * w, 0.0, 0.02);
            } else if (!strcmp(init, "mam_adapter")) {
                double bnd = 1.0 / sqrt((double)H); /* kaiming_uniform_(a=sqrt(5)); adapter_up zero */
                pd_fill_uniform(rng, wd, (size_t)w * H, -bnd, bnd);
            } else { /* houlsby: trunc_normal_(std=1e-2, a=-2e-2, b=2e-2) */
                for (int k = 0; k < 2; k++) {
                    float *m = k ? wu : wd;
                    for (size_t i = 0; i < (size_t)w * H; i++) {
                        double x;
                        do x = 0.01 * pd_rng_normal(rng); while (x < -0.02 || x > 0.02);
                        m[i] = (float)x;
                    }
                }
            }
        }
    }
    cJSON_Delete(rf_holder);
    if (!st && bad) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st && out->w.n == 0)
        st = pd_err(err, errlen, PD_ERR_INVALID, "config: mh_adapter, output_adapter and leave_out place no adapter in any layer");
    if (!st && fh->task != PD_TASK_NONE) st = hub_fresh_head(base, fh, rng, out, err, errlen);
    return st;
}
