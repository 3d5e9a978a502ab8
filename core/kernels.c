/* kernels.c - thread pool, GEMM split across it, layer norm, activations, softmax.
 *
 * The elementwise kernels are written as plain loops over contiguous floats with polynomial
 * approximations of exp and erf (no libm calls inside the loops), so gcc vectorizes them.
 * Their accuracy is tested against libm in tests/test_kernels.c. */
#include "kernels.h"
#include "fastmath.h"

#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ==== Thread pool ==== */

/* Idle workers spin this long for the next job before they sleep on the condition variable.
 * A forward pass is a chain of short parallel jobs (a BERT-base linear at one sequence takes
 * about 0.3 ms); waking a sleeping thread costs tens of microseconds on a VM, enough that the
 * caller used to finish both halves alone. Spinning is bounded, so an idle server sleeps. */
#define POOL_SPIN_NS 200000L

struct pd_pool {
    int n;                  /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t run_lock; /* one job at a time across callers */
    pthread_mutex_t mu;       /* guards sleepers and the condition variables */
    pthread_cond_t start_cv, done_cv;
    /* The current job: written by the caller before it publishes gen (release), read by the
     * workers after they see gen change (acquire). */
    void (*fn)(void *, int);
    void *arg;
    int ntasks;
    atomic_int next;
    atomic_int busy;        /* workers still inside the current job */
    atomic_ulong gen;       /* job generation: a worker runs each generation once */
    atomic_int stop;
    atomic_int rest;        /* pd_pool_rest: idle workers sleep at once instead of spinning */
    int sleepers;           /* workers waiting on start_cv (under mu) */
    int caller_waiting;     /* the caller waits on done_cv (under mu) */
};

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins until the generation differs from old (or stop), for at most POOL_SPIN_NS and only
 * while the pool is not resting; returns 1 if it changed. Both spin loops yield the core every
 * 64 pauses (about a microsecond): after the threads have slept, the kernel may wake them
 * onto one core while the other idles, and a pure spin then holds the core the other thread
 * needs until the spin runs out (200 us per pool job, measured: bench/gemm.c "hand-off"). */
static int spin_until_changed(pd_pool *p, unsigned long old) {
    long t0 = 0;
    for (int i = 0;; i++) {
        if (atomic_load_explicit(&p->gen, memory_order_acquire) != old || atomic_load(&p->stop)) return 1;
        if (atomic_load_explicit(&p->rest, memory_order_relaxed)) return 0;
        cpu_relax();
        if ((i & 63) == 63) {
            sched_yield();
            long t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > POOL_SPIN_NS) return 0;
        }
    }
}

/* Takes task indices until none are left. */
static void pool_drain(pd_pool *p, void (*fn)(void *, int), void *arg, int ntasks) {
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= ntasks) break;
        fn(arg, i);
    }
}

