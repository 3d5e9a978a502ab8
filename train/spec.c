/* spec.c - training requests: parsing, validation, tokenization of the examples, QA answer spans.
 * See spec.h and docs/TRAINING.md.
 *
 * Determinism: the held-out split (eval_fraction), the example order of epoch e and the
 * dropout masks of step s are functions of the seed and the position in the run (splitmix64
 * seeded from (seed, e) or (seed, s)), so a checkpoint needs no generator state and a resumed
 * job takes exactly the steps an uninterrupted one would. */
#include "spec.h"

#include "json.h"
#include "pipeline.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define DEFAULT_SEED 42      /* transformers' TrainingArguments.seed */
#define MAX_EXAMPLES 10000000
#define LOSS_POINTS 500      /* at most this many points in a job's "loss" */
#define SPLIT_SALT 0x5EED5EEDull
#define DROPOUT_SALT 0xD5A0D5A0D5A0D5A0ull

/* ==== Order: shuffles and seeds ==== */


/* A well-mixed 64-bit value for (a, b): seeds of per-epoch shuffles and per-step dropout. */
static uint64_t mix2(uint64_t a, uint64_t b) {
    uint64_t s = a ^ (b * 0xD1B54A32D192ED03ull);
    pd_splitmix64(&s);
    return pd_splitmix64(&s);
}

/* Uniform integer in [0, n) without modulo bias. */
static uint64_t rand_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t r = pd_splitmix64(s);
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


void pd_train_order(const pd_train_spec *s, long epoch, int *perm) {
    shuffle(perm, s->train.n, mix2(s->seed, (uint64_t)epoch + 1));
}

uint64_t pd_train_dropout_seed(const pd_train_spec *s, long step) { return mix2(s->seed ^ DROPOUT_SALT, (uint64_t)step); }

const char *pd_publish_name(pd_publish p) {
    static const char *const NAME[] = {"end", "best", "every_eval"};
    return p >= PD_PUBLISH_END && p <= PD_PUBLISH_EVERY_EVAL ? NAME[p] : "?";
}

/* ==== Sets and specs ==== */

static void examples_free(pd_train_example *x, int n) {
    if (!x) return;
    for (int i = 0; i < n; i++) {
        free(x[i].ids);
        free(x[i].type_ids);
    }
    free(x);
}

static void gold_free(pd_qa_gold *g, int n) {
    if (!g) return;
    for (int i = 0; i < n; i++) {
        free(g[i].question);
        free(g[i].context);
        pd_strv_free(g[i].answers, g[i].n_answers);
    }
    free(g);
}

void pd_train_set_free(pd_train_set *set) {
    examples_free(set->ex, set->n);
    gold_free(set->gold, set->n);
    memset(set, 0, sizeof *set);
}

void pd_train_spec_drop_texts(pd_train_spec *s) {
    free(s->spec_json);
    free(s->train_jsonl);
    free(s->eval_jsonl);
    s->spec_json = s->train_jsonl = s->eval_jsonl = NULL;
    pd_adapter_release(s->source);
    s->source = NULL;
}

void pd_train_spec_free(pd_train_spec *s) {
    if (!s) return;
    pd_train_spec_drop_texts(s);
    pd_strv_free(s->labels, s->num_labels);
    pd_train_set_free(&s->train);
    pd_train_set_free(&s->eval);
    pd_adapter_release(s->a);
    free(s);
}

/* ==== Request fields ==== */

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
    pd_status st = pd_adapter_config_known(m, c, err, errlen); /* a misspelled option is a 400, not its default */
    if (st) return st;
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

/* ==== Cost ==== */

/* Bytes a trainable parameter costs while its job runs: the fp32 value, its gradient, AdamW's m
 * and v, the snapshot a publish makes, and the file image the adapter is first built from. */
#define BYTES_PER_PARAM 24
/* epochs x examples: what one job may ask of the queue (docs/TRAINING.md) */
#define MAX_EXAMPLE_PASSES 1e8

/* An upper bound on the trainable parameters of a new adapter of method m with config c (its
 * ranges already checked) on a base of shape cf, with a classification head of num_labels
 * outputs (0: none), from the config alone: nothing is allocated. LoRA counts every linear of
 * every layer at its largest rank (r or any rank_pattern value). */
