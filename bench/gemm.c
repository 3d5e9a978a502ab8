/* gemm.c - the machine's sgemm roofline and the two threading designs for GEMM.
 *
 * Roofline: OpenBLAS sgemm on large problems (2048^3 and the BERT-shaped 1024x3072x768),
 * with OpenBLAS's own pool at 1 and at 2 threads. The engine's effective GFLOP/s is compared
 * against the best of these.
 *
 * Threading designs on the GEMMs of a BERT-base layer (x W^T, W stored (out, in)) at the token
 * counts of batch 1, 8 and 32 of length 128:
 *   pool:     peftd's design - OpenBLAS at 1 thread, pd_gemm splits rows over a pd_pool of 2;
 *   openblas: OpenBLAS's own 2-thread pool on the whole GEMM, no pd_pool.
 *
 * Usage: gemm [--json FILE] [--runs N] [--quick]
 * Prints a table; writes {"kernel", "roofline": [...], "designs": [...]} to FILE. */
#include "bench_util.h"
#include "kernels.h"

#include <cblas.h>
#include <unistd.h>

typedef struct {
    double gflops, min_gflops, max_gflops, ms;
} meas;

typedef enum { RUN_BLAS = 0, RUN_POOL = 1 } run_kind;

typedef struct {
    run_kind kind;
    pd_pool *pool;
    int tb, m, n, k;
    const float *a, *b;
    float *c;
} gemm_case;

static void run_once(const gemm_case *g) {
    int lda = g->k, ldb = g->tb ? g->k : g->n, ldc = g->n;
    if (g->kind == RUN_POOL)
        pd_gemm(g->pool, 0, g->tb, g->m, g->n, g->k, 1.0f, g->a, lda, g->b, ldb, 0.0f, g->c, ldc);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, lda,
                    g->b, ldb, 0.0f, g->c, ldc);
}

/* Times a case: one warm-up call, then `runs` samples, each long enough (>= 40 ms of repeated
 * calls) that the clock and the thread wake-ups do not dominate. GFLOP/s = 2mnk / time. */
static meas time_case(const gemm_case *g, int runs) {
    run_once(g);
    double t0 = pd_now();
    run_once(g);
    double one = pd_now() - t0;
    int reps = one > 0.04 ? 1 : (int)(0.04 / (one > 1e-6 ? one : 1e-6)) + 1;
    double s[64], gf[64];
    if (runs > 64) runs = 64;
    for (int r = 0; r < runs; r++) {
        t0 = pd_now();
        for (int i = 0; i < reps; i++) run_once(g);
        s[r] = (pd_now() - t0) / reps;
        gf[r] = 2.0 * g->m * g->n * (double)g->k / s[r] * 1e-9;
    }
    meas m;
    bench_minmax(gf, runs, &m.min_gflops, &m.max_gflops);
    m.gflops = bench_median(gf, runs);
    m.ms = bench_median(s, runs) * 1e3;
    return m;
}

static float *rand_matrix(size_t n, const char *name) {
    float *x = malloc(n * sizeof(float));
    if (!x) { fprintf(stderr, "out of memory\n"); exit(1); }
    bench_fill(x, n, 1.0f, name, 1);
    return x;
}

/* ==== Pool hand-off ==== */

static void nop_task(void *arg, int i) { (void)arg; (void)i; }

/* What a pool job costs beyond its work: the median time of an empty 2-task pd_pool_run, back
 * to back, and after the caller slept 1 ms (a server between requests; the pool rests first,
 * as the scheduler does): the first job then, and the three after it. Once both threads have
 * slept, the scheduler may wake them on one core; a hand-off that only spins then waits for
 * the other thread to get that core. */
