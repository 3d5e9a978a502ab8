/* test_allocfail.c - allocation failures in the loaders and the trainer (issue 17): every
 * allocation of one path fails in turn, and each run must end in a clean error (a status and
 * a message; no crash), leave the registry and the data dir as they were, and leak nothing
 * (LeakSanitizer at exit, in make test's ASan build).
 *
 * The hook: this program is linked with -Wl,--wrap for malloc, calloc, realloc, strdup,
 * posix_memalign and aligned_alloc (Makefile), so every call from peftd's own objects goes
 * through the __wrap_ functions below, and cJSON's through cJSON_InitHooks. Only the test's
 * thread counts (a thread-local switch): worker threads of a pool never fail. A sweep first
 * runs the path once counting its allocations N, then runs it N more times failing the k-th.
 * Paths: the model (generated, and the reference BERT/RoBERTa checkpoints: config, tokenizer
 * in its WordPiece tokenizer.json, vocab.txt and BPE forms, safetensors); one adapter of every format, from
 * memory and from a directory; an upload into the registry; a training request parsed, its job
 * started (engine, optimizer) and its first step. */
#include "adapter.h"
#include "engine.h"
#include "genmodel.h"
#include "model.h"
#include "registry.h"
#include "spec.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF "tests/reference"

/* ==== The hook ==== */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);

static _Thread_local int armed;   /* this thread counts (and may fail) */
static _Thread_local long count, fail_at;

static int fail_now(void) {
    if (!armed) return 0;
    if (++count != fail_at) return 0;
    errno = ENOMEM;
    return 1;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t sz) { return fail_now() ? NULL : __real_calloc(n, sz); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
int __wrap_posix_memalign(void **p, size_t al, size_t n) { return fail_now() ? ENOMEM : __real_posix_memalign(p, al, n); }
void *__wrap_aligned_alloc(size_t al, size_t n) { return fail_now() ? NULL : __real_aligned_alloc(al, n); }

static char err[512];
static const char *only; /* argv[1]: run only the sweeps whose name contains it */

/* Runs fn(arg) once counting allocations, then once per allocation failing it. fn returns its
 * status and frees what it made; check(arg, status), if given, returns a problem with the
 * state left behind (NULL when it is right). */
static void sweep(const char *name, pd_status (*fn)(void *arg), void *arg, const char *(*check)(void *arg, pd_status st)) {
    if (only && !strstr(name, only)) return;
    count = fail_at = 0;
    armed = 1;
    pd_status st = fn(arg);
    armed = 0;
    long n = count;
    if (getenv("ALLOCFAIL_COUNT")) { printf("%s: %ld allocations\n", name, n); return; }
    CHECKF(st == PD_OK, "%s: %s", name, err);
    if (st) return;
    int nomem = 0, other = 0, absorbed = 0;
    double t0 = pd_now();
    for (long k = 1; k <= n; k++) {
        count = 0;
        fail_at = k;
        if (getenv("ALLOCFAIL_TRACE")) fprintf(stderr, "%s: failing allocation %ld\n", name, k);
        err[0] = 0;
        armed = 1;
        st = fn(arg);
        armed = 0;
        if (st == PD_OK) absorbed++;
        else if (st == PD_ERR_NOMEM) nomem++;
        else other++;
        CHECKF(st == PD_OK || err[0], "%s: allocation %ld of %ld failed: status %s with no message", name, k, n, pd_status_name(st));
        CHECKF(st == PD_OK || st == PD_ERR_NOMEM || st == PD_ERR_IO, "%s: allocation %ld of %ld failed: %s (%s), not out of memory", name, k,
               n, pd_status_name(st), err);
        const char *p = check ? check(arg, st) : NULL;
        CHECKF(!p, "%s: after allocation %ld of %ld failed: %s", name, k, n, p);
    }
    printf("%-44s %5ld allocations failed in turn: %d out of memory, %d other errors, %d absorbed (%.1f s)\n", name, n, nomem, other,
           absorbed, pd_now() - t0);
}

/* ==== Paths ==== */

static pd_status load_model(void *arg) {
    pd_model *m = NULL;
    pd_status st = pd_model_load(arg, 0, &m, err, sizeof err);
    pd_model_free(m);
    return st;
}

typedef struct {
    const pd_model *base;
    pd_adapter_files f;
    const char *dir;
    pd_registry *reg;
    const char *data_dir;
    char before[8192]; /* the data dir's files and sizes before the run */
} adapter_arg;

static char tree_buf[8192];
static size_t tree_len;
static size_t tree_skip;

static int tree_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)f;
    int n = snprintf(tree_buf + tree_len, sizeof tree_buf - tree_len, "%s %lld\n", p + tree_skip,
                     flag == FTW_F ? (long long)sb->st_size : -1LL);
    if (n > 0 && (size_t)n < sizeof tree_buf - tree_len) tree_len += (size_t)n;
    return 0;
}

