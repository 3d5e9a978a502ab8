/* tokenizer.h - Hugging Face tokenizers in C: WordPiece (BERT) and byte-level BPE (RoBERTa).
 *
 * Loads tokenizer.json (or vocab.txt + tokenizer_config.json when there is no tokenizer.json),
 * splits text into tokens with byte offsets into the original UTF-8 text, and assembles
 * single texts and pairs with the model's special tokens (TemplateProcessing /
 * RobertaProcessing / BertProcessing semantics).
 *
 * Ownership: pd_tokenizer_load_* returns a tokenizer the caller frees with pd_tokenizer_free.
 * pd_tokens buffers belong to the caller (pd_tokens_free).
 * Thread-safety: a loaded tokenizer is immutable; every function taking a const pd_tokenizer*
 * may be called from many threads at once. */
#ifndef PD_TOKENIZER_H
#define PD_TOKENIZER_H

#include "common.h"

typedef struct pd_tokenizer pd_tokenizer;

/* Raw tokens of one text (no special tokens). start/end are byte offsets into the text
 * given to pd_tokenizer_tokenize: text[start[i] .. end[i]) is the source of token i.
 * Offsets always fall on UTF-8 character boundaries: byte-level BPE tokens that hold only
 * some bytes of a character all cover that whole character (as Hugging Face tokenizers
 * does), and with trim_offsets a token made only of spaces has start == end. */
typedef struct pd_tokens {
    int32_t *ids;
    int32_t *start;
    int32_t *end;
    int32_t *word;  /* index of the pre-tokenized word the token belongs to (non-decreasing);
                     * tokens of one word share it, as tokenizers' Encoding.word_ids */
    int n, cap;
} pd_tokens;

typedef enum { PD_TOK_WORDPIECE = 1, PD_TOK_BPE = 2 } pd_tok_kind;

/* Loads DIR/tokenizer.json if present, else DIR/vocab.txt (+ DIR/tokenizer_config.json for
 * do_lower_case and special tokens, BERT conventions). Returns PD_OK, or PD_ERR_NOT_FOUND /
 * PD_ERR_FORMAT / PD_ERR_UNSUPPORTED with a message naming the file and the problem. */
pd_status pd_tokenizer_load_dir(const char *dir, pd_tokenizer **out, char *err, size_t errlen);

/* Loads from the text of a tokenizer.json held in memory. */
pd_status pd_tokenizer_load_json(const char *json, size_t len, pd_tokenizer **out, char *err, size_t errlen);

/* Loads a BERT vocab.txt (one token per line). lowercase: do_lower_case. */
pd_status pd_tokenizer_load_vocab_txt(const char *path, int lowercase, pd_tokenizer **out, char *err, size_t errlen);

void pd_tokenizer_free(pd_tokenizer *t); /* NULL is a no-op */

/* Tokenizes len bytes of UTF-8 text (need not be NUL-terminated) into out (appending is not
 * done: out is reset). Invalid UTF-8 is an error (PD_ERR_INVALID), never a crash. */
pd_status pd_tokenizer_tokenize(const pd_tokenizer *t, const char *text, size_t len, pd_tokens *out,
                                char *err, size_t errlen);

/* pd_tokenizer_tokenize keeping at most max tokens (max < 0: all): out gets exactly the first
 * min(n, max) tokens of the full tokenization of n tokens. With total NULL, tokenizing stops once
 * max tokens are known; else it goes on to the end, counting, and *total gets n. Either way the
 * text is normalized in chunks of 64 KiB cut at spaces (when the tokenizer allows it: see
 * tokenizer.c chunkable), so memory is proportional to max, not to len. */
pd_status pd_tokenizer_tokenize_max(const pd_tokenizer *t, const char *text, size_t len, int max, pd_tokens *out,
                                    int64_t *total, char *err, size_t errlen);

/* Sets the chunk size of every later tokenization (default 64 KiB; 0: the whole text at once).
 * For tests, which check that chunks do not change a token; not thread-safe. */
void pd_tokenizer_set_chunk(size_t bytes);

void pd_tokens_free(pd_tokens *t); /* frees the arrays, leaves *t zeroed */

/* Number of special tokens the post-processor adds: pair=0 for a single text, 1 for a pair. */
int pd_tokenizer_num_special(const pd_tokenizer *t, int pair);

/* Assembles the model input from token ids a[0..na) and, if nb >= 0, b[0..nb).
 * Writes ids, type_ids (token type ids), src (0 = from a, 1 = from b, -1 = special token)
 * and idx (index into a or b, -1 for specials) for each position; each array holds
 * at least na + nb + num_special entries. Returns the sequence length. */
int pd_tokenizer_assemble(const pd_tokenizer *t, const int32_t *a, int na, const int32_t *b, int nb,
                          int32_t *ids, int32_t *type_ids, int32_t *src, int32_t *idx);

pd_tok_kind pd_tokenizer_kind(const pd_tokenizer *t);
int pd_tokenizer_vocab_size(const pd_tokenizer *t);      /* largest id + 1, added tokens included */
int32_t pd_tokenizer_token_to_id(const pd_tokenizer *t, const char *token); /* -1 if absent */
const char *pd_tokenizer_id_to_token(const pd_tokenizer *t, int32_t id); /* NULL if out of range */
int32_t pd_tokenizer_pad_id(const pd_tokenizer *t);      /* [PAD] / <pad>, 0 if none */

#endif
