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
#include "param.h"

#include <cJSON.h>

/* Creates a fresh adapter for base, initialised as PEFT / AdapterHub do (seeded with peftd's own
 * generator, so the same seed gives the same adapter; the draws are not torch's):
 *   LoRA: A kaiming_uniform_(a = sqrt(5)) = U(+-1/sqrt(in)) (or normal(0, 1/r) with
 *     init_lora_weights "gaussian"), B and lora_B.bias zero: the output equals the base's.
 *   IA3: ones (the base's output).
 *   prefix tuning: prompt_embeddings N(0, 1) (nn.Embedding); with prefix_projection the
 *     PrefixEncoder MLP (Embedding N(0, 1), Linear, tanh, Linear with nn.Linear's init) is
 *     trained and folded into prompt_embeddings (pd_adapter_params_changed, snapshots).
 *   prompt tuning: N(0, 1), or the word embeddings of "prompt_init_text" (PEFT's TEXT init:
 *     the text's tokens with special tokens, repeated and cut to num_virtual_tokens).
 *   bottleneck: AdapterHub's init_weights: "bert" (seq_bn, double_seq_bn: down and up
 *     normal(0, 0.02), so step 0 is NOT the base), "mam_adapter" (par_bn: down U(+-1/sqrt(in)),
 *     up zero: the base's output), "houlsby"; biases zero, LayerNorms ones/zeros, scaling ones.
 * config holds the method's hyperparameters with PEFT / AdapterHub key names (NULL: defaults);
 * unknown keys are refused:
 *   lora: r (8), lora_alpha (8), lora_dropout (0), target_modules (list or regex; PEFT's default
 *     for the model type: query/value; q_lin/v_lin for distilbert, which PEFT has no default
 *     for), exclude_modules, use_rslora, bias ("none" | "all" | "lora_only"), lora_bias,
 *     init_lora_weights, layers_to_transform, layers_pattern, rank_pattern, alpha_pattern
 *   ia3: target_modules (key/value/output.dense; k_lin/v_lin/lin2), feedforward_modules
 *     (output.dense; lin2), exclude_modules, init_ia3_weights, layers_to_transform, layers_pattern
 *   prefix_tuning: num_virtual_tokens (20), prefix_projection (false), encoder_hidden_size (hidden)
 *   prompt_tuning: num_virtual_tokens (20), prompt_init_text (or PEFT's prompt_tuning_init
 *     "TEXT" + prompt_tuning_init_text), tokenizer_name_or_path (recorded)
 *   bottleneck: "architecture" seq_bn (default) | double_seq_bn | par_bn | bottleneck, and any
 *     BnConfig key: reduction_factor, non_linearity, mh_adapter, output_adapter,
 *     original_ln_before/after, ln_before/after, residual_before_ln, adapter_residual_before_ln,
 *     scaling, is_parallel, leave_out, init_weights, dropout
 * The adapter gets its own head for task (classification with labels[0..num_labels), or QA;
 * PD_TASK_NONE: none), saved with it (PEFT modules_to_save; AdapterHub head_config.json +
 * model_head.safetensors): the base checkpoint's head where shapes match, else HF's init
 * (normal(0, 0.02), zero bias). num_labels <= 0 takes the base classifier's; labels NULL takes
 * the base's names when the count matches, else LABEL_i.
 * Errors name the field ("config.r must be > 0"): PD_ERR_INVALID (bad values, unknown keys,
 * target modules that are not encoder linears, too many virtual tokens), PD_ERR_UNSUPPORTED
 * (prefix tuning on distilbert, ...), PD_ERR_NOMEM. On success *out holds one reference
 * (pd_adapter_release); on failure *out is NULL. */
pd_status pd_adapter_new_trainable(const pd_model *base, pd_method method, const cJSON *config, pd_task task,
                                   char *const *labels, int num_labels, uint64_t seed, pd_adapter **out, char *err,
                                   size_t errlen);

/* Checks that config (a fresh adapter's hyperparameters, may be NULL) names only keys method
 * accepts (PEFT / AdapterHub names). PD_ERR_INVALID naming the first other key as
 * "config.<key>: unknown <method> option", with a suggestion when one is close. */
pd_status pd_adapter_config_known(pd_method method, const cJSON *config, char *err, size_t errlen);

/* A trainable deep copy of an existing adapter (training continues from it): every tensor of
 * its files becomes a parameter, the head included. A published prefix_projection adapter
 * holds only the folded prefix, so its clone trains prompt_embeddings directly (PEFT cannot
 * continue such an adapter at all); a trainable one's MLP is copied. Outputs equal src's.
 * *out as for pd_adapter_new_trainable; errors PD_ERR_NOMEM (or the loader's, which a valid
 * adapter does not produce). */
pd_status pd_adapter_clone_trainable(const pd_adapter *src, pd_adapter **out, char *err, size_t errlen);

/* The parameters the optimizer trains (train/optim.h), in store order: *n of them (0 and NULL
 * for an adapter that is not trainable), each with data, gradient, size and the tensor's name
 * (as saved; the prefix MLP's "prompt_encoder.*" are never saved). decay is 0 for tensors AdamW
 * should not decay (biases, LayerNorm parameters: HF Trainer's get_decay_parameter_names). The
 * list and the arrays it points to live, in place, as long as the adapter. After changing the
 * values call pd_adapter_params_changed. */
const pd_param *pd_adapter_train_params(pd_adapter *a, int *n);

/* Zeroes every gradient (the head's sinks included). No-op for an adapter that is not trainable. */
void pd_adapter_zero_grad(pd_adapter *a);

/* Training mode on: dropout (LoRA lora_dropout on the LoRA input, AdapterHub dropout on the
 * scaled up-projection) applies. Masks are never stored: each element's is a hash of (seed,
 * forward passes since this call, layer, module, row, column), so the backward pass regenerates
 * the forward pass's masks and a run is deterministic. One training forward pass, then its
 * backward, at a time. Off: inference behaviour. */
void pd_adapter_set_training(pd_adapter *a, int on, uint64_t seed);

/* Must be called after the optimizer changed parameters: recomputes derived buffers (prefix
 * reparameterisation through the MLP into prompt_embeddings, per-layer prefix copies, the
 * embeddings LayerNorm shift, AdapterHub's duplicated adapter_norm_before). */
void pd_adapter_params_changed(pd_adapter *a);

/* An immutable deep copy for publishing: exactly what pd_adapter_save_dir + pd_adapter_load_dir
 * of a would give (prefix projection folded into plain prompt_embeddings, as PEFT saves it), no
 * gradients, one reference in *out. Call after pd_adapter_params_changed. PD_ERR_NOMEM. */
pd_status pd_adapter_snapshot(const pd_adapter *a, pd_adapter **out, char *err, size_t errlen);

/* The gradient head for core's pd_ctx_head_loss: the adapter's own head with w/b pointing at
 * their gradient buffers (zeroed by pd_adapter_zero_grad). Layers the adapter does not own (the
 * base pooler of a bert head) point at scratch sinks: they stay frozen. NULL without an own head
 * or when a is not trainable. */
const pd_head *pd_adapter_head_grad(pd_adapter *a);

#endif
