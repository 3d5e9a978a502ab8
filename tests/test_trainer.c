/* test_trainer.c - training: AdamW, schedule and clipping against hand-computed torch values;
 * gradients and optimizer steps against torch autograd goldens (tests/reference/gen_train.py);
 * micro-batching; validation of job requests; learning on synthetic tasks with every method;
 * determinism; cancel; checkpoint + resume equal to an uninterrupted run.
 *
 * Uses the tiny reference models in tests/reference/models (skips when absent). Job tests run
 * real pd_trainer jobs against an in-memory registry. */
#include "optim.h"
#include "trainer.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REF "tests/reference/models/"
#define GOLD "tests/reference/golden_train/"

static char err[1024];

/* ==== Helpers ==== */

/* The trainer under test and what parsing a request needs: set by new_trainer. */
static const pd_model *g_base;
static pd_registry *g_reg;
static size_t g_max_bytes; /* pd_train_spec_parse's budget; 0 = none */

static pd_trainer *new_trainer(const pd_model *m, pd_registry *reg, pd_pool *pool, const char *dir, int threads) {
    g_base = m;
    g_reg = reg;
    return pd_trainer_new(m, reg, pool, dir, threads);
}

/* POST /train's path: the request r (and JSON Lines train data, may be NULL) parsed into a
 * spec, then queued. */
static pd_status submit(pd_trainer *t, const cJSON *r, const char *train_jsonl, char *id, size_t cap) {
    char *txt = cJSON_PrintUnformatted(r);
    pd_train_spec *spec = NULL;
    pd_status st = pd_train_spec_parse(g_base, g_reg, txt, strlen(txt), train_jsonl, train_jsonl ? strlen(train_jsonl) : 0, NULL, 0,
                                       NULL, g_max_bytes, &spec, err, sizeof err);
    free(txt);
    if (!st) st = pd_trainer_submit(t, spec, id, cap, err, sizeof err);
    return st;
}

/* A job's JSON as the API shows it (NULL if unknown), and the list. */
static cJSON *job_get(pd_trainer *t, const char *id) {
    char *txt = NULL;
    if (pd_trainer_job_json(t, id, &txt, err, sizeof err)) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    return j;
}

static cJSON *jobs_list(pd_trainer *t) {
    char *txt = NULL;
    if (pd_trainer_list_json(t, &txt, err, sizeof err)) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    return j;
}

/* Field by field, parameter i of a trainable adapter as the optimizer sees it
 * (pd_adapter_train_params); NULL skips a field. */
static void param_get(pd_adapter *a, int i, float **data, float **grad, size_t *n, int *decay, const char **name) {
    int np = 0;
    const pd_param *p = pd_adapter_train_params(a, &np);
    PD_ASSERT(i >= 0 && i < np);
    if (data) *data = p[i].data;
    if (grad) *grad = p[i].grad;
    if (n) *n = p[i].n;
    if (decay) *decay = p[i].decay;
    if (name) *name = p[i].name;
}

static int n_params(pd_adapter *a) {
    int np = 0;
    pd_adapter_train_params(a, &np);
    return np;
}

static pd_model *load_model(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, REF "%s", name);
    pd_model *m = NULL;
    if (pd_model_load(dir, 0, &m, err, sizeof err)) {
        CHECKF(0, "%s: %s", name, err);
        return NULL;
    }
    return m;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    remove(p);
    return 0;
}

static void rm_tree(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t rs = 0x243F6A8885A308D3ull;
static uint32_t rnd32(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (uint32_t)(rs >> 32);
}

/* Saves the current version of name and returns the bytes of every file, concatenated. */
static char *adapter_bytes(pd_registry *reg, const char *name, size_t *len) {
    pd_adapter *a = NULL;
    int ver = 0;
    *len = 0;
    if (pd_registry_get(reg, name, &a, &ver, err, sizeof err)) { CHECKF(0, "get %s: %s", name, err); return NULL; }
    char dir[] = "/tmp/pd_trainer_bytes_XXXXXX";
    if (!mkdtemp(dir)) { pd_adapter_release(a); return NULL; }
    char *out = NULL;
    if (pd_adapter_save_dir(a, dir, err, sizeof err)) CHECKF(0, "save %s: %s", name, err);
    const char *const *fn = pd_adapter_file_names(a);
    for (int i = 0; fn && fn[i]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, fn[i]);
        char *b = NULL;
        size_t n = 0;
        if (access(p, F_OK) || pd_read_file(p, (size_t)1 << 30, &b, &n, err, sizeof err)) continue;
        char *no = realloc(out, *len + n + 1);
        if (no) { out = no; memcpy(out + *len, b, n); *len += n; }
        free(b);
    }
    rm_tree(dir);
    pd_adapter_release(a);
    return out;
}

