/* adapters.c - the cost of serving adapters: pd_forward on a BERT-base-shaped model with a
 * batch of sequences that are bare, all on one LoRA, each on a different LoRA, on a prefix
 * (prefix tuning) adapter, or on a bottleneck adapter; and the memory each resident adapter
 * takes.
 *
 * Adapters are generated here in their real file formats (PEFT adapter_config.json +
 * adapter_model.safetensors; AdapterHub adapter_config.json + adapter.safetensors) with
 * deterministic random weights (LoRA B is not zero, so no work can be skipped), and loaded
 * with pd_adapter_load, as the server would.
 *
 * The configurations are timed in alternation, round after round, so drift in machine speed
 * hits all of them alike; each reports the median over rounds.
 *
 * --dtype bf16|int8 loads the base in that dtype (pd_model_load_as, the server's --dtype); the
 * adapters stay fp32 on top of it, as the server runs them.
 *
 * Usage: adapters --model DIR [--json FILE] [--batch 32] [--seq 128] [--runs N] [--threads T]
 *                 [--loras 32] [--dtype fp32|bf16|int8] */
#include "adapter.h"
#include "bench_util.h"
#include "kernels.h"
#include "model.h"

#include <sys/resource.h>

/* CPU seconds (user + system) of the whole process so far: a second view of cost that other
 * processes on the machine disturb less than wall time does. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ==== Adapter files ==== */

typedef struct {
    char *config;
    char *weights;
    size_t weights_len;
} files;

static void files_free(files *f) {
    free(f->config);
    free(f->weights);
    memset(f, 0, sizeof *f);
}

/* Serializes tensors (already filled) into f->weights. */
static int write_weights(files *f, bench_tensors *ts) {
    char err[256];
    pd_status st = pd_st_write_buffer(ts->t, ts->n, NULL, 0, &f->weights, &f->weights_len, err, sizeof err);
    if (st != PD_OK) fprintf(stderr, "safetensors: %s\n", err);
    return st == PD_OK ? 0 : -1;
}

/* PEFT LoRA, rank r on query and value of every layer, saved by PEFT from a
 * BertForSequenceClassification (module paths start with "bert."). */
static int make_lora(const pd_config *c, int r, int seed, files *f) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\": \"LORA\", \"task_type\": \"FEATURE_EXTRACTION\", \"r\": %d, \"lora_alpha\": %d,"
             " \"lora_dropout\": 0.0, \"target_modules\": [\"query\", \"value\"], \"bias\": \"none\","
             " \"fan_in_fan_out\": false, \"inference_mode\": true, \"base_model_name_or_path\": \"bench-bert-base\"}",
             r, 2 * r);
    f->config = strdup(cfg);
    bench_tensors ts = {0};
    int bad = !f->config;
    char name[256];
    static const char *mods[] = {"query", "value"};
    for (int l = 0; l < c->layers && !bad; l++) {
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "base_model.model.bert.encoder.layer.%d.attention.self.%s.lora_A.weight", l, mods[m]);
            bad |= bench_tensor_add(&ts, name, r, c->hidden);
            snprintf(name, sizeof name, "base_model.model.bert.encoder.layer.%d.attention.self.%s.lora_B.weight", l, mods[m]);
            bad |= bench_tensor_add(&ts, name, c->hidden, r);
        }
    }
    /* Different adapters get different numbers: reseed each tensor by adapter. */
    for (int i = 0; i < ts.n && !bad; i++) bench_fill(ts.data[i], (size_t)(ts.t[i].shape[0] * ts.t[i].shape[1]), 0.02f, ts.t[i].name, (uint64_t)seed);
    if (!bad) bad = write_weights(f, &ts);
    bench_tensors_free(&ts);
    return bad ? -1 : 0;
}

/* PEFT prefix tuning without the reparametrization MLP: prompt_embeddings holds, per virtual
 * token, the keys and values of every layer (num_layers * 2 * hidden). */
static int make_prefix(const pd_config *c, int nvt, files *f) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"FEATURE_EXTRACTION\", \"num_virtual_tokens\": %d,"
             " \"token_dim\": %d, \"num_transformer_submodules\": 1, \"num_attention_heads\": %d, \"num_layers\": %d,"
             " \"encoder_hidden_size\": %d, \"prefix_projection\": false, \"inference_mode\": true}",
             nvt, c->hidden, c->heads, c->layers, c->hidden);
    f->config = strdup(cfg);
    bench_tensors ts = {0};
    int bad = !f->config || bench_tensor_add(&ts, "prompt_embeddings", nvt, (int64_t)c->layers * 2 * c->hidden);
    if (!bad) bad = write_weights(f, &ts);
    bench_tensors_free(&ts);
    return bad ? -1 : 0;
}

