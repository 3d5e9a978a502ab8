/* adapter_impl.h - internals shared by the files of adapters/ (not a public header):
 *   adapter.c    the object: loading, saving, references, accessors
 *   formats.c    the table of formats (PEFT, AdapterHub) and methods, through which adapter.c and
 *                trainable.c reach a method's code, so no method file calls back into them
 *   peft.c       the PEFT format (peft.h), with its methods lora.c (LoRA, IA3) and prompt.c
 *                (prefix tuning, prompt tuning / P-tuning)
 *   hub.c        the AdapterHub format, with the bottleneck computation in bottleneck.c
 *   tensors.c    the tensor store, derived buffers, tensor lists, per-thread scratch
 *   labels.c     label names;  numerics.c  init generator, dropout masks, LayerNorm backward
 *   trainable.c  training state (trainable.h)
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

typedef struct pd_format_ops pd_format_ops;
typedef struct pd_method_ops pd_method_ops;

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
    const pd_format_ops *format;
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

/* ==== Tensor store (tensors.c) ==== */

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

/* ==== Labels (labels.c) ==== */

/* Parses label names for n classes from v: an array of strings, an id2label object
 * {"0": "neg"} or a label2id object {"neg": 0}. *out = NULL when v is NULL. what names the
 * source in messages. PD_ERR_INVALID on a malformed value or a count other than n. */
pd_status pd_labels_parse(const cJSON *v, int n, const char *what, char ***out, char *err, size_t errlen);
/* Sets a->labels for a classification head with n outputs: the caller's labels (f->labels),
 * else from_config (may be NULL), else the base's names when it has n labels, else LABEL_i. */
pd_status pd_adapter_set_labels(pd_adapter *a, int n, const cJSON *from_config, const char *config_what,
                                const pd_adapter_files *f, char *err, size_t errlen);

/* ==== Per-thread scratch for the delta callbacks (tensors.c) ==== */

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

/* ==== Numerics (numerics.c) ==== */

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

/* ==== Fresh adapters' files (tensors.c, the formats) ==== */

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

/* ==== Formats and methods (formats.c) ==== */

/* A file format: its files, how to tell its adapter_config.json, and its loader and writer. */
struct pd_format_ops {
    const char *name;                 /* "PEFT", "AdapterHub" */
    const char *const *files;         /* what pd_adapter_save_dir writes: config, weights */
    const char *const *files_head;    /* ... with a separate head (config, weights, head config, head weights), or NULL */
    int pt_metadata;                  /* safetensors metadata {"format": "pt"}, as PEFT's save_file writes */
    int (*detect)(const cJSON *config);
    /* a->config holds the parsed adapter_config.json, st the weights file; head_st (may be NULL)
     * the head weights with f->head_config. Fills a->method, a->delta, a->head, a->labels,
     * a->task, a->impl and the tensor store. */
    pd_status (*load)(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                      size_t errlen);
    /* The config (and head config, NULL without one) as saving writes them: labels recorded
     * where the format keeps them. PD_ERR_NOMEM. */
    pd_status (*save_config)(const pd_adapter *a, cJSON **config, cJSON **head_config);
};

/* A method: its name, format and code. */
struct pd_method_ops {
    pd_method method;
    const char *name;                 /* pd_method_name's */
    const pd_format_ops *format;
    /* the method's part of its format's load */
    pd_status (*load)(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                      size_t errlen);
    /* Makes a loaded adapter trainable: gradient buffers (pd_atensor.grad) for the method tensors
     * it trains, the *_bwd callbacks and the derived buffers params_changed keeps current. The
     * head's gradients are trainable.c's. mlp (prefix projection, may be NULL): the initial MLP to
     * train through (copied). */
    pd_status (*train_init)(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen);
    void (*params_changed)(pd_adapter *a);
    /* A fresh adapter's files: the method's config (with PEFT / AdapterHub defaults, user's
     * hyperparameters (may be NULL) on top) and initialised tensors, the task head included. */
    pd_status (*fresh)(const pd_method_ops *self, const pd_model *base, const cJSON *user, const pd_fresh_head *head, pd_rng *rng,
                       pd_fresh *out, char *err, size_t errlen);
    /* The prefix-projection MLP of a trainable adapter ([5] = embedding, W1, b1, W2, b2) or NULL;
     * NULL function: the method has none. */
    float *const *(*mlp)(const pd_adapter *a, int *hidden);
    /* The hyperparameters fresh() accepts (NULL-terminated); anything else is refused. */
    const char *const *config_keys;
};

/* The methods' hyperparameter names (PEFT / AdapterHub names), for the table. */
extern const char *const pd_lora_config_keys[], *const pd_ia3_config_keys[], *const pd_prefix_config_keys[],
    *const pd_prompt_config_keys[], *const pd_hub_config_keys[];

const pd_format_ops *pd_format_detect(const cJSON *config); /* NULL: no format's */
const pd_method_ops *pd_method_ops_of(pd_method m);         /* NULL for an unknown method */

/* The methods' entry points, for the table: lora.c (LoRA, IA3), prompt.c (prefix, prompt), hub.c. */
pd_status pd_lora_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                       size_t errlen);
pd_status pd_lora_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen);
void pd_lora_params_changed(pd_adapter *a);
pd_status pd_lora_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *user, const pd_fresh_head *head, pd_rng *rng,
                        pd_fresh *out, char *err, size_t errlen);
pd_status pd_prompt_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                         size_t errlen);
pd_status pd_prompt_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen);
void pd_prompt_params_changed(pd_adapter *a);
pd_status pd_prompt_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *user, const pd_fresh_head *head, pd_rng *rng,
                          pd_fresh *out, char *err, size_t errlen);
float *const *pd_prompt_mlp(const pd_adapter *a, int *hidden);
int pd_hub_detect(const cJSON *config);
pd_status pd_hub_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                      size_t errlen);
pd_status pd_hub_head_config_for_save(const pd_adapter *a, cJSON **out);
pd_status pd_hub_train_init(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen);
void pd_hub_params_changed(pd_adapter *a);
pd_status pd_hub_fresh(const pd_method_ops *self, const pd_model *base, const cJSON *user, const pd_fresh_head *head, pd_rng *rng,
                       pd_fresh *out, char *err, size_t errlen);

#endif
