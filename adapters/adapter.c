/* adapter.c - the adapter object common to every method: loading from bytes or a directory,
 * format detection (PEFT or AdapterHub), the tensor store, labels, reference counting,
 * saving back in the adapter's own format, and the per-thread scratch the delta callbacks use.
 * The methods themselves live in peft.c and bottleneck.c. */
#include "adapter_impl.h"

#include "fs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

const char *pd_method_name(pd_method m) {
    switch (m) {
    case PD_METHOD_LORA: return "lora";
    case PD_METHOD_IA3: return "ia3";
    case PD_METHOD_PREFIX: return "prefix_tuning";
    case PD_METHOD_PROMPT: return "prompt_tuning";
    case PD_METHOD_BOTTLENECK: return "bottleneck";
    }
    return "?";
}

int pd_method_parse(const char *name, pd_method *out) {
    for (int k = PD_METHOD_LORA; k <= PD_METHOD_BOTTLENECK; k++)
        if (!strcmp(pd_method_name((pd_method)k), name)) {
            *out = (pd_method)k;
            return 0;
        }
    return -1;
}

/* ==== Per-thread scratch ==== */

/* The delta callbacks have no error path and run on whichever thread calls pd_forward, so each
 * thread keeps one growing buffer. The key is process-wide infrastructure (created once), not
 * state: it only tells pthreads to free a thread's buffer when the thread exits. */
typedef struct scratch_buf {
    float *p;
    size_t cap;
} scratch_buf;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *v) {
    scratch_buf *b = v;
    if (b) free(b->p);
    free(b);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

float *pd_scratch(size_t n) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok) return NULL;
    scratch_buf *b = pthread_getspecific(scratch_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        if (pthread_setspecific(scratch_key, b)) { free(b); return NULL; }
    }
    if (n == 0) n = 1;
    if (n > b->cap) {
        float *p = malloc(n * sizeof(float));
        if (!p) return NULL;
        free(b->p);
        b->p = p;
        b->cap = n;
    }
    return b->p;
}

int pd_scratch_rows(int rows, size_t per_row, float **buf) {
    int chunk = rows > 0 ? rows : 1;
    for (;;) {
        *buf = pd_scratch((size_t)chunk * per_row);
        if (*buf) return chunk;
        PD_ASSERT(chunk > 1); /* out of memory for a single row of scratch */
        chunk = (chunk + 1) / 2;
    }
}

/* ==== Tensor store ==== */

void pd_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

pd_status pd_at_take(pd_adapter *a, const char *name, const pd_st_tensor *t, int file, pd_atensor **out, char *err,
                     size_t errlen) {
    if (t->ndim > 2) {
        char s[128];
        pd_shape_str(t->shape, t->ndim, s, sizeof s);
        return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape %s: adapters hold 1-D and 2-D tensors only", name, s);
    }
    if (t->dtype != PD_DT_F32 && t->dtype != PD_DT_F16 && t->dtype != PD_DT_BF16 && t->dtype != PD_DT_F64)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s has dtype %s (F32, F16, BF16, F64 are supported)", name,
                      pd_dtype_name(t->dtype));
    if (a->nt == a->cap_t) {
        int nc = a->cap_t ? a->cap_t * 2 : 32;
        pd_atensor *nt = realloc(a->t, (size_t)nc * sizeof *nt);
        if (!nt) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        a->t = nt;
        a->cap_t = nc;
    }
    pd_atensor *x = &a->t[a->nt];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = pd_st_to_f32(t, &x->data, err, errlen);
    if (st) { free(x->name); return st; }
    /* NaN or infinite weights would make every answer of this adapter NaN: refuse the file */
    size_t count = 1;
    for (int i = 0; i < t->ndim; i++) count *= (size_t)t->shape[i];
    for (size_t i = 0; x->data && i < count; i++)
        if (!isfinite(x->data[i])) {
            pd_err(err, errlen, PD_ERR_FORMAT, "tensor %s holds a %s value at element %zu", name,
                   isnan(x->data[i]) ? "NaN" : "infinite", i);
            free(x->data);
            free(x->name);
            return PD_ERR_FORMAT;
        }
    if (!x->data) { /* zero-element tensor: keep a valid pointer */
        x->data = malloc(sizeof(float));
        if (!x->data) { free(x->name); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    }
    x->ndim = t->ndim;
    x->shape[0] = t->ndim > 0 ? t->shape[0] : 1;
    x->shape[1] = t->ndim > 1 ? t->shape[1] : 1;
    x->file = file;
    a->nt++;
    *out = x;
    return PD_OK;
}

