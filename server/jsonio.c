/* jsonio.c - inputs and results as JSON. See jsonio.h. */
#include "jsonio.h"

#include <math.h>
#include <string.h>

/* ==== Inputs ==== */

pd_status pd_json_input(const cJSON *v, const char *what, pd_input *in, pd_task *shape, char *err, size_t errlen) {
    memset(in, 0, sizeof *in);
    if (cJSON_IsString(v) && v->valuestring) {
        in->text = v->valuestring;
        *shape = PD_TASK_CLS;
        return PD_OK;
    }
    if (cJSON_IsArray(v)) { /* TEI's pair form ["text", "text_pair"] */
        const cJSON *a = v->child, *b = a ? a->next : NULL;
        if (!cJSON_IsString(a) || !cJSON_IsString(b) || b->next || !a->valuestring || !b->valuestring)
            return pd_err(err, errlen, PD_ERR_INVALID, "%s: a pair must be a list of two strings [\"text\", \"text_pair\"]", what);
        in->text = a->valuestring;
        in->text_pair = b->valuestring;
        *shape = PD_TASK_CLS;
        return PD_OK;
    }
    if (!cJSON_IsObject(v))
        return pd_err(err, errlen, PD_ERR_INVALID,
                      "%s must be a string, [\"text\", \"text_pair\"], {\"text\": ..., \"text_pair\": ...} or {\"question\": ..., "
                      "\"context\": ...}",
                      what);
    static const char *const KEYS[] = {"text", "text_pair", "question", "context", NULL};
    pd_status st;
    char where[72];
    snprintf(where, sizeof where, "%s.", what);
    if ((st = pd_json_known(v, where, "field", KEYS, err, errlen))) return st;
    if ((st = pd_json_str(v, "text", where, &in->text, err, errlen)) || (st = pd_json_str(v, "text_pair", where, &in->text_pair, err, errlen)) ||
        (st = pd_json_str(v, "question", where, &in->question, err, errlen)) || (st = pd_json_str(v, "context", where, &in->context, err, errlen)))
        return st;
    int cls = in->text || in->text_pair, qa = in->question || in->context;
    if (cls && qa)
        return pd_err(err, errlen, PD_ERR_INVALID, "%s mixes \"text\" with \"question\"/\"context\"; give one or the other", what);
    if (qa) {
        if (!in->question) return pd_err(err, errlen, PD_ERR_INVALID, "%s.question is missing", what);
        if (!in->context) return pd_err(err, errlen, PD_ERR_INVALID, "%s.context is missing", what);
        *shape = PD_TASK_QA;
        return PD_OK;
    }
    if (!in->text) return pd_err(err, errlen, PD_ERR_INVALID, "%s.text is missing", what);
    *shape = PD_TASK_CLS;
    return PD_OK;
}

/* ==== Results ==== */

static cJSON *float_array(const float *x, int n) {
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_CreateNumber((double)x[i]);
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static const char *label_of(const pd_head *h, int i, char *buf, size_t cap) {
    return pd_label_name(h && h->labels && i < h->num_labels ? h->labels[i] : NULL, i, buf, cap);
}

/* Scores as the Hugging Face text-classification pipeline computes them: softmax over the
 * labels, or a sigmoid for a single-output head; listed best first (ties in label order). */
static cJSON *cls_result(const pd_item *it, int return_logits, int top_k) {
    int n = it->n_logits;
    double *p = malloc(sizeof(double) * (size_t)(n ? n : 1));
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    cJSON *o = cJSON_CreateObject();
    if (!p || !order || !o) goto fail;
    if (n == 1) {
        p[0] = 1.0 / (1.0 + exp(-(double)it->logits[0]));
    } else if (n > 1) {
        double mx = it->logits[0], s = 0;
        for (int i = 1; i < n; i++) if (it->logits[i] > mx) mx = it->logits[i];
        for (int i = 0; i < n; i++) s += p[i] = exp((double)it->logits[i] - mx);
        for (int i = 0; i < n; i++) p[i] /= s;
    }
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && p[order[j - 1]] < p[i]) { order[j] = order[j - 1]; j--; }
        order[j] = i;
    }
    char buf[PD_LABEL_CAP];
    if (n > 0) {
        if (!cJSON_AddStringToObject(o, "label", label_of(it->head, order[0], buf, sizeof buf))) goto fail;
        if (!cJSON_AddNumberToObject(o, "score", p[order[0]])) goto fail;
    } else {
        if (!cJSON_AddNullToObject(o, "label") || !cJSON_AddNumberToObject(o, "score", 0)) goto fail;
    }
    cJSON *scores = cJSON_AddArrayToObject(o, "scores");
    if (!scores) goto fail;
    int shown = top_k > 0 && top_k < n ? top_k : n;
    for (int i = 0; i < shown; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(scores, e)) { cJSON_Delete(e); goto fail; }
        if (!cJSON_AddStringToObject(e, "label", label_of(it->head, order[i], buf, sizeof buf))) goto fail;
        if (!cJSON_AddNumberToObject(e, "score", p[order[i]])) goto fail;
    }
    if (return_logits) {
        cJSON *l = float_array(it->logits, n);
        if (!l || !cJSON_AddItemToObject(o, "logits", l)) { cJSON_Delete(l); goto fail; }
    }
    if (it->truncated && !cJSON_AddTrueToObject(o, "truncated")) goto fail;
    free(p);
    free(order);
    return o;
fail:
    free(p);
    free(order);
    cJSON_Delete(o);
    return NULL;
}

static int add_answer(cJSON *o, const pd_answer *a) {
    return cJSON_AddStringToObject(o, "answer", a ? a->text : "") && cJSON_AddNumberToObject(o, "score", a ? a->score : 0) &&
           cJSON_AddNumberToObject(o, "start", a ? a->start : 0) && cJSON_AddNumberToObject(o, "end", a ? a->end : 0);
}

static cJSON *qa_result(const pd_item *it, int return_logits, int top_k) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (!add_answer(o, it->n_answers ? &it->answers[0] : NULL)) goto fail;
    if (top_k > 1) {
        cJSON *all = cJSON_AddArrayToObject(o, "answers");
        if (!all) goto fail;
        for (int i = 0; i < it->n_answers; i++) {
            cJSON *e = cJSON_CreateObject();
            if (!e || !cJSON_AddItemToArray(all, e)) { cJSON_Delete(e); goto fail; }
            if (!add_answer(e, &it->answers[i])) goto fail;
        }
    }
    if (return_logits) {
        int L = it->n_win > 0 ? it->win[0].len : 0;
        cJSON *s = float_array(it->start_logits, it->start_logits ? L : 0);
        if (!s || !cJSON_AddItemToObject(o, "start_logits", s)) { cJSON_Delete(s); goto fail; }
        cJSON *e = float_array(it->end_logits, it->end_logits ? L : 0);
        if (!e || !cJSON_AddItemToObject(o, "end_logits", e)) { cJSON_Delete(e); goto fail; }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

cJSON *pd_json_result(const pd_item *it, int return_logits, int top_k) {
    return it->task == PD_TASK_QA ? qa_result(it, return_logits, top_k) : cls_result(it, return_logits, top_k);
}

cJSON *pd_json_error(const char *code, const char *message) {
    cJSON *o = cJSON_CreateObject();
    cJSON *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
    if (!e || !cJSON_AddStringToObject(e, "code", code) || !cJSON_AddStringToObject(e, "message", message)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
