/* genmodel.c - writes the embedded default model (see genmodel.h).
 *
 * Everything that decides the bytes lives in this file: the vocabulary, the shapes, the seed
 * and the PRNG. The JSON files are printed by cJSON (deterministic for the same tree) and the
 * weights by pd_st_write (tensors sorted by name). */
#include "genmodel.h"

#include "fs.h"
#include "json.h"
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H PD_GENMODEL_HIDDEN
#define F PD_GENMODEL_FFN
#define NL 2 /* labels of the classification head */

/* ==== Vocabulary ==== */

/* Whole words the tokenizer keeps as one token; everything else falls back to characters and
 * "##" pieces. Lower case (the normalizer lowercases), letters only (the pre-tokenizer splits
 * punctuation off), chosen for short English sentences: movie reviews for the sentiment
 * examples, who/what/where questions for extractive QA. Appending words changes the model. */
static const char *const WORDS[] = {
    "the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "as", "with", "his", "they",
    "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their",
    "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would",
    "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no",
    "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "its", "now", "find",
    "long", "down", "day", "did", "get", "come", "made", "may", "part", "over", "new", "after", "also", "where",
    "most", "know", "just", "only", "little", "very", "much", "even", "still", "too", "here", "why", "because",
    "any", "same", "work", "life", "world", "year", "years", "old", "back", "well", "should", "never", "ever",
    "again", "off", "own", "through", "while", "both", "those", "between", "under", "before", "does",
    "being", "yet", "such", "without", "against", "around", "every", "something", "nothing", "anything",
    "someone", "thing", "things", "man", "woman", "men", "women", "child", "children", "family", "friend",
    "friends", "love", "heart", "story", "stories", "movie", "movies", "film", "films", "director", "actor",
    "actors", "actress", "cast", "performance", "performances", "script", "plot", "scene", "scenes", "ending",
    "character", "characters", "comedy", "drama", "horror", "thriller", "action", "music", "screen", "audience",
    "minutes", "hour", "hours", "sequel", "series", "show", "book", "role", "roles", "camera", "picture",
    "good", "great", "best", "better", "bad", "worse", "worst", "excellent", "wonderful", "brilliant",
    "beautiful", "amazing", "fantastic", "perfect", "superb", "enjoyable", "fun", "funny", "charming",
    "delightful", "moving", "touching", "powerful", "clever", "smart", "fresh", "original", "solid", "strong",
    "terrible", "awful", "horrible", "boring", "dull", "stupid", "mess", "waste", "weak", "poor", "bland",
    "tedious", "predictable", "silly", "painful", "annoying", "ugly", "slow", "flat", "lame", "pointless",
    "disappointing", "mediocre", "nice", "fine", "pretty", "really", "quite", "rather", "enough", "almost",
    "always", "often", "sometimes", "nearly", "simply", "truly", "completely", "entirely", "highly",
    "recommend", "enjoy", "enjoyed", "liked", "loved", "hate", "hated", "think", "feel", "felt", "seems",
    "seem", "watch", "watching", "watched", "worth", "want", "need", "take", "give", "keep", "tell", "tells",
    "makes", "gets", "goes", "going", "done", "seen", "saw", "say", "says", "laugh", "laughs", "cry", "tears",
    "smile", "sad", "happy", "dark", "light", "real", "true", "human", "big", "small", "high", "low", "young",
    "full", "hard", "easy", "right", "wrong", "last", "next", "few", "less", "least", "lot", "kind", "sort",
    "end", "start", "place", "city", "country", "capital", "river", "mountain", "sea", "island", "state",
    "north", "south", "east", "west", "king", "queen", "war", "army", "school", "university", "company",
    "team", "game", "science", "history", "language", "english", "french", "german", "art", "name", "named",
    "called", "known", "born", "died", "built", "founded", "located", "largest", "oldest", "famous", "million",
    "hundred", "thousand", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "century",
    "paris", "london", "france", "england", "america", "american", "europe", "president", "government",
    "population", "area", "house", "home", "car", "road", "money", "power", "death", "body", "head", "face",
    "eyes", "hand", "hands", "voice", "mind", "idea", "ideas", "question", "answer", "point", "fact", "case",
    "system", "problem", "moment", "reason", "sense", "side", "kids", "adults", "fans", "critics",
    "review", "reviews", "entertaining", "entertainment", "humor", "style", "visual", "effects", "dialogue",
    "acting", "written", "directed", "played", "plays", "works", "job", "lack", "fails",
    "manages", "becomes", "feels", "looks", "yes", "nor", "however", "although", "though",
    "until", "since", "during", "above", "below", "inside", "outside", "along", "across", "behind", "beyond",
};

