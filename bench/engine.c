/* engine.c - throughput of the encoder forward pass (pd_forward) on a BERT-base-shaped model.
 *
 * Writes (once) a deterministic random BERT-base checkpoint in Hugging Face layout, loads it
 * and reports load time and resident memory, then times pd_forward on batches of sequences
 * of one length under the two threading designs:
 *   pool:     peftd's design (kernels.h) - OpenBLAS at 1 thread, a pd_pool of T threads;
 *   openblas: OpenBLAS's own T-thread pool on every GEMM, no pd_pool (everything that is
 *             not a GEMM - layer norms, GELU, softmax - then runs on one thread).
 * The two are timed in alternation (pool, openblas, pool, ...) so drift hits both alike, each
 * after the other's idle threads went to sleep (settle()).
 *
 * FLOPs are counted exactly for the matrix products and nothing else:
 *   per layer: 2*T*(4*H*H + 2*H*F)   (Q, K, V, O projections and the two FFN matrices)
 *            + n * 2*2*L*L*H         (Q K^T and P V per sequence, all heads)
 * with T = n*L tokens; embeddings, layer norms, softmax and GELU are not counted.
 *
 * Paired roofline: before each of the first --roof-samples (3) forward samples of a batch size, the
 * 2048^3 OpenBLAS sgemm on T threads (the roofline case of bench/gemm.c) is timed (median of
 * 3 calls after a warm-up call, with the pool's workers asleep), so each
 * batch size carries the machine's GEMM speed of that very minute. On a shared machine whose
 * speed drifts by 10-20% over a run, the share of the roofline is then a ratio of two numbers
 * measured together, as the peers' ratios are (bench/report.py).
 *
 * It also dumps the final hidden states of a small batch (ids + floats) for the peers
 * (bench/peers) to check that they compute the same function.
 *
 * --dtype bf16|int8 loads the base in that dtype (pd_model_load_as, core/gemm.h: the linear
 * weights packed once, the server's --dtype). Their products never call OpenBLAS, so only the
 * pool design is timed (the openblas design would time the same kernels on one thread); the
 * JSON names the dtype and the GEMM kernel, and the load line its weight bytes and RSS.
 *
 * Usage: engine --model DIR [--json FILE] [--dump DIR] [--seq L] [--batches 1,8,32]
 *               [--runs N] [--warmup W] [--threads T] [--only pool|openblas]
 *               [--dtype fp32|bf16|int8] [--roof-samples R (0..8; 0: none, e.g. under a profiler)] */
#include "bench_util.h"
#include "gemm.h"
#include "kernels.h"
#include "model.h"

#include <cblas.h>

enum { ROOF_N = 2048, ROOF_MAX = 8 }; /* roofline size; most paired samples per batch size */

typedef struct {
    int batch;
    double sec[2];        /* median seconds per forward: [0] pool, [1] openblas */
    double mn[2], mx[2];  /* spread */
    double *samples[2];   /* (runs) seconds, sorted */
    int runs;
    double roof[ROOF_MAX]; /* paired roofline samples, GFLOP/s, sorted */
    int nroof;
} result;


/* One sample of the roofline: C = A B, 2048^3, OpenBLAS on `threads` threads, after the pool's
 * workers went to sleep and one untimed call woke OpenBLAS's threads; the median of 3 calls,
 * GFLOP/s. */
static double roof_sample(pd_pool *pool, const float *a, const float *b, float *cc, int threads) {
    pd_pool_rest(pool);
    openblas_set_num_threads(threads);
    double t[4];
    for (int i = 0; i < 4; i++) {
        double t0 = pd_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ROOF_N, ROOF_N, ROOF_N, 1.0f, a, ROOF_N, b, ROOF_N, 0.0f, cc, ROOF_N);
        t[i] = pd_now() - t0;
    }
    double med = bench_median(t + 1, 3);
    return 2.0 * ROOF_N * ROOF_N * (double)ROOF_N / med * 1e-9;
}

static double flops_per_forward(const pd_config *c, int n, int L) {
    double T = (double)n * L, H = c->hidden, F = c->ffn;
    return c->layers * (2.0 * T * (4.0 * H * H + 2.0 * H * F) + n * 4.0 * (double)L * L * H);
}

static int forward(pd_ctx *ctx, const pd_seq *seqs, int n) {
    char err[256];
    pd_status st = pd_forward(ctx, seqs, n, err, sizeof err);
    if (st != PD_OK) { fprintf(stderr, "pd_forward: %s\n", err); return -1; }
    return 0;
}