/* AdapterHub seq_bn (Pfeiffer) bottleneck after every feed-forward block, reduction 16. */
static int make_bottleneck(const pd_config *c, int reduction, files *f) {
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"config\": {\"architecture\": \"bottleneck\", \"mh_adapter\": false, \"output_adapter\": true,"
             " \"reduction_factor\": %d, \"non_linearity\": \"relu\", \"original_ln_before\": true,"
             " \"original_ln_after\": true, \"residual_before_ln\": true, \"adapter_residual_before_ln\": false,"
             " \"ln_before\": false, \"ln_after\": false, \"init_weights\": \"bert\", \"is_parallel\": false,"
             " \"scaling\": 1.0, \"use_gating\": false, \"leave_out\": [], \"phm_layer\": false},"
             " \"hidden_size\": %d, \"model_class\": \"BertAdapterModel\", \"model_name\": \"bench-bert-base\","
             " \"model_type\": \"bert\", \"name\": \"bn\", \"version\": \"1.0.0\"}",
             reduction, c->hidden);
    f->config = strdup(cfg);
    bench_tensors ts = {0};
    int bad = !f->config, ds = c->hidden / reduction;
    char name[256];
    for (int l = 0; l < c->layers && !bad; l++) {
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.adapters.bn.adapter_down.0.weight", l);
        bad |= bench_tensor_add(&ts, name, ds, c->hidden);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.adapters.bn.adapter_down.0.bias", l);
        bad |= bench_tensor_add(&ts, name, ds, 0);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.adapters.bn.adapter_up.weight", l);
        bad |= bench_tensor_add(&ts, name, c->hidden, ds);
        snprintf(name, sizeof name, "bert.encoder.layer.%d.output.adapters.bn.adapter_up.bias", l);
        bad |= bench_tensor_add(&ts, name, c->hidden, 0);
    }
    if (!bad) bad = write_weights(f, &ts);
    bench_tensors_free(&ts);
    return bad ? -1 : 0;
}

static pd_adapter *load(const pd_model *m, files *f, const char *what, double *secs) {
    pd_adapter_files af = {0};
    af.config = f->config;
    af.config_len = strlen(f->config);
    af.weights = f->weights;
    af.weights_len = f->weights_len;
    pd_adapter *a = NULL;
    char err[512];
    double t0 = pd_now();
    pd_status st = pd_adapter_load(m, &af, &a, err, sizeof err);
    if (secs) *secs = pd_now() - t0;
    if (st != PD_OK) fprintf(stderr, "%s: pd_adapter_load: %s\n", what, err);
    return st == PD_OK ? a : NULL;
}

/* ==== Timing ==== */

enum { C_BARE, C_LORA1, C_LORAN, C_PREFIX, C_BN, C_COUNT };
static const char *cname[C_COUNT] = {"bare", "lora_one", "lora_each", "prefix", "bottleneck"};

