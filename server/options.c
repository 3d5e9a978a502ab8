/* options.c - option tables, parsing and help. See options.h. */
#include "options.h"

#include "gemm.h"
#include "pretrain.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#define SO(f) offsetof(pd_serve_opts, f)
const pd_opt_def pd_serve_opt_defs[] = {
    {"model", PD_OPT_STR, "", SO(model), 0, 0, "base model directory (Hugging Face checkpoint); default: the embedded models/default"},
    {"host", PD_OPT_STR, "127.0.0.1", SO(host), 0, 0, "address to listen on (IPv4, IPv6 or a host name)"},
    {"port", PD_OPT_INT, "8080", SO(port), 0, 65535, "TCP port; 0 picks a free one (the startup log line names it)"},
    {"data-dir", PD_OPT_STR, "./data", SO(data_dir), 0, 0, "where adapters are stored (shared by replicas)"},
    {"threads", PD_OPT_INT, "0", SO(threads), 0, 1024, "compute threads; 0 = every core"},
    {"http-threads", PD_OPT_INT, "4", SO(http_threads), 1, 64, "HTTP event-loop threads"},
    {"api-key-file", PD_OPT_STR, "", SO(api_key_file), 0, 0, "file whose first line is the API key; enables authentication"},
    {"auth-all", PD_OPT_BOOL, "false", SO(auth_all), 0, 1, "require the key on every route but /health, /ready, /openapi.json and the console (default: only on writes)"},
    {"max-body-mb", PD_OPT_INT, "64", SO(max_body_mb), 1, 4096, "largest request body in MiB (413 beyond)"},
    {"max-batch-tokens", PD_OPT_INT, "8192", SO(max_batch_tokens), 16, 1 << 24, "tokens per forward batch; also the most one input may use"},
    {"max-resident-mb", PD_OPT_INT, "1024", SO(max_resident_mb), 0, 1 << 20, "memory for loaded adapters in MiB; least recently used leave first; 0 = no limit"},
    {"max-queue", PD_OPT_INT, "1024", SO(max_queue), 1, 1 << 24, "inputs waiting or running; beyond it 503 with Retry-After"},
    {"batch-wait-ms", PD_OPT_INT, "2", SO(batch_wait_ms), 0, 10000, "longest wait of the first waiting input for others to share its batch (none when every open connection is already queued)"},
    {"train-threads", PD_OPT_INT, "1", SO(train_threads), 1, 1024, "training jobs run at once (each on the compute pool)"},
    {"max-train-mb", PD_OPT_INT, "2048", SO(max_train_mb), 1, 1 << 20, "memory a training job's adapter may take (parameters, gradients, optimizer), estimated before it starts; beyond it 422"},
    {"keep-jobs", PD_OPT_INT, "1000", SO(keep_jobs), 1, 1 << 24, "finished training jobs kept (GET /jobs, DATA_DIR/.jobs); older ones are forgotten"},
    {"keep-jobs-hours", PD_OPT_INT, "168", SO(keep_jobs_hours), 0, 1 << 20, "finished training jobs are forgotten this long after they end; 0 = no time limit"},
    {"max-connections", PD_OPT_INT, "1024", SO(max_connections), 1, 1 << 20, "concurrent client connections"},
    {"dtype", PD_OPT_STR, "fp32", SO(dtype), 0, 0, "the base's weights: fp32, bf16 or int8 (packed once at load; adapters and training stay fp32)"},
};
const int pd_serve_opt_count = (int)(sizeof pd_serve_opt_defs / sizeof pd_serve_opt_defs[0]);
#undef SO

