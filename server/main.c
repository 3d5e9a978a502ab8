/* main.c - the peftd command line: serve, predict, gen-model.
 *
 *   peftd serve [options]     the HTTP server (docs/API.md); options also from PEFTD_* variables
 *   peftd predict [options]   JSON inputs on stdin, one per line -> one JSON result per line
 *   peftd gen-model --out DIR writes the embedded default model
 *   peftd pretrain [options]  masked-LM pretraining of a new encoder (train/pretrain.c)
 *
 * Only main exits; every failure below is reported and turned into an exit status. */
#include "genmodel.h"
#include "jsonio.h"
#include "log.h"
#include "options.h"
#include "pretrain.h"
#include "server.h"
#include "version.h"

#include <signal.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "peftd %s - serves parameter-efficient adapters on one frozen BERT-family encoder\n\n"
            "usage:\n"
            "  peftd serve [options]        run the HTTP server (peftd serve --help)\n"
            "  peftd predict [options]      JSON inputs on stdin, one per line; results on stdout (peftd predict --help)\n"
            "  peftd gen-model --out DIR    write the embedded default model into DIR\n"
            "  peftd pretrain [options]     pretrain a new encoder with masked-LM (peftd pretrain --help)\n"
            "  peftd --version\n",
            PD_VERSION);
}

/* A command's options into o from its table (and the environment when use_env). Returns -1 to
 * go on, else the exit code: 2 for a bad option (said on stderr), 0 once --help printed usage
 * and the table. */
static int parse_command(const char *cmd, const char *usage, const pd_opt_def *defs, int ndefs, void *o, int argc, char **argv,
                         int use_env) {
    int help = 0;
    char err[1024];
    if (pd_opts_parse(defs, ndefs, o, argc, argv, use_env, &help, err, sizeof err)) {
        fprintf(stderr, "peftd %s: %s\n", cmd, err);
        return 2;
    }
    if (!help) return -1;
    fputs(usage, stdout);
    pd_opts_help(stdout, defs, ndefs, use_env);
    return 0;
}

/* ==== serve ==== */