int main(int argc, char **argv) {
    const char *model = NULL, *json = NULL, *dtype_name = "fp32";
    int batch = 32, L = 128, runs = 5, threads = 2, nlora = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--loras") && i + 1 < argc) nlora = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
        else {
            fprintf(stderr, "usage: %s --model DIR [--json FILE] [--batch 32] [--seq 128] [--runs N] [--threads T] [--loras 32] "
                            "[--dtype fp32|bf16|int8]\n", argv[0]);
            return 2;
        }
    }
    if (!model || batch < 1 || batch > 1024 || L < 2 || runs < 1 || runs > 100 || threads < 1 || nlora < 1 || nlora > 1024) {
        fprintf(stderr, "adapters: need --model DIR and sane numbers\n");
        return 2;
    }
    int dtype = pd_wtype_parse(dtype_name);
    if (dtype < 0) { fprintf(stderr, "adapters: --dtype must be fp32, bf16 or int8\n"); return 2; }
    if (!bench_file_exists(model, "model.safetensors")) {
        printf("writing a random BERT-base checkpoint to %s ...\n", model);
        if (bench_write_bert(model, &BENCH_BERT_BASE)) return 1;
    }
    const char *kernel = pd_blas_init();
    pd_model *m = NULL;
    char err[512];
    if (pd_model_load_as(model, 0, (pd_wtype)dtype, &m, err, sizeof err) != PD_OK) {
        fprintf(stderr, "load %s: %s\n", model, err);
        return 1;
    }
    printf("base dtype %s (GEMM kernel %s)\n", pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype));
    const pd_config *c = pd_model_config(m);
    const int nvt = 20, reduction = 16, rank = 8;
    if (L + nvt > c->max_tokens) { fprintf(stderr, "adapters: --seq too long for the model\n"); return 2; }

    /* Build and load the adapters; measure memory per resident LoRA from RSS and from the
     * adapter's own count. */
    files lf[1024] = {{0}}, pf = {0}, bf = {0};
    pd_adapter *lora[1024] = {0}, *prefix = NULL, *bn = NULL;
    double lsec[1024];
    long rss0 = bench_status_kb("VmRSS");
    for (int i = 0; i < nlora; i++) {
        if (make_lora(c, rank, 1000 + i, &lf[i])) return 1;
    }
    long rss_files = bench_status_kb("VmRSS");
    for (int i = 0; i < nlora; i++) {
        char what[32];
        snprintf(what, sizeof what, "lora %d", i);
        if (!(lora[i] = load(m, &lf[i], what, &lsec[i]))) return 1;
    }
    long rss_loaded = bench_status_kb("VmRSS");
    double load_med = bench_median(lsec, nlora);
    size_t lora_file_bytes = lf[0].weights_len + strlen(lf[0].config);
    int have_prefix = 0, have_bn = 0;
    double psec = 0, bsec = 0;
    if (!make_prefix(c, nvt, &pf)) { prefix = load(m, &pf, "prefix", &psec); have_prefix = prefix != NULL; }
    if (!make_bottleneck(c, reduction, &bf)) { bn = load(m, &bf, "bottleneck", &bsec); have_bn = bn != NULL; }
    (void)rss0;

    printf("OpenBLAS kernel: %s; pd_pool threads: %d; batch %d x %d tokens\n", kernel, threads, batch, L);
    printf("LoRA r=%d on query,value: file %.2f MB, %lld params, pd_adapter_bytes %.2f MB, load median %.2f ms; "
           "RSS growth for %d LoRAs: %.2f MB each\n",
           rank, lora_file_bytes / 1e6, (long long)pd_adapter_params(lora[0]), pd_adapter_bytes(lora[0]) / 1e6, load_med * 1e3,
           nlora, (rss_loaded - rss_files) / 1024.0 / nlora);
    if (have_prefix)
        printf("prefix %d virtual tokens: %lld params, %.2f MB resident, load %.2f ms\n", nvt, (long long)pd_adapter_params(prefix),
               pd_adapter_bytes(prefix) / 1e6, psec * 1e3);
    if (have_bn)
        printf("bottleneck reduction %d: %lld params, %.2f MB resident, load %.2f ms\n", reduction, (long long)pd_adapter_params(bn),
               pd_adapter_bytes(bn) / 1e6, bsec * 1e3);

    int32_t *ids = malloc(sizeof(int32_t) * (size_t)batch * L);
    pd_seq *seqs[C_COUNT];
    for (int k = 0; k < C_COUNT; k++) seqs[k] = calloc((size_t)batch, sizeof(pd_seq));
    pd_pool *pool = pd_pool_new(threads);
    pd_ctx *ctx = pd_ctx_new(m, pool);
    if (!ids || !pool || !ctx) { fprintf(stderr, "out of memory\n"); return 1; }
    bench_fill_ids(ids, batch, L, c->vocab, 777);
    int on[C_COUNT] = {1, 1, 1, have_prefix, have_bn};
    for (int i = 0; i < batch; i++) {
        const int32_t *r = ids + (size_t)i * L;
        seqs[C_BARE][i] = (pd_seq){r, NULL, L, NULL, 0};
        seqs[C_LORA1][i] = (pd_seq){r, NULL, L, pd_adapter_delta(lora[0]), 0};
        seqs[C_LORAN][i] = (pd_seq){r, NULL, L, pd_adapter_delta(lora[i % nlora]), 0};
        seqs[C_PREFIX][i] = (pd_seq){r, NULL, L, have_prefix ? pd_adapter_delta(prefix) : NULL, 0};
        seqs[C_BN][i] = (pd_seq){r, NULL, L, have_bn ? pd_adapter_delta(bn) : NULL, 0};
    }
    double *s[C_COUNT], *cpu[C_COUNT];
    for (int k = 0; k < C_COUNT; k++) {
        s[k] = calloc((size_t)runs, sizeof(double));
        cpu[k] = calloc((size_t)runs, sizeof(double));
        if (!s[k] || !cpu[k]) { fprintf(stderr, "out of memory\n"); return 1; }
        if (on[k] && pd_forward(ctx, seqs[k], batch, err, sizeof err) != PD_OK) {
            fprintf(stderr, "%s: pd_forward: %s\n", cname[k], err);
            return 1;
        }
    }
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < C_COUNT; k++) {
            if (!on[k]) continue;
            double t0 = pd_now(), c0 = cpu_seconds();
            if (pd_forward(ctx, seqs[k], batch, err, sizeof err) != PD_OK) { fprintf(stderr, "%s: %s\n", cname[k], err); return 1; }
            s[k][r] = pd_now() - t0;
            cpu[k][r] = cpu_seconds() - c0;
        }
    }
    double med[C_COUNT] = {0}, mn[C_COUNT] = {0}, mx[C_COUNT] = {0}, cmed[C_COUNT] = {0};
    for (int k = 0; k < C_COUNT; k++) {
        if (!on[k]) continue;
        bench_minmax(s[k], runs, &mn[k], &mx[k]);
        med[k] = bench_median(s[k], runs);
        cmed[k] = bench_median(cpu[k], runs);
    }
    printf("\npd_forward, batch %d x %d tokens, median of %d interleaved rounds\n", batch, L, runs);
    printf("%-34s %10s %10s %12s %12s %12s\n", "configuration", "ms", "seq/s", "vs bare", "CPU ms", "CPU vs bare");
    static const char *label[C_COUNT] = {"bare base", "every sequence on one LoRA", "every sequence on its own LoRA",
                                         "prefix tuning, 20 virtual tokens", "bottleneck, reduction 16"};
    for (int k = 0; k < C_COUNT; k++) {
        if (!on[k]) { printf("%-34s %10s\n", label[k], "n/a (adapter did not load)"); continue; }
        printf("%-34s %10.1f %10.2f %+11.1f%% %12.1f %+11.1f%%\n", label[k], med[k] * 1e3, batch / med[k],
               (med[k] / med[C_BARE] - 1) * 100, cmed[k] * 1e3, (cmed[k] / cmed[C_BARE] - 1) * 100);
    }
    printf("one LoRA vs bare: %+.1f%%; %d LoRAs vs one: %+.1f%%\n", (med[C_LORA1] / med[C_BARE] - 1) * 100,
           batch < nlora ? batch : nlora, (med[C_LORAN] / med[C_LORA1] - 1) * 100);

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); return 1; }
        fprintf(f, "{\"kernel\": \"%s\", \"dtype\": \"%s\", \"gemm_kernel\": \"%s\", \"threads\": %d, \"batch\": %d, "
                   "\"seq\": %d, \"runs\": %d, \"distinct_loras\": %d,\n",
                kernel, pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype), threads, batch, L, runs, batch < nlora ? batch : nlora);
        fprintf(f, " \"lora\": {\"rank\": %d, \"targets\": [\"query\", \"value\"], \"file_bytes\": %zu, \"params\": %lld, "
                   "\"adapter_bytes\": %zu, \"rss_bytes_each\": %.0f, \"load_ms_median\": %.3f},\n",
                rank, lora_file_bytes, (long long)pd_adapter_params(lora[0]), pd_adapter_bytes(lora[0]),
                (rss_loaded - rss_files) * 1024.0 / nlora, load_med * 1e3);
        if (have_prefix)
            fprintf(f, " \"prefix\": {\"virtual_tokens\": %d, \"params\": %lld, \"adapter_bytes\": %zu, \"load_ms\": %.3f},\n", nvt,
                    (long long)pd_adapter_params(prefix), pd_adapter_bytes(prefix), psec * 1e3);
        if (have_bn)
            fprintf(f, " \"bottleneck\": {\"reduction\": %d, \"params\": %lld, \"adapter_bytes\": %zu, \"load_ms\": %.3f},\n", reduction,
                    (long long)pd_adapter_params(bn), pd_adapter_bytes(bn), bsec * 1e3);
        fprintf(f, " \"results\": {");
        int first = 1;
        for (int k = 0; k < C_COUNT; k++) {
            if (!on[k]) continue;
            fprintf(f, "%s\n  \"%s\": {\"median_s\": %.6f, \"min_s\": %.6f, \"max_s\": %.6f, \"seq_per_s\": %.3f, \"cpu_median_s\": %.6f}",
                    first ? "" : ",", cname[k], med[k], mn[k], mx[k], batch / med[k], cmed[k]);
            first = 0;
        }
        fprintf(f, "\n }}\n");
        fclose(f);
    }

    for (int k = 0; k < C_COUNT; k++) { free(s[k]); free(cpu[k]); free(seqs[k]); }
    pd_ctx_free(ctx);
    pd_pool_free(pool);
    for (int i = 0; i < nlora; i++) { pd_adapter_release(lora[i]); files_free(&lf[i]); }
    pd_adapter_release(prefix);
    pd_adapter_release(bn);
    files_free(&pf);
    files_free(&bf);
    free(ids);
    pd_model_free(m);
    return 0;
}
