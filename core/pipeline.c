/* pipeline.c - inputs to windows, windows to results. See pipeline.h. */
#include "pipeline.h"

#include <limits.h>
#include <math.h>
#include <string.h>

int pd_utf8_chars(const char *s, size_t bytes) {
    int n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

static void window_free(pd_window *w) {
    free(w->ids); free(w->type_ids); free(w->src); free(w->tstart); free(w->tend); free(w->word);
    memset(w, 0, sizeof *w);
}

void pd_item_clear_results(pd_item *it) {
    free(it->logits);
    free(it->start_logits);
    free(it->end_logits);
    for (int i = 0; i < it->n_answers; i++) free(it->answers[i].text);
    free(it->answers);
    it->logits = it->start_logits = it->end_logits = NULL;
    it->answers = NULL;
    it->n_logits = it->n_answers = 0;
}

void pd_item_free(pd_item *it) {
    if (!it) return;
    for (int i = 0; i < it->n_win; i++) window_free(&it->win[i]);
    free(it->win);
    free(it->context);
    pd_item_clear_results(it);
    memset(it, 0, sizeof *it);
}

int pd_item_tokens(const pd_item *it) {
    int n = 0, virt = it->delta ? it->delta->n_prompt : 0;
    for (int i = 0; i < it->n_win; i++) n += it->win[i].len + virt;
    return n;
}

/* ==== Preparing items ==== */

pd_task pd_predict_task(int forced, pd_task own, pd_task shape) {
    return forced > PD_TASK_NONE ? (pd_task)forced : own != PD_TASK_NONE ? own : shape;
}

const pd_head *pd_head_for(const pd_model *m, const pd_delta *d, pd_task task) {
    if (d && d->head && d->head->task == task) return d->head;
    return pd_model_head(m, task);
}

pd_status pd_item_prepare(const pd_model *m, const pd_delta *d, pd_task task, const pd_input *in, pd_task shape, const pd_opts *o,
                          pd_item *it, char *err, size_t errlen) {
    memset(it, 0, sizeof *it);
    if (shape != task)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "a %s input, but the task is %s", pd_task_name(shape), pd_task_name(task));
    const pd_head *head = pd_head_for(m, d, task);
    if (!head && d) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "neither the adapter nor the base model has a %s head", pd_task_name(task));
    if (!head) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "the base model has no %s head; name an adapter that has one", pd_task_name(task));
    pd_status st = pd_item_encode(m, task, in, o, d ? d->n_prompt + d->n_prefix : 0, it, err, errlen);
    if (st) return st;
    it->delta = d;
    it->head = head;
    return PD_OK;
}

/* ==== Running items ==== */

pd_status pd_predict_groups(pd_ctx *c, pd_item *const *items, int n, const int *group, const pd_opts *o,
                            void (*failed)(int first, int count, pd_status st, const char *err, void *arg), void *arg) {
    char err[256];
    pd_status st = pd_predict(c, items, n, o, err, sizeof err);
    if (st == PD_OK) return PD_OK;
    int single = 1;
    for (int i = 1; i < n; i++) single &= group[i] == group[0];
    if (single) {
        failed(0, n, st, err, arg);
        return st;
    }
    pd_status any = PD_OK;
    for (int i = 0; i < n;) {
        int k = i;
        while (k < n && group[k] == group[i]) k++;
        for (int t = i; t < k; t++) pd_item_clear_results(items[t]);
        if ((st = pd_predict(c, items + i, k - i, o, err, sizeof err))) {
            failed(i, k - i, st, err, arg);
            any = st;
        }
        i = k;
    }
    return any;
}

