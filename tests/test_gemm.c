/* test_gemm.c - packed fp32 / bf16 / int8 weight matrices (core/gemm.h) on every kernel level
 * the CPU has (scalar, AVX-512 with widened bf16/int8, AVX512_BF16/VNNI dot products).
 *
 * Each product is checked two ways:
 *   - against a double-precision reference of the same quantized math, written here from the
 *     formulas in gemm.h (bf16 rounding through frexp, the u8/s8 quantization, integer sums in
 *     int64): equal up to fp32 accumulation order;
 *   - against the exact fp32 product, within the error bound the quantization allows
 *     (bf16: 2^-8 relative per factor; int8: s_w/2 sum|x| + s_x/2 sum|w^|).
 * Shapes cover one row, odd sizes, K not a multiple of the k group, outputs not a multiple of
 * the 48-wide panel, strided and unaligned rows, bias/no bias, accumulate, and both the row and
 * the column split across a pool. */
#include "gemm.h"
#include "test.h"
#include "test_isa.h"

#include <string.h>

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static void fill(float *x, size_t n, float amp) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((2.0 * urand() - 1.0) * amp);
}

/* bf16 nearest even via frexp (independent of the bit trick in gemm.c); subnormals flush to 0. */
static double ref_bf16(float f) {
    if (f == 0.0f || fabsf(f) < 1.17549435e-38f) return copysign(0.0, f);
    int e;
    double fr = frexp((double)f, &e);  /* f = fr 2^e, 0.5 <= |fr| < 1 */
    return ldexp(nearbyint(fr * 256.0) / 256.0, e);
}

typedef struct {
    float sx;
    int z;
} qrow;

