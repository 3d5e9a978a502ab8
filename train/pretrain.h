/* pretrain.h - masked-language-model pretraining of a BERT encoder from scratch: `peftd pretrain`.
 *
 * The pieces, each usable alone (tests/test_pretrain.c, bench/pretrain.c):
 *   - pd_corpus: a text corpus (one sentence per line, documents separated by blank lines)
 *     tokenized once with peftd's own tokenizer and cached as a binary file, then packed into
 *     windows: consecutive sentences fill a window of at most seq tokens, [CLS] first, [SEP]
 *     last and between documents (no padding: peftd's forward pass packs sequences of any length).
 *   - pd_mask_window: BERT's masking of one window, a pure function of (seed, epoch, window):
 *     15% of the non-special tokens (or of whole words), 80% [MASK], 10% a random token,
 *     10% unchanged.
 *   - pd_pretrainer: the weights (pd_params with the MLM head), their gradients, AdamW moments,
 *     and one training step (forward, masked-LM loss, backward through every weight, gradient
 *     clipping, AdamW), plus the held-out evaluation.
 *   - pd_pretrain_run: the loop (schedule, data order, checkpoints, resume, progress, CSVs) of
 *     `peftd pretrain`, whose options server/options.c parses into a pd_pretrain_opts.
 *
 * Determinism: for a fixed seed, thread count and machine, a run and a run stopped and resumed
 * from any checkpoint produce the same bits (data order and masks are functions of the seed and
 * the position, every kernel's split is a function of the sizes and the thread count).
 * Thread-safety: none; one thread drives a pd_pretrainer (its pool does the parallel work). */
#ifndef PD_PRETRAIN_H
#define PD_PRETRAIN_H

#include "kernels.h"
#include "mlm.h"
#include "model.h"
#include "tokenizer.h"

/* ==== Corpus ==== */

typedef struct pd_corpus {
    uint32_t *tok;     /* (n_tok) token id | PD_TOK_WORD_START for the first piece of a word */
    size_t n_tok;
    uint32_t *win_off; /* (n_win) first entry of window w in wtok */
    uint16_t *win_len; /* (n_win) its length, specials included */
    uint32_t *wtok;    /* the windows' tokens, specials included, same encoding as tok */
    size_t n_wtok;
    int n_win;
    size_t n_sent, n_doc;
    int seq;
} pd_corpus;

#define PD_TOK_WORD_START 0x80000000u
#define PD_TOK_ID(x) ((int32_t)((x) & 0x7fffffffu))

/* Tokenizes text_path with tok (or reads the cache at cache_path when it was made from the same
 * text file size/mtime and the same vocabulary; writes it otherwise, atomically; cache_path NULL:
 * no cache) and packs windows of at most seq tokens. PD_ERR_NOT_FOUND, PD_ERR_IO, PD_ERR_FORMAT
 * (invalid UTF-8 in the text), PD_ERR_INVALID (seq < 8, an empty corpus), PD_ERR_NOMEM. */
pd_status pd_corpus_load(const char *text_path, const char *cache_path, const pd_tokenizer *tok, int seq, pd_corpus **out,
                         char *err, size_t errlen);
void pd_corpus_free(pd_corpus *c); /* NULL is a no-op */

/* ==== Masking ==== */

typedef struct pd_mask_cfg {
    double prob;            /* share of maskable tokens to predict (0.15) */
    int whole_words;        /* mask every piece of a chosen word together */
    int32_t mask_id;
    const uint8_t *special; /* (vocab) 1 for special tokens: never masked */
    const int32_t *draw;    /* (n_draw) the ids random replacements are drawn from */
    int n_draw;
} pd_mask_cfg;

/* Masks window toks (len tokens, corpus encoding) with the random stream of key: writes the
 * model input into ids (len), the positions to predict (ascending) into pos and their original
 * ids into labels (pos and labels hold len entries: both are scratch during the call). Returns
 * the number of positions: round(prob x maskable tokens), at least 1 when there is one (with
 * whole words a word that would overshoot that number is skipped). */
int pd_mask_window(const uint32_t *toks, int len, uint64_t key, const pd_mask_cfg *mc, int32_t *ids, int32_t *pos,
                   int32_t *labels);

