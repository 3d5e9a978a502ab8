/* adapter_impl.h - internals shared by adapter.c (the common object), peft.c (PEFT formats:
 * LoRA, IA3, prefix tuning, prompt tuning / P-tuning) and bottleneck.c (AdapterHub bottleneck
 * adapters and heads). Not a public header: only the .c files of adapters/ include it.
 *
 * Ownership: everything an adapter points to is owned by the adapter (its tensor store, its
 * method state, its head and labels) except the base model, which must outlive it.
 * Thread-safety: a loaded adapter is immutable; the delta callbacks only read it and use
 * per-thread scratch memory (pd_scratch), so any number of threads may run them at once. */
#ifndef PD_ADAPTER_IMPL_H
#define PD_ADAPTER_IMPL_H

#include "adapter.h"
#include "safetensors.h"

#include <cJSON.h>
#include <stdatomic.h>

typedef enum { PD_FMT_PEFT = 1, PD_FMT_HUB = 2 } pd_format;

/* Which file a stored tensor is saved into. */
enum { PD_FILE_WEIGHTS = 0, PD_FILE_HEAD = 1 };

/* A tensor the adapter owns, kept under the exact name pd_adapter_save_dir writes. */
typedef struct pd_atensor {
    char *name;
    int ndim;
    int64_t shape[2];
    float *data;  /* (numel) F32, owned */
    int file;     /* PD_FILE_WEIGHTS | PD_FILE_HEAD */
    int shared;   /* 1 if it duplicates another tensor (AdapterHub adapter_norm_before): not counted in params */
} pd_atensor;

struct pd_adapter {
    atomic_int refs;
    pd_method method;
    pd_format format;
    const pd_model *base;
    const pd_config *cfg;  /* the base's config */
    pd_delta delta;
    pd_task task;          /* see pd_adapter_task */
    pd_head head;          /* own head when head.task != PD_TASK_NONE */
    char **labels;         /* (num_labels) of the own classification head */
    int num_labels;
    int n_virtual;
    pd_atensor *t;         /* (nt) saved tensors */
    int nt, cap_t;
    void **owned;          /* (n_owned) derived buffers (not saved) */
    int n_owned, cap_owned;
    size_t owned_bytes;
    cJSON *config;         /* adapter_config.json as loaded, written back by save */
    cJSON *head_config;    /* AdapterHub head_config.json, or NULL */
    void *impl;            /* method state */
    void (*impl_free)(void *impl);
};

/* ==== Tensor store (adapter.c) ==== */

/* Converts t (any float dtype, 1-D or 2-D) to F32 and stores it under name. *out gets the
 * stored tensor. PD_ERR_UNSUPPORTED for integer dtypes, PD_ERR_MISMATCH for > 2 dims. */
pd_status pd_at_take(pd_adapter *a, const char *name, const pd_st_tensor *t, int file, pd_atensor **out, char *err,
                     size_t errlen);
/* Allocates a zeroed derived buffer of n floats owned by the adapter (not saved). NULL on OOM. */
float *pd_adapter_alloc(pd_adapter *a, size_t n);
/* "[2, 3]" */
void pd_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* ==== JSON helpers (adapter.c): 0 = ok (or absent: *out keeps the default), -1 = wrong type ==== */

int pd_json_bool(const cJSON *o, const char *key, int *out);
int pd_json_num(const cJSON *o, const char *key, double *out);
int pd_json_int(const cJSON *o, const char *key, int *out); /* integral number */
const cJSON *pd_json_get(const cJSON *o, const char *key);  /* NULL if absent or JSON null */

/* ==== Labels (adapter.c) ==== */

/* Parses label names for n classes from v: an array of strings, an id2label object
 * {"0": "neg"} or a label2id object {"neg": 0}. *out = NULL when v is NULL. what names the
 * source in messages. PD_ERR_INVALID on a malformed value or a count other than n. */
pd_status pd_labels_parse(const cJSON *v, int n, const char *what, char ***out, char *err, size_t errlen);
/* Sets a->labels for a classification head with n outputs: the caller's labels (f->labels),
 * else from_config (may be NULL), else the base's names when it has n labels, else LABEL_i. */
pd_status pd_adapter_set_labels(pd_adapter *a, int n, const cJSON *from_config, const char *config_what,
                                const pd_adapter_files *f, char *err, size_t errlen);

/* ==== Per-thread scratch for the delta callbacks (adapter.c) ==== */

/* A buffer of at least n floats private to the calling thread, valid until its next call;
 * NULL if it cannot grow. Freed when the thread exits. */
float *pd_scratch(size_t n);
/* Largest row count <= rows whose scratch (per_row floats each) can be had; the buffer in *buf.
 * Aborts (PD_ASSERT) only if not even one row fits, i.e. the process is out of memory inside a
 * forward pass whose callbacks cannot report errors. */
int pd_scratch_rows(int rows, size_t per_row, float **buf);

/* ==== Method loaders ==== */

/* peft.c: a->config holds the parsed adapter_config.json; st the adapter_model.safetensors.
 * Fills a->delta, a->head, a->labels, a->task, a->method and the tensor store. */
pd_status pd_peft_load(pd_adapter *a, const pd_st_file *st, const pd_adapter_files *f, char *err, size_t errlen);
/* bottleneck.c: a->config holds AdapterHub's adapter_config.json, st adapter.safetensors;
 * head_st (may be NULL) model_head.safetensors with f->head_config. */
pd_status pd_hub_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f,
                      char *err, size_t errlen);
/* Writes the labels into a copy of the config for saving (format-specific key). */
pd_status pd_peft_config_for_save(const pd_adapter *a, cJSON **out);
pd_status pd_hub_head_config_for_save(const pd_adapter *a, cJSON **out);

#endif
