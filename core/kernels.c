/* kernels.c - thread pool, GEMM split across it, layer norm, activations, softmax.
 *
 * The elementwise kernels are written as plain loops over contiguous floats with polynomial
 * approximations of exp and erf (no libm calls inside the loops), so gcc vectorizes them.
 * Their accuracy is tested against libm in tests/test_kernels.c. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ==== Thread pool ==== */

struct pd_pool {
    int n;                  /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t run_lock; /* one job at a time across callers */
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    /* current job, guarded by mu (the counters are atomic) */
    void (*fn)(void *, int);
    void *arg;
    int ntasks;
    atomic_int next;
    int busy;               /* workers still inside the current job */
    unsigned long gen;      /* job generation: a worker runs each generation once */
    int stop;
};

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
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->start_cv, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        void (*fn)(void *, int) = p->fn;
        void *arg = p->arg;
        int ntasks = p->ntasks;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, fn, arg, ntasks);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->stop = 1;
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

void pd_pool_run(pd_pool *p, void (*fn)(void *arg, int i), void *arg, int n) {
    if (n <= 0) return;
    if (!p || p->n == 1 || n == 1) {
        for (int i = 0; i < n; i++) fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->ntasks = n;
    atomic_store(&p->next, 0);
    p->busy = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p, fn, arg, n);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
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
    int ta, tb, m, n, k, lda, ldb, ldc, chunk;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_job;

static void gemm_task(void *arg, int i) {
    gemm_job *j = arg;
    int r0 = i * j->chunk, r1 = r0 + j->chunk;
    if (r1 > j->m) r1 = j->m;
    if (r0 >= r1) return;
    /* rows r0..r1 of C come from rows r0..r1 of op(A) */
    const float *a = j->ta ? j->a + r0 : j->a + (size_t)r0 * j->lda;
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                r1 - r0, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta, j->c + (size_t)r0 * j->ldc,
                j->ldc);
}

void pd_gemm(pd_pool *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    pd_blas_init();
    int nt = pd_pool_size(p);
    /* Split by rows of C in multiples of 16 (the sgemm micro-kernel height); small problems
     * run on one thread, where the split would cost more than it saves. */
    double flops = 2.0 * m * n * k;
    int tasks = flops < 4e6 ? 1 : nt;
    int chunk = (m + tasks - 1) / tasks;
    chunk = (chunk + 15) & ~15;
    tasks = (m + chunk - 1) / chunk;
    gemm_job j = {ta, tb, m, n, k, lda, ldb, ldc, chunk, alpha, beta, a, b, c};
    if (tasks <= 1) gemm_task(&j, 0);
    else pd_pool_run(p, gemm_task, &j, tasks);
}

typedef struct {
    const float *b;
    float *y;
    int rows, out, chunk;
} bias_job;

void pd_linear(pd_pool *p, const float *x, int rows, int in, const float *w, const float *b, int out, float *y) {
    if (b) {
        for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * out, b, sizeof(float) * (size_t)out);
        pd_gemm(p, 0, 1, rows, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
    } else {
        pd_gemm(p, 0, 1, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    }
}

/* ==== Elementwise math ==== */

/* exp(x) for x in about [-87, 88]: 2^n * p(r) with r = x - n ln2, degree-6 polynomial
 * (relative error < 2e-7). Branch-free so loops over it vectorize. */
static inline float fast_expf(float x) {
    /* fmaxf/fminf: branch-free (vectorizable at -O3); fmaxf(NaN, -87) is -87, so NaN lands
     * on the lower clamp (the int conversion below would be undefined for it). */
    x = fmaxf(x, -87.0f);
    x = fminf(x, 88.0f);
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
static inline float fast_erff(float x) {
    x = fmaxf(x, -4.0f);
    x = fminf(x, 4.0f);
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

static inline float fast_tanhf(float x) {
    /* tanh(x) = 1 - 2 / (exp(2x) + 1); saturates correctly at both ends. */
    return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f);
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

static void act_range(pd_act a, float *x, size_t n) {
    switch (a) {
    case PD_ACT_NONE: break;
    case PD_ACT_GELU:
        for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + fast_erff(x[i] * 0.70710678118654752f));
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
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + fast_expf(-x[i]));
        break;
    case PD_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + fast_expf(-x[i]));
        break;
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
    float *x;
    size_t n, chunk;
} act_job;

static void act_task(void *arg, int i) {
    act_job *j = arg;
    size_t s = (size_t)i * j->chunk, e = s + j->chunk;
    if (e > j->n) e = j->n;
    if (s < e) act_range(j->a, j->x + s, e - s);
}

void pd_act_apply(pd_pool *p, pd_act a, float *x, size_t n) {
    if (a == PD_ACT_NONE || n == 0) return;
    int nt = pd_pool_size(p);
    if (n < 16384) nt = 1;
    act_job j = {a, x, n, (n + (size_t)nt - 1) / (size_t)nt};
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
    int d = j->dim;
    for (int r = r0; r < r1; r++) {
        const float *x = j->x + (size_t)r * d;
        float *o = j->out + (size_t)r * d;
        if (j->add) {
            const float *a = j->add + (size_t)r * d;
            for (int i = 0; i < d; i++) o[i] = x[i] + a[i];
        } else if (o != x) {
            memcpy(o, x, sizeof(float) * (size_t)d);
        }
        float mean = 0;
        for (int i = 0; i < d; i++) mean += o[i];
        mean /= (float)d;
        float var = 0;
        for (int i = 0; i < d; i++) {
            float v = o[i] - mean;
            var += v * v;
        }
        var /= (float)d;
        float inv = 1.0f / sqrtf(var + j->eps);
        for (int i = 0; i < d; i++) o[i] = (o[i] - mean) * inv * j->w[i] + j->b[i];
    }
}

void pd_layernorm(pd_pool *p, const float *x, const float *add, const float *w, const float *b, float eps,
                  int rows, int dim, float *out) {
    if (rows <= 0) return;
    int nt = pd_pool_size(p);
    if ((size_t)rows * (size_t)dim < 8192) nt = 1;
    ln_job j = {x, add, w, b, eps, rows, dim, (rows + nt - 1) / nt, out};
    pd_pool_run(p, ln_task, &j, (rows + j.chunk - 1) / j.chunk);
}

void pd_softmax_rows(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * cols;
        float mx = v[0];
        for (int i = 1; i < cols; i++) mx = v[i] > mx ? v[i] : mx;
        float s = 0;
        for (int i = 0; i < cols; i++) {
            v[i] = fast_expf(v[i] - mx);
            s += v[i];
        }
        float inv = 1.0f / s;
        for (int i = 0; i < cols; i++) v[i] *= inv;
    }
}
