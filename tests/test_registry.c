/* test_registry.c - the adapter registry: publish / get / replace / delete with pinned versions,
 * versions on disk and restart, crash leftovers, corrupt uploads, eviction under a byte budget,
 * 10,000 registered adapters (times printed), two replicas on one data dir, and a stress run of
 * getters against a publisher, a deleter and a syncer (build with SANITIZER=thread for TSan).
 *
 * The base model is written here: a 2-layer BERT with hidden size 8 and random weights; the
 * adapters are PEFT LoRA files (r=2 on query and value) with random A and B, so every adapter
 * changes the forward pass in its own way and a wrong version shows in the numbers. */
#include "registry.h"
#include "safetensors.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HID 8
#define LAYERS 2
#define FFN 16
#define VOCAB 16
#define MAXPOS 16
#define RANK 2
#define NTOK 6

static char err[1024];
static const int32_t IDS[NTOK] = {2, 5, 9, 7, 12, 3};

/* ==== Files and directories ==== */

static uint64_t rng = 88172645463325252ull;
static float frand(float scale) { /* xorshift64, uniform in [-scale, scale) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((float)(rng >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) { return remove(p); }
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = n && fwrite(b, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

static char *read_all(const char *path, size_t *n) {
    char *b = NULL;
    if (pd_read_file(path, 1u << 30, &b, n, err, sizeof err)) return NULL;
    return b;
}

static int exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* Entries of dir whose name starts with prefix ("" = all but . and ..). */
/* Entries of dir starting with prefix; pruned versions (empty directories holding only the
 * ".pruned" marker that keeps their number from being claimed again) do not count. */
static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || strncmp(de->d_name, prefix, strlen(prefix))) continue;
        char mark[4096];
        struct stat sb;
        snprintf(mark, sizeof mark, "%s/%s/.pruned", dir, de->d_name);
        if (stat(mark, &sb) == 0) continue;
        n++;
    }
    closedir(d);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ==== The tiny base model ==== */

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    float *data;
} wt;

static void add_t(wt *t, int *n, const char *name, int64_t d0, int64_t d1, float scale, float center) {
    wt *w = &t[(*n)++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->ndim = d1 ? 2 : 1;
    w->shape[0] = d0;
    w->shape[1] = d1;
    size_t k = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    w->data = malloc(k * sizeof(float));
    for (size_t i = 0; i < k; i++) w->data[i] = center + frand(scale);
}

static pd_status write_tensors(const char *path, wt *t, int n, char **buf, size_t *len) {
    pd_st_wtensor w[64];
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].name = t[i].name;
        w[i].ndim = t[i].ndim;
        w[i].shape[0] = t[i].shape[0];
        w[i].shape[1] = t[i].shape[1];
        w[i].data = t[i].data;
    }
    pd_status st = path ? pd_st_write(path, w, n, NULL, 0, err, sizeof err)
                        : pd_st_write_buffer(w, n, NULL, 0, buf, len, err, sizeof err);
    for (int i = 0; i < n; i++) free(t[i].data);
    return st;
}

static int make_base(const char *dir) {
    char p[4096];
    static const char *config =
        "{\"architectures\":[\"BertForSequenceClassification\"],\"model_type\":\"bert\",\"vocab_size\":16,"
        "\"hidden_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":2,\"intermediate_size\":16,"
        "\"max_position_embeddings\":16,\"type_vocab_size\":2,\"pad_token_id\":0,\"layer_norm_eps\":1e-12,"
        "\"hidden_act\":\"gelu\",\"id2label\":{\"0\":\"NEG\",\"1\":\"POS\"},\"label2id\":{\"NEG\":0,\"POS\":1}}";
    static const char *vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\na\ngood\nbad\nmovie\nfilm\nis\nwas\nnot\nvery\n.\n";
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (write_bytes(p, config, strlen(config))) return -1;
    snprintf(p, sizeof p, "%s/vocab.txt", dir);
    if (write_bytes(p, vocab, strlen(vocab))) return -1;
    wt t[64];
    int n = 0;
    add_t(t, &n, "bert.embeddings.word_embeddings.weight", VOCAB, HID, 0.5f, 0);
    add_t(t, &n, "bert.embeddings.position_embeddings.weight", MAXPOS, HID, 0.5f, 0);
    add_t(t, &n, "bert.embeddings.token_type_embeddings.weight", 2, HID, 0.5f, 0);
    add_t(t, &n, "bert.embeddings.LayerNorm.weight", HID, 0, 0.1f, 1);
    add_t(t, &n, "bert.embeddings.LayerNorm.bias", HID, 0, 0.1f, 0);
    static const struct { const char *n; int d0, d1; } L[] = {
        {"attention.self.query", HID, HID}, {"attention.self.key", HID, HID}, {"attention.self.value", HID, HID},
        {"attention.output.dense", HID, HID}, {"intermediate.dense", FFN, HID}, {"output.dense", HID, FFN},
    };
    for (int l = 0; l < LAYERS; l++) {
        char nm[96];
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s.weight", l, L[k].n);
            add_t(t, &n, nm, L[k].d0, L[k].d1, 0.5f, 0);
            snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s.bias", l, L[k].n);
            add_t(t, &n, nm, L[k].d0, 0, 0.1f, 0);
        }
        static const char *ln[] = {"attention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s.weight", l, ln[k]);
            add_t(t, &n, nm, HID, 0, 0.1f, 1);
            snprintf(nm, sizeof nm, "bert.encoder.layer.%d.%s.bias", l, ln[k]);
            add_t(t, &n, nm, HID, 0, 0.1f, 0);
        }
    }
    add_t(t, &n, "bert.pooler.dense.weight", HID, HID, 0.5f, 0);
    add_t(t, &n, "bert.pooler.dense.bias", HID, 0, 0.1f, 0);
    add_t(t, &n, "classifier.weight", 2, HID, 0.5f, 0);
    add_t(t, &n, "classifier.bias", 2, 0, 0.1f, 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return write_tensors(p, t, n, NULL, NULL) ? -1 : 0;
}

/* ==== LoRA adapters ==== */

typedef struct {
    char *config, *weights, *labels;
    size_t config_len, weights_len;
} lora;

/* A PEFT LoRA (r=2, alpha=4, query+value) with random A and B. head: also a 3-class classifier
 * saved through modules_to_save. bad: lora_A of layer 1 one column too wide (a shape mismatch). */
static lora make_lora(int head, int bad) {
    lora lf;
    memset(&lf, 0, sizeof lf);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"target_modules\":[\"query\",\"value\"],"
             "\"task_type\":\"SEQ_CLS\"%s}",
             head ? ",\"modules_to_save\":[\"classifier\"]" : "");
    lf.config = strdup(cfg);
    lf.config_len = strlen(cfg);
    wt t[16];
    int n = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int m = 0; m < 2; m++) {
            char nm[128];
            const char *mod = m ? "value" : "query";
            snprintf(nm, sizeof nm, "base_model.model.bert.encoder.layer.%d.attention.self.%s.lora_A.weight", l, mod);
            add_t(t, &n, nm, RANK, HID + (bad && l == 1), 0.6f, 0);
            snprintf(nm, sizeof nm, "base_model.model.bert.encoder.layer.%d.attention.self.%s.lora_B.weight", l, mod);
            add_t(t, &n, nm, HID, RANK, 0.6f, 0);
        }
    if (head) {
        add_t(t, &n, "base_model.model.classifier.weight", 3, HID, 0.5f, 0);
        add_t(t, &n, "base_model.model.classifier.bias", 3, 0, 0.1f, 0);
    }
    if (write_tensors(NULL, t, n, &lf.weights, &lf.weights_len)) fprintf(stderr, "make_lora: %s\n", err);
    return lf;
}

