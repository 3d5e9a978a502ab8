/* bottleneck.c - the bottleneck adapter's forward and backward sub-layer callbacks. See
 * bottleneck.h; the files (AdapterHub's format) are read in hub.c.
 *
 * Training: pd_bn_sublayer_bwd recomputes the forward pass of its rows keeping the
 * intermediates and runs it backwards. */
#include "bottleneck.h"

#include <string.h>

void pd_bn_state_free(void *p) {
    bn_state *s = p;
    if (!s) return;
    free(s->site);
    free(s);
}

int pd_bn_sublayer(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                       const float *ln_b, float eps, int rows, int dim, float *out, pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const bn_state *s = a->impl;
    const bn_site *b = &s->site[layer * 2 + site];
    pd_train *tr = a->train;
    /* a trainable adapter counts its training forward passes (layer 0's attention site comes
     * first in every pass); the count keys the dropout masks */
    if (tr && tr->on && layer == 0 && site == PD_SITE_ATTN) tr->pass++;
    if (!b->on) return 0;
    float p = tr && tr->on ? s->dropout : 0.0f;
    uint64_t key = p > 0 ? pd_dropout_key(tr, layer, 100 + site) : 0;
    int ds = b->ds;
    float *buf;
    int chunk = pd_scratch_rows(rows, (size_t)3 * dim + ds, &buf);
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int n = rows - r0 < chunk ? rows - r0 : chunk;
        size_t N = (size_t)n * dim;
        const float *hh = h + (size_t)r0 * dim, *rr = resid + (size_t)r0 * dim;
        float *oo = out + (size_t)r0 * dim;
        float *hs = buf, *up = buf + N, *xx = buf + 2 * N, *down = buf + 3 * N;
        const float *x, *res = NULL;
        if (s->par) {
            x = rr; /* ParallelAdapter.pre_forward: the sub-layer input is the adapter's input */
        } else {
            const float *hp = hh;
            if (s->olb) {
                for (size_t i = 0; i < N; i++) hs[i] = hh[i] + rr[i];
                if (s->rbl == 2) { memcpy(xx, hs, N * sizeof(float)); res = xx; }
                pd_layernorm(pool, hs, NULL, ln_w, ln_b, eps, n, dim, hs);
                hp = hs;
            }
            if (s->rbl == 1) res = hh;
            else if (s->rbl == 0) res = hp;
            x = hp;
        }
        if (s->lnb) {
            pd_layernorm(pool, x, NULL, b->lnb_w, b->lnb_b, PD_BN_LN_EPS, n, dim, up);
            x = up;
        }
        pd_linear(pool, x, n, dim, b->wd, b->bd, ds, down);
        pd_act_apply(pool, s->act, down, (size_t)n * ds);
        pd_linear(pool, down, n, ds, b->wu, b->bu, dim, up);
        if (s->scale_kind == 2) {
            for (int i = 0; i < n; i++)
                for (int j = 0; j < dim; j++) up[(size_t)i * dim + j] *= b->scale[j];
        } else {
            float sc = s->scale_kind == 1 ? b->scale[0] : s->scale;
            if (sc != 1.0f)
                for (size_t i = 0; i < N; i++) up[i] *= sc;
        }
        if (p > 0) pd_dropout_mul(key, r0, n, dim, p, up);
        if (s->par) {
            if (s->lna) pd_layernorm(pool, up, NULL, b->lna_w, b->lna_b, PD_BN_LN_EPS, n, dim, up);
            for (size_t i = 0; i < N; i++) up[i] += hh[i]; /* post_forward: + the sub-layer output */
        } else {
            if (s->arbl) for (size_t i = 0; i < N; i++) up[i] += res[i];
            if (s->lna) pd_layernorm(pool, up, NULL, b->lna_w, b->lna_b, PD_BN_LN_EPS, n, dim, up);
            if (!s->arbl) for (size_t i = 0; i < N; i++) up[i] += res[i];
        }
        if (s->ola) pd_layernorm(pool, up, rr, ln_w, ln_b, eps, n, dim, oo);
        else memcpy(oo, up, N * sizeof(float));
    }
    return 1;
}

/* Backward of pd_bn_sublayer for a trainable adapter: recomputes the forward pass of the group's
 * rows keeping its intermediates, then runs it backwards (post_forward, the adapter, pre_forward),
 * accumulating every parameter's gradient and writing dh and dresid. The dropout mask comes
 * from the same key as the forward pass's. */
