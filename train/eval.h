/* eval.h - evaluation of a training job's adapter on its evaluation set: accuracy and macro F1
 * for classification, SQuAD exact match and token F1 for question answering (answers predicted
 * through the same pipeline as POST /predict), and the mean loss.
 *
 * Thread-safety: runs on the job's thread with its engine. */
#ifndef PD_TRAIN_EVAL_H
#define PD_TRAIN_EVAL_H

#include "spec.h"

typedef struct pd_eval_result {
    double accuracy; /* classification: accuracy; QA: exact match */
    double f1;       /* classification: macro F1 over the labels present; QA: token F1 */
    double loss;     /* mean cross-entropy (QA: of start and end) */
} pd_eval_result;

/* Evaluates e's adapter on s->eval in inference mode (no dropout), then puts the engine back
 * into training mode. PD_ERR_CANCELLED when the engine's hook stops it, PD_ERR_NOMEM. */
pd_status pd_train_evaluate(pd_train_engine *e, const pd_train_spec *s, pd_eval_result *r, char *err, size_t errlen);

#endif
