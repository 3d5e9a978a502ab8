/* jsonio.h - engine inputs and results as JSON, shared by the CLI (`peftd predict`) and HTTP.
 *
 * An input is a string (classification text), a pair ["text", "text_pair"] (TEI's form),
 * {"text", "text_pair"?} or {"question", "context"} (other fields refused). A classification
 * result is {"label", "score", "scores": [{"label","score"}...] (descending), "logits"?
 * (label-id order), "truncated": true when the input was cut}; a question-answering result is {"answer",
 * "score", "start", "end"} (character offsets into the context), "answers" (the best top_k,
 * when top_k > 1) and "start_logits"/"end_logits"? (first window, every token).
 *
 * Ownership: functions returning cJSON * give the caller a tree to cJSON_Delete (NULL when
 * out of memory). pd_json_input points into the cJSON value it reads: keep it alive.
 * Thread-safety: no shared state; cJSON_GetErrorPtr (a process global) is never used. */
#ifndef PD_JSONIO_H
#define PD_JSONIO_H

#include "json.h"
#include "pipeline.h"

/* Reads one input. *shape gets PD_TASK_CLS or PD_TASK_QA. what names the value in messages
 * ("inputs[3]"). Returns PD_OK or PD_ERR_INVALID naming the offending field. */
pd_status pd_json_input(const cJSON *v, const char *what, pd_input *in, pd_task *shape, char *err, size_t errlen);

/* The result object of an item that pd_predict filled. top_k: classification scores listed
 * (0 = all); QA: answers returned (the first also fills the top-level fields). */
cJSON *pd_json_result(const pd_item *it, int return_logits, int top_k);

/* {"error": {"code": code, "message": message}} */
cJSON *pd_json_error(const char *code, const char *message);

#endif
