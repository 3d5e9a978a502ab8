/* test_model.c - the engine against the PyTorch goldens in tests/reference/ (made by
 * tests/reference/gen_engine.py), batch invariance, and refusals of broken checkpoints.
 *
 * Every golden model runs in each dtype (core/gemm.h) on every kernel body the CPU has
 * (tests/test_isa.h): fp32 within 1e-4 of the goldens; bf16 and int8 against golden_lowp/
 * (tests/reference/gen_lowp.py: the same models in PyTorch, float64, with the weights and
 * linear-layer inputs converted as core/gemm.h describes): >= 95% of the logits within EMU_TOL
 * x max(1, |logit|) (measured: 98% bf16, 99.6% int8; of the fp32 goldens only 24% and 7% are
 * that close, so this tells the prescribed arithmetic apart) and every one within EMU_MAX x
 * max(1, |logit|) (a last-bit difference of the fp32 sums can move one bf16 rounding or int8
 * step, which these models amplify: worst seen 2.2e-2 bf16, 5.7e-2 int8). Their distance
 * to the fp32 goldens in units of issue 16's bounds (2e-2 x max(1, |logit|) bf16, 1e-1 int8) is
 * printed, not asserted: these random models (weights std 0.3) are chaotic enough that the
 * emulation itself leaves those bounds by up to 3.5x (gen_lowp.py's docstring); the bounds
 * are asserted over HTTP on well-scaled bases in tests/e2e/test_dtype.py. QA answers must
 * equal the goldens in fp32; in bf16 / int8 the equal ones are counted and printed. */
#include "model.h"
#include "pipeline.h"
#include "safetensors.h"
#include "test.h"
#include "test_isa.h"

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

/* The dtype a golden run loads. Tolerances: fp32 1e-4 absolute against the goldens; bf16 and
 * int8 EMU_TOL x max(1, |logit|) against the emulation (the engine's fp32 sums run in another
 * order than float64's, and a last-bit difference can move a bf16 rounding or an int8 step,
 * which these models amplify); ISSUE_TOL x max(1, |logit|) is issue 16's bound to fp32. */
static pd_wtype g_dtype = PD_WTYPE_F32;
#define EMU_TOL 2e-3
#define EMU_MAX 1e-1
static const double ISSUE_TOL[3] = {1e-4, 2e-2, 1e-1};

/* Largest |golden - x| / (rel x max(1, |golden|)) over n values, or / abs when rel is 0 (pass:
 * <= 1); 1e9 when the lengths differ. */
/* Logits within EMU_TOL x max(1, |l|) of the emulation (count 1), of the fp32 goldens (count 2,
 * to show what the emulation test tells apart), and all compared. */
static long n_close[3], n_close_fp32[3], n_all[3];
static double max_excess(const cJSON *arr, const float *x, int n, double rel, double abs_tol, int count) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return 1e9;
    double m = 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        double mag = fabs(v->valuedouble) > 1 ? fabs(v->valuedouble) : 1;
        double d = fabs(v->valuedouble - x[i++]) / (rel > 0 ? rel * mag : abs_tol);
        if (!(d <= m)) m = d; /* NaN counts as a failure */
        if (count == 1) { n_close[g_dtype] += d <= 1; n_all[g_dtype]++; }
        if (count == 2) n_close_fp32[g_dtype] += d * rel <= EMU_TOL;
    }
    return m;
}

/* Per dtype: the worst excess against the emulation (EMU_TOL units) and against the fp32
 * goldens (ISSUE_TOL units), and QA answers equal to the goldens'. */
static double worst_emu[3], worst_issue[3];
static int qa_same[3], qa_total[3];

