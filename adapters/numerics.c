/* numerics.c - small numeric pieces the methods' initialisation and backward passes share: a
 * seeded generator (same seed, same adapter), dropout masks regenerated from a key instead of
 * stored, and LayerNorm forward / backward with its weight gradients (in double, as the
 * methods' goldens were made). See adapter_impl.h. */
#include "adapter_impl.h"

#include <math.h>


void pd_rng_seed(pd_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = x = pd_mix64(x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(pd_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double pd_rng_uniform(pd_rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double pd_rng_normal(pd_rng *r) {
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u = 1.0 - pd_rng_uniform(r), v = pd_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void pd_fill_normal(pd_rng *r, float *x, size_t n, double mean, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + std * pd_rng_normal(r));
}

void pd_fill_uniform(pd_rng *r, float *x, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * pd_rng_uniform(r));
}

uint64_t pd_dropout_key(const pd_train *tr, int layer, int module) {
    uint64_t k = pd_mix64(tr->seed);
    k = pd_mix64(k ^ tr->pass);
    return pd_mix64(k ^ ((uint64_t)(uint32_t)layer << 32 | (uint32_t)module));
}

void pd_dropout_mul(uint64_t key, int row0, int rows, int cols, float p, float *x) {
    float keep = 1.0f / (1.0f - p);
    /* keep when a 24-bit uniform is >= p, as torch keeps with probability 1 - p */
    uint32_t thr = (uint32_t)ceil((double)p * 16777216.0);
    for (int i = 0; i < rows; i++) {
        uint64_t rk = pd_mix64(key + (uint64_t)(row0 + i) * 0xD1B54A32D192ED03ull);
        float *xr = x + (size_t)i * cols;
        for (int j = 0; j < cols; j++) {
            uint32_t u = (uint32_t)(pd_mix64(rk + (uint64_t)j) >> 40);
            xr[j] = u >= thr ? xr[j] * keep : 0.0f;
        }
    }
}

void pd_ln_fwd(const float *x, const float *w, const float *b, float eps, int rows, int dim, float *y) {
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * dim;
        float *o = y + (size_t)r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += a[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (a[i] - mean) * (a[i] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) o[i] = (float)((a[i] - mean) * rstd) * w[i] + b[i];
    }
}

void pd_ln_bwd(const float *x, const float *w, float eps, int rows, int dim, const float *dy, float *dx, float *gw,
               float *gb) {
    for (int r = 0; r < rows; r++) {
        const float *a = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        float *o = dx + (size_t)r * dim;
        double mean = 0, var = 0, m1 = 0, m2 = 0;
        for (int i = 0; i < dim; i++) mean += a[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (a[i] - mean) * (a[i] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) {
            double xh = (a[i] - mean) * rstd, gw_i = (double)g[i] * w[i];
            m1 += gw_i;
            m2 += gw_i * xh;
            if (gw) gw[i] += (float)(g[i] * xh);
            if (gb) gb[i] += g[i];
        }
        m1 /= dim;
        m2 /= dim;
        for (int i = 0; i < dim; i++) {
            double xh = (a[i] - mean) * rstd;
            o[i] = (float)(rstd * ((double)g[i] * w[i] - m1 - xh * m2));
        }
    }
}

void pd_colsum_add(const float *x, int rows, int cols, float *out) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) out[j] += x[(size_t)i * cols + j];
}