/* The u8 row quantization of gemm.h, written out again. */
static qrow ref_quant_row(const float *x, int n, int *u) {
    float lo = 0, hi = 0;
    for (int k = 0; k < n; k++) {
        if (x[k] < lo) lo = x[k];
        if (x[k] > hi) hi = x[k];
    }
    qrow q = {(hi - lo) / 255.0f, 0};
    float inv = q.sx > 0 ? 1.0f / q.sx : 0.0f;
    if (q.sx > 0) q.z = (int)nearbyintf(-lo * inv);
    for (int k = 0; k < n; k++) {
        int v = (int)nearbyintf(x[k] * inv) + q.z;
        u[k] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return q;
}

/* Per-channel weight quantization: q (out, in), scales sw (out). */
static void ref_quant_w(const float *w, int out, int in, size_t ldw, int *q, float *sw) {
    for (int n = 0; n < out; n++) {
        float mx = 0;
        for (int k = 0; k < in; k++) mx = fabsf(w[n * ldw + k]) > mx ? fabsf(w[n * ldw + k]) : mx;
        sw[n] = mx / 127.0f;
        float inv = sw[n] > 0 ? 1.0f / sw[n] : 0.0f;
        for (int k = 0; k < in; k++) q[(size_t)n * in + k] = (int)nearbyintf(w[n * ldw + k] * inv);
    }
}

/* ref (rows, out) = the quantized forward in double; mag (rows, out) = sum |a b| (error scale);
 * fbound (rows, out) = allowed distance from the fp32 product. */
static void ref_forward(pd_wtype t, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias, int rows,
                        int out, int in, double *ref, double *mag, double *fbound, double *exact) {
    int *q = malloc(sizeof(int) * (size_t)out * in), *u = malloc(sizeof(int) * (size_t)in);
    float *sw = malloc(sizeof(float) * (size_t)out);
    if (t == PD_WTYPE_INT8) ref_quant_w(w, out, in, ldw, q, sw);
    for (int m = 0; m < rows; m++) {
        const float *xr = x + m * ldx;
        qrow qr = {0, 0};
        if (t == PD_WTYPE_INT8) qr = ref_quant_row(xr, in, u);
        double sumx = 0;
        for (int k = 0; k < in; k++) sumx += fabs(xr[k]);
        for (int n = 0; n < out; n++) {
            const float *wr = w + n * ldw;
            double s = 0, a = 0, e = 0, sumw = 0;
            int64_t is = 0, qs = 0;
            for (int k = 0; k < in; k++) {
                e += (double)xr[k] * wr[k];
                if (t == PD_WTYPE_F32) {
                    s += (double)xr[k] * wr[k];
                    a += fabs((double)xr[k] * wr[k]);
                } else if (t == PD_WTYPE_BF16) {
                    double p = ref_bf16(xr[k]) * ref_bf16(wr[k]);
                    s += p;
                    a += fabs(p);
                } else {
                    is += (int64_t)u[k] * q[(size_t)n * in + k];
                    qs += q[(size_t)n * in + k];
                    a += fabs((double)qr.sx * (u[k] - qr.z) * sw[n] * q[(size_t)n * in + k]);
                    sumw += fabs((double)sw[n] * q[(size_t)n * in + k]);
                }
            }
            if (t == PD_WTYPE_INT8) s = (double)qr.sx * sw[n] * (double)(is - (int64_t)qr.z * qs);
            double b = bias ? bias[n] : 0.0;
            size_t o = (size_t)m * out + n;
            ref[o] = s + b;
            exact[o] = e + b;
            mag[o] = a + fabs(b);
            if (t == PD_WTYPE_F32) fbound[o] = 0;
            else if (t == PD_WTYPE_BF16) fbound[o] = 2.0 * (1.0 / 256) * a; /* |d(ab)| <= (2^-8 + 2^-8 + 2^-16) |ab| */
            else fbound[o] = 0.5 * sw[n] * sumx + 0.5 * qr.sx * sumw;
        }
    }
    free(q);
    free(u);
    free(sw);
}

/* One forward case; returns the number of mismatching elements. */
static int check_forward(pd_pool *pool, pd_wtype t, int rows, int out, int in, int strided, int with_bias, int accumulate) {
    size_t ldw = (size_t)in + (strided ? 3 : 0), ldx = (size_t)in + (strided ? 5 : 0), ldy = (size_t)out + (strided ? 7 : 0);
    float *w = malloc(sizeof(float) * ldw * out), *xb = malloc(sizeof(float) * (ldx * rows + 1));
    float *bias = malloc(sizeof(float) * out), *yb = malloc(sizeof(float) * (ldy * rows + 1));
    fill(w, ldw * out, 0.5f);
    fill(xb, ldx * rows + 1, 2.0f);
    fill(bias, out, 1.0f);
    fill(yb, ldy * rows + 1, 1.0f);
    /* strided cases also start one float in: any 4-byte alignment */
    float *x = xb + (strided ? 1 : 0), *y = yb + (strided ? 1 : 0);
    if (rows > 2) memset(x + ldx, 0, sizeof(float) * in); /* an all-zero row (int8: scale 0) */
    float *y0 = malloc(sizeof(float) * (ldy * rows + 1));
    memcpy(y0, y, sizeof(float) * ldy * rows);
    size_t no = (size_t)rows * out;
    double *ref = malloc(sizeof(double) * no), *mag = malloc(sizeof(double) * no), *fb = malloc(sizeof(double) * no),
           *ex = malloc(sizeof(double) * no);
    ref_forward(t, x, ldx, w, ldw, with_bias ? bias : NULL, rows, out, in, ref, mag, fb, ex);
    pd_wmat *wm = pd_wmat_new(t, w, out, in, ldw);
    CHECK(wm != NULL);
    int bad = 0;
    if (wm) {
        pd_wmat_gemm(pool, wm, x, ldx, rows, with_bias ? bias : NULL, y, ldy, accumulate);
        for (int m = 0; m < rows; m++)
            for (int n = 0; n < out; n++) {
                size_t o = (size_t)m * out + n;
                double base = accumulate ? y0[m * ldy + n] : 0.0;
                double got = y[m * ldy + n] - base;
                double tol = 1e-5 * mag[o] + 1e-6 * fabs(base) + 1e-30;
                double fb_tol = fb[o] * 1.0001 + 1e-5 * mag[o] + 1e-6;
                if (fabs(got - ref[o]) > tol || fabs(got - ex[o]) > fb_tol) {
                    if (bad < 3)
                        fprintf(stderr, "  %s %dx%dx%d [%d,%d]: got %.9g ref %.9g (tol %.3g) fp32 %.9g (bound %.3g)\n",
                                pd_wtype_name(t), rows, out, in, m, n, got, ref[o], tol, ex[o], fb_tol);
                    bad++;
                }
            }
        /* the padding between strided rows is untouched */
        if (strided)
            for (int m = 0; m < rows; m++)
                for (size_t n = out; n < ldy && (m + 1 < rows || n == (size_t)out); n++)
                    if (y[m * ldy + n] != y0[m * ldy + n]) bad++;
    }
    pd_wmat_free(wm);
    free(w); free(xb); free(bias); free(yb); free(y0); free(ref); free(mag); free(fb); free(ex);
    return bad;
}

/* dx = dy W: reference with the roundings gemm.h states (fp32 exact; bf16: bf16(dy) bf16(W);
 * int8: bf16(dy s_w) q). */
static int check_dx(pd_pool *pool, pd_wtype t, int rows, int out, int in, int accumulate) {
    float *w = malloc(sizeof(float) * out * in), *dy = malloc(sizeof(float) * rows * out);
    float *dx = malloc(sizeof(float) * rows * in), *dx0 = malloc(sizeof(float) * rows * in);
    fill(w, (size_t)out * in, 0.5f);
    fill(dy, (size_t)rows * out, 1.0f);
    fill(dx, (size_t)rows * in, 1.0f);
    memcpy(dx0, dx, sizeof(float) * rows * in);
    int *q = malloc(sizeof(int) * out * in);
    float *sw = malloc(sizeof(float) * out);
    if (t == PD_WTYPE_INT8) ref_quant_w(w, out, in, in, q, sw);
    pd_wmat *wm = pd_wmat_new(t, w, out, in, in);
    CHECK(wm != NULL);
    int bad = 0;
    if (wm) {
        pd_wmat_dx(pool, wm, dy, rows, dx, accumulate);
        for (int m = 0; m < rows; m++)
            for (int k = 0; k < in; k++) {
                double s = 0, a = 0, e = 0;
                for (int n = 0; n < out; n++) {
                    double d = dy[m * out + n], p;
                    if (t == PD_WTYPE_F32) p = d * w[n * in + k];
                    else if (t == PD_WTYPE_BF16) p = ref_bf16((float)d) * ref_bf16(w[n * in + k]);
                    else p = ref_bf16((float)d * sw[n]) * q[n * in + k];
                    s += p;
                    a += fabs(p);
                    e += d * w[n * in + k];
                }
                double base = accumulate ? dx0[m * in + k] : 0.0, got = dx[m * in + k] - base;
                double fbound = t == PD_WTYPE_F32 ? 0 : t == PD_WTYPE_BF16 ? a / 128 : a / 128 + 0.5 * a / 127 * 2;
                if (fabs(got - s) > 1e-5 * a + 1e-6 * fabs(base) + 1e-30 || fabs(got - e) > fbound + 1e-5 * a + 1e-6) {
                    if (bad < 3) fprintf(stderr, "  dx %s %dx%dx%d [%d,%d]: got %.9g ref %.9g fp32 %.9g\n", pd_wtype_name(t), rows, out,
                                         in, m, k, got, s, e);
                    bad++;
                }
            }
    }
    pd_wmat_free(wm);
    free(w); free(dy); free(dx); free(dx0); free(q); free(sw);
    return bad;
}

static void test_bf16_round(void) {
    /* independent rounding against the library's on many values, and the named cases */
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        float f = (float)((2 * urand() - 1) * pow(2.0, (int)(urand() * 80) - 40));
        if (pd_bf16_float(pd_bf16_round(f)) != (float)ref_bf16(f)) bad++;
    }
    CHECKF(bad == 0, "%d values round differently", bad);
    CHECK(pd_bf16_round(1.0f) == 0x3f80);
    CHECK(pd_bf16_round(1.0f + 1.0f / 256) == 0x3f80);          /* tie -> even */
    CHECK(pd_bf16_round(1.0f + 3.0f / 256) == 0x3f82);          /* tie -> even (up) */
    CHECK(pd_bf16_round(-2.5f) == 0xc020);
    CHECK(pd_bf16_round(1e-40f) == 0);                          /* subnormal flushes */
    CHECK(pd_bf16_round(-1e-40f) == 0x8000);
    CHECK(pd_bf16_round(INFINITY) == 0x7f80);
    CHECK(pd_bf16_round(3.4e38f) == 0x7f80);                    /* rounds up to infinity */
    uint16_t n = pd_bf16_round(NAN);
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f));
}

