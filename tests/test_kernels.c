/* test_kernels.c - the pool, the split GEMM, layer norm, activations and softmax against
 * straightforward double-precision loops, for every body (instruction set) the CPU can run;
 * the CPU feature detection against /proc/cpuinfo and gcc's, and PD_ISA. */
#include "kernels.h"
#include "test.h"
#include "test_isa.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void count_task(void *arg, int i) { __atomic_fetch_add((int *)arg + i, 1, __ATOMIC_RELAXED); }

typedef struct { pd_pool *p; int ok, rest; } caller_arg;
static void *caller(void *v) {
    caller_arg *c = v;
    int hits[257];
    for (int rep = 0; rep < 200; rep++) {
        memset(hits, 0, sizeof hits);
        pd_pool_run(c->p, count_task, hits, 257);
        for (int i = 0; i < 257; i++) if (hits[i] != 1) c->ok = 0;
        if (c->rest) { /* the server's idle path: workers go to sleep, the next run wakes them */
            pd_pool_rest(c->p);
            if (rep % 3 == 0) usleep(200 + 100 * (rep % 7));
        }
    }
    return NULL;
}

static void test_pool(void) {
    pd_pool *p = pd_pool_new(3);
    CHECK(p && pd_pool_size(p) == 3);
    /* every task runs exactly once, also with two callers at once */
    caller_arg a = {p, 1, 0}, b = {p, 1, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, caller, &a);
    pthread_create(&tb, NULL, caller, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && b.ok);
    /* resting between runs loses no wake-up: alone, and while another caller keeps running */
    caller_arg r = {p, 1, 1};
    caller(&r);
    CHECK(r.ok);
    a.ok = 1;
    pthread_create(&ta, NULL, caller, &a);
    pthread_create(&tb, NULL, caller, &r);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && r.ok);
    pd_pool_free(p);
    pd_pool_free(NULL);
}

static void test_gemm(pd_pool *p) {
    int shapes[][3] = {{1, 7, 5}, {37, 64, 33}, {300, 96, 128}, {129, 200, 64}};
    for (int s = 0; s < 4; s++) {
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
                for (int i = 0; i < m * k; i++) a[i] = frand();
                for (int i = 0; i < k * n; i++) b[i] = frand();
                for (int i = 0; i < m * n; i++) c[i] = frand();
                float *c0 = malloc(sizeof(float) * m * n);
                memcpy(c0, c, sizeof(float) * m * n);
                int lda = ta ? m : k, ldb = tb ? k : n;
                pd_gemm(p, ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2.0f, c, n);
                double maxe = 0;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double acc = 0;
                        for (int q = 0; q < k; q++) {
                            double av = ta ? a[q * lda + i] : a[i * lda + q];
                            double bv = tb ? b[j * ldb + q] : b[q * ldb + j];
                            acc += av * bv;
                        }
                        double ref = 0.5 * acc + 2.0 * c0[i * n + j];
                        double e = fabs(ref - c[i * n + j]);
                        if (e > maxe) maxe = e;
                    }
                CHECKF(maxe < 1e-4, "gemm %dx%dx%d ta=%d tb=%d err %g", m, n, k, ta, tb, maxe);
                free(a); free(b); free(c); free(c0);
            }
        }
    }
    /* pd_linear with and without bias; the larger shapes split across the pool by columns
     * (few rows) or by rows, and each split is also forced (PD_GEMM_SPLIT) */
    int lshapes[][3] = {{70, 48, 40}, {100, 200, 300}, {600, 64, 96}};
    const char *splits[] = {NULL, "rows", "cols"};
    for (int sh = 0; sh < 3; sh++)
        for (int sp = 0; sp < 3; sp++) {
            int rows = lshapes[sh][0], in = lshapes[sh][1], out = lshapes[sh][2];
            if (splits[sp]) setenv("PD_GEMM_SPLIT", splits[sp], 1);
            else unsetenv("PD_GEMM_SPLIT");
            float *x = malloc(sizeof(float) * rows * in), *w = malloc(sizeof(float) * out * in),
                  *bias = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * rows * out);
            for (int i = 0; i < rows * in; i++) x[i] = frand();
            for (int i = 0; i < out * in; i++) w[i] = frand();
            for (int i = 0; i < out; i++) bias[i] = frand();
            for (int wb = 0; wb < 2; wb++) {
                pd_linear(p, x, rows, in, w, wb ? bias : NULL, out, y);
                double maxe = 0;
                for (int r = 0; r < rows; r++)
                    for (int o = 0; o < out; o++) {
                        double acc = wb ? bias[o] : 0;
                        for (int i = 0; i < in; i++) acc += (double)x[r * in + i] * w[o * in + i];
                        double e = fabs(acc - y[r * out + o]);
                        if (e > maxe) maxe = e;
                    }
                CHECKF(maxe < 1e-4, "linear %dx%dx%d split=%s bias=%d err %g", rows, in, out,
                       splits[sp] ? splits[sp] : "auto", wb, maxe);
            }
            free(x); free(w); free(bias); free(y);
        }
    unsetenv("PD_GEMM_SPLIT");
}