int pd_bn_sublayer_bwd(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                           const float *ln_b, float eps, int rows, int dim, const float *dout, float *dh, float *dresid,
                           pd_pool *pool) {
    const pd_adapter *a = d->impl;
    const bn_state *s = a->impl;
    const bn_site *b = &s->site[layer * 2 + site];
    if (!b->on) return 0;
    const pd_train *tr = a->train;
    float p = tr && tr->on ? s->dropout : 0.0f;
    uint64_t key = p > 0 ? pd_dropout_key(tr, layer, 100 + site) : 0;
    int ds = b->ds, D = dim;
    float *buf;
    int chunk = pd_scratch_rows(rows, (size_t)14 * D + 3 * (size_t)ds, &buf);
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int n = rows - r0 < chunk ? rows - r0 : chunk;
        size_t N = (size_t)n * D, o = (size_t)r0 * D;
        const float *hh = h + o, *rr = resid + o, *go = dout + o;
        float *dhh = dh + o, *drr = dresid + o;
        float *s0 = buf, *hp = s0 + N, *xa = hp + N, *u = xa + N, *v = u + N, *q = v + N, *o2 = q + N, *t = o2 + N;
        float *do2 = t + N, *dq = do2 + N, *dres = dq + N, *du = dres + N, *dxin = du + N, *dx = dxin + N;
        float *z = dx + N, *ac = z + (size_t)n * ds, *dz = ac + (size_t)n * ds;
        /* ---- forward, as bn_sublayer ---- */
        const float *x, *res = NULL, *hpp = hh;
        if (s->par) {
            x = rr;
        } else {
            if (s->olb) {
                for (size_t e = 0; e < N; e++) s0[e] = hh[e] + rr[e];
                pd_ln_fwd(s0, ln_w, ln_b, eps, n, D, hp);
                hpp = hp;
            }
            res = s->rbl == 1 ? hh : s->rbl == 2 ? s0 : hpp;
            x = hpp;
        }
        const float *xin = x;
        if (s->lnb) {
            pd_ln_fwd(x, b->lnb_w, b->lnb_b, PD_BN_LN_EPS, n, D, xa);
            xin = xa;
        }
        pd_linear(pool, xin, n, D, b->wd, b->bd, ds, z);
        memcpy(ac, z, sizeof(float) * (size_t)n * ds);
        pd_act_apply(pool, s->act, ac, (size_t)n * ds);
        pd_linear(pool, ac, n, ds, b->wu, b->bu, D, u);
        float sc = s->scale_kind == 1 ? b->scale[0] : s->scale;
        for (size_t e = 0; e < N; e++) v[e] = u[e] * (s->scale_kind == 2 ? b->scale[e % (size_t)D] : sc);
        if (p > 0) pd_dropout_mul(key, r0, n, D, p, v);
        for (size_t e = 0; e < N; e++) q[e] = v[e] + (!s->par && s->arbl ? res[e] : 0.0f);
        if (s->lna) pd_ln_fwd(q, b->lna_w, b->lna_b, PD_BN_LN_EPS, n, D, o2);
        else memcpy(o2, q, sizeof(float) * N);
        for (size_t e = 0; e < N; e++) o2[e] += s->par ? hh[e] : !s->arbl ? res[e] : 0.0f;
        /* ---- backward ---- */
        memset(dhh, 0, sizeof(float) * N);
        memset(drr, 0, sizeof(float) * N);
        if (s->ola) { /* out = LN_base(o2 + resid) */
            for (size_t e = 0; e < N; e++) t[e] = o2[e] + rr[e];
            pd_ln_bwd(t, ln_w, eps, n, D, go, do2, NULL, NULL);
            memcpy(drr, do2, sizeof(float) * N);
        } else {
            memcpy(do2, go, sizeof(float) * N);
        }
        /* o2 = LN_after(q) (+ h for parallel, + res when the residual comes after the LayerNorm) */
        if (s->par) for (size_t e = 0; e < N; e++) dhh[e] += do2[e];
        memset(dres, 0, sizeof(float) * N);
        if (!s->par && !s->arbl) memcpy(dres, do2, sizeof(float) * N);
        if (s->lna) pd_ln_bwd(q, b->lna_w, PD_BN_LN_EPS, n, D, do2, dq, b->g_lna_w, b->g_lna_b);
        else memcpy(dq, do2, sizeof(float) * N);
        if (!s->par && s->arbl) for (size_t e = 0; e < N; e++) dres[e] += dq[e];
        /* q = v (+ res); v = dropout(u * scaling) */
        if (p > 0) pd_dropout_mul(key, r0, n, D, p, dq);
        for (size_t e = 0; e < N; e++) {
            size_t j = e % (size_t)D;
            float scj = s->scale_kind == 2 ? b->scale[j] : sc;
            if (s->scale_kind == 2) b->g_scale[j] += dq[e] * u[e];
            else if (s->scale_kind == 1) b->g_scale[0] += dq[e] * u[e];
            du[e] = dq[e] * scj;
        }
        /* u = act(z) Wu^T + bu; z = xin Wd^T + bd */
        pd_gemm(pool, 1, 0, D, ds, n, 1.0f, du, D, ac, ds, 1.0f, b->g_wu, ds);
        pd_colsum_add(du, n, D, b->g_bu);
        pd_gemm(pool, 0, 0, n, ds, D, 1.0f, du, D, b->wu, ds, 0.0f, dz, ds);
        for (size_t e = 0; e < (size_t)n * ds; e++) dz[e] *= pd_act1_grad(s->act, z[e]);
        pd_gemm(pool, 1, 0, ds, D, n, 1.0f, dz, ds, xin, D, 1.0f, b->g_wd, D);
        pd_colsum_add(dz, n, ds, b->g_bd);
        pd_gemm(pool, 0, 0, n, D, ds, 1.0f, dz, ds, b->wd, D, 0.0f, dxin, D);
        if (s->lnb) pd_ln_bwd(x, b->lnb_w, PD_BN_LN_EPS, n, D, dxin, dx, b->g_lnb_w, b->g_lnb_b);
        else memcpy(dx, dxin, sizeof(float) * N);
        if (s->par) {
            for (size_t e = 0; e < N; e++) drr[e] += dx[e];
            continue;
        }
        /* pre_forward: x = hp (= h without original_ln_before), res = h | hp | h + resid */
        float *dhp = dx;
        if (s->rbl == 1) for (size_t e = 0; e < N; e++) dhh[e] += dres[e];
        else if (s->rbl == 0) for (size_t e = 0; e < N; e++) dhp[e] += dres[e];
        if (s->olb) {
            float *ds0 = dxin;
            pd_ln_bwd(s0, ln_w, eps, n, D, dhp, ds0, NULL, NULL);
            if (s->rbl == 2) for (size_t e = 0; e < N; e++) ds0[e] += dres[e];
            for (size_t e = 0; e < N; e++) { dhh[e] += ds0[e]; drr[e] += ds0[e]; }
        } else {
            for (size_t e = 0; e < N; e++) dhh[e] += dhp[e];
        }
    }
    return 1;
}
