/* test_trainable.c - trainable adapters (adapters/trainable.h) on the reference models.
 *
 * Gradients: for every method and configuration, the analytic gradient of every parameter
 * tensor (head included) against central finite differences of the loss, sampled at up to 10
 * entries per tensor. The loss is the sum of pd_ctx_head_loss over a 3-sequence batch that mixes
 * two adapters and the bare base, so the callbacks must keep to their own rows. The forward pass
 * runs in float: eps is 1e-2 and the error is relative with a floor (3e-2: see FLOOR), as in
 * test_backward.c;
 * where that disagrees, smaller steps and Richardson extrapolation are tried too (see
 * grad_check), and the best agreement counts.
 * Parameters are jittered first so that no gradient is trivially zero (a fresh LoRA B is zero).
 * Also: fresh adapters equal the base at step 0 where PEFT / AdapterHub promise it; snapshots,
 * saved and reloaded directories and the trainable adapter give the same outputs (the prefix
 * projection folded); clones of the golden adapters equal the originals, pass the same gradient
 * check and train; dropout is deterministic; configs are validated with named fields. */
#include "trainable.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REF "tests/reference/"
#define NMODELS 6

static const char *const MODELS[NMODELS] = {"bert_cls_f32", "bert_qa_f32", "roberta_cls_f32", "roberta_qa_f32", "distilbert_cls_f32",
                                            "distilbert_qa_f32"};

/* ==== Helpers ==== */

/* Field by field, parameter i of a trainable adapter as the optimizer sees it
 * (pd_adapter_train_params); NULL skips a field. */
static void param_get(pd_adapter *a, int i, float **data, float **grad, size_t *n, int *decay, const char **name) {
    int np = 0;
    const pd_param *p = pd_adapter_train_params(a, &np);
    PD_ASSERT(i >= 0 && i < np);
    if (data) *data = p[i].data;
    if (grad) *grad = p[i].grad;
    if (n) *n = p[i].n;
    if (decay) *decay = p[i].decay;
    if (name) *name = p[i].name;
}