#define PO(f) offsetof(pd_predict_opts, f)
const pd_opt_def pd_predict_opt_defs[] = {
    {"model", PD_OPT_STR, "", PO(model), 0, 0, "base model directory; default: the embedded models/default"},
    {"adapter", PD_OPT_STR, "", PO(adapter), 0, 0, "adapter directory (PEFT or AdapterHub files); default: none"},
    {"return-logits", PD_OPT_BOOL, "false", PO(return_logits), 0, 1, "add raw logits to every result"},
    {"task", PD_OPT_STR, "", PO(task), 0, 0, "classification | question_answering; default: the adapter's, else each input's shape"},
    {"threads", PD_OPT_INT, "0", PO(threads), 0, 1024, "compute threads; 0 = every core"},
    {"max-length", PD_OPT_INT, "0", PO(max_length), 0, 1 << 20, "tokens per sequence; 0 = the model's maximum"},
    {"top-k", PD_OPT_INT, "0", PO(top_k), 0, 100, "classification: scores listed (0 = all); QA: answers (0 = 1)"},
    {"max-answer-length", PD_OPT_INT, "0", PO(max_answer_length), 0, 1 << 20, "QA: longest answer in tokens (0 = 15)"},
    {"batch", PD_OPT_INT, "32", PO(batch), 1, 4096, "input lines per forward batch"},
    {"dtype", PD_OPT_STR, "fp32", PO(dtype), 0, 0, "the base's weights: fp32, bf16 or int8"},
};
const int pd_predict_opt_count = (int)(sizeof pd_predict_opt_defs / sizeof pd_predict_opt_defs[0]);
#undef PO