static double fresh_params(pd_method m, const cJSON *c, const pd_config *cf, int num_labels) {
    double H = cf->hidden, F = cf->ffn, L = cf->layers, head = num_labels > 0 ? H * H + H + H * num_labels + num_labels : 0;
    const cJSON *v;
    switch (m) {
    case PD_METHOD_LORA: {
        double r = cJSON_IsNumber(v = pd_json_get(c, "r")) ? v->valuedouble : 8;
        const cJSON *rp = pd_json_get(c, "rank_pattern"), *it;
        if (cJSON_IsObject(rp)) cJSON_ArrayForEach(it, rp) if (cJSON_IsNumber(it) && it->valuedouble > r) r = it->valuedouble;
        return head + r * (4 * (H + H) + 2 * (H + F)) * L; /* (in + out) x r per linear */
    }
    case PD_METHOD_IA3:
        return head + (2 * H + F) * L;
    case PD_METHOD_PROMPT:
    case PD_METHOD_PREFIX: {
        double nv = cJSON_IsNumber(v = pd_json_get(c, "num_virtual_tokens")) ? v->valuedouble : 20;
        if (m == PD_METHOD_PROMPT) return head + nv * H;
        double E = cJSON_IsNumber(v = pd_json_get(c, "encoder_hidden_size")) ? v->valuedouble : H;
        if (cJSON_IsTrue(pd_json_get(c, "prefix_projection"))) return head + nv * H + H * E + E + E * 2 * H * L + 2 * H * L;
        return head + nv * 2 * H * L;
    }
    case PD_METHOD_BOTTLENECK: {
        double rf = cJSON_IsNumber(v = pd_json_get(c, "reduction_factor")) ? v->valuedouble : 16;
        double w = floor(H / rf);
        if (w < 1) w = 1;
        v = pd_json_get(c, "architecture");
        double per = cJSON_IsString(v) && !strcmp(v->valuestring, "double_seq_bn") ? 2 : 1;
        return head + per * L * (2 * H * w + w + H);
    }
    }
    return head;
}

/* Refuses a job whose trainable state would pass max_bytes (0: no limit), or whose epochs x
 * examples pass MAX_EXAMPLE_PASSES, before anything is built: PD_ERR_MISMATCH naming the
 * estimate and the limit. params: fresh_params, or a continued adapter's own. */
static pd_status check_cost(double params, long epochs, int n_examples, size_t max_bytes, char *err, size_t errlen) {
    double bytes = params * BYTES_PER_PARAM, mib = 1024.0 * 1024.0;
    if (max_bytes && bytes > (double)max_bytes)
        return pd_err(err, errlen, PD_ERR_MISMATCH,
                      "config: the adapter would have up to %.3g trainable parameters, about %.0f MiB while it trains; "
                      "the limit is %.0f MiB (--max-train-mb)", params, bytes / mib, (double)max_bytes / mib);
    if ((double)epochs * n_examples > MAX_EXAMPLE_PASSES)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "epochs: %ld epochs x %d examples = %.3g example passes; the limit is %.0e",
                      epochs, n_examples, (double)epochs * n_examples, MAX_EXAMPLE_PASSES);
    return PD_OK;
}

/* ==== Examples ==== */

/* Parses JSON Lines text into a JSON array (blank lines skipped). The index in messages counts
 * examples, as in "train[12]". */
