/* test_pretrain.c - train/pretrain.c: the corpus cache and windows, masking, the training step,
 * and `peftd pretrain` end to end on a tiny model: the loss falls, a run stopped and resumed
 * ends with exactly the bits of a run that never stopped, and the exported checkpoint loads. */
#include "options.h"
#include "pretrain.h"
#include "safetensors.h"
#include "test.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKDIR "tests/reference/models/bert_cls_f32"

static const char *const WORDS[] = {"the", "movie", "was", "good", "bad", "story", "and", "a", "film", "great", "it", "is",
                                    "not", "very", "long", "boring", "actors", "were", "nice", "house", "river", "near", "small",
                                    "who", "what", "where", "playing", "i", "liked"};
#define NWORDS (int)(sizeof WORDS / sizeof WORDS[0])

/* A corpus of n documents of 1-4 sentences of 3-12 words, deterministic. */
static void write_corpus(const char *path, int ndoc, unsigned seed) {
    FILE *f = fopen(path, "w");
    unsigned s = seed;
    for (int d = 0; d < ndoc; d++) {
        int ns = 1 + (int)((s = s * 1103515245u + 12345u) >> 16) % 4;
        for (int k = 0; k < ns; k++) {
            int nw = 3 + (int)((s = s * 1103515245u + 12345u) >> 16) % 10;
            for (int w = 0; w < nw; w++) {
                /* a little structure to learn: word i is often followed by word i + 1 */
                int r = (int)((s = s * 1103515245u + 12345u) >> 16) % NWORDS;
                fprintf(f, "%s%s", w ? " " : "", WORDS[(r + w) % NWORDS]);
            }
            fputs(k == ns - 1 ? ".\n" : ".\n", f);
        }
        fputs("\n", f);
    }
    /* one sentence longer than a window */
    for (int w = 0; w < 70; w++) fprintf(f, "%s%s", w ? " " : "", WORDS[w % NWORDS]);
    fputs("\n", f);
    fclose(f);
}

static void corpus_tests(const char *dir, const pd_tokenizer *tok) {
    char text[512], cache[512], err[512];
    snprintf(text, sizeof text, "%s/c.txt", dir);
    snprintf(cache, sizeof cache, "%s/c.bin", dir);
    write_corpus(text, 60, 7);
    pd_corpus *c = NULL;
    CHECKF(pd_corpus_load(text, cache, tok, 32, &c, err, sizeof err) == PD_OK, "%s", err);
    if (!c) return;
    int32_t cls = pd_tokenizer_token_to_id(tok, "[CLS]"), sep = pd_tokenizer_token_to_id(tok, "[SEP]");
    CHECK(c->n_doc == 61 && c->n_win > 10);
    /* every window: [CLS] ... [SEP], at most seq; the corpus tokens appear in order, once */
    size_t k = 0;
    int bad = 0, seps_inside = 0;
    for (int w = 0; w < c->n_win; w++) {
        const uint32_t *x = c->wtok + c->win_off[w];
        int L = c->win_len[w];
        bad += L > 32 || L < 3 || PD_TOK_ID(x[0]) != cls || PD_TOK_ID(x[L - 1]) != sep;
        for (int i = 1; i < L - 1; i++) {
            if (PD_TOK_ID(x[i]) == sep) { seps_inside++; continue; }
            bad += k >= c->n_tok || x[i] != c->tok[k];
            k++;
        }
    }
    CHECKF(bad == 0 && k == c->n_tok, "windows: %d bad, %zu of %zu tokens", bad, k, c->n_tok);
    CHECK(seps_inside > 0); /* documents that share a window are separated */
    /* the cache gives the same corpus; a changed text is tokenized again */
    pd_corpus *c2 = NULL;
    struct stat sb;
    CHECK(stat(cache, &sb) == 0);
    CHECK(pd_corpus_load(text, cache, tok, 32, &c2, err, sizeof err) == PD_OK);
    CHECK(c2 && c2->n_tok == c->n_tok && c2->n_win == c->n_win && !memcmp(c2->wtok, c->wtok, c->n_wtok * 4));
    pd_corpus_free(c2);
    sleep(1); /* a new mtime */
    write_corpus(text, 30, 8);
    CHECK(pd_corpus_load(text, cache, tok, 32, &c2, err, sizeof err) == PD_OK);
    CHECK(c2 && c2->n_doc == 31);
    pd_corpus_free(c2);
    /* bad input: invalid UTF-8, no file, an empty corpus */
    FILE *f = fopen(text, "w");
    fputs("good line\nbad \xff\xfe line\n", f);
    fclose(f);
    CHECK(pd_corpus_load(text, NULL, tok, 32, &c2, err, sizeof err) == PD_ERR_FORMAT && strstr(err, "line 2"));
    CHECK(pd_corpus_load("/nonexistent/x.txt", NULL, tok, 32, &c2, err, sizeof err) == PD_ERR_NOT_FOUND);
    f = fopen(text, "w");
    fputs("\n\n", f);
    fclose(f);
    CHECK(pd_corpus_load(text, NULL, tok, 32, &c2, err, sizeof err) == PD_ERR_INVALID);
    CHECK(pd_corpus_load(text, NULL, tok, 4, &c2, err, sizeof err) == PD_ERR_INVALID);
    pd_corpus_free(c);
}