#define PT(f) offsetof(pd_pretrain_opts, f)
const pd_opt_def pd_pretrain_opt_defs[] = {
    {"corpus", PD_OPT_STR, "", PT(corpus), 0, 0, "training text: one sentence a line, documents separated by blank lines"},
    {"heldout", PD_OPT_STR, "", PT(heldout), 0, 0, "held-out text, same format: masked-LM loss and accuracy at intervals"},
    {"vocab", PD_OPT_STR, "", PT(vocab), 0, 0, "directory with the WordPiece tokenizer (tokenizer.json or vocab.txt)"},
    {"out", PD_OPT_STR, "", PT(out), 0, 0, "output directory: state, model/, CSVs, token caches"},
    {"layers", PD_OPT_INT, "4", PT(layers), 1, 48, "encoder layers"},
    {"hidden", PD_OPT_INT, "256", PT(hidden), 8, 4096, "hidden size"},
    {"heads", PD_OPT_INT, "4", PT(heads), 1, 64, "attention heads (must divide --hidden)"},
    {"ffn", PD_OPT_INT, "1024", PT(ffn), 8, 16384, "feed-forward size"},
    {"seq", PD_OPT_INT, "128", PT(seq), 8, 4096, "tokens per window, [CLS] and [SEP] included"},
    {"max-pos", PD_OPT_INT, "512", PT(max_pos), 8, 8192, "position embeddings (>= --seq; what the model serves later)"},
    {"batch", PD_OPT_INT, "32", PT(batch), 1, 4096, "windows per optimizer step"},
    {"lr", PD_OPT_DOUBLE, "1e-3", PT(lr), 0, 10, "peak learning rate (AdamW)"},
    {"warmup", PD_OPT_DOUBLE, "0.06", PT(warmup), 0, 100000000, "warmup: steps if >= 1, else a share of all steps; then linear decay to 0"},
    {"tokens", PD_OPT_DOUBLE, "0", PT(tokens), 0, 1e13, "tokens to train on (the schedule's length); 0: from --minutes. With --resume, another value stretches or shrinks the rest of the schedule"},
    {"minutes", PD_OPT_DOUBLE, "0", PT(minutes), 0, 1e7, "schedule length in minutes (steps estimated from the speed of the first steps) when --tokens is 0"},
    {"stop-minutes", PD_OPT_DOUBLE, "0", PT(stop_minutes), 0, 1e7, "stop this invocation after so many minutes with a checkpoint (resume later); 0: run to the end"},
    {"stop-steps", PD_OPT_INT, "0", PT(stop_steps), 0, 2147483647, "stop this invocation at this step with a checkpoint (resume later); 0: no such stop"},
    {"seed", PD_OPT_INT, "1", PT(seed), 0, 2147483647, "seed of the initial weights, the data order and the masks"},
    {"resume", PD_OPT_BOOL, "false", PT(resume), 0, 1, "continue from OUT/state.safetensors (same options) instead of starting"},
    {"eval-only", PD_OPT_BOOL, "false", PT(eval_only), 0, 1, "with --resume: print the held-out loss and accuracy of OUT/state.safetensors and stop"},
    {"mask", PD_OPT_DOUBLE, "0.15", PT(mask), 0, 1, "share of tokens to predict (80% [MASK], 10% random, 10% kept)"},
    {"wwm", PD_OPT_BOOL, "false", PT(wwm), 0, 1, "whole-word masking"},
    {"weight-decay", PD_OPT_DOUBLE, "0.01", PT(weight_decay), 0, 1, "AdamW weight decay (not on biases and LayerNorms)"},
    {"clip", PD_OPT_DOUBLE, "1.0", PT(clip), 0, 1000, "gradient norm clipping; 0: off"},
    {"beta1", PD_OPT_DOUBLE, "0.9", PT(beta1), 0, 1, "AdamW beta1"},
    {"beta2", PD_OPT_DOUBLE, "0.98", PT(beta2), 0, 1, "AdamW beta2"},
    {"adam-eps", PD_OPT_DOUBLE, "1e-6", PT(adam_eps), 0, 1, "AdamW epsilon"},
    {"threads", PD_OPT_INT, "0", PT(threads), 0, 1024, "compute threads; 0 = every core"},
    {"eval-minutes", PD_OPT_DOUBLE, "5", PT(eval_minutes), 0, 1e6, "held-out evaluation interval (training time); 0: only at start and end"},
    {"eval-windows", PD_OPT_INT, "256", PT(eval_windows), 1, 1 << 24, "held-out windows evaluated (the first ones, fixed masks)"},
    {"ckpt-minutes", PD_OPT_DOUBLE, "10", PT(ckpt_minutes), 0, 1e6, "checkpoint interval; 0: only at the end or on SIGINT/SIGTERM"},
    {"log-seconds", PD_OPT_DOUBLE, "10", PT(log_seconds), 0, 1e6, "progress line interval on stderr"},
    {"dtype", PD_OPT_STR, "F32", PT(dtype), 0, 0, "dtype of the exported OUT/model checkpoint: F32, F16 or BF16"},
    {"quick", PD_OPT_BOOL, "false", PT(quick), 0, 1, "smoke test in about a minute: 2 layers x 64 (FFN 256, 2 heads), windows of 64, batch 16, 300k tokens (overrides those options)"},
};
const int pd_pretrain_opt_count = (int)(sizeof pd_pretrain_opt_defs / sizeof pd_pretrain_opt_defs[0]);
#undef PT

pd_status pd_opts_dtype(const char *value, int *out, char *err, size_t errlen) {
    *out = pd_wtype_parse(value);
    if (*out < 0) return pd_err(err, errlen, PD_ERR_INVALID, "--dtype: \"%s\" is not fp32, bf16 or int8", value);
    return PD_OK;
}

/* ==== Values ==== */

static void env_name(const char *opt, char *buf, size_t cap) {
    size_t j = 0;
    const char *p = "PEFTD_";
    while (*p && j + 1 < cap) buf[j++] = *p++;
    for (; *opt && j + 1 < cap; opt++) buf[j++] = *opt == '-' ? '_' : (char)toupper((unsigned char)*opt);
    buf[j] = 0;
}

