/* test_model.c - the engine against the PyTorch goldens in tests/reference/ (made by
 * tests/reference/gen_engine.py), batch invariance, and refusals of broken checkpoints. */
#include "model.h"
#include "pipeline.h"
#include "safetensors.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF "tests/reference"

static char err[1024];

static int ids_equal(const cJSON *arr, const int32_t *ids, int n) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) if ((int)v->valuedouble != ids[i++]) return 0;
    return 1;
}

static double max_diff(const cJSON *arr, const float *x, int n) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return 1e9;
    double m = 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        double d = fabs(v->valuedouble - x[i++]);
        if (d > m) m = d;
    }
    return m;
}

static int get_int(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

typedef struct {
    cJSON *line;
    pd_input in;
    pd_opts o;
    pd_task task;
} gcase;

static void case_setup(gcase *g, cJSON *line) {
    memset(g, 0, sizeof *g);
    g->line = line;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(line, "input");
    if (cJSON_IsString(in)) {
        g->in.text = in->valuestring;
        g->task = PD_TASK_CLS;
    } else {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "text");
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(in, "text_pair");
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(in, "question");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(in, "context");
        if (cJSON_IsString(q)) {
            g->task = PD_TASK_QA;
            g->in.question = q->valuestring;
            g->in.context = cJSON_IsString(c) ? c->valuestring : NULL;
        } else {
            g->task = PD_TASK_CLS;
            g->in.text = cJSON_IsString(t) ? t->valuestring : NULL;
            g->in.text_pair = cJSON_IsString(tp) ? tp->valuestring : NULL;
        }
    }
    g->o.max_length = get_int(line, "max_length", 0);
    g->o.doc_stride = get_int(line, "stride", 0);
    g->o.max_answer_length = get_int(line, "max_answer_length", 0);
}

/* Compares an item's results with its golden line; tol on logits. */
static void check_case(const char *name, int ln, const gcase *g, const pd_item *it, double tol) {
    const cJSON *gids = cJSON_GetObjectItemCaseSensitive(g->line, "ids");
    const cJSON *gtypes = cJSON_GetObjectItemCaseSensitive(g->line, "type_ids");
    CHECKF(cJSON_GetArraySize(gids) == it->n_win, "%s:%d windows %d vs golden %d", name, ln, it->n_win, cJSON_GetArraySize(gids));
    for (int w = 0; w < it->n_win && w < cJSON_GetArraySize(gids); w++) {
        CHECKF(ids_equal(cJSON_GetArrayItem(gids, w), it->win[w].ids, it->win[w].len), "%s:%d window %d ids differ", name, ln, w);
        if (gtypes)
            CHECKF(ids_equal(cJSON_GetArrayItem(gtypes, w), it->win[w].type_ids, it->win[w].len), "%s:%d window %d type ids differ", name, ln, w);
    }
    if (g->task == PD_TASK_CLS) {
        double d = max_diff(cJSON_GetObjectItemCaseSensitive(g->line, "logits"), it->logits, it->n_logits);
        CHECKF(d <= tol, "%s:%d logits differ by %g", name, ln, d);
    } else {
        const cJSON *sl = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g->line, "start_logits"), 0);
        const cJSON *el = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g->line, "end_logits"), 0);
        double d1 = max_diff(sl, it->start_logits, it->win[0].len), d2 = max_diff(el, it->end_logits, it->win[0].len);
        CHECKF(d1 <= tol && d2 <= tol, "%s:%d QA logits differ by %g / %g", name, ln, d1, d2);
        const cJSON *ga = cJSON_GetObjectItemCaseSensitive(g->line, "answer");
        CHECKF(it->n_answers >= 1, "%s:%d no answer", name, ln);
        if (it->n_answers >= 1 && ga) {
            const cJSON *at = cJSON_GetObjectItemCaseSensitive(ga, "answer");
            CHECKF(cJSON_IsString(at) && !strcmp(at->valuestring, it->answers[0].text), "%s:%d answer '%s' vs golden '%s'", name, ln,
                   it->answers[0].text, cJSON_IsString(at) ? at->valuestring : "?");
            CHECKF(get_int(ga, "start", -1) == it->answers[0].start && get_int(ga, "end", -1) == it->answers[0].end,
                   "%s:%d answer span [%d,%d) vs golden [%d,%d)", name, ln, it->answers[0].start, it->answers[0].end,
                   get_int(ga, "start", -1), get_int(ga, "end", -1));
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(ga, "score");
            CHECKF(cJSON_IsNumber(sc) && fabs(sc->valuedouble - it->answers[0].score) <= 1e-4, "%s:%d score %g vs golden %g", name,
                   ln, it->answers[0].score, cJSON_IsNumber(sc) ? sc->valuedouble : -1);
        }
    }
}

