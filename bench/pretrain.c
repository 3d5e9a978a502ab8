/* pretrain.c - tokens/s and GFLOP/s of the masked-LM pretraining step (train/pretrain.c's
 * pd_pretrainer_step, the step `peftd pretrain` takes), against the sgemm roofline timed in the
 * same run, for the "Pretraining throughput" section of make bench.
 *
 * The model is a fresh BERT of the given shape initialised as pretraining starts it; inputs are
 * --batch windows of exactly --seq tokens ([CLS] random ids [SEP]) masked by pd_mask_window
 * (15%, 80/10/10, as the command does); each step takes the next batch of a pool of 4.
 *
 * FLOPs (matrix products only; layer norms, activations, softmax and AdamW not counted), with
 * T = batch x seq tokens, M masked tokens, per encoder layer:
 *   forward    2T(4H^2 + 2HF) for Q, K, V, O and the feed-forward, 4 T seq H for QK^T and PV;
 *   backward   twice the forward's: dX = dY W and dW = dY^T X for every linear, dV, dP, dQ,
 *              dK for attention (peftd's recomputation of the scores is not counted);
 * and the masked-LM head, forward + backward: 3 (2 M H^2 + 2 M H V), the decoder over the
 * masked rows only (dense, tied decoder; dX and dW of both).
 *
 * Roofline: the 2048^3 OpenBLAS sgemm on --threads threads (bench/engine.c's roof_sample),
 * timed before each timed step (paired), its median reported beside the step's.
 *
 * Usage: pretrain [--json FILE] [--layers 4] [--hidden 256] [--heads 4] [--ffn 1024]
 *                 [--vocab 16384] [--batch 32] [--seq 128] [--steps 5] [--warmup 1] [--threads 2]
 *                 [--roof-samples 3] */
#include "bench_util.h"
#include "kernels.h"
#include "pretrain.h"

#include <cblas.h>
#include <sys/resource.h>

extern void openblas_set_num_threads(int);

enum { N_BATCHES = 4, ROOF_N = 2048 };

static double step_flops(int layers, double H, double F, double V, int n, int L, int M) {
    double T = (double)n * L;
    double fwd = 2.0 * T * (4.0 * H * H + 2.0 * H * F) + 4.0 * T * L * H;
    return layers * 3.0 * fwd + 3.0 * (2.0 * M * H * H + 2.0 * M * H * V);
}