static void test_api(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    CHECK(pd_wmat_new(PD_WTYPE_F32, w, 0, 3, 3) == NULL);
    CHECK(pd_wmat_new(PD_WTYPE_F32, w, 2, 3, 2) == NULL);
    CHECK(pd_wmat_new((pd_wtype)7, w, 2, 3, 3) == NULL);
    CHECK(pd_wmat_new(PD_WTYPE_INT8, w, 1, PD_WMAT_INT8_MAX_IN + 1, PD_WMAT_INT8_MAX_IN + 1) == NULL); /* before reading w */
    CHECK(pd_wtype_parse("bf16") == PD_WTYPE_BF16 && pd_wtype_parse("int8") == PD_WTYPE_INT8);
    CHECK(pd_wtype_parse("fp32") == PD_WTYPE_F32 && pd_wtype_parse("fp16") == -1 && pd_wtype_parse(NULL) == -1);
    CHECK(pd_kernels_set_isa("scalar") == 0 && !strcmp(pd_wmat_kernel(PD_WTYPE_INT8), "scalar"));
    CHECK(pd_kernels_set_isa(NULL) == 0);
    /* memory: bf16 halves and int8 quarters the panels of a BERT-base matrix */
    float *big = calloc(768 * 768, sizeof(float));
    fill(big, 768 * 768, 1.0f);
    pd_wmat *f = pd_wmat_new(PD_WTYPE_F32, big, 768, 768, 768), *b = pd_wmat_new(PD_WTYPE_BF16, big, 768, 768, 768),
            *i = pd_wmat_new(PD_WTYPE_INT8, big, 768, 768, 768);
    CHECK(f && b && i);
    if (f && b && i) {
        CHECK(pd_wmat_bytes(f) == 768u * 768 * 4);
        CHECK(pd_wmat_bytes(b) == 768u * 768 * 2);
        CHECK(pd_wmat_bytes(i) == 768u * 768 + 768 * 8);
        float row[768];
        pd_wmat_row(i, 5, row);
        int q[768];
        float sw[1];
        ref_quant_w(big + 5 * 768, 1, 768, 768, q, sw);
        int ok = 1;
        for (int k = 0; k < 768; k++) ok &= row[k] == sw[0] * (float)q[k];
        CHECK(ok);
        pd_wmat_row(b, 767, row);
        ok = 1;
        for (int k = 0; k < 768; k++) ok &= row[k] == (float)ref_bf16(big[767 * 768 + k]);
        CHECK(ok);
        float y = 123.0f;
        pd_wmat_linear(NULL, f, big, 0, NULL, &y, 0); /* no rows: nothing written */
        CHECK(y == 123.0f);
    }
    pd_wmat_free(f);
    pd_wmat_free(b);
    pd_wmat_free(i);
    free(big);
    pd_wmat_free(NULL);
}

