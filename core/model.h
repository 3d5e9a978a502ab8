/* model.h - a BERT-family encoder loaded from a Hugging Face checkpoint directory, and its
 * batched forward pass with per-sequence deltas.
 *
 * Loading: DIR/config.json + DIR/model.safetensors (or sharded model-*-of-*.safetensors with
 * model.safetensors.index.json) + the tokenizer files. Architectures bert, distilbert and
 * roberta; heads: sequence classification and extractive QA, when present in the checkpoint.
 * Every linear weight of the encoder is converted once at load into a packed pd_wmat of the
 * model's dtype (fp32, bf16 or int8; core/gemm.h) and its pages of the file are given back;
 * with bf16 and int8 the word embeddings are converted to that type too (int8: one scale per
 * row). The other tensors (position and type embeddings, LayerNorms, biases, the heads and the
 * pooler) stay fp32, read from the read-only mapping (F16/BF16 checkpoints: converted once).
 *
 * Deltas: core knows nothing about adapter files. A pd_delta describes, in core's own terms,
 * what changes for the sequences that name it: a soft prompt prepended to the embeddings,
 * per-layer prefix keys/values, a callback after every linear layer (LoRA, IA3), a callback
 * that replaces a sub-layer's "LayerNorm(h + residual)" (bottleneck adapters), and its own head.
 * adapters/ builds pd_delta values; core calls them. One batch may mix any deltas.
 *
 * Pretraining: pd_params is every weight of a BERT encoder (plus the masked-LM head) as mutable
 * fp32 arrays in one caller-owned buffer; pd_model_from_params builds a pd_model that reads
 * them in place, pd_ctx_set_grad makes pd_backward accumulate the gradient of every encoder
 * weight into a second pd_params, and pd_params_save writes a Hugging Face checkpoint. Its
 * matrices are borrowed fp32 pd_wmats (pd_wmat_borrow: OpenBLAS on the caller's arrays, no
 * packing), so the passes compute the same bits as before packed weights existed.
 *
 * Ownership and threads: pd_model is immutable after pd_model_load and shared read-only by
 * every thread (a model over pd_params sees the values the caller writes between passes). Each
 * thread that runs forward passes owns a pd_ctx (scratch buffers). A pd_delta must stay alive
 * and unchanged while a forward pass uses it. */
#ifndef PD_MODEL_H
#define PD_MODEL_H

#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "names.h"
#include "safetensors.h"
#include "tokenizer.h"

typedef enum { PD_ARCH_BERT = 1, PD_ARCH_DISTILBERT, PD_ARCH_ROBERTA } pd_arch;

const char *pd_arch_name(pd_arch a);   /* "bert", "distilbert", "roberta" */

typedef struct pd_config {
    pd_arch arch;
    int vocab;      /* vocab_size */
    int hidden;     /* hidden_size / dim */
    int layers;     /* num_hidden_layers / n_layers */
    int heads;      /* num_attention_heads / n_heads */
    int ffn;        /* intermediate_size / hidden_dim */
    int max_pos;    /* max_position_embeddings (rows of the position table) */
    int max_tokens; /* longest usable sequence: max_pos, minus padding_idx+1 for roberta */
    int type_vocab; /* type_vocab_size; 0 for distilbert */
    int pad_id;
    int pos_offset; /* first position id: 0, or padding_idx + 1 for roberta */
    float ln_eps;
    pd_act act;
    int num_labels; /* of the checkpoint's classification head, or id2label size */
    char **labels;  /* (num_labels) id2label names */
    char dtype[8];  /* dtype of the stored weights: "F32", "F16", "BF16" */
} pd_config;

/* One encoder layer. The six weight matrices are (out, in) as torch.nn.Linear stores them,
 * packed in the model's dtype (or borrowed fp32 arrays for a model over pd_params). */