static void handoff(pd_pool *p, int iters, double us[3]) {
    double *v[3];
    for (int k = 0; k < 3; k++) v[k] = malloc(sizeof(double) * (size_t)iters);
    for (int i = 0; i < iters; i++) {
        double t = pd_now();
        pd_pool_run(p, nop_task, NULL, 2);
        v[0][i] = pd_now() - t;
    }
    for (int i = 0; i < iters; i++) {
        pd_pool_rest(p);
        usleep(1000);
        double t0 = pd_now();
        pd_pool_run(p, nop_task, NULL, 2);
        double t1 = pd_now();
        for (int k = 0; k < 3; k++) pd_pool_run(p, nop_task, NULL, 2);
        v[1][i] = t1 - t0;
        v[2][i] = (pd_now() - t1) / 3;
    }
    for (int k = 0; k < 3; k++) {
        us[k] = bench_median(v[k], iters) * 1e6;
        free(v[k]);
    }
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int runs = 5, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else { fprintf(stderr, "usage: %s [--json FILE] [--runs N] [--quick]\n", argv[0]); return 2; }
    }
    if (runs < 1) runs = 1;
    /* pd_blas_init sets OpenBLAS to one thread once; this program changes the count per case
     * afterwards with openblas_set_num_threads, which is what the two designs differ in. */
    const char *kernel = pd_blas_init();
    pd_pool *pool = pd_pool_new(2);
    if (!pool) { fprintf(stderr, "pd_pool_new failed\n"); return 1; }
    float *a = rand_matrix(4096 * 3072, "a"), *b = rand_matrix(3072 * 3072, "b"), *c = rand_matrix(4096 * 3072, "c");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) { perror(json); return 1; }
    if (jf) fprintf(jf, "{\"kernel\": \"%s\", \"runs\": %d, \"roofline\": [", kernel, runs);

    printf("OpenBLAS kernel: %s (OPENBLAS_CORETYPE=%s)\n", kernel,
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    printf("\nRoofline: OpenBLAS sgemm C = A B, median of %d\n", runs);
    printf("%-22s %8s %12s %16s\n", "M x N x K", "threads", "GFLOP/s", "(min..max)");
    static const int roof[][3] = {{2048, 2048, 2048}, {1024, 3072, 768}};
    int first = 1;
    for (size_t s = 0; s < sizeof roof / sizeof roof[0]; s++) {
        for (int th = 1; th <= 2; th++) {
            openblas_set_num_threads(th);
            gemm_case g = {RUN_BLAS, NULL, 0, roof[s][0], roof[s][1], roof[s][2], a, b, c};
            meas m = time_case(&g, runs);
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d", g.m, g.n, g.k);
            printf("%-22s %8d %12.1f %7.1f..%.1f\n", shape, th, m.gflops, m.min_gflops, m.max_gflops);
            if (jf)
                fprintf(jf, "%s{\"m\": %d, \"n\": %d, \"k\": %d, \"threads\": %d, \"gflops\": %.2f, \"min\": %.2f, \"max\": %.2f}",
                        first ? "" : ", ", g.m, g.n, g.k, th, m.gflops, m.min_gflops, m.max_gflops);
            first = 0;
        }
    }

    printf("\nThreading designs on BERT-base linear layers, y = x W^T (T tokens = batch x 128), median of %d\n", runs);
    printf("%-26s %16s %20s %8s\n", "T x out x in", "pool GFLOP/s", "openblas GFLOP/s", "ratio");
    if (jf) fprintf(jf, "], \"designs\": [");
    static const int tok[] = {128, 1024, 4096};
    static const int shp[][2] = {{768, 768}, {3072, 768}, {768, 3072}};
    first = 1;
    for (size_t t = 0; t < sizeof tok / sizeof tok[0]; t++) {
        if (quick && tok[t] == 4096) continue;
        for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++) {
            int m = tok[t], n = shp[s][0], k = shp[s][1];
            openblas_set_num_threads(1);
            gemm_case gp = {RUN_POOL, pool, 1, m, n, k, a, b, c};
            meas mp = time_case(&gp, runs);
            openblas_set_num_threads(2);
            gemm_case gb = {RUN_BLAS, NULL, 1, m, n, k, a, b, c};
            meas mb = time_case(&gb, runs);
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d", m, n, k);
            printf("%-26s %16.1f %20.1f %8.2f\n", shape, mp.gflops, mb.gflops, mp.gflops / mb.gflops);
            if (jf)
                fprintf(jf, "%s{\"m\": %d, \"n\": %d, \"k\": %d, \"pool_gflops\": %.2f, \"openblas_gflops\": %.2f}",
                        first ? "" : ", ", m, n, k, mp.gflops, mb.gflops);
            first = 0;
        }
    }
    openblas_set_num_threads(1);
    double us[3];
    handoff(pool, quick ? 50 : 300, us);
    printf("\nPool hand-off (empty 2-task job, median): back to back %.1f us; after the caller slept 1 ms: first %.1f us, next %.1f us\n",
           us[0], us[1], us[2]);
    if (jf) {
        fprintf(jf, "], \"handoff_us\": {\"back_to_back\": %.2f, \"after_idle_first\": %.2f, \"after_idle_next\": %.2f}}\n",
                us[0], us[1], us[2]);
        fclose(jf);
    }
    free(a); free(b); free(c);
    pd_pool_free(pool);
    return 0;
}
