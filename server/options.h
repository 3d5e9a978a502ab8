/* options.h - command-line options and their PEFTD_* environment variables, from one table.
 *
 * A subcommand describes its options as a table of pd_opt_def (name, type, default, help and
 * where the value goes in the caller's struct). pd_opts_parse fills the struct from, in order
 * of increasing priority: the defaults, the environment (PEFTD_<NAME>, upper case, '-' -> '_'),
 * and the command line (--name VALUE, --name=VALUE; a bool flag alone means true).
 * pd_opts_help prints the same table, so `--help` can never disagree with the parser.
 *
 * String values point into argv, the environment or the table's defaults: they live as long
 * as the process. Thread-safety: call from main before starting threads (reads getenv). */
#ifndef PD_OPTIONS_H
#define PD_OPTIONS_H

#include "common.h"

#include <stdio.h>

typedef enum { PD_OPT_STR = 1, PD_OPT_INT, PD_OPT_BOOL, PD_OPT_DOUBLE } pd_opt_type;

typedef struct pd_opt_def {
    const char *name;   /* without the leading "--" */
    pd_opt_type type;
    const char *def;    /* default as text ("" = unset string) */
    size_t offset;      /* of the field in the target struct: const char * / int / int / double */
    long min, max;      /* PD_OPT_INT and PD_OPT_DOUBLE range */
    const char *help;
} pd_opt_def;

/* Options of `peftd serve`. */
typedef struct pd_serve_opts {
    const char *model;        /* "" = the embedded default model */
    const char *host;
    int port;
    const char *data_dir;
    int threads;              /* compute threads; 0 = every core */
    int http_threads;
    const char *api_key_file; /* "" = no authentication */
    int auth_all;
    int max_body_mb;
    int max_batch_tokens;
    int max_resident_mb;      /* 0 = no limit */
    int max_queue;
    int batch_wait_ms;
    int train_threads;        /* training jobs run at once */
    int max_train_mb;         /* a training job's trainable state, estimated before it is built */
    int keep_jobs;            /* finished training jobs kept */
    int keep_jobs_hours;      /* 0 = no time limit */
    int max_connections;
    const char *dtype;        /* of the base's linear weights: "fp32", "bf16" or "int8" */
} pd_serve_opts;

extern const pd_opt_def pd_serve_opt_defs[];
extern const int pd_serve_opt_count;

/* Options of `peftd predict`. */
typedef struct pd_predict_opts {
    const char *model;
    const char *adapter;
    int return_logits;
    const char *task;         /* "" = from the adapter or each input */
    int threads;
    int max_length;
    int top_k;
    int max_answer_length;
    int batch;
    const char *dtype;
} pd_predict_opts;

extern const pd_opt_def pd_predict_opt_defs[];
extern const int pd_predict_opt_count;

/* Options of `peftd pretrain`: they fill a pd_pretrain_opts (train/pretrain.h). */
extern const pd_opt_def pd_pretrain_opt_defs[];
extern const int pd_pretrain_opt_count;

/* The base dtype an option gives (pd_wtype_parse of "fp32", "bf16", "int8"), or PD_ERR_INVALID
 * with a message naming the option. */
pd_status pd_opts_dtype(const char *value, int *out, char *err, size_t errlen);

/* Fills out from defaults, then (if use_env) PEFTD_* variables, then argv[0..argc) (the
 * subcommand's arguments, without the subcommand itself). Sets *help when --help/-h is given.
 * Returns PD_OK or PD_ERR_INVALID with a message naming the option or variable. */
pd_status pd_opts_parse(const pd_opt_def *defs, int ndefs, void *out, int argc, char **argv, int use_env, int *help,
                        char *err, size_t errlen);

/* Prints one line per option: --name VALUE, default, environment variable, help. */
void pd_opts_help(FILE *f, const pd_opt_def *defs, int ndefs, int show_env);

#endif
