/* adapter.h - adapter objects: LoRA, IA3, prefix tuning, prompt tuning (PEFT format) and
 * bottleneck adapters (AdapterHub format), each turned into a core pd_delta.
 *
 * An adapter is loaded from its files (bytes in memory or a directory), validated against the
 * base model (every tensor known and used, every shape fitting), and is immutable afterwards.
 * It is reference-counted: pd_adapter_load returns it with one reference; pd_adapter_retain /
 * pd_adapter_release add and drop references; the last release frees it. Retain/release are
 * thread-safe (atomic); everything else only reads.
 *
 * Files (see docs/ADAPTERS.md):
 *   PEFT:       adapter_config.json + adapter_model.safetensors (heads inside, modules_to_save)
 *   AdapterHub: adapter_config.json + adapter.safetensors [+ head_config.json + model_head.safetensors]
 * Pickle files (adapter_model.bin, pytorch_adapter.bin) are refused: unpickling runs code. */
#ifndef PD_ADAPTER_H
#define PD_ADAPTER_H

#include "model.h"

typedef enum {
    PD_METHOD_LORA = 1,
    PD_METHOD_IA3,
    PD_METHOD_PREFIX,     /* PEFT PREFIX_TUNING */
    PD_METHOD_PROMPT,     /* PEFT PROMPT_TUNING / P_TUNING (input-level soft prompt) */
    PD_METHOD_BOTTLENECK, /* AdapterHub seq_bn / double_seq_bn / par_bn */
} pd_method;

const char *pd_method_name(pd_method m); /* "lora", "ia3", "prefix_tuning", "prompt_tuning", "bottleneck" */
/* The method named name (one of pd_method_name's): 0 and *out set, or -1. */
int pd_method_parse(const char *name, pd_method *out);

typedef struct pd_adapter pd_adapter;

/* An adapter's files as bytes. config and weights are required; the rest optional (NULL/0).
 * labels: a JSON array of label names, overriding labels found in the files. */
typedef struct pd_adapter_files {
    const char *config;       size_t config_len;       /* adapter_config.json */
    const void *weights;      size_t weights_len;      /* adapter_model.safetensors | adapter.safetensors */
    const char *head_config;  size_t head_config_len;  /* AdapterHub head_config.json */
    const void *head_weights; size_t head_weights_len; /* AdapterHub model_head.safetensors */
    const char *labels;       size_t labels_len;       /* JSON array of strings */
} pd_adapter_files;

/* Builds an adapter for base from files. Errors: PD_ERR_FORMAT (corrupt JSON/safetensors),
 * PD_ERR_UNSUPPORTED (peft_type, use_dora, ...), PD_ERR_MISMATCH (does not fit the base: the
 * message names the tensor and both shapes, or the architecture), PD_ERR_INVALID. */
pd_status pd_adapter_load(const pd_model *base, const pd_adapter_files *f, pd_adapter **out, char *err, size_t errlen);

/* Loads from a directory holding the files under their usual names. */
pd_status pd_adapter_load_dir(const pd_model *base, const char *dir, pd_adapter **out, char *err, size_t errlen);

/* Writes the adapter back in its own format into dir (which must exist): PEFT
 * adapter_config.json + adapter_model.safetensors, or AdapterHub adapter_config.json +
 * adapter.safetensors (+ head files). Files are written directly; callers wanting atomicity
 * write into a temporary directory and rename it. */
pd_status pd_adapter_save_dir(const pd_adapter *a, const char *dir, char *err, size_t errlen);

void pd_adapter_retain(pd_adapter *a);
void pd_adapter_release(pd_adapter *a); /* NULL is a no-op */
/* The number of references right now (an atomic snapshot; other holders may change it the
 * moment after). The registry reads it under its lock, where a count of 1 means no request
 * pins the version, so it can leave memory without a second copy being loaded. */
int pd_adapter_refcount(const pd_adapter *a);

const pd_delta *pd_adapter_delta(const pd_adapter *a);
pd_method pd_adapter_method(const pd_adapter *a);
/* The task the adapter serves: its own head's task, else the task_type in its config, else
 * PD_TASK_NONE (use the base model's head). */
pd_task pd_adapter_task(const pd_adapter *a);
/* The head to use with this adapter for task t: its own, else the base model's (NULL if none). */
const pd_head *pd_adapter_head(const pd_adapter *a, const pd_model *base, pd_task t);
int pd_adapter_num_labels(const pd_adapter *a);          /* of its own head; 0 if none */
const char *pd_adapter_label(const pd_adapter *a, int i); /* NULL if out of range */
int pd_adapter_n_virtual(const pd_adapter *a);           /* prompt + prefix tokens it adds */
int64_t pd_adapter_params(const pd_adapter *a);          /* trainable parameters it holds */
size_t pd_adapter_bytes(const pd_adapter *a);            /* resident bytes */
/* Names of the files pd_adapter_save_dir writes, NULL-terminated static list. */
const char *const *pd_adapter_file_names(const pd_adapter *a);

#endif