/* Polls a job until it leaves queued/running; returns its final JSON (caller frees). */
static cJSON *wait_job(pd_trainer *t, const char *id, double timeout_s) {
    double t0 = pd_now();
    for (;;) {
        cJSON *j = job_get(t, id);
        if (!j) return NULL;
        const char *s = cJSON_GetObjectItem(j, "status")->valuestring;
        if (strcmp(s, "queued") && strcmp(s, "running")) return j;
        if (pd_now() - t0 > timeout_s) return j;
        cJSON_Delete(j);
        sleep_ms(5);
    }
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The last evaluation's metric m ("accuracy", "f1", "loss") of a job, NAN if none. */
static double last_eval(const cJSON *job, const char *m) {
    const cJSON *ev = cJSON_GetObjectItem(job, "eval");
    int n = cJSON_GetArraySize(ev);
    if (n == 0) return NAN;
    return jnum(cJSON_GetArrayItem(cJSON_GetArrayItem(ev, n - 1), 1), m);
}

/* ==== AdamW, schedule, clipping ==== */

static void test_adamw(void) {
    /* One parameter vector, two steps, lr 0.01, weight decay 0.1, betas (0.9, 0.999), eps 1e-8,
     * gradients g1 then g2. torch.optim.AdamW (torch 1.13, _single_tensor_adamw) does, per step t:
     *   p *= 1 - lr*wd;  m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2
     *   p -= lr / (1 - 0.9^t) * m / (sqrt(v) / sqrt(1 - 0.999^t) + eps)
     * Step 1 by hand for p = 0.5, g = 0.1: p = 0.4995; m = 0.01; v = 1e-5; step size 0.1;
     *   denom = sqrt(1e-5)/sqrt(0.001) + 1e-8 = 0.10000001; p = 0.4995 - 0.1 * 0.01/0.10000001
     *   = 0.489500001. The other values were computed the same way (in double; torch.optim.AdamW
     *   on a float64 tensor prints the same digits). */
    float p[4] = {0.5f, -1.0f, 2.0f, 0.0f}, m[4] = {0}, v[4] = {0};
    const float g1[4] = {0.1f, -0.3f, 0.0f, 1e-3f}, g2[4] = {-0.2f, -0.1f, 0.5f, 1e-3f};
    const double e1[4] = {0.489500001, -0.989000000333, 1.998, -0.009999900001};
    const double e2[4] = {0.492671536038, -0.979300361215, 1.98856063197, -0.019989800102};
    pd_adamw_update(p, g1, m, v, 4, 1, 0.01, 0.1, 0.9, 0.999, 1e-8);
    for (int i = 0; i < 4; i++) CHECK_NEAR(p[i], e1[i], 2e-7);
    pd_adamw_update(p, g2, m, v, 4, 2, 0.01, 0.1, 0.9, 0.999, 1e-8);
    for (int i = 0; i < 4; i++) CHECK_NEAR(p[i], e2[i], 2e-7);
}

static void test_schedule(void) {
    /* transformers get_linear_schedule_with_warmup(warmup 2, total 10): step/2 then (10-step)/8 */
    CHECK_NEAR(pd_lr_lambda(0, 2, 10), 0.0, 0);
    CHECK_NEAR(pd_lr_lambda(1, 2, 10), 0.5, 1e-12);
    CHECK_NEAR(pd_lr_lambda(2, 2, 10), 1.0, 1e-12);
    CHECK_NEAR(pd_lr_lambda(6, 2, 10), 0.5, 1e-12);
    CHECK_NEAR(pd_lr_lambda(9, 2, 10), 0.125, 1e-12);
    CHECK_NEAR(pd_lr_lambda(10, 2, 10), 0.0, 0);
    CHECK_NEAR(pd_lr_lambda(12, 2, 10), 0.0, 0);
    CHECK_NEAR(pd_lr_lambda(0, 0, 4), 1.0, 0);
    CHECK_NEAR(pd_lr_lambda(1, 0, 4), 0.75, 1e-12);
    CHECK(pd_warmup_steps(0.1, 25) == 3); /* ceil(2.5) */
    CHECK(pd_warmup_steps(0.0, 25) == 0);
    CHECK(pd_warmup_steps(1.0, 7) == 7);
}

/* Clipping over an adapter's tensors: gradients set by hand; torch.nn.utils.clip_grad_norm_
 * with grads (3, 0, 4) and (0, 12) returns 13 and scales by 1 / (13 + 1e-6). */
static void test_clip(const pd_model *m) {
    cJSON *cfg = cJSON_Parse("{\"r\": 2, \"target_modules\": [\"query\"]}");
    char *labels[] = {"a", "b"};
    pd_adapter *a = NULL;
    if (pd_adapter_new_trainable(m, PD_METHOD_LORA, cfg, PD_TASK_CLS, labels, 2, 1, &a, err, sizeof err)) {
        CHECKF(0, "new_trainable: %s", err);
        cJSON_Delete(cfg);
        return;
    }
    cJSON_Delete(cfg);
    pd_adapter_zero_grad(a);
    int nt = n_params(a);
    CHECK(nt >= 2);
    float *d, *g0, *g1;
    size_t n0, n1;
    int dec;
    const char *name;
    param_get(a, 0, &d, &g0, &n0, &dec, &name);
    param_get(a, 1, &d, &g1, &n1, &dec, &name);
    g0[0] = 3; g0[n0 - 1] = 4; g1[0] = 12;
    const pd_param *ps = pd_adapter_train_params(a, &nt);
    CHECK_NEAR(pd_grad_norm(ps, nt), 13.0, 1e-9);
    double norm = pd_grad_clip(ps, nt, 100.0);
    CHECK_NEAR(norm, 13.0, 1e-9);
    CHECK(g0[0] == 3.0f); /* below the limit: untouched */
    norm = pd_grad_clip(ps, nt, 1.0);
    CHECK_NEAR(norm, 13.0, 1e-9);
    CHECK_NEAR(g0[0], 0.23076921701431274, 1e-7);
    CHECK_NEAR(g0[n0 - 1], 0.307692289352417, 1e-7);
    CHECK_NEAR(g1[0], 0.923076868057251, 1e-7);
    CHECK_NEAR(pd_grad_norm(ps, nt), 1.0, 1e-6);
    /* every tensor has data, gradient and a name */
    for (int i = 0; i < nt; i++) {
        param_get(a, i, &d, &g0, &n0, &dec, &name);
        CHECK(d && g0 && n0 > 0 && name && *name);
    }
    pd_adapter_release(a);
}

/* ==== Gradients and steps against torch ==== */

static const cJSON *golden_tensor(const cJSON *map, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(map, name);
}

static void test_golden(const char *cs, int max_tokens) {
    char path[512];
    snprintf(path, sizeof path, GOLD "%s.json", cs);
    char *buf = NULL;
    size_t len = 0;
    if (pd_read_file(path, (size_t)1 << 26, &buf, &len, err, sizeof err)) { CHECKF(0, "%s", err); return; }
    cJSON *g = cJSON_Parse(buf);
    free(buf);
    if (!g) { CHECKF(0, "%s: bad JSON", path); return; }
    const char *base_dir = jstr(g, "base"), *adir = jstr(g, "adapter");
    pd_task task = !strcmp(jstr(g, "task"), "classification") ? PD_TASK_CLS : PD_TASK_QA;
    pd_model *m = NULL;
    pd_adapter *src = NULL, *a = NULL;
    pd_train_engine *e = NULL;
    pd_adamw *o = NULL;
    pd_pool *pool = pd_pool_new(2);
    if (pd_model_load(base_dir, 0, &m, err, sizeof err)) { CHECKF(0, "%s: %s", base_dir, err); goto out; }
    if (pd_adapter_load_dir(m, adir, &src, err, sizeof err)) { CHECKF(0, "%s: %s", adir, err); goto out; }
    if (pd_adapter_clone_trainable(src, &a, err, sizeof err)) { CHECKF(0, "clone %s: %s", cs, err); goto out; }
    if (pd_train_engine_new(m, a, task, pool, max_tokens, &e, err, sizeof err)) { CHECKF(0, "engine %s: %s", cs, err); goto out; }
    const cJSON *h = cJSON_GetObjectItem(g, "hyper");
    int np = 0;
    const pd_param *ps = pd_adapter_train_params(a, &np);
    o = pd_adamw_new(ps, np, 0.9, 0.999, jnum(h, "eps"), jnum(h, "weight_decay"));
    /* the batch */
    const cJSON *batch = cJSON_GetObjectItem(g, "batch");
    int n = cJSON_GetArraySize(batch);
    pd_train_example *ex = calloc((size_t)n, sizeof *ex);
    int *idx = calloc((size_t)n, sizeof *idx);
    for (int i = 0; i < n; i++) {
        const cJSON *b = cJSON_GetArrayItem(batch, i), *ids = cJSON_GetObjectItem(b, "ids"), *tt = cJSON_GetObjectItem(b, "type_ids");
        ex[i].len = cJSON_GetArraySize(ids);
        ex[i].ids = calloc((size_t)ex[i].len, sizeof(int32_t));
        ex[i].type_ids = calloc((size_t)ex[i].len, sizeof(int32_t));
        for (int k = 0; k < ex[i].len; k++) {
            ex[i].ids[k] = cJSON_GetArrayItem(ids, k)->valueint;
            ex[i].type_ids[k] = cJSON_GetArrayItem(tt, k)->valueint;
        }
        ex[i].label = (int)jnum(b, "label");
        ex[i].start = (int)jnum(b, "start");
        ex[i].end = (int)jnum(b, "end");
        idx[i] = i;
    }
    /* the trainable tensors are exactly torch's, with the same weight decay */
    const cJSON *decay = cJSON_GetObjectItem(g, "decay");
    int nt = n_params(a);
    CHECKF(nt == cJSON_GetArraySize(decay), "%s: %d trainable tensors, torch has %d", cs, nt, cJSON_GetArraySize(decay));
    for (int i = 0; i < nt; i++) {
        float *d, *gr;
        size_t sz;
        int dec;
        const char *name;
        param_get(a, i, &d, &gr, &sz, &dec, &name);
        const cJSON *dv = golden_tensor(decay, name);
        CHECKF(dv != NULL, "%s: tensor %s is not trained by torch", cs, name);
        if (dv) CHECKF(dv->valueint == dec, "%s: %s decay %d, torch %d", cs, name, dec, dv->valueint);
    }
    const cJSON *steps = cJSON_GetObjectItem(g, "steps");
    double worst_g = 0, worst_p = 0;
    for (int s = 0; s < cJSON_GetArraySize(steps); s++) {
        const cJSON *st = cJSON_GetArrayItem(steps, s);
        double lr = jnum(h, "lr") * pd_lr_lambda(s, (long)jnum(h, "warmup_steps"), (long)jnum(h, "total_steps"));
        CHECK_NEAR(lr, jnum(st, "lr"), 1e-12);
        double loss = 0, norm = 0;
        if (pd_train_engine_step(e, o, ex, idx, n, lr, jnum(h, "max_grad_norm"), 7, &loss, &norm, err, sizeof err)) {
            CHECKF(0, "%s step %d: %s", cs, s, err);
            break;
        }
        CHECKF(fabs(loss - jnum(st, "loss")) <= 1e-5 * fabs(jnum(st, "loss")), "%s step %d: loss %.8f, torch %.8f", cs, s, loss,
               jnum(st, "loss"));
        CHECKF(fabs(norm - jnum(st, "grad_norm")) <= 1e-4 * jnum(st, "grad_norm"), "%s: grad norm %.7f, torch %.7f", cs, norm,
               jnum(st, "grad_norm"));
        /* After the step the gradients are clipped: compare with torch's times the same factor.
         * Some gradients are analytically zero: a QA head's bias (the softmax minus the one-hot
         * target sums to 0 over the positions). torch (float64) gives 1e-17 there, float32 1e-9
         * of rounding, so errors are relative to the larger of the tensor's largest gradient and
         * 1e-4 of the whole gradient norm; and AdamW turns such noise into full steps of
         * lr * g / (|g| + eps), so a parameter whose gradient is that noise may differ by lr. */
        double mg = jnum(h, "max_grad_norm"), gn = jnum(st, "grad_norm");
        double coef = mg / (gn + 1e-6) < 1 ? mg / (gn + 1e-6) : 1.0;
        const cJSON *grads = cJSON_GetObjectItem(st, "grads"), *params = cJSON_GetObjectItem(st, "params");
        for (int i = 0; i < nt; i++) {
            float *d, *gr;
            size_t sz;
            int dec;
            const char *name;
            param_get(a, i, &d, &gr, &sz, &dec, &name);
            const cJSON *tg = golden_tensor(grads, name), *tp = golden_tensor(params, name);
            if (!tg || !tp || (size_t)cJSON_GetArraySize(tg) != sz) {
                CHECKF(0, "%s: tensor %s missing or of another size in the golden", cs, name);
                continue;
            }
            double gmax = 0, gdiff = 0, pdiff = 0, floor_g = 1e-4 * gn * coef;
            const cJSON *x = tg->child, *y = tp->child;
            for (size_t k = 0; k < sz; k++, x = x->next, y = y->next) {
                double ref = x->valuedouble * coef;
                if (fabs(ref) > gmax) gmax = fabs(ref);
                if (fabs(gr[k] - ref) > gdiff) gdiff = fabs(gr[k] - ref);
                double pe = fabs(d[k] - y->valuedouble);
                if (fabs(ref) < 1e-7 * gn * coef) pe = pe <= lr * 1.001 * (s + 1) ? 0 : pe; /* noise-driven step */
                if (pe > pdiff) pdiff = pe;
            }
            double rel = gdiff / fmax(gmax, floor_g);
            CHECKF(rel <= 1e-3, "%s step %d %s: gradient relative error %.2e", cs, s, name, rel);
            CHECKF(pdiff <= 1e-5, "%s step %d %s: parameter error %.2e", cs, s, name, pdiff);
            if (rel > worst_g) worst_g = rel;
            if (pdiff > worst_p) worst_p = pdiff;
        }
    }
    printf("  %-24s max_tokens %-4d worst gradient rel err %.2e, worst parameter err %.2e\n", cs, max_tokens, worst_g, worst_p);
    for (int i = 0; i < n; i++) { free(ex[i].ids); free(ex[i].type_ids); }
    free(ex);
    free(idx);
out:
    pd_adamw_free(o);
    pd_train_engine_free(e);
    pd_adapter_release(a);
    pd_adapter_release(src);
    pd_model_free(m);
    pd_pool_free(pool);
    cJSON_Delete(g);
}

/* ==== Synthetic data ==== */

static const char *const POS[] = {"good", "great", "nice", "wonderful", "beautiful", "happy", "loved", "funny"};
static const char *const NEG[] = {"bad", "boring", "sad", "hated", "cold", "lost", "never", "died"};
static const char *const FILL[] = {"the", "movie", "film", "story", "was", "and", "it", "very", "music", "plot",
                                   "actors", "really", "this", "day", "people", "city"};
#define NF (sizeof FILL / sizeof FILL[0])

/* "text": two to four sentiment words of one polarity among one to three fillers; label
 * "pos" / "neg". Dense on purpose: the base is a random 2-layer encoder, and methods that cannot
 * change what the first token attends to (prefix, prompt, bottleneck) need the polarity to reach
 * it through attention as it is. */
static cJSON *cls_examples(int n, uint64_t seed) {
    rs = seed;
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        int pos = rnd32() & 1, ns = 2 + (int)(rnd32() % 3), nf = 1 + (int)(rnd32() % 3);
        const char *w[8];
        for (int k = 0; k < ns; k++) w[k] = (pos ? POS : NEG)[rnd32() % 8];
        for (int k = 0; k < nf; k++) w[ns + k] = FILL[rnd32() % NF];
        for (int k = ns + nf - 1; k > 0; k--) { /* shuffle the words */
            int q = (int)(rnd32() % (uint32_t)(k + 1));
            const char *x = w[k]; w[k] = w[q]; w[q] = x;
        }
        char text[256] = "";
        for (int k = 0; k < ns + nf; k++) {
            strcat(text, k ? " " : "");
            strcat(text, w[k]);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", text);
        cJSON_AddStringToObject(o, "label", pos ? "pos" : "neg");
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static const char *const OBJ[] = {"book", "car", "tree", "flower", "bee", "food", "bread", "milk", "coffee", "money"};
static const char *const PLACE[] = {"house", "room", "garden", "park", "city", "town", "river", "lake", "school", "tower"};

/* "the X is in the Y [near the Z]" / "where is the X?" -> Y, with fillers around. */
static cJSON *qa_examples(int n, uint64_t seed) {
    rs = seed;
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const char *o = OBJ[rnd32() % 10], *p = PLACE[rnd32() % 10], *z = PLACE[rnd32() % 10];
        char ctx[256] = "", q[64];
        int pre = (int)(rnd32() % 3);
        for (int k = 0; k < pre; k++) { strcat(ctx, FILL[rnd32() % NF]); strcat(ctx, " "); }
        strcat(ctx, "the ");
        strcat(ctx, o);
        strcat(ctx, " is in the ");
        int start = (int)strlen(ctx);
        strcat(ctx, p);
        if (rnd32() & 1) { strcat(ctx, " near the "); strcat(ctx, z); }
        strcat(ctx, " and the day was ");
        strcat(ctx, FILL[rnd32() % NF]);
        snprintf(q, sizeof q, "where is the %s?", o);
        cJSON *x = cJSON_CreateObject(), *ans = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "question", q);
        cJSON_AddStringToObject(x, "context", ctx);
        cJSON_AddStringToObject(ans, "text", p);
        cJSON_AddNumberToObject(ans, "start", start);
        cJSON_AddItemToObject(x, "answer", ans);
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

static cJSON *request(const char *adapter, const char *method, const char *task, const char *config) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "adapter", adapter);
    if (method) cJSON_AddStringToObject(r, "method", method);
    if (task) cJSON_AddStringToObject(r, "task", task);
    if (config) cJSON_AddItemToObject(r, "config", cJSON_Parse(config));
    return r;
}

/* Submits r and expects failure st with every needle in the message. */
static void expect_reject(pd_trainer *t, cJSON *r, const char *train_jsonl, pd_status st, const char *n1, const char *n2) {
    char id[32];
    pd_status got = submit(t, r, train_jsonl, id, sizeof id);
    CHECKF(got == st, "expected %s, got %s (%s)", pd_status_name(st), pd_status_name(got), got ? err : id);
    if (got) {
        CHECKF(!n1 || strstr(err, n1), "message \"%s\" lacks \"%s\"", err, n1);
        CHECKF(!n2 || strstr(err, n2), "message \"%s\" lacks \"%s\"", err, n2);
    }
    cJSON_Delete(r);
}

/* ==== Jobs: validation ==== */

static void test_validation(pd_trainer *t) {
    cJSON *r;
    /* unknown label, naming the example */
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "labels", cJSON_Parse("[\"neg\", \"pos\"]"));
    cJSON_AddItemToObject(r, "train", cJSON_Parse("[{\"text\": \"good\", \"label\": \"pos\"}, {\"text\": \"x\", \"label\": \"meh\"}]"));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "train[1].label", "meh");
    /* empty data */
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cJSON_CreateArray());
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "train", "no examples");
    /* malformed example */
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cJSON_Parse("[{\"text\": \"good\", \"label\": \"pos\"}, {\"text\": \"b\", \"label\": \"neg\"}, {\"txt\": \"x\", \"label\": \"pos\"}]"));
    expect_reject(t, r, NULL, PD_ERR_INVALID, "train[2].text", "required");
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cJSON_Parse("[{\"text\": \"good\", \"label\": \"pos\"}, 7]"));
    expect_reject(t, r, NULL, PD_ERR_INVALID, "train[1]", "object");
    /* QA answer not in its context */
    r = request("v1", "lora", "question_answering", NULL);
    cJSON_AddItemToObject(r, "train", cJSON_Parse("[{\"question\": \"where?\", \"context\": \"in the house\", \"answer\": {\"text\": \"house\", \"start\": 7}},"
                                                  " {\"question\": \"where?\", \"context\": \"in the park\", \"answer\": {\"text\": \"park\", \"start\": 3}}]"));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "train[1].answer", "not in the context");
    /* the cost, estimated from the config before the adapter is built (bert_cls_f32: hidden 32) */
    g_max_bytes = (size_t)16 << 20;
    r = request("v1", "bottleneck", "classification", "{\"reduction_factor\": 1e-9}");
    cJSON_AddItemToObject(r, "train", cls_examples(16, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "config", "the limit is 16 MiB");
    r = request("v1", "lora", "classification", "{\"r\": 8, \"rank_pattern\": {\"query\": 1000000}}");
    cJSON_AddItemToObject(r, "train", cls_examples(16, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "config", "--max-train-mb");
    g_max_bytes = 0;
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(2000, 1));
    cJSON_AddNumberToObject(r, "epochs", 100000);
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "epochs", "the limit is 1e+08");
    /* hyperparameters out of range */
    r = request("v1", "lora", "classification", "{\"r\": 0}");
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "config.r", NULL);
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddNumberToObject(r, "learning_rate", 0);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "learning_rate", NULL);
    r = request("v1", "prompt_tuning", "classification", "{\"num_virtual_tokens\": 80}");
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "num_virtual_tokens", "positions");
    r = request("v1", "prefix_tuning", "classification", "{\"num_virtual_tokens\": 20}");
    cJSON_AddNumberToObject(r, "max_seq_len", 60);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "max_seq_len", "positions");
    /* wrong types, unknown fields, missing pieces */
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddStringToObject(r, "epochs", "three");
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_INVALID, "epochs", "integer");
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddNumberToObject(r, "learning-rate", 0.1);
    expect_reject(t, r, NULL, PD_ERR_INVALID, "learning-rate", "unknown");
    r = request("v1", "dora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "method", "dora");
    r = request("does-not-exist", NULL, "classification", NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_NOT_FOUND, "does-not-exist", "method");
    r = request("v1", "lora", NULL, NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_INVALID, "task", NULL);
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddStringToObject(r, "publish", "best");
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "publish", "eval");
    /* JSON Lines data: the bad line is named by its example index */
    r = request("v1", "lora", "classification", NULL);
    expect_reject(t, r, "{\"text\": \"good\", \"label\": \"pos\"}\n\n{\"text\": \"bad\", \"label\": \"neg\"}\n{\"text\": oops}\n", PD_ERR_INVALID,
                  "train[2]", "JSON");
    r = request("v1", "lora", "classification", NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(4, 1));
    expect_reject(t, r, "{\"text\": \"good\", \"label\": \"pos\"}\n", PD_ERR_INVALID, "train", "both");
    r = request("bad/name", "lora", "classification", NULL);
    expect_reject(t, r, NULL, PD_ERR_INVALID, "adapter", NULL);
    pd_trainer_stats st;
    pd_trainer_stats_get(t, &st);
    CHECK(st.queued == 0 && st.running == 0);
}

