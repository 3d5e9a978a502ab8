/* mlm.c - the masked-language-model head. See mlm.h. */
#include "mlm.h"

#include "grad_kernels.h"
#include "train_kernels.h"

#include <string.h>

struct pd_mlm {
    int cap_rows, cap_vocab, hidden;
    float *x, *t, *u, *v, *dv, *du; /* (rows, hidden) */
    float *z;                       /* (rows, vocab): logits, then their gradient */
};

pd_mlm *pd_mlm_new(void) { return calloc(1, sizeof(pd_mlm)); }

static void mlm_release(pd_mlm *h) {
    free(h->x); free(h->t); free(h->u); free(h->v); free(h->dv); free(h->du); free(h->z);
    h->x = h->t = h->u = h->v = h->dv = h->du = h->z = NULL;
    h->cap_rows = h->cap_vocab = h->hidden = 0;
}

void pd_mlm_free(pd_mlm *h) {
    if (!h) return;
    mlm_release(h);
    free(h);
}

static int mlm_reserve(pd_mlm *h, int n, int H, int V) {
    if (n <= h->cap_rows && V <= h->cap_vocab && H == h->hidden) return 0;
    mlm_release(h);
    size_t b = sizeof(float) * (size_t)n * H;
    h->x = malloc(b); h->t = malloc(b); h->u = malloc(b); h->v = malloc(b); h->dv = malloc(b); h->du = malloc(b);
    h->z = malloc(sizeof(float) * (size_t)n * V);
    if (!h->x || !h->t || !h->u || !h->v || !h->dv || !h->du || !h->z) {
        mlm_release(h);
        return -1;
    }
    h->cap_rows = n;
    h->cap_vocab = V;
    h->hidden = H;
    return 0;
}

pd_status pd_mlm_loss(pd_mlm *h, pd_pool *pool, const pd_params *p, const float *hidden, int hidden_rows,
                      const int32_t *rows, const int32_t *labels, int n, float scale, float *dhidden, const pd_params *g,
                      double *loss_sum, int *correct, char *err, size_t errlen) {
    const pd_config *c = &p->cfg;
    int H = c->hidden, V = c->vocab;
    const pd_mlm_params *w = &p->mlm;
    *loss_sum = 0;
    if (correct) *correct = 0;
    if (!w->bias) return pd_err(err, errlen, PD_ERR_INVALID, "the parameters have no masked-LM head");
    if (g && !g->mlm.bias) return pd_err(err, errlen, PD_ERR_INVALID, "the gradients have no masked-LM head");
    if (n <= 0) return PD_OK;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= hidden_rows) return pd_err(err, errlen, PD_ERR_INVALID, "masked row %d outside the batch", rows[i]);
        if (labels[i] < 0 || labels[i] >= V) return pd_err(err, errlen, PD_ERR_INVALID, "label %d outside the vocabulary", labels[i]);
    }
    if (mlm_reserve(h, n, H, V)) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for %d masked tokens", n);
    size_t rowb = sizeof(float) * (size_t)H;
    for (int i = 0; i < n; i++) memcpy(h->x + (size_t)i * H, hidden + (size_t)rows[i] * H, rowb);
    /* forward: t = x Wd^T + bd, u = act(t), v = LN(u), z = v E^T + bias */
    pd_linear(pool, h->x, n, H, w->dense_w, w->dense_b, H, h->t);
    pd_act_apply_to(pool, c->act, h->t, h->u, (size_t)n * H);
    pd_layernorm(pool, h->u, NULL, w->ln_w, w->ln_b, c->ln_eps, n, H, h->v);
    pd_linear(pool, h->v, n, H, p->word_emb, w->bias, V, h->z);
    *loss_sum = pd_xent_rows(pool, h->z, labels, n, V, scale, correct); /* z becomes dz */
    if (!dhidden) return PD_OK;
    /* backward */
    if (g) {
        pd_gemm(pool, 1, 0, V, H, n, 1.0f, h->z, V, h->v, H, 1.0f, g->word_emb, H); /* dE += dz^T v */
        pd_grad_bias_add(pool, h->z, n, V, g->mlm.bias);
    }
    pd_gemm(pool, 0, 0, n, H, V, 1.0f, h->z, V, p->word_emb, H, 0.0f, h->dv, H); /* dv = dz E */
    pd_layernorm_bwd_rows(h->u, NULL, w->ln_w, c->ln_eps, n, H, h->dv, h->du);
    if (g && pd_layernorm_param_grad(pool, h->u, NULL, c->ln_eps, n, H, h->dv, g->mlm.ln_w, g->mlm.ln_b))
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory for the head's gradients");
    pd_act_grad_mul(pool, c->act, h->t, h->du, (size_t)n * H); /* du becomes dt */
    if (g) {
        pd_gemm(pool, 1, 0, H, H, n, 1.0f, h->du, H, h->x, H, 1.0f, g->mlm.dense_w, H);
        pd_grad_bias_add(pool, h->du, n, H, g->mlm.dense_b);
    }
    pd_gemm(pool, 0, 0, n, H, H, 1.0f, h->du, H, w->dense_w, H, 0.0f, h->dv, H); /* dx = dt Wd */
    pd_rows_scatter_add(pool, h->dv, rows, n, H, dhidden);
    return PD_OK;
}
