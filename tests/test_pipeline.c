/* test_pipeline.c - pd_item_encode on long texts tokenizes only what it keeps
 * (pd_tokenizer_tokenize_max), and its windows are exactly those of the whole text: the single
 * text cut to max_length, both truncation orders of a pair (Hugging Face's longest_first), the
 * strided QA windows over a long context, and the refusals (truncate false, a context past
 * max_tokens). The reference is the full tokenization of each text (pd_tokenizer_tokenize,
 * checked against Hugging Face's encodings in test_tokenizer) cut here by the rules written
 * out again below, on the generated model. */
#include "genmodel.h"
#include "model.h"
#include "pipeline.h"
#include "test.h"

#include <ftw.h>
#include <string.h>
#include <unistd.h>

#define NELEM(a) (int)(sizeof(a) / sizeof((a)[0]))

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    return remove(p);
}

/* A long text of words, punctuation and unknown words; tag changes the mix. */
static char *long_text(size_t bytes, uint32_t tag) {
    static const char *w[] = {"a ", "good ", "film ", "the ", "end ", ". ", ", ", "zqxv ", "movie ", "bad ", "!", "it "};
    char *s = malloc(bytes + 16);
    size_t n = 0;
    uint32_t r = tag;
    while (n < bytes) {
        r = r * 1103515245u + 12345u;
        const char *x = w[(r >> 16) % NELEM(w)];
        memcpy(s + n, x, strlen(x));
        n += strlen(x);
    }
    s[n] = 0;
    return s;
}

/* Hugging Face longest_first for a pair over max tokens: when both fit, both stay; else the
 * shorter keeps its length if the longer still gets as much, otherwise each gets half and the
 * second text (or the longer one) the odd token. */
static void ref_cut(int *n1, int *n2, int max) {
    if (*n1 + *n2 <= max) return;
    int s = *n1 < *n2 ? *n1 : *n2;
    int ks, kl;
    if (max - s >= s) { ks = s; kl = max - s; }
    else { ks = max / 2; kl = max / 2 + max % 2; }
    if (*n1 > *n2) { *n1 = kl; *n2 = ks; }
    else { *n1 = ks; *n2 = kl; }
}

/* Checks window w against the reference: a's tokens [0, na) then b's [b0, b0 + nb). */
static int window_is(const pd_tokenizer *tk, const pd_window *w, const pd_tokens *a, int na, const pd_tokens *b, int b0, int nb) {
    int n = na + (b ? nb : 0) + pd_tokenizer_num_special(tk, b != NULL);
    if (w->len != n) return 0;
    int ia = 0, ib = 0;
    for (int t = 0; t < w->len; t++) {
        if (w->src[t] < 0) continue;
        const pd_tokens *s = w->src[t] == 0 ? a : b;
        int k = w->src[t] == 0 ? ia++ : b0 + ib++;
        if (w->ids[t] != s->ids[k] || w->tstart[t] != s->start[k] || w->tend[t] != s->end[k] || w->word[t] != s->word[k]) return 0;
    }
    return ia == na && ib == (b ? nb : 0);
}