/* ==== Jobs: learning ==== */

/* Trains method on the good/bad task and returns the final evaluation accuracy. */
static double learn_cls(pd_trainer *t, pd_registry *reg, const char *name, const char *method, const char *config, double lr,
                        int epochs, double *ex_s) {
    cJSON *r = request(name, method, "classification", config);
    cJSON_AddItemToObject(r, "labels", cJSON_Parse("[\"neg\", \"pos\"]"));
    cJSON_AddItemToObject(r, "train", cls_examples(320, 11));
    cJSON_AddItemToObject(r, "eval", cls_examples(200, 99));
    cJSON_AddNumberToObject(r, "epochs", epochs);
    cJSON_AddNumberToObject(r, "batch_size", 16);
    cJSON_AddNumberToObject(r, "learning_rate", lr);
    cJSON_AddNumberToObject(r, "warmup_ratio", 0.06);
    cJSON_AddNumberToObject(r, "weight_decay", 0.01);
    cJSON_AddStringToObject(r, "publish", "best");
    char id[32];
    double acc = NAN;
    if (submit(t, r, NULL, id, sizeof id)) {
        CHECKF(0, "%s: %s", method, err);
        cJSON_Delete(r);
        return acc;
    }
    cJSON_Delete(r);
    cJSON *j = wait_job(t, id, 600);
    CHECKF(!strcmp(jstr(j, "status"), "succeeded"), "%s: job %s (%s)", method, jstr(j, "status"), jstr(j, "error"));
    acc = last_eval(j, "accuracy");
    const cJSON *best = cJSON_GetObjectItem(j, "best");
    *ex_s = jnum(j, "examples_per_s");
    const cJSON *l0 = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "loss"), 0), 1);
    printf("  %-14s eval accuracy %.3f (best %.3f at step %.0f), train loss %.3f -> eval loss %.3f, %.0f examples/s, %d versions\n",
           method, acc, jnum(best, "value"), jnum(best, "step"), l0 ? l0->valuedouble : NAN, last_eval(j, "loss"), *ex_s,
           cJSON_GetArraySize(cJSON_GetObjectItem(j, "published_versions")));
    /* the published version serves predictions */
    pd_adapter *a = NULL;
    int ver = 0;
    CHECKF(pd_registry_get(reg, name, &a, &ver, err, sizeof err) == PD_OK && ver >= 1, "%s: no published version", name);
    if (a) {
        CHECK(pd_adapter_method(a) != 0 && pd_adapter_num_labels(a) == 2);
        pd_adapter_release(a);
    }
    cJSON_Delete(j);
    return acc;
}