static pd_adapter_files files_of(const lora *lf) {
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    f.config = lf->config;
    f.config_len = lf->config_len;
    f.weights = lf->weights;
    f.weights_len = lf->weights_len;
    if (lf->labels) {
        f.labels = lf->labels;
        f.labels_len = strlen(lf->labels);
    }
    return f;
}

static void lora_free(lora *lf) {
    free(lf->config);
    free(lf->weights);
    free(lf->labels);
    memset(lf, 0, sizeof *lf);
}

/* ==== Forward passes ==== */

/* Final hidden states of IDS through the base with a (NULL: bare base) into out (NTOK*HID). */
static int run(pd_ctx *c, const pd_adapter *a, float *out, char *e, size_t elen) {
    pd_seq s;
    memset(&s, 0, sizeof s);
    s.ids = IDS;
    s.len = NTOK;
    s.delta = a ? pd_adapter_delta(a) : NULL;
    if (pd_forward(c, &s, 1, e, elen)) return -1;
    int len = 0;
    const float *h = pd_ctx_hidden(c, 0, &len);
    if (!h || len != NTOK) return -1;
    memcpy(out, h, sizeof(float) * NTOK * HID);
    return 0;
}

static double maxdiff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? 1e30 : d;
    }
    return m;
}

/* The output an adapter built straight from lf gives (the reference for what the registry serves). */
static int expect(const pd_model *base, pd_ctx *c, const lora *lf, float *out) {
    pd_adapter_files f = files_of(lf);
    pd_adapter *a = NULL;
    if (pd_adapter_load(base, &f, &a, err, sizeof err)) return -1;
    int rc = run(c, a, out, err, sizeof err);
    pd_adapter_release(a);
    return rc;
}

/* Gets name and checks it answers like want; returns the version (0 on failure). */
static int get_check(pd_registry *r, pd_ctx *c, const char *name, const float *want) {
    pd_adapter *a = NULL;
    int v = 0;
    pd_status st = pd_registry_get(r, name, &a, &v, err, sizeof err);
    CHECKF(st == PD_OK, "get %s: %s", name, err);
    if (st) return 0;
    float out[NTOK * HID];
    CHECK(run(c, a, out, err, sizeof err) == 0);
    double d = maxdiff(out, want, NTOK * HID);
    CHECKF(d < 1e-5, "%s version %d differs from its upload by %g", name, v, d);
    pd_adapter_release(a);
    return v;
}

/* ==== Tests ==== */

static void test_names(void) {
    CHECK(pd_registry_valid_name("sentiment-v2_final.1"));
    CHECK(pd_registry_valid_name("A"));
    char n64[66];
    memset(n64, 'a', 64);
    n64[64] = 0;
    CHECK(pd_registry_valid_name(n64));
    n64[64] = 'a';
    n64[65] = 0;
    CHECK(!pd_registry_valid_name(n64));
    static const char *bad[] = {"", ".", "..", ".tmp-1", ".hidden", "a/b", "../x", "a b", "a\\b", "caf\xc3\xa9", "a\nb", "x:y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECKF(!pd_registry_valid_name(bad[i]), "\"%s\"", bad[i]);
    CHECK(!pd_registry_valid_name(NULL));
}

