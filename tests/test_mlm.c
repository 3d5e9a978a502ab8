/* test_mlm.c - weight gradients of the whole encoder and the masked-LM head (core/mlm.c,
 * pd_ctx_set_grad), pd_params and its Hugging Face checkpoint writer.
 *
 * 1. Finite differences: on a tiny BERT (2 layers, hidden 16) with random weights, the analytic
 *    gradient of the mean masked-LM loss of a packed batch of three sequences is compared with
 *    (L(p+e) - L(p-e)) / 2e for every parameter tensor: a sample of entries each, always
 *    including the entry of largest analytic gradient. The forward pass runs in float, so e is
 *    1e-2 and the check is on relative error with a small absolute floor, as test_backward does.
 * 2. Torch autograd: tests/reference/golden_mlm (made by gen_mlm.py from its own torch model, in
 *    float64) holds a tiny checkpoint, a batch, the loss and every gradient; peftd's must match.
 *    The same with a classification head over first_only sequences (fine-tuning every weight).
 * 3. Checkpoints: pd_params_save in F32 / F16 / BF16, read back by pd_model_load: the same
 *    values (rounded to the dtype) and the same hidden states as the model over the buffers. */
#include "grad_kernels.h"
#include "mlm.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"

#include <cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rs = 0x1234567ull;
static double urand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}

static pd_config tiny_config(void) {
    pd_config c;
    memset(&c, 0, sizeof c);
    c.arch = PD_ARCH_BERT;
    c.vocab = 40;
    c.hidden = 16;
    c.layers = 2;
    c.heads = 2;
    c.ffn = 24;
    c.max_pos = 24;
    c.max_tokens = 24;
    c.type_vocab = 2;
    c.ln_eps = 1e-12f;
    c.act = PD_ACT_GELU;
    return c;
}

/* Weights large enough that every path matters: N(0, 0.3)-like uniform, LayerNorm weights 1 +- 0.2. */
static void fill_random(pd_params *p) {
    for (int i = 0; i < p->n_tensors; i++) {
        const pd_param_tensor *t = pd_params_tensor(p, i);
        int ln_w = strstr(t->name, "LayerNorm.weight") != NULL;
        for (size_t k = 0; k < t->n; k++) {
            double u = 2 * urand() - 1;
            t->data[k] = (float)(ln_w ? 1.0 + 0.2 * u : 0.5 * u);
        }
    }
}

/* ==== The batch ==== */

#define NSEQ 3
static int32_t ids[NSEQ][10], types[NSEQ][10];
static const int lens[NSEQ] = {7, 5, 9};
static int32_t mrow[32], mlab[32];
static int nmask;

static void make_batch(int vocab) {
    int row = 0;
    nmask = 0;
    for (int s = 0; s < NSEQ; s++) {
        for (int t = 0; t < lens[s]; t++) {
            ids[s][t] = 1 + (int32_t)(urand() * (vocab - 1));
            types[s][t] = t >= lens[s] / 2;
            if (t % 3 == 1 || (s == 2 && t == 8)) {
                mrow[nmask] = row + t;
                mlab[nmask] = (int32_t)(urand() * vocab);
                ids[s][t] = 4; /* as if [MASK] */
                nmask++;
            }
        }
        row += lens[s];
    }
}

/* Mean masked-LM loss of the batch; with g, its gradient into g (zeroed first). */
static double batch_loss(pd_ctx *c, pd_mlm *h, const pd_params *p, pd_params *g) {
    pd_seq s[NSEQ];
    for (int i = 0; i < NSEQ; i++) s[i] = (pd_seq){ids[i], types[i], lens[i], NULL, 0};
    char err[256];
    pd_ctx_set_training(c, g != NULL);
    pd_ctx_set_grad(c, g);
    PD_ASSERT(pd_forward(c, s, NSEQ, err, sizeof err) == PD_OK);
    int rows;
    const float *hid = pd_ctx_hidden_all(c, &rows);
    float *dh = g ? pd_ctx_grad_hidden(c) : NULL;
    if (g) memset(g->data, 0, g->n * sizeof(float));
    double loss;
    pd_status st = pd_mlm_loss(h, pd_ctx_pool(c), p, hid, rows, mrow, mlab, nmask, 1.0f / nmask, dh, g, &loss, NULL, err,
                               sizeof err);
    PD_ASSERT(st == PD_OK);
    if (g) PD_ASSERT(pd_backward(c, err, sizeof err) == PD_OK);
    return loss / nmask;
}

