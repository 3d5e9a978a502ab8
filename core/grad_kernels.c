/* grad_kernels.c - weight-gradient kernels. See grad_kernels.h.
 *
 * Sums over a row run in LANES independent float lanes (arrays the compiler turns into vector
 * registers without reassociating anything itself), as train_kernels.c does. */
#include "grad_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16

/* Columns [c0, c1) of task t when cols are split into nt tasks in multiples of LANES. */
static void col_range(int cols, int nt, int t, int *c0, int *c1) {
    int chunk = (cols + nt - 1) / nt;
    chunk = (chunk + LANES - 1) / LANES * LANES;
    *c0 = t * chunk;
    *c1 = *c0 + chunk < cols ? *c0 + chunk : cols;
}

/* Tasks for a job over cols columns and rows rows: one when the job is too small to split. */
static int col_tasks(pd_pool *p, size_t work, int cols) {
    int nt = pd_pool_size(p);
    if (work < 32768 || cols < 2 * LANES) return 1;
    return nt;
}

/* ==== Bias gradients ==== */

typedef struct {
    const float *x;
    float *out;
    int rows, cols, nt;
} colsum_job;

static void colsum_task(void *arg, int t) {
    colsum_job *j = arg;
    int c0, c1;
    col_range(j->cols, j->nt, t, &c0, &c1);
    for (int r = 0; r < j->rows; r++) {
        const float *x = j->x + (size_t)r * j->cols;
        for (int c = c0; c < c1; c++) j->out[c] += x[c];
    }
}

void pd_grad_bias_add(pd_pool *p, const float *x, int rows, int cols, float *out) {
    if (rows <= 0 || cols <= 0) return;
    colsum_job j = {x, out, rows, cols, col_tasks(p, (size_t)rows * cols, cols)};
    pd_pool_run(p, colsum_task, &j, j.nt);
}

/* ==== LayerNorm parameter gradients ==== */

typedef struct {
    const float *h, *resid, *dy;
    float *part; /* (nt, 3, dim): each task's dw, db and a row of scratch */
    int rows, dim, nt;
    float eps;
} lnp_job;

/* Sum of n floats in LANES lanes, then the lanes in a fixed order. */
static float lane_sum(const float *x, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += x[i + k];
    float s = 0;
    for (int k = 0; k < LANES; k++) s += acc[k];
    for (; i < n; i++) s += x[i];
    return s;
}

static void lnp_task(void *arg, int t) {
    lnp_job *j = arg;
    int chunk = (j->rows + j->nt - 1) / j->nt, r0 = t * chunk, r1 = r0 + chunk < j->rows ? r0 + chunk : j->rows;
    int d = j->dim;
    float *dw = j->part + (size_t)t * 3 * d, *db = dw + d, *s = db + d;
    memset(dw, 0, sizeof(float) * 2 * (size_t)d);
    for (int r = r0; r < r1; r++) {
        const float *a = j->h + (size_t)r * d, *b = j->resid ? j->resid + (size_t)r * d : NULL, *g = j->dy + (size_t)r * d;
        for (int i = 0; i < d; i++) s[i] = a[i] + (b ? b[i] : 0.0f);
        float mean = lane_sum(s, d) / (float)d;
        for (int i = 0; i < d; i++) s[i] -= mean;
        float acc[LANES] = {0};
        int i = 0;
        for (; i + LANES <= d; i += LANES)
            for (int k = 0; k < LANES; k++) acc[k] += s[i + k] * s[i + k];
        float var = 0;
        for (int k = 0; k < LANES; k++) var += acc[k];
        for (; i < d; i++) var += s[i] * s[i];
        float rstd = 1.0f / sqrtf(var / (float)d + j->eps);
        for (i = 0; i < d; i++) {
            dw[i] += g[i] * (s[i] * rstd);
            db[i] += g[i];
        }
    }
}