static void *pool_worker(void *vp) {
    pd_pool *p = vp;
    unsigned long seen = 0;
    for (;;) {
        if (!spin_until_changed(p, seen)) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (!atomic_load(&p->stop) && atomic_load(&p->gen) == seen) pthread_cond_wait(&p->start_cv, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        pool_drain(p, p->fn, p->arg, p->ntasks);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_waiting) pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

pd_pool *pd_pool_new(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    pd_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->th = calloc((size_t)n, sizeof *p->th);
    if (!p->th) { free(p); return NULL; }
    for (int i = 1; i < n; i++) {
        if (pthread_create(&p->th[i], NULL, pool_worker, p) != 0) {
            p->n = i; /* run with the workers we got */
            break;
        }
    }
    return p;
}

void pd_pool_free(pd_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->th);
    free(p);
}

int pd_pool_size(const pd_pool *p) { return p ? p->n : 1; }

void pd_pool_rest(pd_pool *p) {
    if (p) atomic_store_explicit(&p->rest, 1, memory_order_relaxed);
}

void pd_pool_run(pd_pool *p, void (*fn)(void *arg, int i), void *arg, int n) {
    if (n <= 0) return;
    if (!p || p->n == 1 || n == 1) {
        for (int i = 0; i < n; i++) fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = n;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n - 1);
    atomic_store_explicit(&p->rest, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    unsigned long g = atomic_load(&p->gen) + 1;
    atomic_store_explicit(&p->gen, g, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p, fn, arg, n);
    /* The workers finish their last task soon after ours: spin briefly, then sleep. */
    long t0 = now_ns();
    for (int i = 0; atomic_load(&p->busy) > 0 && now_ns() - t0 < POOL_SPIN_NS; i++) {
        cpu_relax();
        if ((i & 63) == 63) sched_yield();
    }
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        p->caller_waiting = 1;
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
        p->caller_waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_lock);
}

/* ==== GEMM ==== */

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static const char *blas_core = "unknown";

static void blas_setup(void) {
    openblas_set_num_threads(1);
    const char *c = openblas_get_corename();
    if (c) blas_core = c;
}

const char *pd_blas_init(void) {
    pthread_once(&blas_once, blas_setup);
    return blas_core;
}

typedef struct {
    int ta, tb, m, n, k, lda, ldb, ldc, chunk, by_cols;
    float alpha, beta;
    const float *a, *b;
    float *c;
    const float *bias; /* pd_linear: every row of C starts as the bias (then beta = 1) */
} gemm_job;


static void gemm_task(void *arg, int i) {
    gemm_job *j = arg;
    int lim = j->by_cols ? j->n : j->m;
    int s0 = i * j->chunk, s1 = s0 + j->chunk;
    if (s1 > lim) s1 = lim;
    if (s0 >= s1) return;
    const float *a = j->a, *b = j->b;
    float *c = j->c;
    int m = j->m, n = j->n;
    if (j->by_cols) { /* columns s0..s1 of C come from columns s0..s1 of op(B) */
        b = j->tb ? b + (size_t)s0 * j->ldb : b + s0;
        c += s0;
        n = s1 - s0;
    } else {          /* rows s0..s1 of C come from rows s0..s1 of op(A) */
        a = j->ta ? a + s0 : a + (size_t)s0 * j->lda;
        c += (size_t)s0 * j->ldc;
        m = s1 - s0;
    }
    float beta = j->beta;
    if (j->bias) { /* C = bias, then C += A B: sgemm passes over C once either way (beta = 0 zeroes it) */
        const float *bias = j->by_cols ? j->bias + s0 : j->bias;
        for (int r = 0; r < m; r++) memcpy(c + (size_t)r * j->ldc, bias, sizeof(float) * (size_t)n);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, m, n, j->k,
                j->alpha, a, j->lda, b, j->ldb, beta, c, j->ldc);
}

/* Which way to split: each thread's sgemm packs its whole share of op(A) and op(B) into
 * OpenBLAS's panel buffers, so a row split makes every thread pack all of B (for a linear
 * layer: the whole weight matrix) and a column split makes every thread pack all of A (the
 * activations). Below 512 rows the weight is the larger operand and a column split is
 * 8-15% faster on BERT-base linears; from 512 rows on the row split is as fast or faster
 * (measured with both pool threads busy; bench/gemm.c prints both designs). */
static int split_by_cols(int m, int n) {
    const char *e = getenv("PD_GEMM_SPLIT"); /* bench/tests: "rows" or "cols" */
    if (e && !strcmp(e, "rows")) return 0;
    if (e && !strcmp(e, "cols")) return 1;
    return m < 512 && n >= 64;
}

static void gemm_run(pd_pool *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc, const float *bias) {
    if (m <= 0 || n <= 0) return;
    pd_blas_init();
    int nt = pd_pool_size(p);
    /* Split in multiples of 32 (the sgemm micro-kernel's panel widths divide it); small
     * problems run on one thread, where the split would cost more than it saves. */
    double flops = 2.0 * m * n * k;
    int tasks = flops < 4e6 ? 1 : nt;
    int by_cols = tasks > 1 && split_by_cols(m, n);
    int lim = by_cols ? n : m;
    int chunk = (lim + tasks - 1) / tasks;
    chunk = (chunk + 31) & ~31;
    tasks = (lim + chunk - 1) / chunk;
    gemm_job j = {ta, tb, m, n, k, lda, ldb, ldc, chunk, by_cols, alpha, beta, a, b, c, bias};
    if (tasks <= 1) gemm_task(&j, 0);
    else pd_pool_run(p, gemm_task, &j, tasks);
}

void pd_gemm(pd_pool *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    gemm_run(p, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL);
}

void pd_linear(pd_pool *p, const float *x, int rows, int in, const float *w, const float *b, int out, float *y) {
    gemm_run(p, 0, 1, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out, b);
}

/* ==== Elementwise math ==== */

/* pd_fast_expf, pd_fast_erff: fastmath.h */

static inline float fast_tanhf(float x) {
    /* tanh(x) = 1 - 2 / (exp(2x) + 1); saturates correctly at both ends. */
    return 1.0f - 2.0f / (pd_fast_expf(2.0f * x) + 1.0f);
}

int pd_act_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "gelu")) return PD_ACT_GELU;
    if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) return PD_ACT_GELU_TANH;
    if (!strcmp(s, "relu")) return PD_ACT_RELU;
    if (!strcmp(s, "tanh")) return PD_ACT_TANH;
    if (!strcmp(s, "swish") || !strcmp(s, "silu")) return PD_ACT_SWISH;
    if (!strcmp(s, "sigmoid")) return PD_ACT_SIGMOID;
    if (!strcmp(s, "linear") || !strcmp(s, "identity")) return PD_ACT_NONE;
    return -1;
}