/* Builds the vocabulary in id order: specials, printable ASCII, "##" + [a-z0-9], then WORDS
 * (duplicates of earlier tokens skipped). Returns the count; toks gets pointers into `chars`
 * (for single characters) or into WORDS. `chars` needs room for the character tokens. */
#define SPECIALS 5
static const char *const SPECIAL[SPECIALS] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
#define N_ASCII (0x7e - 0x21 + 1)
#define N_PIECE 36
#define VOCAB_CAP (SPECIALS + N_ASCII + N_PIECE + (int)(sizeof WORDS / sizeof WORDS[0]))

typedef struct vocab {
    const char *tok[VOCAB_CAP];
    char chars[N_ASCII][2];
    char pieces[N_PIECE][4];
    int n;
} vocab;

static void vocab_build(vocab *v) {
    v->n = 0;
    for (int i = 0; i < SPECIALS; i++) v->tok[v->n++] = SPECIAL[i];
    for (int c = 0x21; c <= 0x7e; c++) {
        char *s = v->chars[c - 0x21];
        s[0] = (char)c;
        s[1] = 0;
        v->tok[v->n++] = s;
    }
    for (int i = 0; i < N_PIECE; i++) {
        char *s = v->pieces[i];
        s[0] = '#';
        s[1] = '#';
        s[2] = (char)(i < 26 ? 'a' + i : '0' + (i - 26));
        s[3] = 0;
        v->tok[v->n++] = s;
    }
    for (size_t w = 0; w < sizeof WORDS / sizeof WORDS[0]; w++) {
        int dup = 0;
        for (int j = 0; j < v->n && !dup; j++) dup = !strcmp(v->tok[j], WORDS[w]);
        if (!dup) v->tok[v->n++] = WORDS[w];
    }
}

int pd_genmodel_vocab_size(void) {
    vocab v;
    vocab_build(&v);
    return v.n;
}

/* ==== Random weights ==== */

/* splitmix64 (Steele, Lea, Flood 2014): a tiny generator whose output passes BigCrush, used
 * here for its exact reproducibility from one 64-bit seed. */
typedef struct rng {
    uint64_t s;
    int has_spare;
    double spare;
} rng;

