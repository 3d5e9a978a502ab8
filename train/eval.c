/* eval.c - evaluation during training: classification metrics, SQuAD exact match and F1.
 * See eval.h. */
#include "eval.h"

#include "pipeline.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define EVAL_TOKENS 4096   /* tokens per evaluation forward */
#define EVAL_MAX_ANSWER 30 /* QA evaluation: longest answer in tokens (run_qa) */

/* Cross-entropy of logits z (n) against target, in double. */
static double xent(const float *z, int n, int target) {
    double mx = z[0], s = 0;
    for (int i = 1; i < n; i++) if (z[i] > mx) mx = z[i];
    for (int i = 0; i < n; i++) s += exp((double)z[i] - mx);
    return log(s) + mx - z[target];
}

/* SQuAD's normalize_answer, as tokens: lower case, punctuation removed, articles dropped,
 * split on whitespace. Returns the number of tokens in *out (each a pointer into buf). */
static int squad_tokens(const char *s, char *buf, size_t cap, char **out, int max) {
    size_t k = 0;
    for (const char *p = s; *p && k + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 128 && ispunct(c)) continue;
        buf[k++] = (char)(c < 128 ? tolower(c) : c);
    }
    buf[k] = 0;
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t\n\r\f\v", &save); w && n < max; w = strtok_r(NULL, " \t\n\r\f\v", &save)) {
        if (!strcmp(w, "a") || !strcmp(w, "an") || !strcmp(w, "the")) continue;
        out[n++] = w;
    }
    return n;
}

/* SQuAD exact match and token F1 of a prediction against one gold answer. */
static void squad_score(const char *pred, const char *gold, double *em, double *f1) {
    enum { CAP = 2048, MAXT = 256 };
    char *pb = malloc(CAP), *gb = malloc(CAP);
    char *pt[MAXT], *gt[MAXT];
    int used[MAXT];
    *em = *f1 = 0;
    if (!pb || !gb) { free(pb); free(gb); return; }
    int np = squad_tokens(pred, pb, CAP, pt, MAXT), ng = squad_tokens(gold, gb, CAP, gt, MAXT);
    int same = np == ng;
    for (int i = 0; i < np && same; i++) same = !strcmp(pt[i], gt[i]);
    *em = same;
    if (np == 0 || ng == 0) {
        *f1 = np == ng;
    } else {
        int common = 0;
        memset(used, 0, sizeof used);
        for (int i = 0; i < np; i++)
            for (int k = 0; k < ng; k++)
                if (!used[k] && !strcmp(pt[i], gt[k])) { used[k] = 1; common++; break; }
        if (common) {
            double p = (double)common / np, r = (double)common / ng;
            *f1 = 2 * p * r / (p + r);
        }
    }
    free(pb);
    free(gb);
}

/* Classification: accuracy, macro F1 over the labels that occur as gold or prediction
 * (scikit-learn's f1_score(average="macro") over the labels present), mean loss. */