static void mask_tests(const pd_tokenizer *tok) {
    int V = pd_tokenizer_vocab_size(tok);
    uint8_t *special = calloc((size_t)V, 1);
    int32_t *draw = malloc(sizeof(int32_t) * V);
    int nd = 0;
    for (int i = 0; i < V; i++) {
        special[i] = i == 0 || i == 2 || i == 3 || i == 4;
        if (!special[i]) draw[nd++] = i;
    }
    pd_mask_cfg mc = {0.15, 0, 4, special, draw, nd};
    /* a window: [CLS] 100 tokens [SEP], words of 1-3 pieces */
    uint32_t win[102];
    win[0] = 2 | PD_TOK_WORD_START;
    win[101] = 3 | PD_TOK_WORD_START;
    for (int i = 1; i <= 100; i++) win[i] = (uint32_t)(10 + i) | (i % 3 == 1 ? PD_TOK_WORD_START : 0);
    int32_t ids[102], pos[102], lab[102], ids2[102], pos2[102], lab2[102];
    long n_mask = 0, n_rand = 0, n_keep = 0, total = 0;
    int bad = 0;
    for (int w = 0; w < 400; w++) {
        int n = pd_mask_window(win, 102, pd_mask_key(1, 0, w), &mc, ids, pos, lab);
        bad += n != 15;
        for (int i = 0; i < n; i++) {
            bad += pos[i] < 1 || pos[i] > 100 || (i && pos[i] <= pos[i - 1]) || lab[i] != 10 + pos[i];
            if (ids[pos[i]] == 4) n_mask++;
            else if (ids[pos[i]] == lab[i]) n_keep++;
            else n_rand++;
        }
        for (int i = 0; i < 102; i++) {
            int masked = 0;
            for (int j = 0; j < n; j++) masked |= pos[j] == i;
            if (!masked) bad += ids[i] != PD_TOK_ID(win[i]);
        }
        total += n;
    }
    CHECKF(bad == 0, "%d masking errors", bad);
    /* 80/10/10 within a few standard deviations (6000 tokens; a random draw may hit the label) */
    CHECKF(fabs((double)n_mask / total - 0.8) < 0.03 && fabs((double)n_rand / total - 0.1) < 0.02 &&
               fabs((double)n_keep / total - 0.1) < 0.02,
           "mask %ld, random %ld, kept %ld of %ld", n_mask, n_rand, n_keep, total);
    /* the same key gives the same masks; another key others */
    pd_mask_window(win, 102, pd_mask_key(1, 0, 5), &mc, ids, pos, lab);
    pd_mask_window(win, 102, pd_mask_key(1, 0, 5), &mc, ids2, pos2, lab2);
    CHECK(!memcmp(ids, ids2, sizeof ids) && !memcmp(pos, pos2, 15 * 4));
    pd_mask_window(win, 102, pd_mask_key(1, 1, 5), &mc, ids2, pos2, lab2);
    CHECK(memcmp(pos, pos2, 15 * 4) != 0);
    /* whole words: a masked piece's whole word is masked; about 15% of the tokens */
    mc.whole_words = 1;
    bad = 0;
    for (int w = 0; w < 100; w++) {
        int n = pd_mask_window(win, 102, pd_mask_key(2, 0, w), &mc, ids, pos, lab);
        bad += n < 13 || n > 15;
        for (int i = 0; i < n; i++) {
            int p = pos[i], start = p - (p - 1) % 3; /* words are pieces 1-3, 4-6, ... */
            for (int q = start; q < start + 3 && q <= 100; q++) {
                int in = 0;
                for (int j = 0; j < n; j++) in |= pos[j] == q;
                bad += !in;
            }
        }
    }
    CHECKF(bad == 0, "%d whole-word masking errors", bad);
    /* a window with nothing maskable */
    uint32_t sp[2] = {2 | PD_TOK_WORD_START, 3 | PD_TOK_WORD_START};
    CHECK(pd_mask_window(sp, 2, 1, &mc, ids, pos, lab) == 0);
    free(special);
    free(draw);
}