static void test_learning(pd_trainer *t, pd_registry *reg) {
    struct { const char *method, *config; double lr; int epochs; } runs[] = {
        {"lora", "{\"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": 0.05, \"target_modules\": [\"query\", \"value\"]}", 1e-2, 10},
        {"prefix_tuning", "{\"num_virtual_tokens\": 8}", 3e-2, 10},
        {"prompt_tuning", "{\"num_virtual_tokens\": 8}", 3e-2, 10},
        {"bottleneck", "{\"architecture\": \"seq_bn\", \"reduction_factor\": 4}", 3e-2, 10},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char name[64];
        double ex_s = 0;
        snprintf(name, sizeof name, "learn-%s", runs[i].method);
        double acc = learn_cls(t, reg, name, runs[i].method, runs[i].config, runs[i].lr, runs[i].epochs, &ex_s);
        CHECKF(acc >= 0.8, "%s: accuracy %.3f on a balanced 2-class task (chance 0.5)", runs[i].method, acc);
    }
}

static void test_qa_learning(pd_trainer *t, pd_registry *reg) {
    cJSON *r = request("learn-qa", "lora", "question_answering", "{\"r\": 8, \"lora_alpha\": 16, \"target_modules\": [\"query\", \"key\", \"value\", \"output.dense\"]}");
    cJSON_AddItemToObject(r, "train", qa_examples(320, 5));
    cJSON_AddItemToObject(r, "eval", qa_examples(100, 77));
    cJSON_AddNumberToObject(r, "epochs", 12);
    cJSON_AddNumberToObject(r, "batch_size", 16);
    cJSON_AddNumberToObject(r, "learning_rate", 1e-2);
    char id[32];
    if (submit(t, r, NULL, id, sizeof id)) {
        CHECKF(0, "qa: %s", err);
        cJSON_Delete(r);
        return;
    }
    cJSON_Delete(r);
    cJSON *j = wait_job(t, id, 600);
    CHECKF(!strcmp(jstr(j, "status"), "succeeded"), "qa job %s (%s)", jstr(j, "status"), jstr(j, "error"));
    const cJSON *ev = cJSON_GetObjectItem(j, "eval");
    double f1_0 = jnum(cJSON_GetArrayItem(cJSON_GetArrayItem(ev, 0), 1), "f1"), f1 = last_eval(j, "f1");
    printf("  %-14s eval F1 %.3f (after epoch 1: %.3f), exact match %.3f, loss %.3f, %.0f examples/s\n", "lora (QA)", f1, f1_0,
           last_eval(j, "accuracy"), last_eval(j, "loss"), jnum(j, "examples_per_s"));
    CHECKF(f1 >= 0.6, "QA F1 %.3f", f1);
    int ver = 0;
    pd_adapter *a = NULL;
    CHECK(pd_registry_get(reg, "learn-qa", &a, &ver, err, sizeof err) == PD_OK && pd_adapter_task(a) == PD_TASK_QA);
    pd_adapter_release(a);
    cJSON_Delete(j);
}

