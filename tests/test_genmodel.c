/* test_genmodel.c - the generated default model: identical bytes on every write, atomic
 * placement, real Hugging Face layout (config, tokenizer, weights with both heads), and a
 * forward pass whose logits match the independent PyTorch reference.
 *
 * The golden numbers below come from tests/reference/genmodel_golden.py, which re-implements
 * the generator's PRNG in Python (and checks it against the file) and runs refmodel.py in
 * float64 on the checkpoint. If the default model changes on purpose, regenerate them with
 *   build/peftd gen-model --out /tmp/m && python3 tests/reference/genmodel_golden.py /tmp/m */
#include "genmodel.h"
#include "model.h"
#include "pipeline.h"
#include "safetensors.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== Golden values (tests/reference/genmodel_golden.py) ==== */

static const float GOLD_WORD_EMB_ROW5[4] = {0.0156554934f, 0.0286912248f, -0.0205712542f, 0.00917537138f};
static const int32_t GOLD_CLS_IDS[7] = {2, 135, 298, 143, 336, 5, 3};
static const double GOLD_CLS_LOGITS[2] = {-0.0128815911, 0.0133555974};
static const int32_t GOLD_QA_IDS[15] = {2, 217, 575, 135, 300, 35, 3, 135, 300, 143, 575, 159, 69, 292, 3};
static const int32_t GOLD_QA_TYPES[15] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
static const double GOLD_QA_START[15] = {-0.0695083005, -0.241902661, 0.0495926696, -0.0371691727, -0.0989748998,
                                         -0.230752768,  -0.29772817,  0.0228289769, 0.0594671214,  -0.0944348808,
                                         -0.0197674936, 0.155543394,  -0.102534535, 0.227901726,   -0.0193858733};
static const double GOLD_QA_END[15] = {0.1994362,   -0.164737946, -0.0130597137, -0.105939364, 0.142865183,
                                       0.0653450183, -0.022654116, 0.125473433,   0.288585828,  0.221895654,
                                       0.250223697,  0.180056375,  -0.0248847095, 0.313906894,  0.0752686343};

static const char *const FILES[] = {"config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                    "special_tokens_map.json", "model.safetensors"};
#define N_FILES (int)(sizeof FILES / sizeof FILES[0])

/* FNV-1a 64 of each file above, in the same order: the exact bytes of the default model, so
 * that a change to it (which would break adapters made for it) never goes unnoticed.
 * Printed by genmodel_golden.py. */
static const uint64_t GOLD_FNV[N_FILES] = {
    0x21942bc62674a545ull, 0xb89f571ee175be91ull, 0xbdc817d9df7e28ebull,
    0xf6d3fd6e33329af6ull, 0x0f8370c474d488b5ull, 0x6a5f7d15b13e355bull,
};

/* ==== Helpers ==== */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *slurp(const char *dir, const char *name, size_t *len) {
    char p[4096], err[256];
    char *b = NULL;
    pd_path_join(p, sizeof p, dir, name);
    if (pd_read_file(p, 64u << 20, &b, len, err, sizeof err) != PD_OK) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return b;
}

/* 1 if every file of the checkpoint is byte-identical in both dirs. */
static int same_files(const char *a, const char *b) {
    int same = 1;
    for (int i = 0; i < N_FILES; i++) {
        size_t la = 0, lb = 0;
        char *x = slurp(a, FILES[i], &la), *y = slurp(b, FILES[i], &lb);
        if (!x || !y || la != lb || memcmp(x, y, la)) {
            fprintf(stderr, "%s differs between %s and %s\n", FILES[i], a, b);
            same = 0;
        }
        free(x);
        free(y);
    }
    return same;
}

static uint64_t fnv1a(const char *b, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)b[i]) * 0x100000001b3ull;
    return h;
}

/* 1 if dir holds an entry whose name contains ".tmp-" (a leftover of the atomic write). */
static int has_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) found |= strstr(e->d_name, ".tmp-") != NULL;
    if (d) closedir(d);
    return found;
}

/* ==== Tests ==== */

