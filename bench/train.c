/* train.c - examples/s of LoRA training on a BERT-base-shaped model, the step a training job
 * takes (adapters/trainer.c), for the "Training throughput" section of make bench.
 *
 * The adapter is created as POST /train creates it (pd_adapter_new_trainable: LoRA with its own
 * classification head, PEFT's init), and every timed step is pd_train_engine_step, the function
 * run_job calls: zero the gradients, training forward (activations kept) in micro-batches, the
 * head's cross-entropy, pd_backward through the frozen encoder into the LoRA and head gradients,
 * gradient clipping, one AdamW step. Micro-batches are the trainer's own (--max-tokens 0: sized
 * from its activation budget), so the number is what a job on this machine gets.
 *
 * Inputs: batches of --batch sequences of exactly --seq tokens ([CLS] random word ids [SEP], as
 * the engine bench uses), labels alternating; each step takes the next batch of a pool of 4.
 * GFLOP/s counts the matrix products of the base model a training step needs (train_flops);
 * LoRA's rank-r products, the head, norms and activations are not counted.
 *
 * --dtype bf16|int8 loads the base in that dtype (pd_model_load_as, the server's --dtype): the
 * same pd_train_engine_step then trains through it as POST /train does on such a server (the
 * forward and the input gradients on the packed low-precision weights, core/gemm.h; the LoRA,
 * the head, their gradients and AdamW's state in fp32). GFLOP/s counts the same products.
 *
 * Usage: train --model DIR [--json FILE] [--batch 16] [--seq 128] [--steps 5] [--warmup 1]
 *              [--threads 2] [--r 8] [--alpha 16] [--max-tokens 0] [--dtype fp32|bf16|int8] */
#include "bench_util.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "trainable.h"
#include "trainer.h"

#include <cJSON.h>
#include <sys/resource.h>

#define N_BATCHES 4

/* Matrix-product FLOPs of one training step on n sequences of L tokens (see the top comment):
 * per layer the forward's linears twice (forward, then dX = dY W) and its attention products
 * three times (forward; dP, dV, dQ, dK in the backward), minus layer 0's Q/K/V input gradients.
 * The top layer runs on each sequence's first row (pd_seq.first_only: the classifier reads no
 * other), except its keys and values, which every query needs: K and V over all T rows, Q, O and
 * the feed-forward over n rows, attention for n queries. peftd's recomputation of the attention
 * scores in the backward is not counted. */
static double train_flops(const pd_config *c, int n, int L) {
    double T = (double)n * L, H = c->hidden, F = c->ffn;
    double lin = 2.0 * T * (4.0 * H * H + 2.0 * H * F), attn = n * 4.0 * (double)L * L * H;
    double top = 2.0 * (2.0 * T * 2.0 * H * H + 2.0 * n * (2.0 * H * H + 2.0 * H * F)) + 3.0 * n * 4.0 * L * H;
    return (c->layers - 1) * (2.0 * lin + 3.0 * attn) + top - 2.0 * T * 3.0 * H * H;
}

