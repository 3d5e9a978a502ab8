/* trainer.c - training jobs on trainable adapters. See trainer.h and docs/TRAINING.md.
 *
 * Layout of this file:
 *   Engine       forward / loss / backward of a batch in micro-batches, one optimizer step
 *   Data         request parsing and validation, tokenization, QA answer spans
 *   Evaluation   accuracy and macro F1, SQuAD-style exact match and token F1, losses
 *   Persistence  data_dir/jobs/<id>/: spec, data, job.json, checkpoints (tmp + fsync + rename)
 *   Jobs         the queue and its workers (redis bio.c: a list, a mutex, a condition variable,
 *                the lock dropped while a job runs), publishing, cancel, JSON views
 *
 * Determinism: the example order of epoch e is a Fisher-Yates shuffle driven by splitmix64
 * seeded from (seed, e); dropout masks are drawn from (seed, step). Both are functions of the
 * seed and the position in the run, so a checkpoint needs no generator state beyond them and a
 * resumed job takes exactly the steps an uninterrupted one would. */
#include "trainer.h"

#include "fs.h"
#include "json.h"
#include "pipeline.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACT_BUDGET_BYTES ((size_t)1 << 30)   /* training activations per micro-batch (BERT-base: 1,664 rows) */
#define EVAL_TOKENS 4096                     /* tokens per evaluation forward */
#define MAX_WAITING_JOBS 64                  /* queued jobs before submit says busy */
#define LOSS_POINTS 500                      /* at most this many points in "loss" */
#define CKPT_EVERY_S 30.0                    /* checkpoint at least this often (seconds) */
#define YIELD_MAX_S 0.5                      /* longest wait for inference before one step runs */
#define EVAL_MAX_ANSWER 30                   /* QA evaluation: longest answer in tokens (run_qa) */
#define DEFAULT_SEED 42                      /* transformers' TrainingArguments.seed */
#define PATH_CAP 4096
#define MAX_EXAMPLES 10000000

/* ==== Small helpers ==== */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A well-mixed 64-bit value for (a, b): seeds of per-epoch shuffles and per-step dropout. */
static uint64_t mix2(uint64_t a, uint64_t b) {
    uint64_t s = a ^ (b * 0xD1B54A32D192ED03ull);
    splitmix64(&s);
    return splitmix64(&s);
}

/* Uniform integer in [0, n) without modulo bias. */
static uint64_t rand_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t r = splitmix64(s);
        if (r < lim) return r % n;
    }
}

/* perm = a Fisher-Yates shuffle of 0..n-1 seeded from s. */
static void shuffle(int *perm, int n, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int k = (int)rand_below(&s, (uint64_t)i + 1);
        int x = perm[i];
        perm[i] = perm[k];
        perm[k] = x;
    }
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static void strv_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ==== Engine ==== */

struct pd_train_engine {
    const pd_model *base;
    pd_adapter *a;
    pd_task task;
    pd_ctx *ctx;
    const pd_head *head;
    pd_head ghead;                           /* same shapes; w/b point at gradient buffers */
    float *frozen[2 * PD_HEAD_MAX_LAYERS];   /* sinks for head layers that do not train */
    size_t frozen_n[2 * PD_HEAD_MAX_LAYERS];
    int max_tokens;
    pd_seq *seqs;
    int cap_seqs;
    /* called between micro-batches; nonzero aborts the step with PD_ERR_CANCELLED */
    int (*hook)(void *arg);
    void *hook_arg;
};

void pd_train_engine_free(pd_train_engine *e) {
    if (!e) return;
    pd_ctx_free(e->ctx);
    for (int i = 0; i < 2 * PD_HEAD_MAX_LAYERS; i++) free(e->frozen[i]);
    free(e->seqs);
    free(e);
}

/* Floats one row of a training micro-batch keeps (core/model.c: saved activations, gradient
 * scratch and the hidden-state gradient), used to size micro-batches from the budget. */
static size_t train_row_floats(const pd_config *c) {
    size_t H = (size_t)c->hidden, F = (size_t)c->ffn, L = (size_t)c->layers;
    return (L + 2) * H + L * (7 * H + 2 * F) + 8 * H + F + 4 * H /* adapter scratch, roughly */;
}

pd_status pd_train_engine_new(const pd_model *base, pd_adapter *a, pd_task task, pd_pool *pool, int max_tokens,
                              pd_train_engine **out, char *err, size_t errlen) {
    *out = NULL;
    const pd_head *head = pd_adapter_head(a, base, task);
    if (!head || head->task != task || head->n_layers < 1)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter has no %s head", pd_task_name(task));
    pd_train_engine *e = calloc(1, sizeof *e);
    if (!e) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    e->base = base;
    e->a = a;
    e->task = task;
    e->head = head;
    e->ghead = *head;
    if (!(e->ctx = pd_ctx_new(base, pool))) {
        pd_train_engine_free(e);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    pd_ctx_set_training(e->ctx, 1);
    /* the adapter's own head trains (its layers that are base weights, such as a bert pooler,
     * point at sinks in the adapter); the base model's head, when the adapter has none, stays
     * frozen: its gradients go to sinks here */
    const pd_head *gh = pd_adapter_head_grad(a);
    if (gh && head == pd_adapter_head(a, base, task) && gh->task == task) {
        e->ghead = *gh;
    } else {
        for (int k = 0; k < head->n_layers; k++) {
            const pd_head_layer *hl = &head->layer[k];
            e->frozen_n[2 * k] = (size_t)hl->in * hl->out;
            e->frozen_n[2 * k + 1] = (size_t)hl->out;
            if (!(e->frozen[2 * k] = calloc(e->frozen_n[2 * k], sizeof(float))) ||
                !(e->frozen[2 * k + 1] = calloc(e->frozen_n[2 * k + 1], sizeof(float)))) {
                pd_train_engine_free(e);
                return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            }
            e->ghead.layer[k].w = e->frozen[2 * k];
            e->ghead.layer[k].b = hl->b ? e->frozen[2 * k + 1] : NULL;
        }
    }
    const pd_config *cf = pd_model_config(base);
    if (max_tokens <= 0) {
        size_t rows = ACT_BUDGET_BYTES / (train_row_floats(cf) * sizeof(float));
        max_tokens = rows < (size_t)cf->max_tokens ? cf->max_tokens : rows > (1u << 20) ? (1 << 20) : (int)rows;
    }
    e->max_tokens = max_tokens;
    *out = e;
    return PD_OK;
}

pd_ctx *pd_train_engine_ctx(pd_train_engine *e) { return e->ctx; }
int pd_train_engine_max_tokens(const pd_train_engine *e) { return e->max_tokens; }

static int engine_seqs(pd_train_engine *e, int n) {
    if (n <= e->cap_seqs) return 0;
    pd_seq *s = realloc(e->seqs, sizeof *s * (size_t)n);
    if (!s) return -1;
    e->seqs = s;
    e->cap_seqs = n;
    return 0;
}

pd_status pd_train_engine_grad(pd_train_engine *e, const pd_train_example *ex, const int *idx, int n, double *loss,
                               char *err, size_t errlen) {
    *loss = NAN;
    if (n <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty batch");
    if (engine_seqs(e, n)) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const pd_delta *d = pd_adapter_delta(e->a);
    int np = d ? d->n_prompt : 0;
    float scale = 1.0f / (float)n; /* loss averaged over the batch, whatever the micro-batches */
    double total = 0;
    /* Micro-batches of about equal size: as few as max_tokens allows, each filled up to the
     * batch's rows / that number (BERT-base, 16 x 128 tokens under its 1,664-row limit: 8 + 8, not 13 + 3;
     * larger GEMMs run faster, and the last micro-batch is not a small one). */
    long all_rows = 0;
    for (int k = 0; k < n; k++) all_rows += ex[idx[k]].len + np;
    long n_micro = (all_rows + e->max_tokens - 1) / e->max_tokens, target = (all_rows + n_micro - 1) / n_micro;
    for (int i = 0; i < n;) {
        /* micro-batch: examples up to the target, never more than max_tokens rows, at least one */
        int j = i, rows = 0;
        while (j < n && (j == i || (rows < target && rows + ex[idx[j]].len + np <= e->max_tokens))) {
            const pd_train_example *x = &ex[idx[j]];
            e->seqs[j - i] = (pd_seq){x->ids, x->type_ids, x->len, d, e->task == PD_TASK_CLS};
            rows += x->len + np;
            j++;
        }
        if (i > 0 && e->hook && e->hook(e->hook_arg)) return pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
        pd_status st = pd_forward(e->ctx, e->seqs, j - i, err, errlen);
        if (st) return st;
        if (!pd_ctx_grad_hidden(e->ctx)) return pd_err(err, errlen, PD_ERR_INVALID, "the context is not in training mode");
        for (int k = i; k < j; k++) {
            const pd_train_example *x = &ex[idx[k]];
            float l = pd_ctx_head_loss(e->ctx, k - i, e->head, &e->ghead, x->label, x->start, x->end, scale, NULL);
            if (isnan(l)) return pd_err(err, errlen, PD_ERR_NOMEM, "loss of example %d could not be computed", idx[k]);
            total += l;
        }
        if ((st = pd_backward(e->ctx, err, errlen))) return st;
        i = j;
    }
    *loss = total / n;
    return PD_OK;
}

pd_status pd_train_engine_step(pd_train_engine *e, pd_adamw *opt, const pd_train_example *ex, const int *idx, int n,
                               double lr, double max_grad_norm, uint64_t dropout_seed, double *loss, double *grad_norm,
                               char *err, size_t errlen) {
    pd_adapter_zero_grad(e->a);
    for (int i = 0; i < 2 * PD_HEAD_MAX_LAYERS; i++)
        if (e->frozen[i]) memset(e->frozen[i], 0, e->frozen_n[i] * sizeof(float));
    pd_adapter_set_training(e->a, 1, dropout_seed);
    pd_status st = pd_train_engine_grad(e, ex, idx, n, loss, err, errlen);
    if (st) return st;
    int np = 0;
    const pd_param *params = pd_adapter_train_params(e->a, &np);
    double norm = pd_grad_clip(params, np, max_grad_norm);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm) || !isfinite(*loss))
        return pd_err(err, errlen, PD_ERR_INVALID, "the loss or its gradient is not finite (loss %g, gradient norm %g): "
                      "lower the learning rate", *loss, norm);
    pd_adamw_step(opt, NULL, lr);
    pd_adapter_params_changed(e->a);
    return PD_OK;
}

/* ==== Jobs: the record ==== */

typedef enum { J_QUEUED = 0, J_RUNNING, J_SUCCEEDED, J_FAILED, J_CANCELLED } jstatus;
static const char *const STATUS_NAME[] = {"queued", "running", "succeeded", "failed", "cancelled"};

typedef enum { PUB_END = 0, PUB_BEST, PUB_EVERY_EVAL } pubmode;
static const char *const PUBLISH_NAME[] = {"end", "best", "every_eval"};

/* Gold answers of a QA evaluation example (SQuAD scores against the best of them). */
typedef struct qa_gold {
    char *question, *context;
    char **answers;
    int n_answers;
} qa_gold;

typedef struct evalrec {
    long step;
    double accuracy, f1, loss;
} evalrec;

typedef struct job {
    char id[32];
    char adapter[65];
    /* the spec (immutable once queued) */
    int fresh;               /* "method" given: a new adapter; else training continues from a version */
    pd_method method;
    pd_task task;
    char **labels;
    int num_labels;
    int epochs, batch_size, max_seq_len, doc_stride;
    long eval_every;
    pubmode publish;
    double lr, wd, warmup_ratio, max_grad_norm;
    uint64_t seed;
    cJSON *spec;             /* the request without its data: spec.json */
    cJSON *train_raw, *eval_raw; /* the examples as given, until written to disk */
    pd_train_example *train, *eval;
    int n_train, n_eval;
    qa_gold *gold;           /* (n_eval) QA evaluation answers */
    pd_adapter *a;           /* the trainable adapter (owned by the worker while running) */
    pd_adapter *source;      /* continue jobs: the version training started from, until saved */
    long steps_per_epoch, total_steps, warmup_steps, log_every;
    char ckpt[64];           /* checkpoint directory to resume from, "" = none */
    long ckpt_seq;           /* number of the last checkpoint directory (ckpt-<seq>) */
    long ckpt_step;          /* optimizer step it holds */
    /* progress: guarded by t->lock */
    jstatus status;
    int hold;                /* queued but not yet on disk: workers skip it */
    long step;
    double ex_per_s, eta_s;
    long *loss_step;
    double *loss_val;
    int n_loss, cap_loss;
    evalrec *ev;
    int n_ev, cap_ev;
    int has_best;
    long best_step;
    double best_value;
    int *versions;
    int n_versions, cap_versions;
    char error[512];
    double created_at, started_at, finished_at;
    long resumed_from;       /* -1: not resumed */
    cJSON *frozen;           /* a finished job read back from disk, or another process's: its JSON */
    int lock_fd;             /* flock'd <dir>/lock while this process owns the job, else -1 */
    atomic_int cancel;       /* 1 = DELETE /jobs/{id}, 2 = the trainer is shutting down */
    /* worker-only */
    double loss_acc;
    int loss_acc_n;
    struct job *next;
} job;

