/* gemm.h - weight matrices of linear layers, converted and packed once, and their products.
 *
 * A pd_wmat holds W (out, in) of a linear layer y = x W^T + b (torch's layout) in the form its
 * kernel reads: column panels of PD_WMAT_NR outputs, the reduction dimension grouped in 4-byte
 * steps (1 fp32, 2 bf16, 4 int8 values). Packing happens once (at model load); no product
 * repacks a weight. Three element types:
 *   fp32  W as is; fp32 products.
 *   bf16  W rounded to bf16 (nearest even); each product rounds its activations x to bf16 at
 *         the input and accumulates in fp32 (AVX512_BF16 vdpbf16ps).
 *   int8  W per output channel n: s_w[n] = max_k |W[n][k]| / 127, q[n][k] = rint(W[n][k] / s_w[n])
 *         in [-127, 127]. Each product quantizes every row m of x to u8 with its own scale and
 *         zero point (lo = min(0, min x), hi = max(0, max x), s_x = (hi - lo) / 255, z =
 *         rint(-lo / s_x), u = clamp(rint(x / s_x) + z, 0, 255); division as multiplication by
 *         1/s) and computes y[m][n] = s_x[m] s_w[n] (sum_k u q - z[m] sum_k q[n][k]) + b[n]
 *         in int32 (AVX512_VNNI vpdpbusd, u8 x s8) with the dequantization and bias fused into
 *         the store: the zero point is compensated exactly.
 * The backward pass's product dx = dy W (training adapters through a frozen low-precision
 * base) is built from the same packing: each call transposes the panels into the forward
 * layout of W^T in a per-thread scratch (bf16 for bf16 and int8 weights, whose integers bf16
 * holds exactly; dy is scaled by s_w for int8 and rounded to bf16) and runs the forward
 * kernels, so no second resident copy of the weights is kept. docs/ENGINE.md ("Low-precision
 * GEMM") has the measurements behind these choices.
 *
 * Kernels: AVX-512 (fp32 FMA; vdpbf16ps and vpdpbusd where the CPU has AVX512_BF16 and
 * AVX512_VNNI, otherwise the same sums through widening to fp32 / int16), AVX2+FMA (widening),
 * and a portable scalar body, all giving the same results (equal up to the order of fp32
 * additions; int8 sums are exact in every body). Each product picks its bodies from
 * pd_kernels_features() (core/kernels.h): PD_ISA and pd_kernels_set_isa choose them, e.g.
 * PD_ISA=avx512 runs bf16 and int8 widened; tests run every body.
 *
 * Threads: products split over the pd_pool by row blocks and column panels (tasks taken
 * dynamically); the activation conversion of bf16/int8 uses a per-thread scratch buffer that
 * grows to the largest call and is freed when the thread exits. A pd_wmat is immutable after
 * pd_wmat_new and may be used by any number of threads at once. */
#ifndef PD_GEMM_H
#define PD_GEMM_H

#include "common.h"
#include "kernels.h"

typedef enum { PD_WTYPE_F32 = 0, PD_WTYPE_BF16 = 1, PD_WTYPE_INT8 = 2 } pd_wtype;

#define PD_WMAT_NR 48 /* outputs per packed panel (3 AVX-512 vectors) */

typedef struct pd_wmat pd_wmat;

/* "fp32" (or "f32"), "bf16", "int8" -> the type; -1 for anything else. */
int pd_wtype_parse(const char *name);
const char *pd_wtype_name(pd_wtype t);

#define PD_WMAT_INT8_MAX_IN 65536 /* the int32 sums of u8 x s8 products stay exact up to this */

/* Converts and packs W (out, in), rows ldw floats apart (ldw >= in). The caller keeps w.
 * Returns NULL if out or in is not positive, ldw < in, int8 has in > PD_WMAT_INT8_MAX_IN, or
 * memory runs out. */
pd_wmat *pd_wmat_new(pd_wtype t, const float *w, int out, int in, size_t ldw);
void pd_wmat_free(pd_wmat *w); /* NULL is a no-op */

/* A fp32 W (out, in) that stays the caller's and is not packed: products read it in place
 * through OpenBLAS (pd_linear / pd_gemm, which pack it per call), so a model whose weights
 * change between passes (pretraining updates them in place) computes what it computed before
 * pd_wmat existed, bit for bit. w must outlive the pd_wmat; pd_wmat_free frees only the
 * handle. Type PD_WTYPE_F32, 0 bytes (the caller owns them). NULL on bad sizes or no memory. */
pd_wmat *pd_wmat_borrow(const float *w, int out, int in, size_t ldw);
int pd_wmat_borrowed(const pd_wmat *w);

pd_wtype pd_wmat_type(const pd_wmat *w);
int pd_wmat_out(const pd_wmat *w);
int pd_wmat_in(const pd_wmat *w);
size_t pd_wmat_bytes(const pd_wmat *w); /* resident bytes: panels, scales, sums (0 when borrowed) */

/* Row n of W as the kernels see it (bf16 rounded, or s_w[n] q[n][k]), into out (in floats). */
void pd_wmat_row(const pd_wmat *w, int n, float *out);

/* y (rows, out) = x (rows, in) W^T + bias, or y += that if accumulate; bias may be NULL.
 * x and y are contiguous (ldx = in, ldy = out). rows <= 0 does nothing. */
void pd_wmat_linear(pd_pool *p, const pd_wmat *w, const float *x, int rows, const float *bias, float *y,
                    int accumulate);

/* The same with row strides (in floats): ldx >= in, ldy >= out. Any alignment. */
void pd_wmat_gemm(pd_pool *p, const pd_wmat *w, const float *x, size_t ldx, int rows, const float *bias, float *y,
                  size_t ldy, int accumulate);

/* dx (rows, in) = dy (rows, out) W, or dx += that if accumulate; contiguous. bf16 and int8
 * weights compute it in bf16 (dy rounded to bf16, times s_w for int8; fp32 accumulation). */
void pd_wmat_dx(pd_pool *p, const pd_wmat *w, const float *dy, int rows, float *dx, int accumulate);

/* The kernel a type runs on now: "avx512_bf16", "avx512_vnni", "avx512", "avx512 (bf16
 * emulated)", "avx512 (int8 emulated)", "avx2", "avx2 (bf16 emulated)", "avx2 (int8
 * emulated)" or "scalar". */
const char *pd_wmat_kernel(pd_wtype t);

/* bf16 of f, rounded to nearest even, as the bf16 kernels round (subnormals flush to zero,
 * NaN stays NaN). */
uint16_t pd_bf16_round(float f);
float pd_bf16_float(uint16_t h);

#endif