int main(void) {
    test_bf16_round();
    test_api();
    pd_pool *pool = pd_pool_new(2);
    CHECK(pool != NULL);
    /* rows, out, in */
    static const int shapes[][3] = {{1, 1, 1},   {1, 5, 3},    {2, 47, 17},  {3, 48, 64},   {8, 49, 130},
                                    {9, 96, 7},  {17, 100, 33}, {1, 200, 768}, {33, 97, 255}, {100, 150, 3001},
                                    {530, 50, 40}};
    const char *isa;
    for (int l = 0; (isa = test_next_isa(&l));) {
        printf("  fp32 %s, bf16 %s, int8 %s\n", pd_wmat_kernel(PD_WTYPE_F32), pd_wmat_kernel(PD_WTYPE_BF16),
               pd_wmat_kernel(PD_WTYPE_INT8));
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int r = shapes[s][0], o = shapes[s][1], i = shapes[s][2];
                int v = (int)(s % 4); /* vary the options across shapes */
                int bad = check_forward(s % 2 ? pool : NULL, (pd_wtype)t, r, o, i, v & 1, v != 2, v == 3);
                CHECKF(bad == 0, "%s %s forward %dx%dx%d: %d elements off", isa, pd_wtype_name((pd_wtype)t), r, o, i, bad);
                bad = check_forward(pool, (pd_wtype)t, r, o, i, 1, 1, 1);
                CHECKF(bad == 0, "%s %s strided forward %dx%dx%d: %d elements off", isa, pd_wtype_name((pd_wtype)t), r, o,
                       i, bad);
                if (i > 1000) continue; /* the double reference of dx is slow there */
                bad = check_dx(s % 2 ? NULL : pool, (pd_wtype)t, r, o, i, v == 1);
                CHECKF(bad == 0, "%s %s dx %dx%dx%d: %d elements off", isa, pd_wtype_name((pd_wtype)t), r, o, i, bad);
            }
    }
    pd_pool_free(pool);
    return TEST_SUMMARY("test_gemm");
}