static uint64_t rng_next(rng *r) { return pd_splitmix64(&r->s); }

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static double rng_uniform(rng *r) { return ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

/* Standard normal by Box-Muller; each pair of uniforms gives two values. */
static double rng_normal(rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

/* Each tensor's stream is seeded from its name (FNV-1a), so adding a tensor never shifts the
 * values of the others. */
static rng rng_for(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    rng r = {h ^ 0x7065667464763031ull /* "peftdv01" */, 0, 0.0};
    return r;
}

typedef enum { INIT_NORMAL, INIT_ZERO, INIT_ONE } init_kind;

#define MAX_TENSORS (5 + 16 * PD_GENMODEL_LAYERS + 6)

typedef struct tensors {
    pd_st_wtensor t[MAX_TENSORS];
    char name[MAX_TENSORS][96];
    float *data[MAX_TENSORS];
    int n;
} tensors;

/* Adds a tensor of shape (d0) or (d0, d1) initialised as BERT's _init_weights does: linear
 * and embedding weights N(0, 0.02), biases 0, LayerNorm weight 1 and bias 0. */
static int add_tensor(tensors *ts, const char *name, int64_t d0, int64_t d1, init_kind k) {
    PD_ASSERT(ts->n < MAX_TENSORS);
    int i = ts->n;
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *d = malloc(n * sizeof(float));
    if (!d) return -1;
    snprintf(ts->name[i], sizeof ts->name[i], "%s", name);
    rng r = rng_for(name);
    for (size_t j = 0; j < n; j++) d[j] = k == INIT_NORMAL ? (float)(0.02 * rng_normal(&r)) : k == INIT_ONE ? 1.0f : 0.0f;
    ts->data[i] = d;
    ts->t[i].name = ts->name[i];
    ts->t[i].ndim = d1 ? 2 : 1;
    ts->t[i].shape[0] = d0;
    ts->t[i].shape[1] = d1;
    ts->t[i].data = d;
    ts->n++;
    return 0;
}

static void tensors_free(tensors *ts) {
    for (int i = 0; i < ts->n; i++) free(ts->data[i]);
    ts->n = 0;
}

/* A linear layer torch-style: weight (out, in) and bias (out). */
static int add_linear(tensors *ts, const char *prefix, int out, int in) {
    char w[96], b[96];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(b, sizeof b, "%s.bias", prefix);
    return add_tensor(ts, w, out, in, INIT_NORMAL) || add_tensor(ts, b, out, 0, INIT_ZERO);
}

static int add_layernorm(tensors *ts, const char *prefix) {
    char w[96], b[96];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(b, sizeof b, "%s.bias", prefix);
    return add_tensor(ts, w, H, 0, INIT_ONE) || add_tensor(ts, b, H, 0, INIT_ZERO);
}

static int build_tensors(tensors *ts, int V) {
    if (add_tensor(ts, "bert.embeddings.word_embeddings.weight", V, H, INIT_NORMAL)) return -1;
    memset(ts->data[0], 0, H * sizeof(float)); /* padding_idx row, zeroed as nn.Embedding does */
    if (add_tensor(ts, "bert.embeddings.position_embeddings.weight", PD_GENMODEL_MAX_POS, H, INIT_NORMAL) ||
        add_tensor(ts, "bert.embeddings.token_type_embeddings.weight", 2, H, INIT_NORMAL) ||
        add_layernorm(ts, "bert.embeddings.LayerNorm"))
        return -1;
    for (int l = 0; l < PD_GENMODEL_LAYERS; l++) {
        static const struct { const char *name; int out, in; } lin[] = {
            {"attention.self.query", H, H}, {"attention.self.key", H, H}, {"attention.self.value", H, H},
            {"attention.output.dense", H, H}, {"intermediate.dense", F, H}, {"output.dense", H, F},
        };
        char p[96];
        for (size_t k = 0; k < sizeof lin / sizeof lin[0]; k++) {
            snprintf(p, sizeof p, "bert.encoder.layer.%d.%s", l, lin[k].name);
            if (add_linear(ts, p, lin[k].out, lin[k].in)) return -1;
        }
        snprintf(p, sizeof p, "bert.encoder.layer.%d.attention.output.LayerNorm", l);
        if (add_layernorm(ts, p)) return -1;
        snprintf(p, sizeof p, "bert.encoder.layer.%d.output.LayerNorm", l);
        if (add_layernorm(ts, p)) return -1;
    }
    if (add_linear(ts, "bert.pooler.dense", H, H) || add_linear(ts, "classifier", NL, H) ||
        add_linear(ts, "qa_outputs", 2, H))
        return -1;
    return 0;
}

/* ==== JSON files ==== */

static cJSON *config_json(int V) {
    cJSON *o = cJSON_CreateObject(), *a, *id2, *l2i;
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "_peftd_note",
                            "peftd's generated default model: random weights (fixed seed), a stand-in until a "
                            "pretrained default model exists; predictions are meaningless");
    a = cJSON_AddArrayToObject(o, "architectures");
    if (a) cJSON_AddItemToArray(a, cJSON_CreateString("BertForSequenceClassification"));
    cJSON_AddNumberToObject(o, "attention_probs_dropout_prob", 0.1);
    cJSON_AddNullToObject(o, "classifier_dropout");
    cJSON_AddStringToObject(o, "hidden_act", "gelu");
    cJSON_AddNumberToObject(o, "hidden_dropout_prob", 0.1);
    cJSON_AddNumberToObject(o, "hidden_size", H);
    id2 = cJSON_AddObjectToObject(o, "id2label");
    if (id2) {
        cJSON_AddStringToObject(id2, "0", "negative");
        cJSON_AddStringToObject(id2, "1", "positive");
    }
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", F);
    l2i = cJSON_AddObjectToObject(o, "label2id");
    if (l2i) {
        cJSON_AddNumberToObject(l2i, "negative", 0);
        cJSON_AddNumberToObject(l2i, "positive", 1);
    }
    cJSON_AddNumberToObject(o, "layer_norm_eps", 1e-12);
    cJSON_AddNumberToObject(o, "max_position_embeddings", PD_GENMODEL_MAX_POS);
    cJSON_AddStringToObject(o, "model_type", "bert");
    cJSON_AddNumberToObject(o, "num_attention_heads", PD_GENMODEL_HEADS);
    cJSON_AddNumberToObject(o, "num_hidden_layers", PD_GENMODEL_LAYERS);
    cJSON_AddNumberToObject(o, "pad_token_id", 0);
    cJSON_AddStringToObject(o, "position_embedding_type", "absolute");
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddNumberToObject(o, "type_vocab_size", 2);
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddNumberToObject(o, "vocab_size", V);
    return o;
}

static cJSON *special_token(int id, const char *content) {
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    if (id >= 0) cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddFalseToObject(t, "single_word");
    cJSON_AddFalseToObject(t, "lstrip");
    cJSON_AddFalseToObject(t, "rstrip");
    cJSON_AddFalseToObject(t, "normalized");
    cJSON_AddTrueToObject(t, "special");
    return t;
}

/* {"SpecialToken": {"id": tok, "type_id": ty}} or {"Sequence": {"id": "A", "type_id": ty}} */
static cJSON *template_piece(const char *kind, const char *id, int type_id) {
    cJSON *p = cJSON_CreateObject();
    cJSON *in = p ? cJSON_AddObjectToObject(p, kind) : NULL;
    if (in) {
        cJSON_AddStringToObject(in, "id", id);
        cJSON_AddNumberToObject(in, "type_id", type_id);
    }
    return p;
}

/* tokenizer.json as the `tokenizers` library serialises a BERT WordPiece tokenizer. */
static cJSON *tokenizer_json(const vocab *v) {
    cJSON *o = cJSON_CreateObject(), *x, *y;
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    x = cJSON_AddArrayToObject(o, "added_tokens");
    for (int i = 0; x && i < SPECIALS; i++) cJSON_AddItemToArray(x, special_token(i, SPECIAL[i]));
    x = cJSON_AddObjectToObject(o, "normalizer");
    if (x) {
        cJSON_AddStringToObject(x, "type", "BertNormalizer");
        cJSON_AddTrueToObject(x, "clean_text");
        cJSON_AddTrueToObject(x, "handle_chinese_chars");
        cJSON_AddNullToObject(x, "strip_accents");
        cJSON_AddTrueToObject(x, "lowercase");
    }
    x = cJSON_AddObjectToObject(o, "pre_tokenizer");
    if (x) cJSON_AddStringToObject(x, "type", "BertPreTokenizer");
    x = cJSON_AddObjectToObject(o, "post_processor");
    if (x) {
        cJSON_AddStringToObject(x, "type", "TemplateProcessing");
        y = cJSON_AddArrayToObject(x, "single");
        if (y) {
            cJSON_AddItemToArray(y, template_piece("SpecialToken", "[CLS]", 0));
            cJSON_AddItemToArray(y, template_piece("Sequence", "A", 0));
            cJSON_AddItemToArray(y, template_piece("SpecialToken", "[SEP]", 0));
        }
        y = cJSON_AddArrayToObject(x, "pair");
        if (y) {
            cJSON_AddItemToArray(y, template_piece("SpecialToken", "[CLS]", 0));
            cJSON_AddItemToArray(y, template_piece("Sequence", "A", 0));
            cJSON_AddItemToArray(y, template_piece("SpecialToken", "[SEP]", 0));
            cJSON_AddItemToArray(y, template_piece("Sequence", "B", 1));
            cJSON_AddItemToArray(y, template_piece("SpecialToken", "[SEP]", 1));
        }
        y = cJSON_AddObjectToObject(x, "special_tokens");
        for (int i = 2; y && i <= 3; i++) { /* [CLS] = 2, [SEP] = 3 */
            cJSON *s = cJSON_AddObjectToObject(y, SPECIAL[i]);
            if (!s) break;
            cJSON_AddStringToObject(s, "id", SPECIAL[i]);
            cJSON *ids = cJSON_AddArrayToObject(s, "ids");
            if (ids) cJSON_AddItemToArray(ids, cJSON_CreateNumber(i));
            cJSON *tk = cJSON_AddArrayToObject(s, "tokens");
            if (tk) cJSON_AddItemToArray(tk, cJSON_CreateString(SPECIAL[i]));
        }
    }
    x = cJSON_AddObjectToObject(o, "decoder");
    if (x) {
        cJSON_AddStringToObject(x, "type", "WordPiece");
        cJSON_AddStringToObject(x, "prefix", "##");
        cJSON_AddTrueToObject(x, "cleanup");
    }
    x = cJSON_AddObjectToObject(o, "model");
    if (x) {
        cJSON_AddStringToObject(x, "type", "WordPiece");
        cJSON_AddStringToObject(x, "unk_token", "[UNK]");
        cJSON_AddStringToObject(x, "continuing_subword_prefix", "##");
        cJSON_AddNumberToObject(x, "max_input_chars_per_word", 100);
        y = cJSON_AddObjectToObject(x, "vocab");
        for (int i = 0; y && i < v->n; i++) cJSON_AddNumberToObject(y, v->tok[i], i);
    }
    return o;
}

static cJSON *tokenizer_config_json(void) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *a = cJSON_AddObjectToObject(o, "added_tokens_decoder");
    for (int i = 0; a && i < SPECIALS; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        cJSON_AddItemToObject(a, k, special_token(-1, SPECIAL[i]));
    }
    cJSON_AddFalseToObject(o, "clean_up_tokenization_spaces");
    cJSON_AddStringToObject(o, "cls_token", "[CLS]");
    cJSON_AddTrueToObject(o, "do_lower_case");
    cJSON_AddStringToObject(o, "mask_token", "[MASK]");
    cJSON_AddNumberToObject(o, "model_max_length", PD_GENMODEL_MAX_POS);
    cJSON_AddStringToObject(o, "pad_token", "[PAD]");
    cJSON_AddStringToObject(o, "sep_token", "[SEP]");
    cJSON_AddNullToObject(o, "strip_accents");
    cJSON_AddTrueToObject(o, "tokenize_chinese_chars");
    cJSON_AddStringToObject(o, "tokenizer_class", "BertTokenizer");
    cJSON_AddStringToObject(o, "unk_token", "[UNK]");
    return o;
}