/* User + system CPU seconds of the process so far (all threads). */
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
    const char *model = NULL, *json = NULL, *dtype_name = "fp32";
    int batch = 16, L = 128, steps = 5, warmup = 1, threads = 2, r = 8, alpha = 16, max_tokens = 0;
    for (int i = 1; i < argc; i++) {
        int bad = 0;
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) bad = parse_int(argv[++i], &batch);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) bad = parse_int(argv[++i], &L);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) bad = parse_int(argv[++i], &steps);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) bad = parse_int(argv[++i], &warmup);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) bad = parse_int(argv[++i], &threads);
        else if (!strcmp(argv[i], "--r") && i + 1 < argc) bad = parse_int(argv[++i], &r);
        else if (!strcmp(argv[i], "--alpha") && i + 1 < argc) bad = parse_int(argv[++i], &alpha);
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) bad = parse_int(argv[++i], &max_tokens);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
        else bad = 1;
        if (bad) {
            fprintf(stderr, "usage: %s --model DIR [--json FILE] [--batch 16] [--seq 128] [--steps 5] [--warmup 1] "
                            "[--threads 2] [--r 8] [--alpha 16] [--max-tokens 0] [--dtype fp32|bf16|int8]\n", argv[0]);
            return 2;
        }
    }
    if (!model || L < 2 || batch < 1 || batch > 4096 || steps < 1 || steps > 1000 || threads < 1 || r < 1 || alpha < 1) {
        fprintf(stderr, "train: need --model DIR and sane numbers\n");
        return 2;
    }
    int dtype = pd_wtype_parse(dtype_name);
    if (dtype < 0) { fprintf(stderr, "train: --dtype must be fp32, bf16 or int8\n"); return 2; }

    if (!bench_file_exists(model, "model.safetensors")) {
        printf("writing a random BERT-base checkpoint to %s ...\n", model);
        fflush(stdout);
        if (bench_write_bert(model, &BENCH_BERT_BASE)) return 1;
    }
    const char *kernel = pd_blas_init();
    int rc = 1;
    pd_model *m = NULL;
    pd_adapter *a = NULL;
    pd_pool *pool = NULL;
    pd_train_engine *e = NULL;
    pd_adamw *opt = NULL;
    cJSON *cfg = NULL;
    int32_t *ids = NULL;
    pd_train_example *ex = NULL;
    int *idx = NULL;
    double *sec = NULL, *losses = NULL, *cpu = NULL;
    char err[512];
    if (pd_model_load_as(model, 0, (pd_wtype)dtype, &m, err, sizeof err) != PD_OK) { fprintf(stderr, "load %s: %s\n", model, err); goto out; }
    const pd_config *c = pd_model_config(m);
    if (L > c->max_tokens) { fprintf(stderr, "train: --seq %d exceeds the model's %d\n", L, c->max_tokens); rc = 2; goto out; }
    if (!pd_model_head(m, PD_TASK_CLS)) { fprintf(stderr, "train: %s has no classification head\n", model); goto out; }

    /* The adapter POST /train would create for {"method": "lora", "config": {...}}. */
    cfg = cJSON_CreateObject();
    const char *targets[] = {"query", "value"};
    if (!cfg || !cJSON_AddNumberToObject(cfg, "r", r) || !cJSON_AddNumberToObject(cfg, "lora_alpha", alpha) ||
        !cJSON_AddItemToObject(cfg, "target_modules", cJSON_CreateStringArray(targets, 2))) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    if (pd_adapter_new_trainable(m, PD_METHOD_LORA, cfg, PD_TASK_CLS, NULL, 0, 42, &a, err, sizeof err)) {
        fprintf(stderr, "train: adapter: %s\n", err);
        goto out;
    }
    if (!(pool = pd_pool_new(threads))) { fprintf(stderr, "out of memory\n"); goto out; }
    if (pd_train_engine_new(m, a, PD_TASK_CLS, pool, max_tokens, &e, err, sizeof err)) {
        fprintf(stderr, "train: engine: %s\n", err);
        goto out;
    }
    int np = 0;
    const pd_param *ps = pd_adapter_train_params(a, &np);
    opt = pd_adamw_new(ps, np, 0.9, 0.999, 1e-8, 0.0);
    int nex = batch * N_BATCHES;
    ids = malloc(sizeof(int32_t) * (size_t)nex * L);
    ex = calloc((size_t)nex, sizeof *ex);
    idx = malloc(sizeof(int) * (size_t)nex);
    sec = calloc((size_t)steps, sizeof(double));
    losses = calloc((size_t)steps, sizeof(double));
    cpu = calloc((size_t)steps, sizeof(double));
    if (!opt || !ids || !ex || !idx || !sec || !losses || !cpu) { fprintf(stderr, "out of memory\n"); goto out; }
    bench_fill_ids(ids, nex, L, c->vocab, 777);
    for (int i = 0; i < nex; i++) {
        ex[i] = (pd_train_example){ids + (size_t)i * L, NULL, L, i % 2, 0, 0};
        idx[i] = i;
    }

    int mt = pd_train_engine_max_tokens(e);
    long n_micro = ((long)batch * L + mt - 1) / mt; /* the trainer's count: as few as the row limit allows */
    printf("OpenBLAS kernel: %s; base dtype %s (GEMM kernel %s, weights %.1f MB); pd_pool threads: %d; model %s: %d layers, "
           "hidden %d, heads %d, ffn %d\n", kernel, pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype),
           pd_model_bytes(m) / 1e6, pd_pool_size(pool), model, c->layers, c->hidden, c->heads, c->ffn);
    printf("LoRA r=%d alpha=%d on query+value (%lld trainable parameters with the head); batch %d x %d tokens in %ld "
           "micro-batch(es) of at most %d rows\n",
           r, alpha, (long long)pd_adapter_params(a), batch, L, n_micro, mt);
    double fl = train_flops(c, batch, L);
    int total = warmup + steps;
    for (int s = 0; s < total; s++) {
        double loss = 0, c0 = cpu_seconds(), t0 = pd_now();
        pd_status st = pd_train_engine_step(e, opt, ex, idx + (size_t)(s % N_BATCHES) * batch, batch, 1e-3, 1.0,
                                            (uint64_t)s, &loss, NULL, err, sizeof err);
        double dt = pd_now() - t0, dc = cpu_seconds() - c0;
        if (st) { fprintf(stderr, "train: step %d: %s\n", s, err); goto out; }
        if (s >= warmup) {
            sec[s - warmup] = dt;
            losses[s - warmup] = loss;
            cpu[s - warmup] = dc;
        }
        printf("%s step %d: %.3f s (CPU %.3f s), %.2f examples/s, %.1f GFLOP/s, loss %.4f\n", s < warmup ? "warm-up" : "timed",
               s, dt, dc, batch / dt, fl / dt * 1e-9, loss);
        fflush(stdout);
    }
    double sorted[1000]; /* steps <= 1000 */
    memcpy(sorted, sec, sizeof(double) * (size_t)steps);
    double med = bench_median(sorted, steps), mn, mx;
    bench_minmax(sec, steps, &mn, &mx);
    memcpy(sorted, cpu, sizeof(double) * (size_t)steps);
    double cpu_med = bench_median(sorted, steps);
    long peak_kb = bench_status_kb("VmHWM");
    printf("\nLoRA training step, batch %d x %d: median %.3f s (%.3f..%.3f) over %d steps after %d warm-up: "
           "%.2f examples/s, %.1f GFLOP/s; CPU %.3f s per step; peak RSS %.0f MB\n", batch, L, med, mn, mx, steps, warmup,
           batch / med, fl / med * 1e-9, cpu_med, peak_kb / 1024.0);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); goto out; }
        fprintf(f, "{\"runtime\": \"peftd\", \"dtype\": \"%s\", \"gemm_kernel\": \"%s\", \"weights_bytes\": %.0f, "
                   "\"kernel\": \"%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, \"r\": %d, "
                   "\"lora_alpha\": %d, \"target_modules\": [\"query\", \"value\"], \"optimizer\": \"adamw\", \"warmup\": %d,\n",
                pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype), (double)pd_model_bytes(m), kernel,
                pd_pool_size(pool), batch, L, r, alpha, warmup);
        fprintf(f, " \"model\": {\"layers\": %d, \"hidden\": %d, \"heads\": %d, \"ffn\": %d, \"vocab\": %d},\n", c->layers,
                c->hidden, c->heads, c->ffn, c->vocab);
        fprintf(f, " \"micro_batch_limit_rows\": %d, \"micro_batches\": %ld, \"trainable_params\": %lld, \"flops_per_step\": %.0f,\n",
                mt, n_micro, (long long)pd_adapter_params(a), fl);
        fprintf(f, " \"median_s\": %.6f, \"min_s\": %.6f, \"max_s\": %.6f, \"examples_per_s\": %.4f, \"gflops\": %.2f,\n", med, mn,
                mx, batch / med, fl / med * 1e-9);
        fprintf(f, " \"peak_rss_kb\": %ld, \"cpu_median_s\": %.6f, \"cpu_samples_s\": [", peak_kb, cpu_med);
        for (int s = 0; s < steps; s++) fprintf(f, "%s%.6f", s ? ", " : "", cpu[s]);
        fprintf(f, "],\n \"samples_s\": [");
        for (int s = 0; s < steps; s++) fprintf(f, "%s%.6f", s ? ", " : "", sec[s]);
        fprintf(f, "], \"losses\": [");
        for (int s = 0; s < steps; s++) fprintf(f, "%s%.6f", s ? ", " : "", losses[s]);
        fprintf(f, "]}\n");
        if (fclose(f)) { perror(json); goto out; }
    }
    rc = 0;
out:
    cJSON_Delete(cfg);
    free(sec);
    free(cpu);
    free(losses);
    free(idx);
    free(ex);
    free(ids);
    pd_adamw_free(opt);
    pd_train_engine_free(e);
    pd_pool_free(pool);
    pd_adapter_release(a);
    pd_model_free(m);
    return rc;
}