pd_status pd_at_add(pd_adapter *a, const char *name, int ndim, int64_t d0, int64_t d1, const float *init, int file,
                    pd_atensor **out, char *err, size_t errlen) {
    size_t n = (size_t)(d0 * (ndim > 1 ? d1 : 1));
    float *zero = NULL;
    if (!init) {
        zero = calloc(n ? n : 1, sizeof(float));
        if (!zero) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        init = zero;
    }
    pd_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = PD_DT_F32;
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.data = init;
    t.nbytes = n * sizeof(float);
    pd_status st = pd_at_take(a, name, &t, file, out, err, errlen);
    free(zero);
    return st;
}

pd_atensor *pd_at_by_data(pd_adapter *a, const float *p) {
    for (int i = 0; p && i < a->nt; i++)
        if (a->t[i].data == p) return &a->t[i];
    return NULL;
}

float *pd_at_grad(pd_adapter *a, const float *p, int decay) {
    pd_atensor *t = pd_at_by_data(a, p);
    PD_ASSERT(t);
    if (!t->grad) {
        size_t n = pd_at_numel(t);
        if (!(t->grad = calloc(n ? n : 1, sizeof(float)))) return NULL;
        t->decay = decay;
    }
    return t->grad;
}

float *pd_adapter_alloc(pd_adapter *a, size_t n) {
    if (a->n_owned == a->cap_owned) {
        int nc = a->cap_owned ? a->cap_owned * 2 : 16;
        void **no = realloc(a->owned, (size_t)nc * sizeof *no);
        if (!no) return NULL;
        a->owned = no;
        a->cap_owned = nc;
    }
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) return NULL;
    a->owned[a->n_owned++] = p;
    a->owned_bytes += (n ? n : 1) * sizeof(float);
    return p;
}

/* ==== Labels ==== */

static void free_labels(char **l, int n) {
    if (!l) return;
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

pd_status pd_labels_parse(const cJSON *v, int n, const char *what, char ***out, char *err, size_t errlen) {
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return PD_OK;
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: labels must be an array of strings or an id2label/label2id object", what);
    int cnt = cJSON_GetArraySize(v);
    if (cnt != n)
        return pd_err(err, errlen, PD_ERR_INVALID, "%s has %d labels but the classifier has %d outputs", what, cnt, n);
    char **l = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const cJSON *it;
    int i = 0;
    pd_status st = PD_OK;
    cJSON_ArrayForEach(it, v) {
        const char *name = NULL;
        long id = i;
        if (cJSON_IsArray(v)) {
            if (!cJSON_IsString(it)) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label %d is not a string", what, i); break; }
            name = it->valuestring;
        } else if (cJSON_IsString(it)) { /* id2label: {"0": "neg"} */
            char *e = NULL;
            id = strtol(it->string, &e, 10);
            name = it->valuestring;
            if (!*it->string || *e) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: id2label key \"%s\" is not an integer", what, it->string); break; }
        } else if (cJSON_IsNumber(it)) { /* label2id: {"neg": 0} */
            id = (long)it->valuedouble;
            name = it->string;
            if ((double)id != it->valuedouble) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label2id value of \"%s\" is not an integer", what, it->string); break; }
        } else {
            st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label entries must be strings (id2label) or integers (label2id)", what);
            break;
        }
        if (id < 0 || id >= n || l[id]) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label ids must cover 0..%d exactly once", what, n - 1); break; }
        if (!(l[id] = strdup(name))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
        i++;
    }
    if (st) { free_labels(l, n); return st; }
    *out = l;
    return PD_OK;
}

