/* fastmath.h - the fast exp, erf and tanh of every kernel, written once. Internal to core/:
 * simd.h includes it in each pass, with that instruction set's vocabulary (vf, vfma, ...).
 *
 * Each pass gets two forms of each function, the same polynomials rounded two ways:
 *   SFX(vexp) SFX(verf) SFX(vtanh)         fused multiply-adds where the ISA has them (avx2,
 *                                          avx512), for the forward kernels;
 *   SFX(vexp_nofma) SFX(verf_nofma) ...    every multiply-add rounded twice on every ISA, so
 *                                          they give the scalar pass's bits on every ISA: the
 *                                          backward kernels use them, and a training run does
 *                                          not depend on the CPU's vector width.
 * (In the scalar pass both forms are the same code.) Accuracy against libm is tested in
 * tests/test_kernels.c and tests/test_train_kernels.c, for every body.
 *
 * Branch-free: the clamps are vmax / vmin, which map NaN to the lower bound, so the integer
 * conversion in vpow2i is defined for every input. */

#ifndef FM_FORM
/* First inclusion in a pass: include the functions below twice, once per form. */
#define FM_FORM 1
#define FM(name) SFX(name)
#if PD_SIMD_FMA
#define fm_madd vfma
#else
#define fm_madd vmadd
#endif
#include "fastmath.h"
#undef FM_FORM
#undef FM
#undef fm_madd
#define FM_FORM 2
#define FM(name) SFX(name##_nofma)
#define fm_madd vmadd
#include "fastmath.h"
#undef FM_FORM
#undef FM
#undef fm_madd
#else

/* exp(x) for x in about [-87, 88]: 2^n p(r) with r = x - n ln2 (ln2 split in two parts for
 * exactness), p of degree 6 (relative error below 2e-7). */
static inline vf FM(vexp)(vf x) {
    x = vmax(x, vset(-87.0f));
    x = vmin(x, vset(88.0f));
    vf n = vround(vmul(x, vset(1.44269504088896341f)));
    vf r = fm_madd(n, vset(-0.693359375f), x);
    r = fm_madd(n, vset(2.12194440e-4f), r);
    vf p = vset(1.9875691500e-4f);
    p = fm_madd(p, r, vset(1.3981999507e-3f));
    p = fm_madd(p, r, vset(8.3334519073e-3f));
    p = fm_madd(p, r, vset(4.1665795894e-2f));
    p = fm_madd(p, r, vset(1.6666665459e-1f));
    p = fm_madd(p, r, vset(5.0000001201e-1f));
    /* 1 + r + p r^2: the two forms associate the last sums differently (each as it was first
     * validated; their results are bit-identical to before the forms were merged) */
#if FM_FORM == 1 && PD_SIMD_FMA
    p = vfma(vmul(p, r), r, vadd(r, vset(1.0f)));
#else
    p = vadd(vmadd(vmul(p, r), r, r), vset(1.0f));
#endif
    return vmul(p, vpow2i(n));
}

/* erf(x) as a rational function of x^2 on [-4, 4] (the approximation Eigen and XNNPACK use;
 * max abs error about 1e-7 against erff). */
static inline vf FM(verf)(vf x) {
    x = vmax(x, vset(-4.0f));
    x = vmin(x, vset(4.0f));
    vf x2 = vmul(x, x);
    vf p = vset(-2.72614225801306e-10f);
    p = fm_madd(p, x2, vset(2.77068142495902e-08f));
    p = fm_madd(p, x2, vset(-2.10102402082508e-06f));
    p = fm_madd(p, x2, vset(-5.69250639462346e-05f));
    p = fm_madd(p, x2, vset(-7.34990630326855e-04f));
    p = fm_madd(p, x2, vset(-2.95459980854025e-03f));
    p = fm_madd(p, x2, vset(-1.60960333262415e-02f));
    p = vmul(p, x);
    vf q = vset(-1.45660718464996e-05f);
    q = fm_madd(q, x2, vset(-2.13374055278905e-04f));
    q = fm_madd(q, x2, vset(-1.68282697438203e-03f));
    q = fm_madd(q, x2, vset(-7.37332916720468e-03f));
    q = fm_madd(q, x2, vset(-1.42647390514189e-02f));
    return vdiv(p, q);
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1): saturates correctly at both ends. */
static inline vf FM(vtanh)(vf x) {
    vf e = FM(vexp)(vadd(x, x));
    return vsub(vset(1.0f), vdiv(vset(2.0f), vadd(e, vset(1.0f))));
}

#endif
