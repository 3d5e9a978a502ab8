/* trainable.h - adapters that learn: fresh or cloned adapters with gradient storage and the
 * training callbacks of their pd_delta (linear_bwd, sublayer_bwd, prompt_bwd, prefix_bwd; see
 * core/model.h), and frozen snapshots for publishing.
 *
 * A trainable adapter is a private, mutable pd_adapter owned by one trainer thread: its
 * parameters change after every optimizer step, so it is never published or shared. To publish,
 * take a snapshot (an ordinary immutable adapter, deep-copied, no gradients).
 * Thread-safety: none; one thread at a time uses a trainable adapter. */
#ifndef PD_TRAINABLE_H
#define PD_TRAINABLE_H

#include "adapter.h"

#include <cJSON.h>

/* Creates a fresh adapter for base, initialised as PEFT / AdapterHub do (seeded, so the same
 * seed gives the same adapter): LoRA A Kaiming-uniform (a = sqrt(5)) and B zero; IA3 ones;
 * prefix / prompt embeddings random normal (or from text: config "prompt_init_text"); bottleneck
 * down-projection random and up-projection zero (output equals the base at step 0).
 * config holds the method's hyperparameters with PEFT / AdapterHub key names:
 *   lora: r, lora_alpha, lora_dropout, target_modules (list or regex), use_rslora, bias
 *   ia3: target_modules, feedforward_modules
 *   prefix_tuning: num_virtual_tokens, prefix_projection, encoder_hidden_size
 *   prompt_tuning: num_virtual_tokens, prompt_init_text (optional)
 *   bottleneck: "architecture" seq_bn | double_seq_bn | par_bn, reduction_factor, non_linearity
 * The adapter gets its own head for task (classification with labels[0..num_labels), or QA),
 * initialised from the base checkpoint's head when it has one of the same shape, else randomly.
 * Errors name the field: PD_ERR_INVALID (r <= 0, too many virtual tokens for max positions,
 * unknown target module, ...), PD_ERR_UNSUPPORTED. */
pd_status pd_adapter_new_trainable(const pd_model *base, pd_method method, const cJSON *config, pd_task task,
                                   char *const *labels, int num_labels, uint64_t seed, pd_adapter **out, char *err,
                                   size_t errlen);

/* A trainable deep copy of an existing adapter (training continues from it). */
pd_status pd_adapter_clone_trainable(const pd_adapter *src, pd_adapter **out, char *err, size_t errlen);

/* Parameters for the optimizer: n_param_tensors() of them, each with data, grad and size.
 * decay is 0 for tensors AdamW should not decay (biases, LayerNorm weights). */
int pd_adapter_n_param_tensors(const pd_adapter *a);
void pd_adapter_param(pd_adapter *a, int i, float **data, float **grad, size_t *n, int *decay, const char **name);

void pd_adapter_zero_grad(pd_adapter *a);

/* Training mode on: dropout (lora_dropout) applies, with masks drawn from seed + step so a run
 * is deterministic. Off: inference behaviour. */
void pd_adapter_set_training(pd_adapter *a, int on, uint64_t seed);

/* Must be called after the optimizer changed parameters: recomputes derived buffers (prefix
 * reparameterisation through the MLP, folded prefixes, scalings). */
void pd_adapter_params_changed(pd_adapter *a);

/* An immutable deep copy for publishing (prefix projection folded into plain prefixes). */
pd_status pd_adapter_snapshot(const pd_adapter *a, pd_adapter **out, char *err, size_t errlen);

#endif