pd_status pd_adapter_set_labels(pd_adapter *a, int n, const cJSON *from_config, const char *config_what,
                                const pd_adapter_files *f, char *err, size_t errlen) {
    char **l = NULL;
    pd_status st;
    if (f && f->labels && f->labels_len) {
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(f->labels, f->labels_len, &end, 0);
        if (!v || !cJSON_IsArray(v)) {
            cJSON_Delete(v);
            return pd_err(err, errlen, PD_ERR_INVALID, "labels: not a JSON array of strings");
        }
        st = pd_labels_parse(v, n, "labels", &l, err, errlen);
        cJSON_Delete(v);
        if (st) return st;
    }
    if (!l) {
        st = pd_labels_parse(from_config, n, config_what, &l, err, errlen);
        if (st) return st;
    }
    if (!l) {
        l = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        int base = a->cfg->labels && a->cfg->num_labels == n;
        for (int i = 0; i < n; i++) {
            char b[PD_LABEL_CAP];
            l[i] = strdup(pd_label_name(base ? a->cfg->labels[i] : NULL, i, b, sizeof b));
            if (!l[i]) { free_labels(l, n); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        }
    }
    free_labels(a->labels, a->num_labels);
    a->labels = l;
    a->num_labels = n;
    a->head.labels = l;
    a->head.num_labels = n;
    return PD_OK;
}

/* ==== Object ==== */

static void adapter_free(pd_adapter *a) {
    if (!a) return;
    if (a->impl_free) a->impl_free(a->impl);
    if (a->train) {
        free(a->train->param);
        for (int i = 0; i < 2 * PD_HEAD_MAX_LAYERS; i++) free(a->train->sink[i]);
        free(a->train);
    }
    for (int i = 0; i < a->nt; i++) { free(a->t[i].name); free(a->t[i].data); free(a->t[i].grad); }
    free(a->t);
    for (int i = 0; i < a->n_owned; i++) free(a->owned[i]);
    free(a->owned);
    free_labels(a->labels, a->num_labels);
    cJSON_Delete(a->config);
    cJSON_Delete(a->head_config);
    free(a);
}

void pd_adapter_retain(pd_adapter *a) {
    if (a) atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

void pd_adapter_release(pd_adapter *a) {
    if (!a) return;
    /* acq_rel: the thread that frees must see every other holder's last reads finished. */
    int prev = atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel);
    PD_ASSERT(prev > 0);
    if (prev == 1) adapter_free(a);
}

/* Pickle files start with the pickle protocol opcode 0x80; torch.save's zip container with "PK". */
static int looks_like_pickle(const void *buf, size_t len) {
    const unsigned char *b = buf;
    /* A safetensors header length may start with byte 0x80 too (e.g. 0x0980): its JSON header
     * begins at byte 8 with '{', which no pickle stream has there after PROTO 2..5. */
    if (len >= 9 && b[8] == '{') return 0;
    return len >= 2 && (b[0] == 0x80 || (len >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4));
}

static pd_status pickle_refusal(const char *what, char *err, size_t errlen) {
    return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                  "%s is a pickle file; peftd never loads pickle because unpickling runs code. Convert it once to "
                  "safetensors with: python3 -c \"import torch; from safetensors.torch import save_file; "
                  "sd=torch.load('%s', map_location='cpu'); save_file({k: v.contiguous() for k, v in sd.items()}, "
                  "'%s')\"",
                  what, what, strstr(what, "head") ? "model_head.safetensors" : strstr(what, "pytorch_adapter") ? "adapter.safetensors" : "adapter_model.safetensors");
}