/* ==== Jobs: determinism, cancel, resume ==== */

static atomic_int slow_ms;

/* A yield callback that only slows the trainer down (returns "nothing waiting"). */
static int slow_waiting(void *arg) {
    (void)arg;
    int ms = atomic_load(&slow_ms);
    if (ms > 0) sleep_ms(ms);
    return 0;
}

static cJSON *det_request(const char *name) {
    cJSON *r = request(name, "lora", "classification", "{\"r\": 4, \"lora_dropout\": 0.1, \"target_modules\": [\"query\", \"value\"]}");
    cJSON_AddItemToObject(r, "train", cls_examples(96, 3));
    cJSON_AddNumberToObject(r, "eval_fraction", 0.25);
    cJSON_AddNumberToObject(r, "epochs", 4);
    cJSON_AddNumberToObject(r, "batch_size", 4);
    cJSON_AddNumberToObject(r, "warmup_ratio", 0.1);
    cJSON_AddNumberToObject(r, "weight_decay", 0.1);
    cJSON_AddNumberToObject(r, "eval_every", 10);
    cJSON_AddNumberToObject(r, "seed", 1234);
    return r;
}

static char *run_to_end(pd_trainer *t, pd_registry *reg, cJSON *r, size_t *len, cJSON **job_out) {
    char id[32];
    *len = 0;
    pd_status st = submit(t, r, NULL, id, sizeof id);
    CHECKF(st == PD_OK, "submit: %s", err);
    const char *name = jstr(r, "adapter");
    char nm[80];
    snprintf(nm, sizeof nm, "%s", name);
    cJSON_Delete(r);
    if (st) return NULL;
    cJSON *j = wait_job(t, id, 300);
    CHECKF(!strcmp(jstr(j, "status"), "succeeded"), "job %s: %s (%s)", id, jstr(j, "status"), jstr(j, "error"));
    char *b = adapter_bytes(reg, nm, len);
    if (job_out) *job_out = j;
    else cJSON_Delete(j);
    return b;
}

static void test_determinism(pd_trainer *t, pd_registry *reg) {
    size_t la = 0, lb = 0, lc = 0;
    char *a = run_to_end(t, reg, det_request("det-a"), &la, NULL);
    char *b = run_to_end(t, reg, det_request("det-b"), &lb, NULL);
    cJSON *r = det_request("det-c");
    cJSON_ReplaceItemInObject(r, "seed", cJSON_CreateNumber(1235));
    char *c = run_to_end(t, reg, r, &lc, NULL);
    CHECKF(a && b && la == lb && la > 0 && !memcmp(a, b, la), "same seed, different adapters (%zu vs %zu bytes)", la, lb);
    CHECKF(c && !(lc == la && !memcmp(a, c, la)), "a different seed gave the same adapter");
    free(a);
    free(b);
    free(c);
}

