/* gemm_lowp.c - the packed fp32 / bf16 / int8 products of core/gemm.h against OpenBLAS sgemm.
 *
 * Linear layers y = x W^T + b at BERT-base shapes (W 768x768, 3072x768, 768x3072; rows 1 and
 * batch x 128 for batch 1, 8, 32), on 1 thread and on a pd_pool of 2:
 *   sgemm: peftd's fp32 path today (pd_linear: OpenBLAS at one thread per pool task, packing W
 *          on every call), fp32 / bf16 / int8: pd_wmat_linear on weights packed once.
 * bf16 and int8 times include the conversion of x (bf16 rounding, u8 quantization); int8
 * counts 2 ops per multiply-add like the others (GOP/s). The fp32 roofline is OpenBLAS sgemm on
 * 2048^3 at 1 and 2 threads, measured in the same run.
 * Backward dx = dy W (rows 1024 and 4096, one thread): OpenBLAS sgemm (NN on fp32 W), pd_wmat_dx
 * (W^T's panels transposed from the forward packing per call), and a resident second packing
 * (W^T packed once as its own forward matrix; bf16 for int8 weights, whose dx runs in bf16).
 * Attention products per (sequence, head) at L = 128, d = 64: fp32 sgemm against bf16
 * (operand packing included).
 *
 * The machine is shared: every case's kernels are timed in alternation, sample by sample, and
 * the median of --runs samples (each >= 20 ms of calls) is printed with the spread. One-thread
 * cases (roofline at 1 thread, linears at 1 thread, attention) count this thread's CPU time,
 * so time taken by other processes on that core drops out; 2-thread cases are wall clock.
 * Usage: gemm_lowp [--runs N] [--quick] [--json FILE] [--only linear|dx|attention] */
#include "bench_util.h"
#include "gemm.h"
#include "kernels.h"

#include <cblas.h>
#include <time.h>

extern void openblas_set_num_threads(int);

enum { K_SGEMM = 0, K_F32, K_BF16, K_INT8, K_COUNT };
static const char *kname[K_COUNT] = {"sgemm", "fp32", "bf16", "int8"};

typedef struct {
    int kind;
    pd_pool *pool;
    int rows, out, in;
    const float *x, *w, *bias;
    const pd_wmat *wm;
    float *y;
} lin_case;

static void run_lin(const lin_case *c) {
    if (c->kind == K_SGEMM) pd_linear(c->pool, c->x, c->rows, c->in, c->w, c->bias, c->out, c->y);
    else pd_wmat_linear(c->pool, c->wm, c->x, c->rows, c->bias, c->y, 0);
}

typedef void (*run_fn)(const void *);

/* One-thread cases are timed in this thread's CPU time: on a shared machine the wall clock
 * also counts the time other processes held the core. Pool cases need the wall clock. */
static int use_cpu_clock;
static double now(void) {
    if (!use_cpu_clock) return pd_now();
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Calls per sample so that one sample lasts >= 20 ms. */
static int calib(run_fn f, const void *arg) {
    f(arg);
    double t0 = now();
    f(arg);
    double one = now() - t0;
    return one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
}

static double sample(run_fn f, const void *arg, int reps) {
    double t0 = now();
    for (int i = 0; i < reps; i++) f(arg);
    return (now() - t0) / reps;
}

/* Times n cases in alternation; sec[i] gets case i's median seconds per call, lo/hi the spread. */
static void time_alternating(run_fn f, const void *const *args, int n, int runs, double *sec, double *lo, double *hi) {
    int reps[8];
    double s[8][64];
    if (runs > 64) runs = 64;
    for (int i = 0; i < n; i++) reps[i] = calib(f, args[i]);
    for (int r = 0; r < runs; r++)
        for (int i = 0; i < n; i++) s[i][r] = sample(f, args[i], reps[i]);
    for (int i = 0; i < n; i++) {
        bench_minmax(s[i], runs, &lo[i], &hi[i]);
        sec[i] = bench_median(s[i], runs);
    }
}

static void run_lin_v(const void *a) { run_lin(a); }

static float *rand_matrix(size_t n, const char *name, float std) {
    float *x = malloc(n * sizeof(float));
    if (!x) { fprintf(stderr, "out of memory\n"); exit(1); }
    bench_fill(x, n, std, name, 7);
    return x;
}

/* ---- sgemm roofline ---- */
typedef struct { int n; float *a, *b, *c; } roof_case;
static void run_roof(const void *v) {
    const roof_case *r = v;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r->n, r->n, r->n, 1.0f, r->a, r->n, r->b, r->n, 0.0f, r->c, r->n);
}

