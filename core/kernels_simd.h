/* kernels_simd.h - the vector bodies of the elementwise and row kernels, written once.
 *
 * kernels.c includes this file once per instruction set, inside a `#pragma GCC target`
 * region, after defining:
 *   VL                     lanes per vector          vf          the vector type
 *   SFX(name)              name with the ISA suffix  (name##_avx512, name##_avx2)
 *   vload(p) vstore(p, v)  unaligned load and store
 *   vloadn(p, n, fill)     first n < VL lanes from p, the others = fill
 *   vstoren(p, v, n)       store the first n < VL lanes
 *   vset(x) vadd vsub vmul vdiv vmax vmin vfma(a, b, c) = a*b + c
 *   vround(v)              round to nearest integer (as float)
 *   vpow2i(n)              2^n for integral n in [-127, 127] (n as float)
 *   vhsum(v) vhmax(v)      horizontal sum and max
 *   vdf vdzero() vdadd(acc, v) vdsqdev(acc, v, m) vdhsum(acc)
 *                          double accumulators: acc + v, acc + (v - m)^2, the total
 * It #undefs all of these at its end. The math is the same as the scalar code in kernels.c (same polynomials), so every path
 * is checked by the same accuracy tests (tests/test_kernels.c runs each ISA). */

static inline vf SFX(vexp)(vf x) {
    x = vmax(x, vset(-87.0f));
    x = vmin(x, vset(88.0f));
    vf n = vround(vmul(x, vset(1.44269504088896341f)));
    vf r = vfma(n, vset(-0.693359375f), x);
    r = vfma(n, vset(2.12194440e-4f), r);
    vf p = vset(1.9875691500e-4f);
    p = vfma(p, r, vset(1.3981999507e-3f));
    p = vfma(p, r, vset(8.3334519073e-3f));
    p = vfma(p, r, vset(4.1665795894e-2f));
    p = vfma(p, r, vset(1.6666665459e-1f));
    p = vfma(p, r, vset(5.0000001201e-1f));
    p = vfma(vmul(p, r), r, vadd(r, vset(1.0f)));
    return vmul(p, vpow2i(n));
}

static inline vf SFX(verf)(vf x) {
    x = vmax(x, vset(-4.0f));
    x = vmin(x, vset(4.0f));
    vf x2 = vmul(x, x);
    vf p = vset(-2.72614225801306e-10f);
    p = vfma(p, x2, vset(2.77068142495902e-08f));
    p = vfma(p, x2, vset(-2.10102402082508e-06f));
    p = vfma(p, x2, vset(-5.69250639462346e-05f));
    p = vfma(p, x2, vset(-7.34990630326855e-04f));
    p = vfma(p, x2, vset(-2.95459980854025e-03f));
    p = vfma(p, x2, vset(-1.60960333262415e-02f));
    p = vmul(p, x);
    vf q = vset(-1.45660718464996e-05f);
    q = vfma(q, x2, vset(-2.13374055278905e-04f));
    q = vfma(q, x2, vset(-1.68282697438203e-03f));
    q = vfma(q, x2, vset(-7.37332916720468e-03f));
    q = vfma(q, x2, vset(-1.42647390514189e-02f));
    return vdiv(p, q);
}

static inline vf SFX(vtanh)(vf x) {
    vf e = SFX(vexp)(vadd(x, x));
    return vsub(vset(1.0f), vdiv(vset(2.0f), vadd(e, vset(1.0f))));
}

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

/* x[i] = act(x[i] + (b ? b[i] : 0)) for i < n. */
static void SFX(act_to)(pd_act a, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) vstore(y + i, SFX(vact)(a, vload(x + i)));
    if (i < n) {
        int k = (int)(n - i);
        vstoren(y + i, SFX(vact)(a, vloadn(x + i, k, 0.0f)), k);
    }
}

static void SFX(softmax_rows)(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * cols;
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

#undef VL
#undef vf
#undef SFX
#undef vload
#undef vstore
#undef vloadn
#undef vstoren
#undef vset
#undef vadd
#undef vsub
#undef vmul
#undef vdiv
#undef vmax
#undef vmin
#undef vfma
#undef vround
#undef vpow2i
#undef vhsum
#undef vhmax
#undef vdf
#undef vdzero
#undef vdadd
#undef vdsqdev
#undef vdhsum