static void run_golden(const char *name, pd_pool *pool) {
    char dir[512], gpath[512];
    snprintf(dir, sizeof dir, REF "/models/%s", name);
    snprintf(gpath, sizeof gpath, REF "/golden/%s.jsonl", name);
    pd_model *m = NULL;
    pd_status st = pd_model_load(dir, 0, &m, err, sizeof err);
    CHECKF(st == PD_OK, "%s: load failed: %s", name, err);
    if (st) return;
    FILE *f = fopen(gpath, "r");
    CHECKF(f != NULL, "%s: no golden file", name);
    if (!f) { pd_model_free(m); return; }
    enum { MAXC = 64 };
    gcase cases[MAXC];
    pd_item items[MAXC];
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && n < MAXC) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        case_setup(&cases[n], j);
        n++;
    }
    free(line);
    fclose(f);
    pd_ctx *ctx = pd_ctx_new(m, pool);
    /* one by one */
    for (int i = 0; i < n; i++) {
        pd_item *it = &items[i];
        st = pd_item_encode(m, cases[i].task, &cases[i].in, &cases[i].o, 0, it, err, sizeof err);
        CHECKF(st == PD_OK, "%s:%d encode: %s", name, i + 1, err);
        if (st) { memset(it, 0, sizeof *it); continue; }
        it->head = pd_model_head(m, cases[i].task);
        pd_item *one = it;
        st = pd_predict(ctx, &one, 1, &cases[i].o, err, sizeof err);
        CHECKF(st == PD_OK, "%s:%d predict: %s", name, i + 1, err);
        if (!st) check_case(name, i + 1, &cases[i], it, 1e-4);
    }
    /* the same cases as one batch (QA and CLS options are per case, so batch the ones that
     * share options: here all cases of a model share the task; group by max_answer_length) */
    pd_item batch[MAXC];
    pd_item *ptrs[MAXC];
    int nb = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i].n_win) continue;
        if (pd_item_encode(m, cases[i].task, &cases[i].in, &cases[i].o, 0, &batch[nb], err, sizeof err)) continue;
        batch[nb].head = items[i].head;
        ptrs[nb] = &batch[nb];
        nb++;
    }
    if (nb > 1) {
        /* pd_predict's options (max_answer_length) are per batch: compare the cases that share
         * the first case's; encoding options were applied per case above. */
        st = pd_predict(ctx, ptrs, nb, &cases[0].o, err, sizeof err);
        CHECKF(st == PD_OK, "%s batch: %s", name, err);
        int k = 0;
        for (int i = 0; i < n && !st; i++) {
            if (!items[i].n_win) continue;
            if (cases[i].o.max_answer_length == cases[0].o.max_answer_length) check_case(name, i + 1, &cases[i], &batch[k], 1e-4);
            k++;
        }
    }
    for (int i = 0; i < nb; i++) pd_item_free(&batch[i]);
    for (int i = 0; i < n; i++) { pd_item_free(&items[i]); cJSON_Delete(cases[i].line); }
    pd_ctx_free(ctx);
    pd_model_free(m);
}

/* ==== Broken checkpoints ==== */

