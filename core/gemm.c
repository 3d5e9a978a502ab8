/* gemm.c - packed weight matrices (fp32, bf16, int8) and their products; see gemm.h.
 *
 * Layout: W (out, in) is cut into panels of NR = 48 outputs. A panel is g rows of 192 bytes
 * (48 lanes x 4 bytes), one row per "k group": 1 fp32, 2 bf16 or 4 int8 consecutive inputs of
 * each output. The activations A are rows of the same 4-byte groups (fp32 as is, bf16 pairs,
 * u8 quads), so one micro-kernel shape serves every type: for each group, broadcast 4 bytes of
 * each of MR <= 8 rows of A, load the panel row as 3 vectors, and multiply-accumulate into
 * 8 x 3 accumulators (fp32 FMA, vdpbf16ps or vpdpbusd). */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define NR PD_WMAT_NR
#define MR_MAX 8
#define GROUP_BYTES (NR * 4) /* one panel row */

struct pd_wmat {
    pd_wtype t;
    int out, in;
    int g;          /* k groups: in (fp32), ceil(in / 2) (bf16), ceil(in / 4) (int8) */
    int npan;       /* ceil(out / NR) */
    size_t pstride; /* bytes per panel: g * GROUP_BYTES */
    char *pan;      /* (npan, g, NR, 4 bytes), 64-byte aligned, zero past out and in */
    size_t maplen;  /* pan is an mmap of this length, or 0: malloc'd */
    float *sw;      /* int8: (npan * NR) per-output scales, 0 past out */
    int32_t *wsum;  /* int8: (npan * NR) sum_k q[n][k] */
    size_t bytes;
    const float *ref; /* pd_wmat_borrow: the caller's fp32 W (no panels), rows ldw apart */
    size_t ldw;
};

/* ==== Element conversions (the reference semantics of every body) ==== */

uint16_t pd_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero, subnormal: signed zero */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: quiet */
    u += 0x7fffu + ((u >> 16) & 1u); /* nearest even (infinity stays infinity) */
    return (uint16_t)(u >> 16);
}

float pd_bf16_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* rint(v) clamped to [-256, 256] before conversion (NaN -> -256), so no conversion is undefined. */
static inline int clamp_rint(float v) {
    float r = nearbyintf(v);
    if (!(r >= -256.0f)) r = -256.0f;
    if (r > 256.0f) r = 256.0f;
    return (int)r;
}

/* The u8 quantization of one row (gemm.h): scale and zero point. */
static void quant_params(float lo, float hi, float *scale, float *inv, int32_t *zp) {
    float s = (hi - lo) / 255.0f;
    if (!(s > 0.0f) || isinf(s)) { /* all zero (or non-finite input): everything maps to z = 0 */
        *scale = s > 0.0f ? s : 0.0f;
        *inv = 0.0f;
        *zp = 0;
        return;
    }
    *scale = s;
    *inv = 1.0f / s;
    int z = clamp_rint(-lo * *inv);
    *zp = z < 0 ? 0 : z > 255 ? 255 : z;
}