static void test_long(const pd_model *m) {
    const pd_tokenizer *tk = pd_model_tokenizer(m);
    char err[256];
    pd_tokens ra = {0}, rb = {0};
    /* single texts, then pairs in both orders, of lengths around the budget and far past it */
    const size_t sizes[][2] = {{300000, 0}, {400000, 200000}, {200000, 400000}, {300000, 300000}, {300000, 20}, {20, 300000}, {30, 31}, {100, 400}};
    const int maxlens[] = {0, 17, 64};
    for (int i = 0; i < NELEM(sizes); i++)
        for (int q = 0; q < NELEM(maxlens); q++) {
            char *ta = long_text(sizes[i][0], 1 + (uint32_t)i), *tb = sizes[i][1] ? long_text(sizes[i][1], 100 + (uint32_t)i) : NULL;
            pd_input in = {ta, tb, NULL, NULL};
            pd_opts o = {.max_length = maxlens[q]};
            pd_item it = {0};
            pd_status st = pd_item_encode(m, PD_TASK_CLS, &in, &o, 0, &it, err, sizeof err);
            CHECK(pd_tokenizer_tokenize(tk, ta, strlen(ta), &ra, err, sizeof err) == PD_OK);
            if (tb) CHECK(pd_tokenizer_tokenize(tk, tb, strlen(tb), &rb, err, sizeof err) == PD_OK);
            int maxlen = maxlens[q] ? maxlens[q] : pd_model_config(m)->max_tokens;
            int budget = maxlen - pd_tokenizer_num_special(tk, tb != NULL), na = ra.n, nb = tb ? rb.n : 0;
            if (tb) ref_cut(&na, &nb, budget);
            else if (na > budget) na = budget;
            CHECKF(st == PD_OK && it.n_win == 1 && window_is(tk, &it.win[0], &ra, na, tb ? &rb : NULL, 0, nb) &&
                       it.truncated == (na < ra.n || (tb && nb < rb.n)),
                   "sizes %zu/%zu max_length %d: %s (want %d+%d of %d+%d)", sizes[i][0], sizes[i][1], maxlens[q], st ? err : "windows differ",
                   na, nb, ra.n, tb ? rb.n : 0);
            pd_item_free(&it);
            /* truncate false: refused exactly when the reference would cut */
            o.no_truncate = 1;
            st = pd_item_encode(m, PD_TASK_CLS, &in, &o, 0, &it, err, sizeof err);
            int cut = na < ra.n || (tb && nb < rb.n);
            CHECKF(cut ? st == PD_ERR_TOO_LARGE : st == PD_OK, "sizes %zu/%zu, truncate false: %d (%s)", sizes[i][0], sizes[i][1], st, st ? err : "");
            pd_item_free(&it);
            free(ta);
            free(tb);
        }

    /* QA: every window of a long context, as over the whole token list; past max_tokens refused */
    char *ctx = long_text(20000, 7);
    const char *question = "which film is good ?";
    CHECK(pd_tokenizer_tokenize(tk, question, strlen(question), &ra, err, sizeof err) == PD_OK);
    CHECK(pd_tokenizer_tokenize(tk, ctx, strlen(ctx), &rb, err, sizeof err) == PD_OK);
    const int strides[] = {0, 5, 40};
    for (int k = 0; k < NELEM(strides); k++) {
        pd_input in = {NULL, NULL, question, ctx};
        pd_opts o = {.doc_stride = strides[k], .max_tokens = 1 << 20};
        pd_item it = {0};
        pd_status st = pd_item_encode(m, PD_TASK_QA, &in, &o, 0, &it, err, sizeof err);
        CHECKF(st == PD_OK && it.n_win > 10, "stride %d: %s", strides[k], st ? err : "");
        int maxlen = pd_model_config(m)->max_tokens, win = maxlen - pd_tokenizer_num_special(tk, 1) - ra.n;
        int stride = strides[k] ? strides[k] : (maxlen / 2 < 128 ? maxlen / 2 : 128);
        if (stride >= win) stride = win - 1;
        int ok = st == PD_OK, s0 = 0, w = 0;
        for (; ok && w < it.n_win; w++, s0 += win - stride) {
            int n = rb.n - s0 < win ? rb.n - s0 : win;
            ok = window_is(tk, &it.win[w], &ra, ra.n, &rb, s0, n);
        }
        CHECKF(ok && s0 - (win - stride) + win >= rb.n, "stride %d: window %d differs or the last ends before the context", strides[k], w - 1);
        int need = pd_item_tokens(&it);
        pd_item_free(&it);
        o.max_tokens = need; /* exactly enough */
        CHECKF(pd_item_encode(m, PD_TASK_QA, &in, &o, 0, &it, err, sizeof err) == PD_OK, "%s", err);
        pd_item_free(&it);
        o.max_tokens = need - 1;
        CHECK(pd_item_encode(m, PD_TASK_QA, &in, &o, 0, &it, err, sizeof err) == PD_ERR_TOO_LARGE && it.n_win == 0);
        o.max_tokens = rb.n - 1; /* fewer than the context alone: refused before the context's end is read */
        CHECK(pd_item_encode(m, PD_TASK_QA, &in, &o, 0, &it, err, sizeof err) == PD_ERR_TOO_LARGE && strstr(err, "more than"));
        pd_item_free(&it);
    }
    free(ctx);
    pd_tokens_free(&ra);
    pd_tokens_free(&rb);
}

int main(void) {
    char dir[] = "/tmp/pd_pipeline_XXXXXX", err[256];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char m_dir[4096];
    snprintf(m_dir, sizeof m_dir, "%s/m", dir);
    pd_model *m = NULL;
    CHECKF(pd_genmodel_write(m_dir, err, sizeof err) == PD_OK && pd_model_load(m_dir, 0, &m, err, sizeof err) == PD_OK, "%s", err);
    if (m) test_long(m);
    pd_model_free(m);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return TEST_SUMMARY("test_pipeline");
}