static void examples_free(pd_train_example *x, int n) {
    if (!x) return;
    for (int i = 0; i < n; i++) {
        free(x[i].ids);
        free(x[i].type_ids);
    }
    free(x);
}

static void gold_free(qa_gold *g, int n) {
    if (!g) return;
    for (int i = 0; i < n; i++) {
        free(g[i].question);
        free(g[i].context);
        strv_free(g[i].answers, g[i].n_answers);
    }
    free(g);
}

/* Drops what only a runnable job needs (data, adapter); the record stays. */
static void job_drop_data(job *j) {
    examples_free(j->train, j->n_train);
    examples_free(j->eval, j->n_eval);
    gold_free(j->gold, j->n_eval);
    j->train = j->eval = NULL;
    j->gold = NULL;
    cJSON_Delete(j->train_raw);
    cJSON_Delete(j->eval_raw);
    j->train_raw = j->eval_raw = NULL;
    pd_adapter_release(j->a);
    pd_adapter_release(j->source);
    j->a = j->source = NULL;
}

/* Gives up ownership of the job's directory: another process may take an unfinished job over. */
static void job_unlock(job *j) {
    if (j->lock_fd >= 0) close(j->lock_fd); /* closing releases the flock */
    j->lock_fd = -1;
}

static void job_free(job *j) {
    if (!j) return;
    job_unlock(j);
    job_drop_data(j);
    strv_free(j->labels, j->num_labels);
    cJSON_Delete(j->spec);
    cJSON_Delete(j->frozen);
    free(j->loss_step);
    free(j->loss_val);
    free(j->ev);
    free(j->versions);
    free(j);
}

/* ==== Data: request fields ==== */

static const char *const TOP_KEYS[] = {
    "adapter", "method", "task", "labels", "config", "train", "eval", "eval_fraction", "epochs", "batch_size",
    "learning_rate", "weight_decay", "warmup_ratio", "max_seq_len", "seed", "eval_every", "publish", "max_grad_norm",
    "doc_stride", NULL,
};

/* Learning rates that train each method well from scratch (documented in docs/TRAINING.md). */
static double default_lr(pd_method m) {
    switch (m) {
    case PD_METHOD_LORA: return 1e-3;
    case PD_METHOD_IA3: return 3e-3;
    case PD_METHOD_PREFIX: return 1e-2;
    case PD_METHOD_PROMPT: return 3e-2;
    case PD_METHOD_BOTTLENECK: return 1e-3;
    }
    return 1e-3;
}

/* The checks of the method's hyperparameters that need no adapter: types and ranges, with
 * PEFT / AdapterHub key names. The adapter constructor checks the rest (target modules...). */
static pd_status check_config(pd_method m, const cJSON *c, const pd_config *cf, char *err, size_t errlen) {
    if (!c) return PD_OK;
    if (!cJSON_IsObject(c)) return pd_err(err, errlen, PD_ERR_INVALID, "config: must be an object");
    const char *w = "config.";
    pd_status st = PD_OK;
    long l = 0;
    double x = 0;
    int flag = 0;
    const char *s = NULL;
    switch (m) {
    case PD_METHOD_LORA:
        if ((st = pd_json_long(c, "r", w, 1, 4096, PD_ERR_MISMATCH, &l, err, errlen))) return st;
        if ((st = pd_json_num(c, "lora_alpha", w, 0, 1, 1e6, PD_ERR_MISMATCH, &x, err, errlen))) return st;
        if ((st = pd_json_num(c, "lora_dropout", w, 0, 0, 0.999, PD_ERR_MISMATCH, &x, err, errlen))) return st;
        if ((st = pd_json_bool(c, "use_rslora", w, &flag, err, errlen))) return st;
        {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
            if (t && !cJSON_IsNull(t) && !cJSON_IsString(t)) {
                if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) == 0)
                    return pd_err(err, errlen, PD_ERR_INVALID, "config.target_modules: must be a non-empty list of names or a regex string");
                const cJSON *it;
                cJSON_ArrayForEach(it, t) if (!cJSON_IsString(it))
                    return pd_err(err, errlen, PD_ERR_INVALID, "config.target_modules: must hold strings");
            }
        }
        break;
    case PD_METHOD_PREFIX:
    case PD_METHOD_PROMPT:
        if ((st = pd_json_long(c, "num_virtual_tokens", w, 1, 1 << 20, PD_ERR_MISMATCH, &l, err, errlen))) return st;
        if (l > 0 && l + 3 > cf->max_tokens)
            return pd_err(err, errlen, PD_ERR_MISMATCH,
                          "config.num_virtual_tokens: %ld virtual tokens leave no room for text in the model's %d positions", l,
                          cf->max_tokens);
        if (m == PD_METHOD_PREFIX) {
            if ((st = pd_json_bool(c, "prefix_projection", w, &flag, err, errlen))) return st;
            if ((st = pd_json_long(c, "encoder_hidden_size", w, 1, 1 << 16, PD_ERR_MISMATCH, &l, err, errlen))) return st;
        } else if ((st = pd_json_str(c, "prompt_init_text", w, &s, err, errlen))) return st;
        break;
    case PD_METHOD_BOTTLENECK:
        if ((st = pd_json_num(c, "reduction_factor", w, 0, 1, (double)cf->hidden, PD_ERR_MISMATCH, &x, err, errlen))) return st;
        if ((st = pd_json_str(c, "non_linearity", w, &s, err, errlen))) return st;
        s = NULL;
        if ((st = pd_json_str(c, "architecture", w, &s, err, errlen))) return st;
        if (s && strcmp(s, "seq_bn") && strcmp(s, "double_seq_bn") && strcmp(s, "par_bn"))
            return pd_err(err, errlen, PD_ERR_MISMATCH, "config.architecture: '%s' is not seq_bn, double_seq_bn or par_bn", s);
        break;
    case PD_METHOD_IA3:
        break;
    }
    return PD_OK;
}

/* ==== Data: examples ==== */

/* Parses JSON Lines text into a JSON array (blank lines skipped). The index in messages counts
 * examples, as in "train[12]". */
static pd_status jsonl_parse(const char *what, const char *text, size_t len, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    size_t pos = 0;
    int idx = 0, line = 0;
    while (pos < len) {
        size_t e = pos;
        while (e < len && text[e] != '\n') e++;
        line++;
        size_t a = pos, b = e;
        while (a < b && isspace((unsigned char)text[a])) a++;
        while (b > a && isspace((unsigned char)text[b - 1])) b--;
        pos = e + 1;
        if (a == b) continue;
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(text + a, b - a, &end, 0);
        if (!v || end != text + b) {
            cJSON_Delete(v);
            cJSON_Delete(arr);
            return pd_err(err, errlen, PD_ERR_INVALID, "%s[%d]: line %d is not valid JSON", what, idx, line);
        }
        cJSON_AddItemToArray(arr, v);
        if (++idx > MAX_EXAMPLES) {
            cJSON_Delete(arr);
            return pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: more than %d examples", what, MAX_EXAMPLES);
        }
    }
    *out = arr;
    return PD_OK;
}

/* The label of a classification example as a string key: strings as is, integers in decimal.
 * Returns 0, or -1 when the value is neither. */
static int label_key(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsString(v)) {
        snprintf(buf, cap, "%s", v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15) {
        snprintf(buf, cap, "%.0f", v->valuedouble);
        return 0;
    }
    return -1;
}

/* Index of the example's label: a string names one of labels, an integer is an index. */
static int label_index(const cJSON *v, char *const *labels, int n) {
    if (cJSON_IsString(v)) {
        for (int i = 0; i < n; i++)
            if (!strcmp(labels[i], v->valuestring)) return i;
        return -1;
    }
    if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 0 && v->valuedouble < n)
        return (int)v->valuedouble;
    return -1;
}

/* Byte offset of code point ci in UTF-8 s (len bytes), or -1 past the end. */
static long utf8_byte_at(const char *s, size_t len, long ci) {
    long c = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
        if (c == ci) return (long)i;
        c++;
    }
    return c == ci ? (long)len : -1;
}

/* The answers of a QA example: {"answer": {"text", "start"}} or SQuAD's
 * {"answers": {"text": [...], "answer_start": [...]}}. Checks that each is the substring of the
 * context at its start (code points, as Python slices) and returns them as byte ranges. */
typedef struct span_b { long b0, b1; const char *text; } span_b;