static void quant_row_scalar(const float *x, int n, int kp, uint8_t *u, float *scale, int32_t *zp) {
    float lo = 0.0f, hi = 0.0f, inv;
    for (int k = 0; k < n; k++) {
        lo = x[k] < lo ? x[k] : lo;
        hi = x[k] > hi ? x[k] : hi;
    }
    quant_params(lo, hi, scale, &inv, zp);
    for (int k = 0; k < n; k++) {
        int v = clamp_rint(x[k] * inv) + *zp;
        u[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    memset(u + n, 0, (size_t)(kp - n));
}

static void bf16_row_scalar(const float *x, int n, int kp, const float *cs, uint16_t *o) {
    for (int k = 0; k < n; k++) o[k] = pd_bf16_round(cs ? x[k] * cs[k] : x[k]);
    for (int k = n; k < kp; k++) o[k] = 0;
}

/* ==== Per-thread scratch ==== */

/* Two slots per thread: 0 holds the converted activations of the call this thread makes,
 * 1 the transposed panels of a backward call this thread makes. Grown to the largest need,
 * freed when the thread exits (pthread key destructor). */
typedef struct {
    void *p[2];
    size_t cap[2];
} scratch;

static _Thread_local scratch tls_scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *v) {
    scratch *s = v;
    for (int i = 0; i < 2; i++) {
        free(s->p[i]);
        s->p[i] = NULL;
        s->cap[i] = 0;
    }
}

static void scratch_key_init(void) { PD_ASSERT(pthread_key_create(&scratch_key, scratch_release) == 0); }

/* A 64-byte aligned buffer of at least n bytes in this thread's slot; aborts if memory runs
 * out (a product has no error return, as sgemm has none). */
static void *scratch_get(int slot, size_t n) {
    scratch *s = &tls_scratch;
    if (s->cap[slot] >= n) return s->p[slot];
    pthread_once(&scratch_once, scratch_key_init);
    pthread_setspecific(scratch_key, s);
    free(s->p[slot]);
    s->p[slot] = NULL;
    s->cap[slot] = 0;
    size_t cap = (n + 4095) & ~(size_t)4095;
    void *p = NULL;
    PD_ASSERT(posix_memalign(&p, 64, cap) == 0 && p);
    s->p[slot] = p;
    s->cap[slot] = cap;
    return p;
}

/* ==== Tiles ==== */

/* One micro-kernel call: mr rows of A against one panel. */
typedef struct {
    int g;                 /* k groups */
    const char *a;         /* first row of A */
    size_t lda;            /* bytes between rows of A */
    const char *b;         /* the panel: g rows of GROUP_BYTES */
    float *c;              /* first output row, at the panel's first column */
    size_t ldc;            /* floats between output rows */
    int nc;                /* valid columns (1..NR) */
    const float *bias;     /* (nc) or NULL */
    int acc;               /* add to c instead of overwriting */
    const float *sx;       /* int8: (mr) row scales */
    const int32_t *zp;     /* int8: (mr) row zero points */
    const float *sw;       /* int8: (NR) column scales */
    const int32_t *wsum;   /* int8: (NR) column sums of q */
} tile;

typedef void (*tile_fn)(const tile *t);

static inline float ldf(const char *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

static inline int32_t ld32(const char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Scalar bodies: the same sums, one row at a time, the panel row as a 48-wide vector. */
static void store_scalar(const tile *t, int i, const float *s) {
    float *c = t->c + (size_t)i * t->ldc;
    for (int j = 0; j < t->nc; j++) {
        float v = s[j] + (t->bias ? t->bias[j] : 0.0f);
        c[j] = t->acc ? c[j] + v : v;
    }
}

static void tile_f32_scalar(int mr, const tile *t) {
    for (int i = 0; i < mr; i++) {
        float s[NR] = {0};
        const char *a = t->a + (size_t)i * t->lda;
        const float *b = (const float *)t->b;
        for (int g = 0; g < t->g; g++, b += NR) {
            float x;
            memcpy(&x, a + 4 * (size_t)g, 4);
            for (int j = 0; j < NR; j++) s[j] += x * b[j];
        }
        store_scalar(t, i, s);
    }
}

static void tile_bf16_scalar(int mr, const tile *t) {
    for (int i = 0; i < mr; i++) {
        float s[NR] = {0};
        const uint16_t *a = (const uint16_t *)(const void *)(t->a + (size_t)i * t->lda);
        const uint16_t *b = (const uint16_t *)(const void *)t->b;
        for (int g = 0; g < t->g; g++, b += 2 * NR) {
            float x0 = pd_bf16_float(a[2 * g]), x1 = pd_bf16_float(a[2 * g + 1]);
            for (int j = 0; j < NR; j++) s[j] += x0 * pd_bf16_float(b[2 * j]) + x1 * pd_bf16_float(b[2 * j + 1]);
        }
        store_scalar(t, i, s);
    }
}

static void tile_i8_scalar(int mr, const tile *t) {
    for (int i = 0; i < mr; i++) {
        int32_t s[NR] = {0};
        const uint8_t *a = (const uint8_t *)t->a + (size_t)i * t->lda;
        const int8_t *b = (const int8_t *)t->b;
        for (int g = 0; g < t->g; g++, b += 4 * NR)
            for (int j = 0; j < NR; j++)
                s[j] += a[4 * g] * b[4 * j] + a[4 * g + 1] * b[4 * j + 1] + a[4 * g + 2] * b[4 * j + 2] +
                        a[4 * g + 3] * b[4 * j + 3];
        float f[NR];
        for (int j = 0; j < t->nc; j++) f[j] = t->sx[i] * t->sw[j] * (float)(s[j] - t->zp[i] * t->wsum[j]);
        store_scalar(t, i, f);
    }
}

#define SCALAR_WRAP(name)                                                    \
    static void name##_s1(const tile *t) { name(1, t); }                     \
    static void name##_s2(const tile *t) { name(2, t); }                     \
    static void name##_s3(const tile *t) { name(3, t); }                     \
    static void name##_s4(const tile *t) { name(4, t); }                     \
    static void name##_s5(const tile *t) { name(5, t); }                     \
    static void name##_s6(const tile *t) { name(6, t); }                     \
    static void name##_s7(const tile *t) { name(7, t); }                     \
    static void name##_s8(const tile *t) { name(8, t); }
#define MR_TABLE(name, s) {NULL, name##s##1, name##s##2, name##s##3, name##s##4, name##s##5, name##s##6, name##s##7, name##s##8}
SCALAR_WRAP(tile_f32_scalar)
SCALAR_WRAP(tile_bf16_scalar)
SCALAR_WRAP(tile_i8_scalar)

#if defined(__x86_64__) && defined(__GNUC__)
#define PD_GEMM_X86 1
#define AI static inline __attribute__((always_inline))

/* ---- AVX2+FMA: the same packing in 16-column thirds of a panel and 4-row groups (16 ymm
 * registers: 8 accumulators, the panel row widened, the broadcast row) ---- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* Columns [v0, v0 + 16) of rows r0 .. r0 + MR: the epilogue data of one part. */
typedef struct {
    __m256i m[2];
    __m256 bias[2], sw[2];
    __m256i ws[2];
} epi2;

AI __m256i lane_mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AI void epi2_init(const tile *t, int v0, epi2 *e, int i8) {
    for (int v = 0; v < 2; v++) {
        int c = v0 + 8 * v;
        e->m[v] = lane_mask8(t->nc - c);
        e->bias[v] = t->bias ? _mm256_maskload_ps(t->bias + c, e->m[v]) : _mm256_setzero_ps();
        if (i8) {
            e->sw[v] = _mm256_loadu_ps(t->sw + c);
            e->ws[v] = _mm256_loadu_si256((const __m256i *)(const void *)(t->wsum + c));
        }
    }
}

AI void put2_f32(const tile *t, const epi2 *e, int i, int v0, __m256 c0, __m256 c1) {
    float *cr = t->c + (size_t)i * t->ldc + v0;
    __m256 c[2] = {c0, c1};
    for (int v = 0; v < 2; v++) {
        __m256 r = _mm256_add_ps(c[v], e->bias[v]);
        if (t->acc) r = _mm256_add_ps(r, _mm256_maskload_ps(cr + 8 * v, e->m[v]));
        _mm256_maskstore_ps(cr + 8 * v, e->m[v], r);
    }
}

AI void put2_i32(const tile *t, const epi2 *e, int i, int v0, __m256i c0, __m256i c1) {
    float *cr = t->c + (size_t)i * t->ldc + v0;
    __m256i c[2] = {c0, c1};
    __m256i z = _mm256_set1_epi32(t->zp[i]);
    __m256 sx = _mm256_set1_ps(t->sx[i]);
    for (int v = 0; v < 2; v++) {
        __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(c[v], _mm256_mullo_epi32(z, e->ws[v])));
        __m256 r = _mm256_fmadd_ps(f, _mm256_mul_ps(sx, e->sw[v]), e->bias[v]);
        if (t->acc) r = _mm256_add_ps(r, _mm256_maskload_ps(cr + 8 * v, e->m[v]));
        _mm256_maskstore_ps(cr + 8 * v, e->m[v], r);
    }
}

#define ROWS4(X) X(0) X(1) X(2) X(3)
#define DECL2_PS(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = c##i##0;
#define DECL2_EPI(i) __m256i c##i##0 = _mm256_setzero_si256(), c##i##1 = c##i##0;
#define PUT2_F32(i) if (MR > i) put2_f32(t, &e, r0 + i, v0, c##i##0, c##i##1);
#define PUT2_I32(i) if (MR > i) put2_i32(t, &e, r0 + i, v0, c##i##0, c##i##1);

#define STEP2_F32(i)                                                 \
    if (MR > i) {                                                    \
        __m256 x = _mm256_set1_ps(ldf(a + i * lda));                 \
        c##i##0 = _mm256_fmadd_ps(x, b0, c##i##0);                   \
        c##i##1 = _mm256_fmadd_ps(x, b1, c##i##1);                   \
    }
AI void part_f32_avx2(const int MR, const tile *t, int r0, int v0) {
    ROWS4(DECL2_PS)
    const char *a = t->a + (size_t)r0 * t->lda, *b = t->b + 4 * v0;
    size_t lda = t->lda;
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m256 b0 = _mm256_loadu_ps((const float *)(const void *)b), b1 = _mm256_loadu_ps((const float *)(const void *)(b + 32));
        ROWS4(STEP2_F32)
    }
    epi2 e;
    epi2_init(t, v0, &e, 0);
    ROWS4(PUT2_F32)
}

#define STEP2_BF16(i)                                                                   \
    if (MR > i) {                                                                       \
        __m256i x = _mm256_set1_epi32(ld32(a + i * lda));                               \
        __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));                      \
        __m256 xo = _mm256_castsi256_ps(_mm256_and_si256(x, hi));                       \
        c##i##0 = _mm256_fmadd_ps(xo, bo0, _mm256_fmadd_ps(xe, be0, c##i##0));          \
        c##i##1 = _mm256_fmadd_ps(xo, bo1, _mm256_fmadd_ps(xe, be1, c##i##1));          \
    }
