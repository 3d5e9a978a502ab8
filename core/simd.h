/* simd.h - the vector vocabulary of the kernels, and the driver that compiles a kernel
 * template once per instruction set. Internal to core/; include it once per .c file.
 *
 * A kernel file writes its bodies once, in a template header that uses the names below,
 * then includes this file:
 *
 *     #define PD_SIMD_TEMPLATE "foo_simd.h"
 *     #include "simd.h"
 *
 * The template is compiled three times, each pass inside its own `#pragma GCC target`
 * region: scalar (the baseline instruction set: VL = 1, vf = float), avx2 (AVX2 + FMA:
 * VL = 8, __m256) and avx512 (VL = 16, __m512); on other architectures only the scalar pass.
 * SFX(name) gives name_scalar, name_avx2 or name_avx512. Each pass first includes
 * fastmath.h, the fast exp / erf / tanh for that instruction set. PD_SIMD_PICK(name) is the
 * body the enabled instruction sets allow (pd_kernels_features, kernels.h): a kernel is
 * dispatched by calling PD_SIMD_PICK(name)(args). A template that has no scalar body (its
 * file writes one by hand) wraps itself in `#if VL > 1`.
 *
 * The vocabulary. vf values in and out, lanes independent unless said:
 *   VL  vf  SFX(name)
 *   vload(p) vstore(p, v)   unaligned load and store of VL floats
 *   vloadn(p, n, fill)      the first n < VL lanes from p, the others = fill  (VL > 1)
 *   vstoren(p, v, n)        store the first n < VL lanes                      (VL > 1)
 *   vset(x) vadd vsub vmul vdiv vmin vmax   (vmax(NaN, c) = c: NaN clamps low)
 *   vmadd(a, b, c)          a*b + c rounded twice (a product, then a sum), on every ISA
 *   vfma(a, b, c)           a*b + c rounded once                              (VL > 1)
 *   vround(v)               round to the nearest integer, ties to even, |v| < 2^22
 *   vpow2i(n)               2^n for integral n in [-126, 127] (n as float)
 *   vhsum(v) vhmax(v)       horizontal sum and max
 *   vdf vdzero() vdadd(acc, v) vdsqdev(acc, v, m) vdhsum(acc)                  (VL > 1)
 *                           double accumulators: acc + v, acc + (v - m)^2, the total
 * vmadd's two roundings rely on the build's -std=c11, which turns gcc's contraction of
 * a*b + c into an FMA off (-ffp-contract=off); tests/test_train_kernels.c checks that the
 * kernels written with it give the same bits on every ISA. */
#ifdef PD_SIMD_H
#error "simd.h compiles a template once per instruction set: include it once per file"
#endif
#define PD_SIMD_H

#include "kernels.h"

#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PD_SIMD_X86 1
#endif

#ifndef PD_SIMD_TEMPLATE
#error "define PD_SIMD_TEMPLATE (the template header to compile per instruction set) before including simd.h"
#endif

/* The body of name that the enabled instruction sets allow (see kernels.h). */
#ifdef PD_SIMD_X86
static inline int pd_simd_level(void) {
    unsigned f = pd_kernels_features();
    return (f & PD_CPU_AVX512) ? 2 : (f & PD_CPU_AVX2) ? 1 : 0;
}
#define PD_SIMD_PICK(name) \
    (pd_simd_level() == 2 ? name##_avx512 : pd_simd_level() == 1 ? name##_avx2 : name##_scalar)
#else
#define PD_SIMD_PICK(name) name##_scalar
#endif

/* ==== scalar ==== */

/* Two statements, so no compiler fuses them (clang contracts within one expression). */
static inline float pd_simd_madd_scalar(float a, float b, float c) {
    float p = a * b;
    return p + c;
}
static inline float pd_simd_pow2i_scalar(float n) {
    union { float f; int32_t i; } u;
    u.i = ((int32_t)n + 127) << 23;
    return u.f;
}

#define VL 1
#define vf float
#define SFX(name) name##_scalar
#define vload(p) (*(p))
#define vstore(p, v) (*(p) = (v))
#define vset(x) (x)
#define vadd(a, b) ((a) + (b))
#define vsub(a, b) ((a) - (b))
#define vmul(a, b) ((a) * (b))
#define vdiv(a, b) ((a) / (b))
/* comparisons, not fmaxf/fminf: those are libm calls without -ffinite-math-only, and a loop
 * calling them does not vectorize */
#define vmax(a, b) ((a) > (b) ? (a) : (b))
#define vmin(a, b) ((a) < (b) ? (a) : (b))
#define vmadd pd_simd_madd_scalar
/* the 1.5 * 2^23 trick: rintf is a libm call without SSE4.1 */
#define vround(v) (((v) + 12582912.0f) - 12582912.0f)
#define vpow2i pd_simd_pow2i_scalar
#define vhsum(v) (v)
#define vhmax(v) (v)
#define PD_SIMD_FMA 0
#include "fastmath.h"
#include PD_SIMD_TEMPLATE
#include "simd_undef.h"

#ifdef PD_SIMD_X86

/* ==== avx2 ==== */

#pragma GCC push_options
#pragma GCC target("avx2,fma")
static inline __m256i pd_simd_mask_avx2(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline float pd_simd_hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float pd_simd_hmax_avx2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
typedef struct { __m256d lo, hi; } pd_simd_vd_avx2;
static inline pd_simd_vd_avx2 pd_simd_vdzero_avx2(void) { return (pd_simd_vd_avx2){_mm256_setzero_pd(), _mm256_setzero_pd()}; }
static inline pd_simd_vd_avx2 pd_simd_vdadd_avx2(pd_simd_vd_avx2 a, __m256 v) {
    a.lo = _mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a.hi = _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    return a;
}
static inline pd_simd_vd_avx2 pd_simd_vdsqdev_avx2(pd_simd_vd_avx2 a, __m256 v, double m) {
    __m256d mv = _mm256_set1_pd(m);
    __m256d l = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mv);
    __m256d h = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mv);
    a.lo = _mm256_fmadd_pd(l, l, a.lo);
    a.hi = _mm256_fmadd_pd(h, h, a.hi);
    return a;
}
static inline double pd_simd_vdhsum_avx2(pd_simd_vd_avx2 a) {
    __m256d s = _mm256_add_pd(a.lo, a.hi);
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
static inline __m256 pd_simd_madd_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }

