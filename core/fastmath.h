/* fastmath.h - the scalar exp and erf polynomials shared by the forward kernels (kernels.c)
 * and the backward kernels (train_kernels.c). Internal to core/.
 *
 * Branch-free so loops over them vectorize: the clamps are comparisons, not fmaxf/fminf (those
 * are libm calls without -ffinite-math-only, and the loop would not vectorize). NaN lands on
 * the lower clamp (x > lo is false for it), so the int conversion in pd_fast_expf is defined.
 * always_inline: gcc does not inline a default-target function into a target_clones or
 * target("avx2") one on its own. */
#ifndef PD_FASTMATH_H
#define PD_FASTMATH_H

#include <stdint.h>

/* exp(x) for x in about [-87, 88]: 2^n * p(r) with r = x - n ln2, degree-6 polynomial
 * (relative error < 2e-7). */
__attribute__((always_inline)) static inline float pd_fast_expf(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* round to nearest by the 1.5 * 2^23 trick: floorf is a libm call without SSE4.1 */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } u;
    u.i = ((int32_t)n + 127) << 23;
    return p * u.f;
}

/* erf(x) as a rational function of x^2 on [-4, 4] (the approximation Eigen and XNNPACK use;
 * max abs error about 1e-7 against erff, checked in tests). */
__attribute__((always_inline)) static inline float pd_fast_erff(float x) {
    x = x > -4.0f ? x : -4.0f;
    x = x < 4.0f ? x : 4.0f;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

#endif