AI void part_bf16_avx2(const int MR, const tile *t, int r0, int v0) {
    ROWS4(DECL2_PS)
    const char *a = t->a + (size_t)r0 * t->lda, *b = t->b + 4 * v0;
    size_t lda = t->lda;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)b), w1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32));
        __m256 be0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), bo0 = _mm256_castsi256_ps(_mm256_and_si256(w0, hi));
        __m256 be1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)), bo1 = _mm256_castsi256_ps(_mm256_and_si256(w1, hi));
        ROWS4(STEP2_BF16)
    }
    epi2 e;
    epi2_init(t, v0, &e, 0);
    ROWS4(PUT2_F32)
}

#define STEP2_I8(i)                                                                                          \
    if (MR > i) {                                                                                            \
        __m256i x = _mm256_set1_epi32(ld32(a + i * lda));                                                    \
        __m256i xe = _mm256_and_si256(x, lo8), xo = _mm256_srli_epi16(x, 8);                                 \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_add_epi32(_mm256_madd_epi16(xe, be0), _mm256_madd_epi16(xo, bo0))); \
        c##i##1 = _mm256_add_epi32(c##i##1, _mm256_add_epi32(_mm256_madd_epi16(xe, be1), _mm256_madd_epi16(xo, bo1))); \
    }
AI void part_i8_avx2(const int MR, const tile *t, int r0, int v0) {
    ROWS4(DECL2_EPI)
    const char *a = t->a + (size_t)r0 * t->lda, *b = t->b + 4 * v0;
    size_t lda = t->lda;
    const __m256i lo8 = _mm256_set1_epi32(0x00ff00ff);
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)b), w1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32));
        __m256i be0 = _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8), bo0 = _mm256_srai_epi16(w0, 8);
        __m256i be1 = _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8), bo1 = _mm256_srai_epi16(w1, 8);
        ROWS4(STEP2_I8)
    }
    epi2 e;
    epi2_init(t, v0, &e, 1);
    ROWS4(PUT2_I32)
}

/* A whole tile (mr <= 8 rows, the panel's valid columns) as 4-row groups and 16-column thirds. */
#define AVX2_TILE(ty)                                                                   \
    static void tile_##ty##_avx2(int mr, const tile *t) {                               \
        for (int r0 = 0; r0 < mr; r0 += 4)                                              \
            for (int v0 = 0; v0 < t->nc; v0 += 16) switch (mr - r0 < 4 ? mr - r0 : 4) { \
                case 1: part_##ty##_avx2(1, t, r0, v0); break;                          \
                case 2: part_##ty##_avx2(2, t, r0, v0); break;                          \
                case 3: part_##ty##_avx2(3, t, r0, v0); break;                          \
                default: part_##ty##_avx2(4, t, r0, v0); break;                         \
                }                                                                       \
    }
AVX2_TILE(f32)
AVX2_TILE(bf16)
AVX2_TILE(i8)
SCALAR_WRAP(tile_f32_avx2)
SCALAR_WRAP(tile_bf16_avx2)
SCALAR_WRAP(tile_i8_avx2)

#pragma GCC pop_options

/* ---- AVX-512F/BW: fp32, and bf16 / int8 by widening (CPUs without the dot products) ---- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")

AI __mmask16 lane_mask(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }

/* The epilogue of a tile, loaded once: column masks, bias, and for int8 the column scales
 * and sums. */
typedef struct {
    __mmask16 m[3];
    __m512 bias[3], sw[3];
    __m512i ws[3];
} epi;

AI void epi_init(const tile *t, epi *e, int i8) {
    for (int v = 0; v < 3; v++) {
        e->m[v] = lane_mask(t->nc - 16 * v);
        e->bias[v] = t->bias ? _mm512_maskz_loadu_ps(e->m[v], t->bias + 16 * v) : _mm512_setzero_ps();
        if (i8) {
            e->sw[v] = _mm512_loadu_ps(t->sw + 16 * v);
            e->ws[v] = _mm512_loadu_si512(t->wsum + 16 * v);
        }
    }
}

/* Row i: c = acc + bias (+ c), the fp32 and bf16 epilogue. */
AI void put_f32(const tile *t, const epi *e, int i, __m512 c0, __m512 c1, __m512 c2) {
    float *cr = t->c + (size_t)i * t->ldc;
    __m512 c[3] = {c0, c1, c2};
    for (int v = 0; v < 3; v++) {
        __m512 r = _mm512_add_ps(c[v], e->bias[v]);
        if (t->acc) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(e->m[v], cr + 16 * v));
        _mm512_mask_storeu_ps(cr + 16 * v, e->m[v], r);
    }
}

/* Row i: c = sx sw (acc - zp wsum) + bias (+ c), the int8 epilogue. */
AI void put_i32(const tile *t, const epi *e, int i, __m512i c0, __m512i c1, __m512i c2) {
    float *cr = t->c + (size_t)i * t->ldc;
    __m512i c[3] = {c0, c1, c2};
    __m512i z = _mm512_set1_epi32(t->zp[i]);
    __m512 sx = _mm512_set1_ps(t->sx[i]);
    for (int v = 0; v < 3; v++) {
        __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(c[v], _mm512_mullo_epi32(z, e->ws[v])));
        __m512 r = _mm512_fmadd_ps(f, _mm512_mul_ps(sx, e->sw[v]), e->bias[v]);
        if (t->acc) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(e->m[v], cr + 16 * v));
        _mm512_mask_storeu_ps(cr + 16 * v, e->m[v], r);
    }
}


/* The accumulators are named variables (c00 .. c72), not an array: gcc keeps arrays of
 * vectors on the stack. ROWS expands a row macro for rows 0..7; rows >= MR fold away. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define DECL_PS(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define DECL_EPI(i) __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define PUT_F32(i) if (MR > i) put_f32(t, &e, i, c##i##0, c##i##1, c##i##2);
#define PUT_I32(i) if (MR > i) put_i32(t, &e, i, c##i##0, c##i##1, c##i##2);

#define STEP_F32(i)                                                  \
    if (MR > i) {                                                    \
        __m512 x = _mm512_set1_ps(ldf(a + i * lda));                 \
        c##i##0 = _mm512_fmadd_ps(x, b0, c##i##0);                   \
        c##i##1 = _mm512_fmadd_ps(x, b1, c##i##1);                   \
        c##i##2 = _mm512_fmadd_ps(x, b2, c##i##2);                   \
    }
AI void tile_f32_avx512(const int MR, const tile *t) {
    ROWS(DECL_PS)
    const char *a = t->a;
    const float *b = (const float *)t->b;
    size_t lda = t->lda;
    for (int g = 0; g < t->g; g++, b += NR, a += 4) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32);
        ROWS(STEP_F32)
    }
    epi e;
    epi_init(t, &e, 0);
    ROWS(PUT_F32)
}

/* bf16 pairs widened: the low half of each 32-bit lane shifted up, the high half masked. */
#define STEP_BF16W(i)                                                                   \
    if (MR > i) {                                                                       \
        __m512i x = _mm512_set1_epi32(ld32(a + i * lda));                               \
        __m512 xe = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));                      \
        __m512 xo = _mm512_castsi512_ps(_mm512_and_si512(x, hi));                       \
        c##i##0 = _mm512_fmadd_ps(xo, bo0, _mm512_fmadd_ps(xe, be0, c##i##0));          \
        c##i##1 = _mm512_fmadd_ps(xo, bo1, _mm512_fmadd_ps(xe, be1, c##i##1));          \
        c##i##2 = _mm512_fmadd_ps(xo, bo2, _mm512_fmadd_ps(xe, be2, c##i##2));          \
    }
