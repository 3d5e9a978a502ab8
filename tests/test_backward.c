/* test_backward.c - the encoder's backward pass against central finite differences.
 *
 * A test delta (LoRA on two linears, a soft prompt, prefix keys/values, and a replaced
 * sub-layer that adds a learned vector before the LayerNorm) exercises every training
 * callback core offers; the loss is the head's cross-entropy. For a sample of parameters the
 * analytic gradient must match (L(p+e) - L(p-e)) / 2e. The forward pass runs in float, so e
 * is 1e-2 and the check is on relative error with a small absolute floor. */
#include "model.h"
#include "test.h"

#include <cblas.h>
#include <string.h>
#include <unistd.h>

#define REF "tests/reference/models/"

typedef struct {
    int H, layers, r, np, nf;
    float *A, *B, *gA, *gB;       /* LoRA on Q and FFN2 of every layer: A (layers, 2, r, in<=ffn), B (layers, 2, out, r) */
    int in_max;
    float *prompt, *gprompt;       /* (np, H) */
    float *pk, *pv, *gpk, *gpv;    /* (layers, nf, H) */
    const float **pkp, **pvp;
    float *bias, *gbias;           /* (layers, 2, H): added to h before the LayerNorm */
} tdelta;

static tdelta T;
static pd_delta D;

static float *lora_A(int l, int w) { return T.A + ((size_t)l * 2 + w) * T.r * T.in_max; }
static float *lora_B(int l, int w) { return T.B + ((size_t)l * 2 + w) * T.H * T.r; }
static float *lora_gA(int l, int w) { return T.gA + ((size_t)l * 2 + w) * T.r * T.in_max; }
static float *lora_gB(int l, int w) { return T.gB + ((size_t)l * 2 + w) * T.H * T.r; }
static int slot(pd_lin which) { return which == PD_LIN_Q ? 0 : which == PD_LIN_FFN2 ? 1 : -1; }

static void t_linear(const pd_delta *d, int layer, pd_lin which, const float *x, float *y, int rows, int in, int out,
                     const pd_wmat *w, const float *b, pd_pool *pool) {
    int s = slot(which);
    if (s < 0) return;
    float *xa = malloc(sizeof(float) * rows * T.r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T.r, in, 1.0f, x, in, lora_A(layer, s), T.in_max, 0.0f, xa, T.r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, T.r, 1.0f, xa, T.r, lora_B(layer, s), T.r, 1.0f, y, out);
    free(xa);
}

static void t_linear_bwd(const pd_delta *d, int layer, pd_lin which, const float *x, const float *dy, float *dx, int rows, int in,
                         int out, const pd_wmat *w, const float *b, pd_pool *pool) {
    int s = slot(which);
    if (s < 0) return;
    float *xa = malloc(sizeof(float) * rows * T.r), *dxa = malloc(sizeof(float) * rows * T.r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, T.r, in, 1.0f, x, in, lora_A(layer, s), T.in_max, 0.0f, xa, T.r);
    /* gB += dy^T xa ; dxa = dy B ; gA += dxa^T x ; dx += dxa A */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, T.r, rows, 1.0f, dy, out, xa, T.r, 1.0f, lora_gB(layer, s), T.r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, T.r, out, 1.0f, dy, out, lora_B(layer, s), T.r, 0.0f, dxa, T.r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T.r, in, rows, 1.0f, dxa, T.r, x, in, 1.0f, lora_gA(layer, s), T.in_max);
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, T.r, 1.0f, dxa, T.r, lora_A(layer, s), T.in_max, 1.0f, dx, in);
    free(xa);
    free(dxa);
}

/* sub-layer: out = LN(h + resid + bias) */
static int t_sublayer(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *lw,
                      const float *lb, float eps, int rows, int dim, float *out, pd_pool *pool) {
    const float *bv = T.bias + ((size_t)layer * 2 + site) * dim;
    float *tmp = malloc(sizeof(float) * rows * dim);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < dim; i++) tmp[r * dim + i] = h[r * dim + i] + bv[i];
    pd_layernorm(NULL, tmp, resid, lw, lb, eps, rows, dim, out);
    free(tmp);
    return 1;
}

static int t_sublayer_bwd(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *lw,
                          const float *lb, float eps, int rows, int dim, const float *dout, float *dh, float *dresid, pd_pool *pool) {
    const float *bv = T.bias + ((size_t)layer * 2 + site) * dim;
    float *gb = T.gbias + ((size_t)layer * 2 + site) * dim;
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        float s[512];
        for (int i = 0; i < dim; i++) { s[i] = h[r * dim + i] + resid[r * dim + i] + bv[i]; mean += s[i]; }
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (s[i] - mean) * (s[i] - mean);
        var /= dim;
        double rstd = 1 / sqrt(var + eps), m1 = 0, m2 = 0;
        for (int i = 0; i < dim; i++) { double g = dout[r * dim + i] * lw[i]; m1 += g; m2 += g * (s[i] - mean) * rstd; }
        m1 /= dim; m2 /= dim;
        for (int i = 0; i < dim; i++) {
            float ds = (float)(rstd * (dout[r * dim + i] * lw[i] - m1 - (s[i] - mean) * rstd * m2));
            dh[r * dim + i] = ds;
            dresid[r * dim + i] = ds;
            gb[i] += ds;
        }
    }
    return 1;
}

