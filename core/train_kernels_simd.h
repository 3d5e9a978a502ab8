/* train_kernels_simd.h - the bodies of the backward kernels, written once; simd.h compiles
 * this file once per instruction set (scalar, avx2, avx512).
 *
 * Every body gives the same bits: the GELU derivative uses fastmath.h's _nofma forms and
 * rounds every multiply-add twice, and the row sums add in 16 lanes whatever the vector
 * width, in one fixed order. So a training run does not depend on the CPU's vector width;
 * tests/test_train_kernels.c checks it. */

/* GELU'(x) = Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi). */
static inline vf SFX(gelu_grad)(vf x) {
    vf cdf = vadd(vset(0.5f), vmul(vset(0.5f), SFX(verf_nofma)(vmul(x, vset(0.70710678118654752f)))));
    vf pdf = vmul(SFX(vexp_nofma)(vmul(vmul(vset(-0.5f), x), x)), vset(0.3989422804014327f));
    return vadd(cdf, vmul(x, pdf));
}

/* dy[i] *= GELU'(pre[i]) for i < n. */
static void SFX(gelu_grad_mul)(const float *pre, float *dy, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) vstore(dy + i, vmul(vload(dy + i), SFX(gelu_grad)(vload(pre + i))));
#if VL > 1
    if (i < n) {
        int k = (int)(n - i);
        vstoren(dy + i, vmul(vloadn(dy + i, k, 0.0f), SFX(gelu_grad)(vloadn(pre + i, k, 0.0f))), k);
    }
#endif
}

/* The row sums run in 16 lanes on every ISA (NV vectors of VL lanes), added up in one fixed
 * order (SUM16), so every body gives the same bits. */
#define NV (16 / VL)

static inline float SFX(sum16)(const vf *acc) {
    float t[16];
    for (int j = 0; j < NV; j++) vstore(t + j * VL, acc[j]);
    return SUM16(t);
}

/* One row of y = LN(a + b) * w + beta: ds = rstd * (g w - mean(g w) - xh mean(g w xh)), with
 * ds used as scratch for a + b and then xh. */
static void SFX(ln_bwd_row)(const float *a, const float *b, const float *w, float eps, int n, const float *g, float *ds) {
    vf acc[NV], a1[NV], a2[NV];
    int i = 0;
    for (int j = 0; j < NV; j++) acc[j] = vset(0.0f);
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < NV; j++) {
            int o = i + j * VL;
            vf x = vload(a + o);
            if (b) x = vadd(x, vload(b + o));
            acc[j] = vadd(acc[j], x);
            vstore(ds + o, x);
        }
    float sum = SFX(sum16)(acc);
    for (; i < n; i++) {
        ds[i] = a[i] + (b ? b[i] : 0.0f);
        sum += ds[i];
    }
    float mean = sum / (float)n;
    for (int j = 0; j < NV; j++) acc[j] = vset(0.0f);
    for (i = 0; i + 16 <= n; i += 16)
        for (int j = 0; j < NV; j++) {
            vf x = vsub(vload(ds + i + j * VL), vset(mean));
            acc[j] = vadd(acc[j], vmul(x, x));
        }
    float var = SFX(sum16)(acc);
    for (; i < n; i++) var += (ds[i] - mean) * (ds[i] - mean);
    float rstd = 1.0f / sqrtf(var / (float)n + eps);
    for (int j = 0; j < NV; j++) a1[j] = a2[j] = vset(0.0f);
    for (i = 0; i + 16 <= n; i += 16)
        for (int j = 0; j < NV; j++) {
            int o = i + j * VL;
            vf x = vmul(vsub(vload(ds + o), vset(mean)), vset(rstd));
            vf gw = vmul(vload(g + o), vload(w + o));
            a1[j] = vadd(a1[j], gw);
            a2[j] = vadd(a2[j], vmul(gw, x));
            vstore(ds + o, x);
        }
    float m1 = SFX(sum16)(a1), m2 = SFX(sum16)(a2);
    for (; i < n; i++) {
        float xh = (ds[i] - mean) * rstd, gw = g[i] * w[i];
        m1 += gw;
        m2 += gw * xh;
        ds[i] = xh;
    }
    m1 /= (float)n;
    m2 /= (float)n;
    for (i = 0; i < n; i++) ds[i] = rstd * (g[i] * w[i] - m1 - ds[i] * m2);
}

/* One row of the softmax backward: g = scale * p * (g - <p, g>), the dot product in 16 lanes. */
static void SFX(softmax_bwd_row)(const float *p, float *g, int n, float scale) {
    vf acc[NV];
    int i = 0;
    for (int j = 0; j < NV; j++) acc[j] = vset(0.0f);
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < NV; j++) acc[j] = vadd(acc[j], vmul(vload(p + i + j * VL), vload(g + i + j * VL)));
    float dot = SFX(sum16)(acc);
    for (; i < n; i++) dot += p[i] * g[i];
    for (i = 0; i < n; i++) g[i] = p[i] * (g[i] - dot) * scale;
}

#undef NV