static pd_status eval_cls(pd_train_engine *e, const pd_train_spec *j, pd_eval_result *r, char *err, size_t errlen) {
    int L = j->num_labels, n = j->eval.n;
    const pd_train_example *ex = j->eval.ex;
    pd_ctx *ctx = pd_train_engine_ctx(e);
    const pd_head *head = pd_train_engine_head(e);
    long *tp = calloc((size_t)L * 3, sizeof(long));
    float *z = malloc(sizeof(float) * (size_t)L);
    if (!tp || !z) { free(tp); free(z); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    long *fp = tp + L, *fn = fp + L;
    double loss = 0;
    long correct = 0;
    pd_status st = PD_OK;
    for (int i = 0; i < n && !st;) {
        int k;
        if ((st = pd_train_engine_infer(e, ex, i, n, EVAL_TOKENS, &k, err, errlen))) break;
        for (int q = i; q < k; q++) {
            if (pd_ctx_head(ctx, q - i, head, z, L) != L) { st = pd_err(err, errlen, PD_ERR_MISMATCH, "the head does not fit"); break; }
            int pred = 0;
            for (int c = 1; c < L; c++) if (z[c] > z[pred]) pred = c;
            int gold = ex[q].label;
            loss += xent(z, L, gold);
            if (pred == gold) { correct++; tp[gold]++; }
            else { fp[pred]++; fn[gold]++; }
        }
        i = k;
    }
    if (!st) {
        double f1 = 0;
        int present = 0;
        for (int c = 0; c < L; c++) {
            if (tp[c] + fp[c] + fn[c] == 0) continue;
            present++;
            f1 += 2.0 * tp[c] / (double)(2 * tp[c] + fp[c] + fn[c]);
        }
        r->accuracy = (double)correct / n;
        r->f1 = present ? f1 / present : 0;
        r->loss = loss / n;
    }
    free(tp);
    free(z);
    return st;
}

/* Question answering: loss on the window that holds the answer; answers predicted through the
 * same pipeline as POST /predict (every window, best span of at most EVAL_MAX_ANSWER tokens),
 * scored with SQuAD's exact match (reported as "accuracy") and token F1, best over the golds. */
static pd_status eval_qa(pd_train_engine *e, const pd_train_spec *j, pd_eval_result *r, char *err, size_t errlen) {
    int n = j->eval.n;
    const pd_train_example *ex = j->eval.ex;
    const pd_qa_gold *gold = j->eval.gold;
    pd_adapter *a = pd_train_engine_adapter(e);
    pd_ctx *ctx = pd_train_engine_ctx(e);
    const pd_head *head = pd_train_engine_head(e);
    const pd_delta *d = pd_adapter_delta(a);
    int nv = pd_adapter_n_virtual(a);
    float *z = NULL;
    int zcap = 0;
    pd_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    pd_item **ip = calloc((size_t)(n ? n : 1), sizeof *ip);
    if (!items || !ip) { free(items); free(ip); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    double loss = 0, em = 0, f1 = 0;
    pd_status st = PD_OK;
    for (int i = 0; i < n && !st;) {
        int k;
        if ((st = pd_train_engine_infer(e, ex, i, n, EVAL_TOKENS, &k, err, errlen))) break;
        for (int q = i; q < k && !st; q++) {
            int L = ex[q].len;
            if (2 * L > zcap) {
                free(z);
                zcap = 2 * L;
                if (!(z = malloc(sizeof(float) * (size_t)zcap))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            }
            if (pd_ctx_head(ctx, q - i, head, z, 2 * L) != 2 * L) { st = pd_err(err, errlen, PD_ERR_MISMATCH, "the head does not fit"); break; }
            loss += 0.5 * (xent(z, L, ex[q].start) + xent(z + L, L, ex[q].end));
        }
        i = k;
    }
    pd_opts po = {0};
    po.max_length = j->max_seq_len;
    po.doc_stride = j->doc_stride;
    po.max_answer_length = EVAL_MAX_ANSWER;
    po.top_k = 1;
    for (int i = 0; i < n && !st;) {
        int k = i, rows = 0;
        while (k < n && !st) {
            pd_input in = {0};
            in.question = gold[k].question;
            in.context = gold[k].context;
            if ((st = pd_item_encode(pd_train_engine_base(e), PD_TASK_QA, &in, &po, nv, &items[k], err, errlen))) break;
            items[k].delta = d;
            items[k].head = head;
            ip[k - i] = &items[k];
            rows += pd_item_tokens(&items[k]); /* prompt tokens included (items[k].delta) */
            k++;
            if (rows >= EVAL_TOKENS) break;
        }
        if (!st && pd_train_engine_stopped(e)) st = pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
        if (!st) st = pd_predict(ctx, ip, k - i, &po, err, errlen);
        for (int q = i; q < k && !st; q++) {
            const char *pred = items[q].n_answers > 0 ? items[q].answers[0].text : "";
            double bem = 0, bf1 = 0;
            for (int g = 0; g < gold[q].n_answers; g++) {
                double em1, f11;
                squad_score(pred, gold[q].answers[g], &em1, &f11);
                if (em1 > bem) bem = em1;
                if (f11 > bf1) bf1 = f11;
            }
            em += bem;
            f1 += bf1;
        }
        for (int q = i; q < k; q++) pd_item_free(&items[q]);
        i = k;
    }
    for (int q = 0; q < n; q++) pd_item_free(&items[q]); /* after an error: whatever is left */
    free(items);
    free(ip);
    free(z);
    if (!st) {
        r->accuracy = em / n;
        r->f1 = f1 / n;
        r->loss = loss / n;
    }
    return st;
}

pd_status pd_train_evaluate(pd_train_engine *e, const pd_train_spec *s, pd_eval_result *r, char *err, size_t errlen) {
    pd_train_engine_set_training(e, 0);
    pd_status st = s->task == PD_TASK_CLS ? eval_cls(e, s, r, err, errlen) : eval_qa(e, s, r, err, errlen);
    pd_train_engine_set_training(e, 1);
    return st;
}