/* Before timing a design, lets the other one's idle threads go to sleep. OpenBLAS's workers
 * keep spinning (with sched_yield) for ~130 ms after its last threaded call (measured here:
 * 10% of a core until then), so a pd_pool forward timed right after an OpenBLAS-threaded one
 * or a roofline sample would share the cores with them. Sleeping that out instead would time
 * the forward on a core just back from idle (10% slower at batch 1 here), so untimed pd_pool
 * forwards fill the 150 ms. pd_pool's own workers spin 200 us; pd_pool_rest stops them. */
static int settle(pd_ctx *const ctx[2], const pd_seq *seqs, int n, pd_pool *pool, int design, int threads) {
    if (design == 1) {
        pd_pool_rest(pool);
        openblas_set_num_threads(threads);
        return 0;
    }
    openblas_set_num_threads(1);
    double t0 = pd_now();
    while (pd_now() - t0 < 0.15)
        if (forward(ctx[0], seqs, n)) return -1;
    return 0;
}

/* Writes ids (n*L int32) and final hidden states (n*L*H float32) of a forward on the pool
 * context to dir/ids.bin and dir/hidden.bin, plus dir/meta.json. */
static int dump(const char *dir, pd_ctx *ctx, const pd_config *c, const int32_t *ids, const pd_seq *seqs, int n, int L) {
    if (bench_mkdirs(dir) || forward(ctx, seqs, n)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/ids.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(ids, sizeof *ids, (size_t)n * L, f) != (size_t)n * L) { perror(path); if (f) fclose(f); return -1; }
    fclose(f);
    snprintf(path, sizeof path, "%s/hidden.bin", dir);
    f = fopen(path, "wb");
    if (!f) { perror(path); return -1; }
    for (int i = 0; i < n; i++) {
        int len = 0;
        const float *h = pd_ctx_hidden(ctx, i, &len);
        PD_ASSERT(len == L);
        if (fwrite(h, sizeof(float), (size_t)L * c->hidden, f) != (size_t)L * c->hidden) { perror(path); fclose(f); return -1; }
    }
    fclose(f);
    char meta[256];
    snprintf(meta, sizeof meta, "{\"batch\": %d, \"seq\": %d, \"hidden\": %d}\n", n, L, c->hidden);
    return bench_write_text(dir, "meta.json", meta);
}