/* Builds an adapter from an opened weights file (and head weights for AdapterHub). */
static pd_status load_opened(const pd_model *base, const pd_adapter_files *f, const pd_st_file *st,
                             const pd_st_file *head_st, pd_adapter **out, char *err, size_t errlen) {
    *out = NULL;
    if (!f->config || !f->config_len) return pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json is missing or empty");
    pd_adapter *a = calloc(1, sizeof *a);
    if (!a) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    atomic_init(&a->refs, 1);
    a->base = base;
    a->cfg = pd_model_config(base);
    const char *end = NULL;
    a->config = cJSON_ParseWithLengthOpts(f->config, f->config_len, &end, 0);
    pd_status s;
    if (!a->config) {
        s = pd_err(err, errlen, PD_ERR_FORMAT, "adapter_config.json: not valid JSON (near byte %ld)",
                   end ? (long)(end - f->config) : 0L);
    } else if (!cJSON_IsObject(a->config)) {
        s = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: not a JSON object");
    } else if (cJSON_GetObjectItemCaseSensitive(a->config, "peft_type")) {
        a->format = PD_FMT_PEFT;
        if (head_st || (f->head_config && f->head_config_len))
            s = pd_err(err, errlen, PD_ERR_INVALID,
                       "head_config.json / model_head.safetensors are AdapterHub files; a PEFT adapter keeps its head in adapter_model.safetensors");
        else
            s = pd_peft_load(a, st, f, err, errlen);
    } else if (cJSON_GetObjectItemCaseSensitive(a->config, "config")) {
        a->format = PD_FMT_HUB;
        s = pd_hub_load(a, st, head_st, f, err, errlen);
    } else {
        s = pd_err(err, errlen, PD_ERR_INVALID,
                   "adapter_config.json is neither PEFT's (no \"peft_type\") nor AdapterHub's (no \"config\")");
    }
    if (s) { adapter_free(a); return s; }
    a->delta.impl = a;
    if (a->head.task != PD_TASK_NONE) a->delta.head = &a->head;
    a->n_virtual = a->delta.n_prompt + a->delta.n_prefix;
    *out = a;
    return PD_OK;
}

pd_status pd_adapter_load(const pd_model *base, const pd_adapter_files *f, pd_adapter **out, char *err, size_t errlen) {
    *out = NULL;
    if (!f->weights || !f->weights_len) return pd_err(err, errlen, PD_ERR_INVALID, "adapter weights are missing or empty");
    if (looks_like_pickle(f->weights, f->weights_len)) return pickle_refusal("adapter_model.bin", err, errlen);
    if (f->head_weights && f->head_weights_len && looks_like_pickle(f->head_weights, f->head_weights_len))
        return pickle_refusal("pytorch_model_head.bin", err, errlen);
    pd_st_file *st = NULL, *hst = NULL;
    pd_status s = pd_st_open_buffer(f->weights, f->weights_len, &st, err, errlen);
    if (s) return s;
    if (f->head_weights && f->head_weights_len) {
        s = pd_st_open_buffer(f->head_weights, f->head_weights_len, &hst, err, errlen);
        if (s) { pd_st_close(st); return s; }
    }
    s = load_opened(base, f, st, hst, out, err, errlen);
    pd_st_close(st);
    pd_st_close(hst);
    return s;
}