/* Memory-only registry: versions, pins, delete and re-create, no files. */
static void test_memory(const pd_model *base, pd_ctx *c) {
    pd_registry *r = NULL;
    CHECK(pd_registry_open(base, NULL, 1, &r, err, sizeof err) == PD_OK);
    if (!r) return;
    lora l1 = make_lora(0, 0), l2 = make_lora(0, 0);
    float o1[NTOK * HID], o2[NTOK * HID];
    CHECK(expect(base, c, &l1, o1) == 0 && expect(base, c, &l2, o2) == 0);
    pd_adapter_files f1 = files_of(&l1), f2 = files_of(&l2);
    int created = -1;
    pd_adapter_info info;
    CHECK(pd_registry_publish(r, "m", &f1, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 1 && info.version == 1 && info.resident == 1);
    CHECK(info.bytes == l1.config_len + l1.weights_len);
    pd_adapter_info_clear(&info);
    CHECK(get_check(r, c, "m", o1) == 1);
    pd_adapter *pin = NULL;
    CHECK(pd_registry_get(r, "m", &pin, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_publish(r, "m", &f2, &created, NULL, err, sizeof err) == PD_OK && created == 0);
    CHECK(get_check(r, c, "m", o2) == 2);
    CHECK(pd_registry_delete(r, "m", err, sizeof err) == PD_OK);
    pd_adapter *a = NULL;
    CHECK(pd_registry_get(r, "m", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND && !a);
    /* the pinned version 1 still answers, and only this test holds it now */
    float out[NTOK * HID];
    CHECK(run(c, pin, out, err, sizeof err) == 0 && maxdiff(out, o1, NTOK * HID) < 1e-6);
    CHECK(pd_adapter_refcount(pin) == 1);
    pd_adapter_release(pin);
    /* a re-created name continues the numbers, so (name, version) never means two things */
    CHECK(pd_registry_publish(r, "m", &f1, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 1 && info.version == 3);
    pd_adapter_info_clear(&info);
    char path[4096];
    CHECK(pd_registry_file_path(r, "m", "adapter_config.json", path, sizeof path, err, sizeof err) == PD_ERR_NOT_FOUND);
    /* the budget needs a data dir to load from: ignored, everything stays resident */
    pd_registry_stats s;
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == 1 && s.resident == 1 && s.swaps == 1 && s.evictions == 0);
    pd_registry_free(r);
    lora_free(&l1);
    lora_free(&l2);
}

/* Publish, replace, pins, downloads, delete, re-create, corrupt uploads, restart. */
static void test_disk(const pd_model *base, pd_ctx *c, const char *root) {
    char dir[1024], p[4096];
    snprintf(dir, sizeof dir, "%s/store", root);
    pd_registry *r = NULL;
    CHECK(pd_registry_open(base, dir, 0, &r, err, sizeof err) == PD_OK); /* creates the dir */
    if (!r) return;
    lora l1 = make_lora(0, 0), l2 = make_lora(0, 0), lh = make_lora(1, 0);
    lh.labels = strdup("[\"neg\",\"mid\",\"pos\"]");
    float o1[NTOK * HID], o2[NTOK * HID], oh[NTOK * HID], out[NTOK * HID];
    CHECK(expect(base, c, &l1, o1) == 0 && expect(base, c, &l2, o2) == 0 && expect(base, c, &lh, oh) == 0);
    CHECK(maxdiff(o1, o2, NTOK * HID) > 1e-3); /* the two versions are distinguishable */
    pd_adapter_files f1 = files_of(&l1), f2 = files_of(&l2), fh = files_of(&lh);

    int created = -1;
    pd_adapter_info info;
    double t0 = (double)time(NULL);
    CHECK(pd_registry_publish(r, "a", &f1, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 1 && info.version == 1 && info.method == PD_METHOD_LORA && info.task == PD_TASK_CLS);
    CHECK(info.params == LAYERS * 2 * 2 * RANK * HID && info.resident == 1);
    CHECK(info.bytes == l1.config_len + l1.weights_len);
    CHECK(info.created_at >= t0 - 1 && info.created_at == info.updated_at);
    double created_at = info.created_at;
    pd_adapter_info_clear(&info);
    snprintf(p, sizeof p, "%s/a/1/meta.json", dir);
    CHECK(exists(p));

    pd_adapter *pin1 = NULL;
    int v = 0;
    CHECK(pd_registry_get(r, "a", &pin1, &v, err, sizeof err) == PD_OK && v == 1);
    usleep(20000);
    CHECK(pd_registry_publish(r, "a", &f2, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 0 && info.version == 2);
    CHECK(info.created_at == created_at && info.updated_at > created_at);
    pd_adapter_info_clear(&info);
    CHECK(get_check(r, c, "a", o2) == 2);
    /* the replaced version keeps answering for the request that pinned it */
    CHECK(run(c, pin1, out, err, sizeof err) == 0 && maxdiff(out, o1, NTOK * HID) < 1e-6);
    CHECK(pd_adapter_refcount(pin1) == 1); /* the registry let go: freed by this release */
    pd_adapter_release(pin1);

    /* downloads: exactly the uploaded bytes; only the adapter's own files */
    char path[4096];
    size_t n = 0;
    CHECK(pd_registry_file_path(r, "a", "adapter_model.safetensors", path, sizeof path, err, sizeof err) == PD_OK);
    char *b = read_all(path, &n);
    CHECK(b && n == l2.weights_len && !memcmp(b, l2.weights, n));
    free(b);
    CHECK(pd_registry_file_path(r, "a", "adapter_config.json", path, sizeof path, err, sizeof err) == PD_OK);
    b = read_all(path, &n);
    CHECK(b && n == l2.config_len && !memcmp(b, l2.config, n));
    free(b);
    CHECK(pd_registry_file_path(r, "a", "meta.json", path, sizeof path, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_file_path(r, "a", "../a/2/meta.json", path, sizeof path, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_file_path(r, "a", "adapter.safetensors", path, sizeof path, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_file_path(r, "nope", "adapter_config.json", path, sizeof path, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_file_path(r, "..", "adapter_config.json", path, sizeof path, err, sizeof err) == PD_ERR_INVALID);

    /* bad names and unknown names */
    pd_adapter *a = NULL;
    CHECK(pd_registry_publish(r, "../evil", &f1, &created, NULL, err, sizeof err) == PD_ERR_INVALID);
    CHECK(pd_registry_publish(r, ".tmp-1", &f1, &created, NULL, err, sizeof err) == PD_ERR_INVALID);
    CHECK(pd_registry_get(r, "a/b", &a, NULL, err, sizeof err) == PD_ERR_INVALID && !a);
    CHECK(pd_registry_get(r, "nope", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND && !a);
    CHECK(pd_registry_delete(r, "nope", err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(count_prefix(dir, "") == 2); /* "a" and the change log: nothing else was created */

    /* corrupt and mismatched uploads: refused, with pd_adapter_load's status and message;
     * the old version stays live and nothing reaches the disk */
    snprintf(p, sizeof p, "%s/a", dir);
    int before = count_prefix(p, "");
    lora bad = make_lora(0, 0);
    memcpy(bad.weights + 8, "{\"x\":", 5); /* garbage in the safetensors header */
    pd_adapter_files fb = files_of(&bad);
    char want[1024];
    CHECK(pd_adapter_load(base, &fb, &a, want, sizeof want) == PD_ERR_FORMAT && !a);
    CHECK(pd_registry_publish(r, "a", &fb, &created, NULL, err, sizeof err) == PD_ERR_FORMAT);
    CHECKF(!strcmp(err, want), "%s vs %s", err, want);
    fb.weights_len = 5; /* truncated */
    CHECK(pd_registry_publish(r, "a", &fb, &created, NULL, err, sizeof err) == PD_ERR_FORMAT);
    lora_free(&bad);
    bad = make_lora(0, 1);
    fb = files_of(&bad);
    CHECK(pd_adapter_load(base, &fb, &a, want, sizeof want) == PD_ERR_MISMATCH);
    CHECK(pd_registry_publish(r, "a", &fb, &created, NULL, err, sizeof err) == PD_ERR_MISMATCH);
    CHECKF(!strcmp(err, want) && strstr(err, "lora_A"), "%s", err);
    CHECK(pd_registry_publish(r, "fresh", &fb, &created, NULL, err, sizeof err) == PD_ERR_MISMATCH);
    lora_free(&bad);
    CHECK(get_check(r, c, "a", o2) == 2);
    CHECK(count_prefix(p, "") == before && count_prefix(p, ".tmp-") == 0);
    snprintf(p, sizeof p, "%s/fresh", dir);
    CHECK(!exists(p));
    CHECK(pd_registry_info(r, "fresh", &info, err, sizeof err) == PD_ERR_NOT_FOUND);

    /* a disk failure: "io" loses its directory to a plain file; the publish fails with
     * PD_ERR_IO and the version in memory keeps serving */
    CHECK(pd_registry_publish(r, "io", &f1, &created, NULL, err, sizeof err) == PD_OK);
    snprintf(p, sizeof p, "%s/io", dir);
    rm_rf(p);
    CHECK(write_bytes(p, "x", 1) == 0);
    CHECK(pd_registry_publish(r, "io", &f2, &created, NULL, err, sizeof err) == PD_ERR_IO);
    CHECK(get_check(r, c, "io", o1) == 1);
    remove(p);
    /* the directory back: numbering continues from what this process knows */
    CHECK(pd_registry_publish(r, "io", &f2, &created, &info, err, sizeof err) == PD_OK && info.version == 2);
    pd_adapter_info_clear(&info);

    /* delete with a pinned version, then re-create */
    pd_adapter *pin2 = NULL;
    CHECK(pd_registry_get(r, "a", &pin2, &v, err, sizeof err) == PD_OK && v == 2);
    CHECK(pd_registry_delete(r, "a", err, sizeof err) == PD_OK);
    CHECK(pd_registry_get(r, "a", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_delete(r, "a", err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(run(c, pin2, out, err, sizeof err) == 0 && maxdiff(out, o2, NTOK * HID) < 1e-6);
    CHECK(pd_adapter_refcount(pin2) == 1);
    pd_adapter_release(pin2);
    snprintf(p, sizeof p, "%s/a", dir);
    CHECK(count_prefix(p, "") == 1); /* the tombstone (version 3) alone */
    snprintf(p, sizeof p, "%s/a/3/meta.json", dir);
    CHECK(exists(p));
    CHECK(pd_registry_publish(r, "a", &f1, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 1 && info.version == 4 && info.created_at > created_at); /* a new adapter */
    pd_adapter_info_clear(&info);
    CHECK(get_check(r, c, "a", o1) == 4);

    /* versions kept: the last KEEP (3) */
    for (int i = 0; i < 4; i++) CHECK(pd_registry_publish(r, "a", i % 2 ? &f1 : &f2, NULL, NULL, err, sizeof err) == PD_OK);
    snprintf(p, sizeof p, "%s/a", dir);
    CHECK(count_prefix(p, "") == 3);
    snprintf(p, sizeof p, "%s/a/8", dir);
    CHECK(exists(p));
    CHECK(get_check(r, c, "a", o1) == 8);

    /* labels given apart from the files, and an adapter with its own head */
    CHECK(pd_registry_publish(r, "h", &fh, &created, &info, err, sizeof err) == PD_OK);
    CHECK(info.num_labels == 3 && info.labels && !strcmp(info.labels[1], "mid"));
    pd_adapter_info_clear(&info);

    /* publish_adapter: an adapter built in memory, saved with pd_adapter_save_dir */
    pd_adapter *mem = NULL;
    CHECK(pd_adapter_load(base, &fh, &mem, err, sizeof err) == PD_OK);
    CHECK(pd_registry_publish_adapter(r, "trained", mem, &created, &info, err, sizeof err) == PD_OK);
    CHECK(created == 1 && info.version == 1 && info.num_labels == 3);
    pd_adapter_info_clear(&info);
    CHECK(pd_adapter_refcount(mem) == 2); /* the caller's and the registry's */
    pd_adapter_release(mem);
    CHECK(pd_registry_file_path(r, "trained", "adapter_model.safetensors", path, sizeof path, err, sizeof err) == PD_OK);

    pd_adapter_info *list = NULL;
    int nl = 0;
    CHECK(pd_registry_list(r, &list, &nl) == PD_OK && nl == 4);
    if (nl == 4) CHECK(!strcmp(list[0].name, "a") && !strcmp(list[1].name, "h") && !strcmp(list[2].name, "io") && !strcmp(list[3].name, "trained"));
    pd_registry_list_free(list, nl);
    pd_registry_stats s;
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == 4 && s.resident == 4 && s.loads == 0 && s.swaps == 6);
    pd_registry_free(r);

    /* crash leftovers: an abandoned .tmp dir (old), one being written by another replica
     * (fresh), a half-removed .trash dir, and a numbered dir without meta.json */
    char old_tmp[2048], fresh_tmp[2048], trash[2048], stray[2048];
    snprintf(old_tmp, sizeof old_tmp, "%s/a/.tmp-9-4242-00000000deadbeef", dir);
    snprintf(fresh_tmp, sizeof fresh_tmp, "%s/a/.tmp-9-4343-00000000feedf00d", dir);
    snprintf(trash, sizeof trash, "%s/h/.trash-1-4242-0000000000000001", dir);
    snprintf(stray, sizeof stray, "%s/h/50", dir);
    CHECK(mkdir(old_tmp, 0755) == 0 && mkdir(fresh_tmp, 0755) == 0 && mkdir(trash, 0755) == 0 && mkdir(stray, 0755) == 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", old_tmp);
    CHECK(write_bytes(p, "{", 1) == 0);
    snprintf(p, sizeof p, "%s/junk", trash);
    CHECK(write_bytes(p, "x", 1) == 0);
    struct timespec ts[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    CHECK(utimensat(AT_FDCWD, old_tmp, ts, 0) == 0);
    /* a delete that crashed after its tombstone (written by hand here: version 9 of "gone")
     * but before removing the version below it (a copy of a/8) */
    snprintf(p, sizeof p, "%s/gone", dir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/gone/8", dir);
    CHECK(mkdir(p, 0755) == 0);
    static const char *a8[] = {"adapter_config.json", "adapter_model.safetensors", "meta.json"};
    for (int k = 0; k < 3; k++) {
        char from[2048];
        snprintf(from, sizeof from, "%s/a/8/%s", dir, a8[k]);
        snprintf(p, sizeof p, "%s/gone/8/%s", dir, a8[k]);
        CHECK(link(from, p) == 0);
    }
    snprintf(p, sizeof p, "%s/gone/9", dir);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/gone/9/meta.json", dir);
    static const char *tomb = "{\"format\": 1, \"version\": 9, \"deleted\": true, \"updated_at\": 1}";
    CHECK(write_bytes(p, tomb, strlen(tomb)) == 0);

    /* restart, eager (no budget): every adapter at its latest version */
    CHECK(pd_registry_open(base, dir, 0, &r, err, sizeof err) == PD_OK);
    if (!r) return;
    CHECK(!exists(old_tmp) && exists(fresh_tmp) && !exists(trash) && exists(stray));
    rm_rf(fresh_tmp);
    CHECK(pd_registry_get(r, "gone", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND);
    snprintf(p, sizeof p, "%s/gone", dir);
    CHECK(count_prefix(p, "") == 1 && count_prefix(p, "9") == 1);
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == 4 && s.resident == 4 && s.loads == 4);
    CHECK(get_check(r, c, "a", o1) == 8);
    CHECK(get_check(r, c, "h", oh) == 1);
    CHECK(get_check(r, c, "io", o2) == 2);
    CHECK(get_check(r, c, "trained", oh) == 1);
    CHECK(pd_registry_info(r, "trained", &info, err, sizeof err) == PD_OK);
    CHECK(info.num_labels == 3 && info.labels && !strcmp(info.labels[2], "pos") && info.bytes > 0);
    pd_adapter_info_clear(&info);
    CHECK(pd_registry_get(r, "h", &a, NULL, err, sizeof err) == PD_OK);
    if (a) {
        CHECK(pd_adapter_num_labels(a) == 3 && pd_adapter_label(a, 1) && !strcmp(pd_adapter_label(a, 1), "mid"));
        pd_adapter_release(a);
    }
    /* the next number skips the stray directory */
    CHECK(pd_registry_publish(r, "h", &fh, &created, &info, err, sizeof err) == PD_OK && info.version == 51);
    pd_adapter_info_clear(&info);
    pd_registry_free(r);

    /* restart, lazy (with a budget): nothing loaded until asked for */
    CHECK(pd_registry_open(base, dir, 1 << 20, &r, err, sizeof err) == PD_OK);
    if (!r) return;
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == 4 && s.resident == 0 && s.loads == 0);
    CHECK(pd_registry_info(r, "h", &info, err, sizeof err) == PD_OK);
    CHECK(info.version == 51 && info.resident == 0 && info.num_labels == 3 && info.method == PD_METHOD_LORA);
    pd_adapter_info_clear(&info);
    CHECK(get_check(r, c, "h", oh) == 51);
    CHECK(get_check(r, c, "a", o1) == 8);
    pd_registry_stats_get(r, &s);
    CHECK(s.resident == 2 && s.loads == 2);
    pd_registry_free(r);
    lora_free(&l1);
    lora_free(&l2);
    lora_free(&lh);
}

typedef struct {
    pd_registry *r;
    const char *name;
    pthread_barrier_t *bar;
    pd_adapter *got;
} getter_arg;

static void *get_once(void *p) {
    getter_arg *g = p;
    char e[256];
    pthread_barrier_wait(g->bar);
    if (pd_registry_get(g->r, g->name, &g->got, NULL, e, sizeof e)) g->got = NULL;
    return NULL;
}

/* 50 adapters, a budget for about 5: all answer correctly, the resident total stays within it. */
static void test_eviction(const pd_model *base, pd_ctx *c, const char *root) {
    enum { N = 50 };
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/evict", root);
    static lora l[N];
    static float want[N][NTOK * HID];
    for (int i = 0; i < N; i++) {
        l[i] = make_lora(0, 0);
        CHECK(expect(base, c, &l[i], want[i]) == 0);
    }
    /* one adapter's resident size, to size the budget */
    pd_adapter *probe = NULL;
    pd_adapter_files f0 = files_of(&l[0]);
    CHECK(pd_adapter_load(base, &f0, &probe, err, sizeof err) == PD_OK);
    size_t one = probe ? pd_adapter_bytes(probe) : 1000;
    pd_adapter_release(probe);
    size_t budget = one * 5 + one / 2;
    pd_registry *r = NULL;
    CHECK(pd_registry_open(base, dir, budget, &r, err, sizeof err) == PD_OK);
    if (!r) return;
    pd_registry_stats s;
    int over = 0;
    double t = now_s();
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "ad%02d", i);
        pd_adapter_files f = files_of(&l[i]);
        CHECK(pd_registry_publish(r, name, &f, NULL, NULL, err, sizeof err) == PD_OK);
        pd_registry_stats_get(r, &s);
        over += s.resident_bytes > budget || s.resident > 5;
    }
    printf("eviction: publish (validate, write, fsync, rename, swap) %.2f ms each\n", (now_s() - t) * 1e3 / N);
    CHECK(over == 0);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            int k = round ? (i * 7) % N : i; /* a second pass in another order */
            char name[16];
            snprintf(name, sizeof name, "ad%02d", k);
            CHECK(get_check(r, c, name, want[k]) == 1);
            pd_registry_stats_get(r, &s);
            over += s.resident_bytes > budget || s.resident > 5;
        }
    CHECK(over == 0);
    pd_registry_stats_get(r, &s);
    printf("eviction: %d adapters of %zu bytes, budget %zu: resident %d (%zu bytes), loads %llu, evictions %llu\n", N,
           one, budget, s.resident, s.resident_bytes, (unsigned long long)s.loads, (unsigned long long)s.evictions);
    CHECK(s.registered == N && s.loads >= 2 * N - 5 && s.evictions >= 2 * N - 5);

    /* pinned versions are never evicted (that would free nothing and load a second copy) */
    pd_adapter *pins[8];
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "ad%02d", i);
        CHECK(pd_registry_get(r, name, &pins[i], NULL, err, sizeof err) == PD_OK);
    }
    CHECK(get_check(r, c, "ad40", want[40]) == 1);
    pd_adapter_info info;
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "ad%02d", i);
        CHECK(pd_registry_info(r, name, &info, err, sizeof err) == PD_OK && info.resident == 1);
        pd_adapter_info_clear(&info);
        pd_adapter_release(pins[i]);
    }
    CHECK(get_check(r, c, "ad41", want[41]) == 1); /* now they can go */
    pd_registry_stats_get(r, &s);
    CHECK(s.resident_bytes <= budget);

    /* eight concurrent gets of an evicted adapter load it once */
    CHECK(pd_registry_info(r, "ad20", &info, err, sizeof err) == PD_OK && info.resident == 0);
    pd_adapter_info_clear(&info);
    pd_registry_stats s0;
    pd_registry_stats_get(r, &s0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 8);
    pthread_t th[8];
    getter_arg ga[8];
    for (int i = 0; i < 8; i++) {
        ga[i] = (getter_arg){r, "ad20", &bar, NULL};
        pthread_create(&th[i], NULL, get_once, &ga[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    pd_registry_stats_get(r, &s);
    CHECK(s.loads == s0.loads + 1);
    for (int i = 0; i < 8; i++) {
        CHECK(ga[i].got && ga[i].got == ga[0].got);
        pd_adapter_release(ga[i].got);
    }

    /* least recently used goes first: load 10..14, use 10 again, load 15: 11 leaves */
    for (int k = 10; k < 15; k++) {
        char name[16];
        snprintf(name, sizeof name, "ad%02d", k);
        CHECK(get_check(r, c, name, want[k]) == 1);
    }
    CHECK(get_check(r, c, "ad10", want[10]) == 1);
    CHECK(get_check(r, c, "ad15", want[15]) == 1);
    static const struct { const char *name; int resident; } lru[] = {
        {"ad10", 1}, {"ad11", 0}, {"ad12", 1}, {"ad13", 1}, {"ad14", 1}, {"ad15", 1}, {"ad20", 0}};
    for (size_t i = 0; i < sizeof lru / sizeof lru[0]; i++) {
        CHECK(pd_registry_info(r, lru[i].name, &info, err, sizeof err) == PD_OK);
        CHECKF(info.resident == lru[i].resident, "%s resident %d", lru[i].name, info.resident);
        pd_adapter_info_clear(&info);
    }

    /* get_cached pins what is resident and never reads the disk (HTTP threads use it) */
    pd_registry_stats_get(r, &s0);
    pd_adapter *cached = NULL;
    int cv = 0;
    static float out_buf[NTOK * HID];
    CHECK(pd_registry_get_cached(r, "ad10", &cached, &cv, err, sizeof err) == PD_OK && cached && cv == 1);
    CHECK(run(c, cached, out_buf, err, sizeof err) == 0 && maxdiff(out_buf, want[10], NTOK * HID) < 1e-6);
    pd_adapter_release(cached);
    cached = (pd_adapter *)1;
    CHECK(pd_registry_get_cached(r, "ad11", &cached, &cv, err, sizeof err) == PD_OK && !cached);
    CHECK(pd_registry_get_cached(r, "nope", &cached, NULL, err, sizeof err) == PD_ERR_NOT_FOUND && !cached);
    CHECK(pd_registry_get_cached(r, "a/b", &cached, NULL, err, sizeof err) == PD_ERR_INVALID && !cached);
    pd_registry_stats_get(r, &s);
    CHECK(s.loads == s0.loads);
    CHECK(pd_registry_info(r, "ad11", &info, err, sizeof err) == PD_OK && info.resident == 0);
    pd_adapter_info_clear(&info);
    pd_registry_free(r);
    for (int i = 0; i < N; i++) lora_free(&l[i]);
}

/* 10,000 registered adapters: open (lazy and eager), gets, sync and list times. */
static void test_many(const pd_model *base, pd_ctx *c, const char *root) {
    enum { N = 10000 };
    char dir[1024], p[4096];
    snprintf(dir, sizeof dir, "%s/many", root);
    lora l = make_lora(0, 0);
    float want[NTOK * HID];
    CHECK(expect(base, c, &l, want) == 0);
    pd_registry *r = NULL;
    CHECK(pd_registry_open(base, dir, 0, &r, err, sizeof err) == PD_OK);
    if (!r) return;
    pd_adapter_files f = files_of(&l);
    pd_adapter_info info;
    CHECK(pd_registry_publish(r, "n00000", &f, NULL, &info, err, sizeof err) == PD_OK && info.version == 1);
    pd_adapter_info_clear(&info);
    pd_registry_free(r);
    /* The other 9,999 are that version directory again, with hard links to its files (as a
     * restore with rsync --link-dest makes them): the registry reads them like any other, and
     * the test spends no time writing and freeing 30,000 blocks. */
    static const char *fn[] = {"adapter_config.json", "adapter_model.safetensors", "meta.json"};
    char src[3][1100];
    for (int k = 0; k < 3; k++) snprintf(src[k], sizeof src[k], "%s/n00000/1/%s", dir, fn[k]);
    double t = now_s();
    int bad = 0;
    for (int i = 1; i < N; i++) {
        snprintf(p, sizeof p, "%s/n%05d", dir, i);
        bad |= mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/n%05d/1", dir, i);
        bad |= mkdir(p, 0755);
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "%s/n%05d/1/%s", dir, i, fn[k]);
            bad |= link(src[k], p);
        }
    }
    CHECK(bad == 0);
    printf("many: wrote %d adapter dirs in %.2f s\n", N - 1, now_s() - t);

    size_t one = 0;
    {
        pd_adapter *a = NULL;
        CHECK(pd_adapter_load(base, &f, &a, err, sizeof err) == PD_OK);
        one = a ? pd_adapter_bytes(a) : 0;
        pd_adapter_release(a);
    }
    size_t budget = one * 100;
    t = now_s();
    CHECK(pd_registry_open(base, dir, budget, &r, err, sizeof err) == PD_OK);
    double t_open = now_s() - t;
    if (!r) return;
    pd_registry_stats s;
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == N && s.resident == 0);
    t = now_s();
    enum { COLD = 2000 };
    for (int i = 0; i < COLD; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%05d", (i * 4999) % N);
        pd_adapter *a = NULL;
        if (pd_registry_get(r, name, &a, NULL, err, sizeof err) != PD_OK) bad++;
        pd_adapter_release(a);
    }
    double t_cold = (now_s() - t) / COLD;
    CHECK(bad == 0);
    pd_registry_stats_get(r, &s);
    CHECK(s.resident_bytes <= budget && s.resident <= 100);
    enum { HOT = 200000 };
    t = now_s();
    for (int i = 0; i < HOT; i++) {
        static const char *hot[4] = {"n00000", "n04999", "n09998", "n02497"};
        pd_adapter *a = NULL;
        if (pd_registry_get(r, hot[i & 3], &a, NULL, err, sizeof err) != PD_OK) bad++;
        pd_adapter_release(a);
    }
    double t_hot = (now_s() - t) / HOT;
    CHECK(bad == 0);
    CHECK(get_check(r, c, "n07777", want) == 1);
    t = now_s();
    int changes = 0;
    for (int i = 0; i < 100; i++) changes += pd_registry_sync(r);
    double t_sync = (now_s() - t) / 100;
    CHECK(changes == 0);
    t = now_s();
    pd_adapter_info *list = NULL;
    int nl = 0;
    CHECK(pd_registry_list(r, &list, &nl) == PD_OK && nl == N);
    double t_list = now_s() - t;
    int sorted = 1;
    for (int i = 1; i < nl; i++) sorted &= strcmp(list[i - 1].name, list[i].name) < 0;
    CHECK(sorted);
    pd_registry_list_free(list, nl);
    pd_registry_free(r);

    t = now_s();
    CHECK(pd_registry_open(base, dir, 0, &r, err, sizeof err) == PD_OK);
    double t_eager = now_s() - t;
    if (!r) return;
    pd_registry_stats_get(r, &s);
    CHECK(s.registered == N && s.resident == N);
    CHECK(get_check(r, c, "n09999", want) == 1);
    pd_registry_free(r);
    printf("many: %d adapters: open lazy %.3f s, open eager %.3f s; get cold (load from disk) %.1f us, "
           "get hot %.3f us; sync with nothing changed %.1f us; list %.1f ms\n",
           N, t_open, t_eager, t_cold * 1e6, t_hot * 1e6, t_sync * 1e6, t_list * 1e3);
    CHECKF(t_hot < 20e-6, "a hot get takes %.1f us: not O(1)?", t_hot * 1e6);
    CHECKF(t_sync < 2e-3, "an idle sync takes %.1f us", t_sync * 1e6);
    lora_free(&l);
}

typedef struct {
    pd_registry *r;
    const pd_adapter_files *f;
    const char *name;
    int n;
    int versions[32];
    int fails;
} pub_arg;

static void *publish_n(void *p) {
    pub_arg *a = p;
    char e[512];
    for (int i = 0; i < a->n; i++) {
        pd_adapter_info info;
        if (pd_registry_publish(a->r, a->name, a->f, NULL, &info, e, sizeof e)) {
            a->fails++;
            fprintf(stderr, "publish %s: %s\n", a->name, e);
            continue;
        }
        a->versions[i] = info.version;
        pd_adapter_info_clear(&info);
    }
    return NULL;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Two registries ("replicas") on one data dir. */
static void test_replicas(const pd_model *base, pd_ctx *c, const char *root) {
    char dir[1024], p[4096];
    snprintf(dir, sizeof dir, "%s/shared", root);
    pd_registry *A = NULL, *B = NULL;
    CHECK(pd_registry_open(base, dir, 0, &A, err, sizeof err) == PD_OK);
    CHECK(pd_registry_open(base, dir, 1 << 20, &B, err, sizeof err) == PD_OK);
    if (!A || !B) return;
    lora l1 = make_lora(0, 0), l2 = make_lora(0, 0);
    float o1[NTOK * HID], o2[NTOK * HID], out[NTOK * HID];
    CHECK(expect(base, c, &l1, o1) == 0 && expect(base, c, &l2, o2) == 0);
    pd_adapter_files f1 = files_of(&l1), f2 = files_of(&l2);
    pd_adapter *a = NULL;

    CHECK(pd_registry_sync(B) == 0);
    CHECK(pd_registry_publish(A, "r1", &f1, NULL, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_get(B, "r1", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(pd_registry_sync(B) == 1);
    CHECK(pd_registry_sync(B) == 0);
    CHECK(get_check(B, c, "r1", o1) == 1);
    pd_adapter *pin = NULL;
    CHECK(pd_registry_get(B, "r1", &pin, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_publish(A, "r1", &f2, NULL, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_sync(B) == 1);
    CHECK(get_check(B, c, "r1", o2) == 2);
    /* and the other way round */
    CHECK(pd_registry_publish(B, "r2", &f2, NULL, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_sync(A) == 1);
    CHECK(get_check(A, c, "r2", o2) == 1);
    CHECK(pd_registry_delete(A, "r1", err, sizeof err) == PD_OK);
    CHECK(pd_registry_sync(B) == 1);
    CHECK(pd_registry_get(B, "r1", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND);
    CHECK(run(c, pin, out, err, sizeof err) == 0 && maxdiff(out, o1, NTOK * HID) < 1e-6);
    pd_adapter_release(pin);
    /* re-created on B after A's delete: numbers continue past the tombstone */
    pd_adapter_info info;
    CHECK(pd_registry_publish(B, "r1", &f1, NULL, &info, err, sizeof err) == PD_OK && info.version == 4);
    pd_adapter_info_clear(&info);
    CHECK(pd_registry_sync(A) == 1);
    CHECK(get_check(A, c, "r1", o1) == 4);

    /* concurrent publishes of one name from both replicas: distinct versions, one winner */
    pub_arg pa = {A, &f1, "race", 12, {0}, 0}, pb = {B, &f2, "race", 12, {0}, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, publish_n, &pa);
    pthread_create(&tb, NULL, publish_n, &pb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(pa.fails == 0 && pb.fails == 0);
    int all[24];
    memcpy(all, pa.versions, sizeof(int) * 12);
    memcpy(all + 12, pb.versions, sizeof(int) * 12);
    qsort(all, 24, sizeof(int), cmp_int);
    int distinct = 1;
    for (int i = 1; i < 24; i++) distinct &= all[i] > all[i - 1];
    CHECKF(distinct && all[0] >= 1, "versions %d..%d", all[0], all[23]);
    pd_registry_sync(A);
    pd_registry_sync(B);
    int va = 0, vb = 0;
    pd_adapter *xa = NULL, *xb = NULL;
    CHECK(pd_registry_get(A, "race", &xa, &va, err, sizeof err) == PD_OK);
    CHECK(pd_registry_get(B, "race", &xb, &vb, err, sizeof err) == PD_OK);
    CHECKF(va == vb && va == all[23], "A has %d, B has %d, highest written %d", va, vb, all[23]);
    /* the winner's content is the content of the highest version */
    int a_won = 0;
    for (int i = 0; i < 12; i++) a_won |= pa.versions[i] == all[23];
    float ob[NTOK * HID];
    if (xa && xb) {
        CHECK(run(c, xa, out, err, sizeof err) == 0 && run(c, xb, ob, err, sizeof err) == 0);
        CHECK(maxdiff(out, a_won ? o1 : o2, NTOK * HID) < 1e-6 && maxdiff(ob, out, NTOK * HID) < 1e-6);
    }
    pd_adapter_release(xa);
    pd_adapter_release(xb);
    snprintf(p, sizeof p, "%s/race", dir);
    CHECK(count_prefix(p, ".tmp-") == 0 && count_prefix(p, "") <= 3 + 2);

    /* four threads of one registry publishing one name: the current version is the highest
     * written, whatever order the threads finished in */
    pub_arg pt[4];
    pthread_t tt[4];
    for (int i = 0; i < 4; i++) {
        pt[i] = (pub_arg){A, i % 2 ? &f2 : &f1, "same", 8, {0}, 0};
        pthread_create(&tt[i], NULL, publish_n, &pt[i]);
    }
    int vmax = 0, fails = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(tt[i], NULL);
        fails += pt[i].fails;
        for (int k = 0; k < 8; k++) vmax = pt[i].versions[k] > vmax ? pt[i].versions[k] : vmax;
    }
    CHECKF(fails == 0 && vmax == 32, "fails %d, highest version %d of 32 publishes", fails, vmax);
    CHECK(pd_registry_get(A, "same", &xa, &va, err, sizeof err) == PD_OK);
    CHECKF(va == vmax, "current %d, highest published %d", va, vmax);
    pd_adapter_release(xa);
    CHECK(pd_registry_sync(B) == 1);
    CHECK(pd_registry_get(B, "same", &xb, &vb, err, sizeof err) == PD_OK && vb == vmax);
    pd_adapter_release(xb);

    /* a name directory removed by hand: noticed by the full scan (forced here by a cut log) */
    snprintf(p, sizeof p, "%s/r2", dir);
    rm_rf(p);
    snprintf(p, sizeof p, "%s/.changes", dir);
    CHECK(truncate(p, 0) == 0);
    CHECK(pd_registry_sync(B) == 1);
    CHECK(pd_registry_get(B, "r2", &a, NULL, err, sizeof err) == PD_ERR_NOT_FOUND);
    pd_registry_stats s;
    pd_registry_stats_get(B, &s);
    CHECK(s.registered == 3); /* r1, race, same */
    pd_registry_free(A);
    pd_registry_free(B);
    lora_free(&l1);
    lora_free(&l2);
}

/* ==== Stress: getters against a publisher, a deleter and a syncer ==== */

#define NCOLD 6
typedef struct {
    pd_registry *r;
    const pd_model *base;
    const float *want_a, *want_b, *want_c; /* hot: odd versions A, even B; hot2: C */
    const float (*want_cold)[NTOK * HID];
    atomic_int stop;
    atomic_int errors, gets, forwards;
} stress;

static void *stress_getter(void *p) {
    stress *S = p;
    pd_ctx *c = pd_ctx_new(S->base, NULL);
    char e[512];
    int last[2 + NCOLD] = {0};
    float out[NTOK * HID];
    for (unsigned i = 0; !atomic_load(&S->stop); i++) {
        int k = i % (2 + NCOLD);
        char name[16];
        if (k == 0) snprintf(name, sizeof name, "hot");
        else if (k == 1) snprintf(name, sizeof name, "hot2");
        else snprintf(name, sizeof name, "cold%d", k - 2);
        pd_adapter *a = NULL;
        int v = 0;
        pd_status st = pd_registry_get(S->r, name, &a, &v, e, sizeof e);
        if (st == PD_ERR_NOT_FOUND && k == 1) continue; /* hot2 between delete and re-create */
        if (st) {
            fprintf(stderr, "stress get %s: %s\n", name, e);
            atomic_fetch_add(&S->errors, 1);
            continue;
        }
        atomic_fetch_add(&S->gets, 1);
        if (v < last[k]) atomic_fetch_add(&S->errors, 1); /* versions never go back */
        last[k] = v;
        if (i % 5 == 0 && c) {
            const float *want = k == 0 ? (v % 2 ? S->want_a : S->want_b) : k == 1 ? S->want_c : S->want_cold[k - 2];
            if (run(c, a, out, e, sizeof e) || maxdiff(out, want, NTOK * HID) > 1e-5) {
                fprintf(stderr, "stress: %s version %d answers wrong\n", name, v);
                atomic_fetch_add(&S->errors, 1);
            }
            atomic_fetch_add(&S->forwards, 1);
        }
        pd_adapter_release(a);
    }
    pd_ctx_free(c);
    return NULL;
}

typedef struct {
    stress *S;
    const pd_adapter_files *fa, *fb, *fc;
} stress_w;

static void *stress_publisher(void *p) {
    stress_w *w = p;
    char e[512];
    for (int i = 1; i <= 100; i++) {
        pd_adapter_info info;
        /* version i+1: even B, odd A */
        if (pd_registry_publish(w->S->r, "hot", i % 2 ? w->fb : w->fa, NULL, &info, e, sizeof e) ||
            info.version != i + 1) {
            fprintf(stderr, "stress publish %d: %s (version %d)\n", i, e, info.version);
            atomic_fetch_add(&w->S->errors, 1);
        }
        pd_adapter_info_clear(&info);
    }
    return NULL;
}

static void *stress_deleter(void *p) {
    stress_w *w = p;
    char e[512];
    for (int i = 0; i < 40; i++) {
        if (pd_registry_delete(w->S->r, "hot2", e, sizeof e) ||
            pd_registry_publish(w->S->r, "hot2", w->fc, NULL, NULL, e, sizeof e)) {
            fprintf(stderr, "stress delete/re-create: %s\n", e);
            atomic_fetch_add(&w->S->errors, 1);
        }
    }
    return NULL;
}

static void *stress_syncer(void *p) {
    stress *S = p;
    while (!atomic_load(&S->stop)) {
        pd_registry_sync(S->r);
        pd_registry_stats s;
        pd_registry_stats_get(S->r, &s);
        pd_adapter_info *l = NULL;
        int n = 0;
        if (pd_registry_list(S->r, &l, &n) == PD_OK) pd_registry_list_free(l, n);
        pd_adapter_info info;
        if (pd_registry_info(S->r, "hot", &info, NULL, 0) == PD_OK) pd_adapter_info_clear(&info);
        char path[4096];
        pd_registry_file_path(S->r, "hot", "adapter_model.safetensors", path, sizeof path, NULL, 0);
        usleep(500);
    }
    return NULL;
}

static void test_stress(const pd_model *base, pd_ctx *c, const char *root) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/stress", root);
    lora la = make_lora(0, 0), lb = make_lora(0, 0), lc = make_lora(0, 0), lcold[NCOLD];
    static float wa[NTOK * HID], wb[NTOK * HID], wc[NTOK * HID], wcold[NCOLD][NTOK * HID];
    CHECK(expect(base, c, &la, wa) == 0 && expect(base, c, &lb, wb) == 0 && expect(base, c, &lc, wc) == 0);
    pd_adapter_files fa = files_of(&la), fb = files_of(&lb), fc = files_of(&lc);
    pd_adapter *probe = NULL;
    CHECK(pd_adapter_load(base, &fa, &probe, err, sizeof err) == PD_OK);
    size_t one = probe ? pd_adapter_bytes(probe) : 1000;
    pd_adapter_release(probe);
    stress S;
    memset(&S, 0, sizeof S);
    CHECK(pd_registry_open(base, dir, one * 4, &S.r, err, sizeof err) == PD_OK); /* a budget: loads and evictions race too */
    if (!S.r) return;
    S.base = base;
    S.want_a = wa;
    S.want_b = wb;
    S.want_c = wc;
    S.want_cold = (const float(*)[NTOK * HID])wcold;
    CHECK(pd_registry_publish(S.r, "hot", &fa, NULL, NULL, err, sizeof err) == PD_OK);
    CHECK(pd_registry_publish(S.r, "hot2", &fc, NULL, NULL, err, sizeof err) == PD_OK);
    for (int i = 0; i < NCOLD; i++) {
        lcold[i] = make_lora(0, 0);
        CHECK(expect(base, c, &lcold[i], wcold[i]) == 0);
        char name[16];
        snprintf(name, sizeof name, "cold%d", i);
        pd_adapter_files f = files_of(&lcold[i]);
        CHECK(pd_registry_publish(S.r, name, &f, NULL, NULL, err, sizeof err) == PD_OK);
    }
    stress_w w = {&S, &fa, &fb, &fc};
    pthread_t g[4], pub, del, syn;
    double t = now_s();
    for (int i = 0; i < 4; i++) pthread_create(&g[i], NULL, stress_getter, &S);
    pthread_create(&syn, NULL, stress_syncer, &S);
    pthread_create(&pub, NULL, stress_publisher, &w);
    pthread_create(&del, NULL, stress_deleter, &w);
    pthread_join(pub, NULL);
    pthread_join(del, NULL);
    atomic_store(&S.stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(g[i], NULL);
    pthread_join(syn, NULL);
    pd_registry_stats s;
    pd_registry_stats_get(S.r, &s);
    printf("stress: %.2f s, %d gets (%d checked by a forward pass), 100 publishes, 40 delete+re-create; "
           "loads %llu, evictions %llu, swaps %llu\n",
           now_s() - t, atomic_load(&S.gets), atomic_load(&S.forwards), (unsigned long long)s.loads,
           (unsigned long long)s.evictions, (unsigned long long)s.swaps);
    CHECK(atomic_load(&S.errors) == 0);
    CHECK(atomic_load(&S.forwards) > 0);
    CHECK(s.registered == 2 + NCOLD);
    CHECK(get_check(S.r, c, "hot", wa) == 101); /* the 100th publish: A */
    CHECK(get_check(S.r, c, "hot2", wc) == 81);
    CHECK(get_check(S.r, c, "cold0", wcold[0]) == 1);
    pd_registry_stats_get(S.r, &s);
    CHECK(s.resident_bytes <= one * 4);
    pd_registry_free(S.r);
    lora_free(&la);
    lora_free(&lb);
    lora_free(&lc);
    for (int i = 0; i < NCOLD; i++) lora_free(&lcold[i]);
}

int main(void) {
    pd_blas_init();
    char root[] = "/tmp/pd_test_registry_XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/base", root);
    pd_model *base = NULL;
    CHECK(mkdir(mdir, 0755) == 0 && make_base(mdir) == 0);
    CHECKF(pd_model_load(mdir, 0, &base, err, sizeof err) == PD_OK, "%s", err);
    pd_ctx *c = base ? pd_ctx_new(base, NULL) : NULL;
    if (base && c) {
        double t = now_s();
        test_names();
        test_memory(base, c);
        test_disk(base, c, root);
        printf("disk: %.2f s\n", now_s() - t);
        t = now_s();
        test_eviction(base, c, root);
        printf("eviction: %.2f s\n", now_s() - t);
        t = now_s();
        test_replicas(base, c, root);
        printf("replicas: %.2f s\n", now_s() - t);
        test_stress(base, c, root);
        /* 40,000 inodes: on a tmpfs when there is one, so the numbers measure the registry
         * rather than the disk's journal (creating and removing them on a busy ext4 took
         * longer than everything else here together) */
        char shm[] = "/dev/shm/pd_test_registry_XXXXXX";
        int on_shm = mkdtemp(shm) != NULL;
        t = now_s();
        test_many(base, c, on_shm ? shm : root);
        if (on_shm) rm_rf(shm);
        printf("many (%s): %.2f s\n", on_shm ? "tmpfs" : root, now_s() - t);
    }
    pd_ctx_free(c);
    pd_model_free(base);
    double t_rm = now_s();
    rm_rf(root);
    printf("cleanup: %.2f s\n", now_s() - t_rm);
    return TEST_SUMMARY("test_registry");
}