static void finite_differences(void) {
    pd_config cfg = tiny_config();
    pd_params *p = pd_params_new(&cfg, 1), *g = pd_params_new(&cfg, 1);
    CHECK(p && g);
    if (!p || !g) return;
    fill_random(p);
    make_batch(cfg.vocab);
    pd_model *m = NULL;
    char err[256];
    CHECK(pd_model_from_params(p, NULL, &m, err, sizeof err) == PD_OK);
    pd_pool *pool = pd_pool_new(2);
    pd_ctx *c = pd_ctx_new(m, pool);
    pd_mlm *h = pd_mlm_new();
    double l0 = batch_loss(c, h, p, g);
    CHECK(isfinite(l0) && l0 > 0);
    /* the inference forward gives the same loss as the training one */
    CHECK_NEAR(batch_loss(c, h, p, NULL), l0, 1e-6);
    printf("finite differences, loss %.4f, %d masked tokens\n", l0, nmask);
    double worst_all = 0;
    for (int ti = 0; ti < p->n_tensors; ti++) {
        const pd_param_tensor *t = pd_params_tensor(p, ti), *gt = pd_params_tensor(g, ti);
        size_t best = 0;
        for (size_t k = 1; k < t->n; k++)
            if (fabs(gt->data[k]) > fabs(gt->data[best])) best = k;
        double worst = 0, gmax = fabs(gt->data[best]);
        for (int sidx = 0; sidx < 6; sidx++) {
            size_t k = sidx == 0 ? best : (size_t)(urand() * t->n);
            float keep = t->data[k], e = 1e-2f;
            t->data[k] = keep + e;
            double lp = batch_loss(c, h, p, NULL);
            t->data[k] = keep - e;
            double lm = batch_loss(c, h, p, NULL);
            t->data[k] = keep;
            double fd = (lp - lm) / (2.0 * e), an = gt->data[k];
            double rel = fabs(fd - an) / (fabs(fd) + fabs(an) + 1e-2);
            if (rel > worst) worst = rel;
        }
        CHECKF(worst < 1e-2, "%s: worst relative gradient error %g", t->name, worst);
        /* every tensor learns, except the key bias: q.(k + b) shifts all of a query's scores
         * alike, which the softmax ignores, so its gradient is zero (to rounding) */
        if (strstr(t->name, "key.bias")) CHECKF(gmax < 1e-6, "%s: gradient %g, should be 0", t->name, gmax);
        else CHECKF(gmax > 1e-4, "%s: no gradient at all (largest %g)", t->name, gmax);
        if (worst > worst_all) worst_all = worst;
    }
    printf("  %d tensors, worst relative error %.2e\n", p->n_tensors, worst_all);
    /* a batch with a delta cannot have weight gradients */
    pd_delta d;
    memset(&d, 0, sizeof d);
    pd_seq sd = {ids[0], NULL, lens[0], &d, 0};
    pd_ctx_set_training(c, 1);
    pd_ctx_set_grad(c, g);
    CHECK(pd_forward(c, &sd, 1, err, sizeof err) == PD_OK);
    pd_ctx_grad_hidden(c);
    CHECK(pd_backward(c, err, sizeof err) == PD_ERR_UNSUPPORTED);
    /* labels and rows are checked */
    int32_t bad_lab = cfg.vocab, row0 = 0;
    double ls;
    CHECK(pd_mlm_loss(h, pool, p, pd_ctx_hidden_all(c, NULL), lens[0], &row0, &bad_lab, 1, 1.0f, NULL, NULL, &ls, NULL, err,
                      sizeof err) == PD_ERR_INVALID);
    int32_t bad_row = lens[0], lab0 = 1;
    CHECK(pd_mlm_loss(h, pool, p, pd_ctx_hidden_all(c, NULL), lens[0], &bad_row, &lab0, 1, 1.0f, NULL, NULL, &ls, NULL, err,
                      sizeof err) == PD_ERR_INVALID);
    pd_mlm_free(h);
    pd_ctx_free(c);
    pd_pool_free(pool);
    pd_model_free(m);
    pd_params_free(p);
    pd_params_free(g);
}

/* ==== Fine-tuning the whole encoder under a classification head ====
 * The same weight gradients with the sequences marked first_only (the top layer computes its
 * queries, attention output and feed-forward for row 0 alone): what fine-tuning every weight
 * with a classifier runs. */

