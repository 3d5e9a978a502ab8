/* train_kernels.h - elementwise and row kernels of the backward pass (training only), split
 * across a pd_pool like the forward kernels in kernels.h.
 *
 * Kept apart from kernels.c so the forward kernels can change without touching training. Like
 * them, each kernel has a scalar, an AVX2 and an AVX-512 body chosen by the enabled instruction
 * sets (PD_ISA, kernels.h); unlike them, every body gives the same bits (train_kernels_simd.h).
 * The GELU derivative uses fastmath.h's exp / erf polynomials; its error against the libm
 * pd_act1_grad is checked in tests/test_train_kernels.c. The backward pass's recomputation
 * of attention probabilities is kernels.h's pd_softmax_rows_ld.
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
 * h, resid or dy: it is scratch during the row). Float sums in 16 lanes. Single-threaded. */
void pd_layernorm_bwd_rows(const float *h, const float *resid, const float *w, float eps, int rows, int dim, const float *dy,
                           float *ds);

/* The softmax backward of attention, rows of width cols with row stride ld, in place:
 * dp[r][q] = scale * p[r][q] * (dp[r][q] - sum_k dp[r][k] p[r][k]), where p holds the
 * probabilities and dp the gradient of them. Single-threaded (called per head). */
void pd_softmax_bwd_rows(const float *p, float *dp, int rows, int cols, int ld, float scale);

#endif
