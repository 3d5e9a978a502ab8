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

/* Row-wise softmax in place over cols columns of rows that lie ld floats apart (the same
 * body as pd_softmax_rows, so the backward pass recomputes exactly the forward's attention
 * probabilities). Single-threaded (called per head). */
void pd_softmax_rows_ld(float *x, int rows, int cols, int ld);

/* ==== Instruction sets ====
 * Every kernel with vector bodies (here, train_kernels.h, the low-precision GEMMs) picks its
 * body at each call from the features enabled now: the best the CPU supports, limited by the
 * environment variable PD_ISA when the process first uses a kernel, or by pd_kernels_set_isa.
 * PD_ISA joins names with '+'; each name enables one feature and what it builds on:
 *   scalar        no vector extension (the baseline: SSE2 on x86-64)
 *   avx2          AVX2 + FMA
 *   avx512        avx2 + the AVX-512 of x86-64-v4 (F, CD, BW, DQ, VL)
 *   avx512_vnni   avx512 + AVX512_VNNI (int8 dot products)
 *   avx512_bf16   avx512 + AVX512_BF16 (bf16 dot products)
 * e.g. PD_ISA=avx2, PD_ISA=avx512 (no VNNI, no BF16), PD_ISA=avx512_bf16+avx512_vnni. A
 * feature the CPU lacks is dropped; an unknown name makes PD_ISA ignored. A feature counts
 * as supported only if the OS saves its registers (XCR0).
 *
 * Plugging a kernel in: write its vector bodies once in a template over simd.h's vocabulary
 * and call PD_SIMD_PICK(name)(...) (see kernels_simd.h, train_kernels_simd.h), or, for bodies
 * written with one ISA's intrinsics, test pd_kernels_features() at the call, best body first:
 *     unsigned f = pd_kernels_features();
 *     if (f & PD_CPU_AVX512_BF16) return dot_bf16_avx512bf16(...);
 *     if (f & PD_CPU_AVX512) return dot_bf16_avx512(...);
 *     return dot_bf16_scalar(...);
 * and test every body by looping pd_kernels_set_isa over pd_kernels_isa_name(0, 1, ...)
 * (tests/test_isa.h does it).
 * Thread-safe, except pd_kernels_set_isa: not to be called while kernels run. */
enum {
    PD_CPU_AVX2 = 1u << 0,
    PD_CPU_AVX512 = 1u << 1,
    PD_CPU_AVX512_VNNI = 1u << 2,
    PD_CPU_AVX512_BF16 = 1u << 3,
};

/* The PD_CPU_* features this CPU and OS support. */
unsigned pd_cpu_features(void);

/* The PD_CPU_* features the kernels may use now: a subset of pd_cpu_features(). */
unsigned pd_kernels_features(void);

/* The enabled features as a PD_ISA value: the level, then each extension ("avx2",
 * "avx512+avx512_vnni+avx512_bf16"). A static string. */
const char *pd_kernels_isa(void);

/* Enables exactly the features spec names (a PD_ISA value), or with spec NULL all that the
 * CPU supports. Returns 0, or -1 (nothing changed) if a name is unknown or the CPU lacks a
 * feature it names. */
int pd_kernels_set_isa(const char *spec);

/* The i-th PD_ISA name (0 = "scalar", then as listed above), NULL past the last. */
const char *pd_kernels_isa_name(int i);

#endif