static int n_params(pd_adapter *a) {
    int np = 0;
    pd_adapter_train_params(a, &np);
    return np;
}

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static uint64_t rnd_u64(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static double rnd_normal(void) {
    double u = ((rnd_u64() >> 11) + 1.0) / 9007199254740993.0, v = (rnd_u64() >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

typedef struct env {
    const char *name;
    pd_model *m;
    const pd_config *cf;
    pd_task task;
    pd_pool *pool;
    pd_ctx *c;  /* training */
    pd_ctx *ci; /* inference */
} env;

static int32_t ids0[] = {2, 30, 31, 32, 33, 3}, ids1[] = {2, 40, 41, 3}, ids2[] = {2, 50, 51, 52, 53, 54, 3};
static const int lens[3] = {6, 4, 7};

static const pd_delta *dl(pd_adapter *a) { return a ? pd_adapter_delta(a) : NULL; }

/* pd_seq.first_only in batch_loss: -1 as the trainer sets it (classification), 0 none, 1 every
 * sequence, 2 sequences 0 and 2 only (a batch mixing the top layer's view and full rows). */
static int g_first_only = -1;
static int first_only(const env *e, int i) {
    if (g_first_only < 0) return e->task == PD_TASK_CLS;
    return g_first_only == 1 || (g_first_only == 2 && i != 1);
}

/* Loss of the batch [A, base, B] (A or B may be NULL: the base). Training forward with the
 * adapters' dropout keyed by seed; backward (into the adapters' gradients) when asked. */
static double batch_loss(env *e, pd_adapter *A, pd_adapter *B, int backward, uint64_t seed) {
    pd_adapter *ad[3] = {A, NULL, B};
    for (int i = 0; i < 3; i += 2)
        if (ad[i]) pd_adapter_set_training(ad[i], 1, seed + (uint64_t)i);
    pd_seq s[3] = {{ids0, NULL, lens[0], dl(A), first_only(e, 0)}, {ids1, NULL, lens[1], NULL, first_only(e, 1)},
                   {ids2, NULL, lens[2], dl(B), first_only(e, 2)}};
    char err[256];
    PD_ASSERT(pd_forward(e->c, s, 3, err, sizeof err) == PD_OK);
    PD_ASSERT(pd_ctx_grad_hidden(e->c));
    double loss = 0;
    for (int i = 0; i < 3; i++) {
        const pd_head *h = ad[i] ? pd_adapter_head(ad[i], e->m, e->task) : pd_model_head(e->m, e->task);
        const pd_head *g = ad[i] && backward ? pd_adapter_head_grad(ad[i]) : NULL;
        if (!h) continue; /* the base has no head for this task */
        if (e->task == PD_TASK_QA) loss += pd_ctx_head_loss(e->c, i, h, g, 0, 1 + i % 2, lens[i] - 2, 1.0f, NULL);
        else loss += pd_ctx_head_loss(e->c, i, h, g, i % h->num_labels, 0, 0, 1.0f, NULL);
    }
    if (backward) PD_ASSERT(pd_backward(e->c, err, sizeof err) == PD_OK);
    return loss;
}

/* Adds N(0, std) to every parameter so that no gradient is trivially zero. */
static void jitter(pd_adapter *a, double std) {
    for (int t = 0; t < n_params(a); t++) {
        float *d, *g;
        size_t n;
        param_get(a, t, &d, &g, &n, NULL, NULL);
        for (size_t i = 0; i < n; i++) d[i] += (float)(std * rnd_normal());
    }
    pd_adapter_params_changed(a);
}

/* Worst relative error of A's gradients over up to `samples` entries of each parameter tensor. */
static int n_small; /* entries that needed the smaller steps */
static int n_noisy; /* entries whose comparison needed the measured noise */

/* The relative error's floor: float rounding leaves ~1e-6 of relative noise on the loss (a few
 * units of 1e-6 absolute for these losses of 5 to 40), i.e. up to ~3e-4 on a central difference
 * with step 1e-2, so gradients much below 3e-2 are compared absolutely at that noise. */
#define FLOOR 3e-2

static double grad_check(env *e, pd_adapter *A, pd_adapter *B, int samples, const char *what, int *checked) {
    uint64_t seed = 77;
    pd_adapter_zero_grad(A);
    if (B) pd_adapter_zero_grad(B);
    batch_loss(e, A, B, 1, seed);
    double worst = 0;
    int nt = n_params(A), reported = 0;
    for (int t = 0; t < nt; t++) {
        float *d, *g;
        size_t n;
        const char *name;
        param_get(A, t, &d, &g, &n, NULL, &name);
        int k = n < (size_t)samples ? (int)n : samples;
        for (int j = 0; j < k; j++) {
            size_t i = n <= (size_t)samples ? (size_t)j : (size_t)(rnd_u64() % n);
            float keep = d[i];
            /* Central differences at steps h = 1e-2, h/3, ..., h/81, and Richardson's
             * (9 D(h/3) - D(h)) / 8 of consecutive pairs, which cancels the h^2 term: these small
             * random models bend sharply (saturated softmax; the ReLU of distilbert's classifier
             * puts kinks within 1e-3 of some points) while float rounding puts ~1e-6 of noise on
             * the loss, so no single step is right everywhere. The best agreement counts; most
             * entries agree at 1e-2 already and take no further steps. */
            double D[5], H[5], fd = 0, er = INFINITY;
            float h = 1e-2f;
            int q = 0;
            for (; q < 5; q++, h /= 3) {
                float xp = keep + h, xm = keep - h; /* the steps actually taken, in float */
                d[i] = xp;
                pd_adapter_params_changed(A);
                double lp = batch_loss(e, A, B, 0, seed);
                d[i] = xm;
                pd_adapter_params_changed(A);
                double lm = batch_loss(e, A, B, 0, seed);
                d[i] = keep;
                pd_adapter_params_changed(A);
                H[q] = ((double)xp - xm) / 2;
                D[q] = (lp - lm) / ((double)xp - xm);
                double cand[2] = {D[q], q ? (9 * D[q] - D[q - 1]) / 8 : D[q]};
                for (int c = 0; c < 2; c++) {
                    double e2 = fabs(cand[c] - g[i]) / (fabs(cand[c]) + fabs(g[i]) + FLOOR);
                    if (e2 < er) { er = e2; fd = cand[c]; }
                }
                if (er <= 2e-3) break;
                if (q == 0) n_small++;
            }
            if (er > 1e-2) {
                /* Still apart: measure the float noise on the loss right here (steps of ~1e-6
                 * move the true loss by far less than rounding does) and discount it: a central
                 * difference with step h is uncertain by up to noise / h. */
                double l0 = batch_loss(e, A, B, 0, seed), noise = 0;
                for (int u = -2; u <= 2; u++) {
                    if (!u) continue;
                    float x = keep + (float)u * 1e-6f * fmaxf(1.0f, fabsf(keep));
                    d[i] = x;
                    pd_adapter_params_changed(A);
                    noise = fmax(noise, fabs(batch_loss(e, A, B, 0, seed) - l0) - fabs(g[i] * ((double)x - keep)));
                    d[i] = keep;
                    pd_adapter_params_changed(A);
                }
                for (int c = 0; c < q && c < 5; c++) {
                    double e2 = fmax(0.0, fabs(D[c] - g[i]) - noise / H[c]) / (fabs(D[c]) + fabs(g[i]) + FLOOR);
                    if (e2 < er) { er = e2; fd = D[c]; }
                }
                n_noisy++;
            }
            if (er > 1e-2 && reported++ < 5) {
                fprintf(stderr, "  %s %s: %s[%zu] analytic %.6g finite-difference %.6g\n", e->name, what, name, i, g[i], fd);
                if (getenv("PD_DEBUG_FD")) { /* the finite difference over a range of steps */
                    for (float st = 3e-2f; st > 1e-4f; st /= 3) {
                        d[i] = keep + st; pd_adapter_params_changed(A); double a1 = batch_loss(e, A, B, 0, seed);
                        d[i] = keep - st; pd_adapter_params_changed(A); double a2 = batch_loss(e, A, B, 0, seed);
                        d[i] = keep; pd_adapter_params_changed(A);
                        double a0 = batch_loss(e, A, B, 0, seed);
                        fprintf(stderr, "      step %.1e: %.6g (one-sided %.6g / %.6g)\n", st, (a1 - a2) / (2.0 * st), (a1 - a0) / st,
                                (a0 - a2) / st);
                    }
                }
            }
            if (er > worst) worst = er;
            (*checked)++;
        }
    }
    return worst;
}

/* Head outputs of one sequence through the adapter (or the base), inference mode. */
static int infer(env *e, pd_adapter *a, const int32_t *ids, int len, float *out, int cap) {
    pd_seq s = {ids, NULL, len, dl(a), 0};
    char err[256];
    if (pd_forward(e->ci, &s, 1, err, sizeof err)) return -1;
    const pd_head *h = a ? pd_adapter_head(a, e->m, e->task) : pd_model_head(e->m, e->task);
    return pd_ctx_head(e->ci, 0, h, out, cap);
}

/* Max |difference| of the head outputs of a and b (either may be NULL: the base) over the three
 * test sequences; also of the final hidden states (hid_diff). */
static double out_diff(env *e, pd_adapter *a, pd_adapter *b, double *hid_diff) {
    const int32_t *seqs[3] = {ids0, ids1, ids2};
    double md = 0, hd = 0;
    for (int k = 0; k < 3; k++) {
        float oa[64], ob[64];
        int na = infer(e, a, seqs[k], lens[k], oa, 64);
        int H = e->cf->hidden, la = 0, lb = 0;
        pd_seq s = {seqs[k], NULL, lens[k], dl(a), 0};
        char err[256];
        PD_ASSERT(pd_forward(e->ci, &s, 1, err, sizeof err) == PD_OK);
        const float *h = pd_ctx_hidden(e->ci, 0, &la);
        float *ha = malloc(sizeof(float) * (size_t)la * H);
        memcpy(ha, h, sizeof(float) * (size_t)la * H);
        int nb = infer(e, b, seqs[k], lens[k], ob, 64);
        const float *hb = pd_ctx_hidden(e->ci, 0, &lb);
        if (na != nb || na <= 0 || la != lb) {
            free(ha);
            return INFINITY;
        }
        for (int i = 0; i < na; i++) md = fmax(md, fabs(oa[i] - ob[i]));
        for (int i = 0; i < la * H; i++) hd = fmax(hd, fabs(ha[i] - hb[i]));
        free(ha);
    }
    if (hid_diff) *hid_diff = hd;
    return md;
}

static int env_open(env *e, const char *name) {
    char dir[256], err[512];
    memset(e, 0, sizeof *e);
    e->name = name;
    snprintf(dir, sizeof dir, REF "models/%s", name);
    if (pd_model_load(dir, 0, &e->m, err, sizeof err)) {
        CHECKF(0, "%s: %s", name, err);
        return -1;
    }
    e->cf = pd_model_config(e->m);
    e->task = strstr(name, "_qa") ? PD_TASK_QA : PD_TASK_CLS;
    e->pool = pd_pool_new(2);
    e->c = pd_ctx_new(e->m, e->pool);
    e->ci = pd_ctx_new(e->m, e->pool);
    pd_ctx_set_training(e->c, 1);
    return 0;
}

static void env_close(env *e) {
    pd_ctx_free(e->c);
    pd_ctx_free(e->ci);
    pd_pool_free(e->pool);
    pd_model_free(e->m);
}

static pd_adapter *fresh(env *e, pd_method m, const char *config, uint64_t seed) {
    cJSON *c = config ? cJSON_Parse(config) : NULL;
    PD_ASSERT(!config || c);
    pd_adapter *a = NULL;
    char err[512];
    /* the base's label count, or 3 for a classifier on a base without one */
    int nl = e->task == PD_TASK_CLS && !pd_model_head(e->m, PD_TASK_CLS) ? 3 : 0;
    pd_status st = pd_adapter_new_trainable(e->m, m, c, e->task, NULL, nl, seed, &a, err, sizeof err);
    cJSON_Delete(c);
    CHECKF(st == PD_OK, "%s: new_trainable(%s, %s): %s", e->name, pd_method_name(m), config ? config : "defaults", err);
    return st ? NULL : a;
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* ==== The cases ==== */

#define ALL_LIN ".*layer\\\\.[0-9]+\\\\..*(query|key|value|dense|q_lin|k_lin|v_lin|out_lin|lin1|lin2)"

typedef struct tcase {
    const char *label;
    pd_method m;
    const char *config;
    int no_distilbert; /* prefix tuning */
} tcase;

static const tcase CASES[] = {
    {"lora (defaults)", PD_METHOD_LORA, NULL, 0},
    {"lora all, rslora, bias=all, lora_bias", PD_METHOD_LORA,
     "{\"r\": 4, \"lora_alpha\": 16, \"use_rslora\": true, \"bias\": \"all\", \"lora_bias\": true, \"target_modules\": \"" ALL_LIN "\"}", 0},
    {"lora bias=lora_only, dropout 0.3", PD_METHOD_LORA,
     "{\"r\": 2, \"lora_dropout\": 0.3, \"bias\": \"lora_only\", \"target_modules\": \"" ALL_LIN "\", \"rank_pattern\": {\"layer.1.*\": 3}}", 0},
    {"lora bias=all, dropout 0.2", PD_METHOD_LORA, "{\"r\": 3, \"lora_dropout\": 0.2, \"bias\": \"all\", \"init_lora_weights\": \"gaussian\"}", 0},
    {"ia3 (defaults)", PD_METHOD_IA3, NULL, 0},
    {"ia3 all, ff on ffn1+ffn2", PD_METHOD_IA3,
     "{\"target_modules\": \"" ALL_LIN "\", \"feedforward_modules\": \".*(intermediate\\\\.dense|lin1|output\\\\.dense|lin2)\"}", 0},
    {"prefix", PD_METHOD_PREFIX, "{\"num_virtual_tokens\": 5}", 1},
    {"prefix projection", PD_METHOD_PREFIX, "{\"num_virtual_tokens\": 4, \"prefix_projection\": true, \"encoder_hidden_size\": 16}", 1},
    {"prompt", PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 4}", 0},
    {"prompt (text init)", PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 7, \"prompt_init_text\": \"the movie was great\"}", 0},
    {"seq_bn (defaults)", PD_METHOD_BOTTLENECK, NULL, 0},
    {"double_seq_bn", PD_METHOD_BOTTLENECK, "{\"architecture\": \"double_seq_bn\", \"reduction_factor\": 4}", 0},
    {"par_bn", PD_METHOD_BOTTLENECK, "{\"architecture\": \"par_bn\", \"reduction_factor\": 4}", 0},
    {"bn ln_before/after, channel, dropout", PD_METHOD_BOTTLENECK,
     "{\"architecture\": \"bottleneck\", \"mh_adapter\": true, \"output_adapter\": true, \"reduction_factor\": 8, \"non_linearity\": \"gelu\", "
     "\"ln_before\": true, \"ln_after\": true, \"residual_before_ln\": false, \"adapter_residual_before_ln\": true, \"scaling\": \"channel\", "
     "\"dropout\": 0.25}", 0},
    {"bn post_add, learned, ln_after", PD_METHOD_BOTTLENECK,
     "{\"architecture\": \"seq_bn\", \"reduction_factor\": 4, \"non_linearity\": \"tanh\", \"residual_before_ln\": \"post_add\", "
     "\"scaling\": \"learned\", \"ln_after\": true, \"mh_adapter\": true, \"leave_out\": [1]}", 0},
    {"par_bn ln_after, learned, swish", PD_METHOD_BOTTLENECK,
     "{\"architecture\": \"par_bn\", \"reduction_factor\": 8, \"ln_after\": true, \"scaling\": \"learned\", \"non_linearity\": \"swish\", "
     "\"mh_adapter\": true}", 0},
    {"seq_bn no original_ln_after, res after ln", PD_METHOD_BOTTLENECK,
     "{\"architecture\": \"seq_bn\", \"reduction_factor\": 4, \"original_ln_after\": false, \"residual_before_ln\": false, "
     "\"non_linearity\": \"gelu_new\", \"scaling\": 0.5, \"init_weights\": \"houlsby\"}", 0},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static double worst_tab[NCASES][NMODELS];
static int checked_tab[NCASES][NMODELS];

static int applies(const env *e, int k) { return !(CASES[k].no_distilbert && e->cf->arch == PD_ARCH_DISTILBERT); }

/* ==== Tests per model ==== */

static void test_gradients(env *e, int mi) {
    for (int k = 0; k < NCASES; k++) {
        worst_tab[k][mi] = -1;
        if (!applies(e, k)) continue;
        int kb = (k + 1) % NCASES; /* the other adapter in the batch: the next case */
        while (!applies(e, kb)) kb = (kb + 1) % NCASES;
        pd_adapter *A = fresh(e, CASES[k].m, CASES[k].config, 1);
        pd_adapter *B = fresh(e, CASES[kb].m, CASES[kb].config, 2);
        if (!A || !B) { pd_adapter_release(A); pd_adapter_release(B); continue; }
        jitter(A, 0.1);
        jitter(B, 0.1);
        /* HF Trainer's decay rule: no decay for biases and LayerNorm parameters */
        for (int t = 0; t < n_params(A); t++) {
            const char *name;
            int decay;
            param_get(A, t, NULL, NULL, NULL, &decay, &name);
            if (strstr(name, "adapter_down.0.")) continue; /* a LayerNorm only with ln_before */
            int want = !(strstr(name, "bias") || strstr(name, "LayerNorm") || strstr(name, "adapter_norm"));
            CHECKF(decay == want, "%s %s: %s has decay %d", e->name, CASES[k].label, name, decay);
        }
        int checked = 0;
        double w = grad_check(e, A, B, 10, CASES[k].label, &checked);
        CHECKF(w < 1e-2, "%s %s: worst relative gradient error %.3g", e->name, CASES[k].label, w);
        worst_tab[k][mi] = w;
        checked_tab[k][mi] = checked;
        pd_adapter_release(A);
        pd_adapter_release(B);
    }
}

/* The top layer's view (pd_seq.first_only) changes no number a classifier reads: for every case
 * without dropout (the view keys LoRA dropout masks by its own rows), the loss, the head logits
 * and every gradient equal those of the full top layer, with the view on every sequence and on
 * two of three. QA: a first_only sequence has no QA output. */
static void test_view(env *e) {
    if (e->task == PD_TASK_QA) {
        pd_seq s = {ids0, NULL, lens[0], NULL, 1};
        char err[256];
        float out[64];
        PD_ASSERT(pd_forward(e->ci, &s, 1, err, sizeof err) == PD_OK);
        CHECKF(pd_ctx_head(e->ci, 0, pd_model_head(e->m, PD_TASK_QA), out, 64) == -1, "%s: QA output of a first_only sequence",
               e->name);
        return;
    }
    int cases = 0;
    for (int k = 0; k < NCASES; k++) {
        if (!applies(e, k) || (CASES[k].config && strstr(CASES[k].config, "dropout"))) continue;
        int kb = (k + 1) % NCASES;
        while (!applies(e, kb)) kb = (kb + 1) % NCASES;
        pd_adapter *A = fresh(e, CASES[k].m, CASES[k].config, 1);
        pd_adapter *B = fresh(e, CASES[kb].m, CASES[kb].config, 2);
        if (!A || !B) { pd_adapter_release(A); pd_adapter_release(B); continue; }
        jitter(A, 0.1);
        jitter(B, 0.1);
        int nt = n_params(A);
        float *ref[256] = {0};
        PD_ASSERT(nt <= 256);
        double loss[3];
        for (int mode = 0; mode < 3; mode++) {
            g_first_only = mode;
            pd_adapter_zero_grad(A);
            pd_adapter_zero_grad(B);
            loss[mode] = batch_loss(e, A, B, 1, 5);
            double worst = 0, scale = 0;
            for (int t = 0; t < nt; t++) {
                float *g;
                size_t n;
                param_get(A, t, NULL, &g, &n, NULL, NULL);
                if (!mode) {
                    ref[t] = malloc(sizeof(float) * n);
                    memcpy(ref[t], g, sizeof(float) * n);
                    continue;
                }
                for (size_t i = 0; i < n; i++) {
                    worst = fmax(worst, fabs((double)g[i] - ref[t][i]));
                    scale = fmax(scale, fabs((double)ref[t][i]));
                }
            }
            if (mode) {
                CHECKF(fabs(loss[mode] - loss[0]) <= 1e-5 * fabs(loss[0]), "%s %s view %d: loss %.9g, full %.9g", e->name,
                       CASES[k].label, mode, loss[mode], loss[0]);
                CHECKF(worst <= 1e-4 * scale, "%s %s view %d: gradients differ by %.3g (largest %.3g)", e->name, CASES[k].label, mode,
                       worst, scale);
            }
        }
        /* inference: the logits of a first_only sequence in a mixed batch */
        pd_adapter_set_training(A, 0, 0);
        pd_adapter_set_training(B, 0, 0);
        const pd_head *h = pd_adapter_head(A, e->m, e->task);
        float full[64], view[64];
        pd_seq s[2] = {{ids2, NULL, lens[2], dl(A), 0}, {ids0, NULL, lens[0], dl(B), 1}};
        char err[256];
        PD_ASSERT(pd_forward(e->ci, s, 2, err, sizeof err) == PD_OK);
        int nf = pd_ctx_head(e->ci, 0, h, full, 64);
        s[0].first_only = 1;
        s[1].first_only = 0;
        PD_ASSERT(pd_forward(e->ci, s, 2, err, sizeof err) == PD_OK);
        int nv = pd_ctx_head(e->ci, 0, h, view, 64);
        double d = nf == nv && nf > 0 ? 0 : INFINITY;
        for (int i = 0; i < nf && nf == nv; i++) d = fmax(d, fabs(full[i] - view[i]));
        CHECKF(d <= 1e-5, "%s %s: first_only logits differ by %.3g", e->name, CASES[k].label, d);
        for (int t = 0; t < nt; t++) free(ref[t]);
        pd_adapter_release(A);
        pd_adapter_release(B);
        cases++;
    }
    g_first_only = -1;
    CHECKF(cases >= 10, "%s: %d cases compared", e->name, cases);
}

/* Fresh adapters give the base's outputs where their init promises it: LoRA (B = 0), IA3
 * (ones), par_bn / mam_adapter (adapter_up = 0), with the head copied from the base. AdapterHub's
 * default "bert" init draws adapter_up too, so seq_bn starts off the base. */
static void test_step0(env *e) {
    static const struct { pd_method m; const char *config; int equal; } S[] = {
        {PD_METHOD_LORA, NULL, 1},
        {PD_METHOD_LORA, "{\"bias\": \"all\", \"lora_bias\": true, \"target_modules\": \"" ALL_LIN "\"}", 1},
        {PD_METHOD_IA3, NULL, 1},
        {PD_METHOD_BOTTLENECK, "{\"architecture\": \"par_bn\"}", 1},
        {PD_METHOD_BOTTLENECK, "{\"architecture\": \"double_seq_bn\", \"init_weights\": \"mam_adapter\"}", 1},
        {PD_METHOD_BOTTLENECK, NULL, 0},
    };
    for (size_t k = 0; k < sizeof S / sizeof S[0]; k++) {
        pd_adapter *a = fresh(e, S[k].m, S[k].config, 5);
        if (!a) continue;
        double hd = 0, od = out_diff(e, a, NULL, &hd);
        if (S[k].equal)
            CHECKF(od < 1e-5 && hd < 1e-5, "%s: fresh %s %s differs from the base by %g (hidden %g)", e->name, pd_method_name(S[k].m),
                   S[k].config ? S[k].config : "", od, hd);
        else
            CHECKF(hd > 1e-7, "%s: fresh seq_bn with the bert init should not be the base (hidden differs by %g)", e->name, hd);
        pd_adapter_release(a);
    }
}

/* Trainable adapter (inference mode) == its snapshot == the snapshot saved and reloaded ==
 * the trainable adapter saved directly and reloaded. */
static void test_snapshots(env *e) {
    char err[512];
    for (int k = 0; k < NCASES; k++) {
        if (!applies(e, k)) continue;
        pd_adapter *a = fresh(e, CASES[k].m, CASES[k].config, 3);
        if (!a) continue;
        jitter(a, 0.1);
        pd_adapter_set_training(a, 0, 0);
        pd_adapter *s = NULL, *l = NULL, *l2 = NULL;
        CHECKF(pd_adapter_snapshot(a, &s, err, sizeof err) == PD_OK, "%s %s snapshot: %s", e->name, CASES[k].label, err);
        char tmpl[] = "/tmp/pd_trainable_XXXXXX", tmpl2[] = "/tmp/pd_trainable_XXXXXX";
        char *dir = mkdtemp(tmpl), *dir2 = mkdtemp(tmpl2);
        PD_ASSERT(dir && dir2);
        if (s) {
            CHECK(n_params(s) == 0);
            CHECKF(pd_adapter_save_dir(s, dir, err, sizeof err) == PD_OK, "%s: %s", CASES[k].label, err);
            CHECKF(pd_adapter_load_dir(e->m, dir, &l, err, sizeof err) == PD_OK, "%s %s reload: %s", e->name, CASES[k].label, err);
        }
        CHECKF(pd_adapter_save_dir(a, dir2, err, sizeof err) == PD_OK, "%s: %s", CASES[k].label, err);
        CHECKF(pd_adapter_load_dir(e->m, dir2, &l2, err, sizeof err) == PD_OK, "%s %s reload of the trainable: %s", e->name, CASES[k].label, err);
        if (s && l && l2) {
            double h1, h2, h3;
            double d1 = out_diff(e, a, s, &h1), d2 = out_diff(e, s, l, &h2), d3 = out_diff(e, l, l2, &h3);
            CHECKF(d1 < 1e-5 && h1 < 1e-5, "%s %s: trainable vs snapshot differ by %g (hidden %g)", e->name, CASES[k].label, d1, h1);
            CHECKF(d2 == 0 && h2 == 0, "%s %s: snapshot vs reloaded differ by %g (hidden %g)", e->name, CASES[k].label, d2, h2);
            CHECKF(d3 == 0 && h3 == 0, "%s %s: saved snapshot vs saved trainable differ by %g", e->name, CASES[k].label, d3);
            /* the adapter's own head went into the files and came back */
            CHECK(pd_adapter_task(l) == e->task);
            CHECK(pd_adapter_params(l) == pd_adapter_params(s));
            if (strstr(CASES[k].label, "projection")) {
                /* folded: the files hold prompt_embeddings only, the MLP's tensors are not saved */
                CHECK(pd_adapter_params(l) < pd_adapter_params(a) + 1 && n_params(a) > 5);
                char p[600];
                struct stat sb;
                snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
                CHECK(stat(p, &sb) == 0);
            }
        }
        pd_adapter_release(l);
        pd_adapter_release(l2);
        pd_adapter_release(s);
        pd_adapter_release(a);
        rm_dir(dir);
        rm_dir(dir2);
    }
}

/* The prefix projection's fold: the trainable adapter computes its prefixes through the MLP; the
 * snapshot holds P = MLP(embedding) as plain prompt_embeddings. Changing the MLP and calling
 * params_changed must change the outputs; a snapshot then follows. */
static void test_projection_fold(env *e) {
    if (e->cf->arch == PD_ARCH_DISTILBERT) return;
    pd_adapter *a = fresh(e, PD_METHOD_PREFIX, "{\"num_virtual_tokens\": 3, \"prefix_projection\": true, \"encoder_hidden_size\": 8}", 9);
    if (!a) return;
    char err[256];
    pd_adapter_set_training(a, 0, 0);
    pd_adapter *s0 = NULL, *s1 = NULL;
    PD_ASSERT(pd_adapter_snapshot(a, &s0, err, sizeof err) == PD_OK);
    double d0 = out_diff(e, a, s0, NULL);
    int found = 0;
    for (int t = 0; t < n_params(a); t++) {
        float *d, *g;
        size_t n;
        const char *name;
        param_get(a, t, &d, &g, &n, NULL, &name);
        if (!strcmp(name, "prompt_encoder.transform.0.weight")) {
            found = 1;
            for (size_t i = 0; i < n; i++) d[i] *= 1.5f;
        }
        CHECKF(strcmp(name, "prompt_embeddings"), "%s: prompt_embeddings is derived under projection, not a parameter", e->name);
    }
    CHECK(found);
    pd_adapter_params_changed(a);
    double moved = out_diff(e, a, s0, NULL);
    PD_ASSERT(pd_adapter_snapshot(a, &s1, err, sizeof err) == PD_OK);
    double d1 = out_diff(e, a, s1, NULL);
    CHECKF(d0 < 1e-5 && d1 < 1e-5 && moved > 1e-4, "%s: projection fold: before %g, after change %g (moved %g)", e->name, d0, d1, moved);
    /* a clone of the trainable adapter keeps training through the MLP; a clone of the
     * snapshot trains the folded prefix itself */
    pd_adapter *c = NULL, *c2 = NULL;
    CHECK(pd_adapter_clone_trainable(a, &c, err, sizeof err) == PD_OK);
    CHECK(pd_adapter_clone_trainable(s1, &c2, err, sizeof err) == PD_OK);
    if (c && c2) {
        pd_adapter_set_training(c, 0, 0);
        pd_adapter_set_training(c2, 0, 0);
        CHECK(n_params(c) == n_params(a));
        CHECK(n_params(c2) == n_params(a) - 4); /* 5 MLP tensors -> prompt_embeddings */
        CHECK(out_diff(e, a, c, NULL) < 1e-5 && out_diff(e, a, c2, NULL) < 1e-5);
    }
    pd_adapter_release(c);
    pd_adapter_release(c2);
    pd_adapter_release(s0);
    pd_adapter_release(s1);
    pd_adapter_release(a);
}

/* Dropout: the same seed gives the same training forward pass, another seed another, and a
 * training pass differs from inference; the backward pass sees the forward's masks (checked by
 * the gradient cases with dropout). */
static void test_dropout(env *e) {
    pd_adapter *a = fresh(e, PD_METHOD_LORA, "{\"lora_dropout\": 0.5, \"target_modules\": \"" ALL_LIN "\"}", 4);
    if (!a) return;
    jitter(a, 0.3);
    double l1 = batch_loss(e, a, NULL, 0, 10), l2 = batch_loss(e, a, NULL, 0, 10), l3 = batch_loss(e, a, NULL, 0, 11);
    pd_adapter_set_training(a, 0, 0);
    pd_seq s[3] = {{ids0, NULL, lens[0], dl(a), 0}, {ids1, NULL, lens[1], NULL, 0}, {ids2, NULL, lens[2], dl(a), 0}};
    char err[256];
    PD_ASSERT(pd_forward(e->c, s, 3, err, sizeof err) == PD_OK);
    double l4 = 0;
    for (int i = 0; i < 3; i++) {
        const pd_head *h = i == 1 ? pd_model_head(e->m, e->task) : pd_adapter_head(a, e->m, e->task);
        if (e->task == PD_TASK_QA) l4 += pd_ctx_head_loss(e->c, i, h, NULL, 0, 1 + i % 2, lens[i] - 2, 1.0f, NULL);
        else l4 += pd_ctx_head_loss(e->c, i, h, NULL, i % h->num_labels, 0, 0, 1.0f, NULL);
    }
    CHECKF(l1 == l2, "%s: dropout not deterministic (%.9g vs %.9g)", e->name, l1, l2);
    CHECKF(l1 != l3 && l1 != l4, "%s: dropout has no effect (%g %g %g)", e->name, l1, l3, l4);
    pd_adapter_release(a);
}

/* Defaults, heads and decay flags of fresh adapters. */
static void test_fresh_details(env *e) {
    pd_adapter *a = fresh(e, PD_METHOD_LORA, NULL, 1);
    if (!a) return;
    int lora = 0, heads = 0, decay_ok = 1;
    const char *q = e->cf->arch == PD_ARCH_DISTILBERT ? ".q_lin.lora_A.weight" : ".query.lora_A.weight";
    int nq = 0;
    for (int t = 0; t < n_params(a); t++) {
        float *d, *g;
        size_t n;
        int decay;
        const char *name;
        param_get(a, t, &d, &g, &n, &decay, &name);
        if (strstr(name, "lora_A")) {
            lora++;
            CHECKF(n == (size_t)8 * e->cf->hidden, "%s: %s has %zu entries, want r = 8", e->name, name, n);
            /* kaiming_uniform_(a = sqrt(5)): inside +-1/sqrt(in) */
            for (size_t i = 0; i < n; i++) decay_ok &= fabsf(d[i]) <= 1.0f / sqrtf((float)e->cf->hidden);
        }
        if (strstr(name, "lora_B")) for (size_t i = 0; i < n; i++) decay_ok &= d[i] == 0.0f;
        if (strstr(name, q)) nq++;
        if (strstr(name, "classifier") || strstr(name, "qa_outputs")) heads++;
        int is_bias = strstr(name, "bias") != NULL;
        decay_ok &= decay == !is_bias;
    }
    CHECKF(lora == 2 * e->cf->layers && nq == e->cf->layers, "%s: default LoRA targets: %d lora_A (%d query)", e->name, lora, nq);
    CHECKF(heads >= 2, "%s: the head is not among the parameters", e->name);
    CHECK(decay_ok);
    pd_adapter_release(a);
    /* PEFT's TEXT init: the word embeddings of tokenizer(text)["input_ids"] (special tokens
     * included), repeated to num_virtual_tokens */
    a = fresh(e, PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 9, \"prompt_init_text\": \"the movie\"}", 1);
    if (a) {
        const pd_tokenizer *tk = pd_model_tokenizer(e->m);
        pd_tokens tt;
        memset(&tt, 0, sizeof tt);
        char err[256];
        PD_ASSERT(pd_tokenizer_tokenize(tk, "the movie", 9, &tt, err, sizeof err) == PD_OK);
        int32_t ids[16], ty[16], src[16], ix[16];
        int n = pd_tokenizer_assemble(tk, tt.ids, tt.n, NULL, -1, ids, ty, src, ix);
        int H = e->cf->hidden, same = n == tt.n + pd_tokenizer_num_special(tk, 0) && n >= 3;
        float *row = malloc(sizeof(float) * (size_t)H);
        for (int t = 0; t < n_params(a); t++) {
            float *d;
            size_t nn;
            const char *name;
            param_get(a, t, &d, NULL, &nn, NULL, &name);
            if (strcmp(name, "prompt_embeddings")) continue;
            for (int r = 0; r < 9 && same; r++) {
                pd_model_word_row(e->m, ids[r % n], row);
                same = !memcmp(d + (size_t)r * H, row, sizeof(float) * H);
            }
        }
        free(row);
        CHECKF(same, "%s: prompt_init_text rows are not the text's word embeddings", e->name);
        pd_tokens_free(&tt);
        pd_adapter_release(a);
    }
    /* a classifier with other labels: new head, the given names, saved where PEFT / AdapterHub keep them */
    if (e->task == PD_TASK_CLS) {
        char *labels[5] = {"a", "b", "c", "d", "e"};
        char err[512];
        for (int hub = 0; hub < 2; hub++) {
            pd_adapter *b = NULL;
            pd_status st = pd_adapter_new_trainable(e->m, hub ? PD_METHOD_BOTTLENECK : PD_METHOD_IA3, NULL, PD_TASK_CLS, labels, 5, 1, &b, err,
                                                    sizeof err);
            CHECKF(st == PD_OK, "%s: %s", e->name, err);
            if (st) continue;
            CHECK(pd_adapter_num_labels(b) == 5 && !strcmp(pd_adapter_label(b, 4), "e"));
            char tmpl[] = "/tmp/pd_trainable_XXXXXX";
            char *dir = mkdtemp(tmpl);
            pd_adapter *l = NULL;
            CHECK(pd_adapter_save_dir(b, dir, err, sizeof err) == PD_OK);
            CHECKF(pd_adapter_load_dir(e->m, dir, &l, err, sizeof err) == PD_OK, "%s: %s", e->name, err);
            if (l) CHECK(pd_adapter_num_labels(l) == 5 && !strcmp(pd_adapter_label(l, 2), "c"));
            char p[600];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", dir, hub ? "model_head.safetensors" : "adapter_model.safetensors");
            CHECK(stat(p, &sb) == 0);
            pd_adapter_release(l);
            pd_adapter_release(b);
            rm_dir(dir);
        }
    }
}

/* An adapter for the task the base checkpoint has no head for: a new head (PEFT: plus bert's
 * pooler or distilbert's pre_classifier when the base lacks them, trained and saved too), whose
 * gradients check out and which survives saving. And no head at all (PD_TASK_NONE). */
static void test_other_task(env *e) {
    pd_task own = e->task;
    e->task = own == PD_TASK_CLS ? PD_TASK_QA : PD_TASK_CLS;
    static const struct { pd_method m; const char *config; } C[] = {{PD_METHOD_LORA, NULL}, {PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 3}"},
                                                                  {PD_METHOD_BOTTLENECK, "{\"reduction_factor\": 8}"}};
    for (size_t k = 0; k < sizeof C / sizeof C[0]; k++) {
        pd_adapter *a = fresh(e, C[k].m, C[k].config, 6), *s = NULL, *l = NULL;
        if (!a) continue;
        const pd_head *h = pd_adapter_head(a, e->m, e->task);
        CHECKF(h && h->task == e->task && pd_adapter_task(a) == e->task, "%s: no own %s head", e->name, pd_task_name(e->task));
        jitter(a, 0.1);
        int checked = 0;
        double w = grad_check(e, a, NULL, 3, "other task", &checked);
        CHECKF(w < 1e-2, "%s %s for %s: worst relative gradient error %.3g", e->name, pd_method_name(C[k].m), pd_task_name(e->task), w);
        char err[512], tmpl[] = "/tmp/pd_trainable_XXXXXX";
        char *dir = mkdtemp(tmpl);
        pd_adapter_set_training(a, 0, 0);
        CHECK(pd_adapter_snapshot(a, &s, err, sizeof err) == PD_OK && pd_adapter_save_dir(s, dir, err, sizeof err) == PD_OK);
        CHECKF(pd_adapter_load_dir(e->m, dir, &l, err, sizeof err) == PD_OK, "%s: %s", e->name, err);
        if (l) {
            double hd = 0, od = out_diff(e, a, l, &hd);
            CHECKF(od < 1e-5 && hd < 1e-5, "%s %s for %s: reloaded differs by %g", e->name, pd_method_name(C[k].m), pd_task_name(e->task), od);
        }
        pd_adapter_release(l);
        pd_adapter_release(s);
        pd_adapter_release(a);
        rm_dir(dir);
    }
    e->task = own;
    pd_adapter *a = NULL;
    char err[512];
    CHECKF(pd_adapter_new_trainable(e->m, PD_METHOD_LORA, NULL, PD_TASK_NONE, NULL, 0, 1, &a, err, sizeof err) == PD_OK, "%s", err);
    if (a) CHECK(pd_adapter_task(a) == PD_TASK_NONE && !pd_adapter_head_grad(a) && n_params(a) == 2 * e->cf->layers * 2);
    pd_adapter_release(a);
}

/* Config errors name the field. */
static void test_validation(env *e) {
    static const struct { pd_method m; const char *config; pd_status st; const char *needle; } V[] = {
        {PD_METHOD_LORA, "{\"r\": 0}", PD_ERR_INVALID, "config.r must be > 0"},
        {PD_METHOD_LORA, "{\"r\": 2.5}", PD_ERR_INVALID, "config.r"},
        {PD_METHOD_LORA, "{\"rank\": 4}", PD_ERR_INVALID, "config.rank"},
        {PD_METHOD_LORA, "{\"lora_dropout\": 1}", PD_ERR_INVALID, "config.lora_dropout"},
        {PD_METHOD_LORA, "{\"bias\": \"some\"}", PD_ERR_INVALID, "config.bias"},
        {PD_METHOD_LORA, "{\"target_modules\": [\"querry\"]}", PD_ERR_INVALID, "querry"},
        {PD_METHOD_LORA, "{\"target_modules\": \"nothing.*\"}", PD_ERR_INVALID, "config.target_modules"},
        {PD_METHOD_LORA, "{\"target_modules\": [\"embeddings.word_embeddings\"]}", PD_ERR_INVALID, "config.target_modules"},
        {PD_METHOD_LORA, "{\"init_lora_weights\": \"pissa\"}", PD_ERR_UNSUPPORTED, "config.init_lora_weights"},
        {PD_METHOD_IA3, "{\"feedforward_modules\": [\"nope\"]}", PD_ERR_INVALID, "config.feedforward_modules"},
        {PD_METHOD_IA3, "{\"target_modules\": [\"value\", \"v_lin\"], \"feedforward_modules\": [\"value\", \"v_lin\", \"output.dense\", \"lin2\"]}", PD_ERR_INVALID,
         "config.feedforward_modules must be a subset"},
        {PD_METHOD_BOTTLENECK, "{\"architecture\": \"par_bn\", \"leave_out\": [0, 1, 2]}", PD_ERR_INVALID, "no adapter"},
        {PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 1000}", PD_ERR_INVALID, "config.num_virtual_tokens"},
        {PD_METHOD_PROMPT, "{\"num_virtual_tokens\": 0}", PD_ERR_INVALID, "config.num_virtual_tokens must be > 0"},
        {PD_METHOD_PROMPT, "{\"prompt_init_text\": 5}", PD_ERR_INVALID, "config.prompt_init_text"},
        {PD_METHOD_LORA, "{\"r\": 4, \"rank_pattern\": {\"query\": 0}}", PD_ERR_INVALID, "config.rank_pattern.query"},
        {PD_METHOD_BOTTLENECK, "{\"architecture\": \"lora\"}", PD_ERR_INVALID, "config.architecture"},
        {PD_METHOD_BOTTLENECK, "{\"reduction_factor\": 0}", PD_ERR_INVALID, "config.reduction_factor"},
        {PD_METHOD_BOTTLENECK, "{\"non_linearity\": \"wiggle\"}", PD_ERR_INVALID, "config.non_linearity"},
        {PD_METHOD_BOTTLENECK, "{\"dropout\": 2}", PD_ERR_INVALID, "config.dropout"},
        {PD_METHOD_BOTTLENECK, "{\"architecture\": \"bottleneck\"}", PD_ERR_INVALID, "config."},
    };
    for (size_t k = 0; k < sizeof V / sizeof V[0]; k++) {
        cJSON *c = cJSON_Parse(V[k].config);
        pd_adapter *a = NULL;
        char err[512] = "";
        pd_status st = pd_adapter_new_trainable(e->m, V[k].m, c, e->task, NULL, 0, 1, &a, err, sizeof err);
        CHECKF(st == V[k].st && strstr(err, V[k].needle) && !a, "%s %s: status %d, message \"%s\"", pd_method_name(V[k].m), V[k].config, st, err);
        cJSON_Delete(c);
        pd_adapter_release(a);
    }
    {
        pd_adapter *a = NULL;
        char err[512] = "";
        cJSON *c = cJSON_Parse("{\"encoder_hidden_size\": -1}");
        pd_status st = pd_adapter_new_trainable(e->m, PD_METHOD_PREFIX, c, e->task, NULL, 0, 1, &a, err, sizeof err);
        if (e->cf->arch == PD_ARCH_DISTILBERT) CHECKF(st == PD_ERR_UNSUPPORTED && strstr(err, "distilbert") && !a, "%s", err);
        else CHECKF(st == PD_ERR_INVALID && strstr(err, "config.encoder_hidden_size") && !a, "%s", err);
        cJSON_Delete(c);
        pd_adapter_release(a);
    }
    /* the same seed gives the same adapter, another seed another */
    pd_adapter *a = fresh(e, PD_METHOD_PROMPT, NULL, 42), *b = fresh(e, PD_METHOD_PROMPT, NULL, 42), *c = fresh(e, PD_METHOD_PROMPT, NULL, 43);
    if (a && b && c) {
        float *da = NULL, *db = NULL, *dc = NULL, *g;
        size_t n = 0;
        const char *name;
        for (int t = 0; t < n_params(a); t++) {
            param_get(a, t, &g, NULL, &n, NULL, &name);
            if (strcmp(name, "prompt_embeddings")) continue;
            param_get(a, t, &da, &g, &n, NULL, NULL);
            param_get(b, t, &db, &g, &n, NULL, NULL);
            param_get(c, t, &dc, &g, &n, NULL, NULL);
        }
        PD_ASSERT(da && n == (size_t)20 * e->cf->hidden);
        CHECK(!memcmp(da, db, n * sizeof(float)) && memcmp(da, dc, n * sizeof(float)));
        /* nn.Embedding's N(0, 1) */
        double m = 0, v = 0;
        for (size_t i = 0; i < n; i++) { m += da[i]; v += (double)da[i] * da[i]; }
        m /= (double)n;
        v = v / (double)n - m * m;
        CHECKF(fabs(m) < 0.2 && fabs(v - 1) < 0.3, "prompt init mean %g var %g", m, v);
    }
    pd_adapter_release(a);
    pd_adapter_release(b);
    pd_adapter_release(c);
}

/* ==== Clones of the golden adapters ==== */

static double golden_worst[64];
static char golden_name[64][96];
static int n_golden;

static void test_clones(env *envs) {
    DIR *d = opendir(REF "adapters");
    if (!d) { TEST_SKIP("no golden adapters"); return; }
    struct dirent *de;
    char names[64][128];
    int n = 0;
    while ((de = readdir(d)) && n < 64)
        if (de->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%.100s", de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int k = 0; k < n; k++) {
        env *e = NULL;
        for (int i = 0; i < NMODELS; i++)
            if (!strncmp(names[k], MODELS[i], strlen(MODELS[i])) && names[k][strlen(MODELS[i])] == '_') e = &envs[i];
        if (!e || !e->m) continue;
        char dir[300], err[512];
        snprintf(dir, sizeof dir, REF "adapters/%.100s", names[k]);
        pd_adapter *g = NULL, *c = NULL;
        if (pd_adapter_load_dir(e->m, dir, &g, err, sizeof err)) { CHECKF(0, "%s: %s", names[k], err); continue; }
        CHECKF(pd_adapter_clone_trainable(g, &c, err, sizeof err) == PD_OK, "%s clone: %s", names[k], err);
        if (!c) { pd_adapter_release(g); continue; }
        pd_adapter_set_training(c, 0, 0);
        double hd = 0, od = out_diff(e, g, c, &hd);
        CHECKF(od == 0 && hd == 0, "%s: clone differs from the original by %g (hidden %g)", names[k], od, hd);
        CHECK(n_params(c) > 0 && n_params(g) == 0);
        /* gradients of the clone, mixed with a fresh LoRA in the batch */
        pd_adapter *b = fresh(e, PD_METHOD_LORA, NULL, 8);
        int checked = 0;
        double w = grad_check(e, c, b, 4, names[k], &checked);
        CHECKF(w < 1e-2, "%s: clone worst relative gradient error %.3g", names[k], w);
        if (n_golden < 64) {
            golden_worst[n_golden] = w;
            snprintf(golden_name[n_golden++], sizeof golden_name[0], "%.90s", names[k]);
        }
        /* and it trains: plain gradient descent on the batch lowers the loss */
        double l0 = 0, l = 0;
        for (int step = 0; step < 25; step++) {
            pd_adapter_zero_grad(c);
            pd_adapter_zero_grad(b);
            l = batch_loss(e, c, b, 1, 1000 + (uint64_t)step);
            if (step == 0) l0 = l;
            double norm = 0;
            for (int t = 0; t < n_params(c); t++) {
                float *p, *gr;
                size_t nn;
                param_get(c, t, &p, &gr, &nn, NULL, NULL);
                for (size_t i = 0; i < nn; i++) norm += (double)gr[i] * gr[i];
            }
            double scale = 0.05 / (sqrt(norm) + 1e-12);
            for (int t = 0; t < n_params(c); t++) {
                float *p, *gr;
                size_t nn;
                param_get(c, t, &p, &gr, &nn, NULL, NULL);
                for (size_t i = 0; i < nn; i++) p[i] -= (float)(scale * gr[i]);
            }
            pd_adapter_params_changed(c);
        }
        CHECKF(l < l0 - 1e-3, "%s: 25 steps took the loss from %g to %g", names[k], l0, l);
        /* the trained clone snapshots and differs from the original now */
        pd_adapter *s = NULL;
        pd_adapter_set_training(c, 0, 0);
        CHECK(pd_adapter_snapshot(c, &s, err, sizeof err) == PD_OK);
        if (s) {
            double h2 = 0;
            CHECK(out_diff(e, c, s, &h2) < 1e-5 && h2 < 1e-5);
            CHECK(out_diff(e, g, s, NULL) > 1e-4);
        }
        pd_adapter_release(s);
        pd_adapter_release(b);
        pd_adapter_release(c);
        pd_adapter_release(g);
    }
}

int main(void) {
    if (access(REF "models/bert_cls_f32", R_OK) != 0) {
        TEST_SKIP("no reference models");
        return TEST_SUMMARY("test_trainable");
    }
    env envs[NMODELS];
    for (int i = 0; i < NMODELS; i++) {
        if (env_open(&envs[i], MODELS[i])) continue;
        printf("%s\n", MODELS[i]);
        test_gradients(&envs[i], i);
        test_view(&envs[i]);
        test_step0(&envs[i]);
        test_snapshots(&envs[i]);
        test_projection_fold(&envs[i]);
        test_dropout(&envs[i]);
        test_fresh_details(&envs[i]);
        test_other_task(&envs[i]);
        test_validation(&envs[i]);
    }
    test_clones(envs);
    /* the table: worst relative gradient error per method / configuration and model */
    printf("\nworst relative gradient error (|fd - g| / (|fd| + |g| + %g); '-' = not applicable)\n%-42s", FLOOR, "method / config");
    for (int i = 0; i < NMODELS; i++) printf(" %14.*s", (int)strlen(MODELS[i]) - 4, MODELS[i]); /* without "_f32" */
    printf("  entries\n");
    for (int k = 0; k < NCASES; k++) {
        int tot = 0;
        printf("%-42s", CASES[k].label);
        for (int i = 0; i < NMODELS; i++) {
            if (worst_tab[k][i] < 0) printf(" %14s", "-");
            else printf(" %14.2e", worst_tab[k][i]);
            tot += checked_tab[k][i];
        }
        printf("  %d\n", tot);
    }
    printf("(%d entries needed steps below 1e-2, %d of them the measured float noise)\n", n_small, n_noisy);
    printf("\nclones of the golden adapters (4 entries per tensor)\n");
    for (int k = 0; k < n_golden; k++) printf("  %-44s %.2e\n", golden_name[k], golden_worst[k]);
    for (int i = 0; i < NMODELS; i++)
        if (envs[i].m) env_close(&envs[i]);
    return TEST_SUMMARY("test_trainable");
}