/* Stores text as the option's value; where names the source for messages. */
static pd_status set_value(const pd_opt_def *d, void *out, const char *text, const char *where, char *err, size_t errlen) {
    char *base = out;
    switch (d->type) {
    case PD_OPT_STR:
        *(const char **)(base + d->offset) = text;
        return PD_OK;
    case PD_OPT_INT: {
        char *e = NULL;
        errno = 0;
        long v = strtol(text, &e, 10);
        if (!*text || *e || errno || v < d->min || v > d->max)
            return pd_err(err, errlen, PD_ERR_INVALID, "%s: \"%s\" is not an integer in [%ld, %ld]", where, text, d->min, d->max);
        *(int *)(base + d->offset) = (int)v;
        return PD_OK;
    }
    case PD_OPT_DOUBLE: {
        char *e = NULL;
        errno = 0;
        double v = strtod(text, &e);
        if (!*text || *e || errno || !(v >= (double)d->min && v <= (double)d->max))
            return pd_err(err, errlen, PD_ERR_INVALID, "%s: \"%s\" is not a number in [%ld, %ld]", where, text, d->min, d->max);
        *(double *)(base + d->offset) = v;
        return PD_OK;
    }
    case PD_OPT_BOOL:
        if (!strcasecmp(text, "1") || !strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "on"))
            *(int *)(base + d->offset) = 1;
        else if (!strcasecmp(text, "0") || !strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcasecmp(text, "off") || !*text)
            *(int *)(base + d->offset) = 0;
        else
            return pd_err(err, errlen, PD_ERR_INVALID, "%s: \"%s\" is not a boolean (true/false, 1/0, yes/no, on/off)", where, text);
        return PD_OK;
    }
    PD_ASSERT(0);
    return PD_ERR_INVALID;
}

pd_status pd_opts_parse(const pd_opt_def *defs, int ndefs, void *out, int argc, char **argv, int use_env, int *help,
                        char *err, size_t errlen) {
    *help = 0;
    for (int i = 0; i < ndefs; i++) {
        pd_status st = set_value(&defs[i], out, defs[i].def, "default", err, errlen);
        PD_ASSERT(st == PD_OK);
    }
    if (use_env) {
        for (int i = 0; i < ndefs; i++) {
            char name[96];
            env_name(defs[i].name, name, sizeof name);
            const char *v = getenv(name);
            if (!v) continue;
            pd_status st = set_value(&defs[i], out, v, name, err, errlen);
            if (st) return st;
        }
    }
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { *help = 1; continue; }
        if (strncmp(arg, "--", 2) != 0) return pd_err(err, errlen, PD_ERR_INVALID, "unexpected argument \"%s\"", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const pd_opt_def *d = NULL;
        for (int i = 0; i < ndefs && !d; i++)
            if (strlen(defs[i].name) == nlen && !strncmp(defs[i].name, name, nlen)) d = &defs[i];
        if (!d) return pd_err(err, errlen, PD_ERR_INVALID, "unknown option \"%.*s\" (see --help)", (int)nlen + 2, arg);
        const char *val;
        if (eq) val = eq + 1;
        else if (d->type == PD_OPT_BOOL) val = "true";
        else if (a + 1 < argc) val = argv[++a];
        else return pd_err(err, errlen, PD_ERR_INVALID, "option --%s needs a value", d->name);
        char where[96];
        snprintf(where, sizeof where, "--%s", d->name);
        pd_status st = set_value(d, out, val, where, err, errlen);
        if (st) return st;
    }
    return PD_OK;
}

void pd_opts_help(FILE *f, const pd_opt_def *defs, int ndefs, int show_env) {
    for (int i = 0; i < ndefs; i++) {
        const pd_opt_def *d = &defs[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", d->name, d->type == PD_OPT_INT || d->type == PD_OPT_DOUBLE ? " N" : d->type == PD_OPT_STR ? " VALUE" : "");
        fprintf(f, "  %-26s %s\n", flag, d->help);
        char env[96];
        env_name(d->name, env, sizeof env);
        fprintf(f, "  %-26s default: %s", "", *d->def ? d->def : "(none)");
        if (show_env) fprintf(f, "; env %s", env);
        fputc('\n', f);
    }
}