/* One roofline sample (median of 3 after a warm-up call), GFLOP/s; leaves OpenBLAS on 1 thread. */
static double roof_sample(pd_pool *pool, const float *a, const float *b, float *c, int threads) {
    pd_pool_rest(pool);
    openblas_set_num_threads(threads);
    double t[4];
    for (int i = 0; i < 4; i++) {
        double t0 = pd_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ROOF_N, ROOF_N, ROOF_N, 1.0f, a, ROOF_N, b, ROOF_N, 0.0f, c, ROOF_N);
        t[i] = pd_now() - t0;
    }
    openblas_set_num_threads(1);
    return 2.0 * ROOF_N * ROOF_N * (double)ROOF_N / bench_median(t + 1, 3) * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int parse_int(const char *s, int *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (*s == 0 || *e || v < 0 || v > 1 << 24) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int layers = 4, hidden = 256, heads = 4, ffn = 1024, vocab = 16384, batch = 32, L = 128, steps = 5, warmup = 1, threads = 2,
        roof_samples = 3;
    for (int i = 1; i < argc; i++) {
        int bad = 0;
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) bad = parse_int(argv[++i], &layers);
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc) bad = parse_int(argv[++i], &hidden);
        else if (!strcmp(argv[i], "--heads") && i + 1 < argc) bad = parse_int(argv[++i], &heads);
        else if (!strcmp(argv[i], "--ffn") && i + 1 < argc) bad = parse_int(argv[++i], &ffn);
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) bad = parse_int(argv[++i], &vocab);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) bad = parse_int(argv[++i], &batch);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) bad = parse_int(argv[++i], &L);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) bad = parse_int(argv[++i], &steps);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) bad = parse_int(argv[++i], &warmup);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) bad = parse_int(argv[++i], &threads);
        else if (!strcmp(argv[i], "--roof-samples") && i + 1 < argc) bad = parse_int(argv[++i], &roof_samples);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "usage: %s [--json FILE] [--layers 4] [--hidden 256] [--heads 4] [--ffn 1024] [--vocab 16384] "
                            "[--batch 32] [--seq 128] [--steps 5] [--warmup 1] [--threads 2] [--roof-samples 3]\n", argv[0]);
            return 2;
        }
    }
    if (L < 8 || L > 512 || batch < 1 || batch > 4096 || steps < 1 || steps > 1000 || threads < 1 || hidden % heads ||
        vocab < 200 || roof_samples > 1000) {
        fprintf(stderr, "pretrain: need sane sizes (--heads dividing --hidden, --seq 8..512, --vocab >= 200)\n");
        return 2;
    }
    const char *kernel = pd_blas_init();
    pd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = PD_ARCH_BERT;
    cfg.vocab = vocab;
    cfg.hidden = hidden;
    cfg.layers = layers;
    cfg.heads = heads;
    cfg.ffn = ffn;
    cfg.max_pos = 512;
    cfg.max_tokens = 512;
    cfg.type_vocab = 2;
    cfg.ln_eps = 1e-12f;
    cfg.act = PD_ACT_GELU;
    pd_pretrain_hyper hp = {0.9, 0.98, 1e-6, 0.01, 1.0};
    int rc = 1;
    pd_pool *pool = pd_pool_new(threads);
    pd_pretrainer *t = pool ? pd_pretrainer_new(&cfg, &hp, 1, pool) : NULL;
    size_t per = (size_t)batch * L;
    uint32_t *win = malloc(sizeof(uint32_t) * per * N_BATCHES);
    int32_t *ids = malloc(sizeof(int32_t) * per * N_BATCHES), *rows = malloc(sizeof(int32_t) * per * N_BATCHES),
            *labels = malloc(sizeof(int32_t) * per * N_BATCHES), *pos = malloc(sizeof(int32_t) * L),
            *lab = malloc(sizeof(int32_t) * L), *draw = malloc(sizeof(int32_t) * vocab);
    const int32_t **idp = malloc(sizeof *idp * (size_t)batch * N_BATCHES);
    int *len = malloc(sizeof(int) * (size_t)batch), nm[N_BATCHES] = {0};
    uint8_t *special = calloc((size_t)vocab, 1);
    double *sec = calloc((size_t)steps, sizeof(double)), *cpu = calloc((size_t)steps, sizeof(double)),
           *loss = calloc((size_t)steps, sizeof(double)), *roof = calloc((size_t)(steps + 1) * (roof_samples + 1), sizeof(double));
    float *ra = malloc(sizeof(float) * ROOF_N * ROOF_N), *rb = malloc(sizeof(float) * ROOF_N * ROOF_N),
          *rc_ = malloc(sizeof(float) * ROOF_N * ROOF_N);
    char err[512];
    if (!t || !win || !ids || !rows || !labels || !pos || !lab || !draw || !idp || !len || !special || !sec || !cpu || !loss ||
        !roof || !ra || !rb || !rc_) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    bench_fill(ra, (size_t)ROOF_N * ROOF_N, 1.0f, "roof.a", 1);
    bench_fill(rb, (size_t)ROOF_N * ROOF_N, 1.0f, "roof.b", 1);
    /* BERT's special ids at 0 and 100..103 ([PAD], [UNK], [CLS], [SEP], [MASK]), as bench_util's vocabulary */
    special[0] = special[BENCH_CLS] = special[BENCH_SEP] = special[BENCH_CLS + 2] = 1;
    int n_draw = 0;
    for (int i = 0; i < vocab; i++)
        if (!special[i]) draw[n_draw++] = i;
    pd_mask_cfg mc = {0.15, 0, BENCH_CLS + 2, special, draw, n_draw};
    bench_fill_ids(ids, batch * N_BATCHES, L, vocab, 777);
    for (size_t i = 0; i < per * N_BATCHES; i++) win[i] = (uint32_t)ids[i] | PD_TOK_WORD_START;
    for (int k = 0; k < N_BATCHES; k++)
        for (int i = 0; i < batch; i++) {
            size_t w = (size_t)k * batch + i;
            int n = pd_mask_window(win + w * L, L, pd_mask_key(9, 0, (long)w), &mc, ids + w * L, pos, lab);
            for (int j = 0; j < n; j++) {
                rows[(size_t)k * per + nm[k] + j] = i * L + pos[j];
                labels[(size_t)k * per + nm[k] + j] = lab[j];
            }
            nm[k] += n;
            idp[w] = ids + w * L;
        }
    for (int i = 0; i < batch; i++) len[i] = L;
    double fl = step_flops(layers, hidden, ffn, vocab, batch, L, nm[0]);
    printf("OpenBLAS kernel: %s; pd_pool threads: %d; BERT %d layers, hidden %d, heads %d, ffn %d, vocab %d; batch %d x %d "
           "tokens, %d masked; %.2f GFLOP a step\n",
           kernel, pd_pool_size(pool), layers, hidden, heads, ffn, vocab, batch, L, nm[0], fl * 1e-9);
    int nroof = 0;
    for (int s = 0; s < warmup + steps; s++) {
        int k = s % N_BATCHES;
        pd_mlm_batch b = {batch, idp + (size_t)k * batch, len, nm[k], rows + (size_t)k * per, labels + (size_t)k * per};
        if (s >= warmup && s - warmup < roof_samples) roof[nroof++] = roof_sample(pool, ra, rb, rc_, threads);
        pd_step_stats st;
        double c0 = cpu_seconds(), t0 = pd_now();
        if (pd_pretrainer_step(t, &b, 1e-4, &st, err, sizeof err)) {
            fprintf(stderr, "pretrain: step %d: %s\n", s, err);
            goto out;
        }
        double dt = pd_now() - t0, dc = cpu_seconds() - c0;
        if (s >= warmup) {
            sec[s - warmup] = dt;
            cpu[s - warmup] = dc;
            loss[s - warmup] = st.loss;
        }
        printf("%s step %d: %.3f s (CPU %.3f s), %.0f tokens/s, %.1f GFLOP/s, loss %.4f\n", s < warmup ? "warm-up" : "timed", s, dt,
               dc, (double)batch * L / dt, step_flops(layers, hidden, ffn, vocab, batch, L, nm[k]) / dt * 1e-9, st.loss);
        fflush(stdout);
    }
    if (nroof == 0 && roof_samples > 0) roof[nroof++] = roof_sample(pool, ra, rb, rc_, threads);
    double sorted[1000], mn, mx;
    memcpy(sorted, sec, sizeof(double) * (size_t)steps);
    double med = bench_median(sorted, steps);
    bench_minmax(sec, steps, &mn, &mx);
    memcpy(sorted, cpu, sizeof(double) * (size_t)steps);
    double cpu_med = bench_median(sorted, steps);
    double roof_med = nroof ? bench_median(roof, nroof) : 0;
    double gf = fl / med * 1e-9;
    long peak_kb = bench_status_kb("VmHWM");
    printf("\nMLM pretraining step, batch %d x %d: median %.3f s (%.3f..%.3f) over %d steps: %.0f tokens/s, %.1f GFLOP/s; "
           "roofline %.1f GFLOP/s (paired, median of %d) -> %.0f%%; CPU %.3f s a step; peak RSS %.0f MB\n",
           batch, L, med, mn, mx, steps, batch * L / med, gf, roof_med, nroof, roof_med > 0 ? 100 * gf / roof_med : 0, cpu_med,
           peak_kb / 1024.0);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); goto out; }
        fprintf(f, "{\"runtime\": \"peftd\", \"kernel\": \"%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, \"masked\": %d,\n",
                kernel, pd_pool_size(pool), batch, L, nm[0]);
        fprintf(f, " \"model\": {\"layers\": %d, \"hidden\": %d, \"heads\": %d, \"ffn\": %d, \"vocab\": %d}, \"flops_per_step\": %.0f,\n",
                layers, hidden, heads, ffn, vocab, fl);
        fprintf(f, " \"median_s\": %.6f, \"min_s\": %.6f, \"max_s\": %.6f, \"tokens_per_s\": %.2f, \"gflops\": %.2f,\n", med, mn, mx,
                batch * L / med, gf);
        fprintf(f, " \"roofline_gflops\": %.2f, \"roofline_share\": %.4f, \"peak_rss_kb\": %ld, \"cpu_median_s\": %.6f,\n", roof_med,
                roof_med > 0 ? gf / roof_med : 0, peak_kb, cpu_med);
        fprintf(f, " \"roofline_gflops_samples\": [");
        for (int k = 0; k < nroof; k++) fprintf(f, "%s%.2f", k ? ", " : "", roof[k]);
        fprintf(f, "],\n \"samples_s\": [");
        for (int s = 0; s < steps; s++) fprintf(f, "%s%.6f", s ? ", " : "", sec[s]);
        fprintf(f, "], \"losses\": [");
        for (int s = 0; s < steps; s++) fprintf(f, "%s%.6f", s ? ", " : "", loss[s]);
        fprintf(f, "]}\n");
        if (fclose(f)) { perror(json); goto out; }
    }
    rc = 0;
out:
    free(win); free(ids); free(rows); free(labels); free(pos); free(lab); free(draw); free(idp); free(len); free(special);
    free(sec); free(cpu); free(loss); free(roof); free(ra); free(rb); free(rc_);
    pd_pretrainer_free(t);
    pd_pool_free(pool);
    return rc;
}