static void copy_file(const char *from, const char *to) {
    char *buf = NULL;
    size_t len = 0;
    PD_ASSERT(pd_read_file(from, 1 << 30, &buf, &len, err, sizeof err) == PD_OK);
    FILE *f = fopen(to, "wb");
    PD_ASSERT(f);
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    PD_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static char tmpdir[256];

/* A copy of a reference model in tmpdir/name, returning its path. */
static const char *clone_model(const char *src, const char *name) {
    static char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, name);
    mkdir(dst, 0700);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[512], b[600];
        snprintf(a, sizeof a, REF "/models/%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        if (access(a, R_OK) == 0) copy_file(a, b);
    }
    return dst;
}

static void expect_fail(const char *dir, pd_status want, const char *needle) {
    pd_model *m = NULL;
    err[0] = 0;
    pd_status st = pd_model_load(dir, 0, &m, err, sizeof err);
    CHECKF(st == want && m == NULL, "%s: status %d (want %d): %s", dir, st, want, err);
    CHECKF(strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", dir, err, needle);
    pd_model_free(m);
}

/* Rewrites dir/model.safetensors without the tensor named drop (or with it reshaped). */
static void rewrite_weights(const char *dir, const char *drop, int reshape) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    pd_st_file *f = NULL;
    PD_ASSERT(pd_st_open(path, &f, err, sizeof err) == PD_OK);
    int n = pd_st_count(f), k = 0;
    pd_st_wtensor *w = calloc((size_t)n, sizeof *w);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const pd_st_tensor *t = pd_st_at(f, i);
        if (!strcmp(t->name, drop) && !reshape) continue;
        PD_ASSERT(pd_st_to_f32(t, &bufs[k], err, sizeof err) == PD_OK);
        w[k].name = t->name;
        w[k].ndim = t->ndim;
        memcpy(w[k].shape, t->shape, sizeof t->shape);
        if (!strcmp(t->name, drop)) { w[k].ndim = 1; w[k].shape[0] = pd_st_numel(t); }
        w[k].data = bufs[k];
        k++;
    }
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    PD_ASSERT(pd_st_write(tmp, w, k, NULL, 0, err, sizeof err) == PD_OK);
    pd_st_close(f);
    rename(tmp, path);
    for (int i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(w);
}

static void test_broken(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pd_model_XXXXXX");
    PD_ASSERT(mkdtemp(tmpdir));
    char p[700];
    const char *d;

    expect_fail(REF "/models/bert_cls_pickle", PD_ERR_UNSUPPORTED, "pickle");
    expect_fail("/nonexistent/model", PD_ERR_NOT_FOUND, "not a directory");

    d = clone_model("bert_cls_f32", "truncated");
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    { struct stat sb; stat(p, &sb); PD_ASSERT(truncate(p, sb.st_size - 10) == 0); }
    expect_fail(d, PD_ERR_FORMAT, "model.safetensors");

    d = clone_model("bert_cls_f32", "hugeheader");
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    { FILE *f = fopen(p, "r+b"); unsigned char h[8] = {0, 0, 0, 0, 0, 0, 0, 0x7f}; fwrite(h, 1, 8, f); fclose(f); }
    expect_fail(d, PD_ERR_FORMAT, "header");

    d = clone_model("bert_cls_f32", "badutf8");
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    { FILE *f = fopen(p, "r+b"); fseek(f, 10, SEEK_SET); fputc(0xff, f); fclose(f); }
    expect_fail(d, PD_ERR_FORMAT, "UTF-8");

    d = clone_model("bert_cls_f32", "missing");
    rewrite_weights(d, "bert.encoder.layer.1.attention.self.key.weight", 0);
    expect_fail(d, PD_ERR_MISMATCH, "bert.encoder.layer.1.attention.self.key.weight");

    d = clone_model("bert_cls_f32", "reshaped");
    rewrite_weights(d, "bert.encoder.layer.0.intermediate.dense.weight", 1);
    expect_fail(d, PD_ERR_MISMATCH, "bert.encoder.layer.0.intermediate.dense.weight has shape");

    d = clone_model("bert_cls_f32", "arch");
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\"model_type\": \"gpt2\", \"vocab_size\": 10}");
    expect_fail(d, PD_ERR_UNSUPPORTED, "gpt2");

    d = clone_model("bert_cls_f32", "act");
    {
        char *cfg = NULL; size_t len;
        snprintf(p, sizeof p, "%s/config.json", d);
        PD_ASSERT(pd_read_file(p, 1 << 20, &cfg, &len, err, sizeof err) == PD_OK);
        cJSON *o = cJSON_Parse(cfg);
        cJSON_ReplaceItemInObject(o, "hidden_act", cJSON_CreateString("mish"));
        char *s = cJSON_Print(o);
        write_text(p, s);
        free(s); cJSON_Delete(o); free(cfg);
    }
    expect_fail(d, PD_ERR_UNSUPPORTED, "mish");

    d = clone_model("bert_cls_f32", "badtok");
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    write_text(p, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": 17}}");
    {
        pd_model *m = NULL;
        pd_status st = pd_model_load(d, 0, &m, err, sizeof err);
        CHECKF(st != PD_OK && m == NULL, "bad tokenizer.json accepted");
        CHECKF(strstr(err, "tokenizer") != NULL, "message '%s' lacks 'tokenizer'", err);
    }

    d = clone_model("bert_cls_f32", "noweights");
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    unlink(p);
    expect_fail(d, PD_ERR_NOT_FOUND, "model.safetensors");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

