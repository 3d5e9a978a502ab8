/* mlm.h - the masked-language-model head of Hugging Face's BertForMaskedLM, forward and backward.
 *
 * For the rows of the final hidden states that were masked: t = dense(h), u = act(t) (the
 * config's hidden_act), v = LayerNorm(u), logits = v E^T + bias, where E is the word embedding
 * matrix (the decoder is tied to it) and bias is cls.predictions.bias; then softmax cross-entropy
 * against the original tokens. Logits exist only for the masked rows, never for the whole batch.
 * The weights are those of a pd_params with the head (pd_params_new(cfg, 1)).
 *
 * Ownership and threads: a pd_mlm is scratch memory for one thread at a time (it grows to the
 * largest call); the parameters are the caller's. */
#ifndef PD_MLM_H
#define PD_MLM_H

#include "model.h"

typedef struct pd_mlm pd_mlm;

pd_mlm *pd_mlm_new(void);        /* NULL on allocation failure */
void pd_mlm_free(pd_mlm *h);     /* NULL is a no-op */

/* Runs the head of p on n rows of hidden ((rows, hidden) matrix; rows[i] picks the row of
 * masked token i) against labels[i] (its original id). *loss_sum gets the summed cross-entropy,
 * *correct (may be NULL) the tokens whose largest logit is the label. With dhidden != NULL, adds
 * scale * d(loss_sum)/d(hidden) into dhidden (same layout as hidden), and with g != NULL also
 * scale * d(loss_sum)/d(parameter) into g's head tensors and word embeddings (the decoder's
 * share of the tied matrix). PD_ERR_INVALID (a label or row out of range, p without a head),
 * PD_ERR_NOMEM. */
pd_status pd_mlm_loss(pd_mlm *h, pd_pool *pool, const pd_params *p, const float *hidden, int hidden_rows,
                      const int32_t *rows, const int32_t *labels, int n, float scale, float *dhidden, const pd_params *g,
                      double *loss_sum, int *correct, char *err, size_t errlen);

#endif
