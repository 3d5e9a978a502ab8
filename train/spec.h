/* spec.h - a training request, parsed and validated in one place: from the JSON of POST /train
 * (or of a job's spec.json when a job resumes) to a typed pd_train_spec holding the
 * hyperparameters, the trainable adapter and the tokenized examples. docs/TRAINING.md lists the
 * fields, their defaults and ranges.
 *
 * Ownership: pd_train_spec_parse returns a spec the caller frees with pd_train_spec_free (or
 * hands to pd_trainer_submit, which takes it over); it owns everything it points to.
 * Thread-safety: parsing reads the model and the registry (both thread-safe) and nothing else;
 * a spec is one thread's until it is handed over. */
#ifndef PD_TRAIN_SPEC_H
#define PD_TRAIN_SPEC_H

#include "engine.h"
#include "registry.h"

typedef enum { PD_PUBLISH_END = 0, PD_PUBLISH_BEST, PD_PUBLISH_EVERY_EVAL } pd_publish;

const char *pd_publish_name(pd_publish p); /* "end", "best", "every_eval" */

/* Gold answers of a QA evaluation example (SQuAD scores against the best of them). */
typedef struct pd_qa_gold {
    char *question, *context;
    char **answers;          /* (n_answers) */
    int n_answers;
} pd_qa_gold;

/* Examples a job trains or evaluates on. */
typedef struct pd_train_set {
    pd_train_example *ex;    /* (n) */
    int n;
    pd_qa_gold *gold;        /* (n) QA evaluation sets only, else NULL */
} pd_train_set;

typedef struct pd_train_spec {
    char adapter[65];        /* the adapter's name */
    int fresh;               /* "method" given: a new adapter; else training continues from a version */
    pd_method method;
    pd_task task;
    pd_wtype base_dtype;     /* the server's base (--dtype): forward and input gradients run through it */
    char **labels;           /* (num_labels) classification: the head's label names */
    int num_labels;
    int epochs, batch_size, max_seq_len, doc_stride;
    long eval_every;         /* optimizer steps between evaluations */
    pd_publish publish;
    double lr, weight_decay, warmup_ratio, max_grad_norm;
    uint64_t seed;
    long steps_per_epoch, total_steps, warmup_steps, log_every; /* the schedule these imply */
    pd_adapter *a;           /* the trainable adapter (one reference) */
    pd_adapter *source;      /* continuing: the version training starts from, or NULL */
    pd_train_set train, eval;
    /* what the job store keeps, as text: the request without its data, the data as JSON Lines */
    char *spec_json;
    char *train_jsonl, *eval_jsonl; /* eval_jsonl NULL without evaluation data */
} pd_train_spec;

/* Validates a training request and builds everything a job needs. json: the request object
 * (len bytes); train_jsonl / eval_jsonl: the examples as JSON Lines (multipart parts), NULL when
 * the request carries them as arrays or has none. source_dir: the directory of the version to
 * continue from (a resumed job's saved copy), NULL to take the registry's current version.
 * Failures name the field, and the example index for data (e.g. "train[12].label: unknown
 * label 'pos'"):
 *   PD_ERR_INVALID   malformed request: not JSON, wrong types, missing or unknown fields
 *   PD_ERR_MISMATCH  well-formed but unusable values: unknown labels, answers not in their
 *                    context, hyperparameters out of range, empty data
 *   PD_ERR_NOT_FOUND "method" omitted and the adapter does not exist
 *   PD_ERR_TOO_LARGE more than 10,000,000 examples; PD_ERR_UNSUPPORTED, PD_ERR_NOMEM.
 * The cost is checked before the adapter is built or any example tokenized (PD_ERR_MISMATCH
 * naming the estimate and the limit): the trainable state, estimated from the config and the
 * base's shape at 24 bytes per parameter (value, gradient, AdamW m and v, a snapshot, the
 * image it is built from), within max_bytes (0 = no limit); epochs x examples within 1e8. */
pd_status pd_train_spec_parse(const pd_model *base, pd_registry *reg, const char *json, size_t len, const char *train_jsonl,
                              size_t train_len, const char *eval_jsonl, size_t eval_len, const char *source_dir,
                              size_t max_bytes, pd_train_spec **out, char *err, size_t errlen);
void pd_train_spec_free(pd_train_spec *s); /* NULL is a no-op */

/* Drops what only the job store needs once it has written it: the texts and the source. */
void pd_train_spec_drop_texts(pd_train_spec *s);

void pd_train_set_free(pd_train_set *set);

/* The run's order, a function of the seed and the position only (so a resumed job takes the
 * steps an uninterrupted one would): perm (train.n) gets epoch's example order, a Fisher-Yates
 * shuffle; pd_train_dropout_seed gives step's dropout seed. */
void pd_train_order(const pd_train_spec *s, long epoch, int *perm);
uint64_t pd_train_dropout_seed(const pd_train_spec *s, long step);

#endif