static pd_status qa_answers(const cJSON *o, const char *where, const char *context, span_b **out, int *n, char *err,
                            size_t errlen) {
    *out = NULL;
    *n = 0;
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(o, "answer");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(o, "answers");
    const cJSON *texts = NULL, *starts = NULL;
    int cnt = 1;
    if (one && !cJSON_IsNull(one)) {
        if (!cJSON_IsObject(one)) return pd_err(err, errlen, PD_ERR_INVALID, "%s.answer: must be an object {\"text\", \"start\"}", where);
    } else if (many && !cJSON_IsNull(many)) {
        texts = cJSON_GetObjectItemCaseSensitive(many, "text");
        starts = cJSON_GetObjectItemCaseSensitive(many, "answer_start");
        if (!cJSON_IsObject(many) || !cJSON_IsArray(texts) || !cJSON_IsArray(starts) ||
            cJSON_GetArraySize(texts) != cJSON_GetArraySize(starts))
            return pd_err(err, errlen, PD_ERR_INVALID, "%s.answers: must be {\"text\": [...], \"answer_start\": [...]} of equal lengths", where);
        cnt = cJSON_GetArraySize(texts);
        if (cnt == 0) return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.answers: no answer (unanswerable questions are not supported)", where);
    } else {
        return pd_err(err, errlen, PD_ERR_INVALID, "%s.answer: required", where);
    }
    span_b *sp = calloc((size_t)cnt, sizeof *sp);
    if (!sp) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    size_t clen = strlen(context);
    for (int k = 0; k < cnt; k++) {
        const cJSON *tv, *sv;
        char f[96];
        if (one && !cJSON_IsNull(one)) {
            tv = cJSON_GetObjectItemCaseSensitive(one, "text");
            sv = cJSON_GetObjectItemCaseSensitive(one, "start");
            snprintf(f, sizeof f, "%s.answer", where);
        } else {
            tv = cJSON_GetArrayItem(texts, k);
            sv = cJSON_GetArrayItem(starts, k);
            snprintf(f, sizeof f, "%s.answers[%d]", where, k);
        }
        if (!cJSON_IsString(tv)) { free(sp); return pd_err(err, errlen, PD_ERR_INVALID, "%s.text: must be a string", f); }
        if (!cJSON_IsNumber(sv) || sv->valuedouble != floor(sv->valuedouble)) {
            free(sp);
            return pd_err(err, errlen, PD_ERR_INVALID, "%s.start: must be an integer character offset", f);
        }
        size_t tl = strlen(tv->valuestring);
        if (tl == 0) { free(sp); return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.text: empty answer", f); }
        long b0 = sv->valuedouble < 0 || sv->valuedouble > 1e12 ? -1 : utf8_byte_at(context, clen, (long)sv->valuedouble);
        if (b0 < 0 || (size_t)b0 + tl > clen || memcmp(context + b0, tv->valuestring, tl) != 0) {
            free(sp);
            return pd_err(err, errlen, PD_ERR_MISMATCH, "%s: \"%.60s\" is not in the context at character %.0f", f, tv->valuestring,
                          sv->valuedouble);
        }
        sp[k] = (span_b){b0, b0 + (long)tl, tv->valuestring};
    }
    *out = sp;
    *n = cnt;
    return PD_OK;
}

/* Copies one encoded window into an example. */
static int example_from_window(const pd_window *w, pd_train_example *x) {
    x->len = w->len;
    x->ids = malloc(sizeof(int32_t) * (size_t)w->len);
    x->type_ids = malloc(sizeof(int32_t) * (size_t)w->len);
    if (!x->ids || !x->type_ids) return -1;
    memcpy(x->ids, w->ids, sizeof(int32_t) * (size_t)w->len);
    memcpy(x->type_ids, w->type_ids, sizeof(int32_t) * (size_t)w->len);
    return 0;
}

/* Token span of bytes [b0, b1) of the context in window w, as transformers' run_qa maps it:
 * start = the last context token starting at or before b0, end = the first context token
 * from there ending at or after b1. Returns 0, or -1 if the window does not hold the span. */
static int window_span(const pd_window *w, long b0, long b1, int *s, int *e) {
    int f = -1, l = -1;
    for (int t = 0; t < w->len; t++)
        if (w->src[t] == 1) {
            if (f < 0) f = t;
            l = t;
        }
    if (f < 0 || w->tstart[f] > b0 || w->tend[l] < b1) return -1;
    int st = f;
    while (st + 1 <= l && w->tstart[st + 1] <= b0) st++;
    int en = st;
    while (en < l && w->tend[en] < b1) en++;
    *s = st;
    *e = en;
    return 0;
}

typedef struct encode_opts {
    pd_task task;
    char **labels;
    int num_labels;
    int max_seq_len, doc_stride, n_virtual;
} encode_opts;

/* Validates and tokenizes example o (already checked to be an object) into x; gold (may be
 * NULL) gets a QA example's answers for evaluation. */
static pd_status encode_example(const pd_model *m, const cJSON *o, const char *where, const encode_opts *eo,
                                pd_train_example *x, qa_gold *gold, char *err, size_t errlen) {
    pd_status st;
    pd_input in = {0};
    pd_opts po = {0};
    po.max_length = eo->max_seq_len;
    po.doc_stride = eo->doc_stride;
    pd_item it;
    char e2[300];
    memset(x, 0, sizeof *x);
    if (eo->task == PD_TASK_CLS) {
        if ((st = pd_json_str(o, "text", where, &in.text, err, errlen))) return st;
        if ((st = pd_json_str(o, "text_pair", where, &in.text_pair, err, errlen))) return st;
        if (!in.text) return pd_err(err, errlen, PD_ERR_INVALID, "%s.text: required", where);
        if (!*in.text) return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.text: empty", where);
        const cJSON *lv = cJSON_GetObjectItemCaseSensitive(o, "label");
        if (!lv || cJSON_IsNull(lv)) return pd_err(err, errlen, PD_ERR_INVALID, "%s.label: required", where);
        x->label = label_index(lv, eo->labels, eo->num_labels);
        if (x->label < 0) {
            char k[64];
            if (label_key(lv, k, sizeof k)) return pd_err(err, errlen, PD_ERR_INVALID, "%s.label: must be a string or an integer", where);
            return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.label: unknown label '%s' (labels: %s%s%s%s)", where, k, eo->labels[0],
                          eo->num_labels > 1 ? ", " : "", eo->num_labels > 1 ? eo->labels[1] : "", eo->num_labels > 2 ? ", ..." : "");
        }
        if ((st = pd_item_encode(m, PD_TASK_CLS, &in, &po, eo->n_virtual, &it, e2, sizeof e2)))
            return pd_err(err, errlen, st == PD_ERR_NOMEM ? st : PD_ERR_MISMATCH, "%s: %s", where, e2);
        int bad = example_from_window(&it.win[0], x);
        pd_item_free(&it);
        if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        return PD_OK;
    }
    if ((st = pd_json_str(o, "question", where, &in.question, err, errlen))) return st;
    if ((st = pd_json_str(o, "context", where, &in.context, err, errlen))) return st;
    if (!in.question) return pd_err(err, errlen, PD_ERR_INVALID, "%s.question: required", where);
    if (!in.context) return pd_err(err, errlen, PD_ERR_INVALID, "%s.context: required", where);
    if (!*in.question) return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.question: empty", where);
    if (!*in.context) return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.context: empty", where);
    span_b *ans = NULL;
    int na = 0;
    if ((st = qa_answers(o, where, in.context, &ans, &na, err, errlen))) return st;
    if ((st = pd_item_encode(m, PD_TASK_QA, &in, &po, eo->n_virtual, &it, e2, sizeof e2))) {
        free(ans);
        return pd_err(err, errlen, st == PD_ERR_NOMEM ? st : PD_ERR_MISMATCH, "%s: %s", where, e2);
    }
    /* train on the first window that holds the (first) answer whole */
    int found = -1, s = 0, e = 0;
    for (int w = 0; w < it.n_win && found < 0; w++)
        if (!window_span(&it.win[w], ans[0].b0, ans[0].b1, &s, &e)) found = w;
    if (found < 0) {
        pd_item_free(&it);
        free(ans);
        return pd_err(err, errlen, PD_ERR_MISMATCH, "%s.answer: no window of max_seq_len %d tokens holds the whole answer", where,
                      eo->max_seq_len);
    }
    x->start = s;
    x->end = e;
    int bad = example_from_window(&it.win[found], x);
    pd_item_free(&it);
    if (!bad && gold) {
        memset(gold, 0, sizeof *gold);
        gold->question = xstrdup(in.question);
        gold->context = xstrdup(in.context);
        gold->answers = calloc((size_t)na, sizeof *gold->answers);
        bad = !gold->question || !gold->context || !gold->answers;
        for (int k = 0; k < na && !bad; k++) {
            if (!(gold->answers[k] = xstrdup(ans[k].text))) bad = 1;
            else gold->n_answers++;
        }
    }
    free(ans);
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}

/* Structure checks before any adapter exists: every example an object, and for classification
 * the set of labels used (for a new adapter without "labels"). */
static pd_status check_examples(const cJSON *arr, const char *what, pd_task task, char *err, size_t errlen) {
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        if (!cJSON_IsObject(o)) return pd_err(err, errlen, PD_ERR_INVALID, "%s[%d]: must be an object", what, i);
        if (task == PD_TASK_CLS) {
            const cJSON *lv = cJSON_GetObjectItemCaseSensitive(o, "label");
            char k[64];
            if (!lv || cJSON_IsNull(lv)) return pd_err(err, errlen, PD_ERR_INVALID, "%s[%d].label: required", what, i);
            if (label_key(lv, k, sizeof k)) return pd_err(err, errlen, PD_ERR_INVALID, "%s[%d].label: must be a string or an integer", what, i);
        }
        i++;
    }
    return PD_OK;
}

static int cmp_label(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    char *ex, *ey;
    long lx = strtol(x, &ex, 10), ly = strtol(y, &ey, 10);
    if (*x && *y && !*ex && !*ey) return (lx > ly) - (lx < ly); /* integers in numeric order */
    return strcmp(x, y);
}

/* The label names of a new classifier when the request has none: the distinct labels of the
 * training data, sorted (numerically when all are integers), as transformers' run_glue does. */
static pd_status labels_from_data(const cJSON *arr, char ***out, int *n, char *err, size_t errlen) {
    int cap = 8, cnt = 0;
    char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        char k[64];
        label_key(cJSON_GetObjectItemCaseSensitive(o, "label"), k, sizeof k);
        int seen = 0;
        for (int i = 0; i < cnt && !seen; i++) seen = !strcmp(v[i], k);
        if (seen) continue;
        if (cnt == 1024) { strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_MISMATCH, "train: more than 1024 distinct labels"); }
        if (cnt == cap) {
            char **nv = realloc(v, sizeof *nv * (size_t)(cap *= 2));
            if (!nv) { strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
            v = nv;
        }
        if (!(v[cnt] = xstrdup(k))) { strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        cnt++;
    }
    qsort(v, (size_t)cnt, sizeof *v, cmp_label);
    *out = v;
    *n = cnt;
    return PD_OK;
}

/* ==== Data: the whole request ==== */

struct pd_trainer;
static pd_status job_parse(struct pd_trainer *t, const cJSON *req, const char *train_jsonl, size_t train_len,
                           const char *eval_jsonl, size_t eval_len, const char *source_dir, job **out, char *err,
                           size_t errlen);

/* Takes the data of "what" from the body array or the JSON Lines part (exactly one of them). */
static pd_status data_take(const cJSON *req, const char *what, const char *jsonl, size_t len, cJSON **out, char *err,
                           size_t errlen) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, what);
    if (v && !cJSON_IsNull(v)) {
        if (jsonl) return pd_err(err, errlen, PD_ERR_INVALID, "%s: given both in the JSON body and as a multipart part", what);
        if (!cJSON_IsArray(v)) return pd_err(err, errlen, PD_ERR_INVALID, "%s: must be an array of examples", what);
        if (cJSON_GetArraySize(v) > MAX_EXAMPLES) return pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: more than %d examples", what, MAX_EXAMPLES);
        if (!(*out = cJSON_Duplicate(v, 1))) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        return PD_OK;
    }
    if (jsonl) return jsonl_parse(what, jsonl, len, out, err, errlen);
    return PD_OK;
}