/* Assembles a window from a[a0..a0+na) and (if b) b[b0..b0+nb) into w. */
static pd_status build_window(const pd_tokenizer *tk, const pd_tokens *a, int a0, int na, const pd_tokens *b, int b0, int nb,
                              pd_window *w) {
    int cap = na + (b ? nb : 0) + pd_tokenizer_num_special(tk, b != NULL);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)cap);
    w->ids = malloc(sizeof(int32_t) * (size_t)cap);
    w->type_ids = malloc(sizeof(int32_t) * (size_t)cap);
    w->src = malloc(sizeof(int32_t) * (size_t)cap);
    w->tstart = malloc(sizeof(int32_t) * (size_t)cap);
    w->tend = malloc(sizeof(int32_t) * (size_t)cap);
    w->word = malloc(sizeof(int32_t) * (size_t)cap);
    if (!idx || !w->ids || !w->type_ids || !w->src || !w->tstart || !w->tend || !w->word) {
        free(idx);
        window_free(w);
        return PD_ERR_NOMEM;
    }
    /* an empty text has no ids array: no pointer arithmetic on NULL (UBSan; fuzz predict_body) */
    const int32_t *ai = a->ids ? a->ids + a0 : NULL, *bi = b && b->ids ? b->ids + b0 : NULL;
    w->len = pd_tokenizer_assemble(tk, ai, na, bi, b ? nb : -1, w->ids, w->type_ids, w->src, idx);
    PD_ASSERT(w->len <= cap);
    for (int t = 0; t < w->len; t++) {
        if (w->src[t] < 0) { w->tstart[t] = w->tend[t] = w->word[t] = -1; continue; }
        const pd_tokens *s = w->src[t] == 0 ? a : b;
        int k = idx[t] + (w->src[t] == 0 ? a0 : b0);
        w->tstart[t] = s->start[k];
        w->tend[t] = s->end[k];
        w->word[t] = s->word[k];
    }
    free(idx);
    return PD_OK;
}

/* Lengths after Hugging Face tokenizers' longest_first truncation of a pair to max tokens
 * (utils/truncation.rs): the shorter keeps its length if the longer still gets at least as
 * much; otherwise both get half, the originally longer one taking the odd token. */
static void longest_first(int *n1, int *n2, int max) {
    if (*n1 + *n2 <= max) return;
    int a = *n1, b = *n2, swap = 0;
    if (a > b) { int t = a; a = b; b = t; swap = 1; }
    if (a > max) b = a;
    else b = (max - a) > a ? (max - a) : a;
    if (a + b > max) { a = max / 2; b = a + max % 2; }
    if (swap) { int t = a; a = b; b = t; }
    if (*n1 > a) *n1 = a;
    if (*n2 > b) *n2 = b;
}