static pd_status jsonl_parse(const char *what, const char *text, size_t len, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    size_t pos = 0, cost = 0;
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
        /* Strict, and within one budget for the whole file (not one per line). */
        pd_json_stats js;
        char jerr[160];
        if (pd_json_check(text + a, b - a, &js, jerr, sizeof jerr)) {
            cJSON_Delete(arr);
            return pd_err(err, errlen, PD_ERR_INVALID, "%s[%d]: line %d: %s", what, idx, line, jerr);
        }
        if ((cost += js.cost) > PD_JSON_COST(len)) {
            cJSON_Delete(arr);
            return pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: %zu bytes of JSON Lines would take more than %zu MiB to parse",
                          what, len, PD_JSON_COST(len) >> 20);
        }
        cJSON *v = cJSON_ParseWithLengthOpts(text + a, b - a, NULL, 0);
        if (!v) {
            cJSON_Delete(arr);
            return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
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
                                pd_train_example *x, pd_qa_gold *gold, char *err, size_t errlen) {
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
        gold->question = strdup(in.question);
        gold->context = strdup(in.context);
        gold->answers = calloc((size_t)na, sizeof *gold->answers);
        bad = !gold->question || !gold->context || !gold->answers;
        for (int k = 0; k < na && !bad; k++) {
            if (!(gold->answers[k] = strdup(ans[k].text))) bad = 1;
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
        if (cnt == 1024) { pd_strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_MISMATCH, "train: more than 1024 distinct labels"); }
        if (cnt == cap) {
            char **nv = realloc(v, sizeof *nv * (size_t)(cap *= 2));
            if (!nv) { pd_strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
            v = nv;
        }
        if (!(v[cnt] = strdup(k))) { pd_strv_free(v, cnt); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        cnt++;
    }
    qsort(v, (size_t)cnt, sizeof *v, cmp_label);
    *out = v;
    *n = cnt;
    return PD_OK;
}

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
                            pd_train_example **out, pd_qa_gold **gold_out, int *n_out, char *err, size_t errlen) {
    int n = cJSON_GetArraySize(arr);
    pd_train_example *x = calloc((size_t)(n ? n : 1), sizeof *x);
    pd_qa_gold *g = gold_out ? calloc((size_t)(n ? n : 1), sizeof *g) : NULL;
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


/* The examples of arr as JSON Lines text, one compact object a line. NULL when out of memory. */
static char *jsonl_print(const cJSON *arr) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char *line = buf ? cJSON_PrintUnformatted(it) : NULL;
        size_t n = line ? strlen(line) : 0;
        while (line && len + n + 2 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        if (!line || len + n + 2 > cap) {
            free(line);
            free(buf);
            return NULL;
        }
        memcpy(buf + len, line, n);
        buf[len + n] = '\n';
        len += n + 1;
        free(line);
    }
    if (buf) buf[len] = 0;
    return buf;
}

/* ==== The whole request ==== */