int pd_layernorm_param_grad(pd_pool *p, const float *h, const float *resid, float eps, int rows, int dim, const float *dy,
                            float *dw, float *db) {
    if (rows <= 0) return 0;
    int nt = (size_t)rows * dim < 32768 ? 1 : pd_pool_size(p);
    if (nt > rows) nt = rows;
    float *part = malloc(sizeof(float) * 3 * (size_t)dim * (size_t)nt);
    if (!part) return -1;
    lnp_job j = {h, resid, dy, part, rows, dim, nt, eps};
    pd_pool_run(p, lnp_task, &j, nt);
    for (int t = 0; t < nt; t++) {
        const float *pw = part + (size_t)t * 3 * dim, *pb = pw + dim;
        for (int i = 0; i < dim; i++) {
            dw[i] += pw[i];
            db[i] += pb[i];
        }
    }
    free(part);
    return 0;
}

/* ==== Embedding gradients ==== */

typedef struct {
    const float *src;
    const int32_t *idx;
    float *dst;
    int rows, dim, nt;
} scat_job;

static void scat_task(void *arg, int t) {
    scat_job *j = arg;
    int c0, c1;
    col_range(j->dim, j->nt, t, &c0, &c1);
    for (int r = 0; r < j->rows; r++) {
        if (j->idx[r] < 0) continue;
        const float *s = j->src + (size_t)r * j->dim;
        float *d = j->dst + (size_t)j->idx[r] * j->dim;
        for (int c = c0; c < c1; c++) d[c] += s[c];
    }
}

void pd_rows_scatter_add(pd_pool *p, const float *src, const int32_t *idx, int rows, int dim, float *dst) {
    if (rows <= 0) return;
    scat_job j = {src, idx, dst, rows, dim, col_tasks(p, (size_t)rows * dim, dim)};
    pd_pool_run(p, scat_task, &j, j.nt);
}

/* ==== Softmax cross-entropy ==== */

typedef struct {
    float *z;
    const int32_t *target;
    int rows, cols, nt;
    float scale;
    double *loss; /* (nt) */
    int *correct; /* (nt) */
} xent_job;

static float row_max(const float *z, int n) {
    float m[LANES];
    int i = 0;
    for (int k = 0; k < LANES; k++) m[k] = -INFINITY;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) m[k] = z[i + k] > m[k] ? z[i + k] : m[k];
    float mx = -INFINITY;
    for (int k = 0; k < LANES; k++) mx = m[k] > mx ? m[k] : mx;
    for (; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    return mx;
}

static void xent_task(void *arg, int t) {
    xent_job *j = arg;
    int chunk = (j->rows + j->nt - 1) / j->nt, r0 = t * chunk, r1 = r0 + chunk < j->rows ? r0 + chunk : j->rows;
    double loss = 0;
    int correct = 0;
    for (int r = r0; r < r1; r++) {
        float *z = j->z + (size_t)r * j->cols;
        int tg = j->target[r];
        float zt = z[tg], mx = row_max(z, j->cols);
        correct += zt >= mx;
        double lr;
        if (zt - mx < -80.0f) {
            /* the target's probability underflows the softmax kernel: the exact log-sum-exp */
            double s = 0;
            for (int i = 0; i < j->cols; i++) s += exp((double)z[i] - mx);
            lr = (double)mx - zt + log(s);
            pd_softmax_rows(z, 1, j->cols);
        } else {
            pd_softmax_rows(z, 1, j->cols); /* kernels.c's vector bodies */
            lr = -log((double)z[tg]);
        }
        loss += lr;
        float sc = j->scale;
        for (int i = 0; i < j->cols; i++) z[i] *= sc;
        z[tg] -= sc;
    }
    j->loss[t] = loss;
    j->correct[t] = correct;
}

double pd_xent_rows(pd_pool *p, float *z, const int32_t *target, int rows, int cols, float scale, int *correct) {
    if (correct) *correct = 0;
    if (rows <= 0) return 0;
    enum { MAXT = 256 };
    int nt = pd_pool_size(p);
    if (nt > rows) nt = rows;
    if (nt > MAXT) nt = MAXT;
    double loss[MAXT];
    int ok[MAXT];
    xent_job j = {z, target, rows, cols, nt, scale, loss, ok};
    pd_pool_run(p, xent_task, &j, nt);
    double s = 0;
    int c = 0;
    for (int t = 0; t < nt; t++) {
        s += loss[t];
        c += ok[t];
    }
    if (correct) *correct = c;
    return s;
}