static void t_prompt_bwd(const pd_delta *d, const float *g) {
    for (int i = 0; i < T.np * T.H; i++) T.gprompt[i] += g[i];
}

static void t_prefix_bwd(const pd_delta *d, int layer, const float *dk, const float *dv) {
    for (int i = 0; i < T.nf * T.H; i++) {
        T.gpk[(size_t)layer * T.nf * T.H + i] += dk[i];
        T.gpv[(size_t)layer * T.nf * T.H + i] += dv[i];
    }
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float rnd(float scale) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return ((float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1) * scale;
}

static float *fill(size_t n, float scale) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = rnd(scale);
    return p;
}

static void tdelta_init(const pd_config *c) {
    memset(&T, 0, sizeof T);
    T.H = c->hidden; T.layers = c->layers; T.r = 2; T.np = 2; T.nf = 3;
    T.in_max = c->ffn > c->hidden ? c->ffn : c->hidden;
    size_t la = (size_t)c->layers * 2 * T.r * T.in_max, lb = (size_t)c->layers * 2 * T.H * T.r;
    T.A = fill(la, 0.3f); T.B = fill(lb, 0.3f);
    T.gA = calloc(la, sizeof(float)); T.gB = calloc(lb, sizeof(float));
    T.prompt = fill((size_t)T.np * T.H, 0.5f); T.gprompt = calloc((size_t)T.np * T.H, sizeof(float));
    size_t pf = (size_t)c->layers * T.nf * T.H;
    T.pk = fill(pf, 0.5f); T.pv = fill(pf, 0.5f);
    T.gpk = calloc(pf, sizeof(float)); T.gpv = calloc(pf, sizeof(float));
    T.pkp = malloc(sizeof(float *) * c->layers); T.pvp = malloc(sizeof(float *) * c->layers);
    for (int l = 0; l < c->layers; l++) { T.pkp[l] = T.pk + (size_t)l * T.nf * T.H; T.pvp[l] = T.pv + (size_t)l * T.nf * T.H; }
    T.bias = fill((size_t)c->layers * 2 * T.H, 0.3f); T.gbias = calloc((size_t)c->layers * 2 * T.H, sizeof(float));
    memset(&D, 0, sizeof D);
    D.n_prompt = T.np; D.prompt = T.prompt;
    D.n_prefix = T.nf; D.prefix_k = T.pkp; D.prefix_v = T.pvp;
    D.linear = t_linear; D.linear_bwd = t_linear_bwd;
    D.sublayer = t_sublayer; D.sublayer_bwd = t_sublayer_bwd;
    D.prompt_bwd = t_prompt_bwd; D.prefix_bwd = t_prefix_bwd;
}

static void tdelta_free(void) {
    free(T.A); free(T.B); free(T.gA); free(T.gB); free(T.prompt); free(T.gprompt);
    free(T.pk); free(T.pv); free(T.gpk); free(T.gpv); free(T.pkp); free(T.pvp); free(T.bias); free(T.gbias);
}

/* Batch: two sequences on the test delta, one on the bare base. Loss = sum of head losses. */
static int32_t ids0[] = {2, 30, 31, 32, 33, 3}, ids1[] = {2, 40, 41, 3}, ids2[] = {2, 50, 51, 52, 3};

static double batch_loss(pd_ctx *c, const pd_head *head, const pd_head *ghead, int backward) {
    pd_seq s[3] = {{ids0, NULL, 6, &D, 0}, {ids1, NULL, 4, NULL, 0}, {ids2, NULL, 5, &D, 0}};
    char err[256];
    PD_ASSERT(pd_forward(c, s, 3, err, sizeof err) == PD_OK);
    pd_ctx_grad_hidden(c);
    double loss = 0;
    for (int i = 0; i < 3; i++) {
        int len = s[i].len;
        if (head->task == PD_TASK_QA) loss += pd_ctx_head_loss(c, i, head, ghead, 0, 1 + i % 2, len - 2, 1.0f, NULL);
        else loss += pd_ctx_head_loss(c, i, head, ghead, i % head->num_labels, 0, 0, 1.0f, NULL);
    }
    if (backward) PD_ASSERT(pd_backward(c, err, sizeof err) == PD_OK);
    return loss;
}

static void check_param(pd_ctx *c, const pd_head *head, const char *what, float *p, const float *g, size_t n, int samples) {
    double worst = 0;
    for (int k = 0; k < samples; k++) {
        size_t i = (size_t)((rs = rs * 6364136223846793005ull + 1442695040888963407ull) >> 33) % n;
        float keep = p[i], eps = 1e-2f;
        p[i] = keep + eps;
        double lp = batch_loss(c, head, NULL, 0);
        p[i] = keep - eps;
        double lm = batch_loss(c, head, NULL, 0);
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        double e = fabs(fd - g[i]) / (fabs(fd) + fabs(g[i]) + 1e-2);
        if (e > worst) worst = e;
    }
    CHECKF(worst < 1e-2, "%s: worst relative gradient error %g", what, worst);
    printf("  %-28s worst rel err %.2e over %d samples\n", what, worst, samples);
}

