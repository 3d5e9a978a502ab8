/* peft.h - the Hugging Face PEFT file format, shared by its methods (lora.c: LoRA and IA3;
 * prompt.c: prefix tuning, prompt tuning, P-tuning): tensor and module names as PEFT's
 * save_pretrained writes them, the task head saved through modules_to_save, and the parts of a
 * fresh adapter's files every method has. Not a public header: only adapters/ includes it.
 *
 * Names: PEFT saves "base_model.model.<module path>.lora_A.weight" (the adapter name removed;
 * some tools keep ".default", which is accepted), IA3 "...<module>.ia3_l", heads saved through
 * modules_to_save as "base_model.model.classifier.weight", prompt learning methods
 * "prompt_embeddings" (+ "base_model.classifier.*" heads: their prefix is "base_model.").
 * Module paths are those of the Hugging Face model the adapter was trained on
 * ("bert.encoder.layer.3.attention.self.query"; without "bert." when trained on AutoModel).
 * Thread-safety: pure functions, or functions of one adapter being built. */
#ifndef PD_PEFT_H
#define PD_PEFT_H

#include "adapter_impl.h"

/* Where the keys of a config come from, for messages: the adapter's file, or the config a caller
 * gives for a fresh adapter. */
#define PD_PEFT_CFG "adapter_config.json: "
#define PD_PEFT_USER "config."

/* ==== Loading: what every PEFT adapter has ==== */

/* Reads peft_type and task_type of a->config into a->method and a->task, and checks
 * modules_to_save. PD_ERR_UNSUPPORTED for other PEFT types and tasks. */
pd_status pd_peft_begin(pd_adapter *a, char *err, size_t errlen);

/* The config as saving writes it: as loaded, with the labels of the adapter's own
 * classification head under "labels" (an array of names, index = class id). PD_ERR_NOMEM. */
pd_status pd_peft_config_for_save(const pd_adapter *a, cJSON **out);

/* ==== The base model's modules ==== */

const char *pd_peft_arch_prefix(pd_arch a); /* "bert.", "roberta.", "distilbert." */
int pd_peft_is_dist(const pd_adapter *a);
const char *pd_peft_lin_name(const pd_adapter *a, int k); /* linear k of a layer: "attention.self.query", ... */
/* "<P>encoder.layer.<l>[.<suffix>]" (transformer.layer for distilbert) into buf. */
void pd_peft_layer_module(const pd_adapter *a, const char *P, int l, const char *suffix, char *buf, size_t cap);

/* ==== Tensor names ==== */

typedef enum { K_LORA_A, K_LORA_B, K_LORA_BB, K_IA3, K_DORA, K_LORA_EMB, K_PARAM_W, K_PARAM_B, K_PROMPT } pd_peft_tkind;
typedef enum { M_UNKNOWN, M_ENC_LIN, M_ENC_LN, M_EMB_LN, M_POOLER, M_CLS, M_CLS_DENSE, M_CLS_OUT, M_PRE_CLS, M_QA,
               M_OTHER_ARCH, M_ENC_OTHER } pd_peft_mkind;

/* Strips "base_model.model." / "base_model." and ".default" segments. 0, or -1 if too long. */
int pd_peft_norm_name(const char *in, char *out, size_t cap);
/* Splits a normalized name into module path (mod) and kind. */
pd_peft_tkind pd_peft_split_name(const char *n, char *mod, size_t cap);
/* Classifies a module path (as found in the file) for the base architecture. P is the prefix
 * the file uses for the backbone ("bert." or ""). *layer / *idx get the layer and linear or
 * LayerNorm site. *other names the architecture a foreign path belongs to. */
pd_peft_mkind pd_peft_module_kind(const pd_adapter *a, const char *P, const char *mod, int *layer, int *idx, const char **other);
/* The backbone prefix the file's module paths use: "bert." (a model with a head) or "" (AutoModel). */
const char *pd_peft_detect_prefix(const pd_adapter *a, const pd_st_file *st);
/* Refuses a file whose module paths belong to another architecture. */
pd_status pd_peft_arch_scan(const pd_adapter *a, const pd_st_file *st, const char *P, char *err, size_t errlen);
/* v, when present, is a list of strings (or, if allow_string, one regex string). */
pd_status pd_peft_check_str_list(const cJSON *v, const char *what, int allow_string, char *err, size_t errlen);
/* PD_ERR_MISMATCH naming t and both shapes unless t is (d0[, d1]). */
pd_status pd_peft_shape_check(const pd_atensor *t, int ndim, int64_t d0, int64_t d1, char *err, size_t errlen);

/* ==== The head (modules_to_save) ==== */

/* The head tensors a file saved. The slots point at copies of the store's entries, not into
 * a->t: later pd_at_take calls may realloc that array (the tensor data itself never moves). */
#define PD_PEFT_HEAD_SLOTS 12
typedef struct pd_peft_head {
    const pd_atensor *pool_w, *pool_b, *pre_w, *pre_b, *cls_w, *cls_b, *dense_w, *dense_b, *out_w, *out_b, *qa_w, *qa_b;
    pd_atensor copy[PD_PEFT_HEAD_SLOTS];
    int n;
} pd_peft_head;

/* Records a head tensor of kind mk (a head module). */
pd_status pd_peft_head_take(pd_adapter *a, pd_peft_mkind mk, int is_bias, const pd_atensor *t, pd_peft_head *hp, char *err,
                            size_t errlen);
/* Builds the adapter's own head from the head tensors it saved, taking the parts it did not
 * save from the base checkpoint (bert's pooler, distilbert's pre_classifier), and its labels. */
pd_status pd_peft_build_head(pd_adapter *a, const pd_peft_head *hp, const pd_adapter_files *f, char *err, size_t errlen);

/* ==== Fresh adapters ==== */

/* pd_tlist_add recording OOM in *bad. */
float *pd_peft_tl_add(pd_tlist *tl, const char *name, int ndim, int64_t d0, int64_t d1, int *bad);

/* Starts a fresh adapter's adapter_config.json in out->config: checks the user's keys against
 * keys (option names of method, what names them in messages), then the fields every PEFT
 * config has. */
pd_status pd_peft_fresh_config(pd_method m, const char *what, const cJSON *user, const char *const *keys,
                               const pd_fresh_head *fh, pd_fresh *out, char *err, size_t errlen);
/* Ends it: the task head PEFT trains through modules_to_save (prefix: "base_model." for
 * prompt learning methods, else "base_model.model.") and the labels. */
pd_status pd_peft_fresh_head(const pd_model *base, const pd_fresh_head *fh, const char *prefix, pd_rng *rng, pd_fresh *out,
                             char *err, size_t errlen);

#endif