typedef struct pd_layer {
    const pd_wmat *wq, *wk, *wv;  /* (hidden, hidden) */
    const pd_wmat *wo;            /* attention output dense (hidden, hidden) */
    const pd_wmat *w1;            /* intermediate (ffn, hidden) */
    const pd_wmat *w2;            /* output (hidden, ffn) */
    const float *bq, *bk, *bv, *bo; /* (hidden) */
    const float *b1, *b2;         /* (ffn), (hidden) */
    const float *ln1_w, *ln1_b;   /* attention LayerNorm (hidden) */
    const float *ln2_w, *ln2_b;   /* output LayerNorm (hidden) */
} pd_layer;

/* The linear layers of a layer, in the order the forward pass runs them. */
typedef enum { PD_LIN_Q = 0, PD_LIN_K, PD_LIN_V, PD_LIN_O, PD_LIN_FFN1, PD_LIN_FFN2, PD_LIN_COUNT } pd_lin;

/* Sub-layer ends where bottleneck adapters sit. */
typedef enum { PD_SITE_ATTN = 0, PD_SITE_FFN = 1 } pd_site;

/* A head: a small MLP over the final hidden states. Classification applies it to token 0
 * of each sequence; QA applies it to every token (last layer out = 2: start, end). */
#define PD_HEAD_MAX_LAYERS 4
typedef struct pd_head_layer {
    const float *w, *b; /* (out, in), (out); b may be NULL */
    int in, out;
    pd_act act;         /* applied after the linear */
} pd_head_layer;

typedef struct pd_head {
    pd_task task;
    int n_layers;
    pd_head_layer layer[PD_HEAD_MAX_LAYERS];
    int num_labels;     /* classification: out of the last layer */
    char **labels;      /* (num_labels) */
} pd_head;

typedef struct pd_delta pd_delta;

/* Adds the delta's part of a linear layer to y for `rows` consecutive rows that all belong to
 * sequences of this delta: x (rows, in) is the layer input, y (rows, out) already holds
 * x W^T + b. w/b are the base weights as the base computes with them (IA3 on feed-forward
 * layers multiplies by w: pd_wmat_linear / pd_wmat_dx / pd_wmat_row, never a float copy). */
typedef void (*pd_delta_linear_fn)(const pd_delta *d, int layer, pd_lin which, const float *x, float *y,
                                   int rows, int in, int out, const pd_wmat *w, const float *b, pd_pool *pool);

/* Computes out = the sub-layer result for `rows` rows of this delta, replacing the base
 * LayerNorm(h + resid) (ln_w/ln_b/eps are the base LayerNorm). Returns 0 if this delta does
 * not adapt this layer/site (core then does the base computation), 1 if it wrote out.
 * h and resid are read-only (training keeps them for the backward pass). */
typedef int (*pd_delta_sublayer_fn)(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid,
                                    const float *ln_w, const float *ln_b, float eps, int rows, int dim,
                                    float *out, pd_pool *pool);

/* ---- Training callbacks (all optional; NULL where the delta has nothing to learn there) ----
 * Core calls them from the thread running pd_backward, one delta group or sequence at a time;
 * the delta accumulates gradients of its own parameters in its own storage (d->impl). */

/* Backward of the delta's part of a linear layer for one group of rows: x (rows, in) the layer
 * input saved by the forward pass, dy (rows, out) the gradient of the layer output. Accumulates
 * the delta's parameter gradients, and if dx != NULL adds the delta's part of dL/dx to dx
 * (core has already written the base part, dy W). */
typedef void (*pd_delta_linear_bwd_fn)(const pd_delta *d, int layer, pd_lin which, const float *x, const float *dy,
                                       float *dx, int rows, int in, int out, const pd_wmat *w, const float *b,
                                       pd_pool *pool);

/* Backward of a sub-layer the delta replaced (returned 1 from sublayer): given dout, writes
 * dh and dresid (rows, dim) and accumulates the delta's gradients. Returns 1, or 0 if this
 * layer/site is not adapted (core then does the LayerNorm backward). */
typedef int (*pd_delta_sublayer_bwd_fn)(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid,
                                        const float *ln_w, const float *ln_b, float eps, int rows, int dim,
                                        const float *dout, float *dh, float *dresid, pd_pool *pool);

