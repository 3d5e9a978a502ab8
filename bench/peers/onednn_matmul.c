/* onednn_matmul.c - oneDNN's matmul (Debian libdnnl-dev 2.6, OpenMP runtime) against peftd's
 * packed kernels (core/gemm.h) on the same linear layers, for the library decision of
 * docs/ENGINE.md ("Low-precision GEMM"). Not part of the build: bench/peers/onednn.sh builds
 * and runs it (needs libdnnl-dev).
 *
 * oneDNN: weights prepacked once into the primitive's own layout (format_tag any + reorder),
 * source already in the primitive's type (bf16, or u8 with a per-tensor zero point; peftd's
 * times include converting x from fp32, oneDNN's do not), per-output-channel scales for s8
 * weights, fp32 bias and output. Shapes: BERT-base linears, rows 1 / 128 / 1024 / 4096.
 * Threads: 1 (oneDNN at 1 OpenMP thread, peftd on the caller; thread CPU time), and 2 three ways
 * (wall clock): oneDNN on its own 2 OpenMP threads; peftd on its pd_pool of 2; and each
 * design followed by a pd_pool job (GELU over the output, as the next step of a forward
 * pass), to see two thread pools share 2 cores.
 * Usage: onednn_matmul [--runs N] [--threads 1|2] */
#include "bench_util.h"
#include "gemm.h"
#include "kernels.h"

#include <oneapi/dnnl/dnnl.h>
#include <time.h>

extern void omp_set_num_threads(int);

#define OK(x)                                                                       \
    do {                                                                            \
        dnnl_status_t s_ = (x);                                                     \
        if (s_ != dnnl_success) {                                                   \
            fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #x, (int)s_); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static dnnl_engine_t eng;
static dnnl_stream_t strm;

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t src, w, b, dst;
} mm;

/* A matmul y (m, n) = x (m, k) W^T + b with W (n, k) fp32 converted to dt (f32, bf16, s8). */
static void mm_init(mm *o, dnnl_data_type_t dt, int m, int n, int k, const float *w, const float *bias, float *y) {
    dnnl_memory_desc_t smd, wmd, bmd, dmd, wuser;
    dnnl_dims_t sd = {m, k}, wd = {k, n}, bd = {1, n}, dd = {m, n};
    dnnl_data_type_t sdt = dt == dnnl_s8 ? dnnl_u8 : dt;
    OK(dnnl_memory_desc_init_by_tag(&smd, 2, sd, sdt, dnnl_ab));
    OK(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dt, dnnl_format_tag_any));
    OK(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab));
    OK(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t d;
    OK(dnnl_matmul_desc_init(&d, &smd, &wmd, &bmd, &dmd));
    dnnl_primitive_attr_t attr;
    OK(dnnl_primitive_attr_create(&attr));
    void *wsrc = (void *)w;
    float *scales = NULL;
    int8_t *wq = NULL;
    uint16_t *wb = NULL;
    if (dt == dnnl_s8) { /* per-output-channel symmetric, as peftd quantizes */
        scales = malloc(sizeof(float) * n);
        wq = malloc((size_t)n * k);
        for (int j = 0; j < n; j++) {
            float mx = 0;
            for (int i = 0; i < k; i++) mx = fabsf(w[(size_t)j * k + i]) > mx ? fabsf(w[(size_t)j * k + i]) : mx;
            float s = mx > 0 ? mx / 127 : 1;
            for (int i = 0; i < k; i++) wq[(size_t)j * k + i] = (int8_t)nearbyintf(w[(size_t)j * k + i] / s);
            scales[j] = s * 0.01f; /* times a per-tensor activation scale */
        }
        OK(dnnl_primitive_attr_set_output_scales(attr, n, 1 << 1, scales));
        int32_t zp = 128;
        OK(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &zp));
        wsrc = wq;
    } else if (dt == dnnl_bf16) {
        wb = malloc(sizeof(uint16_t) * (size_t)n * k);
        for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = pd_bf16_round(w[i]);
        wsrc = wb;
    }
    dnnl_primitive_desc_t pd;
    OK(dnnl_primitive_desc_create(&pd, &d, attr, eng, NULL));
    OK(dnnl_primitive_create(&o->prim, pd));
    const dnnl_memory_desc_t *wq_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    /* the user's W (n, k) is W^T (k, n) in column-major order: tag ba */
    OK(dnnl_memory_desc_init_by_tag(&wuser, 2, wd, dt, dnnl_ba));
    dnnl_memory_t wu;
    OK(dnnl_memory_create(&wu, &wuser, eng, wsrc));
    OK(dnnl_memory_create(&o->w, wq_md, eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd;
    OK(dnnl_reorder_primitive_desc_create(&rpd, &wuser, eng, wq_md, eng, NULL));
    dnnl_primitive_t r;
    OK(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, o->w}};
    OK(dnnl_primitive_execute(r, strm, 2, ra));
    OK(dnnl_stream_wait(strm));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(wu);
    void *src = calloc((size_t)m * k, dt == dnnl_s8 ? 1 : dt == dnnl_bf16 ? 2 : 4);
    OK(dnnl_memory_create(&o->src, &smd, eng, src));
    OK(dnnl_memory_create(&o->b, &bmd, eng, (void *)bias));
    OK(dnnl_memory_create(&o->dst, &dmd, eng, y));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    free(scales);
    free(wq);
    free(wb);
}

static void mm_run(const mm *o) {
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, o->src}, {DNNL_ARG_WEIGHTS, o->w}, {DNNL_ARG_BIAS, o->b}, {DNNL_ARG_DST, o->dst}};
    OK(dnnl_primitive_execute(o->prim, strm, 4, a));
    OK(dnnl_stream_wait(strm));
}