int main(int argc, char **argv) {
    const char *model = NULL, *json = NULL, *dumpdir = NULL, *only = NULL, *dtype_name = "fp32";
    int L = 128, runs = 5, warmup = 2, threads = 2, roof_samples = 3;
    int batches[16] = {1, 8, 32}, nb = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) dumpdir = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--roof-samples") && i + 1 < argc) roof_samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            nb = 0;
            for (char *p = argv[++i]; *p && nb < 16;) {
                batches[nb++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
                else if (*p) break;
            }
        } else {
            fprintf(stderr, "usage: %s --model DIR [--json FILE] [--dump DIR] [--seq L] [--batches 1,8,32] [--runs N] "
                            "[--warmup W] [--threads T] [--only pool|openblas] [--dtype fp32|bf16|int8] [--roof-samples 0..8]\n", argv[0]);
            return 2;
        }
    }
    if (!model || roof_samples < 0 || roof_samples > ROOF_MAX || L < 2 || runs < 1 || runs > 1000 || threads < 1 || nb < 1) {
        fprintf(stderr, "engine: need --model DIR and sane numbers\n");
        return 2;
    }
    for (int b = 0; b < nb; b++)
        if (batches[b] < 1 || batches[b] > 1024) { fprintf(stderr, "engine: bad batch size\n"); return 2; }
    int dtype = pd_wtype_parse(dtype_name);
    if (dtype < 0) { fprintf(stderr, "engine: --dtype must be fp32, bf16 or int8\n"); return 2; }
    if (dtype != PD_WTYPE_F32) only = "pool";
    int do_design[2] = {!only || !strcmp(only, "pool"), !only || !strcmp(only, "openblas")};

    double gen_s = 0;
    if (!bench_file_exists(model, "model.safetensors")) {
        printf("writing a random BERT-base checkpoint to %s ...\n", model);
        fflush(stdout);
        double t0 = pd_now();
        if (bench_write_bert(model, &BENCH_BERT_BASE)) return 1;
        gen_s = pd_now() - t0;
    }

    const char *kernel = pd_blas_init();
    long rss0 = bench_status_kb("VmRSS");
    double t0 = pd_now();
    pd_model *m = NULL;
    char err[512];
    if (pd_model_load_as(model, 0, (pd_wtype)dtype, &m, err, sizeof err) != PD_OK) {
        fprintf(stderr, "load %s: %s\n", model, err);
        return 1;
    }
    double load_wall = pd_now() - t0;
    long rss_load = bench_status_kb("VmRSS");
    const pd_config *c = pd_model_config(m);
    if (L > c->max_tokens) { fprintf(stderr, "engine: --seq %d exceeds the model's %d\n", L, c->max_tokens); return 2; }

    int maxb = 0;
    for (int b = 0; b < nb; b++) if (batches[b] > maxb) maxb = batches[b];
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)maxb * L);
    pd_seq *seqs = calloc((size_t)maxb, sizeof *seqs);
    pd_pool *pool = pd_pool_new(threads);
    pd_ctx *ctx[2] = {pd_ctx_new(m, pool), pd_ctx_new(m, NULL)};
    size_t rn = (size_t)ROOF_N * ROOF_N;
    float *ra = malloc(rn * sizeof(float)), *rb = malloc(rn * sizeof(float)), *rc = malloc(rn * sizeof(float));
    if (!ids || !seqs || !pool || !ctx[0] || !ctx[1] || !ra || !rb || !rc) { fprintf(stderr, "out of memory\n"); return 1; }
    bench_fill(ra, rn, 1.0f, "roof.a", 1);
    bench_fill(rb, rn, 1.0f, "roof.b", 1);
    bench_fill_ids(ids, maxb, L, c->vocab, 12345);
    for (int i = 0; i < maxb; i++) seqs[i] = (pd_seq){ids + (size_t)i * L, NULL, L, NULL, 0};

    /* The first forward touches every weight page: RSS after it is the model's real footprint. */
    double tf = pd_now();
    if (forward(ctx[0], seqs, 1)) return 1;
    double first_s = pd_now() - tf;
    long rss_first = bench_status_kb("VmRSS");

    printf("OpenBLAS kernel: %s; dtype %s (GEMM kernel %s); pd_pool threads: %d; model %s: %d layers, hidden %d, heads %d, "
           "ffn %d, vocab %d\n", kernel, dtype_name, pd_wmat_kernel((pd_wtype)dtype), pd_pool_size(pool), model, c->layers,
           c->hidden, c->heads, c->ffn, c->vocab);
    if (gen_s > 0) printf("checkpoint written in %.1f s\n", gen_s);
    printf("load: %.3f s (pd_model_load_seconds %.3f), weights %.1f MB; VmRSS %.1f MB before, %.1f MB after load, "
           "%.1f MB after the first forward (%.3f s)\n",
           load_wall, pd_model_load_seconds(m), pd_model_bytes(m) / 1e6, rss0 / 1024.0, rss_load / 1024.0,
           rss_first / 1024.0, first_s);

    if (dumpdir) {
        int nd = maxb < 2 ? maxb : 2;
        if (dump(dumpdir, ctx[0], c, ids, seqs, nd, L)) return 1;
    }

    result res[16];
    memset(res, 0, sizeof res);
    printf("\npd_forward, sequence length %d, median of N runs after %d warm-up\n", L, warmup);
    printf("%6s %5s %12s %12s %12s %14s %14s %12s\n", "batch", "N", "pool ms", "pool seq/s", "pool GFLOP/s",
           "openblas ms", "openblas GF/s", "roofline GF/s");
    for (int b = 0; b < nb; b++) {
        int n = batches[b];
        for (int d = 0; d < 2; d++) {
            if (!do_design[d]) continue;
            openblas_set_num_threads(d ? threads : 1);
            for (int w = 0; w < warmup; w++) if (forward(ctx[d], seqs, n)) return 1;
        }
        /* Small batches finish in milliseconds: take more samples there, ~1.5 s per design. */
        double t1 = pd_now();
        openblas_set_num_threads(do_design[0] ? 1 : threads);
        if (forward(ctx[do_design[0] ? 0 : 1], seqs, n)) return 1;
        double one = pd_now() - t1;
        int r = runs;
        if (one * r < 1.5) r = (int)(1.5 / (one > 1e-4 ? one : 1e-4));
        if (r < runs) r = runs;
        if (r > 200) r = 200;
        double *s[2] = {calloc((size_t)r, sizeof(double)), calloc((size_t)r, sizeof(double))};
        if (!s[0] || !s[1]) { fprintf(stderr, "out of memory\n"); return 1; }
        res[b].nroof = 0;
        for (int k = 0; k < r; k++) {
            if (k < roof_samples) res[b].roof[res[b].nroof++] = roof_sample(pool, ra, rb, rc, threads);
            for (int d = 0; d < 2; d++) {
                if (!do_design[d]) continue;
                if (settle(ctx, seqs, n, pool, d, threads)) return 1;
                double ts = pd_now();
                if (forward(ctx[d], seqs, n)) return 1;
                s[d][k] = pd_now() - ts;
            }
        }
        res[b].batch = n;
        res[b].runs = r;
        for (int d = 0; d < 2; d++) {
            if (!do_design[d]) continue;
            bench_minmax(s[d], r, &res[b].mn[d], &res[b].mx[d]);
            res[b].sec[d] = bench_median(s[d], r);
        }
        res[b].samples[0] = s[0];
        res[b].samples[1] = s[1];
        double fl = flops_per_forward(c, n, L);
        double sp = res[b].sec[0], so = res[b].sec[1];
        printf("%6d %5d %12.2f %12.2f %12.1f %14.2f %14.1f %12.1f\n", n, r, sp * 1e3, sp > 0 ? n / sp : 0, sp > 0 ? fl / sp * 1e-9 : 0,
               so * 1e3, so > 0 ? fl / so * 1e-9 : 0, bench_median(res[b].roof, res[b].nroof));
        fflush(stdout);
    }
    openblas_set_num_threads(1);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); return 1; }
        fprintf(f, "{\"kernel\": \"%s\", \"dtype\": \"%s\", \"gemm_kernel\": \"%s\", \"threads\": %d, \"seq\": %d, \"warmup\": %d,\n",
                kernel, pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype), threads, L, warmup);
        fprintf(f, " \"model\": {\"layers\": %d, \"hidden\": %d, \"heads\": %d, \"ffn\": %d, \"vocab\": %d, \"max_pos\": %d},\n",
                c->layers, c->hidden, c->heads, c->ffn, c->vocab, c->max_pos);
        fprintf(f, " \"flops_formula\": \"layers * (2*T*(4*H*H + 2*H*F) + n*4*L*L*H), T = n*L\",\n");
        fprintf(f, " \"load\": {\"seconds\": %.4f, \"core_seconds\": %.4f, \"weights_bytes\": %zu, \"rss_before_kb\": %ld, "
                   "\"rss_after_load_kb\": %ld, \"rss_after_first_forward_kb\": %ld, \"first_forward_s\": %.4f, \"generated_s\": %.2f},\n",
                load_wall, pd_model_load_seconds(m), pd_model_bytes(m), rss0, rss_load, rss_first, first_s, gen_s);
        fprintf(f, " \"results\": [");
        for (int b = 0; b < nb; b++) {
            double fl = flops_per_forward(c, res[b].batch, L);
            fprintf(f, "%s\n  {\"batch\": %d, \"runs\": %d, \"flops\": %.0f", b ? "," : "", res[b].batch, res[b].runs, fl);
            static const char *nm[2] = {"pool", "openblas"};
            for (int d = 0; d < 2; d++) {
                if (!do_design[d]) continue;
                double sec = res[b].sec[d];
                fprintf(f, ", \"%s\": {\"median_s\": %.6f, \"min_s\": %.6f, \"max_s\": %.6f, \"seq_per_s\": %.3f, \"gflops\": %.2f, \"samples_s\": [",
                        nm[d], sec, res[b].mn[d], res[b].mx[d], res[b].batch / sec, fl / sec * 1e-9);
                for (int k = 0; k < res[b].runs; k++) fprintf(f, "%s%.6f", k ? ", " : "", res[b].samples[d][k]);
                fprintf(f, "]}");
            }
            fprintf(f, ", \"roofline_gflops_samples\": [");
            for (int k = 0; k < res[b].nroof; k++) fprintf(f, "%s%.2f", k ? ", " : "", res[b].roof[k]);
            fprintf(f, "]}");
        }
        fprintf(f, "\n ]}\n");
        fclose(f);
    }
    for (int b = 0; b < nb; b++) { free(res[b].samples[0]); free(res[b].samples[1]); }
    pd_ctx_free(ctx[0]);
    pd_ctx_free(ctx[1]);
    pd_pool_free(pool);
    pd_model_free(m);
    free(ra);
    free(rb);
    free(rc);
    free(ids);
    free(seqs);
    return 0;
}
