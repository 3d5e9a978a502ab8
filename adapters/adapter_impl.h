/* adapter_impl.h - internals shared by adapter.c (the common object), peft.c (PEFT formats:
 * LoRA, IA3, prefix tuning, prompt tuning / P-tuning), bottleneck.c (AdapterHub bottleneck
 * adapters and heads) and trainable.c (training state). Not a public header: only the .c files
 * of adapters/ include it.
 *
 * Ownership: everything an adapter points to is owned by the adapter (its tensor store, its
 * method state, its head and labels, its gradients) except the base model, which must outlive it.
 * Thread-safety: a loaded adapter is immutable; the delta callbacks only read it and use
 * per-thread scratch memory (pd_scratch), so any number of threads may run them at once. A
 * trainable adapter (a->train != NULL) is one thread's: its callbacks advance a->train->pass and
 * its *_bwd callbacks write its gradients. */
#ifndef PD_ADAPTER_IMPL_H
#define PD_ADAPTER_IMPL_H

#include "adapter.h"
#include "json.h"
#include "param.h"
#include "safetensors.h"

#include <cJSON.h>
#include <stdatomic.h>

typedef enum { PD_FMT_PEFT = 1, PD_FMT_HUB = 2 } pd_format;

/* Which file a stored tensor is saved into. PD_FILE_NONE: a trainable adapter's parameter that
 * no file holds (the prefix-projection MLP, folded into prompt_embeddings when saved). */
enum { PD_FILE_WEIGHTS = 0, PD_FILE_HEAD = 1, PD_FILE_NONE = 2 };

/* A tensor the adapter owns, kept under the exact name pd_adapter_save_dir writes. */
typedef struct pd_atensor {
    char *name;
    int ndim;
    int64_t shape[2];
    float *data;  /* (numel) F32, owned; never moves once stored (a->t itself may be realloc'd) */
    int file;     /* PD_FILE_WEIGHTS | PD_FILE_HEAD | PD_FILE_NONE */
    int shared;   /* 1 if it duplicates another tensor (AdapterHub adapter_norm_before): not counted in params */
    float *grad;  /* (numel) gradient accumulator when it is a trainable parameter, else NULL; owned */
    int decay;    /* AdamW decays it (HF Trainer: not a bias, not a LayerNorm parameter) */
} pd_atensor;

/* Training state of a trainable adapter (trainable.c); NULL in loaded / snapshot adapters.
 * The delta callbacks read it through a->train (the pointer is const, the state is not: the
 * pass counter advances inside a forward pass). */
typedef struct pd_train {
    int on;           /* training mode: dropout applies */
    uint64_t seed;    /* dropout seed given to pd_adapter_set_training */
    uint64_t pass;    /* training forward passes since then; part of every dropout mask's key */
    pd_param *param;  /* (n_param) the tensors with a gradient, in store order (data never moves) */
    int n_param;
    pd_head ghead;    /* the own head with w/b pointing at gradients (or at sinks) */
    float *sink[2 * PD_HEAD_MAX_LAYERS]; /* gradients of head layers that do not train (base pooler) */
} pd_train;

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
    pd_train *train;       /* trainable adapters only */
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
/* Stores a copy of n = d0 * d1 floats (init, or zeros when NULL) as a new tensor. */
pd_status pd_at_add(pd_adapter *a, const char *name, int ndim, int64_t d0, int64_t d1, const float *init, int file,
                    pd_atensor **out, char *err, size_t errlen);
/* The stored tensor whose data is p, or NULL. */
pd_atensor *pd_at_by_data(pd_adapter *a, const float *p);
static inline size_t pd_at_numel(const pd_atensor *t) { return (size_t)(t->shape[0] * t->shape[1]); }
/* The gradient buffer of the stored tensor whose data is p (which must exist), allocated
 * (zeroed, with the given AdamW decay flag) on first use; NULL on OOM. */
float *pd_at_grad(pd_adapter *a, const float *p, int decay);

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

/* ==== Serialising (adapter.c) ==== */

/* The adapter's files in memory, exactly the bytes pd_adapter_save_dir writes (config with
 * labels, tensors of each file). Fills f with malloc'd buffers; free with pd_adapter_files_free. */
pd_status pd_adapter_serialize(const pd_adapter *a, pd_adapter_files *f, char *err, size_t errlen);
void pd_adapter_files_free(pd_adapter_files *f);