/* Encodes every example of arr into a fresh array (gold answers too for QA evaluation). */
static pd_status encode_all(const pd_model *m, const cJSON *arr, const char *what, const encode_opts *eo,
                            pd_train_example **out, qa_gold **gold_out, int *n_out, char *err, size_t errlen) {
    int n = cJSON_GetArraySize(arr);
    pd_train_example *x = calloc((size_t)(n ? n : 1), sizeof *x);
    qa_gold *g = gold_out ? calloc((size_t)(n ? n : 1), sizeof *g) : NULL;
    if (!x || (gold_out && !g)) {
        free(x);
        free(g);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    int i = 0;
    const cJSON *o;
    pd_status st = PD_OK;
    cJSON_ArrayForEach(o, arr) {
        char where[48];
        snprintf(where, sizeof where, "%s[%d]", what, i);
        if ((st = encode_example(m, o, where, eo, &x[i], g ? &g[i] : NULL, err, errlen))) {
            examples_free(x, i + 1);
            gold_free(g, i + 1);
            return st;
        }
        i++;
    }
    *out = x;
    if (gold_out) *gold_out = g;
    *n_out = n;
    return PD_OK;
}

/* ==== The trainer ==== */

struct pd_trainer {
    const pd_model *base;
    pd_registry *reg;
    pd_pool *pool;
    char *dir;                /* data_dir/jobs, or NULL */
    pthread_t *th;
    int n_th;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    job *jobs, *tail;         /* guarded by lock: every job, in submission order */
    long next_id;             /* guarded by lock */
    int stop;                 /* guarded by lock */
    int (*waiting)(void *arg);/* guarded by lock */
    void *waiting_arg;
    int n_queued, n_running;  /* guarded by lock */
    uint64_t n_succeeded, n_failed, n_cancelled, n_steps;
};

static pd_status job_parse(pd_trainer *t, const cJSON *req, const char *train_jsonl, size_t train_len,
                           const char *eval_jsonl, size_t eval_len, const char *source_dir, job **out, char *err,
                           size_t errlen) {
    *out = NULL;
    const pd_config *cf = pd_model_config(t->base);
    if (!cJSON_IsObject(req)) return pd_err(err, errlen, PD_ERR_INVALID, "the request must be a JSON object");
    for (const cJSON *it = req->child; it; it = it->next) {
        int known = 0;
        for (int k = 0; TOP_KEYS[k] && !known; k++) known = !strcmp(it->string, TOP_KEYS[k]);
        if (!known) return pd_err(err, errlen, PD_ERR_INVALID, "%s: unknown field", it->string);
    }
    job *j = calloc(1, sizeof *j);
    if (!j) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    atomic_init(&j->cancel, 0);
    j->resumed_from = -1;
    j->lock_fd = -1;
    pd_status st = PD_OK;
    const char *s = NULL;
    cJSON *train = NULL, *eval = NULL;
    int *perm = NULL;
#define FAIL(...) do { st = pd_err(err, errlen, __VA_ARGS__); goto fail; } while (0)
#define TRY(x) do { if ((st = (x))) goto fail; } while (0)
    /* -- adapter, method, task, labels -- */
    TRY(pd_json_str(req, "adapter", "", &s, err, errlen));
    if (!s) FAIL(PD_ERR_INVALID, "adapter: required");
    if (!pd_registry_valid_name(s)) FAIL(PD_ERR_INVALID, "adapter: '%.80s' is not a valid name (1-64 of A-Z a-z 0-9 . _ -)", s);
    snprintf(j->adapter, sizeof j->adapter, "%s", s);
    s = NULL;
    TRY(pd_json_str(req, "method", "", &s, err, errlen));
    j->fresh = s != NULL;
    if (s && pd_method_parse(s, &j->method))
        FAIL(PD_ERR_MISMATCH, "method: '%.40s' is not one of lora, prefix_tuning, prompt_tuning, bottleneck, ia3", s);
    const char *task_s = NULL;
    TRY(pd_json_str(req, "task", "", &task_s, err, errlen));
    pd_task task = PD_TASK_NONE;
    if (task_s) {
        int tk = pd_task_parse(task_s);
        if (tk != PD_TASK_CLS && tk != PD_TASK_QA)
            FAIL(PD_ERR_MISMATCH, "task: '%.40s' is not classification or question_answering", task_s);
        task = (pd_task)tk;
    }
    const cJSON *labels_v = cJSON_GetObjectItemCaseSensitive(req, "labels");
    if (labels_v && cJSON_IsNull(labels_v)) labels_v = NULL;
    if (labels_v) {
        if (!cJSON_IsArray(labels_v)) FAIL(PD_ERR_INVALID, "labels: must be an array of strings");
        int i = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, labels_v) {
            if (!cJSON_IsString(l) || !*l->valuestring) FAIL(PD_ERR_INVALID, "labels[%d]: must be a non-empty string", i);
            for (const cJSON *p = labels_v->child; p != l; p = p->next)
                if (!strcmp(p->valuestring, l->valuestring)) FAIL(PD_ERR_MISMATCH, "labels[%d]: '%s' appears twice", i, l->valuestring);
            i++;
        }
    }
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(req, "config");
    if (config && cJSON_IsNull(config)) config = NULL;
    pd_adapter *src = NULL;
    if (!j->fresh) {
        /* training continues from the current version (on resume: the saved copy of it) */
        char e2[400];
        if (source_dir) {
            if ((st = pd_adapter_load_dir(t->base, source_dir, &src, e2, sizeof e2))) FAIL(st, "source adapter: %s", e2);
        } else {
            int ver = 0;
            if ((st = pd_registry_get(t->reg, j->adapter, &src, &ver, e2, sizeof e2))) {
                if (st == PD_ERR_NOT_FOUND)
                    FAIL(PD_ERR_NOT_FOUND, "adapter: '%s' does not exist; give \"method\" to train a new adapter", j->adapter);
                FAIL(st, "adapter: %s", e2);
            }
        }
        j->source = src;
        j->method = pd_adapter_method(src);
        pd_task at = pd_adapter_task(src);
        if (at != PD_TASK_NONE && task != PD_TASK_NONE && at != task)
            FAIL(PD_ERR_MISMATCH, "task: the adapter '%s' serves %s", j->adapter, pd_task_name(at));
        if (task == PD_TASK_NONE) task = at;
        if (task == PD_TASK_NONE) FAIL(PD_ERR_INVALID, "task: required (the adapter '%s' has no task of its own)", j->adapter);
        if (config && cJSON_GetArraySize(config) > 0)
            FAIL(PD_ERR_MISMATCH, "config: an existing adapter keeps its hyperparameters; give \"method\" to train a new one");
        if (task == PD_TASK_CLS) {
            int n = pd_adapter_num_labels(src);
            const pd_head *h = pd_adapter_head(src, t->base, PD_TASK_CLS);
            if (!h) FAIL(PD_ERR_MISMATCH, "task: neither the adapter nor the base model has a classification head");
            if (n <= 0) n = h->num_labels;
            if (!(j->labels = calloc((size_t)(n > 0 ? n : 1), sizeof *j->labels))) FAIL(PD_ERR_NOMEM, "out of memory");
            for (int i = 0; i < n; i++) {
                const char *l = pd_adapter_num_labels(src) > 0 ? pd_adapter_label(src, i) : (h->labels ? h->labels[i] : NULL);
                char b[PD_LABEL_CAP];
                if (!(j->labels[i] = xstrdup(pd_label_name(l, i, b, sizeof b)))) FAIL(PD_ERR_NOMEM, "out of memory");
                j->num_labels++;
            }
            if (labels_v) {
                int same = cJSON_GetArraySize(labels_v) == n;
                for (int i = 0; i < n && same; i++) same = !strcmp(cJSON_GetArrayItem(labels_v, i)->valuestring, j->labels[i]);
                if (!same) FAIL(PD_ERR_MISMATCH, "labels: differ from the labels of the adapter '%s'", j->adapter);
            }
        }
    } else {
        if (task == PD_TASK_NONE) FAIL(PD_ERR_INVALID, "task: required for a new adapter (classification or question_answering)");
        TRY(check_config(j->method, config, cf, err, errlen));
    }
    if (task == PD_TASK_QA && labels_v && cJSON_GetArraySize(labels_v) > 0)
        FAIL(PD_ERR_MISMATCH, "labels: only classification has labels");
    j->task = task;
    /* -- hyperparameters (defaults: transformers' TrainingArguments unless noted) -- */
    long l;
    double x;
    l = 3; TRY(pd_json_long(req, "epochs", "", 1, 100000, PD_ERR_MISMATCH, &l, err, errlen)); j->epochs = (int)l;
    l = 8; TRY(pd_json_long(req, "batch_size", "", 1, 65536, PD_ERR_MISMATCH, &l, err, errlen)); j->batch_size = (int)l;
    x = default_lr(j->method); TRY(pd_json_num(req, "learning_rate", "", 0, 1, 10, PD_ERR_MISMATCH, &x, err, errlen)); j->lr = x;
    x = 0; TRY(pd_json_num(req, "weight_decay", "", 0, 0, 100, PD_ERR_MISMATCH, &x, err, errlen)); j->wd = x;
    x = 0; TRY(pd_json_num(req, "warmup_ratio", "", 0, 0, 1, PD_ERR_MISMATCH, &x, err, errlen)); j->warmup_ratio = x;
    x = 1.0; TRY(pd_json_num(req, "max_grad_norm", "", 0, 0, 1e9, PD_ERR_MISMATCH, &x, err, errlen)); j->max_grad_norm = x;
    l = DEFAULT_SEED; TRY(pd_json_long(req, "seed", "", 0, 9007199254740991L, PD_ERR_MISMATCH, &l, err, errlen)); j->seed = (uint64_t)l;
    l = -1; TRY(pd_json_long(req, "eval_every", "", 0, 1L << 40, PD_ERR_MISMATCH, &l, err, errlen)); j->eval_every = l;
    l = 0; TRY(pd_json_long(req, "doc_stride", "", 0, 1 << 20, PD_ERR_MISMATCH, &l, err, errlen)); j->doc_stride = (int)l;
    long msl = 0;
    TRY(pd_json_long(req, "max_seq_len", "", 4, 1 << 20, PD_ERR_MISMATCH, &msl, err, errlen));
    j->publish = PUB_END;
    s = NULL;
    TRY(pd_json_str(req, "publish", "", &s, err, errlen));
    if (s) {
        int k = 0;
        while (k < 3 && strcmp(s, PUBLISH_NAME[k])) k++;
        if (k == 3) FAIL(PD_ERR_MISMATCH, "publish: '%.40s' is not end, best or every_eval", s);
        j->publish = (pubmode)k;
    }
    double frac = 0;
    TRY(pd_json_num(req, "eval_fraction", "", 0, 1, 0.9, PD_ERR_MISMATCH, &frac, err, errlen));
    /* -- data -- */
    TRY(data_take(req, "train", train_jsonl, train_len, &train, err, errlen));
    TRY(data_take(req, "eval", eval_jsonl, eval_len, &eval, err, errlen));
    if (!train) FAIL(PD_ERR_INVALID, "train: required (an array of examples or a JSON Lines part)");
    if (cJSON_GetArraySize(train) == 0) FAIL(PD_ERR_MISMATCH, "train: no examples");
    if (eval && frac > 0) FAIL(PD_ERR_INVALID, "eval_fraction: give either eval or eval_fraction");
    if (eval && cJSON_GetArraySize(eval) == 0) FAIL(PD_ERR_MISMATCH, "eval: no examples");
    TRY(check_examples(train, "train", task, err, errlen));
    if (eval) TRY(check_examples(eval, "eval", task, err, errlen));
    if (!eval && frac <= 0 && j->publish != PUB_END)
        FAIL(PD_ERR_MISMATCH, "publish: '%s' needs evaluation data (eval or eval_fraction)", PUBLISH_NAME[j->publish]);
    if (j->fresh && task == PD_TASK_CLS) {
        if (labels_v) {
            j->num_labels = cJSON_GetArraySize(labels_v);
            if (!(j->labels = calloc((size_t)(j->num_labels ? j->num_labels : 1), sizeof *j->labels))) FAIL(PD_ERR_NOMEM, "out of memory");
            for (int i = 0; i < j->num_labels; i++)
                if (!(j->labels[i] = xstrdup(cJSON_GetArrayItem(labels_v, i)->valuestring))) FAIL(PD_ERR_NOMEM, "out of memory");
        } else {
            TRY(labels_from_data(train, &j->labels, &j->num_labels, err, errlen));
        }
        if (j->num_labels < 2)
            FAIL(PD_ERR_MISMATCH, "labels: a classifier needs at least 2 labels (the training data has %d)", j->num_labels);
    }
    /* -- the adapter -- */
    if (j->fresh) {
        char e2[400];
        if ((st = pd_adapter_new_trainable(t->base, j->method, config, task, j->labels, j->num_labels, j->seed, &j->a, e2,
                                           sizeof e2)))
            FAIL(st == PD_ERR_INVALID ? PD_ERR_MISMATCH : st, "config: %s", e2);
    } else {
        char e2[400];
        if ((st = pd_adapter_clone_trainable(src, &j->a, e2, sizeof e2))) FAIL(st, "adapter: %s", e2);
    }
    {
        const pd_head *h = pd_adapter_head(j->a, t->base, task);
        if (!h || h->task != task) FAIL(PD_ERR_MISMATCH, "task: the adapter has no %s head", pd_task_name(task));
        if (task == PD_TASK_CLS && h->layer[h->n_layers - 1].out != j->num_labels)
            FAIL(PD_ERR_MISMATCH, "labels: %d labels but the head has %d outputs", j->num_labels, h->layer[h->n_layers - 1].out);
    }
    int nv = pd_adapter_n_virtual(j->a);
    if (nv + 3 > cf->max_tokens)
        FAIL(PD_ERR_MISMATCH, "config.num_virtual_tokens: %d virtual tokens leave no room for text in the model's %d positions", nv,
             cf->max_tokens);
    if (msl == 0) msl = cf->max_tokens - nv < 128 ? cf->max_tokens - nv : 128;
    if (msl + nv > cf->max_tokens)
        FAIL(PD_ERR_MISMATCH, "max_seq_len: %ld tokens + %d virtual tokens exceed the model's %d positions", msl, nv, cf->max_tokens);
    j->max_seq_len = (int)msl;
    /* -- examples -- */
    encode_opts eo = {task, j->labels, j->num_labels, j->max_seq_len, j->doc_stride, nv};
    pd_train_example *tx = NULL;
    int ntx = 0;
    TRY(encode_all(t->base, train, "train", &eo, &tx, NULL, &ntx, err, errlen));
    if (eval) {
        TRY(encode_all(t->base, eval, "eval", &eo, &j->eval, task == PD_TASK_QA ? &j->gold : NULL, &j->n_eval, err, errlen));
        j->train = tx;
        j->n_train = ntx;
        j->train_raw = train;
        j->eval_raw = eval;
        train = eval = NULL;
    } else if (frac > 0) {
        /* datasets' train_test_split: shuffle with the seed, test size ceil(n * fraction) */
        int ne = (int)ceil(ntx * frac);
        if (ne >= ntx) {
            examples_free(tx, ntx);
            FAIL(PD_ERR_MISMATCH, "eval_fraction: %g of %d examples leaves nothing to train on", frac, ntx);
        }
        perm = malloc(sizeof(int) * (size_t)ntx);
        cJSON **items = malloc(sizeof(cJSON *) * (size_t)ntx);
        pd_train_example *ev = calloc((size_t)ne, sizeof *ev), *tr = calloc((size_t)(ntx - ne), sizeof *tr);
        cJSON *er = cJSON_CreateArray(), *trr = cJSON_CreateArray();
        if (!perm || !items || !ev || !tr || !er || !trr) {
            free(items); free(ev); free(tr); cJSON_Delete(er); cJSON_Delete(trr);
            examples_free(tx, ntx);
            FAIL(PD_ERR_NOMEM, "out of memory");
        }
        shuffle(perm, ntx, mix2(j->seed, 0x5EED5EEDull));
        for (int i = 0; i < ntx; i++) items[i] = cJSON_DetachItemFromArray(train, 0);
        for (int k = 0; k < ntx; k++) {
            if (k < ne) { ev[k] = tx[perm[k]]; cJSON_AddItemToArray(er, items[perm[k]]); }
            else { tr[k - ne] = tx[perm[k]]; cJSON_AddItemToArray(trr, items[perm[k]]); }
        }
        free(items);
        free(tx);
        j->eval = ev;
        j->train = tr;
        j->eval_raw = er;
        j->train_raw = trr;
        j->n_eval = ne;
        j->n_train = ntx - ne;
        if (task == PD_TASK_QA) {
            /* gold answers of the held-out part */
            encode_opts eo2 = eo;
            pd_train_example *tmp = NULL;
            int nt2 = 0;
            TRY(encode_all(t->base, j->eval_raw, "eval", &eo2, &tmp, &j->gold, &nt2, err, errlen));
            examples_free(tmp, nt2);
        }
    } else {
        j->train = tx;
        j->n_train = ntx;
        j->train_raw = train;
        train = NULL;
    }
    /* -- schedule -- */
    j->steps_per_epoch = (j->n_train + j->batch_size - 1) / j->batch_size;
    j->total_steps = j->steps_per_epoch * j->epochs;
    j->warmup_steps = pd_warmup_steps(j->warmup_ratio, j->total_steps);
    if (j->eval_every < 0) j->eval_every = j->steps_per_epoch; /* default: evaluate once per epoch */
    j->log_every = (j->total_steps + LOSS_POINTS - 1) / LOSS_POINTS;
    if (j->log_every < 1) j->log_every = 1;
    /* -- what is written to spec.json: the request as given minus its data -- */
    if (!(j->spec = cJSON_Duplicate(req, 1))) FAIL(PD_ERR_NOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(j->spec, "train");
    cJSON_DeleteItemFromObjectCaseSensitive(j->spec, "eval");
    cJSON_DeleteItemFromObjectCaseSensitive(j->spec, "eval_fraction"); /* the split is saved as eval.jsonl */
    if (task == PD_TASK_CLS && j->fresh && !labels_v) {
        cJSON *lv = cJSON_CreateStringArray((const char *const *)j->labels, j->num_labels);
        if (!lv) FAIL(PD_ERR_NOMEM, "out of memory");
        cJSON_AddItemToObject(j->spec, "labels", lv);
    }
    free(perm);
    cJSON_Delete(train);
    cJSON_Delete(eval);
    *out = j;
    return PD_OK;
fail:
    free(perm);
    cJSON_Delete(train);
    cJSON_Delete(eval);
    job_free(j);
    return st;
#undef FAIL
#undef TRY
}

/* ==== Evaluation ==== */

typedef struct evalres {
    double accuracy, f1, loss;
} evalres;

/* Cross-entropy of logits z (n) against target, in double. */
static double xent(const float *z, int n, int target) {
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++) if (z[i] > mx) mx = z[i];
    for (int i = 0; i < n; i++) s += exp((double)z[i] - mx);
    return log(s) + mx - z[target];
}