/* The key of window w in epoch e for a run seeded with seed. */
uint64_t pd_mask_key(uint64_t seed, long epoch, long w);

/* ==== Training step ==== */

typedef struct pd_pretrainer pd_pretrainer;

typedef struct pd_pretrain_hyper {
    double beta1, beta2, eps, weight_decay, clip;
} pd_pretrain_hyper;

/* Weights for cfg (bert, with the MLM head) initialised as transformers' BertForMaskedLM does
 * (normal(0, 0.02) matrices and embeddings, zero biases, LayerNorms 1/0), from seed; zero
 * gradients and moments; a pd_ctx on pool. NULL on allocation failure or a bad config. */
pd_pretrainer *pd_pretrainer_new(const pd_config *cfg, const pd_pretrain_hyper *hp, uint64_t seed, pd_pool *pool);
void pd_pretrainer_free(pd_pretrainer *t); /* NULL is a no-op */
pd_params *pd_pretrainer_params(pd_pretrainer *t);
const pd_model *pd_pretrainer_model(const pd_pretrainer *t);
long pd_pretrainer_steps(const pd_pretrainer *t); /* optimizer steps taken */
/* Forgets the optimizer's history: zero moments, step count 0 (the weights stay). */
void pd_pretrainer_reset_optimizer(pd_pretrainer *t);

/* One batch: n sequences (ids[i], len[i]) and the masked tokens, rows counted in the packed
 * batch (sequence i's tokens start at the sum of the lengths before it). */
typedef struct pd_mlm_batch {
    int n;
    const int32_t *const *ids;
    const int *len;
    int n_masked;
    const int32_t *rows, *labels;
} pd_mlm_batch;

typedef struct pd_step_stats {
    double loss;      /* mean cross-entropy over the masked tokens */
    int correct;      /* masked tokens predicted */
    double grad_norm; /* before clipping */
} pd_step_stats;

/* One optimizer step at learning rate lr: zero the gradients, training forward, masked-LM loss
 * (mean over the masked tokens), backward through every weight, clip the global gradient norm,
 * AdamW (no weight decay on biases and LayerNorm weights). PD_ERR_INVALID (bad batch), PD_ERR_NOMEM. */
pd_status pd_pretrainer_step(pd_pretrainer *t, const pd_mlm_batch *b, double lr, pd_step_stats *st, char *err, size_t errlen);

/* Masked-LM loss sum and correct count of a batch without training (inference forward). */
pd_status pd_pretrainer_eval(pd_pretrainer *t, const pd_mlm_batch *b, double *loss_sum, int *correct, char *err, size_t errlen);

/* The optimizer state (weights, moments, step) and n_meta metadata pairs to path (written as
 * given: the caller renames), and back. PD_ERR_IO, PD_ERR_FORMAT (another shape). */
pd_status pd_pretrainer_save(const pd_pretrainer *t, const char *path, const char *const *meta_kv, int n_meta, char *err,
                             size_t errlen);
pd_status pd_pretrainer_load(pd_pretrainer *t, const char *path, char *err, size_t errlen);

/* ==== The command ==== */

/* `peftd pretrain`'s options; their table (names, defaults, ranges, --help) is
 * pd_pretrain_opt_defs in server/options.c. */
typedef struct pd_pretrain_opts {
    const char *corpus, *heldout, *vocab, *out, *dtype;
    int layers, hidden, heads, ffn, seq, batch, max_pos, threads, seed, resume, wwm, eval_windows, stop_steps, quick, eval_only;
    double lr, warmup, tokens, minutes, stop_minutes, mask, weight_decay, clip, beta1, beta2, adam_eps;
    double eval_minutes, ckpt_minutes, log_seconds;
} pd_pretrain_opts;

/* Runs `peftd pretrain` with parsed options (--quick overrides the sizes it names). Returns the
 * process exit code: 0 when the run finished or stopped at a checkpoint, 1 on an error, 2 on
 * options that do not fit together (said on stderr). */
int pd_pretrain_run(const pd_pretrain_opts *o);

#endif
