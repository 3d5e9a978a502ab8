/* kernels_simd.h - the vector bodies of the forward elementwise and row kernels, written
 * once in the vocabulary of simd.h, which compiles this file once per instruction set (the
 * scalar bodies are plain C in kernels.c). The math is the scalar code's, with fused
 * multiply-adds (the polynomials are fastmath.h's), so every body is checked by the same
 * accuracy tests (tests/test_kernels.c runs each one). */
#if VL > 1

static inline vf SFX(vact)(pd_act a, vf x) {
    switch (a) {
    case PD_ACT_NONE: return x;
    case PD_ACT_GELU:
        return vmul(vmul(vset(0.5f), x), vadd(vset(1.0f), SFX(verf)(vmul(x, vset(0.70710678118654752f)))));
    case PD_ACT_GELU_TANH: {
        vf u = vmul(vset(GELU_TANH_C), vfma(vmul(vset(0.044715f), vmul(x, x)), x, x));
        return vmul(vmul(vset(0.5f), x), vadd(vset(1.0f), SFX(vtanh)(u)));
    }
    case PD_ACT_RELU: return vmax(x, vset(0.0f));
    case PD_ACT_TANH: return SFX(vtanh)(x);
    case PD_ACT_SWISH: return vdiv(x, vadd(vset(1.0f), SFX(vexp)(vsub(vset(0.0f), x))));
    case PD_ACT_SIGMOID: return vdiv(vset(1.0f), vadd(vset(1.0f), SFX(vexp)(vsub(vset(0.0f), x))));
    }
    return x;
}

/* y[i] = act(x[i]) for i < n (y may be x). */
static void SFX(act_to)(pd_act a, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, SFX(vact)(a, vload(x + i)));
    if (i < n) {
        int k = (int)(n - i);
        vstoren(y + i, SFX(vact)(a, vloadn(x + i, k, 0.0f)), k);
    }
}

/* Rows of cols floats, ld apart. */
static void SFX(softmax_rows)(float *x, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * ld;
        int i = 0, tail = cols % VL, end = cols - tail;
        vf m = vset(-INFINITY);
        for (i = 0; i < end; i += VL) m = vmax(m, vload(v + i));
        if (tail) m = vmax(m, vloadn(v + end, tail, -INFINITY));
        vf mx = vset(vhmax(m));
        vf s = vset(0.0f);
        for (i = 0; i < end; i += VL) {
            vf e = SFX(vexp)(vsub(vload(v + i), mx));
            vstore(v + i, e);
            s = vadd(s, e);
        }
        float sum = vhsum(s);
        if (tail) {
            vf e = SFX(vexp)(vsub(vloadn(v + end, tail, 0.0f), mx));
            vstoren(v + end, e, tail);
            for (int t = 0; t < tail; t++) sum += v[end + t];
        }
        vf inv = vset(1.0f / sum);
        for (i = 0; i < end; i += VL) vstore(v + i, vmul(vload(v + i), inv));
        if (tail) vstoren(v + end, vmul(vloadn(v + end, tail, 0.0f), inv), tail);
    }
}

/* Rows r0..r1: out = LayerNorm(x + add) * w + b (add may be NULL; out may alias x). */
static void SFX(layernorm_rows)(const float *x, const float *add, const float *w, const float *b, float eps, int r0,
                                int r1, int d, float *out) {
    int tail = d % VL, end = d - tail;
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * d;
        const float *ar = add ? add + (size_t)r * d : NULL;
        float *o = out + (size_t)r * d;
        /* Mean and variance are accumulated in double: a rounded mean or scale would shift a
         * whole row the same way, and such row-wide errors grow through the layers. */
        vdf s = vdzero();
        for (int i = 0; i < end; i += VL) {
            vf v = vload(xr + i);
            if (ar) v = vadd(v, vload(ar + i));
            vstore(o + i, v);
            s = vdadd(s, v);
        }
        if (tail) {
            vf v = vloadn(xr + end, tail, 0.0f);
            if (ar) v = vadd(v, vloadn(ar + end, tail, 0.0f));
            vstoren(o + end, v, tail);
            s = vdadd(s, v);
        }
        double mean = vdhsum(s) / d;
        vdf q = vdzero();
        for (int i = 0; i < end; i += VL) q = vdsqdev(q, vload(o + i), mean);
        if (tail) q = vdsqdev(q, vloadn(o + end, tail, (float)mean), mean); /* padding: (mean - m)^2, tiny */
        double invd = 1.0 / sqrt(vdhsum(q) / d + (double)eps);
        /* mean and 1/std as float pairs (hi + lo) */
        float m1 = (float)mean, m2 = (float)(mean - (double)m1);
        float ih = (float)invd, il = (float)(invd - (double)ih);
        vf mv1 = vset(m1), mv2 = vset(m2), vih = vset(ih), vil = vset(il);
        for (int i = 0; i < end; i += VL) {
            vf t = vsub(vsub(vload(o + i), mv1), mv2);
            vstore(o + i, vfma(vfma(t, vih, vmul(t, vil)), vload(w + i), vload(b + i)));
        }
        if (tail) {
            vf t = vsub(vsub(vloadn(o + end, tail, 0.0f), mv1), mv2);
            vf y = vfma(vfma(t, vih, vmul(t, vil)), vloadn(w + end, tail, 0.0f), vloadn(b + end, tail, 0.0f));
            vstoren(o + end, y, tail);
        }
    }
}

#endif /* VL > 1 */