static void test_layernorm(pd_pool *p, int dim) {
    int rows = 300;
    float *x = malloc(sizeof(float) * rows * dim), *a = malloc(sizeof(float) * rows * dim), *o = malloc(sizeof(float) * rows * dim);
    float w[800], b[800];
    /* a large common offset, as in a residual stream */
    for (int i = 0; i < rows * dim; i++) { x[i] = 20.0f + frand() * 3; a[i] = frand(); }
    for (int i = 0; i < dim; i++) { w[i] = 1 + frand() * 0.5f; b[i] = frand(); }
    pd_layernorm(p, x, a, w, b, 1e-12f, rows, dim, o);
    double maxe = 0;
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += (double)x[r * dim + i] + a[r * dim + i];
        mean /= dim;
        for (int i = 0; i < dim; i++) { double v = (double)x[r * dim + i] + a[r * dim + i] - mean; var += v * v; }
        var /= dim;
        for (int i = 0; i < dim; i++) {
            double ref = ((double)x[r * dim + i] + a[r * dim + i] - mean) / sqrt(var + 1e-12) * w[i] + b[i];
            double e = fabs(ref - o[r * dim + i]);
            if (e > maxe) maxe = e;
        }
    }
    CHECKF(maxe < 1e-5, "layernorm dim %d err %g", dim, maxe);
    /* in place, no add */
    memcpy(o, x, sizeof(float) * rows * dim);
    pd_layernorm(p, o, NULL, w, b, 1e-5f, rows, dim, o);
    double m0 = 0;
    for (int i = 0; i < dim; i++) m0 += (o[i] - b[i]) / w[i];
    CHECK_NEAR(m0 / dim, 0.0, 1e-5);
    free(x); free(a); free(o);
}

static void test_acts(pd_pool *p) {
    pd_act acts[] = {PD_ACT_GELU, PD_ACT_GELU_TANH, PD_ACT_RELU, PD_ACT_TANH, PD_ACT_SWISH, PD_ACT_SIGMOID};
    int n = 40001;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    for (int a = 0; a < 6; a++) {
        for (int i = 0; i < n; i++) x[i] = -20.0f + 40.0f * (float)i / (float)(n - 1);
        memcpy(y, x, sizeof(float) * n);
        pd_act_apply(p, acts[a], y, (size_t)n);
        double maxe = 0;
        for (int i = 0; i < n; i++) {
            double e = fabs((double)y[i] - pd_act1(acts[a], x[i]));
            if (e > maxe) maxe = e;
        }
        CHECKF(maxe < 2e-6, "%s max abs error %g", pd_act_name(acts[a]), maxe);
        /* out of place: y2 = act(x) equals the in-place result bit for bit, and x is untouched */
        float *y2 = malloc(sizeof(float) * n);
        pd_act_apply_to(p, acts[a], x, y2, (size_t)n);
        int same = 1, kept = 1;
        for (int i = 0; i < n; i++) {
            same &= y2[i] == y[i];
            kept &= x[i] == -20.0f + 40.0f * (float)i / (float)(n - 1);
        }
        CHECKF(same && kept, "%s pd_act_apply_to: same %d, input kept %d", pd_act_name(acts[a]), same, kept);
        free(y2);
        /* derivative against central differences */
        double maxg = 0;
        for (float v = -4.0f; v <= 4.0f; v += 0.37f) {
            double h = 1e-3;
            double fd = (pd_act1(acts[a], (float)(v + h)) - pd_act1(acts[a], (float)(v - h))) / (2 * h);
            double e = fabs(fd - pd_act1_grad(acts[a], v));
            if (acts[a] == PD_ACT_RELU && fabs(v) < 1e-2) continue;
            if (e > maxg) maxg = e;
        }
        CHECKF(maxg < 2e-3, "%s gradient error %g", pd_act_name(acts[a]), maxg);
    }
    CHECK(pd_act_parse("gelu") == PD_ACT_GELU);
    CHECK(pd_act_parse("gelu_pytorch_tanh") == PD_ACT_GELU_TANH);
    CHECK(pd_act_parse("silu") == PD_ACT_SWISH);
    CHECK(pd_act_parse("mish") == -1);
    CHECK(pd_act_parse(NULL) == -1);
    free(x); free(y);
}

