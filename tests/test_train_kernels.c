/* test_train_kernels.c - the backward-pass kernels of core/train_kernels.c against references
 * computed here in double precision from the textbook formulas (and, for activations, against
 * kernels.c's libm-based pd_act1_grad), for every body (instruction set) the CPU can run; and
 * that every body gives the same bits. Lengths that are not multiples of 16 exercise the
 * tails; the pool runs the GELU kernel on 1 and 2 threads. */
#include "test.h"
#include "test_isa.h"
#include "train_kernels.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x1234567u;
static float frand(float lo, float hi) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((rng >> 40) * (1.0 / 16777216.0));
}

static double gelu_grad_ref(double x) {
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

static void test_act_grad(pd_pool *pool) {
    size_t n = 40000 + 5; /* above the one-thread cutoff, odd tail */
    float *pre = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float)), *dy0 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        pre[i] = i < 8 ? (float[]){-100.0f, -9.0f, -4.5f, 0.0f, 1e-30f, 4.5f, 9.0f, 100.0f}[i] : frand(-8.0f, 8.0f);
        dy0[i] = frand(-2.0f, 2.0f);
    }
    memcpy(dy, dy0, n * sizeof(float));
    pd_act_grad_mul(pool, PD_ACT_GELU, pre, dy, n);
    double worst = 0, worst_lib = 0;
    for (size_t i = 0; i < n; i++) {
        double ref = dy0[i] * gelu_grad_ref(pre[i]);
        double e = fabs(dy[i] - ref) / (fabs(dy0[i]) + 1e-30);
        if (e > worst) worst = e;
        double el = fabs(dy[i] - dy0[i] * pd_act1_grad(PD_ACT_GELU, pre[i])) / (fabs(dy0[i]) + 1e-30);
        if (el > worst_lib) worst_lib = el;
    }
    printf("  GELU derivative, %d thread(s): worst error %.2e against double, %.2e against pd_act1_grad\n",
           pd_pool_size(pool), worst, worst_lib);
    CHECKF(worst < 2e-6, "%g", worst);
    CHECKF(worst_lib < 2e-6, "%g", worst_lib);
    /* other activations go through pd_act1_grad exactly */
    pd_act acts[] = {PD_ACT_GELU_TANH, PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SWISH, PD_ACT_SIGMOID};
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        memcpy(dy, dy0, n * sizeof(float));
        pd_act_grad_mul(pool, acts[a], pre, dy, n);
        int same = 1;
        for (size_t i = 0; i < n && same; i++) same = dy[i] == dy0[i] * pd_act1_grad(acts[a], pre[i]);
        CHECKF(same, "activation %s", pd_act_name(acts[a]));
    }
    memcpy(dy, dy0, n * sizeof(float));
    pd_act_grad_mul(pool, PD_ACT_NONE, pre, dy, n);
    CHECK(!memcmp(dy, dy0, n * sizeof(float)));
    free(pre);
    free(dy);
    free(dy0);
}

static void test_softmax(void) {
    int rows = 5, ld = 45;
    int widths[] = {1, 7, 8, 37, 45};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        int cols = widths[w];
        float *x = malloc(sizeof(float) * rows * ld), *orig = malloc(sizeof(float) * rows * ld);
        for (int i = 0; i < rows * ld; i++) orig[i] = x[i] = frand(-30.0f, 30.0f);
        pd_softmax_rows_ld(x, rows, cols, ld);
        double worst = 0;
        for (int r = 0; r < rows; r++) {
            const float *o = orig + r * ld;
            double mx = o[0], s = 0;
            for (int q = 1; q < cols; q++) mx = o[q] > mx ? o[q] : mx;
            for (int q = 0; q < cols; q++) s += exp(o[q] - mx);
            for (int q = 0; q < cols; q++) {
                double ref = exp(o[q] - mx) / s, e = fabs(x[r * ld + q] - ref) / (ref + 1e-7);
                if (e > worst) worst = e;
            }
            for (int q = cols; q < ld; q++) CHECK(x[r * ld + q] == o[q]); /* beyond cols untouched */
        }
        CHECKF(worst < 1e-5, "softmax width %d: %g", cols, worst);

        /* backward: g = scale * p * (g - <p, g>) */
        float *g = malloc(sizeof(float) * rows * ld), *g0 = malloc(sizeof(float) * rows * ld);
        for (int i = 0; i < rows * ld; i++) g0[i] = g[i] = frand(-1.0f, 1.0f);
        pd_softmax_bwd_rows(x, g, rows, cols, ld, 0.125f);
        worst = 0;
        for (int r = 0; r < rows; r++) {
            const float *p = x + r * ld, *gi = g0 + r * ld;
            double dot = 0;
            for (int q = 0; q < cols; q++) dot += (double)p[q] * gi[q];
            for (int q = 0; q < cols; q++) {
                double ref = 0.125 * p[q] * (gi[q] - dot), e = fabs(g[r * ld + q] - ref);
                if (e > worst) worst = e;
            }
        }
        CHECKF(worst < 1e-6, "softmax backward width %d: %g", cols, worst);
        free(x);
        free(orig);
        free(g);
        free(g0);
    }
}