static void test_cancel(pd_trainer *t, pd_registry *reg) {
    atomic_store(&slow_ms, 20);
    cJSON *r = det_request("cancel-me");
    cJSON_ReplaceItemInObject(r, "epochs", cJSON_CreateNumber(50));
    char id[32];
    CHECK(submit(t, r, NULL, id, sizeof id) == PD_OK);
    cJSON_Delete(r);
    /* a second job for the same adapter is refused while this one runs */
    r = det_request("cancel-me");
    expect_reject(t, r, NULL, PD_ERR_CONFLICT, "cancel-me", id);
    for (int i = 0; i < 2000; i++) {
        cJSON *j = job_get(t, id);
        double step = jnum(j, "step");
        cJSON_Delete(j);
        if (step >= 3) break;
        sleep_ms(5);
    }
    CHECK(pd_trainer_cancel(t, id, err, sizeof err) == PD_OK);
    cJSON *j = wait_job(t, id, 30);
    CHECKF(!strcmp(jstr(j, "status"), "cancelled"), "status %s", jstr(j, "status"));
    CHECK(jnum(j, "step") < jnum(j, "total_steps"));
    /* nothing was published ("end"), so the adapter does not exist */
    pd_adapter *a = NULL;
    int ver = 0;
    CHECK(pd_registry_get(reg, "cancel-me", &a, &ver, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_trainer_cancel(t, id, err, sizeof err) == PD_ERR_CONFLICT); /* already finished */
    CHECK(pd_trainer_cancel(t, "j-999999", err, sizeof err) == PD_ERR_NOT_FOUND);
    cJSON_Delete(j);
    atomic_store(&slow_ms, 0);
    /* a queued job cancels at once: occupy the single worker, queue one more */
    atomic_store(&slow_ms, 5);
    char id1[32], id2[32];
    r = det_request("busy-1");
    CHECK(submit(t, r, NULL, id1, sizeof id1) == PD_OK);
    cJSON_Delete(r);
    r = det_request("busy-2");
    CHECK(submit(t, r, NULL, id2, sizeof id2) == PD_OK);
    cJSON_Delete(r);
    j = job_get(t, id2);
    CHECKF(!strcmp(jstr(j, "status"), "queued"), "second job %s", jstr(j, "status"));
    cJSON_Delete(j);
    CHECK(pd_trainer_cancel(t, id2, err, sizeof err) == PD_OK);
    j = job_get(t, id2);
    CHECK(!strcmp(jstr(j, "status"), "cancelled"));
    cJSON_Delete(j);
    CHECK(pd_trainer_cancel(t, id1, err, sizeof err) == PD_OK);
    cJSON_Delete(wait_job(t, id1, 30));
    atomic_store(&slow_ms, 0);
    cJSON *list = jobs_list(t);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(list, "jobs")) >= 3);
    cJSON_Delete(list);
}

/* Checkpoint + resume: a run interrupted by a trainer shutdown and resumed by a new trainer on
 * the same data dir ends with the same adapter bytes as an uninterrupted run. */
static void test_resume(const pd_model *m, pd_pool *pool) {
    char d1[] = "/tmp/pd_trainer_resume_XXXXXX";
    if (!mkdtemp(d1)) { CHECK(0); return; }
    pd_registry *reg = NULL;
    CHECK(pd_registry_open(m, NULL, 0, &reg, err, sizeof err) == PD_OK);
    /* uninterrupted */
    pd_trainer *t = new_trainer(m, reg, pool, NULL, 1);
    size_t la = 0, lb = 0;
    cJSON *r = det_request("resume-a");
    cJSON_ReplaceItemInObject(r, "epochs", cJSON_CreateNumber(6));
    cJSON_AddStringToObject(r, "publish", "every_eval");
    char *a = run_to_end(t, reg, r, &la, NULL);
    pd_trainer_free(t);
    /* interrupted after a few steps */
    t = new_trainer(m, reg, pool, d1, 1);
    pd_trainer_set_yield(t, slow_waiting, NULL);
    atomic_store(&slow_ms, 10);
    r = det_request("resume-b");
    cJSON_ReplaceItemInObject(r, "epochs", cJSON_CreateNumber(6));
    cJSON_AddStringToObject(r, "publish", "every_eval");
    char id[32];
    CHECK(submit(t, r, NULL, id, sizeof id) == PD_OK);
    cJSON_Delete(r);
    double step = 0;
    for (int i = 0; i < 4000 && step < 13; i++) {
        cJSON *j = job_get(t, id);
        step = jnum(j, "step");
        cJSON_Delete(j);
        sleep_ms(2);
    }
    pd_trainer_free(t); /* shutdown mid-run: checkpoint, job stays resumable */
    atomic_store(&slow_ms, 0);
    char jd[512];
    snprintf(jd, sizeof jd, "%s/.jobs/%s/job.json", d1, id);
    CHECKF(access(jd, F_OK) == 0, "no %s", jd);
    /* a new trainer finds it and finishes it */
    t = new_trainer(m, reg, pool, d1, 1);
    cJSON *j = wait_job(t, id, 300);
    CHECKF(!strcmp(jstr(j, "status"), "succeeded"), "resumed job %s (%s)", jstr(j, "status"), jstr(j, "error"));
    double from = jnum(j, "resumed_from_step");
    CHECKF(from >= 13 && from < jnum(j, "total_steps"), "resumed_from_step %g (interrupted at step >= %g)", from, step);
    printf("  interrupted at step %.0f, resumed from step %.0f of %.0f; %d versions published\n", step, from,
           jnum(j, "total_steps"), cJSON_GetArraySize(cJSON_GetObjectItem(j, "published_versions")));
    cJSON_Delete(j);
    char *b = adapter_bytes(reg, "resume-b", &lb);
    CHECKF(a && b && la == lb && la > 0 && !memcmp(a, b, la), "resumed run differs from the uninterrupted one (%zu vs %zu bytes)", la, lb);
    free(a);
    free(b);
    pd_trainer_free(t);
    /* a third start lists the finished job (and resumes nothing) */
    t = new_trainer(m, reg, pool, d1, 1);
    j = job_get(t, id);
    CHECKF(j && !strcmp(jstr(j, "status"), "succeeded"), "finished job not listed after restart");
    cJSON_Delete(j);
    /* checkpoints and data of a finished job are gone; spec and state stay */
    char p[600];
    snprintf(p, sizeof p, "%s/.jobs/%s/train.jsonl", d1, id);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/.jobs/%s/spec.json", d1, id);
    CHECK(access(p, F_OK) == 0);
    pd_trainer_free(t);
    pd_registry_free(reg);
    rm_tree(d1);
}

/* Continuing an existing adapter ("method" omitted): from the registry's current version, with
 * a data dir (its source is saved with the job), labels checked against the adapter's. */
static void test_continue(const pd_model *m, pd_pool *pool) {
    char d[] = "/tmp/pd_trainer_cont_XXXXXX";
    if (!mkdtemp(d)) { CHECK(0); return; }
    pd_registry *reg = NULL;
    CHECK(pd_registry_open(m, NULL, 0, &reg, err, sizeof err) == PD_OK);
    pd_trainer *t = new_trainer(m, reg, pool, d, 1);
    cJSON *r = request("cont", "prompt_tuning", "classification", "{\"num_virtual_tokens\": 4}");
    cJSON_AddItemToObject(r, "train", cls_examples(64, 21));
    cJSON_AddNumberToObject(r, "epochs", 2);
    size_t l1 = 0, l2 = 0;
    cJSON *j1 = NULL, *j2 = NULL;
    char *a = run_to_end(t, reg, r, &l1, &j1);
    /* a second job on the same adapter, continuing from version 1 with QA-free labels checks */
    r = request("cont", NULL, NULL, NULL);
    cJSON_AddItemToObject(r, "labels", cJSON_Parse("[\"pos\", \"neg\"]"));
    cJSON_AddItemToObject(r, "train", cls_examples(8, 22));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "labels", "differ");
    r = request("cont", NULL, NULL, "{\"num_virtual_tokens\": 8}");
    cJSON_AddItemToObject(r, "train", cls_examples(8, 22));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "config", "existing adapter");
    r = request("cont", NULL, "question_answering", NULL);
    cJSON_AddItemToObject(r, "train", qa_examples(8, 22));
    expect_reject(t, r, NULL, PD_ERR_MISMATCH, "task", NULL);
    r = request("cont", NULL, NULL, NULL);
    cJSON_AddItemToObject(r, "train", cls_examples(64, 23));
    cJSON_AddNumberToObject(r, "eval_fraction", 0.25);
    cJSON_AddNumberToObject(r, "epochs", 2);
    char *b = run_to_end(t, reg, r, &l2, &j2);
    CHECKF(j2 && !strcmp(jstr(j2, "method"), "prompt_tuning") && cJSON_GetArraySize(cJSON_GetObjectItem(j2, "eval")) == 2,
           "continued job: %s", j2 ? jstr(j2, "status") : "none");
    const cJSON *pv = cJSON_GetObjectItem(j2, "published_versions");
    CHECK(cJSON_GetArraySize(pv) == 1 && cJSON_GetArrayItem(pv, 0)->valueint == 2);
    CHECK(a && b && !(l1 == l2 && !memcmp(a, b, l1))); /* it trained further */
    free(a);
    free(b);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    pd_trainer_free(t);
    pd_registry_free(reg);
    rm_tree(d);
}

