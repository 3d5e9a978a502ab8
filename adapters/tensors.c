/* tensors.c - what every adapter method builds on: the adapter's tensor store (tensors kept as
 * F32 under the names they are saved with, their gradient buffers), derived buffers, tensor
 * lists of fresh adapters' files, and the per-thread scratch of the delta callbacks. See
 * adapter_impl.h. */
#include "adapter_impl.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* ==== Tensor store ==== */

void pd_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

pd_status pd_at_take(pd_adapter *a, const char *name, const pd_st_tensor *t, int file, pd_atensor **out, char *err,
                     size_t errlen) {
    if (t->ndim > 2) {
        char s[128];
        pd_shape_str(t->shape, t->ndim, s, sizeof s);
        return pd_err(err, errlen, PD_ERR_MISMATCH, "tensor %s has shape %s: adapters hold 1-D and 2-D tensors only", name, s);
    }
    if (t->dtype != PD_DT_F32 && t->dtype != PD_DT_F16 && t->dtype != PD_DT_BF16 && t->dtype != PD_DT_F64)
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "tensor %s has dtype %s (F32, F16, BF16, F64 are supported)", name,
                      pd_dtype_name(t->dtype));
    if (a->nt == a->cap_t) {
        int nc = a->cap_t ? a->cap_t * 2 : 32;
        pd_atensor *nt = realloc(a->t, (size_t)nc * sizeof *nt);
        if (!nt) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        a->t = nt;
        a->cap_t = nc;
    }
    pd_atensor *x = &a->t[a->nt];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = pd_st_to_f32(t, &x->data, err, errlen);
    if (st) { free(x->name); return st; }
    /* NaN or infinite weights would make every answer of this adapter NaN: refuse the file */
    size_t count = 1;
    for (int i = 0; i < t->ndim; i++) count *= (size_t)t->shape[i];
    for (size_t i = 0; x->data && i < count; i++)
        if (!isfinite(x->data[i])) {
            pd_err(err, errlen, PD_ERR_FORMAT, "tensor %s holds a %s value at element %zu", name,
                   isnan(x->data[i]) ? "NaN" : "infinite", i);
            free(x->data);
            free(x->name);
            return PD_ERR_FORMAT;
        }
    if (!x->data) { /* zero-element tensor: keep a valid pointer */
        x->data = malloc(sizeof(float));
        if (!x->data) { free(x->name); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    }
    x->ndim = t->ndim;
    x->shape[0] = t->ndim > 0 ? t->shape[0] : 1;
    x->shape[1] = t->ndim > 1 ? t->shape[1] : 1;
    x->file = file;
    a->nt++;
    *out = x;
    return PD_OK;
}

pd_status pd_at_add(pd_adapter *a, const char *name, int ndim, int64_t d0, int64_t d1, const float *init, int file,
                    pd_atensor **out, char *err, size_t errlen) {
    size_t n = (size_t)(d0 * (ndim > 1 ? d1 : 1));
    float *zero = NULL;
    if (!init) {
        zero = calloc(n ? n : 1, sizeof(float));
        if (!zero) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        init = zero;
    }
    pd_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = PD_DT_F32;
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.data = init;
    t.nbytes = n * sizeof(float);
    pd_status st = pd_at_take(a, name, &t, file, out, err, errlen);
    free(zero);
    return st;
}

pd_atensor *pd_at_by_data(pd_adapter *a, const float *p) {
    for (int i = 0; p && i < a->nt; i++)
        if (a->t[i].data == p) return &a->t[i];
    return NULL;
}

float *pd_at_grad(pd_adapter *a, const float *p, int decay) {
    pd_atensor *t = pd_at_by_data(a, p);
    PD_ASSERT(t);
    if (!t->grad) {
        size_t n = pd_at_numel(t);
        if (!(t->grad = calloc(n ? n : 1, sizeof(float)))) return NULL;
        t->decay = decay;
    }
    return t->grad;
}

float *pd_adapter_alloc(pd_adapter *a, size_t n) {
    if (a->n_owned == a->cap_owned) {
        int nc = a->cap_owned ? a->cap_owned * 2 : 16;
        void **no = realloc(a->owned, (size_t)nc * sizeof *no);
        if (!no) return NULL;
        a->owned = no;
        a->cap_owned = nc;
    }
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) return NULL;
    a->owned[a->n_owned++] = p;
    a->owned_bytes += (n ? n : 1) * sizeof(float);
    return p;
}

/* ==== Per-thread scratch ==== */

/* The delta callbacks have no error path and run on whichever thread calls pd_forward, so each
 * thread keeps one growing buffer. The key is process-wide infrastructure (created once), not
 * state: it only tells pthreads to free a thread's buffer when the thread exits. */
typedef struct scratch_buf {
    float *p;
    size_t cap;
} scratch_buf;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *v) {
    scratch_buf *b = v;
    if (b) free(b->p);
    free(b);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

float *pd_scratch(size_t n) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok) return NULL;
    scratch_buf *b = pthread_getspecific(scratch_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        if (pthread_setspecific(scratch_key, b)) { free(b); return NULL; }
    }
    if (n == 0) n = 1;
    if (n > b->cap) {
        float *p = malloc(n * sizeof(float));
        if (!p) return NULL;
        free(b->p);
        b->p = p;
        b->cap = n;
    }
    return b->p;
}

int pd_scratch_rows(int rows, size_t per_row, float **buf) {
    int chunk = rows > 0 ? rows : 1;
    for (;;) {
        *buf = pd_scratch((size_t)chunk * per_row);
        if (*buf) return chunk;
        PD_ASSERT(chunk > 1); /* out of memory for a single row of scratch */
        chunk = (chunk + 1) / 2;
    }
}

/* ==== Tensor lists ==== */

float *pd_tlist_add(pd_tlist *l, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 32;
        pd_st_wtensor *t = realloc(l->t, (size_t)nc * sizeof *t);
        if (!t) return NULL;
        l->t = t;
        l->cap = nc;
    }
    size_t n = (size_t)(d0 * (ndim > 1 ? d1 : 1));
    float *data = calloc(n ? n : 1, sizeof(float));
    char *nm = strdup(name);
    if (!data || !nm) { free(data); free(nm); return NULL; }
    pd_st_wtensor *w = &l->t[l->n++];
    memset(w, 0, sizeof *w);
    w->name = nm;
    w->ndim = ndim;
    w->shape[0] = d0;
    w->shape[1] = d1;
    w->data = data;
    return data;
}

void pd_tlist_free(pd_tlist *l) {
    for (int i = 0; i < l->n; i++) { free((void *)l->t[i].name); free((void *)l->t[i].data); }
    free(l->t);
    memset(l, 0, sizeof *l);
}