/* A batch with the same sequence under different lengths of company gives the same output. */
static void test_model_api(pd_pool *pool) {
    pd_model *m = NULL;
    if (pd_model_load(REF "/models/bert_cls_f32", 0, &m, err, sizeof err)) { CHECKF(0, "load: %s", err); return; }
    const pd_config *c = pd_model_config(m);
    CHECK(c->arch == PD_ARCH_BERT && c->hidden > 0 && c->num_labels == 3);
    CHECK(pd_model_head(m, PD_TASK_CLS) != NULL);
    CHECK(pd_model_head(m, PD_TASK_QA) == NULL);
    pd_ctx *ctx = pd_ctx_new(m, pool);
    int32_t ids[8] = {2, 10, 11, 12, 3, 0, 0, 0};
    pd_seq s = {ids, NULL, 0, NULL, 0};
    CHECK(pd_forward(ctx, &s, 1, err, sizeof err) == PD_ERR_INVALID);
    s.len = 5;
    ids[2] = c->vocab;
    CHECK(pd_forward(ctx, &s, 1, err, sizeof err) == PD_ERR_INVALID && strstr(err, "vocabulary"));
    ids[2] = 11;
    int32_t *big = calloc((size_t)c->max_tokens + 1, sizeof *big);
    pd_seq sb = {big, NULL, c->max_tokens + 1, NULL, 0};
    CHECK(pd_forward(ctx, &sb, 1, err, sizeof err) == PD_ERR_INVALID);
    sb.len = c->max_tokens;
    CHECK(pd_forward(ctx, &sb, 1, err, sizeof err) == PD_OK);
    free(big);
    pd_ctx_free(ctx);
    pd_model_free(m);
}

int main(void) {
    if (access(REF "/golden", R_OK) != 0) {
        TEST_SKIP("no tests/reference/golden");
        return TEST_SUMMARY("test_model");
    }
    pd_pool *pool = pd_pool_new(2);
    DIR *d = opendir(REF "/golden");
    struct dirent *e;
    int ran = 0;
    while (d && (e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (L < 7 || strcmp(e->d_name + L - 6, ".jsonl")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(L - 6), e->d_name);
        run_golden(name, pool);
        ran++;
    }
    if (d) closedir(d);
    CHECKF(ran >= 18, "only %d golden models", ran);
    test_model_api(pool);
    test_broken();
    pd_pool_free(pool);
    return TEST_SUMMARY("test_model");
}