#define VL 8
#define vf __m256
#define SFX(name) name##_avx2
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vloadn(p, n, fill)                                                               \
    _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, pd_simd_mask_avx2(n)), \
                     _mm256_castsi256_ps(pd_simd_mask_avx2(n)))
#define vstoren(p, v, n) _mm256_maskstore_ps(p, pd_simd_mask_avx2(n), v)
#define vset(x) _mm256_set1_ps(x)
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vdiv _mm256_div_ps
#define vmax _mm256_max_ps /* max(NaN, c) = c: NaN clamps low, as in the scalar pass */
#define vmin _mm256_min_ps
#define vmadd pd_simd_madd_avx2
#define vfma _mm256_fmadd_ps
#define vround(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(n) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define vhsum pd_simd_hsum_avx2
#define vhmax pd_simd_hmax_avx2
#define vdf pd_simd_vd_avx2
#define vdzero pd_simd_vdzero_avx2
#define vdadd pd_simd_vdadd_avx2
#define vdsqdev pd_simd_vdsqdev_avx2
#define vdhsum pd_simd_vdhsum_avx2
#define PD_SIMD_FMA 1
#include "fastmath.h"
#include PD_SIMD_TEMPLATE
#include "simd_undef.h"
#pragma GCC pop_options

/* ==== avx512 ==== */

#pragma GCC push_options
#pragma GCC target("avx512f")
static inline __m256 pd_simd_hi256_avx512(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
typedef struct { __m512d lo, hi; } pd_simd_vd_avx512;
static inline pd_simd_vd_avx512 pd_simd_vdzero_avx512(void) {
    return (pd_simd_vd_avx512){_mm512_setzero_pd(), _mm512_setzero_pd()};
}
static inline pd_simd_vd_avx512 pd_simd_vdadd_avx512(pd_simd_vd_avx512 a, __m512 v) {
    a.lo = _mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a.hi = _mm512_add_pd(a.hi, _mm512_cvtps_pd(pd_simd_hi256_avx512(v)));
    return a;
}
static inline pd_simd_vd_avx512 pd_simd_vdsqdev_avx512(pd_simd_vd_avx512 a, __m512 v, double m) {
    __m512d mv = _mm512_set1_pd(m);
    __m512d l = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), mv);
    __m512d h = _mm512_sub_pd(_mm512_cvtps_pd(pd_simd_hi256_avx512(v)), mv);
    a.lo = _mm512_fmadd_pd(l, l, a.lo);
    a.hi = _mm512_fmadd_pd(h, h, a.hi);
    return a;
}
static inline double pd_simd_vdhsum_avx512(pd_simd_vd_avx512 a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }
static inline __m512 pd_simd_madd_avx512(__m512 a, __m512 b, __m512 c) { return _mm512_add_ps(_mm512_mul_ps(a, b), c); }

#define VL 16
#define vf __m512
#define SFX(name) name##_avx512
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vloadn(p, n, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << (n)) - 1), p)
#define vstoren(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#define vset(x) _mm512_set1_ps(x)
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vdiv _mm512_div_ps
#define vmax _mm512_max_ps
#define vmin _mm512_min_ps
#define vmadd pd_simd_madd_avx512
#define vfma _mm512_fmadd_ps
#define vround(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(n) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define vhsum _mm512_reduce_add_ps
#define vhmax _mm512_reduce_max_ps
#define vdf pd_simd_vd_avx512
#define vdzero pd_simd_vdzero_avx512
#define vdadd pd_simd_vdadd_avx512
#define vdsqdev pd_simd_vdsqdev_avx512
#define vdhsum pd_simd_vdhsum_avx512
#define PD_SIMD_FMA 1
#include "fastmath.h"
#include PD_SIMD_TEMPLATE
#include "simd_undef.h"
#pragma GCC pop_options

#endif /* PD_SIMD_X86 */