pd_status pd_item_encode(const pd_model *m, pd_task task, const pd_input *in, const pd_opts *o, int n_virtual,
                         pd_item *it, char *err, size_t errlen) {
    const pd_config *cf = pd_model_config(m);
    const pd_tokenizer *tk = pd_model_tokenizer(m);
    memset(it, 0, sizeof *it);
    it->task = task;
    int maxlen = cf->max_tokens - n_virtual;
    if (o && o->max_length > 0 && o->max_length < maxlen) maxlen = o->max_length;
    pd_tokens a = {0}, b = {0};
    pd_status st = PD_OK;
    if (task == PD_TASK_CLS) {
        if (!in->text) return pd_err(err, errlen, PD_ERR_INVALID, "classification needs \"text\"");
        int pair = in->text_pair != NULL;
        int budget = maxlen - pd_tokenizer_num_special(tk, pair);
        if (budget < 1) return pd_err(err, errlen, PD_ERR_INVALID, "max_length %d leaves no room for tokens", maxlen);
        /* Each text needs at most budget tokens, plus one to know that it is longer. A pair whose
         * texts are both longer is cut by length, so then both are counted to the end (the
         * tokens kept are still budget + 1 each). */
        int keep = budget + 1;
        int64_t na_all = 0, nb_all = 0;
        st = pd_tokenizer_tokenize_max(tk, in->text, strlen(in->text), keep, &a, NULL, err, errlen);
        if (!st && pair) st = pd_tokenizer_tokenize_max(tk, in->text_pair, strlen(in->text_pair), keep, &b, NULL, err, errlen);
        if (st) goto out;
        na_all = a.n;
        nb_all = pair ? b.n : 0;
        if (pair && a.n == keep && b.n == keep && !(o && o->no_truncate)) {
            st = pd_tokenizer_tokenize_max(tk, in->text, strlen(in->text), keep, &a, &na_all, err, errlen);
            if (!st) st = pd_tokenizer_tokenize_max(tk, in->text_pair, strlen(in->text_pair), keep, &b, &nb_all, err, errlen);
            if (st) goto out;
        }
        int na = a.n, nb = pair ? b.n : 0;
        if (pair) {
            /* the cut depends only on which text is longer and on the shorter's length (both
             * known), so it is the one of the full lengths */
            int la = na_all > INT_MAX / 2 ? INT_MAX / 2 : (int)na_all, lb = nb_all > INT_MAX / 2 ? INT_MAX / 2 : (int)nb_all;
            longest_first(&la, &lb, budget);
            if (na > la) na = la;
            if (nb > lb) nb = lb;
        } else if (na > budget) {
            na = budget;
        }
        if (na < a.n || nb < (pair ? b.n : 0)) {
            if (o && o->no_truncate) {
                if (a.n == keep || (pair && b.n == keep))
                    st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "more than %d tokens (special tokens included) do not fit in %d and truncate is false",
                                maxlen, maxlen);
                else
                    st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "%d tokens (special tokens included) do not fit in %d and truncate is false",
                                a.n + (pair ? b.n : 0) + pd_tokenizer_num_special(tk, pair), maxlen);
                goto out;
            }
            it->truncated = 1;
        }
        it->win = calloc(1, sizeof *it->win);
        if (!it->win) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        it->n_win = 1;
        if (build_window(tk, &a, 0, na, pair ? &b : NULL, 0, nb, &it->win[0])) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    } else if (task == PD_TASK_QA) {
        if (!in->question || !in->context) return pd_err(err, errlen, PD_ERR_INVALID, "question answering needs \"question\" and \"context\"");
        /* a question of maxlen tokens already leaves no room: more are not needed */
        st = pd_tokenizer_tokenize_max(tk, in->question, strlen(in->question), maxlen, &a, NULL, err, errlen);
        /* every context token is in a window: past max_tokens the input is refused */
        int max_tok = o && o->max_tokens > 0 ? o->max_tokens : 0;
        if (!st) st = pd_tokenizer_tokenize_max(tk, in->context, strlen(in->context), max_tok ? max_tok + 1 : -1, &b, NULL, err, errlen);
        if (st) goto out;
        if (b.n == 0) { st = pd_err(err, errlen, PD_ERR_INVALID, "the context is empty"); goto out; }
        if (a.n == 0) { st = pd_err(err, errlen, PD_ERR_INVALID, "the question is empty"); goto out; }
        int win = maxlen - pd_tokenizer_num_special(tk, 1) - a.n; /* context tokens per window */
        if (win < 2) {
            st = pd_err(err, errlen, PD_ERR_INVALID, "the question has %s%d tokens and leaves no room for the context in %d",
                        a.n == maxlen ? "at least " : "", a.n, maxlen);
            goto out;
        }
        if (max_tok && b.n > max_tok) {
            st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "the context has more than %d tokens; the limit is %d tokens per input", max_tok, max_tok);
            goto out;
        }
        int stride = o && o->doc_stride > 0 ? o->doc_stride : (maxlen / 2 < 128 ? maxlen / 2 : 128);
        /* Windows as tokenizers' Encoding::truncate makes overflows: starts step by (win - stride). */
        if (stride >= win) stride = win - 1;
        int step = win - stride;
        int nw = b.n <= win ? 1 : 1 + (b.n - win + step - 1) / step;
        if (max_tok) { /* the windows' tokens, before they are made (virtual tokens come on top) */
            int64_t need = 0;
            for (int w = 0; w < nw; w++) need += (int64_t)(b.n - w * step < win ? b.n - w * step : win) + a.n + pd_tokenizer_num_special(tk, 1);
            if (need > max_tok) {
                st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "needs %lld tokens in %d windows; the limit is %d tokens per input", (long long)need,
                            nw, max_tok);
                goto out;
            }
        }
        it->win = calloc((size_t)(nw > 0 ? nw : 1), sizeof *it->win);
        if (!it->win) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        for (int w = 0; w < nw; w++) {
            int s0 = w * step, n = b.n - s0 < win ? b.n - s0 : win;
            if (build_window(tk, &a, 0, a.n, &b, s0, n, &it->win[w])) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
            it->n_win++;
        }
        it->context_len = strlen(in->context);
        it->context = malloc(it->context_len + 1);
        if (!it->context) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        memcpy(it->context, in->context, it->context_len + 1);
    } else {
        st = pd_err(err, errlen, PD_ERR_INVALID, "unknown task");
    }