AI void tile_bf16_avx512(const int MR, const tile *t) {
    ROWS(DECL_PS)
    const char *a = t->a, *b = t->b;
    size_t lda = t->lda;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m512i w0 = _mm512_load_si512(b), w1 = _mm512_load_si512(b + 64), w2 = _mm512_load_si512(b + 128);
        __m512 be0 = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), bo0 = _mm512_castsi512_ps(_mm512_and_si512(w0, hi));
        __m512 be1 = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), bo1 = _mm512_castsi512_ps(_mm512_and_si512(w1, hi));
        __m512 be2 = _mm512_castsi512_ps(_mm512_slli_epi32(w2, 16)), bo2 = _mm512_castsi512_ps(_mm512_and_si512(w2, hi));
        ROWS(STEP_BF16W)
    }
    epi e;
    epi_init(t, &e, 0);
    ROWS(PUT_F32)
}

/* u8 x s8 quads through int16 pairs (vpmaddwd: exact, no saturation): bytes 0 and 2 of each
 * lane, then bytes 1 and 3. */
#define STEP_I8W(i)                                                                                          \
    if (MR > i) {                                                                                            \
        __m512i x = _mm512_set1_epi32(ld32(a + i * lda));                                                    \
        __m512i xe = _mm512_and_si512(x, lo8), xo = _mm512_srli_epi16(x, 8);                                 \
        c##i##0 = _mm512_add_epi32(c##i##0, _mm512_add_epi32(_mm512_madd_epi16(xe, be0), _mm512_madd_epi16(xo, bo0))); \
        c##i##1 = _mm512_add_epi32(c##i##1, _mm512_add_epi32(_mm512_madd_epi16(xe, be1), _mm512_madd_epi16(xo, bo1))); \
        c##i##2 = _mm512_add_epi32(c##i##2, _mm512_add_epi32(_mm512_madd_epi16(xe, be2), _mm512_madd_epi16(xo, bo2))); \
    }
AI void tile_i8_avx512(const int MR, const tile *t) {
    ROWS(DECL_EPI)
    const char *a = t->a, *b = t->b;
    size_t lda = t->lda;
    const __m512i lo8 = _mm512_set1_epi32(0x00ff00ff);
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m512i w0 = _mm512_load_si512(b), w1 = _mm512_load_si512(b + 64), w2 = _mm512_load_si512(b + 128);
        __m512i be0 = _mm512_srai_epi16(_mm512_slli_epi16(w0, 8), 8), bo0 = _mm512_srai_epi16(w0, 8);
        __m512i be1 = _mm512_srai_epi16(_mm512_slli_epi16(w1, 8), 8), bo1 = _mm512_srai_epi16(w1, 8);
        __m512i be2 = _mm512_srai_epi16(_mm512_slli_epi16(w2, 8), 8), bo2 = _mm512_srai_epi16(w2, 8);
        ROWS(STEP_I8W)
    }
    epi e;
    epi_init(t, &e, 1);
    ROWS(PUT_I32)
}

#define X86_WRAP(name, sfx)                                              \
    static void name##sfx##1(const tile *t) { name(1, t); }              \
    static void name##sfx##2(const tile *t) { name(2, t); }              \
    static void name##sfx##3(const tile *t) { name(3, t); }              \
    static void name##sfx##4(const tile *t) { name(4, t); }              \
    static void name##sfx##5(const tile *t) { name(5, t); }              \
    static void name##sfx##6(const tile *t) { name(6, t); }              \
    static void name##sfx##7(const tile *t) { name(7, t); }              \
    static void name##sfx##8(const tile *t) { name(8, t); }
X86_WRAP(tile_f32_avx512, _m)
X86_WRAP(tile_bf16_avx512, _m)
X86_WRAP(tile_i8_avx512, _m)

/* Activation rows, 16 at a time: whole vectors, then one masked tail. */
AI __m512i bf16_rne16(__m512 f) {
    const __m512i expm = _mm512_set1_epi32(0x7f800000), absm = _mm512_set1_epi32(0x7fffffff);
    __m512i u = _mm512_castps_si512(f);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                     _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), expm);
    __mmask16 tiny = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, expm), _mm512_setzero_si512());
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_srli_epi32(r, 16);
}

/* x (times cs, the column scales, if not NULL) in lanes m. */
AI __m512 ld_scaled(const float *x, const float *cs, __mmask16 m) {
    __m512 v = _mm512_maskz_loadu_ps(m, x);
    return cs ? _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, cs)) : v;
}

static void bf16_row_avx512(const float *x, int n, int kp, const float *cs, uint16_t *o) {
    int k = 0;
    for (; k + 16 <= n; k += 16)
        _mm256_storeu_si256((__m256i *)(void *)(o + k), _mm512_cvtepi32_epi16(bf16_rne16(ld_scaled(x + k, cs ? cs + k : NULL, 0xffff))));
    if (k < n) {
        __mmask16 m = lane_mask(n - k);
        _mm256_mask_storeu_epi16(o + k, m, _mm512_cvtepi32_epi16(bf16_rne16(ld_scaled(x + k, cs ? cs + k : NULL, m))));
    }
    for (k = n; k < kp; k++) o[k] = 0;
}

AI __m128i quant16(__m512 v, __m512 vi, __m512i z) {
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, vi)); /* NaN: INT_MIN */
    q = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(256)), _mm512_set1_epi32(-256));
    q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, z), _mm512_setzero_si512()), _mm512_set1_epi32(255));
    return _mm512_cvtepi32_epi8(q);
}

static void quant_row_avx512(const float *x, int n, int kp, uint8_t *u, float *scale, int32_t *zp) {
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps(), lo2 = lo, hi2 = hi;
    int k = 0;
    for (; k + 32 <= n; k += 32) {
        __m512 v = _mm512_loadu_ps(x + k), w = _mm512_loadu_ps(x + k + 16);
        lo = _mm512_min_ps(v, lo); /* NaN lanes keep the running value, as the scalar loop does */
        hi = _mm512_max_ps(v, hi);
        lo2 = _mm512_min_ps(w, lo2);
        hi2 = _mm512_max_ps(w, hi2);
    }
    for (; k < n; k += 16) {
        __m512 v = _mm512_maskz_loadu_ps(lane_mask(n - k), x + k);
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
    }
    float inv;
    quant_params(_mm512_reduce_min_ps(_mm512_min_ps(lo, lo2)), _mm512_reduce_max_ps(_mm512_max_ps(hi, hi2)), scale, &inv, zp);
    __m512 vi = _mm512_set1_ps(inv);
    __m512i z = _mm512_set1_epi32(*zp);
    for (k = 0; k + 16 <= n; k += 16) _mm_storeu_si128((__m128i *)(void *)(u + k), quant16(_mm512_loadu_ps(x + k), vi, z));
    if (k < n) {
        __mmask16 m = lane_mask(n - k);
        _mm_mask_storeu_epi8(u + k, m, quant16(_mm512_maskz_loadu_ps(m, x + k), vi, z));
    }
    memset(u + n, 0, (size_t)(kp - n));
}

#pragma GCC pop_options