/* The loss of a tiny model falls on a fixed batch. */
static void step_tests(void) {
    pd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = PD_ARCH_BERT;
    cfg.vocab = 50;
    cfg.hidden = 32;
    cfg.layers = 2;
    cfg.heads = 4;
    cfg.ffn = 64;
    cfg.max_pos = 32;
    cfg.max_tokens = 32;
    cfg.type_vocab = 2;
    cfg.ln_eps = 1e-12f;
    cfg.act = PD_ACT_GELU;
    pd_pretrain_hyper hp = {0.9, 0.98, 1e-6, 0.01, 1.0};
    pd_pool *pool = pd_pool_new(2);
    pd_pretrainer *t = pd_pretrainer_new(&cfg, &hp, 3, pool);
    CHECK(t != NULL);
    /* initialisation as transformers': std 0.02, LayerNorms 1, biases 0, [PAD] row 0 */
    const pd_params *p = pd_pretrainer_params(t);
    double s2 = 0;
    for (int i = 0; i < 50 * 32; i++) s2 += (double)p->word_emb[i] * p->word_emb[i];
    CHECK(fabs(sqrt(s2 / (49 * 32)) - 0.02) < 0.002 && p->word_emb[0] == 0 && p->word_emb[31] == 0);
    CHECK(p->layer[1].ln2_w[5] == 1.0f && p->layer[1].b1[3] == 0.0f && p->mlm.bias[7] == 0.0f);
    int32_t ids[2][12] = {{2, 5, 4, 7, 8, 4, 10, 11, 12, 13, 14, 3}, {2, 20, 21, 4, 23, 3}};
    const int32_t *idp[2] = {ids[0], ids[1]};
    int len[2] = {12, 6};
    int32_t rows[3] = {2, 5, 12 + 3}, labels[3] = {6, 9, 22};
    pd_mlm_batch b = {2, idp, len, 3, rows, labels};
    char err[256];
    pd_step_stats st;
    double first = 0, last = 0;
    for (int s = 0; s < 30; s++) {
        CHECK(pd_pretrainer_step(t, &b, 3e-3, &st, err, sizeof err) == PD_OK);
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    CHECKF(last < 0.5 * first && st.correct == 3, "loss %g -> %g, %d correct", first, last, st.correct);
    CHECK(pd_pretrainer_steps(t) == 30);
    double ls;
    int c;
    CHECK(pd_pretrainer_eval(t, &b, &ls, &c, err, sizeof err) == PD_OK && c == 3 && fabs(ls / 3 - last) < 0.5);
    pd_mlm_batch empty = {2, idp, len, 0, rows, labels};
    CHECK(pd_pretrainer_step(t, &empty, 1e-3, &st, err, sizeof err) == PD_ERR_INVALID);
    pd_pretrainer_free(t);
    pd_pool_free(pool);
}

/* ==== The command ==== */

static int run_cli(const char *dir, const char *out, const char *extra) {
    char corpus[512], held[512];
    snprintf(corpus, sizeof corpus, "%s/train.txt", dir);
    snprintf(held, sizeof held, "%s/held.txt", dir);
    char *argv[64];
    int argc = 0;
    static char buf[64][256];
    const char *base[] = {"--corpus", corpus, "--heldout", held, "--vocab", TOKDIR, "--out", out, "--layers", "2", "--hidden", "32",
                          "--heads", "4", "--ffn", "64", "--seq", "32", "--max-pos", "64", "--batch", "8", "--lr", "2e-3",
                          "--warmup", "5", "--tokens", "9000", "--eval-windows", "16", "--log-seconds", "0", "--threads", "2",
                          "--eval-minutes", "0", "--ckpt-minutes", "0"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        snprintf(buf[argc], sizeof buf[0], "%s", base[i]);
        argv[argc] = buf[argc];
        argc++;
    }
    char e[256];
    snprintf(e, sizeof e, "%s", extra ? extra : "");
    for (char *tk = strtok(e, " "); tk; tk = strtok(NULL, " ")) {
        snprintf(buf[argc], sizeof buf[0], "%s", tk);
        argv[argc] = buf[argc];
        argc++;
    }
    pd_pretrain_opts o;
    int help = 0;
    char err[512];
    if (pd_opts_parse(pd_pretrain_opt_defs, pd_pretrain_opt_count, &o, argc, argv, 0, &help, err, sizeof err)) {
        fprintf(stderr, "peftd pretrain: %s\n", err);
        return 2;
    }
    return pd_pretrain_run(&o);
}

/* Compares every tensor of two state files bit for bit. Returns the number that differ (-1: unreadable). */
static int state_diff(const char *a, const char *b) {
    pd_st_file *fa = NULL, *fb = NULL;
    char err[256];
    if (pd_st_open(a, &fa, err, sizeof err) || pd_st_open(b, &fb, err, sizeof err)) {
        pd_st_close(fa);
        return -1;
    }
    int diff = pd_st_count(fa) != pd_st_count(fb);
    for (int i = 0; !diff && i < pd_st_count(fa); i++) {
        const pd_st_tensor *x = pd_st_at(fa, i), *y = pd_st_find(fb, x->name);
        diff += !y || y->nbytes != x->nbytes || memcmp(x->data, y->data, x->nbytes);
    }
    const char *keys[] = {"step", "epoch", "pos", "tokens", "total_steps"};
    for (int k = 0; k < 5; k++) {
        const char *va = pd_st_metadata(fa, keys[k]), *vb = pd_st_metadata(fb, keys[k]);
        diff += !va || !vb || strcmp(va, vb);
    }
    pd_st_close(fa);
    pd_st_close(fb);
    return diff;
}

static double last_heldout_loss(const char *out, int *rows) {
    char path[512], line[256];
    snprintf(path, sizeof path, "%s/heldout.csv", out);
    FILE *f = fopen(path, "r");
    double first = -1, last = -1;
    *rows = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "step", 4)) continue;
        double l;
        if (sscanf(line, "%*[^,],%*[^,],%*[^,],%lf", &l) == 1) {
            if (first < 0) first = l;
            last = l;
            (*rows)++;
        }
    }
    fclose(f);
    return first > 0 ? last / first : -1;
}

