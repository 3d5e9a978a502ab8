/* train_kernels.c - backward-pass kernels. See train_kernels.h; the bodies are in
 * train_kernels_simd.h, one per instruction set. */
#include "train_kernels.h"

#include <math.h>
#include <string.h>

/* The row kernels' 16 lanes added up: pairs 8 apart, then 4 apart, then 1, then 2 apart. */
#define SUM16(v)                                                                                   \
    (((((v)[0] + (v)[8]) + ((v)[4] + (v)[12])) + (((v)[1] + (v)[9]) + ((v)[5] + (v)[13]))) +            \
     ((((v)[2] + (v)[10]) + ((v)[6] + (v)[14])) + (((v)[3] + (v)[11]) + ((v)[7] + (v)[15]))))

#define PD_SIMD_TEMPLATE "train_kernels_simd.h"
#include "simd.h"

/* ==== Activation backward ==== */

typedef struct {
    pd_act a;
    const float *pre;
    float *dy;
    size_t n, chunk;
} actg_job;

static void actg_range(pd_act a, const float *pre, float *dy, size_t n) {
    if (a == PD_ACT_GELU) {
        PD_SIMD_PICK(gelu_grad_mul)(pre, dy, n);
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

/* ==== LayerNorm and softmax backward ==== */

void pd_layernorm_bwd_rows(const float *h, const float *resid, const float *w, float eps, int rows, int dim, const float *dy,
                           float *ds) {
    void (*row)(const float *, const float *, const float *, float, int, const float *, float *) = PD_SIMD_PICK(ln_bwd_row);
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * dim;
        row(h + o, resid ? resid + o : NULL, w, eps, dim, dy + o, ds + o);
    }
}

void pd_softmax_bwd_rows(const float *p, float *dp, int rows, int cols, int ld, float scale) {
    void (*row)(const float *, float *, int, float) = PD_SIMD_PICK(softmax_bwd_row);
    for (int r = 0; r < rows; r++) row(p + (size_t)r * ld, dp + (size_t)r * ld, cols, scale);
}
