/* optim.c - AdamW, the learning-rate schedule, gradient clipping and the optimizer state file,
 * over plain parameter arrays. See optim.h. Arithmetic follows torch 1.13's single-tensor AdamW
 * in float32 (moments and parameters are float tensors there too), with the scalar factors in
 * double as Python computes them, so a step here and a step in torch agree to float rounding. */
#include "optim.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== Formulas ==== */

void pd_adamw_update(float *p, const float *g, float *m, float *v, size_t n, long t, double lr, double wd, double beta1,
                     double beta2, double eps) {
    PD_ASSERT(t >= 1);
    /* torch.optim._functional._single_tensor_adamw:
     *   param.mul_(1 - lr * weight_decay)
     *   exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
     *   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
     *   step_size = lr / (1 - beta1 ** step)
     *   denom = (exp_avg_sq.sqrt() / sqrt(1 - beta2 ** step)).add_(eps)
     *   param.addcdiv_(exp_avg, denom, value=-step_size) */
    float decay = (float)(1.0 - lr * wd);
    float b1 = (float)beta1, c1 = (float)(1.0 - beta1), b2 = (float)beta2, c2 = (float)(1.0 - beta2);
    float step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    float e = (float)eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        p[i] *= decay;
        m[i] = m[i] * b1 + gi * c1;
        v[i] = v[i] * b2 + gi * gi * c2;
        float denom = sqrtf(v[i]) / bc2_sqrt + e;
        p[i] += -step_size * (m[i] / denom);
    }
}

double pd_lr_lambda(long step, long warmup, long total) {
    /* transformers.optimization.get_linear_schedule_with_warmup's lr_lambda */
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    double r = (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1);
    return r > 0 ? r : 0.0;
}

long pd_warmup_steps(double ratio, long total) {
    if (ratio <= 0) return 0;
    return (long)ceil((double)total * ratio);
}

/* ==== Over a parameter list ==== */

double pd_grad_norm(const pd_param *p, int n) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (size_t k = 0; k < p[i].n; k++) s += (double)p[i].grad[k] * p[i].grad[k];
        total += s; /* ||(||g_1||, ..., ||g_k||)|| = sqrt(sum of squares) */
    }
    return sqrt(total);
}

double pd_grad_clip(const pd_param *p, int n, double max_norm) {
    double norm = pd_grad_norm(p, n);
    if (max_norm <= 0) return norm;
    /* torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 */
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    float c = (float)coef;
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < p[i].n; k++) p[i].grad[k] *= c;
    return norm;
}

/* ==== AdamW state ==== */

struct pd_adamw {
    int nt;
    pd_param *p;    /* (nt) the caller's parameter list, copied */
    float **m, **v; /* (nt) -> (p[i].n) */
    long t;
    double beta1, beta2, eps, wd;
};

void pd_adamw_free(pd_adamw *o) {
    if (!o) return;
    for (int i = 0; i < o->nt; i++) {
        if (o->m) free(o->m[i]);
        if (o->v) free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->p);
    free(o);
}

pd_adamw *pd_adamw_new(const pd_param *p, int n, double beta1, double beta2, double eps, double weight_decay) {
    pd_adamw *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->nt = n;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->wd = weight_decay;
    size_t k = (size_t)(n > 0 ? n : 1);
    o->p = calloc(k, sizeof *o->p);
    o->m = calloc(k, sizeof *o->m);
    o->v = calloc(k, sizeof *o->v);
    if (!o->p || !o->m || !o->v) { pd_adamw_free(o); return NULL; }
    for (int i = 0; i < n; i++) {
        o->p[i] = p[i];
        o->m[i] = calloc(p[i].n ? p[i].n : 1, sizeof(float));
        o->v[i] = calloc(p[i].n ? p[i].n : 1, sizeof(float));
        if (!o->m[i] || !o->v[i]) { pd_adamw_free(o); return NULL; }
    }
    return o;
}

/* A share of one step: elements [k * CHUNK, (k + 1) * CHUNK) of the concatenated tensors. The
 * update is elementwise, so how the elements are split does not change a single bit. */
#define STEP_CHUNK ((size_t)1 << 16)

typedef struct step_job {
    pd_adamw *o;
    double lr;
    size_t *start; /* (nt + 1) first chunk of each tensor */
} step_job;

static void step_chunk(void *arg, int k) {
    step_job *j = arg;
    pd_adamw *o = j->o;
    int i = 0;
    while (j->start[i + 1] <= (size_t)k) i++;
    const pd_param *p = &o->p[i];
    size_t a = ((size_t)k - j->start[i]) * STEP_CHUNK, n = p->n - a < STEP_CHUNK ? p->n - a : STEP_CHUNK;
    pd_adamw_update(p->data + a, p->grad + a, o->m[i] + a, o->v[i] + a, n, o->t, j->lr, p->decay ? o->wd : 0.0, o->beta1,
                    o->beta2, o->eps);
}

