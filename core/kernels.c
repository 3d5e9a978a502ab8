/* kernels.c - thread pool, instruction sets, GEMM split across the pool, layer norm,
 * activations, softmax.
 *
 * The elementwise and row kernels have a scalar body here and vector bodies written once in
 * kernels_simd.h (compiled per instruction set by simd.h); exp, erf and tanh are fastmath.h's
 * polynomials (no libm calls inside the loops). Their accuracy is tested against double
 * precision and libm in tests/test_kernels.c, for every body. */
#include "kernels.h"

#include <cblas.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
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

/* ==== Instruction sets ==== */

/* PD_ISA names: each is one feature and everything it builds on; a PD_ISA value joins names
 * with '+' and means their union. The first three are the levels pd_kernels_isa names. */
static const struct {
    const char *name;
    unsigned set;
} isa_names[] = {
    {"scalar", 0},
    {"avx2", PD_CPU_AVX2},
    {"avx512", PD_CPU_AVX2 | PD_CPU_AVX512},
    {"avx512_vnni", PD_CPU_AVX2 | PD_CPU_AVX512 | PD_CPU_AVX512_VNNI},
    {"avx512_bf16", PD_CPU_AVX2 | PD_CPU_AVX512 | PD_CPU_AVX512_BF16},
};
enum { ISA_NAMES = sizeof isa_names / sizeof isa_names[0], ISA_LEVELS = 3, ISA_ALL = (1u << 4) - 1 };

/* What the CPU has and the OS saves the registers of (CPUID, and XGETBV for XCR0). */
static unsigned cpu_detect(void) {
    unsigned f = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1;
    if (!osxsave || !avx) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 0x6) != 0x6 || __get_cpuid_max(0, NULL) < 7) return 0; /* XMM and YMM state */
    __cpuid_count(7, 0, a, b, c, d);
    unsigned max7 = a, b7 = b, c7 = c;
    if ((b7 >> 5 & 1) && fma) f |= PD_CPU_AVX2;
    /* x86-64-v4's AVX-512: F (16), DQ (17), CD (28), BW (30), VL (31); opmask, upper ZMM
     * halves and ZMM16-31 state (XCR0 bits 5-7) */
    const unsigned v4 = 1u << 16 | 1u << 17 | 1u << 28 | 1u << 30 | 1u << 31;
    if ((f & PD_CPU_AVX2) && (b7 & v4) == v4 && (xlo & 0xe0) == 0xe0) {
        f |= PD_CPU_AVX512;
        if (c7 >> 11 & 1) f |= PD_CPU_AVX512_VNNI;
        if (max7 >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (a >> 5 & 1) f |= PD_CPU_AVX512_BF16;
        }
    }
#endif
    return f;
}

/* Parses a PD_ISA value into *set; returns -1 for an empty or unknown name. */
static int isa_parse(const char *s, unsigned *set) {
    *set = 0;
    for (;;) {
        size_t n = strcspn(s, "+");
        int k = 0;
        while (k < ISA_NAMES && (strlen(isa_names[k].name) != n || strncmp(s, isa_names[k].name, n))) k++;
        if (k == ISA_NAMES) return -1;
        *set |= isa_names[k].set;
        if (!s[n]) return 0;
        s += n + 1;
    }
}

static unsigned isa_cpu;                    /* cpu_detect(), set once */
static char isa_str[ISA_ALL + 1][64];        /* pd_kernels_isa's answer for every set */
#define ISA_UNSET (1u << 31)
static atomic_uint isa_enabled = ISA_UNSET; /* what the kernels may use */
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void isa_setup(void) {
    isa_cpu = cpu_detect();
    for (unsigned m = 0; m <= ISA_ALL; m++) { /* the highest level, then each extension */
        int lvl = 0;
        for (int k = 0; k < ISA_LEVELS; k++)
            if ((isa_names[k].set & ~m) == 0) lvl = k;
        size_t o = (size_t)snprintf(isa_str[m], sizeof isa_str[m], "%s", isa_names[lvl].name);
        for (int k = ISA_LEVELS; k < ISA_NAMES; k++)
            if ((isa_names[k].set & ~m) == 0)
                o += (size_t)snprintf(isa_str[m] + o, sizeof isa_str[m] - o, "+%s", isa_names[k].name);
    }
    unsigned want = isa_cpu;
    const char *e = getenv("PD_ISA");
    if (e && isa_parse(e, &want) != 0) want = isa_cpu; /* unknown: ignored, as if unset */
    atomic_store(&isa_enabled, isa_cpu & want);
}