/* Gradient of the soft prompt for one sequence: (n_prompt, hidden), to accumulate. */
typedef void (*pd_delta_prompt_bwd_fn)(const pd_delta *d, const float *dprompt);

/* Gradient of one layer's prefix keys and values for one sequence: (n_prefix, hidden) each. */
typedef void (*pd_delta_prefix_bwd_fn)(const pd_delta *d, int layer, const float *dk, const float *dv);

struct pd_delta {
    int n_prompt;                 /* soft prompt tokens prepended to the word embeddings */
    const float *prompt;          /* (n_prompt, hidden) */
    int n_prefix;                 /* prefix-tuning key/value tokens per layer */
    const float *const *prefix_k; /* [layer] -> (n_prefix, hidden), already projected */
    const float *const *prefix_v; /* [layer] -> (n_prefix, hidden) */
    pd_delta_linear_fn linear;    /* NULL: no linear layer changes */
    pd_delta_sublayer_fn sublayer;/* NULL: no sub-layer changes */
    const pd_head *head;          /* NULL: the base checkpoint's head for the task */
    void *impl;                   /* the adapter behind it */
    /* training only */
    pd_delta_linear_bwd_fn linear_bwd;
    pd_delta_sublayer_bwd_fn sublayer_bwd;
    pd_delta_prompt_bwd_fn prompt_bwd;
    pd_delta_prefix_bwd_fn prefix_bwd;
};

typedef struct pd_model pd_model;

/* Loads a checkpoint directory with its linear weights (and word embeddings) in dtype.
 * max_tokens_cap > 0 lowers the usable sequence length. Returns PD_OK, or an error naming the
 * file/tensor: PD_ERR_NOT_FOUND (no config/weights), PD_ERR_FORMAT (corrupt files),
 * PD_ERR_UNSUPPORTED (architecture, activation, pickle checkpoint), PD_ERR_MISMATCH (a tensor
 * missing or mis-shaped against the config), PD_ERR_INVALID (dtype), PD_ERR_NOMEM. */
pd_status pd_model_load_as(const char *dir, int max_tokens_cap, pd_wtype dtype, pd_model **out, char *err,
                           size_t errlen);
/* pd_model_load_as with PD_WTYPE_F32. */
pd_status pd_model_load(const char *dir, int max_tokens_cap, pd_model **out, char *err, size_t errlen);
void pd_model_free(pd_model *m); /* NULL is a no-op */

const pd_config *pd_model_config(const pd_model *m);
const pd_tokenizer *pd_model_tokenizer(const pd_model *m);
const pd_layer *pd_model_layer(const pd_model *m, int l);
const pd_head *pd_model_head(const pd_model *m, pd_task t); /* NULL if the checkpoint has none */
/* Weights outside the encoder layers that adapters need: the embeddings LayerNorm (hidden each)
 * and the pooler of bert/roberta checkpoints (dense (hidden, hidden) + bias, tanh, fp32), NULL
 * when the checkpoint has none (distilbert, or a checkpoint saved without pooling layer). */
typedef struct pd_model_extras {
    const float *emb_ln_w, *emb_ln_b;
    const float *pooler_w, *pooler_b;
} pd_model_extras;
void pd_model_get_extras(const pd_model *m, pd_model_extras *out);
/* Row id (0 <= id < vocab) of the word embeddings as the forward pass adds it (bf16 / int8
 * models: converted back to fp32), into out (hidden floats): prompt tuning's init from text. */
void pd_model_word_row(const pd_model *m, int id, float *out);
pd_wtype pd_model_dtype(const pd_model *m); /* of the encoder's linear weights */
/* Resident bytes of the weights: packed matrices, converted tables, and the fp32 tensors read
 * from the mapping (or converted from F16/BF16); borrowed pd_params count whole. */
size_t pd_model_bytes(const pd_model *m);
double pd_model_load_seconds(const pd_model *m);