static int cmd_serve(int argc, char **argv) {
    pd_serve_opts o;
    char err[1024];
    int rc = parse_command("serve",
                           "usage: peftd serve [options]\n\nEvery option can also be set with the environment variable shown; "
                           "flags win over the environment.\n\n",
                           pd_serve_opt_defs, pd_serve_opt_count, &o, argc, argv, 1);
    if (rc >= 0) return rc;
    /* Signals are taken by sigwait in this thread only: block them before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    pd_server *s = NULL;
    if (pd_server_start(&o, &s, err, sizeof err)) {
        pd_log("error", err, "");
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    pd_log("info", "shutting down", sig == SIGINT ? ",\"signal\":\"SIGINT\"" : ",\"signal\":\"SIGTERM\"");
    pd_server_stop(s);
    pd_log("info", "stopped", "");
    return 0;
}

/* ==== predict ==== */

typedef struct line_res {
    pd_item item;
    pd_status st;
    char err[512];
} line_res;

/* Parses one input line and encodes it for the model; on failure st/err say why. */
static void encode_line(const pd_model *m, const pd_adapter *a, int forced, const pd_opts *po, char *line, size_t len,
                        line_res *lr) {
    cJSON *v = NULL;
    memset(&lr->item, 0, sizeof lr->item);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if ((lr->st = pd_json_parse(line, len, &v, lr->err, sizeof lr->err))) return;
    pd_input in;
    pd_task shape = PD_TASK_NONE;
    if (!(lr->st = pd_json_input(v, "input", &in, &shape, lr->err, sizeof lr->err))) {
        pd_task task = pd_predict_task(forced, a ? pd_adapter_task(a) : PD_TASK_NONE, shape);
        lr->st = pd_item_prepare(m, a ? pd_adapter_delta(a) : NULL, task, &in, shape, po, &lr->item, lr->err, sizeof lr->err);
    }
    cJSON_Delete(v);
}

/* The lines of one batch: res[group[k]] is the line of its k-th item. */
typedef struct line_batch {
    line_res *res;
    const int *group;
} line_batch;

/* pd_predict_groups' report: the failed items' lines get the error. */
static void line_failed(int first, int count, pd_status st, const char *err, void *arg) {
    const line_batch *lb = arg;
    for (int k = first; k < first + count; k++) {
        line_res *lr = &lb->res[lb->group[k]];
        lr->st = st;
        snprintf(lr->err, sizeof lr->err, "%s", err);
    }
}

static void print_json(const cJSON *v) {
    char *t = v ? pd_json_print(v) : NULL;
    if (t) puts(t);
    else puts("{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}");
    free(t);
}

static int cmd_predict(int argc, char **argv) {
    pd_predict_opts o;
    char err[1024];
    int rc = parse_command("predict",
                           "usage: peftd predict [options] < inputs.jsonl\n\n"
                           "Each stdin line is a JSON input: \"text\", {\"text\": ..., \"text_pair\": ...} or {\"question\": ..., \"context\": ...};\n"
                           "each stdout line is its result, or {\"error\": {\"code\", \"message\"}} for that line.\n\n",
                           pd_predict_opt_defs, pd_predict_opt_count, &o, argc, argv, 0);
    if (rc >= 0) return rc;
    int forced = -1;
    if (*o.task && (forced = pd_task_parse(o.task)) <= PD_TASK_NONE) {
        fprintf(stderr, "peftd predict: --task must be classification or question_answering\n");
        return 2;
    }
    char dir[4096];
    if (*o.model) snprintf(dir, sizeof dir, "%s", o.model);
    else if (pd_server_default_model(dir, sizeof dir, err, sizeof err)) {
        fprintf(stderr, "peftd predict: %s\n", err);
        return 1;
    }
    pd_blas_init();
    pd_model *m = NULL;
    pd_adapter *a = NULL;
    pd_pool *pool = NULL;
    pd_ctx *ctx = NULL;
    line_res *res = NULL;
    rc = 1;
    int dtype;
    if (pd_opts_dtype(o.dtype, &dtype, err, sizeof err)) {
        fprintf(stderr, "peftd predict: %s\n", err);
        rc = 2;
        goto out;
    }
    if (pd_model_load_as(dir, 0, (pd_wtype)dtype, &m, err, sizeof err)) {
        fprintf(stderr, "peftd predict: %s\n", err);
        goto out;
    }
    if (*o.adapter && pd_adapter_load_dir(m, o.adapter, &a, err, sizeof err)) {
        fprintf(stderr, "peftd predict: %s: %s\n", o.adapter, err);
        goto out;
    }
    pool = pd_pool_new(o.threads);
    ctx = pool ? pd_ctx_new(m, pool) : NULL;
    res = calloc((size_t)o.batch, sizeof *res);
    pd_item **ok = calloc((size_t)o.batch, sizeof *ok);
    int *group = calloc((size_t)o.batch, sizeof *group);
    if (!ctx || !res || !ok || !group) {
        free(ok);
        free(group);
        fprintf(stderr, "peftd predict: out of memory\n");
        goto out;
    }
    pd_opts po = {.max_length = o.max_length, .max_answer_length = o.max_answer_length, .top_k = o.top_k};
    char *line = NULL;
    size_t cap = 0;
    int eof = 0;
    while (!eof) {
        /* Read up to --batch lines and run the valid ones as one forward batch. */
        int n = 0;
        while (n < o.batch) {
            ssize_t len = getline(&line, &cap, stdin);
            if (len < 0) { eof = 1; break; }
            encode_line(m, a, forced, &po, line, (size_t)len, &res[n]);
            n++;
        }
        int nok = 0;
        for (int i = 0; i < n; i++)
            if (!res[i].st) {
                group[nok] = i; /* each line is its own group: a line that fails the batch fails alone */
                ok[nok++] = &res[i].item;
            }
        line_batch lb = {res, group};
        if (nok) pd_predict_groups(ctx, ok, nok, group, &po, line_failed, &lb);
        for (int i = 0; i < n; i++) {
            cJSON *v = res[i].st ? pd_json_error(pd_status_name(res[i].st), res[i].err)
                                 : pd_json_result(&res[i].item, o.return_logits, o.top_k);
            print_json(v);
            cJSON_Delete(v);
            pd_item_free(&res[i].item);
        }
        fflush(stdout);
    }
    free(line);
    free(ok);
    free(group);
    rc = 0;
out:
    free(res);
    pd_ctx_free(ctx);
    pd_pool_free(pool);
    pd_adapter_release(a);
    pd_model_free(m);
    return rc;
}

/* ==== pretrain ==== */

static int cmd_pretrain(int argc, char **argv) {
    pd_pretrain_opts o;
    int rc = parse_command("pretrain",
                           "usage: peftd pretrain --corpus FILE --heldout FILE --vocab DIR --out DIR [options]\n\n"
                           "Pretrains a BERT encoder with masked-language modelling (see docs/PRETRAINING.md). Progress goes to\n"
                           "stderr; OUT gets state.safetensors (weights, AdamW state, data position: --resume continues it),\n"
                           "model/ (a Hugging Face BertForMaskedLM checkpoint peftd serves), heldout.csv and train.csv.\n"
                           "SIGINT/SIGTERM stop at the next step with a checkpoint.\n\noptions:\n",
                           pd_pretrain_opt_defs, pd_pretrain_opt_count, &o, argc, argv, 0);
    return rc >= 0 ? rc : pd_pretrain_run(&o);
}

/* ==== gen-model ==== */

static int cmd_gen_model(int argc, char **argv) {
    const char *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strncmp(argv[i], "--out=", 6)) out = argv[i] + 6;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: peftd gen-model --out DIR\n\nWrites the embedded default model (a small random BERT with "
                   "classification and QA heads) into DIR.\n");
            return 0;
        } else {
            fprintf(stderr, "peftd gen-model: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "peftd gen-model: --out DIR is required\n");
        return 2;
    }
    char err[1024];
    if (pd_genmodel_write(out, err, sizeof err)) {
        fprintf(stderr, "peftd gen-model: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 2, argv + 2);
    if (!strcmp(cmd, "gen-model")) return cmd_gen_model(argc - 2, argv + 2);
    if (!strcmp(cmd, "pretrain")) return cmd_pretrain(argc - 2, argv + 2);
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("peftd %s\n", PD_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "peftd: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
