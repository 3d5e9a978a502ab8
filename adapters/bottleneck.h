/* bottleneck.h - the bottleneck adapter's computation: the state of one loaded adapter (its
 * sites, the config flags that shape the forward pass) and the sub-layer callbacks core calls,
 * forward and backward. hub.c (the AdapterHub format) builds the state from the files. Not a
 * public header: only adapters/ includes it.
 *
 * The forward pass follows AdapterHub's BottleneckLayer.bottleneck_layer_forward with Adapter /
 * ParallelAdapter (methods/modeling.py): pre_forward (residual choice, original_ln_before), the
 * adapter (ln_before, down, non-linearity, up, scaling, residual, ln_after), post_forward
 * (original_ln_after with the base LayerNorm).
 * Thread-safety: the callbacks only read the state (see adapter_impl.h). */
#ifndef PD_BOTTLENECK_H
#define PD_BOTTLENECK_H

#include "adapter_impl.h"

/* nn.LayerNorm's default eps: the adapter's own LayerNorms use it, not the model's. */
#define PD_BN_LN_EPS 1e-5f

typedef struct bn_site {
    int on;
    int ds;                          /* bottleneck width */
    const float *lnb_w, *lnb_b;      /* adapter LayerNorm before (hidden) when ln_before */
    const float *wd, *bd;            /* down (ds, hidden), (ds) */
    const float *wu, *bu;            /* up (hidden, ds), (hidden) */
    const float *lna_w, *lna_b;      /* adapter LayerNorm after when ln_after */
    const float *scale;              /* learned (1) / channel (hidden) scaling, or NULL */
    const char *down_w, *down_b, *up_w, *up_b, *nb_w, *nb_b, *na_w, *na_b, *sc; /* names, for messages */
    float *dup_w, *dup_b;            /* the adapter_norm_before copy of lnb_w / lnb_b saved alongside, or NULL */
    /* gradients (trainable adapters only) */
    float *g_lnb_w, *g_lnb_b, *g_wd, *g_bd, *g_wu, *g_bu, *g_lna_w, *g_lna_b, *g_scale;
} bn_site;

typedef struct bn_state {
    int olb, ola;        /* original_ln_before / original_ln_after */
    int rbl;             /* residual_before_ln: 0 False, 1 True, 2 "post_add" */
    int arbl;            /* adapter_residual_before_ln */
    int lnb, lna;        /* ln_before / ln_after */
    int par;             /* is_parallel */
    int scale_kind;      /* 0 float, 1 "learned", 2 "channel" */
    float scale;
    pd_act act;
    float dropout;       /* config "dropout" on the scaled up-projection (training mode only) */
    bn_site *site;       /* (layers * 2): [layer][PD_SITE_ATTN | PD_SITE_FFN] */
} bn_state;

void pd_bn_state_free(void *p);

/* The pd_delta sub-layer callback (a->impl is the bn_state) and its backward. */
int pd_bn_sublayer(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                   const float *ln_b, float eps, int rows, int dim, float *out, pd_pool *pool);
int pd_bn_sublayer_bwd(const pd_delta *d, int layer, pd_site site, const float *h, const float *resid, const float *ln_w,
                       const float *ln_b, float eps, int rows, int dim, const float *dout, float *dh, float *dresid, pd_pool *pool);

#endif
