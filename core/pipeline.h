/* pipeline.h - from user inputs to encoder sequences and back to results: tokenization,
 * truncation, question-answering windows, label scores and answer spans.
 *
 * The flow: pd_item_encode() turns one input into one or more windows (QA contexts longer
 * than the window are split with a stride, as Hugging Face's question-answering pipeline
 * does); the caller sets item->delta / item->head; pd_predict() runs the windows of many items
 * as one batch and fills each item's results.
 *
 * Ownership: an item owns its windows and results; pd_item_free releases them.
 * Thread-safety: items are not shared; pd_predict uses the caller's pd_ctx. */
#ifndef PD_PIPELINE_H
#define PD_PIPELINE_H

#include "model.h"

typedef struct pd_input {
    const char *text, *text_pair;   /* classification; text_pair may be NULL */
    const char *question, *context; /* question answering */
} pd_input;

typedef struct pd_opts {
    int max_length;        /* tokens per sequence incl. special tokens; 0 = the model's maximum */
    int doc_stride;        /* QA: overlapping context tokens between windows; 0 = min(max_length/2, 128) */
    int max_answer_length; /* QA: longest answer in tokens; 0 = 15 */
    int top_k;             /* classification: scores listed (0 = all); QA: answers returned (0 = 1) */
    int no_truncate;       /* classification: refuse a longer input (PD_ERR_TOO_LARGE) instead of cutting it */
    int max_tokens;        /* QA: most tokens one input's windows may hold (the server's --max-batch-tokens);
                            * beyond it PD_ERR_TOO_LARGE, found before the windows are made. 0 = no limit */
} pd_opts;

typedef struct pd_window {
    int32_t *ids, *type_ids; /* (len) */
    int32_t *src;            /* (len) 0 = first text / question, 1 = pair / context, -1 = special */
    int32_t *tstart, *tend;  /* (len) byte offsets of the token in its source text, -1 for specials */
    int32_t *word;           /* (len) word index in its source text (tokenizers' word_ids), -1 for specials */
    int len;
} pd_window;

typedef struct pd_answer {
    char *text;       /* the answer, a substring of the context, widened to whole words as the
                       * Hugging Face QA pipeline does (align_to_words) */
    int start, end;   /* character (code point) offsets into the context */
    float score;
} pd_answer;

typedef struct pd_item {
    pd_task task;
    const pd_delta *delta; /* set by the caller; NULL = bare base */
    const pd_head *head;   /* set by the caller; must match task */
    int n_win;
    pd_window *win;
    int truncated;         /* classification: the input was cut to max_length */
    char *context;         /* QA: copy of the context, for answers and offsets */
    size_t context_len;
    /* classification results */
    float *logits;         /* (n_logits) */
    int n_logits;
    /* QA results */
    float *start_logits, *end_logits; /* first window, every token: (win[0].len) */
    pd_answer *answers;    /* best first */
    int n_answers;
} pd_item;

/* Encodes one input for task into it (zeroed by the caller or freshly allocated). n_virtual is
 * the number of prompt/prefix tokens the item's delta adds; windows leave room for them.
 * Texts are tokenized only as far as the result needs (pd_tokenizer_tokenize_max): a text cut to
 * max_length, or a QA context past o->max_tokens, costs memory for the tokens kept, not for
 * the whole text.
 * PD_ERR_INVALID with a message for inputs that do not fit the task (missing text, empty
 * context, question too long, invalid UTF-8). */
pd_status pd_item_encode(const pd_model *m, pd_task task, const pd_input *in, const pd_opts *o, int n_virtual,
                         pd_item *it, char *err, size_t errlen);
void pd_item_free(pd_item *it); /* frees contents, not the struct; NULL is a no-op */

/* Rows an encoded item adds to a batch: its windows' tokens plus, per window, the soft-prompt
 * tokens of its delta (set it first). */
int pd_item_tokens(const pd_item *it);

/* Frees the results pd_predict filled in, so the item can run again. */
void pd_item_clear_results(pd_item *it);

/* ==== Preparing a request's items (the server's /predict and `peftd predict`) ==== */

/* The task of a request: forced (> PD_TASK_NONE), else the adapter's own (own), else the
 * inputs' shape. */
pd_task pd_predict_task(int forced, pd_task own, pd_task shape);

/* The head that answers task for delta d: d's own when it has one for task, else the base
 * model's; NULL when neither has one. */
const pd_head *pd_head_for(const pd_model *m, const pd_delta *d, pd_task task);

/* Prepares one input of shape (what pd_json_input says it is) for task and delta d (NULL: the
 * bare base): checks the shape fits the task, picks the head, encodes (room left for d's virtual
 * tokens), sets item->delta and item->head. it is overwritten. PD_ERR_MISMATCH (a QA input for
 * classification or the reverse), PD_ERR_UNSUPPORTED (no head for the task), else
 * pd_item_encode's errors. */
pd_status pd_item_prepare(const pd_model *m, const pd_delta *d, pd_task task, const pd_input *in, pd_task shape, const pd_opts *o,
                          pd_item *it, char *err, size_t errlen);

/* ==== Running ==== */

/* Runs all windows of items[0..n) through one forward pass and fills their results. */
pd_status pd_predict(pd_ctx *c, pd_item *const *items, int n, const pd_opts *o, char *err, size_t errlen);

/* pd_predict over a batch whose items belong to groups (requests, input lines): group[i] is
 * items[i]'s, a group's items adjacent. When the batch fails and holds
 * more than one group, each group runs again alone (its results cleared first), so one bad
 * group cannot fail another. failed(first, count, st, err, arg) is called for each group that fails (for the
 * whole batch when it holds one group). Returns PD_OK when every item has results. */
pd_status pd_predict_groups(pd_ctx *c, pd_item *const *items, int n, const int *group, const pd_opts *o,
                            void (*failed)(int first, int count, pd_status st, const char *err, void *arg), void *arg);

/* Converts a byte offset in UTF-8 text into a code point offset. */
int pd_utf8_chars(const char *s, size_t bytes);

#endif
