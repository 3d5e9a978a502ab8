/* parity_data.c - the peftd side's inputs for the torch/peftd accuracy parity run
 * (bench/parity.py): token ids exactly as a training job encodes its examples, and the initial
 * adapter a job creates, so the torch trainer starts from the same data and the same weights.
 *
 *   parity_data --model DIR --train TRAIN.jsonl --dev DEV.jsonl --out OUT [--max-seq-len 64]
 *               [--seed 42] [--r 8] [--alpha 16]
 *
 * Reads {"text", "label"} JSON lines (label: an index into negative, positive), encodes each text
 * with pd_item_encode (classification, max_length = --max-seq-len, no virtual tokens: the call
 * adapters/trainer.c's encode_example makes) and writes OUT/train_ids.jsonl and
 * OUT/dev_ids.jsonl ({"ids", "type_ids", "label"} per line, in input order). Then creates the
 * LoRA adapter POST /train creates for {"method": "lora", "task": "classification", "labels":
 * ["negative", "positive"], "config": {"r", "lora_alpha", "target_modules": ["query",
 * "value"]}, "seed"} (pd_adapter_new_trainable with the job's seed) and saves it in PEFT format
 * into OUT/init/. Exit status 0, or 1 with the reason on stderr. */
#include "adapter.h"
#include "pipeline.h"
#include "trainable.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) { fprintf(stderr, "%s: read failed\n", path); free(buf); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void write_ints(FILE *f, const char *key, const int32_t *v, int n) {
    fprintf(f, "\"%s\": [", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", v[i]);
    fputc(']', f);
}

/* Encodes every line of in_path into out_path. Returns the number of examples, or -1. */
static int encode_file(const pd_model *m, const char *in_path, const char *out_path, int max_len) {
    size_t len = 0;
    char *text = read_file(in_path, &len);
    if (!text) return -1;
    FILE *out = fopen(out_path, "w");
    if (!out) { perror(out_path); free(text); return -1; }
    int n = 0, line = 0, bad = 0;
    for (char *p = text; *p && !bad; line++) {
        char *e = strchr(p, '\n');
        size_t ll = e ? (size_t)(e - p) : strlen(p);
        char *next = e ? e + 1 : p + ll;
        if (ll == 0) { p = next; continue; }
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(p, ll, &end, 0);
        const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        const cJSON *l = o ? cJSON_GetObjectItemCaseSensitive(o, "label") : NULL;
        if (!cJSON_IsString(t) || !cJSON_IsNumber(l) || (l->valueint != 0 && l->valueint != 1)) {
            fprintf(stderr, "%s:%d: need {\"text\": string, \"label\": 0 or 1}\n", in_path, line + 1);
            cJSON_Delete(o);
            bad = 1;
            break;
        }
        pd_input in = {0};
        in.text = t->valuestring;
        pd_opts po = {0};
        po.max_length = max_len;
        pd_item it;
        char err[300];
        pd_status st = pd_item_encode(m, PD_TASK_CLS, &in, &po, 0, &it, err, sizeof err);
        if (st) {
            fprintf(stderr, "%s:%d: %s\n", in_path, line + 1, err);
            cJSON_Delete(o);
            bad = 1;
            break;
        }
        fputc('{', out);
        write_ints(out, "ids", it.win[0].ids, it.win[0].len);
        fputs(", ", out);
        write_ints(out, "type_ids", it.win[0].type_ids, it.win[0].len);
        fprintf(out, ", \"label\": %d}\n", l->valueint);
        pd_item_free(&it);
        cJSON_Delete(o);
        n++;
        p = next;
    }
    free(text);
    if (fclose(out)) { perror(out_path); bad = 1; }
    return bad ? -1 : n;
}

int main(int argc, char **argv) {
    const char *model = NULL, *train = NULL, *dev = NULL, *out = NULL;
    int max_len = 64, r = 8, alpha = 16;
    long long seed = 42;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--train") && i + 1 < argc) train = argv[++i];
        else if (!strcmp(argv[i], "--dev") && i + 1 < argc) dev = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--max-seq-len") && i + 1 < argc) max_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--r") && i + 1 < argc) r = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--alpha") && i + 1 < argc) alpha = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --model DIR --train TRAIN.jsonl --dev DEV.jsonl --out OUT [--max-seq-len 64] [--seed 42] "
                            "[--r 8] [--alpha 16]\n", argv[0]);
            return 2;
        }
    }
    if (!model || !train || !dev || !out || max_len < 4 || r < 1 || alpha < 1 || seed < 0) {
        fprintf(stderr, "parity_data: need --model, --train, --dev, --out and sane numbers\n");
        return 2;
    }
    pd_blas_init();
    int rc = 1;
    pd_model *m = NULL;
    pd_adapter *a = NULL;
    cJSON *cfg = NULL;
    char err[512], path[4096];
    if (pd_model_load(model, 0, &m, err, sizeof err)) { fprintf(stderr, "load %s: %s\n", model, err); goto out; }
    if (mkdir(out, 0755) && errno != EEXIST) { perror(out); goto out; }
    snprintf(path, sizeof path, "%s/train_ids.jsonl", out);
    int nt = encode_file(m, train, path, max_len);
    snprintf(path, sizeof path, "%s/dev_ids.jsonl", out);
    int nd = nt < 0 ? -1 : encode_file(m, dev, path, max_len);
    if (nt < 0 || nd < 0) goto out;

    const char *targets[] = {"query", "value"};
    cfg = cJSON_CreateObject();
    if (!cfg || !cJSON_AddNumberToObject(cfg, "r", r) || !cJSON_AddNumberToObject(cfg, "lora_alpha", alpha) ||
        !cJSON_AddItemToObject(cfg, "target_modules", cJSON_CreateStringArray(targets, 2))) {
        fprintf(stderr, "out of memory\n");
        goto out;
    }
    char *labels[] = {"negative", "positive"};
    if (pd_adapter_new_trainable(m, PD_METHOD_LORA, cfg, PD_TASK_CLS, labels, 2, (uint64_t)seed, &a, err, sizeof err)) {
        fprintf(stderr, "adapter: %s\n", err);
        goto out;
    }
    snprintf(path, sizeof path, "%s/init", out);
    if (mkdir(path, 0755) && errno != EEXIST) { perror(path); goto out; }
    if (pd_adapter_save_dir(a, path, err, sizeof err)) { fprintf(stderr, "save %s: %s\n", path, err); goto out; }
    printf("{\"train\": %d, \"dev\": %d, \"init\": \"%s\"}\n", nt, nd, path);
    rc = 0;
out:
    cJSON_Delete(cfg);
    pd_adapter_release(a);
    pd_model_free(m);
    return rc;
}