static void test_softmax(void) {
    float v[6] = {1, 2, 3, -1000, 1000, 1000};
    pd_softmax_rows(v, 2, 3);
    double s = exp(-2.0) + exp(-1.0) + 1;
    CHECK_NEAR(v[0], exp(-2.0) / s, 1e-6);
    CHECK_NEAR(v[2], 1 / s, 1e-6);
    CHECK_NEAR(v[3], 0.0, 1e-12);
    CHECK_NEAR(v[4], 0.5, 1e-6);
    /* rows of every length up to 70 (vector bodies and tails) against double */
    float buf[70 * 70];
    double maxe = 0, maxs = 0;
    for (int cols = 1; cols <= 70; cols++) {
        for (int i = 0; i < 3 * cols; i++) buf[i] = frand() * 30;
        float ref[3 * 70];
        memcpy(ref, buf, sizeof(float) * 3 * cols);
        pd_softmax_rows(buf, 3, cols);
        for (int r = 0; r < 3; r++) {
            double mx = -1e30, sum = 0, got = 0;
            for (int i = 0; i < cols; i++) mx = fmax(mx, ref[r * cols + i]);
            for (int i = 0; i < cols; i++) sum += exp(ref[r * cols + i] - mx);
            for (int i = 0; i < cols; i++) {
                double e = fabs(exp(ref[r * cols + i] - mx) / sum - buf[r * cols + i]);
                if (e > maxe) maxe = e;
                got += buf[r * cols + i];
            }
            if (fabs(got - 1) > maxs) maxs = fabs(got - 1);
        }
    }
    CHECKF(maxe < 1e-6, "softmax max abs error %g", maxe);
    CHECKF(maxs < 1e-5, "softmax rows sum to 1 within %g", maxs);
    /* rows ld apart: the same bits as pd_softmax_rows row by row, and the gaps untouched */
    int ld = 75, same = 1, kept = 1;
    for (int cols = 1; cols <= 70; cols += 23) {
        float strided[3 * 75], packed[3 * 70];
        for (int i = 0; i < 3 * ld; i++) strided[i] = frand() * 30;
        for (int r = 0; r < 3; r++) memcpy(packed + r * cols, strided + r * ld, sizeof(float) * cols);
        float gap = strided[cols];
        pd_softmax_rows_ld(strided, 3, cols, ld);
        pd_softmax_rows(packed, 3, cols);
        for (int r = 0; r < 3; r++) same &= !memcmp(packed + r * cols, strided + r * ld, sizeof(float) * cols);
        kept &= strided[cols] == gap;
    }
    CHECKF(same && kept, "pd_softmax_rows_ld: same %d, gaps kept %d", same, kept);
}

/* ==== Instruction sets ==== */

/* 1 if /proc/cpuinfo's flags line lists flag, 0 if not, -1 if there is no such file. Linux
 * lists only what the OS enables (no avx512* without AVX-512 state in XCR0). */
static int cpuinfo_has(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5)) continue;
        found = 0;
        for (char *t = strtok(strchr(line, ':') + 1, " \n"); t; t = strtok(NULL, " \n"))
            if (!strcmp(t, flag)) found = 1;
    }
    fclose(f);
    return found;
}