static cJSON *special_tokens_map_json(void) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "cls_token", "[CLS]");
    cJSON_AddStringToObject(o, "mask_token", "[MASK]");
    cJSON_AddStringToObject(o, "pad_token", "[PAD]");
    cJSON_AddStringToObject(o, "sep_token", "[SEP]");
    cJSON_AddStringToObject(o, "unk_token", "[UNK]");
    return o;
}

/* ==== Files and directories ==== */

/* Prints a cJSON tree (consumed; NULL: it could not be built) into dir/name. */
static pd_status write_json(const char *dir, const char *name, cJSON *o, char *err, size_t errlen) {
    char path[PD_FS_PATH_MAX];
    pd_status st = !o ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory building %s", name)
                   : pd_path_join(path, sizeof path, dir, name) ? pd_err(err, errlen, PD_ERR_INVALID, "path too long")
                                                                : pd_json_write_file(path, o, err, errlen);
    cJSON_Delete(o);
    return st;
}

/* Files in the order they are moved into an existing directory: config.json last, because
 * loaders look for it first. */
static const char *const FILES[] = {"model.safetensors", "vocab.txt", "tokenizer_config.json",
                                    "special_tokens_map.json", "tokenizer.json", "config.json"};

/* Writes every file of the checkpoint into the (existing, empty) directory tmp. */
static pd_status write_all(const char *tmp, char *err, size_t errlen) {
    vocab *v = malloc(sizeof *v);
    if (!v) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    vocab_build(v);
    PD_ASSERT(v->n <= VOCAB_CAP);
    pd_status st = PD_OK;
    char path[4096];
    tensors *ts = calloc(1, sizeof *ts);
    if (!ts) {
        free(v);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    if (build_tensors(ts, v->n)) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for the weights");
    static const char *const meta[] = {"format", "pt"};
    if (!st && pd_path_join(path, sizeof path, tmp, "model.safetensors"))
        st = pd_err(err, errlen, PD_ERR_INVALID, "path too long");
    if (!st) st = pd_st_write(path, ts->t, ts->n, meta, 1, err, errlen); /* fsync'd */
    tensors_free(ts);
    free(ts);
    if (!st) {
        /* vocab.txt: one token a line, line number = id. */
        size_t cap = 16;
        for (int i = 0; i < v->n; i++) cap += strlen(v->tok[i]) + 1;
        char *b = malloc(cap), *p = b;
        if (!b) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        for (int i = 0; b && i < v->n; i++) p += sprintf(p, "%s\n", v->tok[i]);
        if (!st && pd_path_join(path, sizeof path, tmp, "vocab.txt")) st = pd_err(err, errlen, PD_ERR_INVALID, "path too long");
        if (!st) st = pd_fs_write(path, b, (size_t)(p - b), err, errlen);
        free(b);
    }
    if (!st) st = write_json(tmp, "tokenizer_config.json", tokenizer_config_json(), err, errlen);
    if (!st) st = write_json(tmp, "special_tokens_map.json", special_tokens_map_json(), err, errlen);
    if (!st) st = write_json(tmp, "tokenizer.json", tokenizer_json(v), err, errlen);
    if (!st) st = write_json(tmp, "config.json", config_json(v->n), err, errlen);
    if (!st) st = pd_fs_sync(tmp, err, errlen);
    free(v);
    return st;
}

pd_status pd_genmodel_write(const char *dir, char *err, size_t errlen) {
    char out[4000], tmp[4096], parent[4096];
    size_t n = dir ? strlen(dir) : 0;
    while (n > 1 && dir[n - 1] == '/') n--; /* "models/default/" names "models/default" */
    if (n == 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty output directory");
    if (n >= sizeof out) return pd_err(err, errlen, PD_ERR_INVALID, "output directory path too long");
    memcpy(out, dir, n);
    out[n] = 0;
    if (!strcmp(out, "/")) return pd_err(err, errlen, PD_ERR_INVALID, "refusing to write into /");
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == parent) parent[1] = 0;
    else *slash = 0;
    pd_status st = pd_fs_mkdir_p(parent, err, errlen);
    if (st) return st;
    pd_fs_remove_tree(tmp); /* a leftover of a crashed run with the same pid */
    if (mkdir(tmp, 0755) != 0) return pd_err(err, errlen, PD_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
    st = write_all(tmp, err, errlen);
    if (st) {
        pd_fs_remove_tree(tmp);
        return st;
    }
    /* A missing or empty dir is replaced in one rename; a non-empty one file by file. */
    if (rename(tmp, out) != 0) {
        int e = errno;
        struct stat sb;
        if ((e != ENOTEMPTY && e != EEXIST) || stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            pd_fs_remove_tree(tmp);
            return pd_err(err, errlen, PD_ERR_IO, "rename %s -> %s: %s", tmp, out, strerror(e));
        }
        for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
            char a[4096], b[4096];
            if (pd_path_join(a, sizeof a, tmp, FILES[i]) || pd_path_join(b, sizeof b, out, FILES[i]) || rename(a, b) != 0) {
                e = errno;
                pd_fs_remove_tree(tmp);
                return pd_err(err, errlen, PD_ERR_IO, "rename into %s: %s", out, strerror(e));
            }
        }
        pd_fs_remove_tree(tmp);
    }
    /* Make the rename itself durable. */
    return pd_fs_sync(parent, err, errlen);
}