static double cls_loss(pd_ctx *c, const pd_head *head, int backward) {
    pd_seq s[NSEQ];
    for (int i = 0; i < NSEQ; i++) s[i] = (pd_seq){ids[i], types[i], lens[i], NULL, 1};
    char err[256];
    PD_ASSERT(pd_forward(c, s, NSEQ, err, sizeof err) == PD_OK);
    pd_ctx_grad_hidden(c);
    double loss = 0;
    for (int i = 0; i < NSEQ; i++) loss += pd_ctx_head_loss(c, i, head, NULL, i % 2, 0, 0, 1.0f, NULL);
    if (backward) PD_ASSERT(pd_backward(c, err, sizeof err) == PD_OK);
    return loss;
}

static void classifier_finite_differences(void) {
    pd_config cfg = tiny_config();
    pd_params *p = pd_params_new(&cfg, 0), *g = pd_params_new(&cfg, 0);
    fill_random(p);
    make_batch(cfg.vocab);
    int H = cfg.hidden;
    float pw[16 * 16], pb[16], cw[2 * 16], cb[2];
    for (int i = 0; i < H * H; i++) pw[i] = (float)(urand() - 0.5);
    for (int i = 0; i < H; i++) pb[i] = (float)(0.2 * (urand() - 0.5));
    for (int i = 0; i < 2 * H; i++) cw[i] = (float)(urand() - 0.5);
    cb[0] = 0.1f;
    cb[1] = -0.1f;
    pd_head head = {PD_TASK_CLS, 2, {{pw, pb, H, H, PD_ACT_TANH}, {cw, cb, H, 2, PD_ACT_NONE}}, 2, NULL};
    pd_model *m = NULL;
    char err[256];
    CHECK(pd_model_from_params(p, NULL, &m, err, sizeof err) == PD_OK);
    pd_pool *pool = pd_pool_new(2);
    pd_ctx *c = pd_ctx_new(m, pool);
    pd_ctx_set_training(c, 1);
    pd_ctx_set_grad(c, g);
    double l0 = cls_loss(c, &head, 1);
    pd_ctx_set_grad(c, NULL);
    CHECK(isfinite(l0) && l0 > 0);
    double worst_all = 0;
    for (int ti = 0; ti < p->n_tensors; ti++) {
        const pd_param_tensor *t = pd_params_tensor(p, ti), *gt = pd_params_tensor(g, ti);
        size_t best = 0;
        for (size_t k = 1; k < t->n; k++)
            if (fabs(gt->data[k]) > fabs(gt->data[best])) best = k;
        double worst = 0;
        for (int sidx = 0; sidx < 4; sidx++) {
            size_t k = sidx == 0 ? best : (size_t)(urand() * t->n);
            float keep = t->data[k], e = 1e-2f;
            t->data[k] = keep + e;
            double lp = cls_loss(c, &head, 0);
            t->data[k] = keep - e;
            double lm = cls_loss(c, &head, 0);
            t->data[k] = keep;
            double fd = (lp - lm) / (2.0 * e), an = gt->data[k];
            double rel = fabs(fd - an) / (fabs(fd) + fabs(an) + 1e-2);
            if (rel > worst) worst = rel;
        }
        CHECKF(worst < 1e-2, "first_only %s: worst relative gradient error %g", t->name, worst);
        if (worst > worst_all) worst_all = worst;
    }
    printf("classifier over first_only sequences: %d tensors, worst relative error %.2e\n", p->n_tensors, worst_all);
    pd_ctx_free(c);
    pd_pool_free(pool);
    pd_model_free(m);
    pd_params_free(p);
    pd_params_free(g);
}

/* ==== Torch autograd goldens ==== */

#define GOLD "tests/reference/golden_mlm/"