/* One sequence of a batch: ids/type_ids of the real tokens (type_ids NULL = all zero). */
typedef struct pd_seq {
    const int32_t *ids;
    const int32_t *type_ids;
    int len;
    const pd_delta *delta; /* NULL = the bare base */
    int first_only;        /* only row 0 of the final hidden states will be read (classification):
                            * the top layer computes queries, attention output and feed-forward for
                            * that row alone; the sequence's other final rows are left undefined */
} pd_seq;

typedef struct pd_ctx pd_ctx;

/* Scratch for forward passes, owned by one thread at a time. pool may be NULL (single thread).
 * Returns NULL on allocation failure. */
pd_ctx *pd_ctx_new(const pd_model *m, pd_pool *pool);
void pd_ctx_free(pd_ctx *c);
pd_pool *pd_ctx_pool(pd_ctx *c);

/* Runs the encoder on n sequences as one batch (no padding: tokens of all sequences are packed).
 * On success the final hidden states are available through pd_ctx_hidden until the next call.
 * Fails with PD_ERR_INVALID if a sequence is empty, longer than max_tokens (prompt/prefix
 * tokens included) or has an id outside the vocabulary; PD_ERR_NOMEM. */
pd_status pd_forward(pd_ctx *c, const pd_seq *seqs, int n, char *err, size_t errlen);

/* Final hidden states of sequence i of the last forward: (*len, hidden) where *len counts the
 * prompt tokens first, then the real tokens (with first_only, row 0 alone is defined). */
const float *pd_ctx_hidden(const pd_ctx *c, int i, int *len);

/* Runs the head for sequence i of the last forward.
 * Classification: out gets num_labels logits (from token 0 of the sequence, prompt included,
 *   as PEFT does). QA: out gets start logits then end logits for the real tokens
 *   (2 x seq len; prompt tokens excluded; -1 for a first_only sequence). Returns the number of
 *   floats written, or -1. */
int pd_ctx_head(pd_ctx *c, int i, const pd_head *head, float *out, int cap);

/* ==== Training ====
 * pd_ctx_set_training(c, 1) makes pd_forward keep every layer's activations. After it:
 * pd_ctx_grad_hidden zeroes and returns the (rows, hidden) gradient buffer of the final hidden
 * states; pd_ctx_head_loss adds each sequence's loss gradient into it; pd_backward then
 * propagates it through the frozen encoder, calling the deltas' *_bwd callbacks. Base weights
 * are never written. */
void pd_ctx_set_training(pd_ctx *c, int on);
float *pd_ctx_grad_hidden(pd_ctx *c); /* NULL unless the last forward was a training one */

/* Loss of sequence i of the last training forward under head: classification cross-entropy
 * against label, or QA (CE(start) + CE(end)) / 2 with start/end token indices among the real
 * tokens. Adds scale * dLoss/dhidden into the gradient buffer; if grad != NULL (a pd_head with
 * the same shapes whose w/b point to gradient accumulators) adds scale * dLoss/dhead there.
 * out (may be NULL) gets the logits (classification: num_labels; QA: 2 x len). Returns the
 * unscaled loss, NAN on allocation failure. */
float pd_ctx_head_loss(pd_ctx *c, int i, const pd_head *head, const pd_head *grad, int label, int start, int end,
                       float scale, float *out);

/* Backward pass through the encoder for the last training forward. With a gradient sink
 * (pd_ctx_set_grad) it also adds dL/dW of every encoder weight into the sink; that needs a batch
 * without deltas (PD_ERR_UNSUPPORTED otherwise). */
pd_status pd_backward(pd_ctx *c, char *err, size_t errlen);

/* First row of sequence i of the last forward in the packed (rows, hidden) matrices: the final
 * hidden states and the gradient buffer of pd_ctx_grad_hidden. */
int pd_ctx_row(const pd_ctx *c, int i);
/* All final hidden states of the last forward, (*rows, hidden). */
const float *pd_ctx_hidden_all(const pd_ctx *c, int *rows);

/* ==== Mutable fp32 weights: pretraining ==== */

