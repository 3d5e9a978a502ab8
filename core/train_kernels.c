/* train_kernels.c - backward-pass kernels. See train_kernels.h. */
#include "train_kernels.h"
#include "fastmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Forced, so the helpers are inlined into the AVX2 clone below (gcc does not inline a
 * default-target function into a target_clones one on its own). */
#define TK_INLINE __attribute__((always_inline))

/* ==== Fast elementwise math: the forward GELU's formulas (fastmath.h) ==== */

/* ==== Activation backward ==== */

typedef struct {
    pd_act a;
    const float *pre;
    float *dy;
    size_t n, chunk;
} actg_job;

/* GELU'(x) = Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi). */
TK_INLINE static inline float gelu_grad(float x) {
    float cdf = 0.5f + 0.5f * pd_fast_erff(x * 0.70710678118654752f);
    float pdf = pd_fast_expf(-0.5f * x * x) * 0.3989422804014327f;
    return cdf + x * pdf;
}

/* The same formula on 16 floats at a time with GCC/clang vector extensions (no intrinsics):
 * gcc -O2 does not vectorize the scalar loop (the clamps are control flow to it). On x86-64
 * the function is also compiled for AVX-512 (one zmm register per vector) and AVX2 (two ymm)
 * and picked at load time by CPU feature (target_clones; "arch=haswell" would test the CPU
 * model and never match an AMD one); the default build splits a vector into SSE registers.
 * Vectors only pass through pointers and macros: a function taking or returning a 64-byte
 * vector by value draws gcc's and clang's -Wpsabi ABI warning on non-AVX-512 builds. */
#define VW 16
typedef float vwf __attribute__((vector_size(4 * VW)));
typedef int32_t vwi __attribute__((vector_size(4 * VW)));

#define VW_SPLAT(c) ((vwf){(c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c), (c)})
/* x clamped to [lo, hi] by compare-and-select (NaN fails both compares and becomes lo). */
#define VW_CLAMP(x, lo, hi)                                                                       \
    do {                                                                                          \
        vwf lo_ = VW_SPLAT(lo), hi_ = VW_SPLAT(hi);                                               \
        vwi m_ = (x) > lo_;                                                                       \
        (x) = (vwf)((m_ & (vwi)(x)) | (~m_ & (vwi)lo_));                                         \
        m_ = (x) < hi_;                                                                           \
        (x) = (vwf)((m_ & (vwi)(x)) | (~m_ & (vwi)hi_));                                         \
    } while (0)

TK_INLINE static inline void vw_expf(vwf *px) {
    vwf x = *px;
    VW_CLAMP(x, -87.0f, 88.0f);
    vwf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vwf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vwf p = VW_SPLAT(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vwi e = (__builtin_convertvector(n, vwi) + 127) << 23;
    *px = p * (vwf)e;
}

TK_INLINE static inline void vw_erff(vwf *px) {
    vwf x = *px;
    VW_CLAMP(x, -4.0f, 4.0f);
    vwf x2 = x * x;
    vwf p = VW_SPLAT(-2.72614225801306e-10f);
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    vwf q = VW_SPLAT(-1.45660718464996e-05f);
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    *px = p / q;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define TK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TK_CLONES
#endif

TK_CLONES static void gelu_grad_mul(const float *pre, float *dy, size_t n) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        vwf x, g;
        memcpy(&x, pre + i, sizeof x);
        memcpy(&g, dy + i, sizeof g);
        vwf cdf = x * 0.70710678118654752f, pdf = -0.5f * x * x;
        vw_erff(&cdf);
        vw_expf(&pdf);
        g *= (0.5f + 0.5f * cdf) + x * (pdf * 0.3989422804014327f);
        memcpy(dy + i, &g, sizeof g);
    }
    for (; i < n; i++) dy[i] *= gelu_grad(pre[i]);
}

