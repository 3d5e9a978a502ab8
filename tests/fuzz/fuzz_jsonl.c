/* fuzz_jsonl.c - libFuzzer target `jsonl`: the training file's JSON Lines reader (train/spec.c)
 * under a fixed classification request. See fuzz_train_request.c. */
#define FUZZ_JSONL 1
#include "fuzz_train_request.c"
