/* grad_kernels.h - the row and column kernels of weight gradients (pretraining): bias and
 * LayerNorm parameter gradients, embedding-row scatter, and the softmax cross-entropy of the
 * masked-LM output layer. Kept apart from train_kernels.c, whose kernels every adapter training
 * step runs; these run only when a pd_ctx has a gradient sink or a pd_mlm computes its loss.
 *
 * Results do not depend on timing: every split across the pool is a fixed function of the
 * sizes and the pool size, and partial sums are added in task order, so a run repeats bit for
 * bit on the same machine and thread count (exact resume needs that).
 * Thread-safety: pure functions of their arguments; pd_pool_run may be called from any thread. */
#ifndef PD_GRAD_KERNELS_H
#define PD_GRAD_KERNELS_H

#include "kernels.h"

/* out (cols) += the column sums of x (rows, cols): a bias gradient from dY. Split by columns. */
void pd_grad_bias_add(pd_pool *p, const float *x, int rows, int cols, float *out);

/* The parameter gradients of y = LayerNorm(h + resid) * w + b (resid may be NULL):
 * dw += sum over rows of dy * xhat, db += sum over rows of dy, xhat the normalised h + resid
 * (statistics recomputed as the forward pass does). Returns -1 if scratch memory ran out. */
int pd_layernorm_param_grad(pd_pool *p, const float *h, const float *resid, float eps, int rows, int dim,
                            const float *dy, float *dw, float *db);

/* dst row idx[r] += src row r (dim floats) for every r with idx[r] >= 0: the gradient of an
 * embedding lookup. Split by columns, so rows that share an index never race. */
void pd_rows_scatter_add(pd_pool *p, const float *src, const int32_t *idx, int rows, int dim, float *dst);

/* Softmax cross-entropy of rows of logits z (rows, cols) against target[r] (0 <= target < cols).
 * z is overwritten with scale * (softmax(z) - onehot(target)), the gradient of scale times the
 * summed loss. Returns the summed loss (natural log, exact even when a target's probability
 * underflows float); *correct (may be NULL) gets the rows whose largest logit is the target's. */
double pd_xent_rows(pd_pool *p, float *z, const int32_t *target, int rows, int cols, float scale, int *correct);

#endif