/* SQuAD's normalize_answer, as tokens: lower case, punctuation removed, articles dropped,
 * split on whitespace. Returns the number of tokens in *out (each a pointer into buf). */
static int squad_tokens(const char *s, char *buf, size_t cap, char **out, int max) {
    size_t k = 0;
    for (const char *p = s; *p && k + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 128 && ispunct(c)) continue;
        buf[k++] = (char)(c < 128 ? tolower(c) : c);
    }
    buf[k] = 0;
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t\n\r\f\v", &save); w && n < max; w = strtok_r(NULL, " \t\n\r\f\v", &save)) {
        if (!strcmp(w, "a") || !strcmp(w, "an") || !strcmp(w, "the")) continue;
        out[n++] = w;
    }
    return n;
}

/* SQuAD exact match and token F1 of a prediction against one gold answer. */
static void squad_score(const char *pred, const char *gold, double *em, double *f1) {
    enum { CAP = 2048, MAXT = 256 };
    char *pb = malloc(CAP), *gb = malloc(CAP);
    char *pt[MAXT], *gt[MAXT];
    int used[MAXT];
    *em = *f1 = 0;
    if (!pb || !gb) { free(pb); free(gb); return; }
    int np = squad_tokens(pred, pb, CAP, pt, MAXT), ng = squad_tokens(gold, gb, CAP, gt, MAXT);
    int same = np == ng;
    for (int i = 0; i < np && same; i++) same = !strcmp(pt[i], gt[i]);
    *em = same;
    if (np == 0 || ng == 0) {
        *f1 = np == ng;
    } else {
        int common = 0;
        memset(used, 0, sizeof used);
        for (int i = 0; i < np; i++)
            for (int k = 0; k < ng; k++)
                if (!used[k] && !strcmp(pt[i], gt[k])) { used[k] = 1; common++; break; }
        if (common) {
            double p = (double)common / np, r = (double)common / ng;
            *f1 = 2 * p * r / (p + r);
        }
    }
    free(pb);
    free(gb);
}

/* Runs the evaluation examples from i on, as many as fit in EVAL_TOKENS (at least one), in
 * one forward pass; *end gets the index after the last one. Checks for cancellation first. */
static pd_status eval_forward(pd_train_engine *e, const job *j, int i, int *end, char *err, size_t errlen) {
    const pd_delta *d = pd_adapter_delta(e->a);
    int np = d ? d->n_prompt : 0, n = j->n_eval, k = i, rows = 0;
    while (k < n && (k == i || rows + j->eval[k].len + np <= EVAL_TOKENS)) {
        e->seqs[k - i] = (pd_seq){j->eval[k].ids, j->eval[k].type_ids, j->eval[k].len, d, e->task == PD_TASK_CLS};
        rows += j->eval[k].len + np;
        k++;
    }
    *end = k;
    if (e->hook && e->hook(e->hook_arg)) return pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
    return pd_forward(e->ctx, e->seqs, k - i, err, errlen);
}

/* Classification: accuracy, macro F1 over the labels that occur as gold or prediction
 * (scikit-learn's f1_score(average="macro") over the labels present), mean loss. */
static pd_status eval_cls(pd_train_engine *e, const job *j, evalres *r, char *err, size_t errlen) {
    int L = j->num_labels, n = j->n_eval;
    long *tp = calloc((size_t)L * 3, sizeof(long));
    float *z = malloc(sizeof(float) * (size_t)L);
    if (!tp || !z || engine_seqs(e, n)) { free(tp); free(z); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    long *fp = tp + L, *fn = fp + L;
    double loss = 0;
    long correct = 0;
    pd_status st = PD_OK;
    for (int i = 0; i < n && !st;) {
        int k;
        if ((st = eval_forward(e, j, i, &k, err, errlen))) break;
        for (int q = i; q < k; q++) {
            if (pd_ctx_head(e->ctx, q - i, e->head, z, L) != L) { st = pd_err(err, errlen, PD_ERR_MISMATCH, "the head does not fit"); break; }
            int pred = 0;
            for (int c = 1; c < L; c++) if (z[c] > z[pred]) pred = c;
            int gold = j->eval[q].label;
            loss += xent(z, L, gold);
            if (pred == gold) { correct++; tp[gold]++; }
            else { fp[pred]++; fn[gold]++; }
        }
        i = k;
    }
    if (!st) {
        double f1 = 0;
        int present = 0;
        for (int c = 0; c < L; c++) {
            if (tp[c] + fp[c] + fn[c] == 0) continue;
            present++;
            f1 += 2.0 * tp[c] / (double)(2 * tp[c] + fp[c] + fn[c]);
        }
        r->accuracy = (double)correct / n;
        r->f1 = present ? f1 / present : 0;
        r->loss = loss / n;
    }
    free(tp);
    free(z);
    return st;
}

/* Question answering: loss on the window that holds the answer; answers predicted through the
 * same pipeline as POST /predict (every window, best span of at most EVAL_MAX_ANSWER tokens),
 * scored with SQuAD's exact match (reported as "accuracy") and token F1, best over the golds. */
static pd_status eval_qa(pd_train_engine *e, const job *j, evalres *r, char *err, size_t errlen) {
    int n = j->n_eval;
    const pd_delta *d = pd_adapter_delta(e->a);
    int np = d ? d->n_prompt : 0, nv = pd_adapter_n_virtual(e->a);
    float *z = NULL;
    int zcap = 0;
    pd_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    pd_item **ip = calloc((size_t)(n ? n : 1), sizeof *ip);
    if (!items || !ip || engine_seqs(e, n)) { free(items); free(ip); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    double loss = 0, em = 0, f1 = 0;
    pd_status st = PD_OK;
    for (int i = 0; i < n && !st;) {
        int k;
        if ((st = eval_forward(e, j, i, &k, err, errlen))) break;
        for (int q = i; q < k && !st; q++) {
            int L = j->eval[q].len;
            if (2 * L > zcap) {
                free(z);
                zcap = 2 * L;
                if (!(z = malloc(sizeof(float) * (size_t)zcap))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            }
            if (pd_ctx_head(e->ctx, q - i, e->head, z, 2 * L) != 2 * L) { st = pd_err(err, errlen, PD_ERR_MISMATCH, "the head does not fit"); break; }
            loss += 0.5 * (xent(z, L, j->eval[q].start) + xent(z + L, L, j->eval[q].end));
        }
        i = k;
    }
    pd_opts po = {0};
    po.max_length = j->max_seq_len;
    po.doc_stride = j->doc_stride;
    po.max_answer_length = EVAL_MAX_ANSWER;
    po.top_k = 1;
    for (int i = 0; i < n && !st;) {
        int k = i, rows = 0;
        while (k < n && !st) {
            pd_input in = {0};
            in.question = j->gold[k].question;
            in.context = j->gold[k].context;
            if ((st = pd_item_encode(e->base, PD_TASK_QA, &in, &po, nv, &items[k], err, errlen))) break;
            items[k].delta = d;
            items[k].head = e->head;
            ip[k - i] = &items[k];
            rows += pd_item_tokens(&items[k]) + np * items[k].n_win;
            k++;
            if (rows >= EVAL_TOKENS) break;
        }
        if (!st && e->hook && e->hook(e->hook_arg)) st = pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
        if (!st) st = pd_predict(e->ctx, ip, k - i, &po, err, errlen);
        for (int q = i; q < k && !st; q++) {
            const char *pred = items[q].n_answers > 0 ? items[q].answers[0].text : "";
            double bem = 0, bf1 = 0;
            for (int g = 0; g < j->gold[q].n_answers; g++) {
                double a, b;
                squad_score(pred, j->gold[q].answers[g], &a, &b);
                if (a > bem) bem = a;
                if (b > bf1) bf1 = b;
            }
            em += bem;
            f1 += bf1;
        }
        for (int q = i; q < k; q++) pd_item_free(&items[q]);
        i = k;
    }
    for (int q = 0; q < n; q++) pd_item_free(&items[q]); /* after an error: whatever is left */
    free(items);
    free(ip);
    free(z);
    if (!st) {
        r->accuracy = em / n;
        r->f1 = f1 / n;
        r->loss = loss / n;
    }
    return st;
}

/* Evaluates the adapter on the job's eval set in inference mode (no dropout), then puts the
 * engine back into training mode. */
static pd_status evaluate(pd_train_engine *e, const job *j, evalres *r, char *err, size_t errlen) {
    pd_adapter_set_training(e->a, 0, 0);
    pd_ctx_set_training(e->ctx, 0);
    pd_status st = j->task == PD_TASK_CLS ? eval_cls(e, j, r, err, errlen) : eval_qa(e, j, r, err, errlen);
    pd_ctx_set_training(e->ctx, 1);
    return st;
}

/* ==== Persistence ==== */

/* Writes dir/name: atomically (pd_fs_write_atomic), or in place and fsync'd for files inside a
 * directory that is itself renamed into place. */
static pd_status write_file(const char *dir, const char *name, const char *data, size_t len, int atomic, char *err,
                            size_t errlen) {
    if (atomic) return pd_fs_write_atomic(dir, name, data, len, err, errlen);
    char path[PATH_CAP];
    if (pd_path_join(path, sizeof path, dir, name)) return pd_err(err, errlen, PD_ERR_IO, "%s: path too long", dir);
    return pd_fs_write(path, data, len, err, errlen);
}

static pd_status write_json(const char *dir, const char *name, const cJSON *v, int atomic, char *err, size_t errlen) {
    char *s = cJSON_Print(v);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = write_file(dir, name, s, strlen(s), atomic, err, errlen);
    free(s);
    return st;
}

/* Writes an array as JSON Lines, one example per line, streaming (data can be large). */
static pd_status write_jsonl(const char *dir, const char *name, const cJSON *arr, char *err, size_t errlen) {
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
    const cJSON *it;
    int bad = 0;
    cJSON_ArrayForEach(it, arr) {
        char *s = cJSON_PrintUnformatted(it);
        if (!s) { bad = ENOMEM; break; }
        if (pd_fs_write_all(fd, s, strlen(s)) || pd_fs_write_all(fd, "\n", 1)) bad = errno ? errno : EIO;
        free(s);
        if (bad) break;
    }
    if (!bad && fsync(fd)) bad = errno;
    close(fd);
    if (bad) return pd_err(err, errlen, bad == ENOMEM ? PD_ERR_NOMEM : PD_ERR_IO, "%s: %s", path, strerror(bad));
    return PD_OK;
}

/* Saves adapter a into dir (created); pd_adapter_save_dir fsyncs every file and the directory. */
static pd_status save_adapter(const pd_adapter *a, const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) && errno != EEXIST) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", dir, strerror(errno));
    return pd_adapter_save_dir(a, dir, err, errlen);
}

static pd_status read_json_file(const char *path, cJSON **out, char *err, size_t errlen) {
    return pd_json_read_file(path, (size_t)1 << 30, out, err, errlen);
}

/* ==== Jobs: JSON views ==== */

static double round_to(double x, double scale) { return isfinite(x) ? round(x * scale) / scale : 0; }

static void add_num_or_null(cJSON *o, const char *k, double v, int null) {
    if (null) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, v);
}

/* The job as the API shows it. exact: unrounded numbers plus the internal fields job.json and
 * checkpoints need ("checkpoint", "loss_acc", "loss_acc_n"). Caller holds t->lock. NULL on OOM. */
