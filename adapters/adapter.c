/* adapter.c - the adapter object common to every method: loading from bytes or a directory
 * (the format is detected and its loader called through the table of formats.c), reference
 * counting, saving back in the adapter's own format, accessors. The methods live in lora.c,
 * prompt.c and hub.c; what they build on in tensors.c, labels.c and numerics.c. */
#include "adapter_impl.h"

#include "fs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

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
    pd_strv_free(a->labels, a->num_labels);
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
    char jerr[160];
    pd_status s = pd_json_parse(f->config, f->config_len, &a->config, jerr, sizeof jerr);
    if (s) {
        s = pd_err(err, errlen, s == PD_ERR_INVALID ? PD_ERR_FORMAT : s, "adapter_config.json: %s", jerr);
    } else if (!cJSON_IsObject(a->config)) {
        s = pd_err(err, errlen, PD_ERR_INVALID, "adapter_config.json: not a JSON object");
    } else if ((a->format = pd_format_detect(a->config))) {
        s = a->format->load(a, st, head_st, f, err, errlen);
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
    pd_status s = pd_st_write_buffer(w, k, meta, a->format->pt_metadata ? 1 : 0, out, len, err, errlen);
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
    cJSON *c = NULL, *hc = NULL;
    pd_status s;
    char *buf;
    size_t len;
    if ((s = a->format->save_config(a, &c, &hc))) return pd_err(err, errlen, s, "out of memory");
    buf = json_text(c, &len);
    cJSON_Delete(c);
    if (!buf) {
        cJSON_Delete(hc);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    f->config = buf;
    f->config_len = len;
    if ((s = tensors_buffer(a, PD_FILE_WEIGHTS, &buf, &len, err, errlen))) goto fail;
    f->weights = buf;
    f->weights_len = len;
    if (hc) {
        buf = json_text(hc, &len);
        cJSON_Delete(hc);
        hc = NULL;
        if (!buf) { s = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
        f->head_config = buf;
        f->head_config_len = len;
        if ((s = tensors_buffer(a, PD_FILE_HEAD, &buf, &len, err, errlen))) goto fail;
        f->head_weights = buf;
        f->head_weights_len = len;
    }
    return PD_OK;
fail:
    cJSON_Delete(hc);
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
    return a->head_config && a->format->files_head ? a->format->files_head : a->format->files;
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
