/* fuzz_predict_body.c - libFuzzer target: a POST /predict body through the functions
 * server/routes_predict.c reads it with, in the route's order: pd_json_parse (strict JSON, the
 * cost budget), the option fields with pd_json_int in the route's ranges, each input with
 * pd_json_input, pd_predict_task, then pd_item_prepare (task check, head, tokenize, windows) on
 * the generated base model. What it leaves out is the route's glue (pd_req, the registry: the
 * body's "adapter" is only type-checked here), not the parsing.
 * Checks: a failure has a non-empty UTF-8 message; every prepared item has windows within
 * max_length; at most MAX_INPUTS inputs are prepared (the route's --max-queue default). Input:
 * the body. scripts/fuzz.sh seeds it with the hostile suite's /predict bodies and examples. */
#include "fuzz_base.h"
#include "json.h"
#include "jsonio.h"
#include "pipeline.h"

#include <string.h>

#define MAX_INPUTS 64

static pd_model *base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    base = fuzz_base();
    return 0;
}

static void check_err(pd_status st, const char *err) {
    if (st == PD_OK) return;
    if (!err[0] || !pd_utf8_valid(err, strlen(err))) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    char err[512] = "";
    cJSON *json = NULL;
    pd_status st = pd_json_parse((const char *)in, size, &json, err, sizeof err);
    check_err(st, err);
    if (st || !cJSON_IsObject(json)) goto out;
    const pd_config *cfg = pd_model_config(base);
    pd_opts opts = {0};
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(json, "adapter");
    if (ja && !cJSON_IsNull(ja) && !cJSON_IsString(ja)) goto out;
    if ((st = pd_json_int(json, "top_k", "", 0, 100, PD_ERR_INVALID, &opts.top_k, err, sizeof err)) ||
        (st = pd_json_int(json, "max_answer_length", "", 0, cfg->max_tokens, PD_ERR_INVALID, &opts.max_answer_length, err, sizeof err)) ||
        (st = pd_json_int(json, "max_length", "", 0, cfg->max_tokens, PD_ERR_INVALID, &opts.max_length, err, sizeof err)) ||
        (st = pd_json_int(json, "doc_stride", "", 0, cfg->max_tokens, PD_ERR_INVALID, &opts.doc_stride, err, sizeof err))) {
        check_err(st, err);
        goto out;
    }
    int forced = PD_TASK_NONE;
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(json, "task");
    if (jt && cJSON_IsString(jt) && jt->valuestring) forced = pd_task_parse(jt->valuestring);
    if (forced < PD_TASK_NONE) forced = PD_TASK_NONE;
    const cJSON *jin = cJSON_GetObjectItemCaseSensitive(json, "inputs");
    if (!jin || cJSON_IsNull(jin)) goto out;
    int list = cJSON_IsArray(jin), n = list ? cJSON_GetArraySize(jin) : 1;
    if (n == 0 || n > MAX_INPUTS) goto out;
    pd_input ins[MAX_INPUTS];
    pd_task shapes[MAX_INPUTS];
    const cJSON *v = list ? jin->child : jin;
    for (int i = 0; i < n; i++, v = list ? v->next : NULL) {
        if (!v) abort(); /* cJSON_GetArraySize and the list disagree */
        if ((st = pd_json_input(v, "inputs", &ins[i], &shapes[i], err, sizeof err))) {
            check_err(st, err);
            goto out;
        }
    }
    pd_task task = pd_predict_task(forced, PD_TASK_NONE, shapes[0]);
    if (!pd_head_for(base, NULL, task)) goto out;
    int max_len = opts.max_length ? opts.max_length : cfg->max_tokens;
    for (int i = 0; i < n; i++) {
        pd_item it;
        memset(&it, 0, sizeof it);
        err[0] = 0;
        st = pd_item_prepare(base, NULL, task, &ins[i], shapes[i], &opts, &it, err, sizeof err);
        check_err(st, err);
        if (st == PD_OK) {
            if (it.n_win < 1 || pd_item_tokens(&it) < 1) abort();
            for (int w = 0; w < it.n_win; w++)
                if (it.win[w].len < 1 || it.win[w].len > max_len) abort();
        }
        pd_item_free(&it);
    }
out:
    cJSON_Delete(json);
    return 0;
}