pd_status pd_adapter_load_dir(const pd_model *base, const char *dir, pd_adapter **out, char *err, size_t errlen) {
    *out = NULL;
    char path[4096];
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    char *config = NULL, *head_config = NULL;
    size_t len = 0;
    pd_st_file *st = NULL, *hst = NULL;
    pd_status s;
    if (pd_path_join(path, sizeof path, dir, "adapter_config.json")) return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    s = pd_read_file(path, 16u << 20, &config, &len, err, errlen);
    if (s) return s;
    f.config = config;
    f.config_len = len;
    const char *wname = pd_fs_exists(dir, "adapter_model.safetensors") ? "adapter_model.safetensors"
                        : pd_fs_exists(dir, "adapter.safetensors") ? "adapter.safetensors" : NULL;
    if (!wname) {
        if (pd_fs_exists(dir, "adapter_model.bin")) s = pickle_refusal("adapter_model.bin", err, errlen);
        else if (pd_fs_exists(dir, "pytorch_adapter.bin")) s = pickle_refusal("pytorch_adapter.bin", err, errlen);
        else s = pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: no adapter_model.safetensors or adapter.safetensors", dir);
        goto out;
    }
    pd_path_join(path, sizeof path, dir, wname);
    if ((s = pd_st_open(path, &st, err, errlen))) goto out;
    if (pd_fs_exists(dir, "model_head.safetensors")) {
        pd_path_join(path, sizeof path, dir, "model_head.safetensors");
        if ((s = pd_st_open(path, &hst, err, errlen))) goto out;
    } else if (pd_fs_exists(dir, "pytorch_model_head.bin")) {
        s = pickle_refusal("pytorch_model_head.bin", err, errlen);
        goto out;
    }
    if (pd_fs_exists(dir, "head_config.json")) {
        pd_path_join(path, sizeof path, dir, "head_config.json");
        if ((s = pd_read_file(path, 16u << 20, &head_config, &len, err, errlen))) goto out;
        f.head_config = head_config;
        f.head_config_len = len;
    }
    s = load_opened(base, &f, st, hst, out, err, errlen);
out:
    pd_st_close(st);
    pd_st_close(hst);
    free(config);
    free(head_config);
    return s;
}

/* ==== Saving ==== */

static char *json_text(const cJSON *o, size_t *len) {
    char *text = cJSON_Print(o);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) { free(text); return NULL; }
    t[n] = '\n';
    t[n + 1] = 0;
    *len = n + 1;
    return t;
}

static pd_status tensors_buffer(const pd_adapter *a, int file, char **out, size_t *len, char *err, size_t errlen) {
    pd_st_wtensor *w = calloc((size_t)(a->nt ? a->nt : 1), sizeof *w);
    if (!w) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < a->nt; i++) {
        const pd_atensor *t = &a->t[i];
        if (t->file != file) continue;
        w[k].name = t->name;
        w[k].ndim = t->ndim;
        w[k].shape[0] = t->shape[0];
        w[k].shape[1] = t->shape[1];
        w[k].data = t->data;
        k++;
    }
    /* PEFT's save_file writes {"format": "pt"}; AdapterHub's writes no metadata. */
    static const char *const meta[] = {"format", "pt"};
    pd_status s = pd_st_write_buffer(w, k, meta, a->format == PD_FMT_PEFT ? 1 : 0, out, len, err, errlen);
    free(w);
    return s;
}

void pd_adapter_files_free(pd_adapter_files *f) {
    if (!f) return;
    free((void *)f->config);
    free((void *)f->weights);
    free((void *)f->head_config);
    free((void *)f->head_weights);
    free((void *)f->labels);
    memset(f, 0, sizeof *f);
}

