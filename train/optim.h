/* optim.h - the optimizer side of training, on plain fp32 parameter arrays (core/param.h):
 * AdamW as torch.optim.AdamW computes it, the linear warmup / linear decay schedule of
 * transformers' get_linear_schedule_with_warmup, global gradient-norm clipping as
 * torch.nn.utils.clip_grad_norm_, and the optimizer state file of a checkpoint. It knows
 * nothing of adapters or models: anything that lists its parameters as pd_param trains with it
 * (an adapter: pd_adapter_params; the encoder's weights: pretraining).
 *
 * The formulas are written out in optim.c next to the code; tests/test_trainer.c checks them
 * against values computed by hand from the same torch formulas.
 *
 * Ownership: a pd_adamw keeps a copy of the parameter list it was made with (the pointers, not
 * the arrays: they must stay where they are, names included) and the first and second moments
 * (m, v) of every tensor; pd_adamw_free frees what it owns.
 * Thread-safety: none; a pd_adamw and its parameters are used by one thread at a time (which
 * may spread one step over a pd_pool). */
#ifndef PD_OPTIM_H
#define PD_OPTIM_H

#include "kernels.h"
#include "param.h"

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

/* ==== Over a parameter list ==== */

/* The L2 norm over the gradients of p[0..n) (the norm of the per-tensor norms, as
 * clip_grad_norm_ computes it, in double). */
double pd_grad_norm(const pd_param *p, int n);

/* Scales every gradient by max_norm / (norm + 1e-6) when that is below 1 (torch's
 * clip_grad_norm_). Returns the norm before clipping. max_norm <= 0 disables clipping. */
double pd_grad_clip(const pd_param *p, int n, double max_norm);

typedef struct pd_adamw pd_adamw;

/* AdamW over p[0..n) with zeroed moments (step 0). weight_decay applies to the tensors whose
 * decay flag is set. NULL on allocation failure. */
pd_adamw *pd_adamw_new(const pd_param *p, int n, double beta1, double beta2, double eps, double weight_decay);
void pd_adamw_free(pd_adamw *o); /* NULL is a no-op */

/* One step with learning rate lr on every tensor, spread over pool (NULL: this thread; the
 * result is the same). The caller then refreshes anything derived from the parameters (an
 * adapter: pd_adapter_params_changed). */
void pd_adamw_step(pd_adamw *o, pd_pool *pool, double lr);
long pd_adamw_steps(const pd_adamw *o); /* steps taken */

/* Writes the parameters (param.<name>), moments (m.<name>, v.<name>) and the step count
 * (metadata "step") to a safetensors file at path (fsync'd), plus n_meta extra metadata
 * key/value pairs. The caller provides atomicity (a temporary name or directory, then rename).
 * PD_ERR_IO / PD_ERR_NOMEM. */
pd_status pd_adamw_save(const pd_adamw *o, const char *path, const char *const *meta_kv, int n_meta, char *err,
                        size_t errlen);

/* Restores what pd_adamw_save wrote into the moments, the step count and the parameters,
 * matching tensors by name (the caller then refreshes what derives from the parameters, as
 * after a step). PD_ERR_FORMAT if a tensor is missing or has another size. */
pd_status pd_adamw_load(pd_adamw *o, const char *path, char *err, size_t errlen);

/* The same state file for moments kept elsewhere (train/pretrain.c keeps all of them in one
 * flat array): p[0..n) with their moments m[i], v[i] (p[i].n floats each) and the step. */
pd_status pd_adamw_state_write(const char *path, const pd_param *p, int n, float *const *m, float *const *v, long step,
                               const char *const *meta_kv, int n_meta, char *err, size_t errlen);
pd_status pd_adamw_state_read(const char *path, const pd_param *p, int n, float *const *m, float *const *v, long *step,
                              char *err, size_t errlen);

#endif