/* Every path under dir with its size (directories -1), one a line, in walk order. */
static void tree(const char *dir, char *out, size_t cap) {
    tree_len = 0;
    tree_buf[0] = 0;
    tree_skip = strlen(dir);
    nftw(dir, tree_entry, 16, FTW_PHYS);
    snprintf(out, cap, "%s", tree_buf);
}

static pd_status load_adapter(void *arg) {
    adapter_arg *a = arg;
    pd_adapter *ad = NULL;
    pd_status st = pd_adapter_load(a->base, &a->f, &ad, err, sizeof err);
    pd_adapter_release(ad);
    return st;
}

static pd_status load_adapter_dir(void *arg) {
    adapter_arg *a = arg;
    pd_adapter *ad = NULL;
    pd_status st = pd_adapter_load_dir(a->base, a->dir, &ad, err, sizeof err);
    pd_adapter_release(ad);
    return st;
}

/* An upload, then (not counted) its delete, so each run starts from a deleted "up". */
static pd_status upload(void *arg) {
    adapter_arg *a = arg;
    int was = armed;
    armed = 0;
    tree(a->data_dir, a->before, sizeof a->before);
    armed = was;
    int created = 0;
    pd_adapter_info info = {0};
    pd_status st = pd_registry_publish(a->reg, "up", &a->f, &created, &info, err, sizeof err);
    pd_adapter_info_clear(&info);
    armed = 0;
    if (!st) {
        char e2[256];
        CHECKF(pd_registry_delete(a->reg, "up", e2, sizeof e2) == PD_OK, "%s", e2);
    }
    armed = was;
    return st;
}

/* After a failed upload: the registry has no "up" and the data dir is as it was, file for file. */
static const char *store_unchanged(void *arg, pd_status st) {
    adapter_arg *a = arg;
    if (!st) return NULL;
    pd_adapter_info info = {0};
    char e2[256];
    if (pd_registry_info(a->reg, "up", &info, e2, sizeof e2) != PD_ERR_NOT_FOUND) {
        pd_adapter_info_clear(&info);
        static char why2[700];
        snprintf(why2, sizeof why2, "the registry lists the failed upload (%s: %s)", pd_status_name(st), err);
        return why2;
    }
    static char now[8192];
    tree(a->data_dir, now, sizeof now);
    if (strcmp(now, a->before)) {
        static char why[600];
        snprintf(why, sizeof why, "the data dir changed: before\n%.250s\nafter\n%.250s", a->before, now);
        return why;
    }
    return NULL;
}

typedef struct {
    const pd_model *base;
    pd_registry *reg;
    const char *json;
} train_arg;