static void test_isa(void) {
    unsigned cpu = pd_cpu_features();
    printf("cpu features: %s%s%s%s\n", cpu & PD_CPU_AVX2 ? "avx2 " : "", cpu & PD_CPU_AVX512 ? "avx512 " : "",
           cpu & PD_CPU_AVX512_VNNI ? "avx512_vnni " : "", cpu & PD_CPU_AVX512_BF16 ? "avx512_bf16" : "");
    /* against two independent readings: the kernel's /proc/cpuinfo and libgcc's (which also
     * checks XCR0) */
    struct { unsigned bit; const char *flags[6]; } want[] = {
        {PD_CPU_AVX2, {"avx2", "fma"}},
        {PD_CPU_AVX512, {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}},
        {PD_CPU_AVX512_VNNI, {"avx512_vnni"}},
        {PD_CPU_AVX512_BF16, {"avx512_bf16"}},
    };
    int have_prev = 1;
    for (int k = 0; k < 4; k++) {
        int all = 1;
        for (int q = 0; want[k].flags[q]; q++) {
            int h = cpuinfo_has(want[k].flags[q]);
            if (h < 0) { TEST_SKIP("no /proc/cpuinfo"); return; }
            all &= h;
        }
        if (k >= 2) all &= (cpu & PD_CPU_AVX512) != 0; /* extensions of AVX-512 */
        else all &= have_prev;
        have_prev = all;
        CHECKF(!!(cpu & want[k].bit) == all, "feature %s: detected %d, /proc/cpuinfo %d", want[k].flags[0],
               !!(cpu & want[k].bit), all);
    }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    CHECK(!!(cpu & PD_CPU_AVX2) == (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")));
    CHECK(!!(cpu & PD_CPU_AVX512) ==
          (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")));
    CHECK(!!(cpu & PD_CPU_AVX512_VNNI) == (!!(cpu & PD_CPU_AVX512) && __builtin_cpu_supports("avx512vnni")));
    CHECK(!!(cpu & PD_CPU_AVX512_BF16) == (!!(cpu & PD_CPU_AVX512) && __builtin_cpu_supports("avx512bf16")));
#endif
    /* PD_ISA values: the union of the names, canonical spelling, unknown names refused */
    CHECK(pd_kernels_set_isa("scalar") == 0 && pd_kernels_features() == 0 && !strcmp(pd_kernels_isa(), "scalar"));
    if (cpu & PD_CPU_AVX2) {
        CHECK(pd_kernels_set_isa("avx2") == 0 && pd_kernels_features() == PD_CPU_AVX2);
        CHECK(!strcmp(pd_kernels_isa(), "avx2"));
    } else {
        CHECK(pd_kernels_set_isa("avx2") == -1 && pd_kernels_features() == 0);
    }
    unsigned both = PD_CPU_AVX2 | PD_CPU_AVX512 | PD_CPU_AVX512_VNNI | PD_CPU_AVX512_BF16;
    if ((cpu & both) == both) {
        CHECK(pd_kernels_set_isa("avx512_bf16") == 0 && pd_kernels_features() == (both & ~PD_CPU_AVX512_VNNI));
        CHECK(!strcmp(pd_kernels_isa(), "avx512+avx512_bf16"));
        CHECK(pd_kernels_set_isa("avx512_bf16+avx2+avx512_vnni") == 0 && pd_kernels_features() == both);
        CHECK(!strcmp(pd_kernels_isa(), "avx512+avx512_vnni+avx512_bf16"));
        CHECK(pd_kernels_set_isa(pd_kernels_isa()) == 0 && pd_kernels_features() == both);
    } else {
        TEST_SKIP("PD_ISA combinations: the CPU lacks AVX512_BF16 or AVX512_VNNI");
    }
    unsigned before = pd_kernels_features();
    const char *bad[] = {"", "avx9000", "avx2+", "+avx2", "avx2++avx512", "AVX2", "avx2 "};
    for (int k = 0; k < 7; k++) CHECKF(pd_kernels_set_isa(bad[k]) == -1, "PD_ISA \"%s\" accepted", bad[k]);
    CHECK(pd_kernels_features() == before);
    CHECK(pd_kernels_set_isa(NULL) == 0 && pd_kernels_features() == cpu);
    CHECK(pd_kernels_isa_name(0) && !strcmp(pd_kernels_isa_name(0), "scalar") && !pd_kernels_isa_name(-1));
}

int main(void) {
    /* PD_ISA is read when the process first uses a kernel: a lower level, and an unknown name */
    unsigned cpu_env = 0;
    setenv("PD_ISA", "avx9000", 1);
    if (fork() == 0) _exit(pd_kernels_features() == pd_cpu_features() ? 0 : 1);
    int status = 0;
    wait(&status);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "PD_ISA=avx9000 not ignored");
    setenv("PD_ISA", "avx2", 1);
    cpu_env = pd_kernels_features();
    unsetenv("PD_ISA");
    CHECKF(cpu_env == (pd_cpu_features() & PD_CPU_AVX2), "PD_ISA=avx2 gave features %#x", cpu_env);
    printf("openblas core: %s\n", pd_blas_init());
    test_isa();
    test_pool();
    pd_pool *p = pd_pool_new(2);
    test_gemm(p);
    test_gemm(NULL);
    /* every kernel body the CPU can run: each PD_ISA name in turn */
    const char *isa;
    for (int k = 0; (isa = test_next_isa(&k));) {
        test_layernorm(p, 96);
        test_layernorm(p, 37);
        test_layernorm(p, 768);
        test_acts(p);
        test_softmax();
        test_gemm(p); /* pd_linear's bias goes through the kernel body */
    }
    pd_pool_free(p);
    return TEST_SUMMARY("test_kernels");
}