out:
    pd_tokens_free(&a);
    pd_tokens_free(&b);
    if (st) pd_item_free(it);
    return st;
}

/* ==== Results ==== */

typedef struct { int s, e; float score; int win; } span;

/* Best spans of one window as the Hugging Face QA pipeline scores them: logits of tokens
 * outside the context set to -10000 (the CLS token stays in), softmax over start and end,
 * CLS zeroed, score = p_start[s] * p_end[e] with s <= e < s + max_answer_len, both in the
 * context. Keeps the k best in spans[] (sorted), returns how many. */
static int window_spans(const pd_window *w, const float *sl, const float *el, int max_ans, int k, int win, span *out) {
    int L = w->len;
    float *ps = malloc(sizeof(float) * (size_t)L), *pe = malloc(sizeof(float) * (size_t)L);
    if (!ps || !pe) { free(ps); free(pe); return 0; }
    for (int t = 0; t < L; t++) {
        int keep = w->src[t] == 1 || t == 0;
        ps[t] = keep ? sl[t] : -10000.0f;
        pe[t] = keep ? el[t] : -10000.0f;
    }
    /* exact softmax in double: scores are user-visible */
    double ms = ps[0], me = pe[0], ss = 0, se = 0;
    for (int t = 1; t < L; t++) { if (ps[t] > ms) ms = ps[t]; if (pe[t] > me) me = pe[t]; }
    for (int t = 0; t < L; t++) { ss += exp(ps[t] - ms); se += exp(pe[t] - me); }
    for (int t = 0; t < L; t++) { ps[t] = (float)(exp(ps[t] - ms) / ss); pe[t] = (float)(exp(pe[t] - me) / se); }
    ps[0] = pe[0] = 0.0f;
    int n = 0;
    for (int s = 0; s < L; s++) {
        if (w->src[s] != 1) continue;
        for (int e = s; e < L && e < s + max_ans; e++) {
            if (w->src[e] != 1) continue;
            float sc = ps[s] * pe[e];
            if (n == k && sc <= out[k - 1].score) continue;
            int pos = n < k ? n++ : k - 1;
            while (pos > 0 && out[pos - 1].score < sc) { out[pos] = out[pos - 1]; pos--; }
            out[pos] = (span){s, e, sc, win};
        }
    }
    free(ps);
    free(pe);
    return n;
}