/* ---- AVX512_BF16 and AVX512_VNNI dot products ---- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16,avx512vnni")

#define STEP_BF16(i)                                                    \
    if (MR > i) {                                                       \
        __m512bh x = (__m512bh)_mm512_set1_epi32(ld32(a + i * lda));    \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, x, b0);                     \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, x, b1);                     \
        c##i##2 = _mm512_dpbf16_ps(c##i##2, x, b2);                     \
    }
AI void tile_bf16_dot(const int MR, const tile *t) {
    ROWS(DECL_PS)
    const char *a = t->a, *b = t->b;
    size_t lda = t->lda;
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 64),
                 b2 = (__m512bh)_mm512_load_si512(b + 128);
        ROWS(STEP_BF16)
    }
    epi e;
    epi_init(t, &e, 0);
    ROWS(PUT_F32)
}

#define STEP_I8(i)                                                      \
    if (MR > i) {                                                       \
        __m512i x = _mm512_set1_epi32(ld32(a + i * lda));               \
        c##i##0 = _mm512_dpbusd_epi32(c##i##0, x, b0);                  \
        c##i##1 = _mm512_dpbusd_epi32(c##i##1, x, b1);                  \
        c##i##2 = _mm512_dpbusd_epi32(c##i##2, x, b2);                  \
    }
AI void tile_i8_dot(const int MR, const tile *t) {
    ROWS(DECL_EPI)
    const char *a = t->a, *b = t->b;
    size_t lda = t->lda;
    for (int g = 0; g < t->g; g++, b += GROUP_BYTES, a += 4) {
        __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 64), b2 = _mm512_load_si512(b + 128);
        ROWS(STEP_I8)
    }
    epi e;
    epi_init(t, &e, 1);
    ROWS(PUT_I32)
}

X86_WRAP(tile_bf16_dot, _d)
X86_WRAP(tile_i8_dot, _d)

static void bf16_row_dot(const float *x, int n, int kp, const float *cs, uint16_t *o) {
    for (int k = 0; k < n; k += 16) {
        __mmask16 m = lane_mask(n - k);
        __m256bh h = _mm512_cvtneps_pbh(ld_scaled(x + k, cs ? cs + k : NULL, m));
        _mm256_mask_storeu_epi16(o + k, m, (__m256i)h);
    }
    for (int k = n; k < kp; k++) o[k] = 0;
}

#pragma GCC pop_options
#endif

/* ==== Dispatch ==== */

/* The bodies for each combination of the PD_CPU_* features (core/kernels.h), built once;
 * every product picks the set for pd_kernels_features() at the call, so PD_ISA and
 * pd_kernels_set_isa choose these bodies as they choose the other kernels'. */
typedef struct {
    tile_fn tf[3][MR_MAX + 1]; /* by type, by rows */
    const char *kname[3];
    void (*bf16_row)(const float *x, int n, int kp, const float *colscale, uint16_t *o);
    void (*quant_row)(const float *x, int n, int kp, uint8_t *u, float *scale, int32_t *zp);
} kern_set;

enum { KSETS = 16 }; /* PD_CPU_AVX2 | AVX512 | AVX512_VNNI | AVX512_BF16 */
static kern_set ksets[KSETS];
static pthread_once_t disp_once = PTHREAD_ONCE_INIT;

static void kset_build(kern_set *s, unsigned f) {
    kern_set k = {
        {MR_TABLE(tile_f32_scalar, _s), MR_TABLE(tile_bf16_scalar, _s), MR_TABLE(tile_i8_scalar, _s)},
        {"scalar", "scalar", "scalar"},
        bf16_row_scalar,
        quant_row_scalar,
    };
#ifdef PD_GEMM_X86
    if (f & PD_CPU_AVX2) {
        kern_set m = {
            {MR_TABLE(tile_f32_avx2, _s), MR_TABLE(tile_bf16_avx2, _s), MR_TABLE(tile_i8_avx2, _s)},
            {"avx2", "avx2 (bf16 emulated)", "avx2 (int8 emulated)"},
            bf16_row_scalar,
            quant_row_scalar,
        };
        k = m;
    }
    if (f & PD_CPU_AVX512) {
        kern_set m = {
            {MR_TABLE(tile_f32_avx512, _m), MR_TABLE(tile_bf16_avx512, _m), MR_TABLE(tile_i8_avx512, _m)},
            {"avx512", "avx512 (bf16 emulated)", "avx512 (int8 emulated)"},
            bf16_row_avx512,
            quant_row_avx512,
        };
        k = m;
        if (f & PD_CPU_AVX512_BF16) {
            tile_fn d[] = MR_TABLE(tile_bf16_dot, _d);
            memcpy(k.tf[PD_WTYPE_BF16], d, sizeof d);
            k.kname[PD_WTYPE_BF16] = "avx512_bf16";
            k.bf16_row = bf16_row_dot;
        }
        if (f & PD_CPU_AVX512_VNNI) {
            tile_fn d[] = MR_TABLE(tile_i8_dot, _d);
            memcpy(k.tf[PD_WTYPE_INT8], d, sizeof d);
            k.kname[PD_WTYPE_INT8] = "avx512_vnni";
        }
    }
#endif
    *s = k;
}

static void disp_init(void) {
    for (unsigned f = 0; f < KSETS; f++) kset_build(&ksets[f], f);
}

static const kern_set *kset(void) {
    pthread_once(&disp_once, disp_init);
    return &ksets[pd_kernels_features() & (KSETS - 1)];
}

const char *pd_wmat_kernel(pd_wtype t) { return kset()->kname[t]; }

/* ==== Packing ==== */

int pd_wtype_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "fp32") || !strcmp(s, "f32")) return PD_WTYPE_F32;
    if (!strcmp(s, "bf16")) return PD_WTYPE_BF16;
    if (!strcmp(s, "int8")) return PD_WTYPE_INT8;
    return -1;
}

const char *pd_wtype_name(pd_wtype t) {
    return t == PD_WTYPE_BF16 ? "bf16" : t == PD_WTYPE_INT8 ? "int8" : "fp32";
}

static int groups_of(pd_wtype t, int k) { return t == PD_WTYPE_F32 ? k : t == PD_WTYPE_BF16 ? (k + 1) / 2 : (k + 3) / 4; }
static int per_group(pd_wtype t) { return t == PD_WTYPE_F32 ? 1 : t == PD_WTYPE_BF16 ? 2 : 4; }

/* Panel memory. From 2 MB on it is mapped on its own, 2 MB aligned and exactly as long as
 * needed (rounded to 4 KB), and advised into transparent huge pages: first touching 4 KB pages
 * dominated packing on a VM (fp32 3072x768: 32 ms, three quarters page faults and the zeroing
 * memset; 3 ms with huge pages). Only whole 2 MB stretches become huge pages, so the tail
 * costs no more than its bytes. *maplen gets the mapping's length, 0 for malloc'd memory. */
#define HUGE_PAGE ((size_t)2 << 20)
static char *panels_alloc(size_t bytes, size_t *maplen) {
    *maplen = 0;
    if (bytes >= HUGE_PAGE) {
        size_t len = (bytes + 4095) & ~(size_t)4095;
        char *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            size_t head = (HUGE_PAGE - (uintptr_t)m % HUGE_PAGE) % HUGE_PAGE;
            if (head) munmap(m, head);
            munmap(m + head + len, HUGE_PAGE - head);
#ifdef MADV_HUGEPAGE
            madvise(m + head, len, MADV_HUGEPAGE); /* advice only: failure leaves 4 KB pages */
#endif
            *maplen = len;
            return m + head; /* anonymous pages are zero */
        }
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes)) return NULL;
    memset(p, 0, bytes);
    return p;
}