const char *pd_act_name(pd_act a) {
    switch (a) {
    case PD_ACT_NONE: return "linear";
    case PD_ACT_GELU: return "gelu";
    case PD_ACT_GELU_TANH: return "gelu_new";
    case PD_ACT_RELU: return "relu";
    case PD_ACT_TANH: return "tanh";
    case PD_ACT_SWISH: return "swish";
    case PD_ACT_SIGMOID: return "sigmoid";
    }
    return "?";
}

#define GELU_TANH_C 0.7978845608028654f /* sqrt(2/pi) */

static void scalar_act(pd_act a, float *x, size_t n) {
    switch (a) {
    case PD_ACT_NONE: break;
    case PD_ACT_GELU:
        for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + pd_fast_erff(x[i] * 0.70710678118654752f));
        break;
    case PD_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + fast_tanhf(GELU_TANH_C * (v + 0.044715f * v * v * v)));
        }
        break;
    case PD_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case PD_ACT_TANH:
        for (size_t i = 0; i < n; i++) x[i] = fast_tanhf(x[i]);
        break;
    case PD_ACT_SWISH:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + pd_fast_expf(-x[i]));
        break;
    case PD_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + pd_fast_expf(-x[i]));
        break;
    }
}

/* ---- The same kernels, vectorized: scalar, AVX2+FMA and AVX-512 bodies, one chosen at
 * first use from what the CPU supports (PD_ISA=scalar|avx2|avx512 picks a lower one). ---- */

static void scalar_act_to(pd_act a, const float *x, float *y, size_t n) {
    if (y != x) memcpy(y, x, sizeof(float) * n);
    scalar_act(a, y, n);
}

static void scalar_softmax_rows(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * cols;
        float mx = v[0];
        for (int i = 1; i < cols; i++) mx = v[i] > mx ? v[i] : mx;
        float s = 0;
        for (int i = 0; i < cols; i++) {
            v[i] = pd_fast_expf(v[i] - mx);
            s += v[i];
        }
        float inv = 1.0f / s;
        for (int i = 0; i < cols; i++) v[i] *= inv;
    }
}

static void scalar_layernorm_rows(const float *x, const float *add, const float *w, const float *b, float eps, int r0,
                                  int r1, int d, float *out) {
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * d;
        float *o = out + (size_t)r * d;
        if (add) {
            const float *a = add + (size_t)r * d;
            for (int i = 0; i < d; i++) o[i] = xr[i] + a[i];
        } else if (o != xr) {
            memcpy(o, xr, sizeof(float) * (size_t)d);
        }
        /* statistics in double: a rounded mean or scale shifts the whole row one way */
        double mean = 0;
        for (int i = 0; i < d; i++) mean += o[i];
        mean /= d;
        double var = 0;
        for (int i = 0; i < d; i++) var += (o[i] - mean) * (o[i] - mean);
        double inv = 1.0 / sqrt(var / d + (double)eps);
        for (int i = 0; i < d; i++) o[i] = (float)((o[i] - mean) * inv * w[i] + b[i]);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define VL 8
#define vf __m256
#define SFX(name) name##_avx2
static inline __m256i avx2_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline float avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float avx2_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vloadn(p, n, fill) \
    _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, avx2_mask(n)), _mm256_castsi256_ps(avx2_mask(n)))
