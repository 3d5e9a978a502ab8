/* genmodel.h - the embedded default model: a small BERT checkpoint generated deterministically.
 *
 * peftd needs a base model to serve before anyone has downloaded one (`make run`, the Docker
 * image, the tests). pd_genmodel_write writes a tiny BertForSequenceClassification checkpoint
 * in real Hugging Face layout: config.json, tokenizer.json (WordPiece), vocab.txt,
 * tokenizer_config.json, special_tokens_map.json and model.safetensors with both a
 * classification head (bert.pooler.dense + classifier, labels negative/positive) and a QA head
 * (qa_outputs). Weights are random (fixed-seed PRNG, std 0.02 as BERT initialises them), so
 * its predictions mean nothing: it is a stand-in until a pretrained default model exists. Its
 * value is that it is real: any tool that reads Hugging Face checkpoints reads it, and
 * adapters made for it (examples/) fit it exactly.
 *
 * The same bytes come out on every run and every machine with the same libm (the shapes,
 * vocabulary and seed are fixed in the source; each tensor's stream is seeded from its name),
 * so adapters trained on it stay valid across rebuilds. Changing anything here changes the
 * default model: tests/test_genmodel.c pins sample values to catch that.
 *
 * Thread-safety: pd_genmodel_write keeps no state; concurrent calls must use different dirs. */
#ifndef PD_GENMODEL_H
#define PD_GENMODEL_H

#include "common.h"

/* Shapes of the generated model (config.json says the same). */
#define PD_GENMODEL_HIDDEN 64
#define PD_GENMODEL_LAYERS 2
#define PD_GENMODEL_HEADS 4
#define PD_GENMODEL_FFN 128
#define PD_GENMODEL_MAX_POS 128

/* Writes the checkpoint into dir, creating dir (and missing parents). The files are written
 * into a sibling temporary directory "<dir>.tmp-<pid>" and moved into place with rename: a
 * new dir appears complete or not at all; an existing dir has each file replaced atomically
 * (config.json last). Returns PD_OK, PD_ERR_IO (with the path and errno text), PD_ERR_INVALID
 * (empty or too long path) or PD_ERR_NOMEM; on failure the temporary directory is removed. */
pd_status pd_genmodel_write(const char *dir, char *err, size_t errlen);

/* Number of tokens in the generated vocabulary (the model's vocab_size). */
int pd_genmodel_vocab_size(void);

#endif