/* Micro-batches accumulate the same gradient as one batch. */
static void test_microbatch(const pd_model *m, pd_pool *pool) {
    cJSON *cfg = cJSON_Parse("{\"r\": 4, \"target_modules\": [\"query\", \"value\"]}");
    char *labels[] = {"neg", "pos"};
    pd_adapter *a = NULL;
    if (pd_adapter_new_trainable(m, PD_METHOD_LORA, cfg, PD_TASK_CLS, labels, 2, 5, &a, err, sizeof err)) {
        CHECKF(0, "%s", err);
        cJSON_Delete(cfg);
        return;
    }
    cJSON_Delete(cfg);
    /* make B non-zero so every gradient is */
    int nt = n_params(a);
    for (int i = 0; i < nt; i++) {
        float *d, *g;
        size_t n;
        int dec;
        const char *name;
        param_get(a, i, &d, &g, &n, &dec, &name);
        for (size_t k = 0; k < n; k++) d[k] += 0.05f * ((float)(rnd32() % 2001) / 1000.0f - 1.0f);
    }
    pd_adapter_params_changed(a);
    pd_train_example ex[6];
    int idx[6];
    int32_t ids[6][12];
    for (int i = 0; i < 6; i++) {
        ex[i] = (pd_train_example){ids[i], NULL, 4 + i, i & 1, 0, 0};
        ids[i][0] = 2;
        for (int k = 1; k < ex[i].len - 1; k++) ids[i][k] = 100 + (int)(rnd32() % 400);
        ids[i][ex[i].len - 1] = 3;
        idx[i] = i;
    }
    double l1 = 0, l2 = 0;
    float *g1 = NULL;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        pd_train_engine *e = NULL;
        CHECK(pd_train_engine_new(m, a, PD_TASK_CLS, pool, pass ? 9 : 0, &e, err, sizeof err) == PD_OK);
        pd_adapter_zero_grad(a);
        CHECK(pd_train_engine_grad(e, ex, idx, 6, pass ? &l2 : &l1, err, sizeof err) == PD_OK);
        pd_train_engine_free(e);
        size_t off = 0;
        double worst = 0;
        for (int i = 0; i < nt; i++) {
            float *d, *g;
            size_t n;
            int dec;
            const char *name;
            param_get(a, i, &d, &g, &n, &dec, &name);
            if (!pass) {
                g1 = realloc(g1, sizeof(float) * (off + n));
                memcpy(g1 + off, g, sizeof(float) * n);
            } else {
                double gmax = 0, diff = 0;
                for (size_t k = 0; k < n; k++) {
                    gmax = fmax(gmax, fabs(g1[off + k]));
                    diff = fmax(diff, fabs(g1[off + k] - g[k]));
                }
                if (gmax > 0) worst = fmax(worst, diff / gmax);
            }
            off += n;
        }
        total = off;
        if (pass) CHECKF(worst < 1e-5, "micro-batched gradient differs by %.2e", worst);
    }
    CHECK(total > 0);
    CHECK_NEAR(l1, l2, 1e-6);
    free(g1);
    pd_adapter_release(a);
}

/* A data dir of the old layout (jobs in DATA_DIR/jobs/j-<n>, beside the adapters) next to an
 * adapter legitimately named "jobs": at start-up the jobs move to DATA_DIR/.jobs, a finished
 * one is listed, an interrupted one resumes and finishes, the adapter "jobs" keeps its
 * versions and keeps serving, and new jobs count on from the old ids. */
static void test_old_layout(const pd_model *m, pd_pool *pool) {
    char d[] = "/tmp/pd_trainer_old_XXXXXX", d2[] = "/tmp/pd_trainer_old2_XXXXXX";
    if (!mkdtemp(d) || !mkdtemp(d2)) { CHECK(0); return; }
    /* the adapter "jobs", published in d */
    pd_registry *reg = NULL;
    CHECK(pd_registry_open(m, d, 0, &reg, err, sizeof err) == PD_OK);
    cJSON *cfg = cJSON_Parse("{\"r\": 2}");
    char *labels[] = {"neg", "pos"};
    pd_adapter *a = NULL, *snap = NULL;
    CHECK(pd_adapter_new_trainable(m, PD_METHOD_LORA, cfg, PD_TASK_CLS, labels, 2, 9, &a, err, sizeof err) == PD_OK);
    cJSON_Delete(cfg);
    CHECK(a && pd_adapter_snapshot(a, &snap, err, sizeof err) == PD_OK);
    CHECKF(snap && pd_registry_publish_adapter(reg, "jobs", snap, NULL, NULL, err, sizeof err) == PD_OK, "publish jobs: %s", err);
    pd_adapter_release(a);
    pd_adapter_release(snap);
    pd_registry_free(reg);
    /* two jobs made in d2 (one finished, one interrupted), moved to where the old layout kept them */
    CHECK(pd_registry_open(m, NULL, 0, &reg, err, sizeof err) == PD_OK);
    pd_trainer *t = new_trainer(m, reg, pool, d2, 1);
    cJSON *r = request("old-a", "lora", "classification", "{\"r\": 2}");
    cJSON_AddItemToObject(r, "train", cls_examples(16, 5));
    cJSON_AddNumberToObject(r, "epochs", 1);
    size_t len = 0;
    free(run_to_end(t, reg, r, &len, NULL));
    pd_trainer_set_yield(t, slow_waiting, NULL);
    atomic_store(&slow_ms, 10);
    r = det_request("old-b");
    char id[32];
    CHECK(submit(t, r, NULL, id, sizeof id) == PD_OK);
    cJSON_Delete(r);
    for (int i = 0; i < 4000; i++) {
        cJSON *j = job_get(t, id);
        double step = jnum(j, "step");
        cJSON_Delete(j);
        if (step >= 3) break;
        sleep_ms(2);
    }
    pd_trainer_free(t);
    atomic_store(&slow_ms, 0);
    pd_registry_free(reg);
    char from[600], to[600];
    for (int k = 1; k <= 2; k++) {
        snprintf(from, sizeof from, "%s/.jobs/j-%d", d2, k);
        snprintf(to, sizeof to, "%s/jobs/j-%d", d, k);
        CHECKF(rename(from, to) == 0, "rename %s %s", from, to);
    }
    /* start-up on d */
    CHECK(pd_registry_open(m, d, 0, &reg, err, sizeof err) == PD_OK);
    t = new_trainer(m, reg, pool, d, 1);
    cJSON *j1 = job_get(t, "j-1"), *j2 = wait_job(t, "j-2", 300);
    CHECKF(j1 && !strcmp(jstr(j1, "status"), "succeeded") && !strcmp(jstr(j1, "adapter"), "old-a"), "old finished job: %s",
           j1 ? jstr(j1, "status") : "missing");
    CHECKF(j2 && !strcmp(jstr(j2, "status"), "succeeded") && jnum(j2, "resumed_from_step") >= 3, "old interrupted job: %s (%s)",
           j2 ? jstr(j2, "status") : "missing", j2 ? jstr(j2, "error") : "");
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    snprintf(to, sizeof to, "%s/jobs/j-1", d);
    CHECK(access(to, F_OK) != 0);
    snprintf(to, sizeof to, "%s/.jobs/j-1/job.json", d);
    CHECK(access(to, F_OK) == 0);
    snprintf(to, sizeof to, "%s/jobs/1", d); /* the adapter's version stays where it was */
    CHECK(access(to, F_OK) == 0);
    pd_adapter *ja = NULL;
    int ver = 0;
    CHECKF(pd_registry_get(reg, "jobs", &ja, &ver, err, sizeof err) == PD_OK && ver == 1, "adapter jobs: %s", err);
    pd_adapter_release(ja);
    r = request("old-c", "lora", "classification", "{\"r\": 2}");
    cJSON_AddItemToObject(r, "train", cls_examples(8, 6));
    CHECK(submit(t, r, NULL, id, sizeof id) == PD_OK && !strcmp(id, "j-3"));
    cJSON_Delete(r);
    cJSON_Delete(wait_job(t, id, 300));
    pd_trainer_free(t);
    pd_registry_free(reg);
    /* a restart finds everything in its new place, and the adapter still */
    CHECK(pd_registry_open(m, d, 0, &reg, err, sizeof err) == PD_OK);
    CHECKF(pd_registry_get(reg, "jobs", &ja, &ver, err, sizeof err) == PD_OK && ver == 1, "adapter jobs after restart: %s", err);
    pd_adapter_release(ja);
    t = new_trainer(m, reg, pool, d, 1);
    cJSON *list = jobs_list(t);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(list, "jobs")) == 3);
    cJSON_Delete(list);
    pd_trainer_free(t);
    pd_registry_free(reg);
    rm_tree(d);
    rm_tree(d2);
}