static int json_ints(const cJSON *a, int32_t *out, int cap) {
    int n = cJSON_GetArraySize(a);
    if (n > cap) return -1;
    for (int i = 0; i < n; i++) out[i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
    return n;
}

static void torch_goldens(void) {
    char err[512];
    char *text = NULL;
    size_t len = 0;
    if (pd_read_file(GOLD "case.json", 64 << 20, &text, &len, err, sizeof err)) { CHECKF(0, "%s", err); return; }
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) { CHECKF(0, "golden_mlm/case.json does not parse"); return; }
    pd_model *ref = NULL;
    /* the checkpoint's config through the ordinary loader; its weights into a pd_params by name */
    if (pd_model_load(GOLD "model", 0, &ref, err, sizeof err)) { CHECKF(0, "%s", err); cJSON_Delete(o); return; }
    pd_config cfg = *pd_model_config(ref);
    cfg.labels = NULL;
    cfg.num_labels = 0;
    pd_params *p = pd_params_new(&cfg, 1), *g = pd_params_new(&cfg, 1);
    pd_st_file *f = NULL;
    CHECK(pd_st_open(GOLD "model/model.safetensors", &f, err, sizeof err) == PD_OK);
    for (int i = 0; f && i < p->n_tensors; i++) {
        const pd_param_tensor *t = pd_params_tensor(p, i);
        const pd_st_tensor *s = pd_st_find(f, t->name);
        CHECKF(s && pd_st_numel(s) == (int64_t)t->n && s->dtype == PD_DT_F32, "tensor %s", t->name);
        if (s && pd_st_numel(s) == (int64_t)t->n) memcpy(t->data, s->data, t->n * sizeof(float));
    }
    pd_st_close(f);
    const cJSON *seqs = cJSON_GetObjectItem(o, "sequences");
    int n = cJSON_GetArraySize(seqs);
    pd_seq s[8];
    int32_t sid[8][64], sty[8][64];
    int32_t rows[256], labels[256];
    int nm = 0, row = 0;
    for (int i = 0; i < n && i < 8; i++) {
        const cJSON *q = cJSON_GetArrayItem(seqs, i);
        int L = json_ints(cJSON_GetObjectItem(q, "ids"), sid[i], 64);
        json_ints(cJSON_GetObjectItem(q, "type_ids"), sty[i], 64);
        int32_t pos[64], lab[64];
        int k = json_ints(cJSON_GetObjectItem(q, "masked"), pos, 64);
        json_ints(cJSON_GetObjectItem(q, "labels"), lab, 64);
        for (int j = 0; j < k; j++) {
            rows[nm] = row + pos[j];
            labels[nm++] = lab[j];
        }
        s[i] = (pd_seq){sid[i], sty[i], L, NULL, 0};
        row += L;
    }
    pd_model *m = NULL;
    CHECK(pd_model_from_params(p, NULL, &m, err, sizeof err) == PD_OK);
    pd_pool *pool = pd_pool_new(2);
    pd_ctx *c = pd_ctx_new(m, pool);
    pd_mlm *h = pd_mlm_new();
    pd_ctx_set_training(c, 1);
    pd_ctx_set_grad(c, g);
    CHECK(pd_forward(c, s, n, err, sizeof err) == PD_OK);
    int R;
    const float *hid = pd_ctx_hidden_all(c, &R);
    float *dh = pd_ctx_grad_hidden(c);
    double loss;
    int correct;
    CHECK(pd_mlm_loss(h, pool, p, hid, R, rows, labels, nm, 1.0f / nm, dh, g, &loss, &correct, err, sizeof err) == PD_OK);
    CHECK(pd_backward(c, err, sizeof err) == PD_OK);
    double want = cJSON_GetObjectItem(o, "loss")->valuedouble;
    CHECKF(fabs(loss / nm - want) < 2e-5, "loss %.8f, torch %.8f", loss / nm, want);
    CHECKF(correct == (int)cJSON_GetObjectItem(o, "correct")->valuedouble, "correct %d", correct);
    const cJSON *grads = cJSON_GetObjectItem(o, "grads");
    double worst = 0;
    const char *worst_name = "";
    int seen = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const pd_param_tensor *t = pd_params_tensor(g, i);
        const cJSON *a = cJSON_GetObjectItem(grads, t->name);
        CHECKF(a && cJSON_GetArraySize(a) == (int)t->n, "golden gradient of %s", t->name);
        if (!a || cJSON_GetArraySize(a) != (int)t->n) continue;
        seen++;
        double scale = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, a) scale = fmax(scale, fabs(v->valuedouble));
        size_t k = 0;
        cJSON_ArrayForEach(v, a) {
            /* float32 against float64: relative to the tensor's largest gradient */
            double e = fabs(t->data[k++] - v->valuedouble) / (scale + 1e-2);
            if (e > worst) { worst = e; worst_name = t->name; }
        }
    }
    CHECK(seen == g->n_tensors && cJSON_GetArraySize(grads) == g->n_tensors);
    CHECKF(worst < 1e-4, "worst gradient error %g (relative to the tensor's largest) in %s", worst, worst_name);
    printf("torch goldens: loss %.6f (torch %.6f), %d tensors, worst gradient error %.2e of the tensor's largest\n", loss / nm,
           want, seen, worst);
    pd_mlm_free(h);
    pd_ctx_free(c);
    pd_pool_free(pool);
    pd_model_free(m);
    pd_model_free(ref);
    pd_params_free(p);
    pd_params_free(g);
    cJSON_Delete(o);
}