static void run(const char *name, pd_task task) {
    char dir[256], err[512];
    snprintf(dir, sizeof dir, REF "%s", name);
    pd_model *m = NULL;
    if (pd_model_load(dir, 0, &m, err, sizeof err)) { CHECKF(0, "%s: %s", name, err); return; }
    printf("%s\n", name);
    const pd_config *cf = pd_model_config(m);
    tdelta_init(cf);
    pd_pool *pool = pd_pool_new(2);
    pd_ctx *c = pd_ctx_new(m, pool);
    pd_ctx_set_training(c, 1);
    const pd_head *base = pd_model_head(m, task);
    /* a trainable copy of the head with gradient accumulators */
    pd_head head = *base, ghead = *base;
    float *hw[PD_HEAD_MAX_LAYERS], *hb[PD_HEAD_MAX_LAYERS], *gw[PD_HEAD_MAX_LAYERS], *gb[PD_HEAD_MAX_LAYERS];
    for (int k = 0; k < base->n_layers; k++) {
        size_t nw = (size_t)base->layer[k].in * base->layer[k].out;
        hw[k] = malloc(sizeof(float) * nw); memcpy(hw[k], base->layer[k].w, sizeof(float) * nw);
        hb[k] = malloc(sizeof(float) * base->layer[k].out); memcpy(hb[k], base->layer[k].b, sizeof(float) * base->layer[k].out);
        gw[k] = calloc(nw, sizeof(float)); gb[k] = calloc((size_t)base->layer[k].out, sizeof(float));
        head.layer[k].w = hw[k]; head.layer[k].b = hb[k];
        ghead.layer[k].w = gw[k]; ghead.layer[k].b = gb[k];
    }
    double loss = batch_loss(c, &head, &ghead, 1);
    CHECK(isfinite(loss) && loss > 0);
    /* inference and training forwards agree */
    {
        pd_ctx *ci = pd_ctx_new(m, pool);
        pd_seq s = {ids0, NULL, 6, &D, 0};
        PD_ASSERT(pd_forward(ci, &s, 1, err, sizeof err) == PD_OK);
        int n1, n2;
        const float *a = pd_ctx_hidden(ci, 0, &n1), *b = pd_ctx_hidden(c, 0, &n2);
        double md = 0;
        for (int i = 0; i < n1 * cf->hidden; i++) md = fmax(md, fabs(a[i] - b[i]));
        CHECKF(n1 == n2 && md < 1e-5, "training forward differs from inference by %g", md);
        pd_ctx_free(ci);
    }
    size_t lb = (size_t)cf->layers * 2 * T.H * T.r;
    /* only the used part of A (in = hidden for Q, ffn for FFN2) has gradients; sample layer 0 Q and last FFN2 */
    check_param(c, &head, "lora A (layer 0, query)", lora_A(0, 0), lora_gA(0, 0), (size_t)T.r * T.in_max, 12);
    check_param(c, &head, "lora B (all)", T.B, T.gB, lb, 12);
    check_param(c, &head, "lora A (last, ffn2)", lora_A(cf->layers - 1, 1), lora_gA(cf->layers - 1, 1), (size_t)T.r * T.in_max, 12);
    check_param(c, &head, "soft prompt", T.prompt, T.gprompt, (size_t)T.np * T.H, 12);
    check_param(c, &head, "prefix keys", T.pk, T.gpk, (size_t)cf->layers * T.nf * T.H, 12);
    check_param(c, &head, "prefix values", T.pv, T.gpv, (size_t)cf->layers * T.nf * T.H, 12);
    check_param(c, &head, "sub-layer bias", T.bias, T.gbias, (size_t)cf->layers * 2 * T.H, 12);
    for (int k = 0; k < base->n_layers; k++) {
        char w[64];
        snprintf(w, sizeof w, "head layer %d weight", k);
        check_param(c, &head, w, hw[k], gw[k], (size_t)base->layer[k].in * base->layer[k].out, 8);
        snprintf(w, sizeof w, "head layer %d bias", k);
        check_param(c, &head, w, hb[k], gb[k], (size_t)base->layer[k].out, 4);
    }
    for (int k = 0; k < base->n_layers; k++) { free(hw[k]); free(hb[k]); free(gw[k]); free(gb[k]); }
    tdelta_free();
    pd_ctx_free(c);
    pd_pool_free(pool);
    pd_model_free(m);
}

int main(void) {
    if (access(REF "bert_cls_f32", R_OK) != 0) {
        TEST_SKIP("no reference models");
        return TEST_SUMMARY("test_backward");
    }
    run("bert_cls_f32", PD_TASK_CLS);
    run("roberta_qa_f32", PD_TASK_QA);
    run("distilbert_cls_f32", PD_TASK_CLS);
    return TEST_SUMMARY("test_backward");
}