pd_status pd_adapter_serialize(const pd_adapter *a, pd_adapter_files *f, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    cJSON *c = NULL;
    pd_status s;
    char *buf;
    size_t len;
    if (a->format == PD_FMT_PEFT) {
        if ((s = pd_peft_config_for_save(a, &c))) return pd_err(err, errlen, s, "out of memory");
    } else if (!(c = cJSON_Duplicate(a->config, 1))) {
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    buf = json_text(c, &len);
    cJSON_Delete(c);
    if (!buf) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    f->config = buf;
    f->config_len = len;
    if ((s = tensors_buffer(a, PD_FILE_WEIGHTS, &buf, &len, err, errlen))) goto fail;
    f->weights = buf;
    f->weights_len = len;
    if (a->format == PD_FMT_HUB && a->head_config) {
        if ((s = pd_hub_head_config_for_save(a, &c))) { s = pd_err(err, errlen, s, "out of memory"); goto fail; }
        buf = json_text(c, &len);
        cJSON_Delete(c);
        if (!buf) { s = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
        f->head_config = buf;
        f->head_config_len = len;
        if ((s = tensors_buffer(a, PD_FILE_HEAD, &buf, &len, err, errlen))) goto fail;
        f->head_weights = buf;
        f->head_weights_len = len;
    }
    return PD_OK;
fail:
    pd_adapter_files_free(f);
    return s;
}

static pd_status write_bytes(const char *dir, const char *name, const void *p, size_t n, char *err, size_t errlen) {
    char path[PD_FS_PATH_MAX];
    if (pd_path_join(path, sizeof path, dir, name)) return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    return pd_fs_write(path, p, n, err, errlen);
}

pd_status pd_adapter_save_dir(const pd_adapter *a, const char *dir, char *err, size_t errlen) {
    pd_adapter_files f;
    pd_status s = pd_adapter_serialize(a, &f, err, errlen);
    if (s) return s;
    const char *const *names = pd_adapter_file_names(a);
    s = write_bytes(dir, names[0], f.config, f.config_len, err, errlen);
    if (!s) s = write_bytes(dir, names[1], f.weights, f.weights_len, err, errlen);
    if (!s && f.head_config) s = write_bytes(dir, names[2], f.head_config, f.head_config_len, err, errlen);
    if (!s && f.head_weights) s = write_bytes(dir, names[3], f.head_weights, f.head_weights_len, err, errlen);
    if (!s) s = pd_fs_sync(dir, err, errlen);
    pd_adapter_files_free(&f);
    return s;
}

const char *const *pd_adapter_file_names(const pd_adapter *a) {
    static const char *const peft[] = {"adapter_config.json", "adapter_model.safetensors", NULL};
    static const char *const hub[] = {"adapter_config.json", "adapter.safetensors", NULL};
    static const char *const hub_head[] = {"adapter_config.json", "adapter.safetensors", "head_config.json",
                                           "model_head.safetensors", NULL};
    if (a->format == PD_FMT_PEFT) return peft;
    return a->head_config ? hub_head : hub;
}

/* ==== Accessors ==== */

const pd_delta *pd_adapter_delta(const pd_adapter *a) { return &a->delta; }
pd_method pd_adapter_method(const pd_adapter *a) { return a->method; }

pd_task pd_adapter_task(const pd_adapter *a) { return a->head.task != PD_TASK_NONE ? a->head.task : a->task; }

const pd_head *pd_adapter_head(const pd_adapter *a, const pd_model *base, pd_task t) {
    if (a && a->head.task != PD_TASK_NONE && a->head.task == t) return &a->head;
    return pd_model_head(base, t);
}

int pd_adapter_num_labels(const pd_adapter *a) { return a->head.task == PD_TASK_CLS ? a->num_labels : 0; }

const char *pd_adapter_label(const pd_adapter *a, int i) {
    if (a->head.task != PD_TASK_CLS || i < 0 || i >= a->num_labels) return NULL;
    return a->labels[i];
}

int pd_adapter_n_virtual(const pd_adapter *a) { return a->n_virtual; }

int64_t pd_adapter_params(const pd_adapter *a) {
    int64_t n = 0;
    for (int i = 0; i < a->nt; i++)
        if (!a->t[i].shared && a->t[i].file != PD_FILE_NONE) n += a->t[i].shape[0] * a->t[i].shape[1];
    return n;
}

size_t pd_adapter_bytes(const pd_adapter *a) {
    size_t b = sizeof *a + a->owned_bytes + (size_t)a->cap_t * sizeof(pd_atensor);
    for (int i = 0; i < a->nt; i++)
        b += pd_at_numel(&a->t[i]) * sizeof(float) * (a->t[i].grad ? 2 : 1) + strlen(a->t[i].name) + 1;
    for (int i = 0; i < a->num_labels; i++) b += strlen(a->labels[i]) + 1;
    return b;
}

int pd_adapter_refcount(const pd_adapter *a) {
    return atomic_load_explicit(&((pd_adapter *)a)->refs, memory_order_acquire);
}

/* ==== Training helpers ==== */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void pd_rng_seed(pd_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = x = splitmix64(x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(pd_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double pd_rng_uniform(pd_rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double pd_rng_normal(pd_rng *r) {
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u = 1.0 - pd_rng_uniform(r), v = pd_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void pd_fill_normal(pd_rng *r, float *x, size_t n, double mean, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + std * pd_rng_normal(r));
}

void pd_fill_uniform(pd_rng *r, float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * pd_rng_uniform(r));
}

uint64_t pd_dropout_key(const pd_train *tr, int layer, int module) {
    uint64_t k = splitmix64(tr->seed);
    k = splitmix64(k ^ tr->pass);
    return splitmix64(k ^ ((uint64_t)(uint32_t)layer << 32 | (uint32_t)module));
}

void pd_dropout_mul(uint64_t key, int row0, int rows, int cols, float p, float *x) {
    float keep = 1.0f / (1.0f - p);
    /* keep when a 24-bit uniform is >= p, as torch keeps with probability 1 - p */
    uint32_t thr = (uint32_t)ceil((double)p * 16777216.0);
    for (int i = 0; i < rows; i++) {
        uint64_t rk = splitmix64(key + (uint64_t)(row0 + i) * 0xD1B54A32D192ED03ull);
        float *xr = x + (size_t)i * cols;
        for (int j = 0; j < cols; j++) {
            uint32_t u = (uint32_t)(splitmix64(rk + (uint64_t)j) >> 40);
            xr[j] = u >= thr ? xr[j] * keep : 0.0f;
        }
    }
}

void pd_ln_fwd(const float *x, const float *w, const float *b, float eps, int rows, int dim, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * dim;
        float *o = y + (size_t)r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += a[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (a[i] - mean) * (a[i] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) o[i] = (float)((a[i] - mean) * rstd) * w[i] + b[i];
    }
}

void pd_ln_bwd(const float *x, const float *w, float eps, int rows, int dim, const float *dy, float *dx, float *gw,
               float *gb) {
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        float *o = dx + (size_t)r * dim;
        double mean = 0, var = 0, m1 = 0, m2 = 0;
        for (int i = 0; i < dim; i++) mean += a[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (a[i] - mean) * (a[i] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) {
            double xh = (a[i] - mean) * rstd, gw_i = (double)g[i] * w[i];
            m1 += gw_i;
            m2 += gw_i * xh;
            if (gw) gw[i] += (float)(g[i] * xh);
            if (gb) gb[i] += g[i];
        }
        m1 /= dim;
        m2 /= dim;
        for (int i = 0; i < dim; i++) {
            double xh = (a[i] - mean) * rstd;
            o[i] = (float)(rstd * ((double)g[i] * w[i] - m1 - xh * m2));
        }
    }
}

void pd_colsum_add(const float *x, int rows, int cols, float *out) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) out[j] += x[(size_t)i * cols + j];
}

float *pd_tlist_add(pd_tlist *l, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 32;
        pd_st_wtensor *t = realloc(l->t, (size_t)nc * sizeof *t);
        if (!t) return NULL;
        l->t = t;
        l->cap = nc;
    }
    size_t n = (size_t)(d0 * (ndim > 1 ? d1 : 1));
    float *data = calloc(n ? n : 1, sizeof(float));
    char *nm = strdup(name);
    if (!data || !nm) { free(data); free(nm); return NULL; }
    pd_st_wtensor *w = &l->t[l->n++];
    memset(w, 0, sizeof *w);
    w->name = nm;
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    w->data = data;
    return data;
}

void pd_tlist_free(pd_tlist *l) {
    for (int i = 0; i < l->n; i++) { free((void *)l->t[i].name); free((void *)l->t[i].data); }
    free(l->t);
    memset(l, 0, sizeof *l);
}