void pd_adamw_step(pd_adamw *o, pd_pool *pool, double lr) {
    o->t++;
    if (!pool) {
        for (int i = 0; i < o->nt; i++) {
            const pd_param *p = &o->p[i];
            pd_adamw_update(p->data, p->grad, o->m[i], o->v[i], p->n, o->t, lr, p->decay ? o->wd : 0.0, o->beta1, o->beta2,
                            o->eps);
        }
        return;
    }
    size_t stack[65], *start = o->nt < 64 ? stack : malloc(sizeof(size_t) * (size_t)(o->nt + 1));
    if (!start) { /* out of memory for the split: the same step, on this thread */
        o->t--;
        pd_adamw_step(o, NULL, lr);
        return;
    }
    start[0] = 0;
    for (int i = 0; i < o->nt; i++) start[i + 1] = start[i] + (o->p[i].n + STEP_CHUNK - 1) / STEP_CHUNK;
    step_job j = {o, lr, start};
    pd_pool_run(pool, step_chunk, &j, (int)start[o->nt]);
    if (start != stack) free(start);
}

long pd_adamw_steps(const pd_adamw *o) { return o->t; }

/* ==== State file ==== */

static const char *const PREFIX[3] = {"param.", "m.", "v."};

pd_status pd_adamw_state_write(const char *path, const pd_param *p, int np, float *const *m, float *const *v, long step,
                               const char *const *meta_kv, int n_meta, char *err, size_t errlen) {
    int n = 3 * np;
    pd_st_wtensor *w = calloc((size_t)(n > 0 ? n : 1), sizeof *w);
    char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    const char **kv = calloc((size_t)(2 * n_meta + 2), sizeof *kv);
    pd_status st = PD_OK;
    if (!w || !names || !kv) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < np && !st; i++) {
        const float *src[3] = {p[i].data, m[i], v[i]};
        for (int k = 0; k < 3; k++) {
            size_t len = strlen(PREFIX[k]) + strlen(p[i].name) + 1;
            names[3 * i + k] = malloc(len);
            if (!names[3 * i + k]) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
            snprintf(names[3 * i + k], len, "%s%s", PREFIX[k], p[i].name);
            w[3 * i + k] = (pd_st_wtensor){names[3 * i + k], 1, {(int64_t)p[i].n}, src[k]};
        }
    }
    if (!st) {
        char steps[32];
        snprintf(steps, sizeof steps, "%ld", step);
        kv[0] = "step";
        kv[1] = steps;
        for (int i = 0; i < 2 * n_meta; i++) kv[2 + i] = meta_kv[i];
        st = pd_st_write(path, w, n, kv, n_meta + 1, err, errlen);
    }
out:
    if (names)
        for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(w);
    free(kv);
    return st;
}

pd_status pd_adamw_state_read(const char *path, const pd_param *p, int np, float *const *m, float *const *v, long *step,
                              char *err, size_t errlen) {
    pd_st_file *f = NULL;
    pd_status st = pd_st_open(path, &f, err, errlen);
    if (st) return st;
    const char *meta = pd_st_metadata(f, "step");
    char *end = NULL;
    long t = meta ? strtol(meta, &end, 10) : -1;
    if (!meta || *end || t < 0) {
        pd_st_close(f);
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: no valid \"step\" in the metadata", path);
    }
    for (int i = 0; i < np && !st; i++) {
        float *dst[3] = {p[i].data, m[i], v[i]};
        for (int k = 0; k < 3 && !st; k++) {
            char key[512];
            snprintf(key, sizeof key, "%s%s", PREFIX[k], p[i].name);
            const pd_st_tensor *x = pd_st_find(f, key);
            if (!x || x->dtype != PD_DT_F32 || x->nbytes != p[i].n * sizeof(float)) {
                st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: tensor %s is missing or has the wrong size", path, key);
                break;
            }
            memcpy(dst[k], x->data, x->nbytes); /* data may be unaligned: memcpy, not a cast */
        }
    }
    if (!st) *step = t;
    pd_st_close(f);
    return st;
}

pd_status pd_adamw_save(const pd_adamw *o, const char *path, const char *const *meta_kv, int n_meta, char *err,
                        size_t errlen) {
    return pd_adamw_state_write(path, o->p, o->nt, o->m, o->v, o->t, meta_kv, n_meta, err, errlen);
}

pd_status pd_adamw_load(pd_adamw *o, const char *path, char *err, size_t errlen) {
    return pd_adamw_state_read(path, o->p, o->nt, o->m, o->v, &o->t, err, errlen);
}
