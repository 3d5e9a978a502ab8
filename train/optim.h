/* optim.h - the optimizer side of training: AdamW as torch.optim.AdamW computes it, the linear
 * warmup / linear decay schedule of transformers' get_linear_schedule_with_warmup, global
 * gradient-norm clipping as torch.nn.utils.clip_grad_norm_, and the optimizer state file of a
 * checkpoint.
 *
 * The formulas are written out in optim.c next to the code; tests/test_trainer.c checks them
 * against values computed by hand from the same torch formulas.
 *
 * Ownership: a pd_adamw holds the first and second moments (m, v) of every parameter tensor of
 * one trainable adapter and is freed with pd_adamw_free; it never owns the adapter.
 * Thread-safety: none; a pd_adamw and its adapter are used by one trainer thread at a time. */
#ifndef PD_OPTIM_H
#define PD_OPTIM_H

#include "trainable.h"

/* ==== Pure formulas ==== */

/* One AdamW step (torch.optim.AdamW, amsgrad off) on n floats, t = the step number after this
 * update (1 for the first). In order: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
void pd_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long t, double lr, double wd, double beta1,
                     double beta2, double eps);

/* The multiplier of the base learning rate before optimizer step `step` (0-based count of steps
 * already taken): step / warmup during warmup, then (total - step) / (total - warmup), floored
 * at 0. So with warmup > 0 the very first step has lr 0, exactly as transformers does. */
double pd_lr_lambda(long step, long warmup, long total);

/* transformers' TrainingArguments.get_warmup_steps: ceil(total * ratio). */
long pd_warmup_steps(double ratio, long total);

/* ==== Over an adapter's parameters ==== */

/* The L2 norm over the gradients of every parameter tensor (the norm of the per-tensor norms,
 * as clip_grad_norm_ computes it, in double). */
double pd_grad_norm(pd_adapter *a);

/* Scales every gradient by max_norm / (norm + 1e-6) when that is below 1 (torch's
 * clip_grad_norm_). Returns the norm before clipping. max_norm <= 0 disables clipping. */
double pd_grad_clip(pd_adapter *a, double max_norm);

typedef struct pd_adamw pd_adamw;

/* Moments for every parameter tensor of a (zeroed, step 0). NULL on allocation failure. The
 * adapter's parameter tensors must not change in number or size afterwards. */
pd_adamw *pd_adamw_new(pd_adapter *a, double beta1, double beta2, double eps, double weight_decay);
void pd_adamw_free(pd_adamw *o); /* NULL is a no-op */

/* One step with learning rate lr on every parameter tensor of a (weight decay only on tensors
 * whose decay flag is set), then pd_adapter_params_changed(a). */
void pd_adamw_step(pd_adamw *o, pd_adapter *a, double lr);
long pd_adamw_steps(const pd_adamw *o); /* steps taken */

/* Writes the parameters (param.<name>), moments (m.<name>, v.<name>) and the step count
 * (metadata "step") to a safetensors file at path, plus n_meta extra metadata key/value pairs.
 * The caller provides atomicity (temporary name, fsync, rename). PD_ERR_IO / PD_ERR_NOMEM. */
pd_status pd_adamw_save(const pd_adamw *o, pd_adapter *a, const char *path, const char *const *meta_kv, int n_meta,
                        char *err, size_t errlen);

/* Restores what pd_adamw_save wrote into o and a's parameters (then params_changed), matching
 * tensors by name. PD_ERR_FORMAT if a tensor is missing or has another size. */
pd_status pd_adamw_load(pd_adamw *o, pd_adapter *a, const char *path, char *err, size_t errlen);

#endif