#define vstoren(p, v, n) _mm256_maskstore_ps(p, avx2_mask(n), v)
#define vset(x) _mm256_set1_ps(x)
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vdiv _mm256_div_ps
#define vmax _mm256_max_ps /* max(NaN, c) = c: NaN clamps low, as in the scalar code */
#define vmin _mm256_min_ps
#define vfma _mm256_fmadd_ps
#define vround(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(n) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define vhsum avx2_hsum
#define vhmax avx2_hmax
typedef struct { __m256d lo, hi; } vd_avx2;
static inline vd_avx2 vdzero_avx2(void) { return (vd_avx2){_mm256_setzero_pd(), _mm256_setzero_pd()}; }
static inline vd_avx2 vdadd_avx2(vd_avx2 a, __m256 v) {
    a.lo = _mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a.hi = _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    return a;
}
static inline vd_avx2 vdsqdev_avx2(vd_avx2 a, __m256 v, double m) {
    __m256d mv = _mm256_set1_pd(m);
    __m256d l = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mv);
    __m256d h = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mv);
    a.lo = _mm256_fmadd_pd(l, l, a.lo);
    a.hi = _mm256_fmadd_pd(h, h, a.hi);
    return a;
}
static inline double vdhsum_avx2(vd_avx2 a) {
    __m256d s = _mm256_add_pd(a.lo, a.hi);
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}
#define vdf vd_avx2
#define vdzero vdzero_avx2
#define vdadd vdadd_avx2
#define vdsqdev vdsqdev_avx2
#define vdhsum vdhsum_avx2
#include "kernels_simd.h" /* #undefs all of the above at its end */
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
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
#define vfma _mm512_fmadd_ps
#define vround(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2i(n) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#define vhsum _mm512_reduce_add_ps
#define vhmax _mm512_reduce_max_ps
typedef struct { __m512d lo, hi; } vd_avx512;
static inline vd_avx512 vdzero_avx512(void) { return (vd_avx512){_mm512_setzero_pd(), _mm512_setzero_pd()}; }
static inline __m256 hi256_avx512(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
static inline vd_avx512 vdadd_avx512(vd_avx512 a, __m512 v) {
    a.lo = _mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a.hi = _mm512_add_pd(a.hi, _mm512_cvtps_pd(hi256_avx512(v)));
    return a;
}
static inline vd_avx512 vdsqdev_avx512(vd_avx512 a, __m512 v, double m) {
    __m512d mv = _mm512_set1_pd(m);
    __m512d l = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), mv);
    __m512d h = _mm512_sub_pd(_mm512_cvtps_pd(hi256_avx512(v)), mv);
    a.lo = _mm512_fmadd_pd(l, l, a.lo);
    a.hi = _mm512_fmadd_pd(h, h, a.hi);
    return a;
}
static inline double vdhsum_avx512(vd_avx512 a) { return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi)); }
#define vdf vd_avx512
#define vdzero vdzero_avx512
#define vdadd vdadd_avx512
#define vdsqdev vdsqdev_avx512
#define vdhsum vdhsum_avx512
#include "kernels_simd.h" /* #undefs all of the above at its end */
#pragma GCC pop_options
#define PD_HAVE_X86_SIMD 1
#endif

typedef struct {
    const char *name;
    void (*act_to)(pd_act a, const float *x, float *y, size_t n);
    void (*softmax_rows)(float *x, int rows, int cols);
    void (*layernorm_rows)(const float *x, const float *add, const float *w, const float *b, float eps, int r0, int r1,
                           int d, float *out);
} isa_ops;

static const isa_ops isa_table[] = {
    {"scalar", scalar_act_to, scalar_softmax_rows, scalar_layernorm_rows},
#ifdef PD_HAVE_X86_SIMD
    {"avx2", act_to_avx2, softmax_rows_avx2, layernorm_rows_avx2},
    {"avx512", act_to_avx512, softmax_rows_avx512, layernorm_rows_avx512},
#endif
};
enum { ISA_COUNT = sizeof isa_table / sizeof isa_table[0] };