static cJSON *job_json(const job *j, int exact) {
    if (j->frozen) return cJSON_Duplicate(j->frozen, 1);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    double sc = exact ? 0 : 1e6;
#define R(x) (sc > 0 ? round_to((x), sc) : (x))
    cJSON_AddStringToObject(o, "job", j->id);
    cJSON_AddStringToObject(o, "adapter", j->adapter);
    cJSON_AddStringToObject(o, "method", pd_method_name(j->method));
    cJSON_AddStringToObject(o, "task", pd_task_name(j->task));
    cJSON_AddStringToObject(o, "status", STATUS_NAME[j->status]);
    cJSON_AddNumberToObject(o, "epoch", j->steps_per_epoch ? round_to((double)j->step / j->steps_per_epoch, 1e3) : 0);
    cJSON_AddNumberToObject(o, "epochs", j->epochs);
    cJSON_AddNumberToObject(o, "step", (double)j->step);
    cJSON_AddNumberToObject(o, "total_steps", (double)j->total_steps);
    cJSON_AddNumberToObject(o, "examples_per_s", round_to(j->ex_per_s, 100));
    add_num_or_null(o, "eta_s", j->status == J_RUNNING ? round_to(j->eta_s, 10) : 0, j->status == J_QUEUED);
    cJSON *loss = cJSON_AddArrayToObject(o, "loss");
    for (int i = 0; loss && i < j->n_loss; i++) {
        double p[2] = {(double)j->loss_step[i], R(j->loss_val[i])};
        cJSON_AddItemToArray(loss, cJSON_CreateDoubleArray(p, 2));
    }
    cJSON *ev = cJSON_AddArrayToObject(o, "eval");
    for (int i = 0; ev && i < j->n_ev; i++) {
        cJSON *pair = cJSON_CreateArray(), *m = cJSON_CreateObject();
        if (!pair || !m) { cJSON_Delete(pair); cJSON_Delete(m); break; }
        cJSON_AddNumberToObject(m, "accuracy", R(j->ev[i].accuracy));
        cJSON_AddNumberToObject(m, "f1", R(j->ev[i].f1));
        cJSON_AddNumberToObject(m, "loss", R(j->ev[i].loss));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)j->ev[i].step));
        cJSON_AddItemToArray(pair, m);
        cJSON_AddItemToArray(ev, pair);
    }
    if (j->has_best) {
        cJSON *b = cJSON_AddObjectToObject(o, "best");
        if (b) {
            cJSON_AddNumberToObject(b, "step", (double)j->best_step);
            cJSON_AddStringToObject(b, "metric", j->task == PD_TASK_CLS ? "accuracy" : "f1");
            cJSON_AddNumberToObject(b, "value", R(j->best_value));
        }
    } else {
        cJSON_AddNullToObject(o, "best");
    }
    cJSON *pv = cJSON_AddArrayToObject(o, "published_versions");
    for (int i = 0; pv && i < j->n_versions; i++) cJSON_AddItemToArray(pv, cJSON_CreateNumber(j->versions[i]));
    if (j->error[0]) cJSON_AddStringToObject(o, "error", j->error);
    else cJSON_AddNullToObject(o, "error");
    cJSON_AddStringToObject(o, "publish", PUBLISH_NAME[j->publish]);
    cJSON_AddNumberToObject(o, "train_examples", j->n_train);
    cJSON_AddNumberToObject(o, "eval_examples", j->n_eval);
    cJSON_AddNumberToObject(o, "created_at", round_to(j->created_at, 1e3));
    add_num_or_null(o, "started_at", round_to(j->started_at, 1e3), j->started_at == 0);
    add_num_or_null(o, "finished_at", round_to(j->finished_at, 1e3), j->finished_at == 0);
    add_num_or_null(o, "resumed_from_step", (double)j->resumed_from, j->resumed_from < 0);
    if (exact) {
        if (j->ckpt[0]) cJSON_AddStringToObject(o, "checkpoint", j->ckpt);
        else cJSON_AddNullToObject(o, "checkpoint");
        cJSON_AddNumberToObject(o, "loss_acc", j->loss_acc);
        cJSON_AddNumberToObject(o, "loss_acc_n", j->loss_acc_n);
    }
#undef R
    return o;
}

static int push_version(job *j, int v) {
    if (j->n_versions == j->cap_versions) {
        int nc = j->cap_versions ? 2 * j->cap_versions : 8;
        int *nv = realloc(j->versions, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        j->versions = nv;
        j->cap_versions = nc;
    }
    j->versions[j->n_versions++] = v;
    return 0;
}

static int push_loss(job *j, long step, double v) {
    if (j->n_loss == j->cap_loss) {
        int nc = j->cap_loss ? 2 * j->cap_loss : 64;
        long *ns = realloc(j->loss_step, sizeof *ns * (size_t)nc);
        if (!ns) return -1;
        j->loss_step = ns;
        double *nv = realloc(j->loss_val, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        j->loss_val = nv;
        j->cap_loss = nc;
    }
    j->loss_step[j->n_loss] = step;
    j->loss_val[j->n_loss++] = v;
    return 0;
}

static int push_eval(job *j, evalrec r) {
    if (j->n_ev == j->cap_ev) {
        int nc = j->cap_ev ? 2 * j->cap_ev : 16;
        evalrec *n = realloc(j->ev, sizeof *n * (size_t)nc);
        if (!n) return -1;
        j->ev = n;
        j->cap_ev = nc;
    }
    j->ev[j->n_ev++] = r;
    return 0;
}

/* Restores the histories of a job from its exact JSON (a checkpoint's state.json). Caller holds
 * t->lock. */
static void job_restore_history(job *j, const cJSON *s) {
    j->n_loss = j->n_ev = j->n_versions = 0;
    j->has_best = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "loss")) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) push_loss(j, (long)a->valuedouble, b->valuedouble);
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "eval")) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *m = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsNumber(a) || !cJSON_IsObject(m)) continue;
        evalrec r = {(long)a->valuedouble, 0, 0, 0};
        const cJSON *x;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "accuracy"))) r.accuracy = x->valuedouble;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "f1"))) r.f1 = x->valuedouble;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "loss"))) r.loss = x->valuedouble;
        push_eval(j, r);
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, "best");
    if (cJSON_IsObject(b)) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "step"), *v = cJSON_GetObjectItemCaseSensitive(b, "value");
        if (cJSON_IsNumber(st) && cJSON_IsNumber(v)) {
            j->has_best = 1;
            j->best_step = (long)st->valuedouble;
            j->best_value = v->valuedouble;
        }
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "published_versions"))
        if (cJSON_IsNumber(it)) push_version(j, (int)it->valuedouble);
    const cJSON *x;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(s, "loss_acc"))) j->loss_acc = x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(s, "loss_acc_n"))) j->loss_acc_n = (int)x->valuedouble;
}

/* ==== Jobs: state on disk ==== */

static int job_dir(const pd_trainer *t, const job *j, char *buf, size_t cap) {
    return snprintf(buf, cap, "%s/%s", t->dir, j->id) >= (int)cap ? -1 : 0;
}

/* Writes job.json atomically (no-op without a data dir). Failures are logged: the job goes on. */
static void job_save_state(pd_trainer *t, job *j) {
    if (!t->dir) return;
    char jd[PATH_CAP], err[512];
    if (job_dir(t, j, jd, sizeof jd)) return;
    pthread_mutex_lock(&t->lock);
    /* a finished job is only ever shown: store it as the API shows it */
    cJSON *o = job_json(j, j->status == J_QUEUED || j->status == J_RUNNING);
    pthread_mutex_unlock(&t->lock);
    if (!o || write_json(jd, "job.json", o, 1, err, sizeof err)) fprintf(stderr, "peftd: trainer: %s: %s\n", j->id, o ? err : "out of memory");
    cJSON_Delete(o);
}

/* Opens and flocks dir/lock (created). Returns the descriptor, or -1 when another process
 * holds it (EWOULDBLOCK) or it cannot be opened. */
static int lock_dir(const char *dir) {
    char p[PATH_CAP + 8];
    snprintf(p, sizeof p, "%s/lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Creates data_dir/jobs/<id>/ for a new job: spec.json, train.jsonl, eval.jsonl, source/ (the
 * version training continues from), job.json and the flock'd lock file, written into
 * <id>.tmp-<pid> and renamed. Replicas share the data dir: if <id> exists already (another
 * process took the number), the job takes the next free number. */
static pd_status job_persist_new(pd_trainer *t, job *j, char *err, size_t errlen) {
    char jd[PATH_CAP], tmp[PATH_CAP + 32], src[PATH_CAP + 48];
    if (job_dir(t, j, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", jd, (long)getpid());
    pd_fs_remove_tree(tmp);
    if (mkdir(tmp, 0755)) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", tmp, strerror(errno));
    pd_status st = PD_OK;
    if ((j->lock_fd = lock_dir(tmp)) < 0) st = pd_err(err, errlen, PD_ERR_IO, "%s/lock: %s", tmp, strerror(errno));
    if (!st) st = write_json(tmp, "spec.json", j->spec, 0, err, errlen);
    if (!st) st = write_jsonl(tmp, "train.jsonl", j->train_raw, err, errlen);
    if (!st && j->eval_raw) st = write_jsonl(tmp, "eval.jsonl", j->eval_raw, err, errlen);
    if (!st && j->source) {
        snprintf(src, sizeof src, "%s/source", tmp);
        st = save_adapter(j->source, src, err, errlen);
    }
    if (!st) {
        pthread_mutex_lock(&t->lock);
        cJSON *o = job_json(j, 1);
        pthread_mutex_unlock(&t->lock);
        st = o ? write_json(tmp, "job.json", o, 0, err, errlen) : pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        cJSON_Delete(o);
    }
    if (!st) st = pd_fs_sync(tmp, err, errlen);
    for (int tries = 0; !st; tries++) {
        if (rename(tmp, jd) == 0) break;
        if ((errno != EEXIST && errno != ENOTEMPTY) || tries == 1000) {
            st = pd_err(err, errlen, PD_ERR_IO, "%s: rename: %s", jd, strerror(errno));
            break;
        }
        pthread_mutex_lock(&t->lock); /* the job is still held: nobody sees its id change */
        snprintf(j->id, sizeof j->id, "j-%ld", t->next_id++);
        pthread_mutex_unlock(&t->lock);
        job_dir(t, j, jd, sizeof jd);
    }
    if (!st) st = pd_fs_sync(t->dir, err, errlen);
    if (st) {
        pd_fs_remove_tree(tmp);
        job_unlock(j);
    }
    return st;
}

/* Removes every ckpt-* directory of jd except keep (NULL: all). */
static void ckpt_prune(const char *jd, const char *keep) {
    DIR *d = opendir(jd);
    if (!d) return;
    struct dirent *de;
    char p[PATH_CAP + 300];
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "ckpt-", 5) || (keep && !strcmp(de->d_name, keep))) continue;
        snprintf(p, sizeof p, "%s/%s", jd, de->d_name);
        pd_fs_remove_tree(p);
    }
    closedir(d);
}

/* Writes a checkpoint of the job at the optimizer's step: ckpt-<step>/ with adapter/ (the
 * adapter in its own format, as a download would have it), optim.safetensors (parameters, AdamW
 * moments and step) and state.json (histories, generator seeds); then points job.json at it
 * and removes older checkpoints. */
