/* train_kernels.h - elementwise and row kernels of the backward pass (training only), split
 * across a pd_pool like the forward kernels in kernels.h.
 *
 * Kept apart from kernels.c so the forward kernels can change without touching training. The
 * fast exp / erf approximations are the same formulas kernels.c uses for the forward GELU
 * (branch-free, so the loops vectorize); the error of the GELU derivative against the libm
 * pd_act1_grad is checked in tests/test_train_kernels.c.
 * Thread-safety: pure functions of their arguments; pd_pool_run may be called from any thread. */
#ifndef PD_TRAIN_KERNELS_H
#define PD_TRAIN_KERNELS_H

#include "kernels.h"

/* dy[i] *= act'(pre[i]) for n elements across the pool: the backward of y = act(pre). GELU (erf)
 * uses the fast approximations (error below 1e-6 of dy against pd_act1_grad); every other
 * activation calls pd_act1_grad. */
void pd_act_grad_mul(pd_pool *p, pd_act a, const float *pre, float *dy, size_t n);

/* LayerNorm backward for rows of y = LayerNorm(h + resid) * w + b (resid may be NULL): writes
 * ds = dL/d(h + resid) from dy, recomputing the statistics from h + resid (ds must not alias
 * h, resid or dy: it is scratch during the row). Float sums in 8 lanes. Single-threaded. */
void pd_layernorm_bwd_rows(const float *h, const float *resid, const float *w, float eps, int rows, int dim, const float *dy,
                           float *ds);

/* Row-wise softmax in place over cols columns of rows with stride ld: pd_softmax_rows row by
 * row (the same kernel as the forward pass, so the backward pass recomputes exactly the
 * forward's attention probabilities). Single-threaded (called per head). */
void pd_softmax_rows_ld(float *x, int rows, int cols, int ld);

/* The softmax backward of attention, rows of width cols with row stride ld, in place:
 * dp[r][q] = scale * p[r][q] * (dp[r][q] - sum_k dp[r][k] p[r][k]), where p holds the
 * probabilities and dp the gradient of them. Single-threaded (called per head). */
void pd_softmax_bwd_rows(const float *p, float *dp, int rows, int cols, int ld, float scale);

#endif