/* ---- backward ---- */
typedef struct {
    int kind; /* 0 sgemm NN, 1 pd_wmat_dx, 2 second packing */
    pd_pool *pool;
    int rows, out, in;
    const float *dy, *w;
    const pd_wmat *wm, *wt;
    float *dx;
} dx_case;
static void run_dx(const void *v) {
    const dx_case *c = v;
    if (c->kind == 0) pd_gemm(c->pool, 0, 0, c->rows, c->in, c->out, 1.0f, c->dy, c->out, c->w, c->in, 0.0f, c->dx, c->in);
    else if (c->kind == 1) pd_wmat_dx(c->pool, c->wm, c->dy, c->rows, c->dx, 0);
    else pd_wmat_linear(c->pool, c->wt, c->dy, c->rows, NULL, c->dx, 0);
}

/* ---- attention: one (sequence, head), scores S = Q K^T (L x L), out = P V (L x d) ---- */
typedef struct {
    int bf16, L, d, H; /* bf16: 1 packs K and V^T in the call, 2 uses kp and vtp packed beforehand */
    const float *q, *k, *v, *p;
    float *s, *o, *vt;
    const pd_wmat *kp, *vtp;
} attn_case;
static void run_attn(const void *arg) {
    const attn_case *c = arg;
    if (c->bf16 == 2) { /* the products alone: an upper bound for bf16 attention */
        pd_wmat_gemm(NULL, c->kp, c->q, (size_t)c->H, c->L, NULL, c->s, (size_t)c->L, 0);
        pd_wmat_gemm(NULL, c->vtp, c->p, (size_t)c->L, c->L, NULL, c->o, (size_t)c->H, 0);
        return;
    }
    if (!c->bf16) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->L, c->L, c->d, 0.125f, c->q, c->H, c->k, c->H, 0.0f, c->s, c->L);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->L, c->d, c->L, 1.0f, c->p, c->L, c->v, c->H, 0.0f, c->o, c->H);
        return;
    }
    /* K is the "weight" of Q K^T as stored; V needs V^T (d, L) for P V = P (V^T)^T */
    pd_wmat *k = pd_wmat_new(PD_WTYPE_BF16, c->k, c->L, c->d, (size_t)c->H);
    pd_wmat_gemm(NULL, k, c->q, (size_t)c->H, c->L, NULL, c->s, (size_t)c->L, 0);
    pd_wmat_free(k);
    for (int i = 0; i < c->L; i++)
        for (int j = 0; j < c->d; j++) c->vt[(size_t)j * c->L + i] = c->v[(size_t)i * c->H + j];
    pd_wmat *vt = pd_wmat_new(PD_WTYPE_BF16, c->vt, c->d, c->L, (size_t)c->L);
    pd_wmat_gemm(NULL, vt, c->p, (size_t)c->L, c->L, NULL, c->o, (size_t)c->H, 0);
    pd_wmat_free(vt);
}