pd_wmat *pd_wmat_new(pd_wtype t, const float *w, int out, int in, size_t ldw) {
    if (out <= 0 || in <= 0 || ldw < (size_t)in || !w || (unsigned)t > PD_WTYPE_INT8) return NULL;
    if (t == PD_WTYPE_INT8 && in > PD_WMAT_INT8_MAX_IN) return NULL; /* int32 sums: 255 x 127 x in */
    pd_wmat *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->t = t;
    m->out = out;
    m->in = in;
    m->g = groups_of(t, in);
    m->npan = (out + NR - 1) / NR;
    m->pstride = (size_t)m->g * GROUP_BYTES;
    size_t pbytes = m->pstride * (size_t)m->npan, cols = (size_t)m->npan * NR;
    m->pan = panels_alloc(pbytes, &m->maplen);
    if (t == PD_WTYPE_INT8) {
        m->sw = calloc(cols, sizeof *m->sw);
        m->wsum = calloc(cols, sizeof *m->wsum);
    }
    if (!m->pan || (t == PD_WTYPE_INT8 && (!m->sw || !m->wsum))) {
        pd_wmat_free(m);
        return NULL;
    }
    m->bytes = pbytes + (t == PD_WTYPE_INT8 ? cols * (sizeof *m->sw + sizeof *m->wsum) : 0);
    int pg = per_group(t);
    if (t == PD_WTYPE_INT8)
        for (int n = 0; n < out; n++) {
            const float *row = w + (size_t)n * ldw;
            float mx = 0.0f;
            for (int k = 0; k < in; k++) mx = fabsf(row[k]) > mx ? fabsf(row[k]) : mx;
            float s = mx / 127.0f;
            if (s > 0.0f && !isinf(s)) m->sw[n] = s;
        }
    /* Panel by panel, k by k: the 48 source rows are read side by side (48 short streams) and
     * the panel is written in order (writing row by row strided 192 bytes: 18 ns a value). */
    for (int pi = 0; pi < m->npan; pi++) {
        int nn = out - pi * NR < NR ? out - pi * NR : NR;
        char *pan = m->pan + (size_t)pi * m->pstride;
        const float *src = w + (size_t)pi * NR * ldw;
        float *swp = t == PD_WTYPE_INT8 ? m->sw + pi * NR : NULL;
        int32_t *wsp = t == PD_WTYPE_INT8 ? m->wsum + pi * NR : NULL;
        float inv[NR];
        for (int j = 0; j < nn; j++) inv[j] = swp && swp[j] > 0.0f ? 1.0f / swp[j] : 0.0f;
        for (int k = 0; k < in; k++) {
            char *e = pan + (size_t)(k / pg) * GROUP_BYTES;
            for (int j = 0; j < nn; j++) {
                float v = src[(size_t)j * ldw + k];
                if (t == PD_WTYPE_F32) {
                    memcpy(e + 4 * j, &v, 4);
                } else if (t == PD_WTYPE_BF16) {
                    uint16_t h = pd_bf16_round(v);
                    memcpy(e + 4 * j + 2 * (k % 2), &h, 2);
                } else {
                    int q = clamp_rint(v * inv[j]);
                    q = q < -127 ? -127 : q > 127 ? 127 : q;
                    e[4 * j + k % 4] = (char)(int8_t)q;
                    wsp[j] += q;
                }
            }
        }
    }
    return m;
}

pd_wmat *pd_wmat_borrow(const float *w, int out, int in, size_t ldw) {
    if (out <= 0 || in <= 0 || ldw < (size_t)in || !w) return NULL;
    pd_wmat *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->t = PD_WTYPE_F32;
    m->out = out;
    m->in = in;
    m->ref = w;
    m->ldw = ldw;
    return m;
}

int pd_wmat_borrowed(const pd_wmat *w) { return w->ref != NULL; }

void pd_wmat_free(pd_wmat *w) {
    if (!w) return;
    if (w->maplen) munmap(w->pan, w->maplen);
    else free(w->pan);
    free(w->sw);
    free(w->wsum);
    free(w);
}

pd_wtype pd_wmat_type(const pd_wmat *w) { return w->t; }
int pd_wmat_out(const pd_wmat *w) { return w->out; }
int pd_wmat_in(const pd_wmat *w) { return w->in; }
size_t pd_wmat_bytes(const pd_wmat *w) { return w->bytes; }

/* Element (n, k) of W as the kernels see it. */
static inline float wmat_at(const pd_wmat *w, int n, int k) {
    int pg = per_group(w->t);
    const char *e = w->pan + (size_t)(n / NR) * w->pstride + (size_t)(k / pg) * GROUP_BYTES + (size_t)(n % NR) * 4;
    if (w->t == PD_WTYPE_F32) {
        float f;
        memcpy(&f, e, 4);
        return f;
    }
    if (w->t == PD_WTYPE_BF16) {
        uint16_t h;
        memcpy(&h, e + 2 * (k % 2), 2);
        return pd_bf16_float(h);
    }
    return w->sw[n] * (float)((const int8_t *)e)[k % 4];
}

void pd_wmat_row(const pd_wmat *w, int n, float *out) {
    PD_ASSERT(n >= 0 && n < w->out);
    if (w->ref) {
        memcpy(out, w->ref + (size_t)n * w->ldw, sizeof(float) * (size_t)w->in);
        return;
    }
    for (int k = 0; k < w->in; k++) out[k] = wmat_at(w, n, k);
}

/* ==== Products across the pool ==== */

/* Rows of A per block: the block (rows x g groups x 4 bytes) stays within ~384 KB of L2 while
 * every panel of its task passes over it. */
#define A_BLOCK_BYTES (384 * 1024)

typedef struct {
    const kern_set *ks;
    pd_wtype kt;            /* which tiles run: the weight's type, or bf16 for a backward of int8 */
    int rows, g;
    const char *a;          /* A: (rows, g groups), lda bytes apart */
    size_t lda;
    const float *sx;        /* int8: per row */
    const int32_t *zp;
    float *y;
    size_t ldy;
    const float *bias;
    int acc;
    const char *pan;        /* npan panels, pstride bytes apart */
    size_t pstride;
    const float *sw;        /* int8: per column */
    const int32_t *wsum;
    int npan, ncols;        /* panels and valid output columns */
    int mc, rb, cb, pchunk; /* rows per block, row blocks, column chunks, panels per chunk */
} prod_job;