static int isa_supported(int i) {
#ifdef PD_HAVE_X86_SIMD
    __builtin_cpu_init();
    if (i == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (i == 2) return __builtin_cpu_supports("avx512f");
#endif
    return i == 0;
}

static _Atomic(const isa_ops *) isa_cur;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void isa_setup(void) {
    int best = 0;
    for (int i = 0; i < ISA_COUNT; i++)
        if (isa_supported(i)) best = i;
    const char *e = getenv("PD_ISA");
    for (int i = 0; e && i <= best; i++)
        if (!strcmp(e, isa_table[i].name)) best = i;
    atomic_store(&isa_cur, &isa_table[best]);
}

static const isa_ops *isa(void) {
    pthread_once(&isa_once, isa_setup);
    return atomic_load_explicit(&isa_cur, memory_order_relaxed);
}

const char *pd_kernels_isa(void) { return isa()->name; }

int pd_kernels_set_isa(const char *name) {
    isa();
    for (int i = 0; i < ISA_COUNT; i++)
        if (!strcmp(name, isa_table[i].name)) {
            if (!isa_supported(i)) return -1;
            atomic_store(&isa_cur, &isa_table[i]);
            return 0;
        }
    return -1;
}


float pd_act1(pd_act a, float x) {
    switch (a) {
    case PD_ACT_NONE: return x;
    case PD_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case PD_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(GELU_TANH_C * (x + 0.044715f * x * x * x)));
    case PD_ACT_RELU: return x > 0 ? x : 0;
    case PD_ACT_TANH: return tanhf(x);
    case PD_ACT_SWISH: return x / (1.0f + expf(-x));
    case PD_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    }
    return x;
}

float pd_act1_grad(pd_act a, float x) {
    switch (a) {
    case PD_ACT_NONE: return 1.0f;
    case PD_ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
        return cdf + x * pdf;
    }
    case PD_ACT_GELU_TANH: {
        float u = GELU_TANH_C * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float du = GELU_TANH_C * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case PD_ACT_RELU: return x > 0 ? 1.0f : 0.0f;
    case PD_ACT_TANH: { float t = tanhf(x); return 1.0f - t * t; }
    case PD_ACT_SWISH: { float s = 1.0f / (1.0f + expf(-x)); return s + x * s * (1.0f - s); }
    case PD_ACT_SIGMOID: { float s = 1.0f / (1.0f + expf(-x)); return s * (1.0f - s); }
    }
    return 1.0f;
}

typedef struct {
    pd_act a;
    const float *x;
    float *y;
    size_t n, chunk;
} act_job;

static void act_task(void *arg, int i) {
    act_job *j = arg;
    size_t s = (size_t)i * j->chunk, e = s + j->chunk;
    if (e > j->n) e = j->n;
    if (s < e) isa()->act_to(j->a, j->x + s, j->y + s, e - s);
}

void pd_act_apply(pd_pool *p, pd_act a, float *x, size_t n) { pd_act_apply_to(p, a, x, x, n); }

void pd_act_apply_to(pd_pool *p, pd_act a, const float *x, float *y, size_t n) {
    if (n == 0) return;
    if (a == PD_ACT_NONE) {
        if (y != x) memcpy(y, x, sizeof(float) * n);
        return;
    }
    int nt = pd_pool_size(p);
    if (n < 16384) nt = 1;
    act_job j = {a, x, y, n, (n + (size_t)nt - 1) / (size_t)nt};
    j.chunk = (j.chunk + 15) & ~(size_t)15;
    pd_pool_run(p, act_task, &j, (int)((n + j.chunk - 1) / j.chunk));
}

/* ==== Layer norm and softmax ==== */

typedef struct {
    const float *x, *add, *w, *b;
    float eps;
    int rows, dim, chunk;
    float *out;
} ln_job;

static void ln_task(void *arg, int t) {
    ln_job *j = arg;
    int r0 = t * j->chunk, r1 = r0 + j->chunk;
    if (r1 > j->rows) r1 = j->rows;
    if (r0 < r1) isa()->layernorm_rows(j->x, j->add, j->w, j->b, j->eps, r0, r1, j->dim, j->out);
}

void pd_layernorm(pd_pool *p, const float *x, const float *add, const float *w, const float *b, float eps,
                  int rows, int dim, float *out) {
    if (rows <= 0) return;
    int nt = pd_pool_size(p);
    if ((size_t)rows * (size_t)dim < 8192) nt = 1;
    ln_job j = {x, add, w, b, eps, rows, dim, (rows + nt - 1) / nt, out};
    pd_pool_run(p, ln_task, &j, (rows + j.chunk - 1) / j.chunk);
}

void pd_softmax_rows(float *x, int rows, int cols) { isa()->softmax_rows(x, rows, cols); }
