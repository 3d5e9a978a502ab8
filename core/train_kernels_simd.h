/* train_kernels_simd.h - the bodies of the backward kernels, written once; simd.h compiles
 * this file once per instruction set (scalar, avx2, avx512).
 *
 * Every body gives the same bits: the GELU derivative uses fastmath.h's _nofma forms and
 * rounds every multiply-add twice, and the row sums add in 16 lanes of a GCC vector (vwf,
 * train_kernels.c) whatever the ISA, in one fixed order (VW_HSUM). So a training run does
 * not depend on the CPU's vector width; tests/test_train_kernels.c checks it. */

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

/* One row of y = LN(a + b) * w + beta: ds = rstd * (g w - mean(g w) - xh mean(g w xh)), with
 * ds used as scratch for a + b and then xh. Sums in VW float lanes. */
static void SFX(ln_bwd_row)(const float *a, const float *b, const float *w, float eps, int n, const float *g, float *ds) {
    vwf acc = VW_SPLAT(0.0f);
    int i = 0;
    for (; i + VW <= n; i += VW) {
        vwf x, y;
        memcpy(&x, a + i, sizeof x);
        if (b) {
            memcpy(&y, b + i, sizeof y);
            x += y;
        }
        acc += x;
        memcpy(ds + i, &x, sizeof x);
    }
    float sum = VW_HSUM(acc);
    for (; i < n; i++) {
        ds[i] = a[i] + (b ? b[i] : 0.0f);
        sum += ds[i];
    }
    float mean = sum / (float)n;
    acc = VW_SPLAT(0.0f);
    for (i = 0; i + VW <= n; i += VW) {
        vwf x;
        memcpy(&x, ds + i, sizeof x);
        x -= mean;
        acc += x * x;
    }
    float var = VW_HSUM(acc);
    for (; i < n; i++) var += (ds[i] - mean) * (ds[i] - mean);
    float rstd = 1.0f / sqrtf(var / (float)n + eps);
    vwf a1 = VW_SPLAT(0.0f), a2 = VW_SPLAT(0.0f);
    for (i = 0; i + VW <= n; i += VW) {
        vwf x, gv, wv;
        memcpy(&x, ds + i, sizeof x);
        memcpy(&gv, g + i, sizeof gv);
        memcpy(&wv, w + i, sizeof wv);
        x = (x - mean) * rstd;
        gv *= wv;
        a1 += gv;
        a2 += gv * x;
        memcpy(ds + i, &x, sizeof x);
    }
    float m1 = VW_HSUM(a1), m2 = VW_HSUM(a2);
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

/* One row of the softmax backward: g = scale * p * (g - <p, g>), the dot product in VW lanes. */
static void SFX(softmax_bwd_row)(const float *p, float *g, int n, float scale) {
    vwf acc = VW_SPLAT(0.0f);
    int i = 0;
    for (; i + VW <= n; i += VW) {
        vwf a, b;
        memcpy(&a, p + i, sizeof a);
        memcpy(&b, g + i, sizeof b);
        acc += a * b;
    }
    float dot = VW_HSUM(acc);
    for (; i < n; i++) dot += p[i] * g[i];
    for (i = 0; i < n; i++) g[i] = p[i] * (g[i] - dot) * scale;
}