/* Task (row block, panel chunk): every panel of the chunk over every tile of the rows. */
static void prod_task(void *arg, int task) {
    const prod_job *j = arg;
    int rb = task / j->cb, ci = task % j->cb;
    int r0 = rb * j->mc, r1 = r0 + j->mc < j->rows ? r0 + j->mc : j->rows;
    int p0 = ci * j->pchunk, p1 = p0 + j->pchunk < j->npan ? p0 + j->pchunk : j->npan;
    const tile_fn *tf = j->ks->tf[j->kt];
    int i8 = j->kt == PD_WTYPE_INT8;
    for (int p = p0; p < p1; p++) {
        const char *b = j->pan + (size_t)p * j->pstride;
        int col = p * NR, nc = j->ncols - col < NR ? j->ncols - col : NR;
        for (int r = r0; r < r1; r += MR_MAX) {
            int mr = r1 - r < MR_MAX ? r1 - r : MR_MAX;
            tile t = {
                .g = j->g, .a = j->a + (size_t)r * j->lda, .lda = j->lda, .b = b,
                .c = j->y + (size_t)r * j->ldy + col, .ldc = j->ldy, .nc = nc,
                .bias = j->bias ? j->bias + col : NULL, .acc = j->acc,
                .sx = i8 ? j->sx + r : NULL, .zp = i8 ? j->zp + r : NULL,
                .sw = i8 ? j->sw + col : NULL, .wsum = i8 ? j->wsum + col : NULL,
            };
            tf[mr](&t);
        }
    }
}

/* Splits the product into tasks: row blocks of mc rows (a block of A stays in L2 while the
 * panels pass over it), and for fewer row blocks than 2 per thread, chunks of panels, so every
 * thread gets at least two tasks to balance a shared machine. Small products, and products
 * without a pool, run the tasks in order on the calling thread. */
static void prod_run(pd_pool *p, prod_job *j, size_t wbytes) {
    int nt = pd_pool_size(p);
    double ops = 2.0 * j->rows * (double)j->ncols * j->g * per_group(j->kt);
    int mc = (int)(A_BLOCK_BYTES / ((size_t)j->g * 4)) & ~(MR_MAX - 1);
    j->mc = mc < MR_MAX ? MR_MAX : mc > j->rows ? j->rows : mc;
    j->rb = (j->rows + j->mc - 1) / j->mc;
    int par = nt > 1 && (ops >= 2e6 || wbytes >= 256 * 1024);
    j->cb = !par || j->rb >= 2 * nt ? 1 : (2 * nt + j->rb - 1) / j->rb;
    if (j->cb > j->npan) j->cb = j->npan;
    j->pchunk = (j->npan + j->cb - 1) / j->cb;
    j->cb = (j->npan + j->pchunk - 1) / j->pchunk;
    int tasks = j->rb * j->cb;
    if (!par) {
        for (int t = 0; t < tasks; t++) prod_task(j, t);
    } else {
        pd_pool_run(p, prod_task, j, tasks);
    }
}

/* ---- The backward's panels: V = W^T in the forward layout, built per call ---- */

/* bf16 of each int8 value (integers up to 127 are exact in bf16). */
static uint16_t i8_bf16[256];
static pthread_once_t i8_once = PTHREAD_ONCE_INIT;
static void i8_bf16_init(void) {
    for (int i = 0; i < 256; i++) i8_bf16[i] = pd_bf16_round((float)(int8_t)i);
}

typedef struct {
    const pd_wmat *w;
    char *dst;      /* npan panels of gv groups */
    int gv;         /* V's groups: out (fp32) or ceil(out / 2) */
} tr_job;

/* Panel q of V: outputs k in [48q, 48q + 48) of dx, the reduction over W's outputs n in groups:
 * fp32 V[n][j] = W[n][k]; bf16 and int8 V[n/2][j] = (W[n][k], W[n+1][k]) as bf16 pairs (int8:
 * q exactly; s_w goes into dy). Each source panel (48 n) gives 24 n pairs; the loop reads the
 * 4-byte groups of two neighbouring outputs and writes whole 4-byte V groups. */
static void tr_task(void *arg, int q) {
    const tr_job *tj = arg;
    const pd_wmat *w = tj->w;
    char *dst = tj->dst + (size_t)q * tj->gv * GROUP_BYTES;
    int k0 = q * NR, kn = w->in - k0 < NR ? w->in - k0 : NR;
    memset(dst, 0, (size_t)tj->gv * GROUP_BYTES);
    for (int p = 0; p < w->npan; p++) {
        const uint32_t *src = (const uint32_t *)(const void *)(w->pan + (size_t)p * w->pstride);
        int nn = w->out - p * NR < NR ? w->out - p * NR : NR; /* outputs in this source panel */
        if (w->t == PD_WTYPE_F32) {
            for (int l = 0; l < nn; l++) {
                uint32_t *d = (uint32_t *)(void *)(dst + (size_t)(p * NR + l) * GROUP_BYTES);
                for (int j = 0; j < kn; j++) d[j] = src[(size_t)(k0 + j) * NR + l];
            }
        } else if (w->t == PD_WTYPE_BF16) {
            /* As 8-byte blocks: source block (kk, nn) = (W[2nn][2kk], W[2nn][2kk+1], W[2nn+1][2kk],
             * W[2nn+1][2kk+1]) is V block (nn, kk) with its middle two values swapped. Padding
             * (lanes past out, k past in) is zero in the source, so whole blocks copy. */
            const uint64_t *s64 = (const uint64_t *)(const void *)(w->pan + (size_t)p * w->pstride) + (size_t)(k0 / 2) * (NR / 2);
            int kks = w->g - k0 / 2 < NR / 2 ? w->g - k0 / 2 : NR / 2;
            for (int pr = 0; pr < NR / 2 && p * (NR / 2) + pr < tj->gv; pr++) {
                uint64_t *d = (uint64_t *)(void *)(dst + (size_t)(p * (NR / 2) + pr) * GROUP_BYTES);
                for (int kk = 0; kk < kks; kk++) {
                    uint64_t v = s64[(size_t)kk * (NR / 2) + pr];
                    d[kk] = (v & 0xffff00000000ffffull) | ((v >> 16) & 0xffff0000ull) | ((v << 16) & 0xffff00000000ull);
                }
            }
        } else {
            /* source group kq holds q[n][4kq .. 4kq+3] in lane n (k0 is a multiple of 4): one
             * 8-byte load gives both outputs of a pair, four V groups of bf16 pairs */
            const uint64_t *s64 = (const uint64_t *)(const void *)(w->pan + (size_t)p * w->pstride) + (size_t)(k0 / 4) * (NR / 2);
            int kqs = w->g - k0 / 4 < NR / 4 ? w->g - k0 / 4 : NR / 4;
            for (int pr = 0; pr < NR / 2 && p * (NR / 2) + pr < tj->gv; pr++) {
                uint32_t *d = (uint32_t *)(void *)(dst + (size_t)(p * (NR / 2) + pr) * GROUP_BYTES);
                for (int kq = 0; kq < kqs; kq++) {
                    uint64_t v = s64[(size_t)kq * (NR / 2) + pr];
                    for (int t = 0; t < 4; t++)
                        d[4 * kq + t] = i8_bf16[(v >> (8 * t)) & 0xff] | (uint32_t)i8_bf16[(v >> (8 * t + 32)) & 0xff] << 16;
                }
            }
        }
    }
}

/* ---- Activation conversion (bf16 rounding, u8 quantization), rows split across the pool ---- */

typedef struct {
    const kern_set *ks;
    pd_wtype t;             /* PD_WTYPE_BF16 or PD_WTYPE_INT8 */
    const float *x;
    size_t ldx;
    int n, kp, rows, chunk;
    const float *colscale;  /* bf16 only: multiply column k by colscale[k] first (int8 backward) */
    char *a;                /* (rows, kp) elements of 2 or 1 bytes */
    float *sx;
    int32_t *zp;
} conv_job;