int main(int argc, char **argv) {
    int runs = 7, quick = 0;
    const char *json = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else { fprintf(stderr, "usage: %s [--runs N] [--quick] [--json FILE] [--only linear|dx|attention]\n", argv[0]); return 2; }
    }
    if (runs < 1) runs = 1;
    if (quick) runs = runs > 3 ? 3 : runs;
    const char *core = pd_blas_init();
    char cpu[256];
    printf("CPU: %s; OpenBLAS kernel %s (OPENBLAS_CORETYPE=%s); kernels: fp32 %s, bf16 %s, int8 %s\n",
           bench_cpu_model(cpu, sizeof cpu), core, getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
           pd_wmat_kernel(PD_WTYPE_F32), pd_wmat_kernel(PD_WTYPE_BF16), pd_wmat_kernel(PD_WTYPE_INT8));
    printf("Shared machine: kernels alternate sample by sample; medians of %d samples (>= 20 ms each); 1 thread: thread CPU time, 2 threads: wall clock\n", runs);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) { perror(json); return 1; }
    if (jf) fprintf(jf, "{\"openblas\": \"%s\", \"runs\": %d, ", core, runs);

    pd_pool *pool2 = pd_pool_new(2);
    if (!pool2) { fprintf(stderr, "pd_pool_new failed\n"); return 1; }
    size_t maxr = 4096;
    float *x = rand_matrix(maxr * 3072, "x", 1.0f), *y = rand_matrix(maxr * 3072, "y", 1.0f);
    float *wbuf = rand_matrix(3072 * 768, "w", 0.02f), *bias = rand_matrix(3072, "b", 0.02f);

    /* roofline: sgemm 2048^3 at 1 and 2 OpenBLAS threads */
    double roof[2];
    {
        roof_case rc = {2048, x, y, wbuf};
        float *cbuf = rand_matrix(2048 * 2048, "c", 1.0f);
        float *bb = rand_matrix(2048 * 2048, "bb", 1.0f);
        rc.b = bb;
        rc.c = cbuf;
        for (int th = 1; th <= 2; th++) {
            openblas_set_num_threads(th);
            use_cpu_clock = th == 1;
            const void *args[1] = {&rc};
            double sec, lo, hi;
            time_alternating(run_roof, args, 1, quick ? 3 : 5, &sec, &lo, &hi);
            roof[th - 1] = 2.0 * 2048 * 2048 * 2048 / sec * 1e-9;
            printf("roofline sgemm 2048^3, %d thread%s: %.1f GFLOP/s (%.1f..%.1f)\n", th, th > 1 ? "s" : "", roof[th - 1],
                   2.0 * 2048 * 2048 * 2048 / hi * 1e-9, 2.0 * 2048 * 2048 * 2048 / lo * 1e-9);
        }
        openblas_set_num_threads(1);
        free(cbuf);
        free(bb);
    }
    if (jf) fprintf(jf, "\"roofline_1t\": %.2f, \"roofline_2t\": %.2f, \"linear\": [", roof[0], roof[1]);

    static const int shp[][2] = {{768, 768}, {3072, 768}, {768, 3072}}; /* out, in */
    static const int rowsv[] = {1, 128, 1024, 4096};
    pd_wmat *wm[3][K_COUNT] = {{0}};
    for (int s = 0; s < 3; s++)
        for (int k = K_F32; k < K_COUNT; k++) {
            wm[s][k] = pd_wmat_new((pd_wtype)(k - K_F32), wbuf, shp[s][0], shp[s][1], (size_t)shp[s][1]);
            if (!wm[s][k]) { fprintf(stderr, "pd_wmat_new failed\n"); return 1; }
        }
    printf("\nLinear y = x W^T + b, GFLOP/s (int8: GOP/s), median (min..max over samples)\n");
    printf("%3s %-16s %20s %20s %20s %20s %6s %6s %6s\n", "thr", "rows x out x in", "sgemm (pd_linear)", "fp32 packed",
           "bf16", "int8", "fp32x", "bf16x", "int8x");
    int first = 1;
    for (int th = 1; th <= 2 && (!only || !strcmp(only, "linear")); th++) {
        pd_pool *pool = th == 1 ? NULL : pool2;
        use_cpu_clock = th == 1;
        for (size_t r = 0; r < sizeof rowsv / sizeof rowsv[0]; r++) {
            if (quick && rowsv[r] == 4096) continue;
            for (int s = 0; s < 3; s++) {
                int rows = rowsv[r], out = shp[s][0], in = shp[s][1];
                lin_case c[K_COUNT];
                const void *args[K_COUNT];
                for (int k = 0; k < K_COUNT; k++) {
                    c[k] = (lin_case){k, pool, rows, out, in, x, wbuf, bias, k ? wm[s][k] : NULL, y};
                    args[k] = &c[k];
                }
                double sec[K_COUNT], lo[K_COUNT], hi[K_COUNT], gf[K_COUNT];
                time_alternating(run_lin_v, args, K_COUNT, runs, sec, lo, hi);
                double ops = 2.0 * rows * (double)out * in;
                char sh[48], cell[K_COUNT][40];
                snprintf(sh, sizeof sh, "%dx%dx%d", rows, out, in);
                for (int k = 0; k < K_COUNT; k++) {
                    gf[k] = ops / sec[k] * 1e-9;
                    snprintf(cell[k], sizeof cell[k], "%.0f (%.0f..%.0f)", gf[k], ops / hi[k] * 1e-9, ops / lo[k] * 1e-9);
                }
                printf("%3d %-16s %20s %20s %20s %20s %6.2f %6.2f %6.2f\n", th, sh, cell[0], cell[1], cell[2], cell[3],
                       gf[1] / gf[0], gf[2] / gf[0], gf[3] / gf[0]);
                fflush(stdout);
                if (jf)
                    fprintf(jf, "%s{\"threads\": %d, \"rows\": %d, \"out\": %d, \"in\": %d, \"sgemm\": %.2f, \"fp32\": %.2f, "
                                "\"bf16\": %.2f, \"int8\": %.2f}",
                            first ? "" : ", ", th, rows, out, in, gf[0], gf[1], gf[2], gf[3]);
                first = 0;
            }
        }
    }

    /* backward dx = dy W, one thread */
    if (!only || !strcmp(only, "dx")) {
        printf("\nBackward dx = dy W on 1 thread, GFLOP/s: sgemm NN on fp32 W | pd_wmat_dx | second packing of W^T\n");
        printf("%-18s %6s %14s %14s %14s %12s\n", "rows x out x in", "type", "sgemm", "pd_wmat_dx", "packed W^T", "extra bytes");
    }
    if (jf) fprintf(jf, "], \"dx\": [");
    first = 1;
    use_cpu_clock = 1;
    static const int dxrows[] = {1024, 4096};
    for (size_t r = 0; r < 2 && (!only || !strcmp(only, "dx")); r++) {
        if (quick && dxrows[r] == 4096) continue;
        for (int s = 0; s < 3; s++)
            for (int k = K_F32; k < K_COUNT; k++) {
                int rows = dxrows[r], out = shp[s][0], in = shp[s][1];
                /* W^T (in, out) for the second packing */
                float *wt = malloc(sizeof(float) * (size_t)out * in);
                for (int n = 0; n < out; n++)
                    for (int i = 0; i < in; i++) wt[(size_t)i * out + n] = wbuf[(size_t)n * in + i];
                /* int8's dx runs in bf16 (s_w folds into dy): its second packing is bf16 too */
                pd_wmat *wtm = pd_wmat_new(k == K_F32 ? PD_WTYPE_F32 : PD_WTYPE_BF16, wt, in, out, (size_t)out);
                dx_case c[3];
                const void *args[3];
                for (int v = 0; v < 3; v++) {
                    c[v] = (dx_case){v, NULL, rows, out, in, x, wbuf, wm[s][k], wtm, y};
                    args[v] = &c[v];
                }
                double sec[3], lo[3], hi[3];
                time_alternating(run_dx, args, 3, runs, sec, lo, hi);
                double ops = 2.0 * rows * (double)out * in;
                char sh[48];
                snprintf(sh, sizeof sh, "%dx%dx%d", rows, out, in);
                printf("%-18s %6s %14.0f %14.0f %14.0f %12zu\n", sh, kname[k], ops / sec[0] * 1e-9, ops / sec[1] * 1e-9,
                       ops / sec[2] * 1e-9, pd_wmat_bytes(wtm));
                if (jf)
                    fprintf(jf, "%s{\"rows\": %d, \"out\": %d, \"in\": %d, \"type\": \"%s\", \"sgemm\": %.2f, \"dx\": %.2f, "
                                "\"second_packing\": %.2f, \"second_bytes\": %zu}",
                            first ? "" : ", ", rows, out, in, kname[k], ops / sec[0] * 1e-9, ops / sec[1] * 1e-9,
                            ops / sec[2] * 1e-9, pd_wmat_bytes(wtm));
                first = 0;
                pd_wmat_free(wtm);
                free(wt);
            }
    }

    /* attention, one thread (the engine runs (sequence, head) pairs as pool tasks) */
    if (!only || !strcmp(only, "attention")) {
        int L = 128, d = 64, H = 768;
        float *s = malloc(sizeof(float) * L * L), *p = rand_matrix((size_t)L * L, "p", 0.01f), *vt = malloc(sizeof(float) * L * d);
        for (int i = 0; i < L; i++)
            for (int j = 0; j < d; j++) vt[(size_t)j * L + i] = x[128 + (size_t)i * H + j];
        pd_wmat *kp = pd_wmat_new(PD_WTYPE_BF16, x + 64, L, d, (size_t)H), *vtp = pd_wmat_new(PD_WTYPE_BF16, vt, d, L, (size_t)L);
        attn_case c[3] = {{0, L, d, H, x, x + 64, x + 128, p, s, y, vt, NULL, NULL},
                          {1, L, d, H, x, x + 64, x + 128, p, s, y, vt, NULL, NULL},
                          {2, L, d, H, x, x + 64, x + 128, p, s, y, vt, kp, vtp}};
        const void *args[3] = {&c[0], &c[1], &c[2]};
        double sec[3], lo[3], hi[3];
        use_cpu_clock = 1;
        time_alternating(run_attn, args, 3, runs, sec, lo, hi);
        double ops = 2.0 * 2.0 * L * L * d;
        printf("\nAttention per (sequence, head), L=%d d=%d, one thread: fp32 sgemm %.1f us (%.0f GFLOP/s); bf16 %.1f us "
               "(%.0f GFLOP/s, packing K and V^T included); bf16 products alone %.1f us (%.0f GFLOP/s)\n",
               L, d, sec[0] * 1e6, ops / sec[0] * 1e-9, sec[1] * 1e6, ops / sec[1] * 1e-9, sec[2] * 1e6, ops / sec[2] * 1e-9);
        if (jf)
            fprintf(jf, "], \"attention_us\": {\"fp32\": %.2f, \"bf16\": %.2f, \"bf16_products\": %.2f", sec[0] * 1e6,
                    sec[1] * 1e6, sec[2] * 1e6);
        pd_wmat_free(kp);
        pd_wmat_free(vtp);
        free(s); free(p); free(vt);
    }
    if (jf) {
        fprintf(jf, "%s}\n", !only || !strcmp(only, "attention") ? "}" : "]");
        fclose(jf);
    }
    for (int s = 0; s < 3; s++)
        for (int k = K_F32; k < K_COUNT; k++) pd_wmat_free(wm[s][k]);
    free(x); free(y); free(wbuf); free(bias);
    pd_pool_free(pool2);
    return 0;
}