static pd_status finish_qa(pd_item *it, float *const *logit, const pd_opts *o) {
    int k = o && o->top_k > 0 ? o->top_k : 1;
    int max_ans = o && o->max_answer_length > 0 ? o->max_answer_length : 15;
    span *all = calloc((size_t)k * (size_t)(it->n_win + 1), sizeof *all);
    span *one = calloc((size_t)k, sizeof *one);
    if (!all || !one) { free(all); free(one); return PD_ERR_NOMEM; }
    int na = 0;
    for (int w = 0; w < it->n_win; w++) {
        int L = it->win[w].len;
        int got = window_spans(&it->win[w], logit[w], logit[w] + L, max_ans, k, w, one);
        for (int i = 0; i < got; i++) all[na++] = one[i];
    }
    /* stable sort by score, descending; earlier windows win ties */
    for (int i = 1; i < na; i++) {
        span v = all[i];
        int j = i - 1;
        while (j >= 0 && all[j].score < v.score) { all[j + 1] = all[j]; j--; }
        all[j + 1] = v;
    }
    if (na > k) na = k;
    it->answers = calloc((size_t)(na ? na : 1), sizeof *it->answers);
    if (!it->answers) { free(all); free(one); return PD_ERR_NOMEM; }
    for (int i = 0; i < na; i++) {
        const pd_window *w = &it->win[all[i].win];
        /* widen to whole words within the window, as the pipeline's word_to_chars does */
        int s = all[i].s, e = all[i].e;
        while (s > 0 && w->src[s - 1] == 1 && w->word[s - 1] == w->word[s]) s--;
        while (e + 1 < w->len && w->src[e + 1] == 1 && w->word[e + 1] == w->word[e]) e++;
        int b0 = w->tstart[s], b1 = w->tend[e];
        for (int t = s; t <= e; t++) {
            if (w->word[t] == w->word[s] && w->tstart[t] < b0) b0 = w->tstart[t];
            if (w->word[t] == w->word[e] && w->tend[t] > b1) b1 = w->tend[t];
        }
        pd_answer *a = &it->answers[i];
        a->text = malloc((size_t)(b1 - b0) + 1);
        if (!a->text) { free(all); free(one); return PD_ERR_NOMEM; }
        memcpy(a->text, it->context + b0, (size_t)(b1 - b0));
        a->text[b1 - b0] = 0;
        a->start = pd_utf8_chars(it->context, (size_t)b0);
        a->end = a->start + pd_utf8_chars(it->context + b0, (size_t)(b1 - b0));
        a->score = all[i].score;
        it->n_answers++;
    }
    int L0 = it->win[0].len;
    it->start_logits = malloc(sizeof(float) * (size_t)L0);
    it->end_logits = malloc(sizeof(float) * (size_t)L0);
    if (!it->start_logits || !it->end_logits) { free(all); free(one); return PD_ERR_NOMEM; }
    memcpy(it->start_logits, logit[0], sizeof(float) * (size_t)L0);
    memcpy(it->end_logits, logit[0] + L0, sizeof(float) * (size_t)L0);
    free(all);
    free(one);
    return PD_OK;
}

pd_status pd_predict(pd_ctx *c, pd_item *const *items, int n, const pd_opts *o, char *err, size_t errlen) {
    int nseq = 0;
    for (int i = 0; i < n; i++) {
        if (!items[i]->head || items[i]->head->task != items[i]->task)
            return pd_err(err, errlen, PD_ERR_INVALID, "no %s head for this request", pd_task_name(items[i]->task));
        nseq += items[i]->n_win;
    }
    pd_seq *seqs = calloc((size_t)(nseq ? nseq : 1), sizeof *seqs);
    if (!seqs) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int w = 0; w < items[i]->n_win; w++)
            seqs[k++] = (pd_seq){items[i]->win[w].ids, items[i]->win[w].type_ids, items[i]->win[w].len, items[i]->delta,
                                 items[i]->task == PD_TASK_CLS};
    pd_status st = pd_forward(c, seqs, nseq, err, errlen);
    free(seqs);
    if (st) return st;
    k = 0;
    for (int i = 0; i < n && !st; i++) {
        pd_item *it = items[i];
        if (it->task == PD_TASK_CLS) {
            int nl = it->head->layer[it->head->n_layers - 1].out;
            it->logits = malloc(sizeof(float) * (size_t)nl);
            if (!it->logits) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            it->n_logits = pd_ctx_head(c, k, it->head, it->logits, nl);
            if (it->n_logits != nl) st = pd_err(err, errlen, PD_ERR_MISMATCH, "the head does not fit the model");
            k++;
        } else {
            float **lg = calloc((size_t)it->n_win, sizeof *lg);
            if (!lg) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            for (int w = 0; w < it->n_win && !st; w++, k++) {
                int L = it->win[w].len;
                lg[w] = malloc(sizeof(float) * 2 * (size_t)L);
                if (!lg[w]) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
                else if (pd_ctx_head(c, k, it->head, lg[w], 2 * L) != 2 * L) st = pd_err(err, errlen, PD_ERR_MISMATCH, "the QA head does not fit the model");
            }
            if (!st && finish_qa(it, lg, o)) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            for (int w = 0; w < it->n_win; w++) free(lg[w]);
            free(lg);
        }
    }
    return st;
}