/* One layer's weights (or their gradients) as mutable arrays; fields as in pd_layer. */
typedef struct pd_layer_params {
    float *wq, *bq, *wk, *bk, *wv, *bv; /* (hidden, hidden), (hidden) */
    float *wo, *bo;                     /* (hidden, hidden), (hidden) */
    float *ln1_w, *ln1_b;               /* (hidden) */
    float *w1, *b1;                     /* (ffn, hidden), (ffn) */
    float *w2, *b2;                     /* (hidden, ffn), (hidden) */
    float *ln2_w, *ln2_b;               /* (hidden) */
} pd_layer_params;

/* The masked-LM head of BertForMaskedLM: cls.predictions.transform (dense, gelu, LayerNorm),
 * then the decoder, whose weight is the word embeddings (tied), plus cls.predictions.bias. */
typedef struct pd_mlm_params {
    float *dense_w, *dense_b; /* (hidden, hidden), (hidden) */
    float *ln_w, *ln_b;       /* (hidden) */
    float *bias;              /* (vocab) */
} pd_mlm_params;

/* Every weight of a BERT encoder (no pooler) and optionally its MLM head, in one zeroed buffer
 * of n floats laid out in pd_params_tensor order (so gradients, optimizer moments and weights
 * made from the same config line up element by element). */
typedef struct pd_params {
    pd_config cfg;             /* the shapes (arch bert, no labels) */
    float *word_emb;           /* (vocab, hidden) */
    float *pos_emb;            /* (max_pos, hidden) */
    float *type_emb;           /* (type_vocab, hidden) */
    float *emb_ln_w, *emb_ln_b;/* (hidden) */
    pd_layer_params *layer;    /* (layers) */
    pd_mlm_params mlm;         /* all NULL without the head */
    float *data;               /* the buffer */
    size_t n;                  /* its floats */
    int n_tensors;
    struct pd_param_tensor *tensors; /* (n_tensors), see pd_params_tensor */
} pd_params;

/* Allocates zeroed parameters for cfg (arch bert, type_vocab >= 1, hidden a multiple of heads),
 * with the MLM head if mlm. Returns NULL on a bad config or allocation failure. */
pd_params *pd_params_new(const pd_config *cfg, int mlm);
void pd_params_free(pd_params *p); /* NULL is a no-op */

/* Tensor i of p (0 <= i < p->n_tensors): its Hugging Face BertForMaskedLM name
 * ("bert.embeddings.word_embeddings.weight", ..., "cls.predictions.bias"), data, shape. */
typedef struct pd_param_tensor {
    char name[80];
    float *data;
    int ndim;
    int64_t shape[2];
    size_t n;
} pd_param_tensor;
const pd_param_tensor *pd_params_tensor(const pd_params *p, int i);

/* A model whose encoder weights are p's arrays, read in place at every forward pass (the caller
 * may change values between passes, never during one; dtype fp32, matrices borrowed, nothing
 * packed). tok (may be NULL) becomes the model's and is freed with it; p must outlive the
 * model. PD_ERR_NOMEM. */
pd_status pd_model_from_params(const pd_params *p, pd_tokenizer *tok, pd_model **out, char *err, size_t errlen);

/* Makes pd_backward add the gradient of every encoder weight into g (made from the model's
 * config; NULL turns it off). Only pd_backward writes g; zeroing it is the caller's. */
void pd_ctx_set_grad(pd_ctx *c, const pd_params *g);

/* Writes p as a Hugging Face checkpoint directory: config.json (model_type bert, p's shapes,
 * "architectures": [arch], torch_dtype) and model.safetensors with every tensor of p stored as
 * dtype (PD_DT_F32, PD_DT_F16 or PD_DT_BF16), plus n_extra tensors (e.g. bert.pooler.*) under
 * their own names. Each file is written under a temporary name, synced
 * and renamed, config.json last; dir must exist. PD_ERR_INVALID (dtype), PD_ERR_IO, PD_ERR_NOMEM. */
pd_status pd_params_save(const pd_params *p, const pd_st_wtensor *extra, int n_extra, const char *arch, pd_dtype dtype,
                         const char *dir, char *err, size_t errlen);

#endif