/* POST /train's parse, the job's start (engine, optimizer) and its first step. */
static pd_status train_first_step(void *arg) {
    train_arg *t = arg;
    pd_train_spec *s = NULL;
    pd_train_engine *e = NULL;
    pd_adamw *o = NULL;
    pd_status st = pd_train_spec_parse(t->base, t->reg, t->json, strlen(t->json), NULL, 0, NULL, 0, NULL, 0, &s, err, sizeof err);
    if (!st) st = pd_train_engine_new(t->base, s->a, s->task, NULL, 0, &e, err, sizeof err);
    if (!st) {
        int np = 0;
        const pd_param *params = pd_adapter_train_params(s->a, &np);
        if (!(o = pd_adamw_new(params, np, 0.9, 0.999, 1e-8, s->weight_decay))) st = pd_err(err, sizeof err, PD_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        int idx[4] = {0, 1, 2, 3};
        double loss = 0;
        int nb = s->train.n < 4 ? s->train.n : 4;
        st = pd_train_engine_step(e, o, s->train.ex, idx, nb, 1e-3, 1.0, 7, &loss, NULL, err, sizeof err);
    }
    pd_adamw_free(o);
    pd_train_engine_free(e);
    pd_train_spec_free(s);
    return st;
}

/* ==== Files ==== */

/* The whole file, NUL-terminated, or NULL (pd_read_file). */
static char *slurp(const char *path, size_t *len) {
    char *b = NULL;
    return pd_read_file(path, (size_t)1 << 30, &b, len, NULL, 0) == PD_OK ? b : NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    return remove(p);
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

/* Reads an adapter directory's files (PEFT or AdapterHub names) into a->f. */
static int read_adapter(const char *dir, adapter_arg *a, char **bufs) {
    static const char *names[] = {"adapter_config.json", "adapter_model.safetensors", "adapter.safetensors", "head_config.json",
                                  "model_head.safetensors"};
    size_t len[5] = {0};
    char p[600];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        bufs[i] = slurp(p, &len[i]);
    }
    memset(&a->f, 0, sizeof a->f);
    a->f.config = bufs[0], a->f.config_len = len[0];
    a->f.weights = bufs[1] ? bufs[1] : bufs[2], a->f.weights_len = bufs[1] ? len[1] : len[2];
    a->f.head_config = bufs[3], a->f.head_config_len = len[3];
    a->f.head_weights = bufs[4], a->f.head_weights_len = len[4];
    return bufs[0] && a->f.weights;
}

int main(int argc, char **argv) {
    only = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const cJSON_Hooks hooks = {__wrap_malloc, free};
    cJSON_InitHooks((cJSON_Hooks *)&hooks);
    char tmp[] = "/tmp/pd_allocfail_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char gen[600], data[600];
    snprintf(gen, sizeof gen, "%s/gen", tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    CHECKF(pd_genmodel_write(gen, err, sizeof err) == PD_OK, "%s", err);

    /* models: config, tokenizer (WordPiece tokenizer.json, vocab.txt, BPE), safetensors */
    sweep("model: generated (tokenizer.json)", load_model, gen, NULL);
    const char *models[] = {REF "/models/bert_cls_vocabtxt", REF "/models/roberta_cls_f32"};
    for (int i = 0; i < 2; i++) {
        char name[200];
        snprintf(name, sizeof name, "model: %s", models[i] + strlen(REF "/models/"));
        if (exists(models[i])) sweep(name, load_model, (void *)models[i], NULL);
        else TEST_SKIP("%s missing", models[i]);
    }

    /* adapters of every format on bert_cls_f32, from memory and from their directory; uploads */
    pd_model *base = NULL;
    if (pd_model_load(REF "/models/bert_cls_f32", 0, &base, err, sizeof err)) {
        TEST_SKIP("bert_cls_f32: %s; adapter and training sweeps skipped", err);
    } else {
        pd_registry *reg = NULL;
        mkdir(data, 0755);
        CHECKF(pd_registry_open(base, data, 0, &reg, err, sizeof err) == PD_OK, "%s", err);
        const char *adapters[] = {"lora_qv", "ia3", "prefix", "prompt", "seq_bn", "par_bn"};
        for (int i = 0; i < 6 && reg; i++) {
            char dir[300], name[200];
            snprintf(dir, sizeof dir, REF "/adapters/bert_cls_f32__%s", adapters[i]);
            char *bufs[5];
            adapter_arg a = {.base = base, .dir = dir, .reg = reg, .data_dir = data};
            if (!read_adapter(dir, &a, bufs)) {
                TEST_SKIP("%s missing", dir);
            } else {
                snprintf(name, sizeof name, "adapter %s: load", adapters[i]);
                sweep(name, load_adapter, &a, NULL);
                snprintf(name, sizeof name, "adapter %s: load from its directory", adapters[i]);
                sweep(name, load_adapter_dir, &a, NULL);
                snprintf(name, sizeof name, "adapter %s: upload", adapters[i]);
                sweep(name, upload, &a, store_unchanged);
            }
            for (int k = 0; k < 5; k++) free(bufs[k]);
        }
        /* training: LoRA and a bottleneck adapter with its own head, 8 examples */
        const char *methods[] = {"\"method\": \"lora\", \"config\": {\"r\": 4, \"target_modules\": [\"query\", \"value\"]}",
                                 "\"method\": \"bottleneck\", \"config\": {\"reduction_factor\": 16}",
                                 "\"method\": \"prompt_tuning\", \"config\": {\"num_virtual_tokens\": 4}"};
        for (int i = 0; i < 3 && reg; i++) {
            char json[2048], name[200];
            snprintf(json, sizeof json,
                     "{\"adapter\": \"t%d\", %s, \"task\": \"classification\", \"labels\": [\"neg\", \"pos\"], \"epochs\": 1, "
                     "\"batch_size\": 4, \"train\": [{\"text\": \"a good film\", \"label\": \"pos\"}, {\"text\": \"bad\", \"label\": \"neg\"}, "
                     "{\"text\": \"great fun\", \"label\": \"pos\"}, {\"text\": \"dull and slow\", \"label\": \"neg\"}, "
                     "{\"text\": \"fine\", \"label\": \"pos\"}, {\"text\": \"awful\", \"label\": \"neg\"}, "
                     "{\"text\": \"loved it\", \"label\": \"pos\"}, {\"text\": \"no\", \"label\": \"neg\"}]}",
                     i, methods[i]);
            train_arg t = {base, reg, json};
            static const char *mname[] = {"lora", "bottleneck", "prompt_tuning"};
            snprintf(name, sizeof name, "training %s: parse, start, first step", mname[i]);
            sweep(name, train_first_step, &t, NULL);
        }
        pd_registry_free(reg);
    }
    pd_model_free(base);
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return TEST_SUMMARY("test_allocfail");
}