static pd_status ckpt_write(pd_trainer *t, job *j, pd_adamw *o, int force, char *err, size_t errlen) {
    char jd[PATH_CAP], name[64], tmp[PATH_CAP + 80], fin[PATH_CAP + 80], p[PATH_CAP + 120];
    if (job_dir(t, j, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    long step = pd_adamw_steps(o);
    if (!force && j->ckpt[0] && j->ckpt_step == step) return PD_OK; /* nothing new since the last one */
    /* a new name every time: the previous checkpoint stays complete until this one is */
    snprintf(name, sizeof name, "ckpt-%ld", j->ckpt_seq + 1);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", jd, name);
    snprintf(fin, sizeof fin, "%s/%s", jd, name);
    pd_fs_remove_tree(tmp);
    if (mkdir(tmp, 0755)) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", tmp, strerror(errno));
    pd_adapter *snap = NULL;
    pd_status st = pd_adapter_snapshot(j->a, &snap, err, errlen);
    if (!st) {
        snprintf(p, sizeof p, "%s/adapter", tmp);
        st = save_adapter(snap, p, err, errlen);
    }
    pd_adapter_release(snap);
    if (!st) {
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->seed);
        const char *kv[] = {"seed", seed, "job", j->id};
        snprintf(p, sizeof p, "%s/optim.safetensors", tmp);
        st = pd_adamw_save(o, p, kv, 2, err, errlen);
    }
    if (!st) {
        pthread_mutex_lock(&t->lock);
        cJSON *s = job_json(j, 1);
        pthread_mutex_unlock(&t->lock);
        cJSON *rng = s ? cJSON_AddObjectToObject(s, "rng") : NULL;
        if (rng) {
            /* the generators are functions of (seed, epoch) and (seed, step): see the file comment */
            char b[32];
            cJSON_AddStringToObject(rng, "algorithm", "splitmix64");
            snprintf(b, sizeof b, "%llu", (unsigned long long)j->seed);
            cJSON_AddStringToObject(rng, "seed", b);
            cJSON_AddNumberToObject(rng, "epoch", (double)(step / j->steps_per_epoch));
            cJSON_AddNumberToObject(rng, "step", (double)step);
        }
        st = rng ? write_json(tmp, "state.json", s, 0, err, errlen) : pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        cJSON_Delete(s);
    }
    if (!st) st = pd_fs_sync(tmp, err, errlen);
    if (!st) {
        pd_fs_remove_tree(fin);
        if (rename(tmp, fin)) st = pd_err(err, errlen, PD_ERR_IO, "%s: rename: %s", fin, strerror(errno));
    }
    if (!st) st = pd_fs_sync(jd, err, errlen);
    if (st) {
        pd_fs_remove_tree(tmp);
        return st;
    }
    pthread_mutex_lock(&t->lock);
    snprintf(j->ckpt, sizeof j->ckpt, "%s", name);
    j->ckpt_seq++;
    j->ckpt_step = step;
    pthread_mutex_unlock(&t->lock);
    job_save_state(t, j);
    ckpt_prune(jd, name);
    return PD_OK;
}

/* Loads the job's checkpoint into the adapter and optimizer, and its histories. */
static pd_status ckpt_load(pd_trainer *t, job *j, pd_adamw *o, char *err, size_t errlen) {
    char jd[PATH_CAP], p[PATH_CAP + 120];
    if (job_dir(t, j, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    snprintf(p, sizeof p, "%s/%s/optim.safetensors", jd, j->ckpt);
    pd_status st = pd_adamw_load(o, p, err, errlen);
    if (st) return st;
    pd_adapter_params_changed(j->a);
    cJSON *s = NULL;
    snprintf(p, sizeof p, "%s/%s/state.json", jd, j->ckpt);
    if ((st = read_json_file(p, &s, err, errlen))) return st;
    pthread_mutex_lock(&t->lock);
    int keep_n = j->n_versions;
    int *keep = keep_n ? malloc(sizeof(int) * (size_t)keep_n) : NULL;
    if (keep) memcpy(keep, j->versions, sizeof(int) * (size_t)keep_n);
    job_restore_history(j, s);
    /* versions published after the checkpoint are known from job.json: keep them all */
    for (int i = 0; keep && i < keep_n; i++) {
        int seen = 0;
        for (int k = 0; k < j->n_versions && !seen; k++) seen = j->versions[k] == keep[i];
        if (!seen) push_version(j, keep[i]);
    }
    j->step = pd_adamw_steps(o);
    j->resumed_from = j->step;
    j->ckpt_seq = strtol(j->ckpt + 5, NULL, 10);
    j->ckpt_step = j->step;
    pthread_mutex_unlock(&t->lock);
    free(keep);
    cJSON_Delete(s);
    return PD_OK;
}

/* ==== Jobs: running one ==== */

#define DROPOUT_SALT 0xD5A0D5A0D5A0D5A0ull

typedef struct hook_arg {
    pd_trainer *t;
    job *j;
} hook_arg;

/* Inference first: while predictions wait, sleep in short slices (at most YIELD_MAX_S in a row,
 * so training still advances under a queue that never empties). */
static void trainer_yield(pd_trainer *t, job *j) {
    pthread_mutex_lock(&t->lock);
    int (*fn)(void *) = t->waiting;
    void *arg = t->waiting_arg;
    pthread_mutex_unlock(&t->lock);
    if (!fn) return;
    double t0 = pd_now();
    while (!atomic_load(&j->cancel) && fn(arg) && pd_now() - t0 < YIELD_MAX_S) sleep_s(0.0005);
}

/* Between micro-batches and evaluation batches: yield, and stop if the job is cancelled. */
static int job_hook(void *arg) {
    hook_arg *h = arg;
    if (atomic_load(&h->j->cancel)) return 1;
    trainer_yield(h->t, h->j);
    return atomic_load(&h->j->cancel) != 0;
}

/* Publishes a snapshot of the adapter as the next version of its name. */
static pd_status job_publish(pd_trainer *t, job *j, char *err, size_t errlen) {
    pd_adapter *snap = NULL;
    pd_status st = pd_adapter_snapshot(j->a, &snap, err, errlen);
    if (st) return st;
    int created = 0;
    pd_adapter_info info;
    st = pd_registry_publish_adapter(t->reg, j->adapter, snap, &created, &info, err, errlen);
    pd_adapter_release(snap);
    if (st) return st;
    pthread_mutex_lock(&t->lock);
    int bad = push_version(j, info.version);
    pthread_mutex_unlock(&t->lock);
    pd_adapter_info_clear(&info);
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}

/* Evaluates at step, records the result and the best so far, publishes as the policy says. */
static pd_status job_eval(pd_trainer *t, job *j, pd_train_engine *e, long step, char *err, size_t errlen) {
    evalres r = {0, 0, 0};
    pd_status st = evaluate(e, j, &r, err, errlen);
    if (st) return st;
    double metric = j->task == PD_TASK_CLS ? r.accuracy : r.f1;
    pthread_mutex_lock(&t->lock);
    int bad = push_eval(j, (evalrec){step, r.accuracy, r.f1, r.loss});
    int improved = !j->has_best || metric > j->best_value;
    if (improved) {
        j->has_best = 1;
        j->best_step = step;
        j->best_value = metric;
    }
    pthread_mutex_unlock(&t->lock);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (j->publish == PUB_EVERY_EVAL || (j->publish == PUB_BEST && improved)) return job_publish(t, j, err, errlen);
    return PD_OK;
}

static int is_eval_step(const job *j, long step) {
    return j->n_eval > 0 && ((j->eval_every > 0 && step % j->eval_every == 0) || step == j->total_steps);
}

/* Runs a job to its end (or to a cancel / shutdown) and returns its final status; J_RUNNING
 * means interrupted by shutdown and resumable. err gets the failure message. */
static jstatus run_job(pd_trainer *t, job *j, char *err, size_t errlen) {
    pd_train_engine *e = NULL;
    pd_adamw *o = NULL;
    int *perm = malloc(sizeof(int) * (size_t)j->n_train);
    hook_arg ha = {t, j};
    pd_status st = pd_train_engine_new(t->base, j->a, j->task, t->pool, 0, &e, err, errlen);
    int np = 0;
    const pd_param *params = pd_adapter_train_params(j->a, &np);
    if (!st && !(o = pd_adamw_new(params, np, 0.9, 0.999, 1e-8, j->wd))) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st && !perm) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st && j->ckpt[0]) {
        char e2[400];
        if ((st = ckpt_load(t, j, o, e2, sizeof e2))) pd_err(err, errlen, st, "cannot resume from %s: %s", j->ckpt, e2);
    }
    if (!st) {
        e->hook = job_hook;
        e->hook_arg = &ha;
    }
    job_save_state(t, j);
    long step = o ? pd_adamw_steps(o) : 0, step0 = step, cur_epoch = -1, examples = 0;
    double t0 = pd_now(), last_ckpt = t0;
    /* stopped during the evaluation of the step it checkpointed: do that evaluation first */
    if (!st && step > 0 && is_eval_step(j, step) && (j->n_ev == 0 || j->ev[j->n_ev - 1].step != step)) {
        st = job_eval(t, j, e, step, err, errlen);
        if (!st && t->dir) st = ckpt_write(t, j, o, 1, err, errlen);
    }
    while (!st && step < j->total_steps && !atomic_load(&j->cancel)) {
        trainer_yield(t, j);
        if (atomic_load(&j->cancel)) break;
        long ep = step / j->steps_per_epoch;
        if (ep != cur_epoch) {
            shuffle(perm, j->n_train, mix2(j->seed, (uint64_t)ep + 1));
            cur_epoch = ep;
        }
        long b0 = (step % j->steps_per_epoch) * j->batch_size;
        int nb = j->n_train - b0 < j->batch_size ? (int)(j->n_train - b0) : j->batch_size;
        double lr = j->lr * pd_lr_lambda(step, j->warmup_steps, j->total_steps), loss = 0;
        st = pd_train_engine_step(e, o, j->train, perm + b0, nb, lr, j->max_grad_norm, mix2(j->seed ^ DROPOUT_SALT, (uint64_t)step),
                                  &loss, NULL, err, errlen);
        if (st) break;
        step++;
        examples += nb;
        double el = pd_now() - t0;
        pthread_mutex_lock(&t->lock);
        j->loss_acc += loss;
        j->loss_acc_n++;
        j->step = step;
        t->n_steps++;
        if (step % j->log_every == 0 || step == j->total_steps) {
            push_loss(j, step, j->loss_acc / j->loss_acc_n);
            j->loss_acc = 0;
            j->loss_acc_n = 0;
        }
        j->ex_per_s = el > 0 ? examples / el : 0;
        j->eta_s = (double)(j->total_steps - step) * el / (double)(step - step0);
        pthread_mutex_unlock(&t->lock);
        int eval_now = is_eval_step(j, step);
        if (eval_now) {
            if ((st = job_eval(t, j, e, step, err, errlen))) break;
        }
        if (t->dir && (eval_now || pd_now() - last_ckpt >= CKPT_EVERY_S)) {
            if ((st = ckpt_write(t, j, o, 0, err, errlen))) break;
            last_ckpt = pd_now();
        }
    }
    int c = atomic_load(&j->cancel);
    if (st == PD_ERR_CANCELLED) st = PD_OK;
    jstatus res;
    if (st) {
        res = J_FAILED;
    } else if (c == 1) {
        res = J_CANCELLED;
    } else if (c == 2) {
        /* shutdown: keep the job resumable from exactly this step */
        if (t->dir && o && (st = ckpt_write(t, j, o, 0, err, errlen)))
            fprintf(stderr, "peftd: trainer: %s: checkpoint at shutdown: %s\n", j->id, err);
        res = J_RUNNING;
    } else {
        /* done: evaluate at the end if the last evaluation was earlier, then publish */
        if (j->n_eval > 0 && (j->n_ev == 0 || j->ev[j->n_ev - 1].step != step)) st = job_eval(t, j, e, step, err, errlen);
        if (!st && (j->publish == PUB_END || j->n_versions == 0)) st = job_publish(t, j, err, errlen);
        res = st == PD_ERR_CANCELLED ? J_CANCELLED : st ? J_FAILED : J_SUCCEEDED;
    }
    free(perm);
    pd_adamw_free(o);
    pd_train_engine_free(e);
    return res;
}

/* ==== Jobs: the queue and its workers ==== */

static job *job_find(pd_trainer *t, const char *id) { /* caller holds t->lock */
    for (job *j = t->jobs; j; j = j->next)
        if (!j->hold && !strcmp(j->id, id)) return j;
    return NULL;
}

static void job_append(pd_trainer *t, job *j) { /* caller holds t->lock */
    j->next = NULL;
    if (t->tail) t->tail->next = j;
    else t->jobs = j;
    t->tail = j;
}

static void job_unlink(pd_trainer *t, job *j) { /* caller holds t->lock */
    job *prev = NULL;
    for (job *x = t->jobs; x; prev = x, x = x->next) {
        if (x != j) continue;
        if (prev) prev->next = x->next;
        else t->jobs = x->next;
        if (t->tail == x) t->tail = prev;
        return;
    }
}

/* A finished job keeps its record and spec; its data and checkpoints go (the published
 * versions are in the registry). */
static void job_finish_files(pd_trainer *t, job *j) {
    char jd[PATH_CAP], p[PATH_CAP + 32];
    if (!t->dir || job_dir(t, j, jd, sizeof jd)) return;
    static const char *const drop[] = {"train.jsonl", "eval.jsonl", "source", "lock"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", jd, drop[i]);
        pd_fs_remove_tree(p);
    }
    ckpt_prune(jd, NULL);
}

static void *worker_main(void *arg) {
    pd_trainer *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        job *j = NULL;
        while (!t->stop) {
            for (j = t->jobs; j && (j->hold || j->status != J_QUEUED); j = j->next) {}
            if (j) break;
            pthread_cond_wait(&t->cv, &t->lock);
        }
        if (t->stop) break;
        j->status = J_RUNNING;
        j->started_at = wall_now();
        t->n_queued--;
        t->n_running++;
        pthread_mutex_unlock(&t->lock);
        char err[512] = "";
        jstatus res = run_job(t, j, err, sizeof err);
        pthread_mutex_lock(&t->lock);
        t->n_running--;
        if (res == J_RUNNING) continue; /* shutdown: job.json still says running */
        j->status = res;
        j->finished_at = wall_now();
        j->eta_s = 0;
        if (res == J_FAILED) snprintf(j->error, sizeof j->error, "%s", err[0] ? err : "failed");
        if (res == J_SUCCEEDED) t->n_succeeded++;
        else if (res == J_FAILED) t->n_failed++;
        else t->n_cancelled++;
        pthread_mutex_unlock(&t->lock);
        job_save_state(t, j);
        job_finish_files(t, j);
        job_unlock(j);
        job_drop_data(j); /* only this thread touches a running job's data */
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->cv); /* pd_trainer_cancel may wait for this */
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ==== Startup: jobs found on disk ==== */

/* Reads a file that may be absent: *buf NULL and PD_OK when it does not exist. */
static pd_status read_optional(const char *dir, const char *name, char **buf, size_t *len, char *err, size_t errlen) {
    char p[PATH_CAP + 32];
    *buf = NULL;
    *len = 0;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (access(p, F_OK) != 0) return PD_OK;
    return pd_read_file(p, (size_t)1 << 34, buf, len, err, errlen);
}

/* Loads data_dir/jobs/<id>: finished jobs as records, the others queued again to resume from
 * their checkpoint. Problems are logged and the job is marked failed; startup goes on. */
static void job_load(pd_trainer *t, const char *id, long num) {
    char jd[PATH_CAP], p[PATH_CAP + 32], err[512];
    snprintf(jd, sizeof jd, "%s/%s", t->dir, id);
    snprintf(p, sizeof p, "%s/job.json", jd);
    cJSON *state = NULL;
    if (read_json_file(p, &state, err, sizeof err)) {
        fprintf(stderr, "peftd: trainer: skipping %s: %s\n", jd, err);
        return;
    }
    if (num >= t->next_id) t->next_id = num + 1;
    const cJSON *stv = cJSON_GetObjectItemCaseSensitive(state, "status");
    const char *status = cJSON_IsString(stv) ? stv->valuestring : "";
    job *j = NULL;
    int lock_fd = -1;
    int unfinished = !strcmp(status, "queued") || !strcmp(status, "running");
    if (unfinished && (lock_fd = lock_dir(jd)) < 0) {
        /* a live process (a replica sharing the data dir) owns it: show it as its job.json says */
        if (!(j = calloc(1, sizeof *j))) { cJSON_Delete(state); return; }
        j->lock_fd = -1;
        j->status = !strcmp(status, "queued") ? J_QUEUED : J_RUNNING;
        cJSON_DeleteItemFromObjectCaseSensitive(state, "checkpoint");
        cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc");
        cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc_n");
        j->frozen = state;
        state = NULL;
    } else if (!unfinished) {
        if (!(j = calloc(1, sizeof *j))) { cJSON_Delete(state); return; }
        j->lock_fd = -1;
        j->status = !strcmp(status, "succeeded") ? J_SUCCEEDED : !strcmp(status, "cancelled") ? J_CANCELLED : J_FAILED;
        cJSON_DeleteItemFromObjectCaseSensitive(state, "checkpoint");
        cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc");
        cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc_n");
        j->frozen = state;
        state = NULL;
    } else {
        cJSON *spec = NULL;
        char *tr = NULL, *ev = NULL;
        size_t trl = 0, evl = 0;
        snprintf(p, sizeof p, "%s/spec.json", jd);
        pd_status st = read_json_file(p, &spec, err, sizeof err);
        if (!st) st = read_optional(jd, "train.jsonl", &tr, &trl, err, sizeof err);
        if (!st) st = read_optional(jd, "eval.jsonl", &ev, &evl, err, sizeof err);
        if (!st) {
            snprintf(p, sizeof p, "%s/source", jd);
            int has_src = access(p, F_OK) == 0;
            char e2[400];
            st = job_parse(t, spec, tr ? tr : "", trl, ev, evl, has_src ? p : NULL, &j, e2, sizeof e2);
            if (st) snprintf(err, sizeof err, "cannot resume: %s", e2);
        }
        free(tr);
        free(ev);
        cJSON_Delete(spec);
        if (st) {
            /* keep a record of what could not be resumed */
            fprintf(stderr, "peftd: trainer: %s: %s\n", id, err);
            cJSON_ReplaceItemInObjectCaseSensitive(state, "status", cJSON_CreateString("failed"));
            cJSON_DeleteItemFromObjectCaseSensitive(state, "error");
            cJSON_AddStringToObject(state, "error", err);
            cJSON_DeleteItemFromObjectCaseSensitive(state, "checkpoint");
            write_json(jd, "job.json", state, 1, err, sizeof err);
            close(lock_fd);
            if (!(j = calloc(1, sizeof *j))) { cJSON_Delete(state); return; }
            j->lock_fd = -1;
            j->status = J_FAILED;
            j->frozen = state;
            state = NULL;
        } else {
            cJSON_Delete(j->train_raw);
            cJSON_Delete(j->eval_raw);
            j->train_raw = j->eval_raw = NULL;
            pd_adapter_release(j->source);
            j->source = NULL;
            j->status = J_QUEUED;
            j->lock_fd = lock_fd;
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(state, "created_at");
            j->created_at = cJSON_IsNumber(x) ? x->valuedouble : wall_now();
            x = cJSON_GetObjectItemCaseSensitive(state, "checkpoint");
            if (cJSON_IsString(x) && !strncmp(x->valuestring, "ckpt-", 5)) snprintf(j->ckpt, sizeof j->ckpt, "%s", x->valuestring);
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(state, "published_versions"))
                if (cJSON_IsNumber(it)) push_version(j, (int)it->valuedouble);
            t->n_queued++;
        }
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    if (j->frozen) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j->frozen, "adapter");
        if (cJSON_IsString(a)) snprintf(j->adapter, sizeof j->adapter, "%s", a->valuestring);
    }
    cJSON_Delete(state);
    job_append(t, j);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Scans data_dir/jobs: removes unfinished temporary directories, loads jobs in id order. */