static void mm_free(mm *o) {
    void *h = NULL;
    dnnl_memory_get_data_handle(o->src, &h);
    free(h);
    dnnl_primitive_destroy(o->prim);
    dnnl_memory_destroy(o->src);
    dnnl_memory_destroy(o->w);
    dnnl_memory_destroy(o->b);
    dnnl_memory_destroy(o->dst);
}

typedef struct {
    int onednn, gelu;
    const mm *m;
    pd_pool *pool;
    const pd_wmat *w;
    const float *x, *bias;
    float *y;
    int rows, out;
} run_case;

static void run(const run_case *c) {
    if (c->onednn) mm_run(c->m);
    else pd_wmat_linear(c->pool, c->w, c->x, c->rows, c->bias, c->y, 0);
    if (c->gelu) pd_act_apply(c->pool, PD_ACT_GELU, c->y, (size_t)c->rows * c->out);
}

static int cpu_clock;
static double now(void) {
    struct timespec t;
    clock_gettime(cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Median seconds per call of n alternating cases. */
static void time_alt(const run_case *c, int n, int runs, double *sec) {
    int reps[8];
    double s[8][32];
    for (int i = 0; i < n; i++) {
        run(&c[i]);
        double t0 = now();
        run(&c[i]);
        double one = now() - t0;
        reps[i] = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    }
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < n; i++) {
            double t0 = now();
            for (int k = 0; k < reps[i]; k++) run(&c[i]);
            s[i][r] = (now() - t0) / reps[i];
        }
    for (int i = 0; i < n; i++) sec[i] = bench_median(s[i], runs);
}

int main(int argc, char **argv) {
    int runs = 5, only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) only = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--runs N] [--threads 1|2]\n", argv[0]); return 2; }
    }
    if (runs < 1) runs = 1;
    if (runs > 32) runs = 32;
    OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    OK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    pd_blas_init();
    printf("oneDNN %d.%d.%d (cpu runtime %u, isa %s); peftd kernels: fp32 %s, bf16 %s, int8 %s\n", v->major, v->minor, v->patch,
           v->cpu_runtime, "max", pd_wmat_kernel(PD_WTYPE_F32), pd_wmat_kernel(PD_WTYPE_BF16), pd_wmat_kernel(PD_WTYPE_INT8));
    printf("Medians of %d alternating samples; 1 thread: thread CPU time, 2 threads: wall clock (shared machine)\n", runs);
    pd_pool *pool2 = pd_pool_new(2);
    float *x = malloc(sizeof(float) * 4096 * 3072), *y = malloc(sizeof(float) * 4096 * 3072);
    float *w = malloc(sizeof(float) * 3072 * 768), *bias = malloc(sizeof(float) * 3072);
    bench_fill(x, (size_t)4096 * 3072, 1.0f, "x", 3);
    bench_fill(w, (size_t)3072 * 768, 0.02f, "w", 3);
    bench_fill(bias, 3072, 0.02f, "b", 3);
    static const int shp[][2] = {{768, 768}, {3072, 768}, {768, 3072}};
    static const int rowsv[] = {1, 128, 1024, 4096};
    static const dnnl_data_type_t dts[] = {dnnl_f32, dnnl_bf16, dnnl_s8};
    static const char *tn[] = {"fp32", "bf16", "int8"};
    printf("\n%3s %-16s %5s %10s %10s %6s   (GFLOP/s or GOP/s; 2 threads: +gelu = followed by a pd_pool GELU job)\n", "thr",
           "rows x out x in", "type", "oneDNN", "peftd", "ratio");
    for (int th = 1; th <= 2; th++) {
        if (only && th != only) continue;
        omp_set_num_threads(th);
        cpu_clock = th == 1;
        for (size_t r = 0; r < 4; r++)
            for (int s = 0; s < 3; s++)
                for (int t = 0; t < 3; t++) {
                    int rows = rowsv[r], out = shp[s][0], in = shp[s][1];
                    mm m;
                    mm_init(&m, dts[t], rows, out, in, w, bias, y);
                    pd_wmat *pw = pd_wmat_new((pd_wtype)t, w, out, in, (size_t)in);
                    pd_pool *pool = th == 1 ? NULL : pool2;
                    run_case c[4] = {{1, 0, &m, pool, pw, x, bias, y, rows, out}, {0, 0, &m, pool, pw, x, bias, y, rows, out},
                                     {1, 1, &m, pool, pw, x, bias, y, rows, out}, {0, 1, &m, pool, pw, x, bias, y, rows, out}};
                    double sec[4];
                    time_alt(c, th == 1 ? 2 : 4, runs, sec);
                    double ops = 2.0 * rows * (double)out * in;
                    char sh[48];
                    snprintf(sh, sizeof sh, "%dx%dx%d", rows, out, in);
                    printf("%3d %-16s %5s %10.0f %10.0f %6.2f", th, sh, tn[t], ops / sec[0] * 1e-9, ops / sec[1] * 1e-9, sec[0] / sec[1]);
                    if (th == 2)
                        printf("   +gelu: oneDNN %.0f us, peftd %.0f us (alone: %.0f, %.0f us)", sec[2] * 1e6, sec[3] * 1e6, sec[0] * 1e6,
                               sec[1] * 1e6);
                    printf("\n");
                    fflush(stdout);
                    pd_wmat_free(pw);
                    mm_free(&m);
                }
    }
    pd_pool_free(pool2);
    free(x); free(y); free(w); free(bias);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