pd_status pd_train_spec_parse(const pd_model *base, pd_registry *reg, const char *json, size_t len, const char *train_jsonl,
                              size_t train_len, const char *eval_jsonl, size_t eval_len, const char *source_dir,
                              size_t max_bytes, pd_train_spec **out, char *err, size_t errlen) {
    *out = NULL;
    const pd_config *cf = pd_model_config(base);
    cJSON *req = NULL, *train = NULL, *eval = NULL, *spec_out = NULL;
    pd_status st = pd_json_parse(json ? json : "", json ? len : 0, &req, err, errlen);
    if (st) return st;
    pd_train_spec *j = NULL;
    const char *s = NULL;
    int *perm = NULL;
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return pd_err(err, errlen, PD_ERR_INVALID, "the request must be a JSON object");
    }
    if ((st = pd_json_known(req, "", "field", TOP_KEYS, err, errlen))) {
        cJSON_Delete(req);
        return st;
    }
    if (!(j = calloc(1, sizeof *j))) {
        cJSON_Delete(req);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
#define FAIL(...) do { st = pd_err(err, errlen, __VA_ARGS__); goto fail; } while (0)
#define TRY(x) do { if ((st = (x))) goto fail; } while (0)
    /* -- adapter, method, task, labels -- */
    TRY(pd_json_str(req, "adapter", "", &s, err, errlen));
    if (!s) FAIL(PD_ERR_INVALID, "adapter: required");
    if (!pd_registry_valid_name(s)) FAIL(PD_ERR_INVALID, "adapter: '%.80s' is not a valid name (" PD_ADAPTER_NAME_RULE ")", s);
    snprintf(j->adapter, sizeof j->adapter, "%s", s);
    s = NULL;
    j->base_dtype = pd_model_dtype(base);
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
            if ((st = pd_adapter_load_dir(base, source_dir, &src, e2, sizeof e2))) FAIL(st, "source adapter: %s", e2);
        } else {
            int ver = 0;
            if ((st = pd_registry_get(reg, j->adapter, &src, &ver, e2, sizeof e2))) {
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
            const pd_head *h = pd_adapter_head(src, base, PD_TASK_CLS);
            if (!h) FAIL(PD_ERR_MISMATCH, "task: neither the adapter nor the base model has a classification head");
            if (n <= 0) n = h->num_labels;
            if (!(j->labels = calloc((size_t)(n > 0 ? n : 1), sizeof *j->labels))) FAIL(PD_ERR_NOMEM, "out of memory");
            for (int i = 0; i < n; i++) {
                const char *l = pd_adapter_num_labels(src) > 0 ? pd_adapter_label(src, i) : (h->labels ? h->labels[i] : NULL);
                char b[PD_LABEL_CAP];
                if (!(j->labels[i] = strdup(pd_label_name(l, i, b, sizeof b)))) FAIL(PD_ERR_NOMEM, "out of memory");
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
    x = 0; TRY(pd_json_num(req, "weight_decay", "", 0, 0, 100, PD_ERR_MISMATCH, &x, err, errlen)); j->weight_decay = x;
    x = 0; TRY(pd_json_num(req, "warmup_ratio", "", 0, 0, 1, PD_ERR_MISMATCH, &x, err, errlen)); j->warmup_ratio = x;
    x = 1.0; TRY(pd_json_num(req, "max_grad_norm", "", 0, 0, 1e9, PD_ERR_MISMATCH, &x, err, errlen)); j->max_grad_norm = x;
    l = DEFAULT_SEED; TRY(pd_json_long(req, "seed", "", 0, 9007199254740991L, PD_ERR_MISMATCH, &l, err, errlen)); j->seed = (uint64_t)l;
    l = -1; TRY(pd_json_long(req, "eval_every", "", 0, 1L << 40, PD_ERR_MISMATCH, &l, err, errlen)); j->eval_every = l;
    l = 0; TRY(pd_json_long(req, "doc_stride", "", 0, 1 << 20, PD_ERR_MISMATCH, &l, err, errlen)); j->doc_stride = (int)l;
    long msl = 0;
    TRY(pd_json_long(req, "max_seq_len", "", 4, 1 << 20, PD_ERR_MISMATCH, &msl, err, errlen));
    j->publish = PD_PUBLISH_END;
    s = NULL;
    TRY(pd_json_str(req, "publish", "", &s, err, errlen));
    if (s) {
        int k = 0;
        while (k < 3 && strcmp(s, pd_publish_name((pd_publish)k))) k++;
        if (k == 3) FAIL(PD_ERR_MISMATCH, "publish: '%.40s' is not end, best or every_eval", s);
        j->publish = (pd_publish)k;
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
    if (!eval && frac <= 0 && j->publish != PD_PUBLISH_END)
        FAIL(PD_ERR_MISMATCH, "publish: '%s' needs evaluation data (eval or eval_fraction)", pd_publish_name(j->publish));
    if (j->fresh && task == PD_TASK_CLS) {
        if (labels_v) {
            j->num_labels = cJSON_GetArraySize(labels_v);
            if (!(j->labels = calloc((size_t)(j->num_labels ? j->num_labels : 1), sizeof *j->labels))) FAIL(PD_ERR_NOMEM, "out of memory");
            for (int i = 0; i < j->num_labels; i++)
                if (!(j->labels[i] = strdup(cJSON_GetArrayItem(labels_v, i)->valuestring))) FAIL(PD_ERR_NOMEM, "out of memory");
        } else {
            TRY(labels_from_data(train, &j->labels, &j->num_labels, err, errlen));
        }
        if (j->num_labels < 2)
            FAIL(PD_ERR_MISMATCH, "labels: a classifier needs at least 2 labels (the training data has %d)", j->num_labels);
    }
    /* -- its cost, before the adapter is built or an example tokenized -- */
    TRY(check_cost(j->fresh ? fresh_params(j->method, config, cf, task == PD_TASK_CLS ? j->num_labels : 0)
                            : (double)pd_adapter_bytes(src) / sizeof(float),
                   j->epochs, cJSON_GetArraySize(train), max_bytes, err, errlen));
    /* -- the adapter -- */
    if (j->fresh) {
        char e2[400];
        if ((st = pd_adapter_new_trainable(base, j->method, config, task, j->labels, j->num_labels, j->seed, &j->a, e2,
                                           sizeof e2)))
            FAIL(st == PD_ERR_INVALID ? PD_ERR_MISMATCH : st, "config: %s", e2);
    } else {
        char e2[400];
        if ((st = pd_adapter_clone_trainable(src, &j->a, e2, sizeof e2))) FAIL(st, "adapter: %s", e2);
    }
    {
        const pd_head *h = pd_adapter_head(j->a, base, task);
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
    TRY(encode_all(base, train, "train", &eo, &tx, NULL, &ntx, err, errlen));
    if (eval) {
        j->train.ex = tx;
        j->train.n = ntx;
        TRY(encode_all(base, eval, "eval", &eo, &j->eval.ex, task == PD_TASK_QA ? &j->eval.gold : NULL, &j->eval.n, err, errlen));
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
        shuffle(perm, ntx, mix2(j->seed, SPLIT_SALT));
        for (int i = 0; i < ntx; i++) items[i] = cJSON_DetachItemFromArray(train, 0);
        for (int k = 0; k < ntx; k++) {
            if (k < ne) { ev[k] = tx[perm[k]]; cJSON_AddItemToArray(er, items[perm[k]]); }
            else { tr[k - ne] = tx[perm[k]]; cJSON_AddItemToArray(trr, items[perm[k]]); }
        }
        free(items);
        free(tx);
        j->eval.ex = ev;
        j->eval.n = ne;
        j->train.ex = tr;
        j->train.n = ntx - ne;
        cJSON_Delete(train);
        train = trr;
        eval = er;
        if (task == PD_TASK_QA) {
            /* gold answers of the held-out part */
            pd_train_example *tmp = NULL;
            int nt2 = 0;
            TRY(encode_all(base, eval, "eval", &eo, &tmp, &j->eval.gold, &nt2, err, errlen));
            examples_free(tmp, nt2);
        }
    } else {
        j->train.ex = tx;
        j->train.n = ntx;
    }
    /* -- schedule -- */
    j->steps_per_epoch = (j->train.n + j->batch_size - 1) / j->batch_size;
    j->total_steps = j->steps_per_epoch * j->epochs;
    j->warmup_steps = pd_warmup_steps(j->warmup_ratio, j->total_steps);
    if (j->eval_every < 0) j->eval_every = j->steps_per_epoch; /* default: evaluate once per epoch */
    j->log_every = (j->total_steps + LOSS_POINTS - 1) / LOSS_POINTS;
    if (j->log_every < 1) j->log_every = 1;
    /* -- what the job store keeps: the request as given minus its data (spec.json), the data -- */
    if (!(spec_out = cJSON_Duplicate(req, 1))) FAIL(PD_ERR_NOMEM, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(spec_out, "train");
    cJSON_DeleteItemFromObjectCaseSensitive(spec_out, "eval");
    cJSON_DeleteItemFromObjectCaseSensitive(spec_out, "eval_fraction"); /* the split is saved as eval.jsonl */
    if (task == PD_TASK_CLS && j->fresh && !labels_v) {
        cJSON *lv = cJSON_CreateStringArray((const char *const *)j->labels, j->num_labels);
        if (!lv) FAIL(PD_ERR_NOMEM, "out of memory");
        cJSON_AddItemToObject(spec_out, "labels", lv);
    }
    if (!(j->spec_json = cJSON_Print(spec_out)) || !(j->train_jsonl = jsonl_print(train)) || (eval && !(j->eval_jsonl = jsonl_print(eval))))
        FAIL(PD_ERR_NOMEM, "out of memory");
    free(perm);
    cJSON_Delete(req);
    cJSON_Delete(spec_out);
    cJSON_Delete(train);
    cJSON_Delete(eval);
    *out = j;
    return PD_OK;
fail:
    free(perm);
    cJSON_Delete(req);
    cJSON_Delete(spec_out);
    cJSON_Delete(train);
    cJSON_Delete(eval);
    pd_train_spec_free(j);
    return st;
#undef FAIL
#undef TRY
}