static void test_bytes_and_placement(const char *base, char *dir_a) {
    char err[512], b[4096], c[4096];
    snprintf(b, sizeof b, "%s/nested/deeper/b/", base); /* parents missing, trailing slash */
    snprintf(c, sizeof c, "%s/c", base);
    CHECKF(pd_genmodel_write(dir_a, err, sizeof err) == PD_OK, "%s", err);
    CHECKF(pd_genmodel_write(b, err, sizeof err) == PD_OK, "%s", err);
    CHECK(same_files(dir_a, b));
    for (int i = 0; i < N_FILES; i++) {
        size_t len = 0;
        char *x = slurp(dir_a, FILES[i], &len);
        uint64_t h = x ? fnv1a(x, len) : 0;
        CHECKF(h == GOLD_FNV[i], "%s: FNV-1a %016llx, expected %016llx (the default model changed)", FILES[i],
               (unsigned long long)h, (unsigned long long)GOLD_FNV[i]);
        free(x);
    }

    /* An existing empty directory (a mounted volume) is filled in place. */
    CHECK(mkdir(c, 0755) == 0);
    CHECKF(pd_genmodel_write(c, err, sizeof err) == PD_OK, "%s", err);
    CHECK(same_files(dir_a, c));

    /* An existing, damaged checkpoint is replaced file by file. */
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", c);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) { fputs("{broken", f); fclose(f); }
    snprintf(p, sizeof p, "%s/model.safetensors", c);
    CHECK(truncate(p, 100) == 0);
    CHECKF(pd_genmodel_write(c, err, sizeof err) == PD_OK, "%s", err);
    CHECK(same_files(dir_a, c));
    CHECK(!has_tmp(base));

    /* Failures: a parent that is a file, an empty path. Nothing is left behind. */
    snprintf(p, sizeof p, "%s/c/config.json/sub", base);
    pd_status st = pd_genmodel_write(p, err, sizeof err);
    CHECKF(st == PD_ERR_IO, "status %d", st);
    CHECKF(strstr(err, "config.json") != NULL, "%s", err);
    CHECK(pd_genmodel_write("", err, sizeof err) == PD_ERR_INVALID);
    CHECK(!has_tmp(base));
    CHECK(!has_tmp(c));
}

static void test_files(const char *dir) {
    char err[512], p[4096];
    size_t len = 0;
    int V = pd_genmodel_vocab_size();
    CHECKF(V > 5 + 94 + 36 + 300 && V < 1000, "vocab %d", V);

    /* config.json */
    char *text = slurp(dir, "config.json", &len);
    cJSON *o = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(o != NULL);
    if (o) {
        cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "architectures");
        CHECK(cJSON_IsArray(arch) && !strcmp(cJSON_GetArrayItem(arch, 0)->valuestring, "BertForSequenceClassification"));
        CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(o, "model_type")->valuestring, "bert"));
        CHECK(cJSON_GetObjectItemCaseSensitive(o, "vocab_size")->valueint == V);
        CHECK(cJSON_GetObjectItemCaseSensitive(o, "layer_norm_eps")->valuedouble == 1e-12);
        cJSON *id2 = cJSON_GetObjectItemCaseSensitive(o, "id2label");
        CHECK(cJSON_GetArraySize(id2) == 2 && !strcmp(cJSON_GetObjectItemCaseSensitive(id2, "1")->valuestring, "positive"));
    }
    cJSON_Delete(o);
    free(text);

    /* tokenizer.json: the fields the `tokenizers` library needs, vocab ids 0..V-1 in order,
     * and vocab.txt listing the same tokens line by line. */
    text = slurp(dir, "tokenizer.json", &len);
    o = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(o != NULL);
    char *vt = slurp(dir, "vocab.txt", &len);
    CHECK(vt != NULL);
    if (o && vt) {
        CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "normalizer"), "type")->valuestring,
                      "BertNormalizer"));
        CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "pre_tokenizer"), "type")->valuestring,
                      "BertPreTokenizer"));
        cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
        CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(model, "type")->valuestring, "WordPiece"));
        cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        CHECK(cJSON_GetArraySize(vocab) == V);
        int i = 0, in_order = 1;
        char *line = vt;
        const cJSON *it;
        cJSON_ArrayForEach(it, vocab) {
            char *nl = strchr(line, '\n');
            if (!nl || it->valueint != i || (size_t)(nl - line) != strlen(it->string) || strncmp(line, it->string, (size_t)(nl - line)))
                in_order = 0;
            line = nl ? nl + 1 : line;
            i++;
        }
        CHECK(in_order);
        CHECK(*line == 0);
        CHECK(cJSON_GetObjectItemCaseSensitive(vocab, "movie") && cJSON_GetObjectItemCaseSensitive(vocab, "##q") &&
              cJSON_GetObjectItemCaseSensitive(vocab, "~") && cJSON_GetObjectItemCaseSensitive(vocab, "[MASK]"));
    }
    cJSON_Delete(o);
    free(text);
    free(vt);

    /* model.safetensors: every tensor, initialisation statistics, and the PRNG stream pinned
     * against the Python re-implementation. */
    pd_path_join(p, sizeof p, dir, "model.safetensors");
    pd_st_file *f = NULL;
    CHECKF(pd_st_open(p, &f, err, sizeof err) == PD_OK, "%s", err);
    if (!f) return;
    CHECKF(pd_st_count(f) == 5 + 16 * PD_GENMODEL_LAYERS + 6, "%d tensors", pd_st_count(f));
    const char *fmt = pd_st_metadata(f, "format");
    CHECK(fmt && !strcmp(fmt, "pt"));
    const pd_st_tensor *we = pd_st_find(f, "bert.embeddings.word_embeddings.weight");
    CHECK(we && we->ndim == 2 && we->shape[0] == V && we->shape[1] == PD_GENMODEL_HIDDEN);
    float *w = NULL;
    if (we && pd_st_to_f32(we, &w, err, sizeof err) == PD_OK) {
        int zero_pad = 1;
        for (int e = 0; e < PD_GENMODEL_HIDDEN; e++) zero_pad &= w[e] == 0.0f;
        CHECK(zero_pad);
        for (int e = 0; e < 4; e++) CHECK(w[5 * PD_GENMODEL_HIDDEN + e] == GOLD_WORD_EMB_ROW5[e]);
        double s = 0, s2 = 0;
        size_t n = (size_t)(V - 1) * PD_GENMODEL_HIDDEN;
        for (size_t k = PD_GENMODEL_HIDDEN; k < (size_t)V * PD_GENMODEL_HIDDEN; k++) { s += w[k]; s2 += (double)w[k] * w[k]; }
        double mean = s / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
        CHECK_NEAR(mean, 0.0, 0.001);
        CHECK_NEAR(sd, 0.02, 0.0005);
    }
    free(w);
    static const char *const heads[] = {"bert.pooler.dense.weight", "classifier.weight", "classifier.bias", "qa_outputs.weight",
                                        "qa_outputs.bias", "bert.encoder.layer.1.output.LayerNorm.weight"};
    for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) CHECKF(pd_st_find(f, heads[k]) != NULL, "%s", heads[k]);
    const pd_st_tensor *ln = pd_st_find(f, "bert.embeddings.LayerNorm.weight");
    float *lw = NULL;
    if (ln && pd_st_to_f32(ln, &lw, err, sizeof err) == PD_OK) {
        int ones = 1;
        for (int e = 0; e < PD_GENMODEL_HIDDEN; e++) ones &= lw[e] == 1.0f;
        CHECK(ones);
    }
    free(lw);
    pd_st_close(f);
}

