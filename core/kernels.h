/* kernels.h - the thread pool and the numeric kernels of the forward and backward passes.
 *
 * Threading design (written down on purpose, see README "Threads and GEMM"): OpenBLAS is set
 * to one thread and peftd's own pool splits every GEMM by rows across its workers, so the
 * same workers run GEMMs, attention, layer norms and activations without two thread pools
 * fighting over two cores. A pool runs one parallel job at a time (callers from different
 * threads - the inference scheduler and a trainer - take turns job by job).
 *
 * Matrices are row-major. Linear layers store W as (out, in), like torch.nn.Linear.
 * Thread-safety: pd_pool_run may be called from any thread; kernels are pure functions. */
#ifndef PD_KERNELS_H
#define PD_KERNELS_H

#include "common.h"

typedef struct pd_pool pd_pool;

/* Starts a pool of n threads (the caller counts as one: n-1 workers are created).
 * n <= 0 means the number of online CPUs. Returns NULL on failure. */
pd_pool *pd_pool_new(int n);
void pd_pool_free(pd_pool *p); /* NULL is a no-op; joins the workers */
int pd_pool_size(const pd_pool *p);

/* Runs fn(arg, i) for every i in [0, n) across the pool and returns when all are done.
 * p == NULL runs everything on the calling thread. */
void pd_pool_run(pd_pool *p, void (*fn)(void *arg, int i), void *arg, int n);

/* Tells the pool that no job follows soon (a server's queue ran empty): idle workers go to
 * sleep now instead of spinning for the next job, leaving the cores to other threads. The
 * next pd_pool_run wakes them (and ends the rest). */
void pd_pool_rest(pd_pool *p);

/* Calls OpenBLAS configuration once per process (one OpenBLAS thread); returns the name of
 * the kernel OpenBLAS picked (openblas_get_corename). Thread-safe. */
const char *pd_blas_init(void);

/* C (m,n) = alpha * A (m,k) [transposed if ta] x B [transposed if tb] + beta * C, split by rows
 * of C across the pool. lda/ldb/ldc are row strides. */
void pd_gemm(pd_pool *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);

/* y (rows, out) = x (rows, in) W^T + b (b may be NULL). */
void pd_linear(pd_pool *p, const float *x, int rows, int in, const float *w, const float *b, int out, float *y);

typedef enum { PD_ACT_NONE = 0, PD_ACT_GELU, PD_ACT_GELU_TANH, PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SWISH,
               PD_ACT_SIGMOID } pd_act;

/* Parses HF activation names: gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, swish/silu, sigmoid,
 * linear. Returns -1 for unknown names. */
int pd_act_parse(const char *name);
const char *pd_act_name(pd_act a);

/* In place, n elements, across the pool; _to writes y = act(x) (y may be x, or a separate buffer). */
void pd_act_apply(pd_pool *p, pd_act a, float *x, size_t n);
void pd_act_apply_to(pd_pool *p, pd_act a, const float *x, float *y, size_t n);
float pd_act1(pd_act a, float x);     /* one element, reference-quality */
float pd_act1_grad(pd_act a, float x); /* derivative at x (pre-activation) */

/* out (rows, dim) = LayerNorm(x + add) * w + b; add may be NULL; out may alias x. */
void pd_layernorm(pd_pool *p, const float *x, const float *add, const float *w, const float *b, float eps,
                  int rows, int dim, float *out);

/* Row-wise numerically stable softmax in place. */
void pd_softmax_rows(float *x, int rows, int cols);

/* The elementwise and row kernels (activations, bias, layer norm, softmax) have scalar, AVX2
 * and AVX-512 bodies; the best the CPU supports is used unless the environment variable
 * PD_ISA names a lower one. pd_kernels_isa names the one in use; pd_kernels_set_isa switches
 * (tests run every body through it; not to be called while kernels run). Returns -1 if the
 * name is unknown or the CPU lacks it. */
const char *pd_kernels_isa(void);
int pd_kernels_set_isa(const char *name);

#endif