static int get_int(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

typedef struct {
    cJSON *line;
    cJSON *low; /* the golden_lowp line (bf16, int8) */
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

/* Compares an item's results with its golden line (fp32) or its golden_lowp line (bf16, int8). */
static void check_case(const char *name, int ln, const gcase *g, const pd_item *it) {
    const cJSON *gids = cJSON_GetObjectItemCaseSensitive(g->line, "ids");
    const cJSON *gtypes = cJSON_GetObjectItemCaseSensitive(g->line, "type_ids");
    const char *dt = pd_wtype_name(g_dtype);
    CHECKF(cJSON_GetArraySize(gids) == it->n_win, "%s:%d windows %d vs golden %d", name, ln, it->n_win, cJSON_GetArraySize(gids));
    for (int w = 0; w < it->n_win && w < cJSON_GetArraySize(gids); w++) {
        CHECKF(ids_equal(cJSON_GetArrayItem(gids, w), it->win[w].ids, it->win[w].len), "%s:%d window %d ids differ", name, ln, w);
        if (gtypes)
            CHECKF(ids_equal(cJSON_GetArrayItem(gtypes, w), it->win[w].type_ids, it->win[w].len), "%s:%d window %d type ids differ", name, ln, w);
    }
    int low = g_dtype != PD_WTYPE_F32;
    const cJSON *ref = low ? g->low : g->line;
    double rel = low ? EMU_TOL : 0, d, di;
    CHECKF(ref != NULL, "%s:%d no %s golden line", name, ln, dt);
    if (!ref) return;
    if (g->task == PD_TASK_CLS) {
        d = max_excess(cJSON_GetObjectItemCaseSensitive(ref, "logits"), it->logits, it->n_logits, rel, 1e-4, 1);
        di = max_excess(cJSON_GetObjectItemCaseSensitive(g->line, "logits"), it->logits, it->n_logits, ISSUE_TOL[g_dtype], 0, 2);
        CHECKF(d <= (low ? EMU_MAX / EMU_TOL : 1), "%s:%d %s logits differ by %g x %g", name, ln, dt, d, low ? EMU_TOL : 1e-4);
    } else {
        const cJSON *sl = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ref, "start_logits"), 0);
        const cJSON *el = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ref, "end_logits"), 0);
        const cJSON *gs = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g->line, "start_logits"), 0);
        const cJSON *ge = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g->line, "end_logits"), 0);
        int L = it->win[0].len;
        double d1 = max_excess(sl, it->start_logits, L, rel, 1e-4, 1), d2 = max_excess(el, it->end_logits, L, rel, 1e-4, 1);
        double i1 = max_excess(gs, it->start_logits, L, ISSUE_TOL[g_dtype], 0, 2), i2 = max_excess(ge, it->end_logits, L, ISSUE_TOL[g_dtype], 0, 2);
        d = d1 > d2 ? d1 : d2;
        di = i1 > i2 ? i1 : i2;
        CHECKF(d <= (low ? EMU_MAX / EMU_TOL : 1), "%s:%d %s QA logits differ by %g / %g x %g", name, ln, dt, d1, d2,
               low ? EMU_TOL : 1e-4);
        const cJSON *ga = cJSON_GetObjectItemCaseSensitive(g->line, "answer");
        CHECKF(it->n_answers >= 1, "%s:%d no answer", name, ln);
        if (it->n_answers >= 1 && ga) {
            const cJSON *at = cJSON_GetObjectItemCaseSensitive(ga, "answer");
            int same = cJSON_IsString(at) && !strcmp(at->valuestring, it->answers[0].text) &&
                       get_int(ga, "start", -1) == it->answers[0].start && get_int(ga, "end", -1) == it->answers[0].end;
            qa_same[g_dtype] += same;
            qa_total[g_dtype]++;
            if (g_dtype == PD_WTYPE_F32) {
                CHECKF(same, "%s:%d answer '%s' [%d,%d) vs golden '%s' [%d,%d)", name, ln, it->answers[0].text,
                       it->answers[0].start, it->answers[0].end, cJSON_IsString(at) ? at->valuestring : "?",
                       get_int(ga, "start", -1), get_int(ga, "end", -1));
                const cJSON *sc = cJSON_GetObjectItemCaseSensitive(ga, "score");
                CHECKF(cJSON_IsNumber(sc) && fabs(sc->valuedouble - it->answers[0].score) <= 1e-4, "%s:%d score %g vs golden %g",
                       name, ln, it->answers[0].score, cJSON_IsNumber(sc) ? sc->valuedouble : -1);
            }
        }
    }
    if (d > worst_emu[g_dtype] && d < 1e9) worst_emu[g_dtype] = d;
    if (di > worst_issue[g_dtype] && di < 1e9) worst_issue[g_dtype] = di;
}