static void test_load_and_forward(const char *dir) {
    char err[512];
    pd_model *m = NULL;
    pd_status st = pd_model_load(dir, 0, &m, err, sizeof err);
    CHECKF(st == PD_OK, "%s", err);
    if (!m) return;
    const pd_config *c = pd_model_config(m);
    CHECK(c->arch == PD_ARCH_BERT && c->hidden == 64 && c->layers == 2 && c->heads == 4 && c->ffn == 128);
    CHECK(c->max_pos == 128 && c->type_vocab == 2 && c->vocab == pd_genmodel_vocab_size() && c->act == PD_ACT_GELU);
    CHECK(c->num_labels == 2 && !strcmp(c->labels[0], "negative") && !strcmp(c->labels[1], "positive"));
    const pd_head *cls = pd_model_head(m, PD_TASK_CLS), *qa = pd_model_head(m, PD_TASK_QA);
    CHECK(cls != NULL && cls->num_labels == 2);
    CHECK(qa != NULL);

    /* The tokenizer produces the ids the golden script spelled out by hand. */
    const pd_tokenizer *tok = pd_model_tokenizer(m);
    pd_tokens t = {0};
    const char *text = "The movie was GREAT!";
    st = pd_tokenizer_tokenize(tok, text, strlen(text), &t, err, sizeof err);
    CHECKF(st == PD_OK, "%s", err);
    int32_t ids[32], types[32], src[32], idx[32];
    int n = st == PD_OK ? pd_tokenizer_assemble(tok, t.ids, t.n, NULL, -1, ids, types, src, idx) : 0;
    CHECKF(n == 7, "%d tokens", n);
    for (int i = 0; i < n && n == 7; i++) CHECKF(ids[i] == GOLD_CLS_IDS[i], "token %d: %d", i, ids[i]);
    /* A word outside the vocabulary falls back to a character and "##" pieces. */
    st = pd_tokenizer_tokenize(tok, "zyx", 3, &t, err, sizeof err);
    CHECK(st == PD_OK && t.n == 3 && t.ids[0] == pd_tokenizer_token_to_id(tok, "z") &&
          t.ids[1] == pd_tokenizer_token_to_id(tok, "##y") && t.ids[2] == pd_tokenizer_token_to_id(tok, "##x"));
    pd_tokens_free(&t);

    /* Both heads against PyTorch (float64 reference, float32 here). */
    pd_ctx *ctx = pd_ctx_new(m, NULL);
    CHECK(ctx != NULL);
    if (ctx) {
        pd_seq seqs[2] = {{GOLD_CLS_IDS, NULL, 7, NULL, 0}, {GOLD_QA_IDS, GOLD_QA_TYPES, 15, NULL, 0}};
        st = pd_forward(ctx, seqs, 2, err, sizeof err);
        CHECKF(st == PD_OK, "%s", err);
        float out[64];
        if (st == PD_OK) {
            CHECK(pd_ctx_head(ctx, 0, cls, out, 64) == 2);
            for (int i = 0; i < 2; i++) CHECK_NEAR(out[i], GOLD_CLS_LOGITS[i], 1e-5);
            CHECK(pd_ctx_head(ctx, 1, qa, out, 64) == 30);
            for (int i = 0; i < 15; i++) {
                CHECK_NEAR(out[i], GOLD_QA_START[i], 1e-5);
                CHECK_NEAR(out[15 + i], GOLD_QA_END[i], 1e-5);
            }
        }
        pd_ctx_free(ctx);
    }

    /* Empty texts (fuzz predict_body's crash-11a550c8, {"inputs": ""}) encode to [CLS] [SEP]
     * (+ [SEP] for an empty pair). The crash itself, NULL + 0 on the empty token list, is
     * reported by clang's UBSan only (gcc's does not check it): replayed by
     * tests/fuzz/regressions/predict_body/. */
    const pd_input empty[] = {{"", NULL, NULL, NULL}, {"", "", NULL, NULL}, {"a", "", NULL, NULL}};
    for (int i = 0; i < 3; i++) {
        pd_item it;
        memset(&it, 0, sizeof it);
        pd_opts o = {0};
        st = pd_item_encode(m, PD_TASK_CLS, &empty[i], &o, 0, &it, err, sizeof err);
        CHECKF(st == PD_OK && it.n_win == 1 && it.win[0].len == (i ? 3 : 2) + (i == 2), "input %d: %s", i, st ? err : "");
        pd_item_free(&it);
    }
    pd_model_free(m);
}

int main(void) {
    char base[] = "/tmp/pd_genmodel_XXXXXX";
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    char a[4096];
    snprintf(a, sizeof a, "%s/a", base);
    test_bytes_and_placement(base, a);
    test_files(a);
    test_load_and_forward(a);
    rm_rf(base);
    return TEST_SUMMARY("test_genmodel");
}