/* ==== Checkpoints ==== */

static void checkpoints(void) {
    pd_config cfg = tiny_config();
    pd_params *p = pd_params_new(&cfg, 1);
    fill_random(p);
    make_batch(cfg.vocab);
    char dir[] = "/tmp/peftd-test-mlm-XXXXXX", err[512];
    CHECK(mkdtemp(dir) != NULL);
    /* a tokenizer for pd_model_load: the vocabulary of tests/reference's bert models is larger
     * than 40, so write a small vocab.txt */
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *vf = fopen(path, "w");
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", vf);
    for (int i = 5; i < cfg.vocab; i++) fprintf(vf, "w%d\n", i);
    fclose(vf);
    float pw[16 * 16], pb[16];
    for (int i = 0; i < 16 * 16; i++) pw[i] = (float)(0.1 * (urand() - 0.5));
    for (int i = 0; i < 16; i++) pb[i] = 0;
    pd_st_wtensor pooler[2] = {{"bert.pooler.dense.weight", 2, {16, 16}, pw}, {"bert.pooler.dense.bias", 1, {16}, pb}};
    pd_model *mp = NULL;
    CHECK(pd_model_from_params(p, NULL, &mp, err, sizeof err) == PD_OK);
    pd_ctx *cp = pd_ctx_new(mp, NULL);
    pd_seq s[NSEQ];
    for (int i = 0; i < NSEQ; i++) s[i] = (pd_seq){ids[i], types[i], lens[i], NULL, 0};
    CHECK(pd_forward(cp, s, NSEQ, err, sizeof err) == PD_OK);
    int R;
    const float *hp = pd_ctx_hidden_all(cp, &R);
    const pd_dtype dts[3] = {PD_DT_F32, PD_DT_F16, PD_DT_BF16};
    CHECK(pd_params_save(p, pooler, 2, "BertForMaskedLM", PD_DT_F64, dir, err, sizeof err) == PD_ERR_INVALID);
    for (int d = 0; d < 3; d++) {
        pd_status st = pd_params_save(p, pooler, 2, "BertForMaskedLM", dts[d], dir, err, sizeof err);
        CHECKF(st == PD_OK, "save %s: %s", pd_dtype_name(dts[d]), err);
        pd_model *m = NULL;
        st = pd_model_load(dir, 0, &m, err, sizeof err);
        CHECKF(st == PD_OK, "load %s: %s", pd_dtype_name(dts[d]), err);
        if (st) continue;
        CHECK(!strcmp(pd_model_config(m)->dtype, pd_dtype_name(dts[d])));
        CHECK(pd_model_config(m)->layers == 2 && pd_model_config(m)->ffn == 24 && pd_model_config(m)->vocab == 40);
        /* every tensor as stored, rounded to the dtype */
        pd_st_file *f = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        CHECK(pd_st_open(path, &f, err, sizeof err) == PD_OK);
        CHECK(f && pd_st_count(f) == p->n_tensors + 2);
        int bad = 0;
        for (int i = 0; f && i < p->n_tensors; i++) {
            const pd_param_tensor *t = pd_params_tensor(p, i);
            const pd_st_tensor *x = pd_st_find(f, t->name);
            if (!x || x->dtype != dts[d] || pd_st_numel(x) != (int64_t)t->n) { bad++; continue; }
            float *v = NULL;
            pd_st_to_f32(x, &v, err, sizeof err);
            for (size_t k = 0; v && k < t->n; k++) {
                float want = dts[d] == PD_DT_F32 ? t->data[k]
                             : dts[d] == PD_DT_F16 ? pd_f16_to_f32(pd_f32_to_f16(t->data[k]))
                                                   : pd_bf16_to_f32(pd_f32_to_bf16(t->data[k]));
                if (v[k] != want) bad++;
            }
            free(v);
        }
        CHECKF(bad == 0, "%d values differ in the %s checkpoint", bad, pd_dtype_name(dts[d]));
        pd_st_close(f);
        /* the same hidden states (F32: within float rounding, as the loaded model's packed
         * weights are summed in another order than OpenBLAS sums the buffers; half types: within
         * their rounding) */
        pd_ctx *c = pd_ctx_new(m, NULL);
        CHECK(pd_forward(c, s, NSEQ, err, sizeof err) == PD_OK);
        const float *hm = pd_ctx_hidden_all(c, NULL);
        double md = 0;
        for (int i = 0; i < R * cfg.hidden; i++) md = fmax(md, fabs(hm[i] - hp[i]));
        double tol = dts[d] == PD_DT_F32 ? 1e-5 : dts[d] == PD_DT_F16 ? 2e-2 : 1e-1;
        CHECKF(md <= tol, "%s: hidden states differ by %g", pd_dtype_name(dts[d]), md);
        pd_ctx_free(c);
        pd_model_free(m);
    }
    pd_ctx_free(cp);
    pd_model_free(mp);
    const char *files[] = {"config.json", "model.safetensors", "vocab.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    CHECK(rmdir(dir) == 0); /* nothing else (no temporary files) was left */
    pd_params_free(p);
}

/* ==== Kernels against plain loops ==== */

static void kernels(void) {
    pd_pool *pool = pd_pool_new(2);
    int R = 300, C = 200;
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) { x[i] = (float)(urand() - 0.5); y[i] = (float)(urand() - 0.5); }
    float s1[200] = {0}, s2[200] = {0};
    pd_grad_bias_add(pool, x, R, C, s1);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) s2[c] += x[r * C + c];
    double md = 0;
    for (int c = 0; c < C; c++) md = fmax(md, fabs(s1[c] - s2[c]));
    CHECKF(md < 1e-4, "bias gradient off by %g", md);
    /* scatter with repeated and negative indices */
    int32_t idx[300];
    for (int r = 0; r < R; r++) idx[r] = r % 7 == 0 ? -1 : r % 11;
    float *d1 = calloc(11 * C, sizeof(float)), *d2 = calloc(11 * C, sizeof(float));
    pd_rows_scatter_add(pool, x, idx, R, C, d1);
    for (int r = 0; r < R; r++)
        if (idx[r] >= 0)
            for (int c = 0; c < C; c++) d2[idx[r] * C + c] += x[r * C + c];
    md = 0;
    for (int i = 0; i < 11 * C; i++) md = fmax(md, fabs(d1[i] - d2[i]));
    CHECKF(md < 1e-5, "scatter off by %g", md);
    /* cross-entropy, one row with an underflowing target */
    int32_t tg[300];
    for (int r = 0; r < R; r++) tg[r] = (r * 37) % C;
    x[0 * C + tg[0]] = -200.0f;
    double want = 0;
    int want_ok = 0;
    for (int r = 0; r < R; r++) {
        double mx = -1e30, s = 0;
        for (int c = 0; c < C; c++) mx = fmax(mx, x[r * C + c]);
        for (int c = 0; c < C; c++) s += exp(x[r * C + c] - mx);
        want += mx + log(s) - x[r * C + tg[r]];
        want_ok += x[r * C + tg[r]] >= mx;
    }
    memcpy(y, x, sizeof(float) * R * C);
    int ok;
    double got = pd_xent_rows(pool, y, tg, R, C, 0.5f, &ok);
    CHECKF(fabs(got - want) < 1e-6 * fabs(want) + 1e-4, "cross-entropy %g vs %g", got, want);
    CHECK(ok == want_ok);
    double gs = 0;
    for (int c = 0; c < C; c++) gs += y[5 * C + c];
    CHECK_NEAR(gs, 0.0, 1e-5); /* softmax minus one-hot sums to zero */
    CHECK(y[5 * C + tg[5]] < 0);
    free(x); free(y); free(d1); free(d2);
    pd_pool_free(pool);
}

int main(void) {
    kernels();
    finite_differences();
    classifier_finite_differences();
    checkpoints();
    struct stat sb;
    if (stat(GOLD "case.json", &sb) == 0) torch_goldens();
    else CHECKF(0, "tests/reference/golden_mlm/case.json is missing (run tests/reference/gen_mlm.py)");
    return TEST_SUMMARY("test_mlm");
}