/* Finished jobs beyond pd_trainer_set_retention's limits are forgotten, records and directories,
 * oldest first; the newest stays even past the time limit, so ids count on after a restart. */
static int n_listed(pd_trainer *t) {
    cJSON *list = jobs_list(t);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(list, "jobs"));
    cJSON_Delete(list);
    return n;
}

static int job_dir_exists(const char *d, int k) {
    char p[600];
    snprintf(p, sizeof p, "%s/.jobs/j-%d", d, k);
    return access(p, F_OK) == 0;
}

static void test_retention(const pd_model *m, pd_pool *pool) {
    char d[] = "/tmp/pd_trainer_keep_XXXXXX";
    if (!mkdtemp(d)) { CHECK(0); return; }
    pd_registry *reg = NULL;
    CHECK(pd_registry_open(m, NULL, 0, &reg, err, sizeof err) == PD_OK);
    pd_trainer *t = new_trainer(m, reg, pool, d, 1);
    pd_trainer_set_retention(t, 2, 0);
    char id[32];
    for (int k = 1; k <= 5; k++) {
        char name[16];
        snprintf(name, sizeof name, "keep-%d", k);
        cJSON *r = request(name, "lora", "classification", "{\"r\": 2}");
        cJSON_AddItemToObject(r, "train", cls_examples(16, (uint64_t)k));
        CHECKF(submit(t, r, NULL, id, sizeof id) == PD_OK, "submit %d: %s", k, err);
        cJSON_Delete(r);
        cJSON_Delete(wait_job(t, id, 300));
    }
    /* the last job's status says succeeded a moment before its end is recorded */
    for (int i = 0; i < 500 && n_listed(t) != 2; i++) sleep_ms(10);
    CHECKF(n_listed(t) == 2, "kept 2 of 5 finished jobs: %d listed", n_listed(t));
    cJSON *j = job_get(t, "j-1");
    CHECK(j == NULL);
    cJSON_Delete(j);
    CHECK(!job_dir_exists(d, 1) && !job_dir_exists(d, 3) && job_dir_exists(d, 4) && job_dir_exists(d, 5));
    pd_trainer_free(t);
    /* a restart with a time limit: the newest stays, and the next id counts on from it */
    t = new_trainer(m, reg, pool, d, 1);
    CHECK(n_listed(t) == 2);
    sleep_ms(20);
    pd_trainer_set_retention(t, 100, 0.01);
    CHECKF(n_listed(t) == 1 && !job_dir_exists(d, 4) && job_dir_exists(d, 5), "time limit: %d listed", n_listed(t));
    cJSON *r = request("keep-6", "lora", "classification", "{\"r\": 2}");
    cJSON_AddItemToObject(r, "train", cls_examples(16, 6));
    CHECKF(submit(t, r, NULL, id, sizeof id) == PD_OK && !strcmp(id, "j-6"), "next id after forgetting: %s", id);
    cJSON_Delete(r);
    cJSON_Delete(wait_job(t, id, 300));
    pd_trainer_free(t);
    pd_registry_free(reg);
    rm_tree(d);
}

int main(void) {
    test_adamw();
    test_schedule();
    if (access(REF "bert_cls_f32", R_OK) != 0) {
        TEST_SKIP("no reference models");
        return TEST_SUMMARY("test_trainer");
    }
    pd_model *m = load_model("bert_cls_f32");
    pd_model *mqa = load_model("bert_qa_f32");
    if (!m || !mqa) return TEST_SUMMARY("test_trainer");
    pd_pool *pool = pd_pool_new(2);
    test_clip(m);
    test_microbatch(m, pool);
    printf("gradients and AdamW steps vs torch autograd (%s)\n", GOLD);
    static const char *const cases[] = {"bert_cls_lora", "bert_cls_prefix", "bert_cls_prompt", "bert_cls_seq_bn",
                                        "distilbert_cls_par_bn", "roberta_qa_lora"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_golden(cases[i], 0);
    test_golden("bert_cls_lora", 12);   /* micro-batches of one or two sequences */
    test_golden("roberta_qa_lora", 20);
    pd_registry *reg = NULL;
    CHECK(pd_registry_open(m, NULL, 0, &reg, err, sizeof err) == PD_OK);
    pd_trainer *t = new_trainer(m, reg, pool, NULL, 1);
    pd_trainer_set_yield(t, slow_waiting, NULL);
    test_validation(t);
    printf("learning (bert_cls_f32, good/bad words, 320 train / 200 eval, chance 0.5)\n");
    test_learning(t, reg);
    test_determinism(t, reg);
    test_cancel(t, reg);
    pd_trainer_free(t);
    pd_registry_free(reg);
    /* QA on its own base */
    CHECK(pd_registry_open(mqa, NULL, 0, &reg, err, sizeof err) == PD_OK);
    t = new_trainer(mqa, reg, pool, NULL, 1);
    printf("learning (bert_qa_f32, synthetic extractive QA)\n");
    test_qa_learning(t, reg);
    pd_trainer_free(t);
    pd_registry_free(reg);
    test_resume(m, pool);
    test_continue(m, pool);
    test_old_layout(m, pool);
    test_retention(m, pool);
    pd_pool_free(pool);
    pd_model_free(m);
    pd_model_free(mqa);
    return TEST_SUMMARY("test_trainer");
}