static void conv_task(void *arg, int i) {
    const conv_job *j = arg;
    int r0 = i * j->chunk, r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    for (int r = r0; r < r1; r++) {
        const float *x = j->x + (size_t)r * j->ldx;
        if (j->t == PD_WTYPE_INT8) j->ks->quant_row(x, j->n, j->kp, (uint8_t *)j->a + (size_t)r * j->kp, j->sx + r, j->zp + r);
        else j->ks->bf16_row(x, j->n, j->kp, j->colscale, (uint16_t *)(void *)j->a + (size_t)r * j->kp);
    }
}

static void conv_run(pd_pool *p, conv_job *j) {
    int nt = (size_t)j->rows * (size_t)j->n >= 65536 ? pd_pool_size(p) : 1;
    j->chunk = (j->rows + 2 * nt - 1) / (2 * nt);
    if (j->chunk < 1) j->chunk = 1;
    int tasks = (j->rows + j->chunk - 1) / j->chunk;
    if (tasks == 1) conv_task(j, 0);
    else pd_pool_run(p, conv_task, j, tasks);
}

/* The converted activations of a call, in this thread's scratch slot 0: (rows, kp) elements,
 * then per-row scales and zero points for int8. */
static char *conv_buffer(pd_wtype t, int rows, int kp, float **sx, int32_t **zp) {
    size_t esz = t == PD_WTYPE_INT8 ? 1 : 2;
    size_t abytes = ((size_t)rows * (size_t)kp * esz + 63) & ~(size_t)63;
    size_t extra = t == PD_WTYPE_INT8 ? (size_t)rows * (sizeof(float) + sizeof(int32_t)) : 0;
    char *buf = scratch_get(0, abytes + extra);
    if (t == PD_WTYPE_INT8) {
        *sx = (float *)(void *)(buf + abytes);
        *zp = (int32_t *)(void *)(buf + abytes + (size_t)rows * sizeof(float));
    }
    return buf;
}

/* A borrowed W through pd_linear / pd_gemm (OpenBLAS, the weight packed by sgemm per call):
 * the contiguous overwrite is exactly pd_linear, so a model over mutable weights computes the
 * bits it computed before pd_wmat existed. */
static void borrowed_gemm(pd_pool *p, const pd_wmat *w, const float *x, size_t ldx, int rows, const float *bias, float *y,
                          size_t ldy, int accumulate) {
    if (!accumulate && ldx == (size_t)w->in && ldy == (size_t)w->out && w->ldw == (size_t)w->in) {
        pd_linear(p, x, rows, w->in, w->ref, bias, w->out, y);
        return;
    }
    if (bias && !accumulate)
        for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * ldy, bias, sizeof(float) * (size_t)w->out);
    pd_gemm(p, 0, 1, rows, w->out, w->in, 1.0f, x, (int)ldx, w->ref, (int)w->ldw, accumulate || bias ? 1.0f : 0.0f, y, (int)ldy);
    if (bias && accumulate)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < w->out; j++) y[(size_t)r * ldy + j] += bias[j];
}

void pd_wmat_gemm(pd_pool *p, const pd_wmat *w, const float *x, size_t ldx, int rows, const float *bias, float *y,
                  size_t ldy, int accumulate) {
    if (rows <= 0) return;
    PD_ASSERT(ldx >= (size_t)w->in && ldy >= (size_t)w->out);
    if (w->ref) {
        borrowed_gemm(p, w, x, ldx, rows, bias, y, ldy, accumulate);
        return;
    }
    const kern_set *ks = kset();
    prod_job j = {.ks = ks, .kt = w->t, .rows = rows, .g = w->g, .y = y, .ldy = ldy, .bias = bias, .acc = accumulate,
                  .pan = w->pan, .pstride = w->pstride, .sw = w->sw, .wsum = w->wsum, .npan = w->npan, .ncols = w->out};
    if (w->t == PD_WTYPE_F32) {
        j.a = (const char *)x;
        j.lda = ldx * sizeof(float);
    } else {
        int kp = w->g * per_group(w->t);
        float *sx = NULL;
        int32_t *zp = NULL;
        char *a = conv_buffer(w->t, rows, kp, &sx, &zp);
        conv_job c = {.ks = ks, .t = w->t, .x = x, .ldx = ldx, .n = w->in, .kp = kp, .rows = rows, .a = a, .sx = sx, .zp = zp};
        conv_run(p, &c);
        j.a = a;
        j.lda = (size_t)kp * (w->t == PD_WTYPE_INT8 ? 1 : 2);
        j.sx = sx;
        j.zp = zp;
    }
    prod_run(p, &j, w->bytes);
}

void pd_wmat_linear(pd_pool *p, const pd_wmat *w, const float *x, int rows, const float *bias, float *y,
                    int accumulate) {
    pd_wmat_gemm(p, w, x, (size_t)w->in, rows, bias, y, (size_t)w->out, accumulate);
}

/* dx = dy W as the forward product dy V^T with V = W^T, V's panels transposed from W's into
 * this thread's scratch for the call (W's size in bf16 / fp32; no resident second copy). */
void pd_wmat_dx(pd_pool *p, const pd_wmat *w, const float *dy, int rows, float *dx, int accumulate) {
    if (rows <= 0) return;
    if (w->ref) {
        pd_gemm(p, 0, 0, rows, w->in, w->out, 1.0f, dy, w->out, w->ref, (int)w->ldw, accumulate ? 1.0f : 0.0f, dx, w->in);
        return;
    }
    const kern_set *ks = kset();
    int f32 = w->t == PD_WTYPE_F32;
    if (w->t == PD_WTYPE_INT8) pthread_once(&i8_once, i8_bf16_init);
    tr_job tj = {w, NULL, f32 ? w->out : (w->out + 1) / 2};
    int npan = (w->in + NR - 1) / NR;
    size_t pstride = (size_t)tj.gv * GROUP_BYTES;
    tj.dst = scratch_get(1, pstride * npan);
    if (pd_pool_size(p) > 1 && (size_t)w->out * w->in >= 65536) pd_pool_run(p, tr_task, &tj, npan);
    else
        for (int q = 0; q < npan; q++) tr_task(&tj, q);
    prod_job j = {.ks = ks, .kt = f32 ? PD_WTYPE_F32 : PD_WTYPE_BF16, .rows = rows, .g = tj.gv, .y = dx,
                  .ldy = (size_t)w->in, .acc = accumulate, .pan = tj.dst, .pstride = pstride, .npan = npan, .ncols = w->in};
    if (f32) {
        j.a = (const char *)dy;
        j.lda = (size_t)w->out * sizeof(float);
    } else {
        int kp = 2 * tj.gv;
        char *a = conv_buffer(PD_WTYPE_BF16, rows, kp, NULL, NULL);
        conv_job c = {.ks = ks, .t = PD_WTYPE_BF16, .x = dy, .ldx = (size_t)w->out, .n = w->out, .kp = kp, .rows = rows,
                      .colscale = w->t == PD_WTYPE_INT8 ? w->sw : NULL, .a = a};
        conv_run(p, &c);
        j.a = a;
        j.lda = (size_t)kp * 2;
    }
    prod_run(p, &j, pstride * npan);
}
