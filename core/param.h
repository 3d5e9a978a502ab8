/* param.h - a trainable fp32 tensor as the optimizer sees it: its values, its gradient, its
 * size and whether weight decay applies. Whatever trains (an adapter, the encoder's own
 * weights) hands the optimizer (train/optim.h) an array of these.
 *
 * Ownership: a pd_param only points; the arrays belong to whoever listed them and must stay at
 * the same address while an optimizer uses them. Thread-safety: plain data. */
#ifndef PD_PARAM_H
#define PD_PARAM_H

#include <stddef.h>

typedef struct pd_param {
    float *data;      /* (n) */
    float *grad;      /* (n) accumulated by the backward pass */
    size_t n;
    int decay;        /* AdamW decays it (HF Trainer: not a bias, not a LayerNorm parameter) */
    const char *name; /* unique within one list: keys the optimizer state file */
} pd_param;

#endif