static void jobs_scan(pd_trainer *t) {
    DIR *d = opendir(t->dir);
    if (!d) return;
    long *ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (strncmp(nm, "j-", 2)) continue;
        char *end = NULL;
        long v = strtol(nm + 2, &end, 10);
        if (end == nm + 2 || v <= 0) continue;
        if (!strncmp(end, ".tmp", 4)) {
            /* a job being created (here or by a replica), or left by a crash: remove when old */
            char p[PATH_CAP + 300];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", t->dir, nm);
            if (lstat(p, &sb) == 0 && wall_now() - (double)sb.st_mtime > 600) pd_fs_remove_tree(p);
            continue;
        }
        if (*end) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            long *ni = realloc(ids, nc * sizeof *ni);
            if (!ni) break;
            ids = ni;
            cap = nc;
        }
        ids[n++] = v;
    }
    closedir(d);
    if (n) qsort(ids, n, sizeof *ids, cmp_long);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "j-%ld", ids[i]);
        job_load(t, id, ids[i]);
    }
    free(ids);
}

/* ==== Public API ==== */

pd_trainer *pd_trainer_new(const pd_model *base, pd_registry *reg, pd_pool *pool, const char *data_dir, int threads) {
    if (!base || !reg) return NULL;
    pd_trainer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->base = base;
    t->reg = reg;
    t->pool = pool;
    t->next_id = 1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (data_dir) {
        size_t n = strlen(data_dir) + 8;
        if (!(t->dir = malloc(n))) goto fail;
        snprintf(t->dir, n, "%s/jobs", data_dir);
        char err[512];
        if (pd_fs_mkdir_p(t->dir, err, sizeof err)) {
            fprintf(stderr, "peftd: trainer: %s\n", err);
            goto fail;
        }
        jobs_scan(t);
    }
    if (threads < 1) threads = 1;
    if (!(t->th = calloc((size_t)threads, sizeof *t->th))) goto fail;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t->th[i], NULL, worker_main, t)) break;
        t->n_th++;
    }
    if (t->n_th == 0) goto fail;
    return t;
fail:
    pd_trainer_free(t);
    return NULL;
}

void pd_trainer_free(pd_trainer *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    for (job *j = t->jobs; j; j = j->next) {
        int zero = 0;
        if (j->status == J_RUNNING) atomic_compare_exchange_strong(&j->cancel, &zero, 2);
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n_th; i++) pthread_join(t->th[i], NULL);
    for (job *j = t->jobs, *nx; j; j = nx) {
        nx = j->next;
        job_free(j);
    }
    free(t->th);
    free(t->dir);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void pd_trainer_set_yield(pd_trainer *t, int (*waiting)(void *arg), void *arg) {
    pthread_mutex_lock(&t->lock);
    t->waiting = waiting;
    t->waiting_arg = arg;
    pthread_mutex_unlock(&t->lock);
}

pd_status pd_trainer_submit(pd_trainer *t, const cJSON *req, const char *train_jsonl, size_t train_len,
                            const char *eval_jsonl, size_t eval_len, char *job_id, size_t id_cap, char *err,
                            size_t errlen) {
    job *j = NULL;
    pd_status st = job_parse(t, req, train_jsonl, train_len, eval_jsonl, eval_len, NULL, &j, err, errlen);
    if (st) return st;
    pthread_mutex_lock(&t->lock);
    int waiting = 0;
    const job *busy = NULL;
    for (const job *x = t->jobs; x; x = x->next) {
        if (x->status == J_QUEUED) waiting++;
        if ((x->status == J_QUEUED || x->status == J_RUNNING) && !strcmp(x->adapter, j->adapter)) busy = x;
    }
    if (t->stop) st = pd_err(err, errlen, PD_ERR_CANCELLED, "the trainer is shutting down");
    else if (busy) st = pd_err(err, errlen, PD_ERR_BUSY, "adapter: '%s' is already being trained by job %s", j->adapter, busy->id);
    else if (waiting >= MAX_WAITING_JOBS) st = pd_err(err, errlen, PD_ERR_BUSY, "%d training jobs are already queued", waiting);
    if (!st) {
        snprintf(j->id, sizeof j->id, "j-%ld", t->next_id++);
        j->status = J_QUEUED;
        j->hold = 1;
        j->created_at = wall_now();
        job_append(t, j);
    }
    pthread_mutex_unlock(&t->lock);
    if (st) {
        job_free(j);
        return st;
    }
    if (t->dir) st = job_persist_new(t, j, err, errlen);
    /* the raw examples and the source version were only needed on disk */
    cJSON_Delete(j->train_raw);
    cJSON_Delete(j->eval_raw);
    j->train_raw = j->eval_raw = NULL;
    pd_adapter_release(j->source);
    j->source = NULL;
    pthread_mutex_lock(&t->lock);
    if (st) {
        job_unlink(t, j);
    } else {
        j->hold = 0;
        t->n_queued++;
        pthread_cond_broadcast(&t->cv);
        snprintf(job_id, id_cap, "%s", j->id);
    }
    pthread_mutex_unlock(&t->lock);
    if (st) job_free(j);
    return st;
}

cJSON *pd_trainer_job_json(pd_trainer *t, const char *job_id) {
    pthread_mutex_lock(&t->lock);
    job *j = job_find(t, job_id);
    cJSON *o = j ? job_json(j, 0) : NULL;
    pthread_mutex_unlock(&t->lock);
    return o;
}

cJSON *pd_trainer_list_json(pd_trainer *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON *a = o ? cJSON_AddArrayToObject(o, "jobs") : NULL;
    if (!a) { cJSON_Delete(o); return NULL; }
    pthread_mutex_lock(&t->lock);
    for (job *j = t->jobs; j; j = j->next) {
        if (j->hold) continue;
        cJSON *x = job_json(j, 0);
        if (!x) { cJSON_Delete(o); o = NULL; break; }
        cJSON_AddItemToArray(a, x);
    }
    pthread_mutex_unlock(&t->lock);
    return o;
}

pd_status pd_trainer_cancel(pd_trainer *t, const char *job_id, char *err, size_t errlen) {
    pthread_mutex_lock(&t->lock);
    job *j = job_find(t, job_id);
    if (!j) {
        pthread_mutex_unlock(&t->lock);
        return pd_err(err, errlen, PD_ERR_NOT_FOUND, "job '%.40s' not found", job_id);
    }
    if (j->status == J_QUEUED) {
        j->status = J_CANCELLED;
        j->finished_at = wall_now();
        t->n_queued--;
        t->n_cancelled++;
        pthread_mutex_unlock(&t->lock);
        job_save_state(t, j);
        job_finish_files(t, j);
        pthread_mutex_lock(&t->lock);
        job_unlock(j);
        job_drop_data(j); /* no worker takes a cancelled job */
        pthread_mutex_unlock(&t->lock);
        return PD_OK;
    }
    if (j->status != J_RUNNING) {
        pd_status st = pd_err(err, errlen, PD_ERR_BUSY, "job %s already %s", j->id, STATUS_NAME[j->status]);
        pthread_mutex_unlock(&t->lock);
        return st;
    }
    int zero = 0;
    atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    /* the worker stops between micro-batches; wait a little so the answer usually shows it */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    while (j->status == J_RUNNING && !t->stop)
        if (pthread_cond_timedwait(&t->cv, &t->lock, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&t->lock);
    return PD_OK;
}

void pd_trainer_stats_get(pd_trainer *t, pd_trainer_stats *s) {
    pthread_mutex_lock(&t->lock);
    s->queued = t->n_queued;
    s->running = t->n_running;
    s->succeeded = t->n_succeeded;
    s->failed = t->n_failed;
    s->cancelled = t->n_cancelled;
    s->steps = t->n_steps;
    pthread_mutex_unlock(&t->lock);
}