/* ==== Training helpers (adapter.c) ==== */

/* A seeded generator (xoshiro256**) for initialisation: same seed, same adapter. */
typedef struct pd_rng {
    uint64_t s[4];
} pd_rng;
void pd_rng_seed(pd_rng *r, uint64_t seed);
double pd_rng_uniform(pd_rng *r); /* [0, 1) */
double pd_rng_normal(pd_rng *r);  /* N(0, 1) */
void pd_fill_normal(pd_rng *r, float *x, size_t n, double mean, double std);
void pd_fill_uniform(pd_rng *r, float *x, size_t n, double lo, double hi);

/* Dropout masks are never stored: each element's keep/drop decision is a hash of (seed, pass,
 * layer, module, row within the delta's row group, column), so the backward pass regenerates
 * the forward pass's mask. pd_dropout_key folds in the first four; pd_dropout_mul multiplies
 * rows [row0, row0 + rows) of x (rows, cols) by the mask (0 or 1 / (1 - p)). */
uint64_t pd_dropout_key(const pd_train *tr, int layer, int module);
void pd_dropout_mul(uint64_t key, int row0, int rows, int cols, float p, float *x);

/* LayerNorm over rows of x (rows, dim): y = (x - mean) / sqrt(var + eps) * w + b. */
void pd_ln_fwd(const float *x, const float *w, const float *b, float eps, int rows, int dim, float *y);
/* Its backward: dx = dL/dx (written) from dy; gw += sum dy * xhat, gb += sum dy (each may be NULL). */
void pd_ln_bwd(const float *x, const float *w, float eps, int rows, int dim, const float *dy, float *dx, float *gw,
               float *gb);
/* out[j] += sum over rows of x[i][j] */
void pd_colsum_add(const float *x, int rows, int cols, float *out);

/* A list of tensors being built for a fresh adapter's files. */
typedef struct pd_tlist {
    pd_st_wtensor *t; /* (n) data malloc'd, names strdup'd */
    int n, cap;
} pd_tlist;
/* Appends a zeroed tensor; returns its data, NULL on OOM. */
float *pd_tlist_add(pd_tlist *l, const char *name, int ndim, int64_t d0, int64_t d1);
void pd_tlist_free(pd_tlist *l);

/* What a method's fresh-adapter builder produces: the files' contents before serialisation. */
typedef struct pd_fresh {
    cJSON *config;      /* adapter_config.json */
    cJSON *head_config; /* AdapterHub head_config.json or NULL */
    pd_tlist w, head;   /* weights file, AdapterHub head file */
    float *mlp[5];      /* prefix projection: embedding, W1, b1, W2, b2 (malloc'd) or NULLs */
    int mlp_hidden;     /* encoder_hidden_size */
} pd_fresh;

/* The validated task head a fresh adapter gets (trainable.c decides, the formats write it). */
typedef struct pd_fresh_head {
    pd_task task;
    int num_labels;
    char *const *labels; /* (num_labels) final names */
} pd_fresh_head;

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

/* ==== Training (peft.c, bottleneck.c) ==== */

/* Fresh adapters: the method's config (with PEFT / AdapterHub defaults) and initialised tensors,
 * the task head included. user: the caller's hyperparameters (may be NULL). */
pd_status pd_peft_fresh(const pd_model *base, pd_method m, const cJSON *user, const pd_fresh_head *head, pd_rng *rng,
                        pd_fresh *out, char *err, size_t errlen);
pd_status pd_hub_fresh(const pd_model *base, const cJSON *user, const pd_fresh_head *head, pd_rng *rng, pd_fresh *out,
                       char *err, size_t errlen);

/* Makes a loaded adapter trainable: allocates gradient buffers (pd_atensor.grad) for the method
 * tensors it trains, sets the *_bwd callbacks and the derived buffers *_params_changed keeps
 * current. The head's gradients are trainable.c's. mlp (prefix projection, may be NULL): the
 * initial MLP to train through (copied). */
pd_status pd_peft_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen);
pd_status pd_hub_train_init(pd_adapter *a, char *err, size_t errlen);
void pd_peft_params_changed(pd_adapter *a);
void pd_hub_params_changed(pd_adapter *a);
/* The prefix-projection MLP of a trainable prefix adapter ([5] = embedding, W1, b1, W2, b2) or NULL. */
float *const *pd_peft_mlp(const pd_adapter *a, int *hidden);

#endif