unsigned pd_cpu_features(void) {
    pthread_once(&isa_once, isa_setup);
    return isa_cpu;
}

/* acquire: a thread that sees the set also sees isa_setup's isa_cpu and isa_str */
unsigned pd_kernels_features(void) {
    unsigned f = atomic_load_explicit(&isa_enabled, memory_order_acquire);
    if (f & ISA_UNSET) {
        pthread_once(&isa_once, isa_setup);
        f = atomic_load_explicit(&isa_enabled, memory_order_acquire);
    }
    return f;
}

const char *pd_kernels_isa(void) { return isa_str[pd_kernels_features()]; }

int pd_kernels_set_isa(const char *spec) {
    unsigned set = pd_cpu_features();
    if (spec && (isa_parse(spec, &set) != 0 || (set & ~isa_cpu))) return -1;
    atomic_store(&isa_enabled, set);
    return 0;
}

const char *pd_kernels_isa_name(int i) { return i >= 0 && i < ISA_NAMES ? isa_names[i].name : NULL; }

/* ==== Elementwise math ==== */

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

/* The vector bodies (act_to, softmax_rows, layernorm_rows: _avx2, _avx512) and every pass's
 * fastmath.h (vexp_scalar, verf_scalar, vtanh_scalar for the scalar bodies below). */
#define PD_SIMD_TEMPLATE "kernels_simd.h"
#include "simd.h"

/* ---- The scalar bodies ---- */

static void act_scalar(pd_act a, float *x, size_t n) {
    switch (a) {
    case PD_ACT_NONE: break;
    case PD_ACT_GELU:
        for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + verf_scalar(x[i] * 0.70710678118654752f));
        break;
    case PD_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + vtanh_scalar(GELU_TANH_C * (v + 0.044715f * v * v * v)));
        }
        break;
    case PD_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case PD_ACT_TANH:
        for (size_t i = 0; i < n; i++) x[i] = vtanh_scalar(x[i]);
        break;
    case PD_ACT_SWISH:
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + vexp_scalar(-x[i]));
        break;
    case PD_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + vexp_scalar(-x[i]));
        break;
    }
}

static void act_to_scalar(pd_act a, const float *x, float *y, size_t n) {
    if (y != x) memcpy(y, x, sizeof(float) * n);
    act_scalar(a, y, n);
}

/* Rows of cols floats, ld apart. */
static void softmax_rows_scalar(float *x, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * ld;
        float mx = v[0];
        for (int i = 1; i < cols; i++) mx = v[i] > mx ? v[i] : mx;
        float s = 0;
        for (int i = 0; i < cols; i++) {
            v[i] = vexp_scalar(v[i] - mx);
            s += v[i];
        }
        float inv = 1.0f / s;
        for (int i = 0; i < cols; i++) v[i] *= inv;
    }
}

static void layernorm_rows_scalar(const float *x, const float *add, const float *w, const float *b, float eps, int r0,
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
    if (s < e) PD_SIMD_PICK(act_to)(j->a, j->x + s, j->y + s, e - s);
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
    if (r0 < r1) PD_SIMD_PICK(layernorm_rows)(j->x, j->add, j->w, j->b, j->eps, r0, r1, j->dim, j->out);
}

void pd_layernorm(pd_pool *p, const float *x, const float *add, const float *w, const float *b, float eps,
                  int rows, int dim, float *out) {
    if (rows <= 0) return;
    int nt = pd_pool_size(p);
    if ((size_t)rows * (size_t)dim < 8192) nt = 1;
    ln_job j = {x, add, w, b, eps, rows, dim, (rows + nt - 1) / nt, out};
    pd_pool_run(p, ln_task, &j, (rows + j.chunk - 1) / j.chunk);
}

void pd_softmax_rows(float *x, int rows, int cols) { PD_SIMD_PICK(softmax_rows)(x, rows, cols, cols); }

void pd_softmax_rows_ld(float *x, int rows, int cols, int ld) { PD_SIMD_PICK(softmax_rows)(x, rows, cols, ld); }