static void cli_tests(const char *dir) {
    char p[1200], a[512], b[512], sa[600], sb[600];
    snprintf(p, sizeof p, "%s/train.txt", dir);
    write_corpus(p, 300, 11);
    snprintf(p, sizeof p, "%s/held.txt", dir);
    write_corpus(p, 40, 12);
    snprintf(a, sizeof a, "%s/run-a", dir);
    snprintf(b, sizeof b, "%s/run-b", dir);
    /* straight through */
    CHECK(run_cli(dir, a, NULL) == 0);
    int rows;
    double ratio = last_heldout_loss(a, &rows);
    CHECKF(rows == 2 && ratio > 0 && ratio < 0.8, "held-out loss ratio %g over %d rows", ratio, rows);
    /* stopped at step 7, then resumed (with a stale row beyond the checkpoint in the CSV), then once more */
    CHECK(run_cli(dir, b, "--stop-steps 7") == 0);
    snprintf(p, sizeof p, "%s/heldout.csv", b);
    FILE *f = fopen(p, "a");
    fputs("99,1,1,1,1\n", f);
    fclose(f);
    CHECK(run_cli(dir, b, "--resume --stop-steps 20") == 0);
    CHECK(run_cli(dir, b, "--resume") == 0);
    snprintf(sa, sizeof sa, "%s/state.safetensors", a);
    snprintf(sb, sizeof sb, "%s/state.safetensors", b);
    CHECKF(state_diff(sa, sb) == 0, "a resumed run differs from a straight one");
    double rb = last_heldout_loss(b, &rows);
    CHECKF(rows == 2 && rb == ratio, "resumed held-out curve: ratio %g (straight %g), %d rows", rb, ratio, rows);
    /* a resumed run given more tokens lengthens its schedule (9000 tokens: 41 steps here) */
    {
        char c[600], sc[700];
        snprintf(c, sizeof c, "%s/run-c", dir);
        snprintf(sc, sizeof sc, "%s/state.safetensors", c);
        CHECK(run_cli(dir, c, "--stop-steps 5") == 0);
        CHECK(run_cli(dir, c, "--resume --tokens 18000 --stop-steps 6") == 0);
        pd_st_file *sf = NULL;
        char err[256];
        CHECK(pd_st_open(sc, &sf, err, sizeof err) == PD_OK);
        const char *tot = sf ? pd_st_metadata(sf, "total_steps") : NULL;
        CHECKF(tot && atol(tot) > 60 && atol(tot) < 100, "lengthened schedule: %s steps", tot ? tot : "?");
        pd_st_close(sf);
    }
    /* refusals: an existing run without --resume, a resume with other options, bad options */
    CHECK(run_cli(dir, a, NULL) == 1);
    CHECK(run_cli(dir, a, "--resume --seed 2") == 1);
    CHECK(run_cli(dir, a, "--heads 5") == 2);
    CHECK(run_cli(dir, a, "--dtype F64") == 2);
    CHECK(run_cli(dir, a, "--no-such-option 1") == 2);
    /* the exported checkpoint serves: the ordinary loader, the MLM head ignored */
    snprintf(p, sizeof p, "%s/model", a);
    pd_model *m = NULL;
    char err[512];
    CHECKF(pd_model_load(p, 0, &m, err, sizeof err) == PD_OK, "%s", err);
    if (m) {
        CHECK(pd_model_config(m)->layers == 2 && pd_model_config(m)->hidden == 32 && pd_model_config(m)->max_pos == 64);
        pd_model_free(m);
    }
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    char dir[] = "/tmp/peftd-test-pretrain-XXXXXX", err[512];
    if (!mkdtemp(dir)) return 1;
    pd_tokenizer *tok = NULL;
    CHECKF(pd_tokenizer_load_dir(TOKDIR, &tok, err, sizeof err) == PD_OK, "%s", err);
    if (tok) {
        corpus_tests(dir, tok);
        mask_tests(tok);
        pd_tokenizer_free(tok);
    }
    step_tests();
    cli_tests(dir);
    rm_rf(dir);
    return TEST_SUMMARY("test_pretrain");
}