static void actg_range(pd_act a, const float *pre, float *dy, size_t n) {
    if (a == PD_ACT_GELU) {
        gelu_grad_mul(pre, dy, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dy[i] *= pd_act1_grad(a, pre[i]);
}

static void actg_task(void *arg, int t) {
    actg_job *j = arg;
    size_t s = (size_t)t * j->chunk, e = s + j->chunk;
    if (e > j->n) e = j->n;
    if (s < e) actg_range(j->a, j->pre + s, j->dy + s, e - s);
}

void pd_act_grad_mul(pd_pool *p, pd_act a, const float *pre, float *dy, size_t n) {
    if (a == PD_ACT_NONE || n == 0) return;
    int nt = pd_pool_size(p);
    if (n < 16384) nt = 1;
    actg_job j = {a, pre, dy, n, (n + (size_t)nt - 1) / (size_t)nt};
    j.chunk = (j.chunk + 15) & ~(size_t)15;
    pd_pool_run(p, actg_task, &j, (int)((n + j.chunk - 1) / j.chunk));
}

/* ==== LayerNorm backward ==== */

#define VW_HSUM(v)                                                                                   \
    (((((v)[0] + (v)[8]) + ((v)[4] + (v)[12])) + (((v)[1] + (v)[9]) + ((v)[5] + (v)[13]))) +            \
     ((((v)[2] + (v)[10]) + ((v)[6] + (v)[14])) + (((v)[3] + (v)[11]) + ((v)[7] + (v)[15]))))

/* One row of y = LN(a + b) * w + beta: ds = rstd * (g w - mean(g w) - xh mean(g w xh)), with
 * ds used as scratch for a + b and then xh. Sums in VW float lanes. */
TK_CLONES static void ln_bwd_row(const float *a, const float *b, const float *w, float eps, int n, const float *g, float *ds) {
    vwf acc = VW_SPLAT(0.0f);
    int i = 0;
    for (; i + VW <= n; i += VW) {
        vwf x, y;
        memcpy(&x, a + i, sizeof x);
        if (b) {
            memcpy(&y, b + i, sizeof y);
            x += y;
        }
        acc += x;
        memcpy(ds + i, &x, sizeof x);
    }
    float sum = VW_HSUM(acc);
    for (; i < n; i++) {
        ds[i] = a[i] + (b ? b[i] : 0.0f);
        sum += ds[i];
    }
    float mean = sum / (float)n;
    acc = VW_SPLAT(0.0f);
    for (i = 0; i + VW <= n; i += VW) {
        vwf x;
        memcpy(&x, ds + i, sizeof x);
        x -= mean;
        acc += x * x;
    }
    float var = VW_HSUM(acc);
    for (; i < n; i++) var += (ds[i] - mean) * (ds[i] - mean);
    float rstd = 1.0f / sqrtf(var / (float)n + eps);
    vwf a1 = VW_SPLAT(0.0f), a2 = VW_SPLAT(0.0f);
    for (i = 0; i + VW <= n; i += VW) {
        vwf x, gv, wv;
        memcpy(&x, ds + i, sizeof x);
        memcpy(&gv, g + i, sizeof gv);
        memcpy(&wv, w + i, sizeof wv);
        x = (x - mean) * rstd;
        gv *= wv;
        a1 += gv;
        a2 += gv * x;
        memcpy(ds + i, &x, sizeof x);
    }
    float m1 = VW_HSUM(a1), m2 = VW_HSUM(a2);
    for (; i < n; i++) {
        float xh = (ds[i] - mean) * rstd, gw = g[i] * w[i];
        m1 += gw;
        m2 += gw * xh;
        ds[i] = xh;
    }
    m1 /= (float)n;
    m2 /= (float)n;
    for (i = 0; i < n; i++) ds[i] = rstd * (g[i] * w[i] - m1 - ds[i] * m2);
}

void pd_layernorm_bwd_rows(const float *h, const float *resid, const float *w, float eps, int rows, int dim, const float *dy,
                           float *ds) {
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * dim;
        ln_bwd_row(h + o, resid ? resid + o : NULL, w, eps, dim, dy + o, ds + o);
    }
}

/* ==== Softmax (the backward pass's recomputation of attention probabilities) ==== */

void pd_softmax_rows_ld(float *x, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++) pd_softmax_rows(x + (size_t)r * ld, 1, cols); /* kernels.c's vector bodies */
}

/* ==== Softmax backward ==== */

/* One row: g = scale * p * (g - <p, g>), the dot product in VW lanes. */
TK_CLONES static void softmax_bwd_row(const float *p, float *g, int n, float scale) {
    vwf acc = VW_SPLAT(0.0f);
    int i = 0;
    for (; i + VW <= n; i += VW) {
        vwf a, b;
        memcpy(&a, p + i, sizeof a);
        memcpy(&b, g + i, sizeof b);
        acc += a * b;
    }
    float dot = VW_HSUM(acc);
    for (; i < n; i++) dot += p[i] * g[i];
    for (i = 0; i < n; i++) g[i] = p[i] * (g[i] - dot) * scale;
}

void pd_softmax_bwd_rows(const float *p, float *dp, int rows, int cols, int ld, float scale) {
    for (int r = 0; r < rows; r++) softmax_bwd_row(p + (size_t)r * ld, dp + (size_t)r * ld, cols, scale);
}