/* dL/ds for y = LN(s) * w + b, s = h + resid, in double. */
static void ln_bwd_ref(const float *h, const float *resid, const float *w, double eps, int dim, const float *dy, double *ds) {
    double mean = 0, var = 0;
    for (int i = 0; i < dim; i++) mean += h[i] + (resid ? resid[i] : 0);
    mean /= dim;
    for (int i = 0; i < dim; i++) {
        double v = h[i] + (resid ? resid[i] : 0) - mean;
        var += v * v;
    }
    var /= dim;
    double rstd = 1.0 / sqrt(var + eps), m1 = 0, m2 = 0;
    for (int i = 0; i < dim; i++) {
        double xh = (h[i] + (resid ? resid[i] : 0) - mean) * rstd, gw = (double)dy[i] * w[i];
        m1 += gw;
        m2 += gw * xh;
    }
    m1 /= dim;
    m2 /= dim;
    for (int i = 0; i < dim; i++) {
        double xh = (h[i] + (resid ? resid[i] : 0) - mean) * rstd;
        ds[i] = rstd * ((double)dy[i] * w[i] - m1 - xh * m2);
    }
}

static void test_layernorm_bwd(void) {
    int dims[] = {3, 8, 64, 77, 768};
    for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
        int dim = dims[k], rows = 3;
        size_t n = (size_t)rows * dim;
        float *h = malloc(n * sizeof(float)), *res = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float));
        float *ds = malloc(n * sizeof(float)), *w = malloc(dim * sizeof(float));
        double *ref = malloc(dim * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            h[i] = frand(-3.0f, 5.0f);
            res[i] = frand(-1.0f, 1.0f);
            dy[i] = frand(-1.0f, 1.0f);
        }
        for (int i = 0; i < dim; i++) w[i] = frand(0.5f, 1.5f);
        for (int with_resid = 0; with_resid < 2; with_resid++) {
            const float *rp = with_resid ? res : NULL;
            pd_layernorm_bwd_rows(h, rp, w, 1e-12f, rows, dim, dy, ds);
            double worst = 0, scale = 0;
            for (int r = 0; r < rows; r++) {
                ln_bwd_ref(h + r * dim, rp ? rp + r * dim : NULL, w, 1e-12, dim, dy + r * dim, ref);
                for (int i = 0; i < dim; i++) {
                    double e = fabs(ds[r * dim + i] - ref[i]);
                    if (e > worst) worst = e;
                    if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
                }
            }
            CHECKF(worst <= 1e-5 * (scale > 1 ? scale : 1), "layer norm backward dim %d resid %d: %g (scale %g)", dim,
                   with_resid, worst, scale);
        }
        free(h);
        free(res);
        free(dy);
        free(ds);
        free(w);
        free(ref);
    }
}

/* Every kernel's output on fixed inputs, appended to out (n floats); returns n. */
static size_t outputs(float *out) {
    size_t n = 0, len = 1000 + 13;
    float pre[1013], x[2 * 4 * 77], g[8 * 45], w[77];
    uint64_t keep = rng;
    rng = 42;
    for (size_t i = 0; i < len; i++) {
        pre[i] = frand(-9.0f, 9.0f);
        out[n + i] = frand(-2.0f, 2.0f);
    }
    pd_act_grad_mul(NULL, PD_ACT_GELU, pre, out + n, len);
    n += len;
    for (int i = 0; i < 2 * 4 * 77; i++) x[i] = frand(-8.0f, 8.0f);
    for (int i = 0; i < 8 * 45; i++) g[i] = frand(-1.0f, 1.0f);
    for (int i = 0; i < 77; i++) w[i] = frand(0.5f, 1.5f);
    pd_layernorm_bwd_rows(x, g, w, 1e-12f, 4, 77, x + 4 * 77, out + n);
    n += 4 * 77;
    pd_layernorm_bwd_rows(x, NULL, w, 1e-5f, 2, 45, g, out + n);
    n += 2 * 45;
    memcpy(out + n, g, sizeof g); /* x as p: any numbers do (pd_softmax_rows_ld differs by ISA) */
    pd_softmax_bwd_rows(x, out + n, 8, 43, 45, 0.125f);
    n += 8 * 45;
    rng = keep;
    return n;
}

int main(void) {
    pd_pool *two = pd_pool_new(2);
    float ref[4096], got[4096];
    size_t nref = 0;
    const char *isa;
    for (int k = 0; (isa = test_next_isa(&k));) {
        test_act_grad(NULL);
        test_act_grad(two);
        test_softmax();
        test_layernorm_bwd();
        /* the same bits as the scalar body */
        if (!strcmp(isa, "scalar")) nref = outputs(ref);
        else CHECKF(outputs(got) == nref && !memcmp(got, ref, nref * sizeof(float)), "%s: not the scalar body's bits", isa);
    }
    pd_pool_free(two);
    return TEST_SUMMARY("test_train_kernels");
}