static void run_golden(const char *name, pd_pool *pool) {
    char dir[512], gpath[512];
    snprintf(dir, sizeof dir, REF "/models/%s", name);
    snprintf(gpath, sizeof gpath, REF "/golden/%s.jsonl", name);
    pd_model *m = NULL;
    pd_status st = pd_model_load_as(dir, 0, g_dtype, &m, err, sizeof err);
    CHECKF(st == PD_OK, "%s: load failed: %s", name, err);
    if (st) return;
    CHECK(pd_model_dtype(m) == g_dtype);
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
    fclose(f);
    if (g_dtype != PD_WTYPE_F32) { /* the emulation's lines, in the same order */
        snprintf(gpath, sizeof gpath, REF "/golden_lowp/%s.%s.jsonl", name, pd_wtype_name(g_dtype));
        f = fopen(gpath, "r");
        CHECKF(f != NULL, "%s: no %s", name, gpath);
        for (int i = 0; f && i < n && getline(&line, &cap, f) > 0; i++) cases[i].low = cJSON_Parse(line);
        if (f) fclose(f);
    }
    free(line);
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
        if (!st) check_case(name, i + 1, &cases[i], it);
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
            if (cases[i].o.max_answer_length == cases[0].o.max_answer_length) check_case(name, i + 1, &cases[i], &batch[k]);
            k++;
        }
    }
    for (int i = 0; i < nb; i++) pd_item_free(&batch[i]);
    for (int i = 0; i < n; i++) { pd_item_free(&items[i]); cJSON_Delete(cases[i].line); cJSON_Delete(cases[i].low); }
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
    char *names[64];
    int nn = 0;
    DIR *d = opendir(REF "/golden");
    struct dirent *e;
    while (d && (e = readdir(d)) && nn < 64) {
        size_t L = strlen(e->d_name);
        if (L < 7 || strcmp(e->d_name + L - 6, ".jsonl")) continue;
        names[nn++] = strndup(e->d_name, L - 6);
    }
    if (d) closedir(d);
    CHECKF(nn >= 18, "only %d golden models", nn);
    const char *isa;
    for (int k = 0; (isa = test_next_isa(&k));) {
        for (int t = 0; t < 3; t++) {
            g_dtype = (pd_wtype)t;
            for (int i = 0; i < nn; i++) run_golden(names[i], pool);
        }
    }
    for (int t = 0; t < 3; t++)
        printf("%s: logits within %.3f of the tolerance at worst (%s); %.2f x issue 16's bound to the fp32 goldens;"
               " QA answers equal to the goldens: %d of %d\n", pd_wtype_name((pd_wtype)t), worst_emu[t],
               t ? "2e-3 x max(1,|l|) of the emulation" : "1e-4 of the goldens", worst_issue[t], qa_same[t], qa_total[t]);
    for (int t = 1; t < 3; t++)
    {
        printf("%s: %ld of %ld logits within 2e-3 x max(1,|l|) of the emulation, %ld of the fp32 goldens\n",
               pd_wtype_name((pd_wtype)t), n_close[t], n_all[t], n_close_fp32[t]);
        CHECKF(n_all[t] > 0 && n_close[t] >= 0.95 * n_all[t], "%s: only %ld of %ld logits near the emulation",
               pd_wtype_name((pd_wtype)t), n_close[t], n_all[t]);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    g_dtype = PD_WTYPE_F32;
    test_model_api(pool);
    test_broken();
    pd_pool_free(pool);
    return TEST_SUMMARY("test_model");
}
